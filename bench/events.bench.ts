// bench:events — result events from the main thread to the broker: the native producer
// (io/event_publisher.ts over io/native/kafka_event_producer.c) side by side with the way
// events went out before it, through @confluentinc/kafka-javascript (produce() per event with
// a Buffer of the JSON and an opaque, a delivery-report object per event). Both publish the
// same events in fan-out slices of 2 048 (as io/service.ts does), to the same 8-partition
// topic, with the same librdkafka settings, until every event is acknowledged. Runs alternate,
// binding then native, several rounds. Reported per event: CPU of the main thread (where the
// service's fan-out runs; /proc/self/task/<pid>/stat) and of the whole process (librdkafka's
// threads included), and the wall rate.
//   node dist/bench/events.bench.js [--smoke] [--events N] [--rounds N]

import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import Kafka from '@confluentinc/kafka-javascript';
import { stopPolling } from '../io/command_producer';
import { EventPublisher } from '../io/event_publisher';
import { createLogger } from '../io/logger';
import { createTopic, testKafkaBrokers, uniqueName } from '../io/test_services';

const smoke = process.argv.includes('--smoke') || process.env['BENCH_SMOKE'] === '1';
const EVENTS = Number(argument('--events') ?? (smoke ? 20_000 : 400_000));
const ROUNDS = Number(argument('--rounds') ?? (smoke ? 1 : 3));
const PARTITIONS = 8;
const SLICE = 2048;
const CLOCK_TICKS_PER_SEC = 100;

function argument(name: string): string | undefined {
  const at = process.argv.indexOf(name);
  return at < 0 ? undefined : process.argv[at + 1];
}

interface Event { readonly partition: number; readonly offset: number; readonly key: string; readonly json: string }

function events(): Event[] {
  const list: Event[] = [];
  for (let i = 0; i < EVENTS; i++) {
    const partition = i % PARTITIONS;
    const offset = Math.floor(i / PARTITIONS);
    const key = `tx-${i.toString(36)}-${(i * 2654435761 >>> 0).toString(16)}`;
    list.push({ partition, offset, key, json: `{"tx_id":"${key}","status":"accepted","partition":${partition},"offset":"${offset}","balances":[{"account":"${100_000 + (i % 90_000)}","currency":"USDT","available":"${(i % 10_000) + 0.25}","frozen":"0"}]}` });
  }
  return list;
}

/** CPU seconds of the main thread (its tid is the pid). */
function mainThreadCpuSec(): number {
  const fields = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SEC;
}

function processCpuSec(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1e6;
}

interface Publisher { publish(event: Event): void; settled(): boolean; close(): Promise<void> }

async function bindingPublisher(topic: string): Promise<Publisher> {
  const producer = new Kafka.Producer({
    'bootstrap.servers': testKafkaBrokers, 'enable.idempotence': true, 'linger.ms': 5, 'message.timeout.ms': 0,
    'queue.buffering.max.messages': 2_000_000, 'queue.buffering.max.kbytes': 1_048_576, 'batch.num.messages': 10_000, 'compression.type': 'lz4', dr_cb: true,
  });
  await new Promise<void>((resolve, reject) => {
    producer.once('ready', () => resolve());
    producer.connect({ timeout: 15_000 }, (error) => error && reject(error));
  });
  producer.setPollInterval(5);
  let unacknowledged = 0;
  const acknowledged = new Map<number, number>();
  producer.on('delivery-report', (error, report) => {
    unacknowledged--;
    const source = report.opaque as { partition: number; offset: number };
    if (!error && source.offset + 1 > (acknowledged.get(source.partition) ?? -1)) acknowledged.set(source.partition, source.offset + 1);
  });
  return {
    publish(event) {
      producer.produce(topic, event.partition, Buffer.from(event.json), event.key, null, { partition: event.partition, offset: event.offset });
      unacknowledged++;
    },
    settled: () => unacknowledged === 0,
    close: () => {
      stopPolling(producer);
      return new Promise<void>((resolve) => producer.disconnect(() => resolve()));
    },
  };
}

async function nativePublisher(topic: string): Promise<Publisher> {
  const publisher = await EventPublisher.connect({ brokers: testKafkaBrokers, topic, log: createLogger('warn') });
  return {
    publish: (event) => publisher.publish(event.partition, event.offset, event.key, event.json),
    settled: () => publisher.parked === 0 && publisher.unacknowledged === 0 && publisher.published > 0,
    close: () => publisher.close(),
  };
}

interface Run { readonly producer: 'binding' | 'native'; readonly eventsPerSec: number; readonly mainCpuUsPerEvent: number; readonly processCpuUsPerEvent: number }

async function run(kind: Run['producer'], list: Event[]): Promise<Run> {
  const topic = uniqueName(`events-bench-${kind}`);
  await createTopic(topic, PARTITIONS);
  const publisher = kind === 'native' ? await nativePublisher(topic) : await bindingPublisher(topic);
  const mainBefore = mainThreadCpuSec();
  const processBefore = processCpuSec();
  const started = performance.now();
  await new Promise<void>((resolve) => {
    let next = 0;
    const slice = (): void => {
      const end = Math.min(list.length, next + SLICE);
      for (; next < end; next++) publisher.publish(list[next]!);
      if (next < list.length) setImmediate(slice);
      else resolve();
    };
    slice();
  });
  while (!publisher.settled()) await new Promise((resolve) => setTimeout(resolve, 1));
  const seconds = (performance.now() - started) / 1000;
  const result: Run = {
    producer: kind,
    eventsPerSec: Math.round(list.length / seconds),
    mainCpuUsPerEvent: round(((mainThreadCpuSec() - mainBefore) * 1e6) / list.length),
    processCpuUsPerEvent: round(((processCpuSec() - processBefore) * 1e6) / list.length),
  };
  await publisher.close();
  console.log(`${kind.padEnd(8)} ${list.length} events in ${seconds.toFixed(2)} s: ${result.eventsPerSec} events/s, main thread ${result.mainCpuUsPerEvent} µs/event, process ${result.processCpuUsPerEvent} µs/event`);
  return result;
}

function round(value: number): number {
  return Math.round(value * 100) / 100;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

async function main(): Promise<void> {
  const list = events();
  const checksum = list.reduce((sum, event) => (sum + event.json.length * 31 + event.offset) >>> 0, 0).toString(16);
  console.log(`bench:events: ${list.length} events (checksum ${checksum}) to ${PARTITIONS} partitions, slices of ${SLICE}, ${ROUNDS} round(s), broker ${testKafkaBrokers}`);
  const runs: Run[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    runs.push(await run('binding', list));
    runs.push(await run('native', list));
  }
  const of = (kind: Run['producer'], field: keyof Omit<Run, 'producer'>): number => median(runs.filter((r) => r.producer === kind).map((r) => r[field]));
  console.log(JSON.stringify({
    bench: 'events', smoke, events: list.length, rounds: ROUNDS, checksum,
    binding: { eventsPerSec: of('binding', 'eventsPerSec'), mainCpuUsPerEvent: of('binding', 'mainCpuUsPerEvent'), processCpuUsPerEvent: of('binding', 'processCpuUsPerEvent') },
    native: { eventsPerSec: of('native', 'eventsPerSec'), mainCpuUsPerEvent: of('native', 'mainCpuUsPerEvent'), processCpuUsPerEvent: of('native', 'processCpuUsPerEvent') },
    runs,
  }));
}

main().then(() => process.exit(0), (error) => {
  console.error(error);
  process.exit(1);
});
