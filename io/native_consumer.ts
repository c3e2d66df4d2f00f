// The typed face of io/native/kafka_command_consumer.c (built into dist/native by
// io/native/build.sh): a librdkafka consumer whose consume() writes a batch of messages as
// records into the caller's Buffer. Used by io/command_consumer.ts and by the e2e bench's
// result-event listener.

import { loadNativeAddon } from './native_addon';

declare const handleBrand: unique symbol;
export type ConsumerHandle = { readonly [handleBrand]: true };

export interface NativeConsumer {
  create(config: string[], topic: string, group: boolean): ConsumerHandle;
  subscribe(handle: ConsumerHandle): void;
  /** Writes records (layout below) of up to messagesMax messages; answers the bytes written. */
  consume(handle: ConsumerHandle, out: Uint8Array, messagesMax: number): number;
  /** null, or [assign 0/1, lost 0/1, partition…]. */
  takeRebalance(handle: ConsumerHandle): number[] | null;
  /** Offsets Tally's own, or logical (-2: the log's start). Drops held messages of the partitions. */
  incrementalAssign(handle: ConsumerHandle, partitions: number[], offsets: number[]): void;
  /** Drops held messages of the partitions. */
  incrementalUnassign(handle: ConsumerHandle, partitions: number[]): void;
  pause(handle: ConsumerHandle, partitions: number[]): void;
  resume(handle: ConsumerHandle, partitions: number[]): void;
  /**
   * Drops held messages of the partitions; the next fetch of each starts at its offset.
   * Answers per partition '' or why librdkafka refused (its fetcher not started, say).
   */
  seek(handle: ConsumerHandle, partitions: number[], offsets: number[]): string[];
  highWatermark(handle: ConsumerHandle, partition: number): number;
  /** Topic metadata from the broker, fetched off the main thread. */
  probe(handle: ConsumerHandle, timeoutMs: number): Promise<void>;
  takeErrors(handle: ConsumerHandle): string[];
  /** [partition, offset, …]: partitions whose position fell outside the log since the last call (auto.offset.reset=error); each also noted as an error. */
  takeOffsetResets(handle: ConsumerHandle): number[];
  /** The first fatal error (the consumer reads nothing more), or null. */
  fatalError(handle: ConsumerHandle): string | null;
  close(handle: ConsumerHandle): void;
}

export function nativeConsumer(): NativeConsumer {
  return loadNativeAddon<NativeConsumer>('kafka_command_consumer');
}

/** librdkafka settings as the [key, value, …] strings create() takes. */
export function configPairs(config: Readonly<Record<string, string | number | boolean>>): string[] {
  return Object.entries(config).flatMap(([key, value]) => [key, String(value)]);
}

// A record of consume(): partition u32 · value bytes u32 (VALUE_OVERSIZED: too big for the
// Buffer, no bytes) · offset f64 · value.
export const RECORD_HEADER_BYTES = 16;
export const RECORD_VALUE_BYTES_AT = 4;
export const RECORD_OFFSET_AT = 8;
export const VALUE_OVERSIZED = 0xffffffff;
