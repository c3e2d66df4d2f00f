// The state of one partition as recovery hands it to the engine: fixed-width rows in
// SharedArrayBuffers, written by persist/recovery.ts on the main thread from PostgreSQL's
// binary COPY and read by the engine worker (engine/partition_loader.ts) without copying
// and without one object per row. Declared once here so both sides agree on every byte.
//
// All integers little-endian; 64-bit integers as (lo u32, hi i32) word pairs, the layout of
// a BigInt64Array element (like the balance table and the command slot).
//
// BALANCE row (32 bytes), one per balances row of the partition, in any order:
//
//   byte 0               8                16               24         28         32
//       ┌────────────────┬────────────────┬────────────────┬──────────┬──────────┐
//       │ account (u64)  │ available (i64)│ frozen (i64)   │ currency │ reserved │
//       │                │                │                │  (u32)   │    0     │
//       └────────────────┴────────────────┴────────────────┴──────────┴──────────┘
//
// OUTCOME row (96 bytes, a multiple of 16 so the tx_id field is 16-byte aligned and zero
// padded, as hash64Aligned needs to hash it exactly like the decoders do). Rows are NEWEST
// FIRST (the order of `ORDER BY kafka_offset DESC LIMIT window`); the loader inserts them
// from the last row to the first, so the dedup window's FIFO eviction order is the log's.
//
//   byte 0                                   64         68                  72            80            88         96
//       ┌────────────────────────────────────┬──────────┬───────────────────┬─────────────┬─────────────┬──────────┐
//       │ txId bytes (UTF-8), zero padded    │txIdLength│ status | reason<<8│ kafkaOffset │ payloadHash │ reserved │
//       │            64                      │  (u32)   │      (u32)        │   (f64)     │   (u64)     │    0     │
//       └────────────────────────────────────┴──────────┴───────────────────┴─────────────┴─────────────┴──────────┘
//
// status is OutcomeStatus (1 accepted, 2 rejected), reason a RejectCode (0 when accepted).

import { TX_ID_BYTES } from './dedup_index';

export const BALANCE_ROW_BYTES = 32;
export const BALANCE_ROW_WORDS = BALANCE_ROW_BYTES / 4;
export const BALANCE_ACCOUNT_WORD = 0;
export const BALANCE_AVAILABLE_WORD = 2;
export const BALANCE_FROZEN_WORD = 4;
export const BALANCE_CURRENCY_WORD = 6;

export const OUTCOME_ROW_BYTES = 96;
export const OUTCOME_ROW_WORDS = OUTCOME_ROW_BYTES / 4;
export const OUTCOME_TX_ID_WORD = 0;
export const OUTCOME_TX_ID_BYTES = 64;
export const OUTCOME_TX_ID_LENGTH_WORD = 16;
export const OUTCOME_PACKED_WORD = 17;
export const OUTCOME_KAFKA_OFFSET_WORD = 18;
export const OUTCOME_PAYLOAD_HASH_WORD = 20;

function assertLayout(): void {
  for (const word of [BALANCE_ACCOUNT_WORD, BALANCE_AVAILABLE_WORD, BALANCE_FROZEN_WORD]) {
    if (word % 2 !== 0) throw new Error(`recovery layout: 64-bit balance field at word ${word} is not 8-byte aligned`);
  }
  if (BALANCE_CURRENCY_WORD >= BALANCE_ROW_WORDS) throw new Error('recovery layout: balance fields overflow the row');
  if (OUTCOME_ROW_BYTES % 16 !== 0) throw new Error('recovery layout: outcome rows must keep the tx_id 16-byte aligned');
  if (OUTCOME_TX_ID_BYTES !== TX_ID_BYTES || OUTCOME_TX_ID_LENGTH_WORD * 4 !== OUTCOME_TX_ID_BYTES) {
    throw new Error('recovery layout: the tx_id field must be the dedup index\'s 64 bytes, followed by its length');
  }
  for (const word of [OUTCOME_KAFKA_OFFSET_WORD, OUTCOME_PAYLOAD_HASH_WORD]) {
    if (word % 2 !== 0) throw new Error(`recovery layout: 64-bit outcome field at word ${word} is not 8-byte aligned`);
  }
  if (OUTCOME_PAYLOAD_HASH_WORD + 2 > OUTCOME_ROW_WORDS) throw new Error('recovery layout: outcome fields overflow the row');
}
assertLayout();
