// The engine's business thread: the only writer of balances. It consumes the command ring,
// applies each command with BalanceEngine and publishes outcomes and journal legs to the
// output ring, one release and one publish per batch ("end of batch").
//
// Control messages (assign a partition, load a recovered partition, report, stop) arrive on
// the parent port and are read synchronously with receiveMessageOnPort between batches and
// on wait timeouts, so the hot loop never returns to the event loop and never awaits. A load
// therefore runs between two batches, entirely before the partition's first command.

import { parentPort, receiveMessageOnPort, workerData } from 'node:worker_threads';
import { RingBuffer, Sequencer, createWaitStrategy } from '../ringbuffer';
import type { RingBufferDescriptor, WaitStrategyName } from '../ringbuffer';
import { BalanceEngine, EngineCoreName } from './balance_engine';
import { BalanceTable, BalanceTableDescriptor } from './balance_table';
import { OutputRegion } from './output_layout';
import { PartitionLoadError, loadPartition } from './partition_loader';
import { AffinityResult, currentThreadId, pinCurrentThread } from './cpu_affinity';

export interface EngineWorkerData {
  readonly commandRing: RingBufferDescriptor;
  readonly outputRing: RingBufferDescriptor;
  readonly balanceCapacity: number;
  readonly dedupWindow: number;
  readonly waitStrategy: WaitStrategyName;
  /** Core to pin this thread to, set only once the main thread moved the others off it. */
  readonly engineCpu?: number;
  readonly taskset?: string;
  /** BalanceEngineOptions.core; default 'auto'. */
  readonly core?: EngineCoreName;
}

/**
 * 'load': the recovered state of a partition (engine/recovery_layout.ts rows in shared
 * buffers, not copied). The worker loads the balances into the table and the outcomes into
 * the partition's dedup window, assigning it, and answers 'loaded' or 'failed'.
 */
export interface EngineLoadMessage {
  readonly op: 'load';
  readonly partition: number;
  readonly balances: SharedArrayBuffer;
  readonly balanceCount: number;
  readonly outcomes: SharedArrayBuffer;
  readonly outcomeCount: number;
}

export type EngineControlMessage =
  | { readonly op: 'assign'; readonly partition: number }
  | { readonly op: 'release'; readonly partition: number }
  | EngineLoadMessage
  | { readonly op: 'report' }
  | { readonly op: 'stop' };

export interface EngineReady {
  readonly op: 'ready';
  readonly table: BalanceTableDescriptor;
  /** This thread's OS thread id (-1 if unknown) and the outcome of pinning it. */
  readonly affinity: { readonly threadId: number; readonly pinned: AffinityResult };
  /** Who applies command batches (BalanceEngine.coreName). */
  readonly core: 'native' | 'typescript';
}

export interface EngineReport {
  readonly op: 'assigned' | 'released' | 'loaded' | 'report' | 'stopped';
  readonly partition?: number;
  readonly sequence: number;
  readonly stateHash: string;
  readonly counters: number[];
  /** 'released' only: balances zeroed. */
  readonly zeroed?: number;
  /** 'loaded' only: what went into the table and the dedup window, and how long it took. */
  readonly loaded?: { readonly balanceCount: number; readonly outcomeCount: number; readonly elapsedMs: number };
}

/** The answer to a request that failed; `answer` names the op the request was waiting for. */
export interface EngineFailure {
  readonly op: 'failed';
  readonly answer: EngineReport['op'];
  readonly partition?: number;
  readonly errorName: string;
  readonly message: string;
}

const WAIT_TIMEOUT_MS = 50;

// The output ring as the engine's OutputRegion: claims wait for the downstream consumer
// (back-pressure), and everything claimed in a batch is published once at its end, or as
// soon as a claim finds the ring full: a batch may hold more output than the ring (4096
// commands of up to 7 slots each), and its consumer can only free what was published.
class RingOutputRegion implements OutputRegion {
  readonly buffer: ArrayBufferLike;
  lastClaimed = -1;

  constructor(private readonly ring: RingBuffer, private readonly sequencer: Sequencer) {
    this.buffer = ring.data;
  }

  claim(slotCount: number): number {
    let first = this.sequencer.claim(slotCount);
    if (first < 0) {
      // Every slot claimed so far is written (a command claims its slots before writing
      // them, and the next claim comes after): publish them, or a batch whose output
      // outgrows the ring would wait on itself forever.
      this.publishClaimed();
      // A full output ring means persistence is behind: keep waiting, the bound is the
      // consumer's progress. The engine must not skip or drop an outcome.
      while (first < 0) first = this.sequencer.claim(slotCount);
    }
    this.lastClaimed = first + slotCount - 1;
    return first;
  }

  slotByteOffset(position: number): number {
    return this.ring.slotOffset(position);
  }

  get slotCount(): number {
    return this.ring.slotCount;
  }

  nextPosition(): number {
    return this.sequencer.claimedSequence + 1;
  }

  // Waits as claim() does: publishes what was claimed first, then as long as persistence is behind.
  awaitRoom(slots: number): number {
    let free = this.sequencer.remainingCapacity();
    if (free >= slots) return free;
    this.publishClaimed();
    while (free < slots) free = this.sequencer.awaitCapacity(slots);
    return free;
  }

  publishClaimed(): void {
    if (this.lastClaimed >= 0 && this.lastClaimed > this.sequencer.cursorSequence) this.sequencer.publish(this.lastClaimed);
  }
}

function report(engine: BalanceEngine, op: EngineReport['op'], partition?: number): EngineReport {
  return { op, partition, sequence: engine.sequence, stateHash: engine.stateHash(), counters: Array.from(engine.counters) };
}

// Applies every published command from `next` to `available`; returns the next sequence.
// Hands the engine up to APPLY_BATCH_MAX slot offsets at a time: applyBatch() loads the
// cache lines of a group of commands before applying them, so their misses overlap
// (about 1.7x apply() one by one, bench/engine.bench.ts).
const APPLY_BATCH_MAX = 4096;
const batchOffsets = new Int32Array(APPLY_BATCH_MAX);

function applyBatch(engine: BalanceEngine, commands: RingBuffer, next: number, available: number): number {
  let sequence = next;
  while (sequence <= available) {
    const count = Math.min(APPLY_BATCH_MAX, available - sequence + 1);
    for (let i = 0; i < count; i++) batchOffsets[i] = commands.slotOffset(sequence + i);
    engine.applyBatch(batchOffsets, count);
    sequence += count;
  }
  return available + 1;
}

function handleLoad(engine: BalanceEngine, data: EngineWorkerData, message: EngineLoadMessage): void {
  const started = performance.now();
  try {
    const loaded = loadPartition(engine, message.partition, data.dedupWindow, message);
    const elapsedMs = performance.now() - started;
    parentPort!.postMessage({ ...report(engine, 'loaded', message.partition), loaded: { ...loaded, elapsedMs } } satisfies EngineReport);
  } catch (error) {
    const failure: EngineFailure = {
      op: 'failed', answer: 'loaded', partition: message.partition,
      errorName: error instanceof PartitionLoadError ? error.name : 'Error', message: (error as Error).message,
    };
    parentPort!.postMessage(failure);
  }
}

function handleControl(engine: BalanceEngine, data: EngineWorkerData, message: EngineControlMessage): boolean {
  if (message.op === 'load') {
    handleLoad(engine, data, message);
    return true;
  }
  if (message.op === 'assign') {
    engine.assignPartition(message.partition, { dedupWindow: data.dedupWindow });
    parentPort!.postMessage(report(engine, 'assigned', message.partition));
    return true;
  }
  if (message.op === 'release') {
    const zeroed = engine.releasePartition(message.partition);
    parentPort!.postMessage({ ...report(engine, 'released', message.partition), zeroed });
    return true;
  }
  if (message.op === 'report') {
    parentPort!.postMessage(report(engine, 'report'));
    return true;
  }
  return false;
}

// Pins this thread first, so the balance table's pages are first touched from its own core.
function pinThisThread(data: EngineWorkerData): EngineReady['affinity'] {
  let threadId = -1;
  try {
    threadId = currentThreadId();
  } catch {
    // No /proc/thread-self (not Linux): the id is only informational.
  }
  if (data.engineCpu === undefined) return { threadId, pinned: { ok: false, reason: 'no engine CPU configured' } };
  return { threadId, pinned: pinCurrentThread(data.engineCpu, data.taskset) };
}

function run(data: EngineWorkerData): void {
  const affinity = pinThisThread(data);
  const commands = RingBuffer.attach(data.commandRing);
  const outputs = RingBuffer.attach(data.outputRing);
  const barrier = commands.acquireBarrier(createWaitStrategy(data.waitStrategy, WAIT_TIMEOUT_MS));
  const output = new RingOutputRegion(outputs, outputs.acquireSequencer(createWaitStrategy(data.waitStrategy, WAIT_TIMEOUT_MS)));
  // The table is created here, by its only writer; other threads attach readers to its
  // shared buffers through the descriptor.
  const table = BalanceTable.create({ capacity: data.balanceCapacity });
  const engine = new BalanceEngine({ table, commands: commands.data, output, core: data.core });
  const port = parentPort!;
  port.postMessage({ op: 'ready', table: table.descriptor(), affinity, core: engine.coreName } satisfies EngineReady);
  for (;;) {
    for (let message = receiveMessageOnPort(port); message !== undefined; message = receiveMessageOnPort(port)) {
      if (!handleControl(engine, data, message.message as EngineControlMessage)) {
        port.postMessage(report(engine, 'stopped'));
        return;
      }
    }
    const next = barrier.nextSequence;
    const available = barrier.waitFor(next);
    if (available < next) continue;
    applyBatch(engine, commands, next, available);
    output.publishClaimed();
    barrier.release(available);
  }
}

if (parentPort !== null && workerData !== null && (workerData as { kind?: string }).kind === 'tally-engine') {
  run(workerData as EngineWorkerData);
}
