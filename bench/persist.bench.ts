// Durable throughput of the flush pipeline: engine output → batcher → Piscina flush workers →
// PostgreSQL (same machine, synchronous_commit on, every ledger table logged).
//
//   node dist/bench/persist.bench.js [--smoke]      (or BENCH_SMOKE=1)
//
// Set-up (not timed): a BalanceEngine on this thread, its balance table preloaded (every user
// balance 10^12 available and frozen) applies a realistic mix into an output ring big enough
// for the whole run: deposits, withdrawals, freezes, unfreezes, transfers, 5-leg settles; 10%
// exact duplicates of a recent command; about 5% rejections (overdrafts, BAD_AMOUNT presets,
// wrong partition). 80% of commands come from a hot 5% of the accounts. 8 partitions.
//
// Each run (timed): a scratch database is emptied (TRUNCATE, lease rows reset, CHECKPOINT),
// and with BENCH_BALANCES=existing given back every balance row the run will change (as a
// ledger in service has them: the upsert updates instead of inserting; taken from an untimed
// priming run, frozen and analyzed),
// the pre-generated output is copied into a fresh output ring and published at once, and the
// clock runs until the batcher has released the last slot, i.e. everything is committed.
// Runs compare, side by side: 1, 2 and 4 workers; binary and text COPY; batches of 5k, 20k
// and 50k commands. Each runs twice and the faster run counts (the machine is shared). Flush
// latency (task submitted → committed) goes into an HDR histogram. CPU time per command of
// this process and of its PostgreSQL backends is read from /proc, and gives what two idle
// cores would sustain.
//
// The last line is a one-line JSON summary.

import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { BalanceTable, USER_PARTITION } from '../engine/balance_table';
import { CommandType } from '../engine/command_layout';
import { finalize32 } from '../engine/mix32';
import { OUTPUT_SLOT_BYTES } from '../engine/output_layout';
import { RejectCode } from '../engine/reject_code';
import { COUNTER_DUPLICATES } from '../engine/balance_engine';
import { RingBuffer, YieldingWaitStrategy } from '../ringbuffer';
import { Batcher, BatcherLog } from '../persist/batcher';
import { FixtureCommand, InProcessEngine } from '../persist/engine_fixture';
import { FlushPool, FlushRunner } from '../persist/flush_pool';
import type { CopyFormat, FlushResult, FlushSteps, FlushTask } from '../persist/flush_task';
import { createScratchLedger, withClient } from '../persist/test_ledger';

const SMOKE = process.argv.includes('--smoke') || process.env.BENCH_SMOKE === '1';
const TOPIC = 'bench.commands';
const PARTITIONS = 8;
const CURRENCIES = 4;
const FIRST_ACCOUNT = 1000;
const PRELOAD_MINOR_UNITS = 1_000_000_000_000n;
const DUPLICATE_DISTANCE_MAX = 50_000;
const TARGET_COMMANDS_PER_SEC = 200_000;
const REPEATS = SMOKE ? 1 : Number(process.env.BENCH_REPEATS ?? 2);
/** 'empty': every run starts with no balance rows; 'existing': with every row it will change already there. */
const BALANCES = process.env.BENCH_BALANCES ?? 'empty';
if (BALANCES !== 'empty' && BALANCES !== 'existing') throw new Error(`BENCH_BALANCES must be empty or existing, not ${BALANCES}`);
const BALANCES_TEMPLATE = 'bench_balances_template';

interface BenchConfig {
  readonly accounts: number;
  readonly commands: number;
  readonly outputSlotCount: number;
  readonly runs: readonly RunConfig[];
}

interface RunConfig {
  readonly workers: number;
  readonly copyFormat: CopyFormat;
  readonly batchRowsMax: number;
}

const FULL: BenchConfig = {
  accounts: 1_000_000,
  commands: 1_500_000,
  outputSlotCount: 1 << 22,
  runs: [
    { workers: 1, copyFormat: 'binary', batchRowsMax: 20_000 },
    { workers: 2, copyFormat: 'binary', batchRowsMax: 20_000 },
    { workers: 4, copyFormat: 'binary', batchRowsMax: 20_000 },
    { workers: 2, copyFormat: 'text', batchRowsMax: 20_000 },
    { workers: 2, copyFormat: 'binary', batchRowsMax: 5_000 },
    { workers: 2, copyFormat: 'binary', batchRowsMax: 50_000 },
  ],
};

const SMOKE_CONFIG: BenchConfig = {
  accounts: 50_000,
  commands: 60_000,
  outputSlotCount: 1 << 18,
  runs: [
    { workers: 2, copyFormat: 'binary', batchRowsMax: 20_000 },
    { workers: 2, copyFormat: 'text', batchRowsMax: 20_000 },
  ],
};

/** mulberry32: a small seeded PRNG, so every run generates the same commands. */
function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function homeOf(accountIndex: number): number {
  return (finalize32(accountIndex) >>> 0) % PARTITIONS;
}

function preload(table: BalanceTable, accounts: number): void {
  const lo = Number(PRELOAD_MINOR_UNITS & 0xffffffffn);
  const hi = Number(PRELOAD_MINOR_UNITS >> 32n);
  for (let index = 0; index < accounts; index++) {
    for (let currency = 1; currency <= CURRENCIES; currency++) table.insert(FIRST_ACCOUNT + index, 0, currency, USER_PARTITION, lo, hi, lo, hi);
  }
}

/** The command mix of bench/engine.bench.ts, with real currency ids (1..4). */
function* commandMix(config: BenchConfig): Generator<FixtureCommand> {
  const random = prng(20240601);
  const hotAccounts = Math.max(1, Math.floor(config.accounts / 20));
  const pickAccount = (): number => (random() < 0.8 ? Math.floor(random() * hotAccounts) : Math.floor(random() * config.accounts));
  const amount = (): bigint => BigInt(1 + Math.floor(random() * 1_000_000));
  // The last DUPLICATE_DISTANCE_MAX commands, as a ring.
  const recent: FixtureCommand[] = [];
  let recentNext = 0;
  for (let index = 0; index < config.commands; index++) {
    const r = random();
    if (r < 0.1 && recent.length > 0) {
      yield recent[Math.floor(random() * recent.length)]!;
      continue;
    }
    const accountIndex = pickAccount();
    const home = homeOf(accountIndex);
    const account = BigInt(FIRST_ACCOUNT + accountIndex);
    const currency = 1 + Math.floor(random() * CURRENCIES);
    const base = { txId: `b-${index.toString().padStart(9, '0')}`, partition: home, account, currency, accountHome: home };
    let command: FixtureCommand;
    if (r < 0.13) command = { ...base, type: CommandType.Withdraw, amount: PRELOAD_MINOR_UNITS * 1000n };
    else if (r < 0.14) command = { ...base, type: CommandType.Deposit, amount: amount(), accountHome: (home + 1) % PARTITIONS };
    else if (r < 0.15) command = { ...base, type: CommandType.Deposit, amount: 0n, rejectCode: RejectCode.BadAmount };
    else if (r < 0.36) command = { ...base, type: CommandType.Deposit, amount: amount() };
    else if (r < 0.52) command = { ...base, type: CommandType.Withdraw, amount: amount() };
    else if (r < 0.65) command = { ...base, type: CommandType.Freeze, amount: amount() };
    else if (r < 0.78) command = { ...base, type: CommandType.Unfreeze, amount: amount() };
    else if (r < 0.9) {
      let toIndex = pickAccount();
      while (homeOf(toIndex) !== home) toIndex = pickAccount();
      command = { ...base, type: CommandType.Transfer, counterAccount: BigInt(FIRST_ACCOUNT + toIndex), counterHome: home, amount: amount() };
    } else {
      const quote = amount();
      const fee = quote / 1000n;
      const baseCurrency = 2 + Math.floor(random() * (CURRENCIES - 1));
      const bought = amount();
      command = { ...base, type: CommandType.Settle, legs: [
        { account, currency: 1, home, available: 0n, frozen: -quote },
        { account: 1n, currency: 1, home, available: fee, frozen: 0n },
        { account: 2n, currency: 1, home, available: quote - fee, frozen: 0n },
        { account: 2n, currency: baseCurrency, home, available: -bought, frozen: 0n },
        { account, currency: baseCurrency, home, available: bought, frozen: 0n },
      ] };
    }
    recent[recentNext] = command;
    recentNext = (recentNext + 1) % DUPLICATE_DISTANCE_MAX;
    yield command;
  }
}

interface Generated {
  readonly template: Uint8Array;
  readonly slots: number;
  readonly lastOffsets: Map<number, number>;
  readonly counters: Float64Array;
}

function generate(config: BenchConfig): Generated {
  const fixture = new InProcessEngine({
    outputSlotCount: config.outputSlotCount, balanceCapacity: config.accounts * CURRENCIES + 1024, dedupWindow: Math.ceil(config.commands / PARTITIONS) + 1024,
    partitions: Array.from({ length: PARTITIONS }, (_, p) => p),
  });
  preload(fixture.table, config.accounts);
  for (const command of commandMix(config)) fixture.apply(command);
  fixture.publish();
  const slots = fixture.ring.publishedSequence() + 1;
  const lastOffsets = new Map(Array.from({ length: PARTITIONS }, (_, p) => [p, fixture.nextOffsetOf(p) - 1]));
  return { template: new Uint8Array(fixture.ring.data), slots, lastOffsets, counters: fixture.engine.counters };
}

/** Passes tasks to the pool and remembers the PostgreSQL backend processes that ran them. */
class ObservingRunner implements FlushRunner {
  readonly backendPids = new Set<number>();

  constructor(private readonly pool: FlushPool) {}

  async run(task: FlushTask): Promise<FlushResult> {
    const result = await this.pool.run(task);
    this.backendPids.add(result.backendPid);
    return result;
  }
}

/** CPU time (ms) a process has used so far, from /proc (Linux); 0 if unreadable. */
function processCpuMs(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ');
    // After the command name: state is field 3, utime field 14, stime field 15 (1-based, in clock ticks of 10 ms).
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return 0;
  }
}

async function postgresHelperPids(url: string): Promise<number[]> {
  return withClient(url, async (client) => (await client.query<{ pid: number }>(
    "SELECT pid FROM pg_stat_activity WHERE backend_type IN ('walwriter', 'checkpointer', 'background writer')")).rows.map((r) => r.pid));
}

interface RunResult extends RunConfig {
  readonly commandsPerSec: number;
  readonly rowsPerSec: number;
  readonly seconds: number;
  readonly tasks: number;
  readonly commandsPerTask: number;
  readonly flushMs: { readonly p50: number; readonly p99: number; readonly max: number };
  readonly checksum: string;
  /** CPU ms per 1000 durable commands: this process (batcher, flush workers), their PostgreSQL backends, PostgreSQL's WAL writer, checkpointer and background writer. */
  readonly cpuMsPerThousand: { readonly node: number; readonly backends: number; readonly helpers: number };
  /** What 2 otherwise idle cores would sustain at that CPU cost per command (the machine is shared). */
  readonly cpuBoundCommandsPerSec: number;
  /** WAL written per command (the server's, so other databases' writes count too). */
  readonly walBytesPerCommand: number;
  /** Flush wall time per 1000 commands by step (ms). */
  readonly stepsMsPerThousand: FlushSteps;
}

const quietLog: BatcherLog = {
  info: () => undefined,
  warn: (context, message) => console.error(`warn: ${message} ${JSON.stringify(context)}`),
  error: (context, message) => console.error(`error: ${message} ${String((context as { err?: Error }).err?.message)}`),
};

async function resetLedger(url: string, existingBalances: boolean): Promise<void> {
  await withClient(url, async (client) => {
    await client.query('TRUNCATE journal, tx_outcomes, balances, tx_replies');
    if (existingBalances) {
      await client.query(`INSERT INTO balances (partition, account, currency_id, available, frozen, last_offset) SELECT partition, account, currency_id, available, frozen, last_offset FROM ${BALANCES_TEMPLATE}`);
      await client.query('VACUUM (FREEZE, ANALYZE) balances');
    }
    await client.query('UPDATE partition_leases SET next_offset = 0, fencing_token = 1');
    await client.query('VACUUM ANALYZE partition_leases');
    await client.query('CHECKPOINT');
  });
}

/** Opens every worker's connection and staging tables before the clock starts (a fenced no-op task each). */
async function warmUp(pool: FlushRunner, ring: RingBuffer, url: string, workers: number): Promise<void> {
  const task = {
    ringData: ring.data, slotCount: ring.slotCount, slotBytes: OUTPUT_SLOT_BYTES, firstPosition: 0, lastPosition: -1,
    partitions: [65_535], fencingTokens: ['0'], topic: TOPIC, pgUrl: url,
  };
  await Promise.all(Array.from({ length: workers }, () => pool.run(task)));
}

async function run(config: RunConfig, generated: Generated, url: string, existingBalances: boolean): Promise<RunResult> {
  await resetLedger(url, existingBalances);
  const ring = RingBuffer.create({ slotCount: generated.template.length / OUTPUT_SLOT_BYTES, slotBytes: OUTPUT_SLOT_BYTES });
  new Uint8Array(ring.data).set(generated.template);
  const pool = new FlushPool({ workers: config.workers });
  const runner = new ObservingRunner(pool);
  await warmUp(runner, ring, url, config.workers);
  const helperPids = await postgresHelperPids(url);
  const batcher = new Batcher({
    ring, runner, groupCount: config.workers, batchRowsMax: config.batchRowsMax, batchIntervalMs: 5, topic: TOPIC, pgUrl: url,
    fencingTokenOf: () => 1n, log: quietLog, copyFormat: config.copyFormat,
  });
  const sequencer = ring.acquireSequencer(new YieldingWaitStrategy(100));
  const walBefore = await walPosition(url);
  const cpuBefore = cpuNow(runner, helperPids);
  const startedMs = performance.now();
  sequencer.publish(sequencer.tryClaim(generated.slots) + generated.slots - 1);
  batcher.start();
  await batcher.flush(600_000);
  const seconds = (performance.now() - startedMs) / 1000;
  const cpuAfter = cpuNow(runner, helperPids);
  const walBytes = await walBytesSince(url, walBefore);
  await batcher.stop();
  await pool.close();
  const m = batcher.metrics;
  const checksum = await withClient(url, async (client) => {
    const row = (await client.query(`SELECT (SELECT count(*) FROM journal) AS legs, (SELECT count(*) FROM tx_outcomes) AS outcomes,
      (SELECT count(*) FROM balances) AS balances, (SELECT sum(next_offset) FROM partition_leases) AS offsets`)).rows[0];
    return `${row.legs}/${row.outcomes}/${row.balances}/${row.offsets}`;
  });
  const expectedOffsets = [...generated.lastOffsets.values()].reduce((sum, offset) => sum + offset + 1, 0);
  if (!checksum.endsWith(`/${expectedOffsets}`) || m.commandsDurable !== commandsIn(generated)) {
    throw new Error(`run ${JSON.stringify(config)}: database holds ${checksum}, expected next offsets summing to ${expectedOffsets}`);
  }
  const ms = (us: number): number => Math.round(us / 100) / 10;
  return {
    ...config, seconds: Math.round(seconds * 100) / 100,
    commandsPerSec: Math.round(m.commandsDurable / seconds), rowsPerSec: Math.round((m.journalRows + m.outcomeRows) / seconds),
    tasks: m.tasksCommitted, commandsPerTask: Math.round(m.commandsWritten / Math.max(1, m.tasksCommitted)),
    flushMs: { p50: ms(m.flushLatencyUs.getValueAtPercentile(50)), p99: ms(m.flushLatencyUs.getValueAtPercentile(99)), max: ms(m.flushLatencyUs.maxValue) },
    checksum, walBytesPerCommand: Math.round(walBytes / m.commandsDurable), ...cpuCost(cpuBefore, cpuAfter, m.commandsDurable), stepsMsPerThousand: perThousand(m.flushSteps, m.commandsDurable),
  };
}

async function walPosition(url: string): Promise<string> {
  return withClient(url, async (client) => (await client.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn')).rows[0]!.lsn);
}

async function walBytesSince(url: string, lsn: string): Promise<number> {
  return withClient(url, async (client) => Number((await client.query<{ bytes: string }>('SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1)::text AS bytes', [lsn])).rows[0]!.bytes));
}

interface CpuSample {
  readonly node: number;
  readonly backends: number;
  readonly helpers: number;
}

function cpuNow(runner: ObservingRunner, helperPids: readonly number[]): CpuSample {
  const usage = process.cpuUsage();
  const sum = (pids: Iterable<number>): number => [...pids].reduce((total, pid) => total + processCpuMs(pid), 0);
  return { node: (usage.user + usage.system) / 1000, backends: sum(runner.backendPids), helpers: sum(helperPids) };
}

function cpuCost(before: CpuSample, after: CpuSample, commands: number): Pick<RunResult, 'cpuMsPerThousand' | 'cpuBoundCommandsPerSec'> {
  const per = (key: keyof CpuSample): number => Math.round(((after[key] - before[key]) / commands) * 1000 * 10) / 10;
  const cpuMsPerThousand = { node: per('node'), backends: per('backends'), helpers: per('helpers') };
  const total = cpuMsPerThousand.node + cpuMsPerThousand.backends + cpuMsPerThousand.helpers;
  return { cpuMsPerThousand, cpuBoundCommandsPerSec: Math.round((2 * 1000 * 1000) / total) };
}

function perThousand(steps: FlushSteps, commands: number): FlushSteps {
  const round = (ms: number): number => Math.round((ms / commands) * 1000 * 100) / 100;
  return {
    encodeMs: round(steps.encodeMs), lockMs: round(steps.lockMs), outcomesMs: round(steps.outcomesMs),
    journalMs: round(steps.journalMs), balancesMs: round(steps.balancesMs), commitMs: round(steps.commitMs),
  };
}

function commandsIn(generated: Generated): number {
  return [...generated.lastOffsets.values()].reduce((sum, offset) => sum + offset + 1, 0);
}

/** Overrides for experiments, e.g. BENCH_COMMANDS=500000 BENCH_RUNS=2:binary:20000,4:text:50000. */
function configFromEnvironment(base: BenchConfig): BenchConfig {
  const runs = process.env.BENCH_RUNS?.split(',').map((spec) => {
    const [workers, copyFormat, batchRowsMax] = spec.split(':');
    return { workers: Number(workers), copyFormat: copyFormat as CopyFormat, batchRowsMax: Number(batchRowsMax) };
  });
  return { ...base, commands: Number(process.env.BENCH_COMMANDS ?? base.commands), runs: runs ?? base.runs };
}

async function main(): Promise<void> {
  const config = configFromEnvironment(SMOKE ? SMOKE_CONFIG : FULL);
  const setupStartedMs = performance.now();
  const generated = generate(config);
  const counters = generated.counters;
  const rejected = counters.reduce((sum, value, index) => (index > 0 && index !== COUNTER_DUPLICATES ? sum + value : sum), 0);
  console.log(`set-up ${((performance.now() - setupStartedMs) / 1000).toFixed(1)} s: ${config.commands} commands (accepted ${counters[0]}, duplicates ${counters[COUNTER_DUPLICATES]}, rejected ${rejected}) in ${generated.slots} output slots, ${config.accounts} accounts x ${CURRENCIES} currencies, ${PARTITIONS} partitions`);
  const ledger = await createScratchLedger('tally_bench_persist', TOPIC, Array.from({ length: PARTITIONS }, (_, p) => p));
  const results: RunResult[] = [];
  try {
    // Experiments only: schema or settings to try, e.g. BENCH_SQL="ALTER TABLE balances SET (fillfactor = 80)".
    if (process.env.BENCH_SQL !== undefined) await withClient(ledger.url, (client) => client.query(process.env.BENCH_SQL!));
    const existing = BALANCES === 'existing';
    if (existing) {
      // An untimed run leaves exactly the rows the commands change; kept with an offset below any the runs write.
      await run(config.runs[0]!, generated, ledger.url, false);
      await withClient(ledger.url, (client) => client.query(
        `DROP TABLE IF EXISTS ${BALANCES_TEMPLATE}; CREATE TABLE ${BALANCES_TEMPLATE} AS SELECT partition, account, currency_id, available, frozen, -1::bigint AS last_offset FROM balances`));
      console.log('balances: every run starts with the rows it changes already in the table (BENCH_BALANCES=existing)');
    }
    for (const runConfig of config.runs) {
      // The machine is shared: each configuration runs REPEATS times and its fastest run counts.
      let result = await run(runConfig, generated, ledger.url, existing);
      for (let repeat = 1; repeat < REPEATS; repeat++) {
        const again = await run(runConfig, generated, ledger.url, existing);
        if (again.commandsPerSec > result.commandsPerSec) result = again;
      }
      results.push(result);
      console.log(`${result.workers} worker(s) ${result.copyFormat.padEnd(6)} batch ${String(result.batchRowsMax).padStart(6)}: ` +
        `${result.commandsPerSec.toLocaleString('en')} commands/s, ${result.rowsPerSec.toLocaleString('en')} rows/s durable ` +
        `(${result.seconds} s, ${result.tasks} flushes of ${result.commandsPerTask} commands; flush ms p50 ${result.flushMs.p50} p99 ${result.flushMs.p99} max ${result.flushMs.max}) ` +
        `checksum legs/outcomes/balances/offsets ${result.checksum}`);
      console.log(`    CPU ms per 1000 commands: node ${result.cpuMsPerThousand.node}, backends ${result.cpuMsPerThousand.backends}, ` +
        `PostgreSQL helpers ${result.cpuMsPerThousand.helpers} => ${result.cpuBoundCommandsPerSec.toLocaleString('en')} commands/s if 2 cores were ours; ` +
        `WAL ${result.walBytesPerCommand} bytes per command; ` +
        `flush ms per 1000 commands by step ${JSON.stringify(result.stepsMsPerThousand)}`);
    }
  } finally {
    await ledger.drop();
  }
  const best = results.reduce((a, b) => (b.commandsPerSec > a.commandsPerSec ? b : a));
  const binary = results.find((r) => r.copyFormat === 'binary' && r.workers === 2 && r.batchRowsMax === 20_000);
  const text = results.find((r) => r.copyFormat === 'text');
  console.log(JSON.stringify({
    bench: 'persist', smoke: SMOKE, commands: config.commands, partitions: PARTITIONS, balances: BALANCES,
    bestCommandsPerSec: best.commandsPerSec, bestConfig: { workers: best.workers, copyFormat: best.copyFormat, batchRowsMax: best.batchRowsMax },
    targetCommandsPerSec: TARGET_COMMANDS_PER_SEC, targetMet: best.commandsPerSec >= TARGET_COMMANDS_PER_SEC,
    binaryVsText: binary !== undefined && text !== undefined ? Math.round((binary.commandsPerSec / text.commandsPerSec) * 100) / 100 : null,
    runs: results.map((r) => ({
      workers: r.workers, copy: r.copyFormat, batch: r.batchRowsMax, commandsPerSec: r.commandsPerSec, rowsPerSec: r.rowsPerSec,
      flushMsP50: r.flushMs.p50, flushMsP99: r.flushMs.p99, cpuBoundCommandsPerSec: r.cpuBoundCommandsPerSec,
    })),
  }));
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
