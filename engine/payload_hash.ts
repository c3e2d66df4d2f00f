// The canonical payload of a command and its 64-bit hash.
//
// Dedup compares a repeated tx_id's payloadHash with the stored one, so the hash must
// depend on what the command means, not on how it was written: JSON key order,
// whitespace, string escapes, "1.10" vs "1.1", JSON vs binary all hash the same. The
// decoders write the fields below, in this fixed order, as a record of little-endian
// u32 words, and payloadHash = hash64(record bytes, seed 0) (MurmurHash3_x86_128, first
// 64 bits). The tx_id is not part of it (the dedup index is keyed by tx_id already);
// neither are partition and offset.
//
//   header   1 word:  version (1) | type << 8 | legCount << 16   (legCount 0 unless settle)
//   deposit, withdraw, freeze, unfreeze, credit:  header, account, currency, amount
//                                         (the type in the header keeps a credit apart from
//                                         a deposit of the same fields)
//   transfer:                             header, from, to, currency, amount
//   settle:                               header, account, then per leg in wire order:
//                                         account, currency, available, frozen
//   account  2 words: the u64 id, low word first
//   currency 5 words: byte length (1..16), then the code's bytes as sent, zero padded to
//            16 bytes (the code, not the registry id: the same in every process, and
//            defined for unknown currencies too)
//   amount   3 words: kind | scale << 8 | overScale << 16, then two words:
//     kind 0 (value):  the canonical mantissa as i64 (low word first) with scale = its
//                      canonical scale: value = mantissa / 10^scale, scale = 0 or
//                      mantissa % 10 != 0 ("100.50" -> 1005, 1; "-0" -> 0, 0). Used
//                      whenever the mantissa fits i64 and scale <= 18, any currency.
//                      overScale is 1 when the amount has more digits after the point,
//                      as written (binary: its scale byte), than its known currency's
//                      scale, else 0: "1.10" and "1.1" are the same payload at scale 2,
//                      but "1.100" is BAD_AMOUNT there, so it must not hash like them (a
//                      retry that only changed the digits would get the other's outcome).
//                      Every amount a currency accepts has overScale 0, so its hash is
//                      the same as before the flag existed.
//     kind 1 (text):   hash64(seed 0) of the JSON string's unescaped bytes, scale 0;
//                      strings that are no such value (bad syntax, too many digits).
//     kind 2 (number): hash64(seed 0) of the JSON number token's bytes, scale 0;
//                      amounts sent as JSON numbers (rejected as BAD_AMOUNT).
//
// A MALFORMED command has no canonical form; its payloadHash is hash64 of the whole raw
// message, seed 0, so only a byte-identical retry matches it.

import { DecimalAmount, canonicalFitsInt64, canonicalMantissaWords } from './amount';
import { SETTLE_LEGS_MAX } from './command_layout';
import { CURRENCY_CODE_BYTES_MAX, codeWordAt } from './currency_registry';
import { Hash64, hash64, hash64Aligned } from './hash64';
import { Words64 } from './uint64_words';

export const CANONICAL_PAYLOAD_VERSION = 1;
/** Bit of an amount's first word: more digits after the point than the currency's scale. */
export const AMOUNT_OVER_SCALE_FLAG = 1 << 16;

export const enum CanonicalAmountKind {
  Value = 0,
  Text = 1,
  JsonNumber = 2,
}

const ACCOUNT_WORDS = 2;
const CURRENCY_WORDS = 1 + CURRENCY_CODE_BYTES_MAX / 4;
const AMOUNT_WORDS = 3;
const LEG_WORDS = ACCOUNT_WORDS + CURRENCY_WORDS + 2 * AMOUNT_WORDS;
/** Largest record (settle with 12 legs), plus a zero block for the hash's tail. */
export const CANONICAL_PAYLOAD_WORDS_MAX = 1 + ACCOUNT_WORDS + SETTLE_LEGS_MAX * LEG_WORDS + 4;

/** Reusable builder of one canonical payload record; one per decoder, never per command. */
export class CanonicalPayload {
  readonly words = new Uint32Array(CANONICAL_PAYLOAD_WORDS_MAX);
  /** Words written so far. */
  length = 0;
  private readonly mantissa = new Words64();
  private readonly textHash = new Hash64();

  begin(type: number): void {
    this.words[0] = CANONICAL_PAYLOAD_VERSION | (type << 8);
    this.length = 1;
  }

  legCount(count: number): void {
    this.words[0] |= count << 16;
  }

  account(lo: number, hi: number): void {
    const at = this.length;
    this.words[at] = lo;
    this.words[at + 1] = hi;
    this.length = at + ACCOUNT_WORDS;
  }

  /** The code bytes[start..end); callers guarantee 1..16 bytes. */
  currency(bytes: Uint8Array, start: number, end: number): void {
    this.currencyWords(end - start, codeWordAt(bytes, start, end, 0), codeWordAt(bytes, start, end, 1), codeWordAt(bytes, start, end, 2), codeWordAt(bytes, start, end, 3));
  }

  /** A code of `length` bytes given as its zero-padded words (currency_registry.ts codeWordAt). */
  currencyWords(length: number, word0: number, word1: number, word2: number, word3: number): void {
    const at = this.length;
    const words = this.words;
    words[at] = length;
    words[at + 1] = word0;
    words[at + 2] = word1;
    words[at + 3] = word2;
    words[at + 4] = word3;
    this.length = at + CURRENCY_WORDS;
  }

  /**
   * Kind 0 when the canonical value fits; returns false (nothing written) otherwise.
   * `currencyScale`: the scale of the amount's currency, or -1 if it is unknown.
   */
  amountValue(amount: DecimalAmount, currencyScale: number): boolean {
    if (!canonicalFitsInt64(amount)) return false;
    canonicalMantissaWords(amount, this.mantissa);
    const overScale = currencyScale >= 0 && amount.literalScale > currencyScale ? AMOUNT_OVER_SCALE_FLAG : 0;
    this.amountWords(CanonicalAmountKind.Value | (amount.canonicalScale << 8) | overScale, this.mantissa.lo, this.mantissa.hi);
    return true;
  }

  /** Kind 1 or 2: the hash of the amount's text bytes[start..end). */
  amountOpaque(kind: CanonicalAmountKind, bytes: Uint8Array, start: number, end: number): void {
    hash64(bytes, start, end, 0, this.textHash);
    this.amountWords(kind, this.textHash.lo, this.textHash.hi);
  }

  /**
   * Kind 0 from parts the caller already has: the canonical mantissa as i64 words (lo, hi),
   * its canonical scale (the rules above; no trailing fraction zeros) and whether it has
   * more digits than its currency's scale (AMOUNT_OVER_SCALE_FLAG or 0).
   */
  amountCanonical(canonicalScale: number, lo: number, hi: number, overScale: number): void {
    this.amountWords(CanonicalAmountKind.Value | (canonicalScale << 8) | overScale, lo, hi);
  }

  hash(out: Hash64): void {
    const length = this.length;
    // hash64Aligned needs zeros up to the next 16-byte boundary: three words at most,
    // written unconditionally (the array has room) rather than by a loop whose count
    // changes with the command type.
    const words = this.words;
    words[length] = 0;
    words[length + 1] = 0;
    words[length + 2] = 0;
    hash64Aligned(this.words, 0, length * 4, 0, out);
  }

  private amountWords(first: number, lo: number, hi: number): void {
    const at = this.length;
    this.words[at] = first;
    this.words[at + 1] = lo;
    this.words[at + 2] = hi;
    this.length = at + AMOUNT_WORDS;
  }
}
