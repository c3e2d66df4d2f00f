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

/** Decimal digits of 1..9999 (0 counts as one digit). */
function digitCount(value: number): number {
  return value < 100 ? (value < 10 ? 1 : 2) : value < 1000 ? 3 : 4;
}

/**
 * Kafka's murmur2 of the decimal string of `value` (an integer 0..10^8-1), without
 * writing the string anywhere. The value is split into a high and a low group of four
 * digits; each group becomes four zero-padded ASCII digits in a little-endian word (first
 * digit lowest), computed in registers: "hundreds" and "rest" sit in 16-bit lanes and are
 * divided by ten together (Math.imul(v, 5243) >>> 19 is v / 100 for v < 43 699, and
 * (lane * 103) >>> 10 is lane / 10 for lane < 179; the tests check every value below
 * 120 000). The high group's leading zeros are then shifted out, so the string's bytes
 * (and zeros after them) remain, in the words murmur2 reads.
 *
 * One function with no helper calls on purpose: it is larger than V8 inlines, so it is
 * optimized once on its own and the decoders call it, instead of spending their inlining
 * budget on it (V8's inlining trace showed the decoders' own small helpers left as calls
 * whenever it was inlined into them).
 */
export function murmur2OfShortDecimal(value: number): number {
  const high = (value / 10_000) | 0;
  const low = value - high * 10_000;
  const highHundreds = Math.imul(high, 5243) >>> 19;
  const lowHundreds = Math.imul(low, 5243) >>> 19;
  const highPair = highHundreds | ((high - Math.imul(highHundreds, 100)) << 16);
  const lowPair = lowHundreds | ((low - Math.imul(lowHundreds, 100)) << 16);
  const highTens = (Math.imul(highPair, 103) >>> 10) & 0x000f000f;
  const lowTens = (Math.imul(lowPair, 103) >>> 10) & 0x000f000f;
  const highWord = highTens | ((highPair - Math.imul(highTens, 10)) << 8) | 0x30303030;
  const lowWord = lowTens | ((lowPair - Math.imul(lowTens, 10)) << 8) | 0x30303030;
  let h: number;
  if (high === 0) {
    // At most four digits: one whole word, or murmur2's tail (zero above its bytes).
    const length = digitCount(low);
    if (length === 4) {
      const k = Math.imul(lowWord, M);
      h = Math.imul(SEED ^ 4, M) ^ Math.imul(k ^ (k >>> R), M);
    } else {
      h = Math.imul(SEED ^ length ^ (lowWord >>> ((4 - length) << 3)), M);
    }
  } else {
    const highLength = digitCount(high);
    const shift = (4 - highLength) << 3;
    const word0 = (highWord >>> shift) | ((lowWord << 1) << (31 - shift));
    const word1 = lowWord >>> shift;
    const k0 = Math.imul(word0, M);
    h = Math.imul(SEED ^ (4 + highLength), M) ^ Math.imul(k0 ^ (k0 >>> R), M);
    if (highLength === 4) {
      const k1 = Math.imul(word1, M);
      h = Math.imul(h, M) ^ Math.imul(k1 ^ (k1 >>> R), M);
    } else {
      h = Math.imul(h ^ word1, M);
    }
  }
  h ^= h >>> 13;
  h = Math.imul(h, M);
  return (h ^ (h >>> 15)) | 0;
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
