// Partition leases against the real PostgreSQL, in a scratch database: the fencing token
// grows on every acquire, a renewal notices a takeover, release hands the row back, and the
// LeaseKeeper reports lost partitions at once (takeover) or once their expiry passed while
// the database was unreachable, but rides out a dropped connection.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { FLUSH_APPLICATION_NAME, LeaseKeeper, LeaseLostReason, acquireLease, acquireLeaseIfUnchanged, releaseLeases, renewLeases } from './lease';
import { createScratchDatabase } from './scratch_database';
import { testPgUrl } from '../io/test_services';

const TOPIC = 'tally.commands';

interface LeaseRow {
  owner: string | null;
  fencing_token: string;
  next_offset: string;
  expires_in_ms: number;
}

async function leaseRow(client: pg.Client, partition: number): Promise<LeaseRow> {
  const result = await client.query<LeaseRow>(
    'SELECT owner, fencing_token, next_offset, extract(epoch FROM lease_expiry - now()) * 1000 AS expires_in_ms FROM partition_leases WHERE topic = $1 AND partition = $2',
    [TOPIC, partition]);
  return result.rows[0]!;
}

async function withScratch(prefix: string, body: (url: string, client: pg.Client) => Promise<void>): Promise<void> {
  const scratch = await createScratchDatabase(testPgUrl, prefix);
  const client = new pg.Client({ connectionString: scratch.url });
  await client.connect();
  try {
    await body(scratch.url, client);
  } finally {
    await client.end();
    await scratch.drop();
  }
}

function until(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const poll = (): void => {
      if (condition()) resolve();
      else if (performance.now() - started > timeoutMs) reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      else setTimeout(poll, 10);
    };
    poll();
  });
}

test('acquireLeaseIfUnchanged takes the lease only if the row is still as seen, released, or ours', { timeout: 60_000 }, async () => {
  await withScratch('tally_lease', async (_url, client) => {
    await acquireLease(client, TOPIC, 5, 'zombie', 10_000);
    const seen = { owner: 'zombie', fencingToken: 1 };
    await acquireLease(client, TOPIC, 5, 'c', 10_000); // another instance took it meanwhile
    assert.equal(await acquireLeaseIfUnchanged(client, TOPIC, 5, 'b', 10_000, seen), undefined, 'changed hands: not taken');
    assert.deepEqual([(await leaseRow(client, 5)).owner, (await client.query('SELECT fencing_token::int AS t FROM partition_leases WHERE partition = 5')).rows[0].t], ['c', 2], 'c is not fenced');
    const taken = await acquireLeaseIfUnchanged(client, TOPIC, 5, 'b', 10_000, { owner: 'c', fencingToken: 2 });
    assert.equal(taken?.fencingToken, 3, 'unchanged since seen: taken over');
    assert.equal((await acquireLeaseIfUnchanged(client, TOPIC, 5, 'b', 10_000, seen))?.fencingToken, 4, 'ours already: taken again');
    await releaseLeases(client, TOPIC, [{ partition: 5, fencingToken: 4 }], 'b');
    assert.equal((await acquireLeaseIfUnchanged(client, TOPIC, 5, 'd', 10_000, seen))?.fencingToken, 5, 'released: free to take');
    // Ours means this owner name taken by this process: a row with our name that another
    // process took (a second instance started with our TALLY_INSTANCE_ID) is left to it.
    await acquireLease(client, TOPIC, 6, 'e', 10_000, { ownerProcess: 'e-first' });
    const twin = await acquireLease(client, TOPIC, 6, 'e', 10_000, { ownerProcess: 'e-second' });
    assert.equal(await acquireLeaseIfUnchanged(client, TOPIC, 6, 'e', 10_000, { owner: 'e', fencingToken: 1 }, { ownerProcess: 'e-first' }), undefined, 'the twin\'s row: not taken');
    assert.equal((await client.query('SELECT fencing_token::int AS t FROM partition_leases WHERE partition = 6')).rows[0].t, twin.fencingToken, 'the twin is not fenced');
    assert.equal((await acquireLeaseIfUnchanged(client, TOPIC, 6, 'e', 10_000, { owner: 'e', fencingToken: 1 }, { ownerProcess: 'e-second' }))?.fencingToken, twin.fencingToken + 1, 'the process that holds it: ours already');
    // A reclaim (lapsedOnly) takes a row as seen only while its lease is lapsed when the
    // UPDATE runs: the holder may have renewed since the row was read (same owner, same token).
    const live = await acquireLease(client, TOPIC, 7, 'f', 10_000);
    assert.equal(await acquireLeaseIfUnchanged(client, TOPIC, 7, 'g', 10_000, { owner: 'f', fencingToken: live.fencingToken, lapsedOnly: true }), undefined, 'a live lease is not reclaimed');
    await client.query("UPDATE partition_leases SET lease_expiry = now() - interval '1 second' WHERE partition = 7");
    assert.equal((await acquireLeaseIfUnchanged(client, TOPIC, 7, 'g', 10_000, { owner: 'f', fencingToken: live.fencingToken, lapsedOnly: true }))?.fencingToken, live.fencingToken + 1, 'a lapsed one is');
  });
});

test('the fencing token grows on every acquire and next_offset comes back', { timeout: 60_000 }, async () => {
  await withScratch('tally_lease', async (_url, client) => {
    const first = await acquireLease(client, TOPIC, 3, 'a', 10_000);
    assert.deepEqual(first, { partition: 3, fencingToken: 1, nextOffset: 0 });
    await client.query('UPDATE partition_leases SET next_offset = 42 WHERE partition = 3');
    const again = await acquireLease(client, TOPIC, 3, 'a', 10_000);
    const other = await acquireLease(client, TOPIC, 3, 'b', 10_000);
    assert.deepEqual([again.fencingToken, other.fencingToken], [2, 3]);
    assert.equal(other.nextOffset, 42);
    const row = await leaseRow(client, 3);
    assert.equal(row.owner, 'b');
    assert.ok(row.expires_in_ms > 9_000 && row.expires_in_ms <= 10_000, `expiry ${row.expires_in_ms} ms ahead`);
    assert.equal((await acquireLease(client, 'another.topic', 3, 'a', 10_000)).fencingToken, 1, 'leases are per topic');
  });
});

test('a take records the taker\'s dedup window (a take that names none leaves it) and process in the lease row', { timeout: 60_000 }, async () => {
  await withScratch('tally_lease', async (_url, client) => {
    const windowOf = async (): Promise<string | null> => (await client.query<{ dedup_window: string | null }>('SELECT dedup_window FROM partition_leases WHERE partition = 4')).rows[0]!.dedup_window;
    const processOf = async (): Promise<string | null> => (await client.query<{ owner_process: string | null }>('SELECT owner_process FROM partition_leases WHERE partition = 4')).rows[0]!.owner_process;
    await acquireLease(client, TOPIC, 4, 'a', 10_000);
    assert.equal(await windowOf(), null);
    await acquireLease(client, TOPIC, 4, 'a', 10_000, { dedupWindow: 5_000_000, ownerProcess: 'process-a' });
    assert.deepEqual([await windowOf(), await processOf()], ['5000000', 'process-a']);
    await acquireLease(client, TOPIC, 4, 'b', 10_000);
    assert.deepEqual([await windowOf(), await processOf()], ['5000000', null], 'the window stays; the process is the taker\'s (none named)');
    await acquireLeaseIfUnchanged(client, TOPIC, 4, 'c', 10_000, { owner: 'b', fencingToken: 3 }, { dedupWindow: 1024, ownerProcess: 'process-c' });
    assert.deepEqual([await windowOf(), await processOf()], ['1024', 'process-c']);
  });
});

test('renewal extends live leases and reports taken-over or released ones as lost', { timeout: 60_000 }, async () => {
  await withScratch('tally_lease', async (_url, client) => {
    const a0 = await acquireLease(client, TOPIC, 0, 'a', 1_000);
    const a1 = await acquireLease(client, TOPIC, 1, 'a', 1_000);
    assert.deepEqual(await renewLeases(client, TOPIC, [a0, a1], 'a', 60_000), []);
    assert.ok((await leaseRow(client, 0)).expires_in_ms > 59_000, 'renewal moved the expiry');
    await acquireLease(client, TOPIC, 1, 'b', 60_000);
    assert.deepEqual(await renewLeases(client, TOPIC, [a0, a1], 'a', 60_000), [1], 'a takeover is noticed');
    assert.deepEqual(await renewLeases(client, TOPIC, [{ partition: 0, fencingToken: a0.fencingToken }], 'b', 60_000), [0], 'the token alone does not renew: the owner must match');
    assert.deepEqual(await releaseLeases(client, TOPIC, [a0, a1], 'a'), [0], 'only the lease still ours is released');
    const released = await leaseRow(client, 0);
    assert.equal(released.owner, null);
    assert.ok(released.expires_in_ms <= 0, 'expiry set to now');
    assert.equal(released.fencing_token, String(a0.fencingToken), 'release leaves the token for the next owner to bump');
    assert.equal((await leaseRow(client, 1)).owner, 'b');
    assert.deepEqual(await renewLeases(client, TOPIC, [a0], 'a', 60_000), [0], 'a released lease cannot be renewed');
    assert.equal((await acquireLease(client, TOPIC, 0, 'b', 60_000)).fencingToken, a0.fencingToken + 1);
  });
});

test('the LeaseKeeper renews, reports a takeover at once and releases on stop', { timeout: 60_000 }, async () => {
  await withScratch('tally_lease', async (url, client) => {
    const lost: Array<[number[], LeaseLostReason]> = [];
    // TTL 3 s: renewals every second; the slack below absorbs a loaded machine's delays.
    const keeper = new LeaseKeeper({ pgUrl: url, topic: TOPIC, owner: 'a', ttlMs: 3000, onLost: (partitions, reason) => lost.push([partitions, reason]) });
    await keeper.acquire(0);
    await keeper.acquire(1);
    assert.deepEqual(keeper.heldPartitions(), [0, 1]);
    const before = await leaseRow(client, 0);
    await new Promise((resolve) => setTimeout(resolve, 2000));
    const after = await leaseRow(client, 0);
    assert.ok(after.expires_in_ms > 1500, `renewed in time: expiry ${after.expires_in_ms} ms ahead (was ${before.expires_in_ms} ms, 2000 ms ago)`);
    const takenAt = performance.now();
    await acquireLease(client, TOPIC, 1, 'b', 60_000);
    await until(() => lost.length > 0, 5_000, 'onLost');
    assert.ok(performance.now() - takenAt < 3000, 'noticed before the lease would have expired (a renewal every ttl/3; the rest is slack for a loaded machine)');
    assert.deepEqual(lost, [[[1], 'taken-over']]);
    assert.deepEqual(keeper.heldPartitions(), [0]);
    await keeper.stop();
    assert.equal((await leaseRow(client, 0)).owner, null, 'stop released what was still ours');
    assert.equal((await leaseRow(client, 1)).owner, 'b', 'and left the taken-over lease alone');
  });
});

test('the LeaseKeeper rides out a dropped connection but loses its leases when the database stays away past their expiry', { timeout: 60_000 }, async () => {
  await withScratch('tally_lease', async (url, client) => {
    const lost: Array<[number[], LeaseLostReason]> = [];
    let unreachable = false;
    let backendPid = 0;
    const keeper = new LeaseKeeper({
      pgUrl: url, topic: TOPIC, owner: 'a', ttlMs: 900,
      onLost: (partitions, reason) => lost.push([partitions, reason]),
      connect: async (config) => {
        if (unreachable) throw new Error('connect ECONNREFUSED (simulated)');
        const connection = new pg.Client(config);
        await connection.connect();
        backendPid = (connection as unknown as { processID: number }).processID;
        return connection;
      },
    });
    await keeper.acquire(4);
    await keeper.acquire(5);
    const firstPid = backendPid;
    await client.query('SELECT pg_terminate_backend($1)', [firstPid]);
    await until(() => backendPid !== firstPid, 3_000, 'a reconnect');
    await keeper.renew();
    assert.deepEqual(lost, [], 'a dropped connection alone loses nothing');
    assert.deepEqual(keeper.heldPartitions(), [4, 5]);
    unreachable = true;
    const cutAt = performance.now();
    await client.query('SELECT pg_terminate_backend($1)', [backendPid]);
    await until(() => lost.length > 0, 5_000, 'onLost');
    const elapsed = performance.now() - cutAt;
    assert.deepEqual(lost, [[[4, 5], 'expired-unreachable']]);
    // Not before the expiry (900 ms TTL, last renewed at most a third of it before the cut);
    // the upper bound only says "soon after", with slack for a loaded machine.
    assert.ok(elapsed >= 500 && elapsed < 4_000, `lost once the expiry passed, ${elapsed.toFixed(0)} ms after the cut`);
    assert.deepEqual(keeper.heldPartitions(), []);
    unreachable = false;
    await keeper.stop();
  });
});

test('an acquire blocked by a flush paused in the middle of its COPY for longer than the TTL ends that flush (only that one) and takes the lease', { timeout: 60_000 }, async () => {
  await withScratch('tally_lease', async (url, client) => {
    await acquireLease(client, TOPIC, 0, 'zombie', 60_000);
    await acquireLease(client, TOPIC, 1, 'zombie', 60_000);
    // A flush as the flush worker runs it: its lease rows locked, then a COPY whose data
    // never comes (its process stopped). PostgreSQL's timeouts do not end this wait.
    const pausedFlush = async (partition: number): Promise<{ session: pg.Client; errors: string[] }> => {
      const session = new pg.Client({ connectionString: url, application_name: FLUSH_APPLICATION_NAME });
      const errors: string[] = [];
      session.on('error', (error: Error & { code?: string }) => errors.push(error.code ?? error.message));
      await session.connect();
      await session.query('BEGIN');
      await session.query('SELECT * FROM partition_leases WHERE topic = $1 AND partition = $2 FOR UPDATE', [TOPIC, partition]);
      session.query(copyFrom('COPY journal FROM STDIN (FORMAT binary)')).on('error', (error: Error & { code?: string }) => errors.push(error.code ?? error.message));
      return { session, errors };
    };
    const zombie = await pausedFlush(0);
    // Another partition's flush, as old: it does not hold partition 0's row and must live on.
    const bystander = await pausedFlush(1);
    // One attempt per acquire, so each call below is one lock wait and at most one sweep.
    const keeper = new LeaseKeeper({ pgUrl: url, topic: TOPIC, owner: 'b', ttlMs: 6000, attemptsMax: 1, onLost: () => undefined });
    try {
      // Younger than the TTL: a flush that may still finish is waited for, not ended.
      await assert.rejects(keeper.acquire(0));
      assert.equal(zombie.errors.length, 0, 'not ended while younger than the TTL');
      await new Promise((resolve) => setTimeout(resolve, 6200));
      await assert.rejects(keeper.acquire(0), 'this attempt still waited in vain, and ended the zombie');
      await until(() => zombie.errors.includes('57P01'), 5_000, 'the zombie session ended by pg_terminate_backend');
      // The client hears of its end just before the backend exits and drops its locks.
      const zombiePid = (zombie.session as unknown as { processID: number }).processID;
      for (let gone = false; !gone;) {
        gone = (await client.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [zombiePid])).rowCount === 0;
        if (!gone) await new Promise((resolve) => setTimeout(resolve, 20));
      }
      const lease = await keeper.acquire(0);
      assert.equal(lease.fencingToken, 2);
      assert.equal((await leaseRow(client, 0)).owner, 'b');
      assert.equal(bystander.errors.length, 0, 'the flush holding another partition\'s row is left alone');
    } finally {
      await keeper.stop();
      await zombie.session.end().catch(() => undefined);
      await bystander.session.end().catch(() => undefined);
    }
  });
});
