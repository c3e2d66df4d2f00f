// Writes decoded commands into command slots (command_layout.ts) from numbers and bigints,
// without any text parsing: for tests, benches and producers that already hold the fields.
// The real decoders (json_codec.ts, binary_codec.ts) fill the same layout from wire bytes.
//
// When the caller gives no hashes, the writer derives them: txIdHash from the tx_id bytes and
// payloadHash from every payload field of the slot (rejectCode included, tx_id excluded), with
// two MurmurHash3 lanes. These are test-quality stand-ins for the codecs' real hashes; the
// engine only needs "equal payload ⇒ equal hash".
import {
  ACCOUNT_HOME_OFFSET, ACCOUNT_OFFSET, AMOUNT_OFFSET, COMMAND_SLOT_BYTES, COUNTER_ACCOUNT_OFFSET,
  COUNTER_HOME_OFFSET, CURRENCY_OFFSET, KAFKA_OFFSET_OFFSET, LEG_ACCOUNT_OFFSET, LEG_AVAILABLE_DELTA_OFFSET,
  LEG_BYTES, LEG_COUNT_OFFSET, LEG_CURRENCY_OFFSET, LEG_FROZEN_DELTA_OFFSET, LEG_HOME_OFFSET, LEGS_OFFSET,
  PARTITION_OFFSET, PAYLOAD_HASH_OFFSET, REJECT_CODE_OFFSET, SETTLE_LEGS_MAX, TX_ID_BYTES_MAX,
  TX_ID_HASH_OFFSET, TX_ID_LENGTH_OFFSET, TX_ID_OFFSET, TYPE_OFFSET,
} from './command_layout';
import { finalize32, mix32 } from './mix32';

export interface SettleLegFields {
  readonly account: bigint;
  readonly currency: number;
  /** Home partition of the leg's account (ignored by the engine for system accounts). */
  readonly home: number;
  readonly available: bigint;
  readonly frozen: bigint;
}

export interface CommandFields {
  /** CommandType (0 = unparseable). */
  readonly type: number;
  /** RejectCode preset by the decoder; default 0. */
  readonly rejectCode?: number;
  /** tx_id text or bytes; empty = no usable tx_id. */
  readonly txId: string | Uint8Array;
  readonly partition: number;
  readonly kafkaOffset: number;
  readonly account: bigint;
  readonly counterAccount?: bigint;
  readonly currency?: number;
  /** Default: `partition`. */
  readonly accountHome?: number;
  /** Default: `partition`. */
  readonly counterHome?: number;
  readonly amount?: bigint;
  readonly legs?: readonly SettleLegFields[];
  /** Overrides legs.length in the slot (to write malformed settles). */
  readonly legCount?: number;
  readonly txIdHash?: bigint;
  readonly payloadHash?: bigint;
}

export class CommandSlotWriter {
  private readonly bytes: Uint8Array;
  private readonly view: DataView;
  private readonly words: Uint32Array;

  constructor(buffer: ArrayBufferLike) {
    this.bytes = new Uint8Array(buffer);
    this.view = new DataView(buffer);
    this.words = new Uint32Array(buffer);
  }

  /** Clears the slot at `slotOffset` and writes `fields` into it. */
  write(slotOffset: number, fields: CommandFields): void {
    if (slotOffset % COMMAND_SLOT_BYTES !== 0) throw new Error(`command slot writer: offset ${slotOffset} is not a slot boundary`);
    const view = this.view;
    this.bytes.fill(0, slotOffset, slotOffset + COMMAND_SLOT_BYTES);
    const txId = typeof fields.txId === 'string' ? Buffer.from(fields.txId, 'utf8') : fields.txId;
    if (txId.length > TX_ID_BYTES_MAX) throw new Error(`command slot writer: tx_id of ${txId.length} bytes exceeds ${TX_ID_BYTES_MAX}`);
    const legs = fields.legs ?? [];
    if (legs.length > SETTLE_LEGS_MAX) throw new Error(`command slot writer: ${legs.length} legs exceed ${SETTLE_LEGS_MAX}`);
    view.setUint8(slotOffset + TYPE_OFFSET, fields.type);
    view.setUint8(slotOffset + REJECT_CODE_OFFSET, fields.rejectCode ?? 0);
    view.setUint8(slotOffset + LEG_COUNT_OFFSET, fields.legCount ?? legs.length);
    view.setUint8(slotOffset + TX_ID_LENGTH_OFFSET, txId.length);
    view.setUint32(slotOffset + PARTITION_OFFSET, fields.partition, true);
    view.setFloat64(slotOffset + KAFKA_OFFSET_OFFSET, fields.kafkaOffset, true);
    view.setBigUint64(slotOffset + ACCOUNT_OFFSET, fields.account, true);
    view.setBigUint64(slotOffset + COUNTER_ACCOUNT_OFFSET, fields.counterAccount ?? 0n, true);
    view.setUint32(slotOffset + CURRENCY_OFFSET, fields.currency ?? 0, true);
    view.setUint16(slotOffset + ACCOUNT_HOME_OFFSET, fields.accountHome ?? fields.partition, true);
    view.setUint16(slotOffset + COUNTER_HOME_OFFSET, fields.counterHome ?? fields.partition, true);
    view.setBigInt64(slotOffset + AMOUNT_OFFSET, fields.amount ?? 0n, true);
    this.bytes.set(txId, slotOffset + TX_ID_OFFSET);
    for (let i = 0; i < legs.length; i++) {
      const base = slotOffset + LEGS_OFFSET + i * LEG_BYTES;
      view.setBigUint64(base + LEG_ACCOUNT_OFFSET, legs[i].account, true);
      view.setUint32(base + LEG_CURRENCY_OFFSET, legs[i].currency, true);
      view.setUint32(base + LEG_HOME_OFFSET, legs[i].home, true);
      view.setBigInt64(base + LEG_AVAILABLE_DELTA_OFFSET, legs[i].available, true);
      view.setBigInt64(base + LEG_FROZEN_DELTA_OFFSET, legs[i].frozen, true);
    }
    view.setBigUint64(slotOffset + TX_ID_HASH_OFFSET, fields.txIdHash ?? txIdHash64(txId), true);
    view.setBigUint64(slotOffset + PAYLOAD_HASH_OFFSET, fields.payloadHash ?? this.payloadHashOf(slotOffset), true);
  }

  /** Hash of the slot's payload fields: type, rejectCode, legCount, account..amount, legs. */
  payloadHashOf(slotOffset: number): bigint {
    const words = this.words;
    const first = slotOffset >> 2;
    let a = mix32(0x1234567, words[first] & 0x00ffffff);
    let b = mix32(0x7654321, words[first] & 0x00ffffff);
    for (let word = first + (ACCOUNT_OFFSET >> 2); word < first + (TX_ID_OFFSET >> 2); word++) {
      a = mix32(a, words[word]);
      b = mix32(b, words[word] ^ 0x9e3779b9);
    }
    const legCount = Math.min(this.bytes[slotOffset + LEG_COUNT_OFFSET], SETTLE_LEGS_MAX);
    const legsEnd = first + ((LEGS_OFFSET + legCount * LEG_BYTES) >> 2);
    for (let word = first + (LEGS_OFFSET >> 2); word < legsEnd; word++) {
      a = mix32(a, words[word]);
      b = mix32(b, words[word] ^ 0x9e3779b9);
    }
    return (BigInt(finalize32(b) >>> 0) << 32n) | BigInt(finalize32(a) >>> 0);
  }
}

/** A 64-bit hash of tx_id bytes (two MurmurHash3 lanes; test-quality). */
export function txIdHash64(bytes: Uint8Array): bigint {
  let a = 0x2545f491;
  let b = 0x4f6cdd1d;
  for (let i = 0; i < bytes.length; i++) {
    a = mix32(a, bytes[i]);
    b = mix32(b, bytes[i] + 0x100);
  }
  return (BigInt(finalize32(b ^ bytes.length) >>> 0) << 32n) | BigInt(finalize32(a ^ bytes.length) >>> 0);
}
