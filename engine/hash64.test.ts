import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Hash64, hash64, hash64Aligned, hash64BigInt, hash64CopyWords } from './hash64';
import { SeededRandom } from './wire_fixtures';

// Expected values from the C reference MurmurHash3_x86_128 (smhasher/src/MurmurHash3.cpp,
// compiled with gcc): lo = out[0] (h1), hi = out[1] (h2).
const REFERENCE_VECTORS: { hex: string; seed: number; lo: number; hi: number }[] = [
{ hex: '', seed: 0x00000000, lo: 0x00000000, hi: 0x00000000 },
  { hex: '', seed: 0x00000001, lo: 0x88c4adec, hi: 0x54d201b9 },
  { hex: '', seed: 0x9747b28c, lo: 0xf7bed5a1, hi: 0x5b576a1c },
  { hex: '61', seed: 0x00000000, lo: 0xa794933c, hi: 0x5556b01b },
  { hex: '61', seed: 0x00000001, lo: 0x49db9b04, hi: 0x1c5281c5 },
  { hex: '61', seed: 0x9747b28c, lo: 0x084ef944, hi: 0x21a1186e },
  { hex: '6162', seed: 0x00000000, lo: 0x158451df, hi: 0x25be3010 },
  { hex: '6162', seed: 0x00000001, lo: 0x607673ae, hi: 0x7b35502d },
  { hex: '6162', seed: 0x9747b28c, lo: 0x3837d795, hi: 0xc7fe5896 },
  { hex: '616263', seed: 0x00000000, lo: 0x75cdc6d1, hi: 0xa2b006a5 },
  { hex: '616263', seed: 0x00000001, lo: 0x327c7bab, hi: 0x21a38300 },
  { hex: '616263', seed: 0x9747b28c, lo: 0xd6359eaf, hi: 0x48fc3ac3 },
  { hex: '61626364', seed: 0x00000000, lo: 0x96b6ccaa, hi: 0x45afc62e },
  { hex: '61626364', seed: 0x00000001, lo: 0x51a1ea2e, hi: 0x77cd689b },
  { hex: '61626364', seed: 0x9747b28c, lo: 0x4795c529, hi: 0xcec1885e },
  { hex: '6162636465', seed: 0x00000000, lo: 0xc5402efb, hi: 0x5d24c5bc },
  { hex: '6162636465', seed: 0x00000001, lo: 0x3d16282b, hi: 0x53c54dae },
  { hex: '6162636465', seed: 0x9747b28c, lo: 0x5e5cf9c1, hi: 0x4a9d8617 },
  { hex: '6162636465666768696a6b6c6d6e6f', seed: 0x00000000, lo: 0xee6d1d69, hi: 0x4a1ad5ae },
  { hex: '6162636465666768696a6b6c6d6e6f', seed: 0x00000001, lo: 0xb504e0ea, hi: 0x8b94fb52 },
  { hex: '6162636465666768696a6b6c6d6e6f', seed: 0x9747b28c, lo: 0xbeb9c27c, hi: 0x26a4126b },
  { hex: '6162636465666768696a6b6c6d6e6f70', seed: 0x00000000, lo: 0x9fd27627, hi: 0x90b91256 },
  { hex: '6162636465666768696a6b6c6d6e6f70', seed: 0x00000001, lo: 0x390c87bd, hi: 0x317b31d7 },
  { hex: '6162636465666768696a6b6c6d6e6f70', seed: 0x9747b28c, lo: 0xfa724958, hi: 0x5f8221de },
  { hex: '6162636465666768696a6b6c6d6e6f7071', seed: 0x00000000, lo: 0x0445a4d3, hi: 0x64515c6f },
  { hex: '6162636465666768696a6b6c6d6e6f7071', seed: 0x00000001, lo: 0x653d4e97, hi: 0x2dd09e79 },
  { hex: '6162636465666768696a6b6c6d6e6f7071', seed: 0x9747b28c, lo: 0x4ab62e25, hi: 0x5da149f1 },
  { hex: '54686520717569636b2062726f776e20666f78206a756d7073206f76657220746865206c617a7920646f67', seed: 0x00000000, lo: 0x2f1583c3, hi: 0xecee2c67 },
  { hex: '54686520717569636b2062726f776e20666f78206a756d7073206f76657220746865206c617a7920646f67', seed: 0x00000001, lo: 0xd5a4c21d, hi: 0x340673eb },
  { hex: '54686520717569636b2062726f776e20666f78206a756d7073206f76657220746865206c617a7920646f67', seed: 0x9747b28c, lo: 0x8ad4d55e, hi: 0x4cb86171 },
  { hex: '74782d303030303030303030303031', seed: 0x00000000, lo: 0x4c99084e, hi: 0x4d16c67d },
  { hex: '74782d303030303030303030303031', seed: 0x00000001, lo: 0xd042f89a, hi: 0xa1d231a7 },
  { hex: '74782d303030303030303030303031', seed: 0x9747b28c, lo: 0xe369fa7e, hi: 0xacdeccfb },
  { hex: '35353065383430302d653239622d343164342d613731362d343436363535343430303030', seed: 0x00000000, lo: 0x765174c2, hi: 0x6617c416 },
  { hex: '35353065383430302d653239622d343164342d613731362d343436363535343430303030', seed: 0x00000001, lo: 0xa3be3dc6, hi: 0x63329f05 },
  { hex: '35353065383430302d653239622d343164342d613731362d343436363535343430303030', seed: 0x9747b28c, lo: 0xd1896e3e, hi: 0xbd11290d },
  { hex: 'fffe807f00010203fffffffffffffffffffefd', seed: 0x00000000, lo: 0xa82e89ab, hi: 0xc05fc4c6 },
  { hex: 'fffe807f00010203fffffffffffffffffffefd', seed: 0x00000001, lo: 0x881d41db, hi: 0xe003511d },
  { hex: 'fffe807f00010203fffffffffffffffffffefd', seed: 0x9747b28c, lo: 0xb2e7d1c2, hi: 0x977ff773 },
];

test('hash64 equals the first 64 bits of MurmurHash3_x86_128', () => {
  const out = new Hash64();
  for (const vector of REFERENCE_VECTORS) {
    const bytes = Buffer.from(vector.hex, 'hex');
    hash64(bytes, 0, bytes.length, vector.seed, out);
    assert.deepEqual([out.lo >>> 0, out.hi >>> 0], [vector.lo, vector.hi], `${vector.hex} seed ${vector.seed}`);
  }
  // The widely published digest of "The quick brown fox jumps over the lazy dog".
  assert.equal(hash64BigInt(Buffer.from('The quick brown fox jumps over the lazy dog')), 0xecee2c672f1583c3n);
});

test('hash64 of a sub-range equals hash64 of a copy', () => {
  const random = new SeededRandom(11);
  const out = new Hash64();
  const copyOut = new Hash64();
  for (let round = 0; round < 2000; round++) {
    const bytes = new Uint8Array(80).map(() => random.int(256));
    const start = random.int(40);
    const end = start + random.int(41);
    hash64(bytes, start, end, round, out);
    const copy = bytes.slice(start, end);
    hash64(copy, 0, copy.length, round, copyOut);
    assert.deepEqual([out.lo, out.hi], [copyOut.lo, copyOut.hi]);
  }
});

test('hash64Aligned over zero-padded words equals hash64 for every length', () => {
  const random = new SeededRandom(12);
  const out = new Hash64();
  const alignedOut = new Hash64();
  for (let round = 0; round < 3000; round++) {
    const length = round % 100;
    const words = new Uint32Array(8 + 32);
    const bytes = new Uint8Array(words.buffer);
    const wordIndex = 4 * random.int(2) + random.int(4);
    for (let index = 0; index < length; index++) bytes[wordIndex * 4 + index] = random.int(256);
    hash64(bytes, wordIndex * 4, wordIndex * 4 + length, 7, out);
    hash64Aligned(words, wordIndex, length, 7, alignedOut);
    assert.deepEqual([alignedOut.lo, alignedOut.hi], [out.lo, out.hi], `length ${length}`);
  }
});

test('hash64CopyWords hashes like hash64 and copies the bytes zero padded to a 16-byte block', () => {
  const random = new SeededRandom(13);
  const out = new Hash64();
  const copyOut = new Hash64();
  const SENTINEL = 0xdeadbeef;
  for (let round = 0; round < 3000; round++) {
    const length = round % 100;
    const bytes = new Uint8Array(120).map(() => random.int(256));
    // Near the end of `bytes` too, where the tail is read byte by byte.
    const start = round % 3 === 0 ? bytes.length - length : random.int(16);
    const target = new Uint32Array(40).fill(SENTINEL);
    const targetWordIndex = random.int(8);
    hash64(bytes, start, start + length, round, out);
    const highBits = hash64CopyWords(bytes, start, start + length, target, targetWordIndex, round, copyOut);
    assert.deepEqual([copyOut.lo, copyOut.hi], [out.lo, out.hi], `length ${length}`);
    const paddedWords = Math.ceil(length / 16) * 4;
    const copied = new Uint8Array(target.buffer, targetWordIndex * 4, paddedWords * 4);
    const expected = new Uint8Array(paddedWords * 4);
    expected.set(bytes.subarray(start, start + length));
    assert.deepEqual(copied, expected, `copied bytes, zero padded to a word, length ${length}`);
    let wordsOr = 0;
    for (let word = 0; word < paddedWords; word++) wordsOr |= target[targetWordIndex + word];
    // The OR of the words, plus high bits for NUL bytes (padding excluded).
    assert.equal(highBits & 0x7f7f7f7f, wordsOr & 0x7f7f7f7f);
    assert.equal(highBits & wordsOr & 0x80808080, wordsOr & 0x80808080);
    const needsCheck = bytes.subarray(start, start + length).some((byte) => byte === 0 || byte >= 0x80);
    assert.equal((highBits & 0x80808080) !== 0, needsCheck, `length ${length}`);
    for (let word = 0; word < target.length; word++) {
      if (word < targetWordIndex || word >= targetWordIndex + paddedWords) assert.equal(target[word], SENTINEL, `word ${word} untouched, length ${length}`);
    }
  }
});

test('hash64CopyWords flags exactly the byte runs that are not ASCII without NUL', () => {
  const random = new SeededRandom(14);
  const out = new Hash64();
  const target = new Uint32Array(40);
  for (let round = 0; round < 20_000; round++) {
    const length = 1 + (round % 80);
    // ASCII 1..127, then maybe one NUL or one byte >= 0x80 anywhere; zeros after the run.
    const bytes = new Uint8Array(100);
    const start = round % 2 === 0 ? bytes.length - length : random.int(100 - length + 1);
    for (let index = start; index < start + length; index++) bytes[index] = 1 + random.int(127);
    const odd = random.int(3);
    if (odd === 1) bytes[start + random.int(length)] = 0;
    if (odd === 2) bytes[start + random.int(length)] = 0x80 + random.int(128);
    const flags = hash64CopyWords(bytes, start, start + length, target, random.int(8), 0, out) & 0x80808080;
    assert.equal(flags !== 0, odd !== 0, `length ${length}, start ${start}, odd ${odd}`);
  }
});
