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
