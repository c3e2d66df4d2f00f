// Transfers across partitions with real processes, the real broker and PostgreSQL: many
// transfers in both directions between accounts on different partitions, with kill -9 of the
// engine while it relays credits, first with one instance, then with two instances owning
// different partitions (one of them killed). Afterwards every transfer is applied exactly
// once on both sides: each user's balance equals its deposit, minus its accepted outgoing
// transfers, plus the incoming transfers whose credit was accepted; every accepted transfer
// has exactly one accepted credit; transit nets to zero; the audit passes.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { CommandProducer } from './command_producer';
import { testKafkaBrokers, testPgUrl, uniqueName } from './test_services';
import { createTopic, httpPortOf } from './failure_support';
import { killHard, sleep, spawnTally, TallyProcess, waitFor } from './tally_process';
import { SeededRandom } from '../engine/wire_fixtures';
import { homePartitionOfAccountDecimal } from '../engine/partitioner';
import { createScratchDatabase } from '../persist/scratch_database';
import { runAudit } from '../persist/audit';

const PARTITIONS = 4;
const USERS = 200;
const TRANSFERS = Number(process.env['CROSS_TRANSFERS'] ?? 3000);
const DEPOSIT = 300n;
/** Accounts from here up only take the sentinel deposits that mark how far a partition got. */
const SENTINEL_ACCOUNT_MIN = 900_000;

interface Transfer { txId: string; from: string; to: string; amount: bigint }

function workload(seed: number): { users: string[]; transfers: Transfer[] } {
  const random = new SeededRandom(seed);
  const users = Array.from({ length: USERS }, (_, i) => String(10_000 + i));
  const transfers: Transfer[] = [];
  while (transfers.length < TRANSFERS) {
    const from = users[random.int(USERS)]!;
    const to = users[random.int(USERS)]!;
    if (homePartitionOfAccountDecimal(from, PARTITIONS) === homePartitionOfAccountDecimal(to, PARTITIONS)) continue;
    transfers.push({ txId: `xp-${transfers.length}`, from, to, amount: BigInt(1 + random.int(60)) });
  }
  return { users, transfers };
}

async function settled(client: pg.Client, transfers: readonly Transfer[]): Promise<boolean> {
  const outcomes = await client.query<{ n: string }>("SELECT COUNT(*) AS n FROM tx_outcomes WHERE tx_id LIKE 'xp-%'");
  if (Number(outcomes.rows[0]!.n) < transfers.length) return false;
  const open = await client.query<{ n: string }>(
    `SELECT COUNT(*) AS n FROM transfer_outbox o
      WHERE NOT EXISTS (SELECT 1 FROM tx_outcomes c WHERE c.partition = o.to_partition AND c.tx_id = tally_credit_tx_id(o.partition, o.kafka_offset))`);
  return Number(open.rows[0]!.n) === 0;
}

async function relayingStarted(client: pg.Client): Promise<boolean> {
  return Number((await client.query<{ n: string }>('SELECT COUNT(*) AS n FROM transfer_outbox')).rows[0]!.n) > 0;
}

test(`cross-partition transfers, ${TRANSFERS} both ways, kill -9 while relaying, one then two instances: each applied exactly once on both sides`, { timeout: 400_000 }, async () => {
  const topic = uniqueName('tally.commands.cross');
  await createTopic(topic, PARTITIONS);
  const database = await createScratchDatabase(testPgUrl, 'tally_cross');
  const { users, transfers } = workload(20261201);
  const producer = await CommandProducer.connect({ brokers: testKafkaBrokers, topic });
  const env = {
    TALLY_KAFKA_BROKERS: testKafkaBrokers, TALLY_PG_URL: database.url, TALLY_COMMANDS_TOPIC: topic, TALLY_COMMAND_PARTITIONS: String(PARTITIONS),
    TALLY_CONSUMER_GROUP: uniqueName('cross'), TALLY_CURRENCIES: 'USDT:2', TALLY_DEDUP_WINDOW: '65536', TALLY_BALANCE_CAPACITY: '65536',
    TALLY_BATCH_ROWS_MAX: '200', TALLY_KAFKA_SESSION_TIMEOUT_MS: '6000',
  };
  const client = new pg.Client({ connectionString: database.url });
  await client.connect();
  const running: TallyProcess[] = [];
  const spawn = (extra: Record<string, string>): TallyProcess => {
    const tally = spawnTally({ ...env, ...extra });
    running.push(tally);
    return tally;
  };
  const send = (t: Transfer): void => producer.send(t.from, Buffer.from(JSON.stringify({ type: 'transfer', tx_id: t.txId, from: t.from, to: t.to, currency: 'USDT', amount: String(t.amount) })));
  try {
    for (const user of users) producer.send(user, Buffer.from(JSON.stringify({ type: 'deposit', tx_id: `dep-${user}`, account: user, currency: 'USDT', amount: String(DEPOSIT) })));
    const half = transfers.length / 2;
    for (const t of transfers.slice(0, half)) send(t);
    await producer.flush();

    // One instance, killed while it relays, then restarted: the unsent credits are relayed again.
    let single = spawn({ TALLY_PARTITION_ASSIGNMENT: 'static', TALLY_INSTANCE_ID: 'cross-single' });
    await waitFor('credits to be owed', 60_000, () => relayingStarted(client), single);
    await sleep(150);
    await killHard(single);
    single = spawn({ TALLY_PARTITION_ASSIGNMENT: 'static', TALLY_INSTANCE_ID: 'cross-single' });
    // The first instance may have settled everything before its kill: the restarted one must
    // still have started (and relayed nothing twice) before it is stopped below.
    const restarted = single;
    await waitFor('the restarted instance to start', 60_000, () => restarted.output.join('').includes('"msg":"tally started"'), single);
    await waitFor('the first half to settle on both sides', 120_000, () => settled(client, transfers.slice(0, half)), single);
    single.child.kill('SIGTERM');
    assert.equal(await single.exited, 0, 'the single instance drains and exits cleanly');

    // Two instances split the partitions; credits cross between them; one is killed mid-relay.
    const a = spawn({ TALLY_PARTITION_ASSIGNMENT: 'group', TALLY_INSTANCE_ID: 'cross-a' });
    const b = spawn({ TALLY_PARTITION_ASSIGNMENT: 'group', TALLY_INSTANCE_ID: 'cross-b' });
    await waitFor('both instances to own partitions', 120_000, async () => {
      const owned = await Promise.all([a, b].map(async (t) => {
        const port = httpPortOf(t.output);
        if (port === undefined) return 0;
        try {
          return ((await (await fetch(`http://127.0.0.1:${port}/readyz`)).json()) as { partitions: number[] }).partitions.length;
        } catch {
          return 0;
        }
      }));
      return owned[0]! > 0 && owned[1]! > 0 && owned[0]! + owned[1]! === PARTITIONS;
    }, a);
    const outboxBefore = Number((await client.query<{ n: string }>('SELECT COUNT(*) AS n FROM transfer_outbox')).rows[0]!.n);
    for (const t of transfers.slice(half)) send(t);
    await producer.flush();
    await waitFor('new credits to be owed', 60_000, async () => Number((await client.query<{ n: string }>('SELECT COUNT(*) AS n FROM transfer_outbox')).rows[0]!.n) > outboxBefore, a);
    await sleep(100);
    await killHard(a);
    await waitFor('everything to settle on both sides', 180_000, () => settled(client, transfers), b);
    b.child.kill('SIGTERM');
    assert.equal(await b.exited, 0, 'B drains and exits cleanly');
    await checkExactlyOnce(client, users, transfers);

    // Every credit unmarked again (as after a crash between the broker's acknowledgement and
    // the mark) and a restart with a dedup window shorter than each partition's history: the
    // credits already applied must not be relayed, or those outside the window apply twice.
    await client.query('UPDATE transfer_outbox SET sent = false, confirmed = false, sent_offset = NULL');
    const again = spawn({ TALLY_PARTITION_ASSIGNMENT: 'static', TALLY_INSTANCE_ID: 'cross-single', TALLY_DEDUP_WINDOW: '1024' });
    await waitFor('the outbox to be marked again', 60_000, async () => Number((await client.query<{ n: string }>('SELECT COUNT(*) AS n FROM transfer_outbox WHERE NOT sent')).rows[0]!.n) === 0, again);
    // A deposit behind whatever was relayed, on every partition: once durable, so is all before it.
    const sentinels = Array.from({ length: PARTITIONS }, (_, p) => {
      let account = SENTINEL_ACCOUNT_MIN;
      while (homePartitionOfAccountDecimal(String(account), PARTITIONS) !== p) account++;
      return String(account);
    });
    for (const account of sentinels) producer.send(account, Buffer.from(JSON.stringify({ type: 'deposit', tx_id: `sentinel-${account}`, account, currency: 'USDT', amount: '1' })));
    await producer.flush();
    await waitFor('the sentinels to be durable', 60_000, async () => Number((await client.query<{ n: string }>("SELECT COUNT(*) AS n FROM tx_outcomes WHERE tx_id LIKE 'sentinel-%'")).rows[0]!.n) === PARTITIONS, again);
    again.child.kill('SIGTERM');
    assert.equal(await again.exited, 0, 'the restarted instance exits cleanly');
    await checkExactlyOnce(client, users, transfers);
    assert.deepEqual(await runAudit(database.url), [], 'audit passes: conservation, transit = credits in flight (none), no stranded credit');
  } finally {
    for (const t of running) t.child.kill('SIGKILL');
    await producer.disconnect();
    await client.end();
    await database.drop();
  }
});

async function checkExactlyOnce(client: pg.Client, users: readonly string[], transfers: readonly Transfer[]): Promise<void> {
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
  const expected = new Map(users.map((u) => [u, DEPOSIT * 100n]));
  for (const t of transfers) {
    if (!accepted.has(t.txId)) continue;
    expected.set(t.from, expected.get(t.from)! - t.amount * 100n);
    expected.set(t.to, expected.get(t.to)! + t.amount * 100n);
  }
  const balances = await client.query<{ account: string; available: string; frozen: string }>(`SELECT tally_account_text(account) AS account, available, frozen FROM balances WHERE account >= 1000 AND account < ${SENTINEL_ACCOUNT_MIN}`);
  assert.equal(balances.rows.length, users.length);
  for (const row of balances.rows) assert.deepEqual([BigInt(row.available), BigInt(row.frozen)], [expected.get(row.account), 0n], `balance of ${row.account}`);
  const transit = await client.query<{ total: string }>('SELECT COALESCE(SUM(available), 0) AS total FROM balances WHERE account = 3');
  assert.equal(transit.rows[0]!.total, '0', 'transit nets to zero across partitions');
}
