import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { busyStacks, readCpuProfile, topSelf, waitingMicros } from './cpu_profile';
import { renderFlameGraph } from './flame_graph_svg';

const frame = (functionName: string, url = '', lineNumber = -1) => ({ functionName, scriptId: '0', url, lineNumber, columnNumber: 0 });
const ENGINE = `file://${path.resolve(__dirname, '..', 'engine', 'engine_worker.js')}`;
const WAIT = `file://${path.resolve(__dirname, '..', 'ringbuffer', 'wait_strategy.js')}`;

// A small engine-thread profile: run → apply (self) and run → waitFor, plus (idle).
const PROFILE = {
  nodes: [
    { id: 1, callFrame: frame('(root)'), children: [2, 5] },
    { id: 2, callFrame: frame('run', ENGINE, 115), children: [3, 4] },
    { id: 3, callFrame: frame('apply', ENGINE, 40) },
    { id: 4, callFrame: frame('waitFor', WAIT, 94) },
    { id: 5, callFrame: frame('(idle)') },
  ],
  startTime: 1_000,
  endTime: 1_600,
  samples: [3, 3, 4, 5, 3, 2],
  timeDeltas: [0, 100, 100, 100, 100, 100],
};

function writeProfile(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'tally-cpuprofile-'));
  const file = path.join(dir, 'CPU.20260101.000000.4242.1.002.cpuprofile');
  writeFileSync(file, JSON.stringify(PROFILE));
  return file;
}

test('a .cpuprofile folds into stacks and self times, and its thread is recognised', () => {
  const profile = readCpuProfile(writeProfile());
  assert.equal(profile.kind, 'engine');
  assert.equal(profile.threadId, 1);
  assert.equal(profile.totalMicros, 600);
  assert.equal(profile.stacks.get('run dist/engine/engine_worker.js:116;apply dist/engine/engine_worker.js:41'), 300);
  assert.equal(waitingMicros(profile), 100);
  assert.deepEqual(topSelf(profile, 1).map((top) => [top.label, top.micros]), [['apply dist/engine/engine_worker.js:41', 300]]);
  assert.deepEqual([...busyStacks(profile).values()].reduce((a, b) => a + b, 0), 400);
});

test('samples outside the window are left out', () => {
  // Sample times: 1000, 1100, 1200, 1300, 1400, 1500.
  const profile = readCpuProfile(writeProfile(), { fromMicros: 1_150, toMicros: 1_350 });
  assert.equal(profile.totalMicros, 200);
  assert.deepEqual([...profile.stacks.keys()].sort(), ['(idle)', 'run dist/engine/engine_worker.js:116;waitFor dist/ringbuffer/wait_strategy.js:95']);
});

test('the flame graph is an SVG with one box per frame and its time in the tooltip', () => {
  const svg = renderFlameGraph(readCpuProfile(writeProfile()).stacks, { title: 'engine <test>', subtitle: 's' });
  assert.match(svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
  assert.match(svg, /<title>apply dist\/engine\/engine_worker.js:41 — 0.3 ms, 50.00%<\/title>/);
  assert.match(svg, /engine &lt;test&gt;/);
  assert.equal(svg.match(/<rect x=/g)!.length, 5);
});
