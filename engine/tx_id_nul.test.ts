// A tx_id holding a NUL can never be stored (PostgreSQL text refuses it), so every decoder
// rejects it as MALFORMED with no tx_id rather than let its flush fail forever.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeCommand } from './command_decoder';
import { createCommandSlotViews, readCommandSlot } from './command_slot';
import { CurrencyRegistry } from './currency_registry';
import { encodeCommandBinary } from './binary_encoder';
import { RejectCode } from './reject_code';

const registry = CurrencyRegistry.fromConfig([{ code: 'USDT', scale: 8 }]);

function decode(message: Uint8Array): { code: RejectCode; txIdLength: number } {
  const views = createCommandSlotViews(1);
  const code = decodeCommand(message, 0, 0, 1, registry, views, 0);
  return { code, txIdLength: readCommandSlot(views, 0).txId.length };
}

test('a NUL in a tx_id is MALFORMED in JSON (escaped or raw) and in binary', () => {
  const escaped = decode(Buffer.from('{"type":"deposit","tx_id":"a\\u0000b","account":"1001","currency":"USDT","amount":"1"}'));
  assert.deepEqual(escaped, { code: RejectCode.Malformed, txIdLength: 0 });
  const raw = decode(Buffer.from('{"type":"deposit","tx_id":"a\u0000b","account":"1001","currency":"USDT","amount":"1"}'));
  assert.equal(raw.code, RejectCode.Malformed);
  assert.equal(raw.txIdLength, 0);
  const binary = decode(encodeCommandBinary({ type: 'deposit', tx_id: 'a\u0000b', account: '1001', currency: 'USDT', amount: '1' }));
  assert.deepEqual(binary, { code: RejectCode.Malformed, txIdLength: 0 });
  assert.equal(decode(Buffer.from('{"type":"deposit","tx_id":"ab","account":"1001","currency":"USDT","amount":"1"}')).code, RejectCode.None);
});
