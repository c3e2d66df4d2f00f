// The outcome cache keeps the newest `capacity` durable outcomes, evicts the oldest first
// (a tx_id added again counts from its latest addition) and wakes waiters.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { OutcomeCache } from './outcome_cache';

// The cache keeps what the result event says; a minimal one of it.
function add(cache: OutcomeCache, txId: string, offset: number, partition = 0): void {
  cache.add(txId, partition, `{"tx_id":${JSON.stringify(txId)},"status":"accepted","partition":${partition},"offset":"${offset}"}`);
}

test('the cache keeps the newest outcomes and evicts the oldest first', () => {
  const cache = new OutcomeCache(3);
  add(cache, 'a', 1);
  add(cache, 'b', 2);
  add(cache, 'a', 3);
  add(cache, 'c', 4);
  assert.equal(cache.get('a')?.offset, '3', 'a re-added is kept with its latest outcome');
  add(cache, 'd', 5);
  assert.equal(cache.get('b'), undefined, 'b was the oldest');
  assert.deepEqual(['a', 'c', 'd'].map((t) => cache.get(t)?.offset), ['3', '4', '5']);
  add(cache, 'e', 6);
  assert.equal(cache.get('a'), undefined);
  assert.equal(cache.size, 3);
});

test('waiters get the next outcome of their tx_id that they accept, or undefined at the timeout', async () => {
  const cache = new OutcomeCache(0);
  const waiting = cache.waitFor('t', 1000, 2);
  add(cache, 't', 1, 1);
  add(cache, 't', 9, 2);
  assert.equal((await waiting)?.offset, '9');
  assert.equal(await cache.waitFor('never', 20), undefined);
  assert.equal(cache.waiting, 0);
});

test('the tx_id index agrees with a Map model over many adds, repeats and evictions', () => {
  const capacity = 97;
  const cache = new OutcomeCache(capacity);
  const model = new Map<string, number>();
  const order: string[] = [];
  let seed = 12345;
  const next = (): number => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0);
  for (let offset = 0; offset < 20_000; offset++) {
    // Few distinct tx_ids, so repeats (a later addition replacing an earlier one) are common.
    const txId = `tx-${next() % 300}`;
    add(cache, txId, offset);
    order.push(txId);
    model.set(txId, offset);
    if (order.length > capacity) {
      const evicted = order.shift()!;
      if (!order.includes(evicted)) model.delete(evicted);
    }
    if (offset % 97 === 0) {
      for (let t = 0; t < 300; t++) {
        const expected = model.get(`tx-${t}`);
        assert.equal(cache.get(`tx-${t}`)?.offset, expected === undefined ? undefined : String(expected), `seed 12345, after ${offset + 1} adds, tx-${t}`);
      }
      assert.equal(cache.size, model.size);
    }
  }
});
