// Currency registry: currency code -> dense id (u32 from 1; 0 = unknown) and scale.
//
// Built once from configuration (control plane); ids follow the configuration order, so
// every thread that rebuilds the registry from `serialize()` gets the same ids. Lookups
// by string or by bytes use an open-addressing table over typed arrays and allocate
// nothing, so the decoders can call them per command.

import { AMOUNT_SCALE_MAX } from './amount';

export const CURRENCY_CODE_BYTES_MAX = 16;
export const CURRENCY_SCALE_DEFAULT = 8;
export const UNKNOWN_CURRENCY_ID = 0;
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
  private readonly codeBytes: Uint8Array;
  private readonly codeLengths: Uint8Array;
  private readonly scales: Uint8Array;
  private readonly table: Uint32Array;
  private readonly tableMask: number;

  private constructor(config: readonly CurrencyConfig[]) {
    if (config.length > CURRENCIES_MAX) throw new Error(`currency registry: at most ${CURRENCIES_MAX} currencies`);
    const capacity = config.length + 1;
    this.codeBytes = new Uint8Array(capacity * CURRENCY_CODE_BYTES_MAX);
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
    let hash = length;
    for (let index = start; index < end; index++) hash = mixByte(hash, bytes[index]);
    for (let probe = finalizeHash(hash) & this.tableMask; ; probe = (probe + 1) & this.tableMask) {
      const id = this.table[probe];
      if (id === UNKNOWN_CURRENCY_ID) return UNKNOWN_CURRENCY_ID;
      if (this.codeLengths[id] === length && this.bytesEqual(id, bytes, start, length)) return id;
    }
  }

  /** Id of `code`, or 0 when it is not registered. */
  idOfCode(code: string): number {
    const length = code.length;
    if (length < 1 || length > CURRENCY_CODE_BYTES_MAX) return UNKNOWN_CURRENCY_ID;
    let hash = length;
    for (let index = 0; index < length; index++) hash = mixByte(hash, code.charCodeAt(index));
    for (let probe = finalizeHash(hash) & this.tableMask; ; probe = (probe + 1) & this.tableMask) {
      const id = this.table[probe];
      if (id === UNKNOWN_CURRENCY_ID) return UNKNOWN_CURRENCY_ID;
      if (this.codes[id] === code) return id;
    }
  }

  private bytesEqual(id: number, bytes: Uint8Array, start: number, length: number): boolean {
    const base = id * CURRENCY_CODE_BYTES_MAX;
    for (let index = 0; index < length; index++) {
      if (this.codeBytes[base + index] !== bytes[start + index]) return false;
    }
    return true;
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
    let hash = code.length;
    for (let index = 0; index < code.length; index++) {
      this.codeBytes[id * CURRENCY_CODE_BYTES_MAX + index] = code.charCodeAt(index);
      hash = mixByte(hash, code.charCodeAt(index));
    }
    let probe = finalizeHash(hash) & this.tableMask;
    while (this.table[probe] !== UNKNOWN_CURRENCY_ID) probe = (probe + 1) & this.tableMask;
    this.table[probe] = id;
  }
}

/** FNV-1a step; the registry's hash never leaves the process, so only speed matters. */
function mixByte(hash: number, byte: number): number {
  return Math.imul(hash ^ byte, 0x01000193);
}

function finalizeHash(hash: number): number {
  let h = hash ^ (hash >>> 15);
  h = Math.imul(h, 0x2c1b3c6d);
  return h ^ (h >>> 12);
}
