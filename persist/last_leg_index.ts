// The last leg per balance within a flush: an open-addressing hash table on typed arrays,
// keyed by (partition, account, currency), holding the ring byte offset of the newest leg on
// that balance and its Kafka offset. The flush upserts one balance row per entry, carrying
// that leg's resulting balances, instead of sending every leg and sorting them in SQL.
//
// Legs are offered in ring order, which within a partition is Kafka offset order and within
// a command is leg order, so a later offer for the same key is always the newer leg.
//
// Reused across flushes: clear() resets only the entries used. The table doubles when half
// full (allocates; a worker's table settles at its largest batch).

const KEY_WORDS = 4;
const EMPTY = -1;

export class LastLegIndex {
  private capacity: number;
  private mask: number;
  private keys: Int32Array;
  /** Entry → ring byte offset of the newest leg, or EMPTY. */
  private legOffsets: Int32Array;
  private kafkaOffsets: Float64Array;
  /** Entries in use, in first-seen order. */
  private used: Int32Array;
  private usedCount = 0;

  constructor(initialCapacity = 1 << 12) {
    this.capacity = powerOfTwoAtLeast(initialCapacity);
    this.mask = this.capacity - 1;
    this.keys = new Int32Array(this.capacity * KEY_WORDS);
    this.legOffsets = new Int32Array(this.capacity).fill(EMPTY);
    this.kafkaOffsets = new Float64Array(this.capacity);
    this.used = new Int32Array(this.capacity);
  }

  /** Distinct balances offered since clear(). */
  get size(): number {
    return this.usedCount;
  }

  /** The i-th distinct balance (first-seen order): the ring byte offset of its newest leg. */
  legOffsetAt(index: number): number {
    return this.legOffsets[this.used[index]!]!;
  }

  /** The i-th distinct balance: the Kafka offset of its newest leg. */
  kafkaOffsetAt(index: number): number {
    return this.kafkaOffsets[this.used[index]!]!;
  }

  offer(partition: number, accountLo: number, accountHi: number, currency: number, legOffset: number, kafkaOffset: number): void {
    let entry = hashKey(partition, accountLo, accountHi, currency) & this.mask;
    const keys = this.keys;
    for (;;) {
      if (this.legOffsets[entry] === EMPTY) break;
      const at = entry * KEY_WORDS;
      if (keys[at] === partition && keys[at + 1] === accountLo && keys[at + 2] === accountHi && keys[at + 3] === currency) {
        this.legOffsets[entry] = legOffset;
        this.kafkaOffsets[entry] = kafkaOffset;
        return;
      }
      entry = (entry + 1) & this.mask;
    }
    const at = entry * KEY_WORDS;
    keys[at] = partition;
    keys[at + 1] = accountLo;
    keys[at + 2] = accountHi;
    keys[at + 3] = currency;
    this.legOffsets[entry] = legOffset;
    this.kafkaOffsets[entry] = kafkaOffset;
    this.used[this.usedCount++] = entry;
    if (this.usedCount * 2 > this.capacity) this.grow();
  }

  clear(): void {
    for (let i = 0; i < this.usedCount; i++) this.legOffsets[this.used[i]!] = EMPTY;
    this.usedCount = 0;
  }

  private grow(): void {
    const oldKeys = this.keys;
    const oldLegOffsets = this.legOffsets;
    const oldKafkaOffsets = this.kafkaOffsets;
    const oldUsed = this.used;
    const count = this.usedCount;
    this.capacity *= 2;
    this.mask = this.capacity - 1;
    this.keys = new Int32Array(this.capacity * KEY_WORDS);
    this.legOffsets = new Int32Array(this.capacity).fill(EMPTY);
    this.kafkaOffsets = new Float64Array(this.capacity);
    this.used = new Int32Array(this.capacity);
    this.usedCount = 0;
    for (let i = 0; i < count; i++) {
      const entry = oldUsed[i]!;
      const at = entry * KEY_WORDS;
      this.offer(oldKeys[at]!, oldKeys[at + 1]!, oldKeys[at + 2]!, oldKeys[at + 3]!, oldLegOffsets[entry]!, oldKafkaOffsets[entry]!);
    }
  }
}

function hashKey(partition: number, accountLo: number, accountHi: number, currency: number): number {
  let h = Math.imul(accountLo ^ 0x9e3779b9, 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13) ^ accountHi, 0xc2b2ae35);
  h = Math.imul(h ^ (h >>> 16) ^ (currency << 16) ^ partition, 0x27d4eb2f);
  return (h ^ (h >>> 15)) >>> 0;
}

function powerOfTwoAtLeast(value: number): number {
  let capacity = 16;
  while (capacity < value) capacity *= 2;
  return capacity;
}
