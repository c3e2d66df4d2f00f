// Ring buffer benchmark.
//
// 1. Two threads (ringbuffer/stress_run.ts): a producer worker writes 16-byte stress slots
//    in batches of 1, 64 and 256 (claim, write, one publish per batch), a consumer worker
//    checks every word of every slot and releases once per batch. Throughput is slots per
//    second from the first start to the last end; the checksum is the order-sensitive stream
//    checksum, equal on both sides; latency is publish-to-consume time of every 1024th
//    sequence, in an HDR histogram. Busy-spin on both sides, then yielding and blocking at
//    the largest batch, side by side.
// 2. One thread (tinybench): the bare cost per slot of tryClaim + publish + tryWaitFor +
//    release, without slot contents or a second thread.
//
// Usage: node dist/bench/ring.bench.js [--smoke]   (or BENCH_SMOKE=1)
// The last line of output is a one-line JSON summary.

import * as hdr from 'hdr-histogram-js';
import { Bench } from 'tinybench';
import { RingBuffer } from '../ringbuffer/ring_buffer';
import { runStress, type StressRunResult } from '../ringbuffer/stress_run';
import { createWaitStrategy, type WaitStrategyName } from '../ringbuffer/wait_strategy';

const SMOKE = process.argv.includes('--smoke') || process.env.BENCH_SMOKE === '1';
const SLOT_COUNT = 4096;
const BATCH_SIZES = [1, 64, 256];
/** Repetitions of each two-thread run; the median run is reported. */
const REPEATS = SMOKE ? 1 : 3;

interface ThreadRun {
  readonly wait: WaitStrategyName;
  readonly batch: number;
  readonly slots: number;
  readonly slotsPerSec: number;
  readonly elapsedMs: number;
  readonly checksum: string;
  readonly consumerBatches: number;
  readonly latencyUs: { p50: number; p99: number; p999: number; max: number };
}

function slotsFor(wait: WaitStrategyName, batch: number): number {
  if (SMOKE) return 1_000_000;
  if (wait !== 'busy-spin') return 20_000_000;
  return batch === 1 ? 20_000_000 : 100_000_000;
}

function latencyPercentilesUs(latenciesMs: Float64Array): ThreadRun['latencyUs'] {
  const histogram = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: 3 });
  for (let index = 0; index < latenciesMs.length; index++) histogram.recordValue(Math.max(1, Math.round(latenciesMs[index] * 1e6)));
  const us = (percentile: number): number => Math.round(histogram.getValueAtPercentile(percentile) / 10) / 100;
  const result = { p50: us(50), p99: us(99), p999: us(99.9), max: Math.round(histogram.maxValue / 10) / 100 };
  histogram.destroy();
  return result;
}

async function threadRun(wait: WaitStrategyName, batch: number): Promise<ThreadRun> {
  const slots = slotsFor(wait, batch);
  const results: StressRunResult[] = [];
  for (let repeat = 0; repeat < REPEATS; repeat++) {
    const result = await runStress({
      slotCount: SLOT_COUNT,
      shape: { count: slots, batchSize: batch, varyBatches: false, seed: 1 },
      producerWait: wait,
      consumerWait: wait,
      waitTimeoutMs: 1000,
      deadlineMs: 120_000,
      measureLatency: true,
    });
    if (result.producer.checksum !== result.consumer.checksum) throw new Error(`checksum mismatch: ${result.producer.checksum} vs ${result.consumer.checksum}`);
    results.push(result);
  }
  results.sort((a, b) => a.slotsPerSec - b.slotsPerSec);
  const median = results[results.length >> 1];
  return {
    wait,
    batch,
    slots,
    slotsPerSec: Math.round(median.slotsPerSec),
    elapsedMs: Math.round(median.elapsedMs),
    checksum: (median.consumer.checksum >>> 0).toString(16).padStart(8, '0'),
    consumerBatches: median.consumer.batches,
    latencyUs: latencyPercentilesUs(median.consumer.latenciesMs ?? new Float64Array(0)),
  };
}

function printThreadRun(run: ThreadRun): void {
  const { p50, p99, p999, max } = run.latencyUs;
  console.log(
    `${run.wait.padEnd(9)} batch ${String(run.batch).padStart(3)}: ${(run.slotsPerSec / 1e6).toFixed(1).padStart(6)} M slots/s` +
      `  (${run.slots} slots in ${run.elapsedMs} ms, ${run.consumerBatches} consumer batches, checksum ${run.checksum})` +
      `  publish→consume µs p50 ${p50} p99 ${p99} p99.9 ${p999} max ${max}`,
  );
}

/** Single-thread cost per slot of the ring protocol alone, for each batch size. */
async function microCosts(): Promise<Record<string, number>> {
  const slotsPerCall = 4096;
  const bench = new Bench({ time: SMOKE ? 100 : 1000, warmupTime: SMOKE ? 20 : 200 });
  const work = BATCH_SIZES.map((batch) => ({ batch, slots: 0, checksum: 0 }));
  for (const counters of work) {
    const ring = RingBuffer.create({ slotCount: SLOT_COUNT, slotBytes: 16 });
    const sequencer = ring.acquireSequencer(createWaitStrategy('busy-spin', 1000));
    const barrier = ring.acquireBarrier(createWaitStrategy('busy-spin', 1000));
    const batch = counters.batch;
    bench.add(`claim+publish+wait+release, batch ${batch}`, () => {
      let checksum = counters.checksum;
      for (let moved = 0; moved < slotsPerCall; moved += batch) {
        const first = sequencer.tryClaim(batch);
        sequencer.publish(first + batch - 1);
        const available = barrier.tryWaitFor(first);
        barrier.release(available);
        checksum = (Math.imul(checksum, 31) + ring.slotIndex(available)) | 0;
      }
      counters.checksum = checksum;
      counters.slots += slotsPerCall;
    });
  }
  await bench.run();
  const nsPerSlot: Record<string, number> = {};
  bench.tasks.forEach((task, index) => {
    const result = task.result;
    if (result.state !== 'completed') throw new Error(`${task.name}: ${result.state}`);
    const { batch, slots, checksum } = work[index];
    const ns = (result.latency.p50 * 1e6) / slotsPerCall;
    nsPerSlot[`batch${batch}`] = Math.round(ns * 100) / 100;
    console.log(
      `${task.name.padEnd(38)} ${ns.toFixed(2).padStart(6)} ns/slot p50, ${((result.latency.p99 * 1e6) / slotsPerCall).toFixed(2)} p99` +
        `  (${result.latency.samplesCount} samples of ${slotsPerCall} slots; ${slots} slots, checksum ${(checksum >>> 0).toString(16).padStart(8, '0')})`,
    );
  });
  return nsPerSlot;
}

async function main(): Promise<void> {
  console.log(`ring bench${SMOKE ? ' (smoke)' : ''}: ${SLOT_COUNT} slots of 16 bytes, two worker threads, median of ${REPEATS} run(s)`);
  const runs: ThreadRun[] = [];
  for (const batch of BATCH_SIZES) runs.push(await threadRun('busy-spin', batch));
  const largest = BATCH_SIZES[BATCH_SIZES.length - 1];
  for (const wait of ['yielding', 'blocking'] as const) runs.push(await threadRun(wait, largest));
  runs.forEach(printThreadRun);
  const microNsPerSlot = await microCosts();
  const headline = runs.find((run) => run.wait === 'busy-spin' && run.batch === largest)!;
  const summary = {
    bench: 'ring',
    smoke: SMOKE,
    slotsPerSec: headline.slotsPerSec,
    batch: largest,
    wait: 'busy-spin',
    slotCount: SLOT_COUNT,
    slotBytes: 16,
    checksum: headline.checksum,
    latencyUsP99: headline.latencyUs.p99,
    slotsPerSecByBatch: Object.fromEntries(runs.filter((run) => run.wait === 'busy-spin').map((run) => [run.batch, run.slotsPerSec])),
    slotsPerSecByWait: Object.fromEntries(runs.filter((run) => run.batch === largest).map((run) => [run.wait, run.slotsPerSec])),
    microNsPerSlot,
  };
  console.log(JSON.stringify(summary));
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
