// A slow, obviously-correct reference model of the wire contract for tests: JSON.parse,
// BigInt and Buffer instead of the decoders' scanner and 32-bit words. The codec tests
// compare every decoded slot with it, on generated and on fuzzed messages.
// It follows the rules as written in docs/wire-format.md, not the decoders' code.

import { CommandType } from './command_layout';
import { CurrencyRegistry } from './currency_registry';
import { hash64BigInt } from './hash64';
import { homePartitionOfAccountDecimal } from './partitioner';
import { RejectCode } from './reject_code';

export interface ReferenceLeg {
  account: bigint;
  currency: number;
  home: number;
  availableDelta: bigint;
  frozenDelta: bigint;
}

export interface ReferenceCommand {
  /** The message is JSON the decoders accept (UTF-8, an object, depth <= 32, no lone surrogates). */
  jsonValid: boolean;
  type: number;
  rejectCode: number;
  /** null when no valid tx_id could be read. */
  txId: string | null;
  account: bigint;
  counterAccount: bigint;
  currency: number;
  accountHome: number;
  counterHome: number;
  amount: bigint;
  legs: ReferenceLeg[];
  /** null when the model does not know it (an amount sent as a JSON number). */
  payloadHash: bigint | null;
}

const I64_MAX = (1n << 63n) - 1n;
const I64_MIN = -(1n << 63n);
const U64_MAX = (1n << 64n) - 1n;
/** Wire type names in CommandType order from 1 (docs/wire-format.md). */
const TYPE_NAMES = ['deposit', 'withdraw', 'freeze', 'unfreeze', 'transfer', 'settle', 'credit'];
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
// ignoreBOM keeps a byte-order mark in the text, where JSON.parse refuses it (MALFORMED, as
// docs/wire-format.md says); by default TextDecoder would strip it and the oracle accept it.
const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

function isObject(value: Json | undefined): value is { [key: string]: Json } {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Containers nested (the top-level object counts 1). */
function depthOf(value: Json): number {
  if (Array.isArray(value)) return 1 + Math.max(0, ...value.map(depthOf));
  if (isObject(value)) return 1 + Math.max(0, ...Object.values(value).map(depthOf));
  return 0;
}

interface TextFacts {
  /** Some string token (key or value, even one JSON.parse drops) is not valid Unicode. */
  loneSurrogate: boolean;
  topLevel: boolean;
  txId: boolean;
  inLeg: boolean;
}

const TOP_LEVEL_KEYS = ['type', 'tx_id', 'account', 'from', 'to', 'currency', 'amount', 'legs'];
const LEG_KEYS = ['account', 'currency', 'available', 'frozen'];

/**
 * Walks valid JSON text token by token, because JSON.parse keeps only the last of duplicate
 * keys: finds duplicated known keys (top level, and in the objects of "legs"), which the
 * decoders refuse, and strings that are not valid Unicode, even in a dropped duplicate.
 */
function inspectText(text: string): TextFacts {
  const found: TextFacts = { loneSurrogate: false, topLevel: false, txId: false, inLeg: false };
  const stack: { role: 'top' | 'legs' | 'leg' | 'other'; object: boolean; keys: Set<string>; expectingKey: boolean; lastKey: string }[] = [];
  for (let index = 0; index < text.length; index++) {
    const char = text[index];
    const top = stack[stack.length - 1];
    if (char === '"') {
      let end = index + 1;
      while (text[end] !== '"') end += text[end] === '\\' ? 2 : 1;
      const value = JSON.parse(text.slice(index, end + 1)) as string;
      if (LONE_SURROGATE.test(value)) found.loneSurrogate = true;
      if (top !== undefined && top.object && top.expectingKey) {
        const known = top.role === 'top' ? TOP_LEVEL_KEYS : top.role === 'leg' ? LEG_KEYS : [];
        if (known.includes(value) && top.keys.has(value)) {
          if (top.role === 'top') found.topLevel = true;
          else found.inLeg = true;
          if (top.role === 'top' && value === 'tx_id') found.txId = true;
        }
        top.keys.add(value);
        top.expectingKey = false;
        top.lastKey = value;
      }
      index = end;
    } else if (char === '{' || char === '[') {
      const role = top === undefined ? 'top' : top.role === 'top' && top.lastKey === 'legs' && char === '[' ? 'legs' : top.role === 'legs' && char === '{' ? 'leg' : 'other';
      stack.push({ role, object: char === '{', keys: new Set(), expectingKey: char === '{', lastKey: '' });
    } else if (char === '}' || char === ']') {
      stack.pop();
    } else if (char === ',' && top !== undefined && top.object) {
      top.expectingKey = true;
    }
  }
  return found;
}

function emptyCommand(): ReferenceCommand {
  return { jsonValid: false, type: 0, rejectCode: RejectCode.Malformed, txId: null, account: 0n, counterAccount: 0n, currency: 0, accountHome: 0, counterHome: 0, amount: 0n, legs: [], payloadHash: null };
}

function accountOf(value: Json | undefined): bigint | undefined {
  if (typeof value !== 'string' || !/^(0|[1-9][0-9]{0,19})$/.test(value)) return undefined;
  const id = BigInt(value);
  return id <= U64_MAX ? id : undefined;
}

/** Reference amount rules; returns minor units or a reject code. */
export function referenceAmount(value: Json | undefined, scale: number | undefined, signed: boolean): bigint | RejectCode {
  if (typeof value === 'number') return RejectCode.BadAmount;
  if (typeof value !== 'string') return RejectCode.Malformed;
  const match = value.length <= 128 ? /^(-?)([0-9]+)(?:\.([0-9]+))?$/.exec(value) : null;
  if (match === null) return RejectCode.BadAmount;
  const negative = match[1] === '-';
  const fraction = match[3] ?? '';
  const magnitude = BigInt(match[2] + fraction);
  if (!signed && (negative || magnitude === 0n)) return RejectCode.BadAmount;
  if (scale === undefined) return 0n;
  if (fraction.length > scale) return RejectCode.BadAmount;
  const minor = (negative ? -magnitude : magnitude) * 10n ** BigInt(scale - fraction.length);
  return minor > I64_MAX || minor < I64_MIN ? RejectCode.AmountOverflow : minor;
}

const RANK: Record<number, number> = { [RejectCode.Malformed]: 4, [RejectCode.UnknownCurrency]: 3, [RejectCode.BadAmount]: 2, [RejectCode.AmountOverflow]: 1 };

function worse(a: number, b: number): number {
  return (RANK[b] ?? 0) > (RANK[a] ?? 0) ? b : a;
}

/** Canonical payload record (payload_hash.ts header), built with Buffer writes. */
class ReferencePayload {
  private readonly parts: Buffer[] = [];
  known = true;

  constructor(type: number, legCount: number) {
    this.u32(1 | (type << 8) | (legCount << 16));
  }

  u32(value: number): void {
    const part = Buffer.alloc(4);
    part.writeUInt32LE(value >>> 0);
    this.parts.push(part);
  }

  account(id: bigint): void {
    const part = Buffer.alloc(8);
    part.writeBigUInt64LE(id);
    this.parts.push(part);
  }

  currency(code: string): void {
    const bytes = Buffer.from(code, 'utf8');
    this.u32(bytes.length);
    this.parts.push(Buffer.concat([bytes, Buffer.alloc(16 - bytes.length)]));
  }

  /** `scale`: the currency's scale, undefined if the currency is unknown. */
  amount(value: Json | undefined, scale: number | undefined): void {
    if (typeof value !== 'string') {
      this.known = false;
      return;
    }
    const match = value.length <= 128 ? /^(-?)([0-9]+)(?:\.([0-9]+))?$/.exec(value) : null;
    const fraction = match === null ? '' : (match[3] ?? '').replace(/0+$/, '');
    const magnitude = match === null ? 0n : BigInt(match[2] + fraction);
    const mantissa = match !== null && match[1] === '-' ? -magnitude : magnitude;
    const part = Buffer.alloc(12);
    if (match !== null && mantissa >= I64_MIN && mantissa <= I64_MAX && fraction.length <= 18) {
      // Digits after the point as written beyond the currency's scale: BAD_AMOUNT, a payload of its own.
      const overScale = scale !== undefined && (match[3] ?? '').length > scale ? 1 : 0;
      part.writeUInt32LE((fraction.length << 8) | (overScale << 16), 0);
      part.writeBigInt64LE(mantissa, 4);
    } else {
      part.writeUInt32LE(1, 0);
      part.writeBigUInt64LE(hash64BigInt(Buffer.from(value, 'utf8')), 4);
    }
    this.parts.push(part);
  }

  hash(): bigint | null {
    return this.known ? hash64BigInt(Buffer.concat(this.parts)) : null;
  }
}

/** What the slot of `message` must hold. */
export function referenceDecodeJson(message: Uint8Array, registry: CurrencyRegistry, partitionCount: number): ReferenceCommand {
  const result = emptyCommand();
  let text: string;
  let root: Json;
  try {
    text = strictUtf8.decode(message);
    root = JSON.parse(text) as Json;
  } catch {
    return result;
  }
  if (!isObject(root) || depthOf(root) > 32) return result;
  const duplicates = inspectText(text);
  if (duplicates.loneSurrogate) return result;
  result.jsonValid = true;
  result.type = typeof root.type === 'string' ? TYPE_NAMES.indexOf(root.type) + 1 : 0;
  const txId = root.tx_id;
  const txIdBytes = typeof txId === 'string' ? Buffer.byteLength(txId, 'utf8') : 0;
  // NUL is refused: PostgreSQL text cannot store it.
  if (typeof txId === 'string' && txIdBytes >= 1 && txIdBytes <= 64 && !txId.includes('\u0000') && !duplicates.txId) result.txId = txId;
  if (result.type === 0 || result.txId === null || duplicates.topLevel) return result;
  if (duplicates.inLeg && result.type === CommandType.Settle) return result;
  const outcome = interpret(root, result.type, registry, partitionCount, result);
  if (outcome === RejectCode.Malformed) return { ...emptyCommand(), jsonValid: true, type: result.type, txId: result.txId };
  result.rejectCode = outcome;
  return result;
}

function interpret(root: { [key: string]: Json }, type: number, registry: CurrencyRegistry, partitionCount: number, out: ReferenceCommand): number {
  const legs = type === CommandType.Settle ? root.legs : undefined;
  const legCount = Array.isArray(legs) ? legs.length : 0;
  const payload = new ReferencePayload(type, type === CommandType.Settle ? legCount : 0);
  const userKey = type === CommandType.Transfer ? 'from' : 'account';
  const account = accountOf(root[userKey]);
  if (account === undefined) return RejectCode.Malformed;
  out.account = account;
  out.accountHome = homePartitionOfAccountDecimal(account.toString(), partitionCount);
  payload.account(account);
  if (type === CommandType.Transfer) {
    const counter = accountOf(root.to);
    if (counter === undefined) return RejectCode.Malformed;
    out.counterAccount = counter;
    out.counterHome = homePartitionOfAccountDecimal(counter.toString(), partitionCount);
    payload.account(counter);
  }
  let code: number = RejectCode.None;
  if (type === CommandType.Settle) {
    if (!Array.isArray(legs) || legCount < 1 || legCount > 12) return RejectCode.Malformed;
    for (const leg of legs) {
      if (!isObject(leg)) return RejectCode.Malformed;
      const legAccount = accountOf(leg.account);
      if (legAccount === undefined) return RejectCode.Malformed;
      payload.account(legAccount);
      const entry: ReferenceLeg = { account: legAccount, currency: 0, home: homePartitionOfAccountDecimal(legAccount.toString(), partitionCount), availableDelta: 0n, frozenDelta: 0n };
      const legCode = amountsOf(leg, ['available', 'frozen'], true, registry, payload, entry);
      if (legCode === RejectCode.Malformed) return legCode;
      code = worse(code, legCode);
      out.legs.push(entry);
    }
  } else {
    code = amountsOf(root, ['amount'], false, registry, payload, out);
    if (code === RejectCode.Malformed) return code;
  }
  out.payloadHash = payload.hash();
  return code;
}

/** currency + the named amounts of `holder`, into `target` (command or leg). */
function amountsOf(holder: { [key: string]: Json }, keys: string[], signed: boolean, registry: CurrencyRegistry, payload: ReferencePayload, target: { currency: number; amount?: bigint; availableDelta?: bigint; frozenDelta?: bigint }): number {
  const code = holder.currency;
  if (typeof code !== 'string' || Buffer.byteLength(code, 'utf8') < 1 || Buffer.byteLength(code, 'utf8') > 16) return RejectCode.Malformed;
  const id = registry.idOfCode(code);
  payload.currency(code);
  target.currency = id;
  let result: number = id === 0 ? RejectCode.UnknownCurrency : RejectCode.None;
  for (const key of keys) {
    const value = referenceAmount(holder[key], id === 0 ? undefined : registry.scaleOf(id), signed);
    if (value === RejectCode.Malformed) return value;
    payload.amount(holder[key], id === 0 ? undefined : registry.scaleOf(id));
    if (typeof value === 'bigint') {
      const field = key === 'amount' ? 'amount' : key === 'available' ? 'availableDelta' : 'frozenDelta';
      target[field] = value;
    } else {
      result = worse(result, value);
    }
  }
  return result;
}
