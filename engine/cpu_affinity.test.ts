// Pinning of the real engine worker thread, checked from the outside through the kernel's
// own view (/proc/<pid>/task/<tid>/status), not through what the module says it did.
// Every test starts its engine in a child process: pinning moves every thread of the
// process, and the test runner's own process must not be left on one core.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { allowedCpus, parseCpuList } from './cpu_affinity';

const linux = process.platform === 'linux' && existsSync('/proc/thread-self');
const cpus = linux ? allowedCpus() : [];
const canPin = linux && cpus.length >= 2;

// Runs in a child: starts a real engine thread with the given options, reads the masks of
// the engine thread, the main thread and every other thread (V8 and libuv helpers, a worker
// started after the engine) from /proc, stops the engine, prints JSON.
const CHILD = `
const { readdirSync } = require('node:fs');
const { Worker } = require('node:worker_threads');
const { EngineThread } = require(${JSON.stringify(require.resolve('./engine_thread'))});
const { allowedCpus } = require(${JSON.stringify(require.resolve('./cpu_affinity'))});
(async () => {
  const options = JSON.parse(process.argv[1]);
  const engine = await EngineThread.start({ commandSlotCount: 64, outputSlotCount: 256, balanceCapacity: 1024, dedupWindow: 1024, ...options });
  const { threadId } = engine.affinity;
  const engineCpus = allowedCpus('/proc/' + process.pid + '/task/' + threadId + '/status');
  const mainCpus = allowedCpus('/proc/' + process.pid + '/task/' + process.pid + '/status');
  const later = new Worker('setInterval(() => {}, 1000)', { eval: true });
  await new Promise((resolve) => later.once('online', resolve));
  const otherCpus = readdirSync('/proc/self/task').filter((tid) => Number(tid) !== threadId)
    .map((tid) => allowedCpus('/proc/self/task/' + tid + '/status'));
  await later.terminate();
  await engine.assign(0);
  await engine.stop();
  process.stdout.write(JSON.stringify({ pid: process.pid, affinity: engine.affinity, engineCpus, mainCpus, otherCpus }));
})().catch((error) => { console.error(error); process.exit(1); });
`;

interface ChildReport {
  pid: number;
  affinity: { threadId: number; pinnedCpu?: number; otherCpus?: number[]; warning?: string };
  engineCpus: number[];
  mainCpus: number[];
  /** The mask of every thread of the process but the engine's. */
  otherCpus: number[][];
}

function startEngineInChild(options: Record<string, unknown>): ChildReport {
  const output = execFileSync(process.execPath, ['-e', CHILD, JSON.stringify(options)], { encoding: 'utf8', timeout: 60_000 });
  return JSON.parse(output) as ChildReport;
}

test('parseCpuList reads the kernel list format', () => {
  assert.deepEqual(parseCpuList('0-2,5,7-8\n'), [0, 1, 2, 5, 7, 8]);
  assert.deepEqual(parseCpuList('1'), [1]);
});

test('the engine thread pins itself to its core and the main thread stays off it', { skip: !canPin && 'needs Linux with 2 or more usable cores' }, () => {
  const core = cpus[cpus.length - 1]!;
  const report = startEngineInChild({ engineCpu: core });
  assert.equal(report.affinity.warning, undefined);
  assert.equal(report.affinity.pinnedCpu, core);
  assert.notEqual(report.affinity.threadId, report.pid, 'the engine runs on its own thread, not the main thread');
  assert.deepEqual(report.engineCpus, [core]);
  assert.ok(!report.mainCpus.includes(core), `main thread allowed on ${report.mainCpus.join(',')}, which includes the engine's core ${core}`);
  assert.deepEqual(report.mainCpus, cpus.filter((cpu) => cpu !== core));
  assert.ok(report.otherCpus.length >= 5, `only ${report.otherCpus.length} other threads seen`);
  for (const mask of report.otherCpus) assert.deepEqual(mask, cpus.filter((cpu) => cpu !== core));
});

test('without an engine CPU nothing is pinned', { skip: !linux && 'needs Linux' }, () => {
  const report = startEngineInChild({});
  assert.equal(report.affinity.pinnedCpu, undefined);
  assert.equal(report.affinity.warning, undefined);
  assert.deepEqual(report.engineCpus, cpus);
  assert.deepEqual(report.mainCpus, cpus);
});

test('a core that does not exist is a warning, and the engine runs unpinned', { skip: !linux && 'needs Linux' }, () => {
  const report = startEngineInChild({ engineCpu: 4095 });
  assert.match(report.affinity.warning ?? '', /CPU core 4095 does not exist or this process may not use it/);
  assert.equal(report.affinity.pinnedCpu, undefined);
  assert.deepEqual(report.engineCpus, cpus);
  assert.deepEqual(report.mainCpus, cpus);
});

test('a missing taskset is a warning naming it, and the engine runs unpinned', { skip: !canPin && 'needs Linux with 2 or more usable cores' }, () => {
  const report = startEngineInChild({ engineCpu: cpus[0], taskset: '/nonexistent/taskset' });
  assert.match(report.affinity.warning ?? '', /\/nonexistent\/taskset not found \(install util-linux/);
  assert.deepEqual(report.engineCpus, cpus);
  assert.deepEqual(report.mainCpus, cpus);
});
