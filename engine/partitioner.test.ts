import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  PARTITION_COUNT_MAX,
  assertPartitionCount,
  homePartitionOfAccountDecimal,
  homePartitionOfAccountWords,
  murmur2,
  murmur2OfShortDecimal,
  partitionOfKeyBytes,
  toPositive,
} from './partitioner';
import { SeededRandom } from './wire_fixtures';

// Expected values computed with the real Java implementation in Kafka 3.9.1's
// kafka-clients jar: Utils.murmur2(key.getBytes(UTF_8)) and
// Utils.toPositive(Utils.murmur2(...)) % n for n in PARTITION_COUNTS.
const PARTITION_COUNTS = [1, 3, 8, 12, 100];
const KAFKA_VECTORS: [string, number, number[]][] = [
  ['0', 971027396, [0, 2, 4, 8, 96]],
  ['1', -1993445489, [0, 0, 7, 3, 59]],
  ['2', 648968168, [0, 2, 0, 8, 68]],
  ['3', -1148165505, [0, 2, 7, 11, 43]],
  ['999', -31934873, [0, 0, 7, 3, 75]],
  ['1000', 15042646, [0, 1, 6, 10, 46]],
  ['1001', 1456459188, [0, 0, 4, 0, 88]],
  ['1002', -1329898577, [0, 0, 7, 3, 71]],
  ['1003', 474823213, [0, 1, 5, 1, 13]],
  ['42', 417700972, [0, 1, 4, 4, 72]],
  ['12345', -1188365604, [0, 2, 4, 8, 44]],
  ['99999', 1464793824, [0, 0, 0, 0, 24]],
  ['100000', -1409824602, [0, 2, 6, 2, 46]],
  ['123456789', -1822237082, [0, 0, 6, 6, 66]],
  ['4294967295', 1978963700, [0, 2, 4, 8, 0]],
  ['4294967296', -170546237, [0, 0, 3, 3, 11]],
  ['9007199254740991', -1031629061, [0, 0, 3, 3, 87]],
  ['9007199254740993', 309283515, [0, 0, 3, 3, 15]],
  ['9223372036854775807', -1221667907, [0, 0, 5, 9, 41]],
  ['9223372036854775808', 928904977, [0, 1, 1, 1, 77]],
  ['18446744073709551615', 1949584741, [0, 1, 5, 1, 41]],
  ['hello', 2132663229, [0, 0, 5, 9, 29]],
  ['kafka', -798503068, [0, 1, 4, 4, 80]],
  ['a', -1563381124, [0, 1, 4, 4, 24]],
  ['ab', 316155434, [0, 2, 2, 2, 34]],
  ['abc', 479470107, [0, 0, 3, 3, 7]],
  ['abcd', -1323649548, [0, 2, 4, 8, 0]],
  ['abcde', 461995741, [0, 1, 5, 1, 41]],
  ['tally', 1708296370, [0, 1, 2, 10, 70]],
  ['USDT', 1091165462, [0, 2, 6, 2, 62]],
  ['user-1001-very-long-key-of-some-length', -639356505, [0, 2, 7, 11, 43]],
  ['', 275646681, [0, 0, 1, 9, 81]],
  ['\u00e9\u20ac\u00ff', -350261530, [0, 1, 6, 10, 18]],
  ['\u00ff\u00fe\u00fd', -827240790, [0, 2, 2, 2, 58]],
  ['12', 126087238, [0, 1, 6, 10, 38]],
  ['123', -267702483, [0, 2, 5, 5, 65]],
  ['1234567', -605210426, [0, 0, 6, 6, 22]],
  ['18446744073709551614', -1655610963, [0, 2, 5, 5, 85]],
];

test('murmur2 equals Kafka Utils.murmur2 on every vector', () => {
  for (const [key, expectedHash] of KAFKA_VECTORS) {
    const bytes = Buffer.from(key, 'utf8');
    assert.equal(murmur2(bytes, 0, bytes.length), expectedHash, `murmur2(${JSON.stringify(key)})`);
  }
});

test('partition equals toPositive(murmur2) % n for every vector and partition count', () => {
  for (const [key, , expected] of KAFKA_VECTORS) {
    PARTITION_COUNTS.forEach((count, index) => {
      assert.equal(homePartitionOfAccountDecimal(key, count), expected[index], `${JSON.stringify(key)} % ${count}`);
      assert.equal(homePartitionOfAccountDecimal(Buffer.from(key, 'utf8'), count), expected[index]);
    });
  }
});

test('murmur2 hashes a sub-range of a larger buffer like the bytes alone', () => {
  const framed = Buffer.from('xx1001yy');
  assert.equal(murmur2(framed, 2, 6), 1456459188);
  assert.equal(partitionOfKeyBytes(framed, 2, 6, 100), 88);
});

test('toPositive clears the sign bit like Java (not Math.abs)', () => {
  assert.equal(toPositive(-1), 0x7fffffff);
  assert.equal(toPositive(-2147483648), 0);
  assert.equal(toPositive(5), 5);
});

test('homePartitionOfAccountWords formats the canonical decimal string', () => {
  const random = new SeededRandom(7);
  for (let round = 0; round < 20000; round++) {
    const id = round < 10 ? [0n, 1n, 999n, 1000n, (1n << 53n) - 1n, 1n << 53n, (1n << 53n) + 1n, (1n << 63n), (1n << 64n) - 2n, (1n << 64n) - 1n][round] : random.u64() >> BigInt(random.int(64));
    const count = 1 + random.int(200);
    const lo = Number(id & 0xffffffffn);
    const hi = Number(id >> 32n);
    assert.equal(homePartitionOfAccountWords(lo, hi, count), homePartitionOfAccountDecimal(id.toString(), count), `account ${id}`);
  }
  assert.equal(homePartitionOfAccountWords(0xffffffff, 0xffffffff, 100), 41);
});

test('the arithmetic path for ids below 10^8 equals murmur2 of the formatted digits', () => {
  const random = new SeededRandom(8);
  const values: number[] = [];
  for (let value = 0; value < 120_000; value++) values.push(value);
  for (let power = 1; power <= 8; power++) values.push(10 ** power - 1, 10 ** power - 2, 10 ** power + 1);
  for (let round = 0; round < 50_000; round++) values.push(random.int(100_000_000));
  for (const value of values) {
    if (value >= 100_000_000) continue;
    const digits = Buffer.from(String(value), 'latin1');
    assert.equal(murmur2OfShortDecimal(value), murmur2(digits, 0, digits.length), `murmur2 of ${value}`);
    const count = 1 + (value % 97);
    assert.equal(homePartitionOfAccountWords(value, 0, count), partitionOfKeyBytes(digits, 0, digits.length, count), `${value} % ${count}`);
  }
});

test('homePartitionOfAccountWords takes the words as int32 bit patterns too (as the decoders pass them)', () => {
  const ids = [99_999_999n, 100_000_000n, (1n << 31n) - 1n, 1n << 31n, (1n << 32n) - 1n, 1n << 32n, (1n << 63n) + 5n, (1n << 64n) - 1n];
  for (const id of ids) {
    const lo = Number(id & 0xffffffffn);
    const hi = Number(id >> 32n);
    for (const count of [1, 12, 100, 65_536]) {
      const expected = homePartitionOfAccountDecimal(id.toString(), count);
      assert.equal(homePartitionOfAccountWords(lo | 0, hi | 0, count), expected, `account ${id} as int32 words`);
      assert.equal(homePartitionOfAccountWords(lo, hi, count), expected, `account ${id} as uint32 words`);
    }
  }
});

test('partition count bounds', () => {
  assert.doesNotThrow(() => assertPartitionCount(1));
  assert.doesNotThrow(() => assertPartitionCount(PARTITION_COUNT_MAX));
  for (const bad of [0, -1, 1.5, PARTITION_COUNT_MAX + 1, NaN]) assert.throws(() => assertPartitionCount(bad));
});
