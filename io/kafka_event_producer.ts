// The typed face of io/native/kafka_event_producer.c (built into dist/native by
// io/native/build.sh as part of `npm run build`): a librdkafka producer that takes result
// events in batches written into one Buffer and counts delivery reports in C. See the C
// file for why, and for the record layout that `EventRecordBuffer` writes.

import { loadNativeAddon } from './native_addon';

declare const handleBrand: unique symbol;
/** An open native producer. */
export type ProducerHandle = { readonly [handleBrand]: true };

interface NativeEventProducer {
  create(config: string[], topic: string): ProducerHandle;
  partitionCount(handle: ProducerHandle, timeoutMs: number): number;
  produce(handle: ProducerHandle, records: Uint8Array, end: number): number;
  poll(handle: ProducerHandle, counters: Float64Array): void;
  takeAcknowledged(handle: ProducerHandle): number[];
  takeErrors(handle: ProducerHandle): string[];
  /** The offset of the earliest failed event that held the partition's position back (now forgotten), or -1. */
  forgetFailures(handle: ProducerHandle, commandPartition: number): number;
  /** Partitions whose position a failed event holds back, ascending. */
  heldBack(handle: ProducerHandle): number[];
  /** An event that was not even queued: counted as failed, it holds its partition's position back. */
  noteFailed(handle: ProducerHandle, commandPartition: number, commandOffset: number, reason: string): void;
  destroy(handle: ProducerHandle): void;
}

export function nativeEventProducer(): NativeEventProducer {
  return loadNativeAddon<NativeEventProducer>('kafka_event_producer');
}

/** Bytes before an event's key and value; offsets of its fields. */
export const EVENT_RECORD_HEADER_BYTES = 24;
const EVENT_PARTITION_AT = 0;
const COMMAND_PARTITION_AT = 4;
const COMMAND_OFFSET_AT = 8;
const KEY_BYTES_AT = 16;
const VALUE_BYTES_AT = 20;
/** Command offsets travel in 48 bits of the message opaque. */
export const COMMAND_OFFSET_LIMIT = 2 ** 48;
const UTF8_BYTES_PER_UTF16_UNIT_MAX = 3;

/**
 * Event records waiting for the native producer, in order, in one growable Buffer. Only
 * the front may be taken (what produce() accepted); what is left keeps its order.
 */
export class EventRecordBuffer {
  private bytes: Buffer;
  /** Bytes in use. */
  end = 0;
  /** Records in use. */
  count = 0;

  constructor(initialBytes: number, private readonly bytesMax: number) {
    this.bytes = Buffer.allocUnsafe(initialBytes);
  }

  get buffer(): Buffer {
    return this.bytes;
  }

  /** Appends one event; false if it would take the buffer beyond its bound. */
  append(eventPartition: number, commandPartition: number, commandOffset: number, key: string, value: string): boolean {
    const needed = EVENT_RECORD_HEADER_BYTES + (key.length + value.length) * UTF8_BYTES_PER_UTF16_UNIT_MAX;
    if (this.end + needed > this.bytes.length && !this.grow(this.end + needed)) return false;
    const bytes = this.bytes;
    const at = this.end;
    const keyBytes = bytes.write(key, at + EVENT_RECORD_HEADER_BYTES);
    const valueBytes = bytes.write(value, at + EVENT_RECORD_HEADER_BYTES + keyBytes);
    bytes.writeUInt32LE(eventPartition, at + EVENT_PARTITION_AT);
    bytes.writeUInt32LE(commandPartition, at + COMMAND_PARTITION_AT);
    bytes.writeDoubleLE(commandOffset, at + COMMAND_OFFSET_AT);
    bytes.writeUInt32LE(keyBytes, at + KEY_BYTES_AT);
    bytes.writeUInt32LE(valueBytes, at + VALUE_BYTES_AT);
    this.end = at + EVENT_RECORD_HEADER_BYTES + keyBytes + valueBytes;
    this.count++;
    return true;
  }

  /** Drops the first `takenBytes` (whole records), keeping the rest in order. */
  dropFront(takenBytes: number): void {
    if (takenBytes === this.end) {
      this.end = 0;
      this.count = 0;
      return;
    }
    let left = 0;
    for (let at = takenBytes; at < this.end; left++) {
      at += EVENT_RECORD_HEADER_BYTES + this.bytes.readUInt32LE(at + KEY_BYTES_AT) + this.bytes.readUInt32LE(at + VALUE_BYTES_AT);
    }
    this.bytes.copy(this.bytes, 0, takenBytes, this.end);
    this.end -= takenBytes;
    this.count = left;
  }

  private grow(bytesNeeded: number): boolean {
    if (bytesNeeded > this.bytesMax) return false;
    let size = this.bytes.length * 2;
    while (size < bytesNeeded) size *= 2;
    const grown = Buffer.allocUnsafe(Math.min(size, this.bytesMax));
    this.bytes.copy(grown, 0, 0, this.end);
    this.bytes = grown;
    return true;
  }
}
