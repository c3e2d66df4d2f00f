// The figures of one system at one offered rate, computed from the phase's record, and how
// they are printed: a line for people, a compact object for the JSON summary.

import type { CpuMs } from './cpu_meter';
import type { LoadPlan } from './load_plan';
import type { PhaseRecord } from './result_event_listener';
import type { SystemName } from './system_under_test';

/** A fixed rate counts as sustained when its durable throughput reached this share of it. */
const SUSTAINED_FRACTION = 0.95;

export interface LatencyMs {
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly p999: number;
  readonly max: number;
}

export interface RunResult {
  readonly system: SystemName;
  /** As given: "10000", "max", "80%", "50x". */
  readonly offered: string;
  /** Commands per second of the fixed schedule; 0 for max. */
  readonly rate: number;
  readonly skipped?: string;
  readonly sent: number;
  readonly received: number;
  readonly missing: number;
  readonly accepted: number;
  readonly rejectReasons: Readonly<Record<string, number>>;
  /** Fixed: result events / (last event − schedule start). Max: events per second after warm-up while the window was full. */
  readonly durablePerSec: number;
  readonly sustained: boolean;
  readonly latencyMs: LatencyMs;
  /** Fixed rates: p99 from the actual send, which hides coordinated omission; null for max. */
  readonly uncorrectedP99Ms: number | null;
  /** CPU ms per 1000 commands: the system's process, its PostgreSQL processes, the broker, the load generator, the listener. */
  readonly cpuMsPerThousand: CpuMs;
  /** Share of the machine's CPU time that was busy during the phase (every process, ours or not). */
  readonly machineBusyPercent: number;
}

export interface PhaseCost {
  readonly sent: number;
  readonly cpuMsPerThousand: CpuMs;
  readonly machineBusyPercent: number;
}

const NO_CPU: CpuMs = { system: 0, postgres: 0, broker: 0, generator: 0, listener: 0 };

const round = (value: number, digits = 2): number => Number(value.toFixed(digits));

function durablePerSec(record: PhaseRecord, plan: LoadPlan): number {
  if (plan.mode === 'fixed') return record.received === 0 ? 0 : record.received / ((record.lastEventUs - plan.startUs) / 1e6);
  const durationS = Math.floor(plan.durationUs / 1e6);
  const warmS = durationS >= 8 ? 2 : 1;
  let events = 0;
  for (let second = warmS; second < durationS; second++) events += record.perSecond[second] ?? 0;
  return events / Math.max(1, durationS - warmS);
}

export function runResultOf(system: SystemName, offered: string, record: PhaseRecord, cost: PhaseCost): RunResult {
  const plan = record.plan;
  const perSec = durablePerSec(record, plan);
  const missing = cost.sent - record.received;
  const ms = (percentile: number): number => round(record.latencyUs.getValueAtPercentile(percentile) / 1000);
  return {
    system, offered, rate: plan.mode === 'fixed' ? plan.rate : 0, sent: cost.sent, received: record.received, missing, accepted: record.accepted,
    rejectReasons: Object.fromEntries(record.rejectReasons), durablePerSec: Math.round(perSec),
    sustained: missing === 0 && (plan.mode !== 'fixed' || perSec >= SUSTAINED_FRACTION * plan.rate),
    latencyMs: { p50: ms(50), p90: ms(90), p99: ms(99), p999: ms(99.9), max: round(record.latencyUs.maxValue / 1000) },
    uncorrectedP99Ms: plan.mode === 'fixed' ? round(record.uncorrectedUs.getValueAtPercentile(99) / 1000) : null,
    cpuMsPerThousand: cost.cpuMsPerThousand, machineBusyPercent: cost.machineBusyPercent,
  };
}

export function skippedRunResult(system: SystemName, offered: string, rate: number, reason: string): RunResult {
  return {
    system, offered, rate, skipped: reason, sent: 0, received: 0, missing: 0, accepted: 0, rejectReasons: {}, durablePerSec: 0, sustained: false,
    latencyMs: { p50: 0, p90: 0, p99: 0, p999: 0, max: 0 }, uncorrectedP99Ms: null, cpuMsPerThousand: NO_CPU, machineBusyPercent: 0,
  };
}

/** "10000/s", "max", "80% = 1234/s". */
export function rateLabel(result: Pick<RunResult, 'offered' | 'rate'>): string {
  if (result.offered === 'max') return 'max';
  const perSec = `${result.rate.toLocaleString('en')}/s`;
  return /^\d+$/.test(result.offered) ? perSec : `${result.offered} = ${perSec}`;
}

export function describeRunResult(result: RunResult): string {
  const name = `${result.system.padEnd(8)} ${result.offered === 'max' ? 'max (window)' : `${rateLabel(result)} offered`}`.padEnd(34);
  if (result.skipped !== undefined) return `${name} skipped: ${result.skipped}`;
  const l = result.latencyMs;
  const rejected = Object.entries(result.rejectReasons).map(([reason, count]) => `${reason} ${count}`).join(', ') || 'none';
  return `${name} ${result.durablePerSec.toLocaleString('en')} durable commands/s${result.sustained ? '' : ' (NOT sustained)'}; ` +
    `latency ms p50 ${l.p50} p90 ${l.p90} p99 ${l.p99} p99.9 ${l.p999} max ${l.max}` +
    `${result.uncorrectedP99Ms === null ? '' : ` (p99 from actual send ${result.uncorrectedP99Ms})`}; ` +
    `sent ${result.sent}, events ${result.received}${result.missing > 0 ? `, MISSING ${result.missing}` : ''}, accepted ${result.accepted}, rejected: ${rejected}; ` +
    `CPU ms per 1000 commands: ${cpuText(result.cpuMsPerThousand, result.system)}; machine ${result.machineBusyPercent}% busy`;
}

function cpuText(cpu: CpuMs, system: SystemName): string {
  return `${system} ${cpu.system}, its PostgreSQL ${cpu.postgres}, broker ${cpu.broker}, load generator ${cpu.generator}, listener ${cpu.listener}`;
}

export function compactRunResult(result: RunResult): Record<string, unknown> {
  if (result.skipped !== undefined) return { offered: result.offered, rate: result.rate, skipped: result.skipped };
  return {
    offered: result.offered, rate: result.rate, durablePerSec: result.durablePerSec, sustained: result.sustained, ...result.latencyMs,
    uncorrectedP99: result.uncorrectedP99Ms, sent: result.sent, missing: result.missing, accepted: result.accepted,
    cpuMsPer1000: result.cpuMsPerThousand, machineBusy: result.machineBusyPercent,
  };
}
