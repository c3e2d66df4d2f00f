import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  Words64,
  bigIntToWords,
  divideWords,
  formatUnsignedDecimalInto,
  multiplyAdd10,
  negateWords,
  wordsToBigIntSigned,
  wordsToBigIntUnsigned,
} from './uint64_words';
import { SeededRandom } from './wire_fixtures';

const U64_MAX = (1n << 64n) - 1n;
const EDGES = [0n, 1n, 9n, 10n, 99_999_999n, 100_000_000n, (1n << 32n) - 1n, 1n << 32n, (1n << 53n) - 1n, 1n << 53n, (1n << 53n) + 1n, (1n << 63n) - 1n, 1n << 63n, U64_MAX - 1n, U64_MAX];

function wordsOf(value: bigint): Words64 {
  const words = new Words64();
  bigIntToWords(value, words);
  return words;
}

function samples(seed: number, count: number): bigint[] {
  const random = new SeededRandom(seed);
  const values = [...EDGES];
  for (let index = 0; index < count; index++) values.push(random.u64() >> BigInt(random.int(64)));
  return values;
}

test('formatUnsignedDecimalInto prints every u64 exactly', () => {
  const target = new Uint8Array(24);
  for (const value of samples(1, 20000)) {
    const words = wordsOf(value);
    const length = formatUnsignedDecimalInto(words.lo, words.hi, target, 2);
    assert.equal(Buffer.from(target.subarray(2, 2 + length)).toString('latin1'), value.toString());
  }
});

test('divideWords matches BigInt division and remainder', () => {
  const random = new SeededRandom(2);
  for (const value of samples(3, 20000)) {
    const divisor = random.pick([1, 2, 10, 1000, 100_000_000, 2 ** 37 - 1, 1 + random.int(2 ** 31)]);
    const words = wordsOf(value);
    const remainder = divideWords(words, divisor);
    assert.equal(wordsToBigIntUnsigned(words.lo, words.hi), value / BigInt(divisor), `${value} / ${divisor}`);
    assert.equal(BigInt(remainder), value % BigInt(divisor));
  }
});

test('multiplyAdd10 matches BigInt and reports overflow beyond 2^64-1', () => {
  const random = new SeededRandom(4);
  for (const value of samples(5, 20000)) {
    const digit = random.int(10);
    const words = wordsOf(value);
    const expected = value * 10n + BigInt(digit);
    assert.equal(multiplyAdd10(words, digit), expected <= U64_MAX);
    if (expected <= U64_MAX) assert.equal(wordsToBigIntUnsigned(words.lo, words.hi), expected);
  }
});

test('negateWords is two complement negation', () => {
  for (const value of samples(6, 5000)) {
    const words = wordsOf(value);
    negateWords(words);
    assert.equal(wordsToBigIntSigned(words.lo, words.hi), BigInt.asIntN(64, -value));
  }
});
