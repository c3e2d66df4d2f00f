import assert from 'node:assert/strict';
import { test } from 'node:test';
import { encodeCommandBinary } from './binary_encoder';
import { createCommandSlotViews, readCommandSlot } from './command_slot';
import { CurrencyRegistry } from './currency_registry';
import { decodeCommand } from './command_decoder';
import { hash64BigInt } from './hash64';
import { RejectCode } from './reject_code';
import { WireCommand } from './wire_command';

const REGISTRY = CurrencyRegistry.fromConfig([{ code: 'USDT', scale: 6 }, { code: 'BTC' }]);
const views = createCommandSlotViews(1);

function payloadHashOf(message: string | Uint8Array): bigint {
  decodeCommand(typeof message === 'string' ? Buffer.from(message) : message, 0, 0, 16, REGISTRY, views, 0);
  return readCommandSlot(views, 0).payloadHash;
}

function json(command: Record<string, unknown>): string {
  return JSON.stringify(command);
}

const DEPOSIT = { type: 'deposit', tx_id: 'a', account: '1001', currency: 'USDT', amount: '100.5' };

test('the canonical record of a deposit is exactly as documented', () => {
  const record = Buffer.alloc(44);
  record.writeUInt32LE(1 | (1 << 8), 0); // version 1, type deposit, no legs
  record.writeBigUInt64LE(1001n, 4); // account
  record.writeUInt32LE(4, 12); // currency length
  record.write('USDT', 16, 'latin1'); // code, zero padded to 16 bytes
  record.writeUInt32LE(0 | (1 << 8), 32); // amount kind 0, canonical scale 1
  record.writeBigInt64LE(1005n, 36); // canonical mantissa: 100.5 = 1005 / 10^1
  assert.equal(payloadHashOf(json(DEPOSIT)), hash64BigInt(record));
});

test('the same meaning hashes the same: spelling of amounts, tx_id, key order, JSON vs binary', () => {
  const expected = payloadHashOf(json(DEPOSIT));
  for (const amount of ['100.50', '0100.5', '100.500000']) assert.equal(payloadHashOf(json({ ...DEPOSIT, amount })), expected, amount);
  assert.equal(payloadHashOf(json({ ...DEPOSIT, tx_id: 'another' })), expected);
  assert.equal(payloadHashOf('{ "amount" : "100.5", "currency":"US\\u0044T", "account":"1001","tx_id":"a","type":"deposit", "note": [1] }'), expected);
  assert.equal(payloadHashOf(encodeCommandBinary(DEPOSIT as WireCommand)), expected);
  assert.equal(payloadHashOf(encodeCommandBinary({ ...DEPOSIT, amount: '100.50' } as WireCommand)), expected);
});

test('any difference in meaning changes the hash', () => {
  const base = payloadHashOf(json(DEPOSIT));
  const variants = [
    { ...DEPOSIT, type: 'withdraw' }, { ...DEPOSIT, account: '1002' }, { ...DEPOSIT, currency: 'BTC' }, { ...DEPOSIT, amount: '100.51' },
    { ...DEPOSIT, amount: '1005' }, { ...DEPOSIT, amount: '10.05' }, { ...DEPOSIT, currency: 'DOGE' }, { ...DEPOSIT, type: 'credit' },
    { ...DEPOSIT, amount: '100.5000000' },
  ];
  const hashes = variants.map((variant) => payloadHashOf(json(variant)));
  // '100.5000000' has the same value but more digits than USDT's scale of 6: BAD_AMOUNT, a
  // different outcome, so a different payload too (below).
  assert.equal(new Set([base, ...hashes]).size, hashes.length + 1);
  const transfer = { type: 'transfer', tx_id: 't', from: '1', to: '2', currency: 'BTC', amount: '1' };
  assert.notEqual(payloadHashOf(json(transfer)), payloadHashOf(json({ ...transfer, from: '2', to: '1' })));
  const leg = (account: string, available: string) => ({ account, currency: 'BTC', available, frozen: '0' });
  const settle = (legs: unknown[]) => json({ type: 'settle', tx_id: 's', account: '1', legs });
  assert.notEqual(payloadHashOf(settle([leg('1', '1'), leg('2', '-1')])), payloadHashOf(settle([leg('2', '-1'), leg('1', '1')])));
  assert.equal(payloadHashOf(settle([leg('1', '1.0'), leg('2', '-1')])), payloadHashOf(settle([leg('1', '01'), leg('2', '-1.00')])));
});

test('an amount with more digits than its currency\'s scale is a payload of its own: a retry that only changed the digits is a conflict, not the other\'s outcome', () => {
  const tooMany = { ...DEPOSIT, amount: '100.5000000' };
  const [valid, overScale] = [DEPOSIT, tooMany].map((command) => {
    decodeCommand(Buffer.from(json(command)), 0, 0, 16, REGISTRY, views, 0);
    return readCommandSlot(views, 0);
  });
  assert.deepEqual([valid.rejectCode, overScale.rejectCode], [RejectCode.None, RejectCode.BadAmount]);
  assert.notEqual(overScale.payloadHash, valid.payloadHash);
  // The record says so in the amount's first word: kind 0, canonical scale 1, over scale.
  const record = Buffer.alloc(44);
  record.writeUInt32LE(1 | (1 << 8), 0);
  record.writeBigUInt64LE(1001n, 4);
  record.writeUInt32LE(4, 12);
  record.write('USDT', 16, 'latin1');
  record.writeUInt32LE(0 | (1 << 8) | (1 << 16), 32);
  record.writeBigInt64LE(1005n, 36);
  assert.equal(overScale.payloadHash, hash64BigInt(record));
  // Every over-scale spelling of the value is the same payload (all BAD_AMOUNT), in JSON and in binary.
  for (const amount of ['100.50000000', '0100.5000000']) assert.equal(payloadHashOf(json({ ...DEPOSIT, amount })), overScale.payloadHash, amount);
  assert.equal(payloadHashOf(encodeCommandBinary(tooMany as WireCommand)), overScale.payloadHash, 'binary');
  assert.equal(payloadHashOf(encodeCommandBinary(DEPOSIT as WireCommand)), valid.payloadHash, 'binary, within the scale');
  // A settle leg too; an unknown currency has no scale, so its amounts are never over it.
  const leg = (available: string) => ({ account: '1001', currency: 'USDT', available, frozen: '0' });
  const settle = (available: string) => json({ type: 'settle', tx_id: 's', account: '1001', legs: [leg(available), { ...leg(available), account: '2', available: `-${available}` }] });
  assert.notEqual(payloadHashOf(settle('1.0000000')), payloadHashOf(settle('1')));
  assert.equal(payloadHashOf(json({ ...DEPOSIT, currency: 'DOGE', amount: '100.5000000000000' })), payloadHashOf(json({ ...DEPOSIT, currency: 'DOGE' })));
});

test('a credit hashes like a deposit with its own type in the header, in JSON and in binary', () => {
  const credit = { ...DEPOSIT, type: 'credit' };
  const record = Buffer.alloc(44);
  record.writeUInt32LE(1 | (7 << 8), 0); // version 1, type credit, no legs
  record.writeBigUInt64LE(1001n, 4);
  record.writeUInt32LE(4, 12);
  record.write('USDT', 16, 'latin1');
  record.writeUInt32LE(0 | (1 << 8), 32);
  record.writeBigInt64LE(1005n, 36);
  assert.equal(payloadHashOf(json(credit)), hash64BigInt(record));
  assert.equal(payloadHashOf(encodeCommandBinary(credit as WireCommand)), hash64BigInt(record));
  assert.notEqual(payloadHashOf(json(credit)), payloadHashOf(json(DEPOSIT)));
});

test('amounts without a canonical value hash their text; MALFORMED hashes the raw message', () => {
  const asNumber = payloadHashOf('{"type":"deposit","tx_id":"a","account":"1001","currency":"USDT","amount":100.5}');
  assert.notEqual(asNumber, payloadHashOf(json(DEPOSIT)));
  assert.notEqual(asNumber, payloadHashOf('{"type":"deposit","tx_id":"a","account":"1001","currency":"USDT","amount":100.50}'));
  assert.notEqual(payloadHashOf(json({ ...DEPOSIT, amount: '1e2' })), payloadHashOf(json({ ...DEPOSIT, amount: '1E2' })));
  const malformed = '{"type":"deposit","tx_id":"a","account":"01","currency":"USDT","amount":"1"}';
  decodeCommand(Buffer.from(malformed), 0, 0, 16, REGISTRY, views, 0);
  assert.equal(readCommandSlot(views, 0).rejectCode, RejectCode.Malformed);
  assert.equal(payloadHashOf(malformed), hash64BigInt(Buffer.from(malformed)));
});
