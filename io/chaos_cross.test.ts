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
import { createTopic, nextOffsets } from './failure_support';
import { assertEveryCommandAnnounced, ChaosCluster, assertNoRepliesLeft } from './chaos_support';
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
    await cluster.run(SECONDS, transfers.length, (index) => producer.send(transfers[index]!.from, transferJson(transfers[index]!)), () => producer.flush());
    await cluster.settleAndStop('every transfer and credit to settle', () => transfersSettled(client, transfers));
    await checkExactlyOnce(client, users, transfers, DEPOSIT, 1_000_000);
    assert.deepEqual(await runAudit(database.url), [], 'audit passes: conservation, transit = credits in flight (none), no stranded credit');
    // Every offset of every partition, the credits included.
    await assertEveryCommandAnnounced(testKafkaBrokers, eventsTopic, await nextOffsets(client, topic, PARTITIONS));
    await assertNoRepliesLeft(client);
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
