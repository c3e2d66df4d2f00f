// Two `tally start` processes in one consumer group split the partitions; each answers the
// balances of its own partitions and sends the others' askers away (421). When one is killed
// with kill -9, the other takes its partitions over (lease, recovery, seek) after the group's
// session timeout and finishes the log: the database then equals one uninterrupted model run,
// nothing lost or doubled, and the audit passes.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { CommandProducer } from './command_producer';
import { testKafkaBrokers, testPgUrl, uniqueName } from './test_services';
import { buildWorkload, modelRun, WORKLOAD_CURRENCIES } from './test_workload';
import { compareWithModel, createTopic, httpPortOf, nextOffsets } from './failure_support';
import { killHard, spawnTally, TallyProcess, waitFor } from './tally_process';
import { createScratchDatabase } from '../persist/scratch_database';
import { runAudit } from '../persist/audit';
import { homePartitionOfAccountDecimal } from '../engine/partitioner';

const PARTITIONS = 4;
const COMMANDS = 30_000;

interface Readiness { status: string; instance: string; partitions: number[] }

async function readiness(tally: TallyProcess): Promise<Readiness | undefined> {
  const port = httpPortOf(tally.output);
  if (port === undefined) return undefined;
  try {
    return (await (await fetch(`http://127.0.0.1:${port}/readyz`)).json()) as Readiness;
  } catch {
    return undefined;
  }
}

test('two instances split the partitions; when one is killed the other takes its partitions over, nothing lost or doubled', { timeout: 300_000 }, async () => {
  const topic = uniqueName('tally.commands.takeover');
  await createTopic(topic, PARTITIONS);
  const database = await createScratchDatabase(testPgUrl, 'tally_takeover');
  const messages = buildWorkload(20261201, COMMANDS, PARTITIONS, 2000);
  const model = modelRun(messages, PARTITIONS);
  const half = COMMANDS / 2;
  const producer = await CommandProducer.connect({ brokers: testKafkaBrokers, topic });
  const produce = async (from: number, to: number): Promise<void> => {
    for (const message of messages.slice(from, to)) producer.send(message.key, message.value);
    await producer.flush();
  };
  const env = {
    TALLY_KAFKA_BROKERS: testKafkaBrokers, TALLY_PG_URL: database.url, TALLY_COMMANDS_TOPIC: topic, TALLY_COMMAND_PARTITIONS: String(PARTITIONS),
    TALLY_CONSUMER_GROUP: uniqueName('takeover'), TALLY_CURRENCIES: WORKLOAD_CURRENCIES.map((c) => `${c.code}:${c.scale}`).join(','),
    TALLY_DEDUP_WINDOW: '65536', TALLY_BALANCE_CAPACITY: '65536', TALLY_BATCH_ROWS_MAX: '500', TALLY_KAFKA_SESSION_TIMEOUT_MS: '6000',
    TALLY_PARTITION_ASSIGNMENT: 'group',
  };
  const client = new pg.Client({ connectionString: database.url });
  await client.connect();
  const a = spawnTally({ ...env, TALLY_INSTANCE_ID: 'takeover-a' });
  const b = spawnTally({ ...env, TALLY_INSTANCE_ID: 'takeover-b' });
  try {
    await produce(0, half);
    let split: [Readiness, Readiness] | undefined;
    await waitFor('the two instances to split the partitions', 120_000, async () => {
      const [ra, rb] = [await readiness(a), await readiness(b)];
      if (ra?.status !== 'ready' || rb?.status !== 'ready') return false;
      const all = [...ra.partitions, ...rb.partitions].sort();
      if (ra.partitions.length === 0 || rb.partitions.length === 0 || all.join() !== '0,1,2,3') return false;
      split = [ra, rb];
      return true;
    }, a);
    const [ra] = split!;
    // An account whose home partition B applies, asked at A.
    const foreign = Array.from({ length: 100 }, (_, i) => String(1000 + i)).find((acc) => !ra.partitions.includes(homePartitionOfAccountDecimal(acc, PARTITIONS)))!;
    const misdirected = await fetch(`http://127.0.0.1:${httpPortOf(a.output)}/v1/accounts/${foreign}/balances`);
    const body = (await misdirected.json()) as { error: string; partition: number };
    assert.equal(misdirected.status, 421);
    assert.deepEqual([body.error, body.partition], ['PARTITION_NOT_OWNED', homePartitionOfAccountDecimal(foreign, PARTITIONS)]);

    const firstHalf = modelRun(messages.slice(0, half), PARTITIONS).messagesPerPartition;
    await waitFor('both instances to flush the first half', 120_000, async () =>
      (await nextOffsets(client, topic, PARTITIONS)).every((o, p) => o === firstHalf[p]), b);
    await killHard(a);
    await produce(half, messages.length);
    await waitFor('B to take A\'s partitions over and flush the whole log', 180_000, async () =>
      (await nextOffsets(client, topic, PARTITIONS)).every((o, p) => o === model.messagesPerPartition[p]), b);
    const rb = await readiness(b);
    assert.deepEqual(rb?.partitions, [0, 1, 2, 3], 'B applies every partition now');
    const tokens = (await client.query<{ partition: number; owner: string; fencing_token: string }>('SELECT partition, owner, fencing_token FROM partition_leases WHERE topic = $1 ORDER BY partition', [topic])).rows;
    for (const lease of tokens) {
      assert.equal(lease.owner, 'takeover-b');
      if (ra.partitions.includes(lease.partition)) assert.ok(Number(lease.fencing_token) >= 2, `partition ${lease.partition} was taken over with a new token`);
    }
    b.child.kill('SIGTERM');
    assert.equal(await b.exited, 0, 'B drains and exits cleanly');
    await compareWithModel(client, model);
    assert.deepEqual(await runAudit(database.url), [], 'audit passes');
  } finally {
    a.child.kill('SIGKILL');
    b.child.kill('SIGKILL');
    await producer.disconnect();
    await client.end();
    await database.drop();
  }
});
