import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { DedupIndex, OutcomeStatus } from './dedup_index';

function txIdWords(text: string): { bytes: Uint8Array; words: Int32Array } {
  const words = new Int32Array(16);
  const bytes = new Uint8Array(words.buffer);
  bytes.set(Buffer.from(text, 'utf8'));
  return { bytes, words };
}

function insert(index: DedupIndex, text: string, hashLo: number, offset: number, reason = 0): void {
  const { words } = txIdWords(text);
  const bits = new Int32Array(new Float64Array([offset]).buffer);
  index.insert(hashLo, 7, words, 0, Buffer.byteLength(text), 11, 12, reason === 0 ? OutcomeStatus.Accepted : OutcomeStatus.Rejected, reason, bits[0], bits[1]);
}

function find(index: DedupIndex, text: string, hashLo: number): number {
  const { bytes } = txIdWords(text);
  return index.find(hashLo, 7, bytes, 0, Buffer.byteLength(text));
}

test('finds what was inserted, with its stored outcome', () => {
  const index = new DedupIndex({ capacity: 8 });
  insert(index, 'tx-1', 101, 5000, 5);
  const entry = find(index, 'tx-1', 101);
  assert.ok(entry >= 0);
  assert.deepEqual([index.status(entry), index.reason(entry), index.kafkaOffset(entry), index.payloadHashLo(entry), index.txIdText(entry)], [OutcomeStatus.Rejected, 5, 5000, 11, 'tx-1']);
  assert.equal(find(index, 'tx-2', 102), -1);
});

test('a hash collision is never a duplicate: tx_ids compare exactly', () => {
  const index = new DedupIndex({ capacity: 8 });
  insert(index, 'alpha', 42, 1);
  insert(index, 'beta', 42, 2);
  assert.equal(index.kafkaOffset(find(index, 'alpha', 42)), 1);
  assert.equal(index.kafkaOffset(find(index, 'beta', 42)), 2);
  assert.equal(find(index, 'gamma', 42), -1);
  assert.equal(find(index, 'alph', 42), -1, 'a prefix is another tx_id');
});

test('FIFO eviction against a model, with heavy home-bucket collisions (backward-shift deletion)', () => {
  const capacity = 257;
  const index = new DedupIndex({ capacity });
  const fifo: string[] = [];
  let seed = 7;
  const hashOf = (n: number) => (n % 5 === 0 ? 99 : Math.imul(n, 0x9e3779b1)); // a fifth share one hash
  for (let n = 0; n < 20_000; n++) {
    insert(index, `t${n}`, hashOf(n), n);
    fifo.push(`t${n}`);
    if (fifo.length > capacity) fifo.shift();
    assert.equal(index.count, Math.min(n + 1, capacity));
    seed = (Math.imul(seed, 1103515245) + 12345) | 0;
    const probe = n - ((seed >>> 8) % (capacity * 2));
    if (probe >= 0) {
      const present = n - probe < capacity;
      const entry = find(index, `t${probe}`, hashOf(probe));
      assert.equal(entry >= 0, present, `t${probe} after inserting t${n}`);
      if (present) assert.equal(index.kafkaOffset(entry), probe);
    }
  }
  assert.deepEqual(index.entriesOldestFirst().map((entry) => index.txIdText(entry)), fifo);
  assert.equal(index.evicted, 20_000 - capacity);
});

test('content hash depends on the entries, not on their ring positions', () => {
  const a = new DedupIndex({ capacity: 3 });
  const b = new DedupIndex({ capacity: 3 });
  for (const n of [1, 2, 3, 4, 5]) insert(a, `t${n}`, n, n);
  for (const n of [3, 4, 5]) insert(b, `t${n}`, n, n);
  const hashA = new Int32Array(2);
  const hashB = new Int32Array(2);
  a.contentHash(hashA);
  b.contentHash(hashB);
  assert.deepEqual(hashA, hashB);
  insert(b, 't6', 6, 6);
  b.contentHash(hashB);
  assert.notDeepEqual(hashA, hashB);
});

test('FIFO eviction against a model when every tx_id hashes into the last group (overflow wraps to group 0)', () => {
  for (const capacity of [1, 2, 7, 8, 50]) {
    const index = new DedupIndex({ capacity });
    const fifo: string[] = [];
    // 0xffffffff is the largest hash low word: its group is the last one.
    for (let n = 0; n < 400; n++) {
      insert(index, `w${n}`, 0xffffffff | 0, n);
      fifo.push(`w${n}`);
      if (fifo.length > capacity) fifo.shift();
      for (let back = 0; back < Math.min(n + 1, capacity + 3); back++) {
        const entry = find(index, `w${n - back}`, 0xffffffff | 0);
        assert.equal(entry >= 0, back < capacity, `capacity ${capacity}: w${n - back} after inserting w${n}`);
        if (entry >= 0) assert.equal(index.kafkaOffset(entry), n - back);
      }
    }
    assert.deepEqual(index.entriesOldestFirst().map((entry) => index.txIdText(entry)), fifo);
  }
});

test('prefetch() changes nothing that find() and insert() observe', () => {
  const a = new DedupIndex({ capacity: 64 });
  const b = new DedupIndex({ capacity: 64 });
  for (let n = 0; n < 1000; n++) {
    for (let k = 0; k < n % 5; k++) b.prefetch(Math.imul(n + k, 0x9e3779b1));
    insert(a, `t${n}`, Math.imul(n, 0x9e3779b1), n);
    insert(b, `t${n}`, Math.imul(n, 0x9e3779b1), n);
  }
  const hashA = new Int32Array(2);
  const hashB = new Int32Array(2);
  a.contentHash(hashA);
  b.contentHash(hashB);
  assert.deepEqual(hashA, hashB);
  for (let n = 900; n < 1000; n++) assert.equal(find(a, `t${n}`, Math.imul(n, 0x9e3779b1)), find(b, `t${n}`, Math.imul(n, 0x9e3779b1)));
});
