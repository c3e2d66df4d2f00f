// Parent side of the two-thread stress load: creates a ring, starts a producer worker and a
// consumer worker (stress_worker.js), releases them together, and collects their results.
// Bounded: if either worker fails or the whole run exceeds deadlineMs, the STOP word is set
// (the peer notices at its next wait timeout), both workers are terminated and the run rejects.

import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { RingBuffer } from './ring_buffer';
import { STAMP_SLOTS, STOP_WORD, STRESS_SLOT_BYTES, type LoadShape } from './stress_load';
import { GO_WORD, SIGNAL_WORDS, type StressRole, type StressWorkerData, type StressWorkerResult } from './stress_worker';
import type { WaitStrategyName } from './wait_strategy';

export interface StressRunOptions {
  readonly slotCount: number;
  readonly initialSequence?: number;
  readonly shape: LoadShape;
  readonly producerWait: WaitStrategyName;
  readonly consumerWait: WaitStrategyName;
  /** Bound of one wait inside the ring; also how fast a side notices a STOP. */
  readonly waitTimeoutMs: number;
  /** Bound of the whole run. */
  readonly deadlineMs: number;
  readonly measureLatency: boolean;
}

export interface StressRunResult {
  readonly producer: StressWorkerResult;
  readonly consumer: StressWorkerResult;
  /** From the earlier start to the later end, on the shared monotonic clock. */
  readonly elapsedMs: number;
  readonly slotsPerSec: number;
  /** The producer's and consumer's sequences after the run (racy-free: both threads are done). */
  readonly publishedSequence: number;
  readonly consumedSequence: number;
}

const WORKER_PATH = path.join(__dirname, 'stress_worker.js');

export async function runStress(options: StressRunOptions): Promise<StressRunResult> {
  const ring = RingBuffer.create({ slotCount: options.slotCount, slotBytes: STRESS_SLOT_BYTES, initialSequence: options.initialSequence ?? 0 });
  const signalsBuffer = new SharedArrayBuffer(SIGNAL_WORDS * 4);
  const signals = new Int32Array(signalsBuffer);
  const stamps = options.measureLatency ? new SharedArrayBuffer(STAMP_SLOTS * 8) : null;
  const spawn = (role: StressRole, waitStrategy: WaitStrategyName): Worker => {
    const workerData: StressWorkerData = { descriptor: ring.descriptor, role, shape: options.shape, waitStrategy, waitTimeoutMs: options.waitTimeoutMs, signals: signalsBuffer, stamps };
    return new Worker(WORKER_PATH, { workerData });
  };
  const workers = [spawn('producer', options.producerWait), spawn('consumer', options.consumerWait)];
  const stop = (): void => {
    Atomics.store(signals, STOP_WORD, 1);
    Atomics.store(signals, GO_WORD, 1);
    Atomics.notify(signals, GO_WORD);
  };
  let readyCount = 0;
  const results = workers.map(
    (worker) =>
      new Promise<StressWorkerResult>((resolve, reject) => {
        worker.on('message', (message: 'ready' | StressWorkerResult) => {
          if (message !== 'ready') return resolve(message);
          readyCount++;
          if (readyCount === workers.length) {
            Atomics.store(signals, GO_WORD, 1);
            Atomics.notify(signals, GO_WORD);
          }
        });
        worker.on('error', (error) => {
          stop();
          reject(error);
        });
        worker.on('exit', (code) => reject(new Error(`stress worker exited with code ${code} before reporting`)));
      }),
  );
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      stop();
      reject(new Error(`stress run exceeded ${options.deadlineMs} ms`));
    }, options.deadlineMs);
  });
  try {
    const [producer, consumer] = await Promise.race([Promise.all(results), deadline]);
    const elapsedMs = Math.max(producer.endMs, consumer.endMs) - Math.min(producer.startMs, consumer.startMs);
    return {
      producer,
      consumer,
      elapsedMs,
      slotsPerSec: options.shape.count / (elapsedMs / 1000),
      publishedSequence: ring.publishedSequence(),
      consumedSequence: ring.consumedSequence(),
    };
  } finally {
    clearTimeout(timer);
    await Promise.all(workers.map((worker) => worker.terminate()));
  }
}
