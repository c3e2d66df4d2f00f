// The main thread's handle on the engine worker: creates the command and output rings,
// starts the worker, and speaks its control protocol (assign, load, report, stop). Control
// plane only: commands and outcomes never travel through these messages, only through the
// rings, and recovered partitions travel as shared buffers (engine/recovery_layout.ts).

import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { RingBuffer } from '../ringbuffer';
import type { WaitStrategyName } from '../ringbuffer';
import { COMMAND_SLOT_BYTES } from './command_layout';
import { BalanceTableDescriptor, BalanceTableReader, attach } from './balance_table';
import { OUTPUT_SLOT_BYTES } from './output_layout';
import type { EngineControlMessage, EngineFailure, EngineReady, EngineReport, EngineWorkerData } from './engine_worker';
import { PartitionLoadError } from './partition_loader';
import type { EngineCoreName } from './balance_engine';
import { AffinityResult, reserveCpu, restoreProcessCpus } from './cpu_affinity';

export interface EngineThreadOptions {
  readonly commandSlotCount: number;
  readonly outputSlotCount: number;
  readonly balanceCapacity: number;
  readonly dedupWindow: number;
  readonly waitStrategy?: WaitStrategyName;
  /** Core the engine thread pins itself to (engine/cpu_affinity.ts); undefined: no pinning. */
  readonly engineCpu?: number;
  /** The taskset command; tests name one that does not exist. */
  readonly taskset?: string;
  /** Who applies command batches (BalanceEngineOptions.core); default 'auto'. */
  readonly core?: EngineCoreName;
  /**
   * Called once if the worker dies other than through stop(): an exception in the engine
   * (a broken invariant) or the thread's exit. The engine's state can no longer be trusted
   * nor advanced; the caller must stop feeding it (the service exits, and a restart replays).
   */
  readonly onFailure?: (error: Error) => void;
}

/** Where the engine thread runs, for the start-up log and for tests. */
export interface EngineAffinity {
  /** The OS thread id (TID) of the engine thread, or -1 where /proc/thread-self is missing. */
  readonly threadId: number;
  /** The core it is pinned to, or undefined when it runs unpinned. */
  readonly pinnedCpu: number | undefined;
  /** The cores every other thread of the process was moved to. */
  readonly otherCpus: readonly number[] | undefined;
  /** Why a configured pinning did not happen (an operating error: log it, run unpinned). */
  readonly warning: string | undefined;
}

const CONTROL_TIMEOUT_MS = 30_000;
/** A load inserts up to the table's capacity (hundreds of millions of balances at most). */
const LOAD_TIMEOUT_MS = 600_000;

export class EngineThread {
  private readonly pending: Array<{ op: EngineReport['op']; resolve: (report: EngineReport) => void; reject: (error: Error) => void }> = [];
  private failure: Error | undefined;
  private stopping = false;
  /** The failure, if the worker died other than through stop(). */
  private crash: Error | undefined;

  private constructor(
    private readonly worker: Worker,
    readonly commandRing: RingBuffer,
    readonly outputRing: RingBuffer,
    readonly tableDescriptor: BalanceTableDescriptor,
    readonly affinity: EngineAffinity,
    /** Who applies command batches in the worker. */
    readonly core: 'native' | 'typescript',
    private readonly onFailure: ((error: Error) => void) | undefined,
  ) {
    worker.on('message', (message: EngineReport | EngineFailure) => this.settle(message));
    worker.on('error', (error) => this.fail(new Error(`engine worker failed: ${error.message}`, { cause: error })));
    worker.on('exit', (code) => this.fail(new Error(`engine worker exited with code ${code}`)));
  }

  static async start(options: EngineThreadOptions): Promise<EngineThread> {
    // Before the worker exists, so that it and every thread created later start off the core.
    const reserved = options.engineCpu === undefined ? undefined : reserveCpu(options.engineCpu, options.taskset);
    const commandRing = RingBuffer.create({ slotCount: options.commandSlotCount, slotBytes: COMMAND_SLOT_BYTES });
    const outputRing = RingBuffer.create({ slotCount: options.outputSlotCount, slotBytes: OUTPUT_SLOT_BYTES });
    const data: EngineWorkerData & { kind: string } = {
      kind: 'tally-engine',
      commandRing: commandRing.descriptor,
      outputRing: outputRing.descriptor,
      balanceCapacity: options.balanceCapacity,
      dedupWindow: options.dedupWindow,
      waitStrategy: options.waitStrategy ?? 'blocking',
      engineCpu: reserved?.ok === true ? options.engineCpu : undefined,
      taskset: options.taskset,
      core: options.core,
    };
    const worker = new Worker(path.join(__dirname, 'engine_worker.js'), { workerData: data, name: 'tally-engine' });
    const ready = await new Promise<EngineReady>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
      worker.once('exit', (code) => reject(new Error(`engine worker exited with code ${code} during start-up`)));
    });
    return new EngineThread(worker, commandRing, outputRing, ready.table, settleAffinity(options, reserved, ready), ready.core, options.onFailure);
  }

  // A reader of the shared balance table for this thread (seqlock reads, no messaging).
  tableReader(): BalanceTableReader {
    return attach(this.tableDescriptor);
  }

  assign(partition: number): Promise<EngineReport> {
    return this.request({ op: 'assign', partition }, 'assigned');
  }

  /**
   * Loads a recovered partition (persist/recovery.ts) in place of assign, before any of its
   * commands: the first `balanceCount` BALANCE rows of `balances` go into the table, the
   * first `outcomeCount` OUTCOME rows (newest first) into its dedup window, and the partition
   * is assigned. Answers with counts, the worker's time and the state hash. The buffers are
   * shared, not copied: do not write them after the call. Rejects with a PartitionLoadError
   * on an operating error (table full, partition already assigned, a balance on two
   * partitions); the engine must then not be fed that partition. There is no unload (see
   * engine/partition_loader.ts).
   */
  loadPartition(partition: number, balances: SharedArrayBuffer, balanceCount: number, outcomes: SharedArrayBuffer, outcomeCount: number): Promise<EngineReport> {
    return this.request({ op: 'load', partition, balances, balanceCount, outcomes, outcomeCount }, 'loaded', LOAD_TIMEOUT_MS);
  }

  /**
   * Hands a partition back: its dedup window is dropped and its balances zeroed, so it can be
   * loaded again later. Call only once nothing of it is left in the command ring.
   */
  releasePartition(partition: number): Promise<EngineReport> {
    return this.request({ op: 'release', partition }, 'released', LOAD_TIMEOUT_MS);
  }

  report(): Promise<EngineReport> {
    return this.request({ op: 'report' }, 'report');
  }

  /** Why the worker died, if it did (undefined while it runs or after a clean stop). */
  get failed(): Error | undefined {
    return this.crash;
  }

  /**
   * Asks the worker to stop and report its final state; the worker is terminated in any case,
   * also when it does not answer within `timeoutMs` (spinning on a full output ring whose
   * flushes cannot commit, say), which then rejects.
   */
  async stop(timeoutMs = CONTROL_TIMEOUT_MS): Promise<EngineReport> {
    this.stopping = true;
    try {
      return await this.request({ op: 'stop' }, 'stopped', timeoutMs);
    } finally {
      await this.worker.terminate();
    }
  }

  private request(message: EngineControlMessage, answer: EngineReport['op'], timeoutMs = CONTROL_TIMEOUT_MS): Promise<EngineReport> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`engine worker did not answer ${message.op} within ${timeoutMs} ms`)), timeoutMs);
      this.pending.push({
        op: answer,
        resolve: (report) => { clearTimeout(timer); resolve(report); },
        reject: (error) => { clearTimeout(timer); reject(error); },
      });
      this.worker.postMessage(message);
    });
  }

  private settle(message: EngineReport | EngineFailure): void {
    const answer = message.op === 'failed' ? message.answer : message.op;
    const index = this.pending.findIndex((p) => p.op === answer);
    if (index < 0) return;
    const [waiter] = this.pending.splice(index, 1);
    if (message.op !== 'failed') {
      waiter!.resolve(message);
      return;
    }
    const text = `engine worker: loading partition ${message.partition} failed: ${message.message}`;
    waiter!.reject(message.errorName === 'PartitionLoadError' ? new PartitionLoadError(text) : new Error(text));
  }

  private fail(error: Error): void {
    if (this.failure !== undefined) return;
    this.failure = error;
    for (const waiter of this.pending.splice(0)) waiter.reject(error);
    if (this.stopping) return;
    this.crash = error;
    this.onFailure?.(error);
  }
}

// Combines the two pinning steps into what the service logs. If the worker could not pin
// itself after the other threads were moved off its core, they get the core back: an
// unpinned engine must not leave a core idle.
function settleAffinity(options: EngineThreadOptions, reserved: AffinityResult | undefined, ready: EngineReady): EngineAffinity {
  const { threadId, pinned } = ready.affinity;
  if (reserved === undefined) return { threadId, pinnedCpu: undefined, otherCpus: undefined, warning: undefined };
  if (!reserved.ok) return { threadId, pinnedCpu: undefined, otherCpus: undefined, warning: reserved.reason };
  if (pinned.ok) return { threadId, pinnedCpu: options.engineCpu, otherCpus: reserved.cpus, warning: undefined };
  const restored = restoreProcessCpus([...reserved.cpus, options.engineCpu!].sort((a, b) => a - b), options.taskset);
  const warning = restored.ok ? pinned.reason : `${pinned.reason}; restoring the process's CPUs failed too: ${restored.reason}`;
  return { threadId, pinnedCpu: undefined, otherCpus: undefined, warning };
}
