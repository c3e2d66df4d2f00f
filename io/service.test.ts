// End to end through the real pieces: commands produced to a real Kafka topic, consumed by
// librdkafka into the command ring, applied by the engine worker, committed to a real
// PostgreSQL by the flush pool, and read back over real HTTP from the shared balance table.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import type { Worker } from 'node:worker_threads';
import pg from 'pg';
import pino from 'pino';
import { loadConfig } from './config';
import { createLogger } from './logger';
import { Service } from './service';
import { CommandProducer } from './command_producer';
import { createTopic, testKafkaBrokers, testPgUrl, uniqueName } from './test_services';
import { createScratchDatabase } from '../persist/scratch_database';
import { runAudit } from '../persist/audit';
import { homePartitionOfAccountDecimal } from '../engine/partitioner';
import { lockLeaseRowOfPartition0, waitServiceReady } from './failure_support';

const PARTITIONS = 4;

async function balancesOf(port: number, account: string): Promise<Record<string, [string, string]>> {
  const response = await fetch(`http://127.0.0.1:${port}/v1/accounts/${account}/balances`);
  assert.equal(response.status, 200);
  const body = (await response.json()) as { account: string; balances: Array<{ currency: string; available: string; frozen: string }> };
  assert.equal(body.account, account);
  return Object.fromEntries(body.balances.map((b) => [b.currency, [b.available, b.frozen]]));
}

/** A service configuration on a test topic and scratch database; `extra` settings win. */
function scratchConfig(topic: string, databaseUrl: string, extra: Record<string, string> = {}) {
  return loadConfig({
    TALLY_KAFKA_BROKERS: testKafkaBrokers, TALLY_PG_URL: databaseUrl, TALLY_COMMANDS_TOPIC: topic,
    TALLY_COMMAND_PARTITIONS: String(PARTITIONS), TALLY_CONSUMER_GROUP: uniqueName('tally-service'), TALLY_HTTP_PORT: '0',
    TALLY_DEDUP_WINDOW: '4096', TALLY_BALANCE_CAPACITY: '4096', TALLY_CURRENCIES: 'USDT:6', ...extra,
  }, undefined);
}

/**
 * Short enough that the takes stuck behind a locked lease row fail within about two seconds
 * (a lease statement waits a ninth of the TTL for a row lock, three attempts), long enough
 * that a loaded CI machine's renewals (query timeout a third of it) do not time out and
 * expire healthy leases, which would retake partitions and bump their tokens.
 */
const LOCKED_TEST_LEASE_TTL_MS = '4000';

async function until(what: string, condition: () => boolean, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    assert.ok(Date.now() < deadline, what);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}


test('commands through Kafka, the ring and the engine worker show up in HTTP balances', { timeout: 120_000 }, async () => {
  const topic = uniqueName('tally.commands.e2e');
  await createTopic(topic, PARTITIONS);
  // A database holds the ledger of one commands topic, so the test gets its own.
  const database = await createScratchDatabase(testPgUrl, 'tally_e2e');
  const config = loadConfig({
    TALLY_KAFKA_BROKERS: testKafkaBrokers, TALLY_PG_URL: database.url, TALLY_COMMANDS_TOPIC: topic,
    TALLY_COMMAND_PARTITIONS: String(PARTITIONS), TALLY_CONSUMER_GROUP: uniqueName('tally-e2e'),
    TALLY_HTTP_PORT: '0', TALLY_DEDUP_WINDOW: '4096', TALLY_BALANCE_CAPACITY: '4096', TALLY_CURRENCIES: 'USDT:6,BTC:8',
  }, undefined);
  const service = await Service.start(config, createLogger('warn'));
  const producer = await CommandProducer.connect({ brokers: testKafkaBrokers, topic });
  try {
    // Two users on the same partition so a transfer between them is local.
    const users = Array.from({ length: 200 }, (_, i) => String(5000 + i));
    const a = users[0]!;
    const b = users.find((u) => u !== a && homePartitionOfAccountDecimal(u, PARTITIONS) === homePartitionOfAccountDecimal(a, PARTITIONS))!;
    const send = (key: string, value: unknown): void => producer.send(key, Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)));
    send(a, { type: 'deposit', tx_id: 'd1', account: a, currency: 'USDT', amount: '100.25' });
    send(a, { type: 'deposit', tx_id: 'd1', account: a, currency: 'USDT', amount: '100.25' });
    send(a, { type: 'deposit', tx_id: 'd1', account: a, currency: 'USDT', amount: '999' });
    send(a, { type: 'freeze', tx_id: 'f1', account: a, currency: 'USDT', amount: '50' });
    send(a, { type: 'withdraw', tx_id: 'w1', account: a, currency: 'USDT', amount: '60' });
    send(a, { type: 'withdraw', tx_id: 'w2', account: a, currency: 'USDT', amount: '10.000001' });
    send(a, { type: 'transfer', tx_id: 't1', from: a, to: b, currency: 'USDT', amount: '5' });
    send(a, { type: 'deposit', tx_id: 'bad-scale', account: a, currency: 'USDT', amount: '1.0000001' });
    send(a, '{"type":"deposit",');
    send(a, { type: 'deposit', tx_id: 'btc', account: a, currency: 'BTC', amount: '0.00000001' });
    await producer.flush();
    const deadline = Date.now() + 60_000;
    const target = producer.lastOffsets;
    while ([...target].some(([p, o]) => service.durableOffsetOf(p) < o)) {
      assert.ok(Date.now() < deadline, 'the engine applies everything within 60 s');
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.deepEqual(await balancesOf(service.http.port, a), { USDT: ['35.249999', '50'], BTC: ['0.00000001', '0'] });
    assert.deepEqual(await balancesOf(service.http.port, b), { USDT: ['5', '0'] });
    const external = await (await fetch(`http://127.0.0.1:${service.http.port}/v1/accounts/0/balances/USDT`)).json();
    assert.deepEqual(external, { account: '0', balances: [{ currency: 'USDT', available: '-90.249999', frozen: '0' }] }, 'the external account mirrors deposits minus withdrawals');
    const bad = await fetch(`http://127.0.0.1:${service.http.port}/v1/accounts/12x/balances`);
    assert.equal(bad.status, 400);
    assert.equal(((await bad.json()) as { error: string }).error, 'BAD_ACCOUNT');
    const unknown = await fetch(`http://127.0.0.1:${service.http.port}/v1/accounts/${a}/balances/DOGE`);
    assert.equal(unknown.status, 404);
    assert.equal((await fetch(`http://127.0.0.1:${service.http.port}/readyz`)).status, 200);
    assert.deepEqual(await runAudit(database.url), [], 'the committed ledger passes the audit');
  } finally {
    await producer.disconnect();
    await service.stop();
    await database.drop();
  }
});

test('a commands topic whose partition count differs from TALLY_COMMAND_PARTITIONS, or that does not exist, stops the start with a clear error', { timeout: 60_000 }, async () => {
  const topic = uniqueName('tally.commands.count');
  await createTopic(topic, PARTITIONS);
  const database = await createScratchDatabase(testPgUrl, 'tally_count');
  const configFor = (commandsTopic: string, partitions: number) => scratchConfig(commandsTopic, database.url, { TALLY_COMMAND_PARTITIONS: String(partitions) });
  try {
    await assert.rejects(Service.start(configFor(topic, PARTITIONS * 2), createLogger('warn')),
      new RegExp(`commands topic ${topic.replace(/\./g, '\\.')} has ${PARTITIONS} partitions but TALLY_COMMAND_PARTITIONS is ${PARTITIONS * 2}`));
    const missing = uniqueName('tally.commands.missing');
    await assert.rejects(Service.start(configFor(missing, PARTITIONS), createLogger('warn')), /does not exist/);
  } finally {
    await database.drop();
  }
});

for (const assignment of ['group', 'static'] as const) test(`${assignment}: an assigned partition whose lease cannot be taken (its row locked by a paused flush) is not ready, retried, and applied once the lock goes`, { timeout: 120_000 }, async () => {
  const topic = uniqueName('tally.commands.locked');
  await createTopic(topic, PARTITIONS);
  const database = await createScratchDatabase(testPgUrl, 'tally_locked');
  const locker = await lockLeaseRowOfPartition0(database.url, topic);
  const config = scratchConfig(topic, database.url, { TALLY_LEASE_TTL_MS: LOCKED_TEST_LEASE_TTL_MS, TALLY_PARTITION_ASSIGNMENT: assignment });
  const service = await Service.start(config, createLogger('silent'));
  const producer = await CommandProducer.connect({ brokers: testKafkaBrokers, topic });
  try {
    await until('the other partitions are taken', () => service.ownedPartitions().length === PARTITIONS - 1);
    await until('partition 0 is reported assigned but not applied', () => service.unappliedPartitions().join() === '0');
    assert.equal(service.isReady(), false);
    const ready = await fetch(`http://127.0.0.1:${service.http.port}/readyz`);
    assert.deepEqual([ready.status, ((await ready.json()) as { unapplied?: number[] }).unapplied], [503, [0]]);
    const user = Array.from({ length: 100 }, (_, i) => String(7000 + i)).find((u) => homePartitionOfAccountDecimal(u, PARTITIONS) === 0)!;
    producer.send(user, Buffer.from(JSON.stringify({ type: 'deposit', tx_id: 'while-locked', account: user, currency: 'USDT', amount: '3' })));
    await producer.flush();
    await new Promise((resolve) => setTimeout(resolve, 2500)); // a retry or two fail meanwhile
    await locker.query('COMMIT');
    await until('partition 0 is taken on a retry', () => service.ownedPartitions().length === PARTITIONS && service.isReady());
    await until('the deposit sent while it was locked is applied', () => service.durableOffsetOf(0) >= 0);
    assert.deepEqual(await balancesOf(service.http.port, user), { USDT: ['3', '0'] });
    const token = await locker.query<{ owner: string; fencing_token: string }>('SELECT owner, fencing_token FROM partition_leases WHERE topic = $1 AND partition = 0', [topic]);
    assert.deepEqual(token.rows, [{ owner: config.instanceId, fencing_token: '2' }], 'taken over with the next fencing token');
    const metrics = await (await fetch(`http://127.0.0.1:${service.http.port}/metrics`)).text();
    assert.doesNotMatch(metrics, /tally_partitions_stopped_total\{[^}]*\} [1-9]/, 'the takes that waited on the locked row never starved the other leases\' renewals');
  } finally {
    await locker.end().catch(() => undefined);
    await producer.disconnect();
    await service.stop();
    await database.drop();
  }
});

test('a failure after a partition was taken (republishing its credits) keeps its lease: it is applied, and the catch-up is retried', { timeout: 120_000 }, async () => {
  const topic = uniqueName('tally.commands.catchup');
  await createTopic(topic, PARTITIONS);
  const database = await createScratchDatabase(testPgUrl, 'tally_catchup');
  const admin = new pg.Client({ connectionString: database.url });
  await admin.connect();
  // Reading the unsent credits fails while the outbox is away (nothing here writes to it).
  await admin.query('ALTER TABLE transfer_outbox RENAME TO transfer_outbox_away');
  const config = scratchConfig(topic, database.url);
  const service = await Service.start(config, createLogger('silent'));
  const producer = await CommandProducer.connect({ brokers: testKafkaBrokers, topic });
  try {
    const deadline = Date.now() + 60_000;
    while (!(service.ownedPartitions().length === PARTITIONS && service.isReady())) {
      assert.ok(Date.now() < deadline, 'every partition taken and ready although its catch-up failed');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const users = Array.from({ length: 40 }, (_, i) => String(9000 + i));
    for (const user of users) producer.send(user, Buffer.from(JSON.stringify({ type: 'deposit', tx_id: `c-${user}`, account: user, currency: 'USDT', amount: '2' })));
    await producer.flush();
    const target = new Map<number, number>();
    for (const [partition, offset] of producer.lastOffsets) target.set(partition, offset);
    while ([...target].some(([p, o]) => service.durableOffsetOf(p) < o)) {
      assert.ok(Date.now() < deadline, 'the deposits are committed on every partition');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.deepEqual(service.ownedPartitions().length, PARTITIONS, 'no partition was stopped for want of its lease');
    const leases = await admin.query<{ owner: string }>('SELECT DISTINCT owner FROM partition_leases WHERE topic = $1', [topic]);
    assert.deepEqual(leases.rows, [{ owner: config.instanceId }]);
    await admin.query('ALTER TABLE transfer_outbox_away RENAME TO transfer_outbox');
    assert.deepEqual(await balancesOf(service.http.port, users[0]!), { USDT: ['2', '0'] });
  } finally {
    await admin.end();
    await producer.disconnect();
    await service.stop();
    await database.drop();
  }
});

test('static: a partition another instance takes while our take of it waits is left to that instance', { timeout: 120_000 }, async () => {
  const topic = uniqueName('tally.commands.elsewhere');
  await createTopic(topic, PARTITIONS);
  const database = await createScratchDatabase(testPgUrl, 'tally_elsewhere');
  const locker = await lockLeaseRowOfPartition0(database.url, topic);
  const config = scratchConfig(topic, database.url, { TALLY_LEASE_TTL_MS: LOCKED_TEST_LEASE_TTL_MS, TALLY_PARTITION_ASSIGNMENT: 'static' });
  const service = await Service.start(config, createLogger('silent'));
  try {
    assert.deepEqual(service.unappliedPartitions(), [0], 'the take of partition 0 failed and is retried');
    await new Promise((resolve) => setTimeout(resolve, 2500)); // a retry has seen the row as the zombie left it
    // Another instance takes partition 0 over (as the zombie's lock ends).
    await locker.query("UPDATE partition_leases SET owner = 'instance-c', fencing_token = fencing_token + 1 WHERE topic = $1 AND partition = 0", [topic]);
    await locker.query('COMMIT');
    const deadline = Date.now() + 30_000;
    while (service.unappliedPartitions().length > 0) {
      assert.ok(Date.now() < deadline, 'the retry gives partition 0 up');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await new Promise((resolve) => setTimeout(resolve, 3000)); // no later retry takes it either
    assert.deepEqual(service.ownedPartitions(), [1, 2, 3]);
    assert.equal(service.isReady(), true);
    const row = await locker.query<{ owner: string; fencing_token: string }>('SELECT owner, fencing_token FROM partition_leases WHERE topic = $1 AND partition = 0', [topic]);
    assert.deepEqual(row.rows, [{ owner: 'instance-c', fencing_token: '2' }], 'instance C is not fenced');
  } finally {
    await locker.end().catch(() => undefined);
    await service.stop();
    await database.drop();
  }
});

test('an engine thread that dies makes the instance not ready, is logged at level fatal and reported to onFatal; stop still ends', { timeout: 120_000 }, async () => {
  const topic = uniqueName('tally.commands.enginedeath');
  await createTopic(topic, PARTITIONS);
  const database = await createScratchDatabase(testPgUrl, 'tally_enginedeath');
  const config = scratchConfig(topic, database.url, { TALLY_PARTITION_ASSIGNMENT: 'static' });
  const lines: string[] = [];
  const sink = new Writable({ write(chunk: Buffer, _encoding, done) { lines.push(...chunk.toString().split('\n').filter((line) => line !== '')); done(); } });
  const fatal: Error[] = [];
  const service = await Service.start(config, pino({ level: 'warn' }, sink), { onFatal: (error) => fatal.push(error) });
  try {
    await waitServiceReady(service, PARTITIONS);
    // The thread ends as it would after an uncaught exception in the engine.
    await (service.engine as unknown as { worker: Worker }).worker.terminate();
    await until('onFatal is called', () => fatal.length > 0, 10_000);
    const ready = await fetch(`http://127.0.0.1:${service.http.port}/readyz`);
    const body = (await ready.json()) as { engine_failed?: string };
    assert.deepEqual([ready.status, body.engine_failed], [503, 'engine worker exited with code 1']);
    assert.equal(fatal.length, 1);
    const logged = lines.map((line) => JSON.parse(line) as { level: number; msg: string }).filter((line) => line.level === 60);
    assert.equal(logged.length, 1);
    assert.match(logged[0]!.msg, /engine thread failed/);
  } finally {
    await service.stop();
    await database.drop();
  }
});

test('static: a partition stopped with its lease expired while the database was away is not ready until it is taken back', { timeout: 120_000 }, async () => {
  const topic = uniqueName('tally.commands.retake');
  await createTopic(topic, PARTITIONS);
  const database = await createScratchDatabase(testPgUrl, 'tally_retake');
  const config = scratchConfig(topic, database.url, { TALLY_LEASE_TTL_MS: LOCKED_TEST_LEASE_TTL_MS, TALLY_PARTITION_ASSIGNMENT: 'static' });
  const service = await Service.start(config, createLogger('silent'));
  let locker: pg.Client | undefined;
  const readyz = async (): Promise<[number, number[] | undefined]> => {
    const answer = await fetch(`http://127.0.0.1:${service.http.port}/readyz`);
    return [answer.status, ((await answer.json()) as { unapplied?: number[] }).unapplied];
  };
  try {
    await waitServiceReady(service, PARTITIONS);
    // Its retake waits on the row lock (as behind a paused old owner) and fails, again and again.
    locker = new pg.Client({ connectionString: database.url });
    locker.on('error', () => undefined);
    await locker.connect();
    await locker.query('BEGIN');
    await locker.query('SELECT * FROM partition_leases WHERE topic = $1 AND partition = 0 FOR UPDATE', [topic]);
    service.stopPartitions([0], 'expired-unreachable');
    await new Promise((resolve) => setTimeout(resolve, 2500));
    assert.deepEqual(service.ownedPartitions(), [1, 2, 3]);
    assert.deepEqual(await readyz(), [503, [0]]);
    await locker.query('COMMIT');
    await until('taken back once the row lock goes', () => service.isReady());
    assert.deepEqual(service.ownedPartitions(), [0, 1, 2, 3]);
    assert.deepEqual(await readyz(), [200, undefined]);
  } finally {
    await locker?.end().catch(() => undefined);
    await service.stop();
    await database.drop();
  }
});

test('group: a partition whose lease is lost while the assignment is still being taken is not read, and is taken back after it', { timeout: 120_000 }, async () => {
  const topic = uniqueName('tally.commands.stoptake');
  await createTopic(topic, PARTITIONS);
  const database = await createScratchDatabase(testPgUrl, 'tally_stoptake');
  // The take of the last partition waits on its locked row (three attempts of a ninth of the
  // TTL each: about 4 s), so the assignment is still being taken when partition 0 is stopped
  // and when the first retake of it comes due (1 s later).
  const locker = new pg.Client({ connectionString: database.url });
  locker.on('error', () => undefined);
  await locker.connect();
  const last = PARTITIONS - 1;
  await locker.query('INSERT INTO partition_leases (topic, partition, owner, fencing_token) VALUES ($1, $2, $3, 1)', [topic, last, 'a-paused-zombie']);
  await locker.query('BEGIN');
  await locker.query('SELECT * FROM partition_leases WHERE topic = $1 AND partition = $2 FOR UPDATE', [topic, last]);
  const config = scratchConfig(topic, database.url, { TALLY_LEASE_TTL_MS: '12000', TALLY_PARTITION_ASSIGNMENT: 'group' });
  const service = await Service.start(config, createLogger('silent'));
  const producer = await CommandProducer.connect({ brokers: testKafkaBrokers, topic });
  try {
    const user = Array.from({ length: 100 }, (_, i) => String(7000 + i)).find((u) => homePartitionOfAccountDecimal(u, PARTITIONS) === 0)!;
    producer.send(user, Buffer.from(JSON.stringify({ type: 'deposit', tx_id: 'before-stop', account: user, currency: 'USDT', amount: '3' })));
    await producer.flush();
    await until('partition 0 is taken while the last one waits', () => service.ownedPartitions().includes(0), 30_000);
    assert.equal(service.ownedPartitions().includes(last), false, 'the last partition is still being taken');
    // Commands of partition 0 keep coming while it is stopped and taken back: a consumer that
    // read it anyway would hand one to the engine after the retake released it there.
    let sent = 0;
    const feeder = setInterval(() => {
      sent++;
      producer.send(user, Buffer.from(JSON.stringify({ type: 'deposit', tx_id: `during-${sent}`, account: user, currency: 'USDT', amount: '1' })));
    }, 10);
    service.stopPartitions([0], 'expired-unreachable');
    await new Promise((resolve) => setTimeout(resolve, 5000));
    await locker.query('COMMIT');
    try {
      await until('every partition is applied and the instance ready', () => service.ownedPartitions().length === PARTITIONS && service.isReady());
      await new Promise((resolve) => setTimeout(resolve, 500));
    } finally {
      clearInterval(feeder);
    }
    producer.send(user, Buffer.from(JSON.stringify({ type: 'deposit', tx_id: 'after-retake', account: user, currency: 'USDT', amount: '4' })));
    await producer.flush();
    await until('every deposit is durable', () => service.durableOffsetOf(0) >= sent + 1);
    assert.deepEqual(await balancesOf(service.http.port, user), { USDT: [String(3 + sent + 4), '0'] });
    assert.equal(service.isReady(), true, 'the engine did not die');
    const row = await locker.query<{ owner: string; fencing_token: string }>('SELECT owner, fencing_token FROM partition_leases WHERE topic = $1 AND partition = 0', [topic]);
    assert.deepEqual(row.rows, [{ owner: config.instanceId, fencing_token: '2' }], 'taken back with the next fencing token');
    assert.deepEqual(await runAudit(database.url), [], 'the committed ledger passes the audit');
  } finally {
    await locker.end().catch(() => undefined);
    await producer.disconnect();
    await service.stop();
    await database.drop();
  }
});

for (const assignment of ['group', 'static'] as const) test(`${assignment}: a partition whose stored next offset is not in the Kafka log is stopped and reported, never read from another position; applied once an operator sets its offset`, { timeout: 120_000 }, async () => {
  const topic = uniqueName('tally.commands.outside');
  await createTopic(topic, PARTITIONS);
  const database = await createScratchDatabase(testPgUrl, 'tally_outside');
  const users = Array.from({ length: 200 }, (_, i) => String(7000 + i));
  const user0 = users.find((u) => homePartitionOfAccountDecimal(u, PARTITIONS) === 0)!;
  const user1 = users.find((u) => homePartitionOfAccountDecimal(u, PARTITIONS) === 1)!;
  const producer = await CommandProducer.connect({ brokers: testKafkaBrokers, topic });
  const deposit = (user: string, txId: string): void => producer.send(user, Buffer.from(JSON.stringify({ type: 'deposit', tx_id: txId, account: user, currency: 'USDT', amount: '1' })));
  for (let i = 0; i < 3; i++) deposit(user0, `early-${i}`);
  await producer.flush();
  // The database says 1 000 commands of partition 0 were applied; the log holds 3 (a topic
  // created again, a database from another cluster): reading from either end would be wrong.
  const admin = new pg.Client({ connectionString: database.url });
  await admin.connect();
  await admin.query('INSERT INTO partition_leases (topic, partition, owner, fencing_token, next_offset) VALUES ($1, 0, NULL, 1, 1000)', [topic]);
  const config = scratchConfig(topic, database.url, { TALLY_PARTITION_ASSIGNMENT: assignment });
  let service = await Service.start(config, createLogger('silent'));
  try {
    await until('partition 0 is reported not applied', () => service.unappliedPartitions().join() === '0' && service.ownedPartitions().join() === '1,2,3');
    const ready = await fetch(`http://127.0.0.1:${service.http.port}/readyz`);
    assert.deepEqual([ready.status, ((await ready.json()) as { unapplied?: number[] }).unapplied], [503, [0]]);
    const stopped = await fetch(`http://127.0.0.1:${service.http.port}/v1/accounts/${user0}/balances`);
    assert.deepEqual([stopped.status, ((await stopped.json()) as { error: string }).error], [503, 'PARTITION_STOPPED'], 'clients are told no retry helps');
    deposit(user1, 'other-partition');
    deposit(user0, 'late-0');
    await producer.flush();
    await until('the other partitions are applied', () => service.durableOffsetOf(1) >= 0);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    assert.equal(service.durableOffsetOf(0), 999, 'nothing of partition 0 is applied (its durable offset stays the stored one)');
    const metrics = await (await fetch(`http://127.0.0.1:${service.http.port}/metrics`)).text();
    assert.match(metrics, /tally_partitions_stopped_total\{reason="offset-outside-log"\} 1/);
    const row = await admin.query<{ next_offset: string }>('SELECT next_offset FROM partition_leases WHERE topic = $1 AND partition = 0', [topic]);
    assert.deepEqual(row.rows, [{ next_offset: '1000' }], 'the stored offset is left for the operator');
    // The operator decides where partition 0 resumes (here: its first command) and restarts.
    await service.stop();
    await admin.query('UPDATE partition_leases SET next_offset = 0 WHERE topic = $1 AND partition = 0', [topic]);
    service = await Service.start(config, createLogger('silent'));
    await waitServiceReady(service, PARTITIONS);
    await until('partition 0 is applied from offset 0', () => service.durableOffsetOf(0) >= 3);
    assert.deepEqual(await balancesOf(service.http.port, user0), { USDT: ['4', '0'] });
  } finally {
    await admin.end();
    await producer.disconnect();
    await service.stop();
    await database.drop();
  }
});
