// The single-producer sequencer: hands out sequences to the one producer thread, gates it so
// it never claims a slot the consumer has not released yet, and publishes claimed slots with
// one atomic store per batch.
//
// Typical producer loop (no allocation):
//   const first = sequencer.claim(n);          // -1 when the wait timed out
//   for (let s = first; s < first + n; s++) write the slot at ring.slotOffset(s);
//   sequencer.publish(first + n - 1);          // all n slots become visible at once

import { CONSUMER_SEQUENCE_OFFSET, PRODUCER_SEQUENCE_OFFSET, ROLES_OFFSET, ROLE_SEQUENCER, int32Index } from './ring_layout';
import { Sequence, SEQUENCE_MAX, sequenceNear } from './sequence';
import type { WaitStrategy } from './wait_strategy';

export class Sequencer {
  readonly slotCount: number;
  readonly waitStrategy: WaitStrategy;
  /** The producer's cursor: the highest published sequence. Written by this thread only. */
  private readonly cursor: Sequence;
  /** The consumer's sequence: the highest released sequence. The producer only reads it. */
  private readonly gating: Sequence;
  private readonly control: SharedArrayBuffer;
  private claimedLast: number;
  private publishedLast: number;
  /** Last seen value of the consumer's sequence. Stale is safe: it only ever grows. */
  private gatingLast: number;
  private attached = true;

  /** Use RingBuffer.acquireSequencer, which makes sure there is only one. */
  constructor(control: SharedArrayBuffer, slotCount: number, waitStrategy: WaitStrategy) {
    this.control = control;
    this.slotCount = slotCount;
    this.waitStrategy = waitStrategy;
    this.cursor = new Sequence(control, PRODUCER_SEQUENCE_OFFSET);
    this.gating = new Sequence(control, CONSUMER_SEQUENCE_OFFSET);
    // The role was handed over through Atomics on the roles word, so our own cursor's full
    // value is exact here; the consumer's is only a snapshot but within a ring of ours.
    this.publishedLast = this.cursor.value();
    this.claimedLast = this.publishedLast;
    this.gatingLast = sequenceNear(this.claimedLast, this.gating.loadLow());
  }

  /** The highest published sequence (initialSequence - 1 before the first publish). */
  get cursorSequence(): number {
    return this.publishedLast;
  }

  /** The highest claimed sequence; claimed but unpublished slots are invisible to the consumer. */
  get claimedSequence(): number {
    return this.claimedLast;
  }

  /**
   * Claims `count` consecutive slots without waiting. Returns the first sequence, or -1 if
   * fewer than `count` slots are free.
   */
  tryClaim(count: number): number {
    if (!this.attached || (count | 0) !== count || count < 1 || count > this.slotCount) this.failClaim(count);
    const last = this.claimedLast;
    if (last > SEQUENCE_MAX - count) throw new RangeError(`ring sequence space exhausted: cannot claim ${count} after ${last} (max ${SEQUENCE_MAX})`);
    // Every slot we hand out held sequence (s - slotCount) before; that one must be released.
    const wrapPoint = last + count - this.slotCount;
    if (wrapPoint > this.gatingLast && wrapPoint > this.refreshGating()) return -1;
    this.claimedLast = last + count;
    return last + 1;
  }

  /** Claims `count` slots, waiting with the wait strategy. Returns the first sequence, or -1 on timeout. */
  claim(count: number): number {
    const first = this.tryClaim(count);
    if (first !== -1) return first;
    const wrapPoint = this.claimedLast + count - this.slotCount;
    if (!this.waitStrategy.waitFor(this.gating.words, this.gating.lowIndex, wrapPoint | 0)) return -1;
    return this.tryClaim(count);
  }

  /**
   * Publishes every claimed sequence up to and including `lastSequence` with one atomic
   * store. Publishing must move forward and never past what was claimed.
   */
  publish(lastSequence: number): void {
    if (!(lastSequence > this.publishedLast && lastSequence <= this.claimedLast) || Math.floor(lastSequence) !== lastSequence) {
      throw new Error(`publish(${lastSequence}) out of order: published ${this.publishedLast}, claimed ${this.claimedLast}`);
    }
    this.publishedLast = lastSequence;
    this.cursor.set(lastSequence);
  }

  /**
   * Waits with the wait strategy (one wait, up to its timeout) until at least `count` slots
   * are free; returns the free slots then, which may still be fewer on a timeout.
   */
  awaitCapacity(count: number): number {
    const free = this.remainingCapacity();
    if (free >= count) return free;
    const wrapPoint = this.claimedLast + count - this.slotCount;
    this.waitStrategy.waitFor(this.gating.words, this.gating.lowIndex, wrapPoint | 0);
    return this.remainingCapacity();
  }

  /** Free slots right now (reads the consumer's sequence). */
  remainingCapacity(): number {
    return this.slotCount - (this.claimedLast - this.refreshGating());
  }

  /**
   * Gives the producer role back so another thread (or a new Sequencer) can acquire it.
   * Unpublished claims are dropped: the next owner starts after the last published sequence.
   */
  detach(): void {
    if (!this.attached) return;
    this.attached = false;
    Atomics.and(new Int32Array(this.control), int32Index(ROLES_OFFSET), ~ROLE_SEQUENCER);
  }

  private refreshGating(): number {
    const consumed = sequenceNear(this.claimedLast, this.gating.loadLow());
    if (consumed < this.gatingLast || consumed > this.publishedLast) {
      throw new Error(`consumer sequence ${consumed} went backwards or past the cursor (seen ${this.gatingLast}, published ${this.publishedLast})`);
    }
    this.gatingLast = consumed;
    return consumed;
  }

  private failClaim(count: number): never {
    if (!this.attached) throw new Error('sequencer is detached');
    throw new RangeError(`claim count must be an integer in [1, ${this.slotCount}], got ${count}`);
  }
}
