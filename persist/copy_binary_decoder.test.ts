// The binary COPY decoder against real PostgreSQL output: the same stream cut into chunks
// of every small size and at random points frames exactly the same tuples, NULLs, text and
// int8 edges included, and broken streams are reported, not half-read.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import { BinaryCopyDecoder, CopyTupleSink, readInt32 } from './copy_binary_decoder';
import { testPgUrl } from '../io/test_services';

const FIELDS = 3;
const TUPLE_BYTES_MAX = 2 + 3 * 4 + 8 + 256 + 2;

/** Renders each tuple as text: field lengths and hex values, so any framing slip shows. */
class RenderingSink implements CopyTupleSink {
  readonly tuples: string[] = [];

  tuple(bytes: Uint8Array, _view: DataView, start: number): void {
    let at = start + 2;
    const fields: string[] = [];
    for (let field = 0; field < FIELDS; field++) {
      const length = readInt32(bytes, at);
      at += 4;
      fields.push(length < 0 ? 'NULL' : Buffer.from(bytes.subarray(at, at + length)).toString('hex'));
      if (length > 0) at += length;
    }
    this.tuples.push(fields.join('|'));
  }
}

const VARIABLE_SQL = `COPY (SELECT g::bigint * 46116860184273879 AS a, CASE WHEN g % 3 = 0 THEN NULL ELSE repeat('€x', g % 40) END AS t, (g % 2 = 0) AS b
                        FROM generate_series(-200, 200) g) TO STDOUT (FORMAT binary)`;
// Every tuple 2 + (4 + 8) + (4 + 2) + (4 + 1) = 25 bytes.
const FIXED_SQL = 'COPY (SELECT g::bigint * -46116860184273879 AS a, (g * 100)::smallint AS s, (g % 2 = 0) AS b FROM generate_series(-200, 200) g) TO STDOUT (FORMAT binary)';
const FIXED_TUPLE_BYTES = 25;

async function copyBytes(sql = VARIABLE_SQL): Promise<Buffer> {
  const client = new pg.Client({ connectionString: testPgUrl });
  await client.connect();
  try {
    const chunks: Buffer[] = [];
    await pipeline(client.query(copyTo(sql)), new Writable({ write(chunk: Buffer, _e, done) { chunks.push(chunk); done(); } }));
    return Buffer.concat(chunks);
  } finally {
    await client.end();
  }
}

function decodeInChunks(stream: Buffer, cut: (at: number) => number, fixedTupleBytes?: number): string[] {
  const sink = new RenderingSink();
  const decoder = new BinaryCopyDecoder(FIELDS, TUPLE_BYTES_MAX, sink, { fixedTupleBytes });
  for (let at = 0; at < stream.length;) {
    const end = Math.min(stream.length, at + Math.max(1, cut(at)));
    decoder.push(stream.subarray(at, end));
    at = end;
  }
  decoder.finish();
  assert.equal(decoder.tupleCount, sink.tuples.length);
  return sink.tuples;
}

test('any chunking of a real binary COPY stream frames the same tuples', { timeout: 60_000 }, async () => {
  const stream = await copyBytes();
  const whole = decodeInChunks(stream, () => stream.length);
  assert.equal(whole.length, 401);
  assert.equal(whole[200], '0000000000000000|NULL|01', 'g = 0: int8 0, NULL text, true');
  assert.ok(whole.some((t) => t.includes('e282ac78')), 'multibyte text survives');
  for (let size = 1; size <= 70; size++) assert.deepEqual(decodeInChunks(stream, () => size), whole, `chunks of ${size} bytes`);
  let seed = 12345;
  for (let run = 0; run < 50; run++) {
    const tuples = decodeInChunks(stream, () => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return 1 + (seed % 600);
    });
    assert.deepEqual(tuples, whole, `random cut run ${run}`);
  }
});

test('with fixedTupleBytes, fixed-width tuples frame the same under any chunking', { timeout: 60_000 }, async () => {
  const stream = await copyBytes(FIXED_SQL);
  const walked = decodeInChunks(stream, () => stream.length);
  assert.equal(walked.length, 401);
  for (let size = 1; size <= 60; size++) assert.deepEqual(decodeInChunks(stream, () => size, FIXED_TUPLE_BYTES), walked, `chunks of ${size} bytes`);
});

test('a truncated stream, a wrong field count, a bad signature and an oversized tuple are errors', { timeout: 60_000 }, async () => {
  const stream = await copyBytes();
  const truncated = new BinaryCopyDecoder(FIELDS, TUPLE_BYTES_MAX, new RenderingSink());
  truncated.push(stream.subarray(0, stream.length - 1));
  assert.throws(() => truncated.finish(), /without its trailer/);
  assert.throws(() => new BinaryCopyDecoder(2, TUPLE_BYTES_MAX, new RenderingSink()).push(stream), /3 fields, expected 2/);
  const notBinary = Buffer.from(stream);
  notBinary[0] = 0x51;
  assert.throws(() => new BinaryCopyDecoder(FIELDS, TUPLE_BYTES_MAX, new RenderingSink()).push(notBinary), /bad signature/);
  const small = new BinaryCopyDecoder(FIELDS, 40, new RenderingSink());
  assert.throws(() => { for (let at = 0; at < stream.length; at += 16) small.push(stream.subarray(at, at + 16)); }, /longer than 40 bytes/);
});
