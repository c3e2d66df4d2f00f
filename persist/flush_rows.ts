// The rows a flush writes, from the engine's output slots of a ring range
// (engine/output_layout.ts), as binary COPY streams and one set of binary arrays
// (flush_task.ts sends them):
//
//   journal rows, COPYed straight into journal: one per leg of an accepted command
//     partition int4 │ kafka_offset int8 │ leg_index int2 │ tx_id text │ account int8 │
//     currency_id int2 │ delta_available int8 │ delta_frozen int8 │ kind int2 (journal_kind.ts)
//
//   outcome rows, COPYed straight into tx_outcomes (or, when a tx_id is recorded again, into
//   the staging table tally_staged_outcomes and upserted): one per outcome flagged
//   OUTCOME_FLAG_RECORDED
//     partition int4 │ tx_id text │ kafka_offset int8 │ accepted bool │ reason text (NULL if
//     accepted, else the RejectCode name) │ payload_hash int8 (the u64's bits)
//
//   balance rows, as one binary array per column (binary_arrays.ts) that the flush's final
//   statement unnests and upserts: one per balance the batch changed, from its last leg
//   (LastLegIndex)
//     partition int4 │ account int8 │ currency_id int2 │ available int8 │ frozen int8 │
//     last_offset int8
//
//   reply rows, COPYed straight into tx_replies (migration 007): one per outcome NOT flagged
//   OUTCOME_FLAG_RECORDED, so a republish after a crash can announce it too
//     partition int4 │ kafka_offset int8 │ tx_id text │ accepted bool │ reason text │
//     original_offset int8 (a duplicate replay's recorded offset, else NULL)
//
// What is written per command: duplicate replays (OUTCOME_FLAG_DUPLICATE) and other
// unrecorded outcomes (MALFORMED, DUPLICATE_TX_ID_CONFLICT, BALANCE_TABLE_FULL) write one
// reply row (their tx_id stays free in tx_outcomes); a recorded outcome writes one outcome
// row; an accepted one also its legs.
//
// Hot path: encodeFlushRows() walks the slots through typed views of the ring's
// SharedArrayBuffer and appends to reusable encoders; it allocates nothing.

import {
  LEG_SLOT_CREDIT_TO_ACCOUNT_OFFSET, LEG_SLOT_CREDIT_TO_PARTITION_OFFSET, OUTCOME_FLAG_CREDIT_OUT, OUTCOME_FLAG_RECORDED, OUTPUT_SLOT_BYTES, OUT_ACCOUNT_OFFSET, OUT_COMMAND_TYPE_OFFSET, OUT_FLAGS_OFFSET,
  OUT_KAFKA_OFFSET_OFFSET, OUT_KIND_OFFSET, OUT_LEG_ACCOUNT_OFFSET, OUT_LEG_AVAILABLE_DELTA_OFFSET, OUT_LEG_COUNT_OFFSET,
  OUT_LEG_CURRENCY_OFFSET, OUT_LEG_FROZEN_DELTA_OFFSET, OUT_LEG_PARTITION_OFFSET, OUT_LEG_RESULTING_AVAILABLE_OFFSET,
  OUT_LEG_RESULTING_FROZEN_OFFSET, OUT_PARTITION_OFFSET, OUT_PAYLOAD_HASH_OFFSET, OUT_REASON_OFFSET,
  OUT_SLOT_COUNT_OFFSET, OUT_STATUS_OFFSET, OUTCOME_FLAG_DUPLICATE, OUT_ORIGINAL_OFFSET_OFFSET, OUT_TX_ID_LENGTH_OFFSET, OUT_TX_ID_OFFSET, SlotKind, legOffsetInSlot,
} from '../engine/output_layout';
import { PARTITIONS_MAX } from '../engine/balance_table';
import { rejectCodeName } from '../engine/reject_code';
import { journalKind } from './journal_kind';
import type { CopyEncoder } from './copy_encoder';
import { BinaryArrayColumns, INT2_OID, INT4_OID, INT8_OID } from './binary_arrays';
import { BinaryCopyEncoder } from './copy_binary';
import { LastLegIndex } from './last_leg_index';

// pg_temp: the session's own temporary table, whatever search_path says.
export const STAGED_OUTCOMES_TABLE = 'pg_temp.tally_staged_outcomes';
export const JOURNAL_COLUMNS = 'partition, kafka_offset, leg_index, tx_id, account, currency_id, delta_available, delta_frozen, kind';
export const OUTCOME_COLUMNS = 'partition, tx_id, kafka_offset, accepted, reason, payload_hash';
export const BALANCE_COLUMNS = 'partition, account, currency_id, available, frozen, last_offset';
export const OUTBOX_COLUMNS = 'partition, kafka_offset, tx_id, from_account, to_account, to_partition, currency_id, amount';
export const REPLY_COLUMNS = 'partition, kafka_offset, tx_id, accepted, reason, original_offset';
const REPLY_FIELDS = 6;
const OUTBOX_FIELDS = 8;
const JOURNAL_FIELDS = 9;
const OUTCOME_FIELDS = 6;
const BALANCE_FIELDS = 6;
/** Element types of the balance arrays, in BALANCE_COLUMNS order; flush_task.ts's UPSERT_BALANCES_ADVANCE_OFFSETS_SQL casts them the same way. */
const BALANCE_TYPES = [INT4_OID, INT8_OID, INT2_OID, INT8_OID, INT8_OID, INT8_OID];
const OUTCOME_STATUS_ACCEPTED = 1;
const CURRENCY_IDS = 1 << 16;

function assertRowShapes(): void {
  const fields = (columns: string): number => columns.split(',').length;
  if (fields(JOURNAL_COLUMNS) !== JOURNAL_FIELDS || fields(OUTCOME_COLUMNS) !== OUTCOME_FIELDS || fields(BALANCE_COLUMNS) !== BALANCE_FIELDS
    || fields(REPLY_COLUMNS) !== REPLY_FIELDS
    || BALANCE_TYPES.length !== BALANCE_FIELDS) {
    throw new Error('flush rows: field counts must match the column lists');
  }
}
assertRowShapes();

/**
 * Per session: the temporary staging table of the rare outcome upsert (a tx_id recorded again),
 * without indexes (its rows are read once, in full). It keeps its rows across commits: the
 * upsert empties it first. ON COMMIT DELETE ROWS would truncate it, its TOAST table and the
 * TOAST index at every COMMIT of every flush, whether it was used or not (PostgreSQL truncates
 * all such tables once a transaction touched any temporary table).
 */
export const CREATE_STAGING_TABLES_SQL = `
  CREATE TEMP TABLE IF NOT EXISTS ${STAGED_OUTCOMES_TABLE} (
    partition integer, tx_id text, kafka_offset bigint, accepted boolean, reason text, payload_hash bigint
  );`;

/** Where a flush's rows go: the COPY encoders, the balance arrays, the last-leg index and the currency ids seen. */
export class FlushRows {
  readonly lastLegs = new LastLegIndex();
  /** Distinct currency ids of the legs, in first-seen order: currencyIds[0..currencyCount). */
  readonly currencyIds = new Int32Array(CURRENCY_IDS);
  currencyCount = 0;
  private readonly currencySeen = new Uint8Array(CURRENCY_IDS);

  /** Credits owed to other partitions (accepted cross-partition transfers), for transfer_outbox. */
  readonly outbox: CopyEncoder;

  /** Outcomes not recorded in tx_outcomes (duplicates, conflicts, malformed, table full), for tx_replies. */
  readonly replies: CopyEncoder;

  /** One binary array per balance column (BALANCE_COLUMNS order). */
  readonly balances = new BinaryArrayColumns(BALANCE_TYPES, 1 << 14);

  constructor(readonly journal: CopyEncoder, readonly outcomes: CopyEncoder, outbox?: CopyEncoder, replies?: CopyEncoder) {
    this.outbox = outbox ?? new BinaryCopyEncoder(1 << 16);
    this.replies = replies ?? new BinaryCopyEncoder(1 << 16);
  }

  reset(): void {
    this.outbox.reset();
    this.replies.reset();
    this.journal.reset();
    this.outcomes.reset();
    this.balances.reset();
    this.lastLegs.clear();
    for (let i = 0; i < this.currencyCount; i++) this.currencySeen[this.currencyIds[i]!] = 0;
    this.currencyCount = 0;
  }

  noteCurrency(currency: number): void {
    if (this.currencySeen[currency] === 1) return;
    this.currencySeen[currency] = 1;
    this.currencyIds[this.currencyCount++] = currency;
  }
}

/** Typed views of an output ring's slots (one set per ring buffer). */
export class OutputRingView {
  readonly bytes: Uint8Array;
  readonly words: Int32Array;
  readonly floats: Float64Array;
  readonly mask: number;

  constructor(readonly data: ArrayBufferLike, readonly slotCount: number, slotBytes: number) {
    if (slotBytes !== OUTPUT_SLOT_BYTES) throw new Error(`output ring: slots of ${slotBytes} bytes, expected ${OUTPUT_SLOT_BYTES}`);
    if (slotCount < 1 || (slotCount & (slotCount - 1)) !== 0 || data.byteLength !== slotCount * slotBytes) {
      throw new Error(`output ring: ${data.byteLength} bytes do not hold ${slotCount} slots (a power of two) of ${slotBytes} bytes`);
    }
    this.bytes = new Uint8Array(data);
    this.words = new Int32Array(data);
    this.floats = new Float64Array(data);
    this.mask = slotCount - 1;
  }

  slotOffset(position: number): number {
    return (position & this.mask) * OUTPUT_SLOT_BYTES;
  }
}

/**
 * Which partitions a flush writes, and what it found of each: `indexOf[partition]` is the
 * partition's index in `partitions` plus one (0: not selected). Commands of a selected
 * partition below `offsetMin[index]` are skipped (already durable). Reused across flushes.
 */
export class PartitionSelection {
  readonly indexOf = new Int32Array(PARTITIONS_MAX);
  readonly offsetMin = new Float64Array(PARTITIONS_MAX);
  readonly firstOffset = new Float64Array(PARTITIONS_MAX);
  readonly lastOffset = new Float64Array(PARTITIONS_MAX);
  readonly commandCount = new Float64Array(PARTITIONS_MAX);
  private selected: readonly number[] = [];

  get partitions(): readonly number[] {
    return this.selected;
  }

  select(partitions: readonly number[]): void {
    this.clear();
    partitions.forEach((partition, index) => {
      if (!Number.isInteger(partition) || partition < 0 || partition >= PARTITIONS_MAX) throw new Error(`flush: partition ${partition} out of range`);
      if (this.indexOf[partition] !== 0) throw new Error(`flush: partition ${partition} selected twice`);
      this.indexOf[partition] = index + 1;
      this.offsetMin[index] = -1;
    });
    this.selected = partitions;
  }

  /** Forgets the statistics of the last scan (keeps the selection and offsetMin). */
  resetCounts(): void {
    for (let index = 0; index < this.selected.length; index++) {
      this.firstOffset[index] = -1;
      this.lastOffset[index] = -1;
      this.commandCount[index] = 0;
    }
  }

  clear(): void {
    for (const partition of this.selected) this.indexOf[partition] = 0;
    this.selected = [];
  }
}

// The reason names as UTF-8 bytes, so rows copy them without building strings.
const REASON_CODES = 256;
const reasonStarts = new Int32Array(REASON_CODES).fill(-1);
const reasonLengths = new Int32Array(REASON_CODES);
const reasonBytes = ((): Uint8Array => {
  const names: string[] = [];
  for (let code = 0; code < REASON_CODES; code++) {
    try {
      names[code] = rejectCodeName(code);
    } catch {
      break;
    }
  }
  const all = Buffer.from(names.join(''), 'ascii');
  let start = 0;
  names.forEach((name, code) => {
    reasonStarts[code] = start;
    reasonLengths[code] = name.length;
    start += name.length;
  });
  return new Uint8Array(all.buffer, all.byteOffset, all.length);
})();

/**
 * Encodes the rows of every selected partition's commands in ring positions
 * [firstPosition, lastPosition] (whole commands) into `rows`, after resetting it, and fills
 * the selection's per-partition statistics.
 */
export function encodeFlushRows(ring: OutputRingView, firstPosition: number, lastPosition: number, selection: PartitionSelection, rows: FlushRows): void {
  rows.reset();
  selection.resetCounts();
  const bytes = ring.bytes;
  const indexOf = selection.indexOf;
  let position = firstPosition;
  while (position <= lastPosition) {
    const slot = ring.slotOffset(position);
    const slotCount = bytes[slot + OUT_SLOT_COUNT_OFFSET]!;
    if (bytes[slot + OUT_KIND_OFFSET] !== SlotKind.Outcome || slotCount < 1) throw new Error(`flush: ring position ${position} is not a command's outcome slot`);
    const partition = ring.words[(slot + OUT_PARTITION_OFFSET) >> 2]!;
    const index = partition >= 0 && partition < PARTITIONS_MAX ? indexOf[partition]! - 1 : -1;
    if (index >= 0) {
      const offset = ring.floats[(slot + OUT_KAFKA_OFFSET_OFFSET) >> 3]!;
      if (offset >= selection.offsetMin[index]!) {
        if (selection.commandCount[index] === 0) selection.firstOffset[index] = offset;
        else if (!(offset > selection.lastOffset[index]!)) throw new Error(`flush: partition ${partition} offset ${offset} after ${selection.lastOffset[index]} at ring position ${position}`);
        selection.lastOffset[index] = offset;
        selection.commandCount[index]!++;
        encodeCommand(ring, position, slot, partition, offset, rows);
      }
    }
    position += slotCount;
  }
  if (position !== lastPosition + 1) throw new Error(`flush: ring range ${firstPosition}..${lastPosition} ends inside a command (next command at ${position})`);
  encodeBalances(ring, rows);
}

function encodeCommand(ring: OutputRingView, position: number, slot: number, partition: number, offset: number, rows: FlushRows): void {
  const bytes = ring.bytes;
  if ((bytes[slot + OUT_FLAGS_OFFSET]! & OUTCOME_FLAG_RECORDED) === 0) {
    encodeReply(ring, position, slot, partition, offset, rows);
    return;
  }
  const txIdLength = bytes[slot + OUT_TX_ID_LENGTH_OFFSET]!;
  const accepted = bytes[slot + OUT_STATUS_OFFSET] === OUTCOME_STATUS_ACCEPTED;
  const outcomes = rows.outcomes;
  outcomes.beginRow(OUTCOME_FIELDS);
  outcomes.int4(partition);
  outcomes.textBytes(bytes, slot + OUT_TX_ID_OFFSET, txIdLength);
  outcomes.int8(offset);
  outcomes.bool(accepted);
  encodeReason(outcomes, bytes, slot, accepted, position);
  outcomes.int8LittleEndian(bytes, slot + OUT_PAYLOAD_HASH_OFFSET);
  outcomes.endRow();
  const legCount = bytes[slot + OUT_LEG_COUNT_OFFSET]!;
  for (let leg = 0; leg < legCount; leg++) encodeLeg(ring, position, slot, leg, partition, offset, txIdLength, rows);
  if (accepted && (bytes[slot + OUT_FLAGS_OFFSET]! & OUTCOME_FLAG_CREDIT_OUT) !== 0) encodeCredit(ring, position, slot, partition, offset, txIdLength, rows);
}

/** The reject code's name, or NULL for an accepted outcome. */
function encodeReason(encoder: CopyEncoder, bytes: Uint8Array, slot: number, accepted: boolean, position: number): void {
  const reason = bytes[slot + OUT_REASON_OFFSET]!;
  if (accepted) encoder.nullValue();
  else if (reasonStarts[reason]! < 0) throw new Error(`flush: unknown reject code ${reason} at ring position ${position}`);
  else encoder.textBytes(reasonBytes, reasonStarts[reason]!, reasonLengths[reason]!);
}

// An outcome tx_outcomes does not record: what its result event said, so a republish can say it again.
function encodeReply(ring: OutputRingView, position: number, slot: number, partition: number, offset: number, rows: FlushRows): void {
  const bytes = ring.bytes;
  const accepted = bytes[slot + OUT_STATUS_OFFSET] === OUTCOME_STATUS_ACCEPTED;
  const replies = rows.replies;
  replies.beginRow(REPLY_FIELDS);
  replies.int4(partition);
  replies.int8(offset);
  replies.textBytes(bytes, slot + OUT_TX_ID_OFFSET, bytes[slot + OUT_TX_ID_LENGTH_OFFSET]!);
  replies.bool(accepted);
  encodeReason(replies, bytes, slot, accepted, position);
  if ((bytes[slot + OUT_FLAGS_OFFSET]! & OUTCOME_FLAG_DUPLICATE) !== 0) replies.int8(ring.floats[(slot + OUT_ORIGINAL_OFFSET_OFFSET) >> 3]!);
  else replies.nullValue();
  replies.endRow();
}

// The credit a cross-partition transfer owes: legs 0 (`from`, −amount) and 1 (transit, +amount)
// share the first leg slot, whose tail names `to` and its partition (output_layout.ts).
function encodeCredit(ring: OutputRingView, position: number, slot: number, partition: number, offset: number, txIdLength: number, rows: FlushRows): void {
  const bytes = ring.bytes;
  const legSlot = ring.slotOffset(position + 1);
  const outbox = rows.outbox;
  outbox.beginRow(OUTBOX_FIELDS);
  outbox.int4(partition);
  outbox.int8(offset);
  outbox.textBytes(bytes, slot + OUT_TX_ID_OFFSET, txIdLength);
  outbox.int8LittleEndian(bytes, slot + OUT_ACCOUNT_OFFSET);
  outbox.int8LittleEndian(bytes, legSlot + LEG_SLOT_CREDIT_TO_ACCOUNT_OFFSET);
  outbox.int4(ring.words[(legSlot + LEG_SLOT_CREDIT_TO_PARTITION_OFFSET) >> 2]!);
  outbox.int2(ring.words[(legSlot + legOffsetInSlot(1) + OUT_LEG_CURRENCY_OFFSET) >> 2]!);
  outbox.int8LittleEndian(bytes, legSlot + legOffsetInSlot(1) + OUT_LEG_AVAILABLE_DELTA_OFFSET);
  outbox.endRow();
}

function encodeLeg(ring: OutputRingView, position: number, slot: number, leg: number, partition: number, offset: number, txIdLength: number, rows: FlushRows): void {
  const bytes = ring.bytes;
  const words = ring.words;
  const legSlot = ring.slotOffset(position + 1 + (leg >> 1));
  if (bytes[legSlot + OUT_KIND_OFFSET] !== SlotKind.Legs) throw new Error(`flush: ring position ${position + 1 + (leg >> 1)} is not a leg slot`);
  const at = legSlot + legOffsetInSlot(leg);
  // Legs live on the command's partition (output_layout.ts): a flush writes its own partitions only.
  if (words[(at + OUT_LEG_PARTITION_OFFSET) >> 2] !== partition) throw new Error(`flush: leg ${leg} at ring position ${position} is on partition ${words[(at + OUT_LEG_PARTITION_OFFSET) >> 2]}, not ${partition}`);
  const accountWord = (at + OUT_LEG_ACCOUNT_OFFSET) >> 2;
  const ownAccountWord = (slot + OUT_ACCOUNT_OFFSET) >> 2;
  const accountLo = words[accountWord]!;
  const accountHi = words[accountWord + 1]!;
  const currency = words[(at + OUT_LEG_CURRENCY_OFFSET) >> 2]!;
  if (currency < 1 || currency >= CURRENCY_IDS) throw new Error(`flush: leg ${leg} at ring position ${position} has currency id ${currency}`);
  const journal = rows.journal;
  journal.beginRow(JOURNAL_FIELDS);
  journal.int4(partition);
  journal.int8(offset);
  journal.int2(leg);
  journal.textBytes(bytes, slot + OUT_TX_ID_OFFSET, txIdLength);
  journal.int8LittleEndian(bytes, at + OUT_LEG_ACCOUNT_OFFSET);
  journal.int2(currency);
  journal.int8LittleEndian(bytes, at + OUT_LEG_AVAILABLE_DELTA_OFFSET);
  journal.int8LittleEndian(bytes, at + OUT_LEG_FROZEN_DELTA_OFFSET);
  journal.int2(journalKind(bytes[slot + OUT_COMMAND_TYPE_OFFSET]!, accountLo === words[ownAccountWord] && accountHi === words[ownAccountWord + 1]));
  journal.endRow();
  rows.lastLegs.offer(partition, accountLo, accountHi, currency, at, offset);
  rows.noteCurrency(currency);
}

/** One balance row per balance the batch changed, with the resulting balances of its last leg. */
function encodeBalances(ring: OutputRingView, rows: FlushRows): void {
  const bytes = ring.bytes;
  const words = ring.words;
  const lastLegs = rows.lastLegs;
  const balances = rows.balances;
  for (let i = 0; i < lastLegs.size; i++) {
    const at = lastLegs.legOffsetAt(i);
    balances.beginRow();
    balances.int4(words[(at + OUT_LEG_PARTITION_OFFSET) >> 2]!);
    balances.int8LittleEndian(bytes, at + OUT_LEG_ACCOUNT_OFFSET);
    balances.int2(words[(at + OUT_LEG_CURRENCY_OFFSET) >> 2]!);
    balances.int8LittleEndian(bytes, at + OUT_LEG_RESULTING_AVAILABLE_OFFSET);
    balances.int8LittleEndian(bytes, at + OUT_LEG_RESULTING_FROZEN_OFFSET);
    balances.int8(lastLegs.kafkaOffsetAt(i));
    balances.endRow();
  }
}
