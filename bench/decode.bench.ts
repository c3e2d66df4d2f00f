// Wire decode benchmark: JSON and binary command messages into command slots.
//
// Workload: a seeded corpus of realistic commands (wire_fixtures.ts: 1M accounts, USDT,
// BTC, ETH, SOL; 30% deposits, 25% transfers, 20% freezes, 10% withdrawals, 10%
// unfreezes, 5% five-leg settles), pre-encoded as Kafka values (Buffers) in both formats.
// Each timed round decodes the corpus in order into a 4096-slot SharedArrayBuffer ring
// through decodeCommand(), the entry point the consumer calls (io/command_consumer.ts), so
// the timed call site is the consumer's and stays monomorphic whichever format runs.
// Reported: decodes/s (median round, wall clock; and per CPU second, which holds steadier
// on a shared machine), batch latency percentiles from an HDR histogram (ns per decode,
// measured per batch of 256), and, side by side in one tinybench run, the cost of
// JSON.parse alone to show what the scanner saves.
//
// Checksum: the corpus is decoded once in each format outside the timed loop and every
// slot hashed; JSON and binary must give the same checksum (their slots are identical by
// contract), and the run fails otherwise.
//
// Usage: node dist/bench/decode.bench.js [--smoke]   (or BENCH_SMOKE=1)
// The last line of output is a one-line JSON summary.

import * as hdr from 'hdr-histogram-js';
import { Bench } from 'tinybench';
import { decodeBinaryCommand } from '../engine/binary_codec';
import { encodeCommandBinary } from '../engine/binary_encoder';
import { COMMAND_SLOT_BYTES, PAYLOAD_HASH_OFFSET, REJECT_CODE_OFFSET } from '../engine/command_layout';
import { decodeCommand } from '../engine/command_decoder';
import { CommandSlotViews, createCommandSlotViews } from '../engine/command_slot';
import { CurrencyRegistry } from '../engine/currency_registry';
import { Hash64, hash64 } from '../engine/hash64';
import { decodeJsonCommand } from '../engine/json_codec';
import { encodeCommandJson } from '../engine/wire_command';
import { BENCH_CURRENCIES, SeededRandom, randomWireCommand } from '../engine/wire_fixtures';

const RING_SLOTS = 4096;
const PARTITION_COUNT = 12;
const BATCH = 256;
const SEED = 0xdec0de;

type Decoder = typeof decodeJsonCommand;

export interface DecodeBenchResult {
  jsonDecodesPerSec: number;
  binaryDecodesPerSec: number;
  checksum: string;
}

interface FormatRun {
  decodesPerSec: number;
  decodesPerCpuSec: number;
  nsPerDecode: { p50: number; p99: number; p999: number; max: number };
  loopChecksum: number;
}

function buildCorpus(count: number): { json: Buffer[]; binary: Buffer[]; jsonBytes: number; binaryBytes: number } {
  const random = new SeededRandom(SEED);
  const json: Buffer[] = [];
  const binary: Buffer[] = [];
  let jsonBytes = 0;
  let binaryBytes = 0;
  for (let index = 0; index < count; index++) {
    const command = randomWireCommand(random, { accountCount: 1_000_000, currencies: BENCH_CURRENCIES }, index);
    json.push(Buffer.from(encodeCommandJson(command), 'utf8'));
    binary.push(Buffer.from(encodeCommandBinary(command)));
    jsonBytes += json[index].length;
    binaryBytes += binary[index].length;
  }
  return { json, binary, jsonBytes, binaryBytes };
}

/** Hash of every slot of one pass over the corpus (not timed). */
function corpusChecksum(decode: Decoder, messages: Buffer[], registry: CurrencyRegistry, views: CommandSlotViews): string {
  const slotHash = new Hash64();
  let lo = 0;
  let hi = 0;
  for (let index = 0; index < messages.length; index++) {
    const slotOffset = (index % RING_SLOTS) * COMMAND_SLOT_BYTES;
    decode(messages[index], 0, index, PARTITION_COUNT, registry, views, slotOffset);
    hash64(views.bytes, slotOffset, slotOffset + COMMAND_SLOT_BYTES, lo ^ index, slotHash);
    lo = slotHash.lo >>> 0;
    hi = (hi + (slotHash.hi >>> 0)) >>> 0;
  }
  return hi.toString(16).padStart(8, '0') + lo.toString(16).padStart(8, '0');
}

/** The hot loop: decodes `count` messages in batches, recording ns/decode per batch. */
function timedRound(messages: Buffer[], count: number, registry: CurrencyRegistry, views: CommandSlotViews, histogram: hdr.Histogram | null): { elapsedNs: number; cpuNs: number; checksum: number } {
  const u32 = views.u32;
  const bytes = views.bytes;
  let checksum = 0;
  const cpuStarted = process.cpuUsage();
  const started = process.hrtime.bigint();
  let batchStarted = started;
  for (let index = 0; index < count; index++) {
    const slotOffset = (index & (RING_SLOTS - 1)) * COMMAND_SLOT_BYTES;
    decodeCommand(messages[index % messages.length], 0, index, PARTITION_COUNT, registry, views, slotOffset);
    checksum = (checksum + u32[(slotOffset + PAYLOAD_HASH_OFFSET) >> 2] + bytes[slotOffset + REJECT_CODE_OFFSET]) >>> 0;
    if (histogram !== null && (index + 1) % BATCH === 0) {
      const now = process.hrtime.bigint();
      histogram.recordValue(Math.max(1, Math.round(Number(now - batchStarted) / BATCH)));
      batchStarted = now;
    }
  }
  const elapsedNs = Number(process.hrtime.bigint() - started);
  const cpu = process.cpuUsage(cpuStarted);
  return { elapsedNs, cpuNs: (cpu.user + cpu.system) * 1000, checksum };
}

function runFormat(messages: Buffer[], decodesPerRound: number, rounds: number, registry: CurrencyRegistry, views: CommandSlotViews): FormatRun {
  timedRound(messages, Math.min(decodesPerRound, 200_000), registry, views, null);
  const histogram = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 10_000_000_000, numberOfSignificantValueDigits: 3 });
  const rates: number[] = [];
  const cpuRates: number[] = [];
  let loopChecksum = 0;
  for (let round = 0; round < rounds; round++) {
    const result = timedRound(messages, decodesPerRound, registry, views, histogram);
    rates.push(decodesPerRound / (result.elapsedNs / 1e9));
    cpuRates.push(decodesPerRound / (result.cpuNs / 1e9));
    loopChecksum = (loopChecksum + result.checksum) >>> 0;
  }
  const nsPerDecode = { p50: histogram.getValueAtPercentile(50), p99: histogram.getValueAtPercentile(99), p999: histogram.getValueAtPercentile(99.9), max: histogram.maxValue };
  histogram.destroy();
  return { decodesPerSec: Math.round(median(rates)), decodesPerCpuSec: Math.round(median(cpuRates)), nsPerDecode, loopChecksum };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/** tinybench, one run, side by side: scanner decode vs JSON.parse alone vs binary decode. */
async function sideBySide(corpus: { json: Buffer[]; binary: Buffer[] }, registry: CurrencyRegistry, views: CommandSlotViews, smoke: boolean): Promise<Record<string, number>> {
  const bench = new Bench({ time: smoke ? 150 : 1500, warmupTime: smoke ? 50 : 300 });
  const batch = 1024;
  let cursor = 0;
  let sink = 0;
  const next = (): number => (cursor = (cursor + batch) % (corpus.json.length - batch));
  bench.add('json decode (scanner) x1024', () => {
    const start = next();
    for (let index = 0; index < batch; index++) decodeJsonCommand(corpus.json[start + index], 0, index, PARTITION_COUNT, registry, views, (index & (RING_SLOTS - 1)) * COMMAND_SLOT_BYTES);
  });
  bench.add('JSON.parse only (no fields, no slot) x1024', () => {
    const start = next();
    for (let index = 0; index < batch; index++) sink += (JSON.parse(corpus.json[start + index].toString('utf8')) as { type: string }).type.length;
  });
  bench.add('binary decode x1024', () => {
    const start = next();
    for (let index = 0; index < batch; index++) decodeBinaryCommand(corpus.binary[start + index], 0, index, PARTITION_COUNT, registry, views, (index & (RING_SLOTS - 1)) * COMMAND_SLOT_BYTES);
  });
  await bench.run();
  const perSecond: Record<string, number> = {};
  for (const task of bench.tasks) {
    const result = task.result as unknown as { throughput?: { mean: number }; hz?: number } | undefined;
    const hz = result?.throughput?.mean ?? result?.hz ?? 0;
    perSecond[task.name] = Math.round(hz * batch);
  }
  if (sink < 0) console.log(sink);
  return perSecond;
}

export async function runDecodeBench(options: { smoke: boolean }): Promise<DecodeBenchResult> {
  const smoke = options.smoke;
  const registry = CurrencyRegistry.fromConfig(BENCH_CURRENCIES.map((currency) => ({ ...currency })));
  const views = createCommandSlotViews(RING_SLOTS);
  const corpus = buildCorpus(smoke ? 16_384 : 65_536);
  const jsonChecksum = corpusChecksum(decodeJsonCommand, corpus.json, registry, views);
  const binaryChecksum = corpusChecksum(decodeBinaryCommand, corpus.binary, registry, views);
  if (jsonChecksum !== binaryChecksum) throw new Error(`decode bench: JSON and binary slots differ (${jsonChecksum} vs ${binaryChecksum})`);
  const decodesPerRound = smoke ? 300_000 : 2_000_000;
  const rounds = smoke ? 3 : 7;
  const json = runFormat(corpus.json, decodesPerRound, rounds, registry, views);
  const binary = runFormat(corpus.binary, decodesPerRound, rounds, registry, views);
  const tiny = await sideBySide(corpus, registry, views, smoke);
  console.log(`corpus: ${corpus.json.length} commands, JSON ${(corpus.jsonBytes / corpus.json.length).toFixed(1)} B/msg, binary ${(corpus.binaryBytes / corpus.binary.length).toFixed(1)} B/msg`);
  console.log(`slot checksum (JSON == binary): ${jsonChecksum}`);
  for (const [name, run] of [['json', json], ['binary', binary]] as const) {
    console.log(`${name.padEnd(6)} ${run.decodesPerSec.toLocaleString('en-US').padStart(12)} decodes/s (median of ${rounds} x ${decodesPerRound}; ${run.decodesPerCpuSec.toLocaleString('en-US')} per CPU second); ns/decode per ${BATCH}-batch p50 ${run.nsPerDecode.p50} p99 ${run.nsPerDecode.p99} p99.9 ${run.nsPerDecode.p999} max ${run.nsPerDecode.max}; loop checksum ${run.loopChecksum.toString(16)}`);
  }
  for (const [name, perSecond] of Object.entries(tiny)) console.log(`tinybench ${name.padEnd(44)} ${perSecond.toLocaleString('en-US').padStart(12)} /s`);
  return { jsonDecodesPerSec: json.decodesPerSec, binaryDecodesPerSec: binary.decodesPerSec, checksum: jsonChecksum };
}

if (require.main === module) {
  const smoke = process.argv.includes('--smoke') || process.env.BENCH_SMOKE === '1';
  runDecodeBench({ smoke })
    .then((result) => console.log(JSON.stringify({ bench: 'decode', smoke, ...result })))
    .catch((error: unknown) => {
      console.error(error);
      process.exit(1);
    });
}
