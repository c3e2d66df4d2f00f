// Partition leases: who owns a partition, fenced by a token that grows on every takeover
// (table partition_leases, docs/persistence.md "Ownership and recovery").
//
// Who takes a partition is decided by Kafka's consumer-group assignment, not here: when
// Kafka hands us partition p, acquireLease() takes its row at once, bumping the fencing
// token, without waiting for the previous owner's lease_expiry. That is safe because every
// flush updates next_offset only WHERE fencing_token = <its token> in the same transaction
// as its balances and outcomes: from the moment our UPDATE commits, an older owner (a paused
// zombie, a slow instance still finishing a batch) can no longer commit anything for p, and
// waiting out its expiry would only stall the partition. lease_expiry is therefore not a
// lock: it tells operators, and an instance reclaiming a partition the group assigns to it
// (io/service.ts), whether the holder still keeps its lease up. Renewals extend it on rows
// no flush holds, and every flush extends it on the rows it advances, so a busy owner's
// expiry keeps moving too.
//
// The LeaseKeeper holds an instance's leases: it acquires on request, renews every ttl/3 and
// reports a partition lost (onLost) as soon as a renewal finds its row no longer carries our
// token and owner (someone took it over, or it was released), or when the database stayed
// unreachable until the lease's expiry passed, since by then a successor may own it. A lost
// partition must stop at once: the consumer stops feeding it and nothing more is flushed.

import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { Logger } from '../io/logger';

export interface Lease {
  readonly partition: number;
  readonly fencingToken: number;
  /** The partition's stored next offset: where consumption resumes. */
  readonly nextOffset: number;
}

export interface HeldLease {
  readonly partition: number;
  readonly fencingToken: number;
}

function assertTtl(ttlMs: number): void {
  if (!Number.isInteger(ttlMs) || ttlMs < 1) throw new Error(`lease: ttlMs must be a positive integer, got ${ttlMs}`);
}

function toSafeInteger(text: string, what: string): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value)) throw new Error(`lease: ${what} ${text} is beyond 2^53`);
  return value;
}

/** What a take records in the lease row besides owner, token and expiry (each left as it was when absent). */
export interface LeaseRecord {
  /** The dedup window the partition is now deduplicated with (the credit relays of other instances read it; io/credit_relay.ts). */
  readonly dedupWindow?: number;
  /** This process's id (LeaseKeeper.process): tells it apart from another process with the same owner name. */
  readonly ownerProcess?: string;
}

/**
 * Takes partition `partition` of `topic` for `owner`: creates its lease row if missing, then
 * bumps the fencing token and sets owner and expiry in one UPDATE. Returns the new token and
 * the stored next offset.
 */
export async function acquireLease(client: pg.ClientBase, topic: string, partition: number, owner: string, ttlMs: number, record: LeaseRecord = {}): Promise<Lease> {
  assertTtl(ttlMs);
  await client.query('INSERT INTO partition_leases (topic, partition) VALUES ($1, $2) ON CONFLICT DO NOTHING', [topic, partition]);
  const result = await client.query<{ fencing_token: string; next_offset: string }>(
    `UPDATE partition_leases
        SET owner = $3, fencing_token = fencing_token + 1, lease_expiry = now() + $4 * interval '1 millisecond',
            dedup_window = COALESCE($5::bigint, dedup_window), owner_process = $6::text
      WHERE topic = $1 AND partition = $2
  RETURNING fencing_token, next_offset`,
    [topic, partition, owner, ttlMs, record.dedupWindow ?? null, record.ownerProcess ?? null],
  );
  const row = result.rows[0];
  if (row === undefined) throw new Error(`lease: the row of ${topic}/${partition} vanished between INSERT and UPDATE`);
  return { partition, fencingToken: toSafeInteger(row.fencing_token, 'fencing token'), nextOffset: toSafeInteger(row.next_offset, 'next offset') };
}

/**
 * A reclaim (LeaseRowSeen.lapsedOnly) ends the flush session holding the row only once its
 * transaction has been open this long: past the flush's own client-side deadline
 * (flush_task.ts FLUSH_DEADLINE_MS, asserted there), so a live holder has given that flush
 * up already, and what is left is a paused one (SIGSTOP in the middle of a COPY, which no
 * server timeout reaches) that would otherwise keep the partition for as long as it stays paused.
 */
export const RECLAIM_HOLDER_OPEN_MS_MIN = 180_000;

/** A lease row as someone saw it: its owner (null when released) and fencing token. */
export interface LeaseRowSeen {
  readonly owner: string | null;
  readonly fencingToken: number;
  /**
   * Take the row as seen only if its lease has lapsed when the UPDATE runs (a reclaim): an
   * owner and token unchanged say nothing of whether its holder renewed since it was read.
   */
  readonly lapsedOnly?: boolean;
}

/**
 * acquireLease, but only if the row is still as `seen` (or released, or ours already): a
 * compare-and-swap, so a take retried later never fences an instance that took the
 * partition over in between. Undefined when the row changed hands. "Ours" is this owner
 * name taken by this process (`record.ownerProcess`): a row with our name that another process
 * took (two instances started with one TALLY_INSTANCE_ID) is that process's, as for the
 * service's retake.
 */
export async function acquireLeaseIfUnchanged(
  client: pg.ClientBase, topic: string, partition: number, owner: string, ttlMs: number, seen: LeaseRowSeen, record: LeaseRecord = {},
): Promise<Lease | undefined> {
  assertTtl(ttlMs);
  const result = await client.query<{ fencing_token: string; next_offset: string }>(
    `UPDATE partition_leases
        SET owner = $3, fencing_token = fencing_token + 1, lease_expiry = now() + $4 * interval '1 millisecond',
            dedup_window = COALESCE($7::bigint, dedup_window), owner_process = $8::text
      WHERE topic = $1 AND partition = $2
        AND (owner IS NULL OR (owner = $3 AND owner_process IS NOT DISTINCT FROM $8::text)
             OR (owner IS NOT DISTINCT FROM $5 AND fencing_token = $6 AND (NOT $9::boolean OR lease_expiry < clock_timestamp())))
  RETURNING fencing_token, next_offset`,
    [topic, partition, owner, ttlMs, seen.owner, seen.fencingToken, record.dedupWindow ?? null, record.ownerProcess ?? null, seen.lapsedOnly === true],
  );
  const row = result.rows[0];
  if (row === undefined) return undefined;
  return { partition, fencingToken: toSafeInteger(row.fencing_token, 'fencing token'), nextOffset: toSafeInteger(row.next_offset, 'next offset') };
}

/**
 * Extends the expiry of every lease that still carries our owner and token. Returns the
 * partitions whose renewal matched no row: lost (taken over, or released).
 */
export async function renewLeases(client: pg.ClientBase, topic: string, leases: readonly HeldLease[], owner: string, ttlMs: number): Promise<number[]> {
  assertTtl(ttlMs);
  if (leases.length === 0) return [];
  // Whether a lease is still ours is read without locks (MVCC), so a renewal never waits
  // behind a flush that holds the row FOR UPDATE for the length of its COPYs: under load that
  // wait made renewals time out and healthy leases count as lost. The expiry (informational,
  // see above) is extended on the rows nobody holds right now; a row our own flush holds is
  // being proven ours by that flush's fencing check anyway. Locks are taken in partition order.
  const result = await client.query<{ partition: number }>(
    `WITH mine AS (
       SELECT l.partition FROM partition_leases AS l
         JOIN unnest($2::integer[], $3::bigint[]) AS held (partition, fencing_token)
           ON l.partition = held.partition AND l.fencing_token = held.fencing_token
        WHERE l.topic = $1 AND l.owner = $5),
     extended AS (
       UPDATE partition_leases SET lease_expiry = now() + $4 * interval '1 millisecond'
        WHERE topic = $1 AND partition IN (
          SELECT partition FROM partition_leases WHERE topic = $1 AND partition IN (SELECT partition FROM mine)
           ORDER BY partition FOR UPDATE SKIP LOCKED)
       RETURNING partition)
     SELECT partition FROM mine`,
    [topic, leases.map((l) => l.partition), leases.map((l) => l.fencingToken), ttlMs, owner],
  );
  const renewed = new Set(result.rows.map((row) => row.partition));
  return leases.filter((l) => !renewed.has(l.partition)).map((l) => l.partition);
}

/**
 * Gives leases up on a clean shutdown or revocation: owner NULL, expiry now, token unchanged
 * (the next owner bumps it). Returns the partitions released; a lease already taken over is
 * left alone.
 */
export async function releaseLeases(client: pg.ClientBase, topic: string, leases: readonly HeldLease[], owner: string): Promise<number[]> {
  if (leases.length === 0) return [];
  const result = await client.query<{ partition: number }>(
    `UPDATE partition_leases AS l
        SET owner = NULL, lease_expiry = now()
       FROM unnest($2::integer[], $3::bigint[]) AS held (partition, fencing_token)
      WHERE l.topic = $1 AND l.partition = held.partition AND l.fencing_token = held.fencing_token AND l.owner = $4
  RETURNING l.partition`,
    [topic, leases.map((l) => l.partition), leases.map((l) => l.fencingToken), owner],
  );
  return result.rows.map((row) => row.partition);
}

export type LeaseLostReason = 'taken-over' | 'expired-unreachable';

export interface LeaseKeeperOptions {
  readonly pgUrl: string;
  readonly topic: string;
  readonly owner: string;
  readonly ttlMs: number;
  /** Called at once, on the event loop, with partitions that are no longer ours. */
  readonly onLost: (partitions: number[], reason: LeaseLostReason) => void;
  readonly log?: Logger;
  /** Attempts of acquire and release on connection errors (default 3). */
  readonly attemptsMax?: number;
  /** Opens the keeper's connection; tests substitute one that fails on demand. */
  readonly connect?: (config: pg.ClientConfig) => Promise<pg.Client>;
  /** The dedup window this instance applies taken partitions with, recorded in their lease rows (acquireLease). */
  readonly dedupWindow?: number;
}

/** A random id of this keeper's process, recorded with every take (LeaseRecord.ownerProcess). */
function newProcessId(): string {
  return `${process.pid}-${randomBytes(8).toString('hex')}`;
}

interface KeptLease {
  readonly fencingToken: number;
  /** performance.now() after which the lease may have expired: send time of the last successful renewal + ttl. */
  deadline: number;
}

const ATTEMPTS_MAX_DEFAULT = 3;
/** SQLSTATE of a lock wait ended by lock_timeout. */
const LOCK_NOT_AVAILABLE = '55P03';
/** The application_name of the flush workers' sessions (persist/flush_task.ts). */
export const FLUSH_APPLICATION_NAME = 'tally-flush';
const RETRY_DELAY_MS_MAX = 1000;

async function connectDefault(config: pg.ClientConfig): Promise<pg.Client> {
  const client = new pg.Client(config);
  await client.connect();
  return client;
}

export class LeaseKeeper {
  private client: pg.Client | null = null;
  private readonly leases = new Map<number, KeptLease>();
  /** Recorded in every lease row this keeper takes: whether a row is this process's, not just its owner name's. */
  readonly process = newProcessId();
  private timer: NodeJS.Timeout | undefined;
  /** Database work runs one operation at a time on the keeper's one connection. */
  private tail: Promise<unknown> = Promise.resolve();
  private stopped = false;
  private readonly renewIntervalMs: number;
  private readonly retryDelayMs: number;
  private readonly attemptsMax: number;

  constructor(private readonly options: LeaseKeeperOptions) {
    assertTtl(options.ttlMs);
    this.renewIntervalMs = Math.max(1, Math.floor(options.ttlMs / 3));
    this.retryDelayMs = Math.max(1, Math.min(RETRY_DELAY_MS_MAX, Math.floor(options.ttlMs / 10)));
    this.attemptsMax = options.attemptsMax ?? ATTEMPTS_MAX_DEFAULT;
  }

  private record(): LeaseRecord {
    return { dedupWindow: this.options.dedupWindow, ownerProcess: this.process };
  }

  /** Partitions currently held, ascending. */
  heldPartitions(): number[] {
    return [...this.leases.keys()].sort((a, b) => a - b);
  }

  /**
   * Whether the lease is held and cannot have expired yet: its deadline (the send time of the
   * last successful renewal + TTL) is still ahead. False at once for a process that was paused
   * past it, before its next renewal even runs.
   */
  holds(partition: number): boolean {
    const lease = this.leases.get(partition);
    return lease !== undefined && performance.now() < lease.deadline;
  }

  fencingTokenOf(partition: number): number | undefined {
    return this.leases.get(partition)?.fencingToken;
  }

  /** Takes a partition (Kafka assigned it to us) and keeps renewing it. */
  acquire(partition: number): Promise<Lease>;
  /**
   * The same, asking `stillWanted` in the keeper's turn, right before the row is taken
   * (operations queue here): undefined if it is no longer wanted (revoked meanwhile).
   */
  acquire(partition: number, stillWanted: () => boolean): Promise<Lease | undefined>;
  acquire(partition: number, stillWanted?: () => boolean): Promise<Lease | undefined> {
    return this.serialized(() => this.withRetries(`acquire ${partition}`, async (client) => {
      if (stillWanted !== undefined && !stillWanted()) return undefined;
      const sentAt = performance.now();
      const lease = await this.unblocking(client, partition, () => acquireLease(client, this.options.topic, partition, this.options.owner, this.options.ttlMs, this.record()));
      this.leases.set(partition, { fencingToken: lease.fencingToken, deadline: sentAt + this.options.ttlMs });
      if (this.timer === undefined) this.schedule(this.renewIntervalMs);
      return lease;
    }));
  }

  /** acquire(), but only if the lease row is still as `seen` (acquireLeaseIfUnchanged); undefined if it changed hands. */
  acquireIfUnchanged(partition: number, seen: LeaseRowSeen, stillWanted?: () => boolean): Promise<Lease | undefined> {
    return this.serialized(() => this.withRetries(`acquire ${partition}`, async (client) => {
      if (stillWanted !== undefined && !stillWanted()) return undefined;
      const sentAt = performance.now();
      const take = (): Promise<Lease | undefined> => acquireLeaseIfUnchanged(client, this.options.topic, partition, this.options.owner, this.options.ttlMs, seen, this.record());
      // A row a flush holds says its holder is alive: a reclaim ends that session only once
      // it is open past any live flush's deadline.
      const lease = await this.unblocking(client, partition, take, seen.lapsedOnly === true ? RECLAIM_HOLDER_OPEN_MS_MIN : this.options.ttlMs);
      if (lease === undefined) return undefined;
      this.leases.set(partition, { fencingToken: lease.fencingToken, deadline: sentAt + this.options.ttlMs });
      if (this.timer === undefined) this.schedule(this.renewIntervalMs);
      return lease;
    }));
  }

  /**
   * Runs an acquire; if it gave up waiting for the lease row's lock, ends the flush session
   * holding that row if its transaction has been open for longer than the lease TTL, then
   * fails as before (the caller's retry then finds the row free). A flush takes well under a
   * second; one open that long belongs to a paused or stuck instance (a zombie stopped in the
   * middle of a COPY, where PostgreSQL's statement and idle timeouts do not reach it) and
   * would keep the partition from its new owner for as long as it stays paused. Ending it is
   * safe: its transaction rolls back, and its retry is fenced.
   */
  private async unblocking<T>(client: pg.Client, partition: number, acquire: () => Promise<T>, holderOpenMsMin: number = this.options.ttlMs): Promise<T> {
    try {
      return await acquire();
    } catch (error) {
      if ((error as { code?: string }).code === LOCK_NOT_AVAILABLE) {
        await this.endStuckHolder(client, partition, holderOpenMsMin).catch((failure: unknown) => {
          this.options.log?.warn({ err: failure, partition }, 'lease keeper: could not look for or end the session holding the lease row (needs the same role, or pg_read_all_stats and pg_signal_backend)');
        });
      }
      throw error;
    }
  }

  /** Ends the tally-flush session whose transaction holds the partition's lease row, if open for longer than `openMsMin` (the TTL, or RECLAIM_HOLDER_OPEN_MS_MIN). */
  private async endStuckHolder(client: pg.Client, partition: number, openMsMin: number): Promise<void> {
    // A row lock is kept in the row (xmax = the locking transaction), not in pg_locks; the
    // locking transaction holds the ExclusiveLock on its own transaction id. This finds the
    // holder because lease rows are only ever locked FOR UPDATE by top-level transactions (no
    // share locks, no savepoints): xmax is then that transaction's own id, never a MultiXact.
    const holders = await client.query<{ pid: number; application_name: string | null; client_addr: string | null; open_ms: number | null; ended: boolean }>(
      `SELECT a.pid, a.application_name, a.client_addr::text AS client_addr,
              (extract(epoch FROM now() - a.xact_start) * 1000)::integer AS open_ms,
              CASE WHEN a.application_name = $3 AND a.pid <> pg_backend_pid() AND a.xact_start < now() - $4 * interval '1 millisecond'
                   THEN pg_terminate_backend(a.pid) ELSE false END AS ended
         FROM partition_leases AS r
         JOIN pg_locks AS l ON l.locktype = 'transactionid' AND l.transactionid = r.xmax AND l.mode = 'ExclusiveLock' AND l.granted
         JOIN pg_stat_activity AS a ON a.pid = l.pid
        WHERE r.topic = $1 AND r.partition = $2`,
      [this.options.topic, partition, FLUSH_APPLICATION_NAME, openMsMin],
    );
    const log = this.options.log;
    if (holders.rows.length === 0) {
      log?.warn({ partition }, 'lease keeper: the lease row is no longer locked (its holder committed meanwhile), or its holder is not visible to this role (grant pg_read_all_stats); a paused holder is waited for');
    }
    for (const row of holders.rows) {
      const context = { partition, pid: row.pid, applicationName: row.application_name, clientAddress: row.client_addr, openMs: row.open_ms };
      if (row.ended) log?.warn({ ...context, openMsMin }, 'lease keeper: ended the flush session that held the lease row for too long (a paused or stuck instance)');
      else if (row.open_ms === null) log?.warn(context, 'lease keeper: the lease row\'s holder is not visible to this role (grant pg_read_all_stats); a paused holder is waited for');
      else if (row.open_ms >= openMsMin) log?.warn(context, 'lease keeper: the lease row is held for longer than the lease TTL by a session that is not a Tally flush; not ending it');
    }
  }

  /** Gives partitions up (Kafka revoked them); they stop being renewed at once. */
  release(partitions: readonly number[]): Promise<number[]> {
    const held = this.forget(partitions);
    return this.serialized(() => this.withRetries('release', (client) => releaseLeases(client, this.options.topic, held, this.options.owner)));
  }

  /** Renews every held lease now; the timer calls this every ttl/3. */
  renew(): Promise<void> {
    return this.serialized(() => this.renewOnce());
  }

  /** Releases every lease and closes the connection (clean shutdown). */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    try {
      await this.release(this.heldPartitions());
    } catch (error) {
      this.options.log?.warn({ err: error }, 'lease keeper: could not release leases on stop; they expire on their own');
    }
    await this.serialized(async () => this.dropConnection());
  }

  private forget(partitions: readonly number[]): HeldLease[] {
    const held: HeldLease[] = [];
    for (const partition of partitions) {
      const lease = this.leases.get(partition);
      if (lease === undefined) continue;
      held.push({ partition, fencingToken: lease.fencingToken });
      this.leases.delete(partition);
    }
    return held;
  }

  private async renewOnce(): Promise<void> {
    if (this.stopped || this.leases.size === 0) return;
    const held = [...this.leases].map(([partition, lease]) => ({ partition, fencingToken: lease.fencingToken }));
    const sentAt = performance.now();
    let lost: number[];
    try {
      lost = await renewLeases(await this.connection(), this.options.topic, held, this.options.owner, this.options.ttlMs);
    } catch (error) {
      this.dropConnection();
      this.options.log?.warn({ err: error, partitions: held.map((l) => l.partition) }, 'lease keeper: renewal failed; retrying');
      this.reportLost(this.expiredBy(performance.now()), 'expired-unreachable');
      this.schedule(this.retryDelayMs);
      return;
    }
    const lostSet = new Set(lost);
    const taken: number[] = [];
    for (const { partition, fencingToken } of held) {
      const lease = this.leases.get(partition);
      if (lease === undefined || lease.fencingToken !== fencingToken) continue;
      if (lostSet.has(partition)) {
        this.leases.delete(partition);
        taken.push(partition);
      } else {
        lease.deadline = sentAt + this.options.ttlMs;
      }
    }
    this.reportLost(taken, 'taken-over');
    this.schedule(this.renewIntervalMs);
  }

  /** Forgets and returns the leases whose deadline passed. */
  private expiredBy(now: number): number[] {
    const expired: number[] = [];
    for (const [partition, lease] of this.leases) if (now >= lease.deadline) expired.push(partition);
    for (const partition of expired) this.leases.delete(partition);
    return expired;
  }

  private reportLost(partitions: number[], reason: LeaseLostReason): void {
    if (partitions.length === 0) return;
    partitions.sort((a, b) => a - b);
    this.options.log?.error({ partitions, reason }, 'lease keeper: partitions lost; they must stop at once');
    try {
      this.options.onLost(partitions, reason);
    } catch (error) {
      this.options.log?.error({ err: error, partitions }, 'lease keeper: onLost threw');
    }
  }

  /** (Re)arms the renewal timer; the keeper renews only while it holds leases. */
  private schedule(delayMs: number): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.stopped || this.leases.size === 0) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.renew().catch((error) => this.options.log?.error({ err: error }, 'lease keeper: renewal crashed'));
    }, delayMs);
    this.timer.unref();
  }

  /** Runs `operation` with the connection, reconnecting on failure, at most attemptsMax times. */
  private async withRetries<T>(what: string, operation: (client: pg.Client) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await operation(await this.connection());
      } catch (error) {
        this.dropConnection();
        if (attempt >= this.attemptsMax) throw new Error(`lease keeper: ${what} failed after ${attempt} attempts: ${(error as Error).message}`, { cause: error });
        this.options.log?.warn({ err: error, attempt }, `lease keeper: ${what} failed; retrying`);
        await new Promise((resolve) => setTimeout(resolve, this.retryDelayMs));
      }
    }
  }

  private async connection(): Promise<pg.Client> {
    if (this.client !== null) return this.client;
    // Every wait on the database is bounded by a third of the TTL, so one hung attempt cannot
    // outlive the lease it is renewing. On both sides: the server cancels the statement too,
    // so an attempt given up on (a lease row locked by another instance's flush) does not run
    // later and bump the fencing token behind our back.
    // A row lock (another instance's flush holding the lease row) is waited for only briefly:
    // the keeper runs one operation at a time, and an acquire stuck behind a paused owner
    // would hold up renewals and every other take; it fails fast and is tried again later.
    const config: pg.ClientConfig = {
      connectionString: this.options.pgUrl, connectionTimeoutMillis: this.renewIntervalMs, query_timeout: this.renewIntervalMs, statement_timeout: this.renewIntervalMs,
      lock_timeout: Math.max(50, Math.floor(this.renewIntervalMs / 3)),
    };
    const client = await (this.options.connect ?? connectDefault)(config);
    client.on('error', (error) => {
      this.options.log?.warn({ err: error }, 'lease keeper: connection error');
      if (this.client === client) this.dropConnection();
    });
    this.client = client;
    return client;
  }

  private dropConnection(): void {
    const client = this.client;
    this.client = null;
    if (client !== null) client.end().catch(() => undefined);
  }

  private serialized<T>(operation: () => Promise<T>): Promise<T> {
    const result = this.tail.then(operation, operation);
    this.tail = result.catch(() => undefined);
    return result;
  }
}
