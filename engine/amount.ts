// Exact decimal amounts <-> signed 64-bit minor units.
//
// Wire form (ARCHITECTURE.md section 3): a decimal string `-?[0-9]+(\.[0-9]+)?`, at most
// AMOUNT_TEXT_BYTES_MAX bytes. No '+', no exponent, no spaces, no hex, no leading or
// trailing '.', leading zeros allowed ("007.5"). The digits after the point, as written,
// may not outnumber the currency's scale (trailing zeros count: "1.10" is fine at scale
// 2, "1.100" is not) — nothing is ever rounded. The scaled value must fit in a signed
// 64-bit integer, else AMOUNT_OVERFLOW.
//
// Reading happens in two steps so the payload hash can use the value even when the
// currency (and so its scale) is unknown:
//   1. readDecimalText / readDecimalMantissa: syntax only; produces the CANONICAL form
//      (mantissa, canonicalScale) with trailing fraction zeros removed, i.e. the unique
//      pair with canonicalScale = 0 or mantissa % 10 != 0. "100.50" -> (1005, 1).
//   2. checkAmountSign and scaleDecimal: the rules that depend on the command type and
//      on the currency's scale.
// Up to 15 significant digits are accumulated in a float64 (exact below 2^53); longer
// values go digit by digit through two 32-bit words, still without BigInt.

import { RejectCode } from './reject_code';
import {
  SAFE_HIGH_WORD_LIMIT,
  TWO_POW_32,
  Words64,
  divideWords,
  multiplyAdd10,
  negateWords,
  setWordsFromSafeNumber,
  wordsToBigIntSigned,
} from './uint64_words';

export const AMOUNT_SCALE_MAX = 18;
/** Bound on the length of an amount string; longer strings are BAD_AMOUNT. */
export const AMOUNT_TEXT_BYTES_MAX = 128;

export const enum AmountSign {
  /** deposit, withdraw, freeze, unfreeze, transfer: strictly positive, no sign character. */
  Positive = 0,
  /** settle leg deltas: '-' allowed, zero allowed, '+' never. */
  Signed = 1,
}

/** One amount as read from the wire; reused, never allocated per command. */
export class DecimalAmount {
  negative = false;
  /** Digits after the point as written (binary: the scale byte). */
  literalScale = 0;
  /** Canonical mantissa magnitude (u64 words); meaningless when magnitudeOverflow. */
  magnitudeLo = 0;
  magnitudeHi = 0;
  canonicalScale = 0;
  /** The canonical mantissa does not fit in 64 bits. */
  magnitudeOverflow = false;
  /** Result of scaleDecimal: minor units as (lo u32, hi i32). */
  minorLo = 0;
  minorHi = 0;
}

const DIGIT_ZERO = 0x30;
const MINUS = 0x2d;
const DOT = 0x2e;
const SIGNIFICANT_DIGITS_FAST_MAX = 15;
const TWO_POW_53 = 9007199254740992;
const POW10: readonly number[] = Array.from({ length: AMOUNT_SCALE_MAX + 1 }, (_, index) => 10 ** index);
const scratchWords = new Words64();

function isDigit(byte: number): boolean {
  return byte >= DIGIT_ZERO && byte <= DIGIT_ZERO + 9;
}

/** Step 1 for text: syntax check and canonical form. Returns false if not a decimal. */
export function readDecimalText(bytes: Uint8Array, start: number, end: number, out: DecimalAmount): boolean {
  if (end - start < 1 || end - start > AMOUNT_TEXT_BYTES_MAX) return false;
  let index = start;
  const negative = bytes[index] === MINUS;
  if (negative) index++;
  const intStart = index;
  while (index < end && isDigit(bytes[index])) index++;
  const intEnd = index;
  if (intEnd === intStart) return false;
  let fracStart = intEnd;
  let fracEnd = intEnd;
  if (index < end) {
    if (bytes[index] !== DOT) return false;
    fracStart = ++index;
    while (index < end && isDigit(bytes[index])) index++;
    fracEnd = index;
    if (fracEnd === fracStart || index !== end) return false;
  }
  let lastFrac = fracEnd;
  while (lastFrac > fracStart && bytes[lastFrac - 1] === DIGIT_ZERO) lastFrac--;
  let firstInt = intStart;
  while (firstInt < intEnd && bytes[firstInt] === DIGIT_ZERO) firstInt++;
  out.literalScale = fracEnd - fracStart;
  out.canonicalScale = lastFrac - fracStart;
  accumulateDigits(bytes, firstInt, intEnd, fracStart, lastFrac, out);
  out.negative = negative && !isZeroMagnitude(out);
  return true;
}

/** Canonical mantissa from the digits [intFrom, intEnd) followed by [fracStart, fracTo). */
function accumulateDigits(bytes: Uint8Array, intFrom: number, intEnd: number, fracStart: number, fracTo: number, out: DecimalAmount): void {
  out.magnitudeOverflow = false;
  if (intEnd - intFrom + (fracTo - fracStart) <= SIGNIFICANT_DIGITS_FAST_MAX) {
    let value = 0;
    for (let index = intFrom; index < intEnd; index++) value = value * 10 + (bytes[index] - DIGIT_ZERO);
    for (let index = fracStart; index < fracTo; index++) value = value * 10 + (bytes[index] - DIGIT_ZERO);
    out.magnitudeLo = value >>> 0;
    out.magnitudeHi = Math.floor(value / TWO_POW_32);
    return;
  }
  const words = scratchWords;
  words.lo = 0;
  words.hi = 0;
  let fits = true;
  for (let index = intFrom; fits && index < intEnd; index++) fits = multiplyAdd10(words, bytes[index] - DIGIT_ZERO);
  for (let index = fracStart; fits && index < fracTo; index++) fits = multiplyAdd10(words, bytes[index] - DIGIT_ZERO);
  out.magnitudeOverflow = !fits;
  out.magnitudeLo = fits ? words.lo : 0;
  out.magnitudeHi = fits ? words.hi : 0;
}

function isZeroMagnitude(amount: DecimalAmount): boolean {
  return !amount.magnitudeOverflow && amount.magnitudeLo === 0 && amount.magnitudeHi === 0;
}

/**
 * Step 1 for the binary codec: the i64 mantissa (lo, hi words) written with `literalScale`
 * fraction digits (0..AMOUNT_SCALE_MAX, checked by the caller).
 */
export function readDecimalMantissa(lo: number, hi: number, literalScale: number, out: DecimalAmount): void {
  const words = scratchWords;
  words.lo = lo >>> 0;
  words.hi = hi >>> 0;
  const negative = (hi | 0) < 0;
  if (negative) negateWords(words);
  let scale = literalScale;
  if (words.hi < SAFE_HIGH_WORD_LIMIT) {
    // Float division and floor rather than `%`, which V8 compiles to a slow fmod call.
    let value = words.hi * TWO_POW_32 + words.lo;
    while (scale > 0) {
      const tenth = Math.floor(value / 10);
      if (tenth * 10 !== value) break;
      value = tenth;
      scale--;
    }
    setWordsFromSafeNumber(words, value);
  } else {
    scale = stripTrailingZerosSlow(words, scale);
  }
  out.negative = negative;
  out.literalScale = literalScale;
  out.canonicalScale = scale;
  out.magnitudeOverflow = false;
  out.magnitudeLo = words.lo;
  out.magnitudeHi = words.hi;
}

const divisionScratch = new Words64();

function stripTrailingZerosSlow(words: Words64, scale: number): number {
  let remaining = scale;
  while (remaining > 0) {
    divisionScratch.lo = words.lo;
    divisionScratch.hi = words.hi;
    if (divideWords(divisionScratch, 10) !== 0) break;
    words.lo = divisionScratch.lo;
    words.hi = divisionScratch.hi;
    remaining--;
  }
  return remaining;
}

/** Step 2a: the sign rule of the command type. */
export function checkAmountSign(amount: DecimalAmount, sign: AmountSign): RejectCode {
  if (sign === AmountSign.Signed) return RejectCode.None;
  return amount.negative || isZeroMagnitude(amount) ? RejectCode.BadAmount : RejectCode.None;
}

/**
 * Step 2b: scales to the currency (`scale` = its digits after the point) and stores the
 * minor units in amount.minorLo/minorHi. Returns BAD_AMOUNT for more digits than the
 * scale, AMOUNT_OVERFLOW outside the signed 64-bit range, else NONE.
 */
export function scaleDecimal(amount: DecimalAmount, scale: number): RejectCode {
  amount.minorLo = 0;
  amount.minorHi = 0;
  if (amount.literalScale > scale) return RejectCode.BadAmount;
  if (amount.magnitudeOverflow) return RejectCode.AmountOverflow;
  const words = scratchWords;
  words.lo = amount.magnitudeLo;
  words.hi = amount.magnitudeHi;
  if (!multiplyByPow10(words, scale - amount.canonicalScale)) return RejectCode.AmountOverflow;
  if (!fitsSigned64(words.lo, words.hi, amount.negative)) return RejectCode.AmountOverflow;
  if (amount.negative) negateWords(words);
  amount.minorLo = words.lo;
  amount.minorHi = words.hi | 0;
  return RejectCode.None;
}

function multiplyByPow10(words: Words64, exponent: number): boolean {
  if (exponent === 0) return true;
  if (words.hi < SAFE_HIGH_WORD_LIMIT) {
    const product = (words.hi * TWO_POW_32 + words.lo) * POW10[exponent];
    if (product < TWO_POW_53) {
      setWordsFromSafeNumber(words, product);
      return true;
    }
  }
  for (let step = 0; step < exponent; step++) {
    if (!multiplyAdd10(words, 0)) return false;
  }
  return true;
}

/** Magnitude (lo, hi) fits in i64: up to 2^63-1, or exactly 2^63 when negative. */
function fitsSigned64(lo: number, hi: number, negative: boolean): boolean {
  if (hi < 0x80000000) return true;
  return negative && hi === 0x80000000 && lo === 0;
}

/** The canonical form fits the hash's fixed (i64 mantissa, scale 0..18) record. */
export function canonicalFitsInt64(amount: DecimalAmount): boolean {
  if (amount.magnitudeOverflow || amount.canonicalScale > AMOUNT_SCALE_MAX) return false;
  return fitsSigned64(amount.magnitudeLo, amount.magnitudeHi, amount.negative);
}

/** Signed canonical mantissa as two's complement words (valid when canonicalFitsInt64). */
export function canonicalMantissaWords(amount: DecimalAmount, out: Words64): void {
  out.lo = amount.magnitudeLo;
  out.hi = amount.magnitudeHi;
  if (amount.negative) negateWords(out);
}

// ---- Convenience API for producers, tests and the control plane (allocates) ----

const textScratch = new Uint8Array(AMOUNT_TEXT_BYTES_MAX);
const textAmount = new DecimalAmount();

/** Parses `text` for a currency of `scale`; minorUnits is 0n unless rejectCode is NONE. */
export function parseAmount(text: string, scale: number, sign: AmountSign): { rejectCode: RejectCode; minorUnits: bigint } {
  const rejectCode = parseAmountInto(text, scale, sign, textAmount);
  const minorUnits = rejectCode === RejectCode.None ? wordsToBigIntSigned(textAmount.minorLo, textAmount.minorHi) : 0n;
  return { rejectCode, minorUnits };
}

/** Like parseAmount without allocating: the result is left in `out`. */
export function parseAmountInto(text: string, scale: number, sign: AmountSign, out: DecimalAmount): RejectCode {
  if (typeof text !== 'string' || text.length > AMOUNT_TEXT_BYTES_MAX) return RejectCode.BadAmount;
  for (let index = 0; index < text.length; index++) {
    const code = text.charCodeAt(index);
    if (code > 0x7f) return RejectCode.BadAmount;
    textScratch[index] = code;
  }
  if (!readDecimalText(textScratch, 0, text.length, out)) return RejectCode.BadAmount;
  const signCode = checkAmountSign(out, sign);
  if (signCode !== RejectCode.None) return signCode;
  return scaleDecimal(out, scale);
}

/** Canonical decimal string of minor units (lo u32, hi i32 words): "90.25", "0", "-0.001". */
export function formatAmount(lo: number, hi: number, scale: number): string {
  const high = hi | 0;
  const lowWord = lo >>> 0;
  // |value| < 2^53 prints through a float64 exactly; the rest through BigInt.
  if (high >= -SAFE_HIGH_WORD_LIMIT && high < SAFE_HIGH_WORD_LIMIT) {
    const value = high * TWO_POW_32 + lowWord;
    return placeDecimalPoint(value < 0, String(Math.abs(value)), scale);
  }
  return formatAmountBigInt(wordsToBigIntSigned(lowWord, high), scale);
}

export function formatAmountBigInt(minorUnits: bigint, scale: number): string {
  const negative = minorUnits < 0n;
  return placeDecimalPoint(negative, (negative ? -minorUnits : minorUnits).toString(), scale);
}

function placeDecimalPoint(negative: boolean, digits: string, scale: number): string {
  if (digits === '0') return '0';
  const padded = digits.length <= scale ? '0'.repeat(scale - digits.length + 1) + digits : digits;
  const integerPart = padded.slice(0, padded.length - scale);
  let fractionEnd = padded.length;
  while (fractionEnd > integerPart.length && padded.charCodeAt(fractionEnd - 1) === DIGIT_ZERO) fractionEnd--;
  const fraction = padded.slice(integerPart.length, fractionEnd);
  return (negative ? '-' : '') + integerPart + (fraction.length > 0 ? '.' + fraction : '');
}
