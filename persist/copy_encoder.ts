// What a flush writes rows with: an encoder of COPY FROM STDIN data into one reusable,
// growable buffer. Two implementations exist so bench/persist.bench.ts can compare them side
// by side: BinaryCopyEncoder (copy_binary.ts, FORMAT binary, the one flushes use) and
// TextCopyEncoder (copy_text.ts, the default text format).
//
// Hot path: every method appends in place, allocates nothing once the buffer has grown to the
// batch's size, and takes primitives or (bytes, offset) pairs. 64-bit integers come either as
// a safe-integer number or as 8 little-endian bytes read straight from a ring slot, which is
// how the engine stores accounts, amounts and hashes.

export interface CopyEncoder {
  /** The COPY option that goes with this data, e.g. `(FORMAT binary)`. */
  readonly copyOptions: string;
  /** Rows written since the last reset(). */
  readonly rowCount: number;
  /** Forgets every row (keeps the buffer) and writes the stream header, if the format has one. */
  reset(): void;
  beginRow(fieldCount: number): void;
  endRow(): void;
  int2(value: number): void;
  int4(value: number): void;
  /** A safe integer (|value| < 2^53), e.g. a Kafka offset. */
  int8(value: number): void;
  /** The int64 stored little-endian at bytes[offset..offset+8) (two's complement). */
  int8LittleEndian(bytes: Uint8Array, offset: number): void;
  bool(value: boolean): void;
  /** UTF-8 text from bytes[start..start+length). Must not contain NUL (PostgreSQL text cannot). */
  textBytes(bytes: Uint8Array, start: number, length: number): void;
  nullValue(): void;
  /** The stream so far with its trailer: a view of the internal buffer, valid until the next write. */
  finish(): Buffer;
}

/** Bytes a buffer may grow to; a batch needing more is a programmer error (batches are bounded). */
export const COPY_BUFFER_BYTES_MAX = 1 << 30;

/** The smallest power-of-two capacity, at least `current`, that holds `needed` bytes. */
export function grownCapacity(current: number, needed: number): number {
  if (needed > COPY_BUFFER_BYTES_MAX) throw new Error(`COPY buffer would exceed ${COPY_BUFFER_BYTES_MAX} bytes (${needed} needed): batches must be bounded`);
  let capacity = Math.max(current, 1024);
  while (capacity < needed) capacity *= 2;
  return capacity;
}
