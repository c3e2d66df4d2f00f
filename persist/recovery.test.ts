// Recovery round trip against the real PostgreSQL and a real engine worker: balances and tx
// outcomes written into a scratch database are read back with binary COPY, loaded into an
// EngineThread, and then every balance reads back exactly (u64 ids at and above 2^63, int64
// edges, system accounts on two partitions), a recovered tx_id with the same payload is a
// duplicate with its stored outcome and offset, a different payload is a conflict, and the
// dedup window evicts the oldest recovered tx_id first.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { EngineThread } from '../engine/engine_thread';
import { OutputDrain } from '../engine/output_drain';
import { CommandSlotViews, createCommandSlotViews, readCommandSlot } from '../engine/command_slot';
import { CurrencyRegistry } from '../engine/currency_registry';
import { decodeCommand } from '../engine/command_decoder';
import { homePartitionOfAccountDecimal } from '../engine/partitioner';
import { OUTCOME_FLAG_DUPLICATE, OUT_FLAGS_OFFSET, OUT_ORIGINAL_OFFSET_OFFSET, OUT_REASON_OFFSET, OUT_STATUS_OFFSET } from '../engine/output_layout';
import { PartitionLoadError } from '../engine/partition_loader';
import { RejectCode } from '../engine/reject_code';
import { Sequencer, YieldingWaitStrategy } from '../ringbuffer';
import { readOutcomes, recoverPartition } from './recovery';
import { createScratchDatabase } from './scratch_database';
import { testPgUrl } from '../io/test_services';

const PARTITIONS = 2;
const registry = CurrencyRegistry.fromConfig([{ code: 'USDT', scale: 8 }, { code: 'BTC', scale: 8 }]);
const USDT = registry.idOfCode('USDT');
const BTC = registry.idOfCode('BTC');
const I64_MAX = (1n << 63n) - 1n;
const I64_MIN = -(1n << 63n);
// Enough generated balances to grow the recovery row buffer many times and to make the
// engine sort them by table region before inserting.
const GENERATED_USERS = 150_000;
const DEDUP_WINDOW = 5000;
const GENERATED_OUTCOMES = 6000;
/** Every row of the fixture lies before this offset (the lease's next_offset). */
const NEXT_OFFSET = 1_000_000;

interface BalanceRow { partition: number; account: bigint; currency: number; available: bigint; frozen: bigint }
interface OutcomeRow { txId: string; offset: number; accepted: boolean; reason: string | null; message: Buffer }

const signed = (value: bigint): string => BigInt.asIntN(64, value).toString();

function homeOf(account: bigint): number {
  return homePartitionOfAccountDecimal(account.toString(), PARTITIONS);
}

function fixtureBalances(): BalanceRow[] {
  const rows: BalanceRow[] = [];
  const users = [1000n, 1001n, 4_294_967_296n, 1n << 63n, (1n << 63n) + 12345n, (1n << 64n) - 1n];
  users.forEach((account, i) => {
    rows.push({ partition: homeOf(account), account, currency: USDT, available: i === 0 ? I64_MAX : BigInt(i) * 1_000_000_007n, frozen: i === 1 ? I64_MAX : BigInt(i) });
    rows.push({ partition: homeOf(account), account, currency: BTC, available: 0n, frozen: BigInt(i) << 40n });
  });
  for (const partition of [0, 1]) {
    rows.push({ partition, account: 0n, currency: USDT, available: I64_MIN, frozen: 0n });
    rows.push({ partition, account: 0n, currency: BTC, available: -123_456_789_012n - BigInt(partition), frozen: I64_MIN + 1n });
    rows.push({ partition, account: 1n, currency: USDT, available: 77n + BigInt(partition), frozen: 0n });
    rows.push({ partition, account: 3n, currency: BTC, available: I64_MAX - BigInt(partition), frozen: -1n });
    rows.push({ partition, account: 999n, currency: USDT, available: 5n, frozen: 6n });
  }
  return rows;
}

/** The payload hash and tx_id hash the decoder gives a message. */
function decoderHashes(message: Buffer, partition: number, offset: number): { payloadHash: bigint } {
  const views = createCommandSlotViews(1, false);
  decodeCommand(message, partition, offset, PARTITIONS, registry, views, 0);
  return { payloadHash: readCommandSlot(views, 0).payloadHash };
}

function depositMessage(txId: string, amount: string): Buffer {
  return Buffer.from(JSON.stringify({ type: 'deposit', tx_id: txId, account: '1000', currency: 'USDT', amount }));
}

function fixtureOutcomes(): OutcomeRow[] {
  const rows: OutcomeRow[] = [
    { txId: 'tx-ascii-1', offset: 900_001, accepted: true, reason: null, message: depositMessage('tx-ascii-1', '5') },
    { txId: 'tx-€-rejected', offset: 900_002, accepted: false, reason: 'INSUFFICIENT_AVAILABLE', message: depositMessage('tx-€-rejected', '7.5') },
    { txId: '日本語のトランザクション', offset: 900_003, accepted: false, reason: 'WRONG_PARTITION', message: depositMessage('日本語のトランザクション', '1') },
    { txId: '€'.repeat(21) + 'x', offset: 900_004, accepted: true, reason: null, message: depositMessage('€'.repeat(21) + 'x', '0.00000001') },
    { txId: '🙂🙂-emoji', offset: 900_005, accepted: false, reason: 'LEGS_NOT_BALANCED', message: depositMessage('🙂🙂-emoji', '3') },
  ];
  // Older than the ones above; the window keeps the newest DEDUP_WINDOW of all of them.
  for (let i = 0; i < GENERATED_OUTCOMES; i++) {
    const txId = `gen-${i}`;
    rows.push({ txId, offset: 10 + i * 3, accepted: i % 5 !== 0, reason: i % 5 === 0 ? 'INSUFFICIENT_FROZEN' : null, message: depositMessage(txId, String(1 + (i % 97))) });
  }
  return rows;
}

async function writeFixture(client: pg.Client, balances: BalanceRow[], outcomes: OutcomeRow[]): Promise<void> {
  await client.query("INSERT INTO currencies (id, code, scale) VALUES ($1, 'USDT', 8), ($2, 'BTC', 8)", [USDT, BTC]);
  for (const b of balances) {
    await client.query('INSERT INTO balances VALUES ($1, $2, $3, $4, $5, $6)', [b.partition, signed(b.account), b.currency, b.available.toString(), b.frozen.toString(), 500]);
  }
  // Generated user balances on partition 0, enough to grow the recovery row buffer.
  await client.query(`INSERT INTO balances SELECT 0, 10000 + g, $1, g * 11, g, g FROM generate_series(1, ${GENERATED_USERS}) g`, [USDT]);
  const hashes = outcomes.map((o) => signed(decoderHashes(o.message, 0, o.offset).payloadHash));
  await client.query(
    'INSERT INTO tx_outcomes SELECT 0, * FROM unnest($1::text[], $2::bigint[], $3::boolean[], $4::text[], $5::bigint[])',
    [outcomes.map((o) => o.txId), outcomes.map((o) => o.offset), outcomes.map((o) => o.accepted), outcomes.map((o) => o.reason), hashes]);
}

interface Outcome { status: number; reason: number; flags: number; originalOffset: number }

/** Feeds messages of partition 0 through the real command ring; returns their outcomes. */
class Feeder {
  private readonly sequencer: Sequencer;
  private readonly views: CommandSlotViews;
  private readonly drain: OutputDrain;
  private nextOffset = NEXT_OFFSET;

  constructor(private readonly engine: EngineThread) {
    this.sequencer = engine.commandRing.acquireSequencer(new YieldingWaitStrategy(100));
    this.views = new CommandSlotViews(engine.commandRing.data);
    this.drain = new OutputDrain(engine.outputRing);
  }

  async feed(message: Buffer): Promise<Outcome> {
    const sequence = this.sequencer.claim(1);
    decodeCommand(message, 0, this.nextOffset++, PARTITIONS, registry, this.views, this.engine.commandRing.slotOffset(sequence));
    this.sequencer.publish(sequence);
    const bytes = new Uint8Array(this.engine.outputRing.data);
    const floats = new Float64Array(this.engine.outputRing.data);
    let outcome: Outcome | undefined;
    while (outcome === undefined) {
      this.drain.drain((ring, position) => {
        const at = ring.slotOffset(position);
        outcome = { status: bytes[at + OUT_STATUS_OFFSET]!, reason: bytes[at + OUT_REASON_OFFSET]!, flags: bytes[at + OUT_FLAGS_OFFSET]!, originalOffset: floats[(at + OUT_ORIGINAL_OFFSET_OFFSET) >> 3]! };
      });
      if (outcome === undefined) await new Promise((resolve) => setImmediate(resolve));
    }
    return outcome;
  }
}

async function startEngine(balanceCapacity: number): Promise<EngineThread> {
  return EngineThread.start({ commandSlotCount: 64, outputSlotCount: 512, balanceCapacity, dedupWindow: DEDUP_WINDOW });
}

test('balances and outcomes recovered from PostgreSQL load into the engine exactly', { timeout: 120_000 }, async () => {
  const scratch = await createScratchDatabase(testPgUrl, 'tally_recovery');
  const client = new pg.Client({ connectionString: scratch.url });
  await client.connect();
  const engine = await startEngine(GENERATED_USERS + 1024);
  try {
    const balances = fixtureBalances();
    const outcomes = fixtureOutcomes();
    await writeFixture(client, balances, outcomes);
    const recovered0 = await recoverPartition(scratch.url, engine, { partition: 0, nextOffset: NEXT_OFFSET, dedupWindow: DEDUP_WINDOW, copyStreams: 1 });
    const recovered1 = await recoverPartition(scratch.url, engine, { partition: 1, nextOffset: NEXT_OFFSET, dedupWindow: DEDUP_WINDOW });
    const onPartition = (p: number): number => balances.filter((b) => b.partition === p).length;
    assert.equal(recovered0.report.loaded!.balanceCount, onPartition(0) + GENERATED_USERS);
    assert.equal(recovered1.report.loaded!.balanceCount, onPartition(1));
    assert.equal(recovered0.report.loaded!.outcomeCount, DEDUP_WINDOW, 'the newest window of outcomes');
    assert.equal(recovered1.report.loaded!.outcomeCount, 0);

    const reader = engine.tableReader();
    assert.equal(reader.count, balances.length + GENERATED_USERS);
    for (const b of balances) {
      const system = b.account < 1000n;
      const reading = reader.readBalance(b.account, b.currency, system ? b.partition : undefined);
      assert.ok(reading !== undefined, `balance of ${b.account}/${b.currency} on partition ${b.partition} was loaded`);
      assert.deepEqual([reading.available, reading.frozen], [b.available, b.frozen], `balance of ${b.account}/${b.currency} on partition ${b.partition}`);
    }
    for (let g = 1; g <= GENERATED_USERS; g++) {
      const reading = reader.readBalance(BigInt(10000 + g), USDT);
      if (reading?.available !== BigInt(g * 11) || reading.frozen !== BigInt(g)) assert.fail(`generated balance ${10000 + g} reads back as ${reading?.available}/${reading?.frozen}`);
    }
    assert.deepEqual(reader.systemPartitions(), [0, 1]);

    const feeder = new Feeder(engine);
    for (const o of outcomes.slice(0, 5)) {
      const replay = await feeder.feed(o.message);
      assert.equal(replay.flags & OUTCOME_FLAG_DUPLICATE, OUTCOME_FLAG_DUPLICATE, `${o.txId} is a duplicate`);
      assert.equal(replay.status, o.accepted ? 1 : 2, `${o.txId} keeps its status`);
      assert.equal(replay.reason, o.accepted ? RejectCode.None : reasonCode(o.reason!), `${o.txId} keeps its reason`);
      assert.equal(replay.originalOffset, o.offset, `${o.txId} points at its original offset`);
      const conflict = await feeder.feed(depositMessage(o.txId, '999'));
      assert.deepEqual([conflict.status, conflict.reason, conflict.flags & OUTCOME_FLAG_DUPLICATE], [2, RejectCode.DuplicateTxIdConflict, 0], `${o.txId} with another payload`);
    }
    await checkWindowEdges(feeder, outcomes);

    const again = await startEngine(GENERATED_USERS + 1024);
    try {
      // Three COPYs over heap ranges this time, on one exported snapshot: the same rows.
      const split = await recoverPartition(scratch.url, again, { partition: 0, nextOffset: NEXT_OFFSET, dedupWindow: DEDUP_WINDOW, copyStreams: 3 });
      assert.equal(split.balances.count, recovered0.balances.count);
      const reloaded = await recoverPartition(scratch.url, again, { partition: 1, nextOffset: NEXT_OFFSET, dedupWindow: DEDUP_WINDOW });
      assert.equal(reloaded.report.stateHash, recovered1.report.stateHash, 'recovering the same rows gives the same state hash');

      // Handing partition 0 back (it applied commands since its load) and taking it again
      // from the database gives exactly a fresh engine's state; partition 1 is untouched.
      const released = await engine.releasePartition(0);
      assert.ok(released.zeroed! > GENERATED_USERS, `partition 0's balances zeroed (${released.zeroed})`);
      assert.equal(reader.readBalance(10001n, USDT)?.available ?? 0n, 0n, 'a released balance reads as zero');
      assert.deepEqual(reader.readBalance(0n, BTC, 1)?.frozen, I64_MIN + 1n, "partition 1's system balance is untouched");
      await recoverPartition(scratch.url, engine, { partition: 0, nextOffset: NEXT_OFFSET, dedupWindow: DEDUP_WINDOW });
      assert.equal((await engine.report()).stateHash, reloaded.report.stateHash, 'release and reload equal a fresh load');
      assert.equal(reader.readBalance(10001n, USDT)?.available, 11n);
    } finally {
      await again.stop();
    }
  } finally {
    await engine.stop();
    await client.end();
    await scratch.drop();
  }
});

/**
 * The window holds the five newest outcomes and gen-1005 … gen-5999 (6005 rows, window
 * 5000): gen-1004 and older were never loaded. Loaded oldest first, so the next new tx_id evicts
 * gen-1005, the oldest loaded one; gen-1006 stays.
 */
async function checkWindowEdges(feeder: Feeder, outcomes: OutcomeRow[]): Promise<void> {
  const generated = (i: number): OutcomeRow => outcomes[5 + i]!;
  const notLoaded = await feeder.feed(generated(1004).message);
  assert.equal(notLoaded.flags & OUTCOME_FLAG_DUPLICATE, 0, 'gen-1004 is older than the window: applied as new');
  // That new command took one place and evicted the oldest loaded entry, gen-1005.
  const evicted = await feeder.feed(generated(1005).message);
  assert.equal(evicted.flags & OUTCOME_FLAG_DUPLICATE, 0, 'gen-1005 was the oldest loaded entry and went first');
  const kept = await feeder.feed(generated(1008).message);
  assert.equal(kept.flags & OUTCOME_FLAG_DUPLICATE, OUTCOME_FLAG_DUPLICATE, 'gen-1008 is still in the window');
  assert.equal(kept.originalOffset, generated(1008).offset);
}

function reasonCode(name: string): number {
  return { INSUFFICIENT_AVAILABLE: RejectCode.InsufficientAvailable, WRONG_PARTITION: RejectCode.WrongPartition, LEGS_NOT_BALANCED: RejectCode.LegsNotBalanced, INSUFFICIENT_FROZEN: RejectCode.InsufficientFrozen }[name]!;
}

test('recovery reports a full table, a second load, a balance on two partitions, a bad reason and rows beyond next_offset clearly', { timeout: 120_000 }, async () => {
  const scratch = await createScratchDatabase(testPgUrl, 'tally_recovery');
  const client = new pg.Client({ connectionString: scratch.url });
  await client.connect();
  const engine = await startEngine(1024);
  try {
    await client.query("INSERT INTO currencies (id, code, scale) VALUES (1, 'USDT', 8)");
    await client.query('INSERT INTO balances SELECT 0, 10000 + g, 1, g, 0, g FROM generate_series(1, 2000) g');
    await client.query('INSERT INTO balances SELECT 1, 20000 + g, 1, g, 0, g FROM generate_series(1, 10) g');
    await client.query('INSERT INTO balances VALUES (5, 20007, 1, 70, 0, 3)');
    await client.query("INSERT INTO tx_outcomes VALUES (1, 'a', 5, true, NULL, 1), (2, 'b', 5, false, 'NO_SUCH_REASON', 1), (3, 'c', 5, true, 'BAD_AMOUNT', 1)");
    await client.end();
    await assert.rejects(recoverPartition(scratch.url, engine, { partition: 0, nextOffset: NEXT_OFFSET, dedupWindow: DEDUP_WINDOW }),
      (error: Error) => error instanceof PartitionLoadError && /balance table full: partition 0 has 2000 balances but only 1024 fit/.test(error.message));
    await assert.rejects(recoverPartition(scratch.url, engine, { partition: 1, nextOffset: 10, dedupWindow: DEDUP_WINDOW }), /rows from offset 10 but its lease says next_offset 10/);
    await recoverPartition(scratch.url, engine, { partition: 1, nextOffset: 11, dedupWindow: DEDUP_WINDOW });
    await assert.rejects(recoverPartition(scratch.url, engine, { partition: 1, nextOffset: 11, dedupWindow: DEDUP_WINDOW }),
      (error: Error) => error instanceof PartitionLoadError && /partition 1 is already assigned/.test(error.message));
    await assert.rejects(recoverPartition(scratch.url, engine, { partition: 5, nextOffset: 11, dedupWindow: DEDUP_WINDOW }),
      (error: Error) => error instanceof PartitionLoadError && /partition 5: the balance of account 20007 currency 1 is already in the table/.test(error.message));
    for (const [partition, message] of [[2, /tx_id "b" has accepted=false with an unknown or inconsistent reason/], [3, /tx_id "c" has accepted=true with an unknown or inconsistent reason/]] as const) {
      // A failed COPY leaves its connection in an unknown state: one connection per attempt.
      const reading = new pg.Client({ connectionString: scratch.url });
      await reading.connect();
      await assert.rejects(readOutcomes(reading, partition, DEDUP_WINDOW), message);
      await reading.end();
    }
  } finally {
    await engine.stop();
    await scratch.drop();
  }
});
