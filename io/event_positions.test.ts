// Recording where a partition's result events are delivered (partition_leases.events_next_offset),
// against the real broker and PostgreSQL: while a partition's republish has failed, its new
// events' deliveries must not move the position past the events still to be republished; after
// the retry republished them, the position moves once an event handed over after them is
// delivered (the producer delivers a partition's events in order).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { EventPublisher } from './event_publisher';
import { EventPositions } from './event_positions';
import { createLogger } from './logger';
import { createTopic, testKafkaBrokers, testPgUrl, uniqueName } from './test_services';
import { createScratchDatabase } from '../persist/scratch_database';

const log = createLogger('silent');
const COMMANDS_TOPIC = 'tally.commands';

test('a held partition records no position until an event handed over after its republish is delivered', { timeout: 60_000 }, async () => {
  const eventsTopic = uniqueName('tally.events.positions');
  await createTopic(eventsTopic, 2);
  const database = await createScratchDatabase(testPgUrl, 'tally_positions');
  const db = new pg.Pool({ connectionString: database.url, max: 2 });
  const publisher = await EventPublisher.connect({ brokers: testKafkaBrokers, topic: eventsTopic, log });
  try {
    // Partition 0 committed up to offset 100, its events known delivered up to 10; partition 1 likewise.
    await db.query('INSERT INTO partition_leases (topic, partition, next_offset, events_next_offset) VALUES ($1, 0, 100, 10), ($1, 1, 100, 10)', [COMMANDS_TOPIC]);
    const positions = new EventPositions(db, COMMANDS_TOPIC, publisher, log);
    const stored = async (partition: number): Promise<number> =>
      Number((await db.query<{ events_next_offset: string }>('SELECT events_next_offset FROM partition_leases WHERE topic = $1 AND partition = $2', [COMMANDS_TOPIC, partition])).rows[0]!.events_next_offset);
    const deliver = async (partition: number, offsets: number[]): Promise<void> => {
      for (const offset of offsets) publisher.publish(partition, offset, `t${offset}`, `{"tx_id":"t${offset}","status":"accepted","partition":${partition},"offset":"${offset}"}`);
      assert.ok(await publisher.drain(20_000), 'the broker acknowledged the events');
    };

    // Partition 0's republish failed; the partition is fed, and its new events are delivered.
    positions.hold(0);
    await deliver(0, [100, 101]);
    await deliver(1, [100, 101]);
    await positions.record();
    assert.deepEqual([await stored(0), await stored(1)], [10, 102], 'held: partition 0 keeps its position; partition 1 moves');

    // The retry republished offsets 10..99 when the durable offset was 101.
    positions.releaseAfter(0, 101);
    await deliver(0, [10, 11, 99]);
    await positions.record();
    assert.equal(await stored(0), 10, 'not yet: no event handed over after the republish is delivered');
    await deliver(0, [102]);
    await positions.record();
    assert.equal(await stored(0), 103, 'an event handed over after the republish is delivered: the position moves');
  } finally {
    await publisher.close(5_000);
    await db.end();
    await database.drop();
  }
});

test('a republish announces unrecorded outcomes too (tx_replies), in offset order, page by page; a recorded position deletes the replies below it', { timeout: 60_000 }, async () => {
  const eventsTopic = uniqueName('tally.events.replies');
  await createTopic(eventsTopic, 1);
  const database = await createScratchDatabase(testPgUrl, 'tally_replies');
  const db = new pg.Pool({ connectionString: database.url, max: 2 });
  const publisher = await EventPublisher.connect({ brokers: testKafkaBrokers, topic: eventsTopic, log });
  const published: string[] = [];
  const publish = publisher.publish.bind(publisher);
  publisher.publish = (partition, offset, txId, json) => {
    published.push(json);
    return publish(partition, offset, txId, json);
  };
  try {
    // Offsets 0..5 committed, none known delivered; a row at offset 6 (at next_offset) is outside the range.
    await db.query('INSERT INTO partition_leases (topic, partition, next_offset, events_next_offset) VALUES ($1, 0, 6, 0)', [COMMANDS_TOPIC]);
    await db.query(`INSERT INTO tx_outcomes (partition, tx_id, kafka_offset, accepted, reason, payload_hash) VALUES
      (0, 'a', 0, true, NULL, 1), (0, 'b', 2, false, 'INSUFFICIENT_AVAILABLE', 2), (0, 'c', 5, true, NULL, 3)`);
    // c is a transfer to an account on partition 3: its event names the credit, as the original did.
    await db.query(`INSERT INTO transfer_outbox (partition, kafka_offset, tx_id, from_account, to_account, to_partition, currency_id, amount)
      VALUES (0, 5, 'c', 1001, -2, 3, 1, 7)`);
    await db.query(`INSERT INTO tx_replies (partition, kafka_offset, tx_id, accepted, reason, original_offset) VALUES
      (0, 1, 'a', true, NULL, 0), (0, 3, 'a', false, 'DUPLICATE_TX_ID_CONFLICT', NULL), (0, 4, '', false, 'MALFORMED', NULL),
      (0, 6, 'b', false, 'INSUFFICIENT_AVAILABLE', 2)`);
    // Pages of 2 rows: every page boundary falls between the two tables' rows somewhere (and
    // the three replies below the position take two delete statements).
    const positions = new EventPositions(db, COMMANDS_TOPIC, publisher, log, 2);
    assert.equal(await positions.republish(0, 6), 6);
    assert.deepEqual(published, [
      '{"tx_id":"a","status":"accepted","partition":0,"offset":"0","replayed":true}',
      '{"tx_id":"a","status":"accepted","partition":0,"offset":"1","duplicate":true,"original_offset":"0","replayed":true}',
      '{"tx_id":"b","status":"rejected","reason":"INSUFFICIENT_AVAILABLE","partition":0,"offset":"2","replayed":true}',
      '{"tx_id":"a","status":"rejected","reason":"DUPLICATE_TX_ID_CONFLICT","partition":0,"offset":"3","replayed":true}',
      '{"tx_id":"","status":"rejected","reason":"MALFORMED","partition":0,"offset":"4","replayed":true}',
      '{"tx_id":"c","status":"accepted","partition":0,"offset":"5","credit":{"tx_id":"~x0-5","account":"18446744073709551614","partition":3,"status":"pending"},"replayed":true}',
    ]);
    assert.ok(await publisher.drain(20_000), 'the broker acknowledged the events');
    await positions.record();
    const left = await db.query<{ kafka_offset: string }>('SELECT kafka_offset FROM tx_replies ORDER BY kafka_offset');
    assert.deepEqual(left.rows.map((r) => Number(r.kafka_offset)), [6], 'the replies below the recorded position are deleted, the one at it kept');
  } finally {
    await publisher.close(5_000);
    await db.end();
    await database.drop();
  }
});
