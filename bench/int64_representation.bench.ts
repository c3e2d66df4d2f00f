// Which in-memory form of a signed 64-bit balance is fastest for the engine's hot loop?
//
//   bigint64   BigInt64Array element, exact BigInt arithmetic. V8 (Node 20) speculates that
//              BigInt values fit in 64 bits and then compiles them to machine integers without
//              allocating, but once a value outside int64 has been seen by the code (an
//              overflow check on a near-limit amount) the feedback turns generic and every
//              BigInt operation allocates again: measured below as "after one near-limit value".
//   words-f64  (lo u32, hi i32) word pair laid out like a BigInt64 element; float64 arithmetic
//              while |value| < 2^53, exact BigInt only beyond (never taken in this bench).
//   words-carry the same word pair, but exact 64-bit arithmetic on the words themselves (low
//              words with a carry, high words as float64 integers): no BigInt, no 2^53 limit.
//
// Each task applies a mix of credits (overflow-checked) and debits (sufficiency-checked) to
// random balances out of 1 Mi, 4096 per iteration, reading amounts from a command-like buffer.
// Garbage collections during each task are counted. Run:
//   node dist/bench/int64_representation.bench.js
import { PerformanceObserver } from 'node:perf_hooks';
import { Bench } from 'tinybench';

const BALANCES = 1 << 20;
const OPS_PER_ITERATION = 4096;
const TWO_POW_32 = 4294967296;
const TWO_POW_53 = 9007199254740992;
const FAST_HI_MIN = -0x200000;
const FAST_HI_LIMIT = 0x200000;
const I64_MAX = (1n << 63n) - 1n;

const buffer = new SharedArrayBuffer(BALANCES * 8);
const big = new BigInt64Array(buffer);
const lo = new Uint32Array(buffer);
const hi = new Int32Array(buffer);
const amounts = new BigInt64Array(OPS_PER_ITERATION);
const amountWordsLo = new Uint32Array(amounts.buffer);
const amountWordsHi = new Int32Array(amounts.buffer);
const indexes = new Uint32Array(OPS_PER_ITERATION);
let checksum = 0;
let rejected = 0;

function bigintStep(): void {
  for (let i = 0; i < OPS_PER_ITERATION; i++) {
    const slot = indexes[i];
    const amount = amounts[i];
    const balance = big[slot];
    if ((i & 1) === 0) {
      const next = balance + amount;
      if (next > I64_MAX) { rejected++; continue; }
      big[slot] = next;
    } else {
      if (balance < amount) { rejected++; continue; }
      big[slot] = balance - amount;
    }
  }
  checksum += Number(big[indexes[0]] & 0xffffn);
}

function wordsStep(): void {
  for (let i = 0; i < OPS_PER_ITERATION; i++) {
    const word = indexes[i] * 2;
    const balanceHi = hi[word + 1];
    const amountHi = amountWordsHi[i * 2 + 1];
    if (balanceHi < FAST_HI_MIN || balanceHi >= FAST_HI_LIMIT || amountHi < FAST_HI_MIN || amountHi >= FAST_HI_LIMIT) throw new Error('slow path not expected');
    const balance = balanceHi * TWO_POW_32 + lo[word];
    const amount = amountHi * TWO_POW_32 + amountWordsLo[i * 2];
    let next: number;
    if ((i & 1) === 0) {
      next = balance + amount;
      if (!(next < TWO_POW_53)) throw new Error('slow path not expected');
    } else {
      if (balance < amount) { rejected++; continue; }
      next = balance - amount;
    }
    // A Uint32Array store is ToUint32, i.e. the value modulo 2^32: the low word even when
    // `next` is negative.
    lo[word] = next;
    hi[word + 1] = Math.floor(next / TWO_POW_32);
  }
  checksum += lo[indexes[0] * 2] & 0xffff;
}

// Exact for every int64 value: low words summed with a carry, high words summed as float64
// integers (unbounded, so overflow and sign are read off the high word). No BigInt at all.
function carryStep(): void {
  for (let i = 0; i < OPS_PER_ITERATION; i++) {
    const word = indexes[i] * 2;
    const amountLo = amountWordsLo[i * 2];
    const amountHi = amountWordsHi[i * 2 + 1];
    let nextLo: number;
    let nextHi: number;
    if ((i & 1) === 0) {
      nextLo = lo[word] + amountLo;
      const carry = nextLo >= TWO_POW_32 ? 1 : 0;
      nextLo -= carry * TWO_POW_32;
      nextHi = hi[word + 1] + amountHi + carry;
      if (nextHi > 0x7fffffff) { rejected++; continue; }
    } else {
      nextLo = lo[word] - amountLo;
      const borrow = nextLo < 0 ? 1 : 0;
      nextLo += borrow * TWO_POW_32;
      nextHi = hi[word + 1] - amountHi - borrow;
      if (nextHi < 0) { rejected++; continue; }
    }
    lo[word] = nextLo;
    hi[word + 1] = nextHi;
  }
  checksum += lo[indexes[0] * 2] & 0xffff;
}

async function measure(name: string, step: () => void): Promise<void> {
  let gcCount = 0;
  const observer = new PerformanceObserver((list) => { gcCount += list.getEntries().length; });
  observer.observe({ entryTypes: ['gc'] });
  const bench = new Bench({ name, time: 1500, warmup: true });
  bench.add(name, step);
  await bench.run();
  await new Promise((resolve) => setTimeout(resolve, 50));
  observer.disconnect();
  const result = bench.tasks[0].result as unknown as { throughput?: { mean: number } } | undefined;
  const updatesPerSec = (result?.throughput?.mean ?? 0) * OPS_PER_ITERATION;
  console.log(`${name.padEnd(48)} ${(updatesPerSec / 1e6).toFixed(1).padStart(7)} M balance updates/s  gc=${gcCount}`);
}

async function main(): Promise<void> {
  let seed = 12345;
  for (let i = 0; i < OPS_PER_ITERATION; i++) {
    seed = (Math.imul(seed, 1103515245) + 12345) | 0;
    indexes[i] = (seed >>> 8) & (BALANCES - 1);
    amounts[i] = BigInt((seed >>> 4) & 0xfffff) + 1n;
  }
  await measure('words-f64 (lo/hi words, float64 fast path)', wordsStep);
  await measure('words-carry (lo/hi words, exact carry arithmetic)', carryStep);
  await measure('bigint64 (BigInt64Array, exact BigInt)', bigintStep);
  // One near-limit balance: its credit overflows int64 once, which is what AMOUNT_OVERFLOW
  // rejections look like to the JIT.
  big[indexes[0]] = I64_MAX - 1n;
  bigintStep();
  big[indexes[0]] = 0n;
  await measure('bigint64 after one near-limit value', bigintStep);
  console.log(`checksum ${checksum} rejected ${rejected}`);
}

void main();
