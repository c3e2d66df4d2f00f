// Account ids: unsigned 64-bit integers written as canonical decimal strings.
//
// Wire rule: 1 to 20 ASCII digits, value at most 2^64-1, no sign, no spaces, and no
// leading zero unless the id is "0". The canonical spelling is required because the
// decimal string is also the Kafka message key: murmur2 of "01001" and of "1001" pick
// different partitions, so one account must have exactly one spelling.

import { Words64, formatUnsignedDecimalInto, multiplyAdd10, wordsToBigIntUnsigned } from './uint64_words';

export const ACCOUNT_ID_DIGITS_MAX = 20;
/** Ids below this are system accounts (external, fees, clearing, transit, ...). */
export const SYSTEM_ACCOUNT_ID_LIMIT = 1000;
/** System account 0 of each partition: the counterpart of deposits and withdrawals. */
export const EXTERNAL_ACCOUNT_ID = 0;
/** System account 3 of each partition: the counterpart of transfers that cross partitions and of their credits. */
export const TRANSIT_ACCOUNT_ID = 3;

const DIGIT_ZERO = 0x30;
const DIGIT_NINE = 0x39;

/** Parses bytes[start..end) into `out`. Returns false if it is not a canonical u64 id. */
export function parseAccountId(bytes: Uint8Array, start: number, end: number, out: Words64): boolean {
  const length = end - start;
  if (length < 1 || length > ACCOUNT_ID_DIGITS_MAX) return false;
  if (bytes[start] === DIGIT_ZERO && length > 1) return false;
  if (length <= 15) return parseShortAccountId(bytes, start, end, out);
  out.lo = 0;
  out.hi = 0;
  for (let index = start; index < end; index++) {
    const digit = bytes[index] - DIGIT_ZERO;
    if (digit < 0 || digit > 9) return false;
    if (!multiplyAdd10(out, digit)) return false;
  }
  return true;
}

/** Up to 15 digits are below 2^53, so plain float arithmetic is exact. */
function parseShortAccountId(bytes: Uint8Array, start: number, end: number, out: Words64): boolean {
  let value = 0;
  for (let index = start; index < end; index++) {
    const byte = bytes[index];
    if (byte < DIGIT_ZERO || byte > DIGIT_NINE) return false;
    value = value * 10 + (byte - DIGIT_ZERO);
  }
  out.lo = value >>> 0;
  out.hi = Math.floor(value / 4294967296);
  return true;
}

/** Writes the canonical decimal string of (lo, hi); returns its length. Needs 20 bytes. */
export function formatAccountIdInto(lo: number, hi: number, target: Uint8Array, offset: number): number {
  return formatUnsignedDecimalInto(lo, hi, target, offset);
}

/** Control-plane helper: the id as a BigInt, or undefined if `text` is not a canonical id. */
export function accountIdFromString(text: string): bigint | undefined {
  if (text.length < 1 || text.length > ACCOUNT_ID_DIGITS_MAX) return undefined;
  const bytes = new Uint8Array(text.length);
  for (let index = 0; index < text.length; index++) {
    const code = text.charCodeAt(index);
    if (code > 0x7f) return undefined;
    bytes[index] = code;
  }
  const words = new Words64();
  return parseAccountId(bytes, 0, bytes.length, words) ? wordsToBigIntUnsigned(words.lo, words.hi) : undefined;
}

export function accountIdToString(lo: number, hi: number): string {
  return wordsToBigIntUnsigned(lo, hi).toString();
}
