// Test support: runs `tally start` as a real child process (the same binary operators run),
// so failure tests can kill -9, SIGSTOP and restart it.

import { ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';

export interface TallyProcess {
  readonly child: ChildProcess;
  readonly output: string[];
  readonly exited: Promise<number | null>;
}

/**
 * The node flags `npm run start`, the systemd unit and the Dockerfile run the service with, so
 * tests and benchmarks measure the same process; TALLY_NODE_ARGS adds more (a profiling
 * session's --cpu-prof, for example: NODE_OPTIONS does not allow it).
 */
export const SERVICE_NODE_FLAGS = ['--max-semi-space-size=8'];

/**
 * Every child still running. A test that fails or times out while waiting on one (its
 * `finally` never reached) must not leave a `tally start` consuming Kafka and holding leases
 * behind it: they are killed when the test file's process exits (the runner forces that exit
 * at the end, scripts/run-tests.js).
 */
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

export function spawnTally(env: Record<string, string>): TallyProcess {
  const cli = path.join(__dirname, 'cli.js');
  const extra = (env.TALLY_NODE_ARGS ?? process.env.TALLY_NODE_ARGS ?? '').split(/\s+/).filter((flag) => flag !== '');
  const child = spawn(process.execPath, [...SERVICE_NODE_FLAGS, ...extra, cli, 'start'], {
    env: { ...process.env, TALLY_LOG_LEVEL: 'info', TALLY_HTTP_PORT: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  const keep = (chunk: Buffer): void => {
    output.push(chunk.toString());
    if (output.length > 2000) output.splice(0, 1000);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  running.add(child);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => {
    running.delete(child);
    resolve(code);
  }));
  return { child, output, exited };
}

export async function killHard(tally: TallyProcess): Promise<void> {
  tally.child.kill('SIGKILL');
  await tally.exited;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export async function waitFor(what: string, timeoutMs: number, check: () => Promise<boolean> | boolean, tally?: TallyProcess): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) {
      const tail = tally === undefined ? '' : `\n--- tally output (tail) ---\n${tally.output.join('').slice(-4000)}`;
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${tail}`);
    }
    await sleep(50);
  }
}
