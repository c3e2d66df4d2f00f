// A plain OutputRegion for tests, benches and single-threaded tools: a power-of-two number
// of output slots that wraps around without gating (nothing consumes it concurrently; the
// caller reads a command's output right after apply() or not at all). Production code gives
// the engine the output ring from ringbuffer/ instead.
import { LegRecord, OUTPUT_SLOT_BYTES, OutcomeRecord, OutputRegion, readLeg, readOutcome } from './output_layout';

export class OutputBuffer implements OutputRegion {
  readonly buffer: ArrayBuffer;
  readonly slotCount: number;
  private readonly mask: number;
  private next = 0;

  constructor(slotCount: number) {
    if (slotCount < 8 || (slotCount & (slotCount - 1)) !== 0) throw new Error(`output buffer: slot count must be a power of two >= 8, got ${slotCount}`);
    this.slotCount = slotCount;
    this.mask = slotCount - 1;
    this.buffer = new ArrayBuffer(slotCount * OUTPUT_SLOT_BYTES);
  }

  /** Position the next claim will return. */
  get position(): number {
    return this.next;
  }

  nextPosition(): number {
    return this.next;
  }

  /** Nothing consumes this buffer concurrently: every slot is always free (it wraps). */
  awaitRoom(): number {
    return this.slotCount;
  }

  claim(slotCount: number): number {
    const first = this.next;
    this.next = first + slotCount;
    return first;
  }

  slotByteOffset(position: number): number {
    return (position & this.mask) * OUTPUT_SLOT_BYTES;
  }

  /** The outcome and legs of the command whose outcome slot is at `position` (allocates). */
  read(position: number): { outcome: OutcomeRecord; legs: LegRecord[] } {
    const outcome = readOutcome(this.buffer, this.slotByteOffset(position));
    const legs: LegRecord[] = [];
    for (let leg = 0; leg < outcome.legCount; leg++) legs.push(readLeg(this.buffer, this.slotByteOffset(position + 1 + (leg >> 1)), leg));
    return { outcome, legs };
  }

  /** The raw bytes of `slotCount` slots starting at `position` (for byte-exact comparisons). */
  bytes(position: number, slotCount: number): Uint8Array {
    const copy = new Uint8Array(slotCount * OUTPUT_SLOT_BYTES);
    for (let i = 0; i < slotCount; i++) {
      const offset = this.slotByteOffset(position + i);
      copy.set(new Uint8Array(this.buffer, offset, OUTPUT_SLOT_BYTES), i * OUTPUT_SLOT_BYTES);
    }
    return copy;
  }
}
