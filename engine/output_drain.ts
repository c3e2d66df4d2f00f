// A consumer of the output ring that releases at once: takes every published command output
// (an outcome slot and its leg slots) without blocking, hands each to a visitor, and releases
// the whole batch. For tests and tools that run the engine thread without persistence; the
// service uses persist/batcher.ts, which releases only after the batch is committed. The
// engine publishes whole commands only, so a batch always ends on a command boundary;
// anything else is a broken invariant and stops loudly.

import { RingBuffer, SequenceBarrier, createWaitStrategy } from '../ringbuffer';
import { OUT_KIND_OFFSET, OUT_SLOT_COUNT_OFFSET, SlotKind } from './output_layout';

// Called once per command with the ring position of its outcome slot.
export type OutputVisitor = (ring: RingBuffer, outcomePosition: number) => void;

export class OutputDrain {
  private readonly barrier: SequenceBarrier;
  private readonly bytes: Uint8Array;

  constructor(readonly ring: RingBuffer) {
    // Only tryWaitFor is used, which never waits; the strategy is a formality.
    this.barrier = ring.acquireBarrier(createWaitStrategy('yielding', 1));
    this.bytes = new Uint8Array(ring.data);
  }

  // Visits every command output published so far; returns how many commands it visited.
  drain(visit: OutputVisitor): number {
    const next = this.barrier.nextSequence;
    const available = this.barrier.tryWaitFor(next);
    if (available < next) return 0;
    let position = next;
    let commands = 0;
    while (position <= available) {
      const offset = this.ring.slotOffset(position);
      if (this.bytes[offset + OUT_KIND_OFFSET] !== SlotKind.Outcome) throw new Error(`output ring: slot ${position} is not an outcome slot`);
      visit(this.ring, position);
      position += this.bytes[offset + OUT_SLOT_COUNT_OFFSET]!;
      commands++;
    }
    if (position !== available + 1) throw new Error(`output ring: batch ends inside a command (${position} != ${available + 1})`);
    this.barrier.release(available);
    return commands;
  }
}
