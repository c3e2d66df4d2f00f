// Sequence arithmetic near the wrap points of the representations: 2^31 (int32 sign),
// 2^32 (the low word wraps) and 2^53 (the end of exact doubles, where the ring refuses to go).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RingBuffer } from './ring_buffer';
import { SEQUENCE_MAX, lowReached, sequenceNear } from './sequence';
import { BusySpinWaitStrategy } from './wait_strategy';

const spin = new BusySpinWaitStrategy(20);
const WRAP_STARTS = [2 ** 31 - 3, 2 ** 32 - 3, 2 ** 52 - 3, SEQUENCE_MAX - 40];

function referenceSlotIndex(sequence: number, slotCount: number): number {
  return Number(BigInt(sequence) % BigInt(slotCount));
}

test('sequenceNear rebuilds a full sequence from its low word within ±2^31', () => {
  for (const base of [0, 2 ** 31 - 3, 2 ** 32 - 3, 2 ** 40 + 7, SEQUENCE_MAX - 2 ** 30]) {
    for (const delta of [-(2 ** 30), -5, -1, 0, 1, 5, 2 ** 30]) {
      const actual = base + delta;
      if (actual < -1 || actual > SEQUENCE_MAX) continue;
      const low = Number(BigInt.asIntN(32, BigInt(actual)));
      assert.equal(sequenceNear(base, low), actual, `base ${base} delta ${delta}`);
      assert.equal(low, actual | 0, 'ToInt32 keeps the low 32 bits exactly');
    }
  }
  assert.equal(sequenceNear(0, -1), -1, 'the "nothing yet" sequence');
});

test('lowReached compares low words in wrapping order', () => {
  assert.ok(lowReached(5, 5));
  assert.ok(lowReached(6, 5));
  assert.ok(!lowReached(4, 5));
  assert.ok(lowReached(2 ** 31 - 1 + 3, 2 ** 31 - 1), 'past the int32 sign change');
  assert.ok(lowReached((2 ** 32 + 2) | 0, (2 ** 32 - 3) | 0), 'past the 2^32 wrap');
  assert.ok(!lowReached((2 ** 32 - 3) | 0, (2 ** 32 + 2) | 0));
});

test('sequence & mask equals sequence mod slotCount up to 2^53', () => {
  for (const slotCount of [1, 2, 4, 1024, 2 ** 30]) {
    const ring = RingBuffer.create({ slotCount: Math.min(slotCount, 4096), slotBytes: 8 });
    for (const start of [...WRAP_STARTS, SEQUENCE_MAX - 3]) {
      for (let sequence = start; sequence <= Math.min(start + 8, SEQUENCE_MAX); sequence++) {
        assert.equal(sequence & (slotCount - 1), referenceSlotIndex(sequence, slotCount), `${sequence} in ${slotCount}`);
        assert.equal(ring.slotIndex(sequence), referenceSlotIndex(sequence, ring.slotCount));
      }
    }
  }
});

/** Runs a few laps through a 4-slot ring from `start`, every slot carrying its sequence. */
function lapsThroughWrap(start: number, sequenceCount: number): void {
  const ring = RingBuffer.create({ slotCount: 4, slotBytes: 16, initialSequence: start });
  const sequencer = ring.acquireSequencer(spin);
  const barrier = ring.acquireBarrier(spin);
  const slots = new Float64Array(ring.data);
  let produced = start;
  let consumed = start;
  const end = start + sequenceCount;
  let step = 0;
  while (consumed < end) {
    const count = Math.min(1 + (step++ % 4), end - produced);
    const first = count > 0 ? sequencer.tryClaim(count) : -1;
    if (first !== -1) {
      assert.equal(first, produced);
      for (let sequence = first; sequence < first + count; sequence++) {
        assert.equal(ring.slotOffset(sequence), referenceSlotIndex(sequence, 4) * 16, `slotOffset(${sequence})`);
        slots[ring.slotOffset(sequence) / 8] = sequence;
      }
      sequencer.publish(first + count - 1);
      produced += count;
    }
    const available = barrier.tryWaitFor(consumed);
    if (available === -1) continue;
    for (let sequence = consumed; sequence <= available; sequence++) assert.equal(slots[ring.slotOffset(sequence) / 8], sequence);
    barrier.release(available);
    consumed = available + 1;
  }
  assert.equal(ring.publishedSequence(), end - 1);
  assert.equal(ring.consumedSequence(), end - 1);
}

for (const start of WRAP_STARTS.slice(0, 3)) {
  test(`claim, publish and release across ${start + 3} (start ${start}, 4-slot ring)`, () => {
    lapsThroughWrap(start, 40);
  });
}

test('the ring runs up to 2^53 - 1 exactly and then refuses to claim', () => {
  const start = SEQUENCE_MAX - 40;
  lapsThroughWrap(start, 41);
  const ring = RingBuffer.create({ slotCount: 4, slotBytes: 16, initialSequence: SEQUENCE_MAX - 2 });
  const sequencer = ring.acquireSequencer(spin);
  const barrier = ring.acquireBarrier(spin);
  assert.throws(() => sequencer.tryClaim(4), /sequence space exhausted/, 'a claim that would pass 2^53 - 1');
  assert.equal(sequencer.tryClaim(3), SEQUENCE_MAX - 2);
  sequencer.publish(SEQUENCE_MAX);
  assert.equal(barrier.waitFor(SEQUENCE_MAX), SEQUENCE_MAX);
  barrier.release(SEQUENCE_MAX);
  assert.throws(() => sequencer.tryClaim(1), /sequence space exhausted/);
  assert.throws(() => sequencer.claim(1), /sequence space exhausted/);
});

test('a re-attached owner resumes with the exact full sequence past 2^32', () => {
  const ring = RingBuffer.create({ slotCount: 4, slotBytes: 8, initialSequence: 2 ** 32 - 2 });
  const sequencer = ring.acquireSequencer(spin);
  const barrier = ring.acquireBarrier(spin);
  sequencer.publish(sequencer.tryClaim(4) + 3);
  barrier.release(barrier.waitFor(barrier.nextSequence));
  sequencer.detach();
  barrier.detach();
  const attached = RingBuffer.attach(ring.descriptor);
  const nextSequencer = attached.acquireSequencer(spin);
  const nextBarrier = attached.acquireBarrier(spin);
  assert.equal(nextSequencer.cursorSequence, 2 ** 32 + 1);
  assert.equal(nextBarrier.nextSequence, 2 ** 32 + 2);
  assert.equal(nextSequencer.tryClaim(4), 2 ** 32 + 2);
});
