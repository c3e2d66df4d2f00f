// Two real worker threads push the stress load (stress_load.ts) through a small ring, so
// wrap-around and gating happen on almost every batch. The consumer checks every word of
// every slot (order, no loss, no duplicate, no torn slot, no overwrite before release) and
// both sides' order-sensitive checksums must agree.

import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { runStress, type StressRunOptions } from './stress_run';
import type { WaitStrategyName } from './wait_strategy';

const SLOT_COUNT = 1024;

async function stress(t: TestContext, count: number, producerWait: WaitStrategyName, consumerWait: WaitStrategyName, initialSequence = 0, batchSize = 64): Promise<void> {
  const options: StressRunOptions = {
    slotCount: SLOT_COUNT,
    initialSequence,
    shape: { count, batchSize, varyBatches: true, seed: 0x9e3779b9 ^ count },
    producerWait,
    consumerWait,
    waitTimeoutMs: 500,
    // A bound against a hang, not a speed requirement: two spinning threads that end up on
    // one core of a loaded 2-core machine move about a ring per scheduler slice.
    deadlineMs: 180_000,
    measureLatency: false,
  };
  const result = await runStress(options);
  assert.equal(result.consumer.checksum, result.producer.checksum, 'stream checksums differ');
  assert.equal(result.publishedSequence, initialSequence + count - 1);
  assert.equal(result.consumedSequence, initialSequence + count - 1);
  t.diagnostic(`${producerWait} -> ${consumerWait}: ${count} slots from ${initialSequence} in ${result.elapsedMs.toFixed(0)} ms, ${(result.slotsPerSec / 1e6).toFixed(1)} M slots/s, ${result.consumer.batches} consumer batches`);
}

test('busy-spin: 10 million slots through a 1024-slot ring, varied batches of 1..64', async (t) => {
  await stress(t, 10_000_000, 'busy-spin', 'busy-spin');
});

test('busy-spin: 2 million slots published one by one (batch size 1)', async (t) => {
  await stress(t, 2_000_000, 'busy-spin', 'busy-spin', 0, 1);
});

test('yielding: 2 million slots', async (t) => {
  await stress(t, 2_000_000, 'yielding', 'yielding');
});

test('blocking: 1 million slots', async (t) => {
  await stress(t, 1_000_000, 'blocking', 'blocking');
});

test('mixed strategies: busy-spin producer with a blocking consumer, and the reverse', async (t) => {
  await stress(t, 500_000, 'busy-spin', 'blocking');
  await stress(t, 500_000, 'blocking', 'busy-spin');
});

test('across 2^32 with two threads (low words wrap while both sides run)', async (t) => {
  await stress(t, 2_000_000, 'busy-spin', 'busy-spin', 2 ** 32 - 1_000_000);
});

test('up to 2^53 - 1 with two threads', async (t) => {
  await stress(t, 2_000_000, 'busy-spin', 'busy-spin', Number.MAX_SAFE_INTEGER - 2_000_000 + 1);
});
