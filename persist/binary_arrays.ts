// Rows written as one PostgreSQL array per column, in the arrays' binary send format, for a
// statement that reads them back with unnest($1::int4[], $2::int8[], …). A flush sends its
// balance rows this way as parameters of the same statement that moves the partition
// offsets, instead of COPYing them into a temporary staging table first: that saves the
// COPY's two round trips and the truncation of the temp table at every COMMIT (with
// ON COMMIT DELETE ROWS, PostgreSQL truncates it and scans every local buffer each time),
// which together were a third of a small flush's database time (docs/benchmarks.md).
//
// Binary array format (array_send), big-endian:
//   int32 dimensions (1) │ int32 has-nulls (0) │ int32 element type oid │ int32 length │
//   int32 lower bound (1) │ per element: int32 byte length, then the value (int2 2 bytes,
//   int4 4, int8 8)
//
// node-postgres sends a Buffer parameter in binary format, so the arrays reach array_recv
// as they are. Column types are fixed per encoder; every row must write every column in
// order, with the method of its type.

import { grownCapacity } from './copy_encoder';

export const INT2_OID = 21;
export const INT4_OID = 23;
export const INT8_OID = 20;

const HEADER_BYTES = 20;
const TWO_POW_32 = 4294967296;

function widthOf(oid: number): number {
  if (oid === INT2_OID) return 2;
  if (oid === INT4_OID) return 4;
  if (oid === INT8_OID) return 8;
  throw new Error(`binary arrays: element type oid ${oid} is not int2, int4 or int8`);
}

export class BinaryArrayColumns {
  private readonly buffers: Buffer[];
  private readonly lengths: Int32Array;
  private readonly widths: Int32Array;
  private rows = 0;
  private column = 0;

  constructor(private readonly oids: readonly number[], initialRows = 1024) {
    this.widths = Int32Array.from(oids, widthOf);
    this.lengths = new Int32Array(oids.length);
    this.buffers = oids.map((_, index) => Buffer.allocUnsafe(grownCapacity(0, HEADER_BYTES + initialRows * (4 + this.widths[index]!))));
    this.reset();
  }

  get rowCount(): number {
    return this.rows;
  }

  reset(): void {
    this.lengths.fill(HEADER_BYTES);
    this.rows = 0;
    this.column = 0;
  }

  beginRow(): void {
    if (this.column !== 0) throw new Error(`binary arrays: row ${this.rows} ended after ${this.column} of ${this.oids.length} columns`);
    this.rows++;
  }

  endRow(): void {
    if (this.column !== this.oids.length) throw new Error(`binary arrays: row ${this.rows - 1} has ${this.column} of ${this.oids.length} columns`);
    this.column = 0;
  }

  int2(value: number): void {
    // A value out of range would wrap into another currency id silently: refuse it instead.
    if (!(value >= -32768 && value <= 32767 && Math.floor(value) === value)) throw new RangeError(`binary arrays: ${value} is not an int2`);
    const at = this.next(2);
    const b = this.buffers[this.column - 1]!;
    b[at] = value >>> 8;
    b[at + 1] = value;
  }

  int4(value: number): void {
    if (!(value >= -2147483648 && value <= 2147483647 && Math.floor(value) === value)) throw new RangeError(`binary arrays: ${value} is not an int4`);
    const at = this.next(4);
    put32(this.buffers[this.column - 1]!, at, value);
  }

  /** A safe integer (|value| < 2^53). */
  int8(value: number): void {
    if (!Number.isSafeInteger(value)) throw new RangeError(`binary arrays: ${value} is not a safe integer`);
    const at = this.next(8);
    const b = this.buffers[this.column - 1]!;
    const hi = Math.floor(value / TWO_POW_32);
    put32(b, at, hi);
    put32(b, at + 4, value - hi * TWO_POW_32);
  }

  /** The int64 stored little-endian at bytes[offset..offset+8): its 8 bytes reversed. */
  int8LittleEndian(bytes: Uint8Array, offset: number): void {
    const at = this.next(8);
    const b = this.buffers[this.column - 1]!;
    for (let i = 0; i < 8; i++) b[at + i] = bytes[offset + 7 - i]!;
  }

  /** One array per column, header written: views of the internal buffers, valid until the next write. */
  finish(): Buffer[] {
    return this.buffers.map((b, index) => {
      put32(b, 0, 1);
      put32(b, 4, 0);
      put32(b, 8, this.oids[index]!);
      put32(b, 12, this.rows);
      put32(b, 16, 1);
      return b.subarray(0, this.lengths[index]!);
    });
  }

  /** Claims the current column's next element (its length word written); returns where its value goes. */
  private next(width: number): number {
    const column = this.column;
    if (column >= this.oids.length || this.widths[column] !== width) {
      throw new Error(`binary arrays: column ${column} of row ${this.rows - 1} is not ${width} bytes wide`);
    }
    let b = this.buffers[column]!;
    const at = this.lengths[column]!;
    if (at + 4 + width > b.length) {
      const grown = Buffer.allocUnsafe(grownCapacity(b.length, at + 4 + width));
      b.copy(grown, 0, 0, at);
      this.buffers[column] = grown;
      b = grown;
    }
    put32(b, at, width);
    this.lengths[column] = at + 4 + width;
    this.column = column + 1;
    return at + 4;
  }
}

function put32(b: Buffer, at: number, value: number): void {
  b[at] = value >>> 24;
  b[at + 1] = value >>> 16;
  b[at + 2] = value >>> 8;
  b[at + 3] = value;
}
