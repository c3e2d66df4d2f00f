// Scratch ledgers for persistence tests and benches: a database of their own (created,
// migrated, with currencies and lease rows), dropped afterwards, and the checks that compare
// it with an engine's balance table.

import pg from 'pg';
import { ensureDatabase, withDatabase } from './database';
import { migrate } from './migrate';
import { testPgUrl, uniqueName } from '../io/test_services';

export interface ScratchLedger {
  readonly name: string;
  readonly url: string;
  drop(): Promise<void>;
}

export const TEST_CURRENCIES = [{ id: 1, code: 'USDT', scale: 8 }, { id: 2, code: 'BTC', scale: 8 }, { id: 3, code: 'ETH', scale: 8 }, { id: 4, code: 'SOL', scale: 8 }];

/** A new migrated database with TEST_CURRENCIES and a lease row (token 1, next offset 0) per partition. */
export async function createScratchLedger(prefix: string, topic: string, partitions: readonly number[]): Promise<ScratchLedger> {
  const name = uniqueName(prefix);
  const url = withDatabase(testPgUrl, name);
  await ensureDatabase(url);
  await migrate(url);
  await withClient(url, async (client) => {
    await client.query('INSERT INTO currencies (id, code, scale) SELECT * FROM unnest($1::smallint[], $2::text[], $3::smallint[])',
      [TEST_CURRENCIES.map((c) => c.id), TEST_CURRENCIES.map((c) => c.code), TEST_CURRENCIES.map((c) => c.scale)]);
    await client.query(`INSERT INTO partition_leases (topic, partition, owner, fencing_token, next_offset)
      SELECT $1, p, 'test', 1, 0 FROM unnest($2::integer[]) AS p`, [topic, partitions]);
  });
  return {
    name,
    url,
    drop: () => withClient(withDatabase(testPgUrl, 'postgres'), async (client) => {
      await client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    }),
  };
}

export async function withClient<T>(url: string, use: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
  await client.connect();
  try {
    return await use(client);
  } finally {
    await client.end();
  }
}

export interface EngineBalance {
  readonly available: bigint;
  readonly frozen: bigint;
}

/** Reads the engine's balance of a database row's key (the account as the u64 it stands for). */
export type EngineBalanceLookup = (account: bigint, currency: number, partition: number) => EngineBalance | undefined;

/**
 * Every way the database disagrees with the engine or with itself (empty if none): balance
 * rows vs the engine (of comparedPartitions only, if given), balances vs the sum of their
 * journal legs, conservation per currency, journal legs without an accepted outcome.
 */
export async function ledgerMismatches(client: pg.Client, engineBalance: EngineBalanceLookup, comparedPartitions?: readonly number[]): Promise<string[]> {
  const mismatches: string[] = [];
  const balances = await client.query<{ partition: number; account: string; currency_id: number; available: string; frozen: string }>(
    'SELECT partition, account::text, currency_id, available::text, frozen::text FROM balances');
  for (const row of balances.rows) {
    if (comparedPartitions !== undefined && !comparedPartitions.includes(row.partition)) continue;
    const account = BigInt.asUintN(64, BigInt(row.account));
    const engine = engineBalance(account, row.currency_id, row.partition);
    if (engine === undefined || engine.available !== BigInt(row.available) || engine.frozen !== BigInt(row.frozen)) {
      mismatches.push(`balance p${row.partition} ${account}/${row.currency_id}: db ${row.available}/${row.frozen}, engine ${engine?.available}/${engine?.frozen}`);
    }
  }
  const unbalanced = await client.query(`
    SELECT b.partition, b.account, b.currency_id FROM balances b
      FULL JOIN (SELECT partition, account, currency_id, SUM(delta_available) AS available, SUM(delta_frozen) AS frozen
                   FROM journal GROUP BY 1, 2, 3) j USING (partition, account, currency_id)
     WHERE b.available IS DISTINCT FROM j.available OR b.frozen IS DISTINCT FROM j.frozen`);
  for (const row of unbalanced.rows) mismatches.push(`balance != journal sum: ${JSON.stringify(row)}`);
  const conservation = await client.query('SELECT currency_id, SUM(available::numeric + frozen::numeric)::text AS total FROM balances GROUP BY 1 HAVING SUM(available::numeric + frozen::numeric) <> 0');
  for (const row of conservation.rows) mismatches.push(`conservation broken: ${JSON.stringify(row)}`);
  const orphans = await client.query(`
    SELECT j.partition, j.tx_id FROM journal j LEFT JOIN tx_outcomes o ON o.partition = j.partition AND o.tx_id = j.tx_id
     WHERE o.accepted IS DISTINCT FROM true OR o.kafka_offset <> j.kafka_offset LIMIT 10`);
  for (const row of orphans.rows) mismatches.push(`journal leg without its accepted outcome: ${JSON.stringify(row)}`);
  return mismatches;
}

export async function nextOffsets(client: pg.Client, topic: string): Promise<Map<number, number>> {
  const rows = (await client.query<{ partition: number; next_offset: string }>('SELECT partition, next_offset FROM partition_leases WHERE topic = $1', [topic])).rows;
  return new Map(rows.map((r) => [r.partition, Number(r.next_offset)]));
}
