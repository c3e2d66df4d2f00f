// PostgreSQL binary COPY (COPY … TO STDOUT (FORMAT binary)) read back from a stream of
// chunks, as pg-copy-streams' `to` delivers them: the reading side of copy_binary.ts's
// encoder, same format (PostgreSQL docs, "COPY", Binary Format):
//
//   header   11 bytes signature "PGCOPY\n\377\r\n\0", int32 flags, int32 extension length
//            + that many bytes
//   tuple    int16 field count, then per field: int32 byte length (-1 = NULL) + the value's
//            binary send format, big-endian
//   trailer  int16 -1
//
//   ┌ PGCOPY\n\377\r\n\0 ┬ flags ┬ ext ┐┌ n ┬ len ┬ value ┬ len ┬ value … ┐ … ┌ -1 ┐
//   │        11          │   4   │  4  ││ 2 │  4  │  len  │  4  │         │   │ 2  │
//
// The decoder only frames tuples: it hands every whole tuple to a sink as (bytes, start)
// without copying or allocating, and the sink reads its fields with the helpers below. Chunk
// boundaries fall anywhere, so a tuple split across chunks is completed in a small carry
// buffer of `tupleBytesMax` bytes (bounded: a longer tuple is a schema error). The carry is a
// Buffer like the chunks, so the sink's byte loads see one kind of array.
//
// A sink whose tuples all have the same size (only NOT NULL fixed-width columns) may ask for
// `fixedTupleBytes`: the decoder then takes each tuple's end from that size instead of
// walking its field lengths, and the sink must check every field length itself.

const SIGNATURE = [0x50, 0x47, 0x43, 0x4f, 0x50, 0x59, 0x0a, 0xff, 0x0d, 0x0a, 0x00];
const HEADER_FIXED_BYTES = SIGNATURE.length + 4 + 4;
/** The header extension area is empty in every PostgreSQL release so far; bound it anyway. */
const HEADER_EXTENSION_BYTES_MAX = 1 << 16;
const INCOMPLETE = -1;
const TRAILER = -2;

/**
 * Receives each whole tuple; `start` is the byte index of its field count in `bytes`, and
 * `view` is a DataView of the same bytes (big-endian getInt32 and friends compile to one
 * load and a byte swap, where four byte loads and shifts cost several times more).
 */
export interface CopyTupleSink {
  tuple(bytes: Uint8Array, view: DataView, start: number): void;
}

export class BinaryCopyDecoder {
  private readonly carry: Buffer;
  private readonly carryView: DataView;
  private carryLength = 0;
  private header: Uint8Array | null = new Uint8Array(0);
  private finished = false;
  private tuples = 0;
  /** 0, or the size of every tuple. */
  private readonly fixedTupleBytes: number;

  constructor(private readonly fieldCount: number, private readonly tupleBytesMax: number, private readonly sink: CopyTupleSink, options: { fixedTupleBytes?: number } = {}) {
    this.carry = Buffer.alloc(tupleBytesMax);
    this.carryView = new DataView(this.carry.buffer, this.carry.byteOffset, this.carry.byteLength);
    this.fixedTupleBytes = options.fixedTupleBytes ?? 0;
    if (this.fixedTupleBytes > tupleBytesMax) throw new Error('binary COPY: fixedTupleBytes exceeds tupleBytesMax');
  }

  get tupleCount(): number {
    return this.tuples;
  }

  /** Frames every whole tuple of `chunk` (plus whatever earlier chunks left unfinished). */
  push(chunk: Uint8Array): void {
    let at = 0;
    if (this.header !== null) {
      at = this.readHeader(chunk);
      if (this.header !== null) return;
    }
    if (at < chunk.length && this.finished) throw new Error('binary COPY: data after the trailer');
    if (this.carryLength > 0) {
      at = this.completeCarry(chunk, at);
      if (at < 0) return;
    }
    const view = new DataView(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    while (at < chunk.length) {
      const end = tupleEnd(chunk, at, chunk.length, this.fieldCount, this.fixedTupleBytes);
      if (end === TRAILER) {
        this.finished = true;
        if (at + 2 !== chunk.length) throw new Error('binary COPY: data after the trailer');
        return;
      }
      if (end === INCOMPLETE) {
        if (chunk.length - at > this.tupleBytesMax) throw this.tooLong();
        this.carry.set(chunk.subarray(at), 0);
        this.carryLength = chunk.length - at;
        return;
      }
      this.sink.tuple(chunk, view, at);
      this.tuples++;
      at = end;
    }
  }

  /** Asserts the stream ended exactly after its trailer. */
  finish(): void {
    if (!this.finished || this.carryLength > 0) throw new Error(`binary COPY: stream ended without its trailer after ${this.tuples} tuples`);
  }

  /** Fills the carried partial tuple from `chunk`; returns where the chunk continues, or -1 if it was used up. */
  private completeCarry(chunk: Uint8Array, from: number): number {
    const previous = this.carryLength;
    const take = Math.min(chunk.length - from, this.tupleBytesMax - previous);
    this.carry.set(chunk.subarray(from, from + take), previous);
    const end = tupleEnd(this.carry, 0, previous + take, this.fieldCount, this.fixedTupleBytes);
    if (end === INCOMPLETE) {
      if (previous + take === this.tupleBytesMax) throw this.tooLong();
      this.carryLength = previous + take;
      return -1;
    }
    this.carryLength = 0;
    if (end === TRAILER) {
      this.finished = true;
      if (from + 2 - previous !== chunk.length) throw new Error('binary COPY: data after the trailer');
      return -1;
    }
    this.sink.tuple(this.carry, this.carryView, 0);
    this.tuples++;
    return from + end - previous;
  }

  /** Consumes header bytes from the chunk; returns where the tuples begin. */
  private readHeader(chunk: Uint8Array): number {
    const seen = this.header!;
    const joined = new Uint8Array(seen.length + chunk.length);
    joined.set(seen, 0);
    joined.set(chunk, seen.length);
    if (joined.length < HEADER_FIXED_BYTES) {
      this.header = joined;
      return chunk.length;
    }
    for (let i = 0; i < SIGNATURE.length; i++) if (joined[i] !== SIGNATURE[i]) throw new Error('binary COPY: bad signature (not FORMAT binary?)');
    const extensionBytes = readInt32(joined, SIGNATURE.length + 4);
    if (extensionBytes < 0 || extensionBytes > HEADER_EXTENSION_BYTES_MAX) throw new Error(`binary COPY: header extension of ${extensionBytes} bytes`);
    const headerBytes = HEADER_FIXED_BYTES + extensionBytes;
    if (joined.length < headerBytes) {
      this.header = joined;
      return chunk.length;
    }
    this.header = null;
    return headerBytes - seen.length;
  }

  private tooLong(): Error {
    return new Error(`binary COPY: a tuple longer than ${this.tupleBytesMax} bytes (does the query match the expected columns?)`);
  }
}

/**
 * End (exclusive) of the tuple starting at `start` if it lies whole within bytes[start..end),
 * else INCOMPLETE; TRAILER for the end marker. A field count other than `fieldCount` is a
 * schema error. With `fixedTupleBytes` the field lengths are left to the sink.
 */
function tupleEnd(bytes: Uint8Array, start: number, end: number, fieldCount: number, fixedTupleBytes: number): number {
  if (end - start < 2) return INCOMPLETE;
  const count = readInt16(bytes, start);
  if (count === -1) return TRAILER;
  if (count !== fieldCount) throw new Error(`binary COPY: a tuple of ${count} fields, expected ${fieldCount}`);
  if (fixedTupleBytes > 0) return end - start < fixedTupleBytes ? INCOMPLETE : start + fixedTupleBytes;
  let at = start + 2;
  for (let field = 0; field < count; field++) {
    if (end - at < 4) return INCOMPLETE;
    const length = readInt32(bytes, at);
    at += 4;
    if (length > 0) at += length;
    else if (length !== 0 && length !== -1) throw new Error(`binary COPY: field length ${length}`);
    if (at > end) return INCOMPLETE;
  }
  return at;
}

export function readInt16(bytes: Uint8Array, at: number): number {
  return ((bytes[at] << 24) | (bytes[at + 1] << 16)) >> 16;
}

export function readInt32(bytes: Uint8Array, at: number): number {
  return (bytes[at] << 24) | (bytes[at + 1] << 16) | (bytes[at + 2] << 8) | bytes[at + 3];
}
