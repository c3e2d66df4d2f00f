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
import { Hash64, hash64CopyWords } from './hash64';
import { homePartitionOfAccountWords } from './partitioner';
import { AMOUNT_OVER_SCALE_FLAG, CanonicalPayload } from './payload_hash';
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
  private readonly txIdHash = new Hash64();
  private message: Uint8Array = new Uint8Array(0);
  private views: CommandSlotViews | null = null;
  private slotOffset = 0;
  private partitionCount = 1;
  private registry: CurrencyRegistry | null = null;
  // Side results of the field readers (which return the next index, or -1).
  private currencyScale = -1;
  private fieldCode = RejectCode.None;

  decode(message: Uint8Array, partition: number, offset: number, partitionCount: number, registry: CurrencyRegistry, views: CommandSlotViews, slotOffset: number): RejectCode {
    // Nearly every command is well formed and accepted: the fast path decodes exactly
    // those and declines the rest, which the general path then decodes from the start.
    if (this.decodeAccepted(message, partition, offset, partitionCount, registry, views, slotOffset)) return RejectCode.None;
    this.message = message;
    this.views = views;
    this.slotOffset = slotOffset;
    this.partitionCount = partitionCount;
    this.registry = registry;
    return this.decodeGeneral(partition, offset);
  }

  /**
   * The fast path: a command with an ASCII tx_id, registered currencies and amounts that
   * are accepted as sent. Returns false as soon as the message is anything else (an
   * unknown type, a rejection, a non-ASCII tx_id, an amount beyond float64 arithmetic),
   * having written only slot fields that beginSlot clears again (legs included: below
   * legCount); for every command it accepts it writes the slot the general path would
   * (binary_codec.test.ts holds binary slots equal to the JSON decoder's at the edges of
   * these conditions, and a slot reused after a late decline equal to a fresh one).
   *
   * Written flat, fields and words inline, with calls only where real work is done (the
   * hashes, murmur2, the registry): V8 inlines callees only up to a bytecode budget per
   * optimized function, and past it each small helper of the general path (a field, a
   * word) is a call that reloads the decoder's state and costs more than its work. The
   * path is three such functions (this one, acceptCurrencyAndAmount, acceptLegs), each
   * too large to be inlined itself, so each is optimized with a budget of its own.
   */
  private decodeAccepted(message: Uint8Array, partition: number, offset: number, partitionCount: number, registry: CurrencyRegistry, views: CommandSlotViews, slotOffset: number): boolean {
    const end = message.length;
    if (end < BinaryLayout.TxIdOffset || message[BinaryLayout.VersionOffset] !== BinaryLayout.Version1) return false;
    const type = message[BinaryLayout.TypeOffset];
    const txIdLength = message[BinaryLayout.TxIdLengthOffset];
    const txIdEnd = BinaryLayout.TxIdOffset + txIdLength;
    if (type < CommandType.Deposit || type > CommandType.Credit) return false;
    if (txIdLength < 1 || txIdLength > SlotLayout.TxIdBytesMax || txIdEnd > end) return false;
    beginSlot(views, slotOffset, partition, offset);
    const u32 = views.u32;
    const hash = this.txIdHash;
    // Copied into the slot and hashed in one pass (as command_writer.ts writeTxIdBytes);
    // clear 0x80 bits mean ASCII without NUL (hash64.ts), else the general path decides.
    if ((hash64CopyWords(message, BinaryLayout.TxIdOffset, txIdEnd, u32, (slotOffset + SlotLayout.TxIdOffset) >> 2, 0, hash) & 0x80808080) !== 0) return false;
    views.bytes[slotOffset + SlotLayout.TxIdLengthOffset] = txIdLength;
    u32[(slotOffset + SlotLayout.TxIdHashOffset) >> 2] = hash.lo;
    u32[(slotOffset + SlotLayout.TxIdHashOffset + 4) >> 2] = hash.hi;
    const payload = this.payload;
    payload.begin(type);
    // The account, then a transfer's `to` right after the tx_id. Two copies rather than a
    // loop: in a loop, V8 ranks the home partition's murmur2 above every other callee and
    // spends the whole inlining budget on it.
    const accountAt = BinaryLayout.AccountOffset;
    let lo = message[accountAt] | (message[accountAt + 1] << 8) | (message[accountAt + 2] << 16) | (message[accountAt + 3] << 24);
    let hi = message[accountAt + 4] | (message[accountAt + 5] << 8) | (message[accountAt + 6] << 16) | (message[accountAt + 7] << 24);
    u32[(slotOffset + SlotLayout.AccountOffset) >> 2] = lo;
    u32[(slotOffset + SlotLayout.AccountOffset + 4) >> 2] = hi;
    views.u16[(slotOffset + SlotLayout.AccountHomeOffset) >> 1] = homePartitionOfAccountWords(lo, hi, partitionCount);
    payload.account(lo, hi);
    let bodyStart = txIdEnd;
    if (type === CommandType.Transfer) {
      if (txIdEnd + BinaryLayout.AccountBytes > end) return false;
      lo = message[txIdEnd] | (message[txIdEnd + 1] << 8) | (message[txIdEnd + 2] << 16) | (message[txIdEnd + 3] << 24);
      hi = message[txIdEnd + 4] | (message[txIdEnd + 5] << 8) | (message[txIdEnd + 6] << 16) | (message[txIdEnd + 7] << 24);
      u32[(slotOffset + SlotLayout.CounterAccountOffset) >> 2] = lo;
      u32[(slotOffset + SlotLayout.CounterAccountOffset + 4) >> 2] = hi;
      views.u16[(slotOffset + SlotLayout.CounterHomeOffset) >> 1] = homePartitionOfAccountWords(lo, hi, partitionCount);
      payload.account(lo, hi);
      bodyStart += BinaryLayout.AccountBytes;
    }
    if (type === CommandType.Settle) return this.acceptLegs(message, bodyStart, registry, partitionCount, views, slotOffset);
    return this.acceptCurrencyAndAmount(message, bodyStart, registry, views, slotOffset, type);
  }

  /**
   * The fast path's body of every type but settle at message[at..): currency and amount,
   * then the end of the slot. A function of its own (and larger than V8 inlines) so that
   * its callees get an inlining budget of their own, whatever the caller spent: measured,
   * a single function inlined a different set of callees depending on which command types
   * happened to come first, and lost up to 10 % when the mix started with settles.
   */
  private acceptCurrencyAndAmount(message: Uint8Array, at: number, registry: CurrencyRegistry, views: CommandSlotViews, slotOffset: number, type: number): boolean {
    const end = message.length;
    const u32 = views.u32;
    const payload = this.payload;
    // Currency: an amount follows the code, so its first word can be read whole and masked.
    const length = at < end ? message[at] : 0;
    const codeStart = at + 1;
    const amountAt = codeStart + length;
    if (length < 1 || length > CURRENCY_CODE_BYTES_MAX || amountAt + BinaryLayout.AmountBytes !== end) return false;
    const word0 = (message[codeStart] | (message[codeStart + 1] << 8) | (message[codeStart + 2] << 16) | (message[codeStart + 3] << 24)) & CODE_WORD_MASKS[length < 4 ? length : 4];
    const word1 = length > 4 ? codeWordAt(message, codeStart, amountAt, 1) : 0;
    const word2 = length > 8 ? codeWordAt(message, codeStart, amountAt, 2) : 0;
    const word3 = length > 12 ? codeWordAt(message, codeStart, amountAt, 3) : 0;
    const id = registry.idOfCodeWords(length, word0, word1, word2, word3);
    if (id === UNKNOWN_CURRENCY_ID) return false;
    payload.currencyWords(length, word0, word1, word2, word3);
    u32[(slotOffset + SlotLayout.CurrencyOffset) >> 2] = id;
    // Amount: positive, below 2^53, no more decimals than the currency's (<= AMOUNT_SCALE_MAX).
    const lo = message[amountAt] | (message[amountAt + 1] << 8) | (message[amountAt + 2] << 16) | (message[amountAt + 3] << 24);
    const hi = message[amountAt + 4] | (message[amountAt + 5] << 8) | (message[amountAt + 6] << 16) | (message[amountAt + 7] << 24);
    const literalScale = message[amountAt + 8];
    const currencyScale = registry.scaleOf(id);
    if (hi < 0 || hi >= SAFE_HIGH_WORD_LIMIT || (hi | lo) === 0 || literalScale > currencyScale) return false;
    let magnitude = hi * TWO_POW_32 + (lo >>> 0);
    let canonicalScale = literalScale;
    for (let tenth = 0; canonicalScale > 0 && (tenth = tenthIfMultipleOfTen(magnitude)) >= 0; canonicalScale--) magnitude = tenth;
    const minor = magnitude * POW10[currencyScale - canonicalScale];
    if (minor >= TWO_POW_53) return false;
    // Non-negative values below 2^53: `| 0` of the quotient is its floor.
    payload.amountCanonical(canonicalScale, magnitude | 0, (magnitude / TWO_POW_32) | 0, 0);
    u32[(slotOffset + SlotLayout.AmountOffset) >> 2] = minor | 0;
    u32[(slotOffset + SlotLayout.AmountOffset + 4) >> 2] = (minor / TWO_POW_32) | 0;
    finishCommand(views, slotOffset, type, RejectCode.None, payload);
    return true;
  }

  /**
   * The fast path's settle body at message[at..): legCount and the legs, each accepted as
   * sent, then the end of the slot. Settles are a small share of commands, so the legs'
   * currencies and amounts go through acceptCurrency and acceptAmount (calls).
   */
  private acceptLegs(message: Uint8Array, at: number, registry: CurrencyRegistry, partitionCount: number, views: CommandSlotViews, slotOffset: number): boolean {
    const end = message.length;
    const legCount = at < end ? message[at] : 0;
    if (legCount < 1 || legCount > SlotLayout.SettleLegsMax) return false;
    views.bytes[slotOffset + SlotLayout.LegCountOffset] = legCount;
    this.payload.legCount(legCount);
    const u32 = views.u32;
    let next = at + 1;
    for (let leg = 0; leg < legCount; leg++) {
      const base = slotOffset + SlotLayout.LegsOffset + leg * SlotLayout.LegBytes;
      // The account and at least the currency's length byte.
      if (next + BinaryLayout.AccountBytes >= end) return false;
      const lo = message[next] | (message[next + 1] << 8) | (message[next + 2] << 16) | (message[next + 3] << 24);
      const hi = message[next + 4] | (message[next + 5] << 8) | (message[next + 6] << 16) | (message[next + 7] << 24);
      u32[(base + SlotLayout.LegAccountOffset) >> 2] = lo;
      u32[(base + SlotLayout.LegAccountOffset + 4) >> 2] = hi;
      u32[(base + SlotLayout.LegHomeOffset) >> 2] = homePartitionOfAccountWords(lo, hi, partitionCount);
      this.payload.account(lo, hi);
      next = this.acceptCurrency(message, next + BinaryLayout.AccountBytes, registry, views, base + SlotLayout.LegCurrencyOffset);
      if (next < 0 || !this.acceptAmount(message, next, views, base + SlotLayout.LegAvailableDeltaOffset)) return false;
      next += BinaryLayout.AmountBytes;
      // acceptCurrency made sure of one amount after the code, not of two.
      if (next + BinaryLayout.AmountBytes > end || !this.acceptAmount(message, next, views, base + SlotLayout.LegFrozenDeltaOffset)) return false;
      next += BinaryLayout.AmountBytes;
    }
    if (next !== end) return false;
    finishCommand(views, slotOffset, CommandType.Settle, RejectCode.None, this.payload);
    return true;
  }

  /**
   * A registered currency at message[at], followed by at least an amount's bytes: its id
   * into the slot at idByteOffset, its code into the payload, its scale into
   * currencyScale. Returns the index after the code, or -1.
   */
  private acceptCurrency(message: Uint8Array, at: number, registry: CurrencyRegistry, views: CommandSlotViews, idByteOffset: number): number {
    const length = at < message.length ? message[at] : 0;
    const codeStart = at + 1;
    const codeEnd = codeStart + length;
    if (length < 1 || length > CURRENCY_CODE_BYTES_MAX || codeEnd + BinaryLayout.AmountBytes > message.length) return -1;
    // An amount follows the code, so its first word can be read whole and masked.
    const word0 = (message[codeStart] | (message[codeStart + 1] << 8) | (message[codeStart + 2] << 16) | (message[codeStart + 3] << 24)) & CODE_WORD_MASKS[length < 4 ? length : 4];
    const word1 = length > 4 ? codeWordAt(message, codeStart, codeEnd, 1) : 0;
    const word2 = length > 8 ? codeWordAt(message, codeStart, codeEnd, 2) : 0;
    const word3 = length > 12 ? codeWordAt(message, codeStart, codeEnd, 3) : 0;
    const id = registry.idOfCodeWords(length, word0, word1, word2, word3);
    if (id === UNKNOWN_CURRENCY_ID) return -1;
    this.currencyScale = registry.scaleOf(id);
    this.payload.currencyWords(length, word0, word1, word2, word3);
    views.u32[idByteOffset >> 2] = id;
    return codeEnd;
  }

  /**
   * A settle leg's amount at message[at] (bounds checked by the caller) for the currency
   * just read, if it is accepted as sent: a mantissa within ±2^53 (zero and negative are
   * fine), no more decimals than the currency has, minor units below 2^53. Writes its
   * canonical form into the payload and its minor units at valueByteOffset, as safeAmount
   * does; returns false, having written nothing, otherwise.
   */
  private acceptAmount(message: Uint8Array, at: number, views: CommandSlotViews, valueByteOffset: number): boolean {
    const lo = message[at] | (message[at + 1] << 8) | (message[at + 2] << 16) | (message[at + 3] << 24);
    const hi = message[at + 4] | (message[at + 5] << 8) | (message[at + 6] << 16) | (message[at + 7] << 24);
    const literalScale = message[at + 8];
    const currencyScale = this.currencyScale;
    // The currency's scale is at most AMOUNT_SCALE_MAX, so this bounds the scale byte too.
    if (hi < -SAFE_HIGH_WORD_LIMIT || hi >= SAFE_HIGH_WORD_LIMIT || literalScale > currencyScale) return false;
    const mantissa = hi * TWO_POW_32 + (lo >>> 0);
    const negative = mantissa < 0;
    let magnitude = negative ? -mantissa : mantissa;
    let canonicalScale = literalScale;
    for (let tenth = 0; canonicalScale > 0 && (tenth = tenthIfMultipleOfTen(magnitude)) >= 0; canonicalScale--) magnitude = tenth;
    const minor = magnitude * POW10[currencyScale - canonicalScale];
    if (minor >= TWO_POW_53) return false;
    const canonical = negative ? -magnitude : magnitude;
    // Words as int32 bit patterns, as in safeAmount.
    this.payload.amountCanonical(canonicalScale, canonical | 0, Math.floor(canonical / TWO_POW_32) | 0, 0);
    const signed = negative ? -minor : minor;
    const u32 = views.u32;
    u32[valueByteOffset >> 2] = signed | 0;
    u32[(valueByteOffset >> 2) + 1] = Math.floor(signed / TWO_POW_32) | 0;
    return true;
  }

  /** The general path: any message, any rejection. */
  private decodeGeneral(partition: number, offset: number): RejectCode {
    const message = this.message;
    const views = this.views as CommandSlotViews;
    const slotOffset = this.slotOffset;
    this.fieldCode = RejectCode.None;
    beginSlot(views, slotOffset, partition, offset);
    const end = message.length;
    if (end < BinaryLayout.TxIdOffset || message[BinaryLayout.VersionOffset] !== BinaryLayout.Version1) {
      return finishMalformed(views, slotOffset, CommandType.Unparseable, message, 0, end);
    }
    const typeByte = message[BinaryLayout.TypeOffset];
    const type = typeByte >= CommandType.Deposit && typeByte <= CommandType.Credit ? (typeByte as CommandType) : CommandType.Unparseable;
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
    while (canonicalScale > 0) {
      const tenth = tenthIfMultipleOfTen(magnitude);
      if (tenth < 0) break;
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
    this.payload.amountCanonical(canonicalScale, canonical | 0, Math.floor(canonical / TWO_POW_32) | 0, currencyScale >= 0 && literalScale > currencyScale ? AMOUNT_OVER_SCALE_FLAG : 0);
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
    this.payload.amountValue(decimal, this.currencyScale);
    return writeScaledAmount(this.views as CommandSlotViews, this.slotOffset + valueOffset, decimal, this.currencyScale, sign);
  }
}

/** CODE_WORD_MASKS[count]: the low `count` bytes (0..4) of a word. */
const CODE_WORD_MASKS = Int32Array.of(0, 0xff, 0xffff, 0xffffff, -1);

/**
 * magnitude / 10 if magnitude (an integer, 0 <= magnitude < 2^53) is a multiple of ten,
 * else -1. Multiplies by the double nearest 0.1 rather than dividing (a division is
 * several times slower, and `%` is an fmod call): for magnitude = 10k the product is k
 * plus less than 0.05, which rounds to k or the next double above it, so its floor is k;
 * any other floor fails the exact check t * 10 === magnitude.
 */
function tenthIfMultipleOfTen(magnitude: number): number {
  const tenth = Math.floor(magnitude * 0.1);
  return tenth * 10 === magnitude ? tenth : -1;
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
