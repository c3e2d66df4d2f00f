import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BINARY_VERSION_1 } from './binary_codec';
import { encodeCommandBinary } from './binary_encoder';
import { CommandType } from './command_layout';
import { COMMAND_MESSAGE_BYTES_MAX, WireFormat, decodeCommand, decoderFaultCount, wireFormatOf } from './command_decoder';
import { createCommandSlotViews, readCommandSlot } from './command_slot';
import { CurrencyRegistry } from './currency_registry';
import { RejectCode } from './reject_code';
import { encodeCommandJson } from './wire_command';
import { BENCH_CURRENCIES, SeededRandom, randomWireCommand } from './wire_fixtures';

const REGISTRY = CurrencyRegistry.fromConfig(BENCH_CURRENCIES.map((currency) => ({ ...currency })));
const views = createCommandSlotViews(8);

test('the first byte tells binary (0xB0..0xBF) from JSON', () => {
  assert.equal(wireFormatOf(Buffer.from('{}')), WireFormat.Json);
  assert.equal(wireFormatOf(Buffer.from(' \n{}')), WireFormat.Json);
  assert.equal(wireFormatOf(Buffer.alloc(0)), WireFormat.Json);
  assert.equal(wireFormatOf(Buffer.from([BINARY_VERSION_1])), WireFormat.Binary);
  assert.equal(wireFormatOf(Buffer.from([0xbf])), WireFormat.Binary);
  assert.equal(wireFormatOf(Buffer.from([0xc0])), WireFormat.Json);
});

test('decodeCommand decodes both formats into the slot it is given', () => {
  const command = { type: 'freeze', tx_id: 'f-1', account: '42', currency: 'SOL', amount: '2.5' } as const;
  assert.equal(decodeCommand(Buffer.from(encodeCommandJson(command)), 3, 10, 12, REGISTRY, views, 512 * 2), RejectCode.None);
  assert.equal(decodeCommand(encodeCommandBinary(command), 3, 11, 12, REGISTRY, views, 512 * 5), RejectCode.None);
  for (const [slot, offset] of [[2, 10], [5, 11]]) {
    const decoded = readCommandSlot(views, slot * 512);
    assert.deepEqual([decoded.type, decoded.txId, decoded.account, decoded.currency, decoded.amount, decoded.offset], [CommandType.Freeze, 'f-1', 42n, 4, 2_500_000_000n, offset]);
  }
  assert.equal(decodeCommand(Buffer.from([0xb2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0x41]), 0, 0, 12, REGISTRY, views, 0), RejectCode.Malformed);
});

test('programmer errors are thrown, not turned into MALFORMED', () => {
  assert.throws(() => decodeCommand(Buffer.from('{}'), 0, 0, 0, REGISTRY, views, 0));
  assert.throws(() => decodeCommand(Buffer.from('{}'), 0, 0, 70_000, REGISTRY, views, 0));
  assert.throws(() => decodeCommand(Buffer.from('{}'), 0, 0, 12, REGISTRY, views, 4));
});

test('fuzz through the dispatcher: no decoder fault on random and truncated messages', () => {
  const random = new SeededRandom(301);
  for (let round = 0; round < 50_000; round++) {
    const command = randomWireCommand(random, { accountCount: 1000, currencies: BENCH_CURRENCIES, credits: true }, round);
    const whole = round % 2 === 0 ? Buffer.from(encodeCommandJson(command)) : Buffer.from(encodeCommandBinary(command));
    const message = random.chance(0.5) ? whole.subarray(0, random.int(whole.length)) : Buffer.from(Array.from({ length: random.int(64) }, () => random.int(256)));
    decodeCommand(message, 0, round, 1 + random.int(64), REGISTRY, views, 512 * random.int(8));
  }
  assert.equal(decoderFaultCount(), 0);
});

test('a message longer than COMMAND_MESSAGE_BYTES_MAX is MALFORMED without being parsed; one just under is decoded', () => {
  const padded = (bytes: number): Buffer => {
    const head = `{"type":"deposit","tx_id":"big","account":"42","currency":"SOL","amount":"1","memo":"`;
    return Buffer.from(`${head}${'x'.repeat(bytes - head.length - 2)}"}`);
  };
  assert.equal(padded(COMMAND_MESSAGE_BYTES_MAX).length, COMMAND_MESSAGE_BYTES_MAX);
  assert.equal(decodeCommand(padded(COMMAND_MESSAGE_BYTES_MAX), 0, 7, 12, REGISTRY, views, 0), RejectCode.None);
  assert.equal(readCommandSlot(views, 0).txId, 'big');
  assert.equal(decodeCommand(padded(COMMAND_MESSAGE_BYTES_MAX + 1), 0, 8, 12, REGISTRY, views, 0), RejectCode.Malformed);
  const slot = readCommandSlot(views, 0);
  assert.deepEqual([slot.txId, slot.offset, slot.type], ['', 8, CommandType.Unparseable]);
  assert.equal(decodeCommand(Buffer.alloc(8 << 20, 0x20), 0, 9, 12, REGISTRY, views, 0), RejectCode.Malformed);
});
