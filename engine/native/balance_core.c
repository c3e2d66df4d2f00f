// The balance engine's hot path in C: BalanceEngine.applyBatch() (engine/balance_engine.ts)
// hands its commands here when this addon is loaded. It is the same state machine, rule for
// rule and in the same order, over the same memory: the command ring, the output region,
// the balance table (with its seqlock) and the dedup windows are the typed arrays the
// TypeScript engine uses, so both paths can apply commands to one engine in turn, and the
// TypeScript engine stays the reference (engine/balance_engine.model.test.ts runs both
// against an independent model command by command, and compares their batches' outcomes,
// legs and state hashes; engine/native_core.test.ts covers the rest of this file's contract).
//
// Why: in V8 the per-command bookkeeping alone costs about 200 ns (typed-array loads with
// their checks), the whole budget of 5 million commands/s. Here a command costs 125 ns with
// the state in cache, and the cache lines of a group of commands (slots, balance buckets,
// dedup groups and entries) are loaded in tight loops of independent loads before it is
// applied, so their misses overlap (docs/benchmarks.md, "The native core").
//
// x86-64 only (the JavaScript side does not load it elsewhere): the seqlock versions are
// plain stores ordered by a compiler barrier, as the TypeScript engine does on x86-64 (see
// STORES_ORDERED in balance_table.ts), which total store order makes sufficient.
#include "../../io/native/napi_common.h"
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if !defined(__x86_64__)
#error "balance_core relies on x86-64 store ordering for the seqlock (see the header comment)"
#endif

#define COMPILER_BARRIER() __asm__ volatile("" ::: "memory")

enum {
  PARTITIONS_MAX = 65536,
  // Command slot (command_layout.ts), in 32-bit words.
  COMMAND_SLOT_BYTES = 512,
  CW_HEADER = 0, CW_PARTITION = 1, CW_KAFKA_OFFSET = 2, CW_PAYLOAD_HASH = 4, CW_TX_ID_HASH = 6,
  CW_ACCOUNT = 8, CW_COUNTER_ACCOUNT = 10, CW_CURRENCY = 12, CW_HOMES = 13, CW_AMOUNT = 14,
  CW_TX_ID = 16, CW_LEGS = 32,
  CLW_ACCOUNT = 0, CLW_CURRENCY = 2, CLW_HOME = 3, CLW_AVAILABLE = 4, CLW_FROZEN = 6, CLW_WORDS = 8,
  TX_ID_BYTES_MAX = 64,
  SETTLE_LEGS_MAX = 12,
  // Command types.
  T_DEPOSIT = 1, T_WITHDRAW = 2, T_FREEZE = 3, T_UNFREEZE = 4, T_TRANSFER = 5, T_SETTLE = 6, T_CREDIT = 7,
  // Reject codes (reject_code.ts).
  R_NONE = 0, R_MALFORMED = 1, R_BAD_AMOUNT = 2, R_AMOUNT_OVERFLOW = 3, R_INSUFFICIENT_AVAILABLE = 5,
  R_INSUFFICIENT_FROZEN = 6, R_LEGS_NOT_BALANCED = 7, R_WRONG_PARTITION = 8, R_CONFLICT = 9, R_TABLE_FULL = 10,
  STATUS_ACCEPTED = 1, STATUS_REJECTED = 2,
  FLAG_DUPLICATE = 1, FLAG_RECORDED = 2, FLAG_CREDIT_OUT = 4,
  COUNTER_DUPLICATES = 16, COUNTERS = 17,
  // Output slots (output_layout.ts).
  OUTPUT_SLOT_BYTES = 128, OUTPUT_SLOTS_PER_COMMAND_MAX = 7,
  KIND_OUTCOME = 1, KIND_LEGS = 2,
  OW_HEADER0 = 0, OW_HEADER1 = 1, OW_PARTITION = 2, OW_RESERVED = 3, OW_KAFKA_OFFSET = 4, OW_SEQUENCE = 6,
  OW_PAYLOAD_HASH = 8, OW_ORIGINAL_OFFSET = 10, OW_ACCOUNT = 12, OW_TX_ID_HASH = 14, OW_TX_ID = 16,
  LSW_FIRST_LEG = 4, LSW_CREDIT_TO_ACCOUNT = 28, LSW_CREDIT_TO_PARTITION = 30, LSW_CREDIT_RESERVED = 31,
  JOURNAL_WORDS = 12,
  // Balance table (balance_table.ts).
  BUCKET_WORDS = 16, BW_VERSION = 0, BW_CURRENCY = 1, BW_ACCOUNT = 2, BW_AVAILABLE = 4, BW_FROZEN = 6,
  BW_LAST_CHANGE = 8, BW_KEY_PARTITION = 10, BW_HOME_PARTITION = 11,
  HEADER_COUNT_WORD = 3, HEADER_FULL_REJECTIONS_WORD = 4, HEADER_FULL_FLAG_WORD = 5, HEADER_CURRENCY_COUNT_WORD = 6,
  HEADER_PARTITION_BITMAP_WORD = 16, HEADER_HOME_ENTRIES_WORD = 16 + PARTITIONS_MAX / 32,
  USER_PARTITION_WORD = -1,
  SYSTEM_ACCOUNT_LIMIT = 1000, EXTERNAL_ACCOUNT = 0, TRANSIT_ACCOUNT = 3,
  // Dedup window (dedup_index.ts).
  ENTRY_WORDS = 8, EW_HASH_LO = 0, EW_HASH_HI = 1, EW_PAYLOAD_LO = 2, EW_PAYLOAD_HI = 3, EW_KAFKA_OFFSET = 4, EW_PACKED = 6,
  ENTRY_TX_ID_WORDS = 16,
  GROUP_WORDS = 16, GW_OVERFLOW = 0, GW_TAG = 1, GW_SERIAL = 8, GROUP_SLOTS = 7,
  // The dedup window's state words (DedupIndex.state), shared with TypeScript. DS_PREFETCHED
  // steers the TypeScript prefetch(); this core keeps its own (dedup_t.loaded_serial) and
  // only resets that word on insert, as insert() does.
  DS_HEAD = 0, DS_COUNT = 1, DS_INSERTED = 2, DS_PREFETCHED = 3, DS_EVICTED_DOUBLE = 2 /* Float64 index: words 4, 5 */,
  // Commands whose lines are loaded one group ahead of the group being applied (32 measured
  // 4.7 against 4.3 M commands/s for 16 in bench/engine.bench.ts, alternating runs).
  GROUP_COMMANDS = 32,
};

typedef struct {
  int32_t *meta;
  uint8_t *tx_ids;
  int32_t *groups;
  int32_t *state;
  int32_t capacity;
  int32_t group_count;
  // Serial of the entry after the last one whose lines load_state() loaded (C-side only).
  uint32_t loaded_serial;
} dedup_t;

typedef struct {
  const uint8_t *commands;
  size_t command_bytes;
  uint8_t *out;
  uint64_t out_mask;
  int32_t *table;
  uint32_t table_mask;
  int32_t *header;
  int32_t capacity;
  double *change_sequence;
  double *sequence;
  double *counters;
  dedup_t *dedups[PARTITIONS_MAX];
  // Output claims of the call in progress.
  double out_next;
  int32_t partition;
  // The posting being evaluated (settle), and the running balances of every leg.
  int32_t leg_count;
  struct {
    int64_t account;
    int32_t currency, key_partition, is_user, bucket, previous, is_last;
    int64_t available_delta, frozen_delta;
  } legs[SETTLE_LEGS_MAX];
  __int128 running_available[SETTLE_LEGS_MAX];
  __int128 running_frozen[SETTLE_LEGS_MAX];
  double claimed_first;
  int32_t claimed_slots, claimed_flags;
  // Where the loads of load_slots() and load_state() leave their values, so they are not
  // optimized away (per core: engine threads do not share a line).
  int32_t touched;
} core_t;

static inline int32_t w32(const uint8_t *base, size_t word) { int32_t v; memcpy(&v, base + word * 4, 4); return v; }
static inline int64_t w64(const uint8_t *base, size_t word) { int64_t v; memcpy(&v, base + word * 4, 8); return v; }
static inline void put32(uint8_t *base, size_t word, int32_t v) { memcpy(base + word * 4, &v, 4); }
static inline void put64(uint8_t *base, size_t word, int64_t v) { memcpy(base + word * 4, &v, 8); }

static inline int is_user_account(int64_t account) { return (uint64_t)account >= SYSTEM_ACCOUNT_LIMIT; }

// keyHash() of balance_table.ts, word for word.
static inline uint32_t key_hash(int64_t account, int32_t currency, int32_t key_partition) {
  uint32_t lo = (uint32_t)(uint64_t)account, hi = (uint32_t)((uint64_t)account >> 32);
  uint32_t h = ((lo ^ ((uint32_t)currency * 0x85ebca6bu)) * 0x9e3779b1u) ^ ((hi ^ ((uint32_t)key_partition * 0xc2b2ae35u)) * 0x27d4eb2fu);
  h ^= h >> 16;
  h *= 0x85ebca6bu;
  h ^= h >> 13;
  h *= 0xc2b2ae35u;
  return h ^ (h >> 16);
}

static inline int32_t *bucket_at(core_t *c, uint32_t bucket) { return c->table + (size_t)bucket * BUCKET_WORDS; }

static int32_t find_bucket(core_t *c, int64_t account, int32_t currency, int32_t key_partition) {
  uint32_t bucket = key_hash(account, currency, key_partition) & c->table_mask;
  for (uint64_t probes = 0; probes <= c->table_mask; probes++) {
    const int32_t *b = bucket_at(c, bucket);
    if (b[BW_VERSION] == 0) return -1;
    int64_t stored;
    memcpy(&stored, b + BW_ACCOUNT, 8);
    if (stored == account && b[BW_CURRENCY] == currency && b[BW_KEY_PARTITION] == key_partition) return (int32_t)bucket;
    bucket = (bucket + 1) & c->table_mask;
  }
  return -1;
}

static inline int32_t table_free(core_t *c) { return c->capacity - c->header[HEADER_COUNT_WORD]; }

// BalanceTable.write(): the seqlock writer (odd version, balances, even version).
static void table_write(core_t *c, int32_t bucket, int64_t available, int64_t frozen) {
  int32_t *b = bucket_at(c, (uint32_t)bucket);
  int32_t version = b[BW_VERSION];
  int32_t next = (int32_t)((uint32_t)version + 2u);
  __atomic_store_n(&b[BW_VERSION], (int32_t)((uint32_t)version + 1u), __ATOMIC_RELAXED);
  COMPILER_BARRIER();
  memcpy(b + BW_AVAILABLE, &available, 8);
  memcpy(b + BW_FROZEN, &frozen, 8);
  memcpy(b + BW_LAST_CHANGE, c->change_sequence, 8);
  __atomic_store_n(&b[BW_VERSION], next == 0 ? 2 : next, __ATOMIC_RELEASE);
}

// BalanceTable.insert() for a key find_bucket() reported missing; the caller checked table_free().
static void table_insert(core_t *c, int64_t account, int32_t currency, int32_t key_partition, int64_t available, int64_t frozen) {
  uint32_t bucket = key_hash(account, currency, key_partition) & c->table_mask;
  while (bucket_at(c, bucket)[BW_VERSION] != 0) bucket = (bucket + 1) & c->table_mask;
  int32_t *b = bucket_at(c, bucket);
  b[BW_CURRENCY] = currency;
  memcpy(b + BW_ACCOUNT, &account, 8);
  memcpy(b + BW_AVAILABLE, &available, 8);
  memcpy(b + BW_FROZEN, &frozen, 8);
  memcpy(b + BW_LAST_CHANGE, c->change_sequence, 8);
  b[BW_KEY_PARTITION] = key_partition;
  b[BW_HOME_PARTITION] = c->partition;
  __atomic_store_n(&b[BW_VERSION], 2, __ATOMIC_SEQ_CST);
  int32_t count = c->header[HEADER_COUNT_WORD] + 1;
  __atomic_store_n(&c->header[HEADER_COUNT_WORD], count, __ATOMIC_SEQ_CST);
  if (currency >= c->header[HEADER_CURRENCY_COUNT_WORD]) __atomic_store_n(&c->header[HEADER_CURRENCY_COUNT_WORD], (int32_t)((uint32_t)currency + 1u), __ATOMIC_SEQ_CST);
  if (key_partition != USER_PARTITION_WORD) {
    __atomic_fetch_or(&c->header[HEADER_PARTITION_BITMAP_WORD + ((uint32_t)key_partition >> 5)], (int32_t)(1u << (key_partition & 31)), __ATOMIC_SEQ_CST);
  }
  if (c->partition >= 0 && c->partition < PARTITIONS_MAX) __atomic_fetch_add(&c->header[HEADER_HOME_ENTRIES_WORD + c->partition], 1, __ATOMIC_SEQ_CST);
}

// ---- dedup window (dedup_index.ts) ----

// groupOf(): the same float64 arithmetic, so the same group for every hash.
static inline int32_t group_of(int32_t hash_lo, int32_t group_count) {
  return (int32_t)(((double)(uint32_t)hash_lo * (double)group_count) / 4294967296.0);
}

static inline int dedup_is_live(const dedup_t *d, int32_t serial) {
  int32_t age = (int32_t)((uint32_t)d->state[DS_INSERTED] - (uint32_t)serial);
  return age > 0 && age <= d->state[DS_COUNT];
}

static int32_t dedup_find(const dedup_t *d, int32_t hash_lo, int32_t hash_hi, const uint8_t *tx_id, int32_t tx_id_length) {
  int32_t group = group_of(hash_lo, d->group_count);
  int32_t inserted = d->state[DS_INSERTED], count = d->state[DS_COUNT], head = d->state[DS_HEAD];
  for (int32_t probes = 0; probes < d->group_count; probes++) {
    const int32_t *g = d->groups + (size_t)group * GROUP_WORDS;
    for (int slot = 0; slot < GROUP_SLOTS; slot++) {
      if (g[GW_TAG + slot] != hash_hi) continue;
      int32_t age = (int32_t)((uint32_t)inserted - (uint32_t)g[GW_SERIAL + slot]);
      if (age <= 0 || age > count) continue;
      int32_t entry = head - age;
      if (entry < 0) entry += d->capacity;
      const int32_t *meta = d->meta + (size_t)entry * ENTRY_WORDS;
      if (meta[EW_HASH_LO] != hash_lo) continue;
      if ((int32_t)((uint32_t)meta[EW_PACKED] >> 16) != tx_id_length) continue;
      if (memcmp(d->tx_ids + (size_t)entry * TX_ID_BYTES_MAX, tx_id, (size_t)tx_id_length) == 0) return entry;
    }
    if (!dedup_is_live(d, g[GW_OVERFLOW])) return -1;
    group = group + 1 == d->group_count ? 0 : group + 1;
  }
  return -1;
}

static int dedup_insert(dedup_t *d, int32_t hash_lo, int32_t hash_hi, const uint8_t *slot, int32_t tx_id_length, int32_t status, int32_t reason) {
  int32_t *s = d->state;
  if (s[DS_COUNT] == d->capacity) {
    s[DS_COUNT]--;
    double evicted;
    memcpy(&evicted, s + 2 * DS_EVICTED_DOUBLE, 8);
    evicted += 1;
    memcpy(s + 2 * DS_EVICTED_DOUBLE, &evicted, 8);
  }
  int32_t entry = s[DS_HEAD];
  int32_t serial = s[DS_INSERTED];
  s[DS_PREFETCHED] = 0;
  s[DS_HEAD] = entry + 1 == d->capacity ? 0 : entry + 1;
  s[DS_INSERTED] = (int32_t)((uint32_t)serial + 1u);
  s[DS_COUNT]++;
  int32_t *meta = d->meta + (size_t)entry * ENTRY_WORDS;
  meta[EW_HASH_LO] = hash_lo;
  meta[EW_HASH_HI] = hash_hi;
  meta[EW_PAYLOAD_LO] = w32(slot, CW_PAYLOAD_HASH);
  meta[EW_PAYLOAD_HI] = w32(slot, CW_PAYLOAD_HASH + 1);
  meta[EW_KAFKA_OFFSET] = w32(slot, CW_KAFKA_OFFSET);
  meta[EW_KAFKA_OFFSET + 1] = w32(slot, CW_KAFKA_OFFSET + 1);
  meta[EW_PACKED] = (status & 0xff) | ((reason & 0xff) << 8) | (tx_id_length << 16);
  memcpy(d->tx_ids + (size_t)entry * TX_ID_BYTES_MAX, slot + CW_TX_ID * 4, (size_t)((tx_id_length + 3) >> 2) * 4);
  int32_t group = group_of(hash_lo, d->group_count);
  for (int32_t probes = 0; probes < d->group_count; probes++) {
    int32_t *g = d->groups + (size_t)group * GROUP_WORDS;
    for (int i = 0; i < GROUP_SLOTS; i++) {
      if (dedup_is_live(d, g[GW_SERIAL + i])) continue;
      g[GW_TAG + i] = hash_hi;
      g[GW_SERIAL + i] = serial;
      return 1;
    }
    g[GW_OVERFLOW] = serial;
    group = group + 1 == d->group_count ? 0 : group + 1;
  }
  return 0;  // no free slot in any group: corrupted (the caller reports it)
}

// ---- output ----

static inline uint8_t *out_slot(core_t *c, double position) {
  return c->out + (((uint64_t)position) & c->out_mask) * OUTPUT_SLOT_BYTES;
}

static inline double out_claim(core_t *c, int32_t slots) {
  double first = c->out_next;
  c->out_next = first + slots;
  return first;
}

static void write_outcome(core_t *c, double first, const uint8_t *slot, int32_t status, int32_t reason, int32_t flags,
                          int32_t leg_count, int32_t slot_count, int32_t original_lo, int32_t original_hi) {
  uint8_t *o = out_slot(c, first);
  int32_t header = w32(slot, CW_HEADER);
  int32_t tx_id_length = (int32_t)((uint32_t)header >> 24);
  put32(o, OW_HEADER0, KIND_OUTCOME | (status << 8) | (reason << 16) | (int32_t)((uint32_t)flags << 24));
  put32(o, OW_HEADER1, leg_count | (slot_count << 8) | (tx_id_length << 16) | (int32_t)((uint32_t)(header & 0xff) << 24));
  put32(o, OW_PARTITION, w32(slot, CW_PARTITION));
  put32(o, OW_RESERVED, 0);
  put64(o, OW_KAFKA_OFFSET, w64(slot, CW_KAFKA_OFFSET));
  memcpy(o + OW_SEQUENCE * 4, c->sequence, 8);
  put64(o, OW_PAYLOAD_HASH, w64(slot, CW_PAYLOAD_HASH));
  put32(o, OW_ORIGINAL_OFFSET, original_lo);
  put32(o, OW_ORIGINAL_OFFSET + 1, original_hi);
  put64(o, OW_ACCOUNT, w64(slot, CW_ACCOUNT));
  put64(o, OW_TX_ID_HASH, w64(slot, CW_TX_ID_HASH));
  memcpy(o + OW_TX_ID * 4, slot + CW_TX_ID * 4, (size_t)((tx_id_length + 3) >> 2) * 4);
}

// finish(): the outcome slot of a command without legs (a rejection or a duplicate replay).
static int32_t finish(core_t *c, const uint8_t *slot, int32_t status, int32_t reason, int32_t flags, int32_t original_lo, int32_t original_hi) {
  // A decoder's preset code is a byte; the TypeScript engine's `counters[reason]++` does
  // nothing for one past the counters, so neither does this.
  int32_t counter = (flags & FLAG_DUPLICATE) != 0 ? COUNTER_DUPLICATES : reason;
  if ((uint32_t)counter < COUNTERS) c->counters[counter] += 1;
  write_outcome(c, out_claim(c, 1), slot, status, reason, flags, 0, 1, original_lo, original_hi);
  return 1;
}

static inline int32_t finish_unrecorded(core_t *c, const uint8_t *slot, int32_t reason) {
  return finish(c, slot, STATUS_REJECTED, reason, 0, w32(slot, CW_KAFKA_OFFSET), w32(slot, CW_KAFKA_OFFSET + 1));
}

static void write_leg_slot_header(uint8_t *o, int32_t legs_in_slot) {
  put32(o, 0, KIND_LEGS | (legs_in_slot << 8));
  put32(o, 1, 0);
  put32(o, 2, 0);
  put32(o, 3, 0);
}

// claimLegSlots(): the outcome slot and the leg slots of an accepted posting; returns the first leg slot.
static uint8_t *claim_leg_slots(core_t *c, int32_t leg_count) {
  int32_t slot_count = 1 + ((leg_count + 1) >> 1);
  double first = out_claim(c, slot_count);
  c->claimed_first = first;
  c->claimed_slots = slot_count;
  c->claimed_flags = FLAG_RECORDED;
  uint8_t *o = out_slot(c, first + 1);
  write_leg_slot_header(o, leg_count >= 2 ? 2 : 1);
  return o;
}

static void fill_leg(uint8_t *at, int64_t account, int32_t currency, int32_t partition, int64_t available_delta, int64_t frozen_delta,
                     __int128 available, __int128 frozen) {
  put64(at, 0, account);
  put32(at, 2, currency);
  put32(at, 3, partition);
  put64(at, 4, available_delta);
  put64(at, 6, frozen_delta);
  put64(at, 8, (int64_t)available);
  put64(at, 10, (int64_t)frozen);
}

static inline int fits_int64(__int128 value) { return value >= (__int128)INT64_MIN && value <= (__int128)INT64_MAX; }

static inline void balance_of(core_t *c, int32_t bucket, __int128 *available, __int128 *frozen) {
  if (bucket < 0) {
    *available = 0;
    *frozen = 0;
    return;
  }
  const int32_t *b = bucket_at(c, (uint32_t)bucket);
  int64_t a, f;
  memcpy(&a, b + BW_AVAILABLE, 8);
  memcpy(&f, b + BW_FROZEN, 8);
  *available = a;
  *frozen = f;
}

static inline void write_balance(core_t *c, int32_t bucket, int64_t account, int32_t currency, int32_t key_partition, __int128 available, __int128 frozen) {
  if (bucket >= 0) table_write(c, bucket, (int64_t)available, (int64_t)frozen);
  else table_insert(c, account, currency, key_partition, (int64_t)available, (int64_t)frozen);
}

// applySingleAmount(): deposit, withdraw, freeze, unfreeze, transfer and credit.
static int32_t apply_single_amount(core_t *c, const uint8_t *slot, int32_t partition) {
  int32_t type = w32(slot, CW_HEADER) & 0xff;
  int64_t amount = w64(slot, CW_AMOUNT);
  if (amount <= 0) return R_BAD_AMOUNT;
  int32_t homes = w32(slot, CW_HOMES);
  if ((homes & 0xffff) != partition) return R_WRONG_PARTITION;
  int is_transfer = type == T_TRANSFER;
  int32_t to_partition = (int32_t)((uint32_t)homes >> 16);
  int crossing = is_transfer && to_partition != partition;
  int second_is_user = is_transfer && !crossing;
  int available_credit = type == T_DEPOSIT || type == T_UNFREEZE || type == T_CREDIT;
  int64_t available_delta = available_credit ? amount : -amount;
  int64_t frozen_delta = type == T_FREEZE ? amount : type == T_UNFREEZE ? -amount : 0;
  int64_t account = w64(slot, CW_ACCOUNT);
  int32_t currency = w32(slot, CW_CURRENCY);
  int32_t bucket0 = find_bucket(c, account, currency, USER_PARTITION_WORD);
  __int128 available0, frozen0;
  balance_of(c, bucket0, &available0, &frozen0);
  available0 += available_delta;
  frozen0 += frozen_delta;
  if (available0 < 0) return R_INSUFFICIENT_AVAILABLE;
  if (frozen0 < 0) return R_INSUFFICIENT_FROZEN;
  if (type == T_FREEZE || type == T_UNFREEZE) {
    if (!fits_int64(available0) || !fits_int64(frozen0)) return R_AMOUNT_OVERFLOW;
    if (bucket0 < 0 && table_free(c) < 1) return R_TABLE_FULL;
    uint8_t *o = claim_leg_slots(c, 1);
    fill_leg(o + LSW_FIRST_LEG * 4, account, currency, partition, available_delta, frozen_delta, available0, frozen0);
    write_balance(c, bucket0, account, currency, USER_PARTITION_WORD, available0, frozen0);
    c->leg_count = 1;
    return R_NONE;
  }
  int64_t system_account = crossing || type == T_CREDIT ? TRANSIT_ACCOUNT : EXTERNAL_ACCOUNT;
  int64_t second = second_is_user ? w64(slot, CW_COUNTER_ACCOUNT) : system_account;
  int32_t second_key_partition = second_is_user ? USER_PARTITION_WORD : partition;
  int64_t second_delta = available_credit ? -amount : amount;
  int same_balance = second_is_user && second == account;
  int32_t bucket1;
  __int128 available1, frozen1;
  if (same_balance) {
    bucket1 = bucket0;
    available1 = available0 + second_delta;
    frozen1 = frozen0;
  } else {
    bucket1 = find_bucket(c, second, currency, second_key_partition);
    balance_of(c, bucket1, &available1, &frozen1);
    available1 += second_delta;
  }
  if (second_is_user && available1 < 0) return R_INSUFFICIENT_AVAILABLE;
  if (!fits_int64(available0) || !fits_int64(frozen0)) return R_AMOUNT_OVERFLOW;
  if (!fits_int64(available1) || !fits_int64(frozen1)) return R_AMOUNT_OVERFLOW;
  int32_t needed = (bucket0 < 0 ? 1 : 0) + (!same_balance && bucket1 < 0 ? 1 : 0);
  if (needed > table_free(c)) return R_TABLE_FULL;
  uint8_t *o = claim_leg_slots(c, 2);
  fill_leg(o + LSW_FIRST_LEG * 4, account, currency, partition, available_delta, frozen_delta, available0, frozen0);
  fill_leg(o + (LSW_FIRST_LEG + JOURNAL_WORDS) * 4, second, currency, partition, second_delta, 0, available1, frozen1);
  if (crossing) {
    put64(o, LSW_CREDIT_TO_ACCOUNT, w64(slot, CW_COUNTER_ACCOUNT));
    put32(o, LSW_CREDIT_TO_PARTITION, to_partition);
    put32(o, LSW_CREDIT_RESERVED, 0);
    c->claimed_flags = FLAG_RECORDED | FLAG_CREDIT_OUT;
  }
  if (!same_balance) write_balance(c, bucket0, account, currency, USER_PARTITION_WORD, available0, frozen0);
  write_balance(c, bucket1, second, currency, second_key_partition, available1, frozen1);
  c->leg_count = 2;
  return R_NONE;
}

// buildSettle() + checkLegsBalanced().
static int32_t build_settle(core_t *c, const uint8_t *slot, int32_t partition) {
  if ((w32(slot, CW_HOMES) & 0xffff) != partition) return R_WRONG_PARTITION;
  int32_t leg_count = (int32_t)(((uint32_t)w32(slot, CW_HEADER) >> 16) & 0xff);
  for (int32_t leg = 0; leg < leg_count; leg++) {
    size_t from = CW_LEGS + (size_t)leg * CLW_WORDS;
    int64_t account = w64(slot, from + CLW_ACCOUNT);
    int is_user = is_user_account(account);
    if (is_user && w32(slot, from + CLW_HOME) != partition) return R_WRONG_PARTITION;
    c->legs[leg].account = account;
    c->legs[leg].currency = w32(slot, from + CLW_CURRENCY);
    c->legs[leg].key_partition = is_user ? USER_PARTITION_WORD : partition;
    c->legs[leg].is_user = is_user;
    c->legs[leg].available_delta = w64(slot, from + CLW_AVAILABLE);
    c->legs[leg].frozen_delta = w64(slot, from + CLW_FROZEN);
  }
  c->leg_count = leg_count;
  for (int32_t leg = 0; leg < leg_count; leg++) {
    int32_t currency = c->legs[leg].currency;
    int seen = 0;
    for (int32_t earlier = 0; earlier < leg && !seen; earlier++) seen = c->legs[earlier].currency == currency;
    if (seen) continue;
    __int128 sum = 0;
    for (int32_t other = leg; other < leg_count; other++) {
      if (c->legs[other].currency != currency) continue;
      sum += (__int128)c->legs[other].available_delta + c->legs[other].frozen_delta;
    }
    if (sum != 0) return R_LEGS_NOT_BALANCED;
  }
  return R_NONE;
}

// resolveBuckets() + evaluatePosting().
static int32_t evaluate_posting(core_t *c) {
  int32_t leg_count = c->leg_count;
  int32_t needed = 0;
  for (int32_t leg = 0; leg < leg_count; leg++) {
    c->legs[leg].is_last = 1;
    int32_t previous = -1;
    for (int32_t earlier = leg - 1; earlier >= 0; earlier--) {
      if (c->legs[earlier].account == c->legs[leg].account && c->legs[earlier].currency == c->legs[leg].currency &&
          c->legs[earlier].key_partition == c->legs[leg].key_partition) {
        previous = earlier;
        break;
      }
    }
    c->legs[leg].previous = previous;
    if (previous >= 0) {
      c->legs[previous].is_last = 0;
      c->legs[leg].bucket = c->legs[previous].bucket;
      c->running_available[leg] = c->running_available[previous] + c->legs[leg].available_delta;
      c->running_frozen[leg] = c->running_frozen[previous] + c->legs[leg].frozen_delta;
    } else {
      c->legs[leg].bucket = find_bucket(c, c->legs[leg].account, c->legs[leg].currency, c->legs[leg].key_partition);
      balance_of(c, c->legs[leg].bucket, &c->running_available[leg], &c->running_frozen[leg]);
      c->running_available[leg] += c->legs[leg].available_delta;
      c->running_frozen[leg] += c->legs[leg].frozen_delta;
      if (c->legs[leg].bucket < 0) needed++;
    }
  }
  for (int32_t leg = 0; leg < leg_count; leg++) {
    if (!c->legs[leg].is_user) continue;
    if (c->running_available[leg] < 0) return R_INSUFFICIENT_AVAILABLE;
    if (c->running_frozen[leg] < 0) return R_INSUFFICIENT_FROZEN;
  }
  for (int32_t leg = 0; leg < leg_count; leg++) {
    if (!fits_int64(c->running_available[leg]) || !fits_int64(c->running_frozen[leg])) return R_AMOUNT_OVERFLOW;
  }
  if (needed > table_free(c)) return R_TABLE_FULL;
  return R_NONE;
}

// commitPosting().
static void commit_posting(core_t *c, int32_t partition) {
  int32_t leg_count = c->leg_count;
  uint8_t *o = claim_leg_slots(c, leg_count);
  for (int32_t leg = 0; leg < leg_count; leg++) {
    if (leg > 0 && (leg & 1) == 0) {
      o = out_slot(c, c->claimed_first + 1 + (leg >> 1));
      write_leg_slot_header(o, leg_count - leg >= 2 ? 2 : 1);
    }
    fill_leg(o + (LSW_FIRST_LEG + (leg & 1) * JOURNAL_WORDS) * 4, c->legs[leg].account, c->legs[leg].currency, partition,
             c->legs[leg].available_delta, c->legs[leg].frozen_delta, c->running_available[leg], c->running_frozen[leg]);
    if (c->legs[leg].is_last) {
      write_balance(c, c->legs[leg].bucket, c->legs[leg].account, c->legs[leg].currency, c->legs[leg].key_partition,
                    c->running_available[leg], c->running_frozen[leg]);
    }
  }
}

// isReservedTxIdBytes() of reserved_tx_id.ts: ~x or ~r, digits, '-', digits.
static int is_reserved_tx_id(const uint8_t *bytes, int32_t length) {
  if (length < 5 || bytes[0] != '~') return 0;
  if (bytes[1] != 'x' && bytes[1] != 'r') return 0;
  int32_t at = 2;
  while (at < length && bytes[at] >= '0' && bytes[at] <= '9') at++;
  if (at == 2 || at >= length || bytes[at] != '-') return 0;
  int32_t digits = ++at;
  while (at < length && bytes[at] >= '0' && bytes[at] <= '9') at++;
  return at > digits && at == length;
}

// isWellFormed().
static int is_well_formed(const uint8_t *slot, int32_t tx_id_length) {
  int32_t header = w32(slot, CW_HEADER);
  int32_t type = header & 0xff;
  if (type < T_DEPOSIT || type > T_CREDIT) return 0;
  const uint8_t *tx_id = slot + CW_TX_ID * 4;
  int is_credit = type == T_CREDIT;
  if ((is_credit || tx_id[0] == '~') && is_reserved_tx_id(tx_id, tx_id_length) != is_credit) return 0;
  if (!is_user_account(w64(slot, CW_ACCOUNT))) return 0;
  if (type == T_TRANSFER) return is_user_account(w64(slot, CW_COUNTER_ACCOUNT));
  if (type == T_SETTLE) {
    int32_t leg_count = (int32_t)(((uint32_t)header >> 16) & 0xff);
    if (leg_count < 1 || leg_count > SETTLE_LEGS_MAX) return 0;
    for (int32_t leg = 0; leg < leg_count; leg++) {
      int64_t account = w64(slot, CW_LEGS + (size_t)leg * CLW_WORDS + CLW_ACCOUNT);
      if (account == EXTERNAL_ACCOUNT || account == TRANSIT_ACCOUNT) return 0;
    }
  }
  return 1;
}

// Errors that stop a batch; the JavaScript side throws them, as its apply() would.
enum { E_NONE = 0, E_UNASSIGNED = 1, E_TX_ID_LENGTH = 2, E_DEDUP_CORRUPT = 3 };

// apply(): one command; returns the output slots written, or -1 with *error set.
static int32_t apply_one(core_t *c, const uint8_t *slot, int32_t *error) {
  double sequence = *c->sequence + 1;
  *c->sequence = sequence;
  *c->change_sequence = sequence;
  int32_t partition = w32(slot, CW_PARTITION);
  dedup_t *d = partition >= 0 && partition < PARTITIONS_MAX ? c->dedups[partition] : NULL;
  if (d == NULL) {
    *error = E_UNASSIGNED;
    return -1;
  }
  c->partition = partition;
  int32_t header = w32(slot, CW_HEADER);
  int32_t tx_id_length = (int32_t)((uint32_t)header >> 24);
  if (tx_id_length > TX_ID_BYTES_MAX) {
    *error = E_TX_ID_LENGTH;
    return -1;
  }
  int32_t preset = (header >> 8) & 0xff;
  if (tx_id_length == 0) return finish_unrecorded(c, slot, preset != 0 ? preset : R_MALFORMED);
  if (preset == R_MALFORMED || !is_well_formed(slot, tx_id_length)) return finish_unrecorded(c, slot, R_MALFORMED);
  int32_t hash_lo = w32(slot, CW_TX_ID_HASH), hash_hi = w32(slot, CW_TX_ID_HASH + 1);
  int32_t entry = dedup_find(d, hash_lo, hash_hi, slot + CW_TX_ID * 4, tx_id_length);
  if (entry >= 0) {
    const int32_t *meta = d->meta + (size_t)entry * ENTRY_WORDS;
    if (meta[EW_PAYLOAD_LO] == w32(slot, CW_PAYLOAD_HASH) && meta[EW_PAYLOAD_HI] == w32(slot, CW_PAYLOAD_HASH + 1)) {
      return finish(c, slot, meta[EW_PACKED] & 0xff, (meta[EW_PACKED] >> 8) & 0xff, FLAG_DUPLICATE, meta[EW_KAFKA_OFFSET], meta[EW_KAFKA_OFFSET + 1]);
    }
    return finish_unrecorded(c, slot, R_CONFLICT);
  }
  int32_t reason = preset;
  if (reason == R_NONE) {
    if ((header & 0xff) == T_SETTLE) {
      reason = build_settle(c, slot, partition);
      if (reason == R_NONE) reason = evaluate_posting(c);
      if (reason == R_NONE) commit_posting(c, partition);
    } else {
      reason = apply_single_amount(c, slot, partition);
    }
  }
  if (reason == R_TABLE_FULL) {
    __atomic_fetch_add(&c->header[HEADER_FULL_REJECTIONS_WORD], 1, __ATOMIC_SEQ_CST);
    __atomic_store_n(&c->header[HEADER_FULL_FLAG_WORD], 1, __ATOMIC_SEQ_CST);
    return finish_unrecorded(c, slot, reason);
  }
  int32_t status = reason == R_NONE ? STATUS_ACCEPTED : STATUS_REJECTED;
  if (!dedup_insert(d, hash_lo, hash_hi, slot, tx_id_length, status, reason)) {
    *error = E_DEDUP_CORRUPT;
    return -1;
  }
  int32_t offset_lo = w32(slot, CW_KAFKA_OFFSET), offset_hi = w32(slot, CW_KAFKA_OFFSET + 1);
  if (status == STATUS_REJECTED) return finish(c, slot, status, reason, FLAG_RECORDED, offset_lo, offset_hi);
  c->counters[R_NONE] += 1;
  write_outcome(c, c->claimed_first, slot, STATUS_ACCEPTED, R_NONE, c->claimed_flags, c->leg_count, c->claimed_slots, offset_lo, offset_hi);
  return c->claimed_slots;
}

// Loads the first two lines of the command slots of offsets[first .. end). Real loads, not
// prefetch instructions: on these VMs a prefetch that misses the TLB is dropped (measured:
// the dedup group line still missed at 82 % of the core's samples with __builtin_prefetch,
// 359 against 228 ns per command with loads), and nearly every line here is on a page the
// TLB does not hold. Independent loads in a tight loop still overlap their misses.
static void load_slots(core_t *c, const int32_t *offsets, int32_t first, int32_t end) {
  int32_t loaded = 0;
  for (int32_t i = first; i < end; i++) {
    const uint8_t *slot = c->commands + (uint32_t)offsets[i];
    loaded ^= *(volatile const int32_t *)(slot + 4) ^ *(volatile const int32_t *)(slot + 64);
  }
  c->touched ^= loaded;
}

static inline const int32_t *bucket_of(core_t *c, int64_t account, int32_t currency, int32_t key_partition) {
  return bucket_at(c, key_hash(account, currency, key_partition) & c->table_mask);
}

// Loads the balance buckets and the dedup lines that the commands at offsets[first .. end)
// will use: each one's home bucket(s), its dedup group, and the dedup entry (meta and tx_id
// lines) that its insert will write. The addresses are collected first, then loaded in one
// tight loop, so that many misses are in flight at once (a loop that computed each address
// between the loads would hold fewer in the reorder window). Loading changes nothing, so any
// slot contents are safe.
static void load_state(core_t *c, const int32_t *offsets, int32_t first, int32_t end) {
  const int32_t *lines[GROUP_COMMANDS * (SETTLE_LEGS_MAX + 3)];
  const dedup_t *dedups[GROUP_COMMANDS];
  const int32_t *groups[GROUP_COMMANDS];
  int32_t tags[GROUP_COMMANDS];
  int32_t count = 0, lookups = 0;
  for (int32_t i = first; i < end; i++) {
    const uint8_t *slot = c->commands + (uint32_t)offsets[i];
    int32_t header = w32(slot, CW_HEADER);
    int32_t type = header & 0xff;
    int32_t partition = w32(slot, CW_PARTITION);
    if (type == T_SETTLE) {
      int32_t leg_count = (int32_t)(((uint32_t)header >> 16) & 0xff);
      if (leg_count > SETTLE_LEGS_MAX) leg_count = SETTLE_LEGS_MAX;
      for (int32_t leg = 0; leg < leg_count; leg++) {
        size_t from = CW_LEGS + (size_t)leg * CLW_WORDS;
        int64_t account = w64(slot, from + CLW_ACCOUNT);
        lines[count++] = bucket_of(c, account, w32(slot, from + CLW_CURRENCY), is_user_account(account) ? USER_PARTITION_WORD : partition);
      }
    } else {
      int32_t currency = w32(slot, CW_CURRENCY);
      lines[count++] = bucket_of(c, w64(slot, CW_ACCOUNT), currency, USER_PARTITION_WORD);
      // A crossing transfer's leg 1 is the partition's transit account, which stays cached.
      if (type == T_TRANSFER && (int32_t)((uint32_t)w32(slot, CW_HOMES) >> 16) == partition) {
        lines[count++] = bucket_of(c, w64(slot, CW_COUNTER_ACCOUNT), currency, USER_PARTITION_WORD);
      }
    }
    dedup_t *d = partition >= 0 && partition < PARTITIONS_MAX ? c->dedups[partition] : NULL;
    if (d == NULL) continue;
    const int32_t *group = d->groups + (size_t)group_of(w32(slot, CW_TX_ID_HASH), d->group_count) * GROUP_WORDS;
    lines[count++] = group;
    dedups[lookups] = d;
    groups[lookups] = group;
    tags[lookups++] = w32(slot, CW_TX_ID_HASH + 1);
    uint32_t inserted = (uint32_t)d->state[DS_INSERTED];
    uint32_t ahead = d->loaded_serial - inserted;
    if (ahead > 4 * GROUP_COMMANDS || ahead >= (uint32_t)d->capacity) ahead = 0;
    int64_t entry = (int64_t)d->state[DS_HEAD] + ahead;
    if (entry >= d->capacity) entry -= d->capacity;
    d->loaded_serial = inserted + ahead + 1;
    lines[count++] = d->meta + (size_t)entry * ENTRY_WORDS;
    lines[count++] = (const int32_t *)(d->tx_ids + (size_t)entry * TX_ID_BYTES_MAX);
  }
  int32_t loaded = 0;
  for (int32_t i = 0; i < count; i++) loaded ^= *(volatile const int32_t *)lines[i];
  // Then, with the groups in the cache, the entries whose tag matches (a duplicate, mostly):
  // dedup_find() reads their meta and tx_id, random lines of the window.
  count = 0;
  for (int32_t i = 0; i < lookups && count + 2 * GROUP_SLOTS <= (int32_t)(sizeof lines / sizeof lines[0]); i++) {
    const dedup_t *d = dedups[i];
    for (int slot = 0; slot < GROUP_SLOTS; slot++) {
      if (groups[i][GW_TAG + slot] != tags[i]) continue;
      int32_t age = (int32_t)((uint32_t)d->state[DS_INSERTED] - (uint32_t)groups[i][GW_SERIAL + slot]);
      if (age <= 0 || age > d->state[DS_COUNT]) continue;
      int32_t entry = d->state[DS_HEAD] - age;
      if (entry < 0) entry += d->capacity;
      lines[count++] = d->meta + (size_t)entry * ENTRY_WORDS;
      lines[count++] = (const int32_t *)(d->tx_ids + (size_t)entry * TX_ID_BYTES_MAX);
    }
  }
  for (int32_t i = 0; i < count; i++) loaded ^= *(volatile const int32_t *)lines[i];
  c->touched ^= loaded;
}

static inline int32_t min32(int32_t a, int32_t b) { return a < b ? a : b; }

// The loop of applyBatch(): commands in groups of GROUP_COMMANDS; while a group is applied,
// the balance and dedup lines of the next group and the slots of the one after are on their
// way. Stops before a command when fewer than OUTPUT_SLOTS_PER_COMMAND_MAX output slots are
// left, or at an error. Returns the commands applied (a failed one included).
static int32_t apply_range(core_t *c, const int32_t *offsets, int32_t first, int32_t end, double room_end, int32_t *error) {
  load_slots(c, offsets, first, min32(end, first + 2 * GROUP_COMMANDS));
  load_state(c, offsets, first, min32(end, first + GROUP_COMMANDS));
  for (int32_t group = first; group < end; group += GROUP_COMMANDS) {
    int32_t group_end = min32(end, group + GROUP_COMMANDS);
    int32_t next_end = min32(end, group_end + GROUP_COMMANDS);
    load_slots(c, offsets, next_end, min32(end, next_end + GROUP_COMMANDS));
    load_state(c, offsets, group_end, next_end);
    for (int32_t index = group; index < group_end; index++) {
      if (room_end - c->out_next < OUTPUT_SLOTS_PER_COMMAND_MAX) return index - first;
      apply_one(c, c->commands + (uint32_t)offsets[index], error);
      if (*error != E_NONE) return index + 1 - first;
    }
  }
  return end - first;
}

// ---- Node-API ----

static int args_of(napi_env env, napi_callback_info info, size_t count, napi_value *argv) {
  size_t argc = count;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < count) {
    napi_throw_type_error(env, NULL, "balance core: missing arguments");
    return 0;
  }
  return 1;
}

static core_t *core_of(napi_env env, napi_value value) {
  void *core = NULL;
  if (napi_get_value_external(env, value, &core) != napi_ok || core == NULL) {
    napi_throw_type_error(env, NULL, "balance core: not a core");
    return NULL;
  }
  return core;
}

static void free_core(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  core_t *c = data;
  for (int32_t p = 0; p < PARTITIONS_MAX; p++) free(c->dedups[p]);
  free(c);
}

// create(commandBytes: Uint8Array, outBytes: Uint8Array, outSlotCount, tableWords: Int32Array,
//        header: Int32Array, capacity, changeSequence: Float64Array, sequence: Float64Array,
//        counters: Float64Array) → core
static napi_value create(napi_env env, napi_callback_info info) {
  napi_value argv[9];
  if (!args_of(env, info, 9, argv)) return NULL;
  core_t *c = calloc(1, sizeof(core_t));
  if (c == NULL) {
    napi_throw_error(env, NULL, "balance core: out of memory");
    return NULL;
  }
  size_t length = 0;
  uint32_t out_slots = 0;
  int32_t capacity = 0;
  int ok = (c->commands = typed_array_of(env, argv[0], napi_uint8_array, COMMAND_SLOT_BYTES, &c->command_bytes)) != NULL;
  size_t out_bytes = 0;
  ok = ok && (c->out = typed_array_of(env, argv[1], napi_uint8_array, OUTPUT_SLOT_BYTES, &out_bytes)) != NULL;
  ok = ok && napi_get_value_uint32(env, argv[2], &out_slots) == napi_ok;
  ok = ok && (c->table = typed_array_of(env, argv[3], napi_int32_array, BUCKET_WORDS * 16, &length)) != NULL;
  c->table_mask = (uint32_t)(length / BUCKET_WORDS) - 1;
  ok = ok && (c->header = typed_array_of(env, argv[4], napi_int32_array, HEADER_HOME_ENTRIES_WORD + PARTITIONS_MAX, NULL)) != NULL;
  ok = ok && napi_get_value_int32(env, argv[5], &capacity) == napi_ok;
  ok = ok && (c->change_sequence = typed_array_of(env, argv[6], napi_float64_array, 1, NULL)) != NULL;
  ok = ok && (c->sequence = typed_array_of(env, argv[7], napi_float64_array, 1, NULL)) != NULL;
  ok = ok && (c->counters = typed_array_of(env, argv[8], napi_float64_array, COUNTERS, NULL)) != NULL;
  if (ok && (out_slots < OUTPUT_SLOTS_PER_COMMAND_MAX || (out_slots & (out_slots - 1)) != 0 || (size_t)out_slots * OUTPUT_SLOT_BYTES > out_bytes ||
             ((c->table_mask + 1) & c->table_mask) != 0)) {
    napi_throw_range_error(env, NULL, "balance core: output slot count or table size is not a power of two of the buffers' size");
    ok = 0;
  }
  if (!ok) {
    free(c);
    return NULL;
  }
  c->out_mask = out_slots - 1;
  c->capacity = capacity;
  napi_value result;
  if (napi_create_external(env, c, free_core, NULL, &result) != napi_ok) {
    free(c);
    napi_throw_error(env, NULL, "balance core: napi_create_external failed");
    return NULL;
  }
  return result;
}

// assign(core, partition, meta: Int32Array, txIds: Uint8Array, groups: Int32Array, state: Int32Array, capacity, groupCount)
static napi_value assign(napi_env env, napi_callback_info info) {
  napi_value argv[8];
  if (!args_of(env, info, 8, argv)) return NULL;
  core_t *c = core_of(env, argv[0]);
  if (c == NULL) return NULL;
  int32_t partition = -1, capacity = 0, group_count = 0;
  CALL(env, napi_get_value_int32(env, argv[1], &partition));
  CALL(env, napi_get_value_int32(env, argv[6], &capacity));
  CALL(env, napi_get_value_int32(env, argv[7], &group_count));
  if (partition < 0 || partition >= PARTITIONS_MAX || capacity < 1 || group_count < 1) {
    napi_throw_range_error(env, NULL, "balance core: partition, capacity or group count out of range");
    return NULL;
  }
  dedup_t d;
  if ((d.meta = typed_array_of(env, argv[2], napi_int32_array, (size_t)capacity * ENTRY_WORDS, NULL)) == NULL) return NULL;
  if ((d.tx_ids = typed_array_of(env, argv[3], napi_uint8_array, (size_t)capacity * TX_ID_BYTES_MAX, NULL)) == NULL) return NULL;
  if ((d.groups = typed_array_of(env, argv[4], napi_int32_array, (size_t)group_count * GROUP_WORDS, NULL)) == NULL) return NULL;
  if ((d.state = typed_array_of(env, argv[5], napi_int32_array, 6, NULL)) == NULL) return NULL;
  if (((uintptr_t)d.state & 7) != 0) {
    napi_throw_range_error(env, NULL, "balance core: the dedup state must be 8-byte aligned");
    return NULL;
  }
  d.capacity = capacity;
  d.group_count = group_count;
  d.loaded_serial = (uint32_t)d.state[DS_INSERTED];
  dedup_t *copy = c->dedups[partition] != NULL ? c->dedups[partition] : malloc(sizeof(dedup_t));
  if (copy == NULL) {
    napi_throw_error(env, NULL, "balance core: out of memory");
    return NULL;
  }
  *copy = d;
  c->dedups[partition] = copy;
  return NULL;
}

// release(core, partition)
static napi_value release(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!args_of(env, info, 2, argv)) return NULL;
  core_t *c = core_of(env, argv[0]);
  if (c == NULL) return NULL;
  int32_t partition = -1;
  CALL(env, napi_get_value_int32(env, argv[1], &partition));
  if (partition >= 0 && partition < PARTITIONS_MAX) {
    free(c->dedups[partition]);
    c->dedups[partition] = NULL;
  }
  return NULL;
}

// applyBatch(core, offsets: Int32Array, first, end, outFirst, outRoom, result: Float64Array, validate)
// Applies the commands at offsets[first .. end) while at least OUTPUT_SLOTS_PER_COMMAND_MAX of
// the outRoom output slots from position outFirst are left; result[0] = commands applied,
// result[1] = output slots written, result[2] = error code (0 none; the command that failed
// counts as applied: its sequence was taken, as apply() takes it before throwing).
static napi_value apply_batch(napi_env env, napi_callback_info info) {
  napi_value argv[8];
  if (!args_of(env, info, 8, argv)) return NULL;
  core_t *c = core_of(env, argv[0]);
  if (c == NULL) return NULL;
  size_t offsets_length = 0;
  const int32_t *offsets = typed_array_of(env, argv[1], napi_int32_array, 0, &offsets_length);
  if (offsets == NULL) return NULL;
  double *result = typed_array_of(env, argv[6], napi_float64_array, 3, NULL);
  if (result == NULL) return NULL;
  int32_t first = 0, end = 0;
  double out_first = 0, out_room = 0;
  CALL(env, napi_get_value_int32(env, argv[2], &first));
  CALL(env, napi_get_value_int32(env, argv[3], &end));
  CALL(env, napi_get_value_double(env, argv[4], &out_first));
  CALL(env, napi_get_value_double(env, argv[5], &out_room));
  bool validate = true;
  CALL(env, napi_get_value_bool(env, argv[7], &validate));
  if (first < 0 || end < first || (size_t)end > offsets_length || !(out_first >= 0 && out_first <= 9007199254740991.0) || !(out_room >= 0 && out_room <= (double)(c->out_mask + 1)) || out_first != (double)(uint64_t)out_first) {
    napi_throw_range_error(env, NULL, "balance core: batch range out of the offsets, or an output position or room out of range");
    return NULL;
  }
  // Once per batch (the caller's first call): later calls for the rest of it pass the same offsets.
  for (int32_t i = first; validate && i < end; i++) {
    if (offsets[i] < 0 || (offsets[i] & 3) != 0 || (size_t)offsets[i] + COMMAND_SLOT_BYTES > c->command_bytes) {
      napi_throw_range_error(env, NULL, "balance core: a command slot offset outside the command buffer");
      return NULL;
    }
  }
  int32_t error = E_NONE;
  c->out_next = out_first;
  result[0] = apply_range(c, offsets, first, end, out_first + out_room, &error);
  result[1] = c->out_next - out_first;
  result[2] = error;
  return NULL;
}

NAPI_MODULE_INIT() {
  napi_property_descriptor properties[] = {
    {"create", NULL, create, NULL, NULL, NULL, napi_default, NULL},
    {"assign", NULL, assign, NULL, NULL, NULL, napi_default, NULL},
    {"release", NULL, release, NULL, NULL, NULL, napi_default, NULL},
    {"applyBatch", NULL, apply_batch, NULL, NULL, NULL, napi_default, NULL},
  };
  if (napi_define_properties(env, exports, sizeof properties / sizeof properties[0], properties) != napi_ok) return NULL;
  return exports;
}
