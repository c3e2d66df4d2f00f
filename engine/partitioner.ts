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
    let k = bytes[index] | (bytes[index + 1] << 8) | (bytes[index + 2] << 16) | (bytes[index + 3] << 24);
    k = Math.imul(k, M);
    k ^= k >>> R;
    k = Math.imul(k, M);
    h = Math.imul(h, M);
    h ^= k;
  }
  const tail = length & 3;
  if (tail === 3) h ^= bytes[blocksEnd + 2] << 16;
  if (tail >= 2) h ^= bytes[blocksEnd + 1] << 8;
  if (tail >= 1) {
    h ^= bytes[blocksEnd];
    h = Math.imul(h, M);
  }
  h ^= h >>> 13;
  h = Math.imul(h, M);
  h ^= h >>> 15;
  return h | 0;
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

/** Home partition of the account (lo, hi words), via its canonical decimal string. */
export function homePartitionOfAccountWords(lo: number, hi: number, partitionCount: number): number {
  const length = formatAccountIdInto(lo, hi, keyScratch, 0);
  return partitionOfKeyBytes(keyScratch, 0, length, partitionCount);
}

export function assertPartitionCount(partitionCount: number): void {
  if (!Number.isInteger(partitionCount) || partitionCount < 1 || partitionCount > PARTITION_COUNT_MAX) {
    throw new Error(`partition count must be an integer in 1..${PARTITION_COUNT_MAX}, got ${partitionCount}`);
  }
}
