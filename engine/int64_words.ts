// Exact signed 64-bit integers (minor units) as word pairs: low word (u32) first, then high
// word (i32), the little-endian layout of a BigInt64Array element, so other threads read the
// same bytes exactly through a BigInt64Array view.
//
// The engine computes on the words themselves: low words are added with a carry, high words
// are added as float64 integers and left unbounded while a posting is evaluated, so a value's
// sign is its high word's sign and it fits int64 exactly when its high word fits int32. This is
// exact over the whole int64 range, allocation-free, and needs no BigInt anywhere in the hot
// path.
//
// Chosen by measurement (bench/int64_representation.bench.ts, tinybench, this 2-core EPYC,
// Node 20.20, 1 Mi random balances, credits with overflow check and debits with sufficiency
// check; ranges over several runs on a shared machine):
//   words-carry (this)                        170-245 M updates/s, no garbage, exact everywhere
//   words-f64 (float64 while |v| < 2^53)       66-194 M updates/s, needs a slow path beyond 2^53
//   BigInt64Array, JIT speculating int64      420-550 M updates/s, no garbage ...
//   ... after the code saw one value > int64   38-60 M updates/s, a scavenge every few ms
// BigInt64Array is fast only while V8's feedback says every BigInt fits in 64 bits; a single
// AMOUNT_OVERFLOW check on a near-limit amount turns the feedback generic for good and every
// operation allocates from then on. A float64 fast path fails differently: the external
// account of a scale-8 currency passes 2^53 minor units after 90 million coins of deposits,
// so production would live on the slow path. Word arithmetic has neither cliff.

export const TWO_POW_32 = 4294967296;
export const I32_MAX = 0x7fffffff;
export const I32_MIN = -0x80000000;
export const I64_MAX = (1n << 63n) - 1n;
export const I64_MIN = -(1n << 63n);

/** The exact value of a word pair (control plane and tests: allocates). */
export function wordsToBigInt(lo: number, hi: number): bigint {
  return (BigInt(hi | 0) << 32n) | BigInt(lo >>> 0);
}
