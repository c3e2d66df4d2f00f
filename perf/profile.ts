// `npm run profile`: profiling sessions of the running service under load
// (perf/service_load.ts), written to perf/results/<time>-<mode>/ (gitignored); see
// docs/profiling.md for how to read what they write.
//
//   node dist/perf/profile.js                 CPU profile of every thread, flame graphs as SVG
//   node dist/perf/profile.js --gc            GC trace (--trace-gc) and its summary per isolate
//   node dist/perf/profile.js --compare FLAGS runs without and with the node FLAGS, in turns,
//                                             and compares durable throughput and GC pauses
//   node dist/perf/profile.js --compare-env K=V[,K=V]  the same with service settings, for
//                                             example TALLY_ENGINE_CPU=1 (pinned or not)
//   node dist/perf/profile.js --engine-bench  the engine alone (bench/engine.bench.ts) on one
//                                             thread, CPU profile and GC trace together
// Options: --commands N (backlog size, default 1 000 000; --smoke: 50 000), --rounds N
// (--compare, default 3), --node-flags FLAGS (added to every run), --engine-cpu N
// (TALLY_ENGINE_CPU of the service). The last line printed is a one-line JSON summary.

import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { FoldedProfile, GC_FRAME, IDLE_FRAME, SampleWindow, busyStacks, readCpuProfile, topSelf, waitingMicros } from './cpu_profile';
import { renderFlameGraph } from './flame_graph_svg';
import { IsolateGcSummary, readGcTrace } from './gc_trace';
import { Backlog, deleteBacklog, prepareBacklog, runServiceUnderLoad } from './service_load';

interface Options {
  readonly mode: 'cpu' | 'gc' | 'compare' | 'engine-bench';
  readonly commands: number;
  readonly rounds: number;
  readonly nodeFlags: string[];
  readonly compareFlags: string[];
  /** Environment of the candidate runs only (--compare-env). */
  readonly compareEnv: Record<string, string>;
  readonly extraEnv: Record<string, string>;
  readonly smoke: boolean;
}

const TOP_FRAMES = 15;
const RESULTS = path.join(__dirname, '..', '..', 'perf', 'results');

function parseOptions(argv: readonly string[]): Options {
  const value = (name: string): string | undefined => {
    const index = argv.indexOf(name);
    return index < 0 ? undefined : argv[index + 1];
  };
  const flags = (text: string | undefined): string[] => (text ?? '').split(/\s+/).filter((flag) => flag !== '');
  const compare = value('--compare') ?? (argv.includes('--compare-env') ? '' : undefined);
  const compareEnv = Object.fromEntries((value('--compare-env') ?? '').split(',').filter((pair) => pair.includes('=')).map((pair) => pair.split('=', 2) as [string, string]));
  const engineCpu = value('--engine-cpu');
  return {
    mode: compare !== undefined ? 'compare' : argv.includes('--engine-bench') ? 'engine-bench' : argv.includes('--gc') ? 'gc' : 'cpu',
    commands: Number(value('--commands') ?? (argv.includes('--smoke') ? 50_000 : 1_000_000)),
    rounds: Number(value('--rounds') ?? 3),
    nodeFlags: flags(value('--node-flags')),
    compareFlags: flags(compare),
    compareEnv,
    extraEnv: engineCpu === undefined ? {} : { TALLY_ENGINE_CPU: engineCpu },
    smoke: argv.includes('--smoke'),
  };
}

function resultsFolder(mode: string): string {
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\..*$/, '').replace('T', '-');
  const folder = path.join(RESULTS, `${stamp}-${mode}`);
  mkdirSync(folder, { recursive: true });
  rmSync(path.join(RESULTS, 'latest'), { force: true });
  symlinkSync(path.basename(folder), path.join(RESULTS, 'latest'));
  return folder;
}

function describeThread(profile: FoldedProfile): string {
  return profile.kind === 'flush' || profile.kind === 'worker' ? `${profile.kind}-${profile.threadId}` : profile.kind;
}

function percent(micros: number, totalMicros: number): string {
  return `${((micros / Math.max(1, totalMicros)) * 100).toFixed(1)}%`;
}

function shareOf(profile: FoldedProfile, frame: string): string {
  return percent(profile.selfMicros.get(frame) ?? 0, profile.totalMicros);
}

// One block of summary.txt: the thread's busiest functions by self time.
function threadSummary(profile: FoldedProfile): string {
  const waiting = profile.kind !== 'engine' ? percent(waitingMicros(profile), profile.totalMicros)
    : `${percent(waitingMicros(profile), profile.totalMicros)} (for commands ${percent(waitingMicros(profile, 'sequence_barrier.js'), profile.totalMicros)}, for room in the output ring ${percent(waitingMicros(profile, 'claim '), profile.totalMicros)})`;
  const lines = [`== ${describeThread(profile)} (thread ${profile.threadId}): ${(profile.totalMicros / 1e6).toFixed(2)} s sampled, idle ${shareOf(profile, IDLE_FRAME)}, waiting in a ring ${waiting}, GC ${shareOf(profile, GC_FRAME)}`];
  for (const top of topSelf(profile, TOP_FRAMES)) lines.push(`${(top.micros / 1000).toFixed(0).padStart(8)} ms ${(top.share * 100).toFixed(1).padStart(5)}%  ${top.label}`);
  return lines.join('\n');
}

async function profileCpu(options: Options, backlog: Backlog, folder: string): Promise<Record<string, unknown>> {
  const profiles = path.join(folder, 'cpuprofiles');
  const run = await runServiceUnderLoad({
    backlog, logFile: path.join(folder, 'service.log'), extraEnv: options.extraEnv,
    nodeFlags: [...options.nodeFlags, '--cpu-prof', `--cpu-prof-dir=${profiles}`],
  });
  const headline = `${backlog.commands} commands durable in ${run.durableSeconds.toFixed(2)} s = ${run.commandsPerSec} commands/s (under the profiler); samples from that span only`;
  const about = `under load (start-up and shut-down left out); ${backlog.commands} commands at ${run.commandsPerSec}/s`;
  const threads = renderProfiles(profiles, folder, headline, about, run.window);
  return { mode: 'cpu', commands: backlog.commands, commandsPerSec: run.commandsPerSec, threads };
}

// Flame graphs (all samples, and busy time only) and summary.txt for every .cpuprofile.
function renderProfiles(profiles: string, folder: string, headline: string, about: string, window?: SampleWindow): Record<string, unknown> {
  const blocks: string[] = [headline];
  const threads: Record<string, unknown> = {};
  for (const file of readdirSync(profiles).filter((name) => name.endsWith('.cpuprofile')).sort()) {
    const profile = readCpuProfile(path.join(profiles, file), window);
    const name = describeThread(profile);
    const subtitle = `${(profile.totalMicros / 1e6).toFixed(2)} s sampled ${about}; ${file}`;
    writeFileSync(path.join(folder, `flamegraph-${name}.svg`), renderFlameGraph(profile.stacks, { title: `Tally ${name} thread`, subtitle }));
    const busy = busyStacks(profile);
    const busySubtitle = `busy time only (idle and ring waits left out): ${([...busy.values()].reduce((a, b) => a + b, 0) / 1e6).toFixed(2)} s; ${file}`;
    writeFileSync(path.join(folder, `flamegraph-${name}-busy.svg`), renderFlameGraph(busy, { title: `Tally ${name} thread, busy`, subtitle: busySubtitle }));
    blocks.push(threadSummary(profile));
    threads[name] = {
      idle: shareOf(profile, IDLE_FRAME), waiting: percent(waitingMicros(profile), profile.totalMicros), gc: shareOf(profile, GC_FRAME),
      top: topSelf(profile, 3).map((top) => `${top.label} ${(top.share * 100).toFixed(1)}%`),
    };
  }
  writeFileSync(path.join(folder, 'summary.txt'), blocks.join('\n\n') + '\n');
  console.log(blocks.join('\n\n'));
  return threads;
}

// The engine alone, as bench/engine.bench.ts drives it: no Kafka, no PostgreSQL, no waiting.
function profileEngineBench(options: Options, folder: string): Record<string, unknown> {
  const profiles = path.join(folder, 'cpuprofiles');
  const bench = path.join(__dirname, '..', 'bench', 'engine.bench.js');
  const args = [...options.nodeFlags, '--cpu-prof', `--cpu-prof-dir=${profiles}`, '--trace-gc', bench, ...(options.smoke ? ['--smoke'] : [])];
  const run = spawnSync(process.execPath, args, { encoding: 'utf8', env: { ...process.env, BENCH_DECODE: '0' }, maxBuffer: 256 << 20 });
  writeFileSync(path.join(folder, 'bench.log'), run.stdout + run.stderr);
  if (run.status !== 0) throw new Error(`engine bench failed with ${run.status}; see ${path.join(folder, 'bench.log')}`);
  const summaryLine = run.stdout.trim().split('\n').pop()!;
  const benchSummary = JSON.parse(summaryLine) as { commandsPerSec: number };
  const gc = readGcTrace(path.join(folder, 'bench.log'));
  const headline = `engine bench: ${benchSummary.commandsPerSec} commands/s on one thread (under the profiler; set-up included in the samples)\n${gcLines(gc).join('\n')}`;
  const threads = renderProfiles(profiles, folder, headline, 'engine bench, set-up included');
  return { mode: 'engine-bench', bench: benchSummary, threads };
}

function gcLines(summaries: readonly IsolateGcSummary[]): string[] {
  return summaries.map((s) => `${s.thread.padEnd(6)} isolate ${s.isolate}: ${JSON.stringify(s.counts)}, pauses ${s.pauseTotalMs} ms in all, longest ${s.pauseMaxMs} ms, heap after GC up to ${s.heapMaxMb} MB (first GC at ${s.firstAtMs} ms)`);
}

async function traceGc(options: Options, backlog: Backlog, folder: string, flags: string[], label: string, env: Record<string, string> = {}): Promise<{ commandsPerSec: number; cpuMicrosPerCommand: number; gc: IsolateGcSummary[]; lines: string[] }> {
  const logFile = path.join(folder, `service-${label}.log`);
  const run = await runServiceUnderLoad({ backlog, logFile, extraEnv: { ...options.extraEnv, ...env }, nodeFlags: [...flags, '--trace-gc'] });
  const gc = readGcTrace(logFile);
  const settings = Object.entries(env).map(([key, setting]) => `${key}=${setting}`).join(' ');
  const lines = [`[${label}] node ${flags.join(' ') || '(no flags)'}${settings === '' ? '' : ` with ${settings}`}: ${run.commandsPerSec} commands/s durable, ${run.cpuMicrosPerCommand} µs CPU per command`, ...gcLines(gc)];
  console.log(lines.join('\n'));
  return { commandsPerSec: run.commandsPerSec, cpuMicrosPerCommand: run.cpuMicrosPerCommand, gc, lines };
}

async function profileGc(options: Options, backlog: Backlog, folder: string): Promise<Record<string, unknown>> {
  const result = await traceGc(options, backlog, folder, options.nodeFlags, 'gc');
  writeFileSync(path.join(folder, 'summary.txt'), result.lines.join('\n') + '\n');
  return { mode: 'gc', commands: backlog.commands, commandsPerSec: result.commandsPerSec, isolates: result.gc };
}

const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
const pauseTotal = (gc: readonly IsolateGcSummary[]): number => Math.round(gc.reduce((sum, s) => sum + s.pauseTotalMs, 0));

// Baseline and candidate take turns, so drift on a shared machine hits both alike.
async function compareFlags(options: Options, backlog: Backlog, folder: string): Promise<Record<string, unknown>> {
  type Run = { commandsPerSec: number; cpuMicrosPerCommand: number; mainPauseMs: number; pauseMs: number };
  const runs = { baseline: [] as Run[], candidate: [] as Run[] };
  const lines: string[] = [];
  for (let round = 0; round < options.rounds; round++) {
    for (const which of ['baseline', 'candidate'] as const) {
      const flags = which === 'baseline' ? options.nodeFlags : [...options.nodeFlags, ...options.compareFlags];
      const result = await traceGc(options, backlog, folder, flags, `${which}-${round + 1}`, which === 'baseline' ? {} : options.compareEnv);
      const mainPauseMs = Math.round(result.gc.find((isolate) => isolate.thread === 'main')?.pauseTotalMs ?? 0);
      runs[which].push({ commandsPerSec: result.commandsPerSec, cpuMicrosPerCommand: result.cpuMicrosPerCommand, mainPauseMs, pauseMs: pauseTotal(result.gc) });
      lines.push(...result.lines);
    }
  }
  const summary = (which: keyof typeof runs): Record<string, number> => ({
    commandsPerSecMedian: median(runs[which].map((r) => r.commandsPerSec)), cpuMicrosPerCommandMedian: median(runs[which].map((r) => r.cpuMicrosPerCommand)),
    mainGcPauseMsMedian: median(runs[which].map((r) => r.mainPauseMs)), gcPauseMsMedian: median(runs[which].map((r) => r.pauseMs)),
  });
  const candidate = [...options.compareFlags, ...Object.entries(options.compareEnv).map(([key, setting]) => `${key}=${setting}`)].join(' ');
  const verdict = `baseline ${JSON.stringify(summary('baseline'))} vs ${candidate} ${JSON.stringify(summary('candidate'))}`;
  writeFileSync(path.join(folder, 'summary.txt'), [...lines, '', verdict].join('\n') + '\n');
  console.log(verdict);
  return { mode: 'compare', commands: backlog.commands, candidateSettings: candidate, baseline: runs.baseline, candidate: runs.candidate, medians: { baseline: summary('baseline'), candidate: summary('candidate') } };
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  const folder = resultsFolder(options.mode);
  if (options.mode === 'engine-bench') {
    console.log(JSON.stringify({ profile: options.mode, folder: path.relative(process.cwd(), folder), ...profileEngineBench(options, folder) }));
    return;
  }
  console.log(`profile (${options.mode}): filling a backlog of ${options.commands} commands; results in ${folder}`);
  const backlog = await prepareBacklog(options.commands);
  try {
    const session = options.mode === 'cpu' ? profileCpu : options.mode === 'gc' ? profileGc : compareFlags;
    const summary = await session(options, backlog, folder);
    console.log(JSON.stringify({ profile: options.mode, folder: path.relative(process.cwd(), folder), ...summary }));
  } finally {
    await deleteBacklog(backlog);
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(`profile failed: ${(error as Error).stack ?? String(error)}`);
    process.exit(1);
  },
);
