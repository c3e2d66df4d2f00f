import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { CURRENCY_SCALE_DEFAULT, CurrencyRegistry, UNKNOWN_CURRENCY_ID, codeWordAt } from './currency_registry';

const CONFIG = [{ code: 'USDT', scale: 6 }, { code: 'BTC' }, { code: 'ETH', scale: 18 }, { code: 'SOL', scale: 9 }];

test('ids are dense from 1 in configuration order; scale defaults to 8', () => {
  const registry = CurrencyRegistry.fromConfig(CONFIG);
  assert.equal(registry.count, 4);
  assert.deepEqual(['USDT', 'BTC', 'ETH', 'SOL'].map((code) => registry.idOfCode(code)), [1, 2, 3, 4]);
  assert.deepEqual([1, 2, 3, 4].map((id) => registry.scaleOf(id)), [6, CURRENCY_SCALE_DEFAULT, 18, 9]);
  assert.equal(registry.codeOf(3), 'ETH');
  assert.throws(() => registry.codeOf(0));
  assert.throws(() => registry.codeOf(5));
});

test('unknown codes, wrong case and bad lengths are id 0', () => {
  const registry = CurrencyRegistry.fromConfig(CONFIG);
  for (const code of ['', 'usdt', 'USD', 'USDTT', 'DOGE', 'X'.repeat(17), 'BTC ', '\u00c9TH']) assert.equal(registry.idOfCode(code), UNKNOWN_CURRENCY_ID, code);
});

test('lookup from bytes (any sub-range) equals lookup from string', () => {
  const codes = Array.from({ length: 500 }, (_, index) => `C${index.toString(36).toUpperCase()}${'X'.repeat(index % 10)}`);
  const registry = CurrencyRegistry.fromConfig(codes.map((code, index) => ({ code, scale: index % 19 })));
  codes.forEach((code, index) => {
    const framed = Buffer.from(`""${code}""`, 'latin1');
    assert.equal(registry.idOfBytes(framed, 2, 2 + code.length), index + 1);
    assert.equal(registry.idOfCode(code), index + 1);
    assert.equal(registry.idOfBytes(framed, 2, 1 + code.length), code.length > 1 && codes.includes(code.slice(0, -1)) ? codes.indexOf(code.slice(0, -1)) + 1 : 0);
  });
  assert.equal(registry.idOfBytes(Buffer.from('ZZZZ'), 0, 4), 0);
  assert.equal(registry.idOfBytes(Buffer.alloc(0), 0, 0), 0);
});

test('lookup by code words equals lookup by bytes; the length is part of the key', () => {
  const codes = ['USDT', 'BTC', 'A1B2C3D4E5F6G7H8', 'ABCDE', 'ABCDEFGH', 'ABCDEFGHI', 'X'];
  const registry = CurrencyRegistry.fromConfig(codes.map((code) => ({ code })));
  const wordsOf = (bytes: Uint8Array): number[] => [0, 1, 2, 3].map((word) => codeWordAt(bytes, 0, bytes.length, word));
  for (const code of codes) {
    const bytes = Buffer.from(code, 'latin1');
    const [word0, word1, word2, word3] = wordsOf(bytes);
    assert.equal(registry.idOfCodeWords(bytes.length, word0, word1, word2, word3), registry.idOfCode(code), code);
    // The same words with a NUL byte appended are another, unknown code.
    const padded = Buffer.concat([bytes, Buffer.alloc(1)]);
    if (padded.length <= 16) assert.equal(registry.idOfCodeWords(padded.length, ...(wordsOf(padded) as [number, number, number, number])), UNKNOWN_CURRENCY_ID, `${code}\\0`);
    assert.equal(registry.idOfBytes(padded, 0, padded.length), UNKNOWN_CURRENCY_ID);
  }
  assert.equal(codeWordAt(Buffer.from('ABCDEF'), 1, 6, 0), 0x45444342);
  assert.equal(codeWordAt(Buffer.from('ABCDEF'), 1, 6, 1), 0x46);
  assert.equal(codeWordAt(Buffer.from('ABCDEF'), 1, 6, 2), 0);
});

test('bad configuration is refused', () => {
  assert.throws(() => CurrencyRegistry.fromConfig([{ code: 'usdt' }]), /bad code/);
  assert.throws(() => CurrencyRegistry.fromConfig([{ code: '' }]), /bad code/);
  assert.throws(() => CurrencyRegistry.fromConfig([{ code: 'A'.repeat(17) }]), /bad code/);
  assert.throws(() => CurrencyRegistry.fromConfig([{ code: 'BTC', scale: 19 }]), /bad scale/);
  assert.throws(() => CurrencyRegistry.fromConfig([{ code: 'BTC', scale: 1.5 }]), /bad scale/);
  assert.throws(() => CurrencyRegistry.fromConfig([{ code: 'BTC' }, { code: 'BTC' }]), /duplicate/);
  assert.doesNotThrow(() => CurrencyRegistry.fromConfig([{ code: 'A1B2C3D4E5F6G7H8', scale: 0 }]));
});

test('serialize/fromSerialized rebuilds the same ids and scales in another worker thread', async () => {
  const registry = CurrencyRegistry.fromConfig(CONFIG);
  const serialized = registry.serialize();
  assert.deepEqual(CurrencyRegistry.fromSerialized(JSON.parse(JSON.stringify(serialized))).serialize(), serialized);
  const workerSource = `
    const { parentPort, workerData } = require('node:worker_threads');
    const { CurrencyRegistry } = require(${JSON.stringify(require.resolve('./currency_registry'))});
    const registry = CurrencyRegistry.fromSerialized(workerData);
    parentPort.postMessage(['USDT', 'BTC', 'ETH', 'SOL', 'DOGE'].map((code) => [registry.idOfCode(code), registry.idOfCode(code) ? registry.scaleOf(registry.idOfCode(code)) : -1]));
  `;
  const worker = new Worker(workerSource, { eval: true, workerData: serialized });
  const result = await new Promise((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  await worker.terminate();
  assert.deepEqual(result, [[1, 6], [2, 8], [3, 18], [4, 9], [0, -1]]);
});
