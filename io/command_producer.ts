// Produces commands to `tally.commands` the way an upstream service must: keyed by the
// debited account's decimal id, partitioned with librdkafka's `murmur2_random`, which is
// Kafka's Java default partitioner, so every command lands on its account's home partition.
// Idempotence is on so a retried send never duplicates or reorders within a partition.

import Kafka from '@confluentinc/kafka-javascript';

export interface CommandProducerOptions {
  readonly brokers: string;
  readonly topic: string;
  readonly lingerMs?: number;
}

/** Where a produced command landed in the commands topic. */
export interface CommandPosition {
  readonly partition: number;
  readonly offset: number;
}

interface Acknowledged {
  resolve(position: CommandPosition): void;
  reject(error: Error): void;
}

export class CommandProducer {
  private readonly producer: Kafka.Producer;
  private pending = 0;
  private failure: Error | undefined;
  private drainWaiters: Array<() => void> = [];
  // Highest offset the broker acknowledged, per partition: lets a caller wait until a
  // consumer has read everything it sent.
  readonly lastOffsets = new Map<number, number>();

  private constructor(producer: Kafka.Producer, private readonly topic: string) {
    this.producer = producer;
    producer.on('delivery-report', (error, report) => {
      const acknowledged = report.opaque as Acknowledged | undefined;
      if (acknowledged !== undefined && acknowledged !== null) {
        if (error) acknowledged.reject(new Error(`delivery to ${topic} failed: ${error.message}`));
        else acknowledged.resolve({ partition: report.partition, offset: report.offset });
      }
      // A failed send() is remembered and reported by the next send() or flush(): its caller
      // has no other way to learn of it. A failed sendAcknowledged() has told its own caller;
      // latching it too would fail every later transfer request until a restart, long after
      // the broker is back.
      const unacknowledged = acknowledged === undefined || acknowledged === null;
      if (error && unacknowledged && this.failure === undefined) this.failure = new Error(`delivery to ${topic} failed: ${error.message}`);
      if (!error && report.offset > (this.lastOffsets.get(report.partition) ?? -1)) this.lastOffsets.set(report.partition, report.offset);
      this.pending--;
      if (this.pending === 0) this.wakeDrainWaiters();
    });
  }

  static connect(options: CommandProducerOptions): Promise<CommandProducer> {
    const producer = new Kafka.Producer({
      'bootstrap.servers': options.brokers,
      'enable.idempotence': true,
      'linger.ms': options.lingerMs ?? 5,
      'queue.buffering.max.messages': 1_000_000,
      'batch.num.messages': 10_000,
      partitioner: 'murmur2_random',
      dr_cb: true,
    });
    return new Promise((resolve, reject) => {
      producer.once('ready', () => {
        producer.setPollInterval(5);
        resolve(new CommandProducer(producer, options.topic));
      });
      producer.once('connection.failure', (error) => reject(new Error(`cannot reach Kafka at ${options.brokers}: ${String(error)}`)));
      producer.connect({ timeout: 15_000 }, (error) => {
        if (error) reject(new Error(`cannot reach Kafka at ${options.brokers}: ${error.message}`));
      });
    });
  }

  // Queues one command; `key` is the debited account's decimal id, and decides the
  // partition unless `partition` is given. Throws only when the local queue is full, which
  // the caller handles by awaiting `flush()` and retrying.
  send(key: string, value: Buffer, partition?: number): void {
    this.throwIfFailed();
    this.producer.produce(this.topic, partition ?? null, value, key);
    this.pending++;
  }

  /**
   * send(), resolved with where the broker stored the command once it acknowledged it, or
   * rejected if this one command could not be delivered; earlier failures of other commands
   * do not affect it.
   */
  sendAcknowledged(key: string, value: Buffer, partition?: number): Promise<CommandPosition> {
    return new Promise((resolve, reject) => {
      this.producer.produce(this.topic, partition ?? null, value, key, undefined, { resolve, reject } satisfies Acknowledged);
      this.pending++;
    });
  }

  // Resolves once every queued command has been acknowledged by the broker.
  async flush(timeoutMs = 60_000): Promise<void> {
    if (this.pending > 0) {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${this.pending} commands not acknowledged within ${timeoutMs} ms`)), timeoutMs);
        this.drainWaiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    this.throwIfFailed();
  }

  get unacknowledged(): number {
    return this.pending;
  }

  disconnect(): Promise<void> {
    stopPolling(this.producer);
    return new Promise((resolve) => this.producer.disconnect(() => resolve()));
  }

  private wakeDrainWaiters(): void {
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const wake of waiters) wake();
  }

  private throwIfFailed(): void {
    if (this.failure !== undefined) throw this.failure;
  }
}

/**
 * Stops the producer's poll timer before a disconnect. The binding's disconnect deletes the
 * librdkafka handle on a worker thread while the timer (every few ms, on the main thread)
 * checks "connected" and then polls it, without a lock in between: a poll landing in that
 * gap calls into the deleted handle, and the process dies with "pure virtual method called"
 * (seen once in CI). The flush that precedes the delete serves delivery reports by itself.
 */
export function stopPolling(producer: Kafka.Producer): void {
  producer.setPollInterval(0);
}
