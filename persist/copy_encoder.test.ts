// Both COPY encoders against the real PostgreSQL: rows COPYed in (binary and text format) read
// back exactly, edge values included: int2/int4/int8 minimum and maximum, 64-bit values from
// little-endian bytes (u64 ids at or above 2^63 land as the same bits), NULL, empty and UTF-8
// text, and the bytes the text format must escape. Also: a buffer that grows mid-row.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { finished } from 'node:stream/promises';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { BinaryCopyEncoder } from './copy_binary';
import type { CopyEncoder } from './copy_encoder';
import { TextCopyEncoder } from './copy_text';
import { testPgUrl } from '../io/test_services';

interface Row {
  readonly small: number;
  readonly medium: number;
  readonly big: number;
  readonly bits: bigint;
  readonly flag: boolean;
  readonly text: string | null;
}

const ROWS: readonly Row[] = [
  { small: 0, medium: 0, big: 0, bits: 0n, flag: false, text: '' },
  { small: 32767, medium: 2147483647, big: Number.MAX_SAFE_INTEGER, bits: (1n << 63n) - 1n, flag: true, text: 'tx-1' },
  { small: -32768, medium: -2147483648, big: -Number.MAX_SAFE_INTEGER, bits: -(1n << 63n), flag: true, text: null },
  { small: -1, medium: -1, big: -1, bits: -1n, flag: false, text: 'ünïcødé €💰 日本' },
  { small: 7, medium: 1_000_000, big: 4294967296, bits: 4294967296n, flag: true, text: 'tab\there\nnew\rline \\ back\\.slash' },
  { small: 1, medium: 2, big: 2 ** 53 - 2 ** 32, bits: (1n << 53n) + 1n, flag: false, text: 'x'.repeat(64) },
  { small: 2, medium: 3, big: -(2 ** 32) - 1, bits: -(1n << 53n) - 1n, flag: true, text: '\\N' },
];

function littleEndian(value: bigint): Uint8Array {
  const bytes = new Uint8Array(8);
  new DataView(bytes.buffer).setBigInt64(0, value, true);
  return bytes;
}

function encodeRows(encoder: CopyEncoder, rows: readonly Row[]): Buffer {
  encoder.reset();
  for (const row of rows) {
    encoder.beginRow(6);
    encoder.int2(row.small);
    encoder.int4(row.medium);
    encoder.int8(row.big);
    encoder.int8LittleEndian(littleEndian(row.bits), 0);
    encoder.bool(row.flag);
    if (row.text === null) encoder.nullValue();
    else {
      const bytes = Buffer.from(row.text, 'utf8');
      encoder.textBytes(bytes, 0, bytes.length);
    }
    encoder.endRow();
  }
  return encoder.finish();
}

async function roundTrip(client: pg.Client, encoder: CopyEncoder, rows: readonly Row[]): Promise<Row[]> {
  await client.query('TRUNCATE copy_round_trip');
  const stream = client.query(copyFrom(`COPY copy_round_trip (small, medium, big, bits, flag, text) FROM STDIN ${encoder.copyOptions}`));
  stream.end(encodeRows(encoder, rows));
  await finished(stream);
  const read = await client.query<{ small: number; medium: number; big: string; bits: string; flag: boolean; text: string | null }>(
    'SELECT small, medium, big, bits, flag, text FROM copy_round_trip ORDER BY n');
  return read.rows.map((r) => ({ small: r.small, medium: r.medium, big: Number(r.big), bits: BigInt(r.bits), flag: r.flag, text: r.text }));
}

test('binary and text COPY rows read back exactly, edge values included', { timeout: 30_000 }, async () => {
  const client = new pg.Client({ connectionString: testPgUrl });
  await client.connect();
  try {
    await client.query(`CREATE TEMP TABLE copy_round_trip (
      small smallint, medium integer, big bigint, bits bigint, flag boolean, text text, n bigserial)`);
    for (const encoder of [new BinaryCopyEncoder(), new TextCopyEncoder()]) {
      assert.deepEqual(await roundTrip(client, encoder, ROWS), ROWS, encoder.constructor.name);
      assert.equal(encoder.rowCount, ROWS.length);
    }
  } finally {
    await client.end();
  }
});

test('encoders grow their buffer mid-row and are reusable after reset', { timeout: 30_000 }, async () => {
  const client = new pg.Client({ connectionString: testPgUrl });
  await client.connect();
  try {
    await client.query(`CREATE TEMP TABLE copy_round_trip (
      small smallint, medium integer, big bigint, bits bigint, flag boolean, text text, n bigserial)`);
    const many: Row[] = [];
    for (let i = 0; i < 5000; i++) many.push({ ...ROWS[i % ROWS.length]!, medium: i });
    for (const encoder of [new BinaryCopyEncoder(16), new TextCopyEncoder(16)]) {
      assert.deepEqual(await roundTrip(client, encoder, many), many, encoder.constructor.name);
      assert.deepEqual(await roundTrip(client, encoder, ROWS.slice(0, 2)), ROWS.slice(0, 2), `${encoder.constructor.name} after reset`);
    }
  } finally {
    await client.end();
  }
});

test('the binary stream starts with the PGCOPY header and ends with the -1 trailer', () => {
  const encoder = new BinaryCopyEncoder();
  encoder.beginRow(1);
  encoder.int4(0x01020304);
  const stream = encoder.finish();
  assert.deepEqual([...stream.subarray(0, 11)], [0x50, 0x47, 0x43, 0x4f, 0x50, 0x59, 0x0a, 0xff, 0x0d, 0x0a, 0x00]);
  assert.deepEqual([...stream.subarray(11, 19)], [0, 0, 0, 0, 0, 0, 0, 0]);
  assert.deepEqual([...stream.subarray(19)], [0, 1, 0, 0, 0, 4, 1, 2, 3, 4, 0xff, 0xff]);
});
