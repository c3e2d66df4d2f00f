#!/usr/bin/env node
// Runs every compiled test (dist/**/*.test.js) with node's test runner. Node 20's runner
// takes no globs, so the files are listed here. Extra arguments filter by path substring:
// `node scripts/run-tests.js ringbuffer engine/amount`.
'use strict';
const { readdirSync } = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const root = path.join(__dirname, '..', 'dist');
const filters = process.argv.slice(2);

function collect(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return entry.name === 'node_modules' ? [] : collect(full);
    return entry.name.endsWith('.test.js') ? [full] : [];
  });
}

const files = collect(root)
  .filter((file) => filters.length === 0 || filters.some((f) => file.includes(f)))
  .sort();
if (files.length === 0) {
  console.error(`no test files found under ${root}${filters.length ? ` matching ${filters.join(', ')}` : ''}; run npm run build first`);
  process.exit(1);
}
// One file at a time: some tests stop and start shared services (PostgreSQL) or measure a
// quiet machine's behaviour. Every test is bounded (--test-timeout, for those that set no
// timeout of their own; the longest take about a minute), and --test-force-exit makes a test
// that timed out waiting on a child process or a connection fail the run instead of keeping
// it open for ever (the children of io/tally_process.ts are killed as the file's process exits).
const result = spawnSync(process.execPath, [
  '--test', '--test-concurrency=1', '--test-timeout=600000', '--test-force-exit', '--test-reporter=spec', ...files,
], { stdio: 'inherit' });
process.exit(result.status === null ? 1 : result.status);
