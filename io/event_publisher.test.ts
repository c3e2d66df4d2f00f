// The native result-event producer against the real broker: every event arrives once, in
// publish order per partition, byte for byte (keys and values with non-ASCII text); the
// acknowledged positions are those of the commands whose events were delivered; with a
// local queue far smaller than the load, events park and still arrive, in order; an event
// the broker refuses for good holds its partition's acknowledged position below it (so the
// partition's next owner republishes it).

import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import Kafka from '@confluentinc/kafka-javascript';
import { EventPublisher } from './event_publisher';
import { EventRecordBuffer } from './kafka_event_producer';
import { createLogger } from './logger';
import { createTopic, testKafkaBrokers, uniqueName } from './test_services';

const log = createLogger('silent');

interface Sent { readonly key: string; readonly value: string; readonly commandPartition: number; readonly commandOffset: number }

function readAll(topic: string, partitions: number, expected: number): Promise<Kafka.Message[]> {
  const consumer = new Kafka.KafkaConsumer({ 'bootstrap.servers': testKafkaBrokers, 'group.id': uniqueName('events-read'), 'enable.auto.commit': false }, {});
  const messages: Kafka.Message[] = [];
  return new Promise((resolve, reject) => {
    const deadline = Date.now() + 30_000;
    const poll = (): void => {
      consumer.consume(1000, (error, batch) => {
        if (error) return reject(error);
        messages.push(...batch);
        if (messages.length >= expected || Date.now() > deadline) {
          // A moment more to see any duplicate that would follow.
          setTimeout(() => consumer.consume(1000, (_, rest) => {
            messages.push(...(rest ?? []));
            consumer.disconnect();
            resolve(messages);
          }), 300);
          return;
        }
        setImmediate(poll);
      });
    };
    consumer.connect({}, (error) => {
      if (error) return reject(error);
      consumer.assign(Array.from({ length: partitions }, (_, partition) => ({ topic, partition, offset: 0 })));
      poll();
    });
  });
}

function eventsOf(commandPartitions: number, perPartition: number): Sent[] {
  const sent: Sent[] = [];
  for (let i = 0; i < perPartition; i++) {
    for (let p = 0; p < commandPartitions; p++) {
      const offset = 1000 + i;
      const key = i % 7 === 0 ? `tx-é€-${p}-${i}` : `tx-${p}-${i}`;
      sent.push({ key, commandPartition: p, commandOffset: offset, value: `{"tx_id":${JSON.stringify(key)},"status":"accepted","partition":${p},"offset":"${offset}","note":"${'x'.repeat(i % 50)}"}` });
    }
  }
  return sent;
}

async function publishAndCheck(eventPartitions: number, commandPartitions: number, perPartition: number, producerConfig?: Record<string, string>): Promise<EventPublisher> {
  const topic = uniqueName('events-native');
  await createTopic(topic, eventPartitions);
  const publisher = await EventPublisher.connect({ brokers: testKafkaBrokers, topic, log, producerConfig });
  const sent = eventsOf(commandPartitions, perPartition);
  for (const event of sent) publisher.publish(event.commandPartition, event.commandOffset, event.key, event.value);
  await Promise.resolve(); // the microtask that hands the events to librdkafka
  if (producerConfig?.['queue.buffering.max.messages'] !== undefined) {
    assert.ok(publisher.parked > 0 && publisher.parked < sent.length, `some events parked behind the full local queue (${publisher.parked})`);
  } else {
    assert.equal(publisher.parked, 0, 'all handed over in one call');
  }
  assert.equal(await publisher.drain(30_000), true, 'every event acknowledged');
  assert.equal(publisher.published, sent.length);
  assert.equal(publisher.deliveryErrors, 0);
  const acknowledged = publisher.takeAcknowledged();
  for (let p = 0; p < commandPartitions; p++) assert.equal(acknowledged.get(p), 1000 + perPartition, `acknowledged position of command partition ${p}`);
  assert.equal(publisher.takeAcknowledged().size, 0, 'positions are taken once');

  const received = await readAll(topic, eventPartitions, sent.length);
  assert.equal(received.length, sent.length, 'each event once');
  const expectedByPartition = new Map<number, Sent[]>();
  for (const event of sent) {
    const partition = event.commandPartition % eventPartitions;
    expectedByPartition.set(partition, [...(expectedByPartition.get(partition) ?? []), event]);
  }
  for (const [partition, expected] of expectedByPartition) {
    const got = received.filter((m) => m.partition === partition).sort((a, b) => a.offset - b.offset);
    assert.deepEqual(got.map((m) => m.value!.toString()), expected.map((e) => e.value), `values of event partition ${partition} in publish order`);
    assert.deepEqual(got.map((m) => m.key!.toString()), expected.map((e) => e.key), `keys of event partition ${partition}`);
  }
  return publisher;
}

test('native event producer: every event once, in order per partition, byte for byte; acknowledged positions', async () => {
  const publisher = await publishAndCheck(4, 8, 2500);
  assert.equal(publisher.healthy, true);
  await publisher.close(5_000);
  assert.throws(() => publisher.publish(0, 1, 'late', '{}'), /after the events producer closed/);
});

test('native event producer: a local queue of 50 messages parks the rest and still delivers all, in order', async () => {
  const publisher = await publishAndCheck(2, 3, 2000, { 'queue.buffering.max.messages': '50', 'linger.ms': '1' });
  assert.equal(publisher.parked, 0);
  await publisher.close(5_000);
});

test('native event producer: an unknown topic and an unreachable broker are refused with the reason', async () => {
  await assert.rejects(EventPublisher.connect({ brokers: testKafkaBrokers, topic: uniqueName('no-such-topic'), log, producerConfig: { 'allow.auto.create.topics': 'false' } }), /does not exist/);
  await assert.rejects(EventPublisher.connect({ brokers: '127.0.0.1:1', topic: 'tally.events', log, connectTimeoutMs: 1_000 }), /cannot reach Kafka at 127\.0\.0\.1:1/);
});

test('event record buffer: keeps the untaken records in order and grows to its bound', () => {
  const records = new EventRecordBuffer(64, 4096);
  for (let i = 0; i < 20; i++) assert.equal(records.append(i % 3, i % 5, i, `k${i}`, `v${'é'.repeat(i)}`), true);
  assert.equal(records.count, 20);
  const firstThree = 3 * 24 + 3 * 2 /* k0 k1 k2 */ + 1 + 3 + 5 /* v, vé, véé */;
  records.dropFront(firstThree);
  assert.equal(records.count, 17);
  assert.equal(records.buffer.readDoubleLE(8), 3, 'the fourth record is now first');
  assert.equal(records.append(0, 0, 99, 'k', 'x'.repeat(2000)), false, 'beyond the bound: refused');
});

test('native event producer: an event the broker refuses holds its partition\'s acknowledged position below it', async () => {
  const topic = uniqueName('events-refused');
  const admin = Kafka.AdminClient.create({ 'bootstrap.servers': testKafkaBrokers });
  await new Promise<void>((resolve, reject) => admin.createTopic({ topic, num_partitions: 1, replication_factor: 1, config: { 'max.message.bytes': '2000' } }, 10_000, (error) => {
    admin.disconnect();
    if (error) reject(error);
    else resolve();
  }));
  const publisher = await EventPublisher.connect({ brokers: testKafkaBrokers, topic, log });
  const small = (offset: number): string => `{"tx_id":"t${offset}","status":"accepted","partition":0,"offset":"${offset}"}`;
  for (let offset = 0; offset < 10; offset++) publisher.publish(0, offset, `t${offset}`, small(offset));
  assert.equal(await publisher.drain(20_000), true);
  // Incompressible, so that the batch stays above the topic's limit after lz4.
  publisher.publish(0, 10, 't10', JSON.stringify({ tx_id: 't10', blob: randomBytes(6000).toString('base64') }));
  assert.equal(await publisher.drain(20_000), true);
  for (let offset = 11; offset < 20; offset++) publisher.publish(0, offset, `t${offset}`, small(offset));
  assert.equal(await publisher.drain(20_000), true);
  assert.equal(publisher.deliveryErrors, 1, 'the large event failed');
  assert.equal(publisher.takeAcknowledged().get(0), 10, 'events up to offset 9 are acknowledged, never beyond the failed one');
  assert.deepEqual(publisher.heldBackPartitions(), [0], 'reported (tally_events_held_back_partitions)');
  // A take republishes from the recorded position: the failure is forgotten, and reported as
  // having held the position back (the service then holds the position until the republish is delivered).
  assert.equal(publisher.forgetFailures(0), 10, 'the failed event\'s offset');
  assert.deepEqual(publisher.heldBackPartitions(), []);
  assert.equal(publisher.forgetFailures(0), -1, 'nothing held it back any more');
  for (let offset = 20; offset < 22; offset++) publisher.publish(0, offset, `t${offset}`, small(offset));
  assert.equal(await publisher.drain(20_000), true);
  assert.equal(publisher.takeAcknowledged().get(0), 22, 'the position moves on once forgotten');
  await publisher.close(5_000);
});

test('an event that cannot even be parked (the parked-events bound reached) is counted failed and holds its partition\'s position below it', async () => {
  const topic = uniqueName('events-full');
  await createTopic(topic, 1);
  // 4 KiB of parked events at most; the loop below hands over every event before librdkafka
  // takes any (producing starts on a later microtask), so the bound is reached.
  const publisher = await EventPublisher.connect({ brokers: testKafkaBrokers, topic, log, recordsBytesMax: 4096 });
  const event = (offset: number): string => `{"tx_id":"t${offset}","status":"accepted","partition":0,"offset":"${offset}"}`;
  for (let offset = 0; offset < 200; offset++) publisher.publish(0, offset, `t${offset}`, event(offset));
  assert.equal(await publisher.drain(20_000), true);
  const refused = publisher.deliveryErrors;
  assert.ok(refused > 0 && refused < 200, `some events did not fit (${refused})`);
  const firstRefused = 200 - refused;
  // Later events are delivered, and still the position stays below the first one not published.
  for (let offset = 200; offset < 210; offset++) publisher.publish(0, offset, `t${offset}`, event(offset));
  assert.equal(await publisher.drain(20_000), true);
  assert.equal(publisher.deliveryErrors, refused);
  assert.equal(publisher.takeAcknowledged().get(0), firstRefused, 'the recorded position never passes an event that was not published');
  await publisher.close(5_000);
});
