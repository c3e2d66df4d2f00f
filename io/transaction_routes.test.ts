// GET /v1/transactions/{tx_id} against a real uWS server and a PostgreSQL pool that cannot
// connect (a closed port): an outcome in memory that owes no credit half is answered without
// the database; one that might owe one (a crossing transfer, a duplicate) or one only the
// database knows is answered 503, never a guess.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { listen } from './http_server';
import { createLogger } from './logger';
import { OutcomeCache } from './outcome_cache';
import { registerTransactionRoutes } from './transaction_routes';

test('transaction lookups answer from memory what needs no database, while the database is away', { timeout: 60_000 }, async () => {
  const cache = new OutcomeCache(1000);
  const deposit = '{"tx_id":"d1","status":"accepted","partition":0,"offset":"5","balances":[{"account":"1001","currency":"USDT","available":"1","frozen":"0"}]}';
  const crossing = '{"tx_id":"t1","status":"accepted","partition":0,"offset":"6","balances":[],"credit":{"tx_id":"~x0-6","account":"1002","partition":1,"status":"pending"}}';
  const duplicate = '{"tx_id":"t2","status":"accepted","partition":0,"offset":"8","duplicate":true,"original_offset":"7"}';
  cache.add('d1', 0, deposit);
  cache.add('t1', 0, crossing);
  cache.add('t2', 0, duplicate);
  const db = new pg.Pool({ connectionString: 'postgres://postgres@127.0.0.1:1/none', connectionTimeoutMillis: 1000 });
  db.on('error', () => undefined);
  const server = await listen({ host: '127.0.0.1', port: 0, isReady: () => true, routes: (app) => registerTransactionRoutes(app, cache, db, 4, createLogger('silent')) });
  const get = async (txId: string): Promise<[number, unknown]> => {
    const response = await fetch(`http://127.0.0.1:${server.port}/v1/transactions/${encodeURIComponent(txId)}`);
    return [response.status, await response.json()];
  };
  try {
    assert.deepEqual(await get('d1'), [200, JSON.parse(deposit)], 'a cached deposit owes no credit: no database needed');
    for (const txId of ['t1', 't2', 'unknown']) {
      const [status, body] = await get(txId);
      assert.deepEqual([status, (body as { error: string }).error], [503, 'DATABASE_UNAVAILABLE'], `${txId} needs the database`);
    }
  } finally {
    server.close();
    await db.end();
  }
});
