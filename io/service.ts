// The running service (docs/persistence.md, docs/api.md):
//   Kafka consumer → command ring → engine worker → output ring → batcher → flush pool
//   → PostgreSQL; once a batch commits: result events, transfer answers, the outcome cache,
//   WebSocket pushes and metrics; the HTTP server reads the shared balance table.
//
// Taking a partition (at start in static mode, on assignment in group mode): take the lease
// (fencing token + 1), load the partition's balances and dedup window from PostgreSQL into
// the engine, then read Kafka from the lease row's next offset. Giving one back (revocation):
// stop feeding it, let the engine apply what it has, flush and commit it, zero it in the
// engine and release the lease, and only then let the group hand it on. A partition whose
// lease is lost or whose flush is fenced is stopped at once: nothing more of it is written.

import pg from 'pg';
import { EngineThread } from '../engine/engine_thread';
import { CurrencyRegistry } from '../engine/currency_registry';
import { Batcher, DurableRange } from '../persist/batcher';
import { FlushPool } from '../persist/flush_pool';
import { LeaseKeeper, LeaseLostReason } from '../persist/lease';
import { recoverPartition } from '../persist/recovery';
import { syncCurrencies } from '../persist/currencies';
import { CommandConsumer } from './command_consumer';
import { CommandProducer } from './command_producer';
import { CreditRelay } from './credit_relay';
import { registerBalanceRoutes } from './balance_routes';
import { BalanceStream } from './balance_stream';
import { DurableSlotQueue } from './durable_slot_queue';
import { EventPublisher, topicPartitionCount } from './event_publisher';
import { EventPositions } from './event_positions';
import { HealthProbe } from './health_probe';
import { HttpServer, listen } from './http_server';
import { Metrics } from './metrics';
import { OutcomeCache } from './outcome_cache';
import { registerTransactionRoutes } from './transaction_routes';
import { registerTransferRoutes } from './transfer_routes';
import { ConfigError, type TallyConfig } from './config';
import type { LeaseRowSeen } from '../persist/lease';
import type { Logger } from './logger';

const COMMAND_RING_SLOTS = 1 << 14;
const OUTPUT_RING_SLOTS = 1 << 18;
const STOP_TIMEOUT_MS = 30_000;
/** Each closing step after the drain (producer, flush pool, leases) gets at most this long. */
const STOP_STEP_MS = 3_000;
/** Bound of every query of the service's query pools (not the flushes, not the leases). */
const QUERY_TIMEOUT_MS = 5_000;
const HANDOVER_TIMEOUT_MS = 20_000;
const RETAKE_DELAY_MS_MIN = 1000;
/**
 * How often the result events of owned partitions whose recorded position a failed event
 * holds back (the broker refused it, events piled up beyond the parked bound, its fan-out
 * failed) are republished from that position. Without it they waited for the partition's
 * next take, however long it stayed here. Rounds that keep finding failures wait twice as
 * long each time, up to HELD_BACK_REPUBLISH_MS_MAX: a broker that refuses every event would
 * otherwise have every round read and resend all of them.
 */
const HELD_BACK_REPUBLISH_MS = 30_000;
const HELD_BACK_REPUBLISH_MS_MAX = 600_000;
/**
 * A round republishes a partition only if its recorded position lies at most this many
 * offsets below its durable offset: a round holds the take chain (rebalances wait), and a
 * refusal that lasted long leaves more than a round should read and resend; the partition's
 * next take (a restart) republishes them then.
 */
const HELD_BACK_REPUBLISH_OFFSETS_MAX = 1_000_000;
const FANOUT_SLICE_COMMANDS = 2000;
const FANOUT_BACKLOG_MAX = 500_000;
const FANOUT_BACKLOG_BYTES_MAX = 256 << 20;
const RETAKE_DELAY_MS_MAX = 30_000;

interface Parts {
  readonly engine: EngineThread;
  readonly leases: LeaseKeeper;
  readonly pool: FlushPool;
  readonly batcher: Batcher;
  readonly consumer: CommandConsumer;
  readonly publisher: EventPublisher;
  readonly producer: CommandProducer;
  readonly relay: CreditRelay;
  readonly eventPositions: EventPositions;
  readonly db: pg.Pool;
  /** Connections of the transaction lookups (io/transaction_routes.ts). */
  readonly lookupDb: pg.Pool;
  readonly cache: OutcomeCache;
  readonly stream: BalanceStream;
  readonly metrics: Metrics;
  readonly health: HealthProbe;
  readonly http: HttpServer;
}

export class Service {
  private started = false;
  private stopping = false;
  private taking = 0;
  /** Partitions assigned to us whose take failed and is being retried (retryAssigned). */
  private readonly retrying = new Set<number>();
  /** Partitions stopped because their lease expired while the database was away, to be taken back. */
  private readonly retaking = new Set<number>();
  /** Group: partitions whose lease another instance took while the group still assigns them to us (reclaim). */
  private readonly reclaiming = new Set<number>();
  /** Partitions being handed back cleanly (giveBack): their last committed credits are still relayed here. */
  private readonly handingOver = new Set<number>();
  /** Partitions stopped because their stored next offset is not in the Kafka log (an operator's decision). */
  private readonly outsideLog = new Set<number>();
  /** Static assignment: each retried partition's lease row as its take first failed. */
  private readonly retryingSeen = new Map<number, LeaseRowSeen>();
  /** Successful takes per partition (tells a catch-up retry of an earlier take apart). */
  private readonly takes = new Map<number, number>();
  /** Takes of partitions run one after another (takePartitions). */
  private takeChain: Promise<unknown> = Promise.resolve();
  /** The first assignment (static: every partition; group: the group's first answer) was taken. */
  private assignedOnce = false;
  private readonly stoppedPartitions = new Set<number>();
  /** Partitions this instance applies: leased, loaded and fed. */
  private readonly owned = new Set<number>();
  /** Partitions whose state the engine holds (owned ones, and stopped ones not yet released). */
  private readonly inEngine = new Set<number>();
  /** Durable outcomes whose events, credits, cache entries and pushes are not done yet. */
  private readonly fanoutQueue: DurableSlotQueue;
  private fanoutScheduled = false;
  private heldBackTimer: NodeJS.Timeout | undefined;
  private heldBackRepublishMs = HELD_BACK_REPUBLISH_MS;

  private constructor(readonly config: TallyConfig, readonly registry: CurrencyRegistry, private readonly parts: Parts, private readonly log: Logger) {
    this.fanoutQueue = new DurableSlotQueue(registry, (error, position, partition, offset) => {
      log.error({ err: error, ringPosition: position, partition, offset }, 'fan-out of a durable command failed: its cache entry, pushes and credit are skipped (the sweep relays the credit; its partition\'s stream subscribers are closed with 4010); its event is republished from the partition\'s recorded position within 30 s');
      parts.metrics.noteFanoutFailure();
      // Its event may not have been handed over: the partition's recorded position must stay
      // below it, or later deliveries would carry the position past an event never published.
      parts.publisher.noteFailed(partition, offset, 'the fan-out of this durable command failed');
      // Its pushes are lost too: its partition's subscribers must not go on as if complete.
      parts.stream.pushesLost(partition);
    });
  }

  get engine(): EngineThread {
    return this.parts.engine;
  }

  get http(): HttpServer {
    return this.parts.http;
  }

  get batcher(): Batcher {
    return this.parts.batcher;
  }

  /** Partitions this instance applies, ascending. */
  ownedPartitions(): number[] {
    return [...this.owned].sort((a, b) => a - b);
  }

  // Highest Kafka offset of the partition whose effects are committed in PostgreSQL, or -1.
  durableOffsetOf(partition: number): number {
    return this.parts.batcher.durableOffsetOf(partition);
  }

  isReady(): boolean {
    const { batcher, health, publisher, consumer } = this.parts;
    return this.started && this.assignedOnce && !this.stopping && this.parts.engine.failed === undefined && this.taking === 0 && batcher.ready && health.databaseUp && health.kafkaUp && publisher.healthy
      && consumer.fatalError === undefined && this.unappliedPartitions().length === 0;
  }

  /**
   * Partitions that should be applied here and are not: in a group, those it assigns to us
   * (their take failed and is retried, or they were stopped); statically, those whose take
   * failed and is retried, those whose lease expired while the database was away until
   * they are taken back (or found taken by another instance), and those whose stored offset
   * is not in the log.
   */
  unappliedPartitions(): number[] {
    if (this.config.partitionAssignment !== 'group') return [...new Set([...this.retrying, ...this.retaking, ...this.outsideLog])].filter((p) => !this.owned.has(p)).sort((a, b) => a - b);
    return this.parts.consumer.groupAssignedPartitions.filter((p) => !this.owned.has(p));
  }

  /**
   * Static assignment has no group to say whom a partition belongs to. A failed take is
   * retried by compare-and-swap against the lease row as it was when the take failed
   * (takePartitionsNow): if another instance has taken it meanwhile, it is theirs, and taking
   * it back would fence them. Records that row once per partition.
   */
  private async recordRetryingSeen(partitions: readonly number[]): Promise<void> {
    const unseen = partitions.filter((p) => this.retrying.has(p) && !this.retryingSeen.has(p));
    if (unseen.length === 0) return;
    const rows = await this.parts.db.query<{ partition: number; owner: string | null; fencing_token: string }>(
      'SELECT partition, owner, fencing_token::text AS fencing_token FROM partition_leases WHERE topic = $1 AND partition = ANY($2::int[])', [this.config.commandsTopic, unseen]);
    for (const row of rows.rows) {
      if (!this.retryingSeen.has(row.partition)) this.retryingSeen.set(row.partition, { owner: row.owner, fencingToken: Number(row.fencing_token) });
    }
  }

  private forgetRetry(partition: number): void {
    this.retrying.delete(partition);
    this.retryingSeen.delete(partition);
  }

  /**
   * A retry asks the group whether a partition is still ours, and while an assignment's take
   * runs the group's answer is not known yet: a partition stopped during that take would be
   * dropped as "no longer ours" and never retried. Throwing makes the retry's backoff try again.
   */
  private throwWhileAssigning(): void {
    if (this.config.partitionAssignment === 'group' && this.parts.consumer.assignmentInProgress) throw new Error('a group assignment is being taken; trying again after it');
  }

  /** Whether the partition is still ours to apply: the group assigns it to us, or (static) always. */
  private stillAssigned(partition: number): boolean {
    return this.config.partitionAssignment !== 'group' || this.parts.consumer.isGroupAssigned(partition);
  }

  /**
   * `onFatal`: called once when the instance can no longer make progress and must be
   * restarted (the engine thread died). `tally start` exits with EXIT_ENGINE_FAILED; nothing
   * is lost, since whatever was not committed is replayed from Kafka by the next owner.
   */
  static async start(config: TallyConfig, log: Logger, hooks: { onFatal?: (error: Error) => void; heldBackRepublishMs?: number } = {}): Promise<Service> {
    const registry = CurrencyRegistry.fromConfig(config.currencies);
    await withClient(config.pgUrl, (client) => syncCurrencies(client, registry));
    // An account's home partition is murmur2 mod the topic's partition count: a different
    // count here would reject or never read some partitions' commands.
    const topicPartitions = await topicPartitionCount(config.kafkaBrokers, config.commandsTopic);
    if (topicPartitions === 0) throw new Error(`commands topic ${config.commandsTopic} does not exist; create it with ${config.commandPartitions} partitions (npm run services:up does) or set TALLY_COMMANDS_TOPIC`);
    if (topicPartitions !== config.commandPartitions) {
      throw new ConfigError(`commands topic ${config.commandsTopic} has ${topicPartitions} partitions but TALLY_COMMAND_PARTITIONS is ${config.commandPartitions}; they must be equal`);
    }
    const engine = await EngineThread.start({
      commandSlotCount: COMMAND_RING_SLOTS,
      outputSlotCount: OUTPUT_RING_SLOTS,
      balanceCapacity: config.balanceCapacity,
      dedupWindow: config.dedupWindow,
      engineCpu: config.engineCpu ?? undefined,
      core: config.engineCore,
      onFailure: (error) => {
        log.fatal({ err: error, ownedPartitions: service?.ownedPartitions() }, 'engine thread failed: no command can be applied any more; the instance must be restarted (its partitions are replayed from their committed offsets)');
        hooks.onFatal?.(error);
      },
    });
    logEngineAffinity(engine, config, log);
    let service: Service | undefined;
    const leases = new LeaseKeeper({
      pgUrl: config.pgUrl, topic: config.commandsTopic, owner: config.instanceId, ttlMs: config.leaseTtlMs, log, dedupWindow: config.dedupWindow,
      onLost: (partitions, reason) => service?.stopPartitions(partitions, reason),
    });
    // Every query is bounded (server and client side), so a stalled PostgreSQL fails a lookup,
    // a probe or a transfer poll with an error and the timeouts promised to clients hold.
    const db = new pg.Pool({ connectionString: config.pgUrl, max: 4, connectionTimeoutMillis: 2000, statement_timeout: QUERY_TIMEOUT_MS, query_timeout: QUERY_TIMEOUT_MS + 1000 });
    db.on('error', (error) => log.warn({ err: error }, 'idle query connection failed'));
    // Unauthenticated transaction lookups get connections of their own.
    const lookupDb = new pg.Pool({ connectionString: config.pgUrl, max: 2, connectionTimeoutMillis: 2000, statement_timeout: QUERY_TIMEOUT_MS, query_timeout: QUERY_TIMEOUT_MS + 1000 });
    lookupDb.on('error', (error) => log.warn({ err: error }, 'idle lookup connection failed'));
    const publisher = await EventPublisher.connect({ brokers: config.kafkaBrokers, topic: config.eventsTopic, log });
    const producer = await CommandProducer.connect({ brokers: config.kafkaBrokers, topic: config.commandsTopic, lingerMs: 1 });
    const relay = await CreditRelay.connect({
      brokers: config.kafkaBrokers, topic: config.commandsTopic, db, registry, log, ownedPartitions: () => service?.ownedPartitions() ?? [],
      dedupWindow: config.dedupWindow,
      mayRelay: (partition) => (service?.owned.has(partition) === true || service?.handingOver.has(partition) === true) && leases.holds(partition),
    });
    const eventPositions = new EventPositions(db, config.commandsTopic, publisher, log);
    const cache = new OutcomeCache(config.outcomeCacheSize);
    // Called only once requests come, after everything below exists.
    const ownership = {
      partitionCount: config.commandPartitions,
      self: config.instanceId,
      owns: (partition: number) => service?.owned.has(partition) === true,
      ownerOf: (partition: number) => health.ownerOf(partition),
      owned: () => service?.ownedPartitions() ?? [],
      outsideLog: (partition: number) => service?.outsideLog.has(partition) === true,
    };
    const stream = new BalanceStream(config.streamBufferBytesMax, log, ownership);
    const pool = new FlushPool({ workers: config.flushWorkers });
    let metrics: Metrics | undefined;
    const batcher = new Batcher({
      ring: engine.outputRing, runner: pool, groupCount: config.flushWorkers,
      batchRowsMax: config.batchRowsMax, batchIntervalMs: config.batchIntervalMs,
      topic: config.commandsTopic, pgUrl: config.pgUrl, log, leaseTtlMs: config.leaseTtlMs,
      fencingTokenOf: (partition) => {
        const token = leases.fencingTokenOf(partition);
        return token === undefined ? undefined : BigInt(token);
      },
      onFenced: (partitions) => service?.stopPartitions(partitions, 'fenced'),
      onDurable: (range) => service?.onDurable(range),
      onFlushCommitted: (latencyMs) => metrics?.noteFlush(latencyMs),
      onFlushFailed: () => metrics?.noteFlushFailure(),
    });
    const group = config.partitionAssignment === 'group' ? {
      instanceId: config.instanceId, sessionTimeoutMs: config.sessionTimeoutMs,
      onAssign: (partitions: number[]) => service!.takeAssigned(partitions),
      onRevoke: (partitions: number[], lost: boolean) => service!.giveBack(partitions, lost),
    } : undefined;
    const consumer = new CommandConsumer({
      brokers: config.kafkaBrokers, topic: config.commandsTopic, groupId: config.consumerGroup,
      partitionCount: config.commandPartitions, registry, commandRing: engine.commandRing, log, group,
      owns: ownership.owns,
      onOffsetOutOfRange: (partition) => service!.stopPartitions([partition], 'offset-outside-log'),
    });
    const health = new HealthProbe({ db, topic: config.commandsTopic, kafkaProbe: (timeoutMs) => consumer.probe(timeoutMs), log });
    const tableReader = engine.tableReader();
    metrics = new Metrics({
      commandRingOccupancy: () => engine.commandRing.publishedSequence() - engine.commandRing.consumedSequence(),
      outputRingOccupancy: () => engine.outputRing.publishedSequence() - engine.outputRing.consumedSequence(),
      partitions: () => (service?.ownedPartitions() ?? []).map((partition) => ({ partition, durableOffset: batcher.durableOffsetOf(partition) + 1, highWatermark: consumer.highWatermark(partition) })),
      balanceEntries: () => tableReader.count,
      balanceEntriesReleased: () => {
        let released = 0;
        for (let p = 0; p < config.commandPartitions; p++) if (!(service?.holdsInEngine(p) ?? true)) released += tableReader.entriesOfPartition(p);
        return released;
      },
      ready: () => service?.isReady() === true,
      engineNativeCore: () => engine.core === 'native',
      eventsUnacknowledged: () => publisher.unacknowledged + publisher.parked,
      eventsHeldBackPartitions: () => publisher.heldBackPartitions().filter((p) => service?.ownedPartitions().includes(p) === true).length,
      streamConnections: () => stream.connections,
      streamPushes: () => stream.pushes,
      streamSlowConsumersClosed: () => stream.slowConsumersClosed,
      creditsRelayed: () => relay.relayed,
      creditRelayFailures: () => relay.failures,
      creditRelayWithheld: () => relay.withheld,
      creditsResentUnapplied: () => relay.resentUnapplied,
      creditsHeldBack: () => relay.heldBack,
      creditsPending: () => relay.pending,
      partitionsOwned: () => service?.ownedPartitions().length ?? 0,
    });
    const http = await listen({
      host: config.httpHost, port: config.httpPort,
      isReady: () => service?.isReady() === true,
      readyDetails: () => {
        const unapplied = service?.unappliedPartitions() ?? [];
        const engineFailed = engine.failed;
        return {
          instance: config.instanceId, partitions: service?.ownedPartitions() ?? [], ...(unapplied.length === 0 ? {} : { unapplied }),
          ...(engineFailed === undefined ? {} : { engine_failed: engineFailed.message }),
        };
      },
      routes: (app) => {
        registerBalanceRoutes(app, tableReader, registry, ownership);
        registerTransactionRoutes(app, cache, lookupDb, config.commandPartitions, log);
        registerTransferRoutes(app, {
          secret: config.transferSecret, signatureWindowMs: config.signatureWindowMs, signatureTimestampOptional: config.signatureTimestamp === 'optional', timeoutMs: config.transferTimeoutMs,
          bodyBytesMax: config.httpBodyBytesMax, partitionCount: config.commandPartitions, commandsTopic: config.commandsTopic, registry,
          producer: () => producer, cache, db, ownsPartition: ownership.owns, log,
        });
        stream.register(app);
        metrics!.register(app);
      },
    });
    service = new Service(config, registry, { engine, leases, pool, batcher, consumer, publisher, producer, relay, eventPositions, db, lookupDb, cache, stream, metrics, health, http }, log);
    batcher.start();
    eventPositions.start();
    if (group === undefined) {
      const all = Array.from({ length: config.commandPartitions }, (_, p) => p);
      const assignments = await service.takePartitions(all);
      await consumer.connect();
      consumer.assign(assignments);
      // Retried only now: a retry restarts its partition in the consumer, which must be connected.
      service.retryFailedTakes(all, assignments);
    } else {
      // The group's assignment arrives through the rebalance callback (takePartitions).
      await consumer.connect();
    }
    // Probes start once the consumer is connected: before, "not connected" is not an outage.
    health.start();
    service.heldBackRepublishMs = hooks.heldBackRepublishMs ?? HELD_BACK_REPUBLISH_MS;
    service.scheduleHeldBackRepublish(service.heldBackRepublishMs);
    service.started = true;
    log.info({ port: http.port, assignment: config.partitionAssignment, partitions: service.ownedPartitions().length, instance: config.instanceId }, 'tally started');
    return service;
  }

  // A committed batch: everything that may only happen after the COMMIT happens here. The
  // slots are only readable during this call, so they are copied out at once (as bytes); the
  // rest (events, credits, cache, pushes, metrics) runs in slices of FANOUT_SLICE_COMMANDS
  // between which the event loop serves HTTP, in commit order. A backlog beyond
  // FANOUT_BACKLOG_MAX commands or FANOUT_BACKLOG_BYTES_MAX bytes of slots is worked off here
  // and now instead (a bound on memory).
  private onDurable(range: DurableRange): void {
    // Commands of partitions this range did not commit are not counted (nor told of).
    this.parts.metrics.noteBatch(this.fanoutQueue.push(range), 0);
    if (this.fanoutQueue.commandCount > FANOUT_BACKLOG_MAX || this.fanoutQueue.byteCount > FANOUT_BACKLOG_BYTES_MAX) this.fanout(Number.MAX_SAFE_INTEGER);
    if (!this.fanoutScheduled && !this.fanoutQueue.empty) {
      this.fanoutScheduled = true;
      setImmediate(() => this.fanoutSlices());
    }
  }

  private fanoutSlices(): void {
    this.fanoutScheduled = false;
    this.fanout(FANOUT_SLICE_COMMANDS);
    if (!this.fanoutQueue.empty) {
      this.fanoutScheduled = true;
      setImmediate(() => this.fanoutSlices());
    }
  }

  private fanout(commandsMax: number): void {
    const { publisher, cache, stream, metrics, relay } = this.parts;
    const events = this.fanoutQueue.take(commandsMax, stream.subscribed, (outcome) => {
      if (outcome.credit !== undefined) relay.relay(outcome.partition, outcome.offset, outcome.credit);
      publisher.publish(outcome.partition, outcome.offset, outcome.txId, outcome.eventJson);
      // Kept for lookups only while the partition is applied here (or being handed over): one
      // that left, its queue still draining, would be looked up here after its next owner
      // recorded the tx_id anew (waiters are woken either way).
      const applied = this.owned.has(outcome.partition) || this.handingOver.has(outcome.partition);
      cache.add(outcome.txId, outcome.partition, outcome.eventJson, outcome.recorded && applied);
      stream.publish(outcome);
      metrics.noteOutcome(outcome.commandType, outcome.reasonCode);
    });
    metrics.noteEvents(events);
  }

  /**
   * Partitions assigned to us (by the group, or all of them at a static start): take them;
   * those that could not be taken (the database away, the old owner's lease row still locked
   * by a paused flush) stay unread and are tried again with backoff while they are still
   * ours; /readyz reports them meanwhile.
   */
  async takeAssigned(partitions: readonly number[]): Promise<Array<{ partition: number; offset: number }>> {
    const assignments = await this.takePartitions(partitions);
    this.retryFailedTakes(partitions, assignments);
    return assignments;
  }

  /** The partitions of `partitions` that `assignments` lacks are taken again later (retryAssigned). */
  retryFailedTakes(partitions: readonly number[], assignments: ReadonlyArray<{ partition: number }>): void {
    const failed = partitions.filter((p) => !assignments.some((a) => a.partition === p));
    for (const p of failed) this.retrying.add(p);
    if (failed.length === 0) return;
    // Static: note the lease rows as they are now (the retry's compare-and-swap compares them).
    if (this.config.partitionAssignment !== 'group') this.recordRetryingSeen(failed).catch(() => undefined);
    this.retryWithBackoff(() => this.retryAssigned(failed), RETAKE_DELAY_MS_MIN, 'taking assigned partitions failed again', failed);
  }

  /** Runs `attempt` after `delayMs`, and again with the delay doubled (up to RETAKE_DELAY_MS_MAX) while it throws. */
  private retryWithBackoff(attempt: () => Promise<void>, delayMs: number, failure: string, partitions: readonly number[]): void {
    const timer = setTimeout(() => {
      attempt().catch((error: unknown) => {
        const next = Math.min(RETAKE_DELAY_MS_MAX, delayMs * 2);
        this.log.warn({ err: error, partitions, retryInMs: next }, `${failure}; retrying`);
        this.retryWithBackoff(attempt, next, failure, partitions);
      });
    }, delayMs);
    timer.unref();
  }

  /**
   * Takes partitions again that were ours before (a failed take, a lost lease) and restarts
   * them in the consumer; `wanted` is checked again in the take's turn. Throws for those still
   * wanted and not taken, so the caller's backoff tries again.
   */
  private async takeAgain(candidates: readonly number[], wanted: (p: number) => boolean, takenMessage: string, seen?: ReadonlyMap<number, LeaseRowSeen>): Promise<void> {
    const assignments = await this.takePartitions(candidates, wanted, seen);
    const { refused, unsought } = this.parts.consumer.restartPartitions(assignments);
    // Unsought ones are ours but cannot be read: handed back and taken again on the retry.
    if (refused.length + unsought.length > 0) await this.handBackUntaken([...refused, ...unsought]);
    for (const p of unsought) if (this.stillAssigned(p)) this.retrying.add(p);
    const taken = assignments.map((a) => a.partition).filter((p) => !refused.includes(p) && !unsought.includes(p));
    if (taken.length > 0) this.log.info({ partitions: taken }, takenMessage);
    const failed = candidates.filter((p) => wanted(p) && (!assignments.some((a) => a.partition === p) || unsought.includes(p)));
    if (failed.length > 0) throw new Error(`could not take partitions ${failed.join(', ')}`);
  }

  /**
   * Hands back partitions a retake took and the consumer will not read, in the take chain's
   * turn, so it is ordered with the takes: a take of one of them asked for meanwhile (the
   * group assigned it back) either runs after this and takes it afresh, or ran before this,
   * and then its take supersedes the hand-back, which would otherwise stop a partition that
   * is ours and read again.
   */
  private handBackUntaken(partitions: readonly number[]): Promise<void> {
    // Not read from now on: not ours to answer for either while the hand-back waits its turn
    // (balance reads, transfers and subscriptions go to whoever applies them).
    for (const p of partitions) this.owned.delete(p);
    const takesSeen = partitions.map((p) => this.takes.get(p));
    const run = this.takeChain.then(() => this.giveBack(partitions.filter((p, index) => this.takes.get(p) === takesSeen[index]), false));
    this.takeChain = run.catch(() => undefined);
    return run;
  }

  private async retryAssigned(partitions: readonly number[]): Promise<void> {
    if (this.stopping) return;
    this.throwWhileAssigning();
    // Only while they are still ours: a revoked one belongs to its new owner.
    if (this.config.partitionAssignment !== 'group') await this.recordRetryingSeen(partitions);
    const wanted = (p: number): boolean => this.retrying.has(p) && this.stillAssigned(p) && !this.owned.has(p);
    for (const p of partitions) if (!wanted(p)) this.forgetRetry(p);
    const candidates = partitions.filter(wanted);
    if (candidates.length === 0) return;
    await this.takeAgain(candidates, wanted, 'assigned partitions taken on a retry');
  }

  /**
   * Leases, loads and admits partitions; answers where each resumes. Failures are logged and
   * left out. Takes run one after another (an assignment, a retry and a retake of the same
   * partition never interleave).
   */
  takePartitions(partitions: readonly number[], stillWanted?: (partition: number) => boolean, seen?: ReadonlyMap<number, LeaseRowSeen>): Promise<Array<{ partition: number; offset: number }>> {
    const run = this.takeChain.then(() => this.takePartitionsNow(partitions, stillWanted, seen));
    this.takeChain = run.catch(() => undefined);
    return run;
  }

  private async takePartitionsNow(
    partitions: readonly number[], stillWanted?: (partition: number) => boolean, rowsSeen?: ReadonlyMap<number, LeaseRowSeen>,
  ): Promise<Array<{ partition: number; offset: number }>> {
    const { engine, leases, batcher } = this.parts;
    const assignments: Array<{ partition: number; offset: number }> = [];
    this.taking++;
    try {
      for (const partition of partitions) {
        // Asked again here and in the lease keeper's turn right before the row is taken: the
        // takes before it (recoveries of seconds) and the keeper's queue leave time for the
        // group to revoke it, and taking the lease of a partition that has a new owner would
        // fence that owner.
        if (stillWanted?.(partition) === false) continue;
        let storedNextOffset = 0;
        let loading = false;
        try {
          if (this.inEngine.has(partition)) await this.releaseFromEngine([partition]);
          // A static retry, or a reclaim, takes the partition only if nobody took it meanwhile (compare-and-swap).
          const seen = rowsSeen?.get(partition) ?? (this.retrying.has(partition) ? this.retryingSeen.get(partition) : undefined);
          let unwanted = false;
          const wanted = (): boolean => {
            unwanted = stillWanted !== undefined && !stillWanted(partition);
            return !unwanted;
          };
          const lease = seen !== undefined ? await leases.acquireIfUnchanged(partition, seen, wanted) : await leases.acquire(partition, wanted);
          if (lease === undefined && unwanted) {
            this.log.info({ partition }, 'a partition about to be taken is no longer ours to take (revoked meanwhile); not taking it');
            continue;
          }
          if (lease === undefined) {
            this.log.warn({ partition }, 'a partition whose take failed was taken by another instance meanwhile; not taking it');
            this.forgetRetry(partition);
            continue;
          }
          loading = true;
          const recovered = await recoverPartition(this.config.pgUrl, engine, { partition, nextOffset: lease.nextOffset, dedupWindow: this.config.dedupWindow });
          // The lease can be lost during the recovery (seconds; renewals failing for a TTL),
          // and its loss, reported while the partition was not ours yet, stopped nothing: taken
          // now, it would be fed and fenced at its first flush, and never taken back.
          if (leases.fencingTokenOf(partition) !== lease.fencingToken) {
            // A static retry compares the row with the one this take held: another instance
            // that took it meanwhile keeps it, a row that lapsed (still ours) is taken again.
            if (this.config.partitionAssignment !== 'group') this.retryingSeen.set(partition, { owner: this.config.instanceId, fencingToken: lease.fencingToken });
            throw new Error(`its lease (fencing token ${lease.fencingToken}) was lost while the partition was being recovered`);
          }
          this.inEngine.add(partition);
          batcher.admitPartition(partition);
          batcher.noteStoredNextOffset(partition, lease.nextOffset);
          this.stoppedPartitions.delete(partition);
          this.outsideLog.delete(partition);
          this.owned.add(partition);
          this.log.info({
            partition, fencingToken: lease.fencingToken, nextOffset: lease.nextOffset, balances: recovered.balances.count,
            outcomes: recovered.outcomes.count, readMs: Math.round(recovered.readMs), loadMs: Math.round(recovered.loadMs),
          }, 'partition recovered');
          assignments.push({ partition, offset: lease.nextOffset });
          storedNextOffset = lease.nextOffset;
          this.forgetRetry(partition);
          this.takes.set(partition, (this.takes.get(partition) ?? 0) + 1);
        } catch (error) {
          this.log.error({ err: error, partition }, 'could not take the partition; it is not applied here');
          // A load that timed out here may still finish in the worker, which answers in order:
          // releasing it after the load leaves the engine clean for the retry.
          if (loading) await engine.releasePartition(partition).catch((releaseError: unknown) => this.log.warn({ err: releaseError, partition }, 'could not release a partition whose load failed'));
          await leases.release([partition]).catch(() => undefined);
          continue;
        }
        // The partition is ours now whatever follows: a failure here must not release its lease.
        await this.catchUp(partition, this.takes.get(partition)!, storedNextOffset, 0);
      }
    } finally {
      this.taking--;
      this.assignedOnce = true;
    }
    return assignments;
  }

  /**
   * Events and credits the partition committed but did not see acknowledged before (a crash,
   * a handover), published again from the stored positions. A failure (the database away for a
   * moment) is retried with backoff while the partition stays ours; the next owner would do
   * it otherwise.
   */
  private async catchUp(partition: number, take: number, storedNextOffset: number, failures: number, republished = false): Promise<void> {
    // Only for the take that asked for it: a later take of the partition does its own.
    if (this.stopping || !this.owned.has(partition) || this.takes.get(partition) !== take) return;
    const positions = this.parts.eventPositions;
    try {
      // Events that failed before this take are republished now; on a retry, failures of
      // the partition's new events must keep holding its position back. When one had failed
      // (a retake by this process), events of the earlier take handed over before the
      // republish, with offsets past the failed one, may be delivered before its copy: the
      // position is held until an event handed over after the republish is delivered.
      if (failures === 0 && this.parts.publisher.forgetFailures(partition) >= 0) positions.hold(partition);
      if (!republished) {
        await positions.republish(partition, storedNextOffset);
        republished = true;
        // A hold from a failed republish (this take's, or an earlier take's whose deliveries
        // are still gathered) ends once an event handed over after this republish is
        // delivered. Read in the same turn as the hand-over (no event can be published in
        // between): every event above this durable offset is handed over after it.
        positions.releaseAfter(partition, this.parts.batcher.durableOffsetOf(partition));
      }
      await this.parts.relay.relayUnsent([partition]);
    } catch (error) {
      // The partition is fed meanwhile: its new events must not move its position past the
      // events still to be republished.
      if (!republished) positions.hold(partition);
      const retryInMs = Math.min(RETAKE_DELAY_MS_MAX, RETAKE_DELAY_MS_MIN * 2 ** Math.min(failures, 10));
      this.log.error({ err: error, partition, retryInMs }, 'republishing the partition\'s unacknowledged events or credits failed; retrying');
      // In the take chain's turn, like the rounds of republishHeldBack(): two republishes of
      // one partition must not interleave their holds and releases.
      setTimeout(() => {
        const run = this.takeChain.then(() => this.catchUp(partition, take, storedNextOffset, failures + 1, republished));
        this.takeChain = run.catch(() => undefined);
      }, retryInMs).unref();
    }
  }

  /** Schedules the next round of republishHeldBack(), sooner once a round found nothing to do. */
  private scheduleHeldBackRepublish(delayMs: number): void {
    if (this.stopping) return;
    this.heldBackTimer = setTimeout(() => {
      void this.republishHeldBack().then((republished) => {
        this.scheduleHeldBackRepublish(republished ? Math.min(HELD_BACK_REPUBLISH_MS_MAX, delayMs * 2) : this.heldBackRepublishMs);
      });
    }, delayMs);
    this.heldBackTimer.unref();
  }

  /**
   * One round: republishes, from its recorded position, every owned partition whose position
   * a failed event holds back, in the take chain's turn (never alongside a take's own
   * republish). True if it republished (or tried to republish) some partition.
   */
  private async republishHeldBack(): Promise<boolean> {
    // Not while events pile up beyond the parked bound: the copies would only be refused too.
    if (this.stopping || !this.parts.publisher.healthy) return false;
    const partitions = this.parts.publisher.heldBackPartitions().filter((p) => this.owned.has(p));
    if (partitions.length === 0) return false;
    let republished = false;
    const run = this.takeChain.then(async () => {
      for (const partition of partitions) if (await this.republishHeldBackPartition(partition)) republished = true;
    });
    this.takeChain = run.catch(() => undefined);
    await run.catch((error: unknown) => this.log.error({ err: error, partitions }, 'republishing failed result events failed'));
    return republished;
  }

  /**
   * As a take's catch-up, while the partition is fed: the republished copies are handed over
   * behind events already in flight, so the position is held until an event handed over after
   * them is delivered. Every committed outcome up to the durable offset is covered; those
   * whose events are still to be handed over by the fan-out are published twice (consumers
   * deduplicate by tx_id, as for any republish).
   */
  private async republishHeldBackPartition(partition: number): Promise<boolean> {
    if (this.stopping || !this.owned.has(partition)) return false;
    const { publisher, eventPositions: positions, batcher } = this.parts;
    const from = await positions.recordedPosition(partition);
    const to = batcher.durableOffsetOf(partition) + 1;
    if (from === undefined || to - from > HELD_BACK_REPUBLISH_OFFSETS_MAX) {
      this.log.error({ partition, recordedPosition: from, durableNextOffset: to }, 'result events of the partition failed and are too many to republish while it is applied here; its next take republishes them (restart the instance once the broker takes events again)');
      return false;
    }
    if (!this.owned.has(partition)) return false;
    const failedOffset = publisher.forgetFailures(partition);
    if (failedOffset < 0) return false;
    positions.hold(partition);
    try {
      const events = await positions.republish(partition, batcher.durableOffsetOf(partition) + 1);
      positions.releaseAfter(partition, batcher.durableOffsetOf(partition));
      this.log.warn({ partition, failedOffset, events }, 'result events of the partition had failed; republished from its recorded position');
      return true;
    } catch (error) {
      // Held back again, so the next round retries; the position stays held meanwhile.
      publisher.noteFailed(partition, failedOffset, `republishing failed: ${(error as Error).message}`);
      this.log.error({ err: error, partition, failedOffset }, 'republishing the partition\'s failed result events failed; trying again later');
      return true;
    }
  }

  /** Revocation: hand the partitions over cleanly (or, when lost, just stop and forget them). */
  async giveBack(partitions: readonly number[], lost: boolean): Promise<void> {
    if (this.stopping) return;
    const mine = partitions.filter((p) => this.owned.has(p) || this.inEngine.has(p));
    for (const p of mine) {
      if (!lost && this.owned.has(p)) this.handingOver.add(p);
      this.owned.delete(p);
    }
    if (mine.length === 0) return;
    try {
      await this.handOver(mine, lost);
    } finally {
      for (const p of mine) this.handingOver.delete(p);
    }
  }

  /** giveBack's steps: last flush, stop, last fan-out, release from the engine and the lease. */
  private async handOver(mine: readonly number[], lost: boolean): Promise<void> {
    const { batcher, leases } = this.parts;
    // Every step below may fail (the engine stuck behind a full output ring while PostgreSQL
    // is away, the database gone); the partitions must be stopped in the batcher whatever
    // happens, or a later take of them here would find the batcher still holding their old era.
    let idle = true;
    try {
      await this.waitEngineIdle(HANDOVER_TIMEOUT_MS);
    } catch (error) {
      idle = false;
      this.log.warn({ err: error, partitions: mine }, 'the engine is behind; handing partitions over without a last flush; the next owner replays them from Kafka');
    }
    if (!lost && idle) {
      try {
        await batcher.flush(HANDOVER_TIMEOUT_MS);
      } catch (error) {
        this.log.warn({ err: error, partitions: mine }, 'handing partitions over with batches not durable; the next owner replays them from Kafka');
      }
    }
    batcher.stopPartitions(mine);
    for (const p of mine) this.stoppedPartitions.add(p);
    if (!lost) {
      try {
        // The next owner republishes from the recorded position: record it first.
        this.fanout(Number.MAX_SAFE_INTEGER);
        await this.parts.publisher.drain(HANDOVER_TIMEOUT_MS / 4);
        await this.parts.eventPositions.record();
      } catch (error) {
        this.log.warn({ err: error, partitions: mine }, 'could not record event positions at the handover; the next owner republishes from the last recorded ones');
      }
    }
    // After the last pushes of what was flushed: nothing more of them comes here.
    this.parts.stream.partitionsLeft(mine);
    this.parts.cache.forgetPartitions(mine);
    try {
      await this.releaseFromEngine(mine);
    } catch (error) {
      // Still in inEngine: a later take here releases them first.
      this.log.warn({ err: error, partitions: mine }, 'could not release handed-over partitions from the engine yet');
    }
    // Lost ones too: still held, the keeper would go on renewing leases of partitions applied
    // nowhere here (the row naming this instance as owner) until the next owner took them.
    // Only rows still carrying our token are released, so a successor is never touched.
    await leases.release(mine).catch((error: unknown) => this.log.warn({ err: error, partitions: mine }, 'could not release leases; the next owner takes them over anyway'));
    this.log.info({ partitions: mine, lost }, 'partitions handed back');
  }

  // Stops partitions at once: nothing more of them is read, applied downstream or written.
  stopPartitions(partitions: readonly number[], reason: LeaseLostReason | 'fenced' | 'offset-outside-log'): void {
    const fresh = partitions.filter((p) => !this.stoppedPartitions.has(p));
    if (fresh.length === 0) return;
    for (const p of fresh) {
      this.stoppedPartitions.add(p);
      this.owned.delete(p);
      if (reason === 'offset-outside-log') this.outsideLog.add(p);
    }
    this.parts.consumer.stopPartitions(fresh);
    this.parts.batcher.stopPartitions(fresh);
    this.parts.stream.partitionsLeft(fresh);
    this.parts.cache.forgetPartitions(fresh);
    if (reason === 'offset-outside-log') {
      // Its lease stays held: no other instance should read it from the wrong place either.
      this.log.error({ partitions: fresh, reason }, 'partitions stopped: their stored next offset is not in the Kafka log; nothing more of them is applied until an operator resolves it and restarts the instance');
    } else {
      this.log.error({ partitions: fresh, reason }, 'partitions stopped: another instance may own them now; nothing more of them is written');
    }
    this.parts.metrics.notePartitionsStopped(reason, fresh.length);
    // A lease that expired while the database was unreachable may still be nobody else's:
    // take it back once the database answers, unless another instance took it meanwhile.
    for (const p of fresh) {
      if (reason === 'expired-unreachable') this.retaking.add(p);
      else this.retaking.delete(p);
    }
    if (reason === 'expired-unreachable') this.retryWithBackoff(() => this.retake(fresh), RETAKE_DELAY_MS_MIN, 'taking lost partitions back failed', fresh);
    // In a group, a lease taken while the group still assigns the partition to us was taken
    // on a stale view of the group (a retry of its previous owner racing a rebalance), or
    // our view is the stale one. Nothing would give it back to us before the next rebalance,
    // so it is reclaimed once its row is free or lapsed, never from a live holder.
    if (this.config.partitionAssignment === 'group' && (reason === 'taken-over' || reason === 'fenced')) this.startReclaim(fresh);
  }

  /** Starts reclaim() for those of `partitions` not being reclaimed already (one loop per partition). */
  private startReclaim(partitions: readonly number[]): void {
    const fresh = partitions.filter((p) => !this.reclaiming.has(p));
    if (fresh.length === 0) return;
    for (const p of fresh) this.reclaiming.add(p);
    this.retryWithBackoff(() => this.reclaim(fresh), RETAKE_DELAY_MS_MIN, 'partitions the group assigns to us are leased by another instance', fresh);
  }

  /**
   * Group: takes back partitions the group still assigns to us whose lease another instance
   * took (stopPartitions), by compare-and-swap against the row as read here, and only once
   * that row is released, lapsed (its holder neither renewed nor flushed for a TTL: renewals
   * and flushes both extend the expiry), or ours: taking a live lease would fence its holder, which
   * hands it back by itself once the group's revocation reaches it. Throws while some are
   * still held elsewhere, so the backoff looks again; a partition the group no longer assigns
   * to us is dropped (its new owner has it).
   */
  private async reclaim(partitions: readonly number[]): Promise<void> {
    if (this.stopping) return;
    this.throwWhileAssigning();
    const reclaimable = (p: number): boolean => this.reclaiming.has(p) && !this.owned.has(p) && !this.outsideLog.has(p) && this.stillAssigned(p);
    for (const p of partitions) if (!reclaimable(p)) this.reclaiming.delete(p);
    const candidates = partitions.filter(reclaimable);
    if (candidates.length === 0) return;
    const rows = await this.parts.db.query<{ partition: number; owner: string | null; owner_process: string | null; fencing_token: string; lapsed: boolean }>(
      `SELECT partition, owner, owner_process, fencing_token::text AS fencing_token, lease_expiry < now() AS lapsed
         FROM partition_leases WHERE topic = $1 AND partition = ANY($2::int[])`, [this.config.commandsTopic, candidates]);
    const thisProcess = this.parts.leases.process;
    const freeOrOurs = (r: { owner: string | null; owner_process: string | null }): boolean => r.owner === null || (r.owner === this.config.instanceId && r.owner_process === thisProcess);
    const free = rows.rows.filter((r) => freeOrOurs(r) || r.lapsed);
    const held = candidates.filter((p) => !free.some((r) => r.partition === p));
    if (free.length > 0) {
      // A row taken because it lapsed is taken only if it is still lapsed when the UPDATE runs.
      const seen = new Map(free.map((r): [number, LeaseRowSeen] => [r.partition, { owner: r.owner, fencingToken: Number(r.fencing_token), lapsedOnly: !freeOrOurs(r) }]));
      await this.takeAgain([...seen.keys()], reclaimable, 'partitions the group assigns to us taken back after another instance held their lease', seen);
      for (const p of seen.keys()) this.reclaiming.delete(p);
    }
    if (held.length > 0) throw new Error(`partitions ${held.join(', ')} are still leased by another instance; taking them once it hands them back or its lease lapses`);
  }

  private async retake(partitions: readonly number[]): Promise<void> {
    if (this.stopping) return;
    this.throwWhileAssigning();
    // In a group, only partitions the group still assigns to us: a revoked one belongs to
    // its new owner, and taking its lease would fence that owner.
    // Not one stopped because its offset is outside the log: that waits for an operator.
    const retakable = (p: number): boolean => this.stoppedPartitions.has(p) && !this.owned.has(p) && !this.outsideLog.has(p) && this.stillAssigned(p);
    const candidates = partitions.filter(retakable);
    if (candidates.length === 0) return;
    const rows = await this.parts.db.query<{ partition: number; owner: string | null; owner_process: string | null }>(
      'SELECT partition, owner, owner_process FROM partition_leases WHERE topic = $1 AND partition = ANY($2::int[])', [this.config.commandsTopic, candidates]);
    // Ours only if this process took it last: a row with our owner name taken by another
    // process (one started with this TALLY_INSTANCE_ID while this one was frozen) is that
    // process's, and taking it back would fence it.
    const thisProcess = this.parts.leases.process;
    const free = rows.rows.filter((r) => r.owner === null || (r.owner === this.config.instanceId && r.owner_process === thisProcess)).map((r) => r.partition);
    const twin = rows.rows.filter((r) => r.owner === this.config.instanceId && r.owner_process !== thisProcess).map((r) => r.partition);
    const elsewhere = candidates.filter((p) => !free.includes(p));
    for (const p of elsewhere) this.retaking.delete(p);
    if (twin.length > 0) {
      this.log.error({ partitions: twin, instance: this.config.instanceId }, 'lost partitions were taken since by another process with this instance id (two running instances share TALLY_INSTANCE_ID); not taking them back');
    }
    const others = elsewhere.filter((p) => !twin.includes(p));
    if (others.length > 0) this.log.warn({ partitions: others }, 'lost partitions are owned by another instance now; not taking them back');
    // In a group that still assigns them to us, that instance took them on a stale view of
    // the group, or ours is: reclaimed once it hands them back or lets them lapse.
    if (this.config.partitionAssignment === 'group') this.startReclaim(others.filter((p) => this.stillAssigned(p)));
    if (free.length === 0) return;
    await this.takeAgain(free, retakable, 'lost partitions taken back');
  }

  /** The engine holds the partition's state (loaded and not released). */
  holdsInEngine(partition: number): boolean {
    return this.inEngine.has(partition);
  }

  private async releaseFromEngine(partitions: readonly number[]): Promise<void> {
    await this.waitEngineIdle(HANDOVER_TIMEOUT_MS);
    for (const partition of partitions) {
      if (!this.inEngine.has(partition)) continue;
      await this.parts.engine.releasePartition(partition);
      this.inEngine.delete(partition);
    }
  }

  // The engine has applied every command published to its ring so far.
  private async waitEngineIdle(timeoutMs: number): Promise<void> {
    const ring = this.parts.engine.commandRing;
    const target = ring.publishedSequence();
    const deadline = Date.now() + timeoutMs;
    while (ring.consumedSequence() < target) {
      if (Date.now() > deadline) throw new Error(`engine did not apply ring position ${target} within ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
  }

  // SIGTERM/SIGINT: stop reading, let the engine apply what it has, flush and commit it all,
  // publish its events, release the leases; bounded by STOP_TIMEOUT_MS.
  async stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.heldBackTimer);
    const { consumer, engine, batcher, pool, leases, http, publisher, producer, db, health } = this.parts;
    health.stop();
    await consumer.disconnect();
    const deadline = Date.now() + STOP_TIMEOUT_MS;
    while (engine.failed === undefined && engine.commandRing.consumedSequence() < engine.commandRing.publishedSequence() && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    await batcher.stop(Math.max(1000, deadline - Date.now()));
    this.fanout(Number.MAX_SAFE_INTEGER);
    await publisher.close(Math.max(1000, deadline - Date.now()));
    await bounded(this.parts.eventPositions.stop(), STOP_STEP_MS, 'recording event positions', this.log);
    // The relay's close marks what it sent (a query) and disconnects its producer (a flush):
    // with PostgreSQL and Kafka both away that alone could take 11 s more; bounded like the rest.
    const relayWaitMs = Math.max(1000, deadline - Date.now());
    await bounded(this.parts.relay.close(relayWaitMs), relayWaitMs + STOP_STEP_MS, 'credit relay close', this.log);
    // What follows must not stretch the stop past the service manager's patience
    // (TimeoutStopSec=90, docker stop grace 90 s) when PostgreSQL is away: a flush still running is
    // abandoned (its transaction dies with the connection) and leases not released expire.
    await bounded(producer.disconnect(), STOP_STEP_MS, 'command producer disconnect', this.log);
    await bounded(pool.close(), STOP_STEP_MS, 'flush pool close', this.log);
    await bounded(leases.stop(), STOP_STEP_MS, 'lease release', this.log);
    // A dead engine has nothing to report; the rest still closes so the process can end.
    const stopped = engine.failed === undefined
      ? await engine.stop(STOP_STEP_MS).catch((error: unknown) => {
        // Nothing is lost: what it applied and did not commit is replayed by the next start.
        this.log.warn({ err: error }, 'engine thread did not stop in time; terminated');
        return undefined;
      })
      : undefined;
    await bounded(Promise.all([db.end(), this.parts.lookupDb.end()]), STOP_STEP_MS, 'query pool close', this.log);
    http.close();
    this.log.info({ sequence: stopped?.sequence, stateHash: stopped?.stateHash, engineFailed: engine.failed?.message }, 'tally stopped');
  }
}

/** Waits for `work` at most `ms`; past that, logs and goes on (the work is left to finish or die with the process). */
async function bounded(work: Promise<unknown>, ms: number, what: string, log: Logger): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), ms);
  });
  try {
    const outcome = await Promise.race([work.then(() => 'done' as const, (error: unknown) => {
      log.warn({ err: error }, `${what} failed at stop`);
      return 'done' as const;
    }), timeout]);
    if (outcome === 'timeout') log.warn({ waitedMs: ms }, `${what} did not finish in time; stopping anyway`);
  } finally {
    clearTimeout(timer);
  }
}

async function withClient<T>(pgUrl: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: pgUrl, connectionTimeoutMillis: 10_000 });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

// Pinning that was asked for and could not be done is an operating error: warn, run unpinned.
function logEngineAffinity(engine: EngineThread, config: TallyConfig, log: Logger): void {
  const { threadId, pinnedCpu, otherCpus, warning } = engine.affinity;
  log.info({ engineCore: engine.core, configured: config.engineCore }, engine.core === 'native' ? 'engine applies commands in its native core' : 'engine applies commands in TypeScript (the native core is not in use)');
  if (warning !== undefined) log.warn({ engineCpu: config.engineCpu, threadId, reason: warning }, 'engine thread not pinned; it runs on any core');
  else if (pinnedCpu !== undefined) log.info({ engineCpu: pinnedCpu, threadId, otherCpus }, 'engine thread pinned to its core; the other threads stay off it');
}
