// Kafka in: a librdkafka consumer that batch-consumes `tally.commands` and decodes each
// message straight into a slot of the engine's command ring. The consumer is native
// (io/native/kafka_command_consumer.c): a batch of messages arrives as records in one Buffer,
// with no JavaScript object per message; one call per batch, no promise or closure per
// message. Offsets come from Tally's own store (PostgreSQL), never
// from the consumer group's commits: the caller assigns each partition at the next offset
// its lease row holds. When the ring has no room the consumer simply stops fetching until
// the engine catches up, so nothing is buffered without bound. A stopped partition (lease
// lost, fenced) is paused and any of its messages still in hand are dropped, never applied.

import { Sequencer, RingBuffer, YieldingWaitStrategy } from '../ringbuffer';
import { CommandSlotViews } from '../engine/command_slot';
import { CurrencyRegistry } from '../engine/currency_registry';
import { decodeCommand } from '../engine/command_decoder';
import type { Logger } from './logger';
import { ConsumerHandle, NativeConsumer, RECORD_HEADER_BYTES, RECORD_OFFSET_AT, RECORD_VALUE_BYTES_AT, VALUE_OVERSIZED, configPairs, nativeConsumer } from './native_consumer';

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
   * Whether the instance still owns the partition (its lease is held, it was not stopped).
   * Asked right before a partition taken by an assignment, a restart or the static start is
   * read: a lease lost while the take was still running (other partitions' takes waited on
   * the database) stops the partition before this consumer reads it, and reading it anyway
   * would feed the engine a partition the service has stopped (and may release from the
   * engine for a retake, which the engine answers by dying). Default: always.
   */
  readonly owns?: (partition: number) => boolean;
  /**
   * A read partition's position fell outside the log (`offset`: the position that did): it
   * is already stopped here and reads nothing more; the caller stops applying it.
   */
  readonly onOffsetOutOfRange?: (partition: number, offset: number) => void;
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

/** Holds any batch of small commands; a single message larger than this is taken as malformed. */
const RECORDS_BYTES = 8 << 20;
/**
 * Where a group-assigned partition that was not taken is assigned (paused, read by nobody):
 * the log's start (RD_KAFKA_OFFSET_BEGINNING). Its fetcher then starts, so the seek of a
 * later retake can move it; the group's stored position would, with no offset committed and
 * auto.offset.reset=error, leave the fetcher stopped and every later seek refused.
 */
const OFFSET_UNTAKEN = -2;
/** Nothing fetched: look again after this long (librdkafka keeps fetching meanwhile). */
const IDLE_POLL_MS = 1;
const CONNECT_TIMEOUT_MS = 15_000;
const RING_FULL_RETRY_MS = 1;

export class CommandConsumer {
  private readonly native: NativeConsumer = nativeConsumer();
  private readonly handle: ConsumerHandle;
  private readonly sequencer: Sequencer;
  private readonly views: CommandSlotViews;
  private readonly batchMessagesMax: number;
  private readonly assigned = new Set<number>();
  private readonly stoppedPartitions = new Uint8Array(65536);
  /** Partitions librdkafka has assigned to us through the group (group mode). */
  private readonly groupAssigned = new Set<number>();
  /** A (re)started partition's first expected offset: messages before it are stale, a first message beyond it is reported (-1: none). */
  private readonly resumeAt = new Float64Array(65536).fill(-1);
  /**
   * Per partition, the number of consume() calls made when it was last assigned, restarted or
   * sought: records of it from that call or earlier are stale (fetched for an older position;
   * the native side drops such messages it still holds, these are the ones already copied out).
   */
  private readonly takenAtCall = new Float64Array(65536);
  private consumeCalls = 0;
  /** The consume() call the records in hand came from. */
  private recordsCall = 0;
  /** The last consumed batch: its records, and per record where it starts; `recordNext` onwards are not in the ring yet. */
  private readonly records = Buffer.allocUnsafe(RECORDS_BYTES);
  private readonly recordStart: Int32Array;
  private readonly selected: Int32Array;
  private recordCount = 0;
  private recordNext = 0;
  private running = false;
  private closed = false;
  private stopped: (() => void) | undefined;
  private rebalancing: Promise<void> = Promise.resolve();
  /** Group assignments whose take is running (the group's partitions are not known as ours until it ends). */
  private assigning = 0;
  messagesDecoded = 0;
  rebalances = 0;
  /** Set once librdkafka reports a fatal error (for example a fenced group.instance.id): the consumer reads nothing more. */
  fatalError: string | undefined;

  constructor(private readonly options: CommandConsumerOptions) {
    this.sequencer = options.commandRing.acquireSequencer(new YieldingWaitStrategy(100));
    this.views = new CommandSlotViews(options.commandRing.data);
    this.batchMessagesMax = options.batchMessagesMax ?? 2048;
    this.recordStart = new Int32Array(this.batchMessagesMax);
    this.selected = new Int32Array(this.batchMessagesMax);
    const group = options.group;
    const config: Record<string, string | number | boolean> = {
      ...(group === undefined ? {} : {
        'partition.assignment.strategy': 'cooperative-sticky',
        // Static membership: a restarted instance with the same id gets its partitions back
        // at once instead of after the session timeout.
        'group.instance.id': group.instanceId,
        'session.timeout.ms': group.sessionTimeoutMs,
      }),
      'bootstrap.servers': options.brokers,
      'group.id': options.groupId,
      'enable.auto.commit': false,
      'enable.auto.offset.store': false,
      // Tally seeks every partition to its stored next offset; a position outside the log
      // (retention deleted commands never applied, a topic deleted and created again, a
      // database restored from an old backup) must stop the partition, not be moved to
      // either end of the log, which would skip commands or read others' as if they were next.
      'auto.offset.reset': 'error',
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
      // When a partition's local queue is above queued.min.messages, librdkafka postpones its
      // next fetch by this much (default 1 000 ms): a consumer briefly behind (a burst, the
      // ring full) then waited up to a second with nothing to read. bench:ingest JSON went
      // from 220 k to 0.7 M messages/s with 1 ms; 5 ms keeps the broker's fetch rate bounded.
      'fetch.queue.backoff.ms': 5,
    };
    this.handle = this.native.create(configPairs(config), options.topic, group !== undefined);
  }

  get assignedPartitions(): number[] {
    return [...this.assigned].sort((a, b) => a - b);
  }

  /** Group mode: whether the group currently assigns the partition to us (fed or not). */
  isGroupAssigned(partition: number): boolean {
    return this.groupAssigned.has(partition);
  }

  /** Group mode: an assignment's take is running; isGroupAssigned() does not know its partitions yet. */
  get assignmentInProgress(): boolean {
    return this.assigning > 0;
  }

  /** Group mode: the partitions the group assigns to us, fed or not, ascending. */
  get groupAssignedPartitions(): number[] {
    return [...this.groupAssigned].sort((a, b) => a - b);
  }

  /** Cached high watermark of a partition (refreshed by fetches and statistics), or -1. */
  highWatermark(partition: number): number {
    return this.closed ? -1 : this.native.highWatermark(this.handle, partition);
  }

  /** Asks the broker for the topic's metadata (off the main thread): a cheap liveness probe of Kafka. */
  probe(timeoutMs: number): Promise<void> {
    if (this.closed) return Promise.reject(new Error('the command consumer is closed'));
    return this.native.probe(this.handle, timeoutMs);
  }

  async connect(): Promise<void> {
    try {
      await this.native.probe(this.handle, CONNECT_TIMEOUT_MS);
    } catch (error) {
      throw new Error(`cannot reach Kafka at ${this.options.brokers}: ${(error as Error).message}`);
    }
    if (this.options.group !== undefined) this.native.subscribe(this.handle);
    this.running = true;
    this.poll();
  }

  // Starts reading the given partitions at the given offsets (Tally's stored next offsets).
  assign(requested: ReadonlyArray<{ partition: number; offset: number }>): void {
    // One lost and taken back while the start connected was restarted from its new offset
    // already: assigning it again, at the older one, would be refused by librdkafka.
    const assignments = this.stillOwned(requested).filter((a) => !this.assigned.has(a.partition));
    for (const a of assignments) {
      this.assigned.add(a.partition);
      this.stoppedPartitions[a.partition] = 0;
    }
    this.options.log.info({ partitions: assignments.map((a) => `${a.partition}@${a.offset}`) }, 'partitions assigned');
    this.startReading(assignments);
  }

  // Assigns at the given offsets and resumes: a pause of ours (stopPartitions) outlives an
  // unassignment in librdkafka, so a partition stopped and later assigned again would stay
  // paused; records of an older position still in hand are dropped.
  private startReading(assignments: ReadonlyArray<{ partition: number; offset: number }>): void {
    const partitions = assignments.map((a) => a.partition);
    for (const a of assignments) {
      this.takenAtCall[a.partition] = this.consumeCalls;
      this.resumeAt[a.partition] = a.offset;
    }
    this.native.incrementalAssign(this.handle, partitions, assignments.map((a) => a.offset));
    this.native.resume(this.handle, partitions);
  }

  /** The assignments whose partitions are still owned; the others are logged and left out. */
  private stillOwned<T extends { partition: number }>(assignments: readonly T[]): T[] {
    const owns = this.options.owns;
    if (owns === undefined) return [...assignments];
    const kept: T[] = [];
    const dropped: number[] = [];
    for (const a of assignments) {
      if (owns(a.partition)) kept.push(a);
      else dropped.push(a.partition);
    }
    if (dropped.length > 0) this.options.log.warn({ partitions: dropped }, 'partitions taken but stopped before they were read (their lease was lost meanwhile); not reading them');
    return kept;
  }

  // Stops reading partitions at once: paused, removed, and their in-hand messages dropped.
  stopPartitions(partitions: readonly number[]): void {
    const live = partitions.filter((p) => this.assigned.has(p));
    if (live.length === 0) return;
    for (const p of live) {
      this.assigned.delete(p);
      this.stoppedPartitions[p] = 1;
    }
    // Closed (a stop under way): nothing is read any more; the native handle is gone.
    if (this.closed) return;
    this.native.pause(this.handle, live);
    // In a group the partition stays assigned (paused) until the group revokes it; unassigning
    // outside a rebalance would confuse the group protocol.
    if (this.options.group === undefined) this.native.incrementalUnassign(this.handle, live);
    this.options.log.warn({ partitions: live }, 'partitions stopped');
  }

  // Runs each rebalance after the previous one; librdkafka waits for our (incremental)
  // assign/unassign call, which comes once the handler is done.
  private takeRebalances(): void {
    for (let taken = this.native.takeRebalance(this.handle); taken !== null; taken = this.native.takeRebalance(this.handle)) {
      const assign = taken[0] === 1;
      const lost = taken[1] === 1;
      const partitions = taken.slice(2);
      this.rebalances++;
      this.rebalancing = this.rebalancing
        .then(() => (assign ? this.onAssigned(partitions) : this.onRevoked(partitions, lost)))
        .catch((failure: unknown) => this.options.log.error({ err: failure }, 'rebalance handling failed'));
    }
  }

  private async onAssigned(partitions: number[]): Promise<void> {
    this.options.log.info({ partitions }, 'consumer group assigned partitions');
    let taken: Array<{ partition: number; offset: number }> = [];
    this.assigning++;
    try {
      taken = await this.options.group!.onAssign(partitions);
    } catch (failure) {
      this.options.log.error({ err: failure, partitions }, 'taking assigned partitions failed; they stay paused');
    } finally {
      this.assigning--;
    }
    if (this.closed) return;
    taken = this.stillOwned(taken);
    const ready = new Set(taken.map((t) => t.partition));
    // Every assigned partition is assigned to librdkafka so the rebalance completes; the
    // ones not taken stay stopped (paused, messages dropped) until a later rebalance.
    const missing = partitions.filter((p) => !ready.has(p));
    for (const p of missing) this.stoppedPartitions[p] = 1;
    for (const t of taken) {
      this.assigned.add(t.partition);
      this.stoppedPartitions[t.partition] = 0;
    }
    for (const p of partitions) {
      this.groupAssigned.add(p);
      this.takenAtCall[p] = this.consumeCalls;
      this.resumeAt[p] = -1;
    }
    for (const t of taken) this.resumeAt[t.partition] = t.offset;
    this.native.incrementalAssign(this.handle, [...taken.map((t) => t.partition), ...missing], [...taken.map((t) => t.offset), ...missing.map(() => OFFSET_UNTAKEN)]);
    if (taken.length > 0) this.native.resume(this.handle, taken.map((t) => t.partition));
    if (missing.length > 0) this.native.pause(this.handle, missing);
  }

  private async onRevoked(partitions: number[], lost: boolean): Promise<void> {
    this.options.log.info({ partitions, lost }, 'consumer group revoked partitions');
    for (const p of partitions) {
      this.assigned.delete(p);
      this.groupAssigned.delete(p);
      this.stoppedPartitions[p] = 1;
    }
    try {
      await this.options.group!.onRevoke(partitions, lost);
    } catch (failure) {
      this.options.log.error({ err: failure, partitions }, 'handing revoked partitions back failed; fencing keeps their data safe');
    }
    if (!this.closed) this.native.incrementalUnassign(this.handle, partitions);
  }

  /**
   * Feeds stopped partitions again from the given offsets (their state was reloaded). In a
   * group only partitions the group still assigns to us can restart; the others are returned
   * as `refused`, and those librdkafka would not seek (read by nobody now) as `unsought`.
   * Messages of them already in hand, or fetched from the old position, are dropped until the
   * restart offset comes by.
   */
  restartPartitions(requested: ReadonlyArray<{ partition: number; offset: number }>): { refused: number[]; unsought: number[] } {
    const refused: number[] = [];
    const unsought: number[] = [];
    const restarted: Array<{ partition: number; offset: number }> = [];
    for (const a of this.stillOwned(requested)) {
      if (this.options.group !== undefined && !this.groupAssigned.has(a.partition)) {
        refused.push(a.partition);
        continue;
      }
      this.resumeAt[a.partition] = a.offset;
      this.stoppedPartitions[a.partition] = 0;
      this.assigned.add(a.partition);
      restarted.push(a);
    }
    if (restarted.length === 0) return { refused, unsought };
    if (this.options.group === undefined) {
      this.startReading(restarted);
    } else {
      for (const a of restarted) this.takenAtCall[a.partition] = this.consumeCalls;
      const reasons = this.native.seek(this.handle, restarted.map((a) => a.partition), restarted.map((a) => a.offset));
      const sought: number[] = [];
      restarted.forEach((a, index) => {
        if (reasons[index] === '') {
          sought.push(a.partition);
          return;
        }
        // It would read from wherever librdkafka's position is: not read at all instead.
        this.options.log.error({ partition: a.partition, offset: a.offset, reason: reasons[index] }, 'seek for the restarted partition was refused; not reading it');
        this.assigned.delete(a.partition);
        this.stoppedPartitions[a.partition] = 1;
        unsought.push(a.partition);
      });
      if (sought.length > 0) this.native.resume(this.handle, sought);
    }
    this.options.log.info({ partitions: restarted.filter((a) => !unsought.includes(a.partition)).map((a) => `${a.partition}@${a.offset}`) }, 'partitions restarted');
    return { refused, unsought };
  }

  // Stops fetching and leaves the group; commands already in the ring stay there.
  disconnect(): Promise<void> {
    if (!this.running) {
      if (!this.closed) this.close();
      return Promise.resolve();
    }
    this.running = false;
    return new Promise((resolve) => {
      this.stopped = () => {
        this.close();
        resolve();
      };
    });
  }

  private close(): void {
    this.closed = true;
    this.native.close(this.handle);
  }

  private poll(): void {
    if (!this.running) {
      this.stopped?.();
      return;
    }
    this.takeRebalances();
    this.logErrors();
    if (this.recordNext < this.recordCount) {
      this.publish();
      if (this.recordNext < this.recordCount) {
        setTimeout(() => this.poll(), RING_FULL_RETRY_MS);
        return;
      }
    }
    const bytes = this.native.consume(this.handle, this.records, this.batchMessagesMax);
    if (bytes === 0) {
      setTimeout(() => this.poll(), IDLE_POLL_MS);
      return;
    }
    this.indexRecords(bytes);
    this.takeRebalances();
    this.publish();
    setImmediate(() => this.poll());
  }

  private indexRecords(bytes: number): void {
    this.recordsCall = ++this.consumeCalls;
    const records = this.records;
    let count = 0;
    for (let at = 0; at < bytes; count++) {
      this.recordStart[count] = at;
      const valueBytes = records.readUInt32LE(at + RECORD_VALUE_BYTES_AT);
      at += RECORD_HEADER_BYTES + (valueBytes === VALUE_OVERSIZED ? 0 : valueBytes);
    }
    this.recordCount = count;
    this.recordNext = 0;
  }

  // Decodes as many of the batch's records as the ring has room for and publishes them in one go.
  private publish(): void {
    const capacity = this.sequencer.remainingCapacity();
    const records = this.records;
    let count = 0;
    let next = this.recordNext;
    for (; next < this.recordCount && count < capacity; next++) {
      const at = this.recordStart[next]!;
      if (this.isCurrent(records.readUInt32LE(at), records.readDoubleLE(at + RECORD_OFFSET_AT))) this.selected[count++] = at;
    }
    this.recordNext = next;
    if (count === 0) return;
    const first = this.sequencer.tryClaim(count);
    if (first < 0) throw new Error(`command ring: ${count} slots reported free could not be claimed`);
    const { partitionCount, registry, commandRing } = this.options;
    for (let i = 0; i < count; i++) {
      const at = this.selected[i]!;
      const valueBytes = records.readUInt32LE(at + RECORD_VALUE_BYTES_AT);
      const value = valueBytes === VALUE_OVERSIZED ? EMPTY : records.subarray(at + RECORD_HEADER_BYTES, at + RECORD_HEADER_BYTES + valueBytes);
      decodeCommand(value, records.readUInt32LE(at), records.readDoubleLE(at + RECORD_OFFSET_AT), partitionCount, registry, this.views, commandRing.slotOffset(first + i));
    }
    this.sequencer.publish(first + count - 1);
    this.messagesDecoded += count;
  }

  // Messages of stopped partitions never reach the ring, nor those fetched before the
  // partition was last (re)assigned or sought, nor those of a restarted partition before its
  // restart offset.
  private isCurrent(partition: number, offset: number): boolean {
    if (this.stoppedPartitions[partition] === 1 || this.recordsCall <= this.takenAtCall[partition]!) return false;
    const resumeAt = this.resumeAt[partition]!;
    if (resumeAt < 0) return true;
    if (offset < resumeAt) return false;
    this.resumeAt[partition] = -1;
    if (offset > resumeAt) {
      // The log no longer holds the offsets in between (retention, or a reset of the
      // position): those commands cannot be applied by anyone. Loud, never silent.
      this.options.log.error({ partition, expected: resumeAt, first: offset, missing: offset - resumeAt }, 'the first command read after (re)starting a partition is beyond its stored next offset: the offsets in between are not in the log (retention, a reset position, or transaction markers)');
    }
    return true;
  }

  private logErrors(): void {
    const errors = this.native.takeErrors(this.handle);
    if (errors.length > 0) {
      for (const error of errors) {
        if (!error.startsWith('fatal')) this.options.log.warn({ error, topic: this.options.topic }, 'Kafka consumer error (librdkafka retries)');
      }
      // Every position reset is noted as an error too, so resets come only with errors.
      const resets = this.native.takeOffsetResets(this.handle);
      for (let i = 0; i < resets.length; i += 2) this.stopOutOfRange(resets[i]!, resets[i + 1]!);
    }
    this.noteFatal();
  }

  private stopOutOfRange(partition: number, offset: number): void {
    // A partition stopped or not taken reads nothing anyway; a retake seeks it again.
    if (!this.assigned.has(partition)) return;
    this.options.log.error({
      partition, offset, highWatermark: this.highWatermark(partition), topic: this.options.topic,
    }, 'the partition\'s stored next offset is outside the Kafka log (retention deleted commands not yet applied, the topic was created again, or the database is older than the log): the partition is stopped and nothing more of it is applied; see docs/operations.md, "Offset outside the log"');
    this.stopPartitions([partition]);
    this.options.onOffsetOutOfRange?.(partition, offset);
  }

  private noteFatal(): void {
    if (this.fatalError !== undefined) return;
    const fatal = this.native.fatalError(this.handle);
    if (fatal === null) return;
    this.fatalError = fatal;
    this.options.log.error({ error: fatal, topic: this.options.topic }, 'Kafka consumer stopped by a fatal error; not ready until the instance is restarted');
  }
}

const EMPTY = new Uint8Array(0);
