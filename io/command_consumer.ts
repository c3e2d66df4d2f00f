// Kafka in: a librdkafka consumer that batch-consumes `tally.commands` and decodes each
// message straight into a slot of the engine's command ring. One callback per batch, no
// promise or closure per message. Offsets come from Tally's own store (PostgreSQL), never
// from the consumer group's commits: the caller assigns each partition at the next offset
// its lease row holds. When the ring has no room the consumer simply stops fetching until
// the engine catches up, so nothing is buffered without bound. A stopped partition (lease
// lost, fenced) is paused and any of its messages still in hand are dropped, never applied.

import Kafka from '@confluentinc/kafka-javascript';
import { Sequencer, RingBuffer, YieldingWaitStrategy } from '../ringbuffer';
import { CommandSlotViews } from '../engine/command_slot';
import { CurrencyRegistry } from '../engine/currency_registry';
import { decodeCommand } from '../engine/command_decoder';
import type { Logger } from './logger';

export interface CommandConsumerOptions {
  readonly brokers: string;
  readonly topic: string;
  readonly groupId: string;
  readonly partitionCount: number;
  readonly registry: CurrencyRegistry;
  readonly commandRing: RingBuffer;
  readonly log: Logger;
  readonly batchMessagesMax?: number;
  /**
   * Group mode: subscribe and let the consumer group split the partitions. Assignments and
   * revocations are handled one at a time, in order; the rebalance completes only once the
   * handler is done, so a partition is never read before its state is loaded nor handed to
   * another instance before this one has flushed it.
   */
  readonly group?: {
    readonly instanceId: string;
    readonly sessionTimeoutMs: number;
    /** Takes the partitions (lease, recovery); answers where each one resumes. Partitions left out stay paused. */
    readonly onAssign: (partitions: number[]) => Promise<Array<{ partition: number; offset: number }>>;
    /** Gives the partitions back (drain, flush, release); `lost`: the group already gave them to another. */
    readonly onRevoke: (partitions: number[], lost: boolean) => Promise<void>;
  };
}

const CONSUME_TIMEOUT_MS = 5;

// librdkafka's incremental assignment, present in the binding but missing from its typings.
interface IncrementalAssignment {
  incrementalAssign(assignments: Kafka.Assignment[]): void;
  incrementalUnassign(assignments: Kafka.Assignment[]): void;
}
const RING_FULL_RETRY_MS = 1;

export class CommandConsumer {
  private readonly consumer: Kafka.KafkaConsumer;
  private readonly sequencer: Sequencer;
  private readonly views: CommandSlotViews;
  private readonly batchMessagesMax: number;
  private readonly assigned = new Set<number>();
  private readonly stoppedPartitions = new Uint8Array(65536);
  /** Partitions librdkafka has assigned to us through the group (group mode). */
  private readonly groupAssigned = new Set<number>();
  /** A restarted partition's first expected offset; messages before a match are stale (-1: none). */
  private readonly resumeAt = new Float64Array(65536).fill(-1);
  private pending: Kafka.Message[] = [];
  private running = false;
  private stopped: (() => void) | undefined;
  private rebalancing: Promise<void> = Promise.resolve();
  messagesDecoded = 0;
  rebalances = 0;

  constructor(private readonly options: CommandConsumerOptions) {
    this.sequencer = options.commandRing.acquireSequencer(new YieldingWaitStrategy(100));
    this.views = new CommandSlotViews(options.commandRing.data);
    this.batchMessagesMax = options.batchMessagesMax ?? 2048;
    const group = options.group;
    this.consumer = new Kafka.KafkaConsumer({
      ...(group === undefined ? {} : {
        'partition.assignment.strategy': 'cooperative-sticky',
        // Static membership: a restarted instance with the same id gets its partitions back
        // at once instead of after the session timeout.
        'group.instance.id': group.instanceId,
        'session.timeout.ms': group.sessionTimeoutMs,
        rebalance_cb: (error: Kafka.LibrdKafkaError, assignment: Kafka.Assignment[]) => this.onRebalance(error, assignment),
      }),
      'bootstrap.servers': options.brokers,
      'group.id': options.groupId,
      'enable.auto.commit': false,
      'enable.auto.offset.store': false,
      // A fetch answers once 64 KiB are there or after 5 ms: at moderate rates a fetch per
      // produced batch (fetch.min.bytes 1) kept the co-located broker busier than Tally itself
      // (bench:e2e at 1 000/s: broker 0.50 → 0.31 cores with the events producer's linger).
      'fetch.wait.max.ms': 5,
      'fetch.min.bytes': 65536,
      'max.partition.fetch.bytes': 8388608,
      'fetch.max.bytes': 67108864,
      'queued.max.messages.kbytes': 65536,
      // Keeps the cached high watermarks fresh for the consumer lag metric.
      'statistics.interval.ms': 5000,
    }, { 'auto.offset.reset': 'earliest' });
  }

  get assignedPartitions(): number[] {
    return [...this.assigned].sort((a, b) => a - b);
  }

  /** Cached high watermark of a partition (refreshed with the statistics), or -1. */
  highWatermark(partition: number): number {
    try {
      return this.consumer.getWatermarkOffsets(this.options.topic, partition).highOffset ?? -1;
    } catch {
      return -1;
    }
  }

  /** Asks the broker for the topic's metadata: a cheap liveness probe of Kafka. */
  probe(timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.consumer.getMetadata({ topic: this.options.topic, timeout: timeoutMs }, (error) => (error ? reject(error) : resolve()));
    });
  }

  connect(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.consumer.connect({ timeout: 15_000 }, (error) => {
        if (error) return reject(new Error(`cannot reach Kafka at ${this.options.brokers}: ${error.message}`));
        this.consumer.setDefaultConsumeTimeout(CONSUME_TIMEOUT_MS);
        // The timeout bounds the wait for the first message of a batch only: otherwise it
        // restarts with every message and a steady trickle is handed over only once a whole
        // batch has arrived (measured: 0.8 s p50 of pure consumer delay at 1 000 messages/s).
        (this.consumer as unknown as { setDefaultIsTimeoutOnlyForFirstMessage(only: boolean): void }).setDefaultIsTimeoutOnlyForFirstMessage(true);
        if (this.options.group !== undefined) this.consumer.subscribe([this.options.topic]);
        this.running = true;
        this.poll();
        resolve();
      });
    });
  }

  // Starts reading the given partitions at the given offsets (Tally's stored next offsets).
  assign(assignments: ReadonlyArray<{ partition: number; offset: number }>): void {
    for (const a of assignments) {
      this.assigned.add(a.partition);
      this.stoppedPartitions[a.partition] = 0;
    }
    this.options.log.info({ partitions: assignments.map((a) => `${a.partition}@${a.offset}`) }, 'partitions assigned');
    (this.consumer as unknown as IncrementalAssignment).incrementalAssign(assignments.map((a) => ({ topic: this.options.topic, partition: a.partition, offset: a.offset })));
  }

  // Stops reading partitions at once: paused, removed, and their in-hand messages dropped.
  stopPartitions(partitions: readonly number[]): void {
    const live = partitions.filter((p) => this.assigned.has(p));
    if (live.length === 0) return;
    for (const p of live) {
      this.assigned.delete(p);
      this.stoppedPartitions[p] = 1;
    }
    const toppars = live.map((partition) => ({ topic: this.options.topic, partition }));
    this.consumer.pause(toppars);
    // In a group the partition stays assigned (paused) until the group revokes it; unassigning
    // outside a rebalance would confuse the group protocol.
    if (this.options.group === undefined) (this.consumer as unknown as IncrementalAssignment).incrementalUnassign(toppars);
    this.options.log.warn({ partitions: live }, 'partitions stopped');
  }

  // Runs each rebalance after the previous one; librdkafka waits for our (incremental)
  // assign/unassign call, which may come later than the callback.
  private onRebalance(error: Kafka.LibrdKafkaError, assignment: Kafka.Assignment[]): void {
    const group = this.options.group!;
    const partitions = assignment.map((a) => a.partition);
    const code = error.code;
    const lost = code !== Kafka.CODES.ERRORS.ERR__ASSIGN_PARTITIONS && (this.consumer as unknown as { assignmentLost(): boolean }).assignmentLost();
    this.rebalances++;
    this.rebalancing = this.rebalancing.then(async () => {
      const incremental = this.consumer as unknown as IncrementalAssignment;
      if (code === Kafka.CODES.ERRORS.ERR__ASSIGN_PARTITIONS) {
        this.options.log.info({ partitions }, 'consumer group assigned partitions');
        let taken: Array<{ partition: number; offset: number }> = [];
        try {
          taken = await group.onAssign(partitions);
        } catch (failure) {
          this.options.log.error({ err: failure, partitions }, 'taking assigned partitions failed; they stay paused');
        }
        const ready = new Set(taken.map((t) => t.partition));
        // Every assigned partition is assigned to librdkafka so the rebalance completes; the
        // ones not taken stay stopped (paused, messages dropped) until a later rebalance.
        const missing = partitions.filter((p) => !ready.has(p));
        for (const p of missing) this.stoppedPartitions[p] = 1;
        for (const t of taken) {
          this.assigned.add(t.partition);
          this.stoppedPartitions[t.partition] = 0;
        }
        for (const p of partitions) this.groupAssigned.add(p);
        incremental.incrementalAssign([
          ...taken.map((t) => ({ topic: this.options.topic, partition: t.partition, offset: t.offset })),
          ...missing.map((partition) => ({ topic: this.options.topic, partition })),
        ]);
        if (missing.length > 0) this.consumer.pause(missing.map((partition) => ({ topic: this.options.topic, partition })));
        return;
      }
      this.options.log.info({ partitions, lost }, 'consumer group revoked partitions');
      for (const p of partitions) {
        this.assigned.delete(p);
        this.groupAssigned.delete(p);
        this.stoppedPartitions[p] = 1;
      }
      try {
        await group.onRevoke(partitions, lost);
      } catch (failure) {
        this.options.log.error({ err: failure, partitions }, 'handing revoked partitions back failed; fencing keeps their data safe');
      }
      incremental.incrementalUnassign(assignment.map((a) => ({ topic: a.topic, partition: a.partition })));
    }).catch((failure: unknown) => this.options.log.error({ err: failure }, 'rebalance handling failed'));
  }

  /**
   * Feeds stopped partitions again from the given offsets (their state was reloaded). In a
   * group only partitions the group still assigns to us can restart; the others are returned.
   * Messages of them already in hand, or fetched from the old position, are dropped until the
   * restart offset comes by.
   */
  restartPartitions(assignments: ReadonlyArray<{ partition: number; offset: number }>): number[] {
    const refused: number[] = [];
    const restarted: Array<{ partition: number; offset: number }> = [];
    for (const a of assignments) {
      if (this.options.group !== undefined && !this.groupAssigned.has(a.partition)) {
        refused.push(a.partition);
        continue;
      }
      this.resumeAt[a.partition] = a.offset;
      this.stoppedPartitions[a.partition] = 0;
      this.assigned.add(a.partition);
      restarted.push(a);
    }
    if (restarted.length === 0) return refused;
    if (this.options.group === undefined) {
      (this.consumer as unknown as IncrementalAssignment).incrementalAssign(restarted.map((a) => ({ topic: this.options.topic, partition: a.partition, offset: a.offset })));
    } else {
      for (const a of restarted) {
        this.consumer.seek({ topic: this.options.topic, partition: a.partition, offset: a.offset }, 5000, (error) => {
          if (error) this.options.log.error({ err: error, partition: a.partition, offset: a.offset }, 'seek for the restarted partition failed');
        });
      }
      this.consumer.resume(restarted.map((a) => ({ topic: this.options.topic, partition: a.partition })));
    }
    this.options.log.info({ partitions: restarted.map((a) => `${a.partition}@${a.offset}`) }, 'partitions restarted');
    return refused;
  }

  // Stops fetching and leaves the group; commands already in the ring stay there.
  disconnect(): Promise<void> {
    if (!this.running) return Promise.resolve();
    this.running = false;
    return new Promise((resolve) => {
      this.stopped = () => this.consumer.disconnect(() => resolve());
    });
  }

  private poll(): void {
    if (!this.running) {
      this.stopped?.();
      return;
    }
    if (this.pending.length > 0) {
      this.pending = this.withoutStopped(this.pending);
      this.publish();
      if (this.pending.length > 0) {
        setTimeout(() => this.poll(), RING_FULL_RETRY_MS);
        return;
      }
    }
    this.consumer.consume(this.batchMessagesMax, this.onBatch);
  }

  private readonly onBatch = (error: Kafka.LibrdKafkaError, messages: Kafka.Message[]): void => {
    if (error) this.options.log.warn({ err: error }, 'consume failed; retrying');
    else if (messages.length > 0) {
      this.pending = this.withoutStopped(messages);
      this.publish();
    }
    setImmediate(() => this.poll());
  };

  // Decodes as many pending messages as the ring has room for and publishes them in one go.
  private publish(): void {
    const messages = this.pending;
    const count = Math.min(messages.length, this.sequencer.remainingCapacity());
    if (count === 0) return;
    const first = this.sequencer.tryClaim(count);
    if (first < 0) return;
    const { partitionCount, registry, commandRing } = this.options;
    for (let i = 0; i < count; i++) {
      const message = messages[i]!;
      decodeCommand(message.value ?? EMPTY, message.partition, message.offset, partitionCount, registry, this.views, commandRing.slotOffset(first + i));
    }
    this.sequencer.publish(first + count - 1);
    this.messagesDecoded += count;
    this.pending = count === messages.length ? NO_MESSAGES : messages.slice(count);
  }

  // Messages of stopped partitions never reach the ring. Filtering allocates, but only in
  // the rare batches that hold such messages.
  private withoutStopped(messages: Kafka.Message[]): Kafka.Message[] {
    for (const message of messages) {
      if (this.stoppedPartitions[message.partition] === 1 || this.resumeAt[message.partition]! >= 0) return messages.filter((m) => this.isCurrent(m));
    }
    return messages;
  }

  private isCurrent(message: Kafka.Message): boolean {
    const partition = message.partition;
    if (this.stoppedPartitions[partition] === 1) return false;
    const resumeAt = this.resumeAt[partition]!;
    if (resumeAt < 0) return true;
    if (message.offset !== resumeAt) return false;
    this.resumeAt[partition] = -1;
    return true;
  }
}

const EMPTY = new Uint8Array(0);
const NO_MESSAGES: Kafka.Message[] = [];
