// The load a profiling session runs: the real `tally start` process (the binary operators
// run, with the node flags under study) working through a backlog of commands in Kafka
// until every one is committed to PostgreSQL. A backlog makes the service go as fast as it
// can, and keeps the load generator off the CPU while the service is measured.
//
// Each session gets topics of its own, and each run a scratch database of its own, so
// several runs read the same backlog from offset 0 and nothing is left behind.

import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createWriteStream, readFileSync } from 'node:fs';
import path from 'node:path';
import Kafka from '@confluentinc/kafka-javascript';
import pg from 'pg';
import { encodeCommandJson } from '../engine/wire_command';
import { BENCH_CURRENCIES, SeededRandom, randomWireCommand } from '../engine/wire_fixtures';
import { CommandProducer } from '../io/command_producer';
import { createTopic, testKafkaBrokers, testPgUrl, uniqueName } from '../io/test_services';
import { createScratchDatabase } from '../persist/scratch_database';

export const LOAD_PARTITIONS = 8;
const ACCOUNTS = 100_000;
const PRODUCER_QUEUE_MAX = 200_000;
const START_TIMEOUT_MS = 120_000;
const STOP_TIMEOUT_MS = 60_000;
const POLL_INTERVAL_MS = 20;
/** The slowest durable rate a run may show before it counts as stuck. */
const MIN_COMMANDS_PER_SEC = 1_000;

export interface Backlog {
  readonly commandsTopic: string;
  readonly eventsTopic: string;
  readonly commands: number;
}

export interface RunOptions {
  readonly backlog: Backlog;
  readonly nodeFlags: readonly string[];
  /** The child's stdout and stderr (JSON logs, and the GC trace under --trace-gc). */
  readonly logFile: string;
  readonly extraEnv?: Record<string, string>;
}

export interface RunResult {
  /** From the 'tally started' log line to the last command committed. */
  readonly durableSeconds: number;
  readonly commandsPerSec: number;
  readonly exitCode: number | null;
  /**
   * CPU time (user + system, all threads) the service spent in that span, per command: on
   * a shared machine it varies much less than the wall-clock rate, which also counts the
   * time the service waited for a core.
   */
  readonly cpuMicrosPerCommand: number;
  /** The same span on CLOCK_MONOTONIC in microseconds, the clock of .cpuprofile samples. */
  readonly window: { readonly fromMicros: number; readonly toMicros: number };
}

const nowMicros = (): number => Number(process.hrtime.bigint() / 1000n);

let clockTicksPerSec: number | undefined;

/** utime + stime of a process from /proc/<pid>/stat, in microseconds. */
function processCpuMicros(pid: number): number {
  clockTicksPerSec ??= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name, which is in parentheses and may hold spaces.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) / clockTicksPerSec) * 1e6;
}

/** Creates the session's topics and fills the commands topic with `commands` JSON commands. */
export async function prepareBacklog(commands: number): Promise<Backlog> {
  const backlog = { commandsTopic: uniqueName('tally.profile.commands'), eventsTopic: uniqueName('tally.profile.events'), commands };
  await createTopic(backlog.commandsTopic, LOAD_PARTITIONS);
  await createTopic(backlog.eventsTopic, LOAD_PARTITIONS);
  const producer = await CommandProducer.connect({ brokers: testKafkaBrokers, topic: backlog.commandsTopic, lingerMs: 20 });
  try {
    const random = new SeededRandom(7);
    for (let sequence = 0; sequence < commands; sequence++) {
      const command = randomWireCommand(random, { accountCount: ACCOUNTS, currencies: BENCH_CURRENCIES }, sequence);
      producer.send(command.type === 'transfer' ? command.from : command.account, Buffer.from(encodeCommandJson(command)));
      if (producer.unacknowledged >= PRODUCER_QUEUE_MAX) await producer.flush();
    }
    await producer.flush();
  } finally {
    await producer.disconnect();
  }
  return backlog;
}

export function deleteBacklog(backlog: Backlog): Promise<void> {
  const admin = Kafka.AdminClient.create({ 'bootstrap.servers': testKafkaBrokers });
  const drop = (topic: string): Promise<void> => new Promise((resolve) => admin.deleteTopic(topic, 10_000, () => resolve()));
  return Promise.all([drop(backlog.commandsTopic), drop(backlog.eventsTopic)]).then(() => admin.disconnect());
}

function serviceEnv(backlog: Backlog, pgUrl: string, extra: Record<string, string>): NodeJS.ProcessEnv {
  return {
    ...process.env,
    TALLY_PG_URL: pgUrl,
    TALLY_KAFKA_BROKERS: testKafkaBrokers,
    TALLY_COMMANDS_TOPIC: backlog.commandsTopic,
    TALLY_EVENTS_TOPIC: backlog.eventsTopic,
    TALLY_COMMAND_PARTITIONS: String(LOAD_PARTITIONS),
    TALLY_CONSUMER_GROUP: uniqueName('tally-profile'),
    TALLY_CURRENCIES: BENCH_CURRENCIES.map((c) => `${c.code}:${c.scale}`).join(','),
    TALLY_HTTP_PORT: '0',
    TALLY_LOG_LEVEL: 'info',
    ...extra,
  };
}

// Resolves when the child logs that it started (recovery done, consumer assigned).
function started(child: ChildProcess): Promise<number> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`tally did not start within ${START_TIMEOUT_MS} ms`)), START_TIMEOUT_MS);
    child.once('exit', (code) => reject(new Error(`tally exited with code ${code} during start-up`)));
    let tail = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      tail = (tail + chunk.toString()).slice(-4096);
      if (tail.includes('"msg":"tally started"')) {
        clearTimeout(timer);
        resolve(nowMicros());
        tail = '';
      }
    });
  });
}

async function waitDurable(pgUrl: string, topic: string, commands: number, timeoutMs: number): Promise<number> {
  const client = new pg.Client({ connectionString: pgUrl });
  await client.connect();
  try {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const result = await client.query<{ done: string }>('SELECT coalesce(sum(next_offset), 0) AS done FROM partition_leases WHERE topic = $1', [topic]);
      if (Number(result.rows[0]!.done) >= commands) return nowMicros();
      if (performance.now() > deadline) throw new Error(`only ${result.rows[0]!.done} of ${commands} commands durable after ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, POLL_INTERVAL_MS));
    }
  } finally {
    await client.end();
  }
}

async function stopChild(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null) return child.exitCode;
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
  const code = await exited;
  clearTimeout(timer);
  return code;
}

/** One run of `tally start` through the whole backlog, from a fresh database. */
export async function runServiceUnderLoad(options: RunOptions): Promise<RunResult> {
  const database = await createScratchDatabase(testPgUrl, 'tally_profile');
  const cli = path.join(__dirname, '..', 'io', 'cli.js');
  const child = spawn(process.execPath, [...options.nodeFlags, cli, 'start'], {
    env: serviceEnv(options.backlog, database.url, options.extraEnv ?? {}), stdio: ['ignore', 'pipe', 'pipe'],
  });
  const log = createWriteStream(options.logFile);
  child.stdout!.pipe(log);
  child.stderr!.pipe(log);
  try {
    const startedMicros = await started(child);
    const cpuAtStartMicros = processCpuMicros(child.pid!);
    const timeoutMs = Math.max(START_TIMEOUT_MS, (options.backlog.commands / MIN_COMMANDS_PER_SEC) * 1000);
    const durableMicros = await waitDurable(database.url, options.backlog.commandsTopic, options.backlog.commands, timeoutMs);
    const cpuMicros = processCpuMicros(child.pid!) - cpuAtStartMicros;
    const durableSeconds = (durableMicros - startedMicros) / 1e6;
    const exitCode = await stopChild(child);
    const window = { fromMicros: startedMicros, toMicros: durableMicros };
    const cpuMicrosPerCommand = Math.round((cpuMicros / options.backlog.commands) * 100) / 100;
    return { durableSeconds, commandsPerSec: Math.round(options.backlog.commands / durableSeconds), cpuMicrosPerCommand, exitCode, window };
  } finally {
    await stopChild(child);
    await new Promise((resolve) => log.end(resolve));
    await database.drop();
  }
}
