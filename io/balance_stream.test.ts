// The WebSocket stream against a real uWS server and a real `ws` client: a subscriber that
// stops reading is closed with 4008 once its unsent data passes the bound, and every push it
// did get is a gap-free prefix of what was published (uWS never skips one silently; what was
// still unsent at the close may be lost, which the close code tells the client).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import WebSocket from 'ws';
import { BalanceStream, CLOSE_SLOW_CONSUMER } from './balance_stream';
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
