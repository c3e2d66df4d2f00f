// GET /v1/transactions/{tx_id}: the stored outcome of a command. Recent durable outcomes are
// answered from memory (OutcomeCache); older ones from PostgreSQL's tx_outcomes, probing the
// primary key (partition, tx_id) once per partition. Only durable outcomes are ever answered:
// a command the engine applied but did not commit yet is 404 until its batch commits.

import type uWS from 'uWebSockets.js';
import pg from 'pg';
import type { DurableOutcome } from './durable_outcome';
import type { OutcomeCache } from './outcome_cache';
import { json } from './http_server';
import type { Logger } from './logger';

export interface TransactionBody {
  readonly tx_id: string;
  readonly status: 'accepted' | 'rejected';
  readonly reason?: string;
  readonly partition: number;
  readonly offset: string;
  readonly duplicate?: boolean;
  readonly original_offset?: string;
  readonly balances?: ReadonlyArray<{ account: string; currency: string; available: string; frozen: string }>;
}

export function transactionBody(outcome: DurableOutcome, withBalances = true): TransactionBody {
  const balances = outcome.balances.filter((b) => !(b.account.length <= 3 && Number(b.account) < 1000))
    .map((b) => ({ account: b.account, currency: b.currency, available: b.available, frozen: b.frozen }));
  return {
    tx_id: outcome.txId, status: outcome.status, ...(outcome.reason === undefined ? {} : { reason: outcome.reason }),
    partition: outcome.partition, offset: String(outcome.offset),
    ...(outcome.duplicate ? { duplicate: true, original_offset: String(outcome.originalOffset) } : {}),
    ...(withBalances && balances.length > 0 ? { balances } : {}),
  };
}

/** Outcomes of `txId` stored in PostgreSQL (one per partition that saw it), oldest first. */
export async function storedOutcomes(db: pg.Pool, partitionCount: number, txId: string): Promise<TransactionBody[]> {
  const partitions = Array.from({ length: partitionCount }, (_, p) => p);
  const result = await db.query<{ partition: number; kafka_offset: string; accepted: boolean; reason: string | null }>(
    'SELECT partition, kafka_offset, accepted, reason FROM tx_outcomes WHERE partition = ANY($1::int[]) AND tx_id = $2 ORDER BY kafka_offset',
    [partitions, txId],
  );
  return result.rows.map((row) => ({
    tx_id: txId, status: row.accepted ? 'accepted' : 'rejected', ...(row.reason === null ? {} : { reason: row.reason }),
    partition: row.partition, offset: row.kafka_offset,
  }));
}

export function registerTransactionRoutes(app: uWS.TemplatedApp, cache: OutcomeCache, db: pg.Pool, partitionCount: number, log: Logger): void {
  app.get('/v1/transactions/:tx_id', (res, req) => {
    let txId: string;
    try {
      txId = decodeURIComponent(req.getParameter(0) ?? '');
    } catch {
      return json(res, '400 Bad Request', { error: 'BAD_TX_ID', message: 'tx_id is not valid percent-encoded UTF-8' });
    }
    if (txId.length < 1 || Buffer.byteLength(txId) > 64) return json(res, '400 Bad Request', { error: 'BAD_TX_ID', message: 'tx_id must be 1 to 64 bytes' });
    const cached = cache.get(txId);
    if (cached !== undefined) return json(res, '200 OK', transactionBody(cached));
    let aborted = false;
    res.onAborted(() => {
      aborted = true;
    });
    storedOutcomes(db, partitionCount, txId).then((found) => {
      if (aborted) return;
      if (found.length === 0) return json(res, '404 Not Found', { error: 'TX_NOT_FOUND', message: `no durable outcome for tx_id ${JSON.stringify(txId)}` });
      return json(res, '200 OK', found[found.length - 1]);
    }, (error: unknown) => {
      log.error({ err: error, txId }, 'transaction lookup failed');
      if (!aborted) json(res, '503 Service Unavailable', { error: 'DATABASE_UNAVAILABLE', message: 'the outcome store cannot be read right now; retry' });
    });
  });
}
