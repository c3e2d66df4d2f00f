// bench:query — balance GETs per second and latency percentiles over loopback, against a real
// `tally start` process, with and without ingest running at the same time.
//
//   node dist/bench/query.bench.js [--smoke] [--client wrk|autocannon] [--seconds N]
//                                  [--connections N] [--pipelining N] [--ingest-rates N,N]
//                                  [--accounts N] [--load-processes N]
//
// The load client: wrk (C; bench/query/wrk_load.ts) when it is on PATH, else autocannon
// (Node; bench/query/autocannon_load.ts); --client picks one. wrk is several times cheaper
// per request, which matters on a 2-core machine where client and server share the cores.
// Install it with `apt-get install -y wrk` (Debian/Ubuntu package, wrk 4.1.0). CI has no wrk
// and runs --smoke with autocannon. --load-processes is autocannon's child processes or
// wrk's threads (default 1).
//
// Set-up (not timed): a scratch database, a commands topic and an events topic of their own
// (8 partitions), and `tally start` as a child process. Every account gets a deposit in each
// of the 4 currencies through Kafka (binary commands); the bench waits until all of it is
// committed to PostgreSQL.
//
// Runs (timed, side by side in one process): the client sends
// GET /v1/accounts/{account}/balances and GET /v1/accounts/{account}/balances/{currency},
// half each, walking a fixed seeded list of 2 048 random accounts, without pipelining and
// pipelined; first with the server otherwise idle, then while a producer here offers deposits
// of the benchmarked accounts at each rate of --ingest-rates, so queries read balance slots
// the engine thread is writing (the seqlock's contended path). Each run warms up, then is
// timed; it starts with all earlier commands durable; the ingest rate reported is what became
// durable in PostgreSQL during the run. Defaults: ingest at 5 000 and 20 000 commands/s, and
// the shape each client did best with on the 2-core machine (docs/benchmarks.md): wrk
// 16 connections × 32 pipelined, autocannon 8 × 64.
//
// Where the load comes from: the client runs in processes of its own, so its CPU is not that
// of the producer and sampler here. On these 2-core machines it still competes for CPU with
// the server, the engine thread, PostgreSQL and Kafka; the CPU each side used is printed per
// run, with the load average. Latency (µs): autocannon's is per request, from its write into
// the pipeline; wrk's is per write — with pipelining, per batch of `pipelining` requests, from
// the batch's write to its last answer (see the clients' files).
//
// Correctness: every run must end with 0 non-2xx answers, errors and timeouts. While it runs,
// a sampler here reads random accounts and checks each body: every currency present, frozen
// zero, available between the seeded amount and the seeded amount plus every deposit offered
// so far. At the end, once the ingest is durable, a sample of accounts must answer exactly the
// seeded amount plus the deposits sent; the checksum covers those bodies.
//
// The last line is a one-line JSON summary.

import { readFileSync } from 'node:fs';
import os from 'node:os';
import { parseArgs } from 'node:util';
import Kafka from '@confluentinc/kafka-javascript';
import pg from 'pg';
import { AmountSign, formatAmountBigInt, parseAmount } from '../engine/amount';
import { encodeCommandBinary } from '../engine/binary_encoder';
import { RejectCode } from '../engine/reject_code';
import { SeededRandom } from '../engine/wire_fixtures';
import { CommandProducer } from '../io/command_producer';
import { httpPortOf, nextOffsets } from '../io/failure_support';
import { TallyProcess, sleep, spawnTally, waitFor } from '../io/tally_process';
import { createTopic, testKafkaBrokers, testPgUrl, uniqueName } from '../io/test_services';
import { ScratchDatabase, createScratchDatabase } from '../persist/scratch_database';
import { autocannonLoad } from './query/autocannon_load';
import { LatencyUs, LoadClientName, LoadRequest, LoadResult } from './query/load_client';
import { findWrk, wrkLoad } from './query/wrk_load';

const PARTITIONS = 8;
const CURRENCIES = ['USDT', 'BTC', 'ETH', 'SOL'] as const;
const SCALE = 8;
const FIRST_ACCOUNT = 1_000_000;
const PATH_COUNT = 2_048;
const TARGET_REQUESTS_PER_SEC = 100_000;
const DURABLE_TIMEOUT_MS = 300_000;
const TICK_MS = 10;

interface BenchOptions {
  readonly smoke: boolean;
  readonly client: LoadClientName;
  /** The wrk executable when the client is wrk. */
  readonly wrk: string | undefined;
  readonly accounts: number;
  readonly seconds: number;
  readonly warmupSeconds: number;
  readonly connections: number;
  readonly pipelining: number;
  readonly ingestRates: readonly number[];
  readonly loadProcesses: number;
  readonly verifyAccounts: number;
}

function readOptions(): BenchOptions {
  const { values } = parseArgs({
    options: {
      smoke: { type: 'boolean', default: false }, client: { type: 'string' },
      seconds: { type: 'string' }, connections: { type: 'string' }, pipelining: { type: 'string' },
      'ingest-rates': { type: 'string' }, accounts: { type: 'string' }, 'load-processes': { type: 'string' },
    },
  });
  const smoke = values.smoke === true || process.env['BENCH_SMOKE'] === '1';
  const number = (text: string | undefined, fallback: number): number => {
    if (text === undefined) return fallback;
    const value = Number(text);
    if (!Number.isSafeInteger(value) || value < 0) throw new Error(`expected a whole number, got "${text}"`);
    return value;
  };
  const wrk = findWrk();
  const client = values.client ?? (wrk === undefined ? 'autocannon' : 'wrk');
  if (client !== 'wrk' && client !== 'autocannon') throw new Error(`--client must be wrk or autocannon, got "${client}"`);
  if (client === 'wrk' && wrk === undefined) throw new Error('--client wrk: wrk is not on PATH (install it with `apt-get install -y wrk`)');
  return {
    smoke, client, wrk,
    accounts: number(values.accounts, smoke ? 2_000 : 100_000),
    seconds: number(values.seconds, smoke ? 2 : 10),
    warmupSeconds: smoke ? 1 : 2,
    connections: number(values.connections, smoke ? 4 : client === 'wrk' ? 16 : 8),
    pipelining: number(values.pipelining, smoke ? 16 : client === 'wrk' ? 32 : 64),
    ingestRates: (values['ingest-rates'] ?? (smoke ? '2000' : '5000,20000')).split(',').map((rate) => number(rate, 0)).filter((rate) => rate > 0),
    loadProcesses: number(values['load-processes'], 1),
    verifyAccounts: smoke ? 500 : 5_000,
  };
}

// ---------------------------------------------------------------------------------------
// The expected ledger: seeded deposits plus every ingest deposit sent, per (account, currency).

class ExpectedBalances {
  private readonly ingestMinor: Float64Array;

  constructor(readonly accounts: number) {
    this.ingestMinor = new Float64Array(accounts * CURRENCIES.length);
  }

  static accountId(index: number): string {
    return String(FIRST_ACCOUNT + index);
  }

  // Varied digits on both sides of the point, never zero.
  seedMinor(index: number, currency: number): bigint {
    return BigInt(((index * 7_919 + currency * 104_729) % 999_983) + 1) * 10_000_000n + BigInt((index * 31 + currency) % 9_999_991);
  }

  addIngest(index: number, currency: number, minor: number): void {
    this.ingestMinor[index * CURRENCIES.length + currency] += minor;
  }

  ingestSum(index: number, currency: number): bigint {
    return BigInt(this.ingestMinor[index * CURRENCIES.length + currency]!);
  }
}

// ---------------------------------------------------------------------------------------
// Commands through Kafka.

function depositValue(txId: string, account: string, currency: number, minor: bigint): Buffer {
  return Buffer.from(encodeCommandBinary({ type: 'deposit', tx_id: txId, account, currency: CURRENCIES[currency]!, amount: formatAmountBigInt(minor, SCALE) }));
}

async function seed(producer: CommandProducer, expected: ExpectedBalances): Promise<number> {
  let sent = 0;
  for (let index = 0; index < expected.accounts; index++) {
    const account = ExpectedBalances.accountId(index);
    for (let currency = 0; currency < CURRENCIES.length; currency++) {
      producer.send(account, depositValue(`seed-${account}-${currency}`, account, currency, expected.seedMinor(index, currency)));
      sent++;
    }
    if (producer.unacknowledged >= 100_000) await producer.flush();
  }
  await producer.flush();
  return sent;
}

// Offers deposits of the benchmarked accounts at a fixed rate, spread over accounts and
// currencies by a seeded generator; amounts of 1 to 9 minor units.
class IngestLoad {
  sent = 0;
  private timer: NodeJS.Timeout | undefined;
  private failure: unknown;
  private readonly random = new SeededRandom(7);

  constructor(private readonly producer: CommandProducer, private readonly expected: ExpectedBalances) {}

  start(ratePerSec: number): void {
    const started = performance.now();
    const base = this.sent;
    this.timer = setInterval(() => {
      const due = Math.floor(((performance.now() - started) / 1000) * ratePerSec) + base;
      // Bounded catch-up after a stall: at most a tenth of a second of commands per tick.
      const count = Math.min(due - this.sent, Math.ceil(ratePerSec / 10));
      try {
        for (let i = 0; i < count; i++) this.sendOne();
      } catch (error) {
        this.failure ??= error;
        clearInterval(this.timer);
      }
    }, TICK_MS);
  }

  // Stops offering commands; throws what stopped the producer, if anything did.
  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    if (this.failure !== undefined) throw new Error(`the ingest producer failed: ${String(this.failure)}`);
  }

  private sendOne(): void {
    const index = this.random.int(this.expected.accounts);
    const currency = this.random.int(CURRENCIES.length);
    const minor = 1 + this.random.int(9);
    const account = ExpectedBalances.accountId(index);
    this.producer.send(account, depositValue(`ingest-${this.sent}`, account, currency, BigInt(minor)));
    this.expected.addIngest(index, currency, minor);
    this.sent++;
  }
}

async function durableCount(client: pg.Client, topic: string): Promise<number> {
  return (await nextOffsets(client, topic, PARTITIONS)).reduce((a, b) => a + b, 0);
}

async function waitDurable(client: pg.Client, topic: string, producer: CommandProducer, tally: TallyProcess): Promise<void> {
  await producer.flush();
  const target = [...producer.lastOffsets].map(([partition, offset]) => [partition, offset + 1] as const);
  await waitFor('every command to be committed to PostgreSQL', DURABLE_TIMEOUT_MS, async () => {
    const offsets = await nextOffsets(client, topic, PARTITIONS);
    return target.every(([partition, next]) => offsets[partition]! >= next);
  }, tally);
}

// ---------------------------------------------------------------------------------------
// Checking answers.

interface BalancesBody {
  readonly account: string;
  readonly balances: ReadonlyArray<{ readonly currency: string; readonly available: string; readonly frozen: string }>;
}

function minorOf(text: string): bigint {
  if (text === '0') return 0n;
  const parsed = parseAmount(text, SCALE, AmountSign.Positive);
  if (parsed.rejectCode !== RejectCode.None) throw new Error(`not an amount of scale ${SCALE}: "${text}"`);
  return parsed.minorUnits;
}

// Returns a description of what is wrong with `body`, or undefined. `exact` demands the
// final balance; otherwise anything between the seed and seed + deposits sent so far.
function checkBody(body: BalancesBody, index: number, currencies: readonly number[], expected: ExpectedBalances, exact: boolean): string | undefined {
  const account = ExpectedBalances.accountId(index);
  if (body.account !== account) return `account ${body.account}, expected ${account}`;
  if (body.balances.length !== currencies.length) return `${body.balances.length} balances, expected ${currencies.length}`;
  for (const currency of currencies) {
    const balance = body.balances.find((b) => b.currency === CURRENCIES[currency]);
    if (balance === undefined) return `no ${CURRENCIES[currency]} balance`;
    if (minorOf(balance.frozen) !== 0n) return `${CURRENCIES[currency]} frozen ${balance.frozen}, expected 0`;
    const low = expected.seedMinor(index, currency);
    const high = low + expected.ingestSum(index, currency);
    const available = minorOf(balance.available);
    if (available < (exact ? high : low) || available > high) return `${CURRENCIES[currency]} available ${balance.available}, expected ${exact ? '' : `${formatAmountBigInt(low, SCALE)} to `}${formatAmountBigInt(high, SCALE)}`;
  }
  return undefined;
}

async function getBody(port: number, index: number, currency: number | undefined): Promise<{ status: number; text: string }> {
  const suffix = currency === undefined ? '' : `/${CURRENCIES[currency]}`;
  const response = await fetch(`http://127.0.0.1:${port}/v1/accounts/${ExpectedBalances.accountId(index)}/balances${suffix}`);
  return { status: response.status, text: await response.text() };
}

async function checkOne(port: number, index: number, currency: number | undefined, expected: ExpectedBalances, exact: boolean): Promise<string> {
  const { status, text } = await getBody(port, index, currency);
  const problem = status !== 200 ? `status ${status}` : checkBody(JSON.parse(text) as BalancesBody, index, currency === undefined ? [0, 1, 2, 3] : [currency], expected, exact);
  if (problem !== undefined) throw new Error(`account ${ExpectedBalances.accountId(index)}${currency === undefined ? '' : `/${CURRENCIES[currency]}`}: ${problem}; body ${text}`);
  return text;
}

// Reads random accounts while a run goes on; a wrong answer stops it and fails the bench.
class Sampler {
  checked = 0;
  private running = false;
  private failure: unknown;
  private done: Promise<void> = Promise.resolve();
  private readonly random = new SeededRandom(11);

  constructor(private readonly port: number, private readonly expected: ExpectedBalances) {}

  start(): void {
    this.running = true;
    this.done = this.loop().catch((error: unknown) => {
      this.failure = error;
    });
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.done;
    if (this.failure !== undefined) throw this.failure;
  }

  private async loop(): Promise<void> {
    while (this.running) {
      const index = this.random.int(this.expected.accounts);
      const currency = this.random.int(CURRENCIES.length + 1);
      await checkOne(this.port, index, currency === CURRENCIES.length ? undefined : currency, this.expected, false);
      this.checked++;
      await sleep(5);
    }
  }
}

// FNV-1a over the final bodies of a seeded sample of accounts, each checked exactly.
async function verifyFinal(port: number, expected: ExpectedBalances, count: number): Promise<{ checked: number; checksum: string }> {
  const random = new SeededRandom(13);
  let hash = 0x811c9dc5;
  for (let i = 0; i < count; i++) {
    const index = random.int(expected.accounts);
    const currency = i % 2 === 0 ? undefined : random.int(CURRENCIES.length);
    const text = await checkOne(port, index, currency, expected, true);
    for (let c = 0; c < text.length; c++) hash = Math.imul(hash ^ text.charCodeAt(c), 0x01000193) >>> 0;
  }
  return { checked: count, checksum: hash.toString(16).padStart(8, '0') };
}

// ---------------------------------------------------------------------------------------
// The load: wrk or autocannon (bench/query/).

function generateLoad(options: BenchOptions, request: LoadRequest, onMeasuring: () => void): Promise<LoadResult> {
  return options.client === 'wrk' ? wrkLoad(options.wrk!, request, onMeasuring) : autocannonLoad(request, onMeasuring);
}

function queryPaths(accounts: number): string[] {
  const random = new SeededRandom(5);
  return Array.from({ length: PATH_COUNT }, (_, i) => {
    const account = ExpectedBalances.accountId(random.int(accounts));
    return i % 2 === 0 ? `/v1/accounts/${account}/balances` : `/v1/accounts/${account}/balances/${CURRENCIES[random.int(CURRENCIES.length)]}`;
  });
}

// ---------------------------------------------------------------------------------------
// CPU accounting from /proc (Linux): machine busy share and one process's CPU time.

function machineTicks(): { busy: number; total: number } {
  const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const idle = fields[3]! + fields[4]!;
  const total = fields.reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
}

function processCpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
}

// ---------------------------------------------------------------------------------------
// One run and the whole bench.

interface RunRow {
  readonly client: LoadClientName;
  readonly ingestRate: number;
  readonly connections: number;
  readonly pipelining: number;
  readonly requestsPerSec: number;
  readonly requests: number;
  readonly latencyUs: LatencyUs;
  readonly latencyPer: 'request' | 'batch';
  readonly non2xx: number;
  readonly errors: number;
  readonly timeouts: number;
  readonly ingestOfferedPerSec: number;
  readonly ingestDurablePerSec: number;
  readonly machineBusyPercent: number;
  readonly tallyCpuPercent: number;
  readonly loadGeneratorCpuPercent: number;
  readonly tallyCpuUsPerRequest: number;
  readonly loadGeneratorCpuUsPerRequest: number;
  /** The 1-minute load average (`uptime`) when the timed part started and when it ended. */
  readonly loadAverage: readonly [number, number];
  readonly sampled: number;
}

interface Harness {
  readonly options: BenchOptions;
  readonly port: number;
  readonly tally: TallyProcess;
  readonly client: pg.Client;
  readonly topic: string;
  readonly expected: ExpectedBalances;
  readonly ingest: IngestLoad;
  readonly producer: CommandProducer;
  readonly paths: readonly string[];
}

interface Mark {
  readonly at: number;
  readonly machine: { busy: number; total: number };
  readonly tallyCpuMs: number;
  readonly durable: number;
  readonly sent: number;
  readonly loadAverage: number;
}

async function mark(harness: Harness): Promise<Mark> {
  const at = performance.now();
  const machine = machineTicks();
  const tallyCpuMs = processCpuMs(harness.tally.child.pid!);
  const sent = harness.ingest.sent;
  return { at, machine, tallyCpuMs, sent, loadAverage: Number(os.loadavg()[0]!.toFixed(2)), durable: await durableCount(harness.client, harness.topic) };
}

// One run: ingest (if any) starts first, the client warms up, then the timed part. The run
// starts with everything sent before it durable, so runs do not inherit a backlog.
async function runQueries(harness: Harness, pipelining: number, ingestRate: number): Promise<RunRow> {
  await waitDurable(harness.client, harness.topic, harness.producer, harness.tally);
  const { options } = harness;
  const sampler = new Sampler(harness.port, harness.expected);
  if (ingestRate > 0) harness.ingest.start(ingestRate);
  let start: Promise<Mark> | undefined;
  let result: LoadResult;
  try {
    result = await generateLoad(options, {
      port: harness.port, paths: harness.paths, connections: options.connections, pipelining, seconds: options.seconds, warmupSeconds: options.warmupSeconds,
      workers: options.loadProcesses,
    }, () => {
      start = mark(harness);
      sampler.start();
    });
  } finally {
    try {
      harness.ingest.stop();
    } finally {
      await sampler.stop();
    }
  }
  const end = await mark(harness);
  return summarize(harness, pipelining, ingestRate, result, await start!, end, sampler.checked);
}

function summarize(harness: Harness, pipelining: number, ingestRate: number, result: LoadResult, start: Mark, end: Mark, sampled: number): RunRow {
  const wallSeconds = (end.at - start.at) / 1000;
  const percent = (cpuMs: number): number => Math.round((cpuMs / 10) / wallSeconds);
  return {
    client: result.client, ingestRate, connections: harness.options.connections, pipelining,
    requestsPerSec: Math.round(result.requests / result.seconds), requests: result.requests, latencyUs: result.latencyUs, latencyPer: result.latencyPer,
    non2xx: result.non2xx, errors: result.errors, timeouts: result.timeouts,
    ingestOfferedPerSec: Math.round((end.sent - start.sent) / wallSeconds), ingestDurablePerSec: Math.round((end.durable - start.durable) / wallSeconds),
    machineBusyPercent: Math.round((100 * (end.machine.busy - start.machine.busy)) / (end.machine.total - start.machine.total)),
    tallyCpuPercent: percent(end.tallyCpuMs - start.tallyCpuMs), loadGeneratorCpuPercent: percent(result.cpuMs),
    tallyCpuUsPerRequest: perRequestUs(end.tallyCpuMs - start.tallyCpuMs, result.requests),
    loadGeneratorCpuUsPerRequest: perRequestUs(result.cpuMs, result.requests), loadAverage: [start.loadAverage, end.loadAverage], sampled,
  };
}

function perRequestUs(cpuMs: number, requests: number): number {
  return requests === 0 ? 0 : Number(((cpuMs * 1000) / requests).toFixed(1));
}

function printRow(row: RunRow): void {
  const l = row.latencyUs;
  console.log(`${row.ingestRate > 0 ? `ingest ${row.ingestRate}/s` : 'no ingest'}, ${row.connections} connections × pipelining ${row.pipelining}: ` +
    `${row.requestsPerSec} requests/s (${row.requests} requests), latency per ${row.latencyPer} µs p50 ${l.p50} p90 ${l.p90} p99 ${l.p99} p99.9 ${l.p99_9} max ${l.max}; ` +
    `non-2xx ${row.non2xx}, errors ${row.errors}, timeouts ${row.timeouts}; ingest offered ${row.ingestOfferedPerSec}/s durable ${row.ingestDurablePerSec}/s; ` +
    `CPU: machine ${row.machineBusyPercent} % busy, tally ${row.tallyCpuPercent} % of one core (${row.tallyCpuUsPerRequest} µs/request), ` +
    `${row.client} ${row.loadGeneratorCpuPercent} % (${row.loadGeneratorCpuUsPerRequest} µs/request); load average ${row.loadAverage[0]} → ${row.loadAverage[1]}; ` +
    `${row.sampled} answers sampled and checked`);
  if (row.non2xx + row.errors + row.timeouts > 0) throw new Error(`the server answered ${row.non2xx} non-2xx, ${row.errors} errors, ${row.timeouts} timeouts`);
}

async function startTally(database: ScratchDatabase, commandsTopic: string, eventsTopic: string): Promise<{ tally: TallyProcess; port: number }> {
  const tally = spawnTally({
    TALLY_KAFKA_BROKERS: testKafkaBrokers, TALLY_PG_URL: database.url, TALLY_COMMANDS_TOPIC: commandsTopic, TALLY_EVENTS_TOPIC: eventsTopic,
    TALLY_COMMAND_PARTITIONS: String(PARTITIONS), TALLY_CONSUMER_GROUP: uniqueName('bench-query'), TALLY_INSTANCE_ID: 'bench-query',
    TALLY_CURRENCIES: CURRENCIES.map((code) => `${code}:${SCALE}`).join(','),
  });
  // A bench that dies of an uncaught error must not leave the service running.
  process.once('exit', () => tally.child.kill('SIGKILL'));
  let port: number | undefined;
  await waitFor('tally to start and log its HTTP port', 120_000, () => (port = httpPortOf(tally.output)) !== undefined || tally.child.exitCode !== null, tally);
  if (port === undefined) throw new Error(`tally exited with ${tally.child.exitCode} during start-up:\n${tally.output.join('').slice(-4000)}`);
  const readyPort = port;
  await waitFor('GET /readyz to answer 200', 60_000, async () => (await fetch(`http://127.0.0.1:${readyPort}/readyz`)).status === 200, tally);
  return { tally, port };
}

async function stopTally(tally: TallyProcess): Promise<number | null> {
  if (tally.child.exitCode !== null) return tally.child.exitCode;
  tally.child.kill('SIGTERM');
  const code = await Promise.race([tally.exited, sleep(60_000).then(() => 'timeout' as const)]);
  if (code !== 'timeout') return code;
  tally.child.kill('SIGKILL');
  await tally.exited;
  throw new Error('tally did not stop within 60 s of SIGTERM; killed');
}

// The service's log lines at level warn (40) and above, and those about partitions.
function noteworthyLines(output: readonly string[]): string {
  return output.join('').split('\n').filter((line) => /^\{"level":[4-6]0/.test(line) || /"msg":"[^"]*partition/.test(line)).join('\n');
}

function deleteTopics(topics: readonly string[]): Promise<void> {
  const admin = Kafka.AdminClient.create({ 'bootstrap.servers': testKafkaBrokers });
  return Promise.all(topics.map((topic) => new Promise<void>((resolve) => admin.deleteTopic(topic, 10_000, () => resolve())))).then(() => admin.disconnect());
}

async function benchmark(options: BenchOptions, database: ScratchDatabase, topic: string, eventsTopic: string): Promise<void> {
  const { tally, port } = await startTally(database, topic, eventsTopic);
  const client = new pg.Client({ connectionString: database.url });
  await client.connect();
  const producer = await CommandProducer.connect({ brokers: testKafkaBrokers, topic, lingerMs: 5 });
  let stopped = false;
  try {
    const expected = new ExpectedBalances(options.accounts);
    const seedStarted = performance.now();
    const seeded = await seed(producer, expected);
    await waitDurable(client, topic, producer, tally);
    console.log(`tally (pid ${tally.child.pid}) serves on 127.0.0.1:${port}; load client ${options.client}${options.wrk === undefined || options.client !== 'wrk' ? '' : ` (${options.wrk})`}`);
    console.log(`seeded ${options.accounts} accounts × ${CURRENCIES.length} currencies: ${seeded} deposits through Kafka, durable in ${((performance.now() - seedStarted) / 1000).toFixed(1)} s`);
    const harness: Harness = { options, port, tally, client, topic, expected, ingest: new IngestLoad(producer, expected), producer, paths: queryPaths(options.accounts) };
    const rows: RunRow[] = [];
    for (const ingestRate of [0, ...options.ingestRates]) {
      for (const pipelining of [1, options.pipelining]) {
        const row = await runQueries(harness, pipelining, ingestRate);
        printRow(row);
        rows.push(row);
      }
    }
    await waitDurable(client, topic, producer, tally);
    const verified = await verifyFinal(port, expected, options.verifyAccounts);
    console.log(`after ${harness.ingest.sent} ingest deposits became durable: ${verified.checked} answers equal seed + deposits exactly (checksum ${verified.checksum})`);
    const exitCode = await stopTally(tally);
    stopped = true;
    if (exitCode !== 0) throw new Error(`tally exited with ${exitCode} after SIGTERM:\n${tally.output.join('').slice(-4000)}`);
    printSummary(options, rows, harness.ingest.sent, verified.checksum);
  } catch (error) {
    console.error(`--- tally log: warnings, errors and partition changes (tail) ---\n${noteworthyLines(tally.output).slice(-8000)}`);
    throw error;
  } finally {
    await producer.disconnect();
    await client.end();
    if (!stopped) await stopTally(tally).catch(() => undefined);
  }
}

function printSummary(options: BenchOptions, rows: readonly RunRow[], ingestDeposits: number, checksum: string): void {
  // Per ingest rate (0 = none), the run with the most requests/s.
  const best = [0, ...options.ingestRates].map((rate) => rows.filter((r) => r.ingestRate === rate).reduce((a, b) => (b.requestsPerSec > a.requestsPerSec ? b : a)));
  const brief = (r: RunRow): object => ({
    ingestRate: r.ingestRate, connections: r.connections, pipelining: r.pipelining, requestsPerSec: r.requestsPerSec, latencyUs: r.latencyUs, latencyPer: r.latencyPer,
    non2xx: r.non2xx, errors: r.errors, timeouts: r.timeouts, ingestDurablePerSec: r.ingestDurablePerSec,
    tallyCpuUsPerRequest: r.tallyCpuUsPerRequest, clientCpuUsPerRequest: r.loadGeneratorCpuUsPerRequest, loadAverage: r.loadAverage,
  });
  console.log(JSON.stringify({
    bench: 'query', smoke: options.smoke, client: options.client, accounts: options.accounts, currencies: CURRENCIES.length, partitions: PARTITIONS,
    seconds: options.seconds, loadProcesses: options.loadProcesses, ingestDeposits, targetRequestsPerSec: TARGET_REQUESTS_PER_SEC,
    best: best.map(brief), runs: rows.map(brief), checksum,
  }));
}

async function main(): Promise<void> {
  const options = readOptions();
  const topic = uniqueName('tally.bench.query.commands');
  const eventsTopic = uniqueName('tally.bench.query.events');
  await createTopic(topic, PARTITIONS);
  await createTopic(eventsTopic, PARTITIONS);
  const database = await createScratchDatabase(testPgUrl, 'tally_bench_query');
  try {
    await benchmark(options, database, topic, eventsTopic);
  } finally {
    await database.drop();
    await deleteTopics([topic, eventsTopic]);
  }
}

main().then(() => process.exit(0), (error: unknown) => {
  console.error(error);
  process.exit(1);
});
