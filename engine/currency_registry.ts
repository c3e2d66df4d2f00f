// Currency registry: currency code -> dense id (u32 from 1; 0 = unknown) and scale.
//
// Built once from configuration (control plane); ids follow the configuration order, so
// every thread that rebuilds the registry from `serialize()` gets the same ids. Lookups
// by string, by bytes or by code words use an open-addressing table over typed arrays
// and allocate nothing, so the decoders can call them per command.
//
// A code is keyed by its CODE_WORDS little-endian words: its bytes zero padded to 16,
// read four at a time (the same words the canonical payload record carries), plus its
// length. Comparing four words beats a byte loop, and the decoders read the words once
// for both the lookup and the payload.

import { AMOUNT_SCALE_MAX } from './amount';

export const CURRENCY_CODE_BYTES_MAX = 16;
export const CURRENCY_SCALE_DEFAULT = 8;
export const UNKNOWN_CURRENCY_ID = 0;
/** A code zero padded to CURRENCY_CODE_BYTES_MAX bytes, as little-endian u32 words. */
export const CODE_WORDS = CURRENCY_CODE_BYTES_MAX / 4;
/** Bound on the number of currencies one registry holds. */
export const CURRENCIES_MAX = 65_535;

export interface CurrencyConfig {
  code: string;
  /** Digits after the point, 0..18; default CURRENCY_SCALE_DEFAULT. */
  scale?: number;
}

export interface SerializedCurrencyRegistry {
  version: 1;
  /** In id order: currencies[i] has id i + 1. */
  currencies: { code: string; scale: number }[];
}

const CODE_PATTERN = /^[A-Z0-9]{1,16}$/;

export class CurrencyRegistry {
  private readonly codes: string[] = [''];
  /** CODE_WORDS int32 words per id. */
  private readonly codeWords: Int32Array;
  private readonly codeLengths: Uint8Array;
  private readonly scales: Uint8Array;
  private readonly table: Uint32Array;
  private readonly tableMask: number;

  private constructor(config: readonly CurrencyConfig[]) {
    if (config.length > CURRENCIES_MAX) throw new Error(`currency registry: at most ${CURRENCIES_MAX} currencies`);
    const capacity = config.length + 1;
    this.codeWords = new Int32Array(capacity * CODE_WORDS);
    this.codeLengths = new Uint8Array(capacity);
    this.scales = new Uint8Array(capacity);
    let tableSize = 16;
    while (tableSize < capacity * 2) tableSize *= 2;
    this.table = new Uint32Array(tableSize);
    this.tableMask = tableSize - 1;
    for (const entry of config) this.add(entry);
  }

  static fromConfig(config: readonly CurrencyConfig[]): CurrencyRegistry {
    return new CurrencyRegistry(config);
  }

  static fromSerialized(serialized: SerializedCurrencyRegistry): CurrencyRegistry {
    if (serialized.version !== 1) throw new Error(`currency registry: unknown serialization version ${String(serialized.version)}`);
    return new CurrencyRegistry(serialized.currencies);
  }

  serialize(): SerializedCurrencyRegistry {
    const currencies = [];
    for (let id = 1; id < this.codes.length; id++) currencies.push({ code: this.codes[id], scale: this.scales[id] });
    return { version: 1, currencies };
  }

  /** Number of currencies; ids are 1..count. */
  get count(): number {
    return this.codes.length - 1;
  }

  scaleOf(id: number): number {
    return this.scales[id];
  }

  codeOf(id: number): string {
    const code = this.codes[id];
    if (id === UNKNOWN_CURRENCY_ID || code === undefined) throw new Error(`currency registry: no currency with id ${id}`);
    return code;
  }

  /** Id of the code in bytes[start..end), or 0 when it is not registered. */
  idOfBytes(bytes: Uint8Array, start: number, end: number): number {
    const length = end - start;
    if (length < 1 || length > CURRENCY_CODE_BYTES_MAX) return UNKNOWN_CURRENCY_ID;
    return this.idOfCodeWords(length, codeWordAt(bytes, start, end, 0), codeWordAt(bytes, start, end, 1), codeWordAt(bytes, start, end, 2), codeWordAt(bytes, start, end, 3));
  }

  /**
   * Id of the code of `length` bytes (1..16) whose zero-padded words are word0..word3
   * (codeWordAt), or 0 when it is not registered.
   */
  idOfCodeWords(length: number, word0: number, word1: number, word2: number, word3: number): number {
    const words = this.codeWords;
    for (let probe = codeHash(length, word0, word1, word2, word3) & this.tableMask; ; probe = (probe + 1) & this.tableMask) {
      const id = this.table[probe];
      if (id === UNKNOWN_CURRENCY_ID) return UNKNOWN_CURRENCY_ID;
      const base = id * CODE_WORDS;
      if (this.codeLengths[id] === length && words[base] === word0 && words[base + 1] === word1 && words[base + 2] === word2 && words[base + 3] === word3) return id;
    }
  }

  /** Id of `code`, or 0 when it is not registered. */
  idOfCode(code: string): number {
    const length = code.length;
    if (length < 1 || length > CURRENCY_CODE_BYTES_MAX) return UNKNOWN_CURRENCY_ID;
    // Characters are truncated to bytes for the hash only; the final check is on the string.
    const hash = codeHash(length, textCodeWord(code, 0), textCodeWord(code, 1), textCodeWord(code, 2), textCodeWord(code, 3));
    for (let probe = hash & this.tableMask; ; probe = (probe + 1) & this.tableMask) {
      const id = this.table[probe];
      if (id === UNKNOWN_CURRENCY_ID) return UNKNOWN_CURRENCY_ID;
      if (this.codes[id] === code) return id;
    }
  }

  private add(entry: CurrencyConfig): void {
    const code = entry.code;
    const scale = entry.scale ?? CURRENCY_SCALE_DEFAULT;
    if (typeof code !== 'string' || !CODE_PATTERN.test(code)) throw new Error(`currency registry: bad code ${JSON.stringify(code)} (1-16 of A-Z 0-9)`);
    if (!Number.isInteger(scale) || scale < 0 || scale > AMOUNT_SCALE_MAX) throw new Error(`currency registry: bad scale ${String(scale)} for ${code}`);
    if (this.idOfCode(code) !== UNKNOWN_CURRENCY_ID) throw new Error(`currency registry: duplicate code ${code}`);
    const id = this.codes.length;
    this.codes.push(code);
    this.scales[id] = scale;
    this.codeLengths[id] = code.length;
    for (let word = 0; word < CODE_WORDS; word++) this.codeWords[id * CODE_WORDS + word] = textCodeWord(code, word);
    const words = this.codeWords;
    const base = id * CODE_WORDS;
    let probe = codeHash(code.length, words[base], words[base + 1], words[base + 2], words[base + 3]) & this.tableMask;
    while (this.table[probe] !== UNKNOWN_CURRENCY_ID) probe = (probe + 1) & this.tableMask;
    this.table[probe] = id;
  }
}

/**
 * Word `wordIndex` (0..3) of the code bytes[start..end) zero padded to 16 bytes, as an
 * int32 bit pattern: the bytes from start + 4 * wordIndex, little-endian, none past end.
 */
export function codeWordAt(bytes: Uint8Array, start: number, end: number, wordIndex: number): number {
  const at = start + (wordIndex << 2);
  const count = Math.max(0, Math.min(4, end - at));
  // A whole word masked to the code's bytes when the buffer has it (a code is followed by
  // an amount or a JSON quote): codes of 3 and 4 bytes alternate, and a branch on the
  // length would be mispredicted.
  if (at + 4 <= bytes.length) return (bytes[at] | (bytes[at + 1] << 8) | (bytes[at + 2] << 16) | (bytes[at + 3] << 24)) & WORD_MASKS[count];
  let word = 0;
  if (count > 0) word = bytes[at];
  if (count > 1) word |= bytes[at + 1] << 8;
  if (count > 2) word |= bytes[at + 2] << 16;
  if (count > 3) word |= bytes[at + 3] << 24;
  return word;
}

/** WORD_MASKS[count]: the low `count` bytes (0..4) of a word. */
const WORD_MASKS = Int32Array.of(0, 0xff, 0xffff, 0xffffff, -1);

/** codeWordAt for a string of byte-sized characters (higher bits are dropped). */
function textCodeWord(text: string, wordIndex: number): number {
  let word = 0;
  for (let index = 0; index < 4; index++) {
    const at = (wordIndex << 2) + index;
    if (at < text.length) word |= (text.charCodeAt(at) & 0xff) << (index << 3);
  }
  return word;
}

/** The registry's hash never leaves the process, so only speed and spread matter. */
function codeHash(length: number, word0: number, word1: number, word2: number, word3: number): number {
  let h = Math.imul(length ^ word0, 0x9e3779b1);
  h = Math.imul(h ^ (h >>> 15) ^ word1, 0x85ebca77);
  h = Math.imul(h ^ (h >>> 13) ^ word2, 0xc2b2ae3d);
  h = Math.imul(h ^ (h >>> 16) ^ word3, 0x27d4eb2f);
  return h ^ (h >>> 15);
}
