// Chaos: three `tally start` processes in one consumer group while the log keeps growing, and
// a seeded schedule of kills, pauses, SIGTERMs and dropped database connections
// (io/chaos_support.ts). No instance may die on its own, every SIGTERM must exit 0, and at the
// end the database must equal one uninterrupted model run (balances, outcomes, journal), the
// audit must pass, and every command must have exactly one result event of its own
// (republished ones are flagged and may repeat).
//
// CHAOS_SECONDS (default 60), CHAOS_COMMANDS (default 60 000) and CHAOS_SEED (default: new
// each run, printed) scale it up for a soak; CHAOS_LOG_DIR keeps every process's output. A
// failing seed replays the same schedule, though never the same timing of the processes.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { CommandProducer } from './command_producer';
import { testKafkaBrokers, testPgUrl, uniqueName } from './test_services';
import { buildWorkload, MODEL_DEDUP_WINDOW, modelRun, WORKLOAD_CURRENCIES } from './test_workload';
import { compareWithModel, createTopic, nextOffsets } from './failure_support';
import { assertEveryCommandAnnounced, ChaosCluster, assertNoRepliesLeft } from './chaos_support';
import { SeededRandom } from '../engine/wire_fixtures';
import { createScratchDatabase } from '../persist/scratch_database';
import { runAudit } from '../persist/audit';

const PARTITIONS = 4;
const SECONDS = Number(process.env['CHAOS_SECONDS'] ?? 60);
const COMMANDS = Number(process.env['CHAOS_COMMANDS'] ?? 60_000);
const SEED = Number(process.env['CHAOS_SEED'] ?? (Date.now() % 1_000_000_007));

test(`chaos over ${SECONDS} s (seed ${SEED}): kills, pauses, restarts and dropped connections lose and double nothing`, { timeout: (SECONDS + 600) * 1000 }, async () => {
  console.log(`chaos seed ${SEED} (replay with CHAOS_SEED=${SEED})`);
  if (COMMANDS / PARTITIONS * 2 > MODEL_DEDUP_WINDOW) throw new Error(`CHAOS_COMMANDS ${COMMANDS} is too many for the model's dedup window ${MODEL_DEDUP_WINDOW}`);
  const random = new SeededRandom(SEED);
  const topic = uniqueName('tally.commands.chaos');
  const eventsTopic = uniqueName('tally.events.chaos');
  await createTopic(topic, PARTITIONS);
  await createTopic(eventsTopic, PARTITIONS);
  const database = await createScratchDatabase(testPgUrl, 'tally_chaos');
  const messages = buildWorkload(SEED, COMMANDS, PARTITIONS, 3000);
  const model = modelRun(messages, PARTITIONS);
  const producer = await CommandProducer.connect({ brokers: testKafkaBrokers, topic });
  const client = new pg.Client({ connectionString: database.url });
  await client.connect();
  const cluster = new ChaosCluster({
    TALLY_KAFKA_BROKERS: testKafkaBrokers, TALLY_PG_URL: database.url, TALLY_COMMANDS_TOPIC: topic, TALLY_EVENTS_TOPIC: eventsTopic,
    TALLY_COMMAND_PARTITIONS: String(PARTITIONS), TALLY_CONSUMER_GROUP: uniqueName('chaos'),
    TALLY_CURRENCIES: WORKLOAD_CURRENCIES.map((c) => `${c.code}:${c.scale}`).join(','),
    TALLY_DEDUP_WINDOW: String(MODEL_DEDUP_WINDOW), TALLY_BALANCE_CAPACITY: '65536', TALLY_BATCH_ROWS_MAX: '500', TALLY_PARTITION_ASSIGNMENT: 'group',
  }, 3, random, client, 'chaos');
  try {
    await cluster.run(SECONDS, messages.length, (index) => producer.send(messages[index]!.key, messages[index]!.value), () => producer.flush());
    await cluster.settleAndStop('the instances to flush the whole log', async () =>
      (await nextOffsets(client, topic, PARTITIONS)).every((o, p) => o === model.messagesPerPartition[p]));
    await compareWithModel(client, model);
    assert.deepEqual(await runAudit(database.url), [], 'audit passes');
    await assertEveryCommandAnnounced(testKafkaBrokers, eventsTopic, model.messagesPerPartition, model.events);
    await assertNoRepliesLeft(client);
  } catch (error) {
    console.log(`chaos seed ${SEED} failed; actions: ${cluster.actions.join('; ')}`);
    throw error;
  } finally {
    cluster.killAll();
    await producer.disconnect();
    await client.end();
    await database.drop();
  }
});
