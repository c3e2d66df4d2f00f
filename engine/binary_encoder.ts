// Binary command encoder for producers (layout: binary_codec.ts, docs/wire-format.md).
//
// It takes the same object as the JSON contract (decimal strings) and needs no currency
// registry: each amount is written as its own digits and scale. It encodes what the
// decoder may still reject by rule (a negative deposit, an unknown currency, more digits
// than the currency's scale) so that producers and tests can send exactly what a JSON
// client could; it throws only for what the format cannot carry: a tx_id outside 1..64
// UTF-8 bytes, a non-canonical account id, a currency outside 1..16 bytes, an amount that
// is not a decimal string, has more than 18 digits after the point, or whose digits do
// not fit in an i64, and 0 or more than 12 legs.

import { CommandType, SETTLE_LEGS_MAX, TX_ID_BYTES_MAX } from './command_layout';
import { accountIdFromString } from './account_id';
import { AMOUNT_SCALE_MAX, AMOUNT_TEXT_BYTES_MAX, DecimalAmount, readDecimalText, scaleDecimal } from './amount';
import {
  BINARY_ACCOUNT_BYTES,
  BINARY_AMOUNT_BYTES,
  BINARY_COMMAND_BYTES_MAX,
  BINARY_TX_ID_OFFSET,
  BINARY_VERSION_1,
} from './binary_codec';
import { CURRENCY_CODE_BYTES_MAX } from './currency_registry';
import { RejectCode } from './reject_code';
import { WireCommand, commandTypeOfName } from './wire_command';

const amountScratch = new DecimalAmount();
const textScratch = new Uint8Array(AMOUNT_TEXT_BYTES_MAX);

/** Encodes `command` into a new Uint8Array of exactly its size. */
export function encodeCommandBinary(command: WireCommand): Uint8Array {
  const scratch = new Uint8Array(BINARY_COMMAND_BYTES_MAX);
  const length = encodeCommandBinaryInto(command, scratch, 0);
  return scratch.slice(0, length);
}

/**
 * Encodes `command` at target[offset..] and returns the number of bytes written (at most
 * BINARY_COMMAND_BYTES_MAX). Throws if the command cannot be carried (see above) or the
 * target is too small.
 */
export function encodeCommandBinaryInto(command: WireCommand, target: Uint8Array, offset: number): number {
  const writer = new Writer(target, offset);
  const type = commandTypeOfName(command.type);
  if (type === CommandType.Unparseable) throw new Error(`binary encoder: unknown type ${JSON.stringify(command.type)}`);
  const txId = Buffer.from(String(command.tx_id), 'utf8');
  if (txId.length < 1 || txId.length > TX_ID_BYTES_MAX) throw new Error(`binary encoder: tx_id must be 1..${TX_ID_BYTES_MAX} UTF-8 bytes`);
  writer.u8(BINARY_VERSION_1);
  writer.u8(type);
  writer.u8(txId.length);
  if (command.type === 'transfer') writer.account(command.from);
  else writer.account(command.account);
  writer.bytes(txId);
  if (writer.position !== offset + BINARY_TX_ID_OFFSET + txId.length) throw new Error('binary encoder: header layout mismatch');
  if (command.type === 'transfer') {
    writer.account(command.to);
    writer.currency(command.currency);
    writer.amount(command.amount);
  } else if (command.type === 'settle') {
    const legs = command.legs;
    if (!Array.isArray(legs) || legs.length < 1 || legs.length > SETTLE_LEGS_MAX) throw new Error(`binary encoder: settle needs 1..${SETTLE_LEGS_MAX} legs`);
    writer.u8(legs.length);
    for (const leg of legs) {
      writer.account(leg.account);
      writer.currency(leg.currency);
      writer.amount(leg.available);
      writer.amount(leg.frozen);
    }
  } else {
    writer.currency(command.currency);
    writer.amount(command.amount);
  }
  return writer.position - offset;
}

class Writer {
  position: number;

  constructor(private readonly target: Uint8Array, offset: number) {
    this.position = offset;
  }

  u8(value: number): void {
    this.room(1);
    this.target[this.position++] = value;
  }

  u32(value: number): void {
    this.room(4);
    const at = this.position;
    this.target[at] = value;
    this.target[at + 1] = value >>> 8;
    this.target[at + 2] = value >>> 16;
    this.target[at + 3] = value >>> 24;
    this.position = at + 4;
  }

  bytes(source: Uint8Array): void {
    this.room(source.length);
    this.target.set(source, this.position);
    this.position += source.length;
  }

  account(text: string): void {
    const id = accountIdFromString(String(text));
    if (id === undefined) throw new Error(`binary encoder: bad account id ${JSON.stringify(text)}`);
    this.room(BINARY_ACCOUNT_BYTES);
    this.u32(Number(id & 0xffffffffn));
    this.u32(Number(id >> 32n));
  }

  currency(code: string): void {
    const encoded = Buffer.from(String(code), 'utf8');
    if (encoded.length < 1 || encoded.length > CURRENCY_CODE_BYTES_MAX) throw new Error(`binary encoder: currency must be 1..${CURRENCY_CODE_BYTES_MAX} bytes`);
    this.u8(encoded.length);
    this.bytes(encoded);
  }

  /** The decimal string's own digits and scale: "1.10" -> (110, 2). */
  amount(text: string): void {
    const value = String(text);
    let valid = value.length <= AMOUNT_TEXT_BYTES_MAX;
    for (let index = 0; valid && index < value.length; index++) {
      const code = value.charCodeAt(index);
      valid = code < 0x80;
      textScratch[index] = code;
    }
    const decimal = amountScratch;
    if (!valid || !readDecimalText(textScratch, 0, value.length, decimal)) throw new Error(`binary encoder: not a decimal amount ${JSON.stringify(text)}`);
    if (decimal.literalScale > AMOUNT_SCALE_MAX) throw new Error(`binary encoder: more than ${AMOUNT_SCALE_MAX} digits after the point in ${value}`);
    if (scaleDecimal(decimal, decimal.literalScale) !== RejectCode.None) throw new Error(`binary encoder: digits of ${value} do not fit in an i64`);
    this.room(BINARY_AMOUNT_BYTES);
    this.u32(decimal.minorLo);
    this.u32(decimal.minorHi);
    this.u8(decimal.literalScale);
  }

  private room(count: number): void {
    if (this.position + count > this.target.length) throw new RangeError('binary encoder: target buffer too small');
  }
}
