// The dedup index of one partition: tx_id → the stored outcome of the command that first
// carried it, for the most recent `capacity` recorded tx_ids (the dedup window).
//
// Entries live in a ring in insertion order; when the window is full the oldest entry leaves
// first (FIFO eviction), so the window is exactly "the last `capacity` recorded tx_ids of
// this partition", independent of other partitions. The hash only finds candidates: a match
// is decided on the exact tx_id bytes, so a hash collision never produces a false duplicate.
//
// Entry (32 bytes) in `meta`, plus the tx_id bytes (up to 64) in `txIds`:
//
//   word  0          1          2             3             4..5            6                          7
//        ┌──────────┬──────────┬─────────────┬─────────────┬───────────────┬──────────────────────────┬──────────┐
//        │txIdHash  │txIdHash  │payloadHash  │payloadHash  │ kafka offset  │ status | reason<<8       │ reserved │
//        │ lo       │ hi       │ lo          │ hi          │ (f64 bits)    │ | txIdLength<<16         │          │
//        └──────────┴──────────┴─────────────┴─────────────┴───────────────┴──────────────────────────┴──────────┘
//
// The index is made of groups of one cache line each, so looking up a tx_id costs one cache
// miss, and the tx_id bytes are compared only when a 32-bit tag matches (a false tag match
// happens about once in 600 million lookups of a new tx_id):
//
//   word  0               1..7                       8..14                      15
//        ┌───────────────┬──────────────────────────┬──────────────────────────┬────────┐
//        │overflow serial│ tag of slot 0..6         │ serial of slot 0..6      │ unused │
//        │               │ (txIdHash hi)            │                          │        │
//        └───────────────┴──────────────────────────┴──────────────────────────┴────────┘
//
// The group of a tx_id is chosen by txIdHash lo (a multiply-shift onto the group count), the
// tag is txIdHash hi. A slot names its entry by the entry's *serial*, the number of inserts
// before it (mod 2^32): the entry's age is `inserted - serial` and the slot is live exactly
// when 1 <= age <= count, i.e. while its entry is in the window. Eviction therefore never
// touches the index: the oldest entry's slot stops being live the moment `count` no longer
// covers its age, and the next insert into that group reuses it. That saves the random
// cache miss per recorded command that deleting the evicted tx_id from a hash table costs.
//
// A group with no free slot (7 live ones) sends the new entry on to the next group and
// records its serial as the group's overflow serial; a lookup goes on to the next group
// only while that serial is live. Because entries leave in insertion order, the newest
// entry that overflowed a group is the last of them to leave, so the overflow serial is
// live exactly as long as some entry may sit beyond the group. About 3 entries per group on
// average (7 slots) keeps overflows rare: groups = ceil(capacity / 3).
//
// Serials start at 2^31, so the zeroed words of a fresh index do not look live for the first
// 2^31 inserts. A slot not rewritten for that long can look live again: its age then names
// some live entry, whose tx_id is compared exactly, so a stale slot costs a comparison, never
// a wrong answer.
//
// Every value crossing this class's methods is a signed int32 (hash words, the kafka offset
// as the two words of its float64 bits): V8 boxes uint32 values of 2^31 and more, and
// doubles, on the heap when they cross a call it did not inline, and the engine calls these
// methods once per command.
//
// Memory per entry: 32 (meta) + 64 (tx_id) + 64 / 3 (index) ≈ 118 bytes. The production
// default window of 10 million tx_ids takes about 1.2 GB per partition.
import { finalize32, mix32 } from './mix32';

export const DEDUP_WINDOW_DEFAULT = 10_000_000;

// The layout as const enums, which TypeScript turns into literals; an exported `const` would
// be read from the module's exports object at every use in the hot functions below.
const enum Entry {
  Words = 8,
  HashLo = 0,
  HashHi = 1,
  PayloadHashLo = 2,
  PayloadHashHi = 3,
  KafkaOffset = 4,
  /** status | reason << 8 | txIdLength << 16. */
  Packed = 6,
  TxIdBytes = 64,
  TxIdWords = 16,
}

const enum Group {
  Words = 16,
  Overflow = 0,
  Tag = 1,
  Serial = 8,
  Slots = 7,
  /** Target mean of live entries per group: groups = ceil(capacity / EntriesMean). */
  EntriesMean = 3,
}

export const TX_ID_BYTES: number = Entry.TxIdBytes;

export const enum OutcomeStatus {
  Accepted = 1,
  Rejected = 2,
}

/** Words of DedupIndex.state; mirrored by DS_* in engine/native/balance_core.c. */
const enum State {
  Head = 0,
  Count = 1,
  Inserted = 2,
  Prefetched = 3,
  /** Float64 index of the evicted count (words 4 and 5). */
  EvictedFloat = 2,
  Words = 8,
}

const CAPACITY_MAX = 1 << 28;
const SERIAL_START = -0x80000000;
/**
 * Large buffers come from mmap through glibc, which hands out the block 16 bytes past a page
 * boundary (measured with Node 20 on glibc 2.36). Starting each array 48 bytes into its
 * buffer puts groups, entries and tx_ids on cache-line boundaries. With another allocator
 * only the speed changes.
 */
const LINE_ALIGN_BYTES = 48;

function assertLayout(): void {
  if (Entry.KafkaOffset % 2 !== 0) throw new Error('dedup index: kafka offset must be 8-byte aligned');
  if (Entry.Words * 4 !== 32) throw new Error('dedup index: entry must be 32 bytes');
  if (Entry.TxIdWords * 4 !== Entry.TxIdBytes) throw new Error('dedup index: tx_id words and bytes disagree');
  if (Group.Words * 4 !== 64) throw new Error('dedup index: a group must be one cache line');
  if (Group.Tag + Group.Slots > Group.Serial || Group.Serial + Group.Slots > Group.Words) throw new Error('dedup index: slots overflow the group');
}
assertLayout();

/** Group count for a window of `capacity` entries. */
function groupCountFor(capacity: number): number {
  return Math.ceil(capacity / Group.EntriesMean);
}

/**
 * The group of a tx_id hash: multiply-shift of its unsigned low word onto [0, groupCount).
 * Float64 arithmetic, deterministic everywhere; beyond 2^53 the product is rounded, by less
 * than groupCount, so the result stays below groupCount.
 */
export function groupOf(hashLo: number, groupCount: number): number {
  // The quotient is below 2^27, so truncating it to int32 is its floor.
  return (((hashLo >>> 0) * groupCount) / 4294967296) | 0;
}

export class DedupIndex {
  readonly capacity: number;
  private readonly meta: Int32Array;
  private readonly offsets: Float64Array;
  private readonly txIds: Uint8Array;
  private readonly txIdWords: Int32Array;
  /** The index: `groupCount` groups of Group.Words words. */
  private readonly groups: Int32Array;
  private readonly groupCount: number;
  /**
   * The window's mutable state, in a typed array rather than fields so that the native core
   * (engine/native/balance_core.c) reads and updates the same state: State.Head, the ring
   * position of the next entry; State.Count; State.Inserted, inserts so far plus SERIAL_START
   * mod 2^32 as an int32 (the serial of the next entry); State.Prefetched, entries after head
   * whose lines prefetch() has loaded since the last insert; and, as a float64 over words 4
   * and 5, the entries that left the window because it was full.
   */
  private readonly state = new Int32Array(State.Words);
  private readonly evictedCell = new Float64Array(this.state.buffer, State.EvictedFloat * 8, 1);

  /** Allocates the whole window up front (control plane). */
  constructor(options: { capacity?: number } = {}) {
    const capacity = options.capacity ?? DEDUP_WINDOW_DEFAULT;
    if (!Number.isInteger(capacity) || capacity < 1 || capacity > CAPACITY_MAX) throw new Error(`dedup index: capacity must be an integer in 1..${CAPACITY_MAX}, got ${capacity}`);
    this.capacity = capacity;
    const metaBuffer = new ArrayBuffer(LINE_ALIGN_BYTES + capacity * Entry.Words * 4);
    this.meta = new Int32Array(metaBuffer, LINE_ALIGN_BYTES, capacity * Entry.Words);
    this.offsets = new Float64Array(metaBuffer, LINE_ALIGN_BYTES, capacity * Entry.Words / 2);
    const txIdBuffer = new ArrayBuffer(LINE_ALIGN_BYTES + capacity * Entry.TxIdBytes);
    this.txIds = new Uint8Array(txIdBuffer, LINE_ALIGN_BYTES, capacity * Entry.TxIdBytes);
    this.txIdWords = new Int32Array(txIdBuffer, LINE_ALIGN_BYTES, capacity * Entry.TxIdWords);
    this.groupCount = groupCountFor(capacity);
    this.groups = new Int32Array(new ArrayBuffer(LINE_ALIGN_BYTES + this.groupCount * Group.Words * 4), LINE_ALIGN_BYTES, this.groupCount * Group.Words);
    // Touch every page of the index now. A large ArrayBuffer is mapped lazily: its pages
    // are zero-filled by the kernel on the first write, and inserts land on random groups, so
    // until every page had been written almost each insert paid a page fault (about 1 µs,
    // measured: 1.0 µs per insert into a fresh 10 M window, 0.16-0.22 µs pre-touched), the
    // engine's largest per-command cost in the first millions of commands of a partition.
    // The rings above are written in order, one fault per 4 KiB page, and are left lazy.
    // Cost: about 120 ms per partition for the default window (213 MB), once, at load.
    this.groups.fill(0);
    this.state[State.Inserted] = SERIAL_START;
  }

  /** The arrays the native core works on (engine/native/balance_core.c): the same memory, not copies. */
  coreViews(): { meta: Int32Array; txIds: Uint8Array; groups: Int32Array; state: Int32Array; groupCount: number } {
    return { meta: this.meta, txIds: this.txIds, groups: this.groups, state: this.state, groupCount: this.groupCount };
  }

  get count(): number {
    return this.state[State.Count];
  }

  /** Entries that left the window because it was full. */
  get evicted(): number {
    return this.evictedCell[0];
  }

  /**
   * Loads, without changing the window, the cache lines that find() and insert() of a
   * command with this tx_id hash will touch: the hash's group, and the entry (its meta and
   * tx_id lines) that the next insert not yet prefetched will write, so those writes do not
   * wait for their lines either. Returns a meaningless value, for the caller to keep.
   */
  prefetch(hashLo: number): number {
    const state = this.state;
    const prefetched = state[State.Prefetched];
    let entry = state[State.Head] + prefetched;
    if (entry >= this.capacity) entry -= this.capacity;
    state[State.Prefetched] = prefetched + 1 < this.capacity ? prefetched + 1 : 0;
    return this.groups[groupOf(hashLo, this.groupCount) * Group.Words] ^ this.meta[entry * Entry.Words] ^ this.txIdWords[entry * Entry.TxIdWords];
  }

  /**
   * The entry recorded for this exact tx_id, or -1. `bytes[txIdOffset .. +txIdLength)` are
   * the tx_id; the hash only narrows the search.
   */
  find(hashLo: number, hashHi: number, bytes: Uint8Array, txIdOffset: number, txIdLength: number): number {
    const groups = this.groups;
    const tag = hashHi | 0;
    let group = groupOf(hashLo, this.groupCount);
    for (let probes = 0; probes < this.groupCount; probes++) {
      const base = group * Group.Words;
      for (let slot = 0; slot < Group.Slots; slot++) {
        if (groups[base + Group.Tag + slot] !== tag) continue;
        const age = (this.state[State.Inserted] - groups[base + Group.Serial + slot]) | 0;
        if (age <= 0 || age > this.state[State.Count]) continue;
        const entry = this.entryOfAge(age);
        if (this.meta[entry * Entry.Words + Entry.HashLo] === (hashLo | 0) && this.sameTxId(entry, bytes, txIdOffset, txIdLength)) return entry;
      }
      if (!this.isLive(groups[base + Group.Overflow])) return -1;
      group = group + 1 === this.groupCount ? 0 : group + 1;
    }
    return -1;
  }

  private isLive(serial: number): boolean {
    const age = (this.state[State.Inserted] - serial) | 0;
    return age > 0 && age <= this.state[State.Count];
  }

  private entryOfAge(age: number): number {
    const entry = this.state[State.Head] - age;
    return entry < 0 ? entry + this.capacity : entry;
  }

  private sameTxId(entry: number, bytes: Uint8Array, txIdOffset: number, txIdLength: number): boolean {
    if (this.meta[entry * Entry.Words + Entry.Packed] >>> 16 !== txIdLength) return false;
    const stored = this.txIds;
    const base = entry * Entry.TxIdBytes;
    for (let i = 0; i < txIdLength; i++) if (stored[base + i] !== bytes[txIdOffset + i]) return false;
    return true;
  }

  /**
   * Records the outcome of a tx_id that find() reported absent, evicting the oldest entry
   * first if the window is full. The tx_id is copied word by word from `words` starting at
   * word `txIdWordIndex` (the 64-byte tx_id field of a command slot). The kafka offset
   * is given as the two words of its float64 bits (low word first).
   */
  insert(
    hashLo: number, hashHi: number, words: Int32Array, txIdWordIndex: number, txIdLength: number,
    payloadHashLo: number, payloadHashHi: number, status: OutcomeStatus, reason: number, kafkaOffsetBitsLo: number, kafkaOffsetBitsHi: number,
  ): void {
    const state = this.state;
    if (state[State.Count] === this.capacity) {
      // The oldest entry leaves the window; its slot in the index stops being live by itself.
      state[State.Count]--;
      this.evictedCell[0]++;
    }
    const entry = state[State.Head];
    const serial = state[State.Inserted];
    state[State.Prefetched] = 0;
    state[State.Head] = entry + 1 === this.capacity ? 0 : entry + 1;
    state[State.Inserted] = (serial + 1) | 0;
    state[State.Count]++;
    const metaBase = entry * Entry.Words;
    const meta = this.meta;
    meta[metaBase + Entry.HashLo] = hashLo;
    meta[metaBase + Entry.HashHi] = hashHi;
    meta[metaBase + Entry.PayloadHashLo] = payloadHashLo;
    meta[metaBase + Entry.PayloadHashHi] = payloadHashHi;
    meta[metaBase + Entry.KafkaOffset] = kafkaOffsetBitsLo;
    meta[metaBase + Entry.KafkaOffset + 1] = kafkaOffsetBitsHi;
    meta[metaBase + Entry.Packed] = (status & 0xff) | ((reason & 0xff) << 8) | (txIdLength << 16);
    // Only the words holding the tx_id: comparisons read txIdLength bytes, never the padding.
    const txIdWords = this.txIdWords;
    const txIdBase = entry * Entry.TxIdWords;
    const wordCount = (txIdLength + 3) >> 2;
    for (let i = 0; i < wordCount; i++) txIdWords[txIdBase + i] = words[txIdWordIndex + i];
    this.placeInIndex(groupOf(hashLo, this.groupCount), hashHi | 0, serial);
  }

  /** Puts the serial in the first free slot from `group` on, marking every full group passed. */
  private placeInIndex(group: number, tag: number, serial: number): void {
    const groups = this.groups;
    for (let probes = 0; probes < this.groupCount; probes++) {
      const base = group * Group.Words;
      for (let slot = 0; slot < Group.Slots; slot++) {
        if (this.isLive(groups[base + Group.Serial + slot])) continue;
        groups[base + Group.Tag + slot] = tag;
        groups[base + Group.Serial + slot] = serial;
        return;
      }
      groups[base + Group.Overflow] = serial;
      group = group + 1 === this.groupCount ? 0 : group + 1;
    }
    throw new Error('dedup index: no free slot in any group (corrupted)');
  }

  status(entry: number): OutcomeStatus {
    return (this.meta[entry * Entry.Words + Entry.Packed] & 0xff) as OutcomeStatus;
  }

  reason(entry: number): number {
    return (this.meta[entry * Entry.Words + Entry.Packed] >>> 8) & 0xff;
  }

  txIdLength(entry: number): number {
    return this.meta[entry * Entry.Words + Entry.Packed] >>> 16;
  }

  payloadHashLo(entry: number): number {
    return this.meta[entry * Entry.Words + Entry.PayloadHashLo];
  }

  payloadHashHi(entry: number): number {
    return this.meta[entry * Entry.Words + Entry.PayloadHashHi];
  }

  /** The recorded kafka offset (control plane; the hot path copies its bits instead). */
  kafkaOffset(entry: number): number {
    return this.offsets[(entry * Entry.Words + Entry.KafkaOffset) >> 1];
  }

  /** Low word of the recorded kafka offset's float64 bits. */
  kafkaOffsetBitsLo(entry: number): number {
    return this.meta[entry * Entry.Words + Entry.KafkaOffset];
  }

  /** High word of the recorded kafka offset's float64 bits. */
  kafkaOffsetBitsHi(entry: number): number {
    return this.meta[entry * Entry.Words + Entry.KafkaOffset + 1];
  }

  /** Copies the recorded kafka offset's float64 bits into target[targetWord], target[targetWord + 1]. */
  copyKafkaOffsetBits(entry: number, target: Int32Array, targetWord: number): void {
    target[targetWord] = this.meta[entry * Entry.Words + Entry.KafkaOffset];
    target[targetWord + 1] = this.meta[entry * Entry.Words + Entry.KafkaOffset + 1];
  }

  /** The tx_id of an entry as text (control plane: allocates). */
  txIdText(entry: number): string {
    const base = entry * Entry.TxIdBytes;
    return Buffer.from(this.txIds.buffer, this.txIds.byteOffset + base, this.txIdLength(entry)).toString('utf8');
  }

  /** Entries from oldest to newest (control plane: allocates). */
  entriesOldestFirst(): number[] {
    const entries: number[] = [];
    const count = this.state[State.Count];
    let entry = this.state[State.Head] - count;
    if (entry < 0) entry += this.capacity;
    for (let i = 0; i < count; i++) {
      entries.push(entry);
      entry = entry + 1 === this.capacity ? 0 : entry + 1;
    }
    return entries;
  }

  /**
   * A hash of the window's contents that does not depend on where entries sit in the ring:
   * the sum (per 32-bit lane) of a hash of every live entry. Written into out[0], out[1].
   */
  contentHash(out: Int32Array): void {
    let laneA = 0;
    let laneB = 0;
    const count = this.state[State.Count];
    let entry = this.state[State.Head] - count;
    if (entry < 0) entry += this.capacity;
    const meta = this.meta;
    for (let i = 0; i < count; i++) {
      const base = entry * Entry.Words;
      let a = 0x3c6ef372;
      let b = 0x5be0cd19;
      for (let word = 0; word < 7; word++) {
        a = mix32(a, meta[base + word]);
        b = mix32(b, meta[base + word] ^ 0xa5a5a5a5);
      }
      laneA = (laneA + finalize32(a)) | 0;
      laneB = (laneB + finalize32(b ^ 7)) | 0;
      entry = entry + 1 === this.capacity ? 0 : entry + 1;
    }
    out[0] = laneA;
    out[1] = laneB;
  }
}
