// What both wire codecs (json_codec.ts, binary_codec.ts) do the same way when they fill a
// command slot: start it, keep the winning rejection, scale and write amounts, hash the
// tx_id, and finish a MALFORMED slot.
//
// Rejection precedence (so the code never depends on JSON key order or which leg came
// first): MALFORMED > UNKNOWN_CURRENCY > BAD_AMOUNT > AMOUNT_OVERFLOW.

import { SlotLayout } from './command_layout';
import { AmountSign, DecimalAmount, checkAmountSign, scaleDecimal } from './amount';
import { CommandSlotViews, clearSlot, writeWords } from './command_slot';
import { Hash64, hash64, hash64Aligned, hash64CopyWords } from './hash64';
import { CanonicalPayload } from './payload_hash';
import { RejectCode } from './reject_code';

const hashScratch = new Hash64();

/** Rank of each RejectCode under the precedence above; codes the decoders never set rank 0. */
const REJECT_RANK = new Uint8Array(256);
REJECT_RANK[RejectCode.Malformed] = 4;
REJECT_RANK[RejectCode.UnknownCurrency] = 3;
REJECT_RANK[RejectCode.BadAmount] = 2;
REJECT_RANK[RejectCode.AmountOverflow] = 1;

/** The rejection that wins under the decoders' precedence. */
export function worseReject(current: RejectCode, next: RejectCode): RejectCode {
  return REJECT_RANK[next & 0xff] > REJECT_RANK[current & 0xff] ? next : current;
}

/** Zeroes the slot and writes where the command came from. */
export function beginSlot(views: CommandSlotViews, slotOffset: number, partition: number, offset: number): void {
  clearSlot(views, slotOffset);
  views.u32[(slotOffset + SlotLayout.PartitionOffset) >> 2] = partition;
  views.f64[(slotOffset + SlotLayout.KafkaOffsetOffset) >> 3] = offset;
}

/**
 * Writes the tx_id bytes[start..start+length) (1..64 bytes) into the slot's tx_id field,
 * a word at a time (the field is zero padded beyond them), with its length and hash.
 * Returns the OR of the copied words with hash64CopyWords' flags: its 0x80 bits are set
 * for non-ASCII bytes and for NUL bytes, and then the caller must check the tx_id as
 * UTF-8 without NUL (and clearTxId if it is not).
 */
export function writeTxIdBytes(views: CommandSlotViews, slotOffset: number, bytes: Uint8Array, start: number, length: number): number {
  const highBits = hash64CopyWords(bytes, start, start + length, views.u32, (slotOffset + SlotLayout.TxIdOffset) >> 2, 0, hashScratch);
  views.bytes[slotOffset + SlotLayout.TxIdLengthOffset] = length;
  writeWords(views, slotOffset + SlotLayout.TxIdHashOffset, hashScratch.lo, hashScratch.hi);
  return highBits;
}

/**
 * True if bytes[start, end) hold a NUL. PostgreSQL text cannot store one, so a tx_id with
 * a NUL could never be recorded: the decoders reject it as MALFORMED up front instead of
 * letting its flush fail (and retry) forever.
 */
export function containsNul(bytes: Uint8Array, start: number, end: number): boolean {
  for (let i = start; i < end; i++) if (bytes[i] === 0) return true;
  return false;
}

/**
 * containsNul for the tx_id of `length` bytes already in the slot, a word at a time: a
 * word w holds a zero byte exactly when (w - 0x01010101) & ~w & 0x80808080 is not zero.
 * The padding after the last byte is set to 0xff first so that it does not count.
 */
export function txIdHasNul(views: CommandSlotViews, slotOffset: number, length: number): boolean {
  const words = views.u32;
  const first = (slotOffset + SlotLayout.TxIdOffset) >> 2;
  const fullEnd = first + (length >> 2);
  let zeroBytes = 0;
  for (let index = first; index < fullEnd; index++) {
    const word = words[index] | 0;
    zeroBytes |= (word - 0x01010101) & ~word;
  }
  const tail = length & 3;
  if (tail !== 0) {
    const word = words[fullEnd] | PADDING_BYTES[tail];
    zeroBytes |= (word - 0x01010101) & ~word;
  }
  return (zeroBytes & 0x80808080) !== 0;
}

/** PADDING_BYTES[tail]: the bytes of a word past its first `tail` (1..3), all ones. */
const PADDING_BYTES = Int32Array.of(0, ~0xff, ~0xffff, ~0xffffff);

/** The tx_id bytes are already in the slot (a JSON string unescaped into it); writes their length and hash. */
export function finishTxId(views: CommandSlotViews, slotOffset: number, length: number): void {
  views.bytes[slotOffset + SlotLayout.TxIdLengthOffset] = length;
  // The tx_id field is 16-byte aligned and zero padded, as hash64Aligned needs.
  hash64Aligned(views.u32, (slotOffset + SlotLayout.TxIdOffset) >> 2, length, 0, hashScratch);
  writeWords(views, slotOffset + SlotLayout.TxIdHashOffset, hashScratch.lo, hashScratch.hi);
}

/** Forgets a tx_id that turned out unusable: length, hash and bytes back to zero. */
export function clearTxId(views: CommandSlotViews, slotOffset: number): void {
  views.bytes[slotOffset + SlotLayout.TxIdLengthOffset] = 0;
  writeWords(views, slotOffset + SlotLayout.TxIdHashOffset, 0, 0);
  views.bytes.fill(0, slotOffset + SlotLayout.TxIdOffset, slotOffset + SlotLayout.LegsOffset);
}

/**
 * Finishes a slot whose command is well formed (possibly rejected for its currency or
 * amount): type, rejection and the hash of the canonical payload.
 */
export function finishCommand(views: CommandSlotViews, slotOffset: number, type: number, rejectCode: RejectCode, payload: CanonicalPayload): RejectCode {
  views.bytes[slotOffset + SlotLayout.TypeOffset] = type;
  views.bytes[slotOffset + SlotLayout.RejectCodeOffset] = rejectCode;
  payload.hash(hashScratch);
  writeWords(views, slotOffset + SlotLayout.PayloadHashOffset, hashScratch.lo, hashScratch.hi);
  return rejectCode;
}

/**
 * Finishes a MALFORMED slot: keeps type (0 if unknown), tx_id and where the message came
 * from, zeroes every command field, and hashes the raw message as the payload hash.
 */
export function finishMalformed(views: CommandSlotViews, slotOffset: number, type: number, message: Uint8Array, start: number, end: number): RejectCode {
  const f64 = views.f64;
  const legsEnd = SlotLayout.LegsOffset + views.bytes[slotOffset + SlotLayout.LegCountOffset] * SlotLayout.LegBytes;
  for (let at = slotOffset + SlotLayout.AccountOffset; at < slotOffset + SlotLayout.TxIdOffset; at += 8) f64[at >> 3] = 0;
  for (let at = slotOffset + SlotLayout.LegsOffset; at < slotOffset + legsEnd; at += 8) f64[at >> 3] = 0;
  views.bytes[slotOffset + SlotLayout.LegCountOffset] = 0;
  views.bytes[slotOffset + SlotLayout.TypeOffset] = type;
  views.bytes[slotOffset + SlotLayout.RejectCodeOffset] = RejectCode.Malformed;
  hash64(message, start, end, 0, hashScratch);
  writeWords(views, slotOffset + SlotLayout.PayloadHashOffset, hashScratch.lo, hashScratch.hi);
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
