// SIGTERM while the consumer group's assignment is still being taken (a partition's lease
// still waiting on PostgreSQL, as right after start-up): the service stops within its bound
// and exits cleanly. A review suspected librdkafka's close would wait without a bound for the
// assignment call of a rebalance still being handled; this shows it does not hang here.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createTopic, testKafkaBrokers, testPgUrl, uniqueName } from './test_services';
import { spawnTally, waitFor } from './tally_process';
import { lockLeaseRowOfPartition0 } from './failure_support';
import { createScratchDatabase } from '../persist/scratch_database';

const PARTITIONS = 2;
const EXIT_WAIT_MS = 40_000;

test('SIGTERM while an assigned partition is being taken: the service exits cleanly within its bound', { timeout: 180_000 }, async () => {
  const topic = uniqueName('tally.commands.term-take');
  await createTopic(topic, PARTITIONS);
  const database = await createScratchDatabase(testPgUrl, 'tally_term_take');
  // Partition 0's lease row is held by a transaction (as a paused instance's flush would hold
  // it), so its take waits for the lock timeout: a take in progress when SIGTERM comes.
  const locker = await lockLeaseRowOfPartition0(database.url, topic);
  const tally = spawnTally({
    TALLY_KAFKA_BROKERS: testKafkaBrokers, TALLY_PG_URL: database.url, TALLY_COMMANDS_TOPIC: topic, TALLY_COMMAND_PARTITIONS: String(PARTITIONS),
    TALLY_CONSUMER_GROUP: uniqueName('term-take'), TALLY_PARTITION_ASSIGNMENT: 'group', TALLY_INSTANCE_ID: uniqueName('term-take'),
    TALLY_DEDUP_WINDOW: '4096', TALLY_BALANCE_CAPACITY: '4096', TALLY_KAFKA_SESSION_TIMEOUT_MS: '6000', TALLY_LEASE_TTL_MS: '30000',
  });
  try {
    await waitFor('the group to assign the partitions', 60_000, () => tally.output.join('').includes('consumer group assigned partitions'), tally);
    tally.child.kill('SIGTERM');
    const code = await Promise.race([tally.exited, new Promise<string>((resolve) => setTimeout(() => resolve('still running'), EXIT_WAIT_MS))]);
    assert.equal(code, 0, `the service exits cleanly after SIGTERM (output tail: ${tally.output.join('').slice(-1500)})`);
    assert.match(tally.output.join(''), /"msg":"tally stopped"/);
  } finally {
    tally.child.kill('SIGKILL');
    await tally.exited;
    await locker.query('ROLLBACK').catch(() => undefined);
    await locker.end();
    await database.drop();
  }
});
