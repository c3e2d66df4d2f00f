// The command producer against the real broker: one command that cannot be delivered fails
// its own acknowledgement, not the commands after it (the transfer API sends through it).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CommandProducer } from './command_producer';
import { createTopic, testKafkaBrokers, uniqueName } from './test_services';

const COMMAND = Buffer.from(JSON.stringify({ type: 'deposit', tx_id: 'p-1', account: '1001', currency: 'USDT', amount: '1' }));

test('a command that cannot be delivered fails its own acknowledgement only, not the sends after it', { timeout: 60_000 }, async () => {
  const topic = uniqueName('tally.commands.producer');
  // The broker refuses messages above 2 000 bytes on this topic: the failure arrives in the
  // delivery report, as a broker that stayed away past the message timeout would.
  await createTopic(topic, 2, { 'max.message.bytes': '2000' });
  const producer = await CommandProducer.connect({ brokers: testKafkaBrokers, topic, lingerMs: 1 });
  try {
    await assert.rejects(producer.sendAcknowledged('1001', Buffer.alloc(50_000, 0x20)), /delivery to .* failed/);
    for (let i = 0; i < 3; i++) {
      const position = await producer.sendAcknowledged('1001', COMMAND);
      assert.ok(position.partition >= 0 && position.partition < 2 && position.offset === i, JSON.stringify(position));
    }
    await producer.flush();
  } finally {
    await producer.disconnect();
  }
});
