// GET /v1/transactions/{tx_id} against a real uWS server and a PostgreSQL pool that cannot
// connect (a closed port): an outcome in memory that owes no credit half is answered without
// the database; one that might owe one (a crossing transfer, a duplicate) or one only the
// database knows is answered 503, never a guess.

import { test } from 'node:test';
import net from 'node:net';
import assert from 'node:assert/strict';
import pg from 'pg';
import { listen } from './http_server';
import { createLogger } from './logger';
import { OutcomeCache } from './outcome_cache';
import { registerTransactionRoutes } from './transaction_routes';
import { testPgUrl } from './test_services';
import { createScratchDatabase } from '../persist/scratch_database';
import { migrate } from '../persist/migrate';

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
    for (const txId of ['t1', 't2', 'unknown', 'caf\u00e9']) {
      const [status, body] = await get(txId);
      assert.deepEqual([status, (body as { error: string }).error], [503, 'DATABASE_UNAVAILABLE'], `${txId} needs the database`);
    }
    // tx_ids no command can carry are refused without the database: invalid percent-encoded
    // UTF-8, and raw bytes beyond ASCII (uWS would hand them over with U+FFFD for invalid ones).
    const invalid = await fetch(`http://127.0.0.1:${server.port}/v1/transactions/%FF`);
    assert.deepEqual([invalid.status, ((await invalid.json()) as { error: string }).error], [400, 'BAD_TX_ID']);
    for (const rawBytes of [Buffer.from([0xff]), Buffer.from('caf\u00e9', 'utf8')]) {
      const answer = await new Promise<string>((resolve) => {
        const socket = net.connect(server.port, '127.0.0.1', () => {
          socket.end(Buffer.concat([Buffer.from('GET /v1/transactions/'), rawBytes, Buffer.from(' HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n')]));
        });
        let text = '';
        socket.on('data', (data) => { text += data.toString('latin1'); });
        socket.on('close', () => resolve(text));
        socket.on('error', () => resolve(text));
      });
      assert.match(answer, /^HTTP\/1\.1 400 [^]*"error":"BAD_TX_ID"/, answer);
    }
  } finally {
    server.close();
    await db.end();
  }
});

// tx_ids are deduplicated per partition, so one tx_id may name a command on each of two
// partitions. A lookup that does not say which is answered 409 AMBIGUOUS_TX_ID with the
// partitions, from the database and from memory alike (never whichever a cache or an offset
// comparison happens to pick); `?account=` (the account the command was keyed by) or
// `?partition=` names one. Partitions this instance hands over are forgotten by the cache:
// their next owner's outcomes are read from the database. A real PostgreSQL and uWS server.
test('a tx_id recorded on two partitions is answered 409 AMBIGUOUS_TX_ID unless the lookup names the account or partition', { timeout: 60_000 }, async () => {
  const database = await createScratchDatabase(testPgUrl, 'tally_txlookup');
  await migrate(database.url);
  const db = new pg.Pool({ connectionString: database.url, max: 2 });
  const cache = new OutcomeCache(1000);
  // 1001 lives on partition 0 and 1002 on partition 3 (of 4).
  await db.query(`INSERT INTO tx_outcomes (partition, tx_id, kafka_offset, accepted, reason, payload_hash) VALUES
    (0, 'shared', 40, true, NULL, 1), (3, 'shared', 7, false, 'INSUFFICIENT_AVAILABLE', 2), (3, 'only-here', 8, true, NULL, 3)`);
  const server = await listen({ host: '127.0.0.1', port: 0, isReady: () => true, routes: (app) => registerTransactionRoutes(app, cache, db, 4, createLogger('silent')) });
  const get = async (path: string): Promise<[number, Record<string, unknown>]> => {
    const response = await fetch(`http://127.0.0.1:${server.port}/v1/transactions/${path}`);
    return [response.status, await response.json() as Record<string, unknown>];
  };
  const fields = ([status, body]: [number, Record<string, unknown>]): unknown[] => [status, body['error'] ?? body['status'], body['partition'] ?? body['partitions']];
  try {
    assert.deepEqual(fields(await get('shared')), [409, 'AMBIGUOUS_TX_ID', [0, 3]]);
    assert.deepEqual(fields(await get('shared?account=1001')), [200, 'accepted', 0]);
    assert.deepEqual(fields(await get('shared?account=0001002')), [200, 'rejected', 3]);
    assert.deepEqual(fields(await get('shared?partition=3')), [200, 'rejected', 3]);
    assert.deepEqual(fields(await get('shared?partition=1')), [404, 'TX_NOT_FOUND', undefined]);
    assert.deepEqual(fields(await get('only-here')), [200, 'accepted', 3]);
    for (const query of ['partition=4', 'partition=x', 'account=5', 'account=1x', 'account=1001&partition=3']) {
      assert.deepEqual(fields(await get(`shared?${query}`)).slice(0, 2), [400, 'BAD_QUERY'], query);
    }

    // From memory: a tx_id the cache saw on two partitions is not answered from it unnamed.
    const event = (partition: number, offset: number, status: string): string => `{"tx_id":"mem","status":"${status}","partition":${partition},"offset":"${offset}"}`;
    cache.add('mem', 0, event(0, 50, 'accepted'));
    assert.deepEqual(fields(await get('mem')), [200, 'accepted', 0], 'seen on one partition: answered from memory (the database knows nothing of it)');
    cache.add('mem', 3, event(3, 9, 'rejected'));
    await db.query("INSERT INTO tx_outcomes (partition, tx_id, kafka_offset, accepted, reason, payload_hash) VALUES (0, 'mem', 50, true, NULL, 4), (3, 'mem', 9, false, 'INSUFFICIENT_AVAILABLE', 5)");
    assert.deepEqual(fields(await get('mem')), [409, 'AMBIGUOUS_TX_ID', [0, 3]]);
    assert.deepEqual(fields(await get('mem?partition=3')), [200, 'rejected', 3]);

    // In memory here on one partition only, but recorded on another too (another instance's):
    // a lookup that names no partition asks the database, and is ambiguous; one that names
    // this partition is answered from memory, with the balances only memory has.
    cache.add('cross', 0, '{"tx_id":"cross","status":"accepted","partition":0,"offset":"60","balances":[]}');
    await db.query("INSERT INTO tx_outcomes (partition, tx_id, kafka_offset, accepted, reason, payload_hash) VALUES (0, 'cross', 60, true, NULL, 7), (3, 'cross', 11, true, NULL, 8)");
    assert.deepEqual(fields(await get('cross')), [409, 'AMBIGUOUS_TX_ID', [0, 3]]);
    const named = await get('cross?partition=0');
    assert.deepEqual([named[0], named[1]['offset'], named[1]['balances']], [200, '60', []]);
    // Recorded once: the unnamed lookup is answered with memory's body (balances included).
    cache.add('once', 0, '{"tx_id":"once","status":"accepted","partition":0,"offset":"61","balances":[]}');
    await db.query("INSERT INTO tx_outcomes (partition, tx_id, kafka_offset, accepted, reason, payload_hash) VALUES (0, 'once', 61, true, NULL, 9)");
    const once = await get('once');
    assert.deepEqual([once[0], once[1]['offset'], once[1]['balances']], [200, '61', []]);

    // A partition handed over: its outcomes in memory are forgotten; the database answers.
    cache.add('moved', 3, '{"tx_id":"moved","status":"accepted","partition":3,"offset":"10"}');
    await db.query("INSERT INTO tx_outcomes (partition, tx_id, kafka_offset, accepted, reason, payload_hash) VALUES (3, 'moved', 900, false, 'INSUFFICIENT_AVAILABLE', 6)");
    assert.equal(cache.get('moved')?.offset, '10');
    cache.forgetPartitions([3]);
    assert.equal(cache.get('moved'), undefined);
    const [status, body] = await get('moved');
    assert.deepEqual([status, body['offset'], body['status']], [200, '900', 'rejected'], 'what the next owner stored');
  } finally {
    server.close();
    await db.end();
    await database.drop();
  }
});
