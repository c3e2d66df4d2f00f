// The balance table: every (account, currency) balance the engine owns, in SharedArrayBuffers
// so other threads (the HTTP server) read balances without messaging the engine thread.
//
// One engine thread writes; any number of threads read. The table is an open-addressing hash
// table with linear probing whose buckets ARE the balance slots (one cache line each, so a
// lookup that hits its home bucket costs one cache miss). The bucket count is a power of two
// and at least 4/3 of the configured capacity, so the load factor never exceeds 0.75. Entries
// are never deleted, so readers can probe without locks: a bucket's key words are written
// before its version word turns non-zero, and never change afterwards.
//
// Keys: user accounts (id >= 1000) are keyed by (account, currency); system accounts (id <
// 1000) exist once per partition and are keyed by (account, currency, partition). The key's
// partition word holds USER_PARTITION for user accounts.
//
// Seqlock: each bucket's version word is 0 while empty, even while stable and odd while the
// engine writes its balances. Readers read version, balances, version, and retry (bounded)
// until both versions are the same even number, so they never see a torn (available, frozen).
// On x86-64 the engine writes the version words with plain stores (see STORES_ORDERED).
//
// Bucket layout (64 bytes, little-endian, 64-bit integers as (lo u32, hi i32) word pairs, the
// layout of a BigInt64Array element, so readers can use BigInt64Array views for exact reads):
//
//   byte  0        4          8                16           24          32             40
//        ┌────────┬──────────┬────────────────┬────────────┬───────────┬──────────────┬─────────┬──────────┐
//        │version │ currency │ account (u64)  │ available  │ frozen    │ lastChangeSeq│ key     │ home     │ reserved │
//        │  i32   │   u32    │                │   (i64)    │  (i64)    │   (f64)      │partition│ partition│ 16 bytes │
//        └────────┴──────────┴────────────────┴────────────┴───────────┴──────────────┴─────────┴──────────┘
//
// The home partition is the partition whose commands own the balance (for a system account
// its key partition, for a user account its account's home). It is not part of the key; it
// lets the engine hand a partition back (releasePartition) by zeroing that partition's
// balances: keys never move, and a zero balance reads like an absent one everywhere.
//
// Memory: 64 bytes per bucket, between 85 and 171 bytes per balance of capacity (power-of-two
// rounding). The header (a separate SAB) holds counters and a bitmap of the partitions that
// hold system-account balances, so readers can sum a system account over partitions.
import { performance } from 'node:perf_hooks';
import { wordsToBigInt } from './int64_words';

// Inside this file the layout is used through the const enum Bucket, whose members
// TypeScript turns into literals; an exported `const` would be read from the module's
// exports object at every use in the hot functions below.
const enum Bucket {
  Bytes = 64,
  Words = 16,
  Version = 0,
  Currency = 1,
  Account = 2,
  Available = 4,
  Frozen = 6,
  LastChangeSequence = 8,
  KeyPartition = 10,
  HomePartition = 11,
}

const enum Key {
  UserPartitionWord = -1,
  SystemAccountLimit = 1000,
  PartitionsMax = 65536,
}

export const BUCKET_BYTES: number = Bucket.Bytes;
export const BUCKET_WORDS: number = Bucket.Words;
export const VERSION_WORD: number = Bucket.Version;
export const CURRENCY_WORD: number = Bucket.Currency;
export const ACCOUNT_WORD: number = Bucket.Account;
export const AVAILABLE_WORD: number = Bucket.Available;
export const FROZEN_WORD: number = Bucket.Frozen;
export const LAST_CHANGE_SEQUENCE_WORD: number = Bucket.LastChangeSequence;
export const KEY_PARTITION_WORD: number = Bucket.KeyPartition;

/**
 * Key partition of user accounts: their balances exist once, whatever the partition. Stored
 * in an Int32Array word, it reads back as USER_PARTITION_WORD (-1).
 */
export const USER_PARTITION = 0xffffffff;
export const USER_PARTITION_WORD: number = Key.UserPartitionWord;
/** Accounts below this id are system accounts, one per partition. */
export const SYSTEM_ACCOUNT_LIMIT: number = Key.SystemAccountLimit;
export const PARTITIONS_MAX: number = Key.PartitionsMax;

const HEADER_MAGIC = 0x54424c31; // "TBL1"
const HEADER_MAGIC_WORD = 0;
const HEADER_BUCKET_COUNT_WORD = 1;
const HEADER_CAPACITY_WORD = 2;
const HEADER_COUNT_WORD = 3;
const HEADER_FULL_REJECTIONS_WORD = 4;
const HEADER_FULL_FLAG_WORD = 5;
const HEADER_CURRENCY_COUNT_WORD = 6;
const HEADER_PARTITION_BITMAP_WORD = 16;
/** Entries per home partition: a released partition's zeroed entries are reused by its next load. */
const HEADER_HOME_ENTRIES_WORD = HEADER_PARTITION_BITMAP_WORD + Key.PartitionsMax / 32;
const HEADER_WORDS = HEADER_HOME_ENTRIES_WORD + Key.PartitionsMax;

const LOAD_FACTOR_INVERSE_NUMERATOR = 4;
const LOAD_FACTOR_INVERSE_DENOMINATOR = 3;
const BUCKET_COUNT_MIN = 16;
const BUCKET_COUNT_MAX = 1 << 26;
/**
 * A reader retries a torn read for at most this long before reporting an error. A bound in
 * time, not in attempts: a hot balance (system account 0 changes with every deposit) can
 * overlap thousands of attempts in a row while the engine is fast, yet it is never held
 * mid-write for milliseconds unless the engine thread is stuck.
 */
export const READ_RETRY_MS_MAX = 100;

function assertLayout(): void {
  if (Bucket.Bytes !== 64) throw new Error('balance table: a bucket must be one cache line');
  for (const word of [Bucket.Account, Bucket.Available, Bucket.Frozen, Bucket.LastChangeSequence]) {
    if (word % 2 !== 0) throw new Error(`balance table: 64-bit field at word ${word} is not 8-byte aligned`);
  }
  if (Bucket.KeyPartition >= Bucket.Words) throw new Error('balance table: fields overflow the bucket');
}
assertLayout();

/** What another thread needs to attach to the table: both buffers are shared, not copied. */
export interface BalanceTableDescriptor {
  readonly header: SharedArrayBuffer;
  readonly buckets: SharedArrayBuffer;
}

/**
 * Home bucket hash of a key; the same function on the engine and the readers. The four key
 * words are combined by multiplications with odd constants (a bijection of each word for the
 * others fixed), then avalanched by MurmurHash3's finalizer. About 15 integer operations
 * against about 45 for MurmurHash3's four-word mix, with the same probe lengths on the bench's
 * keys (mean 1.45 buckets per lookup at the bench's load of 0.48, 24% of keys off home);
 * it runs for every leg of every command and for every prefetch.
 */
export function keyHash(accountLo: number, accountHi: number, currency: number, keyPartition: number): number {
  let h = Math.imul(accountLo ^ Math.imul(currency, 0x85ebca6b), 0x9e3779b1) ^ Math.imul(accountHi ^ Math.imul(keyPartition, 0xc2b2ae35), 0x27d4eb2f);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

export function isUserAccount(accountLo: number, accountHi: number): boolean {
  return accountHi !== 0 || accountLo >>> 0 >= Key.SystemAccountLimit;
}

function bucketCountFor(capacity: number): number {
  const wanted = Math.ceil((capacity * LOAD_FACTOR_INVERSE_NUMERATOR) / LOAD_FACTOR_INVERSE_DENOMINATOR);
  let count = BUCKET_COUNT_MIN;
  while (count < wanted) count *= 2;
  if (count > BUCKET_COUNT_MAX) throw new Error(`balance table: capacity ${capacity} exceeds the maximum of ${(BUCKET_COUNT_MAX * 3) / 4}`);
  return count;
}

/**
 * Whether the engine may write a bucket's seqlock version with plain stores. A seqlock writer
 * needs its stores to become visible in program order: odd version, balances, even version.
 * x86-64 guarantees that for plain stores (total store order), and V8 emits typed-array stores
 * in program order and does not remove the odd version store, so there the seqlock costs no
 * fence. Atomics.store compiles to a locked XCHG, which waits until every earlier store of
 * the command (output slot, dedup entry) has reached the cache: measured at about 50 ns per
 * command in bench/engine.bench.ts. Readers keep using Atomics.load, which on x86-64 is a
 * plain load that V8 does not reorder with the loads around it. On other CPUs (arm64 compiles
 * Atomics.store and Atomics.load to release stores and acquire loads, which let a plain access
 * move across them one way) the versions AND the balance words are atomic on both sides, so
 * every access of a write and of a read stays in program order. balance_table.test.ts checks
 * with a real reader thread that no read is torn; these machines are x86-64 only, so the
 * arm64 path is not exercised here.
 */
const STORES_ORDERED = process.arch === 'x64';

/** Views shared by the engine side and the reader side. */
class TableViews {
  readonly header: Int32Array;
  readonly words: Int32Array;
  readonly unsignedWords: Uint32Array;
  readonly floats: Float64Array;
  readonly bucketCount: number;
  readonly mask: number;
  readonly capacity: number;

  constructor(descriptor: BalanceTableDescriptor) {
    this.header = new Int32Array(descriptor.header);
    if (this.header[HEADER_MAGIC_WORD] !== HEADER_MAGIC) throw new Error('balance table: header magic mismatch (not a balance table descriptor)');
    this.words = new Int32Array(descriptor.buckets);
    this.unsignedWords = new Uint32Array(descriptor.buckets);
    this.floats = new Float64Array(descriptor.buckets);
    this.bucketCount = this.header[HEADER_BUCKET_COUNT_WORD];
    this.mask = this.bucketCount - 1;
    this.capacity = this.header[HEADER_CAPACITY_WORD];
    if (this.words.length !== this.bucketCount * Bucket.Words) throw new Error('balance table: bucket buffer size does not match the header');
  }

  find(accountLo: number, accountHi: number, currency: number, keyPartition: number): number {
    return findBucketShared(this.words, this.mask, accountLo, accountHi, currency, keyPartition);
  }
}

/**
 * Bucket index of the key, or -1: the engine thread's lookup (a hot leaf: primitive
 * arguments, no allocation). Plain loads, because the engine is the only writer and always
 * sees its own writes; an Atomics.load costs about 13 ns here (a builtin call, measured on
 * Node 20) and would triple the cost of a lookup. `mask` is the bucket count minus one.
 */
export function findBucket(words: Int32Array, mask: number, accountLo: number, accountHi: number, currency: number, keyPartition: number): number {
  let bucket = keyHash(accountLo, accountHi, currency, keyPartition) & mask;
  for (let probes = 0; probes <= mask; probes++) {
    const base = bucket * Bucket.Words;
    if (words[base + Bucket.Version] === 0) return -1;
    if (
      words[base + Bucket.Account] === (accountLo | 0) &&
      words[base + Bucket.Account + 1] === (accountHi | 0) &&
      words[base + Bucket.Currency] === (currency | 0) &&
      words[base + Bucket.KeyPartition] === (keyPartition | 0)
    ) {
      return bucket;
    }
    bucket = (bucket + 1) & mask;
  }
  return -1;
}

/**
 * The same lookup for reader threads: the version word is read with Atomics.load, which
 * orders the key reads after it, so a bucket published by the engine (key words first,
 * version last) is seen whole.
 */
export function findBucketShared(words: Int32Array, mask: number, accountLo: number, accountHi: number, currency: number, keyPartition: number): number {
  let bucket = keyHash(accountLo, accountHi, currency, keyPartition) & mask;
  for (let probes = 0; probes <= mask; probes++) {
    const base = bucket * Bucket.Words;
    if (Atomics.load(words, base + Bucket.Version) === 0) return -1;
    if (
      words[base + Bucket.Account] === (accountLo | 0) &&
      words[base + Bucket.Account + 1] === (accountHi | 0) &&
      words[base + Bucket.Currency] === (currency | 0) &&
      words[base + Bucket.KeyPartition] === (keyPartition | 0)
    ) {
      return bucket;
    }
    bucket = (bucket + 1) & mask;
  }
  return -1;
}

/** The engine's side: the single writer. */
export class BalanceTable {
  private readonly views: TableViews;
  readonly header: Int32Array;
  /** Bucket words; engine code reads balances straight from these views (no allocation). */
  readonly words: Int32Array;
  readonly unsignedWords: Uint32Array;
  readonly floats: Float64Array;
  readonly bucketCount: number;
  /** bucketCount - 1, for findBucket(). */
  readonly mask: number;
  readonly capacity: number;
  /**
   * The engine sequence that insert() and write() record as a balance's last change. The
   * engine sets it once per command; a Float64Array cell rather than an argument, because a
   * double argument of 2^31 or more would be boxed on the heap at every call V8 does not inline.
   */
  readonly changeSequence = new Float64Array(1);
  private readonly descriptorValue: BalanceTableDescriptor;

  /** Allocates a table for at most `capacity` balances (control plane: allocates once). */
  static create(options: { capacity: number }): BalanceTable {
    const capacity = options.capacity;
    if (!Number.isInteger(capacity) || capacity < 1) throw new Error(`balance table: capacity must be a positive integer, got ${capacity}`);
    const bucketCount = bucketCountFor(capacity);
    const header = new SharedArrayBuffer(HEADER_WORDS * 4);
    const headerWords = new Int32Array(header);
    headerWords[HEADER_BUCKET_COUNT_WORD] = bucketCount;
    headerWords[HEADER_CAPACITY_WORD] = capacity;
    headerWords[HEADER_MAGIC_WORD] = HEADER_MAGIC;
    const buckets = new SharedArrayBuffer(bucketCount * Bucket.Bytes);
    return new BalanceTable({ header, buckets });
  }

  private constructor(descriptor: BalanceTableDescriptor) {
    this.descriptorValue = descriptor;
    this.views = new TableViews(descriptor);
    this.header = this.views.header;
    this.words = this.views.words;
    this.unsignedWords = this.views.unsignedWords;
    this.floats = this.views.floats;
    this.bucketCount = this.views.bucketCount;
    this.mask = this.views.mask;
    this.capacity = this.views.capacity;
  }

  descriptor(): BalanceTableDescriptor {
    return this.descriptorValue;
  }

  get count(): number {
    return this.header[HEADER_COUNT_WORD];
  }

  /** Balances that can still be created before the table is full. */
  get free(): number {
    return this.capacity - this.header[HEADER_COUNT_WORD];
  }

  /** Entries whose home is `partition` (zeroed ones of a released partition included). */
  entriesOfPartition(partition: number): number {
    return this.header[HEADER_HOME_ENTRIES_WORD + partition] ?? 0;
  }

  get fullRejections(): number {
    return this.header[HEADER_FULL_REJECTIONS_WORD];
  }

  get isFull(): boolean {
    return this.header[HEADER_FULL_FLAG_WORD] !== 0;
  }

  find(accountLo: number, accountHi: number, currency: number, keyPartition: number): number {
    return findBucket(this.words, this.mask, accountLo, accountHi, currency, keyPartition);
  }

  /**
   * Creates the balance of a key that find() reported missing, with its first values, and
   * publishes it to readers. The caller has checked `free`; running full here is a bug.
   * Arguments are int32 words (a low word may be passed signed or unsigned).
   */
  insert(
    accountLo: number, accountHi: number, currency: number, keyPartition: number, availableLo: number, availableHi: number, frozenLo: number, frozenHi: number,
    homePartition: number = keyPartition,
  ): number {
    const count = this.header[HEADER_COUNT_WORD];
    if (count >= this.capacity) throw new Error('balance table: insert beyond capacity (the caller must check free first)');
    const words = this.words;
    const mask = this.mask;
    let bucket = keyHash(accountLo, accountHi, currency, keyPartition) & mask;
    while (words[bucket * Bucket.Words + Bucket.Version] !== 0) bucket = (bucket + 1) & mask;
    const base = bucket * Bucket.Words;
    words[base + Bucket.Currency] = currency;
    words[base + Bucket.Account] = accountLo;
    words[base + Bucket.Account + 1] = accountHi;
    words[base + Bucket.Available] = availableLo;
    words[base + Bucket.Available + 1] = availableHi;
    words[base + Bucket.Frozen] = frozenLo;
    words[base + Bucket.Frozen + 1] = frozenHi;
    this.floats[(base + Bucket.LastChangeSequence) >> 1] = this.changeSequence[0];
    words[base + Bucket.KeyPartition] = keyPartition;
    words[base + Bucket.HomePartition] = homePartition;
    Atomics.store(words, base + Bucket.Version, 2);
    Atomics.store(this.header, HEADER_COUNT_WORD, count + 1);
    this.noteKey(currency, keyPartition);
    if (homePartition >= 0 && homePartition < Key.PartitionsMax) Atomics.add(this.header, HEADER_HOME_ENTRIES_WORD + homePartition, 1);
    return bucket;
  }

  private noteKey(currency: number, keyPartition: number): void {
    if (currency >= this.header[HEADER_CURRENCY_COUNT_WORD]) Atomics.store(this.header, HEADER_CURRENCY_COUNT_WORD, currency + 1);
    if ((keyPartition | 0) !== Key.UserPartitionWord) {
      Atomics.or(this.header, HEADER_PARTITION_BITMAP_WORD + (keyPartition >>> 5), 1 << (keyPartition & 31));
    }
  }

  /**
   * Replaces a bucket's balances under its seqlock and records changeSequence[0] as its last
   * change. On x86-64 the version words are written with plain stores (see STORES_ORDERED).
   */
  write(bucket: number, availableLo: number, availableHi: number, frozenLo: number, frozenHi: number): void {
    const words = this.words;
    const base = bucket * Bucket.Words;
    const version = words[base + Bucket.Version];
    // Version 0 means "empty bucket"; wrapping around 2^32 must skip it.
    const next = (version + 2) | 0;
    if (STORES_ORDERED) {
      words[base + Bucket.Version] = version + 1;
      this.writeBalances(base, availableLo, availableHi, frozenLo, frozenHi);
      words[base + Bucket.Version] = next === 0 ? 2 : next;
    } else {
      // Elsewhere (arm64: release stores, acquire loads) a plain store after the odd version
      // may become visible before it, so the balances are atomic stores too, in order.
      Atomics.store(words, base + Bucket.Version, version + 1);
      Atomics.store(words, base + Bucket.Available, availableLo);
      Atomics.store(words, base + Bucket.Available + 1, availableHi);
      Atomics.store(words, base + Bucket.Frozen, frozenLo);
      Atomics.store(words, base + Bucket.Frozen + 1, frozenHi);
      this.floats[(base + Bucket.LastChangeSequence) >> 1] = this.changeSequence[0];
      Atomics.store(words, base + Bucket.Version, next === 0 ? 2 : next);
    }
  }

  private writeBalances(base: number, availableLo: number, availableHi: number, frozenLo: number, frozenHi: number): void {
    const words = this.words;
    words[base + Bucket.Available] = availableLo;
    words[base + Bucket.Available + 1] = availableHi;
    words[base + Bucket.Frozen] = frozenLo;
    words[base + Bucket.Frozen + 1] = frozenHi;
    this.floats[(base + Bucket.LastChangeSequence) >> 1] = this.changeSequence[0];
  }

  /** Counts a command rejected with BALANCE_TABLE_FULL and raises the full flag. */
  noteFullRejection(): void {
    Atomics.add(this.header, HEADER_FULL_REJECTIONS_WORD, 1);
    Atomics.store(this.header, HEADER_FULL_FLAG_WORD, 1);
  }

  isOccupied(bucket: number): boolean {
    return this.words[bucket * Bucket.Words + Bucket.Version] !== 0;
  }

  /** Exact balances of a bucket, for tests and control-plane code (allocates BigInts). */
  available(bucket: number): bigint {
    const base = bucket * Bucket.Words + Bucket.Available;
    return wordsToBigInt(this.unsignedWords[base], this.words[base + 1]);
  }

  frozen(bucket: number): bigint {
    const base = bucket * Bucket.Words + Bucket.Frozen;
    return wordsToBigInt(this.unsignedWords[base], this.words[base + 1]);
  }

  account(bucket: number): bigint {
    const base = bucket * Bucket.Words + Bucket.Account;
    return (BigInt(this.unsignedWords[base + 1]) << 32n) | BigInt(this.unsignedWords[base]);
  }

  currency(bucket: number): number {
    return this.unsignedWords[bucket * Bucket.Words + Bucket.Currency];
  }

  /** The partition whose commands own the balance (see the header comment). */
  homePartition(bucket: number): number {
    return this.words[bucket * Bucket.Words + Bucket.HomePartition];
  }

  /**
   * Zeroes, under the seqlock, every non-zero balance whose home partition is `partition`;
   * returns how many were zeroed. Control plane: a full scan of the table.
   */
  zeroPartition(partition: number): number {
    const words = this.words;
    let zeroed = 0;
    for (let bucket = 0; bucket < this.bucketCount; bucket++) {
      const base = bucket * Bucket.Words;
      if (words[base + Bucket.Version] === 0 || words[base + Bucket.HomePartition] !== partition) continue;
      if ((words[base + Bucket.Available] | words[base + Bucket.Available + 1] | words[base + Bucket.Frozen] | words[base + Bucket.Frozen + 1]) === 0) continue;
      this.write(bucket, 0, 0, 0, 0);
      zeroed++;
    }
    return zeroed;
  }

  keyPartition(bucket: number): number {
    return this.unsignedWords[bucket * Bucket.Words + Bucket.KeyPartition];
  }

  lastChangeSequence(bucket: number): number {
    return this.floats[(bucket * Bucket.Words + Bucket.LastChangeSequence) >> 1];
  }
}

/** One balance as a reader sees it. `partition` is set for a system account's per-partition balance. */
export interface BalanceReading {
  readonly account: bigint;
  readonly currency: number;
  readonly partition: number | undefined;
  readonly available: bigint;
  readonly frozen: bigint;
  readonly lastChangeSequence: number;
}

/** A reader on any thread. Reads allocate (BigInts, result objects): this is the control plane. */
export class BalanceTableReader {
  private readonly views: TableViews;

  constructor(descriptor: BalanceTableDescriptor) {
    this.views = new TableViews(descriptor);
  }

  get count(): number {
    return Atomics.load(this.views.header, HEADER_COUNT_WORD);
  }

  /** Entries whose home is `partition`; a load of it may reuse them. */
  entriesOfPartition(partition: number): number {
    return Atomics.load(this.views.header, HEADER_HOME_ENTRIES_WORD + partition);
  }

  get capacity(): number {
    return this.views.capacity;
  }

  get isFull(): boolean {
    return Atomics.load(this.views.header, HEADER_FULL_FLAG_WORD) !== 0;
  }

  get fullRejections(): number {
    return Atomics.load(this.views.header, HEADER_FULL_REJECTIONS_WORD);
  }

  /**
   * The balance of (account, currency). For a system account, `partition` selects that
   * partition's balance; without it the result is the sum over all partitions (partition
   * undefined, lastChangeSequence the highest). Undefined if no such balance exists.
   */
  readBalance(account: bigint, currency: number, partition?: number, summed?: (partition: number) => boolean): BalanceReading | undefined {
    const accountLo = Number(account & 0xffffffffn);
    const accountHi = Number((account >> 32n) & 0xffffffffn);
    if (isUserAccount(accountLo, accountHi)) return this.readKey(account, accountLo, accountHi, currency, USER_PARTITION);
    if (partition !== undefined) return this.readKey(account, accountLo, accountHi, currency, partition);
    let available = 0n;
    let frozen = 0n;
    let lastChangeSequence = 0;
    let found = false;
    for (const systemPartition of this.systemPartitions()) {
      // A partition still in the table may no longer be applied here (stopped, being loaded).
      if (summed !== undefined && !summed(systemPartition)) continue;
      const reading = this.readKey(account, accountLo, accountHi, currency, systemPartition);
      if (reading === undefined) continue;
      found = true;
      available += reading.available;
      frozen += reading.frozen;
      if (reading.lastChangeSequence > lastChangeSequence) lastChangeSequence = reading.lastChangeSequence;
    }
    return found ? { account, currency, partition: undefined, available, frozen, lastChangeSequence } : undefined;
  }

  /**
   * Every balance of an account, ordered by currency id. A system account is summed over
   * partitions unless `partition` is given.
   */
  listBalancesOfAccount(account: bigint, partition?: number): BalanceReading[] {
    const currencyCount = Atomics.load(this.views.header, HEADER_CURRENCY_COUNT_WORD);
    const readings: BalanceReading[] = [];
    for (let currency = 0; currency < currencyCount; currency++) {
      const reading = this.readBalance(account, currency, partition);
      if (reading !== undefined) readings.push(reading);
    }
    return readings;
  }

  /** Partitions that hold at least one system-account balance, ascending. */
  systemPartitions(): number[] {
    const partitions: number[] = [];
    const header = this.views.header;
    for (let word = 0; word < Key.PartitionsMax / 32; word++) {
      const bits = Atomics.load(header, HEADER_PARTITION_BITMAP_WORD + word);
      if (bits === 0) continue;
      for (let bit = 0; bit < 32; bit++) if ((bits >>> bit) & 1) partitions.push(word * 32 + bit);
    }
    return partitions;
  }

  private readKey(account: bigint, accountLo: number, accountHi: number, currency: number, keyPartition: number): BalanceReading | undefined {
    const bucket = this.views.find(accountLo, accountHi, currency, keyPartition);
    if (bucket < 0) return undefined;
    const words = this.views.words;
    const base = bucket * Bucket.Words;
    const floats = this.views.floats;
    let deadline = 0;
    for (let attempt = 0; ; attempt++) {
      // Only plain word loads between the two version reads: the window a write can hit is
      // a few nanoseconds, and the BigInts are built after the read is known whole.
      const before = Atomics.load(words, base + Bucket.Version);
      if ((before & 1) === 0) {
        // Off x86-64 the balance words are atomic loads: a plain load may be performed after
        // the closing version load there, and pair words of two writes.
        const availableLo = STORES_ORDERED ? words[base + Bucket.Available]! : Atomics.load(words, base + Bucket.Available);
        const availableHi = STORES_ORDERED ? words[base + Bucket.Available + 1]! : Atomics.load(words, base + Bucket.Available + 1);
        const frozenLo = STORES_ORDERED ? words[base + Bucket.Frozen]! : Atomics.load(words, base + Bucket.Frozen);
        const frozenHi = STORES_ORDERED ? words[base + Bucket.Frozen + 1]! : Atomics.load(words, base + Bucket.Frozen + 1);
        const lastChangeSequence = floats[(base + Bucket.LastChangeSequence) >> 1]!;
        if (Atomics.load(words, base + Bucket.Version) === before) {
          const partition = keyPartition === USER_PARTITION ? undefined : keyPartition;
          return { account, currency, partition, available: wordsToBigInt(availableLo, availableHi), frozen: wordsToBigInt(frozenLo, frozenHi), lastChangeSequence };
        }
      }
      if ((attempt & 1023) === 1023) {
        if (deadline === 0) deadline = performance.now() + READ_RETRY_MS_MAX;
        else if (performance.now() > deadline) {
          throw new Error(`balance table: no stable read of account ${account} currency ${currency} within ${READ_RETRY_MS_MAX} ms (is the engine thread stuck mid-write?)`);
        }
      }
    }
  }
}

/** Attaches a reader to a table created on another thread. */
export function attach(descriptor: BalanceTableDescriptor): BalanceTableReader {
  return new BalanceTableReader(descriptor);
}
