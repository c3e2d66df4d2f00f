// The flush workers: a Piscina pool of exactly `workers` threads running flush_task.js, each
// with its own PostgreSQL connection. The batcher keeps at most one task per partition group
// in flight and there are as many groups as threads, so a task never waits in the queue for
// long; the queue bound only catches a caller that breaks that rule.

import path from 'node:path';
import { Piscina } from 'piscina';
import type { FlushResult, FlushTask } from './flush_task';

export interface FlushPoolOptions {
  readonly workers: number;
  /** Default: flush_task.js beside this file (dist/persist/). */
  readonly filename?: string;
}

/** What the batcher needs from a pool: run one task. Tests may wrap it to inject faults. */
export interface FlushRunner {
  run(task: FlushTask): Promise<FlushResult>;
}

export class FlushPool implements FlushRunner {
  private readonly pool: Piscina<FlushTask, FlushResult>;
  private closed = false;

  constructor(options: FlushPoolOptions) {
    if (!Number.isInteger(options.workers) || options.workers < 1 || options.workers > 64) throw new Error(`flush pool: workers must be an integer from 1 to 64, got ${options.workers}`);
    this.pool = new Piscina<FlushTask, FlushResult>({
      filename: options.filename ?? path.join(__dirname, 'flush_task.js'),
      name: 'default',
      minThreads: options.workers,
      maxThreads: options.workers,
      // Threads live as long as the pool: each holds a connection and its staging tables.
      idleTimeout: 2 ** 31 - 1,
      maxQueue: options.workers * 4,
      // Between tasks a worker's event loop keeps running, so its idle connection notices a
      // closed socket instead of being frozen in Atomics.wait.
      atomics: 'async',
    });
  }

  get workers(): number {
    return this.pool.maxThreads;
  }

  run(task: FlushTask): Promise<FlushResult> {
    if (this.closed) return Promise.reject(new Error('flush pool is closed'));
    return this.pool.run(task);
  }

  /** Lets running tasks finish, then stops the threads (their connections close with them). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.close();
  }
}
