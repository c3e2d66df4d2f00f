import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { BalanceTable, USER_PARTITION, attach } from './balance_table';

test('insert, find and read back; keys of system accounts include the partition', () => {
  const table = BalanceTable.create({ capacity: 100 });
  table.changeSequence[0] = 7;
  const user = table.insert(1001, 0, 3, USER_PARTITION, 10, 0, 4, 0);
  table.insert(0, 0, 3, 2, -10, -1, 0, 0);
  assert.equal(table.find(1001, 0, 3, USER_PARTITION), user);
  assert.equal(table.find(0, 0, 3, 1), -1);
  const reader = attach(table.descriptor());
  assert.deepEqual(reader.readBalance(1001n, 3), { account: 1001n, currency: 3, partition: undefined, available: 10n, frozen: 4n, lastChangeSequence: 7 });
  assert.equal(reader.readBalance(0n, 3, 2)!.available, -10n);
  assert.equal(reader.readBalance(0n, 3)!.available, -10n);
  assert.equal(reader.readBalance(1002n, 3), undefined);
  assert.equal(reader.count, 2);
});

test('u64 accounts with the high bit set round-trip', () => {
  const table = BalanceTable.create({ capacity: 16 });
  const account = (1n << 64n) - 5n;
  table.insert(Number(account & 0xffffffffn), Number(account >> 32n), 1, USER_PARTITION, 1, 0, 0, 0);
  const reader = attach(table.descriptor());
  assert.equal(reader.readBalance(account, 1)!.available, 1n);
  assert.equal(reader.listBalancesOfAccount(account).length, 1);
  assert.equal(table.account(table.find(Number(account & 0xffffffffn), Number(account >> 32n), 1, USER_PARTITION)), account);
});

test('a load factor of at most 3/4 and a hard capacity', () => {
  const table = BalanceTable.create({ capacity: 1000 });
  assert.ok(table.bucketCount * 0.75 >= 1000);
  for (let i = 0; i < 1000; i++) table.insert(1000 + i, 0, 0, USER_PARTITION, i, 0, 0, 0);
  assert.equal(table.free, 0);
  assert.throws(() => table.insert(5000, 0, 0, USER_PARTITION, 0, 0, 0, 0), /beyond capacity/);
  for (let i = 0; i < 1000; i++) assert.equal(table.available(table.find(1000 + i, 0, 0, USER_PARTITION)), BigInt(i));
});

test('seqlock: a reader thread never sees a torn (available, frozen) pair', async () => {
  // The engine spreads its writes over many balances; here over 64, with the watched one among them.
  const table = BalanceTable.create({ capacity: 128 });
  const total = 1n << 40n;
  const buckets: number[] = [];
  for (let i = 0; i < 64; i++) buckets.push(table.insert(1001 + i, 0, 0, USER_PARTITION, Number(total & 0xffffffffn), Number(total >> 32n), 0, 0));
  // Words: 0 stop (set here), 1 reads so far (set by the reader, up to 10 000).
  const stop = new Int32Array(new SharedArrayBuffer(8));
  const worker = new Worker(
    `const { parentPort, workerData } = require('node:worker_threads');
     const { attach } = require(workerData.module);
     const reader = attach(workerData.descriptor);
     const stop = new Int32Array(workerData.stop);
     let reads = 0, torn = 0;
     while (Atomics.load(stop, 0) === 0 && reads < 5e6) {
       const b = reader.readBalance(1001n, 0);
       if (b.available + b.frozen !== workerData.total) torn++;
       if (++reads <= 10000) Atomics.store(stop, 1, reads);
     }
     parentPort.postMessage({ reads, torn });`,
    { eval: true, workerData: { module: require.resolve('./balance_table'), descriptor: table.descriptor(), stop: stop.buffer, total } },
  );
  const result = new Promise<{ reads: number; torn: number }>((resolve, reject) => { worker.once('message', resolve); worker.once('error', reject); });
  // Move value between available and frozen (their sum stays `total`), with both words
  // changing, for 1.5 s and until the reader (a loaded machine may start it late and give it
  // little CPU) has read many times meanwhile; at most 60 s.
  const started = Date.now();
  let moves = 0;
  while ((Date.now() < started + 1500 || Atomics.load(stop, 1) < 10_000) && Date.now() < started + 60_000) {
    for (let i = 0; i < 10_000; i++, moves++) {
      const frozen = BigInt((moves * 2654435761) % 2 ** 39) * 2n;
      const available = total - frozen;
      table.write(buckets[moves & 63], Number(available & 0xffffffffn), Number(available >> 32n), Number(frozen & 0xffffffffn), Number(frozen >> 32n));
    }
    await new Promise((resolve) => setImmediate(resolve));
  }
  Atomics.store(stop, 0, 1);
  const { reads, torn } = await result;
  await worker.terminate();
  assert.ok(reads > 1000, `reader made only ${reads} reads`);
  assert.equal(torn, 0, `${torn} torn reads out of ${reads}`);
});
