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

test('an outcome that is not stored (a conflicting repeat) wakes its waiters but never replaces the stored one', async () => {
  const cache = new OutcomeCache(4);
  add(cache, 'd1', 10);
  const waiting = cache.waitFor('d1', 1000);
  cache.add('d1', 0, '{"tx_id":"d1","status":"rejected","reason":"DUPLICATE_TX_ID_CONFLICT","partition":0,"offset":"11"}', false);
  assert.equal((await waiting)?.reason, 'DUPLICATE_TX_ID_CONFLICT', 'the waiter hears of the conflict');
  assert.deepEqual([cache.get('d1')?.status, cache.get('d1')?.offset], ['accepted', '10'], 'a lookup still answers the stored outcome');
  cache.add('x', 0, '{"tx_id":"x","status":"rejected","reason":"MALFORMED","partition":0,"offset":"12"}', false);
  assert.equal(cache.get('x'), undefined, 'nothing stored, nothing cached: the lookup reads the database');
  assert.equal(cache.size, 1);
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

test('outcomes larger than the entries the arena was sized for evict the oldest by bytes, and never return stale or torn', () => {
  const capacity = 1000; // an arena of 256 000 bytes
  const cache = new OutcomeCache(capacity);
  const latest = new Map<string, number>();
  let seed = 777;
  const next = (): number => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0);
  const recent: string[] = [];
  for (let offset = 0; offset < 30_000; offset++) {
    const txId = `tx-ü€💰-${next() % 2000}`;
    const padding = 'x'.repeat(next() % 1800);
    cache.add(txId, 3, `{"tx_id":${JSON.stringify(txId)},"status":"accepted","partition":3,"offset":"${offset}","note":"é${padding}"}`);
    latest.set(txId, offset);
    recent.push(txId);
    if (recent.length > 20) recent.shift();
    // The newest 20 (at most 20 × 5.5 kB of room, well inside the arena) are always kept.
    for (const kept of recent) assert.equal(cache.get(kept)?.offset, String(latest.get(kept)), `seed 777, after ${offset + 1} adds, ${kept}`);
    if (offset % 499 === 0) {
      let held = 0;
      for (const [id, newest] of latest) {
        const body = cache.get(id);
        if (body === undefined) continue;
        held++;
        assert.equal(body.offset, String(newest), `never an older outcome of ${id}`);
        assert.equal(body.tx_id, id);
      }
      assert.equal(cache.size, held);
      assert.ok(held < capacity, 'bytes, not the entry count, bound this cache');
    }
  }
  // An outcome too large to keep makes the cache forget the tx_id rather than answer an older outcome.
  const id = recent[recent.length - 1]!;
  cache.add(id, 3, `{"tx_id":${JSON.stringify(id)},"status":"accepted","partition":3,"offset":"99999","note":"${'y'.repeat(100_000)}"}`);
  assert.equal(cache.get(id), undefined);
});
