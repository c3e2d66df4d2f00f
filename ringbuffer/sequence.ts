// A sequence: the Disruptor's monotonically increasing 64-bit counter, shared between the
// thread that owns (writes) it and the thread that gates on (reads) it.
//
// Representation, and why.
//
// Inside each thread a sequence is a plain JS number holding an integer. Doubles are exact
// for integers up to 2^53, so every sequence must stay within [-1, SEQUENCE_MAX] with
// SEQUENCE_MAX = 2^53 - 1; the sequencer refuses to claim past it. That is a hard bound by
// design, not an accident: at 100 million slots per second a ring needs 2.8 years to reach it.
// Plain numbers keep the hot path free of BigInt allocation and of carry handling.
//
// Across threads only the low 32 bits travel, in an Int32 word written and read with Atomics
// (a single 32-bit atomic store per publish, no BigInt, no torn 64-bit value). The reader
// rebuilds the full value from a full sequence it already knows: the producer's cursor and
// the consumer's sequence are never more than slotCount (at most 2^30) apart, so the signed
// 32-bit difference of the low words is the true difference (see sequenceNear).
//
// The full value is also stored, as a float64 next to the low word, written before the
// atomic store of the low word. Its owner reads it back when it re-attaches (for example
// after handing the role to another thread); metrics may read it as a racy snapshot.
//
// Slot index. `sequence & mask` is exact for every integer sequence up to 2^53, not only below
// 2^31: ECMAScript's ToInt32 is defined as the integer reduced modulo 2^32 (ECMA-262
// §7.1.6), so it keeps the low 32 bits exactly, and since slotCount divides 2^32,
// (sequence mod 2^32) mod slotCount = sequence mod slotCount. V8 compiles it to a 64-bit
// truncating convert followed by a 32-bit and, which is exact below 2^63. The tests check it
// against BigInt arithmetic at 2^31, 2^32 and 2^53.

import {
  float64Index,
  int32Index,
  SEQUENCE_LOW_OFFSET,
  SEQUENCE_SLEEPERS_OFFSET,
  SEQUENCE_VALUE_OFFSET,
} from './ring_layout';

/** The largest sequence a ring can reach: the largest integer a double holds exactly. */
export const SEQUENCE_MAX = Number.MAX_SAFE_INTEGER;

/**
 * The full sequence whose low 32 bits are `low`, given a full sequence `reference` that is
 * known to lie less than 2^31 away from it. Exact because the int32 difference of the low
 * words is the true difference modulo 2^32, and the true difference is inside int32.
 */
export function sequenceNear(reference: number, low: number): number {
  return reference + ((low - (reference | 0)) | 0);
}

/** True when the sequence whose low word is `low` has reached the one whose low word is `targetLow`. */
export function lowReached(low: number, targetLow: number): boolean {
  return ((low - targetLow) | 0) >= 0;
}

/** True when `value` is an integer sequence a ring can hold (-1 means "nothing yet"). */
export function isSequence(value: number): boolean {
  return Number.isInteger(value) && value >= -1 && value <= SEQUENCE_MAX;
}

/** One sequence record in a ring's control block (layout in ring_layout.ts). */
export class Sequence {
  /** Int32 view of the whole control block; wait strategies wait on `words[lowIndex]`. */
  readonly words: Int32Array;
  readonly lowIndex: number;
  private readonly sleepersIndex: number;
  private readonly values: Float64Array;
  private readonly valueIndex: number;

  constructor(control: SharedArrayBuffer, recordOffset: number) {
    this.words = new Int32Array(control);
    this.values = new Float64Array(control);
    this.lowIndex = int32Index(recordOffset + SEQUENCE_LOW_OFFSET);
    this.sleepersIndex = int32Index(recordOffset + SEQUENCE_SLEEPERS_OFFSET);
    this.valueIndex = float64Index(recordOffset + SEQUENCE_VALUE_OFFSET);
  }

  /**
   * Owner only. Makes `value` visible: the atomic store of the low word releases every plain
   * write made before it (the slot contents) to any thread that atomically loads it. Sleepers
   * are woken only if there are any, so the common case is one plain and one atomic store.
   */
  set(value: number): void {
    this.values[this.valueIndex] = value;
    Atomics.store(this.words, this.lowIndex, value | 0);
    if (Atomics.load(this.words, this.sleepersIndex) !== 0) Atomics.notify(this.words, this.lowIndex);
  }

  /** The low 32 bits, loaded atomically (acquire): slot writes released before it are visible. */
  loadLow(): number {
    return Atomics.load(this.words, this.lowIndex);
  }

  /** The full value last set: exact for the owner; a racy snapshot for any other thread. */
  value(): number {
    return this.values[this.valueIndex];
  }
}
