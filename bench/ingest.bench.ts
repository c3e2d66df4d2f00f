// bench:ingest — Kafka to ring only: a topic pre-filled with commands (binary in one run,
// JSON in another) is read by the real librdkafka consumer, decoded straight into the command
// ring's slots and published; a drain on the same thread releases published slots and sums a
// checksum of their payload hashes. No engine, no PostgreSQL. Producing is not timed.
//   node dist/bench/ingest.bench.js [--smoke]

import { performance } from 'node:perf_hooks';
import { RingBuffer, createWaitStrategy } from '../ringbuffer';
import { COMMAND_SLOT_BYTES, PAYLOAD_HASH_OFFSET } from '../engine/command_layout';
import { CurrencyRegistry } from '../engine/currency_registry';
import { encodeCommandBinary } from '../engine/binary_encoder';
import { encodeCommandJson } from '../engine/wire_command';
import { BENCH_CURRENCIES, SeededRandom, randomWireCommand } from '../engine/wire_fixtures';
import { CommandConsumer } from '../io/command_consumer';
import { CommandProducer } from '../io/command_producer';
import { createLogger } from '../io/logger';
import { createTopic, testKafkaBrokers, uniqueName } from '../io/test_services';

const smoke = process.argv.includes('--smoke') || process.env['BENCH_SMOKE'] === '1';
const MESSAGES = smoke ? 20_000 : 500_000;
const PARTITIONS = 4;
const TIMEOUT_MS = 300_000;

interface Run {
  readonly format: 'binary' | 'json';
  readonly messagesPerSec: number;
  readonly seconds: number;
  readonly checksum: string;
}

async function fill(topic: string, format: Run['format']): Promise<void> {
  const random = new SeededRandom(42);
  const producer = await CommandProducer.connect({ brokers: testKafkaBrokers, topic, lingerMs: 20 });
  for (let i = 0; i < MESSAGES; i++) {
    const command = randomWireCommand(random, { accountCount: 1_000_000, currencies: BENCH_CURRENCIES }, i);
    const key = command.type === 'transfer' ? command.from : command.account;
    const value = format === 'binary' ? Buffer.from(encodeCommandBinary(command)) : Buffer.from(encodeCommandJson(command));
    producer.send(key, value);
    if (producer.unacknowledged >= 200_000) await producer.flush();
  }
  await producer.flush();
  await producer.disconnect();
}

async function consumeAll(topic: string, format: Run['format']): Promise<Run> {
  const registry = CurrencyRegistry.fromConfig(BENCH_CURRENCIES);
  const ring = RingBuffer.create({ slotCount: 1 << 14, slotBytes: COMMAND_SLOT_BYTES });
  const barrier = ring.acquireBarrier(createWaitStrategy('yielding', 1));
  const words = new Uint32Array(ring.data);
  const consumer = new CommandConsumer({
    brokers: testKafkaBrokers, topic, groupId: uniqueName('ingest'), partitionCount: PARTITIONS, registry, commandRing: ring,
    log: createLogger('warn'), batchMessagesMax: 4096,
  });
  let checksum = 0;
  let drained = 0;
  const drain = (): void => {
    const next = barrier.nextSequence;
    const available = barrier.tryWaitFor(next);
    if (available < next) return;
    for (let sequence = next; sequence <= available; sequence++) checksum = (checksum + words[(ring.slotOffset(sequence) + PAYLOAD_HASH_OFFSET) >> 2]!) >>> 0;
    drained += available - next + 1;
    barrier.release(available);
  };
  await consumer.connect();
  const started = performance.now();
  consumer.assign(Array.from({ length: PARTITIONS }, (_, partition) => ({ partition, offset: 0 })));
  await new Promise<void>((resolve, reject) => {
    const tick = (): void => {
      drain();
      if (drained >= MESSAGES) return resolve();
      if (performance.now() - started > TIMEOUT_MS) return reject(new Error(`only ${drained} of ${MESSAGES} messages ingested in ${TIMEOUT_MS} ms`));
      setImmediate(tick);
    };
    tick();
  });
  const seconds = (performance.now() - started) / 1000;
  await consumer.disconnect();
  return { format, messagesPerSec: Math.round(MESSAGES / seconds), seconds: Number(seconds.toFixed(3)), checksum: checksum.toString(16) };
}

async function main(): Promise<void> {
  const runs: Run[] = [];
  for (const format of ['binary', 'json'] as const) {
    const topic = uniqueName(`tally.bench.ingest.${format}`);
    await createTopic(topic, PARTITIONS);
    await fill(topic, format);
    const run = await consumeAll(topic, format);
    console.log(`${format}: ${MESSAGES} messages Kafka → decode → ring in ${run.seconds} s = ${run.messagesPerSec} messages/s (checksum ${run.checksum})`);
    runs.push(run);
  }
  const binary = runs.find((r) => r.format === 'binary')!;
  const json = runs.find((r) => r.format === 'json')!;
  console.log(JSON.stringify({ bench: 'ingest', smoke, messages: MESSAGES, partitions: PARTITIONS, binaryMessagesPerSec: binary.messagesPerSec, jsonMessagesPerSec: json.messagesPerSec, targetBinaryMessagesPerSec: 500_000, checksums: runs.map((r) => r.checksum) }));
}

main().then(() => process.exit(0), (error: unknown) => {
  console.error(error);
  process.exit(1);
});
