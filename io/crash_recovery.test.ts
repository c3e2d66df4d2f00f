// kill -9 of the real `tally start` process at random moments while it consumes and flushes,
// round after round; then one clean run to the end of the log. Afterwards the database must
// hold exactly what one uninterrupted engine computes over the same commands: the same
// balances, the same outcomes, one journal per accepted tx, next offsets at the log's end,
// and the audit passing. CRASH_ROUNDS and CRASH_COMMANDS scale it up for a soak
// (scripts/soak.sh).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { CommandProducer } from './command_producer';
import { testKafkaBrokers, testPgUrl, uniqueName } from './test_services';
import { buildWorkload, MODEL_DEDUP_WINDOW, modelRun, WORKLOAD_CURRENCIES } from './test_workload';
import { compareWithModel, createTopic, nextOffsets } from './failure_support';
import { killHard, sleep, spawnTally, waitFor } from './tally_process';
import { SeededRandom } from '../engine/wire_fixtures';
import { ensureDatabase, withDatabase } from '../persist/database';
import { migrate } from '../persist/migrate';
import { runAudit } from '../persist/audit';

const PARTITIONS = 4;
const ROUNDS = Number(process.env['CRASH_ROUNDS'] ?? 20);
const COMMANDS = Number(process.env['CRASH_COMMANDS'] ?? 40_000);
const SEED = Number(process.env['CRASH_SEED'] ?? 20261122);

test(`kill -9 during flushes, ${ROUNDS} rounds: the database equals an uninterrupted model run`, { timeout: 600_000 }, async () => {
  const topic = uniqueName('tally.commands.crash');
  const database = uniqueName('tally_crash');
  const pgUrl = withDatabase(testPgUrl, database);
  await createTopic(topic, PARTITIONS);
  await ensureDatabase(pgUrl);
  await migrate(pgUrl);
  if (COMMANDS > MODEL_DEDUP_WINDOW) throw new Error(`CRASH_COMMANDS ${COMMANDS} exceeds the model's dedup window ${MODEL_DEDUP_WINDOW}`);
  const messages = buildWorkload(SEED, COMMANDS, PARTITIONS, 2000);
  const model = modelRun(messages, PARTITIONS);
  const producer = await CommandProducer.connect({ brokers: testKafkaBrokers, topic });
  // The log grows a chunk before every round, so every round has work in flight when killed.
  const chunk = Math.ceil(messages.length / (ROUNDS + 1));
  let produced = 0;
  const produceChunk = async (): Promise<void> => {
    for (const message of messages.slice(produced, produced + chunk)) producer.send(message.key, message.value);
    produced = Math.min(messages.length, produced + chunk);
    await producer.flush();
  };
  const env = {
    TALLY_KAFKA_BROKERS: testKafkaBrokers, TALLY_PG_URL: pgUrl, TALLY_COMMANDS_TOPIC: topic, TALLY_COMMAND_PARTITIONS: String(PARTITIONS),
    TALLY_CONSUMER_GROUP: uniqueName('crash'), TALLY_INSTANCE_ID: 'crash-test', TALLY_CURRENCIES: WORKLOAD_CURRENCIES.map((c) => `${c.code}:${c.scale}`).join(','),
    // The window covers the whole run, as the model's does: a duplicate picked from far back
    // must be a duplicate for both. With a smaller window Tally applies it again (the window is
    // the contract) while the model does not, and the soak's 400 000 commands (100 000 per
    // partition) outgrew 65 536.
    TALLY_DEDUP_WINDOW: String(Math.max(65_536, COMMANDS)), TALLY_BALANCE_CAPACITY: '65536', TALLY_BATCH_ROWS_MAX: '500',
  };
  const client = new pg.Client({ connectionString: pgUrl });
  await client.connect();
  const random = new SeededRandom(SEED);
  try {
    let durable = 0;
    let roundsWithProgress = 0;
    for (let round = 0; round < ROUNDS; round++) {
      await produceChunk();
      const before = durable;
      const tally = spawnTally(env);
      // Most rounds are killed mid-flush, shortly after durable progress shows; every fourth
      // at a random moment of start-up or recovery instead.
      if (round % 4 === 3) await sleep(random.int(1200));
      else {
        await waitFor('durable progress', 60_000, async () => (await nextOffsets(client, topic, PARTITIONS)).reduce((a, b) => a + b, 0) > before, tally);
        await sleep(random.int(150));
      }
      await killHard(tally);
      durable = (await nextOffsets(client, topic, PARTITIONS)).reduce((a, b) => a + b, 0);
      if (durable > before) roundsWithProgress++;
    }
    while (produced < messages.length) await produceChunk();
    await producer.disconnect();
    const tally = spawnTally(env);
    await waitFor('the engine to flush the whole log', 240_000, async () => {
      const offsets = await nextOffsets(client, topic, PARTITIONS);
      return offsets.every((offset, p) => offset === model.messagesPerPartition[p]);
    }, tally);
    tally.child.kill('SIGTERM');
    assert.equal(await tally.exited, 0, 'SIGTERM drains and exits cleanly');
    assert.ok(roundsWithProgress >= ROUNDS / 2, `most killed rounds made durable progress first (${roundsWithProgress} of ${ROUNDS})`);
    assert.ok(durable < messages.length, 'the killed rounds left work for the last run');
    await compareWithModel(client, model);
    assert.deepEqual(await runAudit(pgUrl), [], 'audit passes');
  } finally {
    await client.end();
    const admin = new pg.Client({ connectionString: withDatabase(testPgUrl, 'postgres') });
    await admin.connect();
    await admin.query(`DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`);
    await admin.end();
  }
});
