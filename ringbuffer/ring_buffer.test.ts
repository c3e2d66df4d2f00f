// Single-thread tests of the ring: configuration, attach, roles, claim / publish / release,
// gating, and the assertions that make misuse fail loudly.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CONSUMER_SEQUENCE_OFFSET, PRODUCER_SEQUENCE_OFFSET, SEQUENCE_SPACING_BYTES } from './ring_layout';
import { RingBuffer } from './ring_buffer';
import { BusySpinWaitStrategy } from './wait_strategy';

const spin = new BusySpinWaitStrategy(20);

function ringOf(slotCount: number, initialSequence = 0): RingBuffer {
  return RingBuffer.create({ slotCount, slotBytes: 16, initialSequence });
}

test('create validates slot count, slot size and initial sequence', () => {
  for (const slotCount of [0, 3, 6, 1000, 2 ** 31, 1.5]) {
    assert.throws(() => RingBuffer.create({ slotCount, slotBytes: 8 }), RangeError, `slotCount ${slotCount}`);
  }
  for (const slotBytes of [0, 4, 12, 20, 8.5]) {
    assert.throws(() => RingBuffer.create({ slotCount: 8, slotBytes }), RangeError, `slotBytes ${slotBytes}`);
  }
  for (const initialSequence of [-1, 0.5, 2 ** 53, Infinity, NaN]) {
    assert.throws(() => RingBuffer.create({ slotCount: 8, slotBytes: 8, initialSequence }), RangeError, `initialSequence ${initialSequence}`);
  }
  const ring = RingBuffer.create({ slotCount: 1, slotBytes: 8, initialSequence: Number.MAX_SAFE_INTEGER });
  assert.equal(ring.data.byteLength, 8);
});

test('sequences sit 128 bytes apart in the control block', () => {
  assert.equal(CONSUMER_SEQUENCE_OFFSET - PRODUCER_SEQUENCE_OFFSET, SEQUENCE_SPACING_BYTES);
  assert.ok(SEQUENCE_SPACING_BYTES >= 2 * 64);
});

test('attach rebuilds the same ring from a structured-cloned descriptor', () => {
  const ring = RingBuffer.create({ slotCount: 64, slotBytes: 24, initialSequence: 1000 });
  const copy = RingBuffer.attach(structuredClone(ring.descriptor));
  assert.equal(copy.slotCount, 64);
  assert.equal(copy.slotBytes, 24);
  assert.equal(copy.initialSequence, 1000);
  assert.equal(copy.slotOffset(1000 + 65), (1065 % 64) * 24);
  new Int32Array(ring.data)[6] = 42;
  assert.equal(new Int32Array(copy.data)[6], 42, 'the data is shared, not copied');
  assert.throws(() => RingBuffer.attach({ control: new SharedArrayBuffer(384), data: ring.data }), /magic/);
  assert.throws(() => RingBuffer.attach({ control: ring.control, data: new SharedArrayBuffer(8) }), /size/);
});

test('slotOffset maps sequences onto slots round-robin', () => {
  const ring = RingBuffer.create({ slotCount: 8, slotBytes: 32 });
  for (let sequence = 0; sequence < 40; sequence++) assert.equal(ring.slotOffset(sequence), (sequence % 8) * 32);
});

test('only one sequencer and one barrier per ring; detach hands the role over', () => {
  const ring = ringOf(8);
  const sequencer = ring.acquireSequencer(spin);
  const barrier = ring.acquireBarrier(spin);
  assert.throws(() => ring.acquireSequencer(spin), /already has a sequencer/);
  assert.throws(() => RingBuffer.attach(ring.descriptor).acquireBarrier(spin), /already has a sequence barrier/);
  assert.equal(sequencer.tryClaim(3), 0);
  sequencer.publish(2);
  sequencer.detach();
  assert.throws(() => sequencer.tryClaim(1), /detached/);
  const successor = RingBuffer.attach(ring.descriptor).acquireSequencer(spin);
  assert.equal(successor.tryClaim(1), 3, 'the successor continues after the last published sequence');
  barrier.detach();
  const nextBarrier = ring.acquireBarrier(spin);
  assert.equal(nextBarrier.tryWaitFor(0), 2);
});

test('batch claim, batch publish, batch release', () => {
  const ring = ringOf(8);
  const sequencer = ring.acquireSequencer(spin);
  const barrier = ring.acquireBarrier(spin);
  assert.equal(barrier.tryWaitFor(0), -1, 'nothing published yet');
  assert.equal(sequencer.tryClaim(5), 0);
  assert.equal(barrier.tryWaitFor(0), -1, 'claimed is not published');
  sequencer.publish(2);
  assert.equal(barrier.tryWaitFor(0), 2, 'partial publish is visible up to its sequence');
  sequencer.publish(4);
  assert.equal(barrier.waitFor(0), 4);
  barrier.release(4);
  assert.equal(barrier.nextSequence, 5);
  assert.equal(sequencer.remainingCapacity(), 8);
});

test('gating: the producer never claims a slot that has not been released', () => {
  const ring = ringOf(8);
  const sequencer = ring.acquireSequencer(spin);
  const barrier = ring.acquireBarrier(spin);
  assert.equal(sequencer.tryClaim(8), 0);
  assert.equal(sequencer.tryClaim(1), -1, 'full ring');
  sequencer.publish(7);
  assert.equal(sequencer.tryClaim(1), -1, 'published but not consumed is still full');
  assert.equal(barrier.waitFor(0), 7);
  barrier.release(2);
  assert.equal(sequencer.tryClaim(4), -1, 'only three slots are free');
  assert.equal(sequencer.tryClaim(3), 8);
  assert.equal(sequencer.claim(1), -1, 'blocking claim times out on a full ring');
});

test('gating holds under a random schedule of claims and releases (model check)', () => {
  const slotCount = 16;
  const ring = ringOf(slotCount);
  const sequencer = ring.acquireSequencer(spin);
  const barrier = ring.acquireBarrier(spin);
  const slots = new Float64Array(ring.data);
  const wordsPerSlot = 2;
  let random = 0x2545f491;
  const next = (bound: number): number => {
    random ^= random << 13;
    random ^= random >>> 17;
    random ^= random << 5;
    return (random >>> 0) % bound;
  };
  let released = -1;
  for (let step = 0; step < 20_000; step++) {
    if (next(2) === 0) {
      const count = 1 + next(slotCount);
      const mustRefuse = sequencer.claimedSequence + count - released > slotCount;
      const first = sequencer.tryClaim(count);
      assert.equal(first === -1, mustRefuse, `claim ${count} at step ${step}`);
      if (first === -1) continue;
      for (let sequence = first; sequence < first + count; sequence++) {
        const index = ring.slotIndex(sequence) * wordsPerSlot;
        assert.ok(slots[index] <= released || sequence < slotCount, `slot of ${sequence} still holds unreleased ${slots[index]}`);
        slots[index] = sequence;
      }
      sequencer.publish(first + count - 1);
    } else {
      const available = barrier.tryWaitFor(barrier.nextSequence);
      if (available === -1) continue;
      const last = barrier.nextSequence + next(available - barrier.nextSequence + 1);
      for (let sequence = barrier.nextSequence; sequence <= last; sequence++) assert.equal(slots[ring.slotIndex(sequence) * wordsPerSlot], sequence);
      barrier.release(last);
      released = last;
    }
  }
  assert.ok(released > 10_000, `the schedule made progress (${released})`);
});

test('publish and release assert order and bounds', () => {
  const ring = ringOf(8);
  const sequencer = ring.acquireSequencer(spin);
  const barrier = ring.acquireBarrier(spin);
  assert.throws(() => sequencer.publish(0), /out of order/, 'publish before claim');
  sequencer.tryClaim(4);
  assert.throws(() => sequencer.publish(4), /out of order/, 'publish past the claim');
  assert.throws(() => sequencer.publish(1.5), /out of order/, 'non-integer');
  sequencer.publish(1);
  assert.throws(() => sequencer.publish(1), /out of order/, 'publishing the same sequence twice');
  assert.throws(() => sequencer.publish(0), /out of order/, 'publish going backwards');
  for (const count of [0, 9, 1.5, -1, NaN]) assert.throws(() => sequencer.tryClaim(count), RangeError, `claim ${count}`);
  assert.throws(() => barrier.release(0), /out of order/, 'release before seeing it published');
  assert.equal(barrier.waitFor(0), 1);
  assert.throws(() => barrier.release(2), /out of order/, 'release past the published cursor');
  barrier.release(1);
  assert.throws(() => barrier.release(1), /out of order/, 'release going backwards');
  assert.throws(() => barrier.tryWaitFor(1 + 8 + 1), RangeError, 'waiting for a sequence a whole ring away');
});

test('a corrupted sequence word is detected instead of overwriting slots', () => {
  const ring = ringOf(8);
  const sequencer = ring.acquireSequencer(spin);
  const barrier = ring.acquireBarrier(spin);
  sequencer.tryClaim(8);
  sequencer.publish(7);
  barrier.waitFor(0);
  const words = new Int32Array(ring.control);
  words[CONSUMER_SEQUENCE_OFFSET / 4] = 100; // a consumer "released" sequences never published
  assert.throws(() => sequencer.tryClaim(1), /past the cursor/);
  words[CONSUMER_SEQUENCE_OFFSET / 4] = 7;
  words[PRODUCER_SEQUENCE_OFFSET / 4] = 3; // the cursor went backwards
  barrier.release(7);
  assert.throws(() => barrier.tryWaitFor(8), /went backwards/);
});
