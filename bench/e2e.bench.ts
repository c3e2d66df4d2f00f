// bench:e2e — Tally end to end against the conventional design, in one run, on one machine.
//
//   node dist/bench/e2e.bench.js [--smoke] [--rates 1000,5000,10000,50000,100000,80%,50x,max]
//        [--baseline-rates 250,500,1000,80%,max] [--duration 20] [--accounts 100000]
//        [--window 50000] [--baseline-window 2000] [--systems baseline,tally]
//        [--baseline-concurrency 8] [--linger-ms 2] [--stall-timeout 60]
//
// Each system runs as a child process of its own (Tally: `tally start`, default settings; the
// baseline: bench/baseline/) with its own scratch database, commands topic and events topic
// of 8 partitions on the shared broker and PostgreSQL server. A load generator process
// produces the workload (e2e/e2e_workload.ts: deposits, withdrawals, freezes, unfreezes,
// transfers, trade settles over `accounts` users; the same commands for both systems) to the
// commands topic; a listener on this thread reads the result events, which each system
// publishes after its database COMMIT, and charges each to its command by tx_id.
//
// Per system: the preload (Tally: the preload commands through Kafka; the baseline: the same
// state bulk-loaded), a few seconds of unreported warm-up, then "max" — as fast as possible with at most `window` commands in
// flight for `duration` seconds: the sustained durable throughput — then each fixed offered
// rate for `duration` seconds (rates: e2e/offered_rate.ts; "80%" is a share of the system's
// own capacity, "50x" a multiple of the baseline's, which is why the baseline runs first). A
// fixed rate more than 1.5 times the system's capacity is skipped: its backlog would take
// minutes to drain and say nothing new.
//
// Latency under a fixed rate runs from each command's INTENDED send time (start + i / rate),
// so a stall is charged to every command it delayed (no coordinated omission); the
// uncorrected p99 (from the actual send) is printed beside it. Under "max" there is no
// schedule: latency runs from the actual send and is mostly the window's queueing.
//
// Written to bench/results/e2e-<time>/: an .hgrm per system and rate, latency.svg (latency by
// percentile, Tally and the baseline side by side) and summary.json. The last line printed is
// the one-line JSON summary.

import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { testKafkaBrokers, testPgUrl } from '../io/test_services';
import { CpuPids, cpuBetween, findBrokerPid, postgresPidsOf, sampleCpu } from './e2e/cpu_meter';
import { E2E_PARTITIONS, E2eWorkload } from './e2e/e2e_workload';
import { LoadGenerator } from './e2e/load_generator';
import { LoadPlan, LoadReport, nowUs } from './e2e/load_plan';
import { OfferedRate, offeredRateName, parseOfferedRates, resolveOfferedRate, runOrder } from './e2e/offered_rate';
import { PhaseRecord, ResultEventListener } from './e2e/result_event_listener';
import { PlotPanel, renderLatencyPlot } from './e2e/latency_plot';
import { RunResult, compactRunResult, describeRunResult, rateLabel, runResultOf, skippedRunResult } from './e2e/run_result';
import { SystemName, SystemUnderTest } from './e2e/system_under_test';
import { startTally } from './e2e/tally_under_test';
import { startBaseline } from './e2e/baseline_under_test';

interface Options {
  readonly smoke: boolean;
  readonly rates: readonly OfferedRate[];
  readonly baselineRates: readonly OfferedRate[];
  readonly durationS: number;
  readonly accounts: number;
  readonly window: number;
  readonly baselineWindow: number;
  readonly systems: readonly SystemName[];
  readonly baselineConcurrency: number;
  readonly lingerMs: number;
  /** A phase gives up on its remaining result events when none arrived for this long. */
  readonly stallTimeoutS: number;
}

const TARGETS = { durableCommandsPerSec: 150_000, p99MsAt50k: 50, baselineRatio: 50 } as const;
/** Bounds the commands of a max run (the send-time array is sized for it). */
const MAX_MODE_RATE_BOUND = 500_000;
const SKIP_ABOVE_CAPACITY = 1.5;
const SETTLE_MS = 1000;
const WARM_UP_S_MAX = 5;
const STALL_OUTPUT_CHARS = 6000;

function parseOptions(argv: readonly string[]): Options {
  const smoke = argv.includes('--smoke') || process.env['BENCH_SMOKE'] === '1';
  const flag = (name: string): string | undefined => {
    const index = argv.findIndex((arg) => arg === `--${name}` || arg.startsWith(`--${name}=`));
    if (index < 0) return undefined;
    return argv[index]!.includes('=') ? argv[index]!.slice(name.length + 3) : argv[index + 1];
  };
  const number = (name: string, fallback: number): number => {
    const value = Number(flag(name) ?? fallback);
    if (!Number.isFinite(value) || value <= 0) throw new Error(`--${name} must be a positive number`);
    return value;
  };
  const systems = (flag('systems') ?? 'baseline,tally').split(',');
  if (systems.some((name) => name !== 'tally' && name !== 'baseline')) throw new Error('--systems: a list of tally and baseline');
  return {
    smoke,
    rates: parseOfferedRates(flag('rates') ?? (smoke ? '500,max' : '1000,5000,10000,50000,100000,80%,50x,max')),
    baselineRates: parseOfferedRates(flag('baseline-rates') ?? (smoke ? '100,80%,max' : '250,500,1000,80%,max')),
    durationS: number('duration', smoke ? 3 : 20),
    accounts: Math.floor(number('accounts', smoke ? 400 : 100_000)),
    window: Math.floor(number('window', smoke ? 2000 : 50_000)),
    baselineWindow: Math.floor(number('baseline-window', smoke ? 200 : 2000)),
    // The baseline runs first: Tally's "50x" rate needs its capacity.
    systems: (['baseline', 'tally'] as const).filter((name) => systems.includes(name)),
    baselineConcurrency: Math.floor(number('baseline-concurrency', E2E_PARTITIONS)),
    lingerMs: number('linger-ms', 2),
    stallTimeoutS: number('stall-timeout', smoke ? 20 : 60),
  };
}

interface Shared {
  readonly options: Options;
  readonly workload: E2eWorkload;
  /** Send time of each command of the running phase, grown on demand. */
  sendTimes: Float64Array;
  /** Phase numbers are unique over the whole run, so a tx_id is never reused. */
  nextPhase: number;
  /** Measured by the baseline's max run, for Tally's "Nx" rates. */
  baselineCapacity: number | undefined;
}

/** One system under test with its load generator (bound to its commands topic) and its result-event listener. */
interface Harness {
  readonly system: SystemUnderTest;
  readonly generator: LoadGenerator;
  readonly listener: ResultEventListener;
  readonly window: number;
  /** Whose CPU is measured; PostgreSQL backends are found after the warm-up, once all are connected. */
  cpuPids: CpuPids;
}

function sendTimesFor(shared: Shared, count: number): Float64Array {
  if (shared.sendTimes.length < count) shared.sendTimes = new Float64Array(count);
  return shared.sendTimes;
}

/**
 * Sends one phase and waits for its result events. A phase that gets no result event for
 * stallTimeoutS, while sending or after, is given up: sending stops and it is marked stalled.
 * Throws if the system's process died.
 */
async function runPhase(shared: Shared, harness: Harness, plan: LoadPlan): Promise<{ record: PhaseRecord; sent: number; stalled: boolean }> {
  const { system, listener, generator } = harness;
  const sendTimes = sendTimesFor(shared, plan.count);
  const record = listener.expect(plan, sendTimes);
  let report: LoadReport | undefined;
  let failure: Error | undefined;
  generator.run(plan, sendTimes, () => record.received).then((done) => (report = done), (error: Error) => (failure = error));
  let lastProgressUs = nowUs();
  let lastReceived = record.received;
  let stalled = false;
  while (report === undefined || record.received < report.sent) {
    if (failure !== undefined) throw failure;
    if (system.child.exitCode !== null || system.child.signalCode !== null) throw new Error(`${system.name} exited during phase ${plan.phase}:\n${system.outputTail()}`);
    if (record.received !== lastReceived || nowUs() < plan.startUs) {
      lastReceived = record.received;
      lastProgressUs = nowUs();
    } else if (!stalled && nowUs() - lastProgressUs > shared.options.stallTimeoutS * 1e6) {
      console.error(`${system.name}: phase ${plan.phase} stalled at ${record.received} result events; giving up on the rest. ` +
        `Its output ends with:\n${system.outputTail().slice(-STALL_OUTPUT_CHARS)}`);
      stalled = true;
      generator.abort(plan.phase);
    }
    if (stalled && report !== undefined) break;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  if (report!.queueFullWaits > 0) console.error(`${system.name}: the load generator waited ${report!.queueFullWaits} times for a full librdkafka queue in phase ${plan.phase}`);
  return { record, sent: report!.sent, stalled };
}

async function preload(shared: Shared, harness: Harness): Promise<void> {
  const system = harness.system;
  if (!system.preloadByCommands) return;
  const startedUs = nowUs();
  const count = shared.workload.preloadCount;
  const plan: LoadPlan = { phase: shared.nextPhase++, mode: 'preload', rate: 0, count, durationUs: 0, window: harness.window, startUs: nowUs() + 100_000 };
  const { record, stalled } = await runPhase(shared, harness, plan);
  if (stalled) throw new Error(`${system.name} stopped answering during the preload, after ${record.received} of ${count} commands`);
  if (record.accepted !== count) throw new Error(`${system.name}: preload accepted ${record.accepted} of ${count} commands (${JSON.stringify(Object.fromEntries(record.rejectReasons))})`);
  console.log(`${system.name}: preloaded ${shared.workload.accounts} users × 2 currencies with ${count} commands in ${((nowUs() - startedUs) / 1e6).toFixed(1)} s`);
}

/** A short max run, not reported, so that neither system is measured while its JIT and connections are cold. */
async function warmUp(shared: Shared, harness: Harness): Promise<void> {
  const durationS = Math.min(WARM_UP_S_MAX, shared.options.durationS / 2);
  const plan: LoadPlan = { ...planFor(shared, harness, 0), durationUs: durationS * 1e6 };
  const { record, stalled } = await runPhase(shared, harness, plan);
  if (stalled) throw new Error(`${harness.system.name} stopped answering during the warm-up, after ${record.received} commands`);
  console.log(`${harness.system.name}: warmed up with ${record.received} commands in ${durationS} s`);
}

function planFor(shared: Shared, harness: Harness, rate: number): LoadPlan {
  const durationUs = shared.options.durationS * 1e6;
  const phase = shared.nextPhase++;
  const startUs = nowUs() + 200_000;
  if (rate === 0) return { phase, mode: 'window', rate: 0, count: Math.ceil(MAX_MODE_RATE_BOUND * shared.options.durationS), durationUs, window: harness.window, startUs };
  return { phase, mode: 'fixed', rate, count: Math.round(rate * shared.options.durationS), durationUs, window: 0, startUs };
}

async function runRate(shared: Shared, harness: Harness, offered: string, rate: number): Promise<{ result: RunResult; record: PhaseRecord; stalled: boolean }> {
  const plan = planFor(shared, harness, rate);
  const before = sampleCpu(harness.cpuPids);
  const { record, sent, stalled } = await runPhase(shared, harness, plan);
  const cost = cpuBetween(before, sampleCpu(harness.cpuPids), record.received);
  return { result: runResultOf(harness.system.name, offered, record, { sent, cpuMsPerThousand: cost.perThousand, machineBusyPercent: cost.machineBusyPercent }), record, stalled };
}

async function startHarness(shared: Shared, name: SystemName, resultsDir: string): Promise<Harness> {
  const { options } = shared;
  const logPath = path.join(resultsDir, `${name}.log`);
  const system = name === 'tally' ? await startTally(logPath) : await startBaseline(logPath, options.accounts, options.baselineConcurrency);
  try {
    const generator = await LoadGenerator.start({ brokers: testKafkaBrokers, topic: system.commandsTopic, accounts: options.accounts, lingerMs: options.lingerMs });
    const listener = new ResultEventListener(testKafkaBrokers, system.eventsTopic, E2E_PARTITIONS);
    await listener.connect();
    const cpuPids: CpuPids = { system: system.child.pid!, generator: generator.pid, broker: findBrokerPid(), postgres: [] };
    return { system, generator, listener, window: name === 'tally' ? options.window : options.baselineWindow, cpuPids };
  } catch (error) {
    await system.stop();
    throw error;
  }
}

/** Stops everything of the harness; a step that fails is logged and the others still run (so scratch databases are dropped). */
async function stopHarness(harness: Harness): Promise<void> {
  const name = harness.system.name;
  const attempt = async (what: string, step: () => Promise<void>): Promise<void> => {
    try {
      await step();
    } catch (error) {
      console.error(`${name}: could not ${what}: ${(error as Error).message}`);
    }
  };
  await attempt('stop the load generator', () => harness.generator.stop());
  await attempt('disconnect the listener', () => harness.listener.disconnect());
  if (harness.listener.unmatched > 0 || harness.listener.unknownSendTimes > 0) {
    console.error(`${name}: ${harness.listener.unmatched} result events matched no command, ${harness.listener.unknownSendTimes} arrived before their send time was known`);
  }
  await attempt('stop the system and drop its scratch database', () => harness.system.stop());
}

interface SystemRun {
  readonly results: RunResult[];
  readonly curves: Array<{ label: string; record: PhaseRecord }>;
  /** Why the system's run ended early, if it did. */
  error?: string;
}

async function runSystem(shared: Shared, name: SystemName, resultsDir: string): Promise<SystemRun> {
  const harness = await startHarness(shared, name, resultsDir);
  const run: SystemRun = { results: [], curves: [] };
  try {
    await preload(shared, harness);
    await warmUp(shared, harness);
    harness.cpuPids = { ...harness.cpuPids, postgres: await postgresPidsOf(testPgUrl, harness.system.databaseName) };
    let capacity: number | undefined;
    let stalledPhase: number | undefined;
    for (const offered of runOrder(name === 'tally' ? shared.options.rates : shared.options.baselineRates)) {
      const resolved = resolveOfferedRate(offered, capacity, shared.baselineCapacity);
      const label = offeredRateName(offered);
      let skip = typeof resolved === 'string' ? resolved : undefined;
      if (stalledPhase !== undefined) skip = `${name} stopped answering in phase ${stalledPhase}`;
      if (typeof resolved === 'number' && capacity !== undefined && resolved > SKIP_ABOVE_CAPACITY * capacity) {
        skip = `above ${SKIP_ABOVE_CAPACITY}× the measured capacity of ${Math.round(capacity)}/s`;
      }
      if (skip !== undefined) {
        run.results.push(skippedRunResult(name, label, typeof resolved === 'number' ? resolved : 0, skip));
        console.log(describeRunResult(run.results[run.results.length - 1]!));
        continue;
      }
      const { result, record, stalled } = await runRate(shared, harness, label, resolved as number);
      if (stalled) stalledPhase = record.plan.phase;
      if (offered.kind === 'max') capacity = result.durablePerSec;
      run.results.push(result);
      run.curves.push({ label: offered.kind === 'max' ? `max (window ${harness.window})` : rateLabel(result), record });
      const fileLabel = offered.kind === 'max' || offered.kind === 'fixed' ? label : `${label.replace('%', 'pct')}-${result.rate}`;
      writeFileSync(path.join(resultsDir, `${name}-${fileLabel}.hgrm`), record.latencyUs.outputPercentileDistribution(5, 1000));
      console.log(describeRunResult(result));
      await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
    }
    if (name === 'baseline') shared.baselineCapacity = capacity;
  } catch (error) {
    run.error = String((error as Error).message ?? error);
    console.error(`${name}: ${run.error}`);
  } finally {
    await stopHarness(harness);
  }
  return run;
}

/** The targets, each with its value and whether it was met (null: not measured in this run). */
function targets(tally: readonly RunResult[], baseline: readonly RunResult[]): Record<string, unknown> {
  const measured = (results: readonly RunResult[], test: (r: RunResult) => boolean): RunResult | undefined => results.find((r) => r.skipped === undefined && test(r));
  const tallyMax = measured(tally, (r) => r.offered === 'max');
  const baselineMax = measured(baseline, (r) => r.offered === 'max');
  const at50k = measured(tally, (r) => r.offered === '50000');
  const atBaselineMultiple = measured(tally, (r) => /^[\d.]+x$/.test(r.offered));
  // The baseline's p99 to beat: at its highest fixed rate that it sustained.
  const baselineReference = baseline.filter((r) => r.skipped === undefined && r.rate > 0 && r.sustained).sort((a, b) => b.rate - a.rate)[0];
  const ratio = tallyMax !== undefined && baselineMax !== undefined && baselineMax.durablePerSec > 0 ? Number((tallyMax.durablePerSec / baselineMax.durablePerSec).toFixed(1)) : null;
  return {
    durableCommandsPerSec: {
      target: TARGETS.durableCommandsPerSec, value: tallyMax?.durablePerSec ?? null,
      met: tallyMax === undefined ? null : tallyMax.sustained && tallyMax.durablePerSec >= TARGETS.durableCommandsPerSec,
    },
    p99MsAt50k: {
      target: TARGETS.p99MsAt50k, value: at50k?.latencyMs.p99 ?? null, sustained: at50k?.sustained ?? null,
      met: at50k === undefined ? null : at50k.sustained && at50k.latencyMs.p99 <= TARGETS.p99MsAt50k,
    },
    baselineRatio: {
      target: TARGETS.baselineRatio, value: ratio,
      tallyP99Ms: atBaselineMultiple?.latencyMs.p99 ?? null, tallyRate: atBaselineMultiple?.rate ?? null, tallySustained: atBaselineMultiple?.sustained ?? null,
      baselineP99Ms: baselineReference?.latencyMs.p99 ?? null, baselineRate: baselineReference?.rate ?? null,
      met: ratio === null ? null : ratio >= TARGETS.baselineRatio && atBaselineMultiple !== undefined && baselineReference !== undefined &&
        atBaselineMultiple.sustained && atBaselineMultiple.latencyMs.p99 <= baselineReference.latencyMs.p99,
    },
  };
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  const root = path.resolve(__dirname, '..', '..');
  const resultsDir = path.join(root, 'bench', 'results', `e2e-${new Date().toISOString().replace(/[:.]/g, '-')}${options.smoke ? '-smoke' : ''}`);
  mkdirSync(resultsDir, { recursive: true });
  const loadBefore = os.loadavg().map((l) => Number(l.toFixed(2)));
  console.log(`bench:e2e on ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'CPU'}, load average ${loadBefore.join(' ')}; ${options.accounts} users, ` +
    `${E2E_PARTITIONS} partitions, ${options.durationS} s per rate, window ${options.window} (baseline ${options.baselineWindow}); results in ${resultsDir}`);
  const shared: Shared = { options, workload: new E2eWorkload(options.accounts), sendTimes: new Float64Array(0), nextPhase: 1, baselineCapacity: undefined };
  const runs: Record<SystemName, SystemRun> = { tally: { results: [], curves: [] }, baseline: { results: [], curves: [] } };
  for (const name of options.systems) runs[name] = await runSystem(shared, name, resultsDir);
  const panels: PlotPanel[] = (['tally', 'baseline'] as const).filter((name) => options.systems.includes(name)).map((name) => ({
    title: name === 'tally' ? 'Tally' : 'Baseline: kafkajs + a PG transaction per command',
    curves: runs[name].curves.map(({ label, record }) => ({ label, histogram: record.latencyUs })),
  }));
  const caption = `produce → durable result event; fixed rates measured from the intended send time (coordinated omission corrected); ` +
    `${os.cpus().length} cores shared by broker, PostgreSQL, system under test and load generator`;
  writeFileSync(path.join(resultsDir, 'latency.svg'), renderLatencyPlot(panels, caption));
  const tallyMax = runs.tally.results.find((r) => r.offered === 'max' && r.skipped === undefined);
  const baselineMax = runs.baseline.results.find((r) => r.offered === 'max' && r.skipped === undefined);
  const summary = {
    bench: 'e2e', smoke: options.smoke, cores: os.cpus().length, loadAverageBefore: loadBefore, loadAverageAfter: os.loadavg().map((l) => Number(l.toFixed(2))),
    accounts: options.accounts, partitions: E2E_PARTITIONS, durationS: options.durationS, window: options.window, baselineWindow: options.baselineWindow,
    tallyDurablePerSec: tallyMax?.durablePerSec ?? null, baselineDurablePerSec: baselineMax?.durablePerSec ?? null,
    ratio: tallyMax !== undefined && baselineMax !== undefined && baselineMax.durablePerSec > 0 ? Number((tallyMax.durablePerSec / baselineMax.durablePerSec).toFixed(1)) : null,
    targets: targets(runs.tally.results, runs.baseline.results),
    errors: Object.fromEntries(options.systems.filter((name) => runs[name].error !== undefined).map((name) => [name, runs[name].error])),
    tally: runs.tally.results.map(compactRunResult), baseline: runs.baseline.results.map(compactRunResult), resultsDir: path.relative(root, resultsDir),
  };
  writeFileSync(path.join(resultsDir, 'summary.json'), JSON.stringify(summary, null, 2) + '\n');
  console.log(`Tally ${summary.tallyDurablePerSec ?? '–'} vs baseline ${summary.baselineDurablePerSec ?? '–'} durable commands/s: ratio ${summary.ratio ?? '–'}; ` +
    `targets ${JSON.stringify(summary.targets)}`);
  console.log(JSON.stringify(summary));
  // A system that failed fails the run (the smoke test in CI relies on it); its figures are printed above all the same.
  if (Object.keys(summary.errors).length > 0) process.exitCode = 1;
}

main().then(() => process.exit(process.exitCode ?? 0), (error: unknown) => {
  console.error(error);
  process.exit(1);
});
