// Test support for the chaos tests: several `tally start` processes in one consumer group,
// and the things operators and machines do to them, drawn from a seeded schedule: kill -9
// and a restart under the same instance id (systemd's Restart=always), SIGSTOP for shorter or
// longer than the lease and the group session (a pause only the lease notices, or a zombie
// the group replaces), SIGTERM and a restart, and PostgreSQL dropping every connection of
// the database. An instance that exits when the test did not end it, or a SIGTERM that does
// not end in exit code 0 within the bound, is recorded as a failure.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { sleep, spawnTally, TallyProcess, waitFor } from './tally_process';
import { readAllEvents } from './failure_support';
import type { ModelEvent } from './test_workload';
import type { SeededRandom } from '../engine/wire_fixtures';

export const CHAOS_LEASE_TTL_MS = 3000;
export const CHAOS_SESSION_TIMEOUT_MS = 6000;
const STOP_BOUND_MS = 40_000;
const SEND_TICK_MS = 100;

/** One place an instance runs; its process is replaced by restarts. */
interface Slot {
  readonly name: string;
  tally: TallyProcess | undefined;
  /** Set while the test itself ends the process (kill -9, SIGTERM): its exit is expected. */
  ending: boolean;
  paused: boolean;
}

type Action = 'kill' | 'pause' | 'term' | 'drop-connections';
const ACTIONS: readonly Action[] = ['kill', 'kill', 'pause', 'pause', 'term', 'drop-connections'];

export class ChaosCluster {
  /** What went wrong that the test must fail on, with the process's output. */
  readonly failures: string[] = [];
  /** What was done when, for the test's log and for replaying a seed. */
  readonly actions: string[] = [];
  private readonly slots: Slot[];
  private generation = 0;
  private readonly began = Date.now();

  /**
   * `env` is every instance's environment (the lease TTL and session timeout are set here);
   * CHAOS_LOG_DIR, when set, receives each process's whole output, one file per process.
   */
  constructor(private readonly env: Record<string, string>, instances: number, private readonly random: SeededRandom, private readonly client: pg.Client, private readonly name: string) {
    this.slots = Array.from({ length: instances }, (_, i) => ({ name: `${name}-${i}`, tally: undefined, ending: false, paused: false }));
    for (const slot of this.slots) this.start(slot);
  }

  /** The first instance's process, whose output a timeout message shows. */
  get first(): TallyProcess {
    return this.slots[0]!.tally!;
  }

  /**
   * For `seconds`, a step of the schedule every 1.5–4.5 s while `send(index)` sends the items
   * 0 … count − 1 in step with the time, ahead of it by 4 s, so every step meets work in
   * flight; then the rest. Stops stepping at the first failure. `flush` waits for the sends.
   */
  async run(seconds: number, count: number, send: (index: number) => void, flush: () => Promise<void>): Promise<void> {
    const began = Date.now();
    let sent = 0;
    // Commands flow all the time, a tenth of a second's worth at a time, so every step (a
    // kill, a pause, a stop) lands while commands are being applied, flushed and announced.
    const sendDue = (): void => {
      const due = Math.min(count, Math.ceil(count * (Date.now() - began) / (seconds * 1000)));
      for (; sent < due; sent++) send(sent);
    };
    while (Date.now() < began + seconds * 1000 && this.failures.length === 0) {
      await this.step();
      const nextStepAt = Date.now() + 1500 + this.random.int(3000);
      while (Date.now() < nextStepAt) {
        sendDue();
        await sleep(SEND_TICK_MS);
      }
      await flush();
    }
    for (; sent < count; sent++) send(sent);
    await flush();
    console.log(`${this.name} actions: ${this.actions.join('; ')}`);
    assert.deepEqual(this.failures, [], 'no instance died on its own, every SIGTERM exited 0');
  }

  /** Waits until `settled` (no instance may die meanwhile), then stops every instance: each must exit 0. */
  async settleAndStop(what: string, settled: () => Promise<boolean>): Promise<void> {
    const settling = Date.now();
    await waitFor(what, 240_000, async () => this.failures.length > 0 || settled(), this.first);
    assert.deepEqual(this.failures, [], `no instance died on its own while waiting for ${what}`);
    console.log(`settled ${((Date.now() - settling) / 1000).toFixed(1)} s after the chaos`);
    await this.stopAll();
    assert.deepEqual(this.failures, [], 'every instance drains and exits 0 on SIGTERM');
  }

  /** Does one randomly chosen thing to one randomly chosen instance (or to the database). */
  async step(): Promise<void> {
    const action = this.random.pick(ACTIONS);
    const slot = this.random.pick(this.slots);
    const at = `${((Date.now() - this.began) / 1000).toFixed(1)} s ${action}${action === 'drop-connections' ? '' : ` ${slot.name}`}`;
    this.actions.push(at);
    switch (action) {
      case 'kill':
        slot.ending = true;
        slot.tally!.child.kill('SIGKILL');
        await slot.tally!.exited;
        this.start(slot);
        return;
      case 'pause': {
        const pauseMs = 1000 + this.random.int(CHAOS_SESSION_TIMEOUT_MS + 4000);
        this.actions[this.actions.length - 1] = `${at} ${pauseMs} ms`;
        slot.paused = true;
        slot.tally!.child.kill('SIGSTOP');
        await sleep(pauseMs);
        slot.tally!.child.kill('SIGCONT');
        slot.paused = false;
        return;
      }
      case 'term':
        await this.terminate(slot);
        this.start(slot);
        return;
      case 'drop-connections':
        // Not while an instance starts: its migrations and start-up reads do not retry (it
        // would exit non-zero and be restarted by its service manager, which is not what this
        // step exercises).
        await this.waitStarted();
        await this.client.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()');
        return;
    }
  }

  private async waitStarted(): Promise<void> {
    const deadline = Date.now() + STOP_BOUND_MS;
    while (Date.now() < deadline && this.slots.some((slot) => slot.tally!.child.exitCode === null && !slot.tally!.output.join('').includes('"msg":"tally started"'))) await sleep(50);
  }

  /** SIGTERM to every instance; each must exit 0 within the bound. */
  async stopAll(): Promise<void> {
    for (const slot of this.slots) await this.terminate(slot);
  }

  /** Kills whatever still runs (a test's finally). */
  killAll(): void {
    for (const slot of this.slots) {
      slot.ending = true;
      slot.tally?.child.kill('SIGCONT');
      slot.tally?.child.kill('SIGKILL');
    }
  }

  private start(slot: Slot): void {
    const tally = spawnTally({ ...this.env, TALLY_INSTANCE_ID: slot.name, TALLY_LEASE_TTL_MS: String(CHAOS_LEASE_TTL_MS), TALLY_KAFKA_SESSION_TIMEOUT_MS: String(CHAOS_SESSION_TIMEOUT_MS) });
    const logDir = process.env['CHAOS_LOG_DIR'];
    if (logDir !== undefined) {
      fs.mkdirSync(logDir, { recursive: true });
      const file = fs.createWriteStream(path.join(logDir, `${slot.name}-${++this.generation}.log`));
      tally.child.stdout!.pipe(file);
      tally.child.stderr!.pipe(file);
    }
    slot.tally = tally;
    slot.ending = false;
    slot.paused = false;
    void tally.exited.then((code) => {
      if (slot.tally === tally && !slot.ending) this.failures.push(`${slot.name} exited on its own with code ${code}\n--- output (tail) ---\n${tail(tally)}`);
    });
  }

  private async terminate(slot: Slot): Promise<void> {
    const tally = slot.tally!;
    slot.ending = true;
    if (slot.paused) tally.child.kill('SIGCONT');
    // Node installs Tally's signal handlers after loading its modules (a few hundred ms): a
    // SIGTERM before that kills the process by default, with nothing started to drain. The
    // first log line comes after them.
    const deadline = Date.now() + STOP_BOUND_MS;
    while (!tally.output.some((chunk) => chunk.includes('"msg":')) && tally.child.exitCode === null && Date.now() < deadline) await sleep(20);
    tally.child.kill('SIGTERM');
    const code = await Promise.race([tally.exited, sleep(STOP_BOUND_MS).then(() => 'timeout' as const)]);
    if (code !== 0) this.failures.push(`${slot.name}: SIGTERM ended with ${code} (expected 0 within ${STOP_BOUND_MS} ms)\n--- output (tail) ---\n${tail(tally)}`);
    if (code === 'timeout') {
      tally.child.kill('SIGKILL');
      await tally.exited;
    }
  }
}

function tail(tally: TallyProcess): string {
  return tally.output.join('').slice(-6000);
}

/** "p/o" keys, ascending per partition, as "p/first-last" ranges. */
export function offsetRanges(keys: readonly string[]): string[] {
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

/**
 * Every command of every partition (offsets [0, counts[p])) has a result event in the topic,
 * none has two of its own (republished ones, flagged replayed, may repeat), and, given the
 * model's events, every event says what the model's does.
 */
export async function assertEveryCommandAnnounced(
  brokers: string, eventsTopic: string, counts: readonly number[], expected?: ReadonlyMap<string, ModelEvent>,
): Promise<void> {
  const events = await readAllEvents(brokers, eventsTopic);
  const own = new Map<string, number>();
  for (const e of events) if (!e.replayed) own.set(`${e.partition}/${e.offset}`, (own.get(`${e.partition}/${e.offset}`) ?? 0) + 1);
  const covered = new Set(events.map((e) => `${e.partition}/${e.offset}`));
  const missing = counts.flatMap((count, p) => Array.from({ length: count }, (_, o) => `${p}/${o}`)).filter((key) => !covered.has(key));
  console.log(`result events: ${events.filter((e) => e.replayed).length} republished after crashes and takeovers`);
  assert.deepEqual([...own].filter(([, n]) => n > 1).map(([key]) => key).slice(0, 5), [], 'no command announced twice as its own');
  assert.deepEqual(offsetRanges(missing).slice(0, 20), [], 'every command has a result event');
  if (expected === undefined) return;
  // Live and republished alike: the same tx_id, status, reason and (for a duplicate) the
  // offset of the outcome it repeats as the uninterrupted model run.
  const wrong = events.filter((e) => {
    const model = expected.get(`${e.partition}/${e.offset}`);
    return model === undefined || model.txId !== e.txId || model.status !== e.status || model.reason !== e.reason || model.originalOffset !== e.originalOffset;
  });
  assert.deepEqual(wrong.slice(0, 5).map((e) => ({ seen: e, model: expected.get(`${e.partition}/${e.offset}`) })), [], 'every result event says what the model says');
}

/**
 * No tx_replies row is left once every instance stopped cleanly: each records its delivered
 * event positions on the way out, which deletes the replies below them.
 */
export async function assertNoRepliesLeft(client: pg.Client): Promise<void> {
  const left = Number((await client.query<{ n: string }>('SELECT COUNT(*) AS n FROM tx_replies')).rows[0]!.n);
  assert.equal(left, 0, 'every stopped instance recorded its delivered events and deleted the replies below them');
}
