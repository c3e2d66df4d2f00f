// A result event the broker refuses for good (here: an events topic whose max.message.bytes
// is too small for any event) holds its partition's recorded position below it. Once the
// cause is fixed (the topic's configuration altered) the events must go out while the
// partition stays with the same instance: they used to wait for the partition's next take,
// however long that was. Real broker, PostgreSQL, engine worker and HTTP server.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigResourceTypes, Kafka as KafkaJs, logLevel } from 'kafkajs';
import pg from 'pg';
import { loadConfig } from './config';
import { createLogger } from './logger';
import { Service } from './service';
import { CommandProducer } from './command_producer';
import { createTopic, testKafkaBrokers, testPgUrl, uniqueName } from './test_services';
import { waitFor } from './tally_process';
import { metricValue, readAllEvents, waitServiceReady } from './failure_support';
import { createScratchDatabase } from '../persist/scratch_database';
import { homePartitionOfAccountDecimal } from '../engine/partitioner';

const PARTITIONS = 2;


test('result events the broker refused are republished once it takes them again, while the partition stays here', { timeout: 180_000 }, async () => {
  const topic = uniqueName('tally.commands.heldback');
  const eventsTopic = uniqueName('tally.events.heldback');
  await createTopic(topic, PARTITIONS);
  const admin = new KafkaJs({ clientId: 'tally-test', brokers: testKafkaBrokers.split(','), logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  const database = await createScratchDatabase(testPgUrl, 'tally_heldback');
  const admin2 = new pg.Client({ connectionString: database.url });
  await admin2.connect();
  let service: Service | undefined;
  let producer: CommandProducer | undefined;
  try {
    // Smaller than any record batch: every event is refused (MSG_SIZE_TOO_LARGE), for good.
    await admin.createTopics({ waitForLeaders: true, topics: [{ topic: eventsTopic, numPartitions: 1, replicationFactor: 1, configEntries: [{ name: 'max.message.bytes', value: '64' }] }] });
    const config = loadConfig({
      TALLY_KAFKA_BROKERS: testKafkaBrokers, TALLY_PG_URL: database.url, TALLY_COMMANDS_TOPIC: topic, TALLY_EVENTS_TOPIC: eventsTopic,
      TALLY_COMMAND_PARTITIONS: String(PARTITIONS), TALLY_PARTITION_ASSIGNMENT: 'static', TALLY_HTTP_PORT: '0',
      TALLY_DEDUP_WINDOW: '4096', TALLY_BALANCE_CAPACITY: '4096', TALLY_CURRENCIES: 'USDT:6',
    }, undefined);
    service = await Service.start(config, createLogger('silent'), { heldBackRepublishMs: 1000 });
    const running = service;
    await waitServiceReady(running, PARTITIONS);
    producer = await CommandProducer.connect({ brokers: testKafkaBrokers, topic });
    const user = Array.from({ length: 100 }, (_, i) => String(6000 + i)).find((u) => homePartitionOfAccountDecimal(u, PARTITIONS) === 0)!;
    const txIds = Array.from({ length: 5 }, (_, i) => `held-${i}`);
    for (const txId of txIds) producer.send(user, Buffer.from(JSON.stringify({ type: 'deposit', tx_id: txId, account: user, currency: 'USDT', amount: '1' })));
    await producer.flush();
    await waitFor('the deposits are durable', 90_000, () => running.durableOffsetOf(0) >= txIds.length - 1);
    await waitFor('the refused events are reported', 90_000, async () => (await metricValue(running.http.port, 'tally_events_held_back_partitions')) === 1);
    // Republishing into the same refusal changes nothing: the partition stays held back (a
    // round clears the gauge for the moment its copies are on their way, so it is sampled).
    const samples: number[] = [];
    for (let i = 0; i < 10; i++) {
      samples.push(await metricValue(running.http.port, 'tally_events_held_back_partitions'));
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    assert.ok(samples.filter((v) => v === 1).length >= 5, `still held back while refused (${samples.join(',')})`);
    const recordedPosition = async (): Promise<number> => Number((await admin2.query<{ events_next_offset: string }>(
      'SELECT events_next_offset FROM partition_leases WHERE topic = $1 AND partition = 0', [topic])).rows[0]!.events_next_offset);
    assert.equal(await recordedPosition(), 0, 'no event of partition 0 is recorded delivered');

    // The operator fixes the topic; the instance is not restarted and keeps its partitions.
    await admin.alterConfigs({ validateOnly: false, resources: [{ type: ConfigResourceTypes.TOPIC, name: eventsTopic, configEntries: [{ name: 'max.message.bytes', value: '1048588' }] }] });
    await waitFor('nothing is held back any more', 90_000, async () => (await metricValue(running.http.port, 'tally_events_held_back_partitions')) === 0);
    const events = await readAllEvents(testKafkaBrokers, eventsTopic);
    for (const txId of txIds) {
      const seen = events.filter((e) => e.txId === txId);
      assert.ok(seen.length >= 1, `the event of ${txId} was published`);
      assert.ok(seen.every((e) => e.status === 'accepted' && e.partition === 0), `${txId}: its outcome as committed`);
    }
    assert.deepEqual(running.ownedPartitions(), [0, 1], 'no take was needed');
    // The position moves once an event handed over after the republish is delivered.
    producer.send(user, Buffer.from(JSON.stringify({ type: 'deposit', tx_id: 'after', account: user, currency: 'USDT', amount: '1' })));
    await producer.flush();
    await waitFor('the recorded position passes the republished events', 90_000, async () => (await recordedPosition()) === txIds.length + 1);
  } finally {
    await producer?.disconnect();
    await service?.stop();
    await admin.deleteTopics({ topics: [eventsTopic] }).catch(() => undefined);
    await admin.disconnect();
    await admin2.end();
    await database.drop();
  }
});
