// Kafka's default partitioner for keyed messages, bit for bit:
//   partition = Utils.toPositive(Utils.murmur2(keyBytes)) % numPartitions
// (org.apache.kafka.common.utils.Utils; librdkafka's `murmur2_random` partitioner is the
// same function). An account's home partition is that of its canonical decimal string.
//
// Java ints are signed 32-bit; Math.imul and `| 0` give the same wrap-around, and `>>>`
// is Java's unsigned shift. The hash reads the key bytes as unsigned (`& 0xff` in Java).

import { formatAccountIdInto } from './account_id';

const SEED = 0x9747b28c;
const M = 0x5bd1e995;
const R = 24;
/** Home partitions travel in u16 slot fields. */
export const PARTITION_COUNT_MAX = 65_536;

/** Kafka's Utils.murmur2 over bytes[start..end): a signed 32-bit int, like Java's. */
export function murmur2(bytes: Uint8Array, start: number, end: number): number {
  const length = end - start;
  let h = SEED ^ length;
  const blocksEnd = start + (length & ~3);
  for (let index = start; index < blocksEnd; index += 4) {
    const word = bytes[index] | (bytes[index + 1] << 8) | (bytes[index + 2] << 16) | (bytes[index + 3] << 24);
    h = Math.imul(h, M) ^ murmur2MixWord(word);
  }
  const tail = length & 3;
  if (tail === 3) h ^= bytes[blocksEnd + 2] << 16;
  if (tail >= 2) h ^= bytes[blocksEnd + 1] << 8;
  if (tail >= 1) {
    h ^= bytes[blocksEnd];
    h = Math.imul(h, M);
  }
  return murmur2Finish(h);
}

/** Kafka's Utils.toPositive: clears the sign bit (not Math.abs). */
export function toPositive(value: number): number {
  return value & 0x7fffffff;
}

/** Partition of a message keyed by bytes[start..end). */
export function partitionOfKeyBytes(bytes: Uint8Array, start: number, end: number, partitionCount: number): number {
  return toPositive(murmur2(bytes, start, end)) % partitionCount;
}

const keyScratch = new Uint8Array(64);

/**
 * Home partition of an account given as its decimal string (a string or its bytes).
 * Non-ASCII strings are hashed as their UTF-8 bytes, like Java's getBytes(UTF_8).
 */
export function homePartitionOfAccountDecimal(bytesOrString: Uint8Array | string, partitionCount: number): number {
  if (typeof bytesOrString !== 'string') return partitionOfKeyBytes(bytesOrString, 0, bytesOrString.length, partitionCount);
  const text = bytesOrString;
  for (let index = 0; index < text.length && index < keyScratch.length; index++) {
    const code = text.charCodeAt(index);
    if (code > 0x7f) break;
    keyScratch[index] = code;
    if (index === text.length - 1) return partitionOfKeyBytes(keyScratch, 0, text.length, partitionCount);
  }
  const encoded = Buffer.from(text, 'utf8');
  return partitionOfKeyBytes(encoded, 0, encoded.length, partitionCount);
}

/**
 * Home partition of the account (lo, hi words), via its canonical decimal string. Ids
 * below 10^8 (most ids in practice) take an arithmetic path that builds the string's
 * little-endian words in registers; larger ids are formatted into a scratch buffer.
 */
export function homePartitionOfAccountWords(lo: number, hi: number, partitionCount: number): number {
  if (hi === 0 && lo >= 0 && lo < SHORT_DECIMAL_LIMIT) return toPositive(murmur2OfShortDecimal(lo)) % partitionCount;
  const length = formatAccountIdInto(lo, hi, keyScratch, 0);
  return partitionOfKeyBytes(keyScratch, 0, length, partitionCount);
}

/** Integers below this have at most eight decimal digits: two murmur2 words. */
const SHORT_DECIMAL_LIMIT = 100_000_000;

/** "00".."99" as little-endian pairs of ASCII digits: the tens digit in the low byte. */
const DIGIT_PAIR_WORDS = Uint16Array.from({ length: 100 }, (_, pair) => (0x30 + Math.floor(pair / 10)) | ((0x30 + (pair % 10)) << 8));

/** The four digits of 0..9999, zero padded, as a little-endian word (first digit lowest). */
function fourDigitWord(value: number): number {
  const high = (value / 100) | 0;
  return DIGIT_PAIR_WORDS[high] | (DIGIT_PAIR_WORDS[value - high * 100] << 16);
}

function shortDecimalLength(value: number): number {
  if (value < 10_000) return value < 100 ? (value < 10 ? 1 : 2) : value < 1000 ? 3 : 4;
  return value < 1_000_000 ? (value < 100_000 ? 5 : 6) : value < 10_000_000 ? 7 : 8;
}

/**
 * Kafka's murmur2 of the decimal string of `value` (an integer 0..10^8-1), without
 * writing the string anywhere: the eight zero-padded digits are two words, shifted right
 * by the leading zeros so the string's bytes (and zeros after them) remain.
 */
export function murmur2OfShortDecimal(value: number): number {
  const high = (value / 10_000) | 0;
  const padded0 = fourDigitWord(high);
  const padded1 = fourDigitWord(value - high * 10_000);
  const length = shortDecimalLength(value);
  const shift = (8 - length) << 3;
  let word0: number;
  let word1: number;
  if (shift >= 32) {
    word0 = padded1 >>> (shift - 32);
    word1 = 0;
  } else if (shift === 0) {
    word0 = padded0;
    word1 = padded1;
  } else {
    word0 = (padded0 >>> shift) | (padded1 << (32 - shift));
    word1 = padded1 >>> shift;
  }
  let h = SEED ^ length;
  if (length < 4) {
    // The whole string is murmur2's tail, already zero above its bytes.
    h = Math.imul(h ^ word0, M);
  } else {
    h = Math.imul(h, M) ^ murmur2MixWord(word0);
    if (length === 8) h = Math.imul(h, M) ^ murmur2MixWord(word1);
    else if (length > 4) h = Math.imul(h ^ word1, M);
  }
  return murmur2Finish(h);
}

function murmur2MixWord(word: number): number {
  const k = Math.imul(word, M);
  return Math.imul(k ^ (k >>> R), M);
}

function murmur2Finish(hash: number): number {
  let h = hash;
  h ^= h >>> 13;
  h = Math.imul(h, M);
  h ^= h >>> 15;
  return h | 0;
}

export function assertPartitionCount(partitionCount: number): void {
  if (!Number.isInteger(partitionCount) || partitionCount < 1 || partitionCount > PARTITION_COUNT_MAX) {
    throw new Error(`partition count must be an integer in 1..${PARTITION_COUNT_MAX}, got ${partitionCount}`);
  }
}
