// The credit relay produces a committed transfer's credit only while this instance may still
// own the source partition: a real lease keeper and PostgreSQL, a real broker, and a process
// "paused" past its lease TTL by blocking the event loop (as SIGSTOP or a frozen VM would).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { CreditRelay } from './credit_relay';
import { creditTxIdOf } from './durable_outcome';
import { createLogger } from './logger';
import { createTopic, testKafkaBrokers, testPgUrl, uniqueName } from './test_services';
import { readAllEvents } from './failure_support';
import { LeaseKeeper } from '../persist/lease';
import { createScratchDatabase } from '../persist/scratch_database';
import { CurrencyRegistry } from '../engine/currency_registry';

const TTL_MS = 1500;

test('a credit whose source partition\'s lease could have expired (a paused process) is withheld; one of a held partition is sent', { timeout: 120_000 }, async () => {
  const topic = uniqueName('tally.commands.relay');
  await createTopic(topic, 2);
  const database = await createScratchDatabase(testPgUrl, 'tally_relay');
  const keeper = new LeaseKeeper({ pgUrl: database.url, topic, owner: 'a', ttlMs: TTL_MS, onLost: () => undefined });
  const db = new pg.Pool({ connectionString: database.url, max: 2 });
  const relay = await CreditRelay.connect({
    brokers: testKafkaBrokers, topic, db, registry: CurrencyRegistry.fromConfig([{ code: 'USDT', scale: 6 }]), log: createLogger('silent'),
    ownedPartitions: () => [], mayRelay: (partition) => keeper.holds(partition), sweepIntervalMs: 3_600_000,
  });
  const credit = (partition: number, offset: number) => ({ txId: creditTxIdOf(partition, offset), account: '1002', partition: 1, currency: 'USDT', amount: '1' });
  try {
    await keeper.acquire(0);
    assert.equal(keeper.holds(0), true);
    // Paused past the lease's deadline: nothing ran meanwhile, not even a renewal, and the
    // committed outcome is fanned out first thing on waking.
    const wakeAt = performance.now() + TTL_MS + 200;
    while (performance.now() < wakeAt) { /* paused */ }
    assert.equal(keeper.holds(0), false);
    relay.relay(0, 5, credit(0, 5));
    assert.equal(relay.withheld, 1);
    await keeper.acquire(1);
    relay.relay(1, 7, credit(1, 7));
    assert.equal(relay.relayed, 1);
    const sent = await readAllEvents(testKafkaBrokers, topic, 2000);
    assert.deepEqual(sent.map((message) => message.txId), [creditTxIdOf(1, 7)], 'only the held partition\'s credit reached the topic');
  } finally {
    await relay.close();
    await keeper.stop();
    await db.end();
    await database.drop();
  }
});
