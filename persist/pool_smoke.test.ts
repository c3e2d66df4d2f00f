// Proves the Piscina pool runs tasks on real worker threads that read the main thread's
// SharedArrayBuffer.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { threadId } from 'node:worker_threads';
import { Piscina } from 'piscina';

test('a Piscina worker reads a SharedArrayBuffer written by the main thread', { timeout: 30_000 }, async () => {
  const pool = new Piscina({ filename: path.join(__dirname, 'pool_smoke_task.js'), minThreads: 2, maxThreads: 2 });
  try {
    const buffer = new SharedArrayBuffer(4 * 100_000);
    const words = new Int32Array(buffer);
    for (let i = 0; i < words.length; i++) words[i] = (i * 2654435761) | 0;
    const half = words.length / 2;
    const expected = (from: number, to: number): number => {
      let checksum = 0;
      for (let i = from; i < to; i++) checksum = (Math.imul(checksum, 31) + words[i]!) | 0;
      return checksum;
    };
    const results = await Promise.all([
      pool.run({ buffer, fromIndex: 0, toIndex: half }),
      pool.run({ buffer, fromIndex: half, toIndex: words.length }),
    ]);
    assert.equal(results[0].checksum, expected(0, half));
    assert.equal(results[1].checksum, expected(half, words.length));
    for (const result of results) assert.notEqual(result.threadId, threadId);
  } finally {
    await pool.destroy();
  }
});
