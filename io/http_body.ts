// Reads a uWebSockets.js request body into one Buffer, bounded: a body over `bytesMax` is
// answered 413 at once and the rest is ignored. uWS hands the body over in chunks whose
// memory is only valid during the callback, so each chunk is copied; an aborted request must
// never be answered, so the caller learns of it through `aborted`.

import type uWS from 'uWebSockets.js';
import { json } from './http_server';

export interface BodyRequest {
  aborted: boolean;
}

export function readBody(res: uWS.HttpResponse, bytesMax: number, onBody: (body: Buffer, request: BodyRequest) => void): void {
  const request: BodyRequest = { aborted: false };
  const chunks: Buffer[] = [];
  let size = 0;
  let rejected = false;
  res.onAborted(() => {
    request.aborted = true;
  });
  res.onData((chunk, isLast) => {
    if (rejected || request.aborted) return;
    size += chunk.byteLength;
    if (size > bytesMax) {
      rejected = true;
      request.aborted = true;
      json(res, '413 Payload Too Large', { error: 'BODY_TOO_LARGE', message: `request bodies are limited to ${bytesMax} bytes (TALLY_HTTP_BODY_BYTES_MAX)` });
      return;
    }
    chunks.push(Buffer.from(Buffer.from(chunk)));
    if (isLast) onBody(Buffer.concat(chunks, size), request);
  });
}
