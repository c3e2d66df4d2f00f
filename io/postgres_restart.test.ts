// PostgreSQL goes away mid-run and comes back: the engine keeps its state, the flushes retry
// with bounded backoff, /readyz answers 503 while the database is away and 200 again after,
// and in the end the database equals a model run over the whole log — nothing lost, nothing
// doubled. This restarts the machine's PostgreSQL cluster (tests run one file at a time), so
// it needs Debian's pg_ctlcluster and root; without them it is skipped with that reason.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import pg from 'pg';
import { CommandProducer } from './command_producer';
import { testKafkaBrokers, testPgUrl, uniqueName } from './test_services';
import { buildWorkload, modelRun, WORKLOAD_CURRENCIES } from './test_workload';
import { compareWithModel, createTopic, httpPortOf, metricValue, nextOffsets } from './failure_support';
import { sleep, spawnTally, waitFor } from './tally_process';
import { createScratchDatabase } from '../persist/scratch_database';
import { runAudit } from '../persist/audit';

const PARTITIONS = 4;

function clusterVersion(): string | undefined {
  if (process.getuid?.() !== 0 || !existsSync('/usr/bin/pg_ctlcluster') || !existsSync('/etc/postgresql')) return undefined;
  return readdirSync('/etc/postgresql').sort().pop();
}

function pgCluster(action: 'stop' | 'start'): void {
  const args = ['--skip-systemctl-redirect', clusterVersion()!, 'main', action];
  if (action === 'stop') args.push('--', '-m', 'fast');
  execFileSync('pg_ctlcluster', args, { stdio: 'inherit', timeout: 60_000 });
}

async function readyStatus(port: number): Promise<number> {
  try {
    return (await fetch(`http://127.0.0.1:${port}/readyz`)).status;
  } catch {
    return 0;
  }
}

const SKIP = clusterVersion() === undefined ? 'needs root and a local pg_ctlcluster-managed PostgreSQL' : false;

test('PostgreSQL restarted mid-run: retries, not ready while away, nothing lost or doubled', { timeout: 300_000, skip: SKIP }, () => restartScenario(60_000, 2000));

// An outage longer than the lease: the leases count as lost and the partitions stop; once the
// database answers and nobody else took them, the instance takes them back and goes on.
test('PostgreSQL away longer than the lease TTL: the partitions are taken back, nothing lost or doubled', { timeout: 300_000, skip: SKIP }, () => restartScenario(3000, 7000));

async function restartScenario(leaseTtlMs: number, outageMs: number): Promise<void> {
  const topic = uniqueName('tally.commands.pgrestart');
  await createTopic(topic, PARTITIONS);
  const database = await createScratchDatabase(testPgUrl, 'tally_pgrestart');
  const messages = buildWorkload(11, 20_000, PARTITIONS, 1000);
  const model = modelRun(messages, PARTITIONS);
  const half = 10_000;
  const producer = await CommandProducer.connect({ brokers: testKafkaBrokers, topic });
  const produce = async (from: number, to: number): Promise<void> => {
    for (const message of messages.slice(from, to)) producer.send(message.key, message.value);
    await producer.flush();
  };
  const tally = spawnTally({
    TALLY_KAFKA_BROKERS: testKafkaBrokers, TALLY_PG_URL: database.url, TALLY_COMMANDS_TOPIC: topic, TALLY_COMMAND_PARTITIONS: String(PARTITIONS),
    TALLY_CONSUMER_GROUP: uniqueName('pgrestart'), TALLY_INSTANCE_ID: 'pgrestart', TALLY_CURRENCIES: WORKLOAD_CURRENCIES.map((c) => `${c.code}:${c.scale}`).join(','),
    TALLY_DEDUP_WINDOW: '65536', TALLY_BALANCE_CAPACITY: '65536', TALLY_BATCH_ROWS_MAX: '500',
    TALLY_LEASE_TTL_MS: String(leaseTtlMs),
  });
  let stopped = false;
  try {
    let client = new pg.Client({ connectionString: database.url });
    await client.connect();
    await produce(0, half);
    const firstHalf = modelRun(messages.slice(0, half), PARTITIONS).messagesPerPartition;
    await waitFor('the first half to be durable', 120_000, async () =>
      (await nextOffsets(client, topic, PARTITIONS)).every((o, p) => o === firstHalf[p]), tally);
    const port = httpPortOf(tally.output)!;
    assert.equal(await readyStatus(port), 200);
    await client.end();

    pgCluster('stop');
    stopped = true;
    await produce(half, messages.length);
    await waitFor('/readyz to report not ready while PostgreSQL is away', 30_000, async () => (await readyStatus(port)) === 503, tally);
    await sleep(outageMs);
    pgCluster('start');
    stopped = false;

    client = new pg.Client({ connectionString: database.url });
    await waitFor('PostgreSQL to accept connections', 60_000, () => client.connect().then(() => true, () => { client = new pg.Client({ connectionString: database.url }); return false; }));
    await waitFor('the whole log to be durable', 120_000, async () =>
      (await nextOffsets(client, topic, PARTITIONS)).every((o, p) => o === model.messagesPerPartition[p]), tally);
    await waitFor('/readyz to report ready again', 30_000, async () => (await readyStatus(port)) === 200, tally);
    assert.match(tally.output.join(''), /retry|fail/i, 'the flush failures were logged');
    assert.ok(await metricValue(port, 'tally_flush_failures_total') > 0, 'the flush failures were counted');
    assert.equal(await metricValue(port, 'tally_partitions_owned'), PARTITIONS, 'every partition is applied again');
    if (outageMs > leaseTtlMs) {
      assert.match(tally.output.join(''), /lost partitions taken back/, 'the expired leases were taken back');
      assert.ok(await metricValue(port, 'tally_partitions_stopped_total', 'reason="expired-unreachable"') > 0, 'the lost leases were counted');
    }
    tally.child.kill('SIGTERM');
    assert.equal(await tally.exited, 0, 'SIGTERM drains and exits cleanly');
    await compareWithModel(client, model);
    assert.deepEqual(await runAudit(database.url), [], 'audit passes');
    await client.end();
  } finally {
    if (stopped) pgCluster('start');
    tally.child.kill('SIGKILL');
    await producer.disconnect();
    await database.drop();
  }
}
