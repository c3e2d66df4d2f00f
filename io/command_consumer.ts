// Kafka in: a librdkafka consumer that batch-consumes `tally.commands` and decodes each
// message straight into a slot of the engine's command ring. One callback per batch, no
// promise or closure per message. Offsets come from Tally's own store (PostgreSQL), never
// from the consumer group's commits: on assignment each partition starts at the next offset
// the caller supplies. When the ring has no room the consumer simply stops fetching until the
// engine catches up, so nothing is buffered without bound.

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
  // The next offset to read for a partition, from Tally's store.
  readonly nextOffsetOf: (partition: number) => number;
  readonly batchMessagesMax?: number;
}

const CONSUME_TIMEOUT_MS = 50;
const RING_FULL_RETRY_MS = 1;

export class CommandConsumer {
  private readonly consumer: Kafka.KafkaConsumer;
  private readonly sequencer: Sequencer;
  private readonly views: CommandSlotViews;
  private readonly batchMessagesMax: number;
  private readonly assigned = new Set<number>();
  private pending: Kafka.Message[] = [];
  private running = false;
  private stopped: (() => void) | undefined;
  messagesDecoded = 0;

  constructor(private readonly options: CommandConsumerOptions) {
    this.sequencer = options.commandRing.acquireSequencer(new YieldingWaitStrategy(100));
    this.views = new CommandSlotViews(options.commandRing.data);
    this.batchMessagesMax = options.batchMessagesMax ?? 2048;
    this.consumer = new Kafka.KafkaConsumer({
      'bootstrap.servers': options.brokers,
      'group.id': options.groupId,
      'enable.auto.commit': false,
      'enable.auto.offset.store': false,
      'fetch.wait.max.ms': 10,
      'queued.max.messages.kbytes': 65536,
      rebalance_cb: (error: Kafka.LibrdKafkaError, assignment: Kafka.TopicPartition[]) => this.onRebalance(error, assignment),
    }, { 'auto.offset.reset': 'earliest' });
  }

  get assignedPartitions(): number[] {
    return [...this.assigned].sort((a, b) => a - b);
  }

  connect(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.consumer.connect({ timeout: 15_000 }, (error) => {
        if (error) return reject(new Error(`cannot reach Kafka at ${this.options.brokers}: ${error.message}`));
        this.consumer.setDefaultConsumeTimeout(CONSUME_TIMEOUT_MS);
        this.consumer.subscribe([this.options.topic]);
        this.running = true;
        this.poll();
        resolve();
      });
    });
  }

  // Stops fetching and leaves the group; commands already in the ring stay there.
  disconnect(): Promise<void> {
    if (!this.running) return Promise.resolve();
    this.running = false;
    return new Promise((resolve) => {
      this.stopped = () => this.consumer.disconnect(() => resolve());
    });
  }

  private onRebalance(error: Kafka.LibrdKafkaError, assignment: Kafka.TopicPartition[]): void {
    if (error.code === Kafka.CODES.ERRORS.ERR__ASSIGN_PARTITIONS) {
      const withOffsets = assignment.map((tp) => ({ topic: tp.topic, partition: tp.partition, offset: this.options.nextOffsetOf(tp.partition) }));
      for (const tp of withOffsets) this.assigned.add(tp.partition);
      this.options.log.info({ partitions: withOffsets.map((tp) => `${tp.partition}@${tp.offset}`) }, 'partitions assigned');
      this.consumer.assign(withOffsets);
    } else if (error.code === Kafka.CODES.ERRORS.ERR__REVOKE_PARTITIONS) {
      for (const tp of assignment) this.assigned.delete(tp.partition);
      this.options.log.info({ partitions: assignment.map((tp) => tp.partition) }, 'partitions revoked');
      this.consumer.unassign();
    } else {
      this.options.log.error({ err: error }, 'rebalance failed');
    }
  }

  private poll(): void {
    if (!this.running) {
      this.stopped?.();
      return;
    }
    if (this.pending.length > 0) {
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
      this.pending = messages;
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
}

const EMPTY = new Uint8Array(0);
const NO_MESSAGES: Kafka.Message[] = [];
