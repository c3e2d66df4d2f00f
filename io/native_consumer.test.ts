// The native consumer (io/native/kafka_command_consumer.c) against the real broker, below
// io/command_consumer.ts: records carry partition, offset and value exactly; messages that do
// not fit the caller's Buffer wait, in order, for the next call; a message larger than the
// Buffer can hold becomes an oversized record (so its offset is still taken) instead of
// stalling the partition; closing while a metadata probe runs on the thread pool is safe; a
// partition stopped and restarted by the command consumer is read again (a pause of ours
// outlives librdkafka's unassignment) from its restart offset, without stale messages.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import Kafka from '@confluentinc/kafka-javascript';
import { ConsumerHandle, RECORD_HEADER_BYTES, RECORD_OFFSET_AT, RECORD_VALUE_BYTES_AT, VALUE_OVERSIZED, configPairs, nativeConsumer } from './native_consumer';
import { createTopic, testKafkaBrokers, uniqueName } from './test_services';
import { CommandConsumer } from './command_consumer';
import { createLogger } from './logger';
import { RingBuffer, createWaitStrategy } from '../ringbuffer';
import { COMMAND_SLOT_BYTES, KAFKA_OFFSET_OFFSET, PARTITION_OFFSET } from '../engine/command_layout';
import { CurrencyRegistry } from '../engine/currency_registry';
import { BENCH_CURRENCIES } from '../engine/wire_fixtures';

const native = nativeConsumer();

interface Got { readonly partition: number; readonly offset: number; readonly value: string | 'oversized' }

async function produce(topic: string, values: Array<{ partition: number; value: Buffer }>): Promise<void> {
  const producer = new Kafka.Producer({ 'bootstrap.servers': testKafkaBrokers, dr_cb: true });
  await new Promise<void>((resolve, reject) => producer.connect({ timeout: 15_000 }, (error) => (error ? reject(error) : resolve())));
  let pending = values.length;
  await new Promise<void>((resolve, reject) => {
    producer.on('delivery-report', (error) => {
      if (error) reject(error);
      else if (--pending === 0) resolve();
    });
    producer.setPollInterval(5);
    for (const v of values) producer.produce(topic, v.partition, v.value, 'k');
  });
  await new Promise<void>((resolve) => producer.disconnect(() => resolve()));
}

function open(topic: string): ConsumerHandle {
  return native.create(configPairs({ 'bootstrap.servers': testKafkaBrokers, 'group.id': uniqueName('native'), 'enable.auto.commit': false, 'fetch.wait.max.ms': 10 }), topic, false);
}

/** Consumes until `expected` records arrived, with a Buffer of `bufferBytes` and batches of `messagesMax`. */
async function consumeAll(handle: ConsumerHandle, expected: number, bufferBytes: number, messagesMax: number): Promise<{ got: Got[]; calls: number }> {
  const buffer = Buffer.alloc(bufferBytes);
  const got: Got[] = [];
  let calls = 0;
  const deadline = Date.now() + 30_000;
  while (got.length < expected && Date.now() < deadline) {
    const bytes = native.consume(handle, buffer, messagesMax);
    calls++;
    if (bytes === 0) {
      await new Promise((resolve) => setTimeout(resolve, 2));
      continue;
    }
    for (let at = 0; at < bytes;) {
      const valueBytes = buffer.readUInt32LE(at + RECORD_VALUE_BYTES_AT);
      const oversized = valueBytes === VALUE_OVERSIZED;
      const end = at + RECORD_HEADER_BYTES + (oversized ? 0 : valueBytes);
      got.push({ partition: buffer.readUInt32LE(at), offset: buffer.readDoubleLE(at + RECORD_OFFSET_AT), value: oversized ? 'oversized' : buffer.toString('utf8', at + RECORD_HEADER_BYTES, end) });
      at = end;
    }
  }
  return { got, calls };
}

test('native consumer: exact records, in order per partition, across calls whose Buffer holds only a few', async () => {
  const topic = uniqueName('native-consumer');
  await createTopic(topic, 3);
  const values = Array.from({ length: 600 }, (_, i) => ({ partition: i % 3, value: Buffer.from(`command-${i}-${'é'.repeat(i % 9)}`) }));
  await produce(topic, values);
  const handle = open(topic);
  await native.probe(handle, 10_000);
  native.incrementalAssign(handle, [0, 1, 2], [0, 0, 0]);
  // 128 bytes hold at most three of these records: most calls stop at a message that does not fit.
  const { got, calls } = await consumeAll(handle, values.length, 128, 1000);
  assert.equal(got.length, values.length);
  assert.ok(calls >= values.length / 3, `the small Buffer took several calls (${calls})`);
  for (let partition = 0; partition < 3; partition++) {
    const mine = got.filter((g) => g.partition === partition);
    assert.deepEqual(mine.map((g) => g.offset), mine.map((_, i) => i), `offsets of partition ${partition} in order, none lost or repeated`);
    assert.deepEqual(mine.map((g) => g.value), values.filter((v) => v.partition === partition).map((v) => v.value.toString()));
  }
  native.close(handle);
});

test('native consumer: a message larger than the Buffer becomes an oversized record and the partition goes on', async () => {
  const topic = uniqueName('native-oversized');
  await createTopic(topic, 1);
  await produce(topic, [{ partition: 0, value: Buffer.from('before') }, { partition: 0, value: Buffer.alloc(5000, 0x61) }, { partition: 0, value: Buffer.from('after') }]);
  const handle = open(topic);
  await native.probe(handle, 10_000);
  native.incrementalAssign(handle, [0], [0]);
  const { got } = await consumeAll(handle, 3, 1024, 100);
  assert.deepEqual(got, [
    { partition: 0, offset: 0, value: 'before' },
    { partition: 0, offset: 1, value: 'oversized' },
    { partition: 0, offset: 2, value: 'after' },
  ]);
  assert.ok(native.takeErrors(handle).some((e) => /offset 1 has 5000 bytes/.test(e)), 'the oversized message is reported');
  native.close(handle);
});

test('native consumer: closing while a probe of an unreachable broker runs, then the probe fails cleanly', async () => {
  const handle = native.create(configPairs({ 'bootstrap.servers': '127.0.0.1:1', 'group.id': uniqueName('native-down') }), 'tally.commands', false);
  const probe = native.probe(handle, 1_500);
  native.close(handle);
  await assert.rejects(probe);
  assert.throws(() => native.consume(handle, Buffer.alloc(64), 1), /not an open Kafka client/);
});

test('command consumer: a partition stopped (paused, unassigned) and restarted is read again from the restart offset, each once, nothing stale', async () => {
  const topic = uniqueName('native-restart');
  await createTopic(topic, 1);
  await produce(topic, Array.from({ length: 200 }, (_, i) => ({ partition: 0, value: Buffer.from(`not a command ${i}`) })));
  // A ring of 64 slots: while nothing drains it, the consumer holds the rest of its batch in
  // hand and librdkafka's queue holds more; those are fetched for the old position.
  const ring = RingBuffer.create({ slotCount: 64, slotBytes: COMMAND_SLOT_BYTES });
  const barrier = ring.acquireBarrier(createWaitStrategy('yielding', 1));
  const words = new Float64Array(ring.data);
  const partitions = new Int32Array(ring.data);
  const consumer = new CommandConsumer({
    brokers: testKafkaBrokers, topic, groupId: uniqueName('native-restart'), partitionCount: 1, registry: CurrencyRegistry.fromConfig(BENCH_CURRENCIES), commandRing: ring, log: createLogger('silent'),
  });
  /** Reads until `count` offsets, or until nothing new came for `quietMs`. */
  const read = async (count: number, quietMs: number): Promise<number[]> => {
    const offsets: number[] = [];
    let lastNew = Date.now();
    while (offsets.length < count && Date.now() - lastNew < quietMs) {
      const next = barrier.nextSequence;
      const available = barrier.tryWaitFor(next);
      for (let sequence = next; sequence <= available; sequence++) {
        const slot = ring.slotOffset(sequence);
        assert.equal(partitions[(slot + PARTITION_OFFSET) >> 2], 0);
        offsets.push(words[(slot + KAFKA_OFFSET_OFFSET) >> 3]!);
        lastNew = Date.now();
      }
      if (available >= next) barrier.release(available);
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    return offsets;
  };
  await consumer.connect();
  try {
    consumer.assign([{ partition: 0, offset: 0 }]);
    const deadline = Date.now() + 30_000;
    while (ring.publishedSequence() < 63 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
    await new Promise((resolve) => setTimeout(resolve, 200)); // the consumer's next batch arrives and waits for room
    // Stopped and restarted while the ring is still full: the records of the old fetch are
    // still in hand (and in librdkafka's queue) when the restart comes.
    consumer.stopPartitions([0]);
    await produce(topic, Array.from({ length: 50 }, (_, i) => ({ partition: 0, value: Buffer.from(`later ${i}`) })));
    assert.deepEqual(consumer.restartPartitions([{ partition: 0, offset: 150 }]), { refused: [], unsought: [] });
    assert.deepEqual(await read(1_000, 2_000), [...Array.from({ length: 64 }, (_, i) => i), ...Array.from({ length: 100 }, (_, i) => 150 + i)],
      'what was in the ring before the stop, then from the restart offset each once, in order, and nothing after');
    // A stop after the consumer closed (a lease lost while the service stops) has nothing to
    // pause any more; it must not throw, or the service's stop of the partition ends half done.
    await consumer.disconnect();
    assert.doesNotThrow(() => consumer.stopPartitions([0]));
  } finally {
    await consumer.disconnect();
  }
});
