// The 64-bit hash of Tally's wire layer: the first 64 bits of MurmurHash3_x86_128
// (Austin Appleby's public-domain reference, smhasher/src/MurmurHash3.cpp).
//
// Output words: `lo` is h1 and `hi` is h2 of the reference, i.e. the first eight bytes
// of its 16-byte digest read as one little-endian u64. The x86 variant needs only 32-bit
// multiplies (Math.imul), so it runs without BigInt and without allocation; other
// languages reproduce it with any MurmurHash3_x86_128 library.
//
// One function, three entry points with equal results (held equal by the tests): hash64
// over bytes, hash64Aligned over zero-padded words (payload records, recovered tx_ids),
// hash64CopyWords over bytes it copies at the same time (tx_ids into the command slot).
// payloadHash values are persisted (tx_outcomes.payload_hash), so the function is part of
// the stored format: changing it needs a migration, not just a deploy.

import { endianness } from 'node:os';

// hash64Aligned reads words through a Uint32Array, whose byte order is the platform's.
if (endianness() !== 'LE') throw new Error('hash64: little-endian platform required');

/** A 64-bit hash as two words, int32 bit patterns (`>>> 0` for the unsigned value). */
export class Hash64 {
  lo = 0;
  hi = 0;
}

const C1 = 0x239b961b;
const C2 = 0xab0e9789;
const C3 = 0x38b34ae5;
const C4 = 0xa1e38b93;

function rotl(x: number, r: number): number {
  return (x << r) | (x >>> (32 - r));
}

function fmix32(input: number): number {
  let h = input;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h;
}

function readU32(bytes: Uint8Array, index: number): number {
  return bytes[index] | (bytes[index + 1] << 8) | (bytes[index + 2] << 16) | (bytes[index + 3] << 24);
}

/** Tail bytes (fewer than four) at bytes[index..index+count) as a little-endian word. */
function readPartialU32(bytes: Uint8Array, index: number, count: number): number {
  let word = 0;
  for (let shift = 0, i = 0; i < count; i++, shift += 8) word |= bytes[index + i] << shift;
  return word;
}

/** Hashes bytes[start..end) with `seed` and stores the 64-bit result in `out`. */
export function hash64(bytes: Uint8Array, start: number, end: number, seed: number, out: Hash64): void {
  const length = end - start;
  let h1 = seed | 0;
  let h2 = h1;
  let h3 = h1;
  let h4 = h1;
  const blocksEnd = start + (length & ~15);
  for (let i = start; i < blocksEnd; i += 16) {
    h1 ^= mixK1(readU32(bytes, i));
    h1 = (Math.imul(rotl(h1, 19) + h2, 5) + 0x561ccd1b) | 0;
    h2 ^= mixK2(readU32(bytes, i + 4));
    h2 = (Math.imul(rotl(h2, 17) + h3, 5) + 0x0bcaa747) | 0;
    h3 ^= mixK3(readU32(bytes, i + 8));
    h3 = (Math.imul(rotl(h3, 15) + h4, 5) + 0x96cd1c35) | 0;
    h4 ^= mixK4(readU32(bytes, i + 12));
    h4 = (Math.imul(rotl(h4, 13) + h1, 5) + 0x32ac3b17) | 0;
  }
  const tail = length & 15;
  if (tail > 12) h4 ^= mixK4(readPartialU32(bytes, blocksEnd + 12, tail - 12));
  if (tail > 8) h3 ^= mixK3(readPartialU32(bytes, blocksEnd + 8, Math.min(tail - 8, 4)));
  if (tail > 4) h2 ^= mixK2(readPartialU32(bytes, blocksEnd + 4, Math.min(tail - 4, 4)));
  if (tail > 0) h1 ^= mixK1(readPartialU32(bytes, blocksEnd, Math.min(tail, 4)));
  finish(h1 ^ length, h2 ^ length, h3 ^ length, h4 ^ length, out);
}

/**
 * The same hash over byteLength bytes that start at words[wordIndex] (so 4-byte aligned),
 * read a word at a time. Precondition: the bytes from byteLength up to the next multiple
 * of 16 are zero — a zero tail word mixes to zero, so the result equals hash64's.
 */
export function hash64Aligned(words: Uint32Array, wordIndex: number, byteLength: number, seed: number, out: Hash64): void {
  let h1 = seed | 0;
  let h2 = h1;
  let h3 = h1;
  let h4 = h1;
  const blocksEnd = wordIndex + ((byteLength >> 4) << 2);
  // The hot hash of the decoders (tx_id and payload), so mixK1..4 are written out by hand:
  // V8 may stop inlining small calls in a large caller. Words are read as int32 (`| 0`):
  // a uint32 of 2^31 or more passed to a call that is not inlined is boxed (allocated).
  for (let i = wordIndex; i < blocksEnd; i += 4) {
    let k1 = Math.imul(words[i] | 0, C1);
    let k2 = Math.imul(words[i + 1] | 0, C2);
    let k3 = Math.imul(words[i + 2] | 0, C3);
    let k4 = Math.imul(words[i + 3] | 0, C4);
    k1 = Math.imul((k1 << 15) | (k1 >>> 17), C2);
    k2 = Math.imul((k2 << 16) | (k2 >>> 16), C3);
    k3 = Math.imul((k3 << 17) | (k3 >>> 15), C4);
    k4 = Math.imul((k4 << 18) | (k4 >>> 14), C1);
    h1 ^= k1;
    h1 = (Math.imul(((h1 << 19) | (h1 >>> 13)) + h2, 5) + 0x561ccd1b) | 0;
    h2 ^= k2;
    h2 = (Math.imul(((h2 << 17) | (h2 >>> 15)) + h3, 5) + 0x0bcaa747) | 0;
    h3 ^= k3;
    h3 = (Math.imul(((h3 << 15) | (h3 >>> 17)) + h4, 5) + 0x96cd1c35) | 0;
    h4 ^= k4;
    h4 = (Math.imul(((h4 << 13) | (h4 >>> 19)) + h1, 5) + 0x32ac3b17) | 0;
  }
  const tail = byteLength & 15;
  if (tail !== 0) {
    // Zero words beyond byteLength mix to zero, so the whole last block can be mixed.
    const k1 = Math.imul(words[blocksEnd] | 0, C1);
    const k2 = Math.imul(words[blocksEnd + 1] | 0, C2);
    const k3 = Math.imul(words[blocksEnd + 2] | 0, C3);
    const k4 = Math.imul(words[blocksEnd + 3] | 0, C4);
    h1 ^= Math.imul((k1 << 15) | (k1 >>> 17), C2);
    h2 ^= Math.imul((k2 << 16) | (k2 >>> 16), C3);
    h3 ^= Math.imul((k3 << 17) | (k3 >>> 15), C4);
    h4 ^= Math.imul((k4 << 18) | (k4 >>> 14), C1);
  }
  finish(h1 ^ byteLength, h2 ^ byteLength, h3 ^ byteLength, h4 ^ byteLength, out);
}

/**
 * hash64 of bytes[start..end), which at the same time copies those bytes into `target`
 * from targetWordIndex on as little-endian words, zero padded to a whole 16-byte block
 * (the target needs that room; nothing past the block is written). Returns the OR of the
 * copied words with, in addition, the high bit of every NUL byte among them set: so its
 * 0x80 bits are all clear exactly when the bytes are ASCII without NUL, the common tx_id
 * that needs no further check (a NUL is refused, command_writer.ts containsNul).
 * The decoders copy a tx_id into its slot with it: one pass over the message bytes
 * instead of a copy and a second read for the hash (measured: ~8% of a binary decode),
 * and for the NUL check (another ~4%).
 */
export function hash64CopyWords(bytes: Uint8Array, start: number, end: number, target: Uint32Array, targetWordIndex: number, seed: number, out: Hash64): number {
  const length = end - start;
  let h1 = seed | 0;
  let h2 = h1;
  let h3 = h1;
  let h4 = h1;
  let highBits = 0;
  let at = start;
  let index = targetWordIndex;
  for (const blocksEnd = start + (length & ~15); at < blocksEnd; at += 16, index += 4) {
    const w1 = bytes[at] | (bytes[at + 1] << 8) | (bytes[at + 2] << 16) | (bytes[at + 3] << 24);
    const w2 = bytes[at + 4] | (bytes[at + 5] << 8) | (bytes[at + 6] << 16) | (bytes[at + 7] << 24);
    const w3 = bytes[at + 8] | (bytes[at + 9] << 8) | (bytes[at + 10] << 16) | (bytes[at + 11] << 24);
    const w4 = bytes[at + 12] | (bytes[at + 13] << 8) | (bytes[at + 14] << 16) | (bytes[at + 15] << 24);
    target[index] = w1;
    target[index + 1] = w2;
    target[index + 2] = w3;
    target[index + 3] = w4;
    highBits |= w1 | w2 | w3 | w4 | nulHighBits(w1) | nulHighBits(w2) | nulHighBits(w3) | nulHighBits(w4);
    // mixK1..4 and rotl written out by hand, as in hash64Aligned.
    let k1 = Math.imul(w1, C1);
    let k2 = Math.imul(w2, C2);
    let k3 = Math.imul(w3, C3);
    let k4 = Math.imul(w4, C4);
    k1 = Math.imul((k1 << 15) | (k1 >>> 17), C2);
    k2 = Math.imul((k2 << 16) | (k2 >>> 16), C3);
    k3 = Math.imul((k3 << 17) | (k3 >>> 15), C4);
    k4 = Math.imul((k4 << 18) | (k4 >>> 14), C1);
    h1 ^= k1;
    h1 = (Math.imul(((h1 << 19) | (h1 >>> 13)) + h2, 5) + 0x561ccd1b) | 0;
    h2 ^= k2;
    h2 = (Math.imul(((h2 << 17) | (h2 >>> 15)) + h3, 5) + 0x0bcaa747) | 0;
    h3 ^= k3;
    h3 = (Math.imul(((h3 << 15) | (h3 >>> 17)) + h4, 5) + 0x96cd1c35) | 0;
    h4 ^= k4;
    h4 = (Math.imul(((h4 << 13) | (h4 >>> 19)) + h1, 5) + 0x32ac3b17) | 0;
  }
  if (at < end) {
    let w1: number;
    let w2: number;
    let w3: number;
    let w4: number;
    const masks = (end - at) << 2;
    if (at + 16 <= bytes.length) {
      // The usual case (a tx_id has the message body after it): four whole words masked
      // to the bytes before `end`, with no branch on the tail's length, which varies
      // from message to message and would be mispredicted.
      w1 = (bytes[at] | (bytes[at + 1] << 8) | (bytes[at + 2] << 16) | (bytes[at + 3] << 24)) & TAIL_WORD_MASKS[masks];
      w2 = (bytes[at + 4] | (bytes[at + 5] << 8) | (bytes[at + 6] << 16) | (bytes[at + 7] << 24)) & TAIL_WORD_MASKS[masks + 1];
      w3 = (bytes[at + 8] | (bytes[at + 9] << 8) | (bytes[at + 10] << 16) | (bytes[at + 11] << 24)) & TAIL_WORD_MASKS[masks + 2];
      w4 = (bytes[at + 12] | (bytes[at + 13] << 8) | (bytes[at + 14] << 16) | (bytes[at + 15] << 24)) & TAIL_WORD_MASKS[masks + 3];
    } else {
      w1 = readWordBefore(bytes, at, end);
      w2 = readWordBefore(bytes, at + 4, end);
      w3 = readWordBefore(bytes, at + 8, end);
      w4 = readWordBefore(bytes, at + 12, end);
    }
    target[index] = w1;
    target[index + 1] = w2;
    target[index + 2] = w3;
    target[index + 3] = w4;
    highBits |= w1 | w2 | w3 | w4;
    // The padding past `end` is set to ones for the NUL test, so that it does not count.
    highBits |= nulHighBits(w1 | ~TAIL_WORD_MASKS[masks]) | nulHighBits(w2 | ~TAIL_WORD_MASKS[masks + 1]);
    highBits |= nulHighBits(w3 | ~TAIL_WORD_MASKS[masks + 2]) | nulHighBits(w4 | ~TAIL_WORD_MASKS[masks + 3]);
    // Zero words mix to zero, so a short tail needs no branches here either.
    const k1 = Math.imul(w1, C1);
    const k2 = Math.imul(w2, C2);
    const k3 = Math.imul(w3, C3);
    const k4 = Math.imul(w4, C4);
    h1 ^= Math.imul((k1 << 15) | (k1 >>> 17), C2);
    h2 ^= Math.imul((k2 << 16) | (k2 >>> 16), C3);
    h3 ^= Math.imul((k3 << 17) | (k3 >>> 15), C4);
    h4 ^= Math.imul((k4 << 18) | (k4 >>> 14), C1);
  }
  finish(h1 ^ length, h2 ^ length, h3 ^ length, h4 ^ length, out);
  return highBits;
}

/**
 * Non-zero (some 0x80 bits set) exactly when `word` has a zero byte: the classic test,
 * (w - 0x01010101) & ~w & 0x80808080. Bits above the lowest zero byte may be spurious,
 * which only matters to callers that ask where, not whether.
 */
function nulHighBits(word: number): number {
  return (word - 0x01010101) & ~word & 0x80808080;
}

/**
 * TAIL_WORD_MASKS[tail * 4 + word]: the mask that keeps, of word `word` (0..3) of a last
 * block of `tail` bytes (1..15), the bytes that belong to it.
 */
const TAIL_WORD_MASKS = Int32Array.from({ length: 64 }, (_, index) => {
  const count = Math.max(0, Math.min(4, (index >> 2) - 4 * (index & 3)));
  return count === 4 ? -1 : (1 << (8 * count)) - 1;
});

/** The bytes of bytes[at..min(at + 4, end)) as a zero-padded little-endian word; 0 past end. */
function readWordBefore(bytes: Uint8Array, at: number, end: number): number {
  const count = end - at;
  if (count >= 4) return bytes[at] | (bytes[at + 1] << 8) | (bytes[at + 2] << 16) | (bytes[at + 3] << 24);
  if (count <= 0) return 0;
  let word = bytes[at];
  if (count > 1) word |= bytes[at + 1] << 8;
  if (count > 2) word |= bytes[at + 2] << 16;
  return word;
}

function mixK1(k: number): number {
  return Math.imul(rotl(Math.imul(k, C1), 15), C2);
}

function mixK2(k: number): number {
  return Math.imul(rotl(Math.imul(k, C2), 16), C3);
}

function mixK3(k: number): number {
  return Math.imul(rotl(Math.imul(k, C3), 17), C4);
}

function mixK4(k: number): number {
  return Math.imul(rotl(Math.imul(k, C4), 18), C1);
}

function finish(a1: number, a2: number, a3: number, a4: number, out: Hash64): void {
  let h1 = (a1 + a2 + a3 + a4) | 0;
  let h2 = (a2 + h1) | 0;
  let h3 = (a3 + h1) | 0;
  let h4 = (a4 + h1) | 0;
  h1 = fmix32(h1);
  h2 = fmix32(h2);
  h3 = fmix32(h3);
  h4 = fmix32(h4);
  h1 = (h1 + h2 + h3 + h4) | 0;
  h2 = (h2 + h1) | 0;
  out.lo = h1;
  out.hi = h2;
}

/** Convenience for tests and the control plane: the hash as an unsigned BigInt. */
export function hash64BigInt(bytes: Uint8Array, seed = 0): bigint {
  const out = new Hash64();
  hash64(bytes, 0, bytes.length, seed, out);
  return BigInt(out.lo >>> 0) | (BigInt(out.hi >>> 0) << 32n);
}
