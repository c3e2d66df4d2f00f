// Committed ranges of the output ring waiting for their fan-out (events, cache, stream,
// credits), kept as bytes. The ring's slots may only be read during the batcher's onDurable
// call, and the fan-out runs later in slices (io/service.ts). Keeping the outcomes as objects
// and strings meant every queued command's strings outlived a young-generation collection or
// two: a profile of the service at full rate spent a third of its samples in the scavenger,
// most of it evacuating those survivors. A copy of the slots is one memcpy per batch into a
// reused buffer outside the JavaScript heap; the outcomes are read from it when their slice
// runs, and their strings die young.
//
// Committed ranges follow each other in the ring, so a range that continues the newest chunk
// is appended to its buffer: a backlog of many small batches (a catch-up after a database
// outage) takes the bytes of its slots, not a buffer per batch.

import { CurrencyRegistry } from '../engine/currency_registry';
import { OUTCOME_FLAG_NOT_COMMITTED, OUT_FLAGS_OFFSET, OUT_KAFKA_OFFSET_OFFSET, OUT_PARTITION_OFFSET, OUT_SLOT_COUNT_OFFSET } from '../engine/output_layout';
import type { DurableRange } from '../persist/batcher';
import { DurableOutcome, OutputSlots, SlotCursor, readDurableOutcomes } from './durable_outcome';

const SPARE_BUFFERS_MAX = 2;
const BUFFER_BYTES_MIN = 1 << 20;

/** Slots from firstPosition on, copied to offset 0 of `data`. */
class CopiedSlots implements OutputSlots {
  constructor(readonly data: ArrayBuffer, readonly firstPosition: number, readonly slotBytes: number) {}

  slotOffset(position: number): number {
    return (position - this.firstPosition) * this.slotBytes;
  }
}

interface Chunk {
  readonly slots: CopiedSlots;
  readonly cursor: SlotCursor;
  /** The last slot copied in. */
  last: number;
}

/**
 * Flags the copied commands of the range's unwritten partitions OUTCOME_FLAG_NOT_COMMITTED,
 * so reading skips them (no event, cache entry, push, credit or metric); returns how many.
 */
function markNotCommitted(target: Uint8Array, slots: CopiedSlots, range: DurableRange): number {
  const view = new DataView(target.buffer);
  let marked = 0;
  for (let position = range.firstPosition; position <= range.lastPosition;) {
    const slot = slots.slotOffset(position);
    if (range.unwrittenPartitions.includes(view.getUint32(slot + OUT_PARTITION_OFFSET, true))) {
      target[slot + OUT_FLAGS_OFFSET] = target[slot + OUT_FLAGS_OFFSET]! | OUTCOME_FLAG_NOT_COMMITTED;
      marked++;
    }
    position += Math.max(1, target[slot + OUT_SLOT_COUNT_OFFSET]!);
  }
  return marked;
}

/** A fan-out of one command threw: `position` is its first slot, `partition` and `offset` its command's; it is skipped. */
export type FanoutFailure = (error: unknown, position: number, partition: number, offset: number) => void;

export class DurableSlotQueue {
  private readonly chunks: Chunk[] = [];
  private readonly spare: ArrayBuffer[] = [];
  private queued = 0;
  private queuedBytes = 0;

  constructor(private readonly registry: CurrencyRegistry, private readonly onFailure: FanoutFailure) {}

  /** Commands queued and not yet taken. */
  get commandCount(): number {
    return this.queued;
  }

  /** Bytes of slots held (the chunk being read counts whole). */
  get byteCount(): number {
    return this.queuedBytes;
  }

  /** Buffers in use (one per run of contiguous ranges that fits). */
  get chunkCount(): number {
    return this.chunks.length;
  }

  get empty(): boolean {
    return this.chunks.length === 0;
  }

  /** Copies a committed range out of the ring (call during onDurable); returns its commands that were committed. */
  push(range: DurableRange): number {
    const ring = range.ring;
    const slotBytes = ring.slotBytes;
    const bytes = (range.lastPosition - range.firstPosition + 1) * slotBytes;
    let chunk = this.chunks[this.chunks.length - 1];
    if (chunk === undefined || chunk.last + 1 !== range.firstPosition || chunk.slots.slotBytes !== slotBytes ||
        chunk.slots.slotOffset(range.lastPosition) + slotBytes > chunk.slots.data.byteLength) {
      chunk = { slots: new CopiedSlots(this.bufferFor(bytes), range.firstPosition, slotBytes), cursor: { position: range.firstPosition, current: range.firstPosition }, last: range.firstPosition - 1 };
      this.chunks.push(chunk);
    }
    const target = new Uint8Array(chunk.slots.data);
    const source = new Uint8Array(ring.data);
    let position = range.firstPosition;
    // At most two pieces: up to the ring's end, then from its start.
    while (position <= range.lastPosition) {
      const from = ring.slotOffset(position);
      const slots = Math.min(range.lastPosition - position + 1, ring.slotCount - from / slotBytes);
      target.set(source.subarray(from, from + slots * slotBytes), chunk.slots.slotOffset(position));
      position += slots;
    }
    chunk.last = range.lastPosition;
    const skipped = range.unwrittenPartitions.length === 0 ? 0 : markNotCommitted(target, chunk.slots, range);
    this.queued += range.commandCount - skipped;
    this.queuedBytes += bytes;
    return range.commandCount - skipped;
  }

  /**
   * Reads up to `commandsMax` queued outcomes, oldest first, into `visit`; returns how many
   * were read. A command whose reading or visit throws is reported to onFailure and skipped.
   */
  take(commandsMax: number, withBalances: boolean, visit: (outcome: DurableOutcome) => void): number {
    let taken = 0;
    const counted = (outcome: DurableOutcome): void => {
      taken++;
      visit(outcome);
    };
    while (taken < commandsMax && this.chunks.length > 0) {
      const chunk = this.chunks[0]!;
      try {
        readDurableOutcomes(chunk.slots, chunk.cursor, chunk.last, commandsMax - taken, this.registry, withBalances, counted);
      } catch (error) {
        const slot = chunk.slots.slotOffset(chunk.cursor.current);
        const view = new DataView(chunk.slots.data);
        this.onFailure(error, chunk.cursor.current, view.getUint32(slot + OUT_PARTITION_OFFSET, true), view.getFloat64(slot + OUT_KAFKA_OFFSET_OFFSET, true));
      }
      if (chunk.cursor.position > chunk.last) {
        this.chunks.shift();
        this.queuedBytes -= (chunk.last - chunk.slots.firstPosition + 1) * chunk.slots.slotBytes;
        if (this.spare.length < SPARE_BUFFERS_MAX && chunk.slots.data.byteLength <= BUFFER_BYTES_MIN * 8) this.spare.push(chunk.slots.data);
      }
    }
    this.queued = this.chunks.length === 0 ? 0 : Math.max(0, this.queued - taken);
    if (this.chunks.length === 0) this.queuedBytes = 0;
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
