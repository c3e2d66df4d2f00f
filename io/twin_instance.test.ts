// Two processes with one TALLY_INSTANCE_ID: the first is frozen (SIGSTOP, a paused VM) long
// enough for its leases to lapse, and a replacement started with the same id takes its
// partitions (Kafka's static membership hands it the first one's assignment at once). When
// the first wakes, its lease renewal fails (its database connections were cut meanwhile), so
// it counts the leases as lost while the database was unreachable and tries to take them
// back. The lease rows carry its owner name, but another process took them: it must leave
// them, not fence the replacement, which would stall the partitions with nobody applying them.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { createTopic, testKafkaBrokers, testPgUrl, uniqueName } from './test_services';
import { readyStatusOf as readyStatus } from './failure_support';
import { sleep, spawnTally, waitFor } from './tally_process';
import { createScratchDatabase } from '../persist/scratch_database';

test('a frozen instance that wakes does not take back leases a replacement with its instance id took', { timeout: 240_000 }, async () => {
  const topic = uniqueName('tally.commands.twin');
  await createTopic(topic, 2);
  const database = await createScratchDatabase(testPgUrl, 'tally_twin');
  const db = new pg.Pool({ connectionString: database.url, max: 2 });
  const env = {
    TALLY_KAFKA_BROKERS: testKafkaBrokers, TALLY_PG_URL: database.url, TALLY_COMMANDS_TOPIC: topic, TALLY_COMMAND_PARTITIONS: '2',
    TALLY_CONSUMER_GROUP: uniqueName('twin'), TALLY_PARTITION_ASSIGNMENT: 'group', TALLY_INSTANCE_ID: 'same-id',
    TALLY_DEDUP_WINDOW: '4096', TALLY_BALANCE_CAPACITY: '4096', TALLY_KAFKA_SESSION_TIMEOUT_MS: '6000', TALLY_LEASE_TTL_MS: '3000',
  };
  const leaseRows = async (): Promise<string> => JSON.stringify((await db.query('SELECT partition, owner, fencing_token::text, owner_process FROM partition_leases ORDER BY partition')).rows);
  const first = spawnTally(env);
  let second: ReturnType<typeof spawnTally> | undefined;
  try {
    await waitFor('the first instance to be ready', 60_000, async () => (await readyStatus(first.output)) === 200, first);
    const firstsBackends = (await db.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()')).rows.map((r) => r.pid);
    first.child.kill('SIGSTOP');
    // Its connections go while it sleeps (a database failover, an idle timeout): on waking its
    // renewal fails, and its leases are long past their deadline.
    await db.query('SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid', [firstsBackends]);
    second = spawnTally(env);
    await waitFor('the replacement to be ready', 90_000, async () => (await readyStatus(second!.output)) === 200, second);
    const taken = await leaseRows();
    assert.equal((JSON.parse(taken) as Array<{ owner: string }>).filter((row) => row.owner === 'same-id').length, 2, taken);

    // Frozen past its leases' deadline (TTL 3 s), as a paused VM would be.
    await sleep(4000);
    first.child.kill('SIGCONT');
    await waitFor('the woken instance to count its leases lost', 60_000, () => first.output.join('').includes('partitions lost'), first);
    // Either it tries to take them back (a retake is due 1 s after the loss) and finds another
    // process's rows, or its fenced consumer reports the partitions lost first and it never
    // tries, or (its dead connection noticed before its renewal ran, which then reconnected)
    // the renewal itself finds the rows taken over and nothing is retaken; which comes first
    // is the timing of the broker and of the wake-up. Either way the rows stay the other's.
    await waitFor('the woken instance to decide on taking them back', 30_000, () => {
      const output = first.output.join('');
      return output.includes('not taking them back') || output.includes('"lost":true,"msg":"partitions handed back"')
        || output.includes('"reason":"taken-over","msg":"partitions stopped: another instance may own them now');
    }, first);
    await sleep(5000);
    assert.equal(await leaseRows(), taken, 'the replacement\'s leases are untouched');
    assert.equal(await readyStatus(second.output), 200, 'the replacement still applies every partition');
    assert.ok(!second.output.join('').includes('partitions lost'), 'the replacement lost nothing');
  } finally {
    first.child.kill('SIGCONT');
    first.child.kill('SIGKILL');
    second?.child.kill('SIGKILL');
    await first.exited;
    await second?.exited;
    await db.end();
    await database.drop();
  }
});
