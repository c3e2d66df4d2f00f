// Compact binary encoding of the six commands: encoder for producers, decoder into a
// command slot. All integers little-endian; full table in docs/wire-format.md.
//
//   offset  size  field
//   0       1     version = BINARY_VERSION_1 (0xB1; never a valid first byte of JSON text)
//   1       1     type (CommandType 1..6)
//   2       1     txIdLength T (1..64)
//   3       8     account u64 (deposit/withdraw/freeze/unfreeze: account; transfer: from;
//                 settle: the user account)
//   11      T     tx_id bytes (UTF-8)
//   11+T          body:
//     deposit, withdraw, freeze, unfreeze:  currency, amount
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

import {
  ACCOUNT_HOME_OFFSET,
  ACCOUNT_OFFSET,
  AMOUNT_OFFSET,
  COUNTER_ACCOUNT_OFFSET,
  COUNTER_HOME_OFFSET,
  CURRENCY_OFFSET,
  CommandType,
  LEGS_OFFSET,
  LEG_ACCOUNT_OFFSET,
  LEG_AVAILABLE_DELTA_OFFSET,
  LEG_BYTES,
  LEG_COUNT_OFFSET,
  LEG_CURRENCY_OFFSET,
  LEG_FROZEN_DELTA_OFFSET,
  LEG_HOME_OFFSET,
  SETTLE_LEGS_MAX,
  TX_ID_BYTES_MAX,
} from './command_layout';
import { AMOUNT_SCALE_MAX, AmountSign, DecimalAmount, readDecimalMantissa } from './amount';
import { CommandSlotViews, writeWords } from './command_slot';
import { beginSlot, clearTxId, copyTxIdIntoSlot, finishCommand, finishMalformed, finishTxId, worseReject, writeScaledAmount } from './command_writer';
import { CURRENCY_CODE_BYTES_MAX, CurrencyRegistry, UNKNOWN_CURRENCY_ID } from './currency_registry';
import { homePartitionOfAccountWords } from './partitioner';
import { CanonicalPayload } from './payload_hash';
import { RejectCode } from './reject_code';
import { isValidUtf8 } from './utf8';

export const BINARY_VERSION_1 = 0xb1;
export const BINARY_VERSION_OFFSET = 0;
export const BINARY_TYPE_OFFSET = 1;
export const BINARY_TX_ID_LENGTH_OFFSET = 2;
export const BINARY_ACCOUNT_OFFSET = 3;
export const BINARY_TX_ID_OFFSET = 11;
export const BINARY_ACCOUNT_BYTES = 8;
export const BINARY_AMOUNT_BYTES = 9;
export const BINARY_CURRENCY_BYTES_MAX = 1 + CURRENCY_CODE_BYTES_MAX;
export const BINARY_LEG_BYTES_MAX = BINARY_ACCOUNT_BYTES + BINARY_CURRENCY_BYTES_MAX + 2 * BINARY_AMOUNT_BYTES;
export const BINARY_COMMAND_BYTES_MAX = BINARY_TX_ID_OFFSET + TX_ID_BYTES_MAX + 1 + SETTLE_LEGS_MAX * BINARY_LEG_BYTES_MAX;

/**
 * A little-endian word as an int32 bit pattern: int32 values are small integers to V8,
 * so passing them to functions never boxes a heap number; callees use `>>> 0`.
 */
function readWord(bytes: Uint8Array, at: number): number {
  return bytes[at] | (bytes[at + 1] << 8) | (bytes[at + 2] << 16) | (bytes[at + 3] << 24);
}

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
    if (end < BINARY_TX_ID_OFFSET || message[BINARY_VERSION_OFFSET] !== BINARY_VERSION_1) {
      return finishMalformed(views, slotOffset, CommandType.Unparseable, message, 0, end);
    }
    const typeByte = message[BINARY_TYPE_OFFSET];
    const type = typeByte >= CommandType.Deposit && typeByte <= CommandType.Settle ? (typeByte as CommandType) : CommandType.Unparseable;
    const txIdEnd = this.readTxId(message, end, views);
    if (type === CommandType.Unparseable || txIdEnd < 0) return finishMalformed(views, slotOffset, type, message, 0, end);
    this.payload.begin(type);
    this.account(BINARY_ACCOUNT_OFFSET, ACCOUNT_OFFSET, ACCOUNT_HOME_OFFSET, false);
    let at: number;
    if (type === CommandType.Transfer) at = this.readTransferBody(txIdEnd, end);
    else if (type === CommandType.Settle) at = this.readSettleBody(txIdEnd, end);
    else at = this.readCurrencyAndAmount(txIdEnd, end, CURRENCY_OFFSET, AMOUNT_OFFSET);
    if (at !== end) return finishMalformed(views, slotOffset, type, message, 0, end);
    return finishCommand(views, slotOffset, type, this.fieldCode, this.payload);
  }

  /** Copies a valid tx_id into the slot; returns the index after it, or -1. */
  private readTxId(message: Uint8Array, end: number, views: CommandSlotViews): number {
    const length = message[BINARY_TX_ID_LENGTH_OFFSET];
    const txIdEnd = BINARY_TX_ID_OFFSET + length;
    if (length < 1 || length > TX_ID_BYTES_MAX || txIdEnd > end) return -1;
    const highBits = copyTxIdIntoSlot(views, this.slotOffset, message, BINARY_TX_ID_OFFSET, length);
    // Pure ASCII is valid UTF-8; anything else gets the full check.
    if ((highBits & 0x80808080) !== 0 && !isValidUtf8(message, BINARY_TX_ID_OFFSET, txIdEnd)) {
      clearTxId(views, this.slotOffset);
      return -1;
    }
    finishTxId(views, this.slotOffset, length);
    return txIdEnd;
  }

  /** Account u64 at message[at] (bounds checked by the caller) into the slot and payload. */
  private account(at: number, valueOffset: number, homeOffset: number, homeIsU32: boolean): void {
    const lo = readWord(this.message, at);
    const hi = readWord(this.message, at + 4);
    const views = this.views as CommandSlotViews;
    writeWords(views, this.slotOffset + valueOffset, lo, hi);
    const home = homePartitionOfAccountWords(lo, hi, this.partitionCount);
    if (homeIsU32) views.u32[(this.slotOffset + homeOffset) >> 2] = home;
    else views.u16[(this.slotOffset + homeOffset) >> 1] = home;
    this.payload.account(lo, hi);
  }

  private readTransferBody(at: number, end: number): number {
    if (at + BINARY_ACCOUNT_BYTES > end) return -1;
    this.account(at, COUNTER_ACCOUNT_OFFSET, COUNTER_HOME_OFFSET, false);
    return this.readCurrencyAndAmount(at + BINARY_ACCOUNT_BYTES, end, CURRENCY_OFFSET, AMOUNT_OFFSET);
  }

  private readCurrencyAndAmount(at: number, end: number, currencyOffset: number, amountOffset: number): number {
    const afterCurrency = this.currency(at, end, currencyOffset);
    return afterCurrency < 0 ? -1 : this.amount(afterCurrency, end, amountOffset, AmountSign.Positive);
  }

  private readSettleBody(index: number, end: number): number {
    if (index >= end) return -1;
    const legCount = this.message[index];
    if (legCount < 1 || legCount > SETTLE_LEGS_MAX) return -1;
    const views = this.views as CommandSlotViews;
    views.bytes[this.slotOffset + LEG_COUNT_OFFSET] = legCount;
    this.payload.legCount(legCount);
    let at = index + 1;
    for (let leg = 0; leg < legCount && at >= 0; leg++) {
      const base = LEGS_OFFSET + leg * LEG_BYTES;
      if (at + BINARY_ACCOUNT_BYTES > end) return -1;
      this.account(at, base + LEG_ACCOUNT_OFFSET, base + LEG_HOME_OFFSET, true);
      at = this.currency(at + BINARY_ACCOUNT_BYTES, end, base + LEG_CURRENCY_OFFSET);
      if (at >= 0) at = this.amount(at, end, base + LEG_AVAILABLE_DELTA_OFFSET, AmountSign.Signed);
      if (at >= 0) at = this.amount(at, end, base + LEG_FROZEN_DELTA_OFFSET, AmountSign.Signed);
    }
    return at;
  }

  /** Currency at message[at]: id into the slot, code into the payload; sets currencyScale. */
  private currency(at: number, end: number, idOffset: number): number {
    this.currencyScale = -1;
    if (at >= end) return -1;
    const length = this.message[at];
    const codeEnd = at + 1 + length;
    if (length < 1 || length > CURRENCY_CODE_BYTES_MAX || codeEnd > end) return -1;
    const registry = this.registry as CurrencyRegistry;
    const id = registry.idOfBytes(this.message, at + 1, codeEnd);
    this.payload.currency(this.message, at + 1, codeEnd);
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
    if (at + BINARY_AMOUNT_BYTES > end) return -1;
    const scale = this.message[at + 8];
    if (scale > AMOUNT_SCALE_MAX) return -1;
    const decimal = this.decimal;
    readDecimalMantissa(readWord(this.message, at), readWord(this.message, at + 4), scale, decimal);
    this.payload.amountValue(decimal);
    const code = writeScaledAmount(this.views as CommandSlotViews, this.slotOffset + valueOffset, decimal, this.currencyScale, sign);
    this.fieldCode = worseReject(this.fieldCode, code);
    return at + BINARY_AMOUNT_BYTES;
  }
}

const defaultDecoder = new BinaryCommandDecoder();

/**
 * Decodes one binary command message into the slot at views[slotOffset] and returns the
 * slot's rejectCode. Never throws on any message bytes. Not reentrant: one per thread.
 */
export function decodeBinaryCommand(message: Uint8Array, partition: number, offset: number, partitionCount: number, registry: CurrencyRegistry, views: CommandSlotViews, slotOffset: number): RejectCode {
  return defaultDecoder.decode(message, partition, offset, partitionCount, registry, views, slotOffset);
}
