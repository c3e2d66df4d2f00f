// Reads a uWebSockets.js request body into one Buffer, bounded in every way a client could
// stretch it, since a body is read before its signature can be checked:
// - size: a declared Content-Length over `bytesMax` is answered 413 before any byte is read,
//   and a body that grows past it (chunked) is answered 413 as soon as it does;
// - memory: the bytes go into one buffer, allocated when the first bytes arrive (of the
//   declared length when that is small, else grown by doubling), not one Buffer per chunk (a
//   body sent a byte per packet would otherwise cost a hundred times its size), and the
//   buffers of all bodies being read at once may hold at most `inFlightBytesMax` (503
//   BODIES_BUSY beyond): a client must send bytes to take any of it;
// - time: the whole body must arrive within `receiveMs` (408 beyond), however slowly it
//   trickles in (uWS's idle timeout restarts with every packet).
// A refused body's connection is closed, so its client cannot go on streaming into it. uWS
// hands chunks over in memory only valid during the callback, so each is copied; an aborted
// request must never be answered, so the caller learns of it through `aborted`.

import type uWS from 'uWebSockets.js';

export interface BodyRequest {
  aborted: boolean;
}

export interface BodyLimits {
  readonly bytesMax: number;
  /** Bytes the buffers of all bodies being read at once may hold. */
  readonly inFlightBytesMax: number;
  readonly receiveMs: number;
}

export const BODY_IN_FLIGHT_BYTES_MAX = 64 * 1024 * 1024;
export const BODY_RECEIVE_MS = 10_000;
/** A body declared up to this long gets its buffer at once; longer ones grow as bytes arrive. */
const ALLOCATED_AT_ONCE_BYTES_MAX = 16 * 1024;
const EMPTY_BUFFER = Buffer.alloc(0);

/** Buffer bytes held by the bodies being read now, per limits object (one per route). */
const heldBytes = new WeakMap<BodyLimits, number>();

function refuse(res: uWS.HttpResponse, status: string, error: string, message: string): void {
  res.cork(() => {
    res.writeStatus(status).writeHeader('content-type', 'application/json').end(JSON.stringify({ error, message }), true);
  });
}

/** `contentLength` is the request's content-length header, read in the handler ('' if none). */
export function readBody(res: uWS.HttpResponse, contentLength: string, limits: BodyLimits, onBody: (body: Buffer, request: BodyRequest) => void): void {
  const request: BodyRequest = { aborted: false };
  const { bytesMax } = limits;
  const declared = /^[0-9]{1,15}$/.test(contentLength) ? Number(contentLength) : undefined;
  if (declared !== undefined && declared > bytesMax) {
    return refuse(res, '413 Payload Too Large', 'BODY_TOO_LARGE', `request bodies are limited to ${bytesMax} bytes (TALLY_HTTP_BODY_BYTES_MAX); this one declares ${declared}`);
  }
  // Allocated when the first bytes arrive, and charged to the budget by its capacity (what
  // it really holds in memory), so a body that sends nothing costs nothing.
  let buffer = EMPTY_BUFFER;
  let size = 0;
  let done = false;
  const finish = (): void => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    heldBytes.set(limits, (heldBytes.get(limits) ?? buffer.length) - buffer.length);
  };
  const timer = setTimeout(() => {
    if (done || request.aborted) return;
    finish();
    request.aborted = true;
    refuse(res, '408 Request Timeout', 'BODY_TIMEOUT', `the request body did not arrive within ${limits.receiveMs} ms`);
  }, limits.receiveMs);
  res.onAborted(() => {
    request.aborted = true;
    finish();
  });
  res.onData((chunk, isLast) => {
    if (done || request.aborted) return;
    if (size + chunk.byteLength > bytesMax) {
      finish();
      request.aborted = true;
      return refuse(res, '413 Payload Too Large', 'BODY_TOO_LARGE', `request bodies are limited to ${bytesMax} bytes (TALLY_HTTP_BODY_BYTES_MAX)`);
    }
    if (size + chunk.byteLength > buffer.length) {
      const first = Math.min(declared ?? ALLOCATED_AT_ONCE_BYTES_MAX, ALLOCATED_AT_ONCE_BYTES_MAX, bytesMax);
      const capacity = Math.min(bytesMax, Math.max(buffer.length * 2, first, size + chunk.byteLength));
      const held = heldBytes.get(limits) ?? 0;
      if (held + capacity - buffer.length > limits.inFlightBytesMax) {
        finish();
        request.aborted = true;
        return refuse(res, '503 Service Unavailable', 'BODIES_BUSY', `too many request bodies are being received at once (${held} bytes held); retry shortly`);
      }
      heldBytes.set(limits, held + capacity - buffer.length);
      const grown = Buffer.allocUnsafe(capacity);
      buffer.copy(grown, 0, 0, size);
      buffer = grown;
    }
    Buffer.from(chunk).copy(buffer, size);
    size += chunk.byteLength;
    if (!isLast) return;
    finish();
    onBody(buffer.subarray(0, size), request);
  });
}
