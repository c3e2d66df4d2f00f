// The 64-bit hash of Tally's wire layer: the first 64 bits of MurmurHash3_x86_128
// (Austin Appleby's public-domain reference, smhasher/src/MurmurHash3.cpp).
//
// Output words: `lo` is h1 and `hi` is h2 of the reference, i.e. the first eight bytes
// of its 16-byte digest read as one little-endian u64. The x86 variant needs only 32-bit
// multiplies (Math.imul), so it runs without BigInt and without allocation; other
// languages reproduce it with any MurmurHash3_x86_128 library.

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
  for (let i = wordIndex; i < blocksEnd; i += 4) {
    h1 ^= mixK1(words[i]);
    h1 = (Math.imul(rotl(h1, 19) + h2, 5) + 0x561ccd1b) | 0;
    h2 ^= mixK2(words[i + 1]);
    h2 = (Math.imul(rotl(h2, 17) + h3, 5) + 0x0bcaa747) | 0;
    h3 ^= mixK3(words[i + 2]);
    h3 = (Math.imul(rotl(h3, 15) + h4, 5) + 0x96cd1c35) | 0;
    h4 ^= mixK4(words[i + 3]);
    h4 = (Math.imul(rotl(h4, 13) + h1, 5) + 0x32ac3b17) | 0;
  }
  const tail = byteLength & 15;
  if (tail > 12) h4 ^= mixK4(words[blocksEnd + 3]);
  if (tail > 8) h3 ^= mixK3(words[blocksEnd + 2]);
  if (tail > 4) h2 ^= mixK2(words[blocksEnd + 1]);
  if (tail > 0) h1 ^= mixK1(words[blocksEnd]);
  finish(h1 ^ byteLength, h2 ^ byteLength, h3 ^ byteLength, h4 ^ byteLength, out);
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
