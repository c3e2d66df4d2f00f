// What both wire codecs (json_codec.ts, binary_codec.ts) do the same way when they fill a
// command slot: start it, keep the winning rejection, scale and write amounts, hash the
// tx_id, and finish a MALFORMED slot.
//
// Rejection precedence (so the code never depends on JSON key order or which leg came
// first): MALFORMED > UNKNOWN_CURRENCY > BAD_AMOUNT > AMOUNT_OVERFLOW.

import {
  ACCOUNT_OFFSET,
  KAFKA_OFFSET_OFFSET,
  LEGS_OFFSET,
  LEG_BYTES,
  LEG_COUNT_OFFSET,
  PARTITION_OFFSET,
  PAYLOAD_HASH_OFFSET,
  REJECT_CODE_OFFSET,
  TX_ID_HASH_OFFSET,
  TX_ID_LENGTH_OFFSET,
  TX_ID_OFFSET,
  TYPE_OFFSET,
} from './command_layout';
import { AmountSign, DecimalAmount, checkAmountSign, scaleDecimal } from './amount';
import { CommandSlotViews, clearSlot, writeWords } from './command_slot';
import { Hash64, hash64, hash64Aligned } from './hash64';
import { CanonicalPayload } from './payload_hash';
import { RejectCode } from './reject_code';

const hashScratch = new Hash64();

function rejectRank(code: RejectCode): number {
  switch (code) {
    case RejectCode.Malformed: return 4;
    case RejectCode.UnknownCurrency: return 3;
    case RejectCode.BadAmount: return 2;
    case RejectCode.AmountOverflow: return 1;
    default: return 0;
  }
}

/** The rejection that wins under the decoders' precedence. */
export function worseReject(current: RejectCode, next: RejectCode): RejectCode {
  return rejectRank(next) > rejectRank(current) ? next : current;
}

/** Zeroes the slot and writes where the command came from. */
export function beginSlot(views: CommandSlotViews, slotOffset: number, partition: number, offset: number): void {
  clearSlot(views, slotOffset);
  views.u32[(slotOffset + PARTITION_OFFSET) >> 2] = partition;
  views.f64[(slotOffset + KAFKA_OFFSET_OFFSET) >> 3] = offset;
}

/**
 * Copies the tx_id bytes[start..start+length) into the slot's tx_id field a word at a time
 * (the field is zero padded beyond them) and returns the OR of the words: its 0x80 bits
 * flag non-ASCII bytes, which the caller must check as UTF-8.
 */
export function copyTxIdIntoSlot(views: CommandSlotViews, slotOffset: number, bytes: Uint8Array, start: number, length: number): number {
  const words = views.u32;
  let index = (slotOffset + TX_ID_OFFSET) >> 2;
  let highBits = 0;
  let at = start;
  const end = start + length;
  for (const fullEnd = start + (length & ~3); at < fullEnd; at += 4) {
    const word = bytes[at] | (bytes[at + 1] << 8) | (bytes[at + 2] << 16) | (bytes[at + 3] << 24);
    words[index++] = word;
    highBits |= word;
  }
  if (at < end) {
    let word = 0;
    for (let shift = 0; at < end; at++, shift += 8) word |= bytes[at] << shift;
    words[index] = word;
    highBits |= word;
  }
  return highBits;
}

/** The tx_id bytes are already in the slot; writes their length and hash. */
export function finishTxId(views: CommandSlotViews, slotOffset: number, length: number): void {
  views.bytes[slotOffset + TX_ID_LENGTH_OFFSET] = length;
  // The tx_id field is 16-byte aligned and zero padded, as hash64Aligned needs.
  hash64Aligned(views.u32, (slotOffset + TX_ID_OFFSET) >> 2, length, 0, hashScratch);
  writeWords(views, slotOffset + TX_ID_HASH_OFFSET, hashScratch.lo, hashScratch.hi);
}

/** Forgets a tx_id that turned out unusable: length, hash and bytes back to zero. */
export function clearTxId(views: CommandSlotViews, slotOffset: number): void {
  views.bytes[slotOffset + TX_ID_LENGTH_OFFSET] = 0;
  writeWords(views, slotOffset + TX_ID_HASH_OFFSET, 0, 0);
  views.bytes.fill(0, slotOffset + TX_ID_OFFSET, slotOffset + LEGS_OFFSET);
}

/**
 * Finishes a slot whose command is well formed (possibly rejected for its currency or
 * amount): type, rejection and the hash of the canonical payload.
 */
export function finishCommand(views: CommandSlotViews, slotOffset: number, type: number, rejectCode: RejectCode, payload: CanonicalPayload): RejectCode {
  views.bytes[slotOffset + TYPE_OFFSET] = type;
  views.bytes[slotOffset + REJECT_CODE_OFFSET] = rejectCode;
  payload.hash(hashScratch);
  writeWords(views, slotOffset + PAYLOAD_HASH_OFFSET, hashScratch.lo, hashScratch.hi);
  return rejectCode;
}

/**
 * Finishes a MALFORMED slot: keeps type (0 if unknown), tx_id and where the message came
 * from, zeroes every command field, and hashes the raw message as the payload hash.
 */
export function finishMalformed(views: CommandSlotViews, slotOffset: number, type: number, message: Uint8Array, start: number, end: number): RejectCode {
  const f64 = views.f64;
  const legsEnd = LEGS_OFFSET + views.bytes[slotOffset + LEG_COUNT_OFFSET] * LEG_BYTES;
  for (let at = slotOffset + ACCOUNT_OFFSET; at < slotOffset + TX_ID_OFFSET; at += 8) f64[at >> 3] = 0;
  for (let at = slotOffset + LEGS_OFFSET; at < slotOffset + legsEnd; at += 8) f64[at >> 3] = 0;
  views.bytes[slotOffset + LEG_COUNT_OFFSET] = 0;
  views.bytes[slotOffset + TYPE_OFFSET] = type;
  views.bytes[slotOffset + REJECT_CODE_OFFSET] = RejectCode.Malformed;
  hash64(message, start, end, 0, hashScratch);
  writeWords(views, slotOffset + PAYLOAD_HASH_OFFSET, hashScratch.lo, hashScratch.hi);
  return RejectCode.Malformed;
}

/**
 * Applies the type's sign rule and the currency's scale to a read amount and writes the
 * minor units at byteOffset (0 when rejected). `scale` < 0 means the currency is unknown:
 * nothing is written and only the sign rule is checked.
 */
export function writeScaledAmount(views: CommandSlotViews, byteOffset: number, amount: DecimalAmount, scale: number, sign: AmountSign): RejectCode {
  const signCode = checkAmountSign(amount, sign);
  if (signCode !== RejectCode.None || scale < 0) return signCode;
  const code = scaleDecimal(amount, scale);
  if (code === RejectCode.None) writeWords(views, byteOffset, amount.minorLo, amount.minorHi);
  return code;
}
