// How long an instance needs to take over a big partition: binary COPY of its balances out of
// PostgreSQL, framing and parsing into shared rows, and loading them into the engine's
// balance table on the engine worker (persist/recovery.ts → EngineThread.loadPartition).
// Target: 10 million balances in at most 10 s on the 2-core VM.
//
//   node dist/bench/recovery.bench.js [--smoke] [--runs N]
//
// Set-up (not timed): a scratch database with the real schema, partition 0 holding 10 million
// user balances (--smoke: 200 000; 2.5 million accounts x 4 currencies) plus its system
// accounts, partition 1 holding 1 million tx outcomes (--smoke: 20 000) of tx_ids of 10 to
// 50 bytes. The fill skips foreign-key triggers (session_replication_role = replica) and
// ends with VACUUM ANALYZE, as autovacuum would have left a production table.
//
// Timed, per run, on a fresh engine worker: recoverPartition(0) (connect, one exported
// REPEATABLE READ snapshot, two COPYs over halves of the heap + parse, then the load: sort
// by table region, insert, state hash) and then recoverPartition(1) (outcomes into the
// dedup window). A recovery is one long operation, so instead of latency percentiles the bench
// prints every run and the best and median, the garbage collections during the timed part
// (the row path creates no object per row) and the peak RSS. A sample of balances is read
// back through the table reader and compared with the generating formula; the engine's
// state hash is the checksum. The scratch database is dropped at the end. Last line: a
// one-line JSON summary.

import { PerformanceObserver } from 'node:perf_hooks';
import pg from 'pg';
import { EngineThread } from '../engine/engine_thread';
import { PartitionRecovery, recoverPartition } from '../persist/recovery';
import { createScratchDatabase } from '../persist/scratch_database';
import { testPgUrl } from '../io/test_services';

interface BenchConfig {
  readonly smoke: boolean;
  readonly balances: number;
  readonly outcomes: number;
  readonly runs: number;
}

const FULL: BenchConfig = { smoke: false, balances: 10_000_000, outcomes: 1_000_000, runs: 3 };
const SMOKE: BenchConfig = { smoke: true, balances: 200_000, outcomes: 20_000, runs: 2 };
const CURRENCIES = 4;
const SYSTEM_ACCOUNTS = 4;
const TARGET_SECONDS = 10;
const SAMPLE_ROWS = 10_000;
const NEXT_OFFSET = 1e12;
const AVAILABLE_MODULUS = 1_000_000_000_000n;
const AVAILABLE_MULTIPLIER = 2_654_435_761n;

function configFromArgs(): BenchConfig {
  const base = process.argv.includes('--smoke') ? SMOKE : FULL;
  const runsAt = process.argv.indexOf('--runs');
  const runs = runsAt >= 0 ? Number(process.argv[runsAt + 1]) : base.runs;
  if (!Number.isInteger(runs) || runs < 1) throw new Error('--runs takes a positive integer');
  return { ...base, runs };
}

async function fill(url: string, config: BenchConfig): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query("INSERT INTO currencies (id, code, scale) VALUES (1, 'USDT', 8), (2, 'BTC', 8), (3, 'ETH', 8), (4, 'SOL', 8)");
    await client.query('SET session_replication_role = replica');
    await client.query(`INSERT INTO balances
      SELECT 0, 1000 + g / ${CURRENCIES}, 1 + g % ${CURRENCIES}, (g * ${AVAILABLE_MULTIPLIER}) % ${AVAILABLE_MODULUS}, g % 1000, g
        FROM generate_series(0::bigint, ${config.balances - 1}) g`);
    await client.query(`INSERT INTO balances
      SELECT p, a, c, -1000000 * (a + 1) * c - p, 0, 7 FROM generate_series(0, 1) p, generate_series(0, ${SYSTEM_ACCOUNTS - 1}) a, generate_series(1, ${CURRENCIES}) c`);
    await client.query(`INSERT INTO tx_outcomes
      SELECT 1, 'bench-tx-' || g || repeat('x', (g % 37)::integer), g, g % 7 <> 0, CASE WHEN g % 7 = 0 THEN 'INSUFFICIENT_AVAILABLE' END, g * 1000003 - 4611686018427387904
        FROM generate_series(0::bigint, ${config.outcomes - 1}) g`);
    await client.query('VACUUM (ANALYZE) balances, tx_outcomes');
  } finally {
    await client.end();
  }
}

function expectedAvailable(g: bigint): bigint {
  return (g * AVAILABLE_MULTIPLIER) % AVAILABLE_MODULUS;
}

/** Reads a spread of generated balances back through the table reader; throws on a mismatch. */
function checkSample(engine: EngineThread, config: BenchConfig): void {
  const reader = engine.tableReader();
  const expectedCount = config.balances + 2 * SYSTEM_ACCOUNTS * CURRENCIES;
  if (reader.count !== expectedCount) throw new Error(`table holds ${reader.count} balances, expected ${expectedCount}`);
  const step = Math.max(1, Math.floor(config.balances / SAMPLE_ROWS));
  for (let i = 0; i < config.balances; i += step) {
    const g = BigInt(i);
    const reading = reader.readBalance(1000n + g / BigInt(CURRENCIES), 1 + (i % CURRENCIES));
    if (reading === undefined || reading.available !== expectedAvailable(g) || reading.frozen !== g % 1000n) {
      throw new Error(`balance of generated row ${i} reads back wrong: ${JSON.stringify(reading, (_k, v) => (typeof v === 'bigint' ? v.toString() : v))}`);
    }
  }
  const external = reader.readBalance(0n, 2, 1);
  if (external?.available !== -2_000_001n) throw new Error('system account 0 of partition 1 reads back wrong');
}

/** The numbers of one recovery, without its row buffers (a run must not keep the last one's memory alive). */
interface RecoveryTimes {
  readonly rows: number;
  readonly readMs: number;
  readonly loadMs: number;
  readonly workerMs: number;
  readonly stateHash: string;
}

interface RunResult {
  readonly balances: RecoveryTimes;
  readonly outcomes: RecoveryTimes;
}

function timesOf(recovery: PartitionRecovery, rows: number): RecoveryTimes {
  return { rows, readMs: recovery.readMs, loadMs: recovery.loadMs, workerMs: recovery.report.loaded!.elapsedMs, stateHash: recovery.report.stateHash };
}

async function runOnce(url: string, config: BenchConfig): Promise<RunResult> {
  const engine = await EngineThread.start({
    commandSlotCount: 1024,
    outputSlotCount: 1024,
    balanceCapacity: config.balances + 1024,
    dedupWindow: config.outcomes,
  });
  try {
    const balances = await recoverPartition(url, engine, { partition: 0, nextOffset: NEXT_OFFSET, dedupWindow: config.outcomes });
    const outcomes = await recoverPartition(url, engine, { partition: 1, nextOffset: NEXT_OFFSET, dedupWindow: config.outcomes });
    if (outcomes.report.loaded!.outcomeCount !== config.outcomes) throw new Error(`loaded ${outcomes.report.loaded!.outcomeCount} outcomes, expected ${config.outcomes}`);
    checkSample(engine, config);
    return { balances: timesOf(balances, balances.balances.count), outcomes: timesOf(outcomes, outcomes.outcomes.count) };
  } finally {
    await engine.stop();
  }
}

const seconds = (ms: number): number => Number((ms / 1000).toFixed(3));

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor((sorted.length - 1) / 2)]!;
}

async function main(): Promise<void> {
  const config = configFromArgs();
  const scratch = await createScratchDatabase(testPgUrl, 'tally_recovery_bench');
  try {
    const fillStarted = performance.now();
    await fill(scratch.url, config);
    console.log(`fill: ${config.balances} balances on partition 0, ${config.outcomes} outcomes on partition 1 in ${seconds(performance.now() - fillStarted)} s (not timed)`);
    const gcKinds = new Map<string, number>();
    let gcPauseMaxMs = 0;
    const observer = new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) {
        const kind = ({ 1: 'minor', 2: 'major', 4: 'incremental', 8: 'weakcb' } as Record<number, string>)[(entry as unknown as { detail: { kind: number } }).detail.kind] ?? 'other';
        gcKinds.set(kind, (gcKinds.get(kind) ?? 0) + 1);
        gcPauseMaxMs = Math.max(gcPauseMaxMs, entry.duration);
      }
    });
    observer.observe({ entryTypes: ['gc'] });
    let rssMax = 0;
    const rssTimer = setInterval(() => { rssMax = Math.max(rssMax, process.memoryUsage.rss()); }, 50);
    const runs: RunResult[] = [];
    for (let run = 0; run < config.runs; run++) {
      const result = await runOnce(scratch.url, config);
      runs.push(result);
      const b = result.balances;
      const o = result.outcomes;
      console.log(`run ${run + 1}: balances ${b.rows} in ${seconds(b.readMs + b.loadMs)} s (COPY + parse ${seconds(b.readMs)} s, load ${seconds(b.loadMs)} s of which ` +
        `inserting ${seconds(b.workerMs)} s); outcomes ${o.rows} in ${seconds(o.readMs + o.loadMs)} s (COPY + parse ${seconds(o.readMs)} s, load ${seconds(o.loadMs)} s)`);
    }
    clearInterval(rssTimer);
    observer.disconnect();
    const totals = runs.map((r) => r.balances.readMs + r.balances.loadMs);
    const best = runs[totals.indexOf(Math.min(...totals))]!;
    const bestMs = best.balances.readMs + best.balances.loadMs;
    const outcomeTotals = runs.map((r) => r.outcomes.readMs + r.outcomes.loadMs);
    const stateHash = best.outcomes.stateHash;
    const rowsPerSec = Math.round(config.balances / (bestMs / 1000));
    console.log(`balances: best ${seconds(bestMs)} s = ${(rowsPerSec / 1e6).toFixed(2)} M rows/s, median ${seconds(median(totals))} s (target <= ${TARGET_SECONDS} s for 10 M)`);
    console.log(`outcomes: best ${seconds(Math.min(...outcomeTotals))} s = ${(config.outcomes / (Math.min(...outcomeTotals) / 1000) / 1e6).toFixed(2)} M rows/s`);
    console.log(`garbage collections while recovering: ${JSON.stringify(Object.fromEntries(gcKinds))}, longest pause ${gcPauseMaxMs.toFixed(1)} ms; peak RSS ${(rssMax / 2 ** 20).toFixed(0)} MiB`);
    console.log(`checksum (stateHash after both partitions): ${stateHash}; sample of ${SAMPLE_ROWS} balances read back exactly`);
    console.log(JSON.stringify({
      bench: 'recovery', smoke: config.smoke, balances: config.balances, outcomes: config.outcomes, runs: config.runs,
      seconds: seconds(bestMs), secondsMedian: seconds(median(totals)), rowsPerSec,
      copyParseSeconds: seconds(best.balances.readMs), loadSeconds: seconds(best.balances.loadMs), insertSeconds: seconds(best.balances.workerMs),
      outcomeSeconds: seconds(Math.min(...outcomeTotals)), outcomesPerSec: Math.round(config.outcomes / (Math.min(...outcomeTotals) / 1000)),
      gcMinor: gcKinds.get('minor') ?? 0, gcMajor: gcKinds.get('major') ?? 0, gcPauseMaxMs: Number(gcPauseMaxMs.toFixed(1)), rssMaxMiB: Math.round(rssMax / 2 ** 20),
      targetSeconds: TARGET_SECONDS, withinTarget: config.smoke ? undefined : bestMs / 1000 <= TARGET_SECONDS, stateHash,
    }));
  } finally {
    await scratch.drop();
  }
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
