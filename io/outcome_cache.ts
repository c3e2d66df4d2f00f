// Recent durable outcomes by tx_id, for GET /v1/transactions/{tx_id} and for transfer
// requests waiting on their command. Fed from the batcher's onDurable, so it only ever holds
// outcomes that are committed in PostgreSQL. Bounded: the oldest entry goes first, found
// through a ring of the added outcomes (not by iterating the Map from its start, which walks
// over the holes deletions leave and was 13% of the main thread in a profile); anything older
// is read from PostgreSQL.
//
// What is kept per outcome is its result event's JSON (the same fields as a transaction
// lookup's body) and its partition, in rings of strings and integers; a lookup parses the
// JSON, which only lookups pay. The index from tx_id to ring position is an open-addressing
// table in an Int32Array (linear probing, backward-shift deletion), not a Map: at full ingest
// a Map of 200 000 string keys with an add and a delete per command cost 1.8 µs per outcome
// (7 % of the main thread in a profile), most of it cache misses in its entry chains.
//
// tx_ids are deduplicated per partition, so two partitions may each hold a command with the
// same tx_id; the cache keeps the latest and the database lookup returns them all.

import { finalize32, mix32 } from '../engine/mix32';
import type { TransactionBody } from './transaction_routes';

const EMPTY = -1;

type Wake = (partition: number, eventJson: string) => boolean;

export class OutcomeCache {
  /** Open addressing, tx_id hash → ring index of its latest addition (EMPTY if free); twice the capacity, a power of two. */
  private readonly table: Int32Array;
  private readonly tableMask: number;
  private entryCount = 0;
  private readonly txIds: (string | undefined)[];
  private readonly eventJsons: (string | undefined)[];
  private readonly partitions: Int32Array;
  /** Hash of the tx_id at each ring index, to find its table entry again at eviction. */
  private readonly hashes: Int32Array;
  /** The next ring index to write; the oldest entry once the rings are full. */
  private head = 0;
  private readonly waiters = new Map<string, Wake[]>();

  constructor(private readonly capacity: number) {
    this.txIds = new Array<string | undefined>(capacity).fill(undefined);
    this.eventJsons = new Array<string | undefined>(capacity).fill(undefined);
    this.partitions = new Int32Array(capacity);
    this.hashes = new Int32Array(capacity);
    let tableSize = 2;
    while (tableSize < capacity * 2) tableSize *= 2;
    this.table = new Int32Array(tableSize).fill(EMPTY);
    this.tableMask = tableSize - 1;
  }

  get size(): number {
    return this.entryCount;
  }

  get waiting(): number {
    return this.waiters.size;
  }

  /** A durable outcome: its tx_id, the partition whose command it is, and its result event's JSON. */
  add(txId: string, partition: number, eventJson: string): void {
    if (this.waiters.size > 0) this.wake(txId, partition, eventJson);
    if (this.capacity === 0) return;
    const at = this.head;
    if (this.txIds[at] !== undefined) this.unindex(at);
    const hash = txIdHash(txId);
    this.txIds[at] = txId;
    this.eventJsons[at] = eventJson;
    this.partitions[at] = partition;
    this.hashes[at] = hash;
    this.head = at + 1 === this.capacity ? 0 : at + 1;
    const slot = this.find(txId, hash);
    if (this.table[slot] === EMPTY) this.entryCount++;
    this.table[slot] = at;
  }

  get(txId: string): TransactionBody | undefined {
    if (this.capacity === 0) return undefined;
    const at = this.table[this.find(txId, txIdHash(txId))]!;
    return at === EMPTY ? undefined : (JSON.parse(this.eventJsons[at]!) as TransactionBody);
  }

  /** The table slot holding `txId`, or the empty slot where it would go. */
  private find(txId: string, hash: number): number {
    let slot = hash & this.tableMask;
    for (;;) {
      const at = this.table[slot]!;
      if (at === EMPTY || (this.hashes[at] === hash && this.txIds[at] === txId)) return slot;
      slot = (slot + 1) & this.tableMask;
    }
  }

  // Ring index `at` is about to be overwritten: drop its table entry, unless a later addition
  // of the same tx_id took it over (then the entry points elsewhere and is not found here).
  private unindex(at: number): void {
    const mask = this.tableMask;
    let slot = this.hashes[at]! & mask;
    for (;;) {
      const current = this.table[slot]!;
      if (current === EMPTY) return;
      if (current === at) break;
      slot = (slot + 1) & mask;
    }
    this.entryCount--;
    // Backward-shift deletion: pull later entries of the probe run into the hole.
    let hole = slot;
    let next = (hole + 1) & mask;
    for (;;) {
      const moving = this.table[next]!;
      if (moving === EMPTY) break;
      const home = this.hashes[moving]! & mask;
      if (((next - home) & mask) >= ((next - hole) & mask)) {
        this.table[hole] = moving;
        hole = next;
      }
      next = (next + 1) & mask;
    }
    this.table[hole] = EMPTY;
  }

  /**
   * Resolves with the next durable outcome of `txId` on `partition` (any partition when
   * omitted), or undefined after `timeoutMs`. Waiters are bounded by their timeouts.
   */
  waitFor(txId: string, timeoutMs: number, partition?: number): Promise<TransactionBody | undefined> {
    return new Promise((resolve) => {
      const wake: Wake = (from, eventJson) => {
        if (partition !== undefined && from !== partition) return false;
        clearTimeout(timer);
        resolve(JSON.parse(eventJson) as TransactionBody);
        return true;
      };
      const timer = setTimeout(() => {
        this.forget(txId, wake);
        resolve(undefined);
      }, timeoutMs);
      const list = this.waiters.get(txId);
      if (list === undefined) this.waiters.set(txId, [wake]);
      else list.push(wake);
    });
  }

  private wake(txId: string, partition: number, eventJson: string): void {
    const list = this.waiters.get(txId);
    if (list === undefined) return;
    // Waiters for another partition's command with the same tx_id keep waiting.
    const rest = list.filter((wake) => !wake(partition, eventJson));
    if (rest.length === 0) this.waiters.delete(txId);
    else this.waiters.set(txId, rest);
  }

  private forget(txId: string, wake: Wake): void {
    const list = this.waiters.get(txId);
    if (list === undefined) return;
    const rest = list.filter((w) => w !== wake);
    if (rest.length === 0) this.waiters.delete(txId);
    else this.waiters.set(txId, rest);
  }
}

/** 32-bit hash of a tx_id's UTF-16 code units; any stable spread will do (lookups verify the string). */
function txIdHash(txId: string): number {
  let hash = txId.length;
  for (let i = 0; i < txId.length; i++) hash = mix32(hash, txId.charCodeAt(i));
  return finalize32(hash);
}
