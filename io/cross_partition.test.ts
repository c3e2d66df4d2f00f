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
import { checkExactlyOnce, crossWorkload, depositJson, Transfer, transferJson, transfersSettled } from './cross_workload';
import { homePartitionOfAccountDecimal } from '../engine/partitioner';
import { createScratchDatabase } from '../persist/scratch_database';
import { runAudit } from '../persist/audit';

const PARTITIONS = 4;
const USERS = 200;
const TRANSFERS = Number(process.env['CROSS_TRANSFERS'] ?? 3000);
const DEPOSIT = 300n;
/** Accounts from here up only take the sentinel deposits that mark how far a partition got. */
const SENTINEL_ACCOUNT_MIN = 900_000;

async function relayingStarted(client: pg.Client): Promise<boolean> {
  return Number((await client.query<{ n: string }>('SELECT COUNT(*) AS n FROM transfer_outbox')).rows[0]!.n) > 0;
}

test(`cross-partition transfers, ${TRANSFERS} both ways, kill -9 while relaying, one then two instances: each applied exactly once on both sides`, { timeout: 400_000 }, async () => {
  const topic = uniqueName('tally.commands.cross');
  await createTopic(topic, PARTITIONS);
  const database = await createScratchDatabase(testPgUrl, 'tally_cross');
  const { users, transfers } = crossWorkload(20261201, PARTITIONS, USERS, TRANSFERS);
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
  const send = (t: Transfer): void => producer.send(t.from, transferJson(t));
  try {
    for (const user of users) producer.send(user, depositJson(user, DEPOSIT));
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
    await waitFor('the first half to settle on both sides', 120_000, () => transfersSettled(client, transfers.slice(0, half)), single);
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
    await waitFor('everything to settle on both sides', 180_000, () => transfersSettled(client, transfers), b);
    b.child.kill('SIGTERM');
    assert.equal(await b.exited, 0, 'B drains and exits cleanly');
    await checkExactlyOnce(client, users, transfers, DEPOSIT, SENTINEL_ACCOUNT_MIN);

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
    await checkExactlyOnce(client, users, transfers, DEPOSIT, SENTINEL_ACCOUNT_MIN);
    assert.deepEqual(await runAudit(database.url), [], 'audit passes: conservation, transit = credits in flight (none), no stranded credit');
  } finally {
    for (const t of running) t.child.kill('SIGKILL');
    await producer.disconnect();
    await client.end();
    await database.drop();
  }
});
