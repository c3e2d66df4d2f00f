// GET /metrics: Prometheus text from prom-client. Counters that move with every command are
// summed per durable batch on the main thread and added once per batch (a label lookup per
// command would cost more than the event itself); gauges that mirror state (ring occupancy,
// durable offsets, consumer lag, table size) are read when scraped. docs/operations.md lists
// every metric.

import client from 'prom-client';
import type uWS from 'uWebSockets.js';
import { rejectCodeName } from '../engine/reject_code';

const TYPE_NAMES = ['unparseable', 'deposit', 'withdraw', 'freeze', 'unfreeze', 'transfer', 'settle', 'credit'];
/** One more than the wire types, for anything unexpected ('unknown'). */
const TYPE_SLOTS = TYPE_NAMES.length + 1;
/** Reject codes are one byte in the output slot. */
const REASON_SLOTS = 256;

export interface MetricsSources {
  readonly commandRingOccupancy: () => number;
  readonly outputRingOccupancy: () => number;
  /** Partitions this instance applies, with their durable next offset and the high watermark (-1 unknown). */
  readonly partitions: () => Array<{ partition: number; durableOffset: number; highWatermark: number }>;
  readonly balanceEntries: () => number;
  /** Entries of partitions this instance no longer applies: zeroed, reusable only by that partition. */
  readonly balanceEntriesReleased: () => number;
  readonly ready: () => boolean;
  /** True when the engine applies its batches in the native core (engine/native). */
  readonly engineNativeCore: () => boolean;
  readonly eventsUnacknowledged: () => number;
  /** Partitions whose recorded event position a failed event holds back. */
  readonly eventsHeldBackPartitions: () => number;
  readonly streamConnections: () => number;
  /** Balance pushes sent, and subscribers closed for falling behind (code 4008), since start. */
  readonly streamPushes: () => number;
  readonly streamSlowConsumersClosed: () => number;
  /** The credit relay's counters (io/credit_relay.ts). */
  readonly creditsRelayed: () => number;
  readonly creditRelayFailures: () => number;
  readonly creditRelayWithheld: () => number;
  readonly creditsResentUnapplied: () => number;
  readonly creditsHeldBack: () => number;
  readonly creditsPending: () => number;
  /** Partitions this instance applies now. */
  readonly partitionsOwned: () => number;
}

export class Metrics {
  readonly registry = new client.Registry();
  private readonly commands: client.Counter<'type' | 'status' | 'reason'>;
  private readonly batchCommands: client.Histogram;
  private readonly flushLatency: client.Histogram;
  private readonly eventsPublished: client.Counter;
  private readonly flushFailures: client.Counter;
  private readonly partitionsStopped: client.Counter<'reason'>;
  private readonly fanoutFailures: client.Counter;
  /**
   * Counts since the last noteEvents by command type × reject code (code 0 = accepted),
   * before they go to prom-client: an array increment per command, no string or lookup.
   */
  private readonly pending = new Uint32Array(TYPE_SLOTS * REASON_SLOTS);

  constructor(sources: MetricsSources) {
    const registers = [this.registry];
    client.collectDefaultMetrics({ register: this.registry, prefix: 'tally_process_' });
    this.commands = new client.Counter({ name: 'tally_commands_total', help: 'Durable commands by type and outcome (duplicates count with their stored outcome).', labelNames: ['type', 'status', 'reason'], registers });
    this.batchCommands = new client.Histogram({ name: 'tally_batch_commands', help: 'Commands per durable batch.', buckets: [1, 10, 100, 1000, 5000, 10000, 20000, 50000], registers });
    this.flushLatency = new client.Histogram({ name: 'tally_flush_latency_seconds', help: 'Flush task submitted to committed in PostgreSQL.', buckets: [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5], registers });
    this.eventsPublished = new client.Counter({ name: 'tally_events_published_total', help: 'Result events handed to the Kafka producer.', registers });
    this.flushFailures = new client.Counter({ name: 'tally_flush_failures_total', help: 'Flush tasks that failed with a database error; each is retried with backoff (readiness is off meanwhile).', registers });
    this.partitionsStopped = new client.Counter({ name: 'tally_partitions_stopped_total', help: 'Partitions stopped because their lease was lost, a flush was fenced or their stored offset is not in the Kafka log, by reason.', labelNames: ['reason'], registers });
    this.fanoutFailures = new client.Counter({ name: 'tally_fanout_failures_total', help: 'Durable commands whose result event, cache entry, pushes or credit failed and were skipped.', registers });
    new client.Gauge({ name: 'tally_partitions_owned', help: 'Partitions this instance applies (leased, loaded and fed).', registers, collect() { this.set(sources.partitionsOwned()); } });
    new client.Gauge({ name: 'tally_ring_occupancy_slots', help: 'Slots published and not yet consumed.', labelNames: ['ring'], registers, collect() {
      this.set({ ring: 'command' }, sources.commandRingOccupancy());
      this.set({ ring: 'output' }, sources.outputRingOccupancy());
    } });
    const partitionGauge = (name: string, help: string, value: (p: { durableOffset: number; highWatermark: number }) => number): void => {
      new client.Gauge({ name, help, labelNames: ['partition'], registers, collect() {
        this.reset();
        for (const p of sources.partitions()) {
          const v = value(p);
          if (v >= 0) this.set({ partition: String(p.partition) }, v);
        }
      } });
    };
    partitionGauge('tally_durable_next_offset', 'Next Kafka offset of the partition whose effects are not yet committed (the durable sequence).', (p) => p.durableOffset);
    partitionGauge('tally_consumer_lag_messages', 'High watermark minus the durable next offset, per partition.', (p) => (p.highWatermark < 0 ? -1 : Math.max(0, p.highWatermark - p.durableOffset)));
    new client.Gauge({ name: 'tally_balance_entries', help: 'Balances held in the engine table.', registers, collect() { this.set(sources.balanceEntries()); } });
    new client.Gauge({ name: 'tally_balance_entries_released', help: 'Entries of the balance table kept by partitions this instance no longer applies (zeroed; a restart frees them).', registers, collect() { this.set(sources.balanceEntriesReleased()); } });
    new client.Gauge({ name: 'tally_ready', help: '1 when /readyz answers ready.', registers, collect() { this.set(sources.ready() ? 1 : 0); } });
    new client.Gauge({ name: 'tally_engine_native_core', help: '1 when the engine applies its batches in the native core, 0 in TypeScript (TALLY_ENGINE_CORE=auto fell back, or typescript).', registers, collect() { this.set(sources.engineNativeCore() ? 1 : 0); } });
    new client.Gauge({ name: 'tally_events_unacknowledged', help: 'Result events not yet acknowledged by the broker.', registers, collect() { this.set(sources.eventsUnacknowledged()); } });
    new client.Gauge({ name: 'tally_events_held_back_partitions', help: 'Partitions with a result event that failed (not queued or not delivered): republished from the partition\'s recorded position in rounds (30 s, doubling up to 10 min while failures recur) until the broker takes it.', registers, collect() { this.set(sources.eventsHeldBackPartitions()); } });
    new client.Gauge({ name: 'tally_stream_connections', help: 'Open WebSocket stream connections.', registers, collect() { this.set(sources.streamConnections()); } });
    const runningTotal = (name: string, help: string, value: () => number): void => {
      new client.Counter({ name, help, registers, collect() {
        this.reset();
        this.inc(value());
      } });
    };
    runningTotal('tally_stream_pushes_total', 'Balance changes pushed to WebSocket subscribers.', sources.streamPushes);
    runningTotal('tally_stream_slow_consumers_closed_total', 'WebSocket subscribers closed with code 4008 for having too much unsent data.', sources.streamSlowConsumersClosed);
    runningTotal('tally_credits_relayed_total', 'Cross-partition credits produced by the relay (resends included).', sources.creditsRelayed);
    runningTotal('tally_credit_relay_failures_total', 'Credits the broker did not take or that could not be queued (sent again by the sweep).', sources.creditRelayFailures);
    runningTotal('tally_credit_relay_withheld_total', 'Credits not sent because their partition was no longer applied here or its lease could have expired (its owner relays them).', sources.creditRelayWithheld);
    runningTotal('tally_credits_resent_unapplied_total', 'Credits sent again because their partition passed them without an outcome (its balance table full, or the message lost).', sources.creditsResentUnapplied);
    runningTotal('tally_credits_held_back_total', 'Unsent credits held back because their partition was too far behind its log to recognise a copy of an earlier relay; relayed once it catches up.', sources.creditsHeldBack);
    new client.Gauge({ name: 'tally_credits_pending', help: 'Credits produced and not yet acknowledged and marked sent.', registers, collect() { this.set(sources.creditsPending()); } });
  }

  /** A durable command of `commandType` (wire type; 0 unparseable) with `rejectCode` (0 when accepted). */
  noteOutcome(commandType: number, rejectCode: number): void {
    this.pending[Math.min(commandType, TYPE_SLOTS - 1) * REASON_SLOTS + Math.min(rejectCode, REASON_SLOTS - 1)]!++;
  }

  noteBatch(commandCount: number, eventsPublished: number): void {
    this.batchCommands.observe(commandCount);
    this.noteEvents(eventsPublished);
  }

  /** Adds the outcomes noted since the last call, and `eventsPublished` events. */
  noteEvents(eventsPublished: number): void {
    const pending = this.pending;
    for (let at = 0; at < pending.length; at++) {
      if (pending[at] === 0) continue;
      const rejectCode = at % REASON_SLOTS;
      const type = TYPE_NAMES[(at - rejectCode) / REASON_SLOTS] ?? 'unknown';
      const status = rejectCode === 0 ? 'accepted' : 'rejected';
      this.commands.inc({ type, status, reason: rejectCode === 0 ? 'none' : rejectCodeName(rejectCode) }, pending[at]);
      pending[at] = 0;
    }
    if (eventsPublished > 0) this.eventsPublished.inc(eventsPublished);
  }

  noteFlush(latencyMs: number): void {
    this.flushLatency.observe(latencyMs / 1000);
  }

  noteFlushFailure(): void {
    this.flushFailures.inc();
  }

  notePartitionsStopped(reason: string, count: number): void {
    this.partitionsStopped.inc({ reason }, count);
  }

  noteFanoutFailure(): void {
    this.fanoutFailures.inc();
  }

  register(app: uWS.TemplatedApp): void {
    app.get('/metrics', (res) => {
      let aborted = false;
      res.onAborted(() => {
        aborted = true;
      });
      this.registry.metrics().then((text) => {
        if (aborted) return;
        res.cork(() => {
          res.writeStatus('200 OK').writeHeader('content-type', this.registry.contentType).end(text);
        });
      }, () => {
        if (!aborted) res.cork(() => res.writeStatus('500 Internal Server Error').end('metrics collection failed'));
      });
    });
  }
}
