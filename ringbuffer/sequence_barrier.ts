// The consumer side of a single-consumer ring: tells the consumer how far the producer has
// published, and owns the consumer's sequence, which it advances once per batch (the
// Disruptor's "end of batch") with one atomic store.
//
// Typical consumer loop (no allocation):
//   let next = barrier.nextSequence;
//   const available = barrier.waitFor(next);   // -1 when the wait timed out
//   for (let s = next; s <= available; s++) read the slot at ring.slotOffset(s);
//   barrier.release(available);                // frees all those slots for the producer

import { CONSUMER_SEQUENCE_OFFSET, PRODUCER_SEQUENCE_OFFSET, ROLES_OFFSET, ROLE_BARRIER, int32Index } from './ring_layout';
import { Sequence, sequenceNear } from './sequence';
import type { WaitStrategy } from './wait_strategy';

export class SequenceBarrier {
  readonly slotCount: number;
  readonly waitStrategy: WaitStrategy;
  /** The producer's cursor: only read here. */
  private readonly cursor: Sequence;
  /** The consumer's own sequence: the highest released sequence. Written by this thread only. */
  private readonly sequence: Sequence;
  private readonly control: SharedArrayBuffer;
  private consumedLast: number;
  /** Last seen value of the producer's cursor. Stale is safe: it only ever grows. */
  private availableLast: number;
  private attached = true;

  /** Use RingBuffer.acquireBarrier, which makes sure there is only one. */
  constructor(control: SharedArrayBuffer, slotCount: number, waitStrategy: WaitStrategy) {
    this.control = control;
    this.slotCount = slotCount;
    this.waitStrategy = waitStrategy;
    this.cursor = new Sequence(control, PRODUCER_SEQUENCE_OFFSET);
    this.sequence = new Sequence(control, CONSUMER_SEQUENCE_OFFSET);
    this.consumedLast = this.sequence.value();
    this.availableLast = this.consumedLast;
  }

  /** The next sequence this consumer has not released yet. */
  get nextSequence(): number {
    return this.consumedLast + 1;
  }

  /** The highest released sequence (initialSequence - 1 before the first release). */
  get consumedSequence(): number {
    return this.consumedLast;
  }

  /**
   * The highest published sequence (read now) if it is at least `sequence`, else -1. Never waits.
   * `sequence` may not lie a whole ring beyond the consumer's sequence: the producer could
   * never publish it, and waiting for it would only ever time out.
   */
  tryWaitFor(sequence: number): number {
    if (!(sequence <= this.consumedLast + this.slotCount) || !this.attached) this.failWait(sequence);
    const published = this.refreshAvailable();
    return sequence <= published ? published : -1;
  }

  /** Like tryWaitFor, but waits with the wait strategy. Returns -1 on timeout. */
  waitFor(sequence: number): number {
    const available = this.tryWaitFor(sequence);
    if (available !== -1) return available;
    if (!this.waitStrategy.waitFor(this.cursor.words, this.cursor.lowIndex, sequence | 0)) return -1;
    return this.tryWaitFor(sequence);
  }

  /**
   * End of batch: releases every slot up to and including `lastSequence` to the producer.
   * Must move forward and never past what waitFor / tryWaitFor reported as published.
   */
  release(lastSequence: number): void {
    if (!(lastSequence > this.consumedLast && lastSequence <= this.availableLast) || Math.floor(lastSequence) !== lastSequence || !this.attached) {
      throw new Error(`release(${lastSequence}) out of order: consumed ${this.consumedLast}, available ${this.availableLast}${this.attached ? '' : ', barrier detached'}`);
    }
    this.consumedLast = lastSequence;
    this.sequence.set(lastSequence);
  }

  /** Gives the consumer role back; the next owner resumes after the last released sequence. */
  detach(): void {
    if (!this.attached) return;
    this.attached = false;
    Atomics.and(new Int32Array(this.control), int32Index(ROLES_OFFSET), ~ROLE_BARRIER);
  }

  private failWait(sequence: number): never {
    if (!this.attached) throw new Error('sequence barrier is detached');
    throw new RangeError(`cannot wait for ${sequence}: consumer holds ${this.consumedLast}, ring has ${this.slotCount} slots`);
  }

  private refreshAvailable(): number {
    const published = sequenceNear(this.consumedLast, this.cursor.loadLow());
    if (published < this.availableLast || published > this.consumedLast + this.slotCount) {
      throw new Error(`producer cursor ${published} went backwards or overran the consumer (seen ${this.availableLast}, consumed ${this.consumedLast})`);
    }
    this.availableLast = published;
    return published;
  }
}
