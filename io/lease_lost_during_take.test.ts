// A lease lost while its partition is being recovered (seconds for a large partition) must
// fail the take: the keeper reports the loss while the partition is not the instance's yet,
// so that report stops nothing, and a take completed anyway would feed the partition under a
// token it no longer holds, be fenced at its first flush and never be taken back, with
// /readyz (static assignment) still answering ready. Failed, the take is retried against the
// row it held: a lease that lapsed (renewals failing, the row still ours) is taken again and
// the partition applied; one another instance took over stays theirs (a retry must not fence
// them). The real broker, PostgreSQL and `tally start` processes.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { CommandProducer } from './command_producer';
import { createTopic, testKafkaBrokers, testPgUrl, uniqueName } from './test_services';
import { readyStatusOf as readyStatus } from './failure_support';
import { spawnTally, waitFor } from './tally_process';
import { createScratchDatabase } from '../persist/scratch_database';

/** Enough balance rows that their recovery outlasts a few lease renewals (a third of the 1 s TTL each). */
const BALANCE_ROWS = 3_000_000;

test('a lease lost while its partition is recovered fails the take; the retry takes it again if it only lapsed, and leaves it to another instance that took it', { timeout: 300_000 }, async () => {
  const topic = uniqueName('tally.commands.leaselost');
  await createTopic(topic, 1);
  const database = await createScratchDatabase(testPgUrl, 'tally_leaselost');
  const db = new pg.Pool({ connectionString: database.url, max: 2 });
  const env = {
    TALLY_KAFKA_BROKERS: testKafkaBrokers, TALLY_PG_URL: database.url, TALLY_COMMANDS_TOPIC: topic, TALLY_COMMAND_PARTITIONS: '1',
    TALLY_PARTITION_ASSIGNMENT: 'static', TALLY_INSTANCE_ID: 'leaselost', TALLY_LEASE_TTL_MS: '1000',
    TALLY_DEDUP_WINDOW: '4096', TALLY_BALANCE_CAPACITY: String(2 * BALANCE_ROWS),
  };
  let tally = spawnTally(env);
  let producer: CommandProducer | undefined;
  try {
    // A first start creates the schema, the currencies and the lease row; then the partition
    // gets its many balances (each user's 1 against the external account's -N: conserved).
    await waitFor('the first start to be ready', 60_000, async () => (await readyStatus(tally.output)) === 200, tally);
    // One command committed, so the stored next offset (1) lies past the rows' last offset (0).
    producer = await CommandProducer.connect({ brokers: testKafkaBrokers, topic });
    await producer.sendAcknowledged('999999', Buffer.from(JSON.stringify({ type: 'deposit', tx_id: 'first', account: '999999', currency: 'USDT', amount: '1' })));
    await waitFor('the first deposit to be committed', 60_000, async () => (await db.query("SELECT 1 FROM tx_outcomes WHERE tx_id = 'first' AND accepted")).rowCount === 1, tally);
    tally.child.kill('SIGTERM');
    assert.equal(await tally.exited, 0);
    const currency = (await db.query<{ id: number }>("SELECT id FROM currencies WHERE code = 'USDT'")).rows[0]!.id;
    await db.query('INSERT INTO balances (partition, account, currency_id, available, frozen, last_offset) SELECT 0, 1000000 + g, $1, 1, 0, 0 FROM generate_series(1, $2::int) AS g', [currency, BALANCE_ROWS]);
    await db.query('UPDATE balances SET available = available - $2 WHERE partition = 0 AND account = 0 AND currency_id = $1', [currency, BALANCE_ROWS]);
    const tokenBefore = Number((await db.query<{ t: string }>('SELECT fencing_token::text AS t FROM partition_leases WHERE topic = $1 AND partition = 0', [topic])).rows[0]!.t);

    const leaseRow = async (): Promise<{ owner: string | null; token: number }> => {
      const row = (await db.query<{ owner: string | null; t: string }>('SELECT owner, fencing_token::text AS t FROM partition_leases WHERE topic = $1 AND partition = 0', [topic])).rows[0]!;
      return { owner: row.owner, token: Number(row.t) };
    };
    const tookLease = async (after: number): Promise<void> => waitFor('the start to take the lease', 60_000, async () => (await leaseRow()).token > after, tally);

    // 1. The lease lapses during the recovery (its renewals fail: the table is away), the row
    //    still ours: the take fails, and its retry takes the partition and applies it.
    tally = spawnTally(env);
    await tookLease(tokenBefore);
    await db.query('ALTER TABLE partition_leases RENAME TO partition_leases_away');
    try {
      await waitFor('the take to fail on its lost lease', 60_000, () => tally.output.join('').includes('was lost while the partition was being recovered'), tally);
    } finally {
      await db.query('ALTER TABLE partition_leases_away RENAME TO partition_leases');
    }
    await waitFor('the retried take to make the instance ready', 120_000, async () => (await readyStatus(tally.output)) === 200, tally);
    await producer.sendAcknowledged('1000001', Buffer.from(JSON.stringify({ type: 'deposit', tx_id: 'after-the-lost-take', account: '1000001', currency: 'USDT', amount: '2' })));
    await waitFor('the deposit to be applied and committed', 60_000, async () => (await db.query("SELECT 1 FROM tx_outcomes WHERE tx_id = 'after-the-lost-take' AND accepted")).rowCount === 1, tally);
    const balance = await db.query<{ available: string }>('SELECT available::text FROM balances WHERE partition = 0 AND account = 1000001 AND currency_id = $1', [currency]);
    assert.equal(balance.rows[0]!.available, String(2 * 10 ** 8 + 1), 'the recovered 1 (minor unit) plus the deposit of 2 USDT');
    tally.child.kill('SIGTERM');
    assert.equal(await tally.exited, 0);

    // 2. Another instance takes the row over during the recovery and keeps it: the take fails,
    //    and the retry leaves the partition to that instance instead of fencing it.
    const tokenNow = (await leaseRow()).token;
    tally = spawnTally(env);
    await tookLease(tokenNow);
    await db.query("UPDATE partition_leases SET owner = 'another-instance', owner_process = 'elsewhere', fencing_token = fencing_token + 1, lease_expiry = now() + interval '1 hour' WHERE topic = $1 AND partition = 0", [topic]);
    const theirs = await leaseRow();
    await waitFor('the take to fail on its lost lease', 60_000, () => tally.output.join('').includes('was lost while the partition was being recovered'), tally);
    await waitFor('the retry to leave the partition to its new owner', 60_000, () => tally.output.join('').includes('taken by another instance meanwhile; not taking it'), tally);
    assert.deepEqual(await leaseRow(), theirs, 'the other instance\'s lease is untouched');
  } finally {
    await producer?.disconnect();
    tally.child.kill('SIGKILL');
    await tally.exited;
    await db.end();
    await database.drop();
  }
});
