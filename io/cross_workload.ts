// Test support for the tests of transfers across partitions: a seeded workload of transfers
// whose `to` lives on another partition than `from`, and the exactly-once check of the
// database afterwards (each accepted transfer has exactly one accepted credit, journalled
// once; every user's balance is its deposit minus its accepted outgoing transfers plus its
// incoming ones; transit nets to zero).

import assert from 'node:assert/strict';
import type pg from 'pg';
import { SeededRandom } from '../engine/wire_fixtures';
import { homePartitionOfAccountDecimal } from '../engine/partitioner';

export interface Transfer { txId: string; from: string; to: string; amount: bigint }

/** Users 10 000 … 10 000 + users − 1; each transfer moves 1–60 USDT (scale 2) between two partitions; tx_ids `xp-<n>`. */
export function crossWorkload(seed: number, partitions: number, users: number, count: number): { users: string[]; transfers: Transfer[] } {
  const random = new SeededRandom(seed);
  const accounts = Array.from({ length: users }, (_, i) => String(10_000 + i));
  const transfers: Transfer[] = [];
  while (transfers.length < count) {
    const from = accounts[random.int(users)]!;
    const to = accounts[random.int(users)]!;
    if (homePartitionOfAccountDecimal(from, partitions) === homePartitionOfAccountDecimal(to, partitions)) continue;
    transfers.push({ txId: `xp-${transfers.length}`, from, to, amount: BigInt(1 + random.int(60)) });
  }
  return { users: accounts, transfers };
}

export function depositJson(user: string, amount: bigint): Buffer {
  return Buffer.from(JSON.stringify({ type: 'deposit', tx_id: `dep-${user}`, account: user, currency: 'USDT', amount: String(amount) }));
}

export function transferJson(t: Transfer): Buffer {
  return Buffer.from(JSON.stringify({ type: 'transfer', tx_id: t.txId, from: t.from, to: t.to, currency: 'USDT', amount: String(t.amount) }));
}

/** Every transfer has an outcome, and every credit owed has an outcome on its partition. */
export async function transfersSettled(client: pg.Client, transfers: readonly Transfer[]): Promise<boolean> {
  const outcomes = await client.query<{ n: string }>("SELECT COUNT(*) AS n FROM tx_outcomes WHERE tx_id LIKE 'xp-%'");
  if (Number(outcomes.rows[0]!.n) < transfers.length) return false;
  const open = await client.query<{ n: string }>(
    `SELECT COUNT(*) AS n FROM transfer_outbox o
      WHERE NOT EXISTS (SELECT 1 FROM tx_outcomes c WHERE c.partition = o.to_partition AND c.tx_id = tally_credit_tx_id(o.partition, o.kafka_offset))`);
  return Number(open.rows[0]!.n) === 0;
}

/** Exactly once on both sides (see the top of the file); balances of accounts in [1000, accountEnd) are checked. */
export async function checkExactlyOnce(client: pg.Client, users: readonly string[], transfers: readonly Transfer[], deposit: bigint, accountEnd: number): Promise<void> {
  const accepted = new Set((await client.query<{ tx_id: string }>("SELECT tx_id FROM tx_outcomes WHERE tx_id LIKE 'xp-%' AND accepted")).rows.map((r) => r.tx_id));
  const outbox = await client.query<{ tx_id: string; credit_accepted: boolean | null; credits: string }>(
    `SELECT o.tx_id, bool_and(c.accepted) AS credit_accepted, COUNT(c.tx_id) AS credits
       FROM transfer_outbox o
       LEFT JOIN tx_outcomes c ON c.partition = o.to_partition AND c.tx_id = tally_credit_tx_id(o.partition, o.kafka_offset)
      GROUP BY o.tx_id`);
  assert.equal(outbox.rows.length, accepted.size, 'one outbox row per accepted transfer');
  for (const row of outbox.rows) {
    assert.ok(accepted.has(row.tx_id), `${row.tx_id} owes a credit only if accepted`);
    assert.deepEqual([row.credits, row.credit_accepted], ['1', true], `${row.tx_id}: exactly one accepted credit`);
  }
  const credits = await client.query<{ n: string }>("SELECT COUNT(*) AS n FROM journal WHERE tx_id LIKE '~x%'");
  assert.equal(Number(credits.rows[0]!.n), accepted.size * 2, 'each credit journalled once (two legs)');
  assert.ok(accepted.size > transfers.length / 2, `most transfers were accepted (${accepted.size})`);
  const expected = new Map(users.map((u) => [u, deposit * 100n]));
  for (const t of transfers) {
    if (!accepted.has(t.txId)) continue;
    expected.set(t.from, expected.get(t.from)! - t.amount * 100n);
    expected.set(t.to, expected.get(t.to)! + t.amount * 100n);
  }
  const balances = await client.query<{ account: string; available: string; frozen: string }>(`SELECT tally_account_text(account) AS account, available, frozen FROM balances WHERE account >= 1000 AND account < ${accountEnd}`);
  assert.equal(balances.rows.length, users.length);
  for (const row of balances.rows) assert.deepEqual([BigInt(row.available), BigInt(row.frozen)], [expected.get(row.account), 0n], `balance of ${row.account}`);
  const transit = await client.query<{ total: string }>('SELECT COALESCE(SUM(available), 0) AS total FROM balances WHERE account = 3');
  assert.equal(transit.rows[0]!.total, '0', 'transit nets to zero across partitions');
}
