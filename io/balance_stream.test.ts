// The WebSocket stream against a real uWS server and a real `ws` client: a subscriber that
// stops reading is closed with 4008 once its unsent data passes the bound, and every push it
// did get is a gap-free prefix of what was published (uWS never skips one silently; what was
// still unsent at the close may be lost, which the close code tells the client).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import WebSocket from 'ws';
import { BalanceStream, CLOSE_PARTITION_MOVED, CLOSE_PUSHES_LOST, CLOSE_SLOW_CONSUMER } from './balance_stream';
import type { PartitionOwnership } from './balance_routes';
import { homePartitionOfAccountDecimal } from '../engine/partitioner';
import type { DurableOutcome } from './durable_outcome';
import { listen } from './http_server';
import { createLogger } from './logger';

const ACCOUNT = '1001';
/** Above uWS's default backpressure limit of 64 KiB, where it used to drop pushes unnoticed. */
const BUFFER_BYTES_MAX = 512 * 1024;

/** A durable outcome as the fan-out hands it over: only what publish() reads. */
function outcome(index: number): DurableOutcome {
  return {
    txId: `t-${index}`, offset: index,
    balances: [{ account: ACCOUNT, currency: 'USDT', available: String(index), frozen: '0', partition: 0 }],
  } as unknown as DurableOutcome;
}

test('a subscriber that stops reading is closed with 4008 and misses no push before the close', { timeout: 60_000 }, async () => {
  const stream = new BalanceStream(BUFFER_BYTES_MAX, createLogger('silent'));
  const server = await listen({ host: '127.0.0.1', port: 0, isReady: () => true, routes: (app) => stream.register(app) });
  try {
    const ws = new WebSocket(`ws://127.0.0.1:${server.port}/v1/stream`);
    const offsets: number[] = [];
    let subscribed = false;
    ws.on('message', (data) => {
      const message = JSON.parse(data.toString()) as { op: string; offset?: string };
      if (message.op === 'subscribed') subscribed = true;
      if (message.op === 'balance') offsets.push(Number(message.offset));
    });
    const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    ws.send(JSON.stringify({ op: 'subscribe', accounts: [ACCOUNT] }));
    while (!subscribed) await new Promise((resolve) => setTimeout(resolve, 5));

    // The client stops reading; the kernel's socket buffers fill, then uWS's own.
    (ws as unknown as { _socket: { pause(): void } })._socket.pause();
    let published = 0;
    while (stream.slowConsumersClosed === 0) {
      assert.ok(published < 2_000_000, 'the slow subscriber is closed within 2 000 000 pushes');
      for (let i = 0; i < 1000; i++) stream.publish(outcome(published++));
      await new Promise((resolve) => setImmediate(resolve));
    }
    (ws as unknown as { _socket: { resume(): void } })._socket.resume();

    assert.equal(await closed, CLOSE_SLOW_CONSUMER, 'closed as a slow consumer');
    assert.ok(offsets.length > 0 && offsets.length < published, `got ${offsets.length} of ${published} pushes before the close`);
    offsets.forEach((offset, index) => assert.equal(offset, index, 'pushes arrive in order with none skipped'));
  } finally {
    server.close();
  }
});

/** Every client streamClient() opened: ended after each test, so a failed one cannot keep the process alive. */
const clients: WebSocket[] = [];

/** A connected client that collects what it is sent, and its close code. */
async function streamClient(port: number): Promise<{ ws: WebSocket; received: Array<Record<string, unknown>>; closed: Promise<number>; closeReason: Promise<string>; next: () => Promise<Record<string, unknown>> }> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/stream`);
  clients.push(ws);
  const received: Array<Record<string, unknown>> = [];
  ws.on('message', (data) => received.push(JSON.parse(data.toString()) as Record<string, unknown>));
  const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
  const closeReason = new Promise<string>((resolve) => ws.once('close', (_code, reason) => resolve(reason.toString())));
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  let taken = 0;
  const next = async (): Promise<Record<string, unknown>> => {
    const deadline = Date.now() + 10_000;
    while (received.length <= taken) {
      assert.ok(Date.now() < deadline, 'an answer comes');
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    return received[taken++]!;
  };
  return { ws, received, closed, closeReason, next };
}

test('only accounts of partitions applied here can be subscribed; subscribers of a partition that leaves are closed with 4009, of one whose pushes were lost with 4010', { timeout: 60_000 }, async () => {
  const partitionCount = 4;
  const owned = new Set([0, 1]);
  let stoppedOutsideLog = -1;
  const ownership: PartitionOwnership = {
    partitionCount, self: 'here',
    owns: (partition) => owned.has(partition),
    ownerOf: (partition) => (partition === 2 ? 'here' : 'elsewhere'),
    owned: () => [...owned],
    outsideLog: (partition) => partition === stoppedOutsideLog,
  };
  const accounts = Array.from({ length: 200 }, (_, i) => String(5000 + i));
  const on = (partition: number): string => accounts.find((a) => homePartitionOfAccountDecimal(a, partitionCount) === partition)!;
  const stream = new BalanceStream(BUFFER_BYTES_MAX, createLogger('silent'), ownership);
  const server = await listen({ host: '127.0.0.1', port: 0, isReady: () => true, routes: (app) => stream.register(app) });
  try {
    const client = await streamClient(server.port);
    client.ws.send(JSON.stringify({ op: 'subscribe', accounts: [on(0), on(3)] }));
    assert.deepEqual(await client.next(), {
      op: 'error', error: 'PARTITION_NOT_OWNED', account: on(3), partition: 3, owner: 'elsewhere',
      message: `account ${on(3)} lives on partition 3, applied by instance elsewhere; subscribe there`,
    });
    client.ws.send(JSON.stringify({ op: 'subscribe', accounts: [on(2)] }));
    assert.equal((await client.next())['error'], 'PARTITION_UNAVAILABLE', 'a partition this instance is taking back');
    stoppedOutsideLog = 2;
    client.ws.send(JSON.stringify({ op: 'subscribe', accounts: [on(2)] }));
    assert.equal((await client.next())['error'], 'PARTITION_STOPPED', 'a partition stopped outside the log: no retry helps');
    assert.equal(stream.subscriptions, 0, 'a refused subscribe subscribes nothing');
    client.ws.send(JSON.stringify({ op: 'subscribe', accounts: [on(0), on(1), '1'] }));
    assert.deepEqual(await client.next(), { op: 'subscribed', accounts: [on(0), on(1), '1'] });
    const other = await streamClient(server.port);
    other.ws.send(JSON.stringify({ op: 'subscribe', accounts: [on(1)] }));
    assert.equal((await other.next())['op'], 'subscribed');

    owned.delete(0);
    stream.partitionsLeft([0]);
    assert.equal(await client.closed, CLOSE_PARTITION_MOVED, 'the subscriber of partition 0 is told');
    assert.match(await client.closeReason, /^PARTITION_MOVED: .* over HTTP$/, 'the whole reason arrives');
    stream.publish({ txId: 't', offset: 1, balances: [{ account: on(1), currency: 'USDT', available: '1', frozen: '0', partition: 1 }] } as unknown as DurableOutcome);
    assert.equal((await other.next())['op'], 'balance', 'a subscriber of a partition still applied here keeps its pushes');
    assert.equal(stream.subscriptions, 1);
    // A durable change of partition 1 whose pushes were lost (its fan-out failed): its
    // subscribers are told; nobody else is.
    const bystander = await streamClient(server.port);
    bystander.ws.send(JSON.stringify({ op: 'subscribe', accounts: ['1'] }));
    assert.equal((await bystander.next())['op'], 'subscribed');
    stream.pushesLost(1);
    assert.equal(await other.closed, CLOSE_PUSHES_LOST, 'the subscriber of partition 1 is told its pushes are incomplete');
    assert.match(await other.closeReason, /^PUSHES_LOST: .* over HTTP$/, 'the whole reason arrives (a close frame holds 123 bytes of it)');
    stream.pushesLost(0);
    // System accounts may be subscribed but are never pushed (api.md): a change of fee account
    // 1 reaches nobody, so the next message the bystander gets answers its unsubscribe.
    stream.publish({ txId: 'fee', offset: 2, balances: [{ account: '1', currency: 'USDT', available: '5', frozen: '0', partition: 1 }] } as unknown as DurableOutcome);
    bystander.ws.send(JSON.stringify({ op: 'unsubscribe', accounts: ['1'] }));
    assert.equal((await bystander.next())['op'], 'unsubscribed', 'a subscriber of system accounts only stays connected, and gets no push');
  } finally {
    for (const ws of clients.splice(0)) ws.terminate();
    server.close();
  }
});

test('subscriptions are bounded over all connections, counted once per account, and freed by a close', { timeout: 60_000 }, async () => {
  const stream = new BalanceStream(BUFFER_BYTES_MAX, createLogger('silent'), undefined, 5);
  const server = await listen({ host: '127.0.0.1', port: 0, isReady: () => true, routes: (app) => stream.register(app) });
  try {
    const first = await streamClient(server.port);
    first.ws.send(JSON.stringify({ op: 'subscribe', accounts: ['1001', '1002', '1003'] }));
    assert.equal((await first.next())['op'], 'subscribed');
    first.ws.send(JSON.stringify({ op: 'subscribe', accounts: ['1001', '1002', '1003'] }));
    assert.equal((await first.next())['op'], 'subscribed', 'subscribing again costs nothing');
    const second = await streamClient(server.port);
    second.ws.send(JSON.stringify({ op: 'subscribe', accounts: ['1001', '1004', '1005'] }));
    const refused = await second.next();
    assert.deepEqual([refused['op'], refused['error']], ['error', 'TOO_MANY_SUBSCRIPTIONS']);
    second.ws.send(JSON.stringify({ op: 'subscribe', accounts: ['1004', '1005'] }));
    assert.equal((await second.next())['op'], 'subscribed');
    assert.equal(stream.subscriptions, 5);
    first.ws.close();
    await first.closed;
    const deadline = Date.now() + 10_000;
    while ((stream.subscriptions as number) !== 2) {
      assert.ok(Date.now() < deadline, 'the closed connection\'s subscriptions are freed');
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    second.ws.send(JSON.stringify({ op: 'subscribe', accounts: ['1001', '1002', '1003'] }));
    assert.equal((await second.next())['op'], 'subscribed');
  } finally {
    for (const ws of clients.splice(0)) ws.terminate();
    server.close();
  }
});
