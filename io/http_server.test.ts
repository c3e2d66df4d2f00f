// The uWebSockets.js server answers over real HTTP on loopback.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { listen } from './http_server';

test('health, readiness and unknown routes over real HTTP', { timeout: 30_000 }, async () => {
  let ready = false;
  const server = await listen({ host: '127.0.0.1', port: 0, isReady: () => ready });
  try {
    const base = `http://127.0.0.1:${server.port}`;
    const health = await fetch(`${base}/healthz`);
    assert.equal(health.status, 200);
    assert.deepEqual(await health.json(), { status: 'ok' });
    assert.equal((await fetch(`${base}/readyz`)).status, 503);
    ready = true;
    assert.equal((await fetch(`${base}/readyz`)).status, 200);
    const missing = await fetch(`${base}/v1/nope`, { method: 'DELETE' });
    assert.equal(missing.status, 404);
    assert.equal(((await missing.json()) as { error: string }).error, 'NOT_FOUND');
  } finally {
    server.close();
  }
});
