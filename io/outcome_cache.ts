// Recent durable outcomes by tx_id, for GET /v1/transactions/{tx_id} and for transfer
// requests waiting on their command. Fed from the service's fan-out, so it only ever holds
// outcomes that are committed in PostgreSQL. Bounded: the oldest entry goes first, found
// through a ring of the added outcomes; anything older is read from PostgreSQL.
//
// What is kept per outcome is its tx_id and its result event's JSON (the same fields as a
// transaction lookup's body) as UTF-8 bytes in one arena outside the JavaScript heap, and its
// partition; a lookup parses the JSON, which only lookups pay. Kept as strings, every cached
// outcome outlived a young-generation collection or two and was copied by each: measured at
// full ingest on bench:e2e, the cache cost the service 3.8 µs of CPU per command (13.4 µs
// with it, 9.7 without), most of it in the scavenger. The arena is a byte ring: entries are
// written one after another and wrap to its start, evicting the oldest entries they overlap,
// so the cache holds `capacity` outcomes or `capacity` × ARENA_BYTES_PER_ENTRY bytes of them,
// whichever fills first. The index from tx_id to ring position is an open-addressing table
// in an Int32Array (linear probing, backward-shift deletion), not a Map: at full ingest a Map
// of 200 000 string keys with an add and a delete per command cost 1.8 µs per outcome.
//
// tx_ids are deduplicated per partition, so two partitions may each hold a command with the
// same tx_id. The cache keeps the latest outcome of a tx_id, and once it has seen the tx_id
// recorded on two partitions it answers only lookups that name the partition: a lookup that
// does not must go to the database, which answers such a tx_id as ambiguous. Outcomes of
// partitions that leave this instance are forgotten (their next owner may record the tx_id
// again, once it left the dedup window), so they are read from the database too.

import { finalize32, mix32 } from '../engine/mix32';
import type { TransactionBody } from './transaction_routes';

const EMPTY = -1;
/** Arena bytes per entry of capacity: result events are 100–400 bytes, most near 200. */
export const ARENA_BYTES_PER_ENTRY = 256;
const ARENA_BYTES_MIN = 1 << 16;
const ARENA_BYTES_MAX = 1 << 30;
/** tx_ids are at most 64 characters (the contract), so at most 192 UTF-8 bytes. */
const TX_ID_BYTES_MAX = 256;

type Wake = (partition: number, eventJson: string) => boolean;

export class OutcomeCache {
  /** Open addressing, tx_id hash → ring index of its latest addition (EMPTY if free); twice the capacity, a power of two. */
  private readonly table: Int32Array;
  private readonly tableMask: number;
  private entryCount = 0;
  /** Per ring index: where its bytes start in the arena, the tx_id's and the JSON's byte lengths. */
  private readonly starts: Int32Array;
  private readonly txIdBytes: Int32Array;
  private readonly jsonBytes: Int32Array;
  private readonly partitions: Int32Array;
  /** 1 at a ring index whose tx_id this cache saw recorded on more than one partition. */
  private readonly ambiguous: Uint8Array;
  /** Hash of the tx_id at each ring index, to find its table entry again at eviction. */
  private readonly hashes: Int32Array;
  /** The oldest ring index, and how many are in use (the newest is tail + count - 1). */
  private tail = 0;
  private count = 0;
  private readonly arena: Buffer;
  /** Where the next entry's bytes go. */
  private arenaHead = 0;
  /** A looked-up tx_id's bytes. */
  private readonly probe = Buffer.alloc(TX_ID_BYTES_MAX * 3);
  private readonly waiters = new Map<string, Wake[]>();

  constructor(private readonly capacity: number) {
    this.starts = new Int32Array(capacity);
    this.txIdBytes = new Int32Array(capacity);
    this.jsonBytes = new Int32Array(capacity);
    this.partitions = new Int32Array(capacity);
    this.ambiguous = new Uint8Array(capacity);
    this.hashes = new Int32Array(capacity);
    let tableSize = 2;
    while (tableSize < capacity * 2) tableSize *= 2;
    this.table = new Int32Array(tableSize).fill(EMPTY);
    this.tableMask = tableSize - 1;
    this.arena = Buffer.allocUnsafeSlow(capacity === 0 ? 0 : Math.min(ARENA_BYTES_MAX, Math.max(ARENA_BYTES_MIN, capacity * ARENA_BYTES_PER_ENTRY)));
  }

  get size(): number {
    return this.entryCount;
  }

  get waiting(): number {
    return this.waiters.size;
  }

  /**
   * A durable outcome: its tx_id, the partition whose command it is, and its result event's
   * JSON. Waiters for the tx_id hear of every outcome; only one that is `stored` (recorded in
   * tx_outcomes) is kept for lookups, so a conflicting repeat or a duplicate never hides the
   * stored outcome (a lookup must answer what the database would).
   */
  add(txId: string, partition: number, eventJson: string, stored = true): void {
    if (this.waiters.size > 0) this.wake(txId, partition, eventJson);
    if (this.capacity === 0 || !stored) return;
    // Room for the worst case of UTF-8 (3 bytes per UTF-16 unit); only what is written is used.
    const room = (txId.length + eventJson.length) * 3;
    if (txId.length > TX_ID_BYTES_MAX / 3 || room > this.arena.length >> 2) {
      // Too large to keep: forget any older outcome of this tx_id, so lookups read the database.
      this.forgetTxId(txId);
      return;
    }
    if (this.count === this.capacity) this.evictOldest();
    this.claim(room);
    const start = this.arenaHead;
    const idBytes = this.arena.write(txId, start, 'utf8');
    const bodyBytes = this.arena.write(eventJson, start + idBytes, 'utf8');
    const hash = bytesHash(this.arena, start, idBytes);
    const at = (this.tail + this.count) % this.capacity;
    this.starts[at] = start;
    this.txIdBytes[at] = idBytes;
    this.jsonBytes[at] = bodyBytes;
    this.partitions[at] = partition;
    this.hashes[at] = hash;
    this.count++;
    this.arenaHead = start + idBytes + bodyBytes;
    // The slot holds the tx_id's earlier outcome, if one is still kept: recorded on another
    // partition (or already ambiguous), the tx_id is ambiguous from now on.
    const slot = this.find(this.arena, start, idBytes, hash);
    const earlier = this.table[slot]!;
    this.ambiguous[at] = earlier !== EMPTY && (this.ambiguous[earlier] === 1 || this.partitions[earlier] !== partition) ? 1 : 0;
    if (earlier === EMPTY) this.entryCount++;
    this.table[slot] = at;
  }

  /**
   * The stored outcome of `txId` on `partition`, or, when no partition is named, its stored
   * outcome if this cache never saw it recorded on two partitions; undefined if not here.
   */
  get(txId: string, partition?: number): TransactionBody | undefined {
    const at = this.indexOf(txId);
    if (at === EMPTY) return undefined;
    if (partition === undefined ? this.ambiguous[at] === 1 : this.partitions[at] !== partition) return undefined;
    const jsonStart = this.starts[at]! + this.txIdBytes[at]!;
    return JSON.parse(this.arena.toString('utf8', jsonStart, jsonStart + this.jsonBytes[at]!)) as TransactionBody;
  }

  /**
   * Forgets the outcomes of partitions this instance no longer applies: their next owner may
   * record their tx_ids again, and lookups must then read what it stored.
   */
  forgetPartitions(partitions: readonly number[]): void {
    if (this.count === 0 || partitions.length === 0) return;
    for (let i = 0, at = this.tail; i < this.count; i++, at = at + 1 === this.capacity ? 0 : at + 1) {
      if (partitions.includes(this.partitions[at]!)) this.unindex(at);
    }
  }

  /** Ring index of the latest kept outcome of `txId`, or EMPTY. */
  private indexOf(txId: string): number {
    if (this.capacity === 0 || txId.length > TX_ID_BYTES_MAX / 3) return EMPTY;
    const length = this.probe.write(txId, 0, 'utf8');
    return this.table[this.find(this.probe, 0, length, bytesHash(this.probe, 0, length))]!;
  }

  // Makes [arenaHead, arenaHead + room) free, wrapping to the arena's start when it does not
  // fit before its end. Entries lie in the arena in ring order, so the ones in the way are
  // always the oldest.
  private claim(room: number): void {
    if (this.arenaHead + room > this.arena.length) {
      // What is left of the previous lap lies at or after the head: it goes first (it is the oldest).
      while (this.count > 0 && this.starts[this.tail]! >= this.arenaHead) this.evictOldest();
      this.arenaHead = 0;
    }
    const end = this.arenaHead + room;
    while (this.count > 0) {
      const start = this.starts[this.tail]!;
      if (start >= end || start + this.txIdBytes[this.tail]! + this.jsonBytes[this.tail]! <= this.arenaHead) break;
      this.evictOldest();
    }
  }

  private evictOldest(): void {
    this.unindex(this.tail);
    this.tail = this.tail + 1 === this.capacity ? 0 : this.tail + 1;
    this.count--;
  }

  /** The table slot holding the tx_id of bytes[start, start + length), or the empty slot where it would go. */
  private find(bytes: Buffer, start: number, length: number, hash: number): number {
    let slot = hash & this.tableMask;
    for (;;) {
      const at = this.table[slot]!;
      if (at === EMPTY || (this.hashes[at] === hash && this.sameTxId(at, bytes, start, length))) return slot;
      slot = (slot + 1) & this.tableMask;
    }
  }

  private sameTxId(at: number, bytes: Buffer, start: number, length: number): boolean {
    if (this.txIdBytes[at] !== length) return false;
    const stored = this.starts[at]!;
    for (let i = 0; i < length; i++) if (this.arena[stored + i] !== bytes[start + i]) return false;
    return true;
  }

  private forgetTxId(txId: string): void {
    const at = this.indexOf(txId);
    if (at !== EMPTY) this.unindex(at);
  }

  // Ring index `at` is leaving: drop its table entry, unless a later addition of the same
  // tx_id took it over (then the entry points elsewhere and is not found here).
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
    return this.waitForMatch(txId, timeoutMs, (from) => partition === undefined || from === partition).outcome;
  }

  /**
   * Resolves with the first durable outcome of `txId` that `accept` takes (it sees the
   * outcome's partition and result event), or undefined after `timeoutMs` or `cancel()`.
   * Outcomes it declines go on to other waiters: two commands may share a tx_id, and each
   * caller must get its own command's outcome.
   */
  waitForMatch(txId: string, timeoutMs: number, accept: (partition: number, body: TransactionBody) => boolean): { outcome: Promise<TransactionBody | undefined>; cancel(): void } {
    let cancel = (): void => undefined;
    const outcome = new Promise<TransactionBody | undefined>((resolve) => {
      const wake: Wake = (from, eventJson) => {
        const body = JSON.parse(eventJson) as TransactionBody;
        if (!accept(from, body)) return false;
        clearTimeout(timer);
        resolve(body);
        return true;
      };
      const stop = (): void => {
        clearTimeout(timer);
        this.forget(txId, wake);
        resolve(undefined);
      };
      const timer = setTimeout(stop, timeoutMs);
      cancel = stop;
      const list = this.waiters.get(txId);
      if (list === undefined) this.waiters.set(txId, [wake]);
      else list.push(wake);
    });
    return { outcome, cancel };
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

/** 32-bit hash of a tx_id's UTF-8 bytes; any stable spread will do (lookups compare the bytes). */
function bytesHash(bytes: Buffer, start: number, length: number): number {
  let hash = length;
  for (let i = 0; i < length; i++) hash = mix32(hash, bytes[start + i]!);
  return finalize32(hash);
}
