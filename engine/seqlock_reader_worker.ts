// Test support: a thread that hammers the shared balance table with seqlock reads of one
// balance while the engine thread writes it, and counts reads whose (available, frozen)
// pair breaks the invariant the writer keeps (their sum is constant). A torn read would
// show up as such a violation.

import { parentPort, workerData } from 'node:worker_threads';
import { BalanceTableDescriptor, attach } from './balance_table';

export interface SeqlockReaderData {
  readonly table: BalanceTableDescriptor;
  readonly account: string;
  readonly currency: number;
  readonly expectedTotal: string;
  /** Word 0: set by the test to stop; word 1 (if present): set here once the first read is done; word 2 (if present): distinct values read so far (up to 1000). */
  readonly stop: SharedArrayBuffer;
}

const data = workerData as SeqlockReaderData;
const reader = attach(data.table);
const stop = new Int32Array(data.stop);
const account = BigInt(data.account);
const expectedTotal = BigInt(data.expectedTotal);
let reads = 0;
let violations = 0;
let distinct = 0;
let previous = -1n;
while (Atomics.load(stop, 0) === 0) {
  const reading = reader.readBalance(account, data.currency);
  if (reading === undefined) continue;
  if (reads++ === 0 && stop.length > 1) Atomics.store(stop, 1, 1);
  if (reading.available + reading.frozen !== expectedTotal) violations++;
  if (reading.available !== previous && ++distinct <= 1000 && stop.length > 2) Atomics.store(stop, 2, distinct);
  previous = reading.available;
}
parentPort!.postMessage({ reads, violations, distinct });
