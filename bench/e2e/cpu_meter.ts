// Where the machine's CPU went during a phase: the system under test's own process, the
// PostgreSQL processes serving it (its database's backends and the server's WAL writer,
// checkpointer and background writer), the Kafka broker, the load generator, and this process
// (the result-event listener). On 2 shared cores this says what bounds the throughput.
// Linux only (/proc); a process that cannot be read counts 0.

import { readdirSync, readFileSync } from 'node:fs';
import pg from 'pg';

export interface CpuMs {
  readonly system: number;
  readonly postgres: number;
  readonly broker: number;
  readonly generator: number;
  readonly listener: number;
}

export interface CpuSample {
  readonly ms: CpuMs;
  /** Per PostgreSQL process: a backend that ends (and whose pid is reused) must not count negative. */
  readonly postgresByPid: ReadonlyMap<number, number>;
  readonly machineBusyTicks: number;
  readonly machineTotalTicks: number;
}

export interface CpuPids {
  readonly system: number;
  readonly generator: number;
  readonly broker: number | undefined;
  readonly postgres: readonly number[];
}

const TICK_MS = 10;

/** User + system CPU time a process (all its threads) has used, in ms. */
export function processCpuMs(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ');
    // After the command name: utime and stime are fields 14 and 15 (1-based), in clock ticks.
    return (Number(fields[11]) + Number(fields[12])) * TICK_MS;
  } catch {
    return 0;
  }
}

/** The Kafka broker's process: the JVM whose command line runs kafka.Kafka. */
export function findBrokerPid(): number | undefined {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes('kafka.Kafka')) return Number(entry);
    } catch {
      // The process ended while we looked.
    }
  }
  return undefined;
}

/** Backends connected to `database` and the server's shared writers. */
export async function postgresPidsOf(serverUrl: string, database: string): Promise<number[]> {
  const client = new pg.Client({ connectionString: serverUrl });
  await client.connect();
  try {
    const result = await client.query<{ pid: number }>(
      `SELECT pid FROM pg_stat_activity WHERE (datname = $1 AND pid <> pg_backend_pid()) OR backend_type IN ('walwriter', 'checkpointer', 'background writer')`, [database]);
    return result.rows.map((row) => row.pid);
  } finally {
    await client.end();
  }
}

export function sampleCpu(pids: CpuPids): CpuSample {
  const usage = process.cpuUsage();
  const postgresByPid = new Map(pids.postgres.map((pid) => [pid, processCpuMs(pid)]));
  const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = fields.reduce((sum, value) => sum + value, 0);
  return {
    ms: {
      system: processCpuMs(pids.system),
      postgres: [...postgresByPid.values()].reduce((sum, ms) => sum + ms, 0),
      broker: pids.broker === undefined ? 0 : processCpuMs(pids.broker),
      generator: processCpuMs(pids.generator),
      listener: (usage.user + usage.system) / 1000,
    },
    postgresByPid,
    machineBusyTicks: total - fields[3]! - (fields[4] ?? 0),
    machineTotalTicks: total,
  };
}

/** CPU ms per 1000 commands by consumer, and the machine's busy share, between two samples. */
export function cpuBetween(before: CpuSample, after: CpuSample, commands: number): { perThousand: CpuMs; machineBusyPercent: number } {
  const perThousand = (ms: number): number => Number(((Math.max(0, ms) / Math.max(1, commands)) * 1000).toFixed(1));
  const per = (key: keyof CpuMs): number => perThousand(after.ms[key] - before.ms[key]);
  let postgresMs = 0;
  for (const [pid, ms] of after.postgresByPid) postgresMs += Math.max(0, ms - (before.postgresByPid.get(pid) ?? ms));
  return {
    perThousand: { system: per('system'), postgres: perThousand(postgresMs), broker: per('broker'), generator: per('generator'), listener: per('listener') },
    machineBusyPercent: Number(((100 * (after.machineBusyTicks - before.machineBusyTicks)) / Math.max(1, after.machineTotalTicks - before.machineTotalTicks)).toFixed(1)),
  };
}
