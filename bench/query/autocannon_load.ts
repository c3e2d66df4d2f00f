// bench:query's fallback load client: autocannon (Node), where wrk is not installed (CI).
//
// autocannon runs in child processes of its own (this file, forked), so its event loop and
// garbage collector are not those of the bench's ingest producer and answer sampler. It
// costs about as much CPU per request as the server does (docs/benchmarks.md). Latency is
// taken from autocannon's per-response times into an HDR histogram in microseconds (its own
// histogram has whole-millisecond resolution); with pipelining it counts from the write of
// the request into the pipeline, so it includes the wait behind the requests ahead of it.

import { ChildProcess, fork } from 'node:child_process';
import path from 'node:path';
import autocannon from 'autocannon';
import * as hdr from 'hdr-histogram-js';
import { LATENCY_US_MAX, LoadRequest, LoadResult, REQUEST_TIMEOUT_SECONDS } from './load_client';

/** One child's figures; histograms travel as compressed base64 and are merged here. */
interface ChildResult {
  readonly requests: number;
  readonly seconds: number;
  readonly non2xx: number;
  readonly errors: number;
  readonly timeouts: number;
  readonly bytes: number;
  readonly histogram: string;
  readonly cpuMs: number;
}

type ChildMessage = { readonly kind: 'measuring' } | { readonly kind: 'result'; readonly result: ChildResult } | { readonly kind: 'failed'; readonly message: string };

interface AutocannonRun {
  readonly result: autocannon.Result;
  readonly seconds: number;
  readonly cpuMs: number;
}

function newHistogram(): hdr.Histogram {
  return hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: LATENCY_US_MAX, numberOfSignificantValueDigits: 3 });
}

// Runs autocannon for `seconds` after its connections are set up. Each connection's first
// `pipelining` requests are written while the other connections are still being built, so
// their times count set-up rather than service: they are left out of the latency histogram.
function runAutocannon(request: LoadRequest, seconds: number, histogram?: hdr.Histogram): Promise<AutocannonRun> {
  // Every connection walks the same list from its start (autocannon copies the list into each
  // connection and, with pipelining, allows no per-connection list).
  const requests = request.paths.map((path) => ({ method: 'GET' as const, path }));
  const firstResponses = new Map<autocannon.Client, number>();
  let startedAt = 0;
  let cpuAtStart = process.cpuUsage();
  return new Promise((resolve, reject) => {
    const instance = autocannon({
      url: `http://127.0.0.1:${request.port}`, connections: request.connections, pipelining: request.pipelining,
      duration: seconds, timeout: REQUEST_TIMEOUT_SECONDS, requests,
    }, (error, result) => {
      if (error) return reject(error);
      const cpu = process.cpuUsage(cpuAtStart);
      resolve({ result, seconds: (performance.now() - startedAt) / 1000, cpuMs: (cpu.user + cpu.system) / 1000 });
    });
    instance.on('start', () => {
      startedAt = performance.now();
      cpuAtStart = process.cpuUsage();
      if (histogram !== undefined) process.send!({ kind: 'measuring' } satisfies ChildMessage);
    });
    if (histogram === undefined) return;
    instance.on('response', (client, _status, _bytes, latencyMs) => {
      const seen = firstResponses.get(client) ?? 0;
      if (seen < request.pipelining) firstResponses.set(client, seen + 1);
      else histogram.recordValue(Math.min(LATENCY_US_MAX, Math.max(1, Math.round(latencyMs * 1000))));
    });
  });
}

async function childRun(request: LoadRequest): Promise<ChildResult> {
  await runAutocannon(request, request.warmupSeconds);
  const histogram = newHistogram();
  const { result, seconds, cpuMs } = await runAutocannon(request, request.seconds, histogram);
  return {
    requests: result.requests.total, seconds, non2xx: result.non2xx, errors: result.errors, timeouts: result.timeouts,
    bytes: result.throughput.total, histogram: hdr.encodeIntoCompressedBase64(histogram), cpuMs,
  };
}

function childMain(): void {
  process.once('disconnect', () => process.exit(1));
  process.once('message', (request: LoadRequest) => {
    childRun(request).then(
      (result) => process.send!({ kind: 'result', result } satisfies ChildMessage, () => process.exit(0)),
      (error: unknown) => process.send!({ kind: 'failed', message: String((error as Error).stack ?? error) } satisfies ChildMessage, () => process.exit(1)),
    );
  });
}

/**
 * Warms up, then runs the timed part in `request.workers` child processes (connections
 * split between them); `onMeasuring` runs once all of them are past their warm-up.
 */
export async function autocannonLoad(request: LoadRequest, onMeasuring: () => void): Promise<LoadResult> {
  const processes = request.workers;
  const children: ChildProcess[] = [];
  let measuring = 0;
  try {
    const results = await Promise.all(Array.from({ length: processes }, () => new Promise<ChildResult>((resolve, reject) => {
      const child = fork(path.join(__dirname, 'autocannon_load.js'), [], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
      children.push(child);
      child.on('message', (message: ChildMessage) => {
        if (message.kind === 'measuring' && ++measuring === processes) onMeasuring();
        if (message.kind === 'result') resolve(message.result);
        if (message.kind === 'failed') reject(new Error(`autocannon load process failed: ${message.message}`));
      });
      child.once('exit', (code) => reject(new Error(`autocannon load process exited with ${code} before reporting`)));
      child.send({ ...request, connections: Math.max(1, Math.floor(request.connections / processes)) });
    })));
    return merge(results);
  } finally {
    for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  }
}

function merge(results: readonly ChildResult[]): LoadResult {
  const histogram = newHistogram();
  for (const result of results) histogram.add(hdr.decodeFromCompressedBase64(result.histogram));
  const sum = (pick: (r: ChildResult) => number): number => results.reduce((a, r) => a + pick(r), 0);
  return {
    client: 'autocannon', requests: sum((r) => r.requests), seconds: Math.max(...results.map((r) => r.seconds)),
    non2xx: sum((r) => r.non2xx), errors: sum((r) => r.errors), timeouts: sum((r) => r.timeouts), bytes: sum((r) => r.bytes),
    latencyUs: {
      p50: histogram.getValueAtPercentile(50), p90: histogram.getValueAtPercentile(90), p99: histogram.getValueAtPercentile(99),
      p99_9: histogram.getValueAtPercentile(99.9), max: histogram.maxValue,
    },
    latencyPer: 'request', cpuMs: sum((r) => r.cpuMs),
  };
}

if (require.main === module) childMain();
