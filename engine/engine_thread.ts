// The main thread's handle on the engine worker: creates the command and output rings,
// starts the worker, and speaks its control protocol (assign, report, stop). Control plane
// only: commands and outcomes never travel through these messages, only through the rings.

import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { RingBuffer } from '../ringbuffer';
import type { WaitStrategyName } from '../ringbuffer';
import { COMMAND_SLOT_BYTES } from './command_layout';
import { BalanceTableDescriptor, BalanceTableReader, attach } from './balance_table';
import { OUTPUT_SLOT_BYTES } from './output_layout';
import type { EngineControlMessage, EngineReady, EngineReport, EngineWorkerData } from './engine_worker';

export interface EngineThreadOptions {
  readonly commandSlotCount: number;
  readonly outputSlotCount: number;
  readonly balanceCapacity: number;
  readonly dedupWindow: number;
  readonly waitStrategy?: WaitStrategyName;
}

const CONTROL_TIMEOUT_MS = 30_000;

export class EngineThread {
  private readonly pending: Array<{ op: EngineReport['op']; resolve: (report: EngineReport) => void; reject: (error: Error) => void }> = [];
  private failure: Error | undefined;

  private constructor(
    private readonly worker: Worker,
    readonly commandRing: RingBuffer,
    readonly outputRing: RingBuffer,
    readonly tableDescriptor: BalanceTableDescriptor,
  ) {
    worker.on('message', (message: EngineReport) => this.settle(message));
    worker.on('error', (error) => this.fail(new Error(`engine worker failed: ${error.message}`, { cause: error })));
    worker.on('exit', (code) => this.fail(new Error(`engine worker exited with code ${code}`)));
  }

  static async start(options: EngineThreadOptions): Promise<EngineThread> {
    const commandRing = RingBuffer.create({ slotCount: options.commandSlotCount, slotBytes: COMMAND_SLOT_BYTES });
    const outputRing = RingBuffer.create({ slotCount: options.outputSlotCount, slotBytes: OUTPUT_SLOT_BYTES });
    const data: EngineWorkerData & { kind: string } = {
      kind: 'tally-engine',
      commandRing: commandRing.descriptor,
      outputRing: outputRing.descriptor,
      balanceCapacity: options.balanceCapacity,
      dedupWindow: options.dedupWindow,
      waitStrategy: options.waitStrategy ?? 'blocking',
    };
    const worker = new Worker(path.join(__dirname, 'engine_worker.js'), { workerData: data, name: 'tally-engine' });
    const ready = await new Promise<EngineReady>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
      worker.once('exit', (code) => reject(new Error(`engine worker exited with code ${code} during start-up`)));
    });
    return new EngineThread(worker, commandRing, outputRing, ready.table);
  }

  // A reader of the shared balance table for this thread (seqlock reads, no messaging).
  tableReader(): BalanceTableReader {
    return attach(this.tableDescriptor);
  }

  assign(partition: number): Promise<EngineReport> {
    return this.request({ op: 'assign', partition }, 'assigned');
  }

  report(): Promise<EngineReport> {
    return this.request({ op: 'report' }, 'report');
  }

  async stop(): Promise<EngineReport> {
    const stopped = await this.request({ op: 'stop' }, 'stopped');
    await this.worker.terminate();
    return stopped;
  }

  private request(message: EngineControlMessage, answer: EngineReport['op']): Promise<EngineReport> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`engine worker did not answer ${message.op} within ${CONTROL_TIMEOUT_MS} ms`)), CONTROL_TIMEOUT_MS);
      this.pending.push({
        op: answer,
        resolve: (report) => { clearTimeout(timer); resolve(report); },
        reject: (error) => { clearTimeout(timer); reject(error); },
      });
      this.worker.postMessage(message);
    });
  }

  private settle(report: EngineReport): void {
    const index = this.pending.findIndex((p) => p.op === report.op);
    if (index < 0) return;
    const [waiter] = this.pending.splice(index, 1);
    waiter!.resolve(report);
  }

  private fail(error: Error): void {
    if (this.failure !== undefined) return;
    this.failure = error;
    for (const waiter of this.pending.splice(0)) waiter.reject(error);
  }
}
