// Serving end to end against the real broker, PostgreSQL and server: a scripted scenario
// with all six command types, duplicates, conflicts, rejections and a malformed message,
// checked through the result events on the events topic, HTTP balances, the transaction
// lookup, WebSocket pushes, /metrics and the database; then the signed transfer API with its
// bad inputs; then a restart mid-stream, after which older outcomes come from PostgreSQL.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import Kafka from '@confluentinc/kafka-javascript';
import WebSocket from 'ws';
import pg from 'pg';
import { loadConfig, TallyConfig } from './config';
import { createLogger } from './logger';
import { Service } from './service';
import { CommandProducer } from './command_producer';
import { signBody, signRequest } from './request_signature';
import { resolveCredit } from './resolve_credit';
import { listen } from './http_server';
import { OutcomeCache } from './outcome_cache';
import { registerTransferRoutes } from './transfer_routes';
import { CurrencyRegistry } from '../engine/currency_registry';
import { createCommandSlotViews, readCommandSlot } from '../engine/command_slot';
import { decodeJsonCommand } from '../engine/json_codec';
import { createTopic, testKafkaBrokers, testPgUrl, uniqueName } from './test_services';
import { createScratchDatabase } from '../persist/scratch_database';
import { runAudit } from '../persist/audit';
import { waitServiceReady } from './failure_support';
import { waitFor } from './tally_process';
import { homePartitionOfAccountDecimal } from '../engine/partitioner';
import { loadNativeCore } from '../engine/native_core';

const PARTITIONS = 4;
const SECRET = 'serving-test-secret-0123456789';

interface ResultEvent { tx_id: string; status: string; reason?: string; partition: number; offset: string; duplicate?: boolean; balances?: Array<{ account: string; currency: string; available: string; frozen: string }> }

/** Reads every result event of the topic from the start. */
class EventReader {
  readonly events: ResultEvent[] = [];
  private constructor(private readonly consumer: Kafka.KafkaConsumer) {}

  static async start(topic: string): Promise<EventReader> {
    const consumer = new Kafka.KafkaConsumer({ 'bootstrap.servers': testKafkaBrokers, 'group.id': uniqueName('events-reader'), 'enable.auto.commit': false }, { 'auto.offset.reset': 'earliest' });
    await new Promise<void>((resolve, reject) => consumer.connect({ timeout: 10_000 }, (error) => (error ? reject(error) : resolve())));
    const reader = new EventReader(consumer);
    consumer.subscribe([topic]);
    consumer.setDefaultConsumeTimeout(50);
    const poll = (): void => {
      if (!consumer.isConnected()) return;
      consumer.consume(1000, (error, messages) => {
        if (!error) for (const m of messages) reader.events.push(JSON.parse(m.value!.toString()) as ResultEvent);
        setImmediate(poll);
      });
    };
    poll();
    return reader;
  }

  of(txId: string): ResultEvent[] {
    return this.events.filter((e) => e.tx_id === txId);
  }

  async waitFor(txIds: string[], timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (txIds.some((t) => this.of(t).length === 0)) {
      if (Date.now() > deadline) assert.fail(`no result event for ${txIds.filter((t) => this.of(t).length === 0).join(', ')}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  stop(): Promise<void> {
    return new Promise((resolve) => this.consumer.disconnect(() => resolve()));
  }
}

async function getJson(port: number, path: string): Promise<{ status: number; body: any }> {
  const response = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: response.status, body: await response.json() };
}

async function postTransfer(port: number, body: string, options: { secret?: string; timestamp?: number | string; signature?: string } = {}): Promise<{ status: number; body: any }> {
  const timestamp = String(options.timestamp ?? Date.now());
  const signature = options.signature ?? signRequest(options.secret ?? SECRET, timestamp, body);
  const response = await fetch(`http://127.0.0.1:${port}/v1/wallet/balance_transfer`, {
    method: 'POST', body, headers: { 'content-type': 'application/json', 'x-tally-timestamp': timestamp, 'x-tally-signature': signature },
  });
  return { status: response.status, body: await response.json() };
}

function signedInit(body: string): RequestInit {
  const timestamp = String(Date.now());
  return { method: 'POST', body, headers: { 'x-tally-timestamp': timestamp, 'x-tally-signature': signRequest(SECRET, timestamp, body) } };
}

function serviceConfig(topic: string, events: string, database: string, group: string): TallyConfig {
  return loadConfig({
    TALLY_KAFKA_BROKERS: testKafkaBrokers, TALLY_PG_URL: database, TALLY_COMMANDS_TOPIC: topic, TALLY_EVENTS_TOPIC: events,
    TALLY_COMMAND_PARTITIONS: String(PARTITIONS), TALLY_CONSUMER_GROUP: group, TALLY_INSTANCE_ID: uniqueName('serving'),
    TALLY_HTTP_PORT: '0', TALLY_DEDUP_WINDOW: '4096', TALLY_BALANCE_CAPACITY: '4096', TALLY_CURRENCIES: 'USDT:6,BTC:8',
    TALLY_TRANSFER_SECRET: SECRET, TALLY_TRANSFER_TIMEOUT_MS: '3000', TALLY_HTTP_BODY_BYTES_MAX: '1024', TALLY_KAFKA_SESSION_TIMEOUT_MS: '6000',
  }, undefined);
}

/** Opens a stream, subscribes, and collects pushes. */
async function openStream(port: number, accounts: string[]): Promise<{ ws: WebSocket; messages: any[] }> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/stream`);
  const messages: any[] = [];
  ws.on('message', (data) => messages.push(JSON.parse(data.toString())));
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  ws.send(JSON.stringify({ op: 'subscribe', accounts }));
  const deadline = Date.now() + 5000;
  while (!messages.some((m) => m.op === 'subscribed')) {
    assert.ok(Date.now() < deadline, 'subscription confirmed');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return { ws, messages };
}

test('result events, balances, transaction lookups, WebSocket pushes, metrics and the transfer API, across a restart', { timeout: 240_000 }, async () => {
  const topic = uniqueName('tally.commands.serving');
  const eventsTopic = uniqueName('tally.events.serving');
  await createTopic(topic, PARTITIONS);
  await createTopic(eventsTopic, PARTITIONS);
  const database = await createScratchDatabase(testPgUrl, 'tally_serving');
  const group = uniqueName('tally-serving');
  const config = serviceConfig(topic, eventsTopic, database.url, group);
  let service: Service | undefined = await Service.start(config, createLogger('warn'));
  const producer = await CommandProducer.connect({ brokers: testKafkaBrokers, topic });
  const events = await EventReader.start(eventsTopic);
  try {
    const users = Array.from({ length: 400 }, (_, i) => String(5000 + i));
    const a = users[0]!;
    const home = homePartitionOfAccountDecimal(a, PARTITIONS);
    const b = users.find((u) => u !== a && homePartitionOfAccountDecimal(u, PARTITIONS) === home)!;
    const elsewhere = users.find((u) => homePartitionOfAccountDecimal(u, PARTITIONS) !== home)!;
    await waitServiceReady(service, PARTITIONS);
    const port = service.http.port;
    const stream = await openStream(port, [a, b]);
    const send = (key: string, value: unknown): void => producer.send(key, Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)));
    send(a, { type: 'deposit', tx_id: 'd1', account: a, currency: 'USDT', amount: '200' });
    send(a, { type: 'deposit', tx_id: 'd1', account: a, currency: 'USDT', amount: '200' });
    send(a, { type: 'deposit', tx_id: 'd1', account: a, currency: 'USDT', amount: '999' });
    send(a, { type: 'freeze', tx_id: 'f1', account: a, currency: 'USDT', amount: '150' });
    send(a, { type: 'unfreeze', tx_id: 'u1', account: a, currency: 'USDT', amount: '20' });
    send(a, { type: 'withdraw', tx_id: 'w1', account: a, currency: 'USDT', amount: '10' });
    send(a, { type: 'withdraw', tx_id: 'w2', account: a, currency: 'USDT', amount: '1000' });
    send(a, { type: 'transfer', tx_id: 't1', from: a, to: b, currency: 'USDT', amount: '5' });
    send(a, { type: 'transfer', tx_id: 't2', from: a, to: elsewhere, currency: 'USDT', amount: '5' });
    send(a, { type: 'settle', tx_id: 's1', account: a, legs: [
      { account: a, currency: 'USDT', available: '0', frozen: '-100' }, { account: '1', currency: 'USDT', available: '0.1', frozen: '0' },
      { account: '2', currency: 'USDT', available: '99.9', frozen: '0' }, { account: '2', currency: 'BTC', available: '-0.001', frozen: '0' },
      { account: a, currency: 'BTC', available: '0.001', frozen: '0' },
    ] });
    send(a, { type: 'deposit', tx_id: 'bad-scale', account: a, currency: 'USDT', amount: '1.0000001' });
    send(a, '{"type":"deposit",');
    await producer.flush();
    const scripted = ['d1', 'f1', 'u1', 'w1', 'w2', 't1', 't2', 's1', 'bad-scale'];
    await events.waitFor(scripted);
    const only = (txId: string): ResultEvent => {
      const list = events.of(txId);
      return list[list.length - 1]!;
    };
    assert.equal(events.of('d1').length, 3, 'the original, the duplicate and the conflict each get an event');
    assert.deepEqual(events.of('d1').map((e) => [e.status, e.reason, e.duplicate === true]), [['accepted', undefined, false], ['accepted', undefined, true], ['rejected', 'DUPLICATE_TX_ID_CONFLICT', false]]);
    assert.deepEqual(events.of('d1')[0]!.balances, [{ account: a, currency: 'USDT', available: '200', frozen: '0' }]);
    assert.equal(only('w2').reason, 'INSUFFICIENT_AVAILABLE');
    const crossing = only('t2') as ResultEvent & { credit?: { tx_id: string; account: string; partition: number; status: string } };
    assert.deepEqual([crossing.status, crossing.credit?.status, crossing.credit?.account], ['accepted', 'pending', elsewhere], 'a transfer to another partition is debited, its credit pending');
    const creditTxId = `~x${home}-${crossing.offset}`;
    assert.equal(crossing.credit?.tx_id, creditTxId);
    await events.waitFor([creditTxId]);
    assert.deepEqual(events.of(creditTxId).map((e) => [e.status, e.partition, e.balances]), [['accepted', homePartitionOfAccountDecimal(elsewhere, PARTITIONS), [{ account: elsewhere, currency: 'USDT', available: '5', frozen: '0' }]]]);
    assert.equal(only('bad-scale').reason, 'BAD_AMOUNT');
    assert.equal(only('s1').status, 'accepted');
    // The malformed message comes after bad-scale in the same partition, perhaps in a later batch.
    await waitFor('the malformed message\'s rejection event', 60_000, () => events.events.some((e) => e.status === 'rejected' && e.reason === 'MALFORMED'));
    // Per partition, events arrive in offset order.
    const offsets = events.events.filter((e) => e.partition === home).map((e) => Number(e.offset));
    assert.deepEqual(offsets, [...offsets].sort((x, y) => x - y));

    const balances = await getJson(port, `/v1/accounts/${a}/balances`);
    assert.deepEqual(balances.body.balances, [{ currency: 'USDT', available: '50', frozen: '30' }, { currency: 'BTC', available: '0.001', frozen: '0' }]);
    assert.deepEqual((await getJson(port, `/v1/transactions/w2`)).body, { tx_id: 'w2', status: 'rejected', reason: 'INSUFFICIENT_AVAILABLE', partition: home, offset: only('w2').offset });
    assert.equal((await getJson(port, '/v1/transactions/never-sent')).status, 404);
    // The conflicting repeat of d1 got its rejection event, but d1's stored outcome is the original's.
    const d1 = (await getJson(port, '/v1/transactions/d1')).body;
    assert.deepEqual([d1.status, d1.reason, d1.offset], ['accepted', undefined, events.of('d1')[0]!.offset], 'a lookup answers the stored outcome, not the conflict');

    const pushed = stream.messages.filter((m) => m.op === 'balance');
    assert.ok(pushed.some((m) => m.account === b && m.currency === 'USDT' && m.available === '5' && m.tx_id === 't1'), 'the credited account is pushed');
    assert.deepEqual(pushed.filter((m) => m.account === a && m.currency === 'USDT').at(-1), { op: 'balance', account: a, currency: 'USDT', available: '50', frozen: '30', tx_id: 's1', partition: home, offset: only('s1').offset });
    stream.ws.send('not json');
    stream.ws.send(JSON.stringify({ op: 'subscribe', accounts: ['-1'] }));
    await waitFor('both stream errors', 10_000, () => stream.messages.filter((m) => m.op === 'error').length >= 2);
    assert.deepEqual(stream.messages.filter((m) => m.op === 'error').map((m) => m.error), ['MALFORMED_JSON', 'BAD_ACCOUNTS']);
    stream.ws.close();

    await checkTransferApi(port, a, b, elsewhere);
    await checkRemoteTransferApi(config, database.url, a, b);
    await checkStrandedCredit(config, database.url, events, send, producer, a, users.find((u) => homePartitionOfAccountDecimal(u, PARTITIONS) !== home && u !== elsewhere)!);

    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    assert.match(metrics, /tally_commands_total\{type="deposit",status="accepted",reason="none"\} [1-9]/);
    assert.match(metrics, /tally_flush_latency_seconds_count [1-9]/);
    assert.match(metrics, new RegExp(`tally_durable_next_offset\\{partition="${home}"\\} [1-9]`));
    assert.match(metrics, /tally_ring_occupancy_slots\{ring="command"\} 0/);
    assert.match(metrics, /tally_balance_entries_released 0\n/, 'every partition is applied here: no entries kept for released ones');
    // The native core wherever npm run build made it (x86-64 Linux: always here and in CI).
    assert.match(metrics, new RegExp(`tally_engine_native_core ${loadNativeCore().core === null ? 0 : 1}\n`), 'the engine applies its batches in the core the metric names');

    // Restart mid-stream: commands sent while the service is down are applied after it comes back.
    await service.stop();
    service = undefined;
    send(a, { type: 'deposit', tx_id: 'after-restart', account: a, currency: 'USDT', amount: '1' });
    await producer.flush();
    // As if the last two events of a's partition had been lost in a crash after their COMMIT:
    // the next start republishes the stored outcomes from the recorded position.
    const lost = await withPg(database.url, async (client) => {
      const lease = await client.query<{ events_next_offset: string; next_offset: string }>('SELECT events_next_offset, next_offset FROM partition_leases WHERE topic = $1 AND partition = $2', [topic, home]);
      assert.equal(lease.rows[0]!.events_next_offset, lease.rows[0]!.next_offset, 'a clean stop records every delivered event');
      const lostFrom = Number(lease.rows[0]!.next_offset) - 2;
      await client.query('UPDATE partition_leases SET events_next_offset = $3 WHERE topic = $1 AND partition = $2', [topic, home, lostFrom]);
      return (await client.query<{ tx_id: string }>('SELECT tx_id FROM tx_outcomes WHERE partition = $1 AND kafka_offset >= $2 ORDER BY kafka_offset', [home, lostFrom])).rows.map((r) => r.tx_id);
    });
    service = await Service.start(config, createLogger('warn'));
    await waitServiceReady(service, PARTITIONS);
    await events.waitFor(['after-restart']);
    const port2 = service.http.port;
    // Right after the start, an idle partition reports its stored offset as durable (no false lag).
    const away = homePartitionOfAccountDecimal(elsewhere, PARTITIONS);
    const storedAway = await withPg(database.url, async (client) => (await client.query<{ next_offset: string }>('SELECT next_offset FROM partition_leases WHERE topic = $1 AND partition = $2', [topic, away])).rows[0]!.next_offset);
    assert.ok(Number(storedAway) > 0);
    const metricsAfter = await (await fetch(`http://127.0.0.1:${port2}/metrics`)).text();
    assert.match(metricsAfter, new RegExp(`tally_durable_next_offset\\{partition="${away}"\\} ${storedAway}\\n`));
    assert.deepEqual((await getJson(port2, `/v1/accounts/${a}/balances/USDT`)).body.balances, [{ currency: 'USDT', available: '47.25', frozen: '30' }]);
    assert.deepEqual((await getJson(port2, '/v1/transactions/w1')).body, { tx_id: 'w1', status: 'accepted', partition: home, offset: only('w1').offset }, 'older outcomes come from PostgreSQL');
    assert.equal(events.of('w1').length, 1, 'a restart does not re-apply or re-announce committed commands');
    const replayed = events.events.filter((e) => (e as { replayed?: boolean }).replayed === true).map((e) => e.tx_id);
    assert.deepEqual(replayed, lost, 'exactly the outcomes past the recorded position are republished');
    assert.deepEqual(await runAudit(database.url), [], 'the committed ledger passes the audit');
  } finally {
    await events.stop();
    await producer.disconnect();
    await service?.stop();
    await database.drop();
  }
});

async function withPg<T>(url: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}


async function checkTransferApi(port: number, a: string, b: string, elsewhere: string): Promise<void> {
  const body = (fields: Record<string, unknown>): string => JSON.stringify({ from_account: a, to_account: b, amount: '1.5', currency: 'USDT', transaction_id: 'api-1', ...fields });
  const ok = await postTransfer(port, body({}));
  assert.equal(ok.status, 200, JSON.stringify(ok.body));
  assert.equal(ok.body.status, 'accepted');
  assert.deepEqual(ok.body.balances, [{ account: a, currency: 'USDT', available: '48.5', frozen: '30' }, { account: b, currency: 'USDT', available: '6.5', frozen: '0' }]);
  const again = await postTransfer(port, body({}));
  assert.deepEqual([again.status, again.body.status, again.body.duplicate], [200, 'accepted', true], 'a retried request returns the stored outcome');
  assert.equal((await postTransfer(port, body({ amount: '2' }))).status, 409, 'same transaction_id, different payload');
  const poor = await postTransfer(port, body({ transaction_id: 'api-2', amount: '1000000' }));
  assert.deepEqual([poor.status, poor.body.reason], [422, 'INSUFFICIENT_AVAILABLE']);
  // Two requests with one new tx_id and different payloads, in flight together: each gets
  // its own command's outcome (the first produced is recorded, the other conflicts), never
  // the other's event.
  const racing = await Promise.all([postTransfer(port, body({ transaction_id: 'api-6', amount: '2000000' })), postTransfer(port, body({ transaction_id: 'api-6', amount: '3000000' }))]);
  assert.deepEqual(racing.map((answer) => [answer.status, answer.body.reason]).sort(), [[409, 'DUPLICATE_TX_ID_CONFLICT'], [422, 'INSUFFICIENT_AVAILABLE']], 'concurrent requests sharing a tx_id');
  const crossing = await postTransfer(port, body({ transaction_id: 'api-3', to_account: elsewhere }));
  assert.deepEqual([crossing.status, crossing.body.status, crossing.body.credit?.status, crossing.body.credit?.account], [200, 'accepted', 'applied', elsewhere], 'the answer waits for the credit');
  const lookup = await getJson(port, '/v1/transactions/api-3');
  assert.equal(lookup.body.credit.status, 'applied', 'the lookup reports both halves');
  const early = await fetch(`http://127.0.0.1:${port}/v1/wallet/balance_transfer?wait=debit`, signedInit(body({ transaction_id: 'api-5', to_account: elsewhere, amount: '0.5' })));
  const earlyBody = (await early.json()) as { status: string; credit?: { status: string } };
  assert.deepEqual([early.status, earlyBody.status, earlyBody.credit === undefined], [200, 'accepted', false], '?wait=debit answers with the debit and its credit half');
  assert.equal((await postTransfer(port, body({ transaction_id: 'api-4' }), { secret: 'another-secret-0123456789' })).body.error, 'BAD_SIGNATURE');
  assert.equal((await postTransfer(port, body({ transaction_id: 'api-4' }), { timestamp: Date.now() - 3_600_000 })).body.error, 'STALE_TIMESTAMP');
  assert.equal((await postTransfer(port, body({ transaction_id: 'api-4' }), { signature: '' })).status, 401);
  const cases: Array<[string, number, string]> = [
    ['{"from_account":', 400, 'MALFORMED_JSON'],
    [body({ extra: 1 }), 400, 'UNKNOWN_FIELD'],
    [body({ amount: 5 }), 400, 'BAD_FIELD'],
    [body({ amount: '1.1234567' }), 400, 'BAD_AMOUNT'],
    [body({ amount: '-1' }), 400, 'BAD_AMOUNT'],
    [body({ currency: 'DOGE' }), 400, 'UNKNOWN_CURRENCY'],
    [body({ from_account: '12x' }), 400, 'BAD_ACCOUNT'],
    [body({ transaction_id: 'x'.repeat(2000) }), 413, 'BODY_TOO_LARGE'],
    [body({ transaction_id: 'a\u0000b' }), 400, 'BAD_TX_ID'],
    [body({ transaction_id: '\ud800' }), 400, 'BAD_TX_ID'],
    [body({ transaction_id: '~x1-5' }), 400, 'BAD_TX_ID'],
  ];
  for (const [text, status, error] of cases) {
    const answer = await postTransfer(port, text);
    assert.deepEqual([answer.status, answer.body.error], [status, error], text.slice(0, 80));
  }
  const wrongMethod = await fetch(`http://127.0.0.1:${port}/v1/wallet/balance_transfer`);
  assert.deepEqual([wrongMethod.status, ((await wrongMethod.json()) as { error: string }).error], [404, 'NOT_FOUND']);
  assert.equal((await getJson(port, '/readyz')).status, 200, 'bad requests never disturb the server');
}

/**
 * The transfer API of an instance that does not apply the sender's partition (another instance
 * does; here: the service above, with this second server in front of it): the answer comes from
 * PostgreSQL once the partition's durable offset passed the produced command, and is the
 * command's own outcome — a duplicate's stored outcome, or 409 for a conflicting repeat
 * (which is never stored, so only the offset and the payload hash tell it apart).
 */
async function checkRemoteTransferApi(config: TallyConfig, pgUrl: string, a: string, b: string): Promise<void> {
  const producer = await CommandProducer.connect({ brokers: testKafkaBrokers, topic: config.commandsTopic });
  const db = new pg.Pool({ connectionString: pgUrl, max: 2 });
  const registry = CurrencyRegistry.fromConfig(config.currencies);
  const server = await listen({
    host: '127.0.0.1', port: 0, isReady: () => true,
    routes: (app) => registerTransferRoutes(app, {
      secret: SECRET, signatureWindowMs: 60_000, timeoutMs: 10_000, bodyBytesMax: 1024, partitionCount: PARTITIONS, commandsTopic: config.commandsTopic,
      registry, producer: () => producer, cache: new OutcomeCache(0), db, ownsPartition: () => false, log: createLogger('warn'), signatureTimestampOptional: true,
    }),
  });
  try {
    const body = (fields: Record<string, unknown>): string => JSON.stringify({ from_account: a, to_account: b, amount: '0.25', currency: 'USDT', transaction_id: 'remote-1', ...fields });
    const ok = await postTransfer(server.port, body({}));
    assert.deepEqual([ok.status, ok.body.status, ok.body.duplicate], [200, 'accepted', undefined], JSON.stringify(ok.body));
    const again = await postTransfer(server.port, body({}));
    assert.deepEqual([again.status, again.body.status, again.body.duplicate, again.body.original_offset], [200, 'accepted', true, ok.body.offset], 'a retry answers the stored outcome');
    assert.equal(again.body.offset, ok.body.offset, 'answered from the stored outcome: nothing produced again');
    const conflict = await postTransfer(server.port, body({ amount: '0.5' }));
    assert.deepEqual([conflict.status, conflict.body.reason], [409, 'DUPLICATE_TX_ID_CONFLICT'], 'same transaction_id, another payload');
    // tx_outcomes keeps the engine's u64 payload hash as int8: a retry must be recognised
    // whichever sign that takes. A rejected transfer whose hash has the other top bit than remote-1's:
    const topBit = (amount: string): boolean => {
      const views = createCommandSlotViews(1, false);
      const command = { type: 'transfer', tx_id: 'x', from: a, to: b, currency: 'USDT', amount };
      decodeJsonCommand(Buffer.from(JSON.stringify(command)), homePartitionOfAccountDecimal(a, PARTITIONS), 0, PARTITIONS, registry, views, 0);
      return readCommandSlot(views, 0).payloadHash >= 1n << 63n;
    };
    const other = Array.from({ length: 64 }, (_, i) => `100000${i}`).find((amount) => topBit(amount) !== topBit('0.25'))!;
    const refused = await postTransfer(server.port, body({ transaction_id: 'remote-4', amount: other }));
    const refusedAgain = await postTransfer(server.port, body({ transaction_id: 'remote-4', amount: other }));
    assert.deepEqual([refused.status, refusedAgain.status, refusedAgain.body.duplicate], [422, 422, true], `a retry of a payload hash with the top bit ${topBit(other) ? 'set' : 'clear'} is a duplicate`);
    const poor = await postTransfer(server.port, body({ transaction_id: 'remote-2', amount: '1000000' }));
    assert.deepEqual([poor.status, poor.body.reason], [422, 'INSUFFICIENT_AVAILABLE']);
    // TALLY_SIGNATURE_TIMESTAMP=optional: the body alone signed, no timestamp header.
    const plain = body({ transaction_id: 'remote-3', amount: '1000000' });
    const bodySigned = await fetch(`http://127.0.0.1:${server.port}/v1/wallet/balance_transfer`, { method: 'POST', body: plain, headers: { 'x-tally-signature': signBody(SECRET, plain) } });
    assert.deepEqual([bodySigned.status, ((await bodySigned.json()) as { reason?: string }).reason], [422, 'INSUFFICIENT_AVAILABLE'], 'a body-only signature is accepted when the timestamp is optional');
    const forged = await fetch(`http://127.0.0.1:${server.port}/v1/wallet/balance_transfer`, { method: 'POST', body: plain, headers: { 'x-tally-signature': signBody('not-the-secret-0123456', plain) } });
    assert.equal(forged.status, 401);
  } finally {
    server.close();
    await db.end();
    await producer.disconnect();
  }
}

/**
 * A credit the receiving partition rejects (the receiver's balance would overflow) is never
 * dropped: the audit reports it stranded until `tally resolve-credit` refunds it to the sender.
 */
async function checkStrandedCredit(
  config: TallyConfig, pgUrl: string, events: EventReader, send: (key: string, value: unknown) => void, producer: CommandProducer, from: string, rich: string,
): Promise<void> {
  send(rich, { type: 'deposit', tx_id: 'rich', account: rich, currency: 'USDT', amount: '9223372036854.775807' });
  send(from, { type: 'transfer', tx_id: 'to-rich', from, to: rich, currency: 'USDT', amount: '1' });
  await producer.flush();
  await events.waitFor(['to-rich']);
  const transfer = events.of('to-rich')[0]!;
  const creditTxId = `~x${transfer.partition}-${transfer.offset}`;
  await events.waitFor([creditTxId]);
  assert.deepEqual(events.of(creditTxId).map((e) => [e.status, e.reason]), [['rejected', 'AMOUNT_OVERFLOW']]);
  const stranded = await runAudit(pgUrl);
  assert.deepEqual(stranded.map((f) => f.check), ['no_stranded_credit'], 'the audit reports the stranded credit');
  // Had the partition count changed, the sender would live elsewhere: refused, nothing sent.
  const changedCount = Array.from({ length: 60 }, (_, i) => i + 5).find((count) => homePartitionOfAccountDecimal(from, count) !== transfer.partition)!;
  await assert.rejects(resolveCredit({ ...config, commandPartitions: changedCount }, creditTxId), /partition count changed/);
  assert.match(await resolveCredit(config, creditTxId), /refunded to/);
  await assert.rejects(resolveCredit(config, '~x0-999999'), /no cross-partition transfer/);
  const refundTxId = `~r${transfer.partition}-${transfer.offset}`;
  await events.waitFor([refundTxId]);
  assert.equal(events.of(refundTxId)[0]!.status, 'accepted');
  assert.deepEqual(await runAudit(pgUrl), [], 'refunded: the audit passes again');
  await assert.rejects(resolveCredit(config, creditTxId), /refunded already/, 'a second resolution never produces a second refund');
}
