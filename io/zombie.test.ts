// A zombie cannot write. Instance A is frozen with SIGSTOP; instance B takes the leases
// (fencing token + 1), recovers from PostgreSQL, applies the rest of the log and stops
// cleanly. A is then resumed with unflushed work in hand: its flush is rejected by the
// fencing check, it stops the partitions, and the database holds not one write of A after
// B's takeover. The database equals a model run over the whole log.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { CommandProducer } from './command_producer';
import { testKafkaBrokers, testPgUrl, uniqueName } from './test_services';
import { buildWorkload, modelRun, WORKLOAD_CURRENCIES } from './test_workload';
import { compareWithModel, createTopic, httpPortOf, ledgerSnapshot, metricValue, nextOffsets, readAllEvents } from './failure_support';
import { sleep, spawnTally, waitFor } from './tally_process';
import { createScratchDatabase } from '../persist/scratch_database';
import { runAudit } from '../persist/audit';

const PARTITIONS = 4;

test('a paused zombie is fenced and writes nothing after the takeover', { timeout: 300_000 }, async () => {
  const topic = uniqueName('tally.commands.zombie');
  const eventsTopic = uniqueName('tally.events.zombie');
  await createTopic(topic, PARTITIONS);
  await createTopic(eventsTopic, PARTITIONS);
  const database = await createScratchDatabase(testPgUrl, 'tally_zombie');
  const messages = buildWorkload(7, 30_000, PARTITIONS, 1000);
  const model = modelRun(messages, PARTITIONS);
  const half = 15_000;
  const producer = await CommandProducer.connect({ brokers: testKafkaBrokers, topic });
  const produce = async (from: number, to: number): Promise<void> => {
    for (const message of messages.slice(from, to)) producer.send(message.key, message.value);
    await producer.flush();
  };
  const env = {
    TALLY_KAFKA_BROKERS: testKafkaBrokers, TALLY_PG_URL: database.url, TALLY_COMMANDS_TOPIC: topic, TALLY_EVENTS_TOPIC: eventsTopic, TALLY_COMMAND_PARTITIONS: String(PARTITIONS),
    TALLY_CONSUMER_GROUP: uniqueName('zombie'), TALLY_CURRENCIES: WORKLOAD_CURRENCIES.map((c) => `${c.code}:${c.scale}`).join(','),
    TALLY_DEDUP_WINDOW: '65536', TALLY_BALANCE_CAPACITY: '65536', TALLY_BATCH_ROWS_MAX: '500',
    // A's lease renewal is far off, so after the pause its first write attempt is a flush,
    // which must meet the fencing check.
    TALLY_LEASE_TTL_MS: '90000',
    // Leases are taken by start-up here, not by the consumer group: B must take over while A
    // is paused, before the group would notice A's silence.
    TALLY_PARTITION_ASSIGNMENT: 'static',
  };
  const client = new pg.Client({ connectionString: database.url });
  await client.connect();
  const a = spawnTally({ ...env, TALLY_INSTANCE_ID: 'zombie-a' });
  let b: ReturnType<typeof spawnTally> | undefined;
  try {
    await produce(0, half);
    const firstHalf = modelRun(messages.slice(0, half), PARTITIONS).messagesPerPartition;
    await waitFor('A to flush the first half', 120_000, async () =>
      (await nextOffsets(client, topic, PARTITIONS)).every((o, p) => o === firstHalf[p]), a);
    a.child.kill('SIGSTOP');
    await produce(half, messages.length);
    b = spawnTally({ ...env, TALLY_INSTANCE_ID: 'zombie-b' });
    await waitFor('B to flush the whole log', 120_000, async () =>
      (await nextOffsets(client, topic, PARTITIONS)).every((o, p) => o === model.messagesPerPartition[p]), b);
    b.child.kill('SIGTERM');
    assert.equal(await b.exited, 0, 'B stops cleanly');
    const tokens = (await client.query<{ fencing_token: string }>('SELECT fencing_token FROM partition_leases WHERE topic = $1', [topic])).rows;
    assert.ok(tokens.every((t) => Number(t.fencing_token) === 2), 'B took every lease over from A (token 1 → 2)');
    const afterTakeover = await ledgerSnapshot(client);

    // A wakes up with the second half to read and flush under its stale tokens.
    a.child.kill('SIGCONT');
    await waitFor('A to be fenced', 60_000, () => a.output.join('').includes('"reason":"fenced"'), a);
    assert.ok(await metricValue(httpPortOf(a.output)!, 'tally_partitions_stopped_total', 'reason="fenced"') > 0, 'A counts its fenced partitions');
    await sleep(2000);
    assert.equal(await ledgerSnapshot(client), afterTakeover, 'the database holds no write of A after the takeover');
    await compareWithModel(client, model);
    assert.deepEqual(await runAudit(database.url), [], 'audit passes');
    // Events only after the COMMIT: A's applied-but-fenced commands announced nothing, so
    // each command has exactly one event of its own (A's or B's; republished ones are flagged).
    const events = await readAllEvents(testKafkaBrokers, eventsTopic);
    const own = new Map<string, number>();
    for (const e of events) if (!e.replayed) own.set(`${e.partition}/${e.offset}`, (own.get(`${e.partition}/${e.offset}`) ?? 0) + 1);
    assert.deepEqual([...own].filter(([, count]) => count > 1), [], 'no command announced twice (A announced none of what it could not commit)');
    const covered = new Set(events.map((e) => `${e.partition}/${e.offset}`));
    const missing = model.messagesPerPartition.flatMap((count, p) => Array.from({ length: count }, (_, o) => `${p}/${o}`)).filter((key) => !covered.has(key));
    assert.deepEqual(missing.slice(0, 5), [], 'every command has a result event');
  } finally {
    a.child.kill('SIGKILL');
    b?.child.kill('SIGKILL');
    await producer.disconnect();
    await client.end();
    await database.drop();
  }
});
