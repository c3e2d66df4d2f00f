// Committed ranges of the output ring waiting for their fan-out (events, cache, stream,
// credits), kept as bytes. The ring's slots may only be read during the batcher's onDurable
// call, and the fan-out runs later in slices (io/service.ts). Keeping the outcomes as objects
// and strings meant every queued command's strings outlived a young-generation collection or
// two: a profile of the service at full rate spent a third of its samples in the scavenger,
// most of it evacuating those survivors. A copy of the slots is one memcpy per batch into a
// reused buffer outside the JavaScript heap; the outcomes are read from it when their slice
// runs, and their strings die young.

import { CurrencyRegistry } from '../engine/currency_registry';
import type { DurableRange } from '../persist/batcher';
import { DurableOutcome, OutputSlots, readDurableOutcomes } from './durable_outcome';

const SPARE_BUFFERS_MAX = 4;
const BUFFER_BYTES_MIN = 1 << 20;

/** Slots first..last of a committed range, copied to offset 0 of `data`. */
class CopiedSlots implements OutputSlots {
  constructor(readonly data: ArrayBuffer, private readonly firstPosition: number, private readonly slotBytes: number) {}

  slotOffset(position: number): number {
    return (position - this.firstPosition) * this.slotBytes;
  }
}

interface Chunk {
  readonly slots: CopiedSlots;
  /** The next command's first slot. */
  next: number;
  readonly last: number;
}

export class DurableSlotQueue {
  private readonly chunks: Chunk[] = [];
  private readonly spare: ArrayBuffer[] = [];
  private queued = 0;

  constructor(private readonly registry: CurrencyRegistry) {}

  /** Commands queued and not yet taken. */
  get commandCount(): number {
    return this.queued;
  }

  get empty(): boolean {
    return this.chunks.length === 0;
  }

  /** Copies a committed range out of the ring (call during onDurable). */
  push(range: DurableRange): void {
    const ring = range.ring;
    const slotBytes = ring.slotBytes;
    const buffer = this.bufferFor((range.lastPosition - range.firstPosition + 1) * slotBytes);
    const target = new Uint8Array(buffer);
    const source = new Uint8Array(ring.data);
    let position = range.firstPosition;
    let at = 0;
    // At most two pieces: up to the ring's end, then from its start.
    while (position <= range.lastPosition) {
      const from = ring.slotOffset(position);
      const slots = Math.min(range.lastPosition - position + 1, ring.slotCount - from / slotBytes);
      target.set(source.subarray(from, from + slots * slotBytes), at);
      at += slots * slotBytes;
      position += slots;
    }
    this.chunks.push({ slots: new CopiedSlots(buffer, range.firstPosition, slotBytes), next: range.firstPosition, last: range.lastPosition });
    this.queued += range.commandCount;
  }

  /** Reads up to `commandsMax` queued outcomes, oldest first, into `visit`; returns how many. */
  take(commandsMax: number, withBalances: boolean, visit: (outcome: DurableOutcome) => void): number {
    let taken = 0;
    const counted = (outcome: DurableOutcome): void => {
      taken++;
      visit(outcome);
    };
    while (taken < commandsMax && this.chunks.length > 0) {
      const chunk = this.chunks[0]!;
      chunk.next = readDurableOutcomes(chunk.slots, chunk.next, chunk.last, commandsMax - taken, this.registry, withBalances, counted);
      if (chunk.next > chunk.last) {
        this.chunks.shift();
        if (this.spare.length < SPARE_BUFFERS_MAX) this.spare.push(chunk.slots.data);
      }
    }
    this.queued = this.chunks.length === 0 ? 0 : Math.max(0, this.queued - taken);
    return taken;
  }

  /** A spare buffer of at least `bytes`, or a new one (buffers are reused: fresh pages cost a fault each). */
  private bufferFor(bytes: number): ArrayBuffer {
    const index = this.spare.findIndex((buffer) => buffer.byteLength >= bytes);
    if (index >= 0) return this.spare.splice(index, 1)[0]!;
    let size = BUFFER_BYTES_MIN;
    while (size < bytes) size *= 2;
    return new ArrayBuffer(size);
  }
}
