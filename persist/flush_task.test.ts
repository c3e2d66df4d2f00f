// The flush task against the real PostgreSQL, called in-process on engine output in a real
// output ring: what each kind of outcome writes, the fenced update, an idempotent retry of a
// flush that had committed, partition selection, a tx_id recorded twice in one batch, and
// binary and text COPY writing the same ledger.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { attach } from '../engine/balance_table';
import { CommandType } from '../engine/command_layout';
import { OUTPUT_SLOT_BYTES } from '../engine/output_layout';
import { RejectCode } from '../engine/reject_code';
import { InProcessEngine } from './engine_fixture';
import flush, { FlushTask, closeFlushConnection } from './flush_task';
import { createScratchLedger, ledgerMismatches, nextOffsets, withClient } from './test_ledger';
import type pg from 'pg';

const TOPIC = 'tally.commands';
const USDT = 1;
const BTC = 2;
const U64_MAX = (1n << 64n) - 1n;

after(() => closeFlushConnection());

/** A mix with every kind of outcome on partition 0 and a few deposits on partition 1. */
function mixedCommands(engine: InProcessEngine): { recorded: number; last: number } {
  const p0 = { partition: 0, accountHome: 0, counterHome: 0 };
  const commands = [
    { ...p0, type: CommandType.Deposit, txId: 'd1', account: 1001n, currency: USDT, amount: 100_00000000n },
    { ...p0, type: CommandType.Deposit, txId: 'd2', account: 1001n, currency: BTC, amount: 5_00000000n },
    { ...p0, type: CommandType.Withdraw, txId: 'w1', account: 1001n, currency: USDT, amount: 30_00000000n },
    { ...p0, type: CommandType.Freeze, txId: 'f1', account: 1001n, currency: USDT, amount: 20_00000000n },
    { ...p0, type: CommandType.Unfreeze, txId: 'u1', account: 1001n, currency: USDT, amount: 5_00000000n },
    { ...p0, type: CommandType.Transfer, txId: 't1', account: 1001n, counterAccount: 1003n, currency: USDT, amount: 7_00000000n },
    { ...p0, type: CommandType.Transfer, txId: 't-self', account: 1001n, counterAccount: 1001n, currency: USDT, amount: 1_00000000n },
    { ...p0, type: CommandType.Settle, txId: 's1', account: 1001n, legs: [
      { account: 1001n, currency: USDT, home: 0, available: 0n, frozen: -10_00000000n },
      { account: 1n, currency: USDT, home: 0, available: 1000000n, frozen: 0n },
      { account: 2n, currency: USDT, home: 0, available: 9_99000000n, frozen: 0n },
      { account: 2n, currency: BTC, home: 0, available: -1000000n, frozen: 0n },
      { account: 1001n, currency: BTC, home: 0, available: 1000000n, frozen: 0n },
    ] },
    { ...p0, type: CommandType.Withdraw, txId: 'w-too-much', account: 1001n, currency: USDT, amount: 1000_00000000n },
    { ...p0, type: CommandType.Deposit, txId: 'd1', account: 1001n, currency: USDT, amount: 100_00000000n }, // duplicate replay
    { ...p0, type: CommandType.Deposit, txId: 'd1', account: 1001n, currency: USDT, amount: 1n }, // conflict, not recorded
    { ...p0, type: CommandType.Deposit, txId: '', account: 1001n, currency: USDT, amount: 1n, rejectCode: RejectCode.Malformed }, // no tx_id
    { ...p0, type: CommandType.Deposit, txId: 'ünï-€-💰', account: U64_MAX, currency: USDT, amount: 3n },
    { ...p0, type: CommandType.Deposit, txId: 'x'.repeat(64), account: 1002n, currency: USDT, amount: 0n, rejectCode: RejectCode.BadAmount },
    { partition: 1, accountHome: 1, type: CommandType.Deposit, txId: 'd1', account: 2001n, currency: USDT, amount: 9n },
    { partition: 1, accountHome: 1, type: CommandType.Deposit, txId: 'd2', account: 2001n, currency: BTC, amount: 8n },
  ];
  for (const command of commands) engine.apply(command);
  engine.publish();
  // Recorded: all but the duplicate replay, the conflict and the command without tx_id.
  return { recorded: commands.length - 3, last: engine.ring.publishedSequence() };
}

function taskOver(engine: InProcessEngine, url: string, firstPosition: number, lastPosition: number, partitions: number[], tokens?: string[]): FlushTask {
  return {
    ringData: engine.ring.data, slotCount: engine.ring.slotCount, slotBytes: OUTPUT_SLOT_BYTES, firstPosition, lastPosition,
    partitions, fencingTokens: tokens ?? partitions.map(() => '1'), topic: TOPIC, pgUrl: url,
  };
}

function engineLookup(engine: InProcessEngine) {
  const reader = attach(engine.table.descriptor());
  return (account: bigint, currency: number, partition: number) => reader.readBalance(account, currency, partition);
}

async function tableDump(client: pg.Client): Promise<unknown[]> {
  const dump: unknown[] = [];
  for (const table of ['balances', 'journal', 'tx_outcomes', 'tx_replies', 'partition_leases']) {
    dump.push((await client.query(`SELECT * FROM ${table} ORDER BY 1, 2, 3`)).rows);
  }
  return dump;
}

test('a flush writes each outcome as designed and moves the fenced offset', { timeout: 60_000 }, async () => {
  const ledger = await createScratchLedger('tally_flush', TOPIC, [0, 1]);
  try {
    const engine = new InProcessEngine({ outputSlotCount: 1024, balanceCapacity: 1024, dedupWindow: 1024, partitions: [0, 1] });
    const { recorded, last } = mixedCommands(engine);
    const result = await flush(taskOver(engine, ledger.url, 0, last, [0, 1]));
    assert.equal(result.status, 'committed');
    assert.deepEqual(result.partitions, [0, 1]);
    assert.deepEqual(result.lastOffsets, [engine.nextOffsetOf(0) - 1, 1]);
    assert.equal(result.outcomeRows, recorded);
    await withClient(ledger.url, async (client) => {
      assert.deepEqual(await ledgerMismatches(client, engineLookup(engine)), []);
      assert.equal(Number((await client.query('SELECT count(*) FROM balances')).rows[0].count), engine.table.count);
      assert.deepEqual([...(await nextOffsets(client, TOPIC)).entries()].sort(), [[0, engine.nextOffsetOf(0)], [1, 2]]);
      const outcomes = await client.query<{ tx_id: string; accepted: boolean; reason: string | null }>(
        'SELECT tx_id, accepted, reason FROM tx_outcomes WHERE partition = 0 ORDER BY kafka_offset');
      assert.equal(outcomes.rows.filter((r) => r.tx_id === 'd1').length, 1, 'the duplicate replay and the conflict wrote no outcome');
      // They, and the message without a tx_id, are in tx_replies: what their events said.
      const d1Offset = Number((await client.query("SELECT kafka_offset FROM tx_outcomes WHERE partition = 0 AND tx_id = 'd1'")).rows[0].kafka_offset);
      const replies = await client.query<{ tx_id: string; accepted: boolean; reason: string | null; original_offset: string | null }>(
        'SELECT tx_id, accepted, reason, original_offset FROM tx_replies ORDER BY partition, kafka_offset');
      assert.deepEqual(replies.rows, [
        { tx_id: 'd1', accepted: true, reason: null, original_offset: String(d1Offset) },
        { tx_id: 'd1', accepted: false, reason: 'DUPLICATE_TX_ID_CONFLICT', original_offset: null },
        { tx_id: '', accepted: false, reason: 'MALFORMED', original_offset: null },
      ]);
      assert.deepEqual(outcomes.rows.find((r) => r.tx_id === 'w-too-much'), { tx_id: 'w-too-much', accepted: false, reason: 'INSUFFICIENT_AVAILABLE' });
      assert.deepEqual(outcomes.rows.find((r) => r.tx_id === 'x'.repeat(64)), { tx_id: 'x'.repeat(64), accepted: false, reason: 'BAD_AMOUNT' });
      assert.equal(outcomes.rows.find((r) => r.tx_id === 'ünï-€-💰')?.accepted, true);
      const kinds = await client.query<{ tx_id: string; kinds: number[] }>(
        "SELECT tx_id, array_agg(kind ORDER BY leg_index) AS kinds FROM journal WHERE partition = 0 AND tx_id IN ('d1', 'w1', 'f1', 't1', 't-self', 's1') GROUP BY tx_id ORDER BY tx_id");
      assert.deepEqual(kinds.rows.map((r) => [r.tx_id, r.kinds]), [
        ['d1', [10, 11]], ['f1', [30]], ['s1', [60, 61, 61, 61, 60]], ['t-self', [50, 50]], ['t1', [50, 51]], ['w1', [20, 21]]]);
      const max = await client.query("SELECT tally_account_text(account) AS account, available::text FROM balances WHERE account = -1");
      assert.deepEqual(max.rows, [{ account: U64_MAX.toString(), available: '3' }]);

      // The same task again, as after a COMMIT whose answer was lost: nothing changes.
      const before = await tableDump(client);
      const again = await flush(taskOver(engine, ledger.url, 0, last, [0, 1]));
      assert.equal(again.status, 'committed');
      assert.equal(again.commandCount, 0);
      assert.equal(again.skippedCommandCount, engine.nextOffsetOf(0) + 2);
      assert.deepEqual(await tableDump(client), before);
    });
  } finally {
    await closeFlushConnection();
    await ledger.drop();
  }
});

test('a flush extends the lease expiry of the partitions it advances (renewals skip rows a flush holds)', { timeout: 60_000 }, async () => {
  const ledger = await createScratchLedger('tally_flush_expiry', TOPIC, [0, 1]);
  try {
    const engine = new InProcessEngine({ outputSlotCount: 1024, balanceCapacity: 1024, dedupWindow: 1024, partitions: [0, 1] });
    const { last } = mixedCommands(engine);
    await withClient(ledger.url, async (client) => {
      await client.query("UPDATE partition_leases SET lease_expiry = now() - interval '1 hour' WHERE topic = $1", [TOPIC]);
      const result = await flush({ ...taskOver(engine, ledger.url, 0, last, [0]), leaseTtlMs: 60_000 });
      assert.equal(result.status, 'committed');
      const rows = await client.query<{ partition: number; ahead_s: number }>(
        'SELECT partition, extract(epoch FROM lease_expiry - now())::float8 AS ahead_s FROM partition_leases WHERE topic = $1 ORDER BY partition', [TOPIC]);
      assert.ok(rows.rows[0]!.ahead_s > 50 && rows.rows[0]!.ahead_s <= 60, `partition 0's lease runs a TTL from the flush (${rows.rows[0]!.ahead_s} s)`);
      assert.ok(rows.rows[1]!.ahead_s < -3000, 'partition 1, not in the task, is left as it was');
      // An expiry already further ahead is never shortened.
      await client.query("UPDATE partition_leases SET lease_expiry = now() + interval '1 hour' WHERE topic = $1 AND partition = 1", [TOPIC]);
      await flush({ ...taskOver(engine, ledger.url, 0, last, [1]), leaseTtlMs: 60_000 });
      const later = await client.query<{ ahead_s: number }>('SELECT extract(epoch FROM lease_expiry - now())::float8 AS ahead_s FROM partition_leases WHERE topic = $1 AND partition = 1', [TOPIC]);
      assert.ok(later.rows[0]!.ahead_s > 3500, 'a longer expiry stays');
    });
  } finally {
    await closeFlushConnection();
    await ledger.drop();
  }
});

test('a flush writes only its partitions, and a fenced one writes nothing at all', { timeout: 60_000 }, async () => {
  const ledger = await createScratchLedger('tally_flush', TOPIC, [0, 1]);
  try {
    const engine = new InProcessEngine({ outputSlotCount: 1024, balanceCapacity: 1024, dedupWindow: 1024, partitions: [0, 1] });
    const { last } = mixedCommands(engine);
    await withClient(ledger.url, async (client) => {
      await client.query('UPDATE partition_leases SET fencing_token = 2 WHERE partition = 1');
      const fenced = await flush(taskOver(engine, ledger.url, 0, last, [0, 1]));
      assert.equal(fenced.status, 'fenced');
      assert.deepEqual(fenced.fencedPartitions, [1]);
      for (const table of ['balances', 'journal', 'tx_outcomes', 'tx_replies']) assert.equal(Number((await client.query(`SELECT count(*) FROM ${table}`)).rows[0].count), 0, table);
      assert.deepEqual([...(await nextOffsets(client, TOPIC)).values()], [0, 0]);

      const only0 = await flush(taskOver(engine, ledger.url, 0, last, [0]));
      assert.equal(only0.status, 'committed');
      assert.deepEqual((await client.query('SELECT DISTINCT partition FROM journal')).rows, [{ partition: 0 }]);
      const only1 = await flush(taskOver(engine, ledger.url, 0, last, [1], ['2']));
      assert.equal(only1.status, 'committed');
      assert.deepEqual(await ledgerMismatches(client, engineLookup(engine)), []);
      assert.deepEqual([...(await nextOffsets(client, TOPIC)).entries()].sort(), [[0, engine.nextOffsetOf(0)], [1, 2]]);
    });
  } finally {
    await closeFlushConnection();
    await ledger.drop();
  }
});

test('a tx_id recorded again after it left the dedup window keeps its newest outcome', { timeout: 60_000 }, async () => {
  const ledger = await createScratchLedger('tally_flush', TOPIC, [0]);
  try {
    const engine = new InProcessEngine({ outputSlotCount: 1024, balanceCapacity: 1024, dedupWindow: 2, partitions: [0] });
    const deposit = (txId: string, amount: bigint) => engine.apply({ partition: 0, type: CommandType.Deposit, txId, account: 1001n, currency: USDT, amount });
    deposit('again', 5n);
    deposit('a', 1n);
    deposit('b', 1n);
    deposit('again', 5n); // the window (2) forgot it: applied and recorded again, in the same batch
    engine.publish();
    const result = await flush(taskOver(engine, ledger.url, 0, engine.ring.publishedSequence(), [0]));
    assert.equal(result.status, 'committed');
    await withClient(ledger.url, async (client) => {
      assert.deepEqual((await client.query("SELECT kafka_offset::int FROM tx_outcomes WHERE tx_id = 'again'")).rows, [{ kafka_offset: 3 }]);
      const first = engine.ring.publishedSequence() + 1;
      deposit('c', 1n);
      deposit('d', 1n);
      deposit('again', 5n); // forgotten once more, recorded in a later batch
      engine.publish();
      assert.equal((await flush(taskOver(engine, ledger.url, first, engine.ring.publishedSequence(), [0]))).status, 'committed');
      assert.deepEqual((await client.query("SELECT kafka_offset::int FROM tx_outcomes WHERE tx_id = 'again'")).rows, [{ kafka_offset: 6 }]);
      // The outcomes displaced (offset 0, older in the first batch; offset 3, moved by the
      // second) stay announceable: a republish from below them reads them from tx_replies.
      assert.deepEqual((await client.query("SELECT kafka_offset::int, accepted, reason, original_offset FROM tx_replies WHERE tx_id = 'again' ORDER BY kafka_offset")).rows,
        [{ kafka_offset: 0, accepted: true, reason: null, original_offset: null }, { kafka_offset: 3, accepted: true, reason: null, original_offset: null }]);
      const balance = (await client.query('SELECT available::int FROM balances WHERE account = 1001')).rows;
      assert.deepEqual(balance, [{ available: 19 }]);
    });
  } finally {
    await closeFlushConnection();
    await ledger.drop();
  }
});

test('a batch written again past a broken offset guard is refused by the database, not journalled twice', { timeout: 60_000 }, async () => {
  const ledger = await createScratchLedger('tally_flush', TOPIC, [0, 1]);
  try {
    const engine = new InProcessEngine({ outputSlotCount: 1024, balanceCapacity: 1024, dedupWindow: 1024, partitions: [0, 1] });
    const { last } = mixedCommands(engine);
    assert.equal((await flush(taskOver(engine, ledger.url, 0, last, [0, 1]))).status, 'committed');
    await withClient(ledger.url, async (client) => {
      const before = await tableDump(client);
      // The guard that skips durable commands, broken: the stored next offsets say nothing was written.
      await client.query('UPDATE partition_leases SET next_offset = 0');
      await assert.rejects(flush(taskOver(engine, ledger.url, 0, last, [0, 1])), /at or below the offset already stored for their tx_id: those commands were written before/);
      await client.query(`UPDATE partition_leases SET next_offset = CASE partition WHEN 0 THEN ${engine.nextOffsetOf(0)} ELSE 2 END`);
      assert.deepEqual(await tableDump(client), before, 'nothing of the refused flush was written');
    });
  } finally {
    await closeFlushConnection();
    await ledger.drop();
  }
});

test('a rewrite hidden behind a newer outcome of the same tx_id in the batch is refused too', { timeout: 60_000 }, async () => {
  const ledger = await createScratchLedger('tally_flush', TOPIC, [0]);
  try {
    // A window of 2: 'x' is applied at offset 0 and again at offset 3, after it left the window.
    const engine = new InProcessEngine({ outputSlotCount: 1024, balanceCapacity: 1024, dedupWindow: 2, partitions: [0] });
    const deposit = (txId: string) => engine.apply({ partition: 0, type: CommandType.Deposit, txId, account: 1001n, currency: USDT, amount: 5n });
    const second = (deposit('x'), deposit('a'));
    deposit('b');
    deposit('x');
    engine.publish();
    // Offset 0 alone is durable (outcome x@0); then the offset guard is broken and the whole batch written again:
    // its newest x (offset 3) is above the stored one, the x at offset 0 is not.
    assert.equal((await flush(taskOver(engine, ledger.url, 0, second - 1, [0]))).status, 'committed');
    await withClient(ledger.url, async (client) => {
      const before = await tableDump(client);
      await client.query('UPDATE partition_leases SET next_offset = 0');
      await assert.rejects(flush(taskOver(engine, ledger.url, 0, engine.ring.publishedSequence(), [0])), /at or below the offset already stored for their tx_id/);
      await client.query('UPDATE partition_leases SET next_offset = 1');
      assert.deepEqual(await tableDump(client), before, 'the legs of offset 0 were not written twice');
    });
  } finally {
    await closeFlushConnection();
    await ledger.drop();
  }
});

test('binary and text COPY write the same ledger', { timeout: 60_000 }, async () => {
  const engine = new InProcessEngine({ outputSlotCount: 1024, balanceCapacity: 1024, dedupWindow: 1024, partitions: [0, 1] });
  const { last } = mixedCommands(engine);
  const dumps: unknown[] = [];
  for (const copyFormat of ['binary', 'text'] as const) {
    const ledger = await createScratchLedger('tally_flush', TOPIC, [0, 1]);
    try {
      const result = await flush({ ...taskOver(engine, ledger.url, 0, last, [0, 1]), copyFormat });
      assert.equal(result.status, 'committed');
      dumps.push(await withClient(ledger.url, tableDump));
    } finally {
      await closeFlushConnection();
      await ledger.drop();
    }
  }
  assert.deepEqual(dumps[1], dumps[0]);
});

test('a currency id missing from the database fails the flush, and currencies are append-only', { timeout: 60_000 }, async () => {
  const ledger = await createScratchLedger('tally_flush', TOPIC, [0]);
  try {
    const engine = new InProcessEngine({ outputSlotCount: 64, balanceCapacity: 64, dedupWindow: 64, partitions: [0] });
    engine.apply({ partition: 0, type: CommandType.Deposit, txId: 'd-unknown', account: 1001n, currency: 5, amount: 1n });
    engine.publish();
    await assert.rejects(flush(taskOver(engine, ledger.url, 0, engine.ring.publishedSequence(), [0])), /currency ids 5 are not in the currencies table/);
    await withClient(ledger.url, async (client) => {
      assert.equal(Number((await client.query('SELECT count(*) FROM journal')).rows[0].count), 0);
      await client.query("INSERT INTO currencies (id, code, scale) VALUES (5, 'DOGE', 8)");
      assert.equal((await flush(taskOver(engine, ledger.url, 0, engine.ring.publishedSequence(), [0]))).status, 'committed');
      await assert.rejects(client.query('UPDATE currencies SET scale = 2 WHERE id = 5'), /currencies are append-only/);
      await assert.rejects(client.query('DELETE FROM currencies WHERE id = 5'), /currencies are append-only/);
      await assert.rejects(client.query('TRUNCATE currencies'), /currencies are append-only/);
    });
  } finally {
    await closeFlushConnection();
    await ledger.drop();
  }
});

// A TCP proxy to PostgreSQL whose connections can be frozen: bytes stop flowing both ways
// and nothing is closed, as when the database host dies or the network partitions. Armed
// with a pattern, it freezes the connection right after forwarding the client's bytes that
// contain it (so the server is mid-transaction, holding its locks).
async function freezableProxy(target: URL): Promise<{ url: string; freezeAfter(pattern: string): void; close(): Promise<void> }> {
  const all: net.Socket[] = [];
  let armed: Buffer | undefined;
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port || 5432), target.hostname);
    all.push(client, upstream);
    client.on('data', (chunk: Buffer) => {
      upstream.write(chunk);
      if (armed !== undefined && chunk.includes(armed)) {
        armed = undefined;
        client.pause();
        upstream.pause();
        client.removeAllListeners('data');
        upstream.removeAllListeners('data');
        // Partitioned: the server never learns that the client side went away.
        client.removeAllListeners('close').removeAllListeners('error').on('error', () => undefined);
      }
    });
    upstream.on('data', (chunk: Buffer) => client.write(chunk));
    const end = (): void => { client.destroy(); upstream.destroy(); };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = new URL(target.toString());
  url.hostname = '127.0.0.1';
  url.port = String((server.address() as net.AddressInfo).port);
  return {
    url: url.toString(),
    freezeAfter: (pattern) => { armed = Buffer.from(pattern); },
    close: async () => {
      for (const socket of all) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

test('a flush whose connection stops answering mid-COPY (no close, no error) fails at its deadline, and the retry ends the orphaned session and commits', { timeout: 60_000 }, async () => {
  const ledger = await createScratchLedger('tally_flush', TOPIC, [0, 1]);
  const proxy = await freezableProxy(new URL(ledger.url));
  try {
    const engine = new InProcessEngine({ outputSlotCount: 1024, balanceCapacity: 1024, dedupWindow: 1024, partitions: [0, 1] });
    const deposit = (txId: string): number => engine.apply({ partition: 0, accountHome: 0, type: CommandType.Deposit, txId, account: 1001n, currency: USDT, amount: 5n });
    deposit('before');
    engine.publish();
    const first = engine.ring.publishedSequence();
    assert.equal((await flush({ ...taskOver(engine, proxy.url, 0, first, [0]), deadlineMs: 2000 })).status, 'committed');
    deposit('during');
    engine.publish();
    const last = engine.ring.publishedSequence();
    // Frozen once the COPY of the journal has reached the server: its transaction holds the
    // lease row, and the server waits for COPY data that never comes.
    proxy.freezeAfter('COPY journal');
    const startedMs = Date.now();
    await assert.rejects(flush({ ...taskOver(engine, proxy.url, first + 1, last, [0]), deadlineMs: 2000 }), /no answer from PostgreSQL within 2000 ms/);
    assert.ok(Date.now() - startedMs < 10_000, 'ended at the deadline, not by some other timeout');
    // The retry's new session ends the orphaned one, which still holds the lease row.
    const retry = await flush({ ...taskOver(engine, proxy.url, first + 1, last, [0]), deadlineMs: 5000 });
    assert.deepEqual([retry.status, retry.commandCount], ['committed', 1]);
    await withClient(ledger.url, async (client) => {
      assert.deepEqual(await ledgerMismatches(client, engineLookup(engine)), []);
      assert.deepEqual((await nextOffsets(client, TOPIC)).get(0), 2);
    });
  } finally {
    await closeFlushConnection();
    await proxy.close();
    await ledger.drop();
  }
});
