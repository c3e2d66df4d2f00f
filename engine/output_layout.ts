// The engine's output as it travels through the output ring: fixed 128-byte slots. Every
// command produces one OUTCOME slot followed by ceil(legCount / 2) LEG slots (its journal
// legs, two per slot), so a command takes 1..7 consecutive slots (settle: at most 12 legs).
// Persistence turns outcomes into tx outcome rows and result events, and legs into journal
// rows and balance upserts (each leg carries the resulting balances).
//
// All integers little-endian; 64-bit integers as (lo u32, hi i32) word pairs, i.e. the layout
// of BigInt64Array elements; offsets and sequences as float64 (exact below 2^53).
//
// OUTCOME slot
//   offset size field
//      0    1  kind             SlotKind.Outcome
//      1    1  status           OutcomeStatus: 1 accepted, 2 rejected
//      2    1  reason           RejectCode (0 if accepted)
//      3    1  flags            OUTCOME_FLAG_DUPLICATE | OUTCOME_FLAG_RECORDED | OUTCOME_FLAG_CREDIT_OUT
//      4    1  legCount         journal legs that follow (0 for rejections and duplicates)
//      5    1  slotCount        slots this command takes, outcome slot included (1..7)
//      6    1  txIdLength
//      7    1  commandType      CommandType from the command slot
//      8    4  partition        Kafka partition of the command (u32)
//     12    4  reserved         0
//     16    8  kafkaOffset      offset of this command (f64)
//     24    8  sequence         engine sequence of this command (f64)
//     32    8  payloadHash      u64
//     40    8  originalOffset   offset of the command that recorded the outcome (f64): the
//                               same as kafkaOffset unless this is a duplicate replay
//     48    8  account          the command's account / transfer from / settle user (u64)
//     56    8  txIdHash         u64
//     64   64  txId             bytes; only the first txIdLength are defined
//    128       end
//
// LEG slot
//      0    1  kind             SlotKind.Legs
//      1    1  legsInSlot       1 or 2
//      2   14  reserved
//     16   48  leg 0            ┐ leg: +0 account (u64)  +8 currency (u32)  +12 partition (u32)
//     64   48  leg 1            ┘      +16 availableDelta (i64)  +24 frozenDelta (i64)
//                                      +32 resultingAvailable (i64)  +40 resultingFrozen (i64)
//    112   16  tail             reserved, except in the leg slot of an outcome flagged
//                               OUTCOME_FLAG_CREDIT_OUT (the credit a crossing transfer owes):
//    112    8    creditTo           the transfer's `to` (u64: lo word, then hi word)
//    120    4    creditToPartition  `to`'s home partition (u32)
//    124    4    zero
//                               Otherwise the tail is not written and its bytes are undefined.
//
//   ┌──────────── outcome ─────────────┐┌──────── legs ─────────┐┌──────── legs ─────────┐
//   │kind status reason flags … txId   ││hdr│ leg 0 │ leg 1 │tail││hdr│ leg 2 │ leg 3 │tail│ …
//   └──────────────────────────────────┘└───────────────────────┘└───────────────────────┘
//     0                             128  0   16      64     112 128
//
// Double entry: deposits and withdrawals post against system account 0 (external) of the
// command's partition; transfers whose `to` lives on another partition, and the credits that
// finish them there, against system account 3 (transit) of the command's partition. A leg's
// partition is the partition whose system account it is, and the command's partition (the
// account's home) for user accounts.
//
// A crossing transfer's credit is carried by its own output, not by a separate slot kind: it
// takes as many slots as a local transfer (outcome + 1 leg slot; legs 0 `from` -amount and
// 1 transit +amount), so the slot count of every command stays a function of its legs, and the
// amount and currency of the credit are those of leg 1. Its tail is in the same leg slot,
// which persistence reads anyway.

export const OUTPUT_SLOT_BYTES = 128;
export const LEGS_PER_SLOT = 2;
export const OUTPUT_SLOTS_PER_COMMAND_MAX = 7;

export const enum SlotKind {
  Outcome = 1,
  Legs = 2,
}

export const OUTCOME_FLAG_DUPLICATE = 1;
export const OUTCOME_FLAG_RECORDED = 2;
/**
 * An accepted transfer whose `to` lives on another partition: its legs moved the amount into
 * this partition's transit account, and its (first) leg slot's tail names the credit to send:
 * `to` at LEG_SLOT_CREDIT_TO_ACCOUNT_OFFSET, its home partition at LEG_SLOT_CREDIT_TO_PARTITION_OFFSET.
 * Never set on rejections nor on duplicate replays (they have no legs).
 */
export const OUTCOME_FLAG_CREDIT_OUT = 4;
/**
 * Never written by the engine: the fan-out's copy of a committed range marks the commands of
 * partitions that range did not commit (io/durable_slot_queue.ts), and reading skips them.
 */
export const OUTCOME_FLAG_NOT_COMMITTED = 0x80;
export const LEG_SLOT_CREDIT_TO_ACCOUNT_OFFSET = 112;
export const LEG_SLOT_CREDIT_TO_PARTITION_OFFSET = 120;
/** The tail's last four bytes: zero when the tail is written. */
export const LEG_SLOT_CREDIT_RESERVED_OFFSET = 124;

export const OUT_KIND_OFFSET = 0;
export const OUT_STATUS_OFFSET = 1;
export const OUT_REASON_OFFSET = 2;
export const OUT_FLAGS_OFFSET = 3;
export const OUT_LEG_COUNT_OFFSET = 4;
export const OUT_SLOT_COUNT_OFFSET = 5;
export const OUT_TX_ID_LENGTH_OFFSET = 6;
export const OUT_COMMAND_TYPE_OFFSET = 7;
export const OUT_PARTITION_OFFSET = 8;
export const OUT_RESERVED_OFFSET = 12;
export const OUT_KAFKA_OFFSET_OFFSET = 16;
export const OUT_SEQUENCE_OFFSET = 24;
export const OUT_PAYLOAD_HASH_OFFSET = 32;
export const OUT_ORIGINAL_OFFSET_OFFSET = 40;
export const OUT_ACCOUNT_OFFSET = 48;
export const OUT_TX_ID_HASH_OFFSET = 56;
export const OUT_TX_ID_OFFSET = 64;
export const OUT_TX_ID_BYTES = 64;

export const LEG_SLOT_KIND_OFFSET = 0;
export const LEG_SLOT_COUNT_OFFSET = 1;
export const LEG_SLOT_FIRST_LEG_OFFSET = 16;
export const OUT_LEG_BYTES = 48;
export const OUT_LEG_ACCOUNT_OFFSET = 0;
export const OUT_LEG_CURRENCY_OFFSET = 8;
export const OUT_LEG_PARTITION_OFFSET = 12;
export const OUT_LEG_AVAILABLE_DELTA_OFFSET = 16;
export const OUT_LEG_FROZEN_DELTA_OFFSET = 24;
export const OUT_LEG_RESULTING_AVAILABLE_OFFSET = 32;
export const OUT_LEG_RESULTING_FROZEN_OFFSET = 40;

/** Output slots taken by a command with `legCount` journal legs. */
export function outputSlotsFor(legCount: number): number {
  return 1 + ((legCount + LEGS_PER_SLOT - 1) >> 1);
}

/** Byte offset, within its leg slot, of leg number `legIndex` of a command. */
export function legOffsetInSlot(legIndex: number): number {
  return LEG_SLOT_FIRST_LEG_OFFSET + (legIndex & 1) * OUT_LEG_BYTES;
}

function assertLayout(): void {
  if (OUT_TX_ID_OFFSET + OUT_TX_ID_BYTES !== OUTPUT_SLOT_BYTES) throw new Error('output layout: txId must end the outcome slot');
  for (const offset of [OUT_KAFKA_OFFSET_OFFSET, OUT_SEQUENCE_OFFSET, OUT_PAYLOAD_HASH_OFFSET, OUT_ORIGINAL_OFFSET_OFFSET, OUT_ACCOUNT_OFFSET, OUT_TX_ID_HASH_OFFSET]) {
    if (offset % 8 !== 0) throw new Error(`output layout: 64-bit outcome field at ${offset} is not 8-byte aligned`);
  }
  for (let leg = 0; leg < LEGS_PER_SLOT; leg++) {
    const base = legOffsetInSlot(leg);
    for (const field of [OUT_LEG_ACCOUNT_OFFSET, OUT_LEG_AVAILABLE_DELTA_OFFSET, OUT_LEG_FROZEN_DELTA_OFFSET, OUT_LEG_RESULTING_AVAILABLE_OFFSET, OUT_LEG_RESULTING_FROZEN_OFFSET]) {
      if ((base + field) % 8 !== 0) throw new Error(`output layout: 64-bit leg field at ${base + field} is not 8-byte aligned`);
    }
  }
  if (legOffsetInSlot(LEGS_PER_SLOT - 1) + OUT_LEG_BYTES > OUTPUT_SLOT_BYTES) throw new Error('output layout: legs overflow the slot');
  if (legOffsetInSlot(LEGS_PER_SLOT - 1) + OUT_LEG_BYTES !== LEG_SLOT_CREDIT_TO_ACCOUNT_OFFSET) throw new Error('output layout: the credit tail must begin where leg 1 ends');
  if (LEG_SLOT_CREDIT_TO_ACCOUNT_OFFSET % 8 !== 0) throw new Error('output layout: the credit\'s `to` (u64) must be 8-byte aligned');
  if (LEG_SLOT_CREDIT_TO_ACCOUNT_OFFSET + 8 !== LEG_SLOT_CREDIT_TO_PARTITION_OFFSET || LEG_SLOT_CREDIT_TO_PARTITION_OFFSET + 4 !== LEG_SLOT_CREDIT_RESERVED_OFFSET || LEG_SLOT_CREDIT_RESERVED_OFFSET + 4 !== OUTPUT_SLOT_BYTES) {
    throw new Error('output layout: the credit tail (to u64, partition u32, zero u32) must fill the leg slot');
  }
  if (((OUTCOME_FLAG_CREDIT_OUT | OUTCOME_FLAG_NOT_COMMITTED) & (OUTCOME_FLAG_DUPLICATE | OUTCOME_FLAG_RECORDED)) !== 0 || (OUTCOME_FLAG_CREDIT_OUT & OUTCOME_FLAG_NOT_COMMITTED) !== 0) throw new Error('output layout: outcome flags must be distinct bits');
  if (outputSlotsFor(12) !== OUTPUT_SLOTS_PER_COMMAND_MAX) throw new Error('output layout: a 12-leg settle must take OUTPUT_SLOTS_PER_COMMAND_MAX slots');
  if (OUTPUT_SLOT_BYTES % 64 !== 0) throw new Error('output layout: slot must be a whole number of cache lines');
}
assertLayout();

/**
 * Where the engine writes its output, independent of the ring implementation. The caller
 * guarantees that at least OUTPUT_SLOTS_PER_COMMAND_MAX slots are free before each apply();
 * the engine claims the exact number it needs and writes them before apply() returns.
 */
export interface OutputRegion {
  /** The buffer that holds every slot (a SharedArrayBuffer for a real ring). */
  readonly buffer: ArrayBufferLike;
  /** Claims `slotCount` consecutive slots and returns the position of the first. */
  claim(slotCount: number): number;
  /** Byte offset in `buffer` of the slot at `position` (positions wrap around a ring). */
  slotByteOffset(position: number): number;
  /**
   * Optional, for the native core (engine/native/balance_core.c), which writes a run of
   * slots first and claims them after: the slot count of the region (a power of two; slot
   * `position` is at (position mod slotCount) x OUTPUT_SLOT_BYTES), the position the next
   * claim returns, and a wait until at least `slots` slots from it are free. awaitRoom()
   * returns the free slots (at most slotCount); none of them may be handed to anyone else
   * before the claim that follows. A region without these gets the TypeScript path.
   */
  readonly slotCount?: number;
  nextPosition?(): number;
  awaitRoom?(slots: number): number;
}

/** A decoded outcome slot (control plane and tests: allocates). */
export interface OutcomeRecord {
  readonly status: number;
  readonly reason: number;
  readonly flags: number;
  readonly legCount: number;
  readonly slotCount: number;
  readonly commandType: number;
  readonly partition: number;
  readonly kafkaOffset: number;
  readonly sequence: number;
  readonly payloadHash: bigint;
  readonly originalOffset: number;
  readonly account: bigint;
  readonly txIdHash: bigint;
  readonly txId: string;
}

export interface LegRecord {
  readonly account: bigint;
  readonly currency: number;
  readonly partition: number;
  readonly availableDelta: bigint;
  readonly frozenDelta: bigint;
  readonly resultingAvailable: bigint;
  readonly resultingFrozen: bigint;
}

/** The credit a crossing transfer owes (OUTCOME_FLAG_CREDIT_OUT), from its leg slot's tail. */
export interface CreditOutRecord {
  readonly to: bigint;
  readonly toPartition: number;
}

export function readOutcome(buffer: ArrayBufferLike, slotOffset: number): OutcomeRecord {
  const view = new DataView(buffer, slotOffset, OUTPUT_SLOT_BYTES);
  if (view.getUint8(OUT_KIND_OFFSET) !== SlotKind.Outcome) throw new Error(`output layout: slot at ${slotOffset} is not an outcome slot`);
  const txIdLength = view.getUint8(OUT_TX_ID_LENGTH_OFFSET);
  return {
    status: view.getUint8(OUT_STATUS_OFFSET),
    reason: view.getUint8(OUT_REASON_OFFSET),
    flags: view.getUint8(OUT_FLAGS_OFFSET),
    legCount: view.getUint8(OUT_LEG_COUNT_OFFSET),
    slotCount: view.getUint8(OUT_SLOT_COUNT_OFFSET),
    commandType: view.getUint8(OUT_COMMAND_TYPE_OFFSET),
    partition: view.getUint32(OUT_PARTITION_OFFSET, true),
    kafkaOffset: view.getFloat64(OUT_KAFKA_OFFSET_OFFSET, true),
    sequence: view.getFloat64(OUT_SEQUENCE_OFFSET, true),
    payloadHash: view.getBigUint64(OUT_PAYLOAD_HASH_OFFSET, true),
    originalOffset: view.getFloat64(OUT_ORIGINAL_OFFSET_OFFSET, true),
    account: view.getBigUint64(OUT_ACCOUNT_OFFSET, true),
    txIdHash: view.getBigUint64(OUT_TX_ID_HASH_OFFSET, true),
    txId: Buffer.from(buffer, slotOffset + OUT_TX_ID_OFFSET, txIdLength).toString('utf8'),
  };
}

/** Leg number `legIndex` of the command whose leg slot number `legIndex >> 1` is at `legSlotOffset`. */
export function readLeg(buffer: ArrayBufferLike, legSlotOffset: number, legIndex: number): LegRecord {
  if (new Uint8Array(buffer, legSlotOffset, 1)[0] !== SlotKind.Legs) throw new Error(`output layout: slot at ${legSlotOffset} is not a leg slot`);
  const view = new DataView(buffer, legSlotOffset + legOffsetInSlot(legIndex), OUT_LEG_BYTES);
  return {
    account: view.getBigUint64(OUT_LEG_ACCOUNT_OFFSET, true),
    currency: view.getUint32(OUT_LEG_CURRENCY_OFFSET, true),
    partition: view.getUint32(OUT_LEG_PARTITION_OFFSET, true),
    availableDelta: view.getBigInt64(OUT_LEG_AVAILABLE_DELTA_OFFSET, true),
    frozenDelta: view.getBigInt64(OUT_LEG_FROZEN_DELTA_OFFSET, true),
    resultingAvailable: view.getBigInt64(OUT_LEG_RESULTING_AVAILABLE_OFFSET, true),
    resultingFrozen: view.getBigInt64(OUT_LEG_RESULTING_FROZEN_OFFSET, true),
  };
}

/**
 * The tail of the leg slot at `legSlotOffset` of an outcome flagged OUTCOME_FLAG_CREDIT_OUT
 * (control plane and tests: allocates). The credit's amount and currency are leg 1's.
 */
export function readCreditOut(buffer: ArrayBufferLike, legSlotOffset: number): CreditOutRecord {
  const view = new DataView(buffer, legSlotOffset, OUTPUT_SLOT_BYTES);
  if (view.getUint8(LEG_SLOT_KIND_OFFSET) !== SlotKind.Legs) throw new Error(`output layout: slot at ${legSlotOffset} is not a leg slot`);
  return { to: view.getBigUint64(LEG_SLOT_CREDIT_TO_ACCOUNT_OFFSET, true), toPartition: view.getUint32(LEG_SLOT_CREDIT_TO_PARTITION_OFFSET, true) };
}
