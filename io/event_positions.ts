// Where each partition's result events are known delivered, kept in PostgreSQL
// (partition_leases.events_next_offset), and the republishing of what lies beyond it when a
// partition is taken: the outcomes stored from events_next_offset up to next_offset were
// committed but their events may never have reached the broker (a crash right after the
// COMMIT). Republished events carry "replayed":true; they have no balances (the balances of
// that moment are not stored); a crossing transfer's carries its `credit`, from its
// transfer_outbox row, as the original did. Outcomes tx_outcomes does not record (duplicate replays,
// conflicting repeats, malformed messages, BALANCE_TABLE_FULL), and outcomes a tx_id
// recorded again displaced from tx_outcomes, are republished from
// tx_replies (migration 007), whose rows below a recorded position are deleted when it is
// recorded: only the last second or so of them is kept.
//
// A partition's position is the highest delivered offset + 1 (the producer delivers each
// partition's events in the order they were handed over). That holds at a take because the
// republish is handed over before the partition's new events. When the republish fails (the
// database away for a moment) the partition is fed anyway, so its new events are delivered
// first: nothing is recorded for it (`hold`) until a retry has republished and an event
// handed over after the republished ones is delivered too (`releaseAfter`); otherwise the
// position would pass events that were never published. The same hold covers a take by a
// process whose earlier take of the partition had an event fail: that take's later events,
// still in flight, are delivered before the failed one's republished copy.

import type pg from 'pg';
import { creditTxIdOf } from './durable_outcome';
import type { EventPublisher } from './event_publisher';
import type { Logger } from './logger';

const RECORD_INTERVAL_MS = 1000;
/**
 * Rows one statement reads or deletes at most: each stays well inside the query pool's
 * statement timeout however long the backlog (an events topic unavailable for hours). A
 * republish has only a page of rows in memory at a time, and hands every page over before
 * reading the next; a delete leaves the rest to the next statement.
 */
const ROWS_PER_STATEMENT = 50_000;
/** Delete statements per recording at most (a recording a second: 1 M replies a second). */
const REPLIES_DELETE_STATEMENTS_MAX = 20;

export class EventPositions {
  private timer: NodeJS.Timeout | undefined;
  private recording: Promise<void> = Promise.resolve();
  /** Delivered positions not yet written (their rows were locked by a flush, or the write failed). */
  private readonly unrecorded = new Map<number, number>();
  /**
   * Partitions whose position must not be written: a republish failed (Infinity), or its
   * retry's events are delivered only once a position beyond this offset + 1 is.
   */
  private readonly held = new Map<number, number>();

  constructor(
    private readonly db: pg.Pool, private readonly topic: string, private readonly publisher: EventPublisher, private readonly log: Logger,
    private readonly rowsPerStatement = ROWS_PER_STATEMENT,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.record(), RECORD_INTERVAL_MS);
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.record();
  }

  /** The partition's republish failed: record nothing for it until releaseAfter() allows. */
  hold(partition: number): void {
    this.held.set(partition, Number.POSITIVE_INFINITY);
  }

  /**
   * The retry republished: every event of the partition with an offset above `offset` was
   * handed over after the republished ones, so once one of them is delivered, so are they.
   */
  releaseAfter(partition: number, offset: number): void {
    if (this.held.has(partition)) this.held.set(partition, offset);
  }

  /** Writes the delivered positions gathered since the last call (only ever forward). */
  record(): Promise<void> {
    this.recording = this.recording.then(async () => {
      for (const [partition, next] of this.publisher.takeAcknowledged()) this.unrecorded.set(partition, Math.max(next, this.unrecorded.get(partition) ?? -1));
      const positions = new Map<number, number>();
      for (const [partition, next] of this.unrecorded) {
        const after = this.held.get(partition);
        if (after !== undefined) {
          if (!(next > after + 1)) continue;
          this.held.delete(partition);
        }
        positions.set(partition, next);
      }
      if (positions.size === 0) return;
      try {
        // Rows a flush holds are skipped (SKIP LOCKED, in partition order: no waiting behind
        // flushes and no deadlock with them) and written at a later round.
        const written = await this.db.query<{ partition: number; events_next_offset: string }>(
          `UPDATE partition_leases AS l SET events_next_offset = GREATEST(l.events_next_offset, u.next_offset)
             FROM unnest($2::int[], $3::bigint[]) AS u(partition, next_offset)
            WHERE l.topic = $1 AND l.partition = u.partition AND l.partition IN (
              SELECT partition FROM partition_leases WHERE topic = $1 AND partition = ANY($2::int[]) ORDER BY partition FOR UPDATE SKIP LOCKED)
           RETURNING l.partition, l.events_next_offset`,
          [this.topic, [...positions.keys()], [...positions.values()]]);
        for (const row of written.rows) if (this.unrecorded.get(row.partition) === positions.get(row.partition)) this.unrecorded.delete(row.partition);
        await this.deleteRepliesBelow(written.rows).catch((error: unknown) => {
          this.log.warn({ err: error }, 'could not delete the tx_replies rows below the recorded event positions; the next recording of those partitions does');
        });
      } catch (error) {
        // Not recorded: a later take-over republishes a little more than needed.
        this.log.warn({ err: error }, 'could not record delivered event positions');
      }
    });
    return this.recording;
  }

  /**
   * The replies below a recorded position will never be republished (tx_replies is only read
   * from events_next_offset on). A statement of its own, after the positions' commit, so the
   * lease rows are not held while it runs; rows it leaves (it failed) go with a later one.
   */
  private async deleteRepliesBelow(positions: ReadonlyArray<{ partition: number; events_next_offset: string }>): Promise<void> {
    if (positions.length === 0) return;
    // Several statements when needed: replies can arrive faster than one statement's bound
    // per recording (a retry storm of duplicates), and a partition that then goes quiet is
    // not recorded again to take the rest.
    for (let statement = 0; statement < REPLIES_DELETE_STATEMENTS_MAX; statement++) {
      const deleted = await this.db.query(
        `DELETE FROM tx_replies WHERE ctid = ANY(ARRAY(
           SELECT r.ctid FROM tx_replies r JOIN unnest($1::int[], $2::bigint[]) AS w(partition, next_offset)
               ON r.partition = w.partition AND r.kafka_offset < w.next_offset
            LIMIT $3))`,
        [positions.map((p) => p.partition), positions.map((p) => p.events_next_offset), this.rowsPerStatement]);
      if ((deleted.rowCount ?? 0) < this.rowsPerStatement) return;
    }
  }

  /** The partition's recorded position (events_next_offset), or undefined without a lease row. */
  async recordedPosition(partition: number): Promise<number | undefined> {
    const row = await this.db.query<{ events_next_offset: string }>(
      'SELECT events_next_offset FROM partition_leases WHERE topic = $1 AND partition = $2', [this.topic, partition]);
    return row.rows[0] === undefined ? undefined : Number(row.rows[0].events_next_offset);
  }

  /** Republishes the stored outcomes of `partition` whose events may not have been delivered. */
  async republish(partition: number, nextOffset: number): Promise<number> {
    const from = (await this.recordedPosition(partition)) ?? nextOffset;
    if (from >= nextOffset) return 0;
    let republished = 0;
    for (let pageFrom = from; pageFrom < nextOffset;) {
      // An outbox row sits exactly at the offset of an accepted crossing transfer (the one
      // that debited; a displaced outcome moved to tx_replies keeps its offset).
      const rows = await this.db.query<{
        tx_id: string; kafka_offset: string; accepted: boolean; reason: string | null; original_offset: string | null; credit_account: string | null; credit_partition: number | null;
      }>(
        `SELECT r.tx_id, r.kafka_offset, r.accepted, r.reason, r.original_offset, tally_account_text(x.to_account) AS credit_account, x.to_partition AS credit_partition
           FROM (SELECT tx_id, kafka_offset, accepted, reason, NULL::bigint AS original_offset FROM tx_outcomes
                  WHERE partition = $1 AND kafka_offset >= $2 AND kafka_offset < $3
                 UNION ALL
                 SELECT tx_id, kafka_offset, accepted, reason, original_offset FROM tx_replies
                  WHERE partition = $1 AND kafka_offset >= $2 AND kafka_offset < $3
                 ORDER BY kafka_offset LIMIT $4) AS r
           LEFT JOIN transfer_outbox x ON x.partition = $1 AND x.kafka_offset = r.kafka_offset AND r.accepted AND r.original_offset IS NULL
          ORDER BY r.kafka_offset`, [partition, pageFrom, nextOffset, this.rowsPerStatement]);
      for (const row of rows.rows) {
        const reason = row.reason === null ? '' : `,"reason":${JSON.stringify(row.reason)}`;
        const duplicate = row.original_offset === null ? '' : `,"duplicate":true,"original_offset":"${row.original_offset}"`;
        const credit = row.credit_account === null ? ''
          : `,"credit":{"tx_id":"${creditTxIdOf(partition, Number(row.kafka_offset))}","account":"${row.credit_account}","partition":${row.credit_partition},"status":"pending"}`;
        this.publisher.publish(partition, Number(row.kafka_offset), row.tx_id,
          `{"tx_id":${JSON.stringify(row.tx_id)},"status":"${row.accepted ? 'accepted' : 'rejected'}"${reason},"partition":${partition},"offset":"${row.kafka_offset}"${duplicate}${credit},"replayed":true}`);
      }
      republished += rows.rows.length;
      if (rows.rows.length < this.rowsPerStatement) break;
      pageFrom = Number(rows.rows[rows.rows.length - 1]!.kafka_offset) + 1;
    }
    if (republished > 0) this.log.info({ partition, from, nextOffset, events: republished }, 'republished result events that may not have been delivered');
    return republished;
  }
}
