// bench:query's load client when wrk is installed: wrk 4.1 (C, an epoll loop per thread),
// several times cheaper per request than autocannon, so on a 2-core machine the server
// rather than the client gets most of the CPU. Install it with `apt-get install -y wrk`
// (Debian/Ubuntu package wrk, 4.1.0).
//
// wrk is driven by a Lua script written here to a temporary directory. It walks the seeded
// paths in order, wrapping around (all connections of a thread take turns on one walk),
// `pipelining` requests per write; its done() callback prints one JSON line with the
// counts and latency percentiles, which is parsed here.
//
// What wrk's latency measures: one value per write, from the write of a batch of
// `pipelining` requests to the last answer of that batch (wrk records it when the batch's
// pending count reaches zero). Without pipelining that is the request's latency; with
// pipelining it is the batch's, which is what the slowest request of the batch saw. Its
// histogram has 1 µs resolution. wrk adds synthetic values to that histogram before
// done() sees it (a coordinated-omission correction that is wrong for pipelined batches);
// the script undoes it and reports the values as recorded (see done() below). Like
// autocannon's, these are then closed-loop latencies: a connection writes its next batch
// only once the last one is answered, so they are not corrected for coordinated omission.
//
// Non-2xx: wrk counts answers with a status above 399; the server sends no 1xx or 3xx.
// CPU: wrk's user + system time, read from this process's children's times
// (/proc/self/stat cutime + cstime), which the kernel adds once wrk has exited and been
// reaped; no other child of the bench exits while wrk runs.

import { spawn } from 'node:child_process';
import { accessSync, constants, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LoadRequest, LoadResult, REQUEST_TIMEOUT_SECONDS } from './load_client';

/** How long wrk may take beyond its duration (start-up, connection set-up, report). */
const WRK_EXIT_GRACE_MS = 30_000;
const PATH_PATTERN = /^\/[A-Za-z0-9/_.-]+$/;

/** The wrk executable on PATH, or undefined. */
export function findWrk(): string | undefined {
  for (const directory of (process.env['PATH'] ?? '').split(path.delimiter)) {
    if (directory === '') continue;
    const candidate = path.join(directory, 'wrk');
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // Not in this directory.
    }
  }
  return undefined;
}

interface WrkReport {
  readonly requests: number;
  readonly durationUs: number;
  readonly bytes: number;
  readonly errors: { readonly connect: number; readonly read: number; readonly write: number; readonly status: number; readonly timeout: number };
  /** Latency values as recorded (one per batch), after undoing wrk's correction. */
  readonly latencyRecords: number;
  /** False when undoing the correction gave a negative count: the histogram's layout is not wrk 4.1's. */
  readonly latencyRecovered: boolean;
  readonly latencyUs: { readonly p50: number; readonly p90: number; readonly p99: number; readonly p99_9: number; readonly max: number };
}

/**
 * The Lua script: the paths as a table literal, batches of `pipelining` requests built once
 * per thread in init() (enough batches that together they walk the list a whole number of
 * times), request() handing them out in turn, done() printing the JSON report.
 */
export function wrkScript(paths: readonly string[], pipelining: number, threads: number, connections: number): string {
  for (const p of paths) if (!PATH_PATTERN.test(p)) throw new Error(`bench:query: path ${JSON.stringify(p)} cannot be written into the wrk script`);
  const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));
  const batchCount = paths.length / gcd(paths.length, pipelining);
  return `-- Written by bench:query (bench/query/wrk_load.ts) for one wrk run.
local paths = {
${paths.map((p) => `  "${p}",`).join('\n')}
}
local pipelining = ${pipelining}
local batchCount = ${batchCount}
local threads = ${threads}
local connections = ${connections}
local batches = {}
local nextBatch = 0
local threadsSetUp = 0

function setup(thread)
  thread:set("threadIndex", threadsSetUp)
  threadsSetUp = threadsSetUp + 1
end

function init(args)
  for b = 0, batchCount - 1 do
    local parts = {}
    for j = 0, pipelining - 1 do
      parts[j + 1] = wrk.format("GET", paths[((b * pipelining + j) % #paths) + 1])
    end
    batches[b + 1] = table.concat(parts)
  end
  -- Threads start their walks at different places.
  nextBatch = math.floor((threadIndex or 0) * batchCount / threads)
end

function request()
  nextBatch = nextBatch % batchCount + 1
  return batches[nextBatch]
end

-- wrk "corrects" its latency histogram for coordinated omission before done() runs
-- (stats_correct: every value n >= 2e adds a synthetic value at n - e, n - 2e, ... while
-- above e, with e = duration / (requests / connections)). With pipelining e is a request's
-- share of a connection's time, not a batch's, so the synthetic values swamp the real ones
-- (and fall below min, where wrk's percentile() cannot find them and answers 0). The
-- counts as recorded are recovered exactly: the corrected count at n is the recorded count
-- at n plus the corrected count at n + e, for n > e. The histogram is read through LuaJIT's
-- FFI in the layout of wrk 4.1's stats.h: count, limit, min, max, then data[limit].
function done(summary, latency, requests)
  local ffi = require("ffi")
  local words = ffi.cast("uint64_t **", latency)[0]
  local max = tonumber(words[3])
  local interval = math.floor(summary.duration / math.max(1, math.floor(summary.requests / connections)))
  local function recordedAt(n)
    local count = tonumber(words[4 + n])
    if n > interval and n + interval <= max then count = count - tonumber(words[4 + n + interval]) end
    return count
  end
  local total = 0
  local negative = false
  for n = 0, max do
    local count = recordedAt(n)
    if count < 0 then negative = true end
    total = total + count
  end
  local wanted = { 50, 90, 99, 99.9 }
  local found = {}
  local seen = 0
  local next = 1
  for n = 0, max do
    seen = seen + recordedAt(n)
    while next <= #wanted and seen >= math.max(1, math.ceil(wanted[next] / 100 * total)) do
      found[next] = n
      next = next + 1
    end
  end
  for i = next, #wanted do found[i] = max end
  local e = summary.errors
  io.write(string.format('{"requests":%d,"durationUs":%d,"bytes":%d,"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latencyRecords":%d,"latencyRecovered":%s,"latencyUs":{"p50":%d,"p90":%d,"p99":%d,"p99_9":%d,"max":%d}}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    total, tostring(not negative), found[1], found[2], found[3], found[4], max))
end
`;
}

/** Clock ticks per second of /proc times (USER_HZ, 100 on Linux). */
const TICKS_PER_SEC = 100;

function childrenCpuMs(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[13]) + Number(fields[14])) * 1000) / TICKS_PER_SEC;
}

/** Runs wrk once for `seconds` and returns its report, or rejects with its output. */
function runWrk(wrk: string, script: string, request: LoadRequest, seconds: number): Promise<WrkReport> {
  const args = [
    '-t', String(request.workers), '-c', String(request.connections), '-d', `${seconds}s`, '--timeout', `${REQUEST_TIMEOUT_SECONDS}s`,
    '-s', script, `http://127.0.0.1:${request.port}`,
  ];
  return new Promise((resolve, reject) => {
    const child = spawn(wrk, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    const timer = setTimeout(() => child.kill('SIGKILL'), seconds * 1000 + WRK_EXIT_GRACE_MS);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      const line = output.trim().split('\n').reverse().find((l) => l.startsWith('{'));
      if (code !== 0 || line === undefined) return reject(new Error(`wrk ${args.join(' ')} exited with ${code ?? signal}:\n${output.slice(-4000)}`));
      resolve(JSON.parse(line) as WrkReport);
    });
  });
}

/** Warms up, then runs the timed part; `onMeasuring` runs when the timed wrk starts. */
export async function wrkLoad(wrk: string, request: LoadRequest, onMeasuring: () => void): Promise<LoadResult> {
  if (request.connections < request.workers) throw new Error(`wrk needs at least one connection per thread (${request.connections} connections, ${request.workers} threads)`);
  const directory = mkdtempSync(path.join(os.tmpdir(), 'tally-bench-query-'));
  try {
    const script = path.join(directory, 'walk.lua');
    writeFileSync(script, wrkScript(request.paths, request.pipelining, request.workers, request.connections));
    await runWrk(wrk, script, request, request.warmupSeconds);
    const cpuBefore = childrenCpuMs();
    onMeasuring();
    const report = await runWrk(wrk, script, request, request.seconds);
    if (!report.latencyRecovered) throw new Error('wrk: its latency histogram could not be read as recorded (not wrk 4.1\'s layout?); use --client autocannon');
    const e = report.errors;
    return {
      client: 'wrk', requests: report.requests, seconds: report.durationUs / 1e6, non2xx: e.status, errors: e.connect + e.read + e.write,
      timeouts: e.timeout, bytes: report.bytes, latencyUs: report.latencyUs, latencyPer: request.pipelining > 1 ? 'batch' : 'request',
      cpuMs: childrenCpuMs() - cpuBefore,
    };
  } finally {
    rmSync(directory, { recursive: true, force: true });
  }
}
