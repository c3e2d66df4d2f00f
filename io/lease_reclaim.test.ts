// In a consumer group, a partition's lease can be taken by another instance while the group
// still assigns the partition to us: a retry of its previous owner racing a rebalance, acting
// on a stale view of the group. We stop it at once (the other holder may be applying it),
// but nothing would give it back to us before the next rebalance: without a reclaim it
// stayed unapplied, /readyz 503, for as long as the group stayed stable. The reclaim waits
// for the row to be released or to lapse (taking a live lease would fence its holder), then
// takes it by compare-and-swap and resumes from the stored offset. Real broker, PostgreSQL,
// engine worker and HTTP server; the other instance is played by SQL on its lease rows.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { loadConfig } from './config';
import { createLogger } from './logger';
import { Service } from './service';
import { CommandProducer } from './command_producer';
import { createTopic, testKafkaBrokers, testPgUrl, uniqueName } from './test_services';
import { waitFor } from './tally_process';
import { waitServiceReady } from './failure_support';
import { createScratchDatabase } from '../persist/scratch_database';
import { runAudit } from '../persist/audit';
import { homePartitionOfAccountDecimal } from '../engine/partitioner';

const PARTITIONS = 4;


interface LeaseRow { owner: string | null; fencing_token: string }

test('group: a lease taken by another instance while the group assigns the partition to us is taken back once released or lapsed, never from its live holder', { timeout: 180_000 }, async () => {
  const topic = uniqueName('tally.commands.reclaim');
  await createTopic(topic, PARTITIONS);
  const database = await createScratchDatabase(testPgUrl, 'tally_reclaim');
  const admin = new pg.Client({ connectionString: database.url });
  await admin.connect();
  const config = loadConfig({
    TALLY_KAFKA_BROKERS: testKafkaBrokers, TALLY_PG_URL: database.url, TALLY_COMMANDS_TOPIC: topic,
    TALLY_COMMAND_PARTITIONS: String(PARTITIONS), TALLY_CONSUMER_GROUP: uniqueName('tally-reclaim'), TALLY_HTTP_PORT: '0',
    TALLY_PARTITION_ASSIGNMENT: 'group', TALLY_LEASE_TTL_MS: '4000',
    TALLY_DEDUP_WINDOW: '4096', TALLY_BALANCE_CAPACITY: '4096', TALLY_CURRENCIES: 'USDT:6',
  }, undefined);
  let service: Service | undefined;
  let producer: CommandProducer | undefined;
  const leaseOf = async (partition: number): Promise<LeaseRow> =>
    (await admin.query<LeaseRow>('SELECT owner, fencing_token::text AS fencing_token FROM partition_leases WHERE topic = $1 AND partition = $2', [topic, partition])).rows[0]!;
  try {
    service = await Service.start(config, createLogger('silent'));
    const running = service;
    await waitServiceReady(running, PARTITIONS);
    producer = await CommandProducer.connect({ brokers: testKafkaBrokers, topic });
    const users = Array.from({ length: 400 }, (_, i) => String(5000 + i));
    const userOf = (partition: number): string => users.find((u) => homePartitionOfAccountDecimal(u, PARTITIONS) === partition)!;
    const deposit = (partition: number, txId: string): void => {
      const account = userOf(partition);
      producer!.send(account, Buffer.from(JSON.stringify({ type: 'deposit', tx_id: txId, account, currency: 'USDT', amount: '1' })));
    };
    for (const p of [0, 1, 2]) deposit(p, `before-${p}`);
    await producer.flush();
    await waitFor('the first deposits are durable', 90_000, () => [0, 1, 2].every((p) => running.durableOffsetOf(p) >= 0));

    // Another instance takes partitions 0 and 1 (live leases of 60 s), while the group goes on
    // assigning them to us.
    const taken = await admin.query<{ partition: number; fencing_token: string }>(
      `UPDATE partition_leases SET owner = 'other', owner_process = 'other-process', fencing_token = fencing_token + 1,
              lease_expiry = now() + interval '60 seconds'
        WHERE topic = $1 AND partition IN (0, 1) RETURNING partition, fencing_token::text AS fencing_token`, [topic]);
    const otherToken = new Map(taken.rows.map((r) => [r.partition, r.fencing_token]));
    await waitFor('partitions 0 and 1 are stopped here', 90_000, () => running.ownedPartitions().join() === '2,3');
    assert.deepEqual(running.unappliedPartitions(), [0, 1], 'the group still assigns them to us');
    for (const p of [0, 1, 2]) deposit(p, `while-held-${p}`);
    await producer.flush();
    await waitFor('partition 2 goes on', 90_000, () => running.durableOffsetOf(2) >= 1);

    // The holder of partition 1 hands it back: taken back and applied from its stored offset.
    await admin.query('UPDATE partition_leases SET owner = NULL WHERE topic = $1 AND partition = 1', [topic]);
    await waitFor('partition 1 is taken back', 90_000, () => running.ownedPartitions().includes(1));
    await waitFor('the deposit sent while partition 1 was held elsewhere is applied', 90_000, () => running.durableOffsetOf(1) >= 1);
    assert.equal((await leaseOf(1)).owner, config.instanceId);
    assert.equal(Number((await leaseOf(1)).fencing_token), Number(otherToken.get(1)) + 1, 'taken with the next fencing token');

    // Partition 0's holder is live all this while: left alone, however often we look.
    await new Promise((resolve) => setTimeout(resolve, 3000));
    assert.deepEqual(await leaseOf(0), { owner: 'other', fencing_token: otherToken.get(0) }, 'a live lease is never taken from its holder');
    assert.equal(running.ownedPartitions().includes(0), false);
    assert.equal(running.durableOffsetOf(0), 0, 'nothing of partition 0 applied here while another holds it');
    assert.equal(running.isReady(), false);

    // Its holder stops renewing: once the lease lapses, partition 0 is taken back too.
    await admin.query(`UPDATE partition_leases SET lease_expiry = now() - interval '1 second' WHERE topic = $1 AND partition = 0`, [topic]);
    await waitFor('partition 0 is taken back once its lease lapsed', 90_000, () => running.ownedPartitions().length === PARTITIONS && running.isReady());
    await waitFor('the deposit sent while partition 0 was held elsewhere is applied', 90_000, () => running.durableOffsetOf(0) >= 1);
    assert.deepEqual(await leaseOf(0), { owner: config.instanceId, fencing_token: String(Number(otherToken.get(0)) + 1) });
    for (const p of [0, 1, 2]) {
      const response = await fetch(`http://127.0.0.1:${running.http.port}/v1/accounts/${userOf(p)}/balances/USDT`);
      assert.deepEqual([response.status, await response.json()], [200, { account: userOf(p), balances: [{ currency: 'USDT', available: '2', frozen: '0' }] }], `both deposits of partition ${p} applied once`);
    }
    assert.deepEqual(await runAudit(database.url), [], 'the committed ledger passes the audit');
  } finally {
    await producer?.disconnect();
    await service?.stop();
    await admin.end();
    await database.drop();
  }
});
