// Proves the COPY path works against the real PostgreSQL: rows streamed with
// pg-copy-streams in text format land in a table and read back exactly, BIGINT edges included.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { testPgUrl } from '../io/test_services';

test('rows COPYed in with pg-copy-streams read back exactly', { timeout: 30_000 }, async () => {
  const client = new pg.Client({ connectionString: testPgUrl });
  await client.connect();
  try {
    await client.query('CREATE TEMP TABLE copy_smoke (account bigint, currency_id smallint, available bigint, tx_id text)');
    const rows = [
      ['1001', '1', '10025000000', 'tx-1'],
      ['9223372036854775807', '2', '-9223372036854775808', 'tx-\\\\-tab'],
      ['-1', '3', '0', 'tx-3'],
    ];
    const text = rows.map((r) => r.join('\t')).join('\n') + '\n';
    await pipeline(Readable.from([Buffer.from(text)]), client.query(copyFrom('COPY copy_smoke FROM STDIN')));
    const read = await client.query<{ account: string; currency_id: number; available: string; tx_id: string }>(
      'SELECT account, currency_id, available, tx_id FROM copy_smoke ORDER BY currency_id');
    assert.deepEqual(read.rows.map((r) => [r.account, String(r.currency_id), r.available, r.tx_id]), [
      ['1001', '1', '10025000000', 'tx-1'],
      ['9223372036854775807', '2', '-9223372036854775808', 'tx-\\-tab'],
      ['-1', '3', '0', 'tx-3'],
    ]);
  } finally {
    await client.end();
  }
});
