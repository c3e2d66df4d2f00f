// The last-leg index against a Map model: the newest offer per key wins, keys differing in any
// one word stay apart, growth keeps every entry, and clear() leaves nothing behind.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SeededRandom } from '../engine/wire_fixtures';
import { LastLegIndex } from './last_leg_index';

test('the newest leg per balance wins, across growth and clears', () => {
  const index = new LastLegIndex(16);
  const random = new SeededRandom(7);
  for (let round = 0; round < 3; round++) {
    const model = new Map<string, [number, number]>();
    for (let offer = 0; offer < 20_000; offer++) {
      const partition = random.int(4);
      const accountLo = random.int(3000) | 0;
      const accountHi = random.chance(0.1) ? -1 : 0;
      const currency = 1 + random.int(4);
      const legOffset = offer * 48;
      index.offer(partition, accountLo, accountHi, currency, legOffset, offer);
      model.set(`${partition}/${accountLo}/${accountHi}/${currency}`, [legOffset, offer]);
    }
    assert.equal(index.size, model.size);
    const seen = new Map<number, number>();
    for (let i = 0; i < index.size; i++) seen.set(index.legOffsetAt(i), index.kafkaOffsetAt(i));
    assert.deepEqual([...seen.entries()].sort((a, b) => a[0] - b[0]), [...model.values()].sort((a, b) => a[0] - b[0]));
    index.clear();
    assert.equal(index.size, 0);
  }
});
