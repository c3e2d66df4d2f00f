// Worker-thread entry that runs one side of the stress load (stress_load.ts) over a ring it
// attaches from a descriptor. Spawned by ring_stress.test.ts and bench/ring.bench.ts as
// compiled JS: new Worker(path.join(__dirname, 'stress_worker.js'), { workerData }).
//
// Start-up handshake, so both sides start moving slots at the same moment: each worker
// attaches, acquires its role, posts 'ready', then waits (bounded) until the parent sets the
// GO word. Stopping: the parent sets the STOP word; a side that times out waiting for its
// peer sees it and throws instead of waiting forever.

import { parentPort, workerData } from 'node:worker_threads';
import { RingBuffer, type RingBufferDescriptor } from './ring_buffer';
import { consumeLoad, monotonicMs, produceLoad, type LoadShape } from './stress_load';
import { createWaitStrategy, type WaitStrategyName } from './wait_strategy';

export type StressRole = 'producer' | 'consumer';

export interface StressWorkerData {
  readonly descriptor: RingBufferDescriptor;
  readonly role: StressRole;
  readonly shape: LoadShape;
  readonly waitStrategy: WaitStrategyName;
  readonly waitTimeoutMs: number;
  /** Int32 words: [STOP_WORD, GO_WORD]. */
  readonly signals: SharedArrayBuffer;
  /** Float64 latency stamps (STAMP_SLOTS of them), or null to skip latency measurement. */
  readonly stamps: SharedArrayBuffer | null;
}

export interface StressWorkerResult {
  readonly role: StressRole;
  readonly checksum: number;
  readonly batches: number;
  readonly startMs: number;
  readonly endMs: number;
  readonly latenciesMs: Float64Array | null;
}

export const GO_WORD = 1;
export const SIGNAL_WORDS = 2;
const GO_WAIT_MS_MAX = 30_000;

function waitForGo(signals: Int32Array): void {
  const deadlineMs = performance.now() + GO_WAIT_MS_MAX;
  while (Atomics.load(signals, GO_WORD) === 0) {
    const remainingMs = deadlineMs - performance.now();
    if (remainingMs <= 0) throw new Error('stress worker: no GO signal within 30 s');
    Atomics.wait(signals, GO_WORD, 0, remainingMs);
  }
}

function run(data: StressWorkerData): StressWorkerResult {
  const ring = RingBuffer.attach(data.descriptor);
  const waitStrategy = createWaitStrategy(data.waitStrategy, data.waitTimeoutMs);
  const signals = new Int32Array(data.signals);
  const stamps = data.stamps === null ? null : new Float64Array(data.stamps);
  if (data.role === 'producer') {
    const sequencer = ring.acquireSequencer(waitStrategy);
    parentPort!.postMessage('ready');
    waitForGo(signals);
    const startMs = monotonicMs();
    const checksum = produceLoad(ring, sequencer, data.shape, signals, stamps);
    return { role: 'producer', checksum, batches: 0, startMs, endMs: monotonicMs(), latenciesMs: null };
  }
  const barrier = ring.acquireBarrier(waitStrategy);
  parentPort!.postMessage('ready');
  waitForGo(signals);
  const startMs = monotonicMs();
  const result = consumeLoad(ring, barrier, data.shape.count, signals, stamps);
  return { role: 'consumer', checksum: result.checksum, batches: result.batches, startMs, endMs: monotonicMs(), latenciesMs: stamps === null ? null : result.latenciesMs };
}

if (parentPort !== null && workerData !== null && typeof workerData === 'object' && 'role' in workerData) {
  parentPort.postMessage(run(workerData as StressWorkerData));
}
