// The synthetic load that the two-thread stress test and bench/ring.bench.ts push through a
// ring: every slot is derived from its sequence, so the consumer can prove the stream arrived
// in order, with no loss, no duplicate, no torn slot and no slot overwritten before release.
//
// Stress slot, 16 bytes, written and checked as four separate int32 words:
//
//  offset  size  field
//  ------  ----  ---------------------------------------------------------------
//     0      4   sequenceLow    low 32 bits of the slot's sequence
//     4      4   sequenceHigh   high bits of the sequence (sequence < 2^53)
//     8      4   mixA           mix(sequenceLow, sequenceHigh)
//    12      4   mixB           mix(mixA, sequenceLow)
//    16          end of slot
//
//  ┌ sequenceLow ┬ sequenceHigh ┬ mixA ┬ mixB ┐
//  │      4      │      4       │  4   │  4   │
//  └─────────────┴──────────────┴──────┴──────┘
//
// A torn slot (some words from one lap, some from another) breaks the mix relation; a lost,
// duplicated or reordered slot breaks the expected sequence; an overwrite before release is
// caught by re-checking the batch's first slot just before releasing it.

import type { RingBuffer } from './ring_buffer';
import type { SequenceBarrier } from './sequence_barrier';
import type { Sequencer } from './sequencer';

export const STRESS_SLOT_BYTES = 16;
const SEQUENCE_LOW_WORD = 0;
const SEQUENCE_HIGH_WORD = 1;
const MIX_A_WORD = 2;
const MIX_B_WORD = 3;
const SLOT_WORDS = STRESS_SLOT_BYTES / 4;
const TWO_POW_32 = 2 ** 32;

/** Words of the state shared by the slot loops: [sequenceLow, sequenceHigh, checksum]. */
const STATE_LOW = 0;
const STATE_HIGH = 1;
const STATE_CHECKSUM = 2;

/** One latency stamp per this many sequences (a power of two). */
export const STAMP_INTERVAL = 1024;
/** Stamps kept in flight; a ring may hold at most (STAMP_SLOTS - 1) × STAMP_INTERVAL slots. */
export const STAMP_SLOTS = 4096;

function assertStressLayout(): void {
  if (SLOT_WORDS * 4 !== STRESS_SLOT_BYTES || MIX_B_WORD !== SLOT_WORDS - 1) throw new Error('stress slot layout: words must fill the slot');
  if (SEQUENCE_LOW_WORD !== 0 || SEQUENCE_HIGH_WORD !== 1 || MIX_A_WORD !== 2) throw new Error('stress slot layout: word order');
  if (STRESS_SLOT_BYTES % 8 !== 0) throw new Error('stress slot layout: slot must be a multiple of 8 bytes');
  if ((STAMP_INTERVAL & (STAMP_INTERVAL - 1)) !== 0 || (STAMP_SLOTS & (STAMP_SLOTS - 1)) !== 0) throw new Error('stamps must be powers of two');
}
assertStressLayout();

/** A cheap 32-bit mixer (murmur3's finaliser over a combination of two words). */
export function mix(a: number, b: number): number {
  let h = Math.imul(a ^ 0x9e3779b9, 0x85ebca6b) ^ b;
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

/** Order-sensitive running checksum of the stream; producer and consumer must agree. */
function chain(checksum: number, value: number): number {
  return (Math.imul(checksum, 31) + value) | 0;
}

/**
 * Offset from this thread's performance.now() to process.hrtime(), the monotonic clock all
 * threads share (each worker has its own performance.timeOrigin). Both clocks are warmed up
 * first, since first calls initialise lazily, and the tightest of a few bracketed readings
 * wins, so the offset is good to about a microsecond.
 */
function hrtimeOffsetMs(): number {
  let bestSpreadMs = Infinity;
  let offsetMs = 0;
  for (let attempt = 0; attempt < 20; attempt++) {
    const beforeMs = performance.now();
    const hr = process.hrtime();
    const afterMs = performance.now();
    if (afterMs - beforeMs < bestSpreadMs) {
      bestSpreadMs = afterMs - beforeMs;
      offsetMs = hr[0] * 1e3 + hr[1] / 1e6 - (beforeMs + afterMs) / 2;
    }
  }
  return offsetMs;
}
const clockOffsetMs = hrtimeOffsetMs();

/** Monotonic milliseconds comparable across threads: performance.now() re-based on hrtime. */
export function monotonicMs(): number {
  return performance.now() + clockOffsetMs;
}

/** Hot loop: writes `count` consecutive slots starting at word `wordIndex`. */
function writeSlots(words: Int32Array, wordIndex: number, wordMask: number, count: number, state: Int32Array): void {
  let low = state[STATE_LOW];
  let high = state[STATE_HIGH];
  let checksum = state[STATE_CHECKSUM];
  let index = wordIndex;
  for (let i = 0; i < count; i++) {
    const mixA = mix(low, high);
    const mixB = mix(mixA, low);
    words[index + SEQUENCE_LOW_WORD] = low;
    words[index + SEQUENCE_HIGH_WORD] = high;
    words[index + MIX_A_WORD] = mixA;
    words[index + MIX_B_WORD] = mixB;
    checksum = chain(checksum, mixB);
    index = (index + SLOT_WORDS) & wordMask;
    low = (low + 1) | 0;
    if (low === 0) high = (high + 1) | 0;
  }
  state[STATE_LOW] = low;
  state[STATE_HIGH] = high;
  state[STATE_CHECKSUM] = checksum;
}

/** Hot loop: checks `count` consecutive slots; returns -1, or the position of the first bad one. */
function checkSlots(words: Int32Array, wordIndex: number, wordMask: number, count: number, state: Int32Array): number {
  let low = state[STATE_LOW];
  let high = state[STATE_HIGH];
  let checksum = state[STATE_CHECKSUM];
  let index = wordIndex;
  for (let i = 0; i < count; i++) {
    const mixA = mix(low, high);
    const mixB = mix(mixA, low);
    if (
      words[index + SEQUENCE_LOW_WORD] !== low ||
      words[index + SEQUENCE_HIGH_WORD] !== high ||
      words[index + MIX_A_WORD] !== mixA ||
      words[index + MIX_B_WORD] !== mixB
    ) {
      return i;
    }
    checksum = chain(checksum, mixB);
    index = (index + SLOT_WORDS) & wordMask;
    low = (low + 1) | 0;
    if (low === 0) high = (high + 1) | 0;
  }
  state[STATE_LOW] = low;
  state[STATE_HIGH] = high;
  state[STATE_CHECKSUM] = checksum;
  return -1;
}

function startState(sequence: number): Int32Array {
  const state = new Int32Array(3);
  state[STATE_LOW] = sequence | 0;
  state[STATE_HIGH] = Math.floor(sequence / TWO_POW_32);
  return state;
}

export interface LoadShape {
  /** Slots to move. */
  readonly count: number;
  /** Slots per claim, or the largest when batches vary. */
  readonly batchSize: number;
  /** Vary claim sizes in [1, batchSize] with a seeded xorshift, to hit every wrap alignment. */
  readonly varyBatches: boolean;
  readonly seed: number;
}

/** Shared words a load can be stopped through, so no side waits forever on a dead peer. */
export const STOP_WORD = 0;

/** Produces `shape.count` stress slots; returns the stream checksum. Throws if stopped. */
export function produceLoad(ring: RingBuffer, sequencer: Sequencer, shape: LoadShape, stop: Int32Array, stamps: Float64Array | null): number {
  assertStressRing(ring);
  const words = new Int32Array(ring.data);
  const wordMask = ring.slotCount * SLOT_WORDS - 1;
  const start = sequencer.cursorSequence + 1;
  const state = startState(start);
  let random = shape.seed | 1;
  let nextStamp = start;
  for (let produced = 0; produced < shape.count; ) {
    let size = shape.batchSize;
    if (shape.varyBatches) {
      random ^= random << 13;
      random ^= random >>> 17;
      random ^= random << 5;
      size = 1 + ((random >>> 0) % shape.batchSize);
    }
    if (size > shape.count - produced) size = shape.count - produced;
    const first = sequencer.claim(size);
    if (first === -1) {
      throwIfStopped(stop, 'producer', sequencer.cursorSequence);
      continue;
    }
    writeSlots(words, ring.slotOffset(first) >>> 2, wordMask, size, state);
    const last = first + size - 1;
    if (stamps !== null && last >= nextStamp) nextStamp = stampUpTo(stamps, start, nextStamp, last);
    sequencer.publish(last);
    produced += size;
  }
  return state[STATE_CHECKSUM];
}

/** Records the publish time of every stamped sequence up to `last`; returns the next one. */
function stampUpTo(stamps: Float64Array, start: number, nextStamp: number, last: number): number {
  const nowMs = monotonicMs();
  let stamp = nextStamp;
  while (stamp <= last) {
    stamps[((stamp - start) / STAMP_INTERVAL) & (STAMP_SLOTS - 1)] = nowMs;
    stamp += STAMP_INTERVAL;
  }
  return stamp;
}

export interface LoadResult {
  readonly checksum: number;
  /** How many times the consumer found slots available (its batches). */
  readonly batches: number;
  /** Publish-to-consume latency in ms of every stamped sequence (empty without stamps). */
  readonly latenciesMs: Float64Array;
}

/** Consumes and checks `shape.count` stress slots; throws on the first bad slot. */
export function consumeLoad(ring: RingBuffer, barrier: SequenceBarrier, count: number, stop: Int32Array, stamps: Float64Array | null): LoadResult {
  assertStressRing(ring);
  const words = new Int32Array(ring.data);
  const wordMask = ring.slotCount * SLOT_WORDS - 1;
  const start = barrier.nextSequence;
  const end = start + count;
  const state = startState(start);
  const latenciesMs = new Float64Array(stamps === null ? 0 : Math.ceil(count / STAMP_INTERVAL));
  let nextStamp = start;
  let batches = 0;
  for (let next = start; next < end; ) {
    const available = barrier.waitFor(next);
    if (available === -1) {
      throwIfStopped(stop, 'consumer', next - 1);
      continue;
    }
    const last = available < end ? available : end - 1;
    if (stamps !== null && last >= nextStamp) nextStamp = measureUpTo(stamps, latenciesMs, start, nextStamp, last);
    const firstIndex = ring.slotOffset(next) >>> 2;
    const bad = checkSlots(words, firstIndex, wordMask, last - next + 1, state);
    if (bad !== -1) failSlot(words, ring, next + bad);
    if (!slotHolds(words, firstIndex, next)) failSlot(words, ring, next);
    barrier.release(last);
    batches++;
    next = last + 1;
  }
  return { checksum: state[STATE_CHECKSUM], batches, latenciesMs };
}

function measureUpTo(stamps: Float64Array, latenciesMs: Float64Array, start: number, nextStamp: number, last: number): number {
  const nowMs = monotonicMs();
  let stamp = nextStamp;
  while (stamp <= last) {
    const stampIndex = (stamp - start) / STAMP_INTERVAL;
    latenciesMs[stampIndex] = nowMs - stamps[stampIndex & (STAMP_SLOTS - 1)];
    stamp += STAMP_INTERVAL;
  }
  return stamp;
}

/** Re-checks one slot just before release: the producer must not have overwritten it. */
function slotHolds(words: Int32Array, wordIndex: number, sequence: number): boolean {
  const low = sequence | 0;
  const high = Math.floor(sequence / TWO_POW_32);
  return words[wordIndex + SEQUENCE_LOW_WORD] === low && words[wordIndex + SEQUENCE_HIGH_WORD] === high && words[wordIndex + MIX_B_WORD] === mix(mix(low, high), low);
}

function failSlot(words: Int32Array, ring: RingBuffer, sequence: number): never {
  const index = ring.slotOffset(sequence) >>> 2;
  const found = Array.from(words.subarray(index, index + SLOT_WORDS));
  throw new Error(`stress slot for sequence ${sequence} is wrong: found words [${found.join(', ')}]`);
}

function throwIfStopped(stop: Int32Array, who: string, sequence: number): void {
  if (Atomics.load(stop, STOP_WORD) !== 0) throw new Error(`${who} stopped by request at sequence ${sequence}`);
}

function assertStressRing(ring: RingBuffer): void {
  if (ring.slotBytes !== STRESS_SLOT_BYTES) throw new Error(`stress load needs ${STRESS_SLOT_BYTES}-byte slots, ring has ${ring.slotBytes}`);
  if (ring.slotCount > (STAMP_SLOTS - 1) * STAMP_INTERVAL) throw new Error('ring too large for the latency stamps');
}
