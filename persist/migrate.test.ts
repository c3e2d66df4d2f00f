// Migrations against the real PostgreSQL, in a scratch database of their own: created on
// demand, applied once, recorded, and a second run applies nothing.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { ensureDatabase, withDatabase } from './database';
import { loadMigrations, migrate } from './migrate';
import { testPgUrl, uniqueName } from '../io/test_services';

test('a fresh database is created and migrated exactly once', { timeout: 60_000 }, async () => {
  const name = uniqueName('tally_migrate');
  const url = withDatabase(testPgUrl, name);
  assert.equal(await ensureDatabase(url), true);
  assert.equal(await ensureDatabase(url), false);
  try {
    const all = loadMigrations().map((m) => m.version);
    const [first, second] = await Promise.all([migrate(url), migrate(url)]);
    assert.deepEqual([...first!, ...second!].sort(), all, 'concurrent runs apply each migration once between them');
    assert.deepEqual(await migrate(url), []);
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      const tables = await client.query<{ table_name: string }>(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name");
      for (const t of ['balances', 'currencies', 'journal', 'partition_leases', 'tally_schema_migrations', 'tx_outcomes']) {
        assert.ok(tables.rows.some((r) => r.table_name === t), `table ${t} exists`);
      }
      const text = await client.query<{ t: string }>('SELECT tally_account_text(-1) AS t');
      assert.equal(text.rows[0]!.t, '18446744073709551615');
    } finally {
      await client.end();
    }
  } finally {
    const admin = new pg.Client({ connectionString: withDatabase(testPgUrl, 'postgres') });
    await admin.connect();
    await admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    await admin.end();
  }
});
