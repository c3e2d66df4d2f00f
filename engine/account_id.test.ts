import assert from 'node:assert/strict';
import { test } from 'node:test';
import { accountIdFromString, accountIdToString, formatAccountIdInto, parseAccountId } from './account_id';
import { Words64, wordsToBigIntUnsigned } from './uint64_words';
import { SeededRandom } from './wire_fixtures';

const U64_MAX = (1n << 64n) - 1n;

function parse(text: string): bigint | undefined {
  const bytes = Buffer.from(text, 'latin1');
  const words = new Words64();
  return parseAccountId(bytes, 0, bytes.length, words) ? wordsToBigIntUnsigned(words.lo, words.hi) : undefined;
}

test('canonical decimal u64 ids parse exactly', () => {
  for (const value of [0n, 1n, 999n, 1000n, 1001n, (1n << 53n) - 1n, 1n << 53n, (1n << 53n) + 1n, 999_999_999_999_999n, 1n << 63n, U64_MAX - 1n, U64_MAX]) {
    assert.equal(parse(value.toString()), value);
    assert.equal(accountIdFromString(value.toString()), value);
  }
});

test('anything else is refused: sign, spaces, leading zeros, too long, > 2^64-1', () => {
  for (const text of ['', '-1', '+1', ' 1', '1 ', '01', '00', '0x10', '1.0', '1e3', '18446744073709551616', '99999999999999999999', '100000000000000000000', '1'.repeat(21), 'abc', '１']) {
    assert.equal(parse(text), undefined, JSON.stringify(text));
    assert.equal(accountIdFromString(text), undefined);
  }
});

test('property: parse agrees with BigInt on random digit strings', () => {
  const random = new SeededRandom(31);
  for (let round = 0; round < 50_000; round++) {
    const text = random.chance(0.5) ? (random.u64() >> BigInt(random.int(64))).toString() : random.digits(1 + random.int(21));
    const expected = /^(0|[1-9][0-9]{0,19})$/.test(text) && BigInt(text) <= U64_MAX ? BigInt(text) : undefined;
    assert.equal(parse(text), expected, text);
  }
});

test('format round trips', () => {
  const random = new SeededRandom(32);
  const target = new Uint8Array(20);
  for (let round = 0; round < 20_000; round++) {
    const value = random.u64() >> BigInt(random.int(64));
    const lo = Number(value & 0xffffffffn);
    const hi = Number(value >> 32n);
    const length = formatAccountIdInto(lo, hi, target, 0);
    assert.equal(Buffer.from(target.subarray(0, length)).toString('latin1'), value.toString());
    assert.equal(accountIdToString(lo, hi), value.toString());
  }
});
