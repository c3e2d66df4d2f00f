// The dedup index of one partition: tx_id → the stored outcome of the command that first
// carried it, for the most recent `capacity` recorded tx_ids (the dedup window).
//
// Entries live in a ring in insertion order; when the window is full the oldest entry leaves
// first (FIFO eviction), so the window is exactly "the last `capacity` recorded tx_ids of
// this partition", independent of other partitions. An open-addressing index (linear
// probing, power-of-two buckets, load factor at most 2/3, backward-shift deletion, so no
// tombstones) maps the tx_id hash to the entry. The hash only finds candidates: a match is
// decided on the exact tx_id bytes, so a hash collision never produces a false duplicate.
//
// Entry (32 bytes) in `meta`, plus the tx_id bytes (up to 64) in `txIds`:
//
//   word  0          1          2             3             4..5            6                          7
//        ┌──────────┬──────────┬─────────────┬─────────────┬───────────────┬──────────────────────────┬──────────┐
//        │txIdHash  │txIdHash  │payloadHash  │payloadHash  │ kafka offset  │ status | reason<<8       │ reserved │
//        │ lo       │ hi       │ lo          │ hi          │ (f64 bits)    │ | txIdLength<<16         │          │
//        └──────────┴──────────┴─────────────┴─────────────┴───────────────┴──────────────────────────┴──────────┘
//
// Every value crossing this class's methods is a signed int32 (hash words, the kafka offset
// as the two words of its float64 bits): V8 boxes uint32 values of 2^31 and more, and
// doubles, on the heap when they cross a call it did not inline, and the engine calls these
// methods once per command.
//   index bucket (8 bytes): entry + 1 (0 = empty) | txIdHash lo (tag; the home bucket derives from it)
//
// Memory per entry: 32 (meta) + 64 (tx_id) + 12..24 (index, power-of-two rounding) = 108..120
// bytes. The production default window of 10 million tx_ids takes about 1.1 GB per partition.
import { finalize32, mix32 } from './mix32';

export const DEDUP_WINDOW_DEFAULT = 10_000_000;
export const TX_ID_BYTES = 64;
const TX_ID_WORDS = TX_ID_BYTES / 4;

export const enum OutcomeStatus {
  Accepted = 1,
  Rejected = 2,
}

const ENTRY_WORDS = 8;
const HASH_LO_WORD = 0;
const HASH_HI_WORD = 1;
const PAYLOAD_HASH_LO_WORD = 2;
const PAYLOAD_HASH_HI_WORD = 3;
const KAFKA_OFFSET_WORD = 4;
const PACKED_WORD = 6;
const BUCKET_WORDS = 2;
const CAPACITY_MAX = 1 << 28;

function assertLayout(): void {
  if (KAFKA_OFFSET_WORD % 2 !== 0) throw new Error('dedup index: kafka offset must be 8-byte aligned');
  if (ENTRY_WORDS * 4 !== 32) throw new Error('dedup index: entry must be 32 bytes');
}
assertLayout();

function homeOf(tag: number, mask: number): number {
  return finalize32(tag) & mask;
}

export class DedupIndex {
  readonly capacity: number;
  private readonly meta: Int32Array;
  private readonly offsets: Float64Array;
  private readonly txIds: Uint8Array;
  private readonly txIdWords: Int32Array;
  private readonly buckets: Int32Array;
  private readonly mask: number;
  private head = 0;
  private countValue = 0;
  private evictedValue = 0;

  /** Allocates the whole window up front (control plane). */
  constructor(options: { capacity?: number } = {}) {
    const capacity = options.capacity ?? DEDUP_WINDOW_DEFAULT;
    if (!Number.isInteger(capacity) || capacity < 1 || capacity > CAPACITY_MAX) throw new Error(`dedup index: capacity must be an integer in 1..${CAPACITY_MAX}, got ${capacity}`);
    this.capacity = capacity;
    const metaBuffer = new ArrayBuffer(capacity * ENTRY_WORDS * 4);
    this.meta = new Int32Array(metaBuffer);
    this.offsets = new Float64Array(metaBuffer);
    const txIdBuffer = new ArrayBuffer(capacity * TX_ID_BYTES);
    this.txIds = new Uint8Array(txIdBuffer);
    this.txIdWords = new Int32Array(txIdBuffer);
    let bucketCount = 16;
    while (bucketCount < capacity * 1.5) bucketCount *= 2;
    this.buckets = new Int32Array(bucketCount * BUCKET_WORDS);
    this.mask = bucketCount - 1;
  }

  get count(): number {
    return this.countValue;
  }

  /** Entries that left the window because it was full. */
  get evicted(): number {
    return this.evictedValue;
  }

  /**
   * The entry recorded for this exact tx_id, or -1. `bytes[txIdOffset .. +txIdLength)` are
   * the tx_id; the hash only narrows the search.
   */
  find(hashLo: number, hashHi: number, bytes: Uint8Array, txIdOffset: number, txIdLength: number): number {
    const buckets = this.buckets;
    const mask = this.mask;
    const tag = hashLo | 0;
    let bucket = homeOf(tag, mask);
    for (let probes = 0; probes <= mask; probes++) {
      const slotPlusOne = buckets[bucket * BUCKET_WORDS];
      if (slotPlusOne === 0) return -1;
      if (buckets[bucket * BUCKET_WORDS + 1] === tag) {
        const entry = slotPlusOne - 1;
        if (this.meta[entry * ENTRY_WORDS + HASH_HI_WORD] === (hashHi | 0) && this.sameTxId(entry, bytes, txIdOffset, txIdLength)) return entry;
      }
      bucket = (bucket + 1) & mask;
    }
    return -1;
  }

  private sameTxId(entry: number, bytes: Uint8Array, txIdOffset: number, txIdLength: number): boolean {
    if (this.meta[entry * ENTRY_WORDS + PACKED_WORD] >>> 16 !== txIdLength) return false;
    const stored = this.txIds;
    const base = entry * TX_ID_BYTES;
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
    if (this.countValue === this.capacity) this.evictOldest();
    const entry = this.head;
    this.head = entry + 1 === this.capacity ? 0 : entry + 1;
    this.countValue++;
    const metaBase = entry * ENTRY_WORDS;
    const meta = this.meta;
    meta[metaBase + HASH_LO_WORD] = hashLo;
    meta[metaBase + HASH_HI_WORD] = hashHi;
    meta[metaBase + PAYLOAD_HASH_LO_WORD] = payloadHashLo;
    meta[metaBase + PAYLOAD_HASH_HI_WORD] = payloadHashHi;
    meta[metaBase + KAFKA_OFFSET_WORD] = kafkaOffsetBitsLo;
    meta[metaBase + KAFKA_OFFSET_WORD + 1] = kafkaOffsetBitsHi;
    meta[metaBase + PACKED_WORD] = (status & 0xff) | ((reason & 0xff) << 8) | (txIdLength << 16);
    // Only the words holding the tx_id: comparisons read txIdLength bytes, never the padding.
    const txIdWords = this.txIdWords;
    const txIdBase = entry * TX_ID_WORDS;
    const wordCount = (txIdLength + 3) >> 2;
    for (let i = 0; i < wordCount; i++) txIdWords[txIdBase + i] = words[txIdWordIndex + i];
    const buckets = this.buckets;
    const mask = this.mask;
    const tag = hashLo | 0;
    let bucket = homeOf(tag, mask);
    while (buckets[bucket * BUCKET_WORDS] !== 0) bucket = (bucket + 1) & mask;
    buckets[bucket * BUCKET_WORDS] = entry + 1;
    buckets[bucket * BUCKET_WORDS + 1] = tag;
  }

  /** Removes the oldest entry from the window and its bucket from the index. */
  private evictOldest(): void {
    let oldest = this.head - this.countValue;
    if (oldest < 0) oldest += this.capacity;
    const buckets = this.buckets;
    const mask = this.mask;
    const tag = this.meta[oldest * ENTRY_WORDS + HASH_LO_WORD] | 0;
    let bucket = homeOf(tag, mask);
    for (let probes = 0; buckets[bucket * BUCKET_WORDS] !== oldest + 1; probes++) {
      if (probes > mask) throw new Error('dedup index: oldest entry missing from the index (corrupted)');
      bucket = (bucket + 1) & mask;
    }
    this.deleteBucket(bucket);
    this.countValue--;
    this.evictedValue++;
  }

  /** Backward-shift deletion: pulls later members of the probe run into the hole. */
  private deleteBucket(hole: number): void {
    const buckets = this.buckets;
    const mask = this.mask;
    let emptied = hole;
    let next = (emptied + 1) & mask;
    while (buckets[next * BUCKET_WORDS] !== 0) {
      const home = homeOf(buckets[next * BUCKET_WORDS + 1], mask);
      // The member at `next` may move into `emptied` unless its home lies cyclically in (emptied, next].
      const homeBetween = emptied <= next ? emptied < home && home <= next : emptied < home || home <= next;
      if (!homeBetween) {
        buckets[emptied * BUCKET_WORDS] = buckets[next * BUCKET_WORDS];
        buckets[emptied * BUCKET_WORDS + 1] = buckets[next * BUCKET_WORDS + 1];
        emptied = next;
      }
      next = (next + 1) & mask;
    }
    buckets[emptied * BUCKET_WORDS] = 0;
    buckets[emptied * BUCKET_WORDS + 1] = 0;
  }

  status(entry: number): OutcomeStatus {
    return (this.meta[entry * ENTRY_WORDS + PACKED_WORD] & 0xff) as OutcomeStatus;
  }

  reason(entry: number): number {
    return (this.meta[entry * ENTRY_WORDS + PACKED_WORD] >>> 8) & 0xff;
  }

  txIdLength(entry: number): number {
    return this.meta[entry * ENTRY_WORDS + PACKED_WORD] >>> 16;
  }

  payloadHashLo(entry: number): number {
    return this.meta[entry * ENTRY_WORDS + PAYLOAD_HASH_LO_WORD];
  }

  payloadHashHi(entry: number): number {
    return this.meta[entry * ENTRY_WORDS + PAYLOAD_HASH_HI_WORD];
  }

  /** The recorded kafka offset (control plane; the hot path copies its bits instead). */
  kafkaOffset(entry: number): number {
    return this.offsets[(entry * ENTRY_WORDS + KAFKA_OFFSET_WORD) >> 1];
  }

  /** Copies the recorded kafka offset's float64 bits into target[targetWord], target[targetWord + 1]. */
  copyKafkaOffsetBits(entry: number, target: Int32Array, targetWord: number): void {
    target[targetWord] = this.meta[entry * ENTRY_WORDS + KAFKA_OFFSET_WORD];
    target[targetWord + 1] = this.meta[entry * ENTRY_WORDS + KAFKA_OFFSET_WORD + 1];
  }

  /** The tx_id of an entry as text (control plane: allocates). */
  txIdText(entry: number): string {
    const base = entry * TX_ID_BYTES;
    return Buffer.from(this.txIds.buffer, base, this.txIdLength(entry)).toString('utf8');
  }

  /** Entries from oldest to newest (control plane: allocates). */
  entriesOldestFirst(): number[] {
    const entries: number[] = [];
    let entry = this.head - this.countValue;
    if (entry < 0) entry += this.capacity;
    for (let i = 0; i < this.countValue; i++) {
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
    let entry = this.head - this.countValue;
    if (entry < 0) entry += this.capacity;
    const meta = this.meta;
    for (let i = 0; i < this.countValue; i++) {
      const base = entry * ENTRY_WORDS;
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
