// Result events to `tally.events`, produced only once the batch holding the command has
// committed in PostgreSQL (the batcher's onDurable), in ring order, which is offset order per
// partition. The event of a command of partition p goes to partition p of the events topic
// (modulo its partition count), keyed by tx_id, so a downstream consumer sees each partition's
// outcomes in the order they were applied.
//
// Delivery is at-least-once: the producer is idempotent (no duplicates or reordering from
// its own retries), messages never time out locally (message.timeout.ms 0: librdkafka retries
// until the broker takes them), and a full local queue parks events in a bounded overflow that
// a timer drains. Acknowledged offsets are recorded per command partition
// (partition_leases.events_next_offset, written every second); whoever takes a partition next
// republishes the stored outcomes from there (republishStored), so an event lost in a crash
// between the COMMIT and the broker's acknowledgement is published again: at-least-once;
// downstream dedups by tx_id + partition + offset.

import Kafka from '@confluentinc/kafka-javascript';
import type { Logger } from './logger';

export interface EventPublisherOptions {
  readonly brokers: string;
  readonly topic: string;
  readonly log: Logger;
  /** Events parked while librdkafka's queue is full, at most; beyond it publishing reports not ready. */
  readonly overflowMax?: number;
}

const OVERFLOW_MAX_DEFAULT = 1_000_000;
const OVERFLOW_RETRY_MS = 20;

interface Parked {
  readonly partition: number;
  readonly value: Buffer;
  readonly key: string;
  readonly source: EventSource;
}

/** The command an event reports, carried as the message's opaque through librdkafka. */
interface EventSource {
  readonly partition: number;
  readonly offset: number;
}

export class EventPublisher {
  private overflow: Parked[] = [];
  private overflowTimer: NodeJS.Timeout | undefined;
  private partitionCount = 1;
  /** Per command partition: next command offset whose event is not yet known delivered (-1: nothing new). */
  private readonly acknowledgedNext = new Map<number, number>();
  /** Events handed to librdkafka and not yet acknowledged. */
  unacknowledged = 0;
  published = 0;
  deliveryErrors = 0;

  private constructor(private readonly producer: Kafka.Producer, private readonly options: EventPublisherOptions) {
    producer.on('delivery-report', (error, report) => {
      this.unacknowledged--;
      const source = report.opaque as EventSource | undefined;
      if (!error && source !== undefined && source.offset + 1 > (this.acknowledgedNext.get(source.partition) ?? -1)) this.acknowledgedNext.set(source.partition, source.offset + 1);
      if (error) {
        this.deliveryErrors++;
        options.log.error({ err: error, topic: options.topic }, 'result event not delivered');
      }
    });
    producer.on('event.error', (error) => options.log.warn({ err: error, topic: options.topic }, 'events producer error (librdkafka retries)'));
  }

  static async connect(options: EventPublisherOptions): Promise<EventPublisher> {
    const producer = new Kafka.Producer({
      'bootstrap.servers': options.brokers,
      'enable.idempotence': true,
      // 5 ms: fewer, larger produce requests for the broker; the events are already behind a
      // flush of up to batchIntervalMs, so this adds little to produce → event latency.
      'linger.ms': 5,
      'message.timeout.ms': 0,
      'queue.buffering.max.messages': 2_000_000,
      'queue.buffering.max.kbytes': 1_048_576,
      'batch.num.messages': 10_000,
      'compression.type': 'lz4',
      dr_cb: true,
    });
    await new Promise<void>((resolve, reject) => {
      producer.once('ready', () => resolve());
      producer.connect({ timeout: 15_000 }, (error) => {
        if (error) reject(new Error(`events producer cannot reach Kafka at ${options.brokers}: ${error.message}`));
      });
    });
    producer.setPollInterval(5);
    const publisher = new EventPublisher(producer, options);
    publisher.partitionCount = await partitionCountOf(producer, options.topic);
    return publisher;
  }

  /** Queues the event of a durable command of `commandPartition` at `commandOffset`. Never throws for a full queue. */
  publish(commandPartition: number, commandOffset: number, key: string, json: string): void {
    const partition = commandPartition % this.partitionCount;
    const value = Buffer.from(json);
    const source: EventSource = { partition: commandPartition, offset: commandOffset };
    if (this.overflow.length > 0 || !this.tryProduce(partition, value, key, source)) this.park({ partition, value, key, source });
  }

  /** Takes the delivered positions recorded since the last call: command partition → next offset. */
  takeAcknowledged(): Map<number, number> {
    const taken = new Map(this.acknowledgedNext);
    this.acknowledgedNext.clear();
    return taken;
  }

  /** False while events are parked beyond the bound (the service reports not ready). */
  get healthy(): boolean {
    return this.overflow.length < (this.options.overflowMax ?? OVERFLOW_MAX_DEFAULT);
  }

  get parked(): number {
    return this.overflow.length;
  }

  /** Waits, at most timeoutMs, until every event handed over so far is acknowledged. */
  async drain(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while ((this.overflow.length > 0 || this.unacknowledged > 0) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
    return this.overflow.length === 0 && this.unacknowledged === 0;
  }

  /** Waits (bounded) until every event is acknowledged, then disconnects. */
  async close(timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while ((this.overflow.length > 0 || this.unacknowledged > 0) && Date.now() < deadline) {
      this.drainOverflow();
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    clearTimeout(this.overflowTimer);
    if (this.overflow.length > 0 || this.unacknowledged > 0) {
      this.options.log.warn({ parked: this.overflow.length, unacknowledged: this.unacknowledged }, 'result events not acknowledged at stop');
    }
    await new Promise<void>((resolve) => this.producer.disconnect(() => resolve()));
  }

  private tryProduce(partition: number, value: Buffer, key: string, source: EventSource): boolean {
    try {
      this.producer.produce(this.options.topic, partition, value, key, null, source);
    } catch (error) {
      if ((error as { code?: number }).code === Kafka.CODES.ERRORS.ERR__QUEUE_FULL) return false;
      throw error;
    }
    this.unacknowledged++;
    this.published++;
    return true;
  }

  private park(event: Parked): void {
    if (this.overflow.length === (this.options.overflowMax ?? OVERFLOW_MAX_DEFAULT)) {
      this.options.log.error({ parked: this.overflow.length }, 'result events are piling up: the broker is not taking them');
    }
    this.overflow.push(event);
    this.overflowTimer ??= setTimeout(() => {
      this.overflowTimer = undefined;
      this.drainOverflow();
    }, OVERFLOW_RETRY_MS);
  }

  private drainOverflow(): void {
    let sent = 0;
    while (sent < this.overflow.length) {
      const event = this.overflow[sent]!;
      if (!this.tryProduce(event.partition, event.value, event.key, event.source)) break;
      sent++;
    }
    this.overflow = this.overflow.slice(sent);
    if (this.overflow.length > 0) {
      this.overflowTimer ??= setTimeout(() => {
        this.overflowTimer = undefined;
        this.drainOverflow();
      }, OVERFLOW_RETRY_MS);
    }
  }
}

function partitionCountOf(producer: Kafka.Producer, topic: string): Promise<number> {
  return new Promise((resolve, reject) => {
    producer.getMetadata({ topic, timeout: 10_000 }, (error, metadata) => {
      if (error) return reject(new Error(`cannot read the metadata of events topic ${topic}: ${error.message}`));
      const found = metadata.topics.find((t) => t.name === topic);
      if (found === undefined || found.partitions.length === 0) return reject(new Error(`events topic ${topic} does not exist; create it (npm run services:up does) or set TALLY_EVENTS_TOPIC`));
      resolve(found.partitions.length);
    });
  });
}
