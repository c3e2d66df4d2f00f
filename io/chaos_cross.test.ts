// Chaos with transfers across partitions: three `tally start` processes in one consumer group
// under the seeded kills, pauses, SIGTERMs and dropped connections of io/chaos_support.ts,
// while transfers whose `to` lives on another partition keep arriving; each owes a credit that
// the owner of its partition relays through Kafka to the owner of the other (often another
// instance, often one just killed or paused). Afterwards every transfer is applied exactly
// once on both sides (cross_workload.ts), transit nets to zero, the audit passes, and every
// command of every partition, the credits included, has a result event.
//
// CHAOS_SECONDS (default 60), CHAOS_TRANSFERS (default 6 000) and CHAOS_SEED scale it up.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { CommandProducer } from './command_producer';
import { testKafkaBrokers, testPgUrl, uniqueName } from './test_services';
import { createTopic, nextOffsets, readAllEvents } from './failure_support';
import { sleep, waitFor } from './tally_process';
import { ChaosCluster, eventGaps } from './chaos_support';
import { checkExactlyOnce, crossWorkload, depositJson, transferJson, transfersSettled } from './cross_workload';
import { SeededRandom } from '../engine/wire_fixtures';
import { createScratchDatabase } from '../persist/scratch_database';
import { runAudit } from '../persist/audit';

const PARTITIONS = 4;
const USERS = 300;
const DEPOSIT = 500n;
const SECONDS = Number(process.env['CHAOS_SECONDS'] ?? 60);
const TRANSFERS = Number(process.env['CHAOS_TRANSFERS'] ?? 6000);
const SEED = Number(process.env['CHAOS_SEED'] ?? (Date.now() % 1_000_000_007));

test(`chaos with cross-partition transfers over ${SECONDS} s (seed ${SEED}): each applied exactly once on both sides`, { timeout: (SECONDS + 600) * 1000 }, async () => {
  console.log(`chaos (cross) seed ${SEED} (replay with CHAOS_SEED=${SEED})`);
  const random = new SeededRandom(SEED);
  const topic = uniqueName('tally.commands.chaos-cross');
  const eventsTopic = uniqueName('tally.events.chaos-cross');
  await createTopic(topic, PARTITIONS);
  await createTopic(eventsTopic, PARTITIONS);
  const database = await createScratchDatabase(testPgUrl, 'tally_chaos_cross');
  const { users, transfers } = crossWorkload(SEED, PARTITIONS, USERS, TRANSFERS);
  const producer = await CommandProducer.connect({ brokers: testKafkaBrokers, topic });
  const client = new pg.Client({ connectionString: database.url });
  await client.connect();
  const cluster = new ChaosCluster({
    TALLY_KAFKA_BROKERS: testKafkaBrokers, TALLY_PG_URL: database.url, TALLY_COMMANDS_TOPIC: topic, TALLY_EVENTS_TOPIC: eventsTopic,
    TALLY_COMMAND_PARTITIONS: String(PARTITIONS), TALLY_CONSUMER_GROUP: uniqueName('chaos-cross'), TALLY_CURRENCIES: 'USDT:2',
    TALLY_DEDUP_WINDOW: '65536', TALLY_BALANCE_CAPACITY: '65536', TALLY_BATCH_ROWS_MAX: '200', TALLY_PARTITION_ASSIGNMENT: 'group',
  }, 3, random, client, 'chaos-cross');
  try {
    for (const user of users) producer.send(user, depositJson(user, DEPOSIT));
    const began = Date.now();
    let produced = 0;
    while (Date.now() < began + SECONDS * 1000 && cluster.failures.length === 0) {
      const share = Math.min(transfers.length, Math.ceil(transfers.length * (Date.now() - began + 4000) / (SECONDS * 1000)));
      for (; produced < share; produced++) producer.send(transfers[produced]!.from, transferJson(transfers[produced]!));
      await producer.flush();
      await cluster.step();
      await sleep(1500 + random.int(3000));
    }
    for (; produced < transfers.length; produced++) producer.send(transfers[produced]!.from, transferJson(transfers[produced]!));
    await producer.flush();
    console.log(`chaos (cross) actions: ${cluster.actions.join('; ')}`);
    assert.deepEqual(cluster.failures, [], 'no instance died on its own, every SIGTERM exited 0');

    const settling = Date.now();
    await waitFor('every transfer and credit to settle', 240_000, async () => cluster.failures.length > 0 || transfersSettled(client, transfers), cluster.first);
    assert.deepEqual(cluster.failures, [], 'no instance died on its own while settling');
    console.log(`settled ${((Date.now() - settling) / 1000).toFixed(1)} s after the chaos`);
    await cluster.stopAll();
    assert.deepEqual(cluster.failures, [], 'every instance drains and exits 0 on SIGTERM');

    await checkExactlyOnce(client, users, transfers, DEPOSIT, 1_000_000);
    assert.deepEqual(await runAudit(database.url), [], 'audit passes: conservation, transit = credits in flight (none), no stranded credit');
    const { missing, doubled, replayed } = eventGaps(await readAllEvents(testKafkaBrokers, eventsTopic), await nextOffsets(client, topic, PARTITIONS));
    console.log(`result events: ${replayed} republished after crashes and takeovers`);
    assert.deepEqual(doubled.slice(0, 5), [], 'no command announced twice as its own');
    assert.deepEqual(missing.slice(0, 20), [], 'every command, credits included, has a result event');
  } catch (error) {
    console.log(`chaos (cross) seed ${SEED} failed; actions: ${cluster.actions.join('; ')}`);
    throw error;
  } finally {
    cluster.killAll();
    await producer.disconnect();
    await client.end();
    await database.drop();
  }
});
