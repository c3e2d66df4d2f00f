// JSON command decoder: one Kafka message value -> one command slot (command_layout.ts).
//
// A hand-written scanner (json_scanner.ts) reads the bytes once and records where each
// known field's value lies; the fields are then interpreted in a fixed order, so the
// result (and the rejection chosen) never depends on key order or whitespace. Nothing is
// allocated per message and nothing throws, whatever the bytes.
//
// Field rules (docs/wire-format.md has the full table):
//   - The message is one JSON object, valid UTF-8, nesting depth <= 32.
//   - Known keys: type, tx_id, account, from, to, currency, amount, legs; in a leg:
//     account, currency, available, frozen. A known key given twice -> MALFORMED.
//     Unknown keys, and known keys the type does not use, are ignored (but must be JSON).
//   - type, tx_id, accounts and currency must be JSON strings; amounts must be JSON
//     strings too: an amount written as a JSON number is BAD_AMOUNT, any other JSON type
//     is MALFORMED.
//   - tx_id: 1..64 bytes once unescaped. Account ids: see account_id.ts. Currency: a
//     string of 1..16 bytes (else MALFORMED); not registered -> UNKNOWN_CURRENCY.
//   - settle: legs is an array of 1..12 objects, each with all four leg fields.

import { CommandType, SlotLayout } from './command_layout';
import { ACCOUNT_ID_DIGITS_MAX, parseAccountId } from './account_id';
import { AMOUNT_TEXT_BYTES_MAX, AmountSign, DecimalAmount, readDecimalText } from './amount';
import { CommandSlotViews, writeWords } from './command_slot';
import { beginSlot, clearTxId, finishCommand, finishMalformed, finishTxId, worseReject, writeScaledAmount, writeTxIdBytes, containsNul } from './command_writer';
import { CURRENCY_CODE_BYTES_MAX, CurrencyRegistry, UNKNOWN_CURRENCY_ID, codeWordAt } from './currency_registry';
import { Words64 } from './uint64_words';
import { StringSpan, decodeEscapedString, expectByte, scanNumber, scanString, skipValue, skipWhitespace } from './json_scanner';
import { partitionOfKeyBytes } from './partitioner';
import { CanonicalAmountKind, CanonicalPayload } from './payload_hash';
import { RejectCode } from './reject_code';

const enum Field {
  Type = 0,
  TxId = 1,
  Account = 2,
  From = 3,
  To = 4,
  Currency = 5,
  Amount = 6,
  Legs = 7,
}
const TOP_LEVEL_FIELD_COUNT = 8;

const enum LegField {
  Account = 0,
  Currency = 1,
  Available = 2,
  Frozen = 3,
}
const LEG_FIELD_COUNT = 4;
const FIELD_SLOT_COUNT = TOP_LEVEL_FIELD_COUNT + SlotLayout.SettleLegsMax * LEG_FIELD_COUNT;

const enum ValueKind {
  Absent = 0,
  String = 1,
  Number = 2,
  Array = 3,
  Other = 4,
}

const QUOTE = 0x22;
const COMMA = 0x2c;
const COLON = 0x3a;
const BRACE_OPEN = 0x7b;
const BRACE_CLOSE = 0x7d;
const BRACKET_OPEN = 0x5b;
const BRACKET_CLOSE = 0x5d;
const KEY_BYTES_MAX = 16;
const TYPE_NAME_BYTES_MAX = 8;

/** Little-endian word of up to four ASCII bytes of `text` from `from`, as bytesWord reads it. */
function textWord(text: string, from: number): number {
  let word = 0;
  for (let index = 0; index < 4 && from + index < text.length; index++) word |= text.charCodeAt(from + index) << (index * 8);
  return word;
}

/** Little-endian word of bytes[at..at+count) (count 1..4). */
function bytesWord(bytes: Uint8Array, at: number, count: number): number {
  let word = bytes[at];
  if (count > 1) word |= bytes[at + 1] << 8;
  if (count > 2) word |= bytes[at + 2] << 16;
  if (count > 3) word |= bytes[at + 3] << 24;
  return word;
}

// Key and type names as packed words: comparing two or three words beats a byte loop.
const W_TO = textWord('to', 0);
const W_TYPE = textWord('type', 0);
const W_FROM = textWord('from', 0);
const W_LEGS = textWord('legs', 0);
const W_TX_ID = [textWord('tx_id', 0), textWord('tx_id', 4)];
const W_AMOUNT = [textWord('amount', 0), textWord('amount', 4)];
const W_ACCOUNT = [textWord('account', 0), textWord('account', 4)];
const W_CURRENCY = [textWord('currency', 0), textWord('currency', 4)];
const W_FROZEN = [textWord('frozen', 0), textWord('frozen', 4)];
const W_AVAILABLE = [textWord('available', 0), textWord('available', 4), textWord('available', 8)];
const W_DEPOSIT = [textWord('deposit', 0), textWord('deposit', 4)];
const W_WITHDRAW = [textWord('withdraw', 0), textWord('withdraw', 4)];
const W_FREEZE = [textWord('freeze', 0), textWord('freeze', 4)];
const W_UNFREEZE = [textWord('unfreeze', 0), textWord('unfreeze', 4)];
const W_TRANSFER = [textWord('transfer', 0), textWord('transfer', 4)];
const W_SETTLE = [textWord('settle', 0), textWord('settle', 4)];
const W_CREDIT = [textWord('credit', 0), textWord('credit', 4)];

/** bytes[start..start+length) (5..12 bytes) equals the name packed in `words`. */
function matchesWords(bytes: Uint8Array, start: number, length: number, words: readonly number[]): boolean {
  if (bytesWord(bytes, start, 4) !== words[0]) return false;
  if (length <= 8) return bytesWord(bytes, start + 4, length - 4) === words[1];
  return bytesWord(bytes, start + 4, 4) === words[1] && bytesWord(bytes, start + 8, length - 8) === words[2];
}

/** Field of a top-level key bytes[start..end), or -1. Dispatches on length. */
function topLevelFieldOf(bytes: Uint8Array, start: number, end: number): number {
  switch (end - start) {
    case 2: return bytesWord(bytes, start, 2) === W_TO ? Field.To : -1;
    case 4: {
      const word = bytesWord(bytes, start, 4);
      return word === W_TYPE ? Field.Type : word === W_FROM ? Field.From : word === W_LEGS ? Field.Legs : -1;
    }
    case 5: return matchesWords(bytes, start, 5, W_TX_ID) ? Field.TxId : -1;
    case 6: return matchesWords(bytes, start, 6, W_AMOUNT) ? Field.Amount : -1;
    case 7: return matchesWords(bytes, start, 7, W_ACCOUNT) ? Field.Account : -1;
    case 8: return matchesWords(bytes, start, 8, W_CURRENCY) ? Field.Currency : -1;
    default: return -1;
  }
}

/** LegField of a key inside a leg, or -1. The four names differ in length. */
function legFieldOf(bytes: Uint8Array, start: number, end: number): number {
  switch (end - start) {
    case 6: return matchesWords(bytes, start, 6, W_FROZEN) ? LegField.Frozen : -1;
    case 7: return matchesWords(bytes, start, 7, W_ACCOUNT) ? LegField.Account : -1;
    case 8: return matchesWords(bytes, start, 8, W_CURRENCY) ? LegField.Currency : -1;
    case 9: return matchesWords(bytes, start, 9, W_AVAILABLE) ? LegField.Available : -1;
    default: return -1;
  }
}

/** CommandType of a type name bytes[start..end), or Unparseable. */
function commandTypeOf(bytes: Uint8Array, start: number, end: number): CommandType {
  const length = end - start;
  switch (length) {
    case 6:
      if (matchesWords(bytes, start, 6, W_FREEZE)) return CommandType.Freeze;
      if (matchesWords(bytes, start, 6, W_CREDIT)) return CommandType.Credit;
      return matchesWords(bytes, start, 6, W_SETTLE) ? CommandType.Settle : CommandType.Unparseable;
    case 7: return matchesWords(bytes, start, 7, W_DEPOSIT) ? CommandType.Deposit : CommandType.Unparseable;
    case 8:
      if (matchesWords(bytes, start, 8, W_TRANSFER)) return CommandType.Transfer;
      if (matchesWords(bytes, start, 8, W_WITHDRAW)) return CommandType.Withdraw;
      return matchesWords(bytes, start, 8, W_UNFREEZE) ? CommandType.Unfreeze : CommandType.Unparseable;
    default: return CommandType.Unparseable;
  }
}

export class JsonCommandDecoder {
  // Where each field's value lies; index = Field, or TOP_LEVEL_FIELD_COUNT + leg * 4 + LegField.
  private readonly kinds = new Uint8Array(FIELD_SLOT_COUNT);
  /** 0 absent, 1 once, 2 more than once. */
  private readonly occurrences = new Uint8Array(FIELD_SLOT_COUNT);
  private readonly starts = new Int32Array(FIELD_SLOT_COUNT);
  private readonly ends = new Int32Array(FIELD_SLOT_COUNT);
  private readonly escaped = new Uint8Array(FIELD_SLOT_COUNT);
  private legCount = 0;
  private legsWellFormed = true;
  private duplicateKey = false;

  private readonly keySpan = new StringSpan();
  private readonly valueSpan = new StringSpan();
  private readonly keyScratch = new Uint8Array(KEY_BYTES_MAX);
  private readonly stringScratch = new Uint8Array(AMOUNT_TEXT_BYTES_MAX);
  private readonly words = new Words64();
  private readonly decimal = new DecimalAmount();
  private readonly payload = new CanonicalPayload();

  // The message being decoded and where it goes; set by decode().
  private message: Uint8Array = new Uint8Array(0);
  private views: CommandSlotViews | null = null;
  private slotOffset = 0;
  private partitionCount = 1;
  private registry: CurrencyRegistry | null = null;
  // Result of resolveString(): the unescaped bytes of a string value.
  private resolvedBytes: Uint8Array = this.message;
  private resolvedStart = 0;
  private resolvedEnd = 0;
  // Result of currency(): the scale of the currency just read, -1 when unknown.
  private currencyScale = -1;

  /** Decodes `message` into the slot at views[slotOffset]; returns the slot's rejectCode. */
  decode(message: Uint8Array, partition: number, offset: number, partitionCount: number, registry: CurrencyRegistry, views: CommandSlotViews, slotOffset: number): RejectCode {
    this.message = message;
    this.views = views;
    this.slotOffset = slotOffset;
    this.partitionCount = partitionCount;
    this.registry = registry;
    beginSlot(views, slotOffset, partition, offset);
    const syntaxValid = this.scanMessage(message, message.length);
    const type = this.readType();
    const txIdValid = this.writeTxId(views);
    if (!syntaxValid || this.duplicateKey || type === CommandType.Unparseable || !txIdValid) {
      return finishMalformed(views, slotOffset, type, message, 0, message.length);
    }
    this.payload.begin(type);
    let code: RejectCode;
    if (type === CommandType.Transfer) code = this.interpretTransfer();
    else if (type === CommandType.Settle) code = this.interpretSettle(views);
    else code = this.interpretSingleAmount();
    if (code === RejectCode.Malformed) return finishMalformed(views, slotOffset, type, message, 0, message.length);
    return finishCommand(views, slotOffset, type, code, this.payload);
  }

  // ---- scanning ----

  private scanMessage(bytes: Uint8Array, end: number): boolean {
    for (let field = 0; field < TOP_LEVEL_FIELD_COUNT; field++) {
      this.kinds[field] = ValueKind.Absent;
      this.occurrences[field] = 0;
    }
    this.legCount = 0;
    this.legsWellFormed = true;
    this.duplicateKey = false;
    let at = skipWhitespace(bytes, 0, end);
    if (at >= end || bytes[at] !== BRACE_OPEN) return false;
    at = skipWhitespace(bytes, at + 1, end);
    if (at < end && bytes[at] === BRACE_CLOSE) return skipWhitespace(bytes, at + 1, end) === end;
    for (;;) {
      const keyEnd = at < end && bytes[at] === QUOTE ? scanString(bytes, at, end, this.keySpan) : -1;
      if (keyEnd < 0) return false;
      at = expectByte(bytes, keyEnd, end, COLON);
      if (at < 0) return false;
      at = skipWhitespace(bytes, at, end);
      const field = this.matchKey(bytes, false);
      if (field < 0) at = skipValue(bytes, at, end, 1);
      else {
        if (this.occurrences[field] !== 0) this.duplicateKey = true;
        this.occurrences[field] = this.occurrences[field] === 0 ? 1 : 2;
        at = field === Field.Legs ? this.scanLegs(bytes, at, end) : this.recordValue(bytes, at, end, field, 1);
      }
      if (at < 0) return false;
      at = skipWhitespace(bytes, at, end);
      if (at >= end) return false;
      if (bytes[at] === BRACE_CLOSE) return skipWhitespace(bytes, at + 1, end) === end;
      if (bytes[at] !== COMMA) return false;
      at = skipWhitespace(bytes, at + 1, end);
    }
  }

  /** Field of the key in this.keySpan (unescaped first if needed), or -1. */
  private matchKey(bytes: Uint8Array, inLeg: boolean): number {
    const span = this.keySpan;
    if (!span.escaped) return inLeg ? legFieldOf(bytes, span.start, span.end) : topLevelFieldOf(bytes, span.start, span.end);
    const length = decodeEscapedString(bytes, span.start, span.end, this.keyScratch, 0, KEY_BYTES_MAX);
    if (length < 0) return -1;
    return inLeg ? legFieldOf(this.keyScratch, 0, length) : topLevelFieldOf(this.keyScratch, 0, length);
  }

  /** Validates the value at bytes[at] and records its kind and span under `slot`. */
  private recordValue(bytes: Uint8Array, at: number, end: number, slot: number, depth: number): number {
    if (at >= end) return -1;
    const first = bytes[at];
    if (first === QUOTE) {
      const next = scanString(bytes, at, end, this.valueSpan);
      if (next >= 0) this.recordSpan(slot, ValueKind.String, this.valueSpan.start, this.valueSpan.end, this.valueSpan.escaped);
      return next;
    }
    if (first === 0x2d || (first >= 0x30 && first <= 0x39)) {
      const next = scanNumber(bytes, at, end);
      if (next >= 0) this.recordSpan(slot, ValueKind.Number, at, next, false);
      return next;
    }
    const next = skipValue(bytes, at, end, depth);
    if (next >= 0) this.recordSpan(slot, ValueKind.Other, at, next, false);
    return next;
  }

  private recordSpan(slot: number, kind: ValueKind, start: number, end: number, escaped: boolean): void {
    this.kinds[slot] = kind;
    this.starts[slot] = start;
    this.ends[slot] = end;
    this.escaped[slot] = escaped ? 1 : 0;
  }

  /** The value of "legs": an array of leg objects is recorded; anything else is Other. */
  private scanLegs(bytes: Uint8Array, index: number, end: number): number {
    if (index >= end || bytes[index] !== BRACKET_OPEN) return this.recordValue(bytes, index, end, Field.Legs, 1);
    this.kinds[Field.Legs] = ValueKind.Array;
    let at = skipWhitespace(bytes, index + 1, end);
    if (at < end && bytes[at] === BRACKET_CLOSE) return at + 1;
    for (;;) {
      const isObject = at < end && bytes[at] === BRACE_OPEN;
      if (isObject && this.legCount < SlotLayout.SettleLegsMax) at = this.scanLeg(bytes, at, end, this.legCount);
      else {
        this.legsWellFormed = false;
        at = skipValue(bytes, at, end, 2);
      }
      this.legCount++;
      if (at < 0) return -1;
      at = skipWhitespace(bytes, at, end);
      if (at >= end) return -1;
      if (bytes[at] === BRACKET_CLOSE) return at + 1;
      if (bytes[at] !== COMMA) return -1;
      at = skipWhitespace(bytes, at + 1, end);
    }
  }

  /** One leg object at bytes[index] ('{'). */
  private scanLeg(bytes: Uint8Array, index: number, end: number, leg: number): number {
    const base = TOP_LEVEL_FIELD_COUNT + leg * LEG_FIELD_COUNT;
    for (let field = 0; field < LEG_FIELD_COUNT; field++) {
      this.kinds[base + field] = ValueKind.Absent;
      this.occurrences[base + field] = 0;
    }
    let at = skipWhitespace(bytes, index + 1, end);
    if (at < end && bytes[at] === BRACE_CLOSE) return at + 1;
    for (;;) {
      const keyEnd = at < end && bytes[at] === QUOTE ? scanString(bytes, at, end, this.keySpan) : -1;
      if (keyEnd < 0) return -1;
      at = expectByte(bytes, keyEnd, end, COLON);
      if (at < 0) return -1;
      at = skipWhitespace(bytes, at, end);
      const field = this.matchKey(bytes, true);
      if (field < 0) at = skipValue(bytes, at, end, 3);
      else {
        if (this.occurrences[base + field] !== 0) this.legsWellFormed = false;
        this.occurrences[base + field] = 1;
        at = this.recordValue(bytes, at, end, base + field, 3);
      }
      if (at < 0) return -1;
      at = skipWhitespace(bytes, at, end);
      if (at >= end) return -1;
      if (bytes[at] === BRACE_CLOSE) return at + 1;
      if (bytes[at] !== COMMA) return -1;
      at = skipWhitespace(bytes, at + 1, end);
    }
  }

  // ---- interpretation ----

  /**
   * Unescapes the string value under `slot` (at most maxBytes) into resolvedBytes/Start/End.
   * Returns false if the value is not a string or is longer than maxBytes.
   */
  private resolveString(slot: number, maxBytes: number): boolean {
    if (this.kinds[slot] !== ValueKind.String) return false;
    const start = this.starts[slot];
    const end = this.ends[slot];
    if (this.escaped[slot] === 0) {
      if (end - start > maxBytes) return false;
      this.resolvedBytes = this.message;
      this.resolvedStart = start;
      this.resolvedEnd = end;
      return true;
    }
    const length = decodeEscapedString(this.message, start, end, this.stringScratch, 0, maxBytes);
    if (length < 0) return false;
    this.resolvedBytes = this.stringScratch;
    this.resolvedStart = 0;
    this.resolvedEnd = length;
    return true;
  }

  private readType(): CommandType {
    if (this.occurrences[Field.Type] === 0 || !this.resolveString(Field.Type, TYPE_NAME_BYTES_MAX)) return CommandType.Unparseable;
    return commandTypeOf(this.resolvedBytes, this.resolvedStart, this.resolvedEnd);
  }

  /** Copies the tx_id (unescaped) into the slot. Returns false if there is no valid one. */
  private writeTxId(views: CommandSlotViews): boolean {
    // A tx_id given twice is ambiguous, so there is none.
    if (this.occurrences[Field.TxId] !== 1 || this.kinds[Field.TxId] !== ValueKind.String) return false;
    const start = this.starts[Field.TxId];
    const end = this.ends[Field.TxId];
    if (this.escaped[Field.TxId] === 0) {
      // The scanner validated the bytes as UTF-8 already.
      if (end - start >= 1 && end - start <= SlotLayout.TxIdBytesMax) {
        writeTxIdBytes(views, this.slotOffset, this.message, start, end - start);
        return true;
      }
      clearTxId(views, this.slotOffset);
      return false;
    }
    const length = decodeEscapedString(this.message, start, end, views.bytes, this.slotOffset + SlotLayout.TxIdOffset, SlotLayout.TxIdBytesMax);
    const txIdStart = this.slotOffset + SlotLayout.TxIdOffset;
    if (length < 1 || containsNul(views.bytes, txIdStart, txIdStart + length)) {
      clearTxId(views, this.slotOffset);
      return false;
    }
    finishTxId(views, this.slotOffset, length);
    return true;
  }

  /**
   * Reads the account under `slot`, writes it and its home partition (u16 or u32 field),
   * and adds it to the canonical payload. Returns false if it is not a valid account id.
   */
  private account(slot: number, valueOffset: number, homeOffset: number, homeIsU32: boolean): boolean {
    if (!this.resolveString(slot, ACCOUNT_ID_DIGITS_MAX)) return false;
    const bytes = this.resolvedBytes;
    if (!parseAccountId(bytes, this.resolvedStart, this.resolvedEnd, this.words)) return false;
    // The id is canonical, so its text is exactly the decimal string Kafka keys on.
    const home = partitionOfKeyBytes(bytes, this.resolvedStart, this.resolvedEnd, this.partitionCount);
    const views = this.views as CommandSlotViews;
    const at = this.slotOffset + valueOffset;
    writeWords(views, at, this.words.lo, this.words.hi);
    if (homeIsU32) views.u32[(this.slotOffset + homeOffset) >> 2] = home;
    else views.u16[(this.slotOffset + homeOffset) >> 1] = home;
    this.payload.account(this.words.lo, this.words.hi);
    return true;
  }

  /** Reads the currency under `slot` into the slot and the payload; sets currencyScale. */
  private currency(slot: number, idOffset: number): RejectCode {
    this.currencyScale = -1;
    if (!this.resolveString(slot, CURRENCY_CODE_BYTES_MAX) || this.resolvedEnd === this.resolvedStart) return RejectCode.Malformed;
    const bytes = this.resolvedBytes;
    const start = this.resolvedStart;
    const end = this.resolvedEnd;
    const length = end - start;
    // The code's words, read once for the registry and the payload (both key on them).
    const word0 = codeWordAt(bytes, start, end, 0);
    const word1 = length > 4 ? codeWordAt(bytes, start, end, 1) : 0;
    const word2 = length > 8 ? codeWordAt(bytes, start, end, 2) : 0;
    const word3 = length > 12 ? codeWordAt(bytes, start, end, 3) : 0;
    const registry = this.registry as CurrencyRegistry;
    const id = registry.idOfCodeWords(length, word0, word1, word2, word3);
    this.payload.currencyWords(length, word0, word1, word2, word3);
    if (id === UNKNOWN_CURRENCY_ID) return RejectCode.UnknownCurrency;
    (this.views as CommandSlotViews).u32[(this.slotOffset + idOffset) >> 2] = id;
    this.currencyScale = registry.scaleOf(id);
    return RejectCode.None;
  }

  /** Reads the amount under `slot` for the currency just read; writes minor units. */
  private amount(slot: number, valueOffset: number, sign: AmountSign): RejectCode {
    const kind = this.kinds[slot];
    if (kind === ValueKind.Number) {
      this.payload.amountOpaque(CanonicalAmountKind.JsonNumber, this.message, this.starts[slot], this.ends[slot]);
      return RejectCode.BadAmount;
    }
    if (kind !== ValueKind.String) return RejectCode.Malformed;
    if (!this.resolveString(slot, AMOUNT_TEXT_BYTES_MAX)) {
      // Only an over-long string gets here; hash its raw text.
      this.payload.amountOpaque(CanonicalAmountKind.Text, this.message, this.starts[slot], this.ends[slot]);
      return RejectCode.BadAmount;
    }
    const decimal = this.decimal;
    if (!readDecimalText(this.resolvedBytes, this.resolvedStart, this.resolvedEnd, decimal)) {
      this.payload.amountOpaque(CanonicalAmountKind.Text, this.resolvedBytes, this.resolvedStart, this.resolvedEnd);
      return RejectCode.BadAmount;
    }
    if (!this.payload.amountValue(decimal, this.currencyScale)) {
      this.payload.amountOpaque(CanonicalAmountKind.Text, this.resolvedBytes, this.resolvedStart, this.resolvedEnd);
    }
    return writeScaledAmount(this.views as CommandSlotViews, this.slotOffset + valueOffset, decimal, this.currencyScale, sign);
  }

  private interpretSingleAmount(): RejectCode {
    if (!this.account(Field.Account, SlotLayout.AccountOffset, SlotLayout.AccountHomeOffset, false)) return RejectCode.Malformed;
    const currencyCode = this.currency(Field.Currency, SlotLayout.CurrencyOffset);
    if (currencyCode === RejectCode.Malformed) return RejectCode.Malformed;
    return worseReject(currencyCode, this.amount(Field.Amount, SlotLayout.AmountOffset, AmountSign.Positive));
  }

  private interpretTransfer(): RejectCode {
    if (!this.account(Field.From, SlotLayout.AccountOffset, SlotLayout.AccountHomeOffset, false)) return RejectCode.Malformed;
    if (!this.account(Field.To, SlotLayout.CounterAccountOffset, SlotLayout.CounterHomeOffset, false)) return RejectCode.Malformed;
    const currencyCode = this.currency(Field.Currency, SlotLayout.CurrencyOffset);
    if (currencyCode === RejectCode.Malformed) return RejectCode.Malformed;
    return worseReject(currencyCode, this.amount(Field.Amount, SlotLayout.AmountOffset, AmountSign.Positive));
  }

  private interpretSettle(views: CommandSlotViews): RejectCode {
    if (!this.account(Field.Account, SlotLayout.AccountOffset, SlotLayout.AccountHomeOffset, false)) return RejectCode.Malformed;
    const legCount = this.legCount;
    if (this.kinds[Field.Legs] !== ValueKind.Array || !this.legsWellFormed || legCount < 1 || legCount > SlotLayout.SettleLegsMax) return RejectCode.Malformed;
    views.bytes[this.slotOffset + SlotLayout.LegCountOffset] = legCount;
    this.payload.legCount(legCount);
    let code = RejectCode.None;
    for (let leg = 0; leg < legCount; leg++) {
      const slot = TOP_LEVEL_FIELD_COUNT + leg * LEG_FIELD_COUNT;
      const base = SlotLayout.LegsOffset + leg * SlotLayout.LegBytes;
      if (!this.account(slot + LegField.Account, base + SlotLayout.LegAccountOffset, base + SlotLayout.LegHomeOffset, true)) return RejectCode.Malformed;
      const currencyCode = this.currency(slot + LegField.Currency, base + SlotLayout.LegCurrencyOffset);
      if (currencyCode === RejectCode.Malformed) return RejectCode.Malformed;
      const available = this.amount(slot + LegField.Available, base + SlotLayout.LegAvailableDeltaOffset, AmountSign.Signed);
      const frozen = this.amount(slot + LegField.Frozen, base + SlotLayout.LegFrozenDeltaOffset, AmountSign.Signed);
      if (available === RejectCode.Malformed || frozen === RejectCode.Malformed) return RejectCode.Malformed;
      code = worseReject(worseReject(worseReject(code, currencyCode), available), frozen);
    }
    return code;
  }
}

const defaultDecoder = new JsonCommandDecoder();

/**
 * Decodes one JSON command message into the slot at views[slotOffset] and returns the
 * slot's rejectCode (NONE when the decoder found nothing wrong). Never throws on any
 * message bytes. Not reentrant: one decoder per thread.
 */
export function decodeJsonCommand(message: Uint8Array, partition: number, offset: number, partitionCount: number, registry: CurrencyRegistry, views: CommandSlotViews, slotOffset: number): RejectCode {
  return defaultDecoder.decode(message, partition, offset, partitionCount, registry, views, slotOffset);
}
