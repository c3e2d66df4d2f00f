// The credit relay produces a committed transfer's credit only while this instance may still
// own the source partition: a real lease keeper and PostgreSQL, a real broker, and a process
// "paused" past its lease TTL by blocking the event loop (as SIGSTOP or a frozen VM would).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { CreditRelay } from './credit_relay';
import { CommandProducer } from './command_producer';
import { waitFor } from './tally_process';
import { creditTxIdOf } from './durable_outcome';
import { createLogger } from './logger';
import { createTopic, testKafkaBrokers, testPgUrl, uniqueName } from './test_services';
import { readAllEvents } from './failure_support';
import { LeaseKeeper } from '../persist/lease';
import { createScratchDatabase } from '../persist/scratch_database';
import { CurrencyRegistry } from '../engine/currency_registry';

const TTL_MS = 1500;

interface RelayHarness {
  readonly topic: string;
  readonly databaseUrl: string;
  readonly db: pg.Pool;
  readonly relay: CreditRelay;
  /** An unsent outbox row of source partition 0 owing a credit to account 1002 on partition 1. */
  insertOutboxRow(offset: number): Promise<unknown>;
  close(): Promise<void>;
}

/** A relay on a fresh 2-partition commands topic and scratch database, sweeping only when asked. */
async function startRelay(name: string, options: { ownedPartitions: number[]; mayRelay?: (partition: number) => boolean; dedupWindow?: number; rowsPerStatement?: number }): Promise<RelayHarness> {
  const topic = uniqueName(`tally.commands.${name}`);
  await createTopic(topic, 2);
  const database = await createScratchDatabase(testPgUrl, `tally_${name}`);
  const db = new pg.Pool({ connectionString: database.url, max: 3 });
  const relay = await CreditRelay.connect({
    brokers: testKafkaBrokers, topic, db, registry: CurrencyRegistry.fromConfig([{ code: 'USDT', scale: 6 }]), log: createLogger('silent'),
    ownedPartitions: () => options.ownedPartitions, mayRelay: options.mayRelay, sweepIntervalMs: 3_600_000, dedupWindow: options.dedupWindow ?? 1024,
    rowsPerStatement: options.rowsPerStatement,
  });
  return {
    topic, databaseUrl: database.url, db, relay,
    insertOutboxRow: (offset) => db.query(
      `INSERT INTO transfer_outbox (partition, kafka_offset, tx_id, from_account, to_account, to_partition, currency_id, amount)
       VALUES (0, $1, $2, 1001, 1002, 1, 1, 1000000)`, [offset, `t-${offset}`]),
    close: async () => {
      await relay.close();
      await db.end();
      await database.drop();
    },
  };
}

test('a credit whose source partition\'s lease could have expired (a paused process) is withheld; one of a held partition is sent', { timeout: 120_000 }, async () => {
  let keeper: LeaseKeeper | undefined;
  const { topic, databaseUrl, db, relay, close } = await startRelay('relay', { ownedPartitions: [], mayRelay: (partition) => keeper?.holds(partition) === true });
  keeper = new LeaseKeeper({ pgUrl: databaseUrl, topic, owner: 'a', ttlMs: TTL_MS, onLost: () => undefined });
  const credit = (partition: number, offset: number) => ({ txId: creditTxIdOf(partition, offset), account: '1002', partition: 1, currency: 'USDT', amount: '1' });
  try {
    await keeper.acquire(0);
    assert.equal(keeper.holds(0), true);
    // A first credit to partition 1 goes through the checked path, which measures that
    // partition's backlog (small): later credits to it go out at once, as below.
    await db.query(`INSERT INTO transfer_outbox (partition, kafka_offset, tx_id, from_account, to_account, to_partition, currency_id, amount)
                    VALUES (0, 3, 't-3', 1001, 1002, 1, 1, 1000000)`);
    assert.equal(relay.relay(0, 3, credit(0, 3)), false, 'no backlog of partition 1 measured yet');
    await relay.relayUnsent([]);
    assert.deepEqual([relay.diverted, relay.relayed], [1, 1]);
    // Paused past the lease's deadline: nothing ran meanwhile, not even a renewal, and the
    // committed outcome is fanned out first thing on waking.
    const wakeAt = performance.now() + TTL_MS + 200;
    while (performance.now() < wakeAt) { /* paused */ }
    assert.equal(keeper.holds(0), false);
    relay.relay(0, 5, credit(0, 5));
    assert.equal(relay.withheld, 1);
    await keeper.acquire(1);
    relay.relay(1, 7, credit(1, 7));
    assert.equal(relay.relayed, 2);
    const sent = await readAllEvents(testKafkaBrokers, topic, 2000);
    assert.deepEqual(sent.map((message) => message.txId).sort(), [creditTxIdOf(0, 3), creditTxIdOf(1, 7)], 'only credits of held partitions reached the topic');
  } finally {
    await keeper.stop();
    await close();
  }
});

// A crash (or a database outage) between the broker's acknowledgement of a credit and its
// mark leaves the outbox row unsent while a copy sits in the credited partition's log, not
// yet applied. Relaying it again is safe only while the two copies will be close enough for
// the credited partition's dedup window to see the second as a duplicate: here the credited
// partition (1) has 400 commands in its log past its durable offset, more than a quarter of a
// 1024-tx_id window, so the relay holds the credit back until that partition's durable offset
// has passed every copy that may exist, and only then (no outcome) relays it.
test('a credit (unsent, or passed without an outcome) whose partition is far behind its log is held back until that partition has read every earlier copy', { timeout: 120_000 }, async () => {
  const { topic, db, relay, insertOutboxRow, close } = await startRelay('holdback', { ownedPartitions: [0] });
  const producer = await CommandProducer.connect({ brokers: testKafkaBrokers, topic });
  const creditTxId = creditTxIdOf(0, 5);
  const copiesOf = async (txId: string): Promise<number> => (await readAllEvents(testKafkaBrokers, topic, 1500)).filter((m) => m.txId === txId).length;
  const outboxRow = async (offset: number) => (await db.query<{ sent: boolean; sent_offset: string | null }>(
    'SELECT sent, sent_offset FROM transfer_outbox WHERE partition = 0 AND kafka_offset = $1', [offset])).rows[0]!;
  try {
    await db.query("INSERT INTO partition_leases (topic, partition, owner, fencing_token, next_offset) VALUES ($1, 1, 'owner-of-1', 1, 0)", [topic]);
    await insertOutboxRow(5);
    // The crashed relay's acknowledged copy, then the log keeps growing while partition 1's
    // owner is stopped (its durable next offset stays 0).
    const credit = { type: 'credit', tx_id: creditTxId, account: '1002', currency: 'USDT', amount: '1' };
    producer.send('1002', Buffer.from(JSON.stringify(credit)), 1);
    for (let i = 0; i < 399; i++) producer.send('1002', Buffer.from(JSON.stringify({ type: 'deposit', tx_id: `f-${i}`, account: '1002', currency: 'USDT', amount: '1' })), 1);
    await producer.flush();

    assert.equal(await relay.relayUnsent([0]), 0, 'nothing relayed while the credited partition is 400 commands behind its log');
    assert.equal(relay.heldBack, 1);
    assert.deepEqual(await outboxRow(5), { sent: false, sent_offset: '399' }, 'held back below the watermark, still unsent');
    assert.equal(await relay.relayUnsent([0]), 0, 'a held-back credit stays back while its partition has not passed the watermark');

    // Partition 1 catches up to 399 only: the copy at 0 is read, the mark at 399 is not passed.
    await db.query('UPDATE partition_leases SET next_offset = 399 WHERE topic = $1 AND partition = 1', [topic]);
    assert.equal(await relay.relayUnsent([0]), 0);
    // Past the watermark with an outcome: the earlier copy was applied; marked, never relayed.
    await db.query('UPDATE partition_leases SET next_offset = 400 WHERE topic = $1 AND partition = 1', [topic]);
    await db.query("INSERT INTO tx_outcomes (partition, tx_id, kafka_offset, accepted, payload_hash) VALUES (1, $1, 0, true, 0)", [creditTxId]);
    assert.equal(await relay.relayUnsent([0]), 0);
    assert.deepEqual(await outboxRow(5), { sent: true, sent_offset: '399' });
    assert.equal(await copiesOf(creditTxId), 1, 'the credit was never produced a second time');

    // Past the watermark with no outcome: every earlier copy, if any, was read and not
    // applied; relayed. A new unsent row, with partition 1 now level with its log, goes at once.
    await insertOutboxRow(6);
    await insertOutboxRow(7);
    await db.query('UPDATE transfer_outbox SET sent_offset = 399 WHERE partition = 0 AND kafka_offset = 6');
    assert.equal(await relay.relayUnsent([0]), 2);
    await waitFor('both credits marked', 30_000, async () => (await outboxRow(6)).sent && (await outboxRow(7)).sent);
    assert.ok(Number((await outboxRow(6)).sent_offset) >= 400, 'the mark keeps the new copy\'s offset');
    assert.equal(await copiesOf(creditTxIdOf(0, 6)), 1);
    assert.equal(await copiesOf(creditTxIdOf(0, 7)), 1);

    // A credit its partition passed without an outcome is sent again only under the same
    // rule: its resend may follow a copy not read yet (a resend acknowledged, its mark lost).
    // Partition 1 falls 400 commands behind again (credits 6 and 7 applied meanwhile): the
    // passed credit is held back, still sent.
    await db.query("INSERT INTO tx_outcomes (partition, tx_id, kafka_offset, accepted, payload_hash) VALUES (1, $1, 400, true, 0), (1, $2, 401, true, 0)", [creditTxIdOf(0, 6), creditTxIdOf(0, 7)]);
    await db.query(`INSERT INTO transfer_outbox (partition, kafka_offset, tx_id, from_account, to_account, to_partition, currency_id, amount, sent, sent_offset)
                    VALUES (0, 8, 't-8', 1001, 1002, 1, 1, 1000000, true, 10)`);
    for (let i = 0; i < 400; i++) producer.send('1002', Buffer.from(JSON.stringify({ type: 'deposit', tx_id: `g-${i}`, account: '1002', currency: 'USDT', amount: '1' })), 1);
    await producer.flush();
    assert.equal(await relay.relayUnsent([0]), 0);
    assert.equal(relay.heldBack, 2);
    const high = Number((await outboxRow(8)).sent_offset) + 1;
    assert.ok(high >= 802, `held back below the watermark (${high})`);
    assert.equal((await outboxRow(8)).sent, true);
    await db.query('UPDATE partition_leases SET next_offset = $2 WHERE topic = $1 AND partition = 1', [topic, high]);
    assert.equal(await relay.relayUnsent([0]), 1, 'sent again once its partition has read every copy');
    assert.equal(relay.resentUnapplied, 1);
    assert.equal(await copiesOf(creditTxIdOf(0, 8)), 1);
  } finally {
    await producer.disconnect();
    await close();
  }
});

// After the database was restored from a backup (or failed over to a replica that lost its
// last commits), a partition commits again transfers whose credits were delivered before the
// restore; those copies sit in the credited partition's log beyond its restored durable
// offset. The first relay right after the commit must then pass the same backlog check as a
// resend, or the new copy could land beyond the dedup window of the old one and be applied
// twice: with the credited partition 400 commands behind its log (a quarter of the window is
// 256), the committed credit is held back, not produced.
test('a credit relayed right after its commit to a partition far behind its log (a restored database) is held back, not produced', { timeout: 120_000 }, async () => {
  const { topic, db, relay, insertOutboxRow, close } = await startRelay('restored', { ownedPartitions: [0] });
  const producer = await CommandProducer.connect({ brokers: testKafkaBrokers, topic });
  const creditTxId = creditTxIdOf(0, 5);
  try {
    await db.query("INSERT INTO partition_leases (topic, partition, owner, fencing_token, next_offset) VALUES ($1, 1, 'owner-of-1', 1, 0)", [topic]);
    // The copy delivered before the restore, and what partition 1 received after it.
    producer.send('1002', Buffer.from(JSON.stringify({ type: 'credit', tx_id: creditTxId, account: '1002', currency: 'USDT', amount: '1' })), 1);
    for (let i = 0; i < 399; i++) producer.send('1002', Buffer.from(JSON.stringify({ type: 'deposit', tx_id: `r-${i}`, account: '1002', currency: 'USDT', amount: '1' })), 1);
    await producer.flush();
    // The transfer commits again after the restore: its outbox row, then its fan-out.
    await insertOutboxRow(5);
    assert.equal(relay.relay(0, 5, { txId: creditTxId, account: '1002', partition: 1, currency: 'USDT', amount: '1' }), false);
    await relay.relayUnsent([]);
    assert.deepEqual([relay.relayed, relay.heldBack], [0, 1]);
    const row = (await db.query<{ sent: boolean; sent_offset: string | null }>('SELECT sent, sent_offset FROM transfer_outbox WHERE partition = 0 AND kafka_offset = 5')).rows[0]!;
    assert.deepEqual(row, { sent: false, sent_offset: '399' }, 'held back until partition 1 has read every earlier copy');
    assert.equal((await readAllEvents(testKafkaBrokers, topic, 1500)).filter((m) => m.txId === creditTxId).length, 1, 'only the copy from before the restore');
  } finally {
    await producer.disconnect();
    await close();
  }
});

// A credit the broker acknowledged is not relayed again while its mark waits (here on a row
// lock, as behind a database outage): the outbox still calls it unsent.
test('an acknowledged credit whose mark has not committed yet is not relayed again by a sweep', { timeout: 120_000 }, async () => {
  const { topic, databaseUrl, db, relay, insertOutboxRow, close } = await startRelay('unmarked', { ownedPartitions: [0] });
  const locker = new pg.Client({ connectionString: databaseUrl });
  await locker.connect();
  try {
    await insertOutboxRow(9);
    await locker.query('BEGIN');
    await locker.query('SELECT 1 FROM transfer_outbox WHERE partition = 0 AND kafka_offset = 9 FOR UPDATE');
    assert.equal(await relay.relayUnsent([0]), 1);
    await waitFor('the credit acknowledged, its mark waiting', 30_000, async () => relay.pending === 1 && relay.marked === 0
      && (await db.query("SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'UPDATE transfer_outbox%'")).rowCount === 1);
    await relay.relayUnsent([0]);
    assert.equal(relay.relayed, 1, 'not produced a second time');
    await locker.query('ROLLBACK');
    await waitFor('the mark', 30_000, async () => relay.marked === 1);
    assert.equal(relay.pending, 0);
    assert.equal((await readAllEvents(testKafkaBrokers, topic, 1500)).filter((m) => m.txId === creditTxIdOf(0, 9)).length, 1);
  } finally {
    await locker.end();
    await close();
  }
});

// Instances may run different dedup windows for a while (a rolling change of the setting).
// The credited partition's owner recorded its window, 1024, when it took the partition; this
// relay's own is 64 times larger. 400 commands behind its log is within a quarter of the
// relay's window but not of the owner's: the copy already in the log could have left the
// owner's window by the time a second one arrives, so the credit is held back.
test('a credit is held back by the credited partition\'s own dedup window (from its lease row) when that is smaller than the relay\'s', { timeout: 120_000 }, async () => {
  const { topic, db, relay, insertOutboxRow, close } = await startRelay('holdwindow', { ownedPartitions: [0], dedupWindow: 65_536 });
  const producer = await CommandProducer.connect({ brokers: testKafkaBrokers, topic });
  try {
    await db.query("INSERT INTO partition_leases (topic, partition, owner, fencing_token, next_offset, dedup_window) VALUES ($1, 1, 'owner-of-1', 1, 0, 1024)", [topic]);
    await insertOutboxRow(5);
    for (let i = 0; i < 400; i++) producer.send('1002', Buffer.from(JSON.stringify({ type: 'deposit', tx_id: `f-${i}`, account: '1002', currency: 'USDT', amount: '1' })), 1);
    await producer.flush();
    assert.equal(await relay.relayUnsent([0]), 0, 'held back: 400 > 1024 / 4');
    assert.equal(relay.heldBack, 1);
    // With no window recorded (an owner of an earlier version), the relay's own applies.
    await db.query('UPDATE partition_leases SET dedup_window = NULL WHERE topic = $1 AND partition = 1', [topic]);
    await insertOutboxRow(6);
    assert.equal(await relay.relayUnsent([0]), 1, 'relayed: 400 <= 65 536 / 4');
    assert.equal(relay.heldBack, 1);
  } finally {
    await producer.disconnect();
    await close();
  }
});

// Credits that stay open sweep after sweep (here: owed to a partition whose watermark cannot
// be read, one the topic does not have) must not keep the rows after them from ever being
// looked at: a sweep whose statement was full goes on after its last row next time.
test('a sweep goes on after the rows a full statement read, so credits stuck at the head do not hide the ones after them', { timeout: 120_000 }, async () => {
  const { db, relay, close } = await startRelay('sweephead', { ownedPartitions: [0], rowsPerStatement: 2 });
  try {
    await db.query(`INSERT INTO transfer_outbox (partition, kafka_offset, tx_id, from_account, to_account, to_partition, currency_id, amount)
      VALUES (0, 1, 't-1', 1001, 1002, 7, 1, 1000000), (0, 2, 't-2', 1001, 1002, 7, 1, 1000000), (0, 3, 't-3', 1001, 1002, 1, 1, 1000000)`);
    await relay.sweep();
    assert.equal(relay.relayed, 0, 'the first statement holds only the two stuck credits');
    await relay.sweep();
    assert.equal(relay.relayed, 1, 'the next sweep reaches the credit after them');
    await relay.sweep();
    await relay.sweep();
    assert.equal(relay.relayed, 1, 'and comes round to the stuck ones again, relaying nothing twice');
  } finally {
    await close();
  }
});
