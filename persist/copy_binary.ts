// PostgreSQL binary COPY (COPY … FROM STDIN (FORMAT binary)) written into one reusable,
// growable buffer. The format (PostgreSQL docs, "COPY", Binary Format):
//
//   header   11 bytes signature "PGCOPY\n\377\r\n\0", int32 flags (0), int32 extension length (0)
//   row      int16 field count, then per field: int32 byte length (-1 = NULL) + the value's
//            binary send format, big-endian: int2 2 bytes, int4 4, int8 8, bool 1, text = its
//            UTF-8 bytes
//   trailer  int16 -1
//
//   ┌ PGCOPY\n\377\r\n\0 ┬ flags ┬ ext ┐┌ n ┬ len ┬ value ┬ len ┬ value … ┐ … ┌ -1 ┐
//   │        11          │   4   │  4  ││ 2 │  4  │  len  │  4  │         │   │ 2  │
//
// Every integer goes out big-endian; an int64 that the engine stored little-endian (accounts,
// amounts, hashes: lo word, hi word) is just its 8 bytes reversed, so no BigInt is involved
// and a u64 account lands in BIGINT as the same 64 bits (001_ledger.sql).

import { CopyEncoder, grownCapacity } from './copy_encoder';

const SIGNATURE = [0x50, 0x47, 0x43, 0x4f, 0x50, 0x59, 0x0a, 0xff, 0x0d, 0x0a, 0x00];
export const BINARY_COPY_HEADER_BYTES = SIGNATURE.length + 4 + 4;
const TRAILER_BYTES = 2;
const TWO_POW_32 = 4294967296;

function assertFormat(): void {
  if (SIGNATURE.length !== 11 || BINARY_COPY_HEADER_BYTES !== 19) throw new Error('binary COPY: header must be 19 bytes');
}
assertFormat();

export class BinaryCopyEncoder implements CopyEncoder {
  readonly copyOptions = '(FORMAT binary)';
  private buffer: Buffer;
  private length = 0;
  private rows = 0;

  constructor(initialBytes = 1 << 16) {
    this.buffer = Buffer.allocUnsafe(grownCapacity(0, initialBytes));
    this.reset();
  }

  get rowCount(): number {
    return this.rows;
  }

  /** Bytes written so far (header included, trailer not). */
  get byteLength(): number {
    return this.length;
  }

  reset(): void {
    const b = this.buffer;
    for (let i = 0; i < SIGNATURE.length; i++) b[i] = SIGNATURE[i]!;
    b.fill(0, SIGNATURE.length, BINARY_COPY_HEADER_BYTES);
    this.length = BINARY_COPY_HEADER_BYTES;
    this.rows = 0;
  }

  beginRow(fieldCount: number): void {
    this.ensure(2);
    this.put16(fieldCount);
    this.rows++;
  }

  endRow(): void {
    // Binary rows carry their field count up front; nothing ends them.
  }

  int2(value: number): void {
    this.ensure(6);
    this.put32(2);
    this.put16(value);
  }

  int4(value: number): void {
    this.ensure(8);
    this.put32(4);
    this.put32(value);
  }

  int8(value: number): void {
    this.ensure(12);
    const hi = Math.floor(value / TWO_POW_32);
    this.put32(8);
    this.put32(hi);
    this.put32(value - hi * TWO_POW_32);
  }

  int8LittleEndian(bytes: Uint8Array, offset: number): void {
    this.ensure(12);
    this.put32(8);
    const b = this.buffer;
    const at = this.length;
    for (let i = 0; i < 8; i++) b[at + i] = bytes[offset + 7 - i]!;
    this.length = at + 8;
  }

  bool(value: boolean): void {
    this.ensure(5);
    this.put32(1);
    this.buffer[this.length++] = value ? 1 : 0;
  }

  textBytes(bytes: Uint8Array, start: number, length: number): void {
    this.ensure(4 + length);
    this.put32(length);
    const b = this.buffer;
    const at = this.length;
    for (let i = 0; i < length; i++) b[at + i] = bytes[start + i]!;
    this.length = at + length;
  }

  nullValue(): void {
    this.ensure(4);
    this.put32(-1);
  }

  finish(): Buffer {
    this.ensure(TRAILER_BYTES);
    const b = this.buffer;
    b[this.length] = 0xff;
    b[this.length + 1] = 0xff;
    return b.subarray(0, this.length + TRAILER_BYTES);
  }

  private put16(value: number): void {
    const b = this.buffer;
    const at = this.length;
    b[at] = value >>> 8;
    b[at + 1] = value;
    this.length = at + 2;
  }

  private put32(value: number): void {
    const b = this.buffer;
    const at = this.length;
    b[at] = value >>> 24;
    b[at + 1] = value >>> 16;
    b[at + 2] = value >>> 8;
    b[at + 3] = value;
    this.length = at + 4;
  }

  private ensure(bytes: number): void {
    if (this.length + bytes <= this.buffer.length) return;
    const grown = Buffer.allocUnsafe(grownCapacity(this.buffer.length, this.length + bytes));
    this.buffer.copy(grown, 0, 0, this.length);
    this.buffer = grown;
  }
}
