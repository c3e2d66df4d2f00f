// A validating JSON scanner over bytes (RFC 8259), for the command decoder.
//
// It never builds JS values: strings are reported as byte spans of the message, and
// values the decoder does not need are validated and skipped. Every read is bounds
// checked against `end`, nesting is bounded by JSON_DEPTH_MAX, and nothing throws.
// Strictness beyond JSON.parse: the text must be valid UTF-8, and a \u escape may not
// produce a lone surrogate (the decoded string must be valid Unicode).

import { utf8SequenceLength } from './utf8';

export const JSON_DEPTH_MAX = 32;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const MINUS = 0x2d;
const PLUS = 0x2b;
const DOT = 0x2e;
const DIGIT_ZERO = 0x30;
const DIGIT_NINE = 0x39;
const LOWER_E = 0x65;
const UPPER_E = 0x45;
const BRACE_OPEN = 0x7b;
const BRACE_CLOSE = 0x7d;
const BRACKET_OPEN = 0x5b;
const BRACKET_CLOSE = 0x5d;
const COLON = 0x3a;
const COMMA = 0x2c;

/** Where a string's content lies (between the quotes) and whether it has escapes. */
export class StringSpan {
  start = 0;
  end = 0;
  escaped = false;
}

export function skipWhitespace(bytes: Uint8Array, index: number, end: number): number {
  let at = index;
  while (at < end) {
    const byte = bytes[at];
    if (byte !== 0x20 && byte !== 0x0a && byte !== 0x0d && byte !== 0x09) break;
    at++;
  }
  return at;
}

/** Byte classes inside a string: 0 plain ASCII, 1 anything that needs a closer look. */
const STRING_BYTE_SPECIAL = new Uint8Array(256).map((_, byte) => (byte < 0x20 || byte === QUOTE || byte === BACKSLASH || byte >= 0x80 ? 1 : 0));

/** bytes[index] is '"'. Returns the index after the closing quote, or -1. */
export function scanString(bytes: Uint8Array, index: number, end: number, span: StringSpan): number {
  let at = index + 1;
  let escaped = false;
  while (at < end) {
    // Most bytes of a command are plain ASCII: one table load each.
    while (at < end && STRING_BYTE_SPECIAL[bytes[at]] === 0) at++;
    if (at >= end) return -1;
    const byte = bytes[at];
    if (byte === QUOTE) {
      span.start = index + 1;
      span.end = at;
      span.escaped = escaped;
      return at + 1;
    }
    if (byte === BACKSLASH) {
      escaped = true;
      at = scanEscape(bytes, at, end);
      if (at < 0) return -1;
    } else if (byte < 0x20) {
      return -1;
    } else {
      const length = utf8SequenceLength(bytes, at, end);
      if (length === 0) return -1;
      at += length;
    }
  }
  return -1;
}

/** bytes[index] is '\\'. Returns the index after the escape, or -1. */
function scanEscape(bytes: Uint8Array, index: number, end: number): number {
  if (index + 1 >= end) return -1;
  const kind = bytes[index + 1];
  if (kind !== 0x75 /* u */) return isSimpleEscape(kind) ? index + 2 : -1;
  const unit = readHex4(bytes, index + 2, end);
  if (unit < 0xd800 || unit > 0xdfff) return unit < 0 ? -1 : index + 6;
  if (unit > 0xdbff) return -1;
  // A high surrogate must be followed by an escaped low surrogate.
  if (index + 7 >= end || bytes[index + 6] !== BACKSLASH || bytes[index + 7] !== 0x75) return -1;
  const low = readHex4(bytes, index + 8, end);
  return low >= 0xdc00 && low <= 0xdfff ? index + 12 : -1;
}

function isSimpleEscape(kind: number): boolean {
  // " \ / b f n r t
  return kind === QUOTE || kind === BACKSLASH || kind === 0x2f || kind === 0x62 || kind === 0x66 || kind === 0x6e || kind === 0x72 || kind === 0x74;
}

/** Four hex digits at bytes[index..index+4) as a number, or -1. */
function readHex4(bytes: Uint8Array, index: number, end: number): number {
  if (index + 4 > end) return -1;
  let value = 0;
  for (let at = index; at < index + 4; at++) {
    const digit = hexDigit(bytes[at]);
    if (digit < 0) return -1;
    value = value * 16 + digit;
  }
  return value;
}

function hexDigit(byte: number): number {
  if (byte >= DIGIT_ZERO && byte <= DIGIT_NINE) return byte - DIGIT_ZERO;
  const lower = byte | 0x20;
  return lower >= 0x61 && lower <= 0x66 ? lower - 0x61 + 10 : -1;
}

function isDigit(byte: number): boolean {
  return byte >= DIGIT_ZERO && byte <= DIGIT_NINE;
}

/** A JSON number starting at bytes[index]. Returns the index after it, or -1. */
export function scanNumber(bytes: Uint8Array, index: number, end: number): number {
  let at = index;
  if (at < end && bytes[at] === MINUS) at++;
  if (at >= end || !isDigit(bytes[at])) return -1;
  if (bytes[at] === DIGIT_ZERO) at++;
  else while (at < end && isDigit(bytes[at])) at++;
  if (at < end && bytes[at] === DOT) {
    at++;
    if (at >= end || !isDigit(bytes[at])) return -1;
    while (at < end && isDigit(bytes[at])) at++;
  }
  if (at < end && (bytes[at] === LOWER_E || bytes[at] === UPPER_E)) {
    at++;
    if (at < end && (bytes[at] === PLUS || bytes[at] === MINUS)) at++;
    if (at >= end || !isDigit(bytes[at])) return -1;
    while (at < end && isDigit(bytes[at])) at++;
  }
  return at;
}

/** true, false or null at bytes[index]. Returns the index after it, or -1. */
function scanLiteral(bytes: Uint8Array, index: number, end: number): number {
  const first = bytes[index];
  const text = first === 0x74 ? 'true' : first === 0x66 ? 'false' : first === 0x6e ? 'null' : '';
  if (text === '' || index + text.length > end) return -1;
  for (let offset = 1; offset < text.length; offset++) {
    if (bytes[index + offset] !== text.charCodeAt(offset)) return -1;
  }
  return index + text.length;
}

const skippedSpan = new StringSpan();

/** Validates and skips the value starting at bytes[index] (no leading whitespace). */
export function skipValue(bytes: Uint8Array, index: number, end: number, depth: number): number {
  if (index >= end) return -1;
  const byte = bytes[index];
  if (byte === QUOTE) return scanString(bytes, index, end, skippedSpan);
  if (byte === MINUS || isDigit(byte)) return scanNumber(bytes, index, end);
  if (byte === BRACE_OPEN) return depth >= JSON_DEPTH_MAX ? -1 : skipObject(bytes, index, end, depth + 1);
  if (byte === BRACKET_OPEN) return depth >= JSON_DEPTH_MAX ? -1 : skipArray(bytes, index, end, depth + 1);
  return scanLiteral(bytes, index, end);
}

function skipObject(bytes: Uint8Array, index: number, end: number, depth: number): number {
  let at = skipWhitespace(bytes, index + 1, end);
  if (at < end && bytes[at] === BRACE_CLOSE) return at + 1;
  for (;;) {
    if (at >= end || bytes[at] !== QUOTE) return -1;
    at = scanString(bytes, at, end, skippedSpan);
    if (at < 0) return -1;
    at = expectByte(bytes, at, end, COLON);
    if (at < 0) return -1;
    at = skipValue(bytes, skipWhitespace(bytes, at, end), end, depth);
    if (at < 0) return -1;
    at = skipWhitespace(bytes, at, end);
    if (at >= end) return -1;
    if (bytes[at] === BRACE_CLOSE) return at + 1;
    if (bytes[at] !== COMMA) return -1;
    at = skipWhitespace(bytes, at + 1, end);
  }
}

function skipArray(bytes: Uint8Array, index: number, end: number, depth: number): number {
  let at = skipWhitespace(bytes, index + 1, end);
  if (at < end && bytes[at] === BRACKET_CLOSE) return at + 1;
  for (;;) {
    at = skipValue(bytes, at, end, depth);
    if (at < 0) return -1;
    at = skipWhitespace(bytes, at, end);
    if (at >= end) return -1;
    if (bytes[at] === BRACKET_CLOSE) return at + 1;
    if (bytes[at] !== COMMA) return -1;
    at = skipWhitespace(bytes, at + 1, end);
  }
}

/** Skips whitespace, requires `expected`, and returns the index after it, or -1. */
export function expectByte(bytes: Uint8Array, index: number, end: number, expected: number): number {
  const at = skipWhitespace(bytes, index, end);
  return at < end && bytes[at] === expected ? at + 1 : -1;
}

/**
 * Decodes an escaped string's content bytes[start..end) (already validated by scanString)
 * into target[offset..] as UTF-8. Returns the decoded length, or -1 if it exceeds maxBytes.
 */
export function decodeEscapedString(bytes: Uint8Array, start: number, end: number, target: Uint8Array, offset: number, maxBytes: number): number {
  let at = start;
  let length = 0;
  while (at < end) {
    let codePoint = bytes[at];
    let width = 1;
    if (codePoint === BACKSLASH) {
      const kind = bytes[at + 1];
      if (kind === 0x75) {
        codePoint = readHex4(bytes, at + 2, end);
        width = 6;
        if (codePoint >= 0xd800 && codePoint <= 0xdbff) {
          codePoint = 0x10000 + ((codePoint - 0xd800) << 10) + (readHex4(bytes, at + 8, end) - 0xdc00);
          width = 12;
        }
      } else {
        codePoint = unescapeSimple(kind);
        width = 2;
      }
    } else if (codePoint >= 0x80) {
      // Raw UTF-8 is copied as is (validated by scanString).
      if (length >= maxBytes) return -1;
      target[offset + length++] = codePoint;
      at++;
      continue;
    }
    const encoded = writeUtf8(codePoint, target, offset + length, maxBytes - length);
    if (encoded < 0) return -1;
    length += encoded;
    at += width;
  }
  return length;
}

function unescapeSimple(kind: number): number {
  switch (kind) {
    case 0x62: return 0x08;
    case 0x66: return 0x0c;
    case 0x6e: return 0x0a;
    case 0x72: return 0x0d;
    case 0x74: return 0x09;
    default: return kind; // " \ /
  }
}

function writeUtf8(codePoint: number, target: Uint8Array, offset: number, room: number): number {
  if (codePoint < 0x80) {
    if (room < 1) return -1;
    target[offset] = codePoint;
    return 1;
  }
  if (codePoint < 0x800) {
    if (room < 2) return -1;
    target[offset] = 0xc0 | (codePoint >> 6);
    target[offset + 1] = 0x80 | (codePoint & 0x3f);
    return 2;
  }
  if (codePoint < 0x10000) {
    if (room < 3) return -1;
    target[offset] = 0xe0 | (codePoint >> 12);
    target[offset + 1] = 0x80 | ((codePoint >> 6) & 0x3f);
    target[offset + 2] = 0x80 | (codePoint & 0x3f);
    return 3;
  }
  if (room < 4) return -1;
  target[offset] = 0xf0 | (codePoint >> 18);
  target[offset + 1] = 0x80 | ((codePoint >> 12) & 0x3f);
  target[offset + 2] = 0x80 | ((codePoint >> 6) & 0x3f);
  target[offset + 3] = 0x80 | (codePoint & 0x3f);
  return 4;
}
