// Typed views over a buffer of command slots (layout: command_layout.ts), and a reader
// that turns one slot back into a plain object for tests, logs and debugging.
//
// Decoders write through these views by index arithmetic: no DataView, no allocation.
// The buffer (a SharedArrayBuffer in production) and every slot offset are 8-byte
// aligned, so each field lands on a whole element of its view.

import {
  ACCOUNT_HOME_OFFSET,
  ACCOUNT_OFFSET,
  AMOUNT_OFFSET,
  COMMAND_SLOT_BYTES,
  COUNTER_ACCOUNT_OFFSET,
  COUNTER_HOME_OFFSET,
  CURRENCY_OFFSET,
  KAFKA_OFFSET_OFFSET,
  LEGS_OFFSET,
  LEG_ACCOUNT_OFFSET,
  LEG_AVAILABLE_DELTA_OFFSET,
  LEG_BYTES,
  LEG_COUNT_OFFSET,
  LEG_CURRENCY_OFFSET,
  LEG_FROZEN_DELTA_OFFSET,
  LEG_HOME_OFFSET,
  PARTITION_OFFSET,
  PAYLOAD_HASH_OFFSET,
  REJECT_CODE_OFFSET,
  SETTLE_LEGS_MAX,
  TX_ID_BYTES_MAX,
  TX_ID_HASH_OFFSET,
  TX_ID_LENGTH_OFFSET,
  TX_ID_OFFSET,
  TYPE_OFFSET,
} from './command_layout';
import { wordsToBigIntSigned, wordsToBigIntUnsigned } from './uint64_words';

export class CommandSlotViews {
  readonly bytes: Uint8Array;
  readonly u16: Uint16Array;
  readonly u32: Uint32Array;
  readonly f64: Float64Array;

  constructor(buffer: ArrayBufferLike) {
    if (buffer.byteLength % COMMAND_SLOT_BYTES !== 0) throw new Error(`command slots: buffer of ${buffer.byteLength} bytes is not a whole number of ${COMMAND_SLOT_BYTES}-byte slots`);
    this.bytes = new Uint8Array(buffer);
    this.u16 = new Uint16Array(buffer);
    this.u32 = new Uint32Array(buffer);
    this.f64 = new Float64Array(buffer);
  }

  get slotCount(): number {
    return this.bytes.length / COMMAND_SLOT_BYTES;
  }
}

export function createCommandSlotViews(slotCount: number, shared = true): CommandSlotViews {
  const size = slotCount * COMMAND_SLOT_BYTES;
  return new CommandSlotViews(shared ? new SharedArrayBuffer(size) : new ArrayBuffer(size));
}

export function assertSlotOffset(views: CommandSlotViews, slotOffset: number): void {
  if (!Number.isInteger(slotOffset) || slotOffset < 0 || slotOffset % 8 !== 0 || slotOffset + COMMAND_SLOT_BYTES > views.bytes.length) {
    throw new Error(`command slots: bad slot offset ${slotOffset}`);
  }
}

/**
 * Zeroes the slot before a command is written into it: ring slots are reused, and no byte
 * of an older command may survive. Invariants kept by every writer of slots: the tx_id
 * bytes at index >= txIdLength and the legs at index >= legCount are zero. So only the
 * header and what the previous command used need clearing: for most commands two cache
 * lines, not eight.
 */
export function clearSlot(views: CommandSlotViews, slotOffset: number): void {
  const f64 = views.f64;
  const first = slotOffset >> 3;
  const bytes = views.bytes;
  const previousTxIdLength = bytes[slotOffset + TX_ID_LENGTH_OFFSET];
  const previousLegCount = bytes[slotOffset + LEG_COUNT_OFFSET];
  const txIdEnd = TX_ID_OFFSET + (previousTxIdLength <= TX_ID_BYTES_MAX ? previousTxIdLength : TX_ID_BYTES_MAX);
  for (let index = first; index < first + ((txIdEnd + 7) >> 3); index++) f64[index] = 0;
  if (previousLegCount === 0) return;
  const legsEnd = LEGS_OFFSET + (previousLegCount <= SETTLE_LEGS_MAX ? previousLegCount : SETTLE_LEGS_MAX) * LEG_BYTES;
  for (let index = first + (LEGS_OFFSET >> 3); index < first + (legsEnd >> 3); index++) f64[index] = 0;
}

/** Zeroes every byte of the slot. */
export function clearWholeSlot(views: CommandSlotViews, slotOffset: number): void {
  const f64 = views.f64;
  const first = slotOffset >> 3;
  for (let index = first; index < first + COMMAND_SLOT_BYTES / 8; index++) f64[index] = 0;
}

/** Writes a 64-bit field as (lo, hi) words at slotOffset + fieldOffset. */
export function writeWords(views: CommandSlotViews, byteOffset: number, lo: number, hi: number): void {
  const index = byteOffset >> 2;
  views.u32[index] = lo;
  views.u32[index + 1] = hi;
}

export interface DecodedLeg {
  account: bigint;
  currency: number;
  home: number;
  availableDelta: bigint;
  frozenDelta: bigint;
}

export interface DecodedCommand {
  type: number;
  rejectCode: number;
  partition: number;
  offset: number;
  payloadHash: bigint;
  txIdHash: bigint;
  txId: string;
  account: bigint;
  counterAccount: bigint;
  currency: number;
  accountHome: number;
  counterHome: number;
  amount: bigint;
  legs: DecodedLeg[];
}

/** Reads one slot into a plain object (allocates; for tests, logs and tools). */
export function readCommandSlot(views: CommandSlotViews, slotOffset: number): DecodedCommand {
  const { bytes, u16, u32, f64 } = views;
  const unsigned = (at: number): bigint => wordsToBigIntUnsigned(u32[(slotOffset + at) >> 2], u32[((slotOffset + at) >> 2) + 1]);
  const signed = (at: number): bigint => wordsToBigIntSigned(u32[(slotOffset + at) >> 2], u32[((slotOffset + at) >> 2) + 1]);
  const legs: DecodedLeg[] = [];
  for (let leg = 0; leg < bytes[slotOffset + LEG_COUNT_OFFSET]; leg++) {
    const base = LEGS_OFFSET + leg * LEG_BYTES;
    legs.push({
      account: unsigned(base + LEG_ACCOUNT_OFFSET),
      currency: u32[(slotOffset + base + LEG_CURRENCY_OFFSET) >> 2],
      home: u32[(slotOffset + base + LEG_HOME_OFFSET) >> 2],
      availableDelta: signed(base + LEG_AVAILABLE_DELTA_OFFSET),
      frozenDelta: signed(base + LEG_FROZEN_DELTA_OFFSET),
    });
  }
  const txIdLength = bytes[slotOffset + TX_ID_LENGTH_OFFSET];
  return {
    type: bytes[slotOffset + TYPE_OFFSET],
    rejectCode: bytes[slotOffset + REJECT_CODE_OFFSET],
    partition: u32[(slotOffset + PARTITION_OFFSET) >> 2],
    offset: f64[(slotOffset + KAFKA_OFFSET_OFFSET) >> 3],
    payloadHash: unsigned(PAYLOAD_HASH_OFFSET),
    txIdHash: unsigned(TX_ID_HASH_OFFSET),
    txId: Buffer.from(bytes.subarray(slotOffset + TX_ID_OFFSET, slotOffset + TX_ID_OFFSET + txIdLength)).toString('utf8'),
    account: unsigned(ACCOUNT_OFFSET),
    counterAccount: unsigned(COUNTER_ACCOUNT_OFFSET),
    currency: u32[(slotOffset + CURRENCY_OFFSET) >> 2],
    accountHome: u16[(slotOffset + ACCOUNT_HOME_OFFSET) >> 1],
    counterHome: u16[(slotOffset + COUNTER_HOME_OFFSET) >> 1],
    amount: signed(AMOUNT_OFFSET),
    legs,
  };
}
