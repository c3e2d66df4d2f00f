// A system the end-to-end benchmark drives: Tally or the baseline, each a child process of
// its own with its own scratch database, commands topic and events topic on the shared
// broker and PostgreSQL server.

import type { ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';

export type SystemName = 'tally' | 'baseline';

export interface SystemUnderTest {
  readonly name: SystemName;
  readonly commandsTopic: string;
  readonly eventsTopic: string;
  readonly child: ChildProcess;
  /** Its scratch database on the shared PostgreSQL server. */
  readonly databaseName: string;
  /** True when the workload's preload commands must be sent through Kafka (Tally); false when the state was bulk-loaded. */
  readonly preloadByCommands: boolean;
  /** The last lines the process printed, for error messages. */
  outputTail(): string;
  /** Stops the process (SIGTERM, then SIGKILL after a grace period) and drops its scratch database. */
  stop(): Promise<void>;
}

/** Resolves when `output()` contains `marker`; rejects if the process exits first or after `timeoutMs`. */
export async function waitForOutput(child: ChildProcess, output: () => string, marker: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!output().includes(marker)) {
    if (child.exitCode !== null) throw new Error(`process exited (${child.exitCode}) before printing "${marker}":\n${output().slice(-4000)}`);
    if (Date.now() > deadline) throw new Error(`no "${marker}" within ${timeoutMs} ms:\n${output().slice(-4000)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** SIGTERM, then SIGKILL if the process has not exited within `graceMs`. */
export async function terminate(child: ChildProcess, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

/** Appends everything the process prints to `logPath` (the results folder keeps it). */
export function keepLog(child: ChildProcess, logPath: string): void {
  const log = createWriteStream(logPath, { flags: 'a' });
  child.stdout!.on('data', (chunk: Buffer) => log.write(chunk));
  child.stderr!.on('data', (chunk: Buffer) => log.write(chunk));
  child.once('exit', () => log.end());
}
