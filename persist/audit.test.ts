// The audit against a real scratch database: a consistent ledger passes, and each kind of
// damage (a changed balance, a lost outcome, legs under a rejection) is caught — the
// negative controls that show the checks can fail.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { createScratchDatabase } from './scratch_database';
import { runAudit } from './audit';
import { testPgUrl } from '../io/test_services';

const LEDGER = `
  INSERT INTO currencies VALUES (1, 'USDT', 8), (2, 'BTC', 8);
  -- deposit 100 to 1001 on partition 0, transfer 30 to 1002, deposit 5 BTC to -1 (2^64-1) on partition 1
  INSERT INTO journal VALUES
    (0, 10, 0, 'd1', 1001, 1, 10000000000, 0, 1), (0, 10, 1, 'd1', 0, 1, -10000000000, 0, 1),
    (0, 11, 0, 't1', 1001, 1, -3000000000, 0, 5), (0, 11, 1, 't1', 1002, 1, 3000000000, 0, 5),
    (1, 4, 0, 'd2', -1, 2, 500000000, 0, 1), (1, 4, 1, 'd2', 0, 2, -500000000, 0, 1);
  INSERT INTO balances VALUES
    (0, 1001, 1, 7000000000, 0, 11), (0, 0, 1, -10000000000, 0, 10), (0, 1002, 1, 3000000000, 0, 11),
    (1, -1, 2, 500000000, 0, 4), (1, 0, 2, -500000000, 0, 4);
  INSERT INTO tx_outcomes VALUES
    (0, 'd1', 10, true, NULL, 1), (0, 't1', 11, true, NULL, 2), (0, 'w1', 12, false, 'INSUFFICIENT_AVAILABLE', 3),
    (1, 'd2', 4, true, NULL, 4);`;

test('the audit passes a consistent ledger and catches each kind of damage', { timeout: 60_000 }, async () => {
  const database = await createScratchDatabase(testPgUrl, 'tally_audit');
  const url = database.url;
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(LEDGER);
    assert.deepEqual(await runAudit(url), []);

    await client.query('UPDATE balances SET available = available + 1 WHERE partition = 0 AND account = 1002');
    assert.deepEqual((await runAudit(url)).map((f) => f.check), ['conservation', 'balance_equals_journal']);
    await client.query('UPDATE balances SET available = available - 1 WHERE partition = 0 AND account = 1002');

    await client.query("DELETE FROM tx_outcomes WHERE tx_id = 't1'");
    const lost = await runAudit(url);
    assert.deepEqual(lost.map((f) => f.check), ['journal_has_one_accepted_outcome']);
    assert.equal(lost[0]!.rows[0]!['tx_id'], 't1');
    await client.query("INSERT INTO tx_outcomes VALUES (0, 't1', 11, true, NULL, 2)");

    await client.query("INSERT INTO journal VALUES (0, 12, 0, 'w1', 1001, 1, 0, 0, 2)");
    assert.deepEqual((await runAudit(url)).map((f) => f.check), ['journal_has_one_accepted_outcome', 'rejected_outcome_has_no_journal']);
    await client.query("DELETE FROM journal WHERE tx_id = 'w1'");
    assert.deepEqual(await runAudit(url), []);

    // The transfer t1 as two unbalanced postings (-30 at 11, +30 at 12): every total and every
    // balance still agree; only the postings tell.
    await client.query("UPDATE journal SET kafka_offset = 13 WHERE tx_id = 't1' AND leg_index = 1; INSERT INTO tx_outcomes VALUES (0, 't1b', 13, true, NULL, 5); UPDATE journal SET tx_id = 't1b' WHERE kafka_offset = 13");
    assert.deepEqual((await runAudit(url)).map((f) => f.check), ['posting_balances']);
    await client.query("UPDATE journal SET kafka_offset = 11, tx_id = 't1' WHERE kafka_offset = 13; DELETE FROM tx_outcomes WHERE tx_id = 't1b'");

    // A user balance below zero that the journal explains and conservation allows: 1002 pays
    // 1001 40 of its 30.
    await client.query(`
      INSERT INTO journal VALUES (0, 13, 0, 'o1', 1002, 1, -4000000000, 0, 5), (0, 13, 1, 'o1', 1001, 1, 4000000000, 0, 5);
      UPDATE balances SET available = -1000000000 WHERE partition = 0 AND account = 1002;
      UPDATE balances SET available = 11000000000 WHERE partition = 0 AND account = 1001;
      INSERT INTO tx_outcomes VALUES (0, 'o1', 13, true, NULL, 6);`);
    const negative = await runAudit(url);
    assert.deepEqual(negative.map((f) => f.check), ['no_negative_user_balance']);
    assert.equal(negative[0]!.rows[0]!['account'], '1002');
    await client.query(`
      DELETE FROM journal WHERE tx_id = 'o1'; DELETE FROM tx_outcomes WHERE tx_id = 'o1';
      UPDATE balances SET available = 3000000000 WHERE partition = 0 AND account = 1002;
      UPDATE balances SET available = 7000000000 WHERE partition = 0 AND account = 1001;`);
    // Account 2^64-1 (stored as -1) is a user account too.
    await client.query('UPDATE balances SET frozen = -1, available = available + 1 WHERE partition = 1 AND account = -1');
    assert.ok((await runAudit(url)).some((f) => f.check === 'no_negative_user_balance' && f.rows[0]!['account'] === '18446744073709551615'));
    await client.query('UPDATE balances SET frozen = 0, available = available - 1 WHERE partition = 1 AND account = -1');

    // d1 sent again after it left the dedup window and refused that time (its outcome row moved
    // to the later offset): applied once, no finding.
    await client.query("UPDATE tx_outcomes SET kafka_offset = 500, accepted = false, reason = 'INSUFFICIENT_AVAILABLE' WHERE tx_id = 'd1'");
    assert.deepEqual(await runAudit(url), []);
    // Applied again instead (legs at a second offset): reported.
    await client.query("INSERT INTO journal VALUES (0, 500, 0, 'd1', 1001, 1, 1, 0, 1), (0, 500, 1, 'd1', 0, 1, -1, 0, 1); UPDATE balances SET available = available + 1 WHERE partition = 0 AND account = 1001; UPDATE balances SET available = available - 1 WHERE partition = 0 AND account = 0; UPDATE tx_outcomes SET accepted = true, reason = NULL WHERE tx_id = 'd1'");
    assert.deepEqual((await runAudit(url)).map((f) => f.check), ['journal_has_one_accepted_outcome']);
  } finally {
    await client.end();
    await database.drop();
  }
});

// A cross-partition transfer of 20 from 1001 (partition 0) to 2001 (partition 1): debit into
// transit 3 of partition 0 with its outbox row, then the credit out of transit 3 of partition 1.
const CROSSING = `
  INSERT INTO currencies VALUES (1, 'USDT', 8);
  INSERT INTO journal VALUES
    (0, 10, 0, 'd1', 1001, 1, 100, 0, 1), (0, 10, 1, 'd1', 0, 1, -100, 0, 1),
    (0, 11, 0, 'x1', 1001, 1, -20, 0, 5), (0, 11, 1, 'x1', 3, 1, 20, 0, 5);
  INSERT INTO balances VALUES (0, 1001, 1, 80, 0, 11), (0, 0, 1, -100, 0, 10), (0, 3, 1, 20, 0, 11);
  INSERT INTO tx_outcomes VALUES (0, 'd1', 10, true, NULL, 1), (0, 'x1', 11, true, NULL, 2);
  INSERT INTO transfer_outbox VALUES (0, 11, 'x1', 1001, 2001, 1, 1, 20, true, NULL);`;

test('the audit follows cross-partition credits: in flight, applied, stranded, refunded', { timeout: 60_000 }, async () => {
  const database = await createScratchDatabase(testPgUrl, 'tally_audit_transit');
  const url = database.url;
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(CROSSING);
    assert.deepEqual(await runAudit(url), [], 'transit 20 = one credit of 20 in flight');
    await client.query('UPDATE balances SET available = 19 WHERE account = 3');
    await client.query("UPDATE balances SET available = 81 WHERE account = 1001");
    assert.deepEqual((await runAudit(url)).map((f) => f.check), ['balance_equals_journal', 'transit_equals_credits_in_flight'], 'a transit that does not match the credits in flight is caught');
    await client.query('UPDATE balances SET available = 20 WHERE account = 3');
    await client.query("UPDATE balances SET available = 80 WHERE account = 1001");

    // The credit is applied on partition 1: transit nets to zero.
    await client.query(`
      INSERT INTO journal VALUES (1, 5, 0, '~x0-11', 2001, 1, 20, 0, 70), (1, 5, 1, '~x0-11', 3, 1, -20, 0, 71);
      INSERT INTO balances VALUES (1, 2001, 1, 20, 0, 5), (1, 3, 1, -20, 0, 5);
      INSERT INTO tx_outcomes VALUES (1, '~x0-11', 5, true, NULL, 9);`);
    assert.deepEqual(await runAudit(url), []);
    // A credit that pays another account than its transfer's (one not produced by the relay):
    // the ledger is consistent in itself, but the credit does not match what was owed.
    await client.query("UPDATE journal SET account = 2002 WHERE tx_id = '~x0-11' AND account = 2001; UPDATE balances SET account = 2002 WHERE partition = 1 AND account = 2001");
    assert.deepEqual((await runAudit(url)).map((f) => f.check), ['credit_matches_its_transfer'], 'a credit to the wrong account is caught');
    await client.query("UPDATE journal SET account = 2001 WHERE tx_id = '~x0-11' AND account = 2002; UPDATE balances SET account = 2001 WHERE partition = 1 AND account = 2002");
    assert.deepEqual(await runAudit(url), []);

    // Had partition 1 rejected it, the credit is stranded until refunded on partition 0.
    await client.query(`
      DELETE FROM journal WHERE partition = 1; DELETE FROM balances WHERE partition = 1;
      UPDATE tx_outcomes SET accepted = false, reason = 'AMOUNT_OVERFLOW' WHERE tx_id = '~x0-11';`);
    const stranded = await runAudit(url);
    assert.deepEqual(stranded.map((f) => f.check), ['no_stranded_credit']);
    assert.equal(stranded[0]!.rows[0]!['credit_tx_id'], '~x0-11');
    await client.query(`
      INSERT INTO journal VALUES (0, 12, 0, '~r0-11', 1001, 1, 20, 0, 70), (0, 12, 1, '~r0-11', 3, 1, -20, 0, 71);
      UPDATE balances SET available = 100, last_offset = 12 WHERE partition = 0 AND account = 1001;
      UPDATE balances SET available = 0, last_offset = 12 WHERE partition = 0 AND account = 3;
      INSERT INTO tx_outcomes VALUES (0, '~r0-11', 12, true, NULL, 10);`);
    assert.deepEqual(await runAudit(url), [], 'refunded: nothing in flight, nothing stranded');

    // Applied on partition 1 after all, and a later copy of it (sent again beyond the dedup
    // window) rejected, which moved its outcome row: not stranded, not in flight.
    await client.query(`
      DELETE FROM journal WHERE tx_id = '~r0-11'; DELETE FROM tx_outcomes WHERE tx_id = '~r0-11';
      UPDATE balances SET available = 80, last_offset = 11 WHERE partition = 0 AND account = 1001;
      UPDATE balances SET available = 20, last_offset = 11 WHERE partition = 0 AND account = 3;
      INSERT INTO journal VALUES (1, 5, 0, '~x0-11', 2001, 1, 20, 0, 70), (1, 5, 1, '~x0-11', 3, 1, -20, 0, 71);
      INSERT INTO balances VALUES (1, 2001, 1, 20, 0, 5), (1, 3, 1, -20, 0, 5);
      UPDATE tx_outcomes SET kafka_offset = 9000, accepted = false, reason = 'AMOUNT_OVERFLOW' WHERE tx_id = '~x0-11';`);
    assert.deepEqual(await runAudit(url), [], 'applied once: no refund owed');
  } finally {
    await client.end();
    await database.drop();
  }
});
