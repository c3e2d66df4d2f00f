// One entry point for every command message: tells JSON from binary by the first byte
// and decodes into a command slot.
//
// Binary messages start with a version byte in 0xB0..0xBF (0xB1 today). Those bytes are
// UTF-8 continuation bytes, so no JSON text can start with them; everything else is
// decoded as JSON (which must start with '{' or whitespace, else it is MALFORMED).

import { CommandType } from './command_layout';
import { decodeBinaryCommand } from './binary_codec';
import { CommandSlotViews } from './command_slot';
import { beginSlot, finishMalformed } from './command_writer';
import { CurrencyRegistry } from './currency_registry';
import { decodeJsonCommand } from './json_codec';
import { PARTITION_COUNT_MAX } from './partitioner';
import { RejectCode } from './reject_code';

export const enum WireFormat {
  Json = 0,
  Binary = 1,
}

export function wireFormatOf(message: Uint8Array): WireFormat {
  return message.length > 0 && (message[0] & 0xf0) === 0xb0 ? WireFormat.Binary : WireFormat.Json;
}

/**
 * A command message longer than this is MALFORMED without being parsed. The largest command
 * (a 12-leg settle) is under 2 KiB of JSON, so this leaves generous room for whitespace and
 * unknown keys, while a hostile 8 MiB message can no longer hold the consumer's thread for
 * tens of milliseconds (scanning, then hashing it).
 */
export const COMMAND_MESSAGE_BYTES_MAX = 65_536;

let decoderFaults = 0;

/**
 * Number of messages whose decoding threw. The decoders are written and fuzzed never to
 * throw; should one still do so, its message becomes a MALFORMED slot (one bad message
 * must never stall a partition) and this counter, exported as a metric, says so loudly.
 */
export function decoderFaultCount(): number {
  return decoderFaults;
}

/** Decodes a JSON or binary command message into the slot at views[slotOffset]. */
export function decodeCommand(message: Uint8Array, partition: number, offset: number, partitionCount: number, registry: CurrencyRegistry, views: CommandSlotViews, slotOffset: number): RejectCode {
  // Programmer errors, checked outside the guard below so that they stop the process.
  if (!(partitionCount >= 1 && partitionCount <= PARTITION_COUNT_MAX) || (slotOffset & 7) !== 0) {
    throw new Error(`decodeCommand: bad partitionCount ${partitionCount} or slotOffset ${slotOffset}`);
  }
  if (message.length > COMMAND_MESSAGE_BYTES_MAX) {
    beginSlot(views, slotOffset, partition, offset);
    return finishMalformed(views, slotOffset, CommandType.Unparseable, message, 0, COMMAND_MESSAGE_BYTES_MAX);
  }
  try {
    if (wireFormatOf(message) === WireFormat.Binary) return decodeBinaryCommand(message, partition, offset, partitionCount, registry, views, slotOffset);
    return decodeJsonCommand(message, partition, offset, partitionCount, registry, views, slotOffset);
  } catch {
    decoderFaults++;
    beginSlot(views, slotOffset, partition, offset);
    return finishMalformed(views, slotOffset, CommandType.Unparseable, message, 0, message.length);
  }
}
