// Relays the credits that cross-partition transfers owe (transfer_outbox, written in the same
// transaction as the debit) to the commands topic, keyed by the credited account so they land
// on its home partition, where the engine moves the amount from that partition's transit
// account to the account. A row is marked sent only after the broker acknowledged its credit;
// rows still unsent are relayed again when their partition is taken (start-up, rebalance,
// after a crash) and by a periodic sweep. A credit's tx_id is derived from its source
// (partition, offset), so every relay of it is the same command and the credited partition's
// dedup window applies it once, as long as the copies are close enough in that partition's
// log (below). An unsent row whose credit already has a durable outcome on the credited
// partition (a crash between the broker's acknowledgement and the mark) is only marked,
// never relayed.
//
// Acknowledged is not applied: the credited partition may pass the credit without an outcome
// (BALANCE_TABLE_FULL is not recorded, so the command may be retried once there is room; or
// the broker lost it). The mark keeps the offset the credit got there (`sent_offset`, 006),
// and the sweep sends a credit again once that partition's durable next offset has passed
// it with no outcome for its tx_id: not applied then, for an applied credit's outcome commits
// with the offset that passes it. Rows whose credit has an outcome are `confirmed` and left.
//
// Every relay but the first may follow a copy that is in the credited partition's log and
// not read yet: acknowledged with its mark never committed (a crash, or PostgreSQL away,
// between the two), whether the row says unsent or passed. Having no durable outcome, such a
// copy sits at or above the credited partition's durable next offset N and below its high
// watermark H (a copy still queued in a producer that lost the source partition arrives
// within the 30 s message timeout). A copy relayed now lands at or above H and is recognised
// as a duplicate only while the earlier one is still in the dedup window, i.e. while fewer
// than `dedupWindow` recorded commands separate them. So a credit is relayed again only
// while H - N is at most a quarter of the window (the rest, 7.5 M commands at the default,
// is room for what arrives while the copy is on its way); otherwise it is held back:
// `sent_offset` becomes H - 1 (`sent` unchanged), and it is looked at again once the
// durable offset has passed that, every copy then read. The window is the credited
// partition's: the one its owner recorded in its lease row when it took it, or this
// instance's own if that is smaller or not recorded (instances may run different windows
// during a rolling change of TALLY_DEDUP_WINDOW). A backlog that large means the
// credited partition's owner was stopped or far behind (a long PostgreSQL outage at a high
// rate): the credit waits for it to catch up instead of risking a second application.
// `sent_offset` is thus the highest offset at which a copy may sit, not yet read.
//
// The first relay of a row, right after its commit, can follow an earlier copy too: after the
// database was restored from a backup (or failed over to a replica that lost its last
// commits), a partition replays and commits again transfers whose credits were delivered
// before, and those copies sit in the credited partition's log beyond its restored durable
// offset. So even the first relay goes out at once only if the credited partition's backlog
// was measured within the last BACKLOG_SEEN_MAX_AGE_MS and was within the margin; otherwise
// the row is left to the checked path (relayUnsent of its source partition, queued at once),
// which measures, and relays or holds back. The backlogs of the partitions credited so far
// are measured again every BACKLOG_REFRESH_MS in the background, so in steady operation only
// the first credit to a partition, and credits to a lagging one, take the checked path.

import Kafka from '@confluentinc/kafka-javascript';
import type pg from 'pg';
import type { CurrencyRegistry } from '../engine/currency_registry';
import { formatAmountBigInt } from '../engine/amount';
import { creditTxIdOf, OwedCredit } from './durable_outcome';
import { stopPolling } from './command_producer';
import type { Logger } from './logger';

export interface CreditRelayOptions {
  readonly brokers: string;
  readonly topic: string;
  readonly db: pg.Pool;
  readonly registry: CurrencyRegistry;
  readonly log: Logger;
  /** Partitions whose outbox this instance relays (the ones it applies). */
  readonly ownedPartitions: () => number[];
  /**
   * Whether credits of a source partition may be produced now: it is applied here and its
   * lease cannot have expired. Default: always.
   */
  readonly mayRelay?: (partition: number) => boolean;
  /**
   * This instance's dedup window (TALLY_DEDUP_WINDOW): with the window a credited partition's
   * owner recorded in its lease row (the smaller of the two), bounds how far behind its log
   * that partition may be for a credit to be relayed at once.
   */
  readonly dedupWindow: number;
  readonly sweepIntervalMs?: number;
  /** Outbox rows one relay statement reads at most (default ROWS_PER_STATEMENT); tests set a few. */
  readonly rowsPerStatement?: number;
}

interface Pending {
  readonly partition: number;
  readonly offset: number;
}

interface Acknowledged extends Pending {
  /** The credit's offset on its (credited) partition. */
  readonly creditOffset: number;
}

const MARK_INTERVAL_MS = 50;
const SWEEP_INTERVAL_MS = 10_000;
/**
 * How long a measured backlog of a credited partition lets credits to it go out at once.
 * A backlog grows by that partition's command rate at most, far less in this time than the
 * margin (a quarter of the dedup window) it is checked against.
 */
const BACKLOG_SEEN_MAX_AGE_MS = 5_000;
const BACKLOG_REFRESH_MS = 2_000;
const MESSAGE_TIMEOUT_MS = 30_000;
/** Outbox rows per statement of a sweep (the rest wait for the next sweep). */
const ROWS_PER_STATEMENT = 10_000;
const CONFIRM_CHUNKS_MAX = 20;
const WATERMARK_TIMEOUT_MS = 5_000;

interface OutboxRow {
  partition: number;
  kafka_offset: string;
  to_account: string;
  to_partition: number;
  currency_id: number;
  amount: string;
  sent: boolean;
  sent_offset: string | null;
  credited_next_offset: string | null;
  /** The dedup window the credited partition's owner recorded when it took it (null: not recorded). */
  credited_dedup_window: string | null;
}

export class CreditRelay {
  /** Source (partition, offset) keys produced and not yet acknowledged. */
  private readonly inFlight = new Set<string>();
  private acknowledged: Acknowledged[] = [];
  /**
   * Source keys acknowledged by the broker and not yet marked (queued or being marked): the
   * outbox still calls them unsent, and a sweep must not send them again.
   */
  private readonly awaitingMark = new Set<string>();
  private markTimer: NodeJS.Timeout | undefined;
  private sweepTimer: NodeJS.Timeout | undefined;
  private refreshTimer: NodeJS.Timeout | undefined;
  private refreshing = false;
  private refreshRun: Promise<void> = Promise.resolve();
  /** Credited partitions whose watermark the background refresh could not read (logged once). */
  private readonly unreadable = new Set<number>();
  private marking = false;
  private relaying: Promise<number> = Promise.resolve(0);
  /** Per credited partition: when its backlog was last measured, and whether it was too large then. */
  private readonly backlogSeen = new Map<number, { atMs: number; lagging: boolean }>();
  /** Source partitions with a checked relay queued and not started (relayCheckedSoon). */
  private readonly checkedQueued = new Set<number>();
  private sweeping = false;
  /**
   * Where the next sweep goes on: after the last row of a sweep that read a full statement.
   * Rows that stay open sweep after sweep (a credited partition whose watermark cannot be
   * read, a produce refused) would otherwise fill every statement, and the rows after them
   * would never be looked at.
   */
  private sweepAfter: { partition: number; offset: number } | undefined;
  private closing = false;
  relayed = 0;
  marked = 0;
  failures = 0;
  /** Credits not produced because their source partition's lease could have expired (io/service.ts). */
  withheld = 0;
  /** Credits sent again because their partition passed an earlier copy without an outcome. */
  resentUnapplied = 0;
  /** Credits held back because their partition lagged too far behind its log (header). */
  heldBack = 0;
  /** Committed credits sent through the checked path because their partition's backlog was not known small (header). */
  diverted = 0;

  private constructor(private readonly producer: Kafka.Producer, private readonly options: CreditRelayOptions) {
    // Without a listener, librdkafka's errors (a fatal idempotent-producer error, say) would
    // pass unseen while every produce after them fails.
    producer.on('event.error', (error) => options.log.warn({ err: error }, 'credit relay producer error'));
    producer.on('delivery-report', (error, report) => {
      const pending = report.opaque as Pending;
      this.inFlight.delete(keyOf(pending.partition, pending.offset));
      if (error) {
        this.failures++;
        options.log.error({ err: error, partition: pending.partition, offset: pending.offset }, 'credit not delivered; the sweep relays it again');
        return;
      }
      this.awaitingMark.add(keyOf(pending.partition, pending.offset));
      this.acknowledged.push({ partition: pending.partition, offset: pending.offset, creditOffset: Number(report.offset) });
    });
  }

  static async connect(options: CreditRelayOptions): Promise<CreditRelay> {
    const producer = new Kafka.Producer({
      'bootstrap.servers': options.brokers,
      'enable.idempotence': true,
      'linger.ms': 2,
      // Bounded, so a copy queued by an instance that has lost the partition (cut off from the
      // broker, say) cannot arrive long after the new owner's copy was applied, out of the
      // credited partition's dedup window; an undelivered credit is sent again by the sweep.
      'message.timeout.ms': MESSAGE_TIMEOUT_MS,
      partitioner: 'murmur2_random',
      dr_cb: true,
    });
    await new Promise<void>((resolve, reject) => {
      producer.once('ready', () => resolve());
      producer.connect({ timeout: 15_000 }, (error) => {
        if (error) reject(new Error(`credit relay cannot reach Kafka at ${options.brokers}: ${error.message}`));
      });
    });
    producer.setPollInterval(5);
    const relay = new CreditRelay(producer, options);
    relay.markTimer = setInterval(() => void relay.markSent(), MARK_INTERVAL_MS);
    relay.sweepTimer = setInterval(() => void relay.sweep(), options.sweepIntervalMs ?? SWEEP_INTERVAL_MS);
    relay.refreshTimer = setInterval(() => void relay.refreshBacklogs(), BACKLOG_REFRESH_MS);
    return relay;
  }

  /**
   * A committed cross-partition transfer: relay its credit now, if the credited partition's
   * backlog is known to be small (header); else its source partition's unsent rows are
   * relayed through the checked path, queued now. Whether it was produced now.
   */
  relay(sourcePartition: number, sourceOffset: number, credit: OwedCredit): boolean {
    const seen = this.backlogSeen.get(credit.partition);
    if (seen === undefined || seen.lagging || performance.now() - seen.atMs > BACKLOG_SEEN_MAX_AGE_MS) {
      // Measured from now on in the background (refreshBacklogs), as every credited partition.
      if (seen === undefined) this.backlogSeen.set(credit.partition, { atMs: -Infinity, lagging: true });
      if (!this.closing) this.relayCheckedSoon(sourcePartition);
      return false;
    }
    return this.produceCredit(sourcePartition, sourceOffset, credit);
  }

  /** Queues relayUnsent of the partition unless one is queued and has not started yet. */
  private relayCheckedSoon(partition: number): void {
    if (this.checkedQueued.has(partition)) return;
    this.checkedQueued.add(partition);
    this.diverted++;
    const run = this.relaying.then(() => {
      this.checkedQueued.delete(partition);
      return this.relayOpen([partition], undefined).then((result) => result.relayed);
    });
    this.relaying = run.catch((error: unknown) => {
      this.options.log.warn({ err: error, partition }, 'relaying a committed credit through the backlog check failed; the sweep relays it');
      return 0;
    });
  }

  /** Produces the credit (unless this instance may no longer relay its source partition). Whether it was produced. */
  private produceCredit(sourcePartition: number, sourceOffset: number, credit: OwedCredit): boolean {
    const key = keyOf(sourcePartition, sourceOffset);
    if (this.closing || this.inFlight.has(key) || this.awaitingMark.has(key)) return false;
    // An instance paused (SIGSTOP, a frozen VM) between a commit and this call may have lost
    // the partition meanwhile, and its new owner has relayed the same credit already. A copy
    // sent now could reach the credited partition after the credit left its dedup window and
    // be applied twice. The row stays unsent; the partition's owner relays it.
    if (this.options.mayRelay?.(sourcePartition) === false) {
      this.withheld++;
      return false;
    }
    const command = `{"type":"credit","tx_id":"${credit.txId}","account":"${credit.account}","currency":${JSON.stringify(credit.currency)},"amount":"${credit.amount}"}`;
    try {
      // To the partition the outbox row names (not by key): every copy lands where the resend
      // check and the audit look for its outcome, even if the topic's partition count changed
      // (the credit is then WRONG_PARTITION there, recorded, and stranded for resolve-credit).
      this.producer.produce(this.options.topic, credit.partition, Buffer.from(command), credit.account, null, { partition: sourcePartition, offset: sourceOffset } satisfies Pending);
    } catch (error) {
      // A full local queue, or a producer stopped by a fatal error: the row stays unsent and
      // the sweep relays it; counted, so the failures metric shows a relay that cannot produce.
      this.failures++;
      this.options.log.warn({ err: error, partition: sourcePartition, offset: sourceOffset }, 'credit not queued; the sweep relays it');
      return false;
    }
    this.inFlight.add(key);
    this.relayed++;
    return true;
  }

  /**
   * Relays every unsent credit of the partitions (taken partitions, and the sweep), and every
   * one that its partition passed without an outcome, unless the credited partition is too far
   * behind its log (header). One call at a time: a row read by one must not be judged again
   * by another on a stale read.
   */
  relayUnsent(partitions: readonly number[]): Promise<number> {
    return this.relayUnsentAfter(partitions, undefined).then((result) => result.relayed);
  }

  /** relayUnsent() of the rows after `after` (in partition, offset order); also says the last row read when a statement was full. */
  private relayUnsentAfter(partitions: readonly number[], after: { partition: number; offset: number } | undefined): Promise<{ relayed: number; fullAt?: { partition: number; offset: number } }> {
    const run = this.relaying.then(() => this.relayOpen(partitions, after));
    this.relaying = run.then((result) => result.relayed, () => 0);
    return run;
  }

  private async relayOpen(partitions: readonly number[], after: { partition: number; offset: number } | undefined): Promise<{ relayed: number; fullAt?: { partition: number; offset: number } }> {
    if (partitions.length === 0) return { relayed: 0 };
    await this.confirmApplied(partitions);
    const rowsMax = this.options.rowsPerStatement ?? ROWS_PER_STATEMENT;
    const rows = await this.options.db.query<OutboxRow>(
      `SELECT o.partition, o.kafka_offset, tally_account_text(o.to_account) AS to_account, o.to_partition, o.currency_id, o.amount, o.sent, o.sent_offset, n.next_offset AS credited_next_offset,
              n.dedup_window AS credited_dedup_window
         FROM transfer_outbox o
         LEFT JOIN LATERAL (SELECT l.next_offset, l.dedup_window FROM partition_leases l WHERE l.topic = $2 AND l.partition = o.to_partition) n ON true
        WHERE o.partition = ANY($1::int[]) AND NOT o.confirmed
          AND ((NOT o.sent AND o.sent_offset IS NULL) OR o.sent_offset < n.next_offset)
          AND NOT EXISTS (SELECT 1 FROM tx_outcomes c WHERE c.partition = o.to_partition AND c.tx_id = tally_credit_tx_id(o.partition, o.kafka_offset))
          AND (o.partition, o.kafka_offset) > ($3::integer, $4::bigint)
        ORDER BY o.partition, o.kafka_offset LIMIT $5`, [partitions, this.options.topic, after?.partition ?? -1, after?.offset ?? -1, rowsMax]);
    const last = rows.rows[rows.rows.length - 1];
    const fullAt = rows.rows.length === rowsMax && last !== undefined ? { partition: last.partition, offset: Number(last.kafka_offset) } : undefined;
    // A credit with a copy on its way from here is neither relayed again nor held back: that
    // copy's offset is not known yet, and its mark will say it.
    const open = rows.rows.filter((row) => !this.isOnItsWay(row.partition, Number(row.kafka_offset)));
    const watermarks = await this.watermarksOf(open);
    const held = open.filter((row) => watermarks.get(row.to_partition)?.lagging === true);
    if (held.length > 0) await this.holdBack(held, watermarks);
    const ready = open.filter((row) => watermarks.get(row.to_partition)?.lagging === false);
    this.logResends(partitions, ready);
    const { registry } = this.options;
    let relayed = 0;
    for (const row of ready) {
      const offset = Number(row.kafka_offset);
      const produced = this.produceCredit(row.partition, offset, {
        txId: creditTxIdOf(row.partition, offset), account: row.to_account, partition: row.to_partition,
        currency: registry.codeOf(row.currency_id), amount: formatAmountBigInt(BigInt(row.amount), registry.scaleOf(row.currency_id)),
      });
      if (!produced) continue;
      relayed++;
      if (row.sent) this.resentUnapplied++;
    }
    if (relayed > 0) this.options.log.info({ partitions, credits: relayed }, 'relaying unsent credits');
    return { relayed, fullAt };
  }

  private isOnItsWay(partition: number, offset: number): boolean {
    const key = keyOf(partition, offset);
    return this.inFlight.has(key) || this.awaitingMark.has(key);
  }

  private logResends(partitions: readonly number[], ready: readonly OutboxRow[]): void {
    const passed = ready.filter((row) => row.sent);
    if (passed.length > 0) {
      this.options.log.warn({
        credits: passed.length, first: { partition: passed[0]!.partition, offset: passed[0]!.kafka_offset, toPartition: passed[0]!.to_partition, creditOffset: passed[0]!.sent_offset },
      }, 'credits passed their partition without an outcome (its balance table full, or the message lost): sending them again; make room (TALLY_BALANCE_CAPACITY) if this repeats');
    }
    const released = ready.filter((row) => !row.sent && row.sent_offset !== null).length;
    if (released > 0) this.options.log.info({ partitions, credits: released }, 'held-back credits: their partition passed every copy that may have been sent, without an outcome; relaying them');
  }

  /** Marks rows whose credit already has an outcome on its partition confirmed (and sent). */
  private async confirmApplied(partitions: readonly number[]): Promise<void> {
    let markedOnly = 0;
    // In chunks, each well inside the query pool's statement timeout, however many credits a
    // busy partition owes; rows a mark holds are skipped (no lock waits, no deadlock with it)
    // and confirmed by a later sweep.
    for (let chunk = 0; chunk < CONFIRM_CHUNKS_MAX; chunk++) {
      const confirmed = await this.options.db.query<{ sent: boolean }>(
        `WITH done AS (
           SELECT o.partition, o.kafka_offset, o.sent FROM transfer_outbox o
            WHERE o.partition = ANY($1::int[]) AND NOT o.confirmed
              AND EXISTS (SELECT 1 FROM tx_outcomes c WHERE c.partition = o.to_partition AND c.tx_id = tally_credit_tx_id(o.partition, o.kafka_offset))
            ORDER BY o.partition, o.kafka_offset LIMIT ${ROWS_PER_STATEMENT} FOR UPDATE SKIP LOCKED)
         UPDATE transfer_outbox AS o SET confirmed = true, sent = true FROM done
          WHERE o.partition = done.partition AND o.kafka_offset = done.kafka_offset
         RETURNING done.sent`, [partitions]);
      markedOnly += confirmed.rows.filter((row) => !row.sent).length;
      if (confirmed.rows.length < ROWS_PER_STATEMENT) break;
    }
    if (markedOnly > 0) this.options.log.info({ partitions, credits: markedOnly }, 'unsent credits already applied on their partition: marked sent, not relayed');
  }

  /**
   * The high watermark of each credited partition of `rows`, and whether its log runs too far
   * ahead of its durable offset for a credit to be relayed now (header). Read all at once, so
   * the credits go out right after: commands arriving between a watermark's read and the
   * produce use up the margin. A partition whose watermark cannot be read is left out, and
   * its credits wait for the next sweep.
   */
  private watermarksOf(rows: readonly OutboxRow[]): Promise<Map<number, { high: number; lagging: boolean }>> {
    // Per credited partition: its durable next offset and the backlog allowed above it.
    const credited = new Map<number, { durable: number; gapMax: number }>();
    for (const row of rows) credited.set(row.to_partition, this.allowedBacklog(row.credited_next_offset, row.credited_dedup_window));
    return this.measure(credited);
  }

  /** A credited partition's durable next offset, and the backlog allowed above it (header). */
  private allowedBacklog(nextOffset: string | null, dedupWindow: string | null): { durable: number; gapMax: number } {
    const window = Math.min(this.options.dedupWindow, Number(dedupWindow ?? this.options.dedupWindow));
    return { durable: Number(nextOffset ?? 0), gapMax: Math.floor(window / 4) };
  }

  /** Measures the backlog of every partition credited so far (the timer; header). Failures wait for the next round. */
  private refreshBacklogs(): Promise<void> {
    if (this.refreshing || this.closing || this.backlogSeen.size === 0) return Promise.resolve();
    this.refreshRun = this.refreshBacklogsNow();
    return this.refreshRun;
  }

  private async refreshBacklogsNow(): Promise<void> {
    this.refreshing = true;
    try {
      const partitions = [...this.backlogSeen.keys()];
      const rows = await this.options.db.query<{ partition: number; next_offset: string; dedup_window: string | null }>(
        'SELECT partition, next_offset, dedup_window FROM partition_leases WHERE topic = $1 AND partition = ANY($2::int[])', [this.options.topic, partitions]);
      const credited = new Map<number, { durable: number; gapMax: number }>(partitions.map((partition) => [partition, this.allowedBacklog(null, null)]));
      for (const row of rows.rows) credited.set(row.partition, this.allowedBacklog(row.next_offset, row.dedup_window));
      await this.measure(credited, true);
    } catch (error) {
      this.options.log.warn({ err: error }, 'could not measure the credited partitions\' backlogs; their credits take the checked path until a measurement succeeds');
    } finally {
      this.refreshing = false;
    }
  }

  /** The high watermark of each credited partition, and whether it is too far ahead of the durable offset; recorded in backlogSeen. */
  private async measure(credited: ReadonlyMap<number, { durable: number; gapMax: number }>, background = false): Promise<Map<number, { high: number; lagging: boolean }>> {
    const partitions = [...credited.keys()];
    const reads = await Promise.allSettled(partitions.map((partition) => this.highWatermarkOf(partition)));
    const watermarks = new Map<number, { high: number; lagging: boolean }>();
    reads.forEach((read, i) => {
      const partition = partitions[i]!;
      if (read.status === 'fulfilled') {
        const { durable, gapMax } = credited.get(partition)!;
        const lagging = read.value - durable > gapMax;
        watermarks.set(partition, { high: read.value, lagging });
        this.backlogSeen.set(partition, { atMs: performance.now(), lagging });
        this.unreadable.delete(partition);
        return;
      }
      // A background read concerns no credit (the failures metric counts credits not taken),
      // and is logged once until it succeeds again; its partition's credits take the checked
      // path meanwhile, which counts and logs its own failures.
      if (background) {
        if (!this.unreadable.has(partition)) this.options.log.warn({ err: read.reason, toPartition: partition }, 'cannot read the credited partition\'s high watermark; its credits take the checked path until it can be read');
        this.unreadable.add(partition);
        return;
      }
      this.failures++;
      this.options.log.warn({ err: read.reason, toPartition: partition }, 'cannot read the credited partition\'s high watermark; its credits wait for the next sweep');
    });
    return watermarks;
  }

  /** Holds back credits to lagging partitions until those have read past their watermark. */
  private async holdBack(held: readonly OutboxRow[], watermarks: ReadonlyMap<number, { high: number }>): Promise<void> {
    const updated = await this.options.db.query(
      `UPDATE transfer_outbox AS o SET sent_offset = GREATEST(o.sent_offset, u.sent_offset) FROM unnest($1::int[], $2::bigint[], $3::bigint[]) AS u(partition, kafka_offset, sent_offset)
        WHERE o.partition = u.partition AND o.kafka_offset = u.kafka_offset AND NOT o.confirmed`,
      [held.map((row) => row.partition), held.map((row) => row.kafka_offset), held.map((row) => watermarks.get(row.to_partition)!.high - 1)]);
    this.heldBack += updated.rowCount ?? 0;
    const first = held[0]!;
    this.options.log.warn({
      credits: held.length, first: { partition: first.partition, offset: first.kafka_offset, toPartition: first.to_partition },
      creditedNextOffset: first.credited_next_offset, creditedHighWatermark: watermarks.get(first.to_partition)!.high,
    }, 'credits held back: their partition is too far behind its log for a copy of an earlier relay, if any, to be recognised; relayed once it has caught up');
  }

  private highWatermarkOf(partition: number): Promise<number> {
    return new Promise((resolve, reject) => {
      this.producer.queryWatermarkOffsets(this.options.topic, partition, WATERMARK_TIMEOUT_MS, (error, offsets) => {
        if (error) reject(error);
        else resolve(Number(offsets.highOffset));
      });
    });
  }

  get pending(): number {
    return this.inFlight.size + this.awaitingMark.size;
  }

  /** Marks what was acknowledged, waits (bounded) for what is in flight, disconnects. */
  async close(timeoutMs = 10_000): Promise<void> {
    clearInterval(this.sweepTimer);
    clearInterval(this.refreshTimer);
    this.closing = true;
    const deadline = Date.now() + timeoutMs;
    // A relayUnsent under way produces nothing more (closing), but may still be reading.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.relaying, new Promise((resolve) => { timer = setTimeout(resolve, timeoutMs); })]);
    clearTimeout(timer);
    while (this.inFlight.size > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
    clearInterval(this.markTimer);
    // A mark already running returns at once from markSent(): wait for it, then mark the rest.
    while (this.marking && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
    await this.markSent().catch(() => undefined);
    // A refresh under way reads watermarks through the producer: done before it disconnects.
    await this.refreshRun;
    stopPolling(this.producer);
    await new Promise<void>((resolve) => this.producer.disconnect(() => resolve()));
  }

  /** One sweep of the owned partitions' open credits (the timer's; tests call it). */
  async sweep(): Promise<void> {
    // At most one sweep at a time, so sweeps slowed by the broker or the database never pile
    // up ahead of a take's relayUnsent.
    if (this.sweeping) return;
    this.sweeping = true;
    try {
      const { fullAt } = await this.relayUnsentAfter(this.options.ownedPartitions(), this.sweepAfter);
      this.sweepAfter = fullAt;
    } catch (error) {
      this.options.log.warn({ err: error }, 'credit sweep failed; retrying at the next sweep');
    } finally {
      this.sweeping = false;
    }
  }

  /** Marks what the broker acknowledged, in statements of ROWS_PER_STATEMENT rows at most. */
  private async markSent(): Promise<void> {
    if (this.marking) return;
    this.marking = true;
    try {
      while (this.acknowledged.length > 0) {
        const batch = this.acknowledged.splice(0, ROWS_PER_STATEMENT);
        try {
          await this.options.db.query(
            `UPDATE transfer_outbox AS o SET sent = true, sent_offset = GREATEST(o.sent_offset, u.sent_offset) FROM unnest($1::int[], $2::bigint[], $3::bigint[]) AS u(partition, kafka_offset, sent_offset)
              WHERE o.partition = u.partition AND o.kafka_offset = u.kafka_offset`,
            [batch.map((p) => p.partition), batch.map((p) => p.offset), batch.map((p) => p.creditOffset)]);
        } catch (error) {
          // Kept for the next attempt; the sweep leaves them alone meanwhile (awaitingMark).
          this.acknowledged = batch.concat(this.acknowledged);
          this.options.log.warn({ err: error, credits: this.acknowledged.length }, 'could not mark credits sent; retrying');
          return;
        }
        for (const p of batch) this.awaitingMark.delete(keyOf(p.partition, p.offset));
        this.marked += batch.length;
      }
    } finally {
      this.marking = false;
    }
  }
}

function keyOf(partition: number, offset: number): string {
  return `${partition}/${offset}`;
}
