// `tally resolve-credit` against a real scratch database: it refunds only a credit that was
// never applied. A credit applied once and rejected on a later copy (sent again after it left
// its partition's dedup window, which moves the tx_id's outcome row to the rejection) must not
// be refunded: the receiver kept the money, and a refund would create as much again.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { loadConfig } from './config';
import { resolveCredit } from './resolve_credit';
import { testPgUrl } from './test_services';
import { createScratchDatabase } from '../persist/scratch_database';

test('resolve-credit refuses a credit whose legs are in the journal, whatever its outcome row says, and a refund produced already', { timeout: 60_000 }, async () => {
  const database = await createScratchDatabase(testPgUrl, 'tally_resolve');
  const client = new pg.Client({ connectionString: database.url });
  await client.connect();
  // No broker is reached: every case here is refused before anything is produced.
  const config = loadConfig({ TALLY_PG_URL: database.url, TALLY_KAFKA_BROKERS: '127.0.0.1:1', TALLY_CURRENCIES: 'USDT:8', TALLY_COMMAND_PARTITIONS: '2' }, undefined);
  try {
    await client.query(`
      INSERT INTO currencies VALUES (1, 'USDT', 8);
      INSERT INTO transfer_outbox (partition, kafka_offset, tx_id, from_account, to_account, to_partition, currency_id, amount, sent)
        VALUES (0, 11, 'x1', 1001, 2001, 1, 1, 20, true), (0, 12, 'x2', 1001, 2001, 1, 1, 20, true);
      INSERT INTO transfer_outbox (partition, kafka_offset, tx_id, from_account, to_account, to_partition, currency_id, amount, sent, resolution)
        VALUES (0, 13, 'x3', 1001, 2001, 1, 1, 20, true, 'refunded');
      INSERT INTO journal VALUES (1, 5, 0, '~x0-11', 2001, 1, 20, 0, 70), (1, 5, 1, '~x0-11', 3, 1, -20, 0, 71);
      INSERT INTO tx_outcomes (partition, tx_id, kafka_offset, accepted, reason, payload_hash) VALUES
        (1, '~x0-11', 9000, false, 'AMOUNT_OVERFLOW', 1),
        (1, '~x0-12', 6, true, NULL, 2),
        (1, '~x0-13', 7, false, 'AMOUNT_OVERFLOW', 3);`);
    await assert.rejects(resolveCredit(config, '~x0-11'), /was applied on partition 1 \(its legs are in the journal/);
    await assert.rejects(resolveCredit(config, '~x0-12'), /was applied on partition 1; nothing to resolve/);
    // Its refund was produced by an earlier run and is not applied yet: never produced twice.
    await assert.rejects(resolveCredit(config, '~x0-13'), /refund ~r0-13 of credit ~x0-13 was produced already and waits in partition 0's log/);
    const resolution = await client.query("SELECT resolution FROM transfer_outbox WHERE partition = 0 AND kafka_offset = 11");
    assert.equal(resolution.rows[0].resolution, null, 'nothing recorded');
  } finally {
    await client.end();
    await database.drop();
  }
});
