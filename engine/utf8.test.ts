import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isValidUtf8 } from './utf8';
import { SeededRandom } from './wire_fixtures';

const strictDecoder = new TextDecoder('utf-8', { fatal: true });

function referenceValid(bytes: Uint8Array): boolean {
  try {
    strictDecoder.decode(bytes);
    return true;
  } catch {
    return false;
  }
}

test('isValidUtf8 agrees with a fatal TextDecoder on edge sequences', () => {
  const cases = [
    [], [0x41], [0x7f], [0x80], [0xc0, 0x80], [0xc1, 0xbf], [0xc2, 0x80], [0xdf, 0xbf], [0xe0, 0x9f, 0xbf], [0xe0, 0xa0, 0x80],
    [0xed, 0x9f, 0xbf], [0xed, 0xa0, 0x80], [0xef, 0xbf, 0xbf], [0xf0, 0x8f, 0xbf, 0xbf], [0xf0, 0x90, 0x80, 0x80], [0xf4, 0x8f, 0xbf, 0xbf],
    [0xf4, 0x90, 0x80, 0x80], [0xf5, 0x80, 0x80, 0x80], [0xff], [0xe2, 0x82], [0xe2, 0x82, 0xac], [0xf0, 0x9f, 0x98], [0xf0, 0x9f, 0x98, 0x80],
  ];
  for (const sequence of cases) {
    const bytes = Uint8Array.from(sequence);
    assert.equal(isValidUtf8(bytes, 0, bytes.length), referenceValid(bytes), Buffer.from(bytes).toString('hex'));
  }
});

test('isValidUtf8 agrees with a fatal TextDecoder on random bytes', () => {
  const random = new SeededRandom(21);
  const alphabet = [0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc2, 0xdf, 0xe0, 0xe1, 0xed, 0xef, 0xf0, 0xf4, 0xf5, 0xff];
  for (let round = 0; round < 50000; round++) {
    const bytes = new Uint8Array(random.int(8)).map(() => (random.chance(0.8) ? random.pick(alphabet) : random.int(256)));
    assert.equal(isValidUtf8(bytes, 0, bytes.length), referenceValid(bytes), Buffer.from(bytes).toString('hex'));
  }
});

test('isValidUtf8 checks only the given range', () => {
  const bytes = Uint8Array.from([0xff, 0x41, 0x42, 0xe2, 0x82, 0xac, 0xff]);
  assert.equal(isValidUtf8(bytes, 1, 6), true);
  assert.equal(isValidUtf8(bytes, 1, 5), false);
  assert.equal(isValidUtf8(bytes, 0, 3), false);
});
