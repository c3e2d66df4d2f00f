// Chaos: three `tally start` processes in one consumer group while the log keeps growing, and
// a seeded schedule of what operators and machines do to them: kill -9 and a restart under
// the same instance id (systemd's Restart=always), SIGSTOP for shorter or longer than the
// lease and the group session (a zombie, then fenced; or a pause the lease alone notices),
// SIGTERM and a restart, and PostgreSQL dropping every connection of Tally's. No instance may
// die on its own, every SIGTERM must exit 0, and at the end the database must equal one
// uninterrupted model run (balances, outcomes, journal), the audit must pass, and every
// command must have exactly one result event of its own (republished ones are flagged).
//
// CHAOS_SECONDS (default 75), CHAOS_COMMANDS (default 60 000) and CHAOS_SEED (default: new
// each run, printed) scale it up for a soak; a failing seed is printed for replay, though the
// timing of the processes is never replayed exactly.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { CommandProducer } from './command_producer';
import { testKafkaBrokers, testPgUrl, uniqueName } from './test_services';
import { buildWorkload, MODEL_DEDUP_WINDOW, modelRun, WORKLOAD_CURRENCIES } from './test_workload';
import { compareWithModel, createTopic, nextOffsets, readAllEvents } from './failure_support';
import { sleep, spawnTally, TallyProcess, waitFor } from './tally_process';
import { SeededRandom } from '../engine/wire_fixtures';
import { createScratchDatabase } from '../persist/scratch_database';
import { runAudit } from '../persist/audit';

const PARTITIONS = 4;
const INSTANCES = 3;
const SECONDS = Number(process.env['CHAOS_SECONDS'] ?? 75);
const COMMANDS = Number(process.env['CHAOS_COMMANDS'] ?? 60_000);
const SEED = Number(process.env['CHAOS_SEED'] ?? (Date.now() % 1_000_000_007));
const LEASE_TTL_MS = 3000;
const SESSION_TIMEOUT_MS = 6000;
const STOP_BOUND_MS = 40_000;
/** Where every process's whole output is written, one file per process, when set. */
const LOG_DIR = process.env['CHAOS_LOG_DIR'];
let generation = 0;

/** One of the three places an instance runs; its process is replaced by restarts. */
interface Slot {
  readonly name: string;
  tally: TallyProcess;
  /** Set while the test itself ends the process (kill -9, SIGTERM): its exit is expected. */
  ending: boolean;
  paused: boolean;
}

type Action = 'kill' | 'pause' | 'term' | 'drop-connections';
const ACTIONS: readonly Action[] = ['kill', 'kill', 'pause', 'pause', 'term', 'drop-connections'];

test(`chaos over ${SECONDS} s (seed ${SEED}): kills, pauses, restarts and dropped connections lose and double nothing`, { timeout: (SECONDS + 420) * 1000 }, async () => {
  console.log(`chaos seed ${SEED} (replay with CHAOS_SEED=${SEED})`);
  if (COMMANDS / PARTITIONS * 2 > MODEL_DEDUP_WINDOW) throw new Error(`CHAOS_COMMANDS ${COMMANDS} is too many for the model's dedup window ${MODEL_DEDUP_WINDOW}`);
  const random = new SeededRandom(SEED);
  const topic = uniqueName('tally.commands.chaos');
  const eventsTopic = uniqueName('tally.events.chaos');
  await createTopic(topic, PARTITIONS);
  await createTopic(eventsTopic, PARTITIONS);
  const database = await createScratchDatabase(testPgUrl, 'tally_chaos');
  const messages = buildWorkload(SEED, COMMANDS, PARTITIONS, 3000);
  const model = modelRun(messages, PARTITIONS);
  const producer = await CommandProducer.connect({ brokers: testKafkaBrokers, topic });
  const env = {
    TALLY_KAFKA_BROKERS: testKafkaBrokers, TALLY_PG_URL: database.url, TALLY_COMMANDS_TOPIC: topic, TALLY_EVENTS_TOPIC: eventsTopic,
    TALLY_COMMAND_PARTITIONS: String(PARTITIONS), TALLY_CONSUMER_GROUP: uniqueName('chaos'),
    TALLY_CURRENCIES: WORKLOAD_CURRENCIES.map((c) => `${c.code}:${c.scale}`).join(','),
    TALLY_DEDUP_WINDOW: String(MODEL_DEDUP_WINDOW), TALLY_BALANCE_CAPACITY: '65536', TALLY_BATCH_ROWS_MAX: '500',
    TALLY_LEASE_TTL_MS: String(LEASE_TTL_MS), TALLY_KAFKA_SESSION_TIMEOUT_MS: String(SESSION_TIMEOUT_MS), TALLY_PARTITION_ASSIGNMENT: 'group',
  };
  const client = new pg.Client({ connectionString: database.url });
  await client.connect();
  const failures: string[] = [];
  const actionsTaken: string[] = [];
  const tail = (slot: Slot): string => slot.tally.output.join('').slice(-6000);

  const start = (slot: Slot): void => {
    const tally = spawnTally({ ...env, TALLY_INSTANCE_ID: slot.name });
    if (LOG_DIR !== undefined) {
      const file = fs.createWriteStream(path.join(LOG_DIR, `${slot.name}-${++generation}.log`));
      tally.child.stdout!.pipe(file);
      tally.child.stderr!.pipe(file);
    }
    slot.tally = tally;
    slot.ending = false;
    slot.paused = false;
    void tally.exited.then((code) => {
      if (slot.tally === tally && !slot.ending) failures.push(`${slot.name} exited on its own with code ${code}\n--- output (tail) ---\n${tail(slot)}`);
    });
  };
  const slots: Slot[] = Array.from({ length: INSTANCES }, (_, i) => ({ name: `chaos-${i}`, tally: undefined as unknown as TallyProcess, ending: false, paused: false }));

  const terminate = async (slot: Slot): Promise<void> => {
    slot.ending = true;
    if (slot.paused) slot.tally.child.kill('SIGCONT');
    slot.tally.child.kill('SIGTERM');
    const code = await Promise.race([slot.tally.exited, sleep(STOP_BOUND_MS).then(() => 'timeout' as const)]);
    if (code !== 0) failures.push(`${slot.name}: SIGTERM ended with ${code} (expected 0 within ${STOP_BOUND_MS} ms)\n--- output (tail) ---\n${tail(slot)}`);
    if (code === 'timeout') {
      slot.tally.child.kill('SIGKILL');
      await slot.tally.exited;
    }
  };

  const act = async (action: Action, slot: Slot): Promise<void> => {
    switch (action) {
      case 'kill':
        slot.ending = true;
        slot.tally.child.kill('SIGKILL');
        await slot.tally.exited;
        // systemd restarts it at once, under the same instance id (its static group membership).
        start(slot);
        return;
      case 'pause': {
        // Shorter than the lease: nothing happens. Longer than the lease but shorter than the
        // session: its own lease keeper notices the lease may have expired. Longer than the
        // session: the group gives its partitions to the others and it comes back a zombie.
        const pauseMs = 1000 + random.int(SESSION_TIMEOUT_MS + 4000);
        slot.paused = true;
        slot.tally.child.kill('SIGSTOP');
        await sleep(pauseMs);
        slot.tally.child.kill('SIGCONT');
        slot.paused = false;
        actionsTaken[actionsTaken.length - 1] += ` ${pauseMs} ms`;
        return;
      }
      case 'term':
        await terminate(slot);
        start(slot);
        return;
      case 'drop-connections':
        await client.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()');
        return;
    }
  };

  try {
    for (const slot of slots) start(slot);
    const began = Date.now();
    const deadline = began + SECONDS * 1000;
    let produced = 0;
    while (Date.now() < deadline && failures.length === 0) {
      // The log grows throughout, so every action meets work in flight.
      const share = Math.min(messages.length, Math.ceil(messages.length * (Date.now() - began + 4000) / (SECONDS * 1000)));
      for (; produced < share; produced++) producer.send(messages[produced]!.key, messages[produced]!.value);
      await producer.flush();
      const action = random.pick(ACTIONS);
      const slot = random.pick(slots);
      actionsTaken.push(`${((Date.now() - began) / 1000).toFixed(1)} s ${action}${action === 'drop-connections' ? '' : ` ${slot.name}`}`);
      await act(action, slot);
      await sleep(1500 + random.int(3000));
    }
    for (; produced < messages.length; produced++) producer.send(messages[produced]!.key, messages[produced]!.value);
    await producer.flush();
    console.log(`chaos actions: ${actionsTaken.join('; ')}`);
    assert.deepEqual(failures, [], 'no instance died on its own, every SIGTERM exited 0');

    await waitFor('the instances to flush the whole log', 240_000, async () =>
      failures.length > 0 || (await nextOffsets(client, topic, PARTITIONS)).every((o, p) => o === model.messagesPerPartition[p]), slots[0]!.tally);
    assert.deepEqual(failures, [], 'no instance died on its own while finishing the log');
    for (const slot of slots) await terminate(slot);
    assert.deepEqual(failures, [], 'every instance drains and exits 0 on SIGTERM');

    await compareWithModel(client, model);
    assert.deepEqual(await runAudit(database.url), [], 'audit passes');
    const events = await readAllEvents(testKafkaBrokers, eventsTopic);
    const own = new Map<string, number>();
    for (const e of events) if (!e.replayed) own.set(`${e.partition}/${e.offset}`, (own.get(`${e.partition}/${e.offset}`) ?? 0) + 1);
    assert.deepEqual([...own].filter(([, count]) => count > 1).slice(0, 5), [], 'no command announced twice as its own');
    const covered = new Set(events.map((e) => `${e.partition}/${e.offset}`));
    const missing = model.messagesPerPartition.flatMap((count, p) => Array.from({ length: count }, (_, o) => `${p}/${o}`)).filter((key) => !covered.has(key));
    assert.deepEqual(ranges(missing), [], `every command has a result event (${missing.length} missing)`);
  } catch (error) {
    console.log(`chaos seed ${SEED} failed; actions: ${actionsTaken.join('; ')}`);
    throw error;
  } finally {
    for (const slot of slots) {
      slot.ending = true;
      slot.tally?.child.kill('SIGCONT');
      slot.tally?.child.kill('SIGKILL');
    }
    await producer.disconnect();
    await client.end();
    await database.drop();
  }
});

/** "p/o" keys, ascending per partition, as "p/first-last" ranges. */
function ranges(keys: readonly string[]): string[] {
  const out: string[] = [];
  let open: { partition: string; first: number; last: number } | undefined;
  for (const key of keys) {
    const [partition, offsetText] = key.split('/') as [string, string];
    const offset = Number(offsetText);
    if (open !== undefined && open.partition === partition && open.last + 1 === offset) {
      open.last = offset;
      continue;
    }
    if (open !== undefined) out.push(`${open.partition}/${open.first}-${open.last}`);
    open = { partition, first: offset, last: offset };
  }
  if (open !== undefined) out.push(`${open.partition}/${open.first}-${open.last}`);
  return out;
}
