// Reading V8 .cpuprofile files (what `node --cpu-prof` writes, one per thread): the sample
// tree folded into stacks with the time spent in each, the functions with the most self
// time, and which of Tally's threads a profile belongs to.
//
// A .cpuprofile is a tree of call-frame nodes plus a list of samples, each naming the node
// (the innermost frame) that was running when it was taken, and the time since the
// previous sample. The time of sample i is timeDeltas[i + 1], the gap until the next one.
// V8 samples on a wall-clock interval, so a thread blocked in Atomics.wait is sampled too,
// inside the JavaScript frame that called it: the engine's wait strategy shows how long the
// engine waited for commands, not CPU it burnt. Sample times are CLOCK_MONOTONIC
// microseconds, the clock of process.hrtime, so samples can be cut to a window measured
// in another process (the load, without start-up and shut-down).

import { readFileSync } from 'node:fs';
import path from 'node:path';

interface CallFrame {
  readonly functionName: string;
  readonly url: string;
  readonly lineNumber: number;
}

interface ProfileNode {
  readonly id: number;
  readonly callFrame: CallFrame;
  readonly children?: readonly number[];
}

interface CpuProfileJson {
  readonly nodes: readonly ProfileNode[];
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
  readonly startTime: number;
  readonly endTime: number;
}

export type ThreadKind = 'main' | 'engine' | 'flush' | 'worker';

/** A time window in CLOCK_MONOTONIC microseconds (process.hrtime.bigint() / 1000). */
export interface SampleWindow {
  readonly fromMicros: number;
  readonly toMicros: number;
}

export interface FoldedProfile {
  readonly file: string;
  readonly kind: ThreadKind;
  /** Node's thread id from the file name (0 is the main thread). */
  readonly threadId: number;
  /** "outer;…;inner" → microseconds spent with exactly that stack. */
  readonly stacks: ReadonlyMap<string, number>;
  /** Function label → microseconds it was the innermost frame (self time). */
  readonly selfMicros: ReadonlyMap<string, number>;
  readonly totalMicros: number;
}

/** Frames V8 adds itself: not JavaScript that ran. */
export const IDLE_FRAME = '(idle)';
export const GC_FRAME = '(garbage collector)';
export const PROGRAM_FRAME = '(program)';

const REPOSITORY = path.resolve(__dirname, '..', '..');

/** "name file:line", with the file shortened to what a reader recognises. */
export function frameLabel(frame: CallFrame): string {
  const name = frame.functionName === '' ? '(anonymous)' : frame.functionName;
  if (frame.url === '') return name;
  let file = frame.url.startsWith('file://') ? frame.url.slice('file://'.length) : frame.url;
  if (file.startsWith(REPOSITORY + '/')) file = file.slice(REPOSITORY.length + 1);
  return `${name} ${file}:${frame.lineNumber + 1}`;
}

/** CPU.<date>.<time>.<pid>.<threadId>.<sequence>.cpuprofile → threadId. */
export function threadIdOfFile(file: string): number {
  const parts = path.basename(file).split('.');
  return Number(parts[parts.length - 3]);
}

function classify(threadId: number, urls: ReadonlySet<string>): ThreadKind {
  if (threadId === 0) return 'main';
  const any = (fragment: string): boolean => [...urls].some((url) => url.includes(fragment));
  if (any('/engine/engine_worker.js')) return 'engine';
  if (any('/persist/flush_task.js') || any('/piscina/')) return 'flush';
  return 'worker';
}

// The stack of every node, built once from the parent links (the tree can be deep).
function stacksOfNodes(nodes: readonly ProfileNode[]): Map<number, string[]> {
  const parentOf = new Map<number, number>();
  for (const node of nodes) for (const child of node.children ?? []) parentOf.set(child, node.id);
  const byId = new Map(nodes.map((node) => [node.id, node]));
  const stacks = new Map<number, string[]>();
  const stackOf = (id: number): string[] => {
    const known = stacks.get(id);
    if (known !== undefined) return known;
    const node = byId.get(id)!;
    const parent = parentOf.get(id);
    const label = frameLabel(node.callFrame);
    const stack = parent === undefined ? [] : label === '(root)' ? [] : [...stackOf(parent), label];
    stacks.set(id, stack);
    return stack;
  };
  for (const node of nodes) stackOf(node.id);
  return stacks;
}

/** Reads one .cpuprofile and folds its samples, those taken within `window` if given. */
export function readCpuProfile(file: string, window?: SampleWindow): FoldedProfile {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfileJson;
  const nodeStacks = stacksOfNodes(profile.nodes);
  const stacks = new Map<string, number>();
  const selfMicros = new Map<string, number>();
  const meanDelta = (profile.endTime - profile.startTime) / Math.max(1, profile.samples.length);
  let totalMicros = 0;
  let takenAtMicros = profile.startTime;
  for (let index = 0; index < profile.samples.length; index++) {
    takenAtMicros += profile.timeDeltas[index] ?? 0;
    if (window !== undefined && (takenAtMicros < window.fromMicros || takenAtMicros > window.toMicros)) continue;
    const micros = profile.timeDeltas[index + 1] ?? meanDelta;
    const stack = nodeStacks.get(profile.samples[index]!)!;
    if (stack.length === 0) continue;
    const key = stack.join(';');
    stacks.set(key, (stacks.get(key) ?? 0) + micros);
    const self = stack[stack.length - 1]!;
    selfMicros.set(self, (selfMicros.get(self) ?? 0) + micros);
    totalMicros += micros;
  }
  const threadId = threadIdOfFile(file);
  const urls = new Set(profile.nodes.map((node) => node.callFrame.url));
  return { file, kind: classify(threadId, urls), threadId, stacks, selfMicros, totalMicros };
}

const WAIT_STRATEGY_FILE = 'dist/ringbuffer/wait_strategy.js';

/**
 * The stacks of the time a thread was busy: without (idle) and without waiting in a ring
 * buffer's wait strategy (the engine sleeping in Atomics.wait for commands, or for room in
 * the output ring), so the work itself fills the flame graph's width.
 */
export function busyStacks(profile: FoldedProfile): Map<string, number> {
  const busy = new Map<string, number>();
  for (const [stack, micros] of profile.stacks) {
    if (stack === IDLE_FRAME || stack.includes(WAIT_STRATEGY_FILE)) continue;
    busy.set(stack, micros);
  }
  return busy;
}

/**
 * Microseconds in stacks that wait in a ring buffer's wait strategy; with `via`, only those
 * that also pass through a frame containing it (for the engine: 'sequence_barrier.js' waits
 * for commands, 'claim ' for room in the output ring).
 */
export function waitingMicros(profile: FoldedProfile, via = ''): number {
  let micros = 0;
  for (const [stack, time] of profile.stacks) if (stack.includes(WAIT_STRATEGY_FILE) && stack.includes(via)) micros += time;
  return micros;
}

/** The `count` functions with the most self time, longest first. */
export function topSelf(profile: FoldedProfile, count: number): Array<{ label: string; micros: number; share: number }> {
  return [...profile.selfMicros]
    .sort((a, b) => b[1] - a[1])
    .slice(0, count)
    .map(([label, micros]) => ({ label, micros, share: micros / profile.totalMicros }));
}
