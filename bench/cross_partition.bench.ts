// bench:cross: cross-partition transfers through the whole service: the debit on the sender's
// partition, its commit with the outbox row, the relay through Kafka, the credit on the
// receiver's partition and its commit. Measures transfers per second with both halves
// durable, and the latency from producing the transfer to its credit's durable result event
// (HDR percentiles, measured from each transfer's send time). One `tally` service in this
// process (every partition), a producer and an events reader, all on this machine.
//   node dist/bench/cross_partition.bench.js [--smoke] [--transfers N]

import { performance } from 'node:perf_hooks';
import Kafka from '@confluentinc/kafka-javascript';
import * as hdr from 'hdr-histogram-js';
import { loadConfig } from '../io/config';
import { createLogger } from '../io/logger';
import { Service } from '../io/service';
import { CommandProducer } from '../io/command_producer';
import { createTopic, testKafkaBrokers, testPgUrl, uniqueName } from '../io/test_services';
import { createScratchDatabase } from '../persist/scratch_database';
import { homePartitionOfAccountDecimal } from '../engine/partitioner';
import { SeededRandom } from '../engine/wire_fixtures';

const PARTITIONS = 8;
const smoke = process.argv.includes('--smoke') || process.env['BENCH_SMOKE'] === '1';
const flag = process.argv.indexOf('--transfers');
const TRANSFERS = flag > 0 ? Number(process.argv[flag + 1]) : smoke ? 2000 : 200_000;
const USERS = smoke ? 500 : 20_000;

interface Event { tx_id: string; status: string; partition: number; offset: string }

async function main(): Promise<void> {
  const topic = uniqueName('tally.commands.bench_cross');
  const eventsTopic = uniqueName('tally.events.bench_cross');
  await createTopic(topic, PARTITIONS);
  await createTopic(eventsTopic, PARTITIONS);
  const database = await createScratchDatabase(testPgUrl, 'tally_bench_cross');
  const config = loadConfig({
    TALLY_KAFKA_BROKERS: testKafkaBrokers, TALLY_PG_URL: database.url, TALLY_COMMANDS_TOPIC: topic, TALLY_EVENTS_TOPIC: eventsTopic,
    TALLY_COMMAND_PARTITIONS: String(PARTITIONS), TALLY_PARTITION_ASSIGNMENT: 'static', TALLY_HTTP_PORT: '0', TALLY_CURRENCIES: 'USDT:2',
    TALLY_DEDUP_WINDOW: String(Math.max(65536, TRANSFERS * 2)), TALLY_BALANCE_CAPACITY: String(Math.max(65536, USERS * 2)), TALLY_INSTANCE_ID: 'bench-cross',
  }, undefined);
  const service = await Service.start(config, createLogger('warn'));
  const producer = await CommandProducer.connect({ brokers: testKafkaBrokers, topic, lingerMs: 5 });
  const reader = await startReader(eventsTopic);
  try {
    const users = Array.from({ length: USERS }, (_, i) => String(100_000 + i));
    for (const user of users) producer.send(user, Buffer.from(JSON.stringify({ type: 'deposit', tx_id: `dep-${user}`, account: user, currency: 'USDT', amount: '1000000' })));
    await producer.flush();
    await reader.waitCount(USERS, 120_000);
    const random = new SeededRandom(7);
    const sentAtMs = new Float64Array(TRANSFERS);
    const creditOf = new Map<string, number>();
    const latency = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: 3 });
    const debitLatency = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: 3 });
    let lastDebitMs = 0;
    let credited = 0;
    let checksum = 0;
    let lastCreditMs = 0;
    reader.onEvent = (event) => {
      if (event.tx_id.startsWith('bx-')) {
        const index = Number(event.tx_id.slice(3));
        lastDebitMs = performance.now();
        debitLatency.recordValue(Math.max(1, Math.round((lastDebitMs - sentAtMs[index]!) * 1000)));
        if (event.status === 'accepted') creditOf.set(`~x${event.partition}-${event.offset}`, index);
        return;
      }
      if (!event.tx_id.startsWith('~x')) return;
      const index = creditOf.get(event.tx_id);
      if (index === undefined || event.status !== 'accepted') return;
      lastCreditMs = performance.now();
      latency.recordValue(Math.max(1, Math.round((lastCreditMs - sentAtMs[index]!) * 1000)));
      credited++;
      checksum = (checksum + index) % 1_000_000_007;
    };
    const startedMs = performance.now();
    for (let i = 0; i < TRANSFERS; i++) {
      const from = users[random.int(USERS)]!;
      let to = users[random.int(USERS)]!;
      while (homePartitionOfAccountDecimal(to, PARTITIONS) === homePartitionOfAccountDecimal(from, PARTITIONS)) to = users[random.int(USERS)]!;
      sentAtMs[i] = performance.now();
      for (;;) {
        try {
          producer.send(from, Buffer.from(`{"type":"transfer","tx_id":"bx-${i}","from":"${from}","to":"${to}","currency":"USDT","amount":"0.01"}`));
          break;
        } catch {
          await new Promise((resolve) => setTimeout(resolve, 1));
        }
      }
      if ((i & 1023) === 1023) await new Promise((resolve) => setImmediate(resolve));
    }
    await producer.flush();
    const deadline = Date.now() + (smoke ? 120_000 : 600_000);
    while (credited < TRANSFERS && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    if (credited < TRANSFERS) throw new Error(`only ${credited} of ${TRANSFERS} credits became durable in time`);
    const seconds = (lastCreditMs - startedMs) / 1000;
    const ms = (p: number): number => Math.round(latency.getValueAtPercentile(p) / 100) / 10;
    console.log(`machine: ${process.arch}, node ${process.version}; ${TRANSFERS} cross-partition transfers over ${USERS} users, ${PARTITIONS} partitions`);
    console.log(`checksum ${checksum}`);
    console.log(`throughput: ${Math.round(TRANSFERS / seconds)} transfers/s with both halves durable (${seconds.toFixed(2)} s)`);
    console.log(`latency produce → durable credit (ms): p50 ${ms(50)}  p90 ${ms(90)}  p99 ${ms(99)}  p99.9 ${ms(99.9)}  max ${Math.round(latency.maxValue / 100) / 10}`);
    const debitMs = (p: number): number => Math.round(debitLatency.getValueAtPercentile(p) / 100) / 10;
    console.log(`debit half alone: ${Math.round(TRANSFERS / ((lastDebitMs - startedMs) / 1000))} transfers/s; produce → durable debit (ms): p50 ${debitMs(50)}  p99 ${debitMs(99)}`);
    console.log(JSON.stringify({
      bench: 'cross_partition', transfers: TRANSFERS, transfersPerSecond: Math.round(TRANSFERS / seconds), checksum,
      latencyMs: { p50: ms(50), p90: ms(90), p99: ms(99), p999: ms(99.9), max: Math.round(latency.maxValue / 100) / 10 },
    }));
  } finally {
    await reader.stop();
    await producer.disconnect();
    await service.stop();
    await database.drop();
  }
}

interface Reader {
  onEvent: ((event: Event) => void) | undefined;
  waitCount(count: number, timeoutMs: number): Promise<void>;
  stop(): Promise<void>;
}

async function startReader(topic: string): Promise<Reader> {
  const consumer = new Kafka.KafkaConsumer({ 'bootstrap.servers': testKafkaBrokers, 'group.id': uniqueName('bench-cross-events'), 'enable.auto.commit': false, 'fetch.wait.max.ms': 5 }, { 'auto.offset.reset': 'earliest' });
  await new Promise<void>((resolve, reject) => consumer.connect({ timeout: 10_000 }, (error) => (error ? reject(error) : resolve())));
  consumer.subscribe([topic]);
  consumer.setDefaultConsumeTimeout(5);
  let seen = 0;
  let running = true;
  const reader: Reader = {
    onEvent: undefined,
    async waitCount(count, timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      while (seen < count) {
        if (Date.now() > deadline) throw new Error(`only ${seen} of ${count} events arrived`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    },
    stop: () => {
      running = false;
      return new Promise((resolve) => consumer.disconnect(() => resolve()));
    },
  };
  const poll = (): void => {
    if (!running) return;
    consumer.consume(4096, (error, messages) => {
      if (!error) {
        for (const message of messages) {
          seen++;
          reader.onEvent?.(JSON.parse(message.value!.toString()) as Event);
        }
      }
      setImmediate(poll);
    });
  };
  poll();
  return reader;
}

main().then(() => process.exit(0), (error: unknown) => {
  console.error(error);
  process.exit(1);
});
