// Recovery of one partition: its balances and the newest `dedupWindow` tx outcomes are read
// from PostgreSQL with binary COPY (pg-copy-streams `to`), framed by BinaryCopyDecoder and
// written straight into SharedArrayBuffers of fixed-width rows (engine/recovery_layout.ts),
// which the engine worker then loads into its balance table and the partition's dedup index
// (EngineThread.loadPartition). No object is created per row: ten million balances are a
// few hundred megabytes of rows, not ten million objects for the collector.
//
// Order of work when an instance takes partition p (docs/persistence.md):
//   1. acquireLease(p) → fencing token and next_offset (persist/lease.ts)
//   2. recoverPartition(p): the COPYs run in REPEATABLE READ READ ONLY transactions on one
//      exported snapshot, so balances and outcomes are one state; then the engine loads them
//   3. the consumer starts p at next_offset
// Once the lease is ours no older owner can commit a flush of p (every flush is fenced by
// the token), so the snapshot cannot miss a flush that would still land.
//
// COPY cannot take bind parameters; the partition and the window are validated integers
// interpolated into the statement.
//
// Row buffers are growable SharedArrayBuffers (reserved up to the bound, committed as they
// fill) written through fixed-length views that are re-created after each growth: V8 (Node
// 20) runs length-tracking views of growable buffers several times slower.

import { pipeline } from 'node:stream/promises';
import { Writable } from 'node:stream';
import pg from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import { OutcomeStatus } from '../engine/dedup_index';
import type { EngineThread } from '../engine/engine_thread';
import type { EngineReport } from '../engine/engine_worker';
import { PartitionLoadError } from '../engine/partition_loader';
import {
  BALANCE_ACCOUNT_WORD, BALANCE_AVAILABLE_WORD, BALANCE_CURRENCY_WORD, BALANCE_FROZEN_WORD, BALANCE_ROW_BYTES, BALANCE_ROW_WORDS,
  OUTCOME_KAFKA_OFFSET_WORD, OUTCOME_PACKED_WORD, OUTCOME_PAYLOAD_HASH_WORD, OUTCOME_ROW_BYTES, OUTCOME_ROW_WORDS,
  OUTCOME_TX_ID_BYTES, OUTCOME_TX_ID_LENGTH_WORD, OUTCOME_TX_ID_WORD,
} from '../engine/recovery_layout';
import { RejectCode, rejectCodeFromName, rejectCodeName } from '../engine/reject_code';
import { BinaryCopyDecoder, CopyTupleSink, readInt32 } from './copy_binary_decoder';
import { closeWithin, withinDeadline } from './pg_socket';

/** A SharedArrayBuffer cannot be reserved beyond 4 GiB in Node 20. */
const ROW_BUFFER_BYTES_MAX = 2 ** 32;
const ROW_BUFFER_ROWS_INITIAL = 4096;
const TWO_POW_32 = 4294967296;
/** Bytes the COPY stream may buffer ahead of the decoder. */
const COPY_HIGH_WATER_MARK_BYTES = 4 << 20;
const PARTITION_MAX = 65_535;
/** Balances COPYs at once per recovery (see recoverPartition). */
const COPY_STREAMS = 2;
const CONNECT_TIMEOUT_MS = 10_000;
// Reading 10 M balances takes about 7 s (bench:recovery); this only ends a read stuck on a
// connection whose peer vanished (persist/pg_socket.ts), so the take fails and is retried.
const READ_DEADLINE_MS = 600_000;
const CLOSE_GRACE_MS = 1_000;

// A balances tuple: 5 fields, all NOT NULL and fixed width, so every field sits at a fixed
// byte offset from the tuple start (field count 2 bytes, then length 4 bytes + value).
const BALANCE_FIELDS = 5;
const BALANCE_TUPLE_BYTES = 2 + (4 + 8) + (4 + 2) + (4 + 8) * 3;
const T_ACCOUNT_LENGTH = 2;
const T_ACCOUNT = 6;
const T_CURRENCY_LENGTH = 14;
const T_CURRENCY = 18;
const T_AVAILABLE_LENGTH = 20;
const T_AVAILABLE = 24;
const T_FROZEN_LENGTH = 32;
const T_FROZEN = 36;
const T_LAST_OFFSET_LENGTH = 44;
const T_LAST_OFFSET = 48;

// A tx_outcomes tuple: tx_id text (at most 64 characters, so 256 bytes), kafka_offset int8,
// accepted bool, reason text or NULL, payload_hash int8.
const OUTCOME_FIELDS = 5;
const OUTCOME_REASON_BYTES_MAX = 64;
const OUTCOME_TUPLE_BYTES_MAX = 2 + (4 + 256) + (4 + 8) + (4 + 1) + (4 + OUTCOME_REASON_BYTES_MAX) + (4 + 8);

function assertLayout(): void {
  if (BALANCE_TUPLE_BYTES !== 56 || T_LAST_OFFSET + 8 !== BALANCE_TUPLE_BYTES) throw new Error('recovery: balance tuple offsets do not add up');
}
assertLayout();

interface GrowableSharedArrayBuffer extends SharedArrayBuffer {
  grow(byteLength: number): void;
}
const GrowableSharedArrayBuffer = SharedArrayBuffer as unknown as new (byteLength: number, options: { maxByteLength: number }) => GrowableSharedArrayBuffer;

/** Fixed-width rows in a growable SharedArrayBuffer; at most rowsMax of them. */
class RowBuffer {
  readonly buffer: GrowableSharedArrayBuffer;
  words: Int32Array;
  bytes: Uint8Array;
  floats: Float64Array;
  capacityRows: number;

  constructor(readonly rowBytes: number, readonly rowsMax: number, what: string) {
    if (rowsMax * rowBytes > ROW_BUFFER_BYTES_MAX) {
      throw new PartitionLoadError(`recovery: up to ${rowsMax} ${what} rows of ${rowBytes} bytes exceed the ${ROW_BUFFER_BYTES_MAX}-byte limit of one shared buffer`);
    }
    this.capacityRows = Math.min(rowsMax, ROW_BUFFER_ROWS_INITIAL);
    this.buffer = new GrowableSharedArrayBuffer(Math.max(this.capacityRows, 1) * rowBytes, { maxByteLength: Math.max(rowsMax, 1) * rowBytes });
    this.words = new Int32Array(0);
    this.bytes = new Uint8Array(0);
    this.floats = new Float64Array(0);
    this.refreshViews();
  }

  /** Doubles the committed rows (up to rowsMax); the caller checked capacityRows < rowsMax. */
  grow(): void {
    this.capacityRows = Math.min(this.capacityRows * 2, this.rowsMax);
    this.buffer.grow(this.capacityRows * this.rowBytes);
    this.refreshViews();
  }

  private refreshViews(): void {
    const byteLength = this.buffer.byteLength;
    this.words = new Int32Array(this.buffer, 0, byteLength >> 2);
    this.bytes = new Uint8Array(this.buffer, 0, byteLength);
    this.floats = new Float64Array(this.buffer, 0, byteLength >> 3);
  }
}

/** Writes balances tuples as BALANCE rows; counts, without storing, tuples beyond rowsMax. */
class BalanceRowSink implements CopyTupleSink {
  count = 0;
  overflow = 0;
  /** Highest last_offset seen, -1 if none. */
  lastOffsetMax = -1;
  readonly rows: RowBuffer;

  constructor(rowsMax: number) {
    this.rows = new RowBuffer(BALANCE_ROW_BYTES, rowsMax, 'balance');
  }

  tuple(_bytes: Uint8Array, view: DataView, start: number): void {
    const row = this.count;
    if (row === this.rows.rowsMax) {
      this.overflow++;
      return;
    }
    if (row === this.rows.capacityRows) this.rows.grow();
    const lengths = (view.getInt32(start + T_ACCOUNT_LENGTH) ^ 8) | (view.getInt32(start + T_CURRENCY_LENGTH) ^ 2) |
      (view.getInt32(start + T_AVAILABLE_LENGTH) ^ 8) | (view.getInt32(start + T_FROZEN_LENGTH) ^ 8) | (view.getInt32(start + T_LAST_OFFSET_LENGTH) ^ 8);
    if (lengths !== 0) throw new Error('recovery: a balances tuple does not have the (int8, int2, int8, int8, int8) shape');
    const words = this.rows.words;
    const base = row * BALANCE_ROW_WORDS;
    words[base + BALANCE_ACCOUNT_WORD] = view.getInt32(start + T_ACCOUNT + 4);
    words[base + BALANCE_ACCOUNT_WORD + 1] = view.getInt32(start + T_ACCOUNT);
    words[base + BALANCE_AVAILABLE_WORD] = view.getInt32(start + T_AVAILABLE + 4);
    words[base + BALANCE_AVAILABLE_WORD + 1] = view.getInt32(start + T_AVAILABLE);
    words[base + BALANCE_FROZEN_WORD] = view.getInt32(start + T_FROZEN + 4);
    words[base + BALANCE_FROZEN_WORD + 1] = view.getInt32(start + T_FROZEN);
    words[base + BALANCE_CURRENCY_WORD] = view.getInt16(start + T_CURRENCY);
    const lastOffset = view.getInt32(start + T_LAST_OFFSET) * TWO_POW_32 + view.getUint32(start + T_LAST_OFFSET + 4);
    if (lastOffset > this.lastOffsetMax) this.lastOffsetMax = lastOffset;
    this.count = row + 1;
  }
}

// Reason names as bytes, indexed by code, to map a stored reason back to its RejectCode
// without a string per row.
const REASON_NAMES: Uint8Array[] = [];
for (let code = 0; code < 256; code++) {
  let name: string;
  try {
    name = rejectCodeName(code);
  } catch {
    break;
  }
  if (rejectCodeFromName(name) !== code) throw new Error(`recovery: reject code ${code} does not round-trip through its name ${name}`);
  REASON_NAMES.push(Buffer.from(name, 'latin1'));
}

/** RejectCode of the reason name at bytes[at..at+length), or -1 if it names none. */
function reasonCodeOf(bytes: Uint8Array, at: number, length: number): number {
  for (let code = 0; code < REASON_NAMES.length; code++) {
    const name = REASON_NAMES[code]!;
    if (name.length !== length) continue;
    let same = true;
    for (let i = 0; i < length && same; i++) same = name[i] === bytes[at + i];
    if (same) return code;
  }
  return -1;
}

/** Writes tx_outcomes tuples as OUTCOME rows, in the order the COPY delivers them. */
class OutcomeRowSink implements CopyTupleSink {
  count = 0;
  /** Highest kafka_offset seen, -1 if none. */
  kafkaOffsetMax = -1;
  readonly rows: RowBuffer;

  constructor(private readonly partition: number, rowsMax: number) {
    this.rows = new RowBuffer(OUTCOME_ROW_BYTES, rowsMax, 'outcome');
  }

  tuple(bytes: Uint8Array, _view: DataView, start: number): void {
    const row = this.count;
    if (row === this.rows.rowsMax) throw new Error(`recovery: more outcome rows than the window of ${this.rows.rowsMax} (LIMIT ignored?)`);
    if (row === this.rows.capacityRows) this.rows.grow();
    const base = row * OUTCOME_ROW_WORDS;
    let at = start + 2;
    const txIdLength = readInt32(bytes, at);
    at += 4;
    if (txIdLength < 1 || txIdLength > OUTCOME_TX_ID_BYTES) throw this.rowError(`a tx_id of ${txIdLength} UTF-8 bytes (the engine keeps 1 to ${OUTCOME_TX_ID_BYTES})`, bytes, at, txIdLength);
    const rowBytes = this.rows.bytes;
    const txIdAt = (base + OUTCOME_TX_ID_WORD) * 4;
    for (let i = 0; i < txIdLength; i++) rowBytes[txIdAt + i] = bytes[at + i];
    at += txIdLength;
    if (readInt32(bytes, at) !== 8 || readInt32(bytes, at + 12) !== 1) throw this.rowError('kafka_offset or accepted of the wrong type', bytes, start + 6, txIdLength);
    const kafkaOffset = readInt32(bytes, at + 4) * TWO_POW_32 + (readInt32(bytes, at + 8) >>> 0);
    if (kafkaOffset < 0 || kafkaOffset > Number.MAX_SAFE_INTEGER) throw this.rowError(`kafka_offset ${kafkaOffset} out of range`, bytes, start + 6, txIdLength);
    const accepted = bytes[at + 16] !== 0;
    at += 17;
    const reasonLength = readInt32(bytes, at);
    at += 4;
    const reason = reasonLength === -1 ? RejectCode.None : reasonCodeOf(bytes, at, reasonLength);
    if (reasonLength > 0) at += reasonLength;
    if (reason < 0 || accepted !== (reason === RejectCode.None)) throw this.rowError(`accepted=${accepted} with an unknown or inconsistent reason`, bytes, start + 6, txIdLength);
    if (readInt32(bytes, at) !== 8) throw this.rowError('payload_hash of the wrong type', bytes, start + 6, txIdLength);
    const words = this.rows.words;
    words[base + OUTCOME_TX_ID_LENGTH_WORD] = txIdLength;
    words[base + OUTCOME_PACKED_WORD] = (accepted ? OutcomeStatus.Accepted : OutcomeStatus.Rejected) | (reason << 8);
    this.rows.floats[(base + OUTCOME_KAFKA_OFFSET_WORD) >> 1] = kafkaOffset;
    words[base + OUTCOME_PAYLOAD_HASH_WORD] = readInt32(bytes, at + 8);
    words[base + OUTCOME_PAYLOAD_HASH_WORD + 1] = readInt32(bytes, at + 4);
    if (kafkaOffset > this.kafkaOffsetMax) this.kafkaOffsetMax = kafkaOffset;
    this.count = row + 1;
  }

  private rowError(what: string, bytes: Uint8Array, txIdAt: number, txIdLength: number): Error {
    const txId = Buffer.from(bytes.subarray(txIdAt, txIdAt + Math.max(0, Math.min(txIdLength, 256)))).toString('utf8');
    return new Error(`recovery: tx_outcomes row of partition ${this.partition} with tx_id ${JSON.stringify(txId)} has ${what}`);
  }
}

export interface RecoveredBalances {
  /** BALANCE rows (engine/recovery_layout.ts). */
  readonly buffer: SharedArrayBuffer;
  readonly count: number;
  /** Highest last_offset among the rows, -1 if there are none. */
  readonly lastOffsetMax: number;
}

export interface RecoveredOutcomes {
  /** OUTCOME rows, newest first (engine/recovery_layout.ts). */
  readonly buffer: SharedArrayBuffer;
  readonly count: number;
  /** Highest kafka_offset among the rows, -1 if there are none. */
  readonly kafkaOffsetMax: number;
}

function assertPartition(partition: number): void {
  if (!Number.isInteger(partition) || partition < 0 || partition > PARTITION_MAX) throw new Error(`recovery: partition ${partition} out of range`);
}

/** Streams a COPY … TO STDOUT (FORMAT binary) through the decoder. */
async function copyOut(client: pg.ClientBase, sql: string, decoder: BinaryCopyDecoder): Promise<void> {
  const stream = client.query(copyTo(sql, { highWaterMark: COPY_HIGH_WATER_MARK_BYTES }));
  const sink = new Writable({
    highWaterMark: COPY_HIGH_WATER_MARK_BYTES,
    write(chunk: Buffer, _encoding, callback): void {
      try {
        decoder.push(chunk);
        callback();
      } catch (error) {
        callback(error as Error);
      }
    },
  });
  await pipeline(stream, sink);
  decoder.finish();
}

/**
 * Reads every balance of `partition` into BALANCE rows, over one COPY per client: with more
 * than one client, each COPYs its own range of the heap's pages (a TID range scan), and
 * every client must already be in a transaction on the same snapshot. `heapPages` is the
 * heap's size in pages when the snapshot was taken (the last range is open-ended, so a
 * stale size only unbalances the ranges). All COPYs feed one row sink: they run on this one
 * thread, so their whole tuples simply take turns.
 *
 * More than `rowsMax` balances (the room left in the engine's table) is an operating error,
 * reported once the COPYs have been read to their end so the connections stay usable. Any
 * other error leaves the connections in an unknown state: end them.
 */
export async function readBalances(clients: readonly pg.ClientBase[], partition: number, rowsMax: number, heapPages = 0): Promise<RecoveredBalances> {
  assertPartition(partition);
  if (clients.length < 1 || !Number.isSafeInteger(heapPages) || heapPages < 0) throw new Error(`recovery: ${clients.length} clients over ${heapPages} heap pages`);
  const sink = new BalanceRowSink(rowsMax);
  const pagesPerClient = Math.ceil(heapPages / clients.length);
  await Promise.all(clients.map((client, index) => {
    const from = index === 0 ? '' : ` AND ctid >= '(${index * pagesPerClient},0)'`;
    const to = index === clients.length - 1 ? '' : ` AND ctid < '(${(index + 1) * pagesPerClient},0)'`;
    const sql = `COPY (SELECT account, currency_id, available, frozen, last_offset FROM balances WHERE partition = ${partition}${from}${to}) TO STDOUT (FORMAT binary)`;
    return copyOut(client, sql, new BinaryCopyDecoder(BALANCE_FIELDS, BALANCE_TUPLE_BYTES, sink, { fixedTupleBytes: BALANCE_TUPLE_BYTES }));
  }));
  if (sink.overflow > 0) {
    throw new PartitionLoadError(`balance table full: partition ${partition} has ${sink.count + sink.overflow} balances but only ${rowsMax} fit; raise TALLY_BALANCE_CAPACITY`);
  }
  return { buffer: sink.rows.buffer, count: sink.count, lastOffsetMax: sink.lastOffsetMax };
}

/**
 * Reads the newest `window` tx outcomes of `partition` into OUTCOME rows, newest first (the
 * engine loads them oldest first). Reasons map back to RejectCodes by name.
 */
export async function readOutcomes(client: pg.ClientBase, partition: number, window: number): Promise<RecoveredOutcomes> {
  assertPartition(partition);
  if (!Number.isInteger(window) || window < 1) throw new Error(`recovery: dedup window ${window} must be a positive integer`);
  const sink = new OutcomeRowSink(partition, window);
  const sql = 'COPY (SELECT tx_id, kafka_offset, accepted, reason, payload_hash FROM tx_outcomes ' +
    `WHERE partition = ${partition} ORDER BY kafka_offset DESC LIMIT ${window}) TO STDOUT (FORMAT binary)`;
  await copyOut(client, sql, new BinaryCopyDecoder(OUTCOME_FIELDS, OUTCOME_TUPLE_BYTES_MAX, sink));
  return { buffer: sink.rows.buffer, count: sink.count, kafkaOffsetMax: sink.kafkaOffsetMax };
}

export interface PartitionRecovery {
  readonly partition: number;
  readonly balances: RecoveredBalances;
  readonly outcomes: RecoveredOutcomes;
  /** The engine's answer to the load: counts, its time and the state hash. */
  readonly report: EngineReport;
  /** Connecting, both COPYs and parsing. */
  readonly readMs: number;
  /** The engine's load, the state hash and the messages there and back. */
  readonly loadMs: number;
}

export interface RecoverPartitionOptions {
  readonly partition: number;
  /** The lease row's next_offset (acquireLease): every recovered row must lie before it. */
  readonly nextOffset: number;
  readonly dedupWindow: number;
  /** Connections reading the balances at once; default COPY_STREAMS. */
  readonly copyStreams?: number;
  /** Bound of the whole read on the client side; default READ_DEADLINE_MS. */
  readonly readDeadlineMs?: number;
}

/**
 * Reads partition p's state in one snapshot, then loads it into the engine, which must not
 * have been fed any command of p yet. A failed load leaves the engine unfit for p
 * (engine/partition_loader.ts): retrying needs a fresh engine.
 *
 * The balances are read over COPY_STREAMS connections at once, each a range of the heap, all
 * on the snapshot the first one exports: the COPY's backend is the bottleneck (the decoding
 * main thread idles 60% of the time), and two backends read 10 million balances in 3.4-4.4 s
 * where one takes 5.4-6.5 s (2-core VM). The read and the load do not overlap: handing the
 * engine batches of rows while the COPY still ran was measured slower (7.8-9.3 s against
 * 7.5 s for the whole recovery), since the backend, the decoding and the inserts then share
 * two cores and the inserts lose the locality of one sort over all rows.
 */
export async function recoverPartition(pgUrl: string, engine: EngineThread, options: RecoverPartitionOptions): Promise<PartitionRecovery> {
  const { partition, nextOffset, dedupWindow } = options;
  const table = engine.tableReader();
  const started = performance.now();
  const clients: pg.Client[] = [];
  let balances: RecoveredBalances;
  let outcomes: RecoveredOutcomes;
  try {
    for (let i = 0; i < (options.copyStreams ?? COPY_STREAMS); i++) {
      const client = new pg.Client({ connectionString: pgUrl, connectionTimeoutMillis: CONNECT_TIMEOUT_MS });
      // A connection lost mid-read fails the read's own promises; the event must not end the process.
      client.on('error', () => undefined);
      clients.push(client);
      await client.connect();
    }
    ({ balances, outcomes } = await withinDeadline(clients, options.readDeadlineMs ?? READ_DEADLINE_MS, `recovery of partition ${partition}`, async () => {
      const heapPages = await beginSharedSnapshot(clients);
      const read = {
        balances: await readBalances(clients, partition, table.capacity - table.count + table.entriesOfPartition(partition), heapPages),
        outcomes: await readOutcomes(clients[0]!, partition, dedupWindow),
      };
      await Promise.all(clients.map((client) => client.query('COMMIT')));
      return read;
    }));
  } finally {
    await Promise.all(clients.map((client) => closeWithin(client, CLOSE_GRACE_MS)));
  }
  assertBeforeNextOffset(partition, nextOffset, balances.lastOffsetMax, outcomes.kafkaOffsetMax);
  const read = performance.now();
  const report = await engine.loadPartition(partition, balances.buffer, balances.count, outcomes.buffer, outcomes.count);
  return { partition, balances, outcomes, report, readMs: read - started, loadMs: performance.now() - read };
}

/**
 * Starts a REPEATABLE READ READ ONLY transaction on every client, all on the snapshot the
 * first one exports; returns the balances heap's size in pages.
 */
async function beginSharedSnapshot(clients: readonly pg.Client[]): Promise<number> {
  const [first, ...others] = clients;
  await first!.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  const snapshot = (await first!.query<{ id: string; pages: string }>(
    "SELECT pg_export_snapshot() AS id, pg_relation_size('balances') / current_setting('block_size')::integer AS pages")).rows[0]!;
  if (!/^[0-9A-Fa-f-]+$/.test(snapshot.id)) throw new Error(`recovery: unexpected snapshot id ${snapshot.id}`);
  await Promise.all(others.map(async (client) => {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    // SET TRANSACTION SNAPSHOT takes no parameters; the id was checked above.
    await client.query(`SET TRANSACTION SNAPSHOT '${snapshot.id}'`);
  }));
  return Number(snapshot.pages);
}

/**
 * Balances, outcomes and next_offset commit in one transaction, so no stored row can come
 * from a command at or after next_offset; one that does means the database is not a state
 * this engine may resume from.
 */
function assertBeforeNextOffset(partition: number, nextOffset: number, lastOffsetMax: number, kafkaOffsetMax: number): void {
  if (lastOffsetMax >= nextOffset || kafkaOffsetMax >= nextOffset) {
    throw new Error(`recovery: partition ${partition} holds rows from offset ${Math.max(lastOffsetMax, kafkaOffsetMax)} but its lease says next_offset ${nextOffset}: the database broke the one-transaction-per-flush invariant`);
  }
}
