// CPU affinity of the engine thread (Linux). The engine is one busy thread; giving it a core
// of its own keeps its caches warm and keeps the Kafka client, the batcher, the flush
// workers and V8's helper threads from being scheduled on top of it.
//
// Node has no API for the affinity of one thread, so this module finds the OS thread id in
// /proc/thread-self ("PID/task/TID") and runs taskset(1) from util-linux, which calls
// sched_setaffinity(2) for that thread. The order matters:
//   1. the main thread moves every thread of the process off the engine's core
//      (`taskset -a -p -c <others> <pid>`) before the engine worker starts; threads created
//      later inherit the mask of the thread that creates them, so they stay off it too;
//   2. the engine worker, once running, pins its own thread to the core
//      (`taskset -p -c <core> <tid>`).
// Pinning is an optimisation, not a correctness matter: when it cannot be done (not Linux,
// no taskset, a core that does not exist or that the process may not use) the caller gets
// a reason to log as a warning and the engine runs unpinned.

import { execFileSync } from 'node:child_process';
import { readFileSync, readlinkSync } from 'node:fs';

/** taskset is looked up on PATH; tests pass a path that does not exist to see the warning. */
export const TASKSET_COMMAND = 'taskset';
const TASKSET_TIMEOUT_MS = 5_000;

export type AffinityResult =
  | { readonly ok: true; readonly cpus: readonly number[] }
  | { readonly ok: false; readonly reason: string };

/** "0-2,5" → [0, 1, 2, 5], the format of Cpus_allowed_list and taskset -c. */
export function parseCpuList(text: string): number[] {
  const cpus: number[] = [];
  for (const part of text.trim().split(',')) {
    if (part === '') continue;
    const [first, last] = part.split('-').map(Number) as [number, number | undefined];
    for (let cpu = first; cpu <= (last ?? first); cpu++) cpus.push(cpu);
  }
  return cpus;
}

/** The CPUs a thread may run on, from /proc/<pid>/task/<tid>/status (or /proc/self/status). */
export function allowedCpus(statusPath = '/proc/self/status'): number[] {
  const match = /^Cpus_allowed_list:\s*(\S+)$/m.exec(readFileSync(statusPath, 'utf8'));
  if (match === null) throw new Error(`${statusPath} has no Cpus_allowed_list line`);
  return parseCpuList(match[1]!);
}

/** The OS thread id (TID) of the calling thread: /proc/thread-self links to "PID/task/TID". */
export function currentThreadId(): number {
  const link = readlinkSync('/proc/thread-self');
  const match = /^(\d+)\/task\/(\d+)$/.exec(link);
  if (match === null) throw new Error(`unexpected /proc/thread-self link "${link}"`);
  return Number(match[2]);
}

function runTaskset(taskset: string, args: readonly string[]): string | undefined {
  try {
    execFileSync(taskset, args, { stdio: ['ignore', 'ignore', 'pipe'], timeout: TASKSET_TIMEOUT_MS });
    return undefined;
  } catch (error) {
    const failure = error as NodeJS.ErrnoException & { stderr?: Buffer };
    if (failure.code === 'ENOENT') return `${taskset} not found (install util-linux, or leave TALLY_ENGINE_CPU unset)`;
    const stderr = failure.stderr?.toString().trim();
    return `${taskset} ${args.join(' ')} failed: ${stderr !== undefined && stderr !== '' ? stderr : failure.message}`;
  }
}

/**
 * Step 1, on the main thread before the engine worker starts: checks that `core` is one
 * the process may use and moves every thread of the process onto the other allowed cores.
 * On success `cpus` are those other cores.
 */
export function reserveCpu(core: number, taskset = TASKSET_COMMAND): AffinityResult {
  if (process.platform !== 'linux') return { ok: false, reason: `CPU pinning needs Linux; this is ${process.platform}` };
  const allowed = allowedCpus();
  if (!allowed.includes(core)) {
    return { ok: false, reason: `CPU core ${core} does not exist or this process may not use it (allowed: ${allowed.join(',')})` };
  }
  const others = allowed.filter((cpu) => cpu !== core);
  if (others.length === 0) return { ok: false, reason: `CPU core ${core} is the only core this process may use; pinning would leave nothing for the other threads` };
  const failure = runTaskset(taskset, ['-a', '-p', '-c', others.join(','), String(process.pid)]);
  return failure === undefined ? { ok: true, cpus: others } : { ok: false, reason: failure };
}

/** Step 2, on the engine thread itself: pins the calling thread (only it) to `core`. */
export function pinCurrentThread(core: number, taskset = TASKSET_COMMAND): AffinityResult {
  const failure = runTaskset(taskset, ['-p', '-c', String(core), String(currentThreadId())]);
  return failure === undefined ? { ok: true, cpus: [core] } : { ok: false, reason: failure };
}

/** Undoes step 1 when step 2 failed, so an unpinned engine does not leave a core idle. */
export function restoreProcessCpus(cpus: readonly number[], taskset = TASKSET_COMMAND): AffinityResult {
  const failure = runTaskset(taskset, ['-a', '-p', '-c', cpus.join(','), String(process.pid)]);
  return failure === undefined ? { ok: true, cpus } : { ok: false, reason: failure };
}
