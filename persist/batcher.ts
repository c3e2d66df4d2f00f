// The batcher: the output ring's consumer on the main thread. It peeks the engine's command
// outputs without copying them, cuts them into batches, has the flush workers make each batch
// durable per partition group, and only then releases the batch's slots to the engine
// (docs/persistence.md). It replaces OutputDrain, which released at once.
//
//   ring:  … │ released │ batch k (durable) │ batch k+1 (flushing) │ open batch │ unpeeked │
//                        ▲ consumer sequence                        ▲ scanned    ▲ published
//
// - Cut: a batch ends after batchRowsMax commands, or batchIntervalMs after its first command
//   was peeked, whichever comes first.
// - Groups: partition p belongs to group p % groupCount. Each group has at most one task in
//   flight and runs its batches in ring order, so per partition the flushes commit strictly in
//   order. A group that fell behind catches up with one task over several consecutive batches
//   (up to batchRowsMax commands of its own): under load, flushes grow instead of queueing.
// - Whole batches: a small batch (at most WHOLE_BATCH_COMMANDS_MAX commands) cut while every
//   group is idle goes to group 0 as ONE task for all its partitions, instead of one task per
//   group: at low rates that halves the transactions (each has a fixed cost of about a
//   millisecond of CPU between Node and PostgreSQL). Order per partition still holds: nothing
//   of any group was pending when it was cut, and no other group dispatches until it is done.
// - Release: a batch is released (barrier.release) and reported (onDurable) once every group
//   it needed has committed, and only after every earlier batch: a contiguous prefix. The
//   report names the batch's partitions that were NOT committed (stopped or fenced before
//   their flush): their slots are released, but their outcomes must not be published.
// - Failures: a database error retries the same task after 50 ms doubling to 5 s, forever
//   until stop(), logging each failure; `ready` is false meanwhile. A fenced partition is
//   reported once (onFenced), stopped, and none of its later commands is ever written.
// - Bounds: tasks in flight ≤ groups; batches ≤ ring slots; the ring's capacity is the
//   back-pressure on the engine.
//
// Ownership eras. stopPartitions() (lease lost) and fencing stop a partition; admitPartition()
// (lease taken again, state reloaded) starts it anew: it cuts the open batch first and bumps
// the era, and a partition is only ever written by tasks of batches cut after its admission.
// A task never spans two eras.

import { performance } from 'node:perf_hooks';
import * as hdr from 'hdr-histogram-js';
import { PARTITIONS_MAX } from '../engine/balance_table';
import { OUTPUT_SLOT_BYTES, OUT_KIND_OFFSET, OUT_PARTITION_OFFSET, OUT_SLOT_COUNT_OFFSET, SlotKind } from '../engine/output_layout';
import { RingBuffer, SequenceBarrier, createWaitStrategy } from '../ringbuffer';
import type { FlushRunner } from './flush_pool';
import type { CopyFormat, FlushResult, FlushSteps, FlushTask } from './flush_task';

/** The part of a pino logger the batcher uses. */
export interface BatcherLog {
  info(context: object, message: string): void;
  warn(context: object, message: string): void;
  error(context: object, message: string): void;
}

export interface BatcherOptions {
  /** The engine's output ring; the batcher takes its consumer role. */
  readonly ring: RingBuffer;
  readonly runner: FlushRunner;
  /** Partition groups (partition % groupCount); one task in flight per group. Normally flushWorkers. */
  readonly groupCount: number;
  readonly batchRowsMax: number;
  readonly batchIntervalMs: number;
  readonly topic: string;
  readonly pgUrl: string;
  /** The partition's current fencing token (the lease code keeps them); undefined: not leased. */
  readonly fencingTokenOf: (partition: number) => bigint | undefined;
  /** A batch is durable; the range's slots may be read during the call only (they are released right after). */
  readonly onDurable?: (range: DurableRange) => void;
  /** Partitions whose flush was fenced (or that had no lease): stopped, never written again until admitted. */
  readonly onFenced?: (partitions: readonly number[]) => void;
  /** A flush task committed after `latencyMs` (metrics). */
  readonly onFlushCommitted?: (latencyMs: number) => void;
  /** A flush task failed with a database error and will be retried (metrics). */
  readonly onFlushFailed?: () => void;
  readonly log: BatcherLog;
  readonly pollIntervalMs?: number;
  readonly retryDelayMinMs?: number;
  readonly retryDelayMaxMs?: number;
  /** A flush in flight longer than this makes the batcher not ready (default FLUSH_STALLED_MS). */
  readonly flushStalledMs?: number;
  /** Bench only. */
  readonly copyFormat?: CopyFormat;
  /** The lease TTL, which each flush extends the expiry of its partitions' lease rows by (FlushTask.leaseTtlMs). */
  readonly leaseTtlMs?: number;
}

export interface DurableRange {
  readonly ring: RingBuffer;
  readonly firstPosition: number;
  readonly lastPosition: number;
  readonly commandCount: number;
  /**
   * Partitions with commands in the range that this instance did NOT commit: stopped (lease
   * lost), fenced or unleased before their flush committed. Their outcomes are not durable
   * here and must not be told to anyone (the next owner replays and republishes them). Empty
   * in the normal case.
   */
  readonly unwrittenPartitions: readonly number[];
}

export interface BatcherMetrics {
  commandsScanned: number;
  batchesCut: number;
  batchesDurable: number;
  commandsDurable: number;
  tasksCommitted: number;
  taskFailures: number;
  tasksFenced: number;
  commandsWritten: number;
  journalRows: number;
  outcomeRows: number;
  /** Summed time of the committed flushes by step (ms): encoding, then each database step. */
  readonly flushSteps: FlushSteps;
  /** Task submitted → committed, µs. */
  readonly flushLatencyUs: hdr.Histogram;
  /** First command of a batch peeked → batch released, µs. */
  readonly durableLatencyUs: hdr.Histogram;
}

/** One group's share of a batch: its partitions with the tokens they had at the cut, and their commands. */
interface GroupShare {
  readonly partitions: number[];
  readonly tokens: bigint[];
  commandCount: number;
}

/** Batches of at most this many commands, cut while every group is idle, are flushed whole (one task). */
export const WHOLE_BATCH_COMMANDS_MAX = 1000;

interface Batch {
  /** Flushed as one task by group 0 for every partition in it (shares[0] holds them all). */
  readonly whole: boolean;
  readonly firstPosition: number;
  readonly lastPosition: number;
  readonly commandCount: number;
  readonly firstPeekedMs: number;
  readonly era: number;
  readonly shares: (GroupShare | undefined)[];
  groupsPending: number;
  /** Every partition with commands in the batch, and those a committed task wrote. */
  readonly partitions: readonly number[];
  readonly written: Set<number>;
}

interface InFlight {
  readonly batches: Batch[];
  readonly era: number;
  task: FlushTask;
  submittedMs: number;
}

interface Group {
  readonly index: number;
  readonly queue: Batch[];
  inFlight: InFlight | undefined;
  failures: number;
  retryTimer: NodeJS.Timeout | undefined;
}

/** Flushes take well under a second; one in flight this long is stuck (see `ready`). */
const FLUSH_STALLED_MS = 30_000;
const HISTOGRAM_MAX_US = 600_000_000;

export class Batcher {
  readonly metrics: BatcherMetrics;
  private readonly ring: RingBuffer;
  private readonly barrier: SequenceBarrier;
  private readonly bytes: Uint8Array;
  private readonly words: Int32Array;
  private readonly groups: Group[];
  private readonly batches: Batch[] = [];
  private readonly durableOffsets = new Float64Array(PARTITIONS_MAX).fill(-1);
  private readonly stopped = new Uint8Array(PARTITIONS_MAX);
  private readonly admittedEra = new Float64Array(PARTITIONS_MAX);
  /** Serial of the open batch that last saw each partition, so each is listed once per batch. */
  private readonly seenInBatch = new Float64Array(PARTITIONS_MAX).fill(-1);
  private era = 0;
  private scanNext: number;
  private openFirstPosition = -1;
  private openCommandCount = 0;
  private openFirstPeekedMs = 0;
  private openPartitions: number[] = [];
  /** Commands of the open batch per group. */
  private readonly openGroupCommands: Float64Array;
  private batchSerial = 0;
  /** Whole batches cut and not yet done by group 0: the other groups wait meanwhile. */
  private wholePending = 0;
  private pollTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private durableWaiters: Array<{ position: number; resolve: () => void }> = [];

  constructor(private readonly options: BatcherOptions) {
    const { ring, groupCount, batchRowsMax, batchIntervalMs } = options;
    if (ring.slotBytes !== OUTPUT_SLOT_BYTES) throw new Error(`batcher: output ring slots are ${ring.slotBytes} bytes, expected ${OUTPUT_SLOT_BYTES}`);
    if (!Number.isInteger(groupCount) || groupCount < 1) throw new Error(`batcher: groupCount must be a positive integer, got ${groupCount}`);
    if (!Number.isInteger(batchRowsMax) || batchRowsMax < 1) throw new Error(`batcher: batchRowsMax must be a positive integer, got ${batchRowsMax}`);
    if (!(batchIntervalMs >= 0)) throw new Error(`batcher: batchIntervalMs must be >= 0, got ${batchIntervalMs}`);
    this.ring = ring;
    // Only tryWaitFor is used, which never waits; the strategy is a formality.
    this.barrier = ring.acquireBarrier(createWaitStrategy('yielding', 1));
    this.bytes = new Uint8Array(ring.data);
    this.words = new Int32Array(ring.data);
    this.scanNext = this.barrier.nextSequence;
    this.openGroupCommands = new Float64Array(groupCount);
    this.groups = Array.from({ length: groupCount }, (_, index) => ({ index, queue: [], inFlight: undefined, failures: 0, retryTimer: undefined }));
    const histogram = (): hdr.Histogram => hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: HISTOGRAM_MAX_US, numberOfSignificantValueDigits: 3 });
    this.metrics = {
      commandsScanned: 0, batchesCut: 0, batchesDurable: 0, commandsDurable: 0, tasksCommitted: 0, taskFailures: 0, tasksFenced: 0,
      commandsWritten: 0, journalRows: 0, outcomeRows: 0,
      flushSteps: { encodeMs: 0, lockMs: 0, outcomesMs: 0, journalMs: 0, balancesMs: 0, commitMs: 0 },
      flushLatencyUs: histogram(), durableLatencyUs: histogram(),
    };
  }

  /** Starts peeking the ring every pollIntervalMs (default 1 ms). Without it, poll() and flush() drive the batcher. */
  start(): void {
    if (this.closed) throw new Error('batcher: stopped');
    if (this.pollTimer !== undefined) return;
    this.pollTimer = setInterval(() => this.poll(), this.options.pollIntervalMs ?? 1);
  }

  /**
   * False while some group's flushes are failing, or one has been in flight for longer than
   * a flush ever takes when PostgreSQL answers (it may wait on a dead connection until the
   * flush's own deadline, minutes later): the service reports not ready.
   */
  get ready(): boolean {
    const stalledBeforeMs = performance.now() - (this.options.flushStalledMs ?? FLUSH_STALLED_MS);
    return this.groups.every((g) => g.failures === 0 && (g.inFlight === undefined || g.inFlight.submittedMs > stalledBeforeMs));
  }

  /**
   * The partition's stored next offset, read when its lease was taken: everything below it is
   * durable already (committed by this or an earlier owner), so the durable offset starts
   * there, not at -1 (an idle partition would otherwise report its whole log as lag).
   */
  noteStoredNextOffset(partition: number, nextOffset: number): void {
    if (nextOffset - 1 > this.durableOffsets[checkedPartition(partition)]!) this.durableOffsets[partition] = nextOffset - 1;
  }

  /** Highest Kafka offset of the partition known durable, or -1. */
  durableOffsetOf(partition: number): number {
    return this.durableOffsets[partition] ?? -1;
  }

  /** Batches cut and not yet released. */
  get pendingBatches(): number {
    return this.batches.length;
  }

  get tasksInFlight(): number {
    return this.groups.reduce((n, g) => n + (g.inFlight === undefined ? 0 : 1), 0);
  }

  /** The lease of these partitions is gone: nothing more of them is written (no onFenced call). */
  stopPartitions(partitions: readonly number[]): void {
    for (const partition of partitions) this.stopped[checkedPartition(partition)] = 1;
  }

  /**
   * A stopped partition is owned again: new lease, the engine reloaded its state from the
   * database and the consumer re-reads it from the stored next offset. Call once the engine
   * applies nothing older of it: every output published so far is cut off into earlier
   * batches, in which the partition stays unwritten. No effect on a partition not stopped.
   */
  admitPartition(partition: number): void {
    if (this.stopped[checkedPartition(partition)] === 0) return;
    this.scan(performance.now());
    if (this.openCommandCount > 0) this.cut();
    this.era++;
    this.stopped[partition] = 0;
    this.admittedEra[partition] = this.era;
  }

  /** One round: peek what the engine published, cut a batch that is due, submit tasks. */
  poll(): void {
    const nowMs = performance.now();
    this.scan(nowMs);
    if (this.openCommandCount > 0 && nowMs - this.openFirstPeekedMs >= this.options.batchIntervalMs) this.cut();
  }

  /** Makes everything published so far durable; resolves once it is released, rejects after timeoutMs. */
  async flush(timeoutMs: number): Promise<void> {
    if (this.closed) throw new Error('batcher: stopped');
    this.scan(performance.now());
    if (this.openCommandCount > 0) this.cut();
    const position = this.scanNext - 1;
    if (this.barrier.consumedSequence >= position) return;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.durableWaiters = this.durableWaiters.filter((w) => w.resolve !== done);
        reject(new Error(`batcher: ring position ${position} not durable within ${timeoutMs} ms (consumed ${this.barrier.consumedSequence})`));
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        resolve();
      };
      this.durableWaiters.push({ position, resolve: done });
    });
  }

  /** Flushes what it can within drainTimeoutMs, then stops: no more tasks, retries or releases. */
  async stop(drainTimeoutMs = 30_000): Promise<void> {
    if (this.closed) return;
    try {
      await this.flush(drainTimeoutMs);
    } catch (error) {
      this.options.log.warn({ err: error }, 'batcher stopping with batches not durable; they are replayed from Kafka on restart');
    }
    this.closed = true;
    clearInterval(this.pollTimer);
    for (const group of this.groups) clearTimeout(group.retryTimer);
    this.barrier.detach();
  }

  // Peeks the commands published since the last scan into the open batch, cutting at batchRowsMax.
  private scan(nowMs: number): void {
    // Never ask past one ring ahead of the consumer: the ring is full until a release.
    if (this.scanNext > this.barrier.consumedSequence + this.ring.slotCount) return;
    const available = this.barrier.tryWaitFor(this.scanNext);
    if (available < this.scanNext) return;
    let position = this.scanNext;
    while (position <= available) {
      const slot = this.ring.slotOffset(position);
      const slotCount = this.bytes[slot + OUT_SLOT_COUNT_OFFSET]!;
      if (this.bytes[slot + OUT_KIND_OFFSET] !== SlotKind.Outcome || slotCount < 1) throw new Error(`batcher: ring position ${position} is not a command's outcome slot`);
      if (this.openCommandCount === 0) {
        this.openFirstPosition = position;
        this.openFirstPeekedMs = nowMs;
      }
      const partition = this.words[(slot + OUT_PARTITION_OFFSET) >> 2]!;
      this.notePartition(partition);
      this.openGroupCommands[partition % this.groups.length]!++;
      this.openCommandCount++;
      position += slotCount;
      this.scanNext = position;
      if (this.openCommandCount >= this.options.batchRowsMax) this.cut();
    }
    if (position !== available + 1) throw new Error(`batcher: published range ends inside a command (${position} != ${available + 1})`);
  }

  private notePartition(partition: number): void {
    if (partition < 0 || partition >= PARTITIONS_MAX) throw new Error(`batcher: command of partition ${partition >>> 0} is out of range`);
    if (this.seenInBatch[partition] === this.batchSerial) return;
    this.seenInBatch[partition] = this.batchSerial;
    this.openPartitions.push(partition);
  }

  // Closes the open batch: fixes its range and each group's partitions with their tokens.
  private cut(): void {
    const shares: (GroupShare | undefined)[] = new Array(this.groups.length).fill(undefined);
    const unleased: number[] = [];
    for (const partition of this.openPartitions) {
      if (this.stopped[partition] === 1) continue;
      const token = this.options.fencingTokenOf(partition);
      if (token === undefined) {
        this.stopped[partition] = 1;
        unleased.push(partition);
        continue;
      }
      const group = partition % this.groups.length;
      const share = (shares[group] ??= { partitions: [], tokens: [], commandCount: this.openGroupCommands[group]! });
      share.partitions.push(partition);
      share.tokens.push(token);
    }
    this.openGroupCommands.fill(0);
    const whole = this.openCommandCount <= WHOLE_BATCH_COMMANDS_MAX && shares.filter((share) => share !== undefined).length > 1 && this.allGroupsIdle();
    if (whole) {
      const all: GroupShare = { partitions: [], tokens: [], commandCount: 0 };
      for (const share of shares) {
        if (share === undefined) continue;
        all.partitions.push(...share.partitions);
        all.tokens.push(...share.tokens);
        all.commandCount += share.commandCount;
      }
      shares.fill(undefined);
      shares[0] = all;
      this.wholePending++;
    }
    const batch: Batch = {
      whole, firstPosition: this.openFirstPosition, lastPosition: this.scanNext - 1, commandCount: this.openCommandCount,
      firstPeekedMs: this.openFirstPeekedMs, era: this.era, shares, groupsPending: 0, partitions: this.openPartitions, written: new Set(),
    };
    this.metrics.commandsScanned += this.openCommandCount;
    this.metrics.batchesCut++;
    this.batchSerial++;
    this.openCommandCount = 0;
    this.openPartitions = [];
    this.batches.push(batch);
    shares.forEach((share, group) => {
      if (share === undefined) return;
      batch.groupsPending++;
      this.groups[group]!.queue.push(batch);
    });
    if (unleased.length > 0) this.reportFenced(unleased, 'no fencing token (not leased): commands of these partitions are not written');
    for (const group of this.groups) this.dispatch(group);
    this.releaseDurablePrefix();
  }

  private allGroupsIdle(): boolean {
    return this.groups.every((g) => g.inFlight === undefined && g.retryTimer === undefined && g.queue.length === 0);
  }

  // Submits the group's next task if it has none in flight: its oldest pending batches of one era.
  // While a whole batch is pending, only group 0 (which holds it) dispatches.
  private dispatch(group: Group): void {
    let completedEmpty = false;
    while (!this.closed && group.inFlight === undefined && group.retryTimer === undefined && group.queue.length > 0
      && (this.wholePending === 0 || group.index === 0)) {
      const batches = this.takeMergeable(group);
      const era = batches[0]!.era;
      const task = this.buildTask(group, batches, era);
      if (task === undefined) {
        this.completeForGroup(batches);
        completedEmpty = true;
        continue;
      }
      group.inFlight = { batches, era, task, submittedMs: performance.now() };
      this.submit(group);
    }
    // Batches with nothing left to write here (their partitions stopped) may complete a
    // durable prefix: release it now, not at the next cut or commit, which may be far off.
    if (completedEmpty) this.releaseDurablePrefix();
  }

  // Consecutive pending batches of one era whose commands of this group total at most batchRowsMax.
  // A whole batch goes alone: its task writes other groups' partitions, which later batches leave to their groups.
  private takeMergeable(group: Group): Batch[] {
    const first = group.queue[0]!;
    let count = 1;
    let commands = first.shares[group.index]!.commandCount;
    while (!first.whole && count < group.queue.length) {
      const next = group.queue[count]!;
      if (next.whole) break;
      const nextCommands = next.shares[group.index]!.commandCount;
      if (next.era !== first.era || commands + nextCommands > this.options.batchRowsMax) break;
      commands += nextCommands;
      count++;
    }
    return group.queue.splice(0, count);
  }

  // The task over the batches' whole range, for their partitions still writable; undefined if none is.
  private buildTask(group: Group, batches: readonly Batch[], era: number): FlushTask | undefined {
    const partitions: number[] = [];
    const tokens: string[] = [];
    for (const batch of batches) {
      const share = batch.shares[group.index]!;
      share.partitions.forEach((partition, index) => {
        if (this.stopped[partition] === 1 || this.admittedEra[partition]! > era) return;
        const token = share.tokens[index]!.toString();
        const known = partitions.indexOf(partition);
        if (known < 0) {
          partitions.push(partition);
          tokens.push(token);
        } else if (tokens[known] !== token) {
          // One era, one lease: a token that changed without a new admission is a lease-code bug.
          throw new Error(`batcher: partition ${partition} changed fencing token from ${tokens[known]} to ${token} within one ownership era`);
        }
      });
    }
    if (partitions.length === 0) return undefined;
    const { ring } = this.options;
    return {
      ringData: ring.data, slotCount: ring.slotCount, slotBytes: ring.slotBytes,
      firstPosition: batches[0]!.firstPosition, lastPosition: batches[batches.length - 1]!.lastPosition,
      partitions, fencingTokens: tokens, topic: this.options.topic, pgUrl: this.options.pgUrl, copyFormat: this.options.copyFormat, leaseTtlMs: this.options.leaseTtlMs,
    };
  }

  private submit(group: Group): void {
    const inFlight = group.inFlight!;
    inFlight.submittedMs = performance.now();
    this.options.runner.run(inFlight.task).then(
      (result) => this.onResult(group, inFlight, result),
      (error: unknown) => this.onFailure(group, inFlight, error),
    );
  }

  private onResult(group: Group, inFlight: InFlight, result: FlushResult): void {
    if (this.closed || group.inFlight !== inFlight) return;
    if (result.status === 'fenced') {
      this.onFencedResult(group, inFlight, result);
      return;
    }
    const metrics = this.metrics;
    metrics.tasksCommitted++;
    metrics.commandsWritten += result.commandCount;
    metrics.journalRows += result.journalRows;
    metrics.outcomeRows += result.outcomeRows;
    for (const step of Object.keys(metrics.flushSteps) as (keyof FlushSteps)[]) metrics.flushSteps[step] += result.steps[step];
    const latencyMs = performance.now() - inFlight.submittedMs;
    metrics.flushLatencyUs.recordValue(Math.max(1, Math.round(latencyMs * 1000)));
    this.options.onFlushCommitted?.(latencyMs);
    result.partitions.forEach((partition, index) => {
      if (result.lastOffsets[index]! > this.durableOffsets[partition]!) this.durableOffsets[partition] = result.lastOffsets[index]!;
    });
    // The transaction held every partition of the task (each fenced-checked), so each batch's
    // commands of those partitions are committed.
    for (const batch of inFlight.batches) for (const partition of inFlight.task.partitions) batch.written.add(partition);
    if (group.failures > 0) this.options.log.info({ group: group.index, failures: group.failures }, 'flushes of the partition group recovered');
    group.failures = 0;
    group.inFlight = undefined;
    this.completeForGroup(inFlight.batches);
    this.releaseDurablePrefix();
    this.dispatchAfter(group, inFlight.batches);
  }

  // Fenced partitions are stopped and reported; the rest of the task is retried at once without them.
  private onFencedResult(group: Group, inFlight: InFlight, result: FlushResult): void {
    this.metrics.tasksFenced++;
    const current = result.fencedPartitions.filter((p) => this.stopped[p] === 0 && this.admittedEra[p]! <= inFlight.era);
    for (const partition of result.fencedPartitions) if (this.admittedEra[partition]! <= inFlight.era) this.stopped[partition] = 1;
    if (current.length > 0) this.reportFenced(current, 'flush fenced: another instance owns these partitions; their commands are no longer written');
    this.resubmit(group, inFlight);
  }

  private onFailure(group: Group, inFlight: InFlight, error: unknown): void {
    if (this.closed || group.inFlight !== inFlight) return;
    group.failures++;
    this.metrics.taskFailures++;
    this.options.onFlushFailed?.();
    const delayMs = Math.min(this.options.retryDelayMaxMs ?? 5_000, (this.options.retryDelayMinMs ?? 50) * 2 ** Math.min(group.failures - 1, 30));
    this.options.log.error({
      err: error, group: group.index, partitions: inFlight.task.partitions, firstPosition: inFlight.task.firstPosition,
      lastPosition: inFlight.task.lastPosition, failures: group.failures, retryInMs: delayMs,
    }, 'flush failed; retrying the same batch');
    group.retryTimer = setTimeout(() => {
      group.retryTimer = undefined;
      if (!this.closed) this.resubmit(group, inFlight);
    }, delayMs);
  }

  // Runs the in-flight batches again for their partitions still writable (stopped ones drop out).
  private resubmit(group: Group, inFlight: InFlight): void {
    const task = this.buildTask(group, inFlight.batches, inFlight.era);
    if (task !== undefined) {
      inFlight.task = task;
      this.submit(group);
      return;
    }
    group.inFlight = undefined;
    this.completeForGroup(inFlight.batches);
    this.releaseDurablePrefix();
    this.dispatchAfter(group, inFlight.batches);
  }

  private completeForGroup(batches: readonly Batch[]): void {
    for (const batch of batches) {
      batch.groupsPending--;
      if (batch.whole) this.wholePending--;
    }
  }

  // The group's next task; after a whole batch, every group's (they waited for it).
  private dispatchAfter(group: Group, done: readonly Batch[]): void {
    if (done.some((batch) => batch.whole)) {
      for (const g of this.groups) this.dispatch(g);
    } else {
      this.dispatch(group);
    }
  }

  // Releases the longest prefix of batches that every group has committed.
  private releaseDurablePrefix(): void {
    let released = -1;
    const nowMs = performance.now();
    while (this.batches.length > 0 && this.batches[0]!.groupsPending === 0) {
      const batch = this.batches.shift()!;
      released = batch.lastPosition;
      this.metrics.batchesDurable++;
      this.metrics.commandsDurable += batch.commandCount;
      this.metrics.durableLatencyUs.recordValue(Math.max(1, Math.round((nowMs - batch.firstPeekedMs) * 1000)));
      this.notifyDurable(batch);
      this.barrier.release(batch.lastPosition);
    }
    if (released < 0 || this.durableWaiters.length === 0) return;
    const waiting = this.durableWaiters;
    this.durableWaiters = waiting.filter((w) => w.position > released);
    for (const waiter of waiting) if (waiter.position <= released) waiter.resolve();
  }

  private notifyDurable(batch: Batch): void {
    if (this.options.onDurable === undefined) return;
    try {
      const unwrittenPartitions = batch.partitions.filter((partition) => !batch.written.has(partition));
      this.options.onDurable({ ring: this.ring, firstPosition: batch.firstPosition, lastPosition: batch.lastPosition, commandCount: batch.commandCount, unwrittenPartitions });
    } catch (error) {
      this.options.log.error({ err: error, firstPosition: batch.firstPosition, lastPosition: batch.lastPosition }, 'onDurable listener failed');
    }
  }

  private reportFenced(partitions: readonly number[], message: string): void {
    this.options.log.warn({ partitions }, message);
    if (this.options.onFenced === undefined) return;
    try {
      this.options.onFenced(partitions);
    } catch (error) {
      this.options.log.error({ err: error, partitions }, 'onFenced listener failed');
    }
  }
}

function checkedPartition(partition: number): number {
  if (!Number.isInteger(partition) || partition < 0 || partition >= PARTITIONS_MAX) throw new Error(`batcher: partition ${partition} out of range`);
  return partition;
}
