// PostgreSQL text COPY (the default format) written into one reusable, growable buffer: one
// line per row, fields separated by a tab, NULL as \N, and in text values backslash, tab,
// newline and carriage return escaped with a backslash. Kept beside BinaryCopyEncoder only so
// bench/persist.bench.ts can compare the two formats in one run; flushes use binary (see the
// bench for why).
//
// Integers are written as decimal digits straight into the buffer. An int64 from 8
// little-endian bytes is exact as a float64 below 2^53 in magnitude; larger ones (rare: big
// system-account balances, hashes) go through BigInt and allocate.

import { CopyEncoder, grownCapacity } from './copy_encoder';

const TAB = 0x09;
const NEWLINE = 0x0a;
const CARRIAGE_RETURN = 0x0d;
const BACKSLASH = 0x5c;
const MINUS = 0x2d;
const DIGIT_ZERO = 0x30;
const TWO_POW_32 = 4294967296;
/** High words in [-2^21, 2^21) make int64 values below 2^53 in magnitude: exact as float64. */
const SAFE_HIGH_WORD = 1 << 21;
/** Longest int64 in decimal: "-9223372036854775808". */
const INT64_DECIMAL_BYTES_MAX = 20;

export class TextCopyEncoder implements CopyEncoder {
  readonly copyOptions = '';
  private buffer: Buffer;
  private length = 0;
  private rows = 0;

  constructor(initialBytes = 1 << 16) {
    this.buffer = Buffer.allocUnsafe(grownCapacity(0, initialBytes));
  }

  get rowCount(): number {
    return this.rows;
  }

  reset(): void {
    this.length = 0;
    this.rows = 0;
  }

  beginRow(_fieldCount: number): void {
    this.rows++;
  }

  endRow(): void {
    // Every field ends with a tab; the row's last one becomes the newline.
    this.buffer[this.length - 1] = NEWLINE;
  }

  int2(value: number): void {
    this.decimal(value);
  }

  int4(value: number): void {
    this.decimal(value);
  }

  int8(value: number): void {
    this.decimal(value);
  }

  int8LittleEndian(bytes: Uint8Array, offset: number): void {
    const lo = (bytes[offset]! | (bytes[offset + 1]! << 8) | (bytes[offset + 2]! << 16) | (bytes[offset + 3]! << 24)) >>> 0;
    const hi = bytes[offset + 4]! | (bytes[offset + 5]! << 8) | (bytes[offset + 6]! << 16) | (bytes[offset + 7]! << 24);
    if (hi >= -SAFE_HIGH_WORD && hi < SAFE_HIGH_WORD) {
      this.decimal(hi * TWO_POW_32 + lo);
      return;
    }
    const text = BigInt.asIntN(64, (BigInt(hi) << 32n) | BigInt(lo)).toString();
    this.ensure(text.length + 1);
    for (let i = 0; i < text.length; i++) this.buffer[this.length + i] = text.charCodeAt(i);
    this.length += text.length;
    this.buffer[this.length++] = TAB;
  }

  bool(value: boolean): void {
    this.ensure(2);
    this.buffer[this.length++] = value ? 0x74 : 0x66;
    this.buffer[this.length++] = TAB;
  }

  textBytes(bytes: Uint8Array, start: number, length: number): void {
    // At worst every byte doubles, plus the tab.
    this.ensure(2 * length + 1);
    const b = this.buffer;
    let at = this.length;
    for (let i = 0; i < length; i++) {
      const byte = bytes[start + i]!;
      if (byte === BACKSLASH || byte === TAB || byte === NEWLINE || byte === CARRIAGE_RETURN) {
        b[at++] = BACKSLASH;
        b[at++] = byte === BACKSLASH ? BACKSLASH : byte === TAB ? 0x74 : byte === NEWLINE ? 0x6e : 0x72;
      } else {
        b[at++] = byte;
      }
    }
    b[at++] = TAB;
    this.length = at;
  }

  nullValue(): void {
    this.ensure(3);
    this.buffer[this.length++] = BACKSLASH;
    this.buffer[this.length++] = 0x4e;
    this.buffer[this.length++] = TAB;
  }

  finish(): Buffer {
    return this.buffer.subarray(0, this.length);
  }

  /** A safe integer in decimal, then a tab. */
  private decimal(value: number): void {
    this.ensure(INT64_DECIMAL_BYTES_MAX + 1);
    const b = this.buffer;
    let at = this.length;
    let rest = value;
    if (rest < 0) {
      b[at++] = MINUS;
      rest = -rest;
    }
    let digits = 1;
    for (let scan = rest; scan >= 10; scan = Math.floor(scan / 10)) digits++;
    for (let i = digits - 1; i >= 0; i--) {
      const next = Math.floor(rest / 10);
      b[at + i] = DIGIT_ZERO + (rest - next * 10);
      rest = next;
    }
    at += digits;
    b[at++] = TAB;
    this.length = at;
  }

  private ensure(bytes: number): void {
    if (this.length + bytes <= this.buffer.length) return;
    const grown = Buffer.allocUnsafe(grownCapacity(this.buffer.length, this.length + bytes));
    this.buffer.copy(grown, 0, 0, this.length);
    this.buffer = grown;
  }
}
