// Typed views over a buffer of command slots (layout: command_layout.ts), and a reader
// that turns one slot back into a plain object for tests, logs and debugging.
//
// Decoders write through these views by index arithmetic: no DataView, no allocation.
// The buffer (a SharedArrayBuffer in production) and every slot offset are 8-byte
// aligned, so each field lands on a whole element of its view.

import { SlotLayout } from './command_layout';
import { wordsToBigIntSigned, wordsToBigIntUnsigned } from './uint64_words';

export class CommandSlotViews {
  readonly bytes: Uint8Array;
  readonly u16: Uint16Array;
  readonly u32: Uint32Array;
  readonly f64: Float64Array;

  constructor(buffer: ArrayBufferLike) {
    if (buffer.byteLength % SlotLayout.SlotBytes !== 0) throw new Error(`command slots: buffer of ${buffer.byteLength} bytes is not a whole number of ${SlotLayout.SlotBytes}-byte slots`);
    this.bytes = new Uint8Array(buffer);
    this.u16 = new Uint16Array(buffer);
    this.u32 = new Uint32Array(buffer);
    this.f64 = new Float64Array(buffer);
  }

  get slotCount(): number {
    return this.bytes.length / SlotLayout.SlotBytes;
  }
}

export function createCommandSlotViews(slotCount: number, shared = true): CommandSlotViews {
  const size = slotCount * SlotLayout.SlotBytes;
  return new CommandSlotViews(shared ? new SharedArrayBuffer(size) : new ArrayBuffer(size));
}

export function assertSlotOffset(views: CommandSlotViews, slotOffset: number): void {
  if (!Number.isInteger(slotOffset) || slotOffset < 0 || slotOffset % 8 !== 0 || slotOffset + SlotLayout.SlotBytes > views.bytes.length) {
    throw new Error(`command slots: bad slot offset ${slotOffset}`);
  }
}

// clearSlot below zeroes the header and the tx_id field as sixteen 8-byte words.
if (SlotLayout.LegsOffset !== 16 * 8) throw new Error('command slots: clearSlot expects the legs at byte 128');

/**
 * Zeroes the slot before a command is written into it: ring slots are reused, and no byte
 * of an older command may survive. Invariant kept by every writer of slots: the legs at
 * index >= legCount are zero. So only the header, the tx_id field and the legs the
 * previous command used need clearing: for most commands two cache lines, not eight.
 */
export function clearSlot(views: CommandSlotViews, slotOffset: number): void {
  const f64 = views.f64;
  const first = slotOffset >> 3;
  const previousLegCount = views.bytes[slotOffset + SlotLayout.LegCountOffset];
  // The header and the tx_id field are two cache lines that every command writes anyway:
  // sixteen unconditional stores beat a loop whose bound depends on the previous tx_id.
  f64[first] = 0;
  f64[first + 1] = 0;
  f64[first + 2] = 0;
  f64[first + 3] = 0;
  f64[first + 4] = 0;
  f64[first + 5] = 0;
  f64[first + 6] = 0;
  f64[first + 7] = 0;
  f64[first + 8] = 0;
  f64[first + 9] = 0;
  f64[first + 10] = 0;
  f64[first + 11] = 0;
  f64[first + 12] = 0;
  f64[first + 13] = 0;
  f64[first + 14] = 0;
  f64[first + 15] = 0;
  if (previousLegCount !== 0) clearLegs(f64, first, previousLegCount <= SlotLayout.SettleLegsMax ? previousLegCount : SlotLayout.SettleLegsMax);
}

function clearLegs(f64: Float64Array, first: number, legCount: number): void {
  const legsEnd = first + ((SlotLayout.LegsOffset + legCount * SlotLayout.LegBytes) >> 3);
  for (let index = first + (SlotLayout.LegsOffset >> 3); index < legsEnd; index++) f64[index] = 0;
}

/** Zeroes every byte of the slot. */
export function clearWholeSlot(views: CommandSlotViews, slotOffset: number): void {
  const f64 = views.f64;
  const first = slotOffset >> 3;
  for (let index = first; index < first + SlotLayout.SlotBytes / 8; index++) f64[index] = 0;
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
  for (let leg = 0; leg < bytes[slotOffset + SlotLayout.LegCountOffset]; leg++) {
    const base = SlotLayout.LegsOffset + leg * SlotLayout.LegBytes;
    legs.push({
      account: unsigned(base + SlotLayout.LegAccountOffset),
      currency: u32[(slotOffset + base + SlotLayout.LegCurrencyOffset) >> 2],
      home: u32[(slotOffset + base + SlotLayout.LegHomeOffset) >> 2],
      availableDelta: signed(base + SlotLayout.LegAvailableDeltaOffset),
      frozenDelta: signed(base + SlotLayout.LegFrozenDeltaOffset),
    });
  }
  const txIdLength = bytes[slotOffset + SlotLayout.TxIdLengthOffset];
  return {
    type: bytes[slotOffset + SlotLayout.TypeOffset],
    rejectCode: bytes[slotOffset + SlotLayout.RejectCodeOffset],
    partition: u32[(slotOffset + SlotLayout.PartitionOffset) >> 2],
    offset: f64[(slotOffset + SlotLayout.KafkaOffsetOffset) >> 3],
    payloadHash: unsigned(SlotLayout.PayloadHashOffset),
    txIdHash: unsigned(SlotLayout.TxIdHashOffset),
    txId: Buffer.from(bytes.subarray(slotOffset + SlotLayout.TxIdOffset, slotOffset + SlotLayout.TxIdOffset + txIdLength)).toString('utf8'),
    account: unsigned(SlotLayout.AccountOffset),
    counterAccount: unsigned(SlotLayout.CounterAccountOffset),
    currency: u32[(slotOffset + SlotLayout.CurrencyOffset) >> 2],
    accountHome: u16[(slotOffset + SlotLayout.AccountHomeOffset) >> 1],
    counterHome: u16[(slotOffset + SlotLayout.CounterHomeOffset) >> 1],
    amount: signed(SlotLayout.AmountOffset),
    legs,
  };
}
