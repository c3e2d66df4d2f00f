// The durable pipeline end to end on real parts: JSON commands decoded into the command ring,
// the engine on its worker thread, the batcher on this thread, real Piscina flush workers and
// a scratch PostgreSQL database. Afterwards the database must equal the engine: every balance,
// every balance = its journal, conservation, one outcome per recorded tx_id, next_offset =
// last offset + 1. Also: small batches with several in flight (order and the last_offset
// guard), a partition fenced mid-run, and a database failure retried until it heals.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CommandSlotViews } from '../engine/command_slot';
import { CurrencyRegistry } from '../engine/currency_registry';
import { decodeCommand } from '../engine/command_decoder';
import { EngineThread } from '../engine/engine_thread';
import { OUTCOME_FLAG_RECORDED, OUT_FLAGS_OFFSET, OUT_KAFKA_OFFSET_OFFSET, OUT_PARTITION_OFFSET, OUT_SLOT_COUNT_OFFSET, OUT_TX_ID_LENGTH_OFFSET, OUT_TX_ID_OFFSET } from '../engine/output_layout';
import { homePartitionOfAccountDecimal } from '../engine/partitioner';
import { SeededRandom } from '../engine/wire_fixtures';
import { Sequencer, YieldingWaitStrategy } from '../ringbuffer';
import { Batcher, BatcherLog, DurableRange } from './batcher';
import { CommandType } from '../engine/command_layout';
import { InProcessEngine } from './engine_fixture';
import { FlushPool, FlushRunner } from './flush_pool';
import type { FlushResult, FlushTask } from './flush_task';
import { TEST_CURRENCIES, createScratchLedger, ledgerMismatches, nextOffsets, withClient } from './test_ledger';
import type pg from 'pg';

const TOPIC = 'tally.commands';
const PARTITIONS = 4;
const registry = CurrencyRegistry.fromConfig(TEST_CURRENCIES.map((c) => ({ code: c.code, scale: c.scale })));

interface Message {
  readonly value: Buffer;
  readonly partition: number;
  readonly offset: number;
}

/** A seeded mix: every command type, settles, overdrafts, duplicates, conflicts, malformed and bad amounts. */
function workload(seed: number, count: number): Message[] {
  const random = new SeededRandom(seed);
  const accounts = Array.from({ length: 120 }, (_, i) => String(1000 + i * 13));
  const homeOf = (account: string): number => homePartitionOfAccountDecimal(account, PARTITIONS);
  const byHome = Array.from({ length: PARTITIONS }, (_, p) => accounts.filter((a) => homeOf(a) === p));
  const nextOffset = new Array<number>(PARTITIONS).fill(0);
  const messages: Message[] = [];
  const place = (value: string | Buffer, partition: number): void => {
    messages.push({ value: Buffer.isBuffer(value) ? value : Buffer.from(value), partition, offset: nextOffset[partition]!++ });
  };
  for (let i = 0; i < count; i++) {
    const account = random.pick(accounts);
    const home = homeOf(account);
    const currency = random.pick(TEST_CURRENCIES).code;
    const amount = `${1 + random.int(300)}.${random.digits(2)}`;
    const roll = random.int(100);
    const base = { tx_id: `c${i}`, account, currency, amount };
    if (roll < 30) place(JSON.stringify({ type: 'deposit', ...base }), home);
    else if (roll < 42) place(JSON.stringify({ type: 'withdraw', ...base }), home);
    else if (roll < 52) place(JSON.stringify({ type: 'freeze', ...base }), home);
    else if (roll < 60) place(JSON.stringify({ type: 'unfreeze', ...base }), home);
    else if (roll < 76) place(JSON.stringify({ type: 'transfer', tx_id: `c${i}`, from: account, to: random.pick(byHome[home]!), currency, amount }), home);
    else if (roll < 84) place(JSON.stringify({ type: 'settle', tx_id: `c${i}`, account, legs: settleLegs(account, random.int(1000) + 1) }), home);
    else if (roll < 90 && messages.length > 0) {
      const earlier = random.pick(messages);
      place(earlier.value, earlier.partition);
    } else if (roll < 94) place(JSON.stringify({ type: 'deposit', ...base, tx_id: `c${i >> 1}`, amount: '0.01' }), home);
    else if (roll < 97) place(JSON.stringify({ type: 'deposit', ...base, amount: '-5' }), home);
    else place(`{"type":"deposit","tx_id":"m${i}",`, random.int(PARTITIONS));
  }
  return messages;
}

/** A buyer pays `quote` USDT from frozen (1% fee) and gets a thousandth of it in BTC. */
function settleLegs(account: string, quote: number): object[] {
  const fee = quote / 100;
  const btc = (quote / 1000).toFixed(3);
  return [
    { account, currency: 'USDT', available: '0', frozen: `-${quote}` },
    { account: '1', currency: 'USDT', available: `${fee}`, frozen: '0' },
    { account: '2', currency: 'USDT', available: `${quote - fee}`, frozen: '0' },
    { account: '2', currency: 'BTC', available: `-${btc}`, frozen: '0' },
    { account, currency: 'BTC', available: btc, frozen: '0' },
  ];
}

const sequencers = new Map<EngineThread, Sequencer>();

/** Decodes the messages into the command ring as fast as the engine takes them. */
async function feed(engine: EngineThread, messages: readonly Message[]): Promise<void> {
  const sequencer = sequencers.get(engine) ?? engine.commandRing.acquireSequencer(new YieldingWaitStrategy(100));
  sequencers.set(engine, sequencer);
  const views = new CommandSlotViews(engine.commandRing.data);
  let sent = 0;
  while (sent < messages.length) {
    const count = Math.min(64, messages.length - sent);
    const first = sequencer.tryClaim(count);
    if (first < 0) {
      await new Promise((resolve) => setTimeout(resolve, 1));
      continue;
    }
    for (let i = 0; i < count; i++) {
      const message = messages[sent + i]!;
      decodeCommand(message.value, message.partition, message.offset, PARTITIONS, registry, views, engine.commandRing.slotOffset(first + i));
    }
    sequencer.publish(first + count - 1);
    sent += count;
    await new Promise((resolve) => setImmediate(resolve));
  }
}

async function applied(engine: EngineThread, total: number): Promise<void> {
  for (let attempt = 0; attempt < 6000; attempt++) {
    if ((await engine.report()).sequence >= total) return;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  throw new Error(`engine did not apply ${total} commands in time`);
}

/**
 * Checks the batcher's promises to the pool: one task per group at a time, per partition in
 * ring order; a task of several groups' partitions (a whole batch) only while nothing else
 * is in flight, and nothing else starts until it is done.
 */
class CheckingRunner implements FlushRunner {
  readonly violations: string[] = [];
  maxInFlight = 0;
  tasks = 0;
  wholeTasks = 0;
  private readonly busyGroups = new Set<number>();
  private readonly lastPosition = new Map<number, number>();
  private inFlight = 0;
  private wholeInFlight = false;

  constructor(private readonly pool: FlushPool, private readonly groupCount: number, private readonly fault?: (task: FlushTask) => Promise<void>) {}

  async run(task: FlushTask): Promise<FlushResult> {
    const groups = [...new Set(task.partitions.map((p) => p % this.groupCount))];
    const whole = groups.length > 1;
    if (this.wholeInFlight) this.violations.push(`task of ${task.partitions} started beside a whole batch`);
    if (whole && this.inFlight > 0) this.violations.push(`whole batch of ${task.partitions} started beside ${this.inFlight} task(s)`);
    for (const group of groups) if (this.busyGroups.has(group)) this.violations.push(`group ${group} got a second task in flight`);
    for (const p of task.partitions) {
      if ((this.lastPosition.get(p) ?? -1) >= task.firstPosition) this.violations.push(`partition ${p} went back to ring position ${task.firstPosition}`);
    }
    for (const group of groups) this.busyGroups.add(group);
    this.wholeInFlight = whole;
    if (whole) this.wholeTasks++;
    this.inFlight++;
    this.tasks++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      await this.fault?.(task);
      const result = await this.pool.run(task);
      if (result.status === 'committed') for (const p of task.partitions) this.lastPosition.set(p, task.lastPosition);
      return result;
    } finally {
      for (const group of groups) this.busyGroups.delete(group);
      if (whole) this.wholeInFlight = false;
      this.inFlight--;
    }
  }
}

/** Reads each durable range's recorded outcomes from the ring while the batcher allows it. */
class DurableRecorder {
  readonly recorded = new Set<string>();
  readonly lastOffsets = new Map<number, number>();
  ranges = 0;

  readonly onDurable = (range: DurableRange): void => {
    this.ranges++;
    const bytes = new Uint8Array(range.ring.data);
    const view = new DataView(range.ring.data);
    for (let position = range.firstPosition; position <= range.lastPosition;) {
      const slot = range.ring.slotOffset(position);
      const partition = view.getUint32(slot + OUT_PARTITION_OFFSET, true);
      if (range.unwrittenPartitions.includes(partition)) {
        // Not committed here (stopped or fenced): as the service's fan-out, say nothing of it.
        position += bytes[slot + OUT_SLOT_COUNT_OFFSET]!;
        continue;
      }
      this.lastOffsets.set(partition, view.getFloat64(slot + OUT_KAFKA_OFFSET_OFFSET, true));
      if ((bytes[slot + OUT_FLAGS_OFFSET]! & OUTCOME_FLAG_RECORDED) !== 0) {
        const txId = Buffer.from(bytes.subarray(slot + OUT_TX_ID_OFFSET, slot + OUT_TX_ID_OFFSET + bytes[slot + OUT_TX_ID_LENGTH_OFFSET]!)).toString('utf8');
        this.recorded.add(`${partition}/${txId}`);
      }
      position += bytes[slot + OUT_SLOT_COUNT_OFFSET]!;
    }
  };
}

const logs: string[] = [];
const log: BatcherLog = {
  info: (_context, message) => logs.push(`info ${message}`),
  warn: (_context, message) => logs.push(`warn ${message}`),
  error: (context, message) => logs.push(`error ${message} ${String((context as { err?: Error }).err?.message)}`),
};

interface Pipeline {
  readonly engine: EngineThread;
  readonly pool: FlushPool;
  readonly runner: CheckingRunner;
  readonly batcher: Batcher;
  readonly recorder: DurableRecorder;
  readonly tokens: Map<number, bigint>;
  readonly fenced: number[];
  close(): Promise<void>;
}

async function startPipeline(pgUrl: string, batchRowsMax: number, fault?: (task: FlushTask) => Promise<void>): Promise<Pipeline> {
  const engine = await EngineThread.start({ commandSlotCount: 1024, outputSlotCount: 4096, balanceCapacity: 1 << 14, dedupWindow: 1 << 16 });
  for (let p = 0; p < PARTITIONS; p++) await engine.assign(p);
  const pool = new FlushPool({ workers: 2 });
  const runner = new CheckingRunner(pool, 2, fault);
  const recorder = new DurableRecorder();
  const tokens = new Map(Array.from({ length: PARTITIONS }, (_, p) => [p, 1n]));
  const fenced: number[] = [];
  const batcher = new Batcher({
    ring: engine.outputRing, runner, groupCount: 2, batchRowsMax, batchIntervalMs: 2, topic: TOPIC, pgUrl,
    fencingTokenOf: (p) => tokens.get(p), onDurable: recorder.onDurable, onFenced: (ps) => fenced.push(...ps), log,
    retryDelayMinMs: 10, retryDelayMaxMs: 200,
  });
  batcher.start();
  return {
    engine, pool, runner, batcher, recorder, tokens, fenced,
    close: async () => {
      await batcher.stop(5_000);
      await pool.close();
      await engine.stop();
    },
  };
}

function lookup(engine: EngineThread) {
  const reader = engine.tableReader();
  return (account: bigint, currency: number, partition: number) => reader.readBalance(account, currency, partition);
}

/** The database equals the engine, and every partition's next offset is one past its last message. */
async function assertLedgerIsEngine(client: pg.Client, engine: EngineThread, messages: readonly Message[]): Promise<void> {
  assert.deepEqual(await ledgerMismatches(client, lookup(engine)), []);
  const last = lastOffsets(messages);
  assert.deepEqual(await nextOffsets(client, TOPIC), new Map([...last].map(([p, o]) => [p, o + 1])));
}

function lastOffsets(messages: readonly Message[]): Map<number, number> {
  const last = new Map<number, number>();
  for (const m of messages) last.set(m.partition, Math.max(last.get(m.partition) ?? -1, m.offset));
  return last;
}

test('the database equals the engine after a mixed workload, with many small batches in flight', { timeout: 180_000 }, async () => {
  const ledger = await createScratchLedger('tally_batcher', TOPIC, [0, 1, 2, 3]);
  const pipeline = await startPipeline(ledger.url, 97);
  try {
    const messages = workload(0x5eed, 12_000);
    await feed(pipeline.engine, messages);
    await applied(pipeline.engine, messages.length);
    await pipeline.batcher.flush(60_000);
    const { batcher, runner, recorder } = pipeline;
    assert.deepEqual(runner.violations, []);
    assert.equal(runner.maxInFlight, 2, 'both groups flushed at the same time');
    assert.ok(batcher.metrics.batchesCut > 100, `${batcher.metrics.batchesCut} batches`);
    assert.equal(batcher.metrics.commandsDurable, messages.length);
    assert.equal(batcher.pendingBatches, 0);
    assert.ok(batcher.ready);
    const last = lastOffsets(messages);
    for (const [partition, offset] of last) assert.equal(batcher.durableOffsetOf(partition), offset);
    assert.deepEqual(recorder.lastOffsets, last);
    await withClient(ledger.url, async (client) => {
      assert.deepEqual(await ledgerMismatches(client, lookup(pipeline.engine)), []);
      assert.equal(Number((await client.query('SELECT count(*) FROM balances')).rows[0].count), pipeline.engine.tableReader().count);
      const outcomes = (await client.query<{ key: string }>("SELECT partition || '/' || tx_id AS key FROM tx_outcomes")).rows.map((r) => r.key);
      assert.equal(outcomes.length, recorder.recorded.size);
      assert.deepEqual(new Set(outcomes), recorder.recorded);
      assert.deepEqual(await nextOffsets(client, TOPIC), new Map([...last].map(([p, o]) => [p, o + 1])));
      // The last_offset guard: every balance row carries the offset of its newest leg.
      const stale = await client.query(`SELECT b.partition, b.account FROM balances b
        JOIN (SELECT partition, account, currency_id, max(kafka_offset) AS newest FROM journal GROUP BY 1, 2, 3) j
        USING (partition, account, currency_id) WHERE b.last_offset <> j.newest`);
      assert.deepEqual(stale.rows, []);
    });
  } finally {
    await pipeline.close();
    await ledger.drop();
  }
});

test('a partition fenced mid-run stops being written while the others go on', { timeout: 180_000 }, async () => {
  const ledger = await createScratchLedger('tally_batcher', TOPIC, [0, 1, 2, 3]);
  const pipeline = await startPipeline(ledger.url, 500);
  try {
    const messages = workload(0xfe1ce, 8_000);
    const half = messages.length / 2;
    await feed(pipeline.engine, messages.slice(0, half));
    await applied(pipeline.engine, half);
    await pipeline.batcher.flush(60_000);
    await withClient(ledger.url, async (client) => {
      await client.query('UPDATE partition_leases SET fencing_token = fencing_token + 1 WHERE topic = $1 AND partition = 2', [TOPIC]);
      const countsOf2 = async (): Promise<unknown[]> => (await client.query(`SELECT
          (SELECT count(*) FROM journal WHERE partition = 2) AS legs, (SELECT count(*) FROM tx_outcomes WHERE partition = 2) AS outcomes,
          (SELECT sum(available) FROM balances WHERE partition = 2) AS available,
          (SELECT next_offset FROM partition_leases WHERE topic = '${TOPIC}' AND partition = 2) AS next_offset`)).rows;
      const atBump = await countsOf2();
      const durable2 = pipeline.batcher.durableOffsetOf(2);

      await feed(pipeline.engine, messages.slice(half));
      await applied(pipeline.engine, messages.length);
      await pipeline.batcher.flush(60_000);
      assert.deepEqual(pipeline.fenced, [2], 'onFenced reported partition 2 once');
      assert.deepEqual(await countsOf2(), atBump, 'nothing of partition 2 was written after the bump');
      const outcomesOf2 = (await client.query<{ key: string }>("SELECT '2/' || tx_id AS key FROM tx_outcomes WHERE partition = 2")).rows.map((row) => row.key);
      assert.deepEqual(new Set(outcomesOf2), new Set([...pipeline.recorder.recorded].filter((key) => key.startsWith('2/'))), 'only what partition 2 committed was reported durable');
      assert.equal(pipeline.batcher.durableOffsetOf(2), durable2);
      assert.ok(logs.some((l) => l.startsWith('warn flush fenced')));
      assert.deepEqual(pipeline.runner.violations, []);
      const last = lastOffsets(messages);
      for (const p of [0, 1, 3]) assert.equal((await nextOffsets(client, TOPIC)).get(p), last.get(p)! + 1);
      assert.equal(pipeline.batcher.metrics.commandsDurable, messages.length, 'the ring was released past the fenced commands');
      assert.deepEqual(await ledgerMismatches(client, lookup(pipeline.engine), [0, 1, 3]), []);
    });
  } finally {
    await pipeline.close();
    await ledger.drop();
  }
});

test('a database failure is retried with backoff until it heals, and nothing is lost', { timeout: 180_000 }, async () => {
  const ledger = await createScratchLedger('tally_batcher', TOPIC, [0, 1, 2, 3]);
  const pipeline = await startPipeline(ledger.url, 300);
  try {
    const messages = workload(0xdead, 6_000);
    await feed(pipeline.engine, messages.slice(0, 2_000));
    await applied(pipeline.engine, 2_000);
    await pipeline.batcher.flush(60_000);
    await withClient(ledger.url, async (client) => {
      // A real database error: the journal is gone for a while.
      await client.query('ALTER TABLE journal RENAME TO journal_away');
      // Not awaited: with flushes failing, the output ring fills and the engine stops taking commands.
      const fed = feed(pipeline.engine, messages.slice(2_000));
      const failing = Date.now();
      while (pipeline.batcher.metrics.taskFailures < 4 && Date.now() - failing < 30_000) await new Promise((resolve) => setTimeout(resolve, 10));
      assert.ok(pipeline.batcher.metrics.taskFailures >= 4, 'flushes failed and were retried');
      assert.equal(pipeline.batcher.ready, false, 'not ready while flushes fail');
      assert.ok(logs.some((l) => l.startsWith('error flush failed; retrying the same batch') && l.includes('journal')), 'each failure is logged with its cause');
      await client.query('ALTER TABLE journal_away RENAME TO journal');
      await fed;
      await applied(pipeline.engine, messages.length);
      await pipeline.batcher.flush(60_000);
      assert.equal(pipeline.batcher.ready, true);
      assert.deepEqual(pipeline.runner.violations, []);
      await assertLedgerIsEngine(client, pipeline.engine, messages);
    });
  } finally {
    await pipeline.close();
    await ledger.drop();
  }
});

test('stopped and unleased partitions are not written; an admitted one is written from its admission on', { timeout: 60_000 }, async () => {
  const ledger = await createScratchLedger('tally_batcher', TOPIC, [0, 1, 2]);
  const engine = new InProcessEngine({ outputSlotCount: 1 << 12, balanceCapacity: 1 << 10, dedupWindow: 1 << 10, partitions: [0, 1, 2] });
  const pool = new FlushPool({ workers: 2 });
  const tokens = new Map<number, bigint>([[0, 1n], [1, 1n]]);
  const fenced: number[] = [];
  const recorder = new DurableRecorder();
  const batcher = new Batcher({
    ring: engine.ring, runner: pool, groupCount: 2, batchRowsMax: 50, batchIntervalMs: 1, topic: TOPIC, pgUrl: ledger.url,
    fencingTokenOf: (p) => tokens.get(p), onFenced: (ps) => fenced.push(...ps), onDurable: recorder.onDurable, log,
  });
  const deposits = (partition: number, count: number): void => {
    for (let i = 0; i < count; i++) {
      engine.apply({ partition, type: CommandType.Deposit, txId: `p${partition}-${engine.nextOffsetOf(partition)}`, account: 1000n + BigInt(partition), currency: 1, amount: 1n });
    }
    engine.publish();
  };
  try {
    batcher.start();
    batcher.stopPartitions([1]);
    deposits(0, 30);
    deposits(1, 30);
    deposits(2, 30); // partition 2 has no lease
    await batcher.flush(30_000);
    assert.deepEqual(fenced, [2], 'a partition without a fencing token is reported, not written');
    batcher.admitPartition(1);
    deposits(1, 20);
    deposits(0, 5);
    await batcher.flush(30_000);
    await withClient(ledger.url, async (client) => {
      const journal = await client.query<{ partition: number; first: number; last: number }>(
        'SELECT partition, min(kafka_offset)::int AS first, max(kafka_offset)::int AS last FROM journal GROUP BY partition ORDER BY partition');
      assert.deepEqual(journal.rows, [{ partition: 0, first: 0, last: 34 }, { partition: 1, first: 30, last: 49 }]);
      assert.deepEqual(await nextOffsets(client, TOPIC), new Map([[0, 35], [1, 50], [2, 0]]));
      assert.deepEqual((await client.query('SELECT partition, available::int FROM balances WHERE account >= 1000 ORDER BY partition')).rows,
        [{ partition: 0, available: 35 }, { partition: 1, available: 50 }], 'balances carry the engine state, which includes the unwritten commands');
      const outcomes = (await client.query<{ key: string }>("SELECT partition || '/' || tx_id AS key FROM tx_outcomes")).rows.map((row) => row.key);
      assert.deepEqual(new Set(outcomes), recorder.recorded, 'onDurable reports exactly the committed commands, none of the stopped or unleased partitions');
      assert.equal(recorder.recorded.size, 55);
    });
    assert.equal(batcher.durableOffsetOf(1), 49);
    assert.equal(batcher.durableOffsetOf(2), -1);
  } finally {
    await batcher.stop(5_000);
    await pool.close();
    await ledger.drop();
  }
});

test('at a trickle, one task writes a small batch for every group; the database still equals the engine', { timeout: 180_000 }, async () => {
  const ledger = await createScratchLedger('tally_batcher', TOPIC, [0, 1, 2, 3]);
  const pipeline = await startPipeline(ledger.url, 500);
  try {
    const messages = workload(0x7e1c, 600);
    // A few commands every few milliseconds: each batch is small and finds every group idle.
    for (let at = 0; at < messages.length; at += 20) {
      await feed(pipeline.engine, messages.slice(at, at + 20));
      await applied(pipeline.engine, Math.min(messages.length, at + 20));
      await pipeline.batcher.flush(30_000);
    }
    const { batcher, runner } = pipeline;
    assert.deepEqual(runner.violations, []);
    assert.ok(runner.wholeTasks >= 20, `${runner.wholeTasks} of ${runner.tasks} tasks wrote several groups' partitions`);
    assert.equal(batcher.metrics.commandsDurable, messages.length);
    await withClient(ledger.url, async (client) => {
      await assertLedgerIsEngine(client, pipeline.engine, messages);
    });
  } finally {
    await pipeline.close();
    await ledger.drop();
  }
});

/** A promise that stays pending until open() is called: holds a flush runner's tasks back. */
function closedGate(): { gate: Promise<void>; open: () => void } {
  let open: () => void = () => undefined;
  const gate = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { gate, open };
}

test('while a whole batch is in flight, a later batch of another group waits for it', { timeout: 60_000 }, async () => {
  const ledger = await createScratchLedger('tally_batcher', TOPIC, [0, 1]);
  const engine = new InProcessEngine({ outputSlotCount: 1 << 12, balanceCapacity: 1 << 10, dedupWindow: 1 << 10, partitions: [0, 1] });
  const pool = new FlushPool({ workers: 2 });
  const { gate, open } = closedGate();
  const started: number[][] = [];
  const runner: FlushRunner = {
    run: async (task) => {
      started.push([...task.partitions]);
      if (started.length === 1) await gate;
      return pool.run(task);
    },
  };
  const batcher = new Batcher({
    ring: engine.ring, runner, groupCount: 2, batchRowsMax: 50, batchIntervalMs: 1, topic: TOPIC, pgUrl: ledger.url,
    fencingTokenOf: () => 1n, log,
  });
  const deposits = (partition: number, count: number): void => {
    for (let i = 0; i < count; i++) {
      engine.apply({ partition, type: CommandType.Deposit, txId: `p${partition}-${engine.nextOffsetOf(partition)}`, account: 1000n + BigInt(partition), currency: 1, amount: 1n });
    }
    engine.publish();
  };
  try {
    deposits(0, 10);
    deposits(1, 10);
    const first = batcher.flush(30_000);
    assert.deepEqual(started, [[0, 1]], 'the small batch of both groups went out as one task');
    deposits(1, 5);
    const second = batcher.flush(30_000);
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(started.length, 1, "partition 1's later batch waits for the whole batch");
    open();
    await Promise.all([first, second]);
    assert.deepEqual(started, [[0, 1], [1]]);
    await withClient(ledger.url, async (client) => {
      assert.deepEqual(await nextOffsets(client, TOPIC), new Map([[0, 10], [1, 15]]));
      assert.deepEqual((await client.query('SELECT partition, available::int, last_offset::int FROM balances WHERE account >= 1000 ORDER BY partition')).rows,
        [{ partition: 0, available: 10, last_offset: 9 }, { partition: 1, available: 15, last_offset: 14 }]);
    });
  } finally {
    await batcher.stop(5_000);
    await pool.close();
    await ledger.drop();
  }
});

test('a later batch left with nothing to write after its group was fenced is released at once, not at the next cut', { timeout: 60_000 }, async () => {
  const ledger = await createScratchLedger('tally_batcher', TOPIC, [0, 1]);
  const engine = new InProcessEngine({ outputSlotCount: 1 << 14, balanceCapacity: 1 << 10, dedupWindow: 1 << 14, partitions: [0, 1] });
  const pool = new FlushPool({ workers: 2 });
  const { gate, open } = closedGate();
  // Group 0 (partition 0) waits at the gate; group 1 (partition 1) commits at once.
  const runner: FlushRunner = {
    run: async (task) => {
      if (task.partitions.includes(0)) await gate;
      return pool.run(task);
    },
  };
  const fenced: number[] = [];
  const batcher = new Batcher({
    ring: engine.ring, runner, groupCount: 2, batchRowsMax: 50_000, batchIntervalMs: 1, topic: TOPIC, pgUrl: ledger.url,
    fencingTokenOf: () => 1n, onFenced: (ps) => fenced.push(...ps), log,
  });
  batcher.start();
  // More commands than a whole batch takes, so each batch is split between the two groups.
  const deposits = (partition: number, count: number): void => {
    for (let i = 0; i < count; i++) {
      engine.apply({ partition, type: CommandType.Deposit, txId: `p${partition}-${engine.nextOffsetOf(partition)}`, account: 1000n + BigInt(partition), currency: 1, amount: 1n });
    }
    engine.publish();
  };
  const until = async (what: string, condition: () => boolean): Promise<void> => {
    const deadline = Date.now() + 10_000;
    while (!condition()) {
      assert.ok(Date.now() < deadline, what);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  };
  try {
    deposits(0, 600);
    deposits(1, 600);
    await until('batch A is cut', () => batcher.metrics.batchesCut === 1);
    deposits(0, 600);
    deposits(1, 600);
    await until('batch B is cut', () => batcher.metrics.batchesCut === 2);
    await until('group 1 committed partition 1 of both batches', () => batcher.durableOffsetOf(1) === 1199);
    // Another instance takes partition 0 while group 0's flush of batch A waits.
    await withClient(ledger.url, (client) => client.query('UPDATE partition_leases SET fencing_token = 2 WHERE topic = $1 AND partition = 0', [TOPIC]));
    open();
    await until('partition 0 is reported fenced', () => fenced.length === 1);
    // Batch B has nothing left to write for group 0; both batches are released with no further cut.
    await until('both batches are released', () => batcher.metrics.commandsDurable === 2400);
    assert.equal(batcher.metrics.batchesCut, 2);
  } finally {
    await batcher.stop(5_000);
    await pool.close();
    await ledger.drop();
  }
});

test('a flush in flight for longer than flushStalledMs makes the batcher not ready until it ends', { timeout: 60_000 }, async () => {
  const ledger = await createScratchLedger('tally_batcher', TOPIC, [0]);
  const engine = new InProcessEngine({ outputSlotCount: 1 << 10, balanceCapacity: 1 << 10, dedupWindow: 1 << 10, partitions: [0] });
  const pool = new FlushPool({ workers: 1 });
  const { gate, open } = closedGate();
  const runner: FlushRunner = { run: async (task) => { await gate; return pool.run(task); } };
  const batcher = new Batcher({
    ring: engine.ring, runner, groupCount: 1, batchRowsMax: 50, batchIntervalMs: 1, topic: TOPIC, pgUrl: ledger.url,
    fencingTokenOf: () => 1n, log, flushStalledMs: 300,
  });
  try {
    engine.apply({ partition: 0, type: CommandType.Deposit, txId: 'd1', account: 1000n, currency: 1, amount: 1n });
    engine.publish();
    const flushed = batcher.flush(30_000);
    assert.equal(batcher.ready, true, 'a flush just submitted is not stalled');
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.equal(batcher.ready, false, 'stalled past flushStalledMs');
    open();
    await flushed;
    assert.equal(batcher.ready, true);
  } finally {
    await batcher.stop(5_000);
    await pool.close();
    await ledger.drop();
  }
});
