// HMAC-SHA256 request signatures of the transfer API (docs/api.md):
//   x-tally-timestamp: milliseconds since the Unix epoch when the client signed
//   x-tally-signature: hex HMAC-SHA256(secret, timestamp + "." + raw body)
// The timestamp is part of what is signed, so it cannot be changed, and a request is only
// accepted within `windowMs` of the server clock, which bounds replays to that window; a
// replay is answered with the stored outcome of its transaction_id and changes nothing (the
// route checks tx_outcomes before producing, io/transfer_routes.ts, so this holds beyond the
// engine's dedup window too). Comparison is constant-time. With
// TALLY_SIGNATURE_TIMESTAMP=optional a request without the timestamp header may carry hex
// HMAC-SHA256(secret, raw body), the contract's wording taken literally: such a signature
// never expires, so a captured request can be replayed at any time (it too gets the stored
// outcome).

import { createHmac, timingSafeEqual } from 'node:crypto';

export type SignatureCheck = 'ok' | 'MISSING_SIGNATURE' | 'BAD_TIMESTAMP' | 'STALE_TIMESTAMP' | 'BAD_SIGNATURE';

export function signRequest(secret: string, timestampMs: number | string, body: Buffer | string): string {
  return createHmac('sha256', secret).update(`${timestampMs}.`).update(body).digest('hex');
}

/** HMAC-SHA256 of the body alone (TALLY_SIGNATURE_TIMESTAMP=optional, requests without a timestamp). */
export function signBody(secret: string, body: Buffer | string): string {
  return createHmac('sha256', secret).update(body).digest('hex');
}

/**
 * What the headers alone decide, before the body is read: a request that cannot be signed
 * right is refused without buffering its body (up to TALLY_HTTP_BODY_BYTES_MAX) first.
 */
export function checkSignatureHeaders(windowMs: number, nowMs: number, timestamp: string, signature: string, timestampOptional = false): SignatureCheck {
  if (signature === '') return 'MISSING_SIGNATURE';
  if (timestamp === '') {
    if (!timestampOptional) return 'MISSING_SIGNATURE';
    return /^[0-9a-fA-F]{64}$/.test(signature) ? 'ok' : 'BAD_SIGNATURE';
  }
  if (!/^[0-9]{1,16}$/.test(timestamp)) return 'BAD_TIMESTAMP';
  if (Math.abs(nowMs - Number(timestamp)) > windowMs) return 'STALE_TIMESTAMP';
  if (!/^[0-9a-fA-F]{64}$/.test(signature)) return 'BAD_SIGNATURE';
  return 'ok';
}

export function checkSignature(
  secret: string, windowMs: number, nowMs: number, timestamp: string, signature: string, body: Buffer, timestampOptional = false,
): SignatureCheck {
  const headers = checkSignatureHeaders(windowMs, nowMs, timestamp, signature, timestampOptional);
  if (headers !== 'ok') return headers;
  const expected = Buffer.from(timestamp === '' ? signBody(secret, body) : signRequest(secret, timestamp, body), 'hex');
  return timingSafeEqual(expected, Buffer.from(signature, 'hex')) ? 'ok' : 'BAD_SIGNATURE';
}
