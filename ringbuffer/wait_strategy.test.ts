// Wait strategies: every wait is bounded, and a waiter in another thread is woken by the
// progress it waits for (publish for a consumer, release for a producer), not by its timeout.

import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { RingBuffer } from './ring_buffer';
import { CONSUMER_SEQUENCE_OFFSET, PRODUCER_SEQUENCE_OFFSET, SEQUENCE_SLEEPERS_OFFSET } from './ring_layout';
import { STOP_WORD, STRESS_SLOT_BYTES, consumeLoad, monotonicMs, produceLoad } from './stress_load';
import { GO_WORD, SIGNAL_WORDS, type StressRole, type StressWorkerData, type StressWorkerResult } from './stress_worker';
import { createWaitStrategy, type WaitStrategyName } from './wait_strategy';

const STRATEGIES: WaitStrategyName[] = ['busy-spin', 'yielding', 'blocking'];
const TIMEOUT_MS = 40;
// Generous: a loaded CI machine may deschedule the thread; a wait that ignored its timeout
// would never return at all.
const SLACK_MS = 2000;
/** Far below the 10 s timeout the sleeper would otherwise wake at, far above a loaded machine's scheduling delays. */
const WOKEN_WITHIN_MS = 2000;

for (const name of STRATEGIES) {
  test(`${name}: a producer on a full ring and a consumer on an empty ring time out within the bound`, () => {
    const ring = RingBuffer.create({ slotCount: 4, slotBytes: 8 });
    const sequencer = ring.acquireSequencer(createWaitStrategy(name, TIMEOUT_MS));
    const barrier = ring.acquireBarrier(createWaitStrategy(name, TIMEOUT_MS));
    let startMs = performance.now();
    assert.equal(barrier.waitFor(0), -1);
    let elapsedMs = performance.now() - startMs;
    assert.ok(elapsedMs >= TIMEOUT_MS - 1 && elapsedMs < TIMEOUT_MS + SLACK_MS, `consumer waited ${elapsedMs} ms`);
    sequencer.publish(sequencer.claim(4) + 3);
    startMs = performance.now();
    assert.equal(sequencer.claim(1), -1);
    elapsedMs = performance.now() - startMs;
    assert.ok(elapsedMs >= TIMEOUT_MS - 1 && elapsedMs < TIMEOUT_MS + SLACK_MS, `producer waited ${elapsedMs} ms`);
    const words = new Int32Array(ring.control);
    assert.equal(words[(PRODUCER_SEQUENCE_OFFSET + SEQUENCE_SLEEPERS_OFFSET) / 4], 0, 'no sleeper left on the cursor');
    assert.equal(words[(CONSUMER_SEQUENCE_OFFSET + SEQUENCE_SLEEPERS_OFFSET) / 4], 0, 'no sleeper left on the consumer sequence');
  });
}

/** Starts one side of the stress load in a worker and resolves once it is waiting for GO. */
function startSide(ring: RingBuffer, role: StressRole, name: WaitStrategyName, count: number, signals: SharedArrayBuffer): Promise<{ result: Promise<StressWorkerResult> }> {
  const workerData: StressWorkerData = {
    descriptor: ring.descriptor,
    role,
    shape: { count, batchSize: 1, varyBatches: false, seed: 1 },
    waitStrategy: name,
    waitTimeoutMs: 10_000,
    signals,
    stamps: null,
  };
  const worker = new Worker(path.join(__dirname, 'stress_worker.js'), { workerData });
  return new Promise((resolveReady, rejectReady) => {
    const result = new Promise<StressWorkerResult>((resolve, reject) => {
      worker.on('message', (message: 'ready' | StressWorkerResult) => (message === 'ready' ? resolveReady({ result }) : resolve(message)));
      worker.on('error', (error) => {
        reject(error);
        rejectReady(error);
      });
    });
    result.catch(() => undefined).finally(() => void worker.terminate());
  });
}

/**
 * Runs the load once in this thread so the wake-up measurements below time the wake-up,
 * not the lazy compilation of produceLoad / consumeLoad on their first call.
 */
function warmUp(): void {
  const ring = RingBuffer.create({ slotCount: 64, slotBytes: STRESS_SLOT_BYTES });
  const stop = new Int32Array(SIGNAL_WORDS);
  const spin = createWaitStrategy('busy-spin', 1000);
  for (let round = 0; round < 10; round++) {
    const sequencer = ring.acquireSequencer(spin);
    const barrier = ring.acquireBarrier(spin);
    produceLoad(ring, sequencer, { count: 64, batchSize: 1, varyBatches: false, seed: 1 }, stop, null);
    consumeLoad(ring, barrier, 64, stop, null);
    sequencer.detach();
    barrier.detach();
  }
}
warmUp();

function go(signals: SharedArrayBuffer): void {
  const words = new Int32Array(signals);
  Atomics.store(words, GO_WORD, 1);
  Atomics.notify(words, GO_WORD);
}

for (const name of STRATEGIES) {
  test(`${name}: a waiting consumer thread is woken by publish, long before its 10 s timeout`, async (t) => {
    const ring = RingBuffer.create({ slotCount: 8, slotBytes: STRESS_SLOT_BYTES });
    const signals = new SharedArrayBuffer(SIGNAL_WORDS * 4);
    const sequencer = ring.acquireSequencer(createWaitStrategy('busy-spin', 1000));
    const { result } = await startSide(ring, 'consumer', name, 1, signals);
    go(signals);
    await new Promise((resolve) => setTimeout(resolve, 100)); // let the consumer fall asleep
    const publishMs = monotonicMs();
    produceLoad(ring, sequencer, { count: 1, batchSize: 1, varyBatches: false, seed: 1 }, new Int32Array(signals), null);
    const consumer = await result;
    const wakeMs = consumer.endMs - publishMs;
    t.diagnostic(`consumer woke ${(wakeMs * 1000).toFixed(0)} µs after publish`);
    assert.ok(wakeMs >= 0 && wakeMs < WOKEN_WITHIN_MS, `consumer woke ${wakeMs} ms after publish`);
  });

  test(`${name}: a gated producer thread is woken by release, long before its 10 s timeout`, async (t) => {
    const ring = RingBuffer.create({ slotCount: 4, slotBytes: STRESS_SLOT_BYTES });
    const signals = new SharedArrayBuffer(SIGNAL_WORDS * 4);
    const barrier = ring.acquireBarrier(createWaitStrategy('busy-spin', 1000));
    const { result } = await startSide(ring, 'producer', name, 5, signals);
    go(signals);
    const stop = new Int32Array(signals);
    while (barrier.tryWaitFor(3) === -1) await new Promise((resolve) => setTimeout(resolve, 5));
    await new Promise((resolve) => setTimeout(resolve, 100)); // the producer is gated on a full ring
    assert.equal(ring.publishedSequence(), 3, 'the producer filled the ring and stopped');
    const releaseMs = monotonicMs();
    const consumed = consumeLoad(ring, barrier, 5, stop, null);
    const producer = await result;
    assert.equal(producer.checksum, consumed.checksum);
    const wakeMs = producer.endMs - releaseMs;
    t.diagnostic(`producer woke ${(wakeMs * 1000).toFixed(0)} µs after release`);
    assert.ok(wakeMs >= 0 && wakeMs < WOKEN_WITHIN_MS, `producer woke ${wakeMs} ms after release`);
    assert.equal(Atomics.load(stop, STOP_WORD), 0);
  });
}
