// A take whose republish of possibly undelivered result events fails (PostgreSQL refusing the
// query for a while) still applies the partition, and its new events are delivered; the
// recorded events position must not move past the events still to republish until the retry
// has republished them. Real service, broker and PostgreSQL; the failure is made by renaming
// the column the republish reads (only the event positions use it).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import pg from 'pg';
import pino from 'pino';
import { loadConfig } from './config';
import { createLogger } from './logger';
import { Service } from './service';
import { CommandProducer } from './command_producer';
import { readAllEvents } from './failure_support';
import { waitFor } from './tally_process';
import { createTopic, testKafkaBrokers, testPgUrl, uniqueName } from './test_services';
import { createScratchDatabase } from '../persist/scratch_database';

const LOST = 3;
// Retries come 1, 2, 4, 8 s after the failures before them (io/service.ts catchUp): after the
// fourth the next is 8 s away, room for what the test does in between on a slow machine.
const FAILURES_BEFORE_REPAIR = 4;

test('while a failed republish is retried, the events position stays below the events still to republish', { timeout: 180_000 }, async () => {
  const topic = uniqueName('tally.commands.republish');
  const eventsTopic = uniqueName('tally.events.republish');
  await createTopic(topic, 1);
  await createTopic(eventsTopic, 1);
  const database = await createScratchDatabase(testPgUrl, 'tally_republish');
  const config = loadConfig({
    TALLY_KAFKA_BROKERS: testKafkaBrokers, TALLY_PG_URL: database.url, TALLY_COMMANDS_TOPIC: topic, TALLY_EVENTS_TOPIC: eventsTopic,
    TALLY_COMMAND_PARTITIONS: '1', TALLY_PARTITION_ASSIGNMENT: 'static', TALLY_INSTANCE_ID: uniqueName('republish'), TALLY_HTTP_PORT: '0',
    TALLY_DEDUP_WINDOW: '4096', TALLY_BALANCE_CAPACITY: '4096', TALLY_CURRENCIES: 'USDT:6',
  }, undefined);
  const admin = new pg.Client({ connectionString: database.url });
  await admin.connect();
  const producer = await CommandProducer.connect({ brokers: testKafkaBrokers, topic });
  const deposit = (txId: string): void => producer.send('1001', Buffer.from(JSON.stringify({ type: 'deposit', tx_id: txId, account: '1001', currency: 'USDT', amount: '1' })));
  const nextOffset = async (): Promise<number> =>
    Number((await admin.query<{ next_offset: string }>('SELECT next_offset FROM partition_leases WHERE topic = $1 AND partition = 0', [topic])).rows[0]!.next_offset);
  const lease = async (): Promise<{ next: number; events: number }> => {
    const row = (await admin.query<{ next_offset: string; events_next_offset: string }>('SELECT next_offset, events_next_offset FROM partition_leases WHERE topic = $1 AND partition = 0', [topic])).rows[0]!;
    return { next: Number(row.next_offset), events: Number(row.events_next_offset) };
  };
  let service: Service | undefined;
  try {
    service = await Service.start(config, createLogger('silent'));
    for (let i = 0; i < 10; i++) deposit(`before-${i}`);
    await producer.flush();
    await waitFor('the first deposits to be durable', 60_000, async () => (await nextOffset()) >= 10);
    await service.stop();
    service = undefined;
    // As if the last LOST events had not reached the broker before a crash.
    await admin.query('UPDATE partition_leases SET events_next_offset = next_offset - $2 WHERE topic = $1 AND partition = 0', [topic, LOST]);
    await admin.query('ALTER TABLE partition_leases RENAME COLUMN events_next_offset TO events_next_offset_away');

    // The take's republish fails; count its failures from the log.
    let failures = 0;
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        failures += chunk.toString().split('\n').filter((line) => line.includes('unacknowledged events or credits failed')).length;
        done();
      },
    });
    service = await Service.start(config, pino({ level: 'error' }, sink));
    await waitFor(`${FAILURES_BEFORE_REPAIR} failed republishes`, 60_000, () => failures >= FAILURES_BEFORE_REPAIR);
    // The next retry is about 8 s away. Meanwhile the partition is applied and new events are
    // delivered; then the database answers again, and positions are recorded every second.
    for (let i = 0; i < 5; i++) deposit(`after-${i}`);
    await producer.flush();
    await waitFor('the later deposits to be durable', 60_000, async () => (await nextOffset()) >= 15);
    await admin.query('ALTER TABLE partition_leases RENAME COLUMN events_next_offset_away TO events_next_offset');
    await new Promise((resolve) => setTimeout(resolve, 2500));
    assert.equal(failures, FAILURES_BEFORE_REPAIR, 'the test ran before the next retry');
    assert.equal((await lease()).events, 10 - LOST, 'the position stays below the events still to republish');

    // The retry republishes them; the position moves once an event published after that is
    // delivered: a deposit a second until then.
    const deadline = Date.now() + 60_000;
    for (let round = 0; (await lease()).events <= 15; round++) {
      assert.ok(Date.now() < deadline, 'the position moves once the retry republished and a later event was delivered');
      if (round % 5 === 0) deposit(`later-${round}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    const events = await readAllEvents(testKafkaBrokers, eventsTopic);
    const replayed = events.filter((e) => e.replayed).map((e) => e.txId);
    assert.deepEqual(replayed, Array.from({ length: LOST }, (_, i) => `before-${10 - LOST + i}`), 'the lost events are republished');
  } finally {
    await producer.disconnect();
    await service?.stop();
    await admin.end();
    await database.drop();
  }
});
