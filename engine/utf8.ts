// Strict UTF-8 validation (RFC 3629): no overlong forms, no surrogates, nothing above
// U+10FFFF. tx_ids must be valid UTF-8 so that result events can echo them in JSON.

/**
 * Length of the UTF-8 sequence starting at bytes[index] if it is well formed and ends
 * before `end`, else 0. ASCII returns 1.
 */
export function utf8SequenceLength(bytes: Uint8Array, index: number, end: number): number {
  const lead = bytes[index];
  if (lead < 0x80) return 1;
  if (lead < 0xc2 || lead > 0xf4) return 0;
  if (lead < 0xe0) return index + 1 < end && isContinuation(bytes[index + 1]) ? 2 : 0;
  if (index + 2 >= end) return 0;
  const second = bytes[index + 1];
  if (lead < 0xf0) {
    // E0 needs A0..BF (no overlong), ED needs 80..9F (no surrogates).
    const low = lead === 0xe0 ? 0xa0 : 0x80;
    const high = lead === 0xed ? 0x9f : 0xbf;
    return second >= low && second <= high && isContinuation(bytes[index + 2]) ? 3 : 0;
  }
  if (index + 3 >= end) return 0;
  // F0 needs 90..BF (no overlong), F4 needs 80..8F (nothing above U+10FFFF).
  const low = lead === 0xf0 ? 0x90 : 0x80;
  const high = lead === 0xf4 ? 0x8f : 0xbf;
  const ok = second >= low && second <= high && isContinuation(bytes[index + 2]) && isContinuation(bytes[index + 3]);
  return ok ? 4 : 0;
}

function isContinuation(byte: number): boolean {
  return (byte & 0xc0) === 0x80;
}

export function isValidUtf8(bytes: Uint8Array, start: number, end: number): boolean {
  let index = start;
  while (index < end) {
    if (bytes[index] < 0x80) {
      index++;
      continue;
    }
    const length = utf8SequenceLength(bytes, index, end);
    if (length === 0) return false;
    index += length;
  }
  return true;
}
