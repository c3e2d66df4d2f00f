// Transfer request signatures: the timestamped scheme (default) and, when the operator allows
// it, the body-only signature the contract's wording describes.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkSignature, signBody, signRequest } from './request_signature';

const SECRET = 'signature-test-secret-0123';
const body = Buffer.from('{"from_account":"1001","to_account":"1002","amount":"5","currency":"USDT","transaction_id":"w-1"}');
const now = 1_796_000_000_000;
const WINDOW = 300_000;

test('timestamped signatures: accepted within the window, refused when stale, altered or missing', () => {
  const ts = String(now - 1000);
  assert.equal(checkSignature(SECRET, WINDOW, now, ts, signRequest(SECRET, ts, body), body), 'ok');
  assert.equal(checkSignature(SECRET, WINDOW, now, String(now - WINDOW - 1), signRequest(SECRET, String(now - WINDOW - 1), body), body), 'STALE_TIMESTAMP');
  assert.equal(checkSignature(SECRET, WINDOW, now, ts, signRequest(SECRET, ts, Buffer.from(`${body} `)), body), 'BAD_SIGNATURE');
  assert.equal(checkSignature(SECRET, WINDOW, now, ts, '', body), 'MISSING_SIGNATURE');
  assert.equal(checkSignature(SECRET, WINDOW, now, 'yesterday', signRequest(SECRET, ts, body), body), 'BAD_TIMESTAMP');
});

test('a body-only signature is refused by default and accepted only when the timestamp is optional', () => {
  const bodyOnly = signBody(SECRET, body);
  assert.equal(checkSignature(SECRET, WINDOW, now, '', bodyOnly, body), 'MISSING_SIGNATURE', 'default: the timestamp is required');
  assert.equal(checkSignature(SECRET, WINDOW, now, '', bodyOnly, body, true), 'ok');
  assert.equal(checkSignature(SECRET, WINDOW, now, '', signBody('another-secret-0123456', body), body, true), 'BAD_SIGNATURE');
  assert.equal(checkSignature(SECRET, WINDOW, now, '', signBody(SECRET, Buffer.from('{}')), body, true), 'BAD_SIGNATURE');
  assert.equal(checkSignature(SECRET, WINDOW, now, '', 'zz', body, true), 'BAD_SIGNATURE');
  // With a timestamp header the timestamped scheme applies, window included.
  const stale = String(now - WINDOW - 1);
  assert.equal(checkSignature(SECRET, WINDOW, now, stale, signRequest(SECRET, stale, body), body, true), 'STALE_TIMESTAMP');
  assert.equal(checkSignature(SECRET, WINDOW, now, String(now), bodyOnly, body, true), 'BAD_SIGNATURE', 'a body-only signature does not pass for a timestamped one');
});
