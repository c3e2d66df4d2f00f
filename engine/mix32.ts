// 32-bit hash mixing used by the engine's open-addressing indexes and its state hash.
// MurmurHash3's block mix and finalizer (Austin Appleby, public domain): allocation-free,
// integer-only, and identical on every platform, which the engine's determinism needs.

/** Mixes one 32-bit word into the running hash `hash`. */
export function mix32(hash: number, word: number): number {
  let k = Math.imul(word, 0xcc9e2d51);
  k = (k << 15) | (k >>> 17);
  k = Math.imul(k, 0x1b873593);
  let h = hash ^ k;
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

/**
 * Avalanches the running hash so every input bit affects every output bit. Returns a signed
 * int32 (apply `>>> 0` for the unsigned value): int32 values stay small integers across calls
 * V8 does not inline, where an unsigned value of 2^31 or more would be boxed on the heap.
 */
export function finalize32(hash: number): number {
  let h = hash;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h | 0;
}
