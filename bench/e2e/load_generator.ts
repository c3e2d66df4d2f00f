// The benchmark's handle on the load generator process (load_generator_process.ts): starts
// it, hands it one phase at a time, keeps the send time of every command it announces, and
// tells it how many result events have been seen so it can keep its window full.

import { ChildProcess, fork } from 'node:child_process';
import path from 'node:path';
import type { LoadGeneratorInit } from './load_generator_process';
import type { LoadPlan, LoadReport } from './load_plan';

const COMPLETION_REPORT_MS = 5;

export class LoadGenerator {
  private waiting: { resolve: (report: LoadReport) => void; reject: (error: Error) => void } | undefined;
  /** `sendTimes[index]`: when command `index` of the running phase was actually sent (µs, shared clock). */
  private sendTimes: Float64Array = new Float64Array(0);

  private constructor(private readonly child: ChildProcess) {
    child.on('message', (message: { report?: LoadReport; error?: string; chunk?: [number, number, number, number] }) => {
      if (message.chunk !== undefined) {
        const [, first, count, sendUs] = message.chunk;
        this.sendTimes.fill(sendUs, first, Math.min(this.sendTimes.length, first + count));
        return;
      }
      const waiting = this.waiting;
      this.waiting = undefined;
      if (message.report !== undefined) waiting?.resolve(message.report);
      else if (message.error !== undefined) waiting?.reject(new Error(`load generator: ${message.error}`));
    });
    child.on('exit', (code) => this.waiting?.reject(new Error(`load generator exited (${code})`)));
  }

  static start(init: LoadGeneratorInit): Promise<LoadGenerator> {
    const child = fork(path.join(__dirname, 'load_generator_process.js'), [], { env: { ...process.env, E2E_LOAD_GENERATOR: JSON.stringify(init) }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    return new Promise((resolve, reject) => {
      const onMessage = (message: { ready?: true; error?: string }): void => {
        child.off('message', onMessage);
        if (message.ready === true) resolve(new LoadGenerator(child));
        else reject(new Error(`load generator: ${message.error}`));
      };
      child.on('message', onMessage);
      child.once('error', reject);
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  /**
   * Runs one phase; resolves when every command of it is handed to the broker. The send time
   * of command i goes to sendTimes[i] (sized for plan.count, zeroed here); `completed()`
   * counts the phase's result events so far.
   */
  run(plan: LoadPlan, sendTimes: Float64Array, completed: () => number): Promise<LoadReport> {
    if (this.waiting !== undefined) throw new Error('load generator: one phase at a time');
    if (sendTimes.length < plan.count) throw new Error(`load generator: ${sendTimes.length} send times for ${plan.count} commands`);
    sendTimes.fill(0, 0, plan.count);
    this.sendTimes = sendTimes;
    let reported = -1;
    const timer = setInterval(() => {
      const count = completed();
      if (count !== reported) this.child.send({ completed: [plan.phase, count] });
      reported = count;
    }, COMPLETION_REPORT_MS);
    return new Promise<LoadReport>((resolve, reject) => {
      this.waiting = { resolve, reject };
      this.child.send({ plan });
    }).finally(() => clearInterval(timer));
  }

  /** Stops sending the running phase `phase`; its run() resolves with what was sent. */
  abort(phase: number): void {
    this.child.send({ abort: phase });
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.send({ stop: true });
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  }
}
