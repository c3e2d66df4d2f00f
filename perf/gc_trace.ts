// Summary of a `node --trace-gc` log. V8 prints one line per collection:
//   [pid:0xISOLATE]  1234 ms: Scavenge 12.1 (14.0) -> 11.5 (15.0) MB, 0.85 / 0.00 ms  (…) allocation failure;
// The isolate address tells the threads apart (each worker thread has its own isolate and
// heap); the first number after "MB," is the time the isolate's JavaScript was paused, and
// the "ms:" before it counts from the isolate's creation. The first isolate in the log is
// the main thread's: it collects while loading modules, before any worker exists. Which
// worker is which the trace does not say; the CPU profiles do (docs/profiling.md).

import { readFileSync } from 'node:fs';

export interface IsolateGcSummary {
  readonly isolate: string;
  readonly thread: 'main' | 'worker';
  /** Collections by kind ("Scavenge", "Mark-Compact", …) → count. */
  readonly counts: Record<string, number>;
  readonly pauseTotalMs: number;
  readonly pauseMaxMs: number;
  /** Heap size right after the last collection seen, and the largest after any (MB). */
  readonly heapLastMb: number;
  readonly heapMaxMb: number;
  readonly firstAtMs: number;
  readonly lastAtMs: number;
}

const GC_LINE = /^\[\d+:(0x[0-9a-f]+)\]\s+(\d+) ms: (.+?) [\d.]+ \([\d.]+\) -> ([\d.]+) \([\d.]+\) MB, (?:pooled: [\d.]+ MB, )?([\d.]+) \/ [\d.]+ ms/;

interface Accumulator {
  counts: Record<string, number>;
  pauseTotalMs: number;
  pauseMaxMs: number;
  heapLastMb: number;
  heapMaxMb: number;
  firstAtMs: number;
  lastAtMs: number;
}

/** Per isolate, in the order the isolates first collected. Lines that are not GC lines are skipped. */
export function summarizeGcTrace(text: string): IsolateGcSummary[] {
  const byIsolate = new Map<string, Accumulator>();
  for (const line of text.split('\n')) {
    const match = GC_LINE.exec(line);
    if (match === null) continue;
    const [, isolate, atMs, kind, heapAfterMb, pauseMs] = match as unknown as [string, string, string, string, string, string];
    let entry = byIsolate.get(isolate);
    if (entry === undefined) {
      entry = { counts: {}, pauseTotalMs: 0, pauseMaxMs: 0, heapLastMb: 0, heapMaxMb: 0, firstAtMs: Number(atMs), lastAtMs: 0 };
      byIsolate.set(isolate, entry);
    }
    entry.counts[kind] = (entry.counts[kind] ?? 0) + 1;
    entry.pauseTotalMs += Number(pauseMs);
    entry.pauseMaxMs = Math.max(entry.pauseMaxMs, Number(pauseMs));
    entry.heapLastMb = Number(heapAfterMb);
    entry.heapMaxMb = Math.max(entry.heapMaxMb, Number(heapAfterMb));
    entry.lastAtMs = Number(atMs);
  }
  return [...byIsolate].map(([isolate, entry], index) => ({
    isolate, thread: index === 0 ? 'main' as const : 'worker' as const, ...entry, pauseTotalMs: round2(entry.pauseTotalMs),
  }));
}

export function readGcTrace(file: string): IsolateGcSummary[] {
  return summarizeGcTrace(readFileSync(file, 'utf8'));
}

function round2(value: number): number {
  return Math.round(value * 100) / 100;
}
