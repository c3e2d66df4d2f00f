// Every benchmark runs in its smoke mode in CI so none of them can rot: it must exit 0 and
// end with a one-line JSON summary naming itself. Figures are printed, never asserted.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';

const BENCHES = ['ring', 'engine', 'decode', 'persist', 'recovery', 'ingest', 'events', 'fanout', 'query', 'e2e', 'cross_partition'];

for (const name of BENCHES) {
  test(`bench:${name} --smoke runs and ends with its JSON summary`, { timeout: 180_000 }, () => {
    const file = path.join(__dirname, `${name}.bench.js`);
    assert.ok(existsSync(file), `${file} exists`);
    const run = spawnSync(process.execPath, [file, '--smoke'], { encoding: 'utf8', timeout: 170_000, env: { ...process.env, BENCH_SMOKE: '1' } });
    assert.equal(run.status, 0, `exit status 0\n${run.stderr.slice(-2000)}`);
    const lines = run.stdout.trim().split('\n');
    const summary = JSON.parse(lines[lines.length - 1]!) as { bench?: string };
    assert.equal(summary.bench, name);
    console.log(`bench:${name} smoke summary: ${lines[lines.length - 1]}`);
  });
}
