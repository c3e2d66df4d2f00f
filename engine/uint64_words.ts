// Unsigned 64-bit integers as two 32-bit words, with exact arithmetic on plain numbers.
//
// The command slot stores every 64-bit integer as (low u32, high u32) words, the memory
// layout of a BigInt64Array element. The wire decoders build those words digit by digit
// without BigInt, so the decode hot path allocates nothing: every intermediate value here
// stays below 2^53 and is therefore exact in a float64. (The engine's signed balance
// arithmetic lives in int64_words.ts; this file serves the wire layer.)

export const TWO_POW_32 = 4294967296;
const TWO_POW_16 = 65536;
/** Values below 2^53 are exact in a float64; their high word is below 2^21. */
export const SAFE_HIGH_WORD_LIMIT = 0x200000;

/** A mutable unsigned 64-bit value: `lo` and `hi` are both in 0..2^32-1. */
export class Words64 {
  lo = 0;
  hi = 0;
}

/** out = out * 10 + digit. Returns false (out undefined) when the result exceeds 2^64-1. */
export function multiplyAdd10(out: Words64, digit: number): boolean {
  const low = out.lo * 10 + digit;
  const carry = Math.floor(low / TWO_POW_32);
  const high = out.hi * 10 + carry;
  if (high >= TWO_POW_32) return false;
  out.lo = low >>> 0;
  out.hi = high;
  return true;
}

/**
 * out = floor(out / divisor), returning the remainder. Exact for divisors up to 2^37:
 * long division over four 16-bit limbs keeps every partial value below 2^53.
 */
export function divideWords(out: Words64, divisor: number): number {
  const hi = out.hi;
  const lo = out.lo;
  if (hi < SAFE_HIGH_WORD_LIMIT) {
    const value = hi * TWO_POW_32 + lo;
    const quotient = Math.floor(value / divisor);
    setWordsFromSafeNumber(out, quotient);
    return value - quotient * divisor;
  }
  let partial = hi >>> 16;
  const q3 = Math.floor(partial / divisor);
  let remainder = partial - q3 * divisor;
  partial = remainder * TWO_POW_16 + (hi & 0xffff);
  const q2 = Math.floor(partial / divisor);
  remainder = partial - q2 * divisor;
  partial = remainder * TWO_POW_16 + (lo >>> 16);
  const q1 = Math.floor(partial / divisor);
  remainder = partial - q1 * divisor;
  partial = remainder * TWO_POW_16 + (lo & 0xffff);
  const q0 = Math.floor(partial / divisor);
  remainder = partial - q0 * divisor;
  // Each partial quotient is below 2^16 because the remainder carried into it is below
  // the divisor, so the four of them reassemble into the two words.
  out.hi = (q3 * TWO_POW_16 + q2) >>> 0;
  out.lo = (q1 * TWO_POW_16 + q0) >>> 0;
  return remainder;
}

/** Sets out from a non-negative integer below 2^53. */
export function setWordsFromSafeNumber(out: Words64, value: number): void {
  out.lo = value >>> 0;
  out.hi = Math.floor(value / TWO_POW_32);
}

/** Two's complement negation of the 64-bit pattern (lo, hi). */
export function negateWords(out: Words64): void {
  const lo = (~out.lo + 1) >>> 0;
  out.hi = (~out.hi + (lo === 0 ? 1 : 0)) >>> 0;
  out.lo = lo;
}

export function wordsToBigIntUnsigned(lo: number, hi: number): bigint {
  return (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
}

export function wordsToBigIntSigned(lo: number, hi: number): bigint {
  return BigInt.asIntN(64, wordsToBigIntUnsigned(lo, hi));
}

/** Writes the 64-bit two's complement pattern of `value` (signed or unsigned range). */
export function bigIntToWords(value: bigint, out: Words64): void {
  const pattern = BigInt.asUintN(64, value);
  out.lo = Number(pattern & 0xffffffffn);
  out.hi = Number(pattern >> 32n);
}

const DIGIT_ZERO = 0x30;
const formatScratch = new Words64();

/**
 * Writes the decimal digits of the unsigned value (lo, hi) at target[offset..] and returns
 * how many bytes were written (1..20). The caller provides at least 20 bytes of room.
 */
export function formatUnsignedDecimalInto(loWord: number, hiWord: number, target: Uint8Array, offset: number): number {
  // Callers may pass int32 bit patterns.
  const lo = loWord >>> 0;
  const hi = hiWord >>> 0;
  if (hi < SAFE_HIGH_WORD_LIMIT) return formatSafeNumberInto(hi * TWO_POW_32 + lo, target, offset);
  // 2^53 and above: split off the last eight digits exactly; the rest is below
  // 2^64 / 10^8 < 2^38 and prints through the number path.
  formatScratch.lo = lo;
  formatScratch.hi = hi;
  const lowEight = divideWords(formatScratch, 100_000_000);
  const headLength = formatSafeNumberInto(formatScratch.hi * TWO_POW_32 + formatScratch.lo, target, offset);
  writeFixedDigits(lowEight, 8, target, offset + headLength);
  return headLength + 8;
}

function formatSafeNumberInto(value: number, target: Uint8Array, offset: number): number {
  if (value < 100_000_000) return formatSmallInto(value, target, offset);
  const head = Math.floor(value / 100_000_000);
  const tail = value - head * 100_000_000;
  // value < 2^53 < 10^16, so head < 10^8.
  const headLength = formatSmallInto(head, target, offset);
  writeFixedDigits(tail, 8, target, offset + headLength);
  return headLength + 8;
}

/** "00".."99" as byte pairs, so digits are produced two per division. */
const DIGIT_PAIRS = new Uint8Array(200).map((_, index) => DIGIT_ZERO + (index & 1 ? (index >> 1) % 10 : Math.floor((index >> 1) / 10)));

/** Digits of an integer below 10^8 (int32 arithmetic), without leading zeros. */
function formatSmallInto(value: number, target: Uint8Array, offset: number): number {
  const length = value < 10_000 ? (value < 100 ? (value < 10 ? 1 : 2) : value < 1000 ? 3 : 4) : value < 1_000_000 ? (value < 100_000 ? 5 : 6) : value < 10_000_000 ? 7 : 8;
  writeFixedDigits(value, length, target, offset);
  return length;
}

/** Writes exactly `count` digits of `value` (< 10^count, < 2^31), zero padded on the left. */
function writeFixedDigits(value: number, count: number, target: Uint8Array, offset: number): void {
  let rest = value | 0;
  let index = offset + count;
  while (index - offset >= 2) {
    const quotient = (rest / 100) | 0;
    const pair = (rest - quotient * 100) << 1;
    index -= 2;
    target[index] = DIGIT_PAIRS[pair];
    target[index + 1] = DIGIT_PAIRS[pair + 1];
    rest = quotient;
  }
  if (index > offset) target[offset] = DIGIT_ZERO + rest;
}
