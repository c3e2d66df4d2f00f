// Result events to `tally.events`, produced only once the batch holding the command has
// committed in PostgreSQL (the batcher's onDurable), in ring order, which is offset order per
// partition. The event of a command of partition p goes to partition p of the events topic
// (modulo its partition count), keyed by tx_id, so a downstream consumer sees each partition's
// outcomes in the order they were applied.
//
// Delivery is at-least-once: the producer is idempotent (no duplicates or reordering from
// its own retries), messages never time out locally (message.timeout.ms 0: librdkafka retries
// until the broker takes them), and a full local queue leaves events parked in order in the
// record buffer, retried on a timer.
//
// The producer is native (io/native/kafka_event_producer.c): events of a fan-out are written
// into one Buffer and handed to librdkafka in one call at the end of the synchronous work
// that published them (a microtask); delivery reports are counted in C. Through the
// JavaScript binding each event cost a produce call and a delivery-report object, several
// microseconds of the main thread (docs/benchmarks.md, "Result events"). Acknowledged offsets are recorded per command partition
// (partition_leases.events_next_offset, written every second); whoever takes a partition next
// republishes the stored outcomes from there (republishStored), so an event lost in a crash
// between the COMMIT and the broker's acknowledgement is published again: at-least-once;
// downstream dedups by tx_id + partition + offset.

import type { Logger } from './logger';
import { COMMAND_OFFSET_LIMIT, EventRecordBuffer, nativeEventProducer, ProducerHandle } from './kafka_event_producer';

export interface EventPublisherOptions {
  readonly brokers: string;
  readonly topic: string;
  readonly log: Logger;
  /** Events parked while librdkafka's queue is full, at most; beyond it publishing reports not ready. */
  readonly overflowMax?: number;
  /** librdkafka settings over the defaults below (tests shrink the local queue with it). */
  readonly producerConfig?: Readonly<Record<string, string>>;
  /** How long start-up waits for the events topic's metadata (default 15 s). */
  readonly connectTimeoutMs?: number;
  /** Bytes of parked events held at most (default and ceiling: what produce() can count, 4 GiB). */
  readonly recordsBytesMax?: number;
}

const OVERFLOW_MAX_DEFAULT = 1_000_000;
const OVERFLOW_RETRY_MS = 20;
const POLL_INTERVAL_MS = 5;
const CONNECT_TIMEOUT_MS = 15_000;
/** One metadata attempt blocks the thread this long at most; start-up retries until the connect timeout. */
const METADATA_ATTEMPT_MS = 250;
const RECORDS_INITIAL_BYTES = 1 << 20;
/** produce() takes a uint32 byte count. */
const RECORDS_BYTES_MAX = 2 ** 32 - 1;
const COUNTER_IN_FLIGHT = 0;
const COUNTER_FAILED = 2;
const COUNTER_FATAL = 3;

const MISSING_TOPIC_GRACE_MS = 2000;

const PRODUCER_CONFIG: Record<string, string> = {
  'enable.idempotence': 'true',
  // 5 ms: fewer, larger produce requests for the broker; the events are already behind a
  // flush of up to batchIntervalMs, so this adds little to produce → event latency.
  'linger.ms': '5',
  'message.timeout.ms': '0',
  'queue.buffering.max.messages': '2000000',
  'queue.buffering.max.kbytes': '1048576',
  'batch.num.messages': '10000',
  'compression.type': 'lz4',
};

/**
 * The topic's partition count from the broker's metadata; retried until timeoutMs. 0 (no such
 * topic, or a topic-level error such as no leader yet right after its creation) is asked again
 * for MISSING_TOPIC_GRACE_MS before it counts as "no such topic".
 */
async function partitionCountOf(handle: ProducerHandle, timeoutMs: number): Promise<number> {
  const native = nativeEventProducer();
  let lastError = 'no answer';
  let missingSince = -1;
  for (const deadline = Date.now() + timeoutMs; Date.now() < deadline;) {
    try {
      const count = native.partitionCount(handle, METADATA_ATTEMPT_MS);
      if (count > 0) return count;
      if (missingSince < 0) missingSince = Date.now();
      if (Date.now() - missingSince >= MISSING_TOPIC_GRACE_MS) return 0;
    } catch (error) {
      lastError = (error as Error).message;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  if (missingSince >= 0) return 0;
  throw new Error(lastError);
}

/** Partitions of `topic` on the brokers (0 if it does not exist). */
export async function topicPartitionCount(brokers: string, topic: string, timeoutMs = CONNECT_TIMEOUT_MS): Promise<number> {
  const native = nativeEventProducer();
  const handle = native.create(Object.entries({ 'bootstrap.servers': brokers, ...PRODUCER_CONFIG, 'allow.auto.create.topics': 'false' }).flat(), topic);
  try {
    return await partitionCountOf(handle, timeoutMs);
  } catch (error) {
    throw new Error(`cannot reach Kafka at ${brokers}: ${(error as Error).message}`);
  } finally {
    native.destroy(handle);
  }
}

export class EventPublisher {
  private readonly records: EventRecordBuffer;
  private readonly counters = new Float64Array(4);
  private readonly native = nativeEventProducer();
  private partitionCount = 1;
  private produceScheduled = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private pollTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private overflowLogged = false;
  private takenAtClose = new Map<number, number>();
  /** Events handed to librdkafka and not yet acknowledged (as of the last poll). */
  unacknowledged = 0;
  published = 0;
  deliveryErrors = 0;

  private constructor(private readonly handle: ProducerHandle, private readonly options: EventPublisherOptions) {
    const bytesMax = Math.min(RECORDS_BYTES_MAX, options.recordsBytesMax ?? RECORDS_BYTES_MAX);
    this.records = new EventRecordBuffer(Math.min(RECORDS_INITIAL_BYTES, bytesMax), bytesMax);
  }

  static async connect(options: EventPublisherOptions): Promise<EventPublisher> {
    const config = Object.entries({ 'bootstrap.servers': options.brokers, ...PRODUCER_CONFIG, ...options.producerConfig }).flat();
    const native = nativeEventProducer();
    const handle = native.create(config, options.topic);
    const partitionCount = await partitionCountOf(handle, options.connectTimeoutMs ?? CONNECT_TIMEOUT_MS).catch((error: unknown) => {
      native.destroy(handle);
      throw new Error(`events producer cannot reach Kafka at ${options.brokers}: ${(error as Error).message}`);
    });
    if (partitionCount === 0) {
      native.destroy(handle);
      throw new Error(`events topic ${options.topic} does not exist; create it (npm run services:up does) or set TALLY_EVENTS_TOPIC`);
    }
    const publisher = new EventPublisher(handle, options);
    publisher.partitionCount = partitionCount;
    publisher.pollTimer = setInterval(() => publisher.poll(), POLL_INTERVAL_MS);
    return publisher;
  }

  /**
   * Counts the event of a durable command as failed without publishing it: the partition's
   * recorded position stays below it until the partition is taken again, whose republish
   * sends it.
   */
  noteFailed(commandPartition: number, commandOffset: number, reason: string): void {
    if (this.closed) return;
    this.native.noteFailed(this.handle, commandPartition, commandOffset, reason);
  }

  /** Queues the event of a durable command of `commandPartition` at `commandOffset`. Never throws for a full queue. */
  publish(commandPartition: number, commandOffset: number, key: string, json: string): void {
    if (this.closed) throw new Error(`result event of partition ${commandPartition} offset ${commandOffset} published after the events producer closed`);
    if (!(commandOffset >= 0 && commandOffset < COMMAND_OFFSET_LIMIT)) throw new RangeError(`command offset ${commandOffset} out of range`);
    if (!this.records.append(commandPartition % this.partitionCount, commandPartition, commandOffset, key, json)) {
      // Gigabytes of events the broker has not taken: this one is not published, and is
      // noted as failed so that its partition's recorded position stays below it (events
      // delivered later must not carry the position past it); it is republished from there
      // once the broker takes events again. The native side logs each such event (bounded).
      this.native.noteFailed(this.handle, commandPartition, commandOffset, 'result events are piling up beyond the parked-events bound: the broker is not taking them');
      return;
    }
    if (this.records.count >= (this.options.overflowMax ?? OVERFLOW_MAX_DEFAULT) && !this.overflowLogged) {
      this.overflowLogged = true;
      this.options.log.error({ parked: this.records.count }, 'result events are piling up: the broker is not taking them');
    }
    if (!this.produceScheduled && this.retryTimer === undefined) {
      this.produceScheduled = true;
      queueMicrotask(() => this.produceParked());
    }
  }

  /** Takes the delivered positions recorded since the last call: command partition → next offset. */
  takeAcknowledged(): Map<number, number> {
    const taken = this.takenAtClose;
    this.takenAtClose = new Map();
    if (this.closed) return taken;
    const flat = this.native.takeAcknowledged(this.handle);
    for (let i = 0; i < flat.length; i += 2) taken.set(flat[i]!, flat[i + 1]!);
    return taken;
  }

  /**
   * The partition was taken (again) and its events from the recorded position on are about
   * to be republished: earlier failed events no longer hold its acknowledged position back.
   * Returns the command offset of the earliest failed event that did, or -1. When one did,
   * events of the partition handed over before the republish (still in flight from an
   * earlier take by this process) may be delivered before the republished copies of the
   * failed ones, so the caller must hold the recorded position until an event handed over
   * after the republish is delivered (EventPositions.hold / releaseAfter).
   */
  forgetFailures(commandPartition: number): number {
    return this.closed ? -1 : this.native.forgetFailures(this.handle, commandPartition);
  }

  /** Partitions whose recorded position a failed event holds back until a republish (the service's, every 30 s, or a take's) covers it. */
  heldBackPartitions(): number[] {
    return this.closed ? [] : this.native.heldBack(this.handle);
  }

  /** False while events are parked beyond the bound, or after a fatal producer error (the service reports not ready). */
  get healthy(): boolean {
    return this.records.count < (this.options.overflowMax ?? OVERFLOW_MAX_DEFAULT) && this.counters[COUNTER_FATAL] === 0;
  }

  get parked(): number {
    return this.records.count;
  }

  /** Waits, at most timeoutMs, until every event handed over so far is acknowledged. */
  async drain(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      this.produceParked();
      this.poll();
      if (this.records.count === 0 && this.unacknowledged === 0) return true;
      if (Date.now() >= deadline) return false;
      await new Promise((resolve) => setTimeout(resolve, POLL_INTERVAL_MS));
    }
  }

  /** Waits (bounded) until every event is acknowledged, then closes the producer. */
  async close(timeoutMs = 10_000): Promise<void> {
    if (this.closed) return;
    const drained = await this.drain(timeoutMs);
    if (!drained) this.options.log.warn({ parked: this.records.count, unacknowledged: this.unacknowledged }, 'result events not acknowledged at stop');
    // Positions delivered up to now stay for the last record of them (EventPositions.stop).
    this.takenAtClose = this.takeAcknowledged();
    this.closed = true;
    clearInterval(this.pollTimer);
    clearTimeout(this.retryTimer);
    this.native.destroy(this.handle);
  }

  /** Hands the parked events to librdkafka, in order, as far as its queue takes them. */
  private produceParked(): void {
    this.produceScheduled = false;
    if (this.closed || this.records.count === 0) return;
    const before = this.records.count;
    const taken = this.native.produce(this.handle, this.records.buffer, this.records.end);
    this.records.dropFront(taken);
    this.published += before - this.records.count;
    this.unacknowledged += before - this.records.count;
    if (this.records.count === 0) {
      this.overflowLogged = false;
    } else {
      this.retryTimer ??= setTimeout(() => {
        this.retryTimer = undefined;
        this.produceParked();
      }, OVERFLOW_RETRY_MS);
    }
  }

  /** Serves delivery reports and errors (in C), then logs what went wrong. */
  private poll(): void {
    if (this.closed) return;
    this.native.poll(this.handle, this.counters);
    this.unacknowledged = this.counters[COUNTER_IN_FLIGHT]!;
    this.deliveryErrors = this.counters[COUNTER_FAILED]!;
    const errors = this.native.takeErrors(this.handle);
    for (const text of errors) {
      if (text.startsWith('result event') || text.startsWith('fatal')) this.options.log.error({ topic: this.options.topic, error: text }, 'result event producer error');
      else this.options.log.warn({ topic: this.options.topic, error: text }, 'events producer error (librdkafka retries)');
    }
  }
}
