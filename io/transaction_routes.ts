// GET /v1/transactions/{tx_id}[?account=A | ?partition=N]: the stored outcome of a command. Recent durable outcomes are
// answered from memory (OutcomeCache: the result event's JSON, which has the body's fields); older ones from PostgreSQL's tx_outcomes, probing the
// primary key (partition, tx_id) once per partition. Only durable outcomes are ever answered:
// a command the engine applied but did not commit yet is 404 until its batch commits.

import type uWS from 'uWebSockets.js';
import pg from 'pg';
import type { OutcomeCache } from './outcome_cache';
import { json } from './http_server';
import type { Logger } from './logger';
import { canonicalAccountText, parsePartition } from './balance_routes';
import { homePartitionOfAccountDecimal } from '../engine/partitioner';

export interface TransactionBody {
  readonly tx_id: string;
  readonly status: 'accepted' | 'rejected';
  readonly reason?: string;
  readonly partition: number;
  readonly offset: string;
  readonly duplicate?: boolean;
  readonly original_offset?: string;
  readonly balances?: ReadonlyArray<{ account: string; currency: string; available: string; frozen: string }>;
  /** Cross-partition transfers: the credit half, 'pending' until it is durable on `to`'s partition. */
  credit?: CreditStatus;
}

export interface CreditStatus {
  readonly tx_id: string;
  readonly account: string;
  readonly partition: number;
  readonly status: 'pending' | 'applied' | 'rejected';
  readonly reason?: string;
  /** An operator refunded a rejected credit to `from` (tally resolve-credit). */
  readonly resolution?: string;
}

/** The credit half of the cross-partition transfer at (partition, offset), or undefined if it has none. */
export async function creditOf(db: pg.Pool, partition: number, offset: number): Promise<CreditStatus | undefined> {
  const result = await db.query<{ tx_id: string; to_account: string; to_partition: number; accepted: boolean | null; reason: string | null; resolution: string | null }>(
    `SELECT tally_credit_tx_id(o.partition, o.kafka_offset) AS tx_id, tally_account_text(o.to_account) AS to_account, o.to_partition,
            c.accepted, c.reason, o.resolution
       FROM transfer_outbox o
       LEFT JOIN tx_outcomes c ON c.partition = o.to_partition AND c.tx_id = tally_credit_tx_id(o.partition, o.kafka_offset)
      WHERE o.partition = $1 AND o.kafka_offset = $2`, [partition, offset]);
  const row = result.rows[0];
  if (row === undefined) return undefined;
  const status = row.accepted === null ? 'pending' : row.accepted ? 'applied' : 'rejected';
  return {
    tx_id: row.tx_id, account: row.to_account, partition: row.to_partition, status,
    ...(row.reason === null ? {} : { reason: row.reason }), ...(row.resolution === null ? {} : { resolution: row.resolution }),
  };
}

/**
 * Whether an outcome might owe a credit half that is not in it. A result event's body names
 * the credit of a crossing transfer itself, so one from an event without it owes none unless
 * it is a duplicate (whose event comes from the repeat, not the original); a body read from
 * tx_outcomes never says.
 */
export function mayOweCredit(body: TransactionBody, fromEvent: boolean): boolean {
  return body.status === 'accepted' && (!fromEvent || body.credit !== undefined || body.duplicate === true);
}

/** Adds the credit half to an accepted transfer's body (a no-op for everything else). */
export async function withCredit(db: pg.Pool, body: TransactionBody, fromEvent = false): Promise<TransactionBody> {
  if (!mayOweCredit(body, fromEvent)) return body;
  const credit = await creditOf(db, body.partition, Number(body.original_offset ?? body.offset));
  return credit === undefined ? body : { ...body, credit };
}

/** Outcomes of `txId` stored in PostgreSQL (one per partition that saw it), oldest first; `partitions` narrows the search. */
export async function storedOutcomes(db: pg.Pool, partitionCount: number, txId: string, partitions = Array.from({ length: partitionCount }, (_, p) => p)): Promise<TransactionBody[]> {
  const result = await db.query<{ partition: number; kafka_offset: string; accepted: boolean; reason: string | null }>(
    'SELECT partition, kafka_offset, accepted, reason FROM tx_outcomes WHERE partition = ANY($1::int[]) AND tx_id = $2 ORDER BY kafka_offset',
    [partitions, txId],
  );
  return result.rows.map((row) => ({
    tx_id: txId, status: row.accepted ? 'accepted' : 'rejected', ...(row.reason === null ? {} : { reason: row.reason }),
    partition: row.partition, offset: row.kafka_offset,
  }));
}

/**
 * Lookups the database may be working on or queued for at once. The route is not
 * authenticated, so a flood of lookups of unknown tx_ids is answered 503 beyond this bound
 * instead of queueing without one (the lookups have a pool of their own, so they never
 * starve the health probe, the credit relay or the transfer API of connections).
 */
export const DATABASE_LOOKUPS_MAX = 64;

/**
 * The partition a lookup names: `?partition=N`, or `?account=A` (a user account: its home
 * partition, where the command it keyed was deduplicated); undefined when it names none, a
 * string saying what is wrong when it names one badly.
 */
export function lookupPartition(query: string, partitionCount: number): number | undefined | string {
  const accountText = /(?:^|&)account=([^&]*)/.exec(query)?.[1];
  let partition = parsePartition(query);
  if (partition === null || (partition !== undefined && partition >= partitionCount)) return `partition must be an integer from 0 to ${partitionCount - 1}`;
  if (accountText !== undefined) {
    const account = canonicalAccountText(accountText);
    if (account === undefined) return 'account must be an unsigned 64-bit integer in decimal';
    if (account.length < 4) return 'account names a system account, which exists on every partition: name the partition instead';
    const home = homePartitionOfAccountDecimal(account, partitionCount);
    if (partition !== undefined && partition !== home) return `account ${account} lives on partition ${home}, not ${partition}`;
    partition = home;
  }
  return partition;
}

export function registerTransactionRoutes(app: uWS.TemplatedApp, cache: OutcomeCache, db: pg.Pool, partitionCount: number, log: Logger): void {
  let lookups = 0;
  app.get('/v1/transactions/:tx_id', (res, req) => {
    const partition = lookupPartition(req.getQuery() ?? '', partitionCount);
    if (typeof partition === 'string') return json(res, '400 Bad Request', { error: 'BAD_QUERY', message: partition });
    let txId: string;
    const raw = req.getParameter(0) ?? '';
    // A path carries only ASCII (RFC 3986); raw bytes beyond it reach us already decoded, with
    // invalid UTF-8 replaced by U+FFFD, so a lookup of them would look up another tx_id.
    if (!/^[\x21-\x7e]*$/.test(raw)) return json(res, '400 Bad Request', { error: 'BAD_TX_ID', message: 'percent-encode the tx_id in the path (UTF-8); raw non-ASCII bytes and spaces are not accepted' });
    try {
      txId = decodeURIComponent(raw);
    } catch {
      return json(res, '400 Bad Request', { error: 'BAD_TX_ID', message: 'tx_id is not valid percent-encoded UTF-8' });
    }
    if (txId.length < 1 || Buffer.byteLength(txId) > 64) return json(res, '400 Bad Request', { error: 'BAD_TX_ID', message: 'tx_id must be 1 to 64 bytes' });
    // No command can carry a NUL in its tx_id (the engine refuses it), and PostgreSQL text cannot hold one.
    if (txId.includes('\u0000')) return json(res, '400 Bad Request', { error: 'BAD_TX_ID', message: 'tx_id must not contain NUL characters' });
    const cached = cache.get(txId, partition);
    // From memory alone when nothing is left to look up: the lookup names the partition (one
    // outcome at most), and the outcome owes no credit half to read. A lookup that names none
    // asks the database whether other partitions recorded the tx_id too (this instance keeps
    // only its own partitions' recent outcomes), and falls back to memory while it is away.
    const answerable = cached !== undefined && !mayOweCredit(cached, true);
    if (answerable && partition !== undefined) return json(res, '200 OK', cached);
    if (lookups >= DATABASE_LOOKUPS_MAX) {
      if (answerable) return json(res, '200 OK', cached);
      return json(res, '503 Service Unavailable', { error: 'TOO_MANY_LOOKUPS', message: `${DATABASE_LOOKUPS_MAX} transaction lookups are waiting for the database; retry later` });
    }
    let aborted = false;
    res.onAborted(() => {
      aborted = true;
    });
    lookups++;
    const lookup = cached !== undefined && partition !== undefined
      ? Promise.resolve([cached])
      : storedOutcomes(db, partitionCount, txId, partition === undefined ? undefined : [partition]).then(
        // The stored row of the partition the cache holds: the cache's body, which has the
        // balances (and the cache's outcome alone if the database does not have it yet).
        (found) => (found.length === 0 && cached !== undefined ? [cached] : found.map((outcome) => (cached !== undefined && outcome.partition === cached.partition ? cached : outcome))),
        (error: unknown) => {
          if (!answerable) throw error;
          // Per lookup, so at debug level: the database being away is logged by those that depend on it.
          log.debug({ err: error, txId }, 'transaction lookup answered from memory: the database cannot be read');
          return [cached];
        });
    lookup.then(async (found) => {
      // tx_ids are deduplicated per partition: one recorded on several names several commands,
      // and which of them was meant only the client knows.
      if (found.length > 1) {
        const partitions = found.map((outcome) => outcome.partition).sort((a, b) => a - b);
        if (!aborted) json(res, '409 Conflict', { error: 'AMBIGUOUS_TX_ID', partitions, message: `tx_id ${JSON.stringify(txId)} is recorded on partitions ${partitions.join(', ')}; name one with ?account= (the account the command was keyed by) or ?partition=` });
        return;
      }
      const outcome = found.length === 0 ? undefined : await withCredit(db, found[0]!, found[0] === cached);
      if (aborted) return;
      if (outcome === undefined) return json(res, '404 Not Found', { error: 'TX_NOT_FOUND', message: `no durable outcome for tx_id ${JSON.stringify(txId)}${partition === undefined ? '' : ` on partition ${partition}`}` });
      return json(res, '200 OK', outcome);
    }).catch((error: unknown) => {
      log.error({ err: error, txId }, 'transaction lookup failed');
      if (!aborted) json(res, '503 Service Unavailable', { error: 'DATABASE_UNAVAILABLE', message: 'the outcome store cannot be read right now; retry' });
    }).finally(() => {
      lookups--;
    });
  });
}
