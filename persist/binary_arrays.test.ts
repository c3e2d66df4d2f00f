// The binary array columns against the real PostgreSQL: rows sent as array parameters and
// read back through unnest() exactly, int2/int4/int8 edge values and u64 bits from
// little-endian bytes included; an empty batch; growth from a tiny buffer and reuse after
// reset; rows of the wrong shape and values out of their type's range refused before anything
// is sent.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { BinaryArrayColumns, INT2_OID, INT4_OID, INT8_OID } from './binary_arrays';
import { testPgUrl } from '../io/test_services';

interface Row {
  readonly small: number;
  readonly medium: number;
  readonly big: number;
  readonly bits: bigint;
}

const ROWS: readonly Row[] = [
  { small: 0, medium: 0, big: 0, bits: 0n },
  { small: 32767, medium: 2147483647, big: Number.MAX_SAFE_INTEGER, bits: (1n << 63n) - 1n },
  { small: -32768, medium: -2147483648, big: -Number.MAX_SAFE_INTEGER, bits: -(1n << 63n) },
  { small: -1, medium: -1, big: -1, bits: -1n },
  { small: 7, medium: 1_000_000, big: 4294967296, bits: 4294967296n },
  { small: 1, medium: 2, big: 2 ** 53 - 2 ** 32, bits: (1n << 53n) + 1n },
  { small: 2, medium: 3, big: -(2 ** 32) - 1, bits: -(1n << 53n) - 1n },
];

const TYPES = [INT2_OID, INT4_OID, INT8_OID, INT8_OID];

function littleEndian(value: bigint): Uint8Array {
  const bytes = new Uint8Array(8);
  new DataView(bytes.buffer).setBigInt64(0, value, true);
  return bytes;
}

async function roundTrip(client: pg.Client, columns: BinaryArrayColumns, rows: readonly Row[]): Promise<Row[]> {
  columns.reset();
  for (const row of rows) {
    columns.beginRow();
    columns.int2(row.small);
    columns.int4(row.medium);
    columns.int8(row.big);
    columns.int8LittleEndian(littleEndian(row.bits), 0);
    columns.endRow();
  }
  assert.equal(columns.rowCount, rows.length);
  const read = await client.query<{ small: number; medium: number; big: string; bits: string }>({
    text: `SELECT small, medium, big::text AS big, bits::text AS bits
             FROM unnest($1::smallint[], $2::integer[], $3::bigint[], $4::bigint[]) WITH ORDINALITY AS r(small, medium, big, bits, n) ORDER BY n`,
    values: columns.finish(),
  });
  return read.rows.map((r) => ({ small: r.small, medium: r.medium, big: Number(r.big), bits: BigInt(r.bits) }));
}

test('binary array columns read back through unnest exactly, edge values and empty batches included', { timeout: 30_000 }, async () => {
  const client = new pg.Client({ connectionString: testPgUrl });
  await client.connect();
  try {
    const columns = new BinaryArrayColumns(TYPES);
    assert.deepEqual(await roundTrip(client, columns, ROWS), ROWS);
    assert.deepEqual(await roundTrip(client, columns, []), []);
    const many: Row[] = [];
    for (let i = 0; i < 5000; i++) many.push({ ...ROWS[i % ROWS.length]!, medium: i });
    const tiny = new BinaryArrayColumns(TYPES, 1);
    assert.deepEqual(await roundTrip(client, tiny, many), many, 'grown from one row');
    assert.deepEqual(await roundTrip(client, tiny, ROWS.slice(0, 2)), ROWS.slice(0, 2), 'after reset');
  } finally {
    await client.end();
  }
});

test('binary array columns refuse a row of the wrong shape', () => {
  const columns = new BinaryArrayColumns(TYPES);
  columns.beginRow();
  assert.throws(() => columns.int4(1), /column 0 of row 0 is not 4 bytes wide/);
  columns.int2(1);
  assert.throws(() => columns.endRow(), /row 0 has 1 of 4 columns/);
  assert.throws(() => columns.beginRow(), /row 1 ended after 1 of 4 columns/);
  assert.throws(() => new BinaryArrayColumns([16]), /oid 16 is not int2, int4 or int8/);
  const values = new BinaryArrayColumns([INT2_OID, INT4_OID, INT8_OID]);
  values.beginRow();
  assert.throws(() => values.int2(32768), /32768 is not an int2/);
  assert.throws(() => values.int2(1.5), /1.5 is not an int2/);
  values.int2(-32768);
  assert.throws(() => values.int4(2 ** 31), /is not an int4/);
  values.int4(-(2 ** 31));
  assert.throws(() => values.int8(2 ** 53), /is not a safe integer/);
  values.int8(-(2 ** 53 - 1));
  values.endRow();
  assert.equal(values.rowCount, 1);
});
