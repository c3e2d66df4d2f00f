// The outcome cache keeps the newest `capacity` durable outcomes, evicts the oldest first
// (a tx_id added again counts from its latest addition) and wakes waiters.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { OutcomeCache } from './outcome_cache';
import type { DurableOutcome } from './durable_outcome';

function outcome(txId: string, offset: number, partition = 0): DurableOutcome {
  return { txId, status: 'accepted', reason: undefined, partition, offset, duplicate: false, originalOffset: offset, commandType: 1, account: '1000', balances: [], credit: undefined };
}

test('the cache keeps the newest outcomes and evicts the oldest first', () => {
  const cache = new OutcomeCache(3);
  cache.add(outcome('a', 1));
  cache.add(outcome('b', 2));
  cache.add(outcome('a', 3));
  cache.add(outcome('c', 4));
  assert.equal(cache.get('a')?.offset, 3, 'a re-added is kept with its latest outcome');
  cache.add(outcome('d', 5));
  assert.equal(cache.get('b'), undefined, 'b was the oldest');
  assert.deepEqual(['a', 'c', 'd'].map((t) => cache.get(t)?.offset), [3, 4, 5]);
  cache.add(outcome('e', 6));
  assert.equal(cache.get('a'), undefined);
  assert.equal(cache.size, 3);
});

test('waiters get the next outcome of their tx_id that they accept, or undefined at the timeout', async () => {
  const cache = new OutcomeCache(0);
  const waiting = cache.waitFor('t', 1000, (o) => o.partition === 2);
  cache.add(outcome('t', 1, 1));
  cache.add(outcome('t', 9, 2));
  assert.equal((await waiting)?.offset, 9);
  assert.equal(await cache.waitFor('never', 20), undefined);
  assert.equal(cache.waiting, 0);
});
