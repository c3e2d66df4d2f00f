// Sustained throughput of the balance engine on one thread with a realistic mix.
//
//   node dist/bench/engine.bench.js [--smoke]
//
// Set-up (not timed): a balance table preloaded with 1 million accounts x 4 currencies (--smoke: 100 000)
// (every user balance 10^12 available and 10^12 frozen, the external account of each
// partition holding the negative sum), 4 partitions whose dedup windows (2.5 million tx_ids
// each, 10 million in all) are filled with earlier tx_ids, so every recorded command evicts
// one as in a long-running engine, and a buffer of pre-generated command slots as large as
// the service's command ring (16 384 slots, 8 MiB; BENCH_SLOTS=524288 gives the 256 MiB
// buffer of docs/benchmarks.md's "Earlier figures", whose slots come from memory, not the cache): deposits, withdrawals, freezes, unfreezes, transfers, 5-leg settles with a
// fee; 10% exact duplicates of a recent command; 5% rejections (overdrafts, wrong partition,
// decoder-preset BAD_AMOUNT). Account choice is skewed like an exchange's: 80% of commands
// come from a hot 5% of the accounts, 20% from all of them.
//
// Steady state (timed): the buffer is replayed pass after pass for several seconds, in
// batches of 4096 commands given to BalanceEngine.applyBatch() as the engine thread would;
// between passes (not timed, allocation-free) every tx_id and tx_id hash is rewritten with the pass
// number so each pass brings fresh tx_ids while its duplicates stay duplicates (so the slots
// are in the cache when the pass reads them, as the consumer thread leaves them in the ring). Garbage
// collections during the steady state are counted with a PerformanceObserver. Per batch of
// 4096 commands the mean time per command goes into an HDR histogram; the process CPU time
// per command is reported too, since on a shared machine the wall clock also counts the time
// the thread waited for a core.
//
// Which core applies the batches: BENCH_CORE=auto (default: the native core where it is built,
// engine/native/balance_core.c), native or typescript; the summary names it.
//
// Variants for experiments (the defaults are the documented configuration): BENCH_ACCOUNTS,
// BENCH_DEDUP_WINDOW (per partition), BENCH_SLOTS, BENCH_SECONDS, BENCH_BATCHED=0 (apply()
// one by one), BENCH_FILL_DEDUP=0 (start with empty windows), BENCH_DECODE=0 (skip the
// decode bench). Huge pages: GLIBC_TUNABLES=glibc.malloc.hugetlb=1 (see "Performance" in
// engine/balance_engine.ts).
//
// The last line is a one-line JSON summary. If dist/bench/decode.bench.js exists, its
// runDecodeBench({ smoke }) runs after the engine and its decode rates join the summary.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { PerformanceObserver, performance } from 'node:perf_hooks';
import * as hdr from 'hdr-histogram-js';
import { BalanceEngine, COUNTER_DUPLICATES, EngineCoreName } from '../engine/balance_engine';
import { BalanceTable, USER_PARTITION } from '../engine/balance_table';
import { COMMAND_SLOT_BYTES, CommandType, TX_ID_HASH_OFFSET, TX_ID_OFFSET } from '../engine/command_layout';
import { CommandSlotWriter, SettleLegFields } from '../engine/command_slot_writer';
import { finalize32 } from '../engine/mix32';
import { OutputBuffer } from '../engine/output_buffer';
import { RejectCode } from '../engine/reject_code';

interface BenchConfig {
  readonly smoke: boolean;
  readonly accounts: number;
  readonly currencies: number;
  readonly partitions: number;
  readonly slots: number;
  readonly dedupWindowPerPartition: number;
  readonly steadySeconds: number;
  /** applyBatch() (true) or apply() one by one. */
  readonly batched: boolean;
  readonly fillDedupWindows: boolean;
}

const FULL: BenchConfig = { smoke: false, accounts: 1_000_000, currencies: 4, partitions: 4, slots: 1 << 14, dedupWindowPerPartition: 2_500_000, steadySeconds: 8, batched: true, fillDedupWindows: true };
const SMOKE: BenchConfig = { smoke: true, accounts: 100_000, currencies: 4, partitions: 4, slots: 1 << 14, dedupWindowPerPartition: 500_000, steadySeconds: 1, batched: true, fillDedupWindows: true };

const FIRST_ACCOUNT = 1000;
const PRELOAD_MINOR_UNITS = 1_000_000_000_000n;
const BATCH_COMMANDS = 4096;
// A ring of 512 KiB, like a real output ring that its consumer keeps up with (fits in L2).
const OUTPUT_SLOTS = 1 << 12;
const DUPLICATE_DISTANCE_MAX = 50_000;

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

function homeOf(accountIndex: number, partitions: number): number {
  return (finalize32(accountIndex) >>> 0) % partitions;
}

function preloadBalances(table: BalanceTable, config: BenchConfig, homes: Uint8Array): void {
  const externalTotals = new Array<bigint>(config.partitions * config.currencies).fill(0n);
  const lo = Number(PRELOAD_MINOR_UNITS & 0xffffffffn);
  const hi = Number(PRELOAD_MINOR_UNITS >> 32n);
  for (let index = 0; index < config.accounts; index++) {
    for (let currency = 0; currency < config.currencies; currency++) {
      table.insert(FIRST_ACCOUNT + index, 0, currency, USER_PARTITION, lo, hi, lo, hi);
      externalTotals[homes[index] * config.currencies + currency] -= 2n * PRELOAD_MINOR_UNITS;
    }
  }
  for (let partition = 0; partition < config.partitions; partition++) {
    for (let currency = 0; currency < config.currencies; currency++) {
      const total = BigInt.asUintN(64, externalTotals[partition * config.currencies + currency]);
      table.insert(0, 0, currency, partition, Number(total & 0xffffffffn), Number(BigInt.asIntN(32, total >> 32n)), 0, 0);
    }
  }
}

function generateCommands(buffer: SharedArrayBuffer, config: BenchConfig, homes: Uint8Array): void {
  const writer = new CommandSlotWriter(buffer);
  const bytes = new Uint8Array(buffer);
  const random = prng(20240601);
  const hotAccounts = Math.max(1, Math.floor(config.accounts / 20));
  const pickAccount = (): number => (random() < 0.8 ? Math.floor(random() * hotAccounts) : Math.floor(random() * config.accounts));
  const amount = (): bigint => BigInt(1 + Math.floor(random() * 1_000_000));
  for (let index = 0; index < config.slots; index++) {
    const offset = index * COMMAND_SLOT_BYTES;
    const r = random();
    if (r < 0.1 && index > 0) {
      const source = index - 1 - Math.floor(random() * Math.min(index, DUPLICATE_DISTANCE_MAX));
      bytes.copyWithin(offset, source * COMMAND_SLOT_BYTES, (source + 1) * COMMAND_SLOT_BYTES);
      continue;
    }
    const accountIndex = pickAccount();
    const home = homes[accountIndex];
    const account = BigInt(FIRST_ACCOUNT + accountIndex);
    const currency = Math.floor(random() * config.currencies);
    const txId = `p00000000-${index.toString().padStart(9, '0')}`;
    const base = { txId, partition: home, kafkaOffset: index, account, currency, accountHome: home };
    if (r < 0.13) writer.write(offset, { ...base, type: CommandType.Withdraw, amount: PRELOAD_MINOR_UNITS * 1000n });
    else if (r < 0.14) writer.write(offset, { ...base, type: CommandType.Deposit, amount: amount(), partition: (home + 1) % config.partitions });
    else if (r < 0.15) writer.write(offset, { ...base, type: CommandType.Deposit, amount: 0n, rejectCode: RejectCode.BadAmount });
    else if (r < 0.36) writer.write(offset, { ...base, type: CommandType.Deposit, amount: amount() });
    else if (r < 0.52) writer.write(offset, { ...base, type: CommandType.Withdraw, amount: amount() });
    else if (r < 0.65) writer.write(offset, { ...base, type: CommandType.Freeze, amount: amount() });
    else if (r < 0.78) writer.write(offset, { ...base, type: CommandType.Unfreeze, amount: amount() });
    else if (r < 0.9) {
      let toIndex = pickAccount();
      while (homes[toIndex] !== home) toIndex = pickAccount();
      writer.write(offset, { ...base, type: CommandType.Transfer, counterAccount: BigInt(FIRST_ACCOUNT + toIndex), counterHome: home, amount: amount() });
    } else {
      writer.write(offset, { ...base, type: CommandType.Settle, legs: settleLegs(account, home, amount(), amount(), 1 + Math.floor(random() * (config.currencies - 1))) });
    }
  }
}

/** One buyer's side of a trade: pays `quote` of currency 0 from frozen (0.1% fee), gets `base` of `baseCurrency`. */
function settleLegs(account: bigint, home: number, quote: bigint, base: bigint, baseCurrency: number): SettleLegFields[] {
  const fee = quote / 1000n;
  return [
    { account, currency: 0, home, available: 0n, frozen: -quote },
    { account: 1n, currency: 0, home, available: fee, frozen: 0n },
    { account: 2n, currency: 0, home, available: quote - fee, frozen: 0n },
    { account: 2n, currency: baseCurrency, home, available: -base, frozen: 0n },
    { account, currency: baseCurrency, home, available: base, frozen: 0n },
  ];
}

const HEX = '0123456789abcdef';

/** Gives every tx_id of the buffer the pass number (allocation-free; duplicates stay duplicates). */
function stampPass(bytes: Uint8Array, words: Uint32Array, slots: number, pass: number): void {
  const hashLo = finalize32(pass * 2 + 1);
  const hashHi = finalize32(pass * 2 + 2);
  const previousLo = pass === 0 ? 0 : finalize32(pass * 2 - 1);
  const previousHi = pass === 0 ? 0 : finalize32(pass * 2);
  for (let index = 0; index < slots; index++) {
    const offset = index * COMMAND_SLOT_BYTES;
    for (let digit = 0; digit < 8; digit++) bytes[offset + TX_ID_OFFSET + 1 + digit] = HEX.charCodeAt((pass >>> (28 - digit * 4)) & 15);
    const hashWord = (offset + TX_ID_HASH_OFFSET) >> 2;
    words[hashWord] = words[hashWord] ^ previousLo ^ hashLo;
    words[hashWord + 1] = words[hashWord + 1] ^ previousHi ^ hashHi;
  }
}

const batchOffsets = new Int32Array(BATCH_COMMANDS);

/**
 * Applies the buffer's commands in batches of BATCH_COMMANDS, as the engine thread does with
 * what the command ring holds: with applyBatch(), or with apply() one by one.
 */
function runPass(engine: BalanceEngine, slots: number, batched: boolean, histogram: hdr.Histogram): void {
  for (let start = 0; start < slots; start += BATCH_COMMANDS) {
    const startedMs = performance.now();
    const end = Math.min(slots, start + BATCH_COMMANDS);
    if (batched) {
      for (let index = start; index < end; index++) batchOffsets[index - start] = index * COMMAND_SLOT_BYTES;
      engine.applyBatch(batchOffsets, end - start);
    } else {
      for (let index = start; index < end; index++) engine.apply(index * COMMAND_SLOT_BYTES);
    }
    histogram.recordValue(Math.round(((performance.now() - startedMs) * 1e6) / (end - start)));
  }
}

/**
 * Fills every partition's dedup window with tx_ids that the workload never sends, as in an
 * engine that has been running for a while: the steady state then evicts one tx_id per
 * recorded command from the start instead of only once the windows have filled up.
 */
function fillDedupWindows(engine: BalanceEngine, partitions: number): void {
  const words = new Int32Array(16);
  const bytes = new Uint8Array(words.buffer);
  const prefix = 'warm-up-';
  for (let i = 0; i < prefix.length; i++) bytes[i] = prefix.charCodeAt(i);
  for (let partition = 0; partition < partitions; partition++) {
    const dedup = engine.dedupIndexOf(partition)!;
    for (let n = 0; n < dedup.capacity; n++) {
      words[2] = partition;
      words[3] = n;
      const hashLo = finalize32(n * 2 + 1 + partition * 0x10000001);
      const hashHi = finalize32(n * 2 + 2 + partition * 0x10000001);
      dedup.insert(hashLo, hashHi, words, 0, 16, 0, 0, 1, 0, 0, 0);
    }
  }
}

async function runDecodeBenchIfPresent(smoke: boolean): Promise<Record<string, number | string>> {
  const path = join(__dirname, 'decode.bench.js');
  if (!existsSync(path)) return {};
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const module = require(path) as { runDecodeBench?: (options: { smoke: boolean }) => unknown };
    if (typeof module.runDecodeBench !== 'function') return { decodeBench: 'runDecodeBench not exported' };
    const result = (await module.runDecodeBench({ smoke })) as { jsonDecodesPerSec?: number; binaryDecodesPerSec?: number };
    return { jsonDecodesPerSec: result.jsonDecodesPerSec ?? NaN, binaryDecodesPerSec: result.binaryDecodesPerSec ?? NaN };
  } catch (error) {
    return { decodeBench: `failed: ${(error as Error).message}` };
  }
}

async function main(): Promise<void> {
  const base = process.argv.includes('--smoke') ? SMOKE : FULL;
  // Overrides for experiments; the defaults are the documented configuration.
  const config: BenchConfig = {
    ...base,
    accounts: Number(process.env.BENCH_ACCOUNTS ?? base.accounts),
    steadySeconds: Number(process.env.BENCH_SECONDS ?? base.steadySeconds),
    dedupWindowPerPartition: Number(process.env.BENCH_DEDUP_WINDOW ?? base.dedupWindowPerPartition),
    slots: Number(process.env.BENCH_SLOTS ?? base.slots),
    batched: (process.env.BENCH_BATCHED ?? (base.batched ? '1' : '0')) !== '0',
    fillDedupWindows: (process.env.BENCH_FILL_DEDUP ?? '1') !== '0',
  };
  const setupStartedMs = performance.now();
  const homes = new Uint8Array(config.accounts);
  for (let index = 0; index < config.accounts; index++) homes[index] = homeOf(index, config.partitions);
  const table = BalanceTable.create({ capacity: config.accounts * config.currencies + 64 * config.partitions * config.currencies });
  preloadBalances(table, config, homes);
  const commands = new SharedArrayBuffer(config.slots * COMMAND_SLOT_BYTES);
  generateCommands(commands, config, homes);
  const output = new OutputBuffer(OUTPUT_SLOTS);
  const engine = new BalanceEngine({ table, commands, output, core: (process.env.BENCH_CORE ?? 'auto') as EngineCoreName });
  for (let partition = 0; partition < config.partitions; partition++) engine.assignPartition(partition, { dedupWindow: config.dedupWindowPerPartition });
  if (config.fillDedupWindows) fillDedupWindows(engine, config.partitions);
  const bytes = new Uint8Array(commands);
  const words = new Uint32Array(commands);
  const histogram = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 10_000_000, numberOfSignificantValueDigits: 3 });
  const warmup = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 10_000_000, numberOfSignificantValueDigits: 3 });
  let pass = 0;
  stampPass(bytes, words, config.slots, pass);
  runPass(engine, config.slots, config.batched, warmup);
  const setupSeconds = (performance.now() - setupStartedMs) / 1000;
  console.log(`set-up ${setupSeconds.toFixed(1)} s: ${config.accounts} accounts x ${config.currencies} currencies, ${config.partitions} partitions, ${config.slots} pre-generated commands, warm-up pass done`);

  const gcKinds = new Map<string, number>();
  // Entries arrive asynchronously (after the synchronous steady loop): they are counted by
  // their start time, so collections of the set-up or after the loop are left out.
  let steadyStartedMs = Infinity;
  let steadyEndedMs = Infinity;
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      if (entry.startTime < steadyStartedMs || entry.startTime > steadyEndedMs) continue;
      const kind = (entry as unknown as { detail?: { kind?: number } }).detail?.kind ?? 0;
      const name = kind === 1 ? 'minor' : kind === 2 ? 'major' : kind === 4 ? 'incremental' : kind === 8 ? 'weakcb' : `kind${kind}`;
      gcKinds.set(name, (gcKinds.get(name) ?? 0) + 1);
    }
  });
  observer.observe({ entryTypes: ['gc'] });
  await new Promise((resolve) => setImmediate(resolve));
  steadyStartedMs = performance.now();
  const countersBefore = Float64Array.from(engine.counters);
  let timedMs = 0;
  let timedCommands = 0;
  let passes = 0;
  // process.cpuUsage() allocates its answer: read once around the loop, not per pass (with
  // passes of 16 384 commands, thousands of answers made the odd scavenge). The stamping
  // between passes runs on this thread too: its CPU time per pass, measured here over
  // stamps alone, is taken off the loop's.
  const calibrationPasses = 50;
  const calibrationBefore = process.cpuUsage();
  for (let i = 0; i < calibrationPasses; i++) stampPass(bytes, words, config.slots, ++pass);
  const calibration = process.cpuUsage(calibrationBefore);
  const stampCpuMicros = (calibration.user + calibration.system) / calibrationPasses;
  const cpuBefore = process.cpuUsage();
  while (timedMs < config.steadySeconds * 1000) {
    pass++;
    passes++;
    stampPass(bytes, words, config.slots, pass);
    const startedMs = performance.now();
    runPass(engine, config.slots, config.batched, histogram);
    timedMs += performance.now() - startedMs;
    timedCommands += config.slots;
  }
  const cpu = process.cpuUsage(cpuBefore);
  const timedCpuMicros = cpu.user + cpu.system - passes * stampCpuMicros;
  steadyEndedMs = performance.now();
  await new Promise((resolve) => setTimeout(resolve, 100));
  observer.disconnect();

  const counters = engine.counters.map((value, index) => value - countersBefore[index]);
  const rejected = counters.reduce((sum, value, index) => (index > 0 && index !== COUNTER_DUPLICATES ? sum + value : sum), 0);
  const commandsPerSec = Math.round(timedCommands / (timedMs / 1000));
  const stateHash = engine.stateHash();
  const gc = Object.fromEntries(gcKinds);
  const percentile = (p: number): number => histogram.getValueAtPercentile(p);
  console.log(`core: ${engine.coreName}`);
  console.log(`steady state: ${timedCommands} commands in ${(timedMs / 1000).toFixed(2)} s = ${(commandsPerSec / 1e6).toFixed(2)} M commands/s on one thread`);
  console.log(`mix: accepted ${counters[0]}, duplicates ${counters[COUNTER_DUPLICATES]}, rejected ${rejected} (${Array.from(counters.slice(1, 11)).join('/')} by reason 1..10)`);
  console.log(`ns per command (mean of each ${BATCH_COMMANDS}-command batch): p50 ${percentile(50)} p99 ${percentile(99)} p99.9 ${percentile(99.9)} max ${histogram.maxValue}`);
  console.log(`garbage collections in the steady state: ${JSON.stringify(gc)}`);
  console.log(`checksum (stateHash): ${stateHash}; table ${table.count} balances, full rejections ${table.fullRejections}`);
  const decode = process.env.BENCH_DECODE === '0' ? {} : await runDecodeBenchIfPresent(config.smoke);
  const summary = {
    bench: 'engine', core: engine.coreName, slots: config.slots, smoke: config.smoke, accounts: config.accounts, currencies: config.currencies, partitions: config.partitions,
    commands: timedCommands, seconds: Number((timedMs / 1000).toFixed(3)), commandsPerSec,
    // CPU time of the process per command: unlike the wall clock, it leaves out the time the
    // thread waited for a core on a shared machine.
    cpuNsPerCommand: Math.round((timedCpuMicros * 1000) / timedCommands),
    duplicates: counters[COUNTER_DUPLICATES], rejected, nsPerCommandP50: percentile(50), nsPerCommandP99: percentile(99),
    gcMinor: gcKinds.get('minor') ?? 0, gcMajor: gcKinds.get('major') ?? 0, gcTotal: Array.from(gcKinds.values()).reduce((a, b) => a + b, 0),
    stateHash, ...decode,
  };
  console.log(JSON.stringify(summary));
}

void main();
