import { test } from 'node:test';
import assert from 'node:assert/strict';
import { summarizeGcTrace } from './gc_trace';

// Lines as node 20's --trace-gc prints them, two isolates interleaved with other output.
const TRACE = [
  '[4242:0x1177dc00]       33 ms: Scavenge 3.2 (3.2) -> 2.8 (4.2) MB, 3.58 / 0.00 ms  (average mu = 1.000, current mu = 1.000) allocation failure; ',
  '{"level":30,"msg":"tally started"}',
  '[4242:0x7f414c000f00]       12 ms: Scavenge 1.1 (2.0) -> 0.9 (2.0) MB, 0.50 / 0.00 ms  (average mu = 1.000, current mu = 1.000) allocation failure; ',
  '[4242:0x1177dc00]      346 ms: Mark-Compact 56.1 (88.8) -> 39.8 (73.4) MB, 23.58 / 0.00 ms  (+ 0.9 ms in 5 steps since start of marking, biggest step 0.3 ms, walltime since start of marking 114 ms) (average mu = 1.000, current mu = 1.000) external finalize; GC in old space requested',
  '[4242:0x1177dc00]      400 ms: Mark-Compact (reduce) 30.0 (40.0) -> 20.5 (30.0) MB, 5.00 / 0.00 ms  (average mu = 0.9) memory reducer',
].join('\n');

test('the GC trace is summed per isolate, the first isolate being the main thread', () => {
  const [main, worker] = summarizeGcTrace(TRACE);
  assert.equal(main!.isolate, '0x1177dc00');
  assert.equal(main!.thread, 'main');
  assert.deepEqual(main!.counts, { Scavenge: 1, 'Mark-Compact': 1, 'Mark-Compact (reduce)': 1 });
  assert.equal(main!.pauseTotalMs, 32.16);
  assert.equal(main!.pauseMaxMs, 23.58);
  assert.equal(main!.heapMaxMb, 39.8);
  assert.equal(main!.heapLastMb, 20.5);
  assert.equal(worker!.thread, 'worker');
  assert.deepEqual(worker!.counts, { Scavenge: 1 });
});
