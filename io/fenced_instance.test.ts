// Two instances started with the same TALLY_INSTANCE_ID (an operator's mistake): Kafka's
// static membership fences the older one's consumer with a fatal error, after which it reads
// nothing more. It must say so and turn not ready, not keep answering /readyz 200 while idle.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createTopic, testKafkaBrokers, testPgUrl, uniqueName } from './test_services';
import { readyStatusOf as readyStatus } from './failure_support';
import { spawnTally, waitFor } from './tally_process';
import { createScratchDatabase } from '../persist/scratch_database';

test('an instance whose consumer is fenced by a second one with its instance id turns not ready', { timeout: 180_000 }, async () => {
  const topic = uniqueName('tally.commands.fenced');
  await createTopic(topic, 2);
  const database = await createScratchDatabase(testPgUrl, 'tally_fenced');
  const env = {
    TALLY_KAFKA_BROKERS: testKafkaBrokers, TALLY_PG_URL: database.url, TALLY_COMMANDS_TOPIC: topic, TALLY_COMMAND_PARTITIONS: '2',
    TALLY_CONSUMER_GROUP: uniqueName('fenced'), TALLY_PARTITION_ASSIGNMENT: 'group', TALLY_INSTANCE_ID: 'same-id',
    TALLY_DEDUP_WINDOW: '4096', TALLY_BALANCE_CAPACITY: '4096', TALLY_KAFKA_SESSION_TIMEOUT_MS: '6000',
  };
  const first = spawnTally(env);
  let second: ReturnType<typeof spawnTally> | undefined;
  try {
    await waitFor('the first instance to be ready', 60_000, async () => (await readyStatus(first.output)) === 200, first);
    second = spawnTally(env);
    await waitFor('the first instance to report its fenced consumer', 90_000, () => first.output.join('').includes('Kafka consumer stopped by a fatal error'), first);
    assert.equal(await readyStatus(first.output), 503, 'the fenced instance is not ready');
  } finally {
    first.child.kill('SIGKILL');
    second?.child.kill('SIGKILL');
    await first.exited;
    await second?.exited;
    await database.drop();
  }
});
