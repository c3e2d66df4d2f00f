// Every benchmark runs in its smoke mode in CI so none of them can rot: it must exit 0, end
// with a one-line JSON summary naming itself and report some work done (a positive rate).
// Figures are printed, never asserted against targets.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';

const BENCHES = ['ring', 'engine', 'decode', 'persist', 'recovery', 'ingest', 'events', 'fanout', 'query', 'e2e', 'cross_partition'];

for (const name of BENCHES) {
  test(`bench:${name} --smoke runs and ends with its JSON summary, reporting work done`, { timeout: 180_000 }, () => {
    const file = path.join(__dirname, `${name}.bench.js`);
    assert.ok(existsSync(file), `${file} exists`);
    const run = spawnSync(process.execPath, [file, '--smoke'], { encoding: 'utf8', timeout: 170_000, env: { ...process.env, BENCH_SMOKE: '1' } });
    assert.equal(run.status, 0, `exit status 0\n${run.stderr.slice(-2000)}`);
    const lines = run.stdout.trim().split('\n');
    const summary = JSON.parse(lines[lines.length - 1]!) as { bench?: string; checksums?: string[] };
    assert.equal(summary.bench, name);
    assert.ok(rates(summary).some((rate) => rate > 0), `the summary reports work done: ${lines[lines.length - 1]}`);
    // The same commands as binary and as JSON reach the ring with the same payload hashes.
    if (name === 'ingest') assert.equal(new Set(summary.checksums).size, 1, `binary and JSON checksums agree: ${JSON.stringify(summary.checksums)}`);
    console.log(`bench:${name} smoke summary: ${lines[lines.length - 1]}`);
  });
}

/** Every number in the summary (at any depth) under a key naming a rate or a cost per item. */
function rates(value: unknown, key = ''): number[] {
  // Targets (targetCommandsPerSec, …) are constants, not measurements.
  if (typeof value === 'number') return /(PerSec|PerSecond|NsPerCommand)$/.test(key) && !key.startsWith('target') && Number.isFinite(value) ? [value] : [];
  if (Array.isArray(value)) return value.flatMap((item) => rates(item, key));
  if (value !== null && typeof value === 'object') return Object.entries(value).flatMap(([name, item]) => rates(item, name));
  return [];
}
