// Compact binary encoding of the seven commands: encoder for producers, decoder into a
// command slot. All integers little-endian; full table in docs/wire-format.md.
//
//   offset  size  field
//   0       1     version = BINARY_VERSION_1 (0xB1; never a valid first byte of JSON text)
//   1       1     type (CommandType 1..7)
//   2       1     txIdLength T (1..64)
//   3       8     account u64 (deposit/withdraw/freeze/unfreeze/credit: account; transfer:
//                 from; settle: the user account)
//   11      T     tx_id bytes (UTF-8)
//   11+T          body:
//     deposit, withdraw, freeze, unfreeze, credit:  currency, amount
//     transfer:                             to u64, currency, amount
//     settle:                               legCount u8 (1..12), legs
//   currency = u8 length C (1..16) + C bytes of the code (independent of registry ids)
//   amount   = i64 mantissa + u8 scale (0..18): value = mantissa / 10^scale, exactly the
//              decimal string's digits ("100.25" -> 10025, 2; "1.10" -> 110, 2)
//   leg      = account u64, currency, available amount, frozen amount
//   The message ends exactly after the last field.
//
// Amounts travel as (mantissa, scale) rather than minor units of a registry, so encoding
// needs no registry and a producer with a stale scale can never be misread by a power of
// ten: the decoder applies the same rules as to the JSON string (more digits than the
// currency's scale -> BAD_AMOUNT, out of i64 after scaling -> AMOUNT_OVERFLOW).

import { CommandType, SlotLayout } from './command_layout';
import { AMOUNT_SCALE_MAX, AmountSign, DecimalAmount, readDecimalMantissa } from './amount';
import { CommandSlotViews } from './command_slot';
import { beginSlot, clearTxId, finishCommand, finishMalformed, txIdHasNul, worseReject, writeScaledAmount, writeTxIdBytes } from './command_writer';
import { CURRENCY_CODE_BYTES_MAX, CurrencyRegistry, UNKNOWN_CURRENCY_ID, codeWordAt } from './currency_registry';
import { homePartitionOfAccountWords } from './partitioner';
import { CanonicalPayload } from './payload_hash';
import { RejectCode } from './reject_code';
import { SAFE_HIGH_WORD_LIMIT, TWO_POW_32 } from './uint64_words';
import { isValidUtf8 } from './utf8';

/** The fixed part of the message; a const enum so the decoder's uses are literals. */
export const enum BinaryLayout {
  Version1 = 0xb1,
  VersionOffset = 0,
  TypeOffset = 1,
  TxIdLengthOffset = 2,
  AccountOffset = 3,
  TxIdOffset = 11,
  AccountBytes = 8,
  AmountBytes = 9,
}

export const BINARY_VERSION_1 = BinaryLayout.Version1;
export const BINARY_VERSION_OFFSET = BinaryLayout.VersionOffset;
export const BINARY_TYPE_OFFSET = BinaryLayout.TypeOffset;
export const BINARY_TX_ID_LENGTH_OFFSET = BinaryLayout.TxIdLengthOffset;
export const BINARY_ACCOUNT_OFFSET = BinaryLayout.AccountOffset;
export const BINARY_TX_ID_OFFSET = BinaryLayout.TxIdOffset;
export const BINARY_ACCOUNT_BYTES = BinaryLayout.AccountBytes;
export const BINARY_AMOUNT_BYTES = BinaryLayout.AmountBytes;
export const BINARY_CURRENCY_BYTES_MAX = 1 + CURRENCY_CODE_BYTES_MAX;
export const BINARY_LEG_BYTES_MAX = BINARY_ACCOUNT_BYTES + BINARY_CURRENCY_BYTES_MAX + 2 * BINARY_AMOUNT_BYTES;
export const BINARY_COMMAND_BYTES_MAX = BINARY_TX_ID_OFFSET + SlotLayout.TxIdBytesMax + 1 + SlotLayout.SettleLegsMax * BINARY_LEG_BYTES_MAX;

export class BinaryCommandDecoder {
  private readonly decimal = new DecimalAmount();
  private readonly payload = new CanonicalPayload();
  private message: Uint8Array = new Uint8Array(0);
  private views: CommandSlotViews | null = null;
  private slotOffset = 0;
  private partitionCount = 1;
  private registry: CurrencyRegistry | null = null;
  // Side results of the field readers (which return the next index, or -1).
  private currencyScale = -1;
  private fieldCode = RejectCode.None;

  decode(message: Uint8Array, partition: number, offset: number, partitionCount: number, registry: CurrencyRegistry, views: CommandSlotViews, slotOffset: number): RejectCode {
    this.message = message;
    this.views = views;
    this.slotOffset = slotOffset;
    this.partitionCount = partitionCount;
    this.registry = registry;
    this.fieldCode = RejectCode.None;
    beginSlot(views, slotOffset, partition, offset);
    const end = message.length;
    if (end < BinaryLayout.TxIdOffset || message[BinaryLayout.VersionOffset] !== BinaryLayout.Version1) {
      return finishMalformed(views, slotOffset, CommandType.Unparseable, message, 0, end);
    }
    const typeByte = message[BinaryLayout.TypeOffset];
    const type = typeByte >= CommandType.Deposit && typeByte <= CommandType.Credit ? (typeByte as CommandType) : CommandType.Unparseable;
    // The tx_id is read here rather than in a method of its own: this function then stays
    // above V8's size limit for inlining, so it is optimized on its own, with a whole
    // inlining budget for its callees, instead of inside decodeCommand and the consumer's
    // loop, where the JSON decoder has spent that budget already.
    const txIdLength = message[BinaryLayout.TxIdLengthOffset];
    const txIdEnd = BinaryLayout.TxIdOffset + txIdLength;
    if (txIdLength < 1 || txIdLength > SlotLayout.TxIdBytesMax || txIdEnd > end) return finishMalformed(views, slotOffset, type, message, 0, end);
    const highBits = writeTxIdBytes(views, slotOffset, message, BinaryLayout.TxIdOffset, txIdLength);
    // Pure ASCII is valid UTF-8; anything else gets the full check. A NUL is refused
    // (command_writer.ts containsNul), checked on the words just copied.
    if (txIdHasNul(views, slotOffset, txIdLength) || ((highBits & 0x80808080) !== 0 && !isValidUtf8(message, BinaryLayout.TxIdOffset, txIdEnd))) {
      clearTxId(views, slotOffset);
      return finishMalformed(views, slotOffset, type, message, 0, end);
    }
    if (type === CommandType.Unparseable) return finishMalformed(views, slotOffset, type, message, 0, end);
    this.payload.begin(type);
    this.account(BinaryLayout.AccountOffset, SlotLayout.AccountOffset, SlotLayout.AccountHomeOffset, false);
    let at: number;
    if (type === CommandType.Transfer) at = this.readTransferBody(txIdEnd, end);
    else if (type === CommandType.Settle) at = this.readSettleBody(txIdEnd, end);
    else at = this.readCurrencyAndAmount(txIdEnd, end, SlotLayout.CurrencyOffset, SlotLayout.AmountOffset);
    if (at !== end) return finishMalformed(views, slotOffset, type, message, 0, end);
    return finishCommand(views, slotOffset, type, this.fieldCode, this.payload);
  }

  /** Account u64 at message[at] (bounds checked by the caller) into the slot and payload. */
  private account(at: number, valueOffset: number, homeOffset: number, homeIsU32: boolean): void {
    const message = this.message;
    // Words read and written inline: V8 stops inlining small calls once the decode
    // tree has used its inlining budget, and these run for every account.
    const lo = message[at] | (message[at + 1] << 8) | (message[at + 2] << 16) | (message[at + 3] << 24);
    const hi = message[at + 4] | (message[at + 5] << 8) | (message[at + 6] << 16) | (message[at + 7] << 24);
    const views = this.views as CommandSlotViews;
    const u32 = views.u32;
    const valueIndex = (this.slotOffset + valueOffset) >> 2;
    u32[valueIndex] = lo;
    u32[valueIndex + 1] = hi;
    const home = homePartitionOfAccountWords(lo, hi, this.partitionCount);
    if (homeIsU32) u32[(this.slotOffset + homeOffset) >> 2] = home;
    else views.u16[(this.slotOffset + homeOffset) >> 1] = home;
    this.payload.account(lo, hi);
  }

  private readTransferBody(at: number, end: number): number {
    if (at + BinaryLayout.AccountBytes > end) return -1;
    this.account(at, SlotLayout.CounterAccountOffset, SlotLayout.CounterHomeOffset, false);
    return this.readCurrencyAndAmount(at + BinaryLayout.AccountBytes, end, SlotLayout.CurrencyOffset, SlotLayout.AmountOffset);
  }

  private readCurrencyAndAmount(at: number, end: number, currencyOffset: number, amountOffset: number): number {
    const afterCurrency = this.currency(at, end, currencyOffset);
    return afterCurrency < 0 ? -1 : this.amount(afterCurrency, end, amountOffset, AmountSign.Positive);
  }

  private readSettleBody(index: number, end: number): number {
    if (index >= end) return -1;
    const legCount = this.message[index];
    if (legCount < 1 || legCount > SlotLayout.SettleLegsMax) return -1;
    const views = this.views as CommandSlotViews;
    views.bytes[this.slotOffset + SlotLayout.LegCountOffset] = legCount;
    this.payload.legCount(legCount);
    let at = index + 1;
    for (let leg = 0; leg < legCount && at >= 0; leg++) {
      const base = SlotLayout.LegsOffset + leg * SlotLayout.LegBytes;
      if (at + BinaryLayout.AccountBytes > end) return -1;
      this.account(at, base + SlotLayout.LegAccountOffset, base + SlotLayout.LegHomeOffset, true);
      at = this.currency(at + BinaryLayout.AccountBytes, end, base + SlotLayout.LegCurrencyOffset);
      if (at >= 0) at = this.amount(at, end, base + SlotLayout.LegAvailableDeltaOffset, AmountSign.Signed);
      if (at >= 0) at = this.amount(at, end, base + SlotLayout.LegFrozenDeltaOffset, AmountSign.Signed);
    }
    return at;
  }

  /** Currency at message[at]: id into the slot, code into the payload; sets currencyScale. */
  private currency(at: number, end: number, idOffset: number): number {
    this.currencyScale = -1;
    if (at >= end) return -1;
    const message = this.message;
    const length = message[at];
    const codeStart = at + 1;
    const codeEnd = codeStart + length;
    if (length < 1 || length > CURRENCY_CODE_BYTES_MAX || codeEnd > end) return -1;
    const word0 = codeWordAt(message, codeStart, codeEnd, 0);
    const word1 = length > 4 ? codeWordAt(message, codeStart, codeEnd, 1) : 0;
    const word2 = length > 8 ? codeWordAt(message, codeStart, codeEnd, 2) : 0;
    const word3 = length > 12 ? codeWordAt(message, codeStart, codeEnd, 3) : 0;
    const registry = this.registry as CurrencyRegistry;
    const id = registry.idOfCodeWords(length, word0, word1, word2, word3);
    this.payload.currencyWords(length, word0, word1, word2, word3);
    if (id === UNKNOWN_CURRENCY_ID) {
      this.fieldCode = worseReject(this.fieldCode, RejectCode.UnknownCurrency);
    } else {
      (this.views as CommandSlotViews).u32[(this.slotOffset + idOffset) >> 2] = id;
      this.currencyScale = registry.scaleOf(id);
    }
    return codeEnd;
  }

  /** Amount (i64 mantissa, u8 scale) at message[at] for the currency just read. */
  private amount(at: number, end: number, valueOffset: number, sign: AmountSign): number {
    if (at + BinaryLayout.AmountBytes > end) return -1;
    const message = this.message;
    const scale = message[at + 8];
    if (scale > AMOUNT_SCALE_MAX) return -1;
    const lo = message[at] | (message[at + 1] << 8) | (message[at + 2] << 16) | (message[at + 3] << 24);
    const hi = message[at + 4] | (message[at + 5] << 8) | (message[at + 6] << 16) | (message[at + 7] << 24);
    let code = hi >= -SAFE_HIGH_WORD_LIMIT && hi < SAFE_HIGH_WORD_LIMIT ? this.safeAmount(lo, hi, scale, valueOffset, sign) : UNSAFE_AMOUNT;
    if (code === UNSAFE_AMOUNT) code = this.wideAmount(lo, hi, scale, valueOffset, sign);
    this.fieldCode = worseReject(this.fieldCode, code);
    return at + BinaryLayout.AmountBytes;
  }

  /**
   * The common case, in float64 arithmetic: |mantissa| <= 2^53 and minor units below 2^53,
   * so every value is exact. Applies the same rules as the general path (amount.ts):
   * canonical form into the payload, sign rule, currency scale. Returns UNSAFE_AMOUNT,
   * having written nothing, when the minor units would reach 2^53.
   */
  private safeAmount(lo: number, hi: number, literalScale: number, valueOffset: number, sign: AmountSign): number {
    const mantissa = hi * TWO_POW_32 + (lo >>> 0);
    const negative = mantissa < 0;
    let magnitude = negative ? -mantissa : mantissa;
    let canonicalScale = literalScale;
    // Float division and floor rather than `%`, which V8 compiles to a slow fmod call.
    while (canonicalScale > 0) {
      const tenth = Math.floor(magnitude / 10);
      if (tenth * 10 !== magnitude) break;
      magnitude = tenth;
      canonicalScale--;
    }
    const currencyScale = this.currencyScale;
    const signBad = sign === AmountSign.Positive && (negative || magnitude === 0);
    let minor = 0;
    if (!signBad && currencyScale >= literalScale) {
      minor = magnitude * POW10[currencyScale - canonicalScale];
      if (minor >= TWO_POW_53) return UNSAFE_AMOUNT;
    }
    const canonical = negative ? -magnitude : magnitude;
    // Words as int32 bit patterns (`| 0`): arguments in Smi range never box a heap number.
    this.payload.amountCanonical(canonicalScale, canonical | 0, Math.floor(canonical / TWO_POW_32) | 0);
    if (signBad) return RejectCode.BadAmount;
    if (currencyScale < 0) return RejectCode.None;
    if (literalScale > currencyScale) return RejectCode.BadAmount;
    const signed = negative ? -minor : minor;
    const u32 = (this.views as CommandSlotViews).u32;
    const valueIndex = (this.slotOffset + valueOffset) >> 2;
    u32[valueIndex] = signed | 0;
    u32[valueIndex + 1] = Math.floor(signed / TWO_POW_32) | 0;
    return RejectCode.None;
  }

  /** Any i64 mantissa, through the general (two-word) arithmetic of amount.ts. */
  private wideAmount(lo: number, hi: number, literalScale: number, valueOffset: number, sign: AmountSign): RejectCode {
    const decimal = this.decimal;
    readDecimalMantissa(lo, hi, literalScale, decimal);
    this.payload.amountValue(decimal);
    return writeScaledAmount(this.views as CommandSlotViews, this.slotOffset + valueOffset, decimal, this.currencyScale, sign);
  }
}

/** safeAmount's answer when the value needs the general path. */
const UNSAFE_AMOUNT = -1;
const TWO_POW_53 = 9007199254740992;
const POW10: readonly number[] = Array.from({ length: AMOUNT_SCALE_MAX + 1 }, (_, index) => 10 ** index);

const defaultDecoder = new BinaryCommandDecoder();

/**
 * Decodes one binary command message into the slot at views[slotOffset] and returns the
 * slot's rejectCode. Never throws on any message bytes. Not reentrant: one per thread.
 */
export function decodeBinaryCommand(message: Uint8Array, partition: number, offset: number, partitionCount: number, registry: CurrencyRegistry, views: CommandSlotViews, slotOffset: number): RejectCode {
  return defaultDecoder.decode(message, partition, offset, partitionCount, registry, views, slotOffset);
}
