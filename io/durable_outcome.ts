// What the outside world learns about a command once it is durable: the batcher hands over a
// committed range of the output ring (persist/batcher.ts onDurable), and this file reads each
// command's outcome slot and journal legs into a DurableOutcome, the one shape that result
// events, the transfer API, the transaction lookup and the WebSocket stream are all built
// from. Runs on the main thread, off the engine's hot path; the slots may only be read during
// the onDurable call, so everything needed later is copied out here.

import { formatAmount } from '../engine/amount';
import { CurrencyRegistry } from '../engine/currency_registry';
import {
  LEG_SLOT_CREDIT_TO_ACCOUNT_OFFSET, LEG_SLOT_CREDIT_TO_PARTITION_OFFSET, OUTCOME_FLAG_CREDIT_OUT, OUT_LEG_AVAILABLE_DELTA_OFFSET, OUTCOME_FLAG_DUPLICATE, OUTCOME_FLAG_NOT_COMMITTED, OUTCOME_FLAG_RECORDED, OUT_ACCOUNT_OFFSET, OUT_COMMAND_TYPE_OFFSET, OUT_FLAGS_OFFSET, OUT_KAFKA_OFFSET_OFFSET, OUT_LEG_ACCOUNT_OFFSET, OUT_LEG_COUNT_OFFSET,
  OUT_LEG_CURRENCY_OFFSET, OUT_LEG_PARTITION_OFFSET, OUT_LEG_RESULTING_AVAILABLE_OFFSET, OUT_LEG_RESULTING_FROZEN_OFFSET, OUT_ORIGINAL_OFFSET_OFFSET,
  OUT_PARTITION_OFFSET, OUT_REASON_OFFSET, OUT_SLOT_COUNT_OFFSET, OUT_STATUS_OFFSET, OUT_TX_ID_LENGTH_OFFSET, OUT_TX_ID_OFFSET, legOffsetInSlot,
} from '../engine/output_layout';
import { rejectCodeName } from '../engine/reject_code';
import { SYSTEM_ACCOUNT_LIMIT } from '../engine/balance_table';

export interface DurableBalance {
  readonly account: string;
  readonly currency: string;
  readonly available: string;
  readonly frozen: string;
  /** The partition the balance lives on (the command's; a system account's own). */
  readonly partition: number;
}

/** The credit an accepted cross-partition transfer owes `to`'s partition (persist/migrations/003). */
export interface OwedCredit {
  readonly txId: string;
  readonly account: string;
  readonly partition: number;
  readonly currency: string;
  readonly amount: string;
}

export interface DurableOutcome {
  readonly txId: string;
  readonly status: 'accepted' | 'rejected';
  /** Rejection code name; undefined when accepted. */
  readonly reason: string | undefined;
  /** Rejection code (engine/reject_code.ts); 0 when accepted. */
  readonly reasonCode: number;
  readonly partition: number;
  readonly offset: number;
  /** A repeat of an earlier tx_id with the same payload: the stored outcome, nothing changed. */
  readonly duplicate: boolean;
  /** Offset of the command that recorded the outcome (differs from `offset` for duplicates). */
  readonly originalOffset: number;
  /**
   * The outcome is stored in tx_outcomes by this command (OUTCOME_FLAG_RECORDED). Duplicates,
   * DUPLICATE_TX_ID_CONFLICT, MALFORMED and BALANCE_TABLE_FULL are not: they get an event,
   * but the tx_id's stored outcome stays what it was.
   */
  readonly recorded: boolean;
  readonly commandType: number;
  /** The command's debited/main account as a decimal string. */
  readonly account: string;
  /**
   * Resulting balances after the command, one per (account, currency), system accounts
   * included; read only when asked for (forEachDurableOutcome's `withBalances`), else empty.
   */
  readonly balances: readonly DurableBalance[];
  /** The result event's JSON (the public contract), built straight from the slots. */
  readonly eventJson: string;
  /** Accepted cross-partition transfers only. */
  readonly credit: OwedCredit | undefined;
}

/** The tx_id of the credit a cross-partition transfer at (partition, offset) owes; tally_credit_tx_id() in SQL. */
export function creditTxIdOf(partition: number, offset: number): string {
  return `~x${partition}-${offset}`;
}

/** The tx_id of the refund of that credit (an operator's resolution); tally_refund_tx_id() in SQL. */
export function refundTxIdOf(partition: number, offset: number): string {
  return `~r${partition}-${offset}`;
}

const STATUS_ACCEPTED = 1;

/** Output slots to read outcomes from: the engine's output ring, or a copy of a committed range of it. */
export interface OutputSlots {
  readonly data: ArrayBufferLike;
  slotOffset(position: number): number;
}

/** Positions first..last of some output slots; whole commands only. */
export interface SlotRange {
  readonly ring: OutputSlots;
  readonly firstPosition: number;
  readonly lastPosition: number;
}

/**
 * Calls `visit` for every command of the range, in ring (and so per-partition offset) order.
 * `withBalances`: also read every resulting balance into `balances` (the WebSocket stream
 * needs them, and only while somebody subscribes; formatting them for every command was a
 * tenth of the service's CPU in a profile).
 */
export function forEachDurableOutcome(range: SlotRange, registry: CurrencyRegistry, visit: (outcome: DurableOutcome) => void, withBalances = true): void {
  const cursor = { position: range.firstPosition, current: range.firstPosition };
  readDurableOutcomes(range.ring, cursor, range.lastPosition, Number.MAX_SAFE_INTEGER, registry, withBalances, visit);
}

/** Where reading goes on (`position`), and the command read last (`current`). */
export interface SlotCursor {
  position: number;
  current: number;
}

/**
 * Reads at most `commandsMax` commands (not counting those flagged OUTCOME_FLAG_NOT_COMMITTED,
 * which are skipped) from `cursor.position` (a command's first slot) up to
 * `lastPosition`, calling `visit` for each. The cursor moves past a command before it is
 * read, so after a throw (from reading or from `visit`) it is already past the command that
 * threw: the caller can report that command and go on with the next.
 */
export function readDurableOutcomes(
  slots: OutputSlots, cursor: SlotCursor, lastPosition: number, commandsMax: number, registry: CurrencyRegistry, withBalances: boolean,
  visit: (outcome: DurableOutcome) => void,
): void {
  const bytes = new Uint8Array(slots.data);
  const view = new DataView(slots.data);
  let read = 0;
  while (cursor.position <= lastPosition && read < commandsMax) {
    const position = cursor.position;
    cursor.current = position;
    const slot = slots.slotOffset(position);
    cursor.position = position + Math.max(1, bytes[slot + OUT_SLOT_COUNT_OFFSET]!);
    if ((bytes[slot + OUT_FLAGS_OFFSET]! & OUTCOME_FLAG_NOT_COMMITTED) !== 0) continue;
    read++;
    visit(readDurableOutcome(slots, bytes, view, slot, position, registry, withBalances));
  }
}

const NO_BALANCES: readonly DurableBalance[] = [];

function readDurableOutcome(
  slots: OutputSlots, bytes: Uint8Array, view: DataView, slot: number, position: number, registry: CurrencyRegistry, withBalances: boolean,
): DurableOutcome {
  const accepted = bytes[slot + OUT_STATUS_OFFSET] === STATUS_ACCEPTED;
  const txIdLength = bytes[slot + OUT_TX_ID_LENGTH_OFFSET]!;
  const legCount = bytes[slot + OUT_LEG_COUNT_OFFSET]!;
  const txId = Buffer.from(bytes.buffer, slot + OUT_TX_ID_OFFSET, txIdLength).toString('utf8');
  const status = accepted ? 'accepted' : 'rejected';
  const reason = accepted ? undefined : rejectCodeName(bytes[slot + OUT_REASON_OFFSET]!);
  const partition = view.getUint32(slot + OUT_PARTITION_OFFSET, true);
  const offset = view.getFloat64(slot + OUT_KAFKA_OFFSET_OFFSET, true);
  const duplicate = (bytes[slot + OUT_FLAGS_OFFSET]! & OUTCOME_FLAG_DUPLICATE) !== 0;
  const recorded = (bytes[slot + OUT_FLAGS_OFFSET]! & OUTCOME_FLAG_RECORDED) !== 0;
  const originalOffset = view.getFloat64(slot + OUT_ORIGINAL_OFFSET_OFFSET, true);
  const credit = accepted && (bytes[slot + OUT_FLAGS_OFFSET]! & OUTCOME_FLAG_CREDIT_OUT) !== 0 ? readCredit(slots, view, slot, position, registry) : undefined;
  // The same bytes as resultEventJson() of the outcome (durable_outcome.test.ts compares them).
  let eventJson = `{"tx_id":${JSON.stringify(txId)},"status":"${status}"`;
  if (reason !== undefined) eventJson += `,"reason":"${reason}"`;
  eventJson += `,"partition":${partition},"offset":"${offset}"`;
  if (duplicate) eventJson += `,"duplicate":true,"original_offset":"${originalOffset}"`;
  if (credit !== undefined) eventJson += `,"credit":{"tx_id":"${credit.txId}","account":"${credit.account}","partition":${credit.partition},"status":"pending"}`;
  const balancesJson = legCount === 0 ? '' : userBalancesJson(slots, view, position, legCount, registry);
  eventJson += balancesJson === '' ? '}' : `,"balances":[${balancesJson}]}`;
  return {
    txId, status, reason, reasonCode: accepted ? 0 : bytes[slot + OUT_REASON_OFFSET]!, partition, offset, duplicate, originalOffset, recorded,
    commandType: bytes[slot + OUT_COMMAND_TYPE_OFFSET]!,
    account: unsignedDecimal(view.getUint32(slot + OUT_ACCOUNT_OFFSET, true), view.getUint32(slot + OUT_ACCOUNT_OFFSET + 4, true)),
    balances: withBalances ? readBalances(slots, view, position, legCount, registry) : NO_BALANCES,
    credit, eventJson,
  };
}

// Scratch for collectBalanceKeys: the distinct (account, currency, partition) keys of one
// command's legs, in first-seen order, with the byte offset of each key's last leg. A leg
// count is one byte.
const keyAccountLo = new Uint32Array(256);
const keyAccountHi = new Uint32Array(256);
const keyCurrency = new Uint32Array(256);
const keyPartition = new Uint32Array(256);
const keyLastLeg = new Int32Array(256);
let quotedCodes: string[] = [];
let quotedCodesOf: CurrencyRegistry | undefined;

/** `"CODE"` per currency id (codes are [A-Z0-9], so this is their JSON). */
function quotedCode(registry: CurrencyRegistry, currency: number): string {
  if (quotedCodesOf !== registry) {
    quotedCodes = [];
    quotedCodesOf = registry;
  }
  return quotedCodes[currency] ??= JSON.stringify(registry.codeOf(currency));
}

// The legs in order carry the running balance after each; the last leg of a key is its
// result. Fills the key scratch and returns the number of keys.
function collectBalanceKeys(slots: OutputSlots, view: DataView, position: number, legCount: number): number {
  let keys = 0;
  for (let leg = 0; leg < legCount; leg++) {
    const at = slots.slotOffset(position + 1 + (leg >> 1)) + legOffsetInSlot(leg);
    const lo = view.getUint32(at + OUT_LEG_ACCOUNT_OFFSET, true);
    const hi = view.getUint32(at + OUT_LEG_ACCOUNT_OFFSET + 4, true);
    const currency = view.getUint32(at + OUT_LEG_CURRENCY_OFFSET, true);
    const partition = view.getUint32(at + OUT_LEG_PARTITION_OFFSET, true);
    let key = 0;
    while (key < keys && !(keyAccountLo[key] === lo && keyAccountHi[key] === hi && keyCurrency[key] === currency && keyPartition[key] === partition)) key++;
    if (key === keys) {
      keyAccountLo[key] = lo;
      keyAccountHi[key] = hi;
      keyCurrency[key] = currency;
      keyPartition[key] = partition;
      keys++;
    }
    keyLastLeg[key] = at;
  }
  return keys;
}

// The "balances" entries of the result event: user accounts only, one per key, in the order
// the keys first appear.
function userBalancesJson(slots: OutputSlots, view: DataView, position: number, legCount: number, registry: CurrencyRegistry): string {
  const keys = collectBalanceKeys(slots, view, position, legCount);
  let json = '';
  for (let key = 0; key < keys; key++) {
    const lo = keyAccountLo[key]!;
    const hi = keyAccountHi[key]!;
    if (hi === 0 && lo < SYSTEM_ACCOUNT_LIMIT) continue;
    const at = keyLastLeg[key]!;
    const currency = keyCurrency[key]!;
    const scale = registry.scaleOf(currency);
    if (json !== '') json += ',';
    json += '{"account":"' + unsignedDecimal(lo, hi) + '","currency":' + quotedCode(registry, currency) +
      ',"available":"' + formatAmount(view.getUint32(at + OUT_LEG_RESULTING_AVAILABLE_OFFSET, true), view.getInt32(at + OUT_LEG_RESULTING_AVAILABLE_OFFSET + 4, true), scale) +
      '","frozen":"' + formatAmount(view.getUint32(at + OUT_LEG_RESULTING_FROZEN_OFFSET, true), view.getInt32(at + OUT_LEG_RESULTING_FROZEN_OFFSET + 4, true), scale) + '"}';
  }
  return json;
}

function readCredit(slots: OutputSlots, view: DataView, slot: number, position: number, registry: CurrencyRegistry): OwedCredit {
  const legSlot = slots.slotOffset(position + 1);
  const transitLeg = legSlot + legOffsetInSlot(1);
  const currency = view.getUint32(transitLeg + OUT_LEG_CURRENCY_OFFSET, true);
  const partition = view.getUint32(slot + OUT_PARTITION_OFFSET, true);
  return {
    txId: creditTxIdOf(partition, view.getFloat64(slot + OUT_KAFKA_OFFSET_OFFSET, true)),
    account: unsignedDecimal(view.getUint32(legSlot + LEG_SLOT_CREDIT_TO_ACCOUNT_OFFSET, true), view.getUint32(legSlot + LEG_SLOT_CREDIT_TO_ACCOUNT_OFFSET + 4, true)),
    partition: view.getUint32(legSlot + LEG_SLOT_CREDIT_TO_PARTITION_OFFSET, true),
    currency: registry.codeOf(currency),
    amount: formatAmount(view.getUint32(transitLeg + OUT_LEG_AVAILABLE_DELTA_OFFSET, true), view.getInt32(transitLeg + OUT_LEG_AVAILABLE_DELTA_OFFSET + 4, true), registry.scaleOf(currency)),
  };
}

/** Every resulting balance, system accounts included, one per key in first-seen order. */
function readBalances(slots: OutputSlots, view: DataView, position: number, legCount: number, registry: CurrencyRegistry): DurableBalance[] {
  const keys = collectBalanceKeys(slots, view, position, legCount);
  const balances: DurableBalance[] = [];
  for (let key = 0; key < keys; key++) {
    const at = keyLastLeg[key]!;
    const currency = keyCurrency[key]!;
    const scale = registry.scaleOf(currency);
    balances.push({
      account: unsignedDecimal(keyAccountLo[key]!, keyAccountHi[key]!),
      currency: registry.codeOf(currency),
      available: formatAmount(view.getUint32(at + OUT_LEG_RESULTING_AVAILABLE_OFFSET, true), view.getInt32(at + OUT_LEG_RESULTING_AVAILABLE_OFFSET + 4, true), scale),
      frozen: formatAmount(view.getUint32(at + OUT_LEG_RESULTING_FROZEN_OFFSET, true), view.getInt32(at + OUT_LEG_RESULTING_FROZEN_OFFSET + 4, true), scale),
      partition: keyPartition[key]!,
    });
  }
  return balances;
}

export function unsignedDecimal(lo: number, hi: number): string {
  return hi === 0 ? String(lo >>> 0) : ((BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0)).toString();
}

export function isSystemAccountDecimal(account: string): boolean {
  return account.length <= 3 && Number(account) < SYSTEM_ACCOUNT_LIMIT;
}

/**
 * The result event of the public contract (docs/wire-format.md), from an outcome read with
 * its balances. `balances` lists the user accounts' resulting balances; duplicates carry
 * `duplicate` and the original offset. The reference for `eventJson`, which the fan-out
 * builds from the slots without formatting system accounts' balances.
 */
export function resultEventJson(outcome: DurableOutcome): string {
  let json = `{"tx_id":${JSON.stringify(outcome.txId)},"status":"${outcome.status}"`;
  if (outcome.reason !== undefined) json += `,"reason":"${outcome.reason}"`;
  json += `,"partition":${outcome.partition},"offset":"${outcome.offset}"`;
  if (outcome.duplicate) json += `,"duplicate":true,"original_offset":"${outcome.originalOffset}"`;
  if (outcome.credit !== undefined) json += `,"credit":{"tx_id":"${outcome.credit.txId}","account":"${outcome.credit.account}","partition":${outcome.credit.partition},"status":"pending"}`;
  const users = outcome.balances.filter((b) => !isSystemAccountDecimal(b.account));
  if (users.length > 0) {
    json += ',"balances":[';
    json += users.map((b) => `{"account":"${b.account}","currency":${JSON.stringify(b.currency)},"available":"${b.available}","frozen":"${b.frozen}"}`).join(',');
    json += ']';
  }
  return json + '}';
}
