// The transfer API of an instance that does not apply the sender's partition answers from
// PostgreSQL once the partition's durable offset has passed the produced command. Here the
// database says what a partition full of balances leaves behind: the command passed without
// an outcome of its own (BALANCE_TABLE_FULL is not recorded) and a later command with the
// same tx_id was recorded. That later outcome answers the request only if it carries the same
// payload (a retry of it); another payload makes the request a tx_id conflict. The real
// broker (the command is produced; nothing consumes it), PostgreSQL and an HTTP client.

import { test } from 'node:test';
import net from 'node:net';
import assert from 'node:assert/strict';
import Kafka from '@confluentinc/kafka-javascript';
import pg from 'pg';
import { CommandProducer } from './command_producer';
import { signRequest } from './request_signature';
import { listen } from './http_server';
import { OutcomeCache } from './outcome_cache';
import { registerTransferRoutes } from './transfer_routes';
import { createLogger } from './logger';
import { waitFor } from './tally_process';
import { createTopic, testKafkaBrokers, testPgUrl, uniqueName } from './test_services';
import { createScratchDatabase } from '../persist/scratch_database';
import { CurrencyRegistry } from '../engine/currency_registry';
import { createCommandSlotViews, readCommandSlot } from '../engine/command_slot';
import { decodeJsonCommand } from '../engine/json_codec';
import { homePartitionOfAccountDecimal } from '../engine/partitioner';

const PARTITIONS = 2;
const SECRET = 'transfer-routes-test-secret-0123';
const FROM = '1001';
const TO = '1002';

interface Harness {
  readonly url: string;
  readonly topic: string;
  readonly db: pg.Pool;
  readonly partition: number;
  payloadHashOf(txId: string, amount: string): bigint;
  post(txId: string, amount: string): Promise<{ status: number; body: { status?: string; reason?: string; offset?: string; error?: string } }>;
  close(): Promise<void>;
}

/** The transfer routes alone on a real server, producing to a fresh topic nobody consumes, answering from a scratch database. */
async function startHarness(name: string, ownsPartition: () => boolean, cache: OutcomeCache, timeoutMs = 10_000, body: { inFlightBytesMax?: number; receiveMs?: number } = {}): Promise<Harness> {
  const topic = uniqueName(`tally.commands.${name}`);
  await createTopic(topic, PARTITIONS);
  const database = await createScratchDatabase(testPgUrl, `tally_${name.replace(/-/g, '_')}`);
  const db = new pg.Pool({ connectionString: database.url, max: 2 });
  const producer = await CommandProducer.connect({ brokers: testKafkaBrokers, topic });
  const registry = CurrencyRegistry.fromConfig([{ code: 'USDT', scale: 6 }]);
  const partition = homePartitionOfAccountDecimal(FROM, PARTITIONS);
  const server = await listen({
    host: '127.0.0.1', port: 0, isReady: () => true,
    routes: (app) => registerTransferRoutes(app, {
      secret: SECRET, signatureWindowMs: 60_000, timeoutMs, bodyBytesMax: 1024, bodyInFlightBytesMax: body.inFlightBytesMax, bodyReceiveMs: body.receiveMs,
      partitionCount: PARTITIONS, commandsTopic: topic,
      registry, producer: () => producer, cache, db, ownsPartition: () => ownsPartition(), log: createLogger('silent'),
    }),
  });
  return {
    url: `http://127.0.0.1:${server.port}/v1/wallet/balance_transfer`, topic, db, partition,
    // The engine's payload hash of the transfer the route produces, as tx_outcomes stores it.
    payloadHashOf: (txId, amount) => {
      const views = createCommandSlotViews(1, false);
      const command = { type: 'transfer', tx_id: txId, from: FROM, to: TO, currency: 'USDT', amount };
      decodeJsonCommand(Buffer.from(JSON.stringify(command)), partition, 0, PARTITIONS, registry, views, 0);
      return BigInt.asIntN(64, readCommandSlot(views, 0).payloadHash);
    },
    post: async (txId, amount) => {
      const body = JSON.stringify({ from_account: FROM, to_account: TO, amount, currency: 'USDT', transaction_id: txId });
      const timestamp = String(Date.now());
      const response = await fetch(`http://127.0.0.1:${server.port}/v1/wallet/balance_transfer`, {
        method: 'POST', body, headers: { 'content-type': 'application/json', 'x-tally-timestamp': timestamp, 'x-tally-signature': signRequest(SECRET, timestamp, body) },
      });
      return { status: response.status, body: await response.json() as { status?: string; reason?: string; offset?: string; error?: string } };
    },
    close: async () => {
      server.close();
      await producer.disconnect();
      await db.end();
      await database.drop();
    },
  };
}

test('a remote transfer request whose command passed unrecorded is answered by a later outcome of its tx_id only if the payload is the same', { timeout: 60_000 }, async () => {
  const { db, topic, partition, payloadHashOf, post, close } = await startHarness('transfer-routes', () => false, new OutcomeCache(0));
  try {
    // Each command is produced first (nothing recorded for its tx_id yet); then the database
    // says the partition is durable far past it and the tx_id was recorded at a later offset.
    const cases: Array<[string, string, string, number]> = [['retried', '1', '1', 1], ['reused', '1', '999', 2]];
    const answers = [];
    for (const [txId, amount, recordedAmount, watermark] of cases) {
      const answer = post(txId, amount);
      await waitFor('the command in the log', 20_000, async () => (await highWatermark(topic, partition)) === watermark);
      if (watermark === 1) await db.query('INSERT INTO partition_leases (topic, partition, owner, fencing_token, next_offset) VALUES ($1, $2, $3, 1, 1000000)', [topic, partition, 'the-applying-instance']);
      await db.query('INSERT INTO tx_outcomes (partition, tx_id, kafka_offset, accepted, payload_hash) VALUES ($1, $2, $3, true, $4)', [partition, txId, 500000 + watermark, payloadHashOf(txId, recordedAmount).toString()]);
      answers.push(await answer);
    }
    const [retried, reused] = answers;
    assert.deepEqual([retried!.status, retried!.body.status, retried!.body.offset], [200, 'accepted', '500001'], 'the retry\'s outcome is this transfer\'s');
    assert.deepEqual([reused!.status, reused!.body.reason], [409, 'DUPLICATE_TX_ID_CONFLICT'], 'another payload\'s outcome is not this transfer\'s');
  } finally {
    await close();
  }
});

// A transfer the full balance table turned away is not a verdict (nothing applied, nothing
// recorded, retry with the same transaction_id): 503 with the reason, whether this instance
// applies the partition (its event) or another does (its reply kept in tx_replies), where it
// used to be 422 here and a 504 after the whole timeout there.
test('a transfer turned away by a full balance table is answered 503 BALANCE_TABLE_FULL, here and from another instance', { timeout: 60_000 }, async () => {
  for (const owns of [true, false]) {
    const cache = new OutcomeCache(16);
    const { db, topic, partition, post, close } = await startHarness(`transfer-full-${owns ? 'here' : 'there'}`, () => owns, cache, 20_000);
    try {
      const answer = post('no-room', '1');
      await waitFor('the command in the log', 20_000, async () => (await highWatermark(topic, partition)) === 1);
      if (owns) {
        // What the fan-out hands over for it: a reply event, not a stored outcome.
        cache.add('no-room', partition, `{"tx_id":"no-room","status":"rejected","reason":"BALANCE_TABLE_FULL","partition":${partition},"offset":"0"}`, false);
      } else {
        await db.query("INSERT INTO tx_replies (partition, kafka_offset, tx_id, accepted, reason) VALUES ($1, 0, 'no-room', false, 'BALANCE_TABLE_FULL')", [partition]);
        await db.query('INSERT INTO partition_leases (topic, partition, owner, fencing_token, next_offset) VALUES ($1, $2, $3, 1, 1)', [topic, partition, 'the-applying-instance']);
      }
      // A request that timed out would be 504 OUTCOME_TIMEOUT.
      const { status, body } = await answer;
      assert.deepEqual([status, body.status, body.reason, body.offset], [503, 'rejected', 'BALANCE_TABLE_FULL', '0'], `owns ${owns}`);
    } finally {
      await close();
    }
  }
});

// TALLY_TRANSFER_TIMEOUT_MS bounds the whole request, the check of its transaction_id
// against the stored outcomes included: a database that does not answer that check (here a
// lock holds tx_outcomes) gets the request its 503 at the timeout, nothing produced, not an
// answer whenever the database comes back.
test('a transfer whose transaction_id check does not finish within the timeout is 503 DATABASE_UNAVAILABLE at the timeout, and nothing is produced', { timeout: 60_000 }, async () => {
  const { db, topic, partition, post, close } = await startHarness('transfer-deadline', () => false, new OutcomeCache(0), 1000);
  const locker = await db.connect();
  try {
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE tx_outcomes IN ACCESS EXCLUSIVE MODE');
    const answer = post('blocked', '1');
    const lockHeldMs = 20_000;
    const first = await Promise.race([answer, new Promise<'still waiting'>((resolve) => setTimeout(() => resolve('still waiting'), lockHeldMs))]);
    assert.notEqual(first, 'still waiting', 'answered while the database still held the check');
    assert.deepEqual([(first as Awaited<typeof answer>).status, (first as Awaited<typeof answer>).body.error], [503, 'DATABASE_UNAVAILABLE']);
    assert.equal(await highWatermark(topic, partition), 0, 'nothing was produced');
  } finally {
    await locker.query('ROLLBACK');
    locker.release();
    await close();
  }
});

// A signed request replayed after its transaction_id has left the dedup window (more than
// TALLY_DEDUP_WINDOW commands on its partition since) would be applied again by the engine:
// the route answers a transaction_id its partition has recorded from tx_outcomes, and
// produces nothing.
test('a transfer whose transaction_id is already recorded is answered from PostgreSQL and not produced again, whatever the dedup window', { timeout: 60_000 }, async () => {
  for (const owns of [false, true]) {
    const { db, topic, partition, payloadHashOf, post, close } = await startHarness(`transfer-recorded-${owns ? 'here' : 'there'}`, () => owns, new OutcomeCache(16));
    try {
      await db.query(
        "INSERT INTO tx_outcomes (partition, tx_id, kafka_offset, accepted, reason, payload_hash) VALUES ($1, 'paid', 17, true, NULL, $2), ($1, 'refused', 18, false, 'INSUFFICIENT_AVAILABLE', $3)",
        [partition, payloadHashOf('paid', '5').toString(), payloadHashOf('refused', '5').toString()]);
      const replay = await post('paid', '5');
      assert.deepEqual([replay.status, replay.body], [200, { tx_id: 'paid', status: 'accepted', partition, offset: '17', duplicate: true, original_offset: '17' }], `owns ${owns}`);
      const refused = await post('refused', '5');
      assert.deepEqual([refused.status, refused.body.reason, (refused.body as { duplicate?: boolean }).duplicate], [422, 'INSUFFICIENT_AVAILABLE', true]);
      const other = await post('paid', '6');
      assert.deepEqual([other.status, other.body.reason], [409, 'DUPLICATE_TX_ID_CONFLICT']);
      assert.equal(await highWatermark(topic, partition), 0, 'nothing was produced');
    } finally {
      await close();
    }
  }
});

// Headers that cannot carry a valid signature are refused before the body is read, so a
// client without the secret cannot make the server buffer bodies; nothing is produced.
test('a transfer request without a usable signature header is refused on its headers, before its body is read', { timeout: 60_000 }, async () => {
  const { url, topic, partition, close } = await startHarness('transfer-headers', () => false, new OutcomeCache(0));
  try {
    const big = 'x'.repeat(100_000);
    const send = async (headers: Record<string, string>): Promise<[number, string | undefined]> => {
      const response = await fetch(url, { method: 'POST', body: big, headers });
      return [response.status, ((await response.json()) as { error?: string }).error];
    };
    assert.deepEqual(await send({}), [401, 'MISSING_SIGNATURE'], 'not 413: the body was never read');
    assert.deepEqual(await send({ 'x-tally-signature': 'a'.repeat(64) }), [401, 'MISSING_SIGNATURE']);
    assert.deepEqual(await send({ 'x-tally-timestamp': String(Date.now() - 3_600_000), 'x-tally-signature': 'a'.repeat(64) }), [401, 'STALE_TIMESTAMP']);
    assert.deepEqual(await send({ 'x-tally-timestamp': String(Date.now()), 'x-tally-signature': 'zz' }), [401, 'BAD_SIGNATURE']);
    // Plausible headers: the body is read (and here refused for its size).
    assert.deepEqual(await send({ 'x-tally-timestamp': String(Date.now()), 'x-tally-signature': 'a'.repeat(64) }), [413, 'BODY_TOO_LARGE']);
    assert.equal(await highWatermark(topic, partition), 0);
  } finally {
    await close();
  }
});

/**
 * A raw HTTP/1.1 request on its own connection: `send` writes more of it; `answer` is the
 * server's first complete response; `closed` resolves once the server closed the connection.
 */
function rawRequest(port: number, headers: Record<string, string>): { send(bytes: string): void; answer: Promise<string>; closed: Promise<void> } {
  const socket = net.connect(port, '127.0.0.1');
  socket.setNoDelay(true);
  const head = ['POST /v1/wallet/balance_transfer HTTP/1.1', 'host: 127.0.0.1', ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`), '', ''].join('\r\n');
  socket.write(head);
  let text = '';
  const answer = new Promise<string>((resolve) => {
    socket.on('data', (data) => {
      text += data.toString('latin1');
      const end = text.indexOf('\r\n\r\n');
      const length = /\r\ncontent-length: *([0-9]+)/i.exec(text);
      if (end >= 0 && length !== null && text.length >= end + 4 + Number(length[1])) resolve(text);
    });
    socket.on('close', () => resolve(text));
  });
  const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
  socket.on('error', () => undefined);
  return { send: (bytes) => void socket.write(bytes), answer, closed };
}

// A body is read before its signature can be checked, so everything about it that a client
// controls is bounded: its declared size (refused before a byte of it is read), the time it
// may take, and the bytes all bodies being received may reserve. A refused request's
// connection is closed, so the client cannot go on streaming. A body sent a byte at a time is
// put together exactly (its signature, over the exact bytes, passes).
test('transfer bodies are bounded: a declared length over the limit is 413 at once, a body that does not arrive in time 408, buffers beyond the in-flight budget 503 (a body that sends nothing takes none); refused connections are closed', { timeout: 60_000 }, async () => {
  const { url, topic, partition, close } = await startHarness('transfer-bodies', () => false, new OutcomeCache(0), 10_000, { inFlightBytesMax: 1500, receiveMs: 1500 });
  const port = Number(new URL(url).port);
  const signed = (body: string): Record<string, string> => {
    const timestamp = String(Date.now());
    return { 'x-tally-timestamp': timestamp, 'x-tally-signature': signRequest(SECRET, timestamp, body), 'content-length': String(Buffer.byteLength(body)) };
  };
  try {
    const huge = rawRequest(port, { ...signed('{}'), 'content-length': '100000' });
    const hugeAnswer = await huge.answer;
    assert.match(hugeAnswer, /^HTTP\/1\.1 413 [^]*"error":"BODY_TOO_LARGE"[^]*declares 100000/, hugeAnswer);
    await huge.closed;

    // A body that declares its length and sends nothing takes none of the 1500-byte budget:
    // another body of 1000 bytes is read meanwhile (and refused as JSON, its signature passing).
    const slow = rawRequest(port, signed('x'.repeat(1020)));
    const fine = rawRequest(port, signed('z'.repeat(1000)));
    fine.send('z'.repeat(1000));
    const fineAnswer = await fine.answer;
    assert.match(fineAnswer, /^HTTP\/1\.1 400 [^]*"error":"MALFORMED_JSON"/, fineAnswer);
    // Once the slow one sends bytes its buffer (1020) is held: a second body whose buffer
    // would take more than the rest is refused.
    slow.send('x'.repeat(1000));
    await new Promise((resolve) => setTimeout(resolve, 200));
    const busy = rawRequest(port, signed('y'.repeat(1000)));
    busy.send('y'.repeat(400));
    const busyAnswer = await busy.answer;
    assert.match(busyAnswer, /^HTTP\/1\.1 503 [^]*"error":"BODIES_BUSY"/, busyAnswer);
    await busy.closed;
    const slowAnswer = await slow.answer;
    assert.match(slowAnswer, /^HTTP\/1\.1 408 [^]*"error":"BODY_TIMEOUT"/, slowAnswer);
    await slow.closed;

    // Its buffer was given back when it ended: a body of 1000 bytes sent a byte or a few at a
    // time is read, exactly (its signature passes; it is then refused as JSON).
    const text = `{"from_account":"1001","amount":"${'1'.repeat(950)}`;
    const trickled = rawRequest(port, signed(text));
    for (let at = 0; at < text.length; at += 1 + (at % 7)) {
      trickled.send(text.slice(at, at + 1 + (at % 7)));
      if (at % 10 === 0) await new Promise((resolve) => setTimeout(resolve, 1));
    }
    const trickledAnswer = await trickled.answer;
    assert.match(trickledAnswer, /^HTTP\/1\.1 400 [^]*"error":"MALFORMED_JSON"/, trickledAnswer);
    assert.equal(await highWatermark(topic, partition), 0, 'nothing was produced');
  } finally {
    await close();
  }
});

// The database cannot be read while a remote request waits for its outcome: the command is in
// the log (it may well be applied), so the answer says the outcome could not be read, not that
// the command never reached Kafka.
test('a remote transfer whose outcome cannot be read from PostgreSQL until the timeout is 503 OUTCOME_UNREADABLE', { timeout: 60_000 }, async () => {
  const { db, topic, partition, post, close } = await startHarness('transfer-unreadable', () => false, new OutcomeCache(0), 2000);
  try {
    await db.query('ALTER TABLE partition_leases RENAME TO partition_leases_away');
    const answer = await post('unreadable', '1');
    assert.deepEqual([answer.status, answer.body.error], [503, 'OUTCOME_UNREADABLE'], JSON.stringify(answer.body));
    assert.equal(await highWatermark(topic, partition), 1, 'the command was produced');
    await db.query('ALTER TABLE partition_leases_away RENAME TO partition_leases');
  } finally {
    await close();
  }
});

// A rebalance while the request waits: this instance applied the sender's partition when the
// command was produced and hands it over before applying it; the new owner applies it, and
// the answer comes from PostgreSQL instead of a local event that will never come.
test('a transfer request whose partition is handed over while it waits is answered from PostgreSQL', { timeout: 60_000 }, async () => {
  let owns = true;
  const { db, topic, partition, payloadHashOf, post, close } = await startHarness('transfer-handover', () => owns, new OutcomeCache(16));
  try {
    const answer = post('handed-over', '2');
    // The command is the first of its partition in this topic: offset 0. Wait until the broker has it.
    await waitFor('the command in the log', 20_000, async () => (await highWatermark(topic, partition)) === 1);
    owns = false;
    await db.query('INSERT INTO partition_leases (topic, partition, owner, fencing_token, next_offset) VALUES ($1, $2, $3, 2, 1)', [topic, partition, 'the-new-owner']);
    await db.query("INSERT INTO tx_outcomes (partition, tx_id, kafka_offset, accepted, payload_hash) VALUES ($1, 'handed-over', 0, true, $2)", [partition, payloadHashOf('handed-over', '2').toString()]);
    const { status, body } = await answer;
    assert.deepEqual([status, body.status, body.offset], [200, 'accepted', '0'], JSON.stringify(body));
  } finally {
    await close();
  }
});

async function highWatermark(topic: string, partition: number): Promise<number> {
  const consumer = new Kafka.KafkaConsumer({ 'bootstrap.servers': testKafkaBrokers, 'group.id': uniqueName('watermark') }, {});
  await new Promise<void>((resolve, reject) => consumer.connect({ timeout: 10_000 }, (error) => (error ? reject(error) : resolve())));
  try {
    return await new Promise<number>((resolve, reject) => consumer.queryWatermarkOffsets(topic, partition, 5_000, (error, offsets) => (error ? reject(error) : resolve(Number(offsets.highOffset)))));
  } finally {
    await new Promise<void>((resolve) => consumer.disconnect(() => resolve()));
  }
}
