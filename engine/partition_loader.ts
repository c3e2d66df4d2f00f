// Loads a recovered partition (engine/recovery_layout.ts rows, read from PostgreSQL by
// persist/recovery.ts) into the engine's balance table and the partition's dedup index. Runs
// on the engine thread, the only writer of both, between command batches and before any
// command of the partition is applied.
//
// Balances: user accounts (id >= 1000) are keyed with USER_PARTITION, system accounts with
// the partition itself, exactly as the engine keys them when it creates them. Outcomes: the
// tx_id hash is computed with hash64Aligned over the zero-padded 64-byte tx_id field, which
// is what the decoders do (command_writer.ts finishTxId), so a recovered tx_id is found by a
// later command carrying it; entries go in oldest first so FIFO eviction follows the log.
//
// Operating errors (a full table, a partition already assigned, a balance present on two
// partitions) throw PartitionLoadError with a message that says what to do; malformed rows
// are programmer errors of the recovery side and throw plain Errors. A load that fails once
// it has begun writing is undone (the partition released: its balances zeroed, its window
// dropped), so the caller, which must not feed the partition, may load it again later.
//
// Unload is release (BalanceEngine.releasePartition): the balance table never deletes an
// entry (its readers probe without locks, which relies on keys never moving), so a released
// partition's balances stay as zeroed entries of that home partition, which a later load
// overwrites.

import { BalanceEngine } from './balance_engine';
import { BalanceTable, PARTITIONS_MAX, USER_PARTITION_WORD, isUserAccount, keyHash } from './balance_table';
import { DedupIndex, OutcomeStatus } from './dedup_index';
import { Hash64, hash64Aligned } from './hash64';
import {
  BALANCE_ACCOUNT_WORD, BALANCE_AVAILABLE_WORD, BALANCE_CURRENCY_WORD, BALANCE_FROZEN_WORD, BALANCE_ROW_BYTES, BALANCE_ROW_WORDS,
  OUTCOME_KAFKA_OFFSET_WORD, OUTCOME_PACKED_WORD, OUTCOME_PAYLOAD_HASH_WORD, OUTCOME_ROW_BYTES, OUTCOME_ROW_WORDS,
  OUTCOME_TX_ID_BYTES, OUTCOME_TX_ID_LENGTH_WORD, OUTCOME_TX_ID_WORD,
} from './recovery_layout';

/** Below this many balances the rows go in as they come (sorting would cost more than it saves). */
const SORT_ROWS_MIN = 1 << 16;
/** A sort region spans 2^15 buckets (2 MiB of table) ... */
const SORT_REGION_BUCKET_BITS = 15;
/** ... and there are at most 2^12 regions, so the scatter's 4096 write heads stay in L2. */
const SORT_REGION_BITS_MAX = 12;

export class PartitionLoadError extends Error {
  override readonly name = 'PartitionLoadError';
}

export interface PartitionLoadResult {
  readonly balanceCount: number;
  readonly outcomeCount: number;
}

export interface PartitionState {
  readonly balances: SharedArrayBuffer;
  readonly balanceCount: number;
  readonly outcomes: SharedArrayBuffer;
  readonly outcomeCount: number;
}

/**
 * Loads a recovered partition in place of assign: its balances into the table (sorted by
 * table region first when there are many), then the newest outcomes that fit its window into
 * its dedup index, oldest first; the partition is assigned on the way. Throws
 * PartitionLoadError on operating errors.
 */
export function loadPartition(engine: BalanceEngine, partition: number, dedupWindow: number, state: PartitionState): PartitionLoadResult {
  if (!Number.isInteger(partition) || partition < 0 || partition >= PARTITIONS_MAX) throw new Error(`partition loader: partition ${partition} out of range`);
  assertRows('balance', state.balances, state.balanceCount, BALANCE_ROW_BYTES);
  assertRows('outcome', state.outcomes, state.outcomeCount, OUTCOME_ROW_BYTES);
  if (engine.dedupIndexOf(partition) !== null) {
    throw new PartitionLoadError(`partition ${partition} is already assigned to this engine: a partition is loaded once, in place of assign and before its first command; release it first to take it again`);
  }
  const table = engine.table;
  const room = table.free + table.entriesOfPartition(partition);
  if (state.balanceCount > room) {
    throw new PartitionLoadError(`balance table full: partition ${partition} has ${state.balanceCount} balances but only ${room} of ${table.capacity} are free; raise TALLY_BALANCE_CAPACITY`);
  }
  try {
    return loadRows(engine, partition, dedupWindow, state);
  } catch (error) {
    // Whatever was written is undone (balances zeroed, window dropped), so the partition can
    // be loaded again once the cause is fixed, instead of every retry finding the half-written
    // balances and calling them a conflict.
    engine.releasePartition(partition);
    if (error instanceof PartitionLoadError) throw error;
    if (table.free === 0) {
      // The room check counts the partition's released entries as reusable; keys new since then need more.
      throw new PartitionLoadError(`balance table full: partition ${partition} has ${state.balanceCount} balances, more new ones than the ${room} entries this table could give it (of ${table.capacity}); raise TALLY_BALANCE_CAPACITY`);
    }
    throw error;
  }
}

function loadRows(engine: BalanceEngine, partition: number, dedupWindow: number, state: PartitionState): PartitionLoadResult {
  const table = engine.table;
  let rows: Int32Array = new Int32Array(state.balances, 0, state.balanceCount * BALANCE_ROW_WORDS);
  if (state.balanceCount >= SORT_ROWS_MIN) rows = sortByTableRegion(table, rows, state.balanceCount, partition);
  const conflict = insertBalanceRows(table, rows, state.balanceCount, partition);
  if (conflict >= 0) throw balanceConflict(rows, conflict, partition);
  const dedup = engine.assignPartition(partition, { dedupWindow });
  // Only the newest `capacity` outcomes fit the window; rows are newest first.
  const outcomeCount = Math.min(state.outcomeCount, dedup.capacity);
  const duplicate = insertOutcomeRows(dedup, state.outcomes, outcomeCount);
  if (duplicate >= 0) {
    throw new PartitionLoadError(`partition ${partition}: tx_id ${JSON.stringify(txIdOfRow(state.outcomes, duplicate))} appears twice among the recovered outcomes`);
  }
  return { balanceCount: state.balanceCount, outcomeCount };
}

function assertRows(kind: string, buffer: SharedArrayBuffer, count: number, rowBytes: number): void {
  if (!Number.isSafeInteger(count) || count < 0 || count * rowBytes > buffer.byteLength) {
    throw new Error(`partition loader: ${count} ${kind} rows do not fit a buffer of ${buffer.byteLength} bytes`);
  }
}

/**
 * Inserts every balance row; returns -1, or the index (in `rows`) of the first row whose key
 * is already in the table (nothing of that row is written). A hot loop: primitive arguments
 * only.
 */
export function insertBalanceRows(table: BalanceTable, rows: Int32Array, count: number, partition: number): number {
  for (let row = 0; row < count; row++) {
    const base = row * BALANCE_ROW_WORDS;
    const accountLo = rows[base + BALANCE_ACCOUNT_WORD];
    const accountHi = rows[base + BALANCE_ACCOUNT_WORD + 1];
    const currency = rows[base + BALANCE_CURRENCY_WORD];
    // USER_PARTITION as the int32 word it is stored as: a uint32 of 2^31 or more would be
    // boxed on the heap at every call V8 does not inline.
    const keyPartition = isUserAccount(accountLo, accountHi) ? USER_PARTITION_WORD : partition;
    const bucket = table.find(accountLo, accountHi, currency, keyPartition);
    if (bucket >= 0) {
      // A balance this engine held before it released the partition (zeroed then) is
      // overwritten; one of another partition is a conflict.
      if (table.homePartition(bucket) !== partition || table.available(bucket) !== 0n || table.frozen(bucket) !== 0n) return row;
      table.write(bucket, rows[base + BALANCE_AVAILABLE_WORD], rows[base + BALANCE_AVAILABLE_WORD + 1], rows[base + BALANCE_FROZEN_WORD], rows[base + BALANCE_FROZEN_WORD + 1]);
      continue;
    }
    table.insert(
      accountLo, accountHi, currency, keyPartition,
      rows[base + BALANCE_AVAILABLE_WORD], rows[base + BALANCE_AVAILABLE_WORD + 1], rows[base + BALANCE_FROZEN_WORD], rows[base + BALANCE_FROZEN_WORD + 1],
      partition,
    );
  }
  return -1;
}

/**
 * The rows reordered by the region of the table their home bucket lies in (a counting sort
 * on the top bits of the bucket index), so that inserting them walks the table region by
 * region instead of jumping across it. Measured on the 2-core VM: 10 million inserts (find,
 * then insert) in recovery order into a 1 GiB table take 7-10 s, nearly all of it cache and
 * TLB misses (a page walk under nested paging costs several hundred ns); sorted, 0.5 s of
 * sort and 1.5-2.5 s of inserts. A region spans 2^SORT_REGION_BUCKET_BITS buckets (2 MiB,
 * within the last-level cache and the second-level TLB's reach); a finer split measured no
 * better and sorts slower. Uses the table's exported keyHash; were it ever to differ from
 * what insert() hashes with, only the locality would be lost, never a balance.
 */
export function sortByTableRegion(table: BalanceTable, rows: Int32Array, count: number, partition: number): Int32Array {
  const bucketBits = 31 - Math.clz32(table.bucketCount);
  const regionBits = Math.min(SORT_REGION_BITS_MAX, Math.max(0, bucketBits - SORT_REGION_BUCKET_BITS));
  const shift = bucketBits - regionBits;
  const regions = new Uint16Array(count);
  const starts = new Int32Array((1 << regionBits) + 1);
  for (let row = 0; row < count; row++) {
    const base = row * BALANCE_ROW_WORDS;
    const accountLo = rows[base + BALANCE_ACCOUNT_WORD];
    const accountHi = rows[base + BALANCE_ACCOUNT_WORD + 1];
    const keyPartition = isUserAccount(accountLo, accountHi) ? USER_PARTITION_WORD : partition;
    const region = (keyHash(accountLo, accountHi, rows[base + BALANCE_CURRENCY_WORD], keyPartition) & table.mask) >>> shift;
    regions[row] = region;
    starts[region + 1]++;
  }
  for (let region = 1; region < starts.length; region++) starts[region] += starts[region - 1];
  const sorted = new Int32Array(count * BALANCE_ROW_WORDS);
  for (let row = 0; row < count; row++) {
    const from = row * BALANCE_ROW_WORDS;
    const to = starts[regions[row]]++ * BALANCE_ROW_WORDS;
    for (let word = 0; word < BALANCE_ROW_WORDS; word++) sorted[to + word] = rows[from + word];
  }
  return sorted;
}

/**
 * Inserts outcome rows count-1 down to 0 (oldest first); returns -1, or the index of a row
 * whose tx_id is already in the window.
 */
export function insertOutcomeRows(dedup: DedupIndex, buffer: SharedArrayBuffer, count: number): number {
  const words = new Int32Array(buffer, 0, count * OUTCOME_ROW_WORDS);
  const unsigned = new Uint32Array(buffer, 0, count * OUTCOME_ROW_WORDS);
  const bytes = new Uint8Array(buffer, 0, count * OUTCOME_ROW_BYTES);
  const hash = new Hash64();
  for (let row = count - 1; row >= 0; row--) {
    const base = row * OUTCOME_ROW_WORDS;
    const txIdLength = words[base + OUTCOME_TX_ID_LENGTH_WORD];
    const packed = words[base + OUTCOME_PACKED_WORD];
    const status = packed & 0xff;
    if (txIdLength < 1 || txIdLength > OUTCOME_TX_ID_BYTES || (status !== OutcomeStatus.Accepted && status !== OutcomeStatus.Rejected)) {
      throw new Error(`partition loader: outcome row ${row} is malformed (txIdLength ${txIdLength}, status ${status})`);
    }
    hash64Aligned(unsigned, base + OUTCOME_TX_ID_WORD, txIdLength, 0, hash);
    if (dedup.find(hash.lo, hash.hi, bytes, (base + OUTCOME_TX_ID_WORD) * 4, txIdLength) >= 0) return row;
    dedup.insert(
      hash.lo, hash.hi, words, base + OUTCOME_TX_ID_WORD, txIdLength,
      words[base + OUTCOME_PAYLOAD_HASH_WORD], words[base + OUTCOME_PAYLOAD_HASH_WORD + 1],
      status, (packed >>> 8) & 0xff, words[base + OUTCOME_KAFKA_OFFSET_WORD], words[base + OUTCOME_KAFKA_OFFSET_WORD + 1],
    );
  }
  return -1;
}

function balanceConflict(rows: Int32Array, row: number, partition: number): PartitionLoadError {
  const base = row * BALANCE_ROW_WORDS;
  const account = (BigInt(rows[base + BALANCE_ACCOUNT_WORD + 1]! >>> 0) << 32n) | BigInt(rows[base + BALANCE_ACCOUNT_WORD]! >>> 0);
  return new PartitionLoadError(
    `partition ${partition}: the balance of account ${account} currency ${rows[base + BALANCE_CURRENCY_WORD]} is already in the table ` +
    '(the database holds it on two partitions, e.g. after the partition count changed); the load stopped there and the engine must be restarted once the database is repaired',
  );
}

function txIdOfRow(buffer: SharedArrayBuffer, row: number): string {
  const base = row * OUTCOME_ROW_BYTES;
  const length = new Int32Array(buffer, base, OUTCOME_ROW_WORDS)[OUTCOME_TX_ID_LENGTH_WORD]!;
  return Buffer.from(new Uint8Array(buffer, base + OUTCOME_TX_ID_WORD * 4, length)).toString('utf8');
}
