// Proves the librdkafka client talks to the real broker: a topic is created, a keyed
// message is produced with a delivery report and read back by a consumer.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import Kafka from '@confluentinc/kafka-javascript';
import { createTopic, testKafkaBrokers, uniqueName } from './test_services';

function produceOne(topic: string, key: string, value: Buffer): Promise<void> {
  const producer = new Kafka.Producer({ 'bootstrap.servers': testKafkaBrokers, dr_cb: true, 'enable.idempotence': true });
  return new Promise<void>((resolve, reject) => {
    producer.on('ready', () => {
      producer.produce(topic, 0, value, key);
      producer.setPollInterval(10);
    });
    producer.on('delivery-report', (err) => {
      producer.disconnect();
      if (err) reject(err);
      else resolve();
    });
    producer.on('event.error', reject);
    producer.connect();
  });
}

function consumeOne(topic: string): Promise<Kafka.Message> {
  const consumer = new Kafka.KafkaConsumer({ 'bootstrap.servers': testKafkaBrokers, 'group.id': uniqueName('smoke'), 'enable.auto.commit': false }, {});
  return new Promise<Kafka.Message>((resolve, reject) => {
    const deadline = Date.now() + 20_000;
    const poll = (): void => {
      consumer.consume(100, (err, messages) => {
        if (err) return reject(err);
        if (messages.length > 0) {
          consumer.disconnect();
          return resolve(messages[0]!);
        }
        if (Date.now() > deadline) {
          consumer.disconnect();
          return reject(new Error(`no message on ${topic} within 20 s`));
        }
        setImmediate(poll);
      });
    };
    consumer.on('ready', () => {
      consumer.assign([{ topic, partition: 0, offset: 0 }]);
      consumer.setDefaultConsumeTimeout(200);
      poll();
    });
    consumer.connect();
  });
}

test('a message produced through the real broker is consumed back', { timeout: 60_000 }, async () => {
  const topic = uniqueName('tally.smoke');
  await createTopic(topic, 1);
  const value = Buffer.from(JSON.stringify({ type: 'deposit', tx_id: 'smoke-1', account: '1001', currency: 'USDT', amount: '1' }));
  await produceOne(topic, '1001', value);
  const message = await consumeOne(topic);
  assert.equal(message.key?.toString(), '1001');
  assert.deepEqual(message.value, value);
  assert.equal(message.offset, 0);
});
