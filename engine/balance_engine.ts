// The balance engine: the deterministic state machine that applies decoded commands (one
// command slot at a time, or a batch of slots with applyBatch(); see command_layout.ts) to
// the balance table, deduplicates them by tx_id, and writes one outcome plus its journal legs
// per command to an output region.
//
// Every command becomes a *posting*: 1..12 legs, each adding an available delta and a frozen
// delta to one balance. deposit = [user +a, external(0) -a]; withdraw = [user -a, external +a];
// freeze = [user (-a, +a)]; unfreeze = [user (+a, -a)]; transfer = [from -a, to +a]; settle =
// its own legs. A transfer whose `to` lives on another partition (a *crossing* transfer) =
// [from -a, transit(3) +a], flagged OUTCOME_FLAG_CREDIT_OUT with `to` in its leg slot's tail:
// persistence sends `to`'s partition a credit = [user +a, transit(3) -a] (ARCHITECTURE.md
// section 3, "Cross-partition transfers"). Each half touches only its own partition's state. A posting is checked whole (user balances never negative, every balance
// within int64, room in the table) and either all legs apply or none. The single-amount
// commands (the bulk of the traffic) are evaluated by applySingleAmount() in locals; settle
// by the general evaluator evaluatePosting(); both follow the same rules in the same order.
//
// Order of decisions for one command (first match wins; the model test pins it):
//   1. tx_id missing (txIdLength 0)                 → rejected with the decoder's code, or
//                                                     MALFORMED; never looked up nor recorded
//   2. MALFORMED (decoder) or malformed shape        → MALFORMED, not looked up, not recorded,
//      (unknown type; a system account where a user   so a client can resend a corrected
//      account is required; settle legCount ∉ 1..12;  message with the same tx_id
//      a settle leg on external 0 or transit 3;
//      a tx_id reserved for credits, reserved_tx_id.ts,
//      on anything but a credit; a credit without one)
//   3. tx_id in the partition's dedup window: same payloadHash → the stored outcome again,
//      flagged DUPLICATE, nothing changes; other payloadHash → DUPLICATE_TX_ID_CONFLICT,
//      not recorded (the original outcome stays)
//   4. decoder's rejection (BAD_AMOUNT, AMOUNT_OVERFLOW, UNKNOWN_CURRENCY)         recorded
//   5. BAD_AMOUNT: single-amount command with amount <= 0                          recorded
//   6. WRONG_PARTITION: a named user account whose home partition is not the command's
//      partition, except a transfer's `to` (a crossing transfer, see above)          recorded
//   7. LEGS_NOT_BALANCED: settle legs of some currency do not sum to zero          recorded
//   8. INSUFFICIENT_AVAILABLE / INSUFFICIENT_FROZEN: applying the legs in order, a user
//      balance would go negative after some leg (first such leg; available before frozen)
//   9. AMOUNT_OVERFLOW: some balance after some leg would leave int64                recorded
//  10. BALANCE_TABLE_FULL: the posting needs new balances and the table has no room:
//      counted and flagged in the table, NOT recorded (an operating condition; the client
//      may retry the same tx_id once the operator has made room)
//  11. accepted: legs applied, recorded.
//
// Settle rules: legs may name system accounts (id < 1000, the command partition's own; they
// may go negative) other than external (0) and transit (3), and any user account whose home is the command's partition, the settle's
// own user or others (the matching engine is trusted to send one user's side; the engine
// only enforces partition ownership); a user account of another partition → WRONG_PARTITION.
// Legs naming the same balance accumulate in order; only the final value is written.
//
// Determinism: no clock, no randomness, no hash-map iteration; the engine sequence counts
// every command (each outcome carries it, each changed balance records it).
//
// Performance (bench/engine.bench.ts: 1 million accounts x 4 currencies, a 512 MiB table, 4
// dedup windows of 2.5 million tx_ids kept full so every recorded command evicts one; 2-core
// EPYC VM shared with other work, Node 20, the 256 MiB command buffer of the earlier figures):
// about 1.5 M commands/s (600 ns of CPU per command) through applyBatch() in TypeScript,
// 0.9 M/s through apply() one by one; about 300 ns per
// command when the state fits in the cache. The rest is memory: a random cache miss costs
// 150-350 ns on this machine and it keeps only about 6 in flight (measured 35-60 ns per line
// with every load independent), and a command needs 3 to 4 lines that are not in the cache
// (its slot, its balance buckets, its dedup group, the dedup entry it writes). Hence:
//   - applyBatch() loads the lines of 16 commands before applying them, so their misses
//     overlap (apply() one by one waits for each miss in turn);
//   - eviction from the dedup window touches no index line (dedup_index.ts);
//   - on x86-64 the seqlock versions are plain stores, not Atomics.store, whose locked XCHG
//     waited about 50 ns per command for earlier stores to drain (balance_table.ts);
//   - the hot path addresses slots through const enums, which compile to literals (an
//     imported const is a property load and a type check at every use), keeps the state of a
//     posting in two typed arrays, not fourteen, and writes an accepted posting's legs straight
//     into the output slots it claimed.
// Measured and left out: loading the bucket after a balance's home bucket too (a quarter of
// the keys sit there; it cost more than it saved); huge pages (GLIBC_TUNABLES=
// glibc.malloc.hugetlb=1 puts every ArrayBuffer on transparent huge pages under the default
// THP mode "madvise"; no measurable gain once misses overlap); not storing tx_id bytes at all
// would gain 10-15%, so a more compact dedup entry would gain less than that.
//
// The native core: where engine/native/balance_core.c is built (x86-64 Linux), applyBatch()
// hands its commands to it (BalanceEngineOptions.core, TALLY_ENGINE_CORE). It applies the
// same rules in the same order to the same typed arrays, so this class stays the reference
// and the two may be mixed on one engine. It costs 125 ns per command with the state in cache
// against 338 here, and it loads a group's lines with real loads in tight loops (these VMs
// drop prefetch instructions that miss the TLB): 4.4 to 5.3 M commands/s in the bench
// against 1.8 to 2.1 M here (docs/benchmarks.md). apply() one by one is always TypeScript.
//
// No allocation per command: all state is in typed arrays, and every value passed between
// methods is an int32 (words are read through Int32Array views; doubles such as the kafka
// offset are copied as the two words of their bits, sequences live in Float64Array cells).
// V8 boxes a double, or a uint32 of 2^31 or more, on the heap whenever it crosses a call that
// was not inlined, and which calls get inlined is not ours to decide.
import {
  ACCOUNT_HOME_OFFSET, ACCOUNT_OFFSET, AMOUNT_OFFSET, COUNTER_ACCOUNT_OFFSET, COUNTER_HOME_OFFSET,
  CURRENCY_OFFSET, CommandType, KAFKA_OFFSET_OFFSET, LEG_ACCOUNT_OFFSET, LEG_AVAILABLE_DELTA_OFFSET,
  LEG_BYTES, LEG_COUNT_OFFSET, LEG_CURRENCY_OFFSET, LEG_FROZEN_DELTA_OFFSET, LEG_HOME_OFFSET,
  LEGS_OFFSET, PARTITION_OFFSET, PAYLOAD_HASH_OFFSET, REJECT_CODE_OFFSET, SETTLE_LEGS_MAX,
  TX_ID_BYTES_MAX, TX_ID_HASH_OFFSET, TX_ID_LENGTH_OFFSET, TX_ID_OFFSET, TYPE_OFFSET,
} from './command_layout';
import { RESERVED_TX_ID_FIRST_BYTE, isReservedTxIdBytes } from './reserved_tx_id';
import { RejectCode } from './reject_code';
import { EXTERNAL_ACCOUNT_ID, TRANSIT_ACCOUNT_ID } from './account_id';
import {
  AVAILABLE_WORD, BUCKET_WORDS, BalanceTable, FROZEN_WORD, PARTITIONS_MAX, USER_PARTITION_WORD,
  VERSION_WORD, findBucket, isUserAccount, keyHash,
} from './balance_table';
import { DedupIndex, OutcomeStatus } from './dedup_index';
import { I32_MAX, I32_MIN, TWO_POW_32 } from './int64_words';
import { finalize32, mix32 } from './mix32';
import { NativeCore, loadNativeCore } from './native_core';
import {
  LEG_SLOT_CREDIT_RESERVED_OFFSET, LEG_SLOT_CREDIT_TO_ACCOUNT_OFFSET, LEG_SLOT_CREDIT_TO_PARTITION_OFFSET,
  LEGS_PER_SLOT, OUTCOME_FLAG_CREDIT_OUT, OUTCOME_FLAG_DUPLICATE, OUTCOME_FLAG_RECORDED, OUT_ACCOUNT_OFFSET, OUT_COMMAND_TYPE_OFFSET,
  OUT_FLAGS_OFFSET, OUT_KAFKA_OFFSET_OFFSET, OUT_KIND_OFFSET, OUT_LEG_COUNT_OFFSET, OUT_ORIGINAL_OFFSET_OFFSET,
  OUT_PARTITION_OFFSET, OUT_PAYLOAD_HASH_OFFSET, OUT_REASON_OFFSET, OUT_RESERVED_OFFSET, OUT_SEQUENCE_OFFSET,
  OUT_SLOT_COUNT_OFFSET, OUT_STATUS_OFFSET, OUT_TX_ID_HASH_OFFSET, OUT_TX_ID_LENGTH_OFFSET,
  OUT_TX_ID_OFFSET, OUT_LEG_BYTES, OUTPUT_SLOT_BYTES, OUTPUT_SLOTS_PER_COMMAND_MAX, OutputRegion, SlotKind, legOffsetInSlot, outputSlotsFor,
} from './output_layout';


// The hot path addresses slots by word index through these const enums, which TypeScript
// turns into literals: an imported `const` compiles to a property load from the other
// module's exports object (plus a type check) at every use. They mirror command_layout.ts
// and output_layout.ts, and assertLayoutMirrors() checks them against those at load time.

/** Word indexes in a command slot (command_layout.ts). */
const enum CommandWord {
  /** Bytes 0..3: type, rejectCode, legCount, txIdLength. */
  Header = 0,
  Partition = 1,
  KafkaOffset = 2,
  PayloadHash = 4,
  TxIdHash = 6,
  Account = 8,
  CounterAccount = 10,
  Currency = 12,
  /** accountHome (u16) | counterHome (u16) << 16. */
  Homes = 13,
  Amount = 14,
  TxId = 16,
  Legs = 32,
}

/** Word offsets inside a settle leg of a command slot. */
const enum CommandLegWord {
  Account = 0,
  Currency = 2,
  Home = 3,
  AvailableDelta = 4,
  FrozenDelta = 6,
  Words = 8,
}

/** Word indexes in an outcome slot (output_layout.ts). */
const enum OutcomeWord {
  /** kind | status << 8 | reason << 16 | flags << 24. */
  Header0 = 0,
  /** legCount | slotCount << 8 | txIdLength << 16 | commandType << 24. */
  Header1 = 1,
  Partition = 2,
  Reserved = 3,
  KafkaOffset = 4,
  Sequence = 6,
  PayloadHash = 8,
  OriginalOffset = 10,
  Account = 12,
  TxIdHash = 14,
  TxId = 16,
}

/** A journal leg in words, the output's leg layout: account lo/hi, currency, partition,
 *  available delta lo/hi, frozen delta lo/hi, resulting available lo/hi, resulting frozen lo/hi. */
const enum JournalWord {
  AccountLo = 0,
  AccountHi = 1,
  Currency = 2,
  Partition = 3,
  AvailableDeltaLo = 4,
  AvailableDeltaHi = 5,
  FrozenDeltaLo = 6,
  FrozenDeltaHi = 7,
  AvailableLo = 8,
  AvailableHi = 9,
  FrozenLo = 10,
  FrozenHi = 11,
  Words = 12,
}

/** Word indexes in a leg slot: a 4-word header, two journal legs, then the tail (a crossing transfer's credit). */
const enum LegSlotWord {
  Header = 0,
  FirstLeg = 4,
  /** The credit's `to`, lo word then hi word. */
  CreditToAccount = 28,
  CreditToPartition = 30,
  CreditReserved = 31,
}

/** A settle leg being evaluated, in `legs`. */
const enum PostingWord {
  AccountLo = 0,
  AccountHi = 1,
  Currency = 2,
  KeyPartition = 3,
  Partition = 4,
  /** 1 for a user account (never negative), 0 for a system account. */
  IsUser = 5,
  AvailableDeltaLo = 6,
  AvailableDeltaHi = 7,
  FrozenDeltaLo = 8,
  FrozenDeltaHi = 9,
  Bucket = 10,
  /** Index of the previous leg on the same balance, or -1. */
  Previous = 11,
  /** 1 if no later leg names the same balance: this leg's result is what gets written. */
  IsLast = 12,
  Words = 16,
}

/** The running balances of a posting leg, in `running`: low words in [0, 2^32), high words unbounded integers. */
const enum RunningWord {
  AvailableLo = 0,
  AvailableHi = 1,
  FrozenLo = 2,
  FrozenHi = 3,
  Words = 4,
}

/** Word indexes in a balance bucket (balance_table.ts). */
const enum BucketWord {
  Available = 4,
  Frozen = 6,
  Words = 16,
}

function assertLayoutMirrors(): void {
  const mirrors: [number, number][] = [
    [CommandWord.Partition * 4, PARTITION_OFFSET], [CommandWord.KafkaOffset * 4, KAFKA_OFFSET_OFFSET],
    [CommandWord.PayloadHash * 4, PAYLOAD_HASH_OFFSET], [CommandWord.TxIdHash * 4, TX_ID_HASH_OFFSET],
    [CommandWord.Account * 4, ACCOUNT_OFFSET], [CommandWord.CounterAccount * 4, COUNTER_ACCOUNT_OFFSET],
    [CommandWord.Currency * 4, CURRENCY_OFFSET], [CommandWord.Homes * 4, ACCOUNT_HOME_OFFSET],
    [CommandWord.Homes * 4 + 2, COUNTER_HOME_OFFSET], [CommandWord.Amount * 4, AMOUNT_OFFSET],
    [CommandWord.TxId * 4, TX_ID_OFFSET], [CommandWord.Legs * 4, LEGS_OFFSET],
    [0, TYPE_OFFSET], [1, REJECT_CODE_OFFSET], [2, LEG_COUNT_OFFSET], [3, TX_ID_LENGTH_OFFSET],
    [CommandLegWord.Account * 4, LEG_ACCOUNT_OFFSET], [CommandLegWord.Currency * 4, LEG_CURRENCY_OFFSET],
    [CommandLegWord.Home * 4, LEG_HOME_OFFSET], [CommandLegWord.AvailableDelta * 4, LEG_AVAILABLE_DELTA_OFFSET],
    [CommandLegWord.FrozenDelta * 4, LEG_FROZEN_DELTA_OFFSET], [CommandLegWord.Words * 4, LEG_BYTES],
    [OutcomeWord.Partition * 4, OUT_PARTITION_OFFSET], [OutcomeWord.Reserved * 4, OUT_RESERVED_OFFSET],
    [OutcomeWord.KafkaOffset * 4, OUT_KAFKA_OFFSET_OFFSET], [OutcomeWord.Sequence * 4, OUT_SEQUENCE_OFFSET],
    [OutcomeWord.PayloadHash * 4, OUT_PAYLOAD_HASH_OFFSET], [OutcomeWord.OriginalOffset * 4, OUT_ORIGINAL_OFFSET_OFFSET],
    [OutcomeWord.Account * 4, OUT_ACCOUNT_OFFSET], [OutcomeWord.TxIdHash * 4, OUT_TX_ID_HASH_OFFSET],
    [OutcomeWord.TxId * 4, OUT_TX_ID_OFFSET], [JournalWord.Words * 4, OUT_LEG_BYTES],
    [LegSlotWord.FirstLeg * 4, legOffsetInSlot(0)], [(LegSlotWord.FirstLeg + JournalWord.Words) * 4, legOffsetInSlot(1)],
    [LegSlotWord.CreditToAccount * 4, LEG_SLOT_CREDIT_TO_ACCOUNT_OFFSET], [LegSlotWord.CreditToPartition * 4, LEG_SLOT_CREDIT_TO_PARTITION_OFFSET],
    [LegSlotWord.CreditReserved * 4, LEG_SLOT_CREDIT_RESERVED_OFFSET],
    [BucketWord.Available, AVAILABLE_WORD], [BucketWord.Frozen, FROZEN_WORD], [BucketWord.Words, BUCKET_WORDS], [2, LEGS_PER_SLOT],
  ];
  for (const [mirror, layout] of mirrors) {
    if (mirror !== layout) throw new Error(`balance engine: a word index (${mirror}) no longer mirrors the slot layout (${layout})`);
  }
  const packed = [OUT_KIND_OFFSET, OUT_STATUS_OFFSET, OUT_REASON_OFFSET, OUT_FLAGS_OFFSET, OUT_LEG_COUNT_OFFSET, OUT_SLOT_COUNT_OFFSET, OUT_TX_ID_LENGTH_OFFSET, OUT_COMMAND_TYPE_OFFSET];
  packed.forEach((offset, index) => {
    if (offset !== index) throw new Error('balance engine: writeOutcome() packs the outcome header bytes 0..7 in layout order');
  });
}
assertLayoutMirrors();

/** Other constants of the hot path, as literals (asserted against their sources below). */
const enum Limit {
  PartitionsMax = 65536,
  TxIdBytesMax = 64,
  SettleLegsMax = 12,
  UserPartitionWord = -1,
  ExternalAccount = 0,
  TransitAccount = 3,
  TwoPow32 = 4294967296,
  Int32Max = 0x7fffffff,
  Int32Min = -0x80000000,
  FlagDuplicate = 1,
  FlagRecorded = 2,
  FlagCreditOut = 4,
  /** Index of the duplicate-replay counter in `counters`. */
  CounterDuplicates = 16,
  PrefetchGroupCommands = 16,
}

function assertLimits(): void {
  const mirrors: [number, number][] = [
    [Limit.PartitionsMax, PARTITIONS_MAX], [Limit.TxIdBytesMax, TX_ID_BYTES_MAX], [Limit.SettleLegsMax, SETTLE_LEGS_MAX],
    [Limit.UserPartitionWord, USER_PARTITION_WORD], [Limit.TwoPow32, TWO_POW_32], [Limit.Int32Max, I32_MAX], [Limit.Int32Min, I32_MIN],
    [Limit.FlagDuplicate, OUTCOME_FLAG_DUPLICATE], [Limit.FlagRecorded, OUTCOME_FLAG_RECORDED], [Limit.FlagCreditOut, OUTCOME_FLAG_CREDIT_OUT],
    [Limit.ExternalAccount, EXTERNAL_ACCOUNT_ID], [Limit.TransitAccount, TRANSIT_ACCOUNT_ID], [1 + ((Limit.SettleLegsMax + 1) >> 1), outputSlotsFor(Limit.SettleLegsMax)],
  ];
  for (const [mirror, source] of mirrors) if (mirror !== source) throw new Error(`balance engine: constant ${mirror} no longer mirrors ${source}`);
}
assertLimits();

/** True if both high words (of running balances, see evaluatePosting()) fit int32, i.e. both values fit int64. */
function fitsInt64(availableHi: number, frozenHi: number): boolean {
  return availableHi <= Limit.Int32Max && availableHi >= Limit.Int32Min && frozenHi <= Limit.Int32Max && frozenHi >= Limit.Int32Min;
}

/** Index of the duplicate-replay counter in `counters`; indexes 0..15 count outcomes by reason (0 = accepted). */
export const COUNTER_DUPLICATES: number = Limit.CounterDuplicates;
const COUNTERS = 17;

/**
 * Commands whose cache lines applyBatch() loads together before applying them: enough
 * independent misses in flight to overlap most of their latency (a core tracks a few dozen),
 * few enough that the lines are still in the cache when apply() needs them.
 */
export const PREFETCH_GROUP_COMMANDS: number = Limit.PrefetchGroupCommands;

export interface BalanceEngineOptions {
  readonly table: BalanceTable;
  /** The buffer holding command slots (the command ring's buffer). */
  readonly commands: ArrayBufferLike;
  readonly output: OutputRegion;
  /** Sequence of the last command applied before this engine started (recovery); default 0. */
  readonly sequenceStart?: number;
  /**
   * Who applies applyBatch()'s commands: 'native', the C core (engine/native/balance_core.c,
   * x86-64 Linux; throws if it cannot be loaded or the output region does not support it),
   * 'typescript', this class, or 'auto' (the default): native where it loads and the output
   * region supports it, else TypeScript. apply() is always TypeScript; both work on the same
   * state, so they may be mixed.
   */
  readonly core?: EngineCoreName;
}

export type EngineCoreName = 'auto' | 'native' | 'typescript';
export const ENGINE_CORE_NAMES: readonly EngineCoreName[] = ['auto', 'native', 'typescript'];

export class BalanceEngine {
  readonly table: BalanceTable;
  /** Outcomes by reason (index 0 = accepted) and COUNTER_DUPLICATES. */
  readonly counters = new Float64Array(COUNTERS);
  private readonly output: OutputRegion;
  private readonly commandBytes: Uint8Array;
  private readonly commandWords: Int32Array;
  private readonly outWords: Int32Array;
  private readonly outFloats: Float64Array;
  private readonly tableWords: Int32Array;
  private readonly tableUnsigned: Uint32Array;
  private readonly tableMask: number;
  private readonly changeSequence: Float64Array;
  private readonly dedups: (DedupIndex | null)[] = new Array<DedupIndex | null>(Limit.PartitionsMax).fill(null);
  /** [0]: sequence of the last command applied. */
  private readonly sequenceCell = new Float64Array(1);
  /** Where applyBatch() leaves what it loaded, so the loads are not optimized away. */
  private prefetched = 0;
  /** Bucket word indexes loadGroupState() loads: one per balance of up to Limit.PrefetchGroupCommands settles. */
  private readonly touchWords = new Int32Array(Limit.PrefetchGroupCommands * Limit.SettleLegsMax);
  /** Output position, slot count and outcome flags of an accepted command's posting (see claimLegSlots()). */
  private claimedFirst = 0;
  private claimedSlots = 0;
  private claimedFlags = 0;
  /** Partition of the command being applied: the home partition of the balances it creates. */
  private applyPartition = 0;

  // The posting being evaluated. Preallocated; nothing is allocated per command. One array
  // per kind of value rather than one per field: V8 loads the map, length and base pointer of
  // every typed array a function touches.
  private legCount = 0;
  /** The legs of a settle, PostingWord.Words words per leg. */
  private readonly legs = new Int32Array(Limit.SettleLegsMax * PostingWord.Words);
  /** Resulting balances after each leg, RunningWord.Words per leg (single-amount commands too). */
  private readonly running = new Float64Array(Limit.SettleLegsMax * RunningWord.Words);
  private readonly hashScratch = new Int32Array(2);
  /** The native core and its handle, or null for the TypeScript path (see BalanceEngineOptions.core). */
  private readonly native: NativeCore | null = null;
  private readonly nativeHandle: unknown = null;
  /** Commands applied, output slots written, error code: the native core's answer to a call. */
  private readonly nativeResult = new Float64Array(3);

  constructor(options: BalanceEngineOptions) {
    this.table = options.table;
    this.output = options.output;
    this.sequenceCell[0] = options.sequenceStart ?? 0;
    const commands = options.commands;
    this.commandBytes = new Uint8Array(commands);
    this.commandWords = new Int32Array(commands);
    this.outWords = new Int32Array(options.output.buffer);
    this.outFloats = new Float64Array(options.output.buffer);
    this.tableWords = this.table.words;
    this.tableUnsigned = this.table.unsignedWords;
    this.tableMask = this.table.mask;
    this.changeSequence = this.table.changeSequence;
    const choice = options.core ?? 'auto';
    if (!ENGINE_CORE_NAMES.includes(choice)) throw new Error(`balance engine: core must be one of ${ENGINE_CORE_NAMES.join(', ')}, got ${String(choice)}`);
    if (choice !== 'typescript') {
      const unsupported = unsupportedOutput(options.output);
      const loaded = unsupported === undefined ? loadNativeCore() : { core: null, error: unsupported };
      if (loaded.core === null) {
        if (choice === 'native') throw new Error(`balance engine: the native core is unavailable: ${loaded.error}`);
      } else {
        this.native = loaded.core;
        this.nativeHandle = loaded.core.create(
          this.commandBytes, new Uint8Array(options.output.buffer), options.output.slotCount!, this.tableWords, this.table.header, this.table.capacity,
          this.changeSequence, this.sequenceCell, this.counters,
        );
      }
    }
  }

  /** 'native' if applyBatch() runs in the C core, else 'typescript'. */
  get coreName(): 'native' | 'typescript' {
    return this.native === null ? 'typescript' : 'native';
  }

  /** Takes ownership of a partition: allocates its dedup window (control plane). */
  assignPartition(partition: number, options: { dedupWindow?: number } = {}): DedupIndex {
    if (!Number.isInteger(partition) || partition < 0 || partition >= Limit.PartitionsMax) throw new Error(`balance engine: partition ${partition} out of range`);
    let dedup = this.dedups[partition];
    if (dedup === null) {
      dedup = new DedupIndex({ capacity: options.dedupWindow });
      // The native core first: if it refuses, the partition is assigned to neither.
      if (this.native !== null) {
        const views = dedup.coreViews();
        this.native.assign(this.nativeHandle, partition, views.meta, views.txIds, views.groups, views.state, dedup.capacity, views.groupCount);
      }
      this.dedups[partition] = dedup;
    }
    return dedup;
  }

  /**
   * Hands a partition back (control plane): drops its dedup window and zeroes its balances,
   * so a later load of it from the database starts from exactly the database's state. The
   * caller must have stopped feeding the partition and let the engine apply what it had.
   * Returns the balances zeroed.
   */
  releasePartition(partition: number): number {
    if (!Number.isInteger(partition) || partition < 0 || partition >= Limit.PartitionsMax) throw new Error(`balance engine: partition ${partition} out of range`);
    this.dedups[partition] = null;
    if (this.native !== null) this.native.release(this.nativeHandle, partition);
    return this.table.zeroPartition(partition);
  }

  dedupIndexOf(partition: number): DedupIndex | null {
    return this.dedups[partition] ?? null;
  }

  /** Sequence of the last command applied. */
  get sequence(): number {
    return this.sequenceCell[0];
  }

  /**
   * Applies `count` commands whose slots start at the byte offsets `commandOffsets[0 .. count)`
   * of the command buffer, in that order, exactly as that many apply() calls would; returns
   * the output slots written.
   *
   * Faster than apply() one by one when the state does not fit in the cache: a balance or a
   * tx_id lookup in tables of hundreds of MiB misses the cache and the TLB, and a miss costs
   * 150 to 350 ns on the bench machine. JavaScript has no prefetch instruction, but misses
   * of independent loads overlap when they are issued close together, so the commands are
   * taken in groups of PREFETCH_GROUP_COMMANDS: first the group's cache lines are loaded
   * (command slots, balance buckets, dedup groups and the dedup entries about to be
   * written) in tight loops that keep many misses in flight, then the group is applied from
   * the cache. The command slots of the next group are loaded before the current group is
   * applied. Loading changes nothing, so any slot contents are safe there. The engine thread
   * should hand over what the command ring holds in one call (bench/engine.bench.ts: 4096).
   */
  applyBatch(commandOffsets: Int32Array, count: number): number {
    if (this.native !== null) return this.applyBatchNative(commandOffsets, count);
    let slots = 0;
    this.loadCommandSlots(commandOffsets, 0, Math.min(count, Limit.PrefetchGroupCommands));
    for (let first = 0; first < count; first += Limit.PrefetchGroupCommands) {
      const end = Math.min(count, first + Limit.PrefetchGroupCommands);
      this.loadGroupState(commandOffsets, first, end);
      this.loadCommandSlots(commandOffsets, end, Math.min(count, end + Limit.PrefetchGroupCommands));
      for (let index = first; index < end; index++) slots += this.apply(commandOffsets[index]);
    }
    return slots;
  }

  /**
   * applyBatch() in the C core: hands it as many commands as the output region has room for
   * (waiting for room as a claim would), then claims the slots it wrote.
   */
  private applyBatchNative(commandOffsets: Int32Array, count: number): number {
    const output = this.output;
    const result = this.nativeResult;
    let done = 0;
    let slots = 0;
    while (done < count) {
      const room = output.awaitRoom!(OUTPUT_SLOTS_PER_COMMAND_MAX);
      this.native!.applyBatch(this.nativeHandle, commandOffsets, done, count, output.nextPosition!(), room, result, done === 0);
      const applied = result[0];
      const written = result[1];
      if (written > 0) output.claim(written);
      slots += written;
      done += applied;
      if (result[2] !== 0) throw this.nativeError(result[2], commandOffsets[done - 1]);
      if (applied === 0) throw new Error(`balance engine: the output region granted ${room} slots, fewer than a command may need (${OUTPUT_SLOTS_PER_COMMAND_MAX})`);
    }
    return slots;
  }

  /** The error apply() would have thrown for the command at `commandOffset`. */
  private nativeError(code: number, commandOffset: number): Error {
    const words = this.commandWords;
    const w = commandOffset >> 2;
    if (code === 1) return new Error(`balance engine: command for partition ${words[w + CommandWord.Partition] >>> 0}, which this engine was not assigned`);
    if (code === 2) return new Error(`balance engine: txIdLength ${words[w + CommandWord.Header] >>> 24} breaks the command layout`);
    return new Error('dedup index: no free slot in any group (corrupted)');
  }

  /** Loads the first two cache lines of the command slots `commandOffsets[first .. end)`. */
  private loadCommandSlots(commandOffsets: Int32Array, first: number, end: number): void {
    const words = this.commandWords;
    let loaded = 0;
    for (let index = first; index < end; index++) {
      const w = commandOffsets[index] >> 2;
      loaded ^= words[w + CommandWord.Partition] ^ words[w + CommandWord.TxId];
    }
    this.prefetched ^= loaded;
  }

  /**
   * Loads the balance buckets and the dedup lines the commands `commandOffsets[first .. end)`
   * will use: first their bucket indexes are collected, then the buckets are loaded in one
   * tight loop, then each command's dedup group and next entry.
   */
  private loadGroupState(commandOffsets: Int32Array, first: number, end: number): void {
    let touches = 0;
    for (let index = first; index < end; index++) touches = this.collectBucketTouches(commandOffsets[index] >> 2, touches);
    const tableWords = this.tableWords;
    const touchWords = this.touchWords;
    let loaded = 0;
    for (let touch = 0; touch < touches; touch++) loaded ^= tableWords[touchWords[touch]];
    const words = this.commandWords;
    for (let index = first; index < end; index++) {
      const w = commandOffsets[index] >> 2;
      const partition = words[w + CommandWord.Partition];
      const dedup = partition >= 0 && partition < Limit.PartitionsMax ? this.dedups[partition] : null;
      if (dedup !== null) loaded ^= dedup.prefetch(words[w + CommandWord.TxIdHash]);
    }
    this.prefetched ^= loaded;
  }

  /** Appends to `touchWords` (from index `touches` on) the bucket words the command at word `w` will read; returns the new count. */
  private collectBucketTouches(w: number, touches: number): number {
    const words = this.commandWords;
    const type = words[w + CommandWord.Header] & 0xff;
    if (type === CommandType.Settle) {
      const partition = words[w + CommandWord.Partition];
      const legCount = Math.min((words[w + CommandWord.Header] >>> 16) & 0xff, Limit.SettleLegsMax);
      for (let leg = 0; leg < legCount; leg++) {
        const base = w + CommandWord.Legs + leg * CommandLegWord.Words;
        const accountLo = words[base + CommandLegWord.Account];
        const accountHi = words[base + CommandLegWord.Account + 1];
        const keyPartition = isUserAccount(accountLo, accountHi) ? Limit.UserPartitionWord : partition;
        touches = this.collectBalance(touches, accountLo, accountHi, words[base + CommandLegWord.Currency], keyPartition);
      }
      return touches;
    }
    const currency = words[w + CommandWord.Currency];
    touches = this.collectBalance(touches, words[w + CommandWord.Account], words[w + CommandWord.Account + 1], currency, Limit.UserPartitionWord);
    if (type !== CommandType.Transfer) return touches;
    // A crossing transfer's leg 1 is the partition's transit account, a line the cache keeps
    // (like the external account of deposits and withdrawals): nothing to load.
    if (words[w + CommandWord.Homes] >>> 16 !== words[w + CommandWord.Partition]) return touches;
    return this.collectBalance(touches, words[w + CommandWord.CounterAccount], words[w + CommandWord.CounterAccount + 1], currency, Limit.UserPartitionWord);
  }

  /**
   * Appends the home bucket of a balance key. A quarter of the keys sit past home (linear
   * probing, every bucket its own cache line), but loading the next bucket too cost more than
   * it saved in a 4-million-balance table (bench machine: 100 against 80 ns per lookup).
   */
  private collectBalance(touches: number, accountLo: number, accountHi: number, currency: number, keyPartition: number): number {
    this.touchWords[touches] = (keyHash(accountLo, accountHi, currency, keyPartition) & this.tableMask) * BucketWord.Words;
    return touches + 1;
  }

  /**
   * Applies the command in the slot at byte `commandOffset` of the command buffer and writes
   * its outcome and legs to the output region. Returns the number of output slots written.
   */
  apply(commandOffset: number): number {
    const slot = commandOffset;
    const words = this.commandWords;
    const w = slot >> 2;
    const sequence = this.sequenceCell[0] + 1;
    this.sequenceCell[0] = sequence;
    this.changeSequence[0] = sequence;
    const partition = words[w + CommandWord.Partition];
    const dedup = partition >= 0 && partition < Limit.PartitionsMax ? this.dedups[partition] : null;
    if (dedup === null) throw new Error(`balance engine: command for partition ${partition >>> 0}, which this engine was not assigned`);
    this.applyPartition = partition;
    const header = words[w + CommandWord.Header];
    const txIdLength = header >>> 24;
    if (txIdLength > Limit.TxIdBytesMax) throw new Error(`balance engine: txIdLength ${txIdLength} breaks the command layout`);
    const preset = (header >>> 8) & 0xff;
    if (txIdLength === 0) return this.finishUnrecorded(slot, preset !== 0 ? preset : RejectCode.Malformed);
    if (preset === RejectCode.Malformed || !this.isWellFormed(slot, txIdLength)) return this.finishUnrecorded(slot, RejectCode.Malformed);
    const txIdHashLo = words[w + CommandWord.TxIdHash];
    const txIdHashHi = words[w + CommandWord.TxIdHash + 1];
    const entry = dedup.find(txIdHashLo, txIdHashHi, this.commandBytes, slot + CommandWord.TxId * 4, txIdLength);
    if (entry >= 0) return this.finishDuplicate(slot, dedup, entry);
    let reason = preset;
    const isSettle = (header & 0xff) === CommandType.Settle;
    if (reason === RejectCode.None) reason = isSettle ? this.applySettle(slot, partition) : this.applySingleAmount(slot, partition);
    if (reason === RejectCode.BalanceTableFull) {
      this.table.noteFullRejection();
      return this.finishUnrecorded(slot, reason);
    }
    const status = reason === RejectCode.None ? OutcomeStatus.Accepted : OutcomeStatus.Rejected;
    const offsetLo = words[w + CommandWord.KafkaOffset];
    const offsetHi = words[w + CommandWord.KafkaOffset + 1];
    dedup.insert(
      txIdHashLo, txIdHashHi, words, w + CommandWord.TxId, txIdLength, words[w + CommandWord.PayloadHash], words[w + CommandWord.PayloadHash + 1],
      status, reason, offsetLo, offsetHi,
    );
    if (status === OutcomeStatus.Rejected) return this.finish(slot, status, reason, Limit.FlagRecorded, offsetLo, offsetHi);
    // The posting has claimed the command's output slots and written its leg slots.
    this.counters[RejectCode.None]++;
    this.writeOutcome(this.claimedFirst, slot, OutcomeStatus.Accepted, RejectCode.None, this.claimedFlags, this.legCount, this.claimedSlots, offsetLo, offsetHi);
    return this.claimedSlots;
  }

  /** Shape checks that need no state; a failure is MALFORMED. */
  private isWellFormed(slot: number, txIdLength: number): boolean {
    const words = this.commandWords;
    const w = slot >> 2;
    const type = words[w + CommandWord.Header] & 0xff;
    if (type < CommandType.Deposit || type > CommandType.Credit) return false;
    // A credit carries a reserved tx_id and nothing else does: a credit is only ever sent by
    // Tally (the relay, or an operator's refund), so one with any other tx_id is not a half
    // of a transfer and must not move money out of transit. For other types the first byte
    // alone rules out nearly every tx_id (reserved ones start with '~').
    const txIdAt = slot + CommandWord.TxId * 4;
    const isCredit = type === CommandType.Credit;
    if ((isCredit || this.commandBytes[txIdAt] === RESERVED_TX_ID_FIRST_BYTE) && isReservedTxIdBytes(this.commandBytes, txIdAt, txIdLength) !== isCredit) return false;
    if (!isUserAccount(words[w + CommandWord.Account], words[w + CommandWord.Account + 1])) return false;
    if (type === CommandType.Transfer) return isUserAccount(words[w + CommandWord.CounterAccount], words[w + CommandWord.CounterAccount + 1]);
    if (type === CommandType.Settle) {
      const legCount = (words[w + CommandWord.Header] >>> 16) & 0xff;
      return legCount >= 1 && legCount <= Limit.SettleLegsMax && settleLegsAvoidReservedAccounts(words, w, legCount);
    }
    return true;
  }

  /** A tx_id found in the window: the stored outcome again, or a conflict if the payload differs. */
  private finishDuplicate(slot: number, dedup: DedupIndex, entry: number): number {
    const words = this.commandWords;
    const w = slot >> 2;
    if (dedup.payloadHashLo(entry) === words[w + CommandWord.PayloadHash] && dedup.payloadHashHi(entry) === words[w + CommandWord.PayloadHash + 1]) {
      return this.finish(slot, dedup.status(entry), dedup.reason(entry), Limit.FlagDuplicate, dedup.kafkaOffsetBitsLo(entry), dedup.kafkaOffsetBitsHi(entry));
    }
    return this.finishUnrecorded(slot, RejectCode.DuplicateTxIdConflict);
  }

  /** A rejection that is not recorded in the dedup window. */
  private finishUnrecorded(slot: number, reason: number): number {
    const w = slot >> 2;
    return this.finish(slot, OutcomeStatus.Rejected, reason, 0, this.commandWords[w + CommandWord.KafkaOffset], this.commandWords[w + CommandWord.KafkaOffset + 1]);
  }

  /**
   * deposit, withdraw, freeze, unfreeze, transfer and credit: one or two legs, evaluated straight
   * from the slot (the hot path; settle goes through the general posting evaluator). Same rules,
   * same order of checks as evaluatePosting(): BAD_AMOUNT, WRONG_PARTITION, INSUFFICIENT_*,
   * AMOUNT_OVERFLOW, BALANCE_TABLE_FULL; on success writes the balances and the leg slot.
   *
   * Leg 0 is the command's account with deltas (available, frozen): deposit and credit (+a, 0),
   * withdraw (-a, 0), freeze (-a, +a), unfreeze (+a, -a), transfer (-a, 0). Leg 1 (not for
   * freeze and unfreeze) changes available only: the transfer's `to` by +a, or a system account
   * of the partition: external (0) by -a for a deposit and +a for a withdraw, transit (3) by +a
   * for a crossing transfer (`to` on another partition) and -a for a credit. A crossing transfer
   * also writes the credit it owes into its leg slot's tail and flags its outcome. A running
   * balance is a low word in [0, 2^32) and a high word kept as an unbounded float64 integer
   * (see evaluatePosting()).
   */
  private applySingleAmount(slot: number, partition: number): number {
    const words = this.commandWords;
    const w = slot >> 2;
    const type = words[w + CommandWord.Header] & 0xff;
    const amountLo = words[w + CommandWord.Amount];
    const amountHi = words[w + CommandWord.Amount + 1];
    if (amountHi < 0 || (amountHi === 0 && amountLo === 0)) return RejectCode.BadAmount;
    const homes = words[w + CommandWord.Homes];
    if ((homes & 0xffff) !== partition) return RejectCode.WrongPartition;
    const isTransfer = type === CommandType.Transfer;
    // The transfer's `to` may live elsewhere (its credit is applied there); then leg 1 is transit.
    const toPartition = homes >>> 16;
    const crossing = isTransfer && toPartition !== partition;
    const secondIsUser = isTransfer && !crossing;
    // Two's complement negation of the amount, word-wise (the amount is > 0, so it cannot overflow).
    const negativeLo = -amountLo | 0;
    const negativeHi = amountLo === 0 ? -amountHi | 0 : ~amountHi;
    const availableCredit = type === CommandType.Deposit || type === CommandType.Unfreeze || type === CommandType.Credit;
    const availableDeltaLo = availableCredit ? amountLo : negativeLo;
    const availableDeltaHi = availableCredit ? amountHi : negativeHi;
    const frozenDeltaLo = type === CommandType.Freeze ? amountLo : type === CommandType.Unfreeze ? negativeLo : 0;
    const frozenDeltaHi = type === CommandType.Freeze ? amountHi : type === CommandType.Unfreeze ? negativeHi : 0;
    const accountLo = words[w + CommandWord.Account];
    const accountHi = words[w + CommandWord.Account + 1];
    const currency = words[w + CommandWord.Currency];
    const bucket0 = findBucket(this.tableWords, this.tableMask, accountLo, accountHi, currency, Limit.UserPartitionWord);
    this.addToBalance(0, bucket0, availableDeltaLo, availableDeltaHi, frozenDeltaLo, frozenDeltaHi);
    const running = this.running;
    if (running[RunningWord.AvailableHi] < 0) return RejectCode.InsufficientAvailable;
    if (running[RunningWord.FrozenHi] < 0) return RejectCode.InsufficientFrozen;
    if (type === CommandType.Freeze || type === CommandType.Unfreeze) {
      if (!fitsInt64(running[RunningWord.AvailableHi], running[RunningWord.FrozenHi])) return RejectCode.AmountOverflow;
      if (bucket0 < 0 && this.table.free < 1) return RejectCode.BalanceTableFull;
      const o = this.claimLegSlots(1);
      this.fillLeg(o + LegSlotWord.FirstLeg, 0, accountLo, accountHi, currency, partition, availableDeltaLo, availableDeltaHi, frozenDeltaLo, frozenDeltaHi);
      this.writeBalance(0, bucket0, accountLo, accountHi, currency, Limit.UserPartitionWord);
      this.legCount = 1;
      return RejectCode.None;
    }
    // Leg 1: the transfer's `to`, or a system account of the partition: transit or external.
    const systemAccount = crossing || type === CommandType.Credit ? Limit.TransitAccount : Limit.ExternalAccount;
    const secondLo = secondIsUser ? words[w + CommandWord.CounterAccount] : systemAccount;
    const secondHi = secondIsUser ? words[w + CommandWord.CounterAccount + 1] : 0;
    const secondKeyPartition = secondIsUser ? Limit.UserPartitionWord : partition;
    const secondDeltaLo = availableCredit ? negativeLo : amountLo;
    const secondDeltaHi = availableCredit ? negativeHi : amountHi;
    // A transfer to oneself names one balance twice: leg 1 starts from leg 0's result.
    const sameBalance = secondIsUser && secondLo === accountLo && secondHi === accountHi;
    const bucket1 = sameBalance ? bucket0 : findBucket(this.tableWords, this.tableMask, secondLo, secondHi, currency, secondKeyPartition);
    if (sameBalance) this.addToRunning(1, 0, secondDeltaLo, secondDeltaHi, 0, 0);
    else this.addToBalance(1, bucket1, secondDeltaLo, secondDeltaHi, 0, 0);
    const second = RunningWord.Words;
    if (secondIsUser && running[second + RunningWord.AvailableHi] < 0) return RejectCode.InsufficientAvailable;
    if (!fitsInt64(running[RunningWord.AvailableHi], running[RunningWord.FrozenHi])) return RejectCode.AmountOverflow;
    if (!fitsInt64(running[second + RunningWord.AvailableHi], running[second + RunningWord.FrozenHi])) return RejectCode.AmountOverflow;
    const needed = (bucket0 < 0 ? 1 : 0) + (!sameBalance && bucket1 < 0 ? 1 : 0);
    if (needed > this.table.free) return RejectCode.BalanceTableFull;
    const o = this.claimLegSlots(2);
    this.fillLeg(o + LegSlotWord.FirstLeg, 0, accountLo, accountHi, currency, partition, availableDeltaLo, availableDeltaHi, frozenDeltaLo, frozenDeltaHi);
    this.fillLeg(o + LegSlotWord.FirstLeg + JournalWord.Words, 1, secondLo, secondHi, currency, partition, secondDeltaLo, secondDeltaHi, 0, 0);
    if (crossing) this.writeCreditOut(o, words[w + CommandWord.CounterAccount], words[w + CommandWord.CounterAccount + 1], toPartition);
    // Only the final value of a balance named twice is written.
    if (!sameBalance) this.writeBalance(0, bucket0, accountLo, accountHi, currency, Limit.UserPartitionWord);
    this.writeBalance(1, bucket1, secondLo, secondHi, currency, secondKeyPartition);
    this.legCount = 2;
    return RejectCode.None;
  }

  /**
   * The credit a crossing transfer owes, in the tail of its leg slot at word `o` (output_layout.ts),
   * and its outcome's flag that says the tail is there. The amount and currency are leg 1's.
   */
  private writeCreditOut(o: number, toLo: number, toHi: number, toPartition: number): void {
    const outWords = this.outWords;
    outWords[o + LegSlotWord.CreditToAccount] = toLo;
    outWords[o + LegSlotWord.CreditToAccount + 1] = toHi;
    outWords[o + LegSlotWord.CreditToPartition] = toPartition;
    outWords[o + LegSlotWord.CreditReserved] = 0;
    this.claimedFlags = Limit.FlagRecorded | Limit.FlagCreditOut;
  }

  /**
   * Claims the output slots of an accepted posting of `legCount` legs (the outcome slot, then
   * its leg slots), remembers them and the outcome's flags for apply() and writes the first leg
   * slot's header; returns the word index of that leg slot.
   */
  private claimLegSlots(legCount: number): number {
    const output = this.output;
    const slotCount = 1 + ((legCount + 1) >> 1);
    const first = output.claim(slotCount);
    this.claimedFirst = first;
    this.claimedSlots = slotCount;
    this.claimedFlags = Limit.FlagRecorded;
    const o = output.slotByteOffset(first + 1) >> 2;
    this.writeLegSlotHeader(o, legCount >= 2 ? 2 : 1);
    return o;
  }

  /** Running balances of leg `leg`: the bucket's balances (0 if it does not exist) plus the deltas. */
  private addToBalance(leg: number, bucket: number, availableLo: number, availableHi: number, frozenLo: number, frozenHi: number): void {
    let baseAvailableLo = 0;
    let baseAvailableHi = 0;
    let baseFrozenLo = 0;
    let baseFrozenHi = 0;
    if (bucket >= 0) {
      const base = bucket * BucketWord.Words;
      baseAvailableLo = this.tableUnsigned[base + BucketWord.Available];
      baseAvailableHi = this.tableWords[base + BucketWord.Available + 1];
      baseFrozenLo = this.tableUnsigned[base + BucketWord.Frozen];
      baseFrozenHi = this.tableWords[base + BucketWord.Frozen + 1];
    }
    this.setRunning(leg, baseAvailableLo, baseAvailableHi, baseFrozenLo, baseFrozenHi, availableLo, availableHi, frozenLo, frozenHi);
  }

  /** Running balances of leg `leg`: those of leg `previous` plus the deltas. */
  private addToRunning(leg: number, previous: number, availableLo: number, availableHi: number, frozenLo: number, frozenHi: number): void {
    this.setRunning(
      leg, this.running[previous * RunningWord.Words + RunningWord.AvailableLo], this.running[previous * RunningWord.Words + RunningWord.AvailableHi],
      this.running[previous * RunningWord.Words + RunningWord.FrozenLo], this.running[previous * RunningWord.Words + RunningWord.FrozenHi],
      availableLo, availableHi, frozenLo, frozenHi,
    );
  }

  /** Exact word addition: low words with a carry, high words as float64 integers (unbounded). */
  private setRunning(
    leg: number, baseAvailableLo: number, baseAvailableHi: number, baseFrozenLo: number, baseFrozenHi: number,
    availableLo: number, availableHi: number, frozenLo: number, frozenHi: number,
  ): void {
    const sumAvailableLo = baseAvailableLo + (availableLo >>> 0);
    const carryAvailable = sumAvailableLo >= Limit.TwoPow32 ? 1 : 0;
    const running = this.running;
    const at = leg * RunningWord.Words;
    running[at + RunningWord.AvailableLo] = sumAvailableLo - carryAvailable * Limit.TwoPow32;
    running[at + RunningWord.AvailableHi] = baseAvailableHi + availableHi + carryAvailable;
    const sumFrozenLo = baseFrozenLo + (frozenLo >>> 0);
    const carryFrozen = sumFrozenLo >= Limit.TwoPow32 ? 1 : 0;
    running[at + RunningWord.FrozenLo] = sumFrozenLo - carryFrozen * Limit.TwoPow32;
    running[at + RunningWord.FrozenHi] = baseFrozenHi + frozenHi + carryFrozen;
  }

  /** Writes a journal leg at output word `at` from its key, its deltas and the running balances of leg `leg`. */
  private fillLeg(
    at: number, leg: number, accountLo: number, accountHi: number, currency: number, partition: number,
    availableLo: number, availableHi: number, frozenLo: number, frozenHi: number,
  ): void {
    const target = this.outWords;
    target[at + JournalWord.AccountLo] = accountLo;
    target[at + JournalWord.AccountHi] = accountHi;
    target[at + JournalWord.Currency] = currency;
    target[at + JournalWord.Partition] = partition;
    target[at + JournalWord.AvailableDeltaLo] = availableLo;
    target[at + JournalWord.AvailableDeltaHi] = availableHi;
    target[at + JournalWord.FrozenDeltaLo] = frozenLo;
    target[at + JournalWord.FrozenDeltaHi] = frozenHi;
    const running = this.running;
    const from = leg * RunningWord.Words;
    target[at + JournalWord.AvailableLo] = running[from + RunningWord.AvailableLo];
    target[at + JournalWord.AvailableHi] = running[from + RunningWord.AvailableHi];
    target[at + JournalWord.FrozenLo] = running[from + RunningWord.FrozenLo];
    target[at + JournalWord.FrozenHi] = running[from + RunningWord.FrozenHi];
  }

  /** Writes the running balances of leg `leg` (known to fit int64) into its bucket, or a new one. */
  private writeBalance(leg: number, bucket: number, accountLo: number, accountHi: number, currency: number, keyPartition: number): void {
    const running = this.running;
    const from = leg * RunningWord.Words;
    const availableLo = running[from + RunningWord.AvailableLo] | 0;
    const availableHi = running[from + RunningWord.AvailableHi] | 0;
    const frozenLo = running[from + RunningWord.FrozenLo] | 0;
    const frozenHi = running[from + RunningWord.FrozenHi] | 0;
    if (bucket >= 0) this.table.write(bucket, availableLo, availableHi, frozenLo, frozenHi);
    else this.table.insert(accountLo, accountHi, currency, keyPartition, availableLo, availableHi, frozenLo, frozenHi, this.applyPartition);
  }

  /** settle: builds the legs, checks them as a whole, applies them or none. */
  private applySettle(slot: number, partition: number): number {
    let reason = this.buildSettle(slot, partition);
    if (reason === RejectCode.None) reason = this.evaluatePosting();
    if (reason === RejectCode.None) this.commitPosting();
    return reason;
  }

  /** Copies the settle's legs into `legs`; WRONG_PARTITION, LEGS_NOT_BALANCED or None. */
  private buildSettle(slot: number, partition: number): RejectCode {
    const words = this.commandWords;
    const w = slot >> 2;
    if ((words[w + CommandWord.Homes] & 0xffff) !== partition) return RejectCode.WrongPartition;
    const legCount = (words[w + CommandWord.Header] >>> 16) & 0xff;
    const legs = this.legs;
    for (let leg = 0; leg < legCount; leg++) {
      const from = w + CommandWord.Legs + leg * CommandLegWord.Words;
      const at = leg * PostingWord.Words;
      const accountLo = words[from + CommandLegWord.Account];
      const accountHi = words[from + CommandLegWord.Account + 1];
      const isUser = isUserAccount(accountLo, accountHi);
      if (isUser && words[from + CommandLegWord.Home] !== partition) return RejectCode.WrongPartition;
      legs[at + PostingWord.AccountLo] = accountLo;
      legs[at + PostingWord.AccountHi] = accountHi;
      legs[at + PostingWord.Currency] = words[from + CommandLegWord.Currency];
      legs[at + PostingWord.KeyPartition] = isUser ? Limit.UserPartitionWord : partition;
      legs[at + PostingWord.Partition] = partition;
      legs[at + PostingWord.IsUser] = isUser ? 1 : 0;
      legs[at + PostingWord.AvailableDeltaLo] = words[from + CommandLegWord.AvailableDelta];
      legs[at + PostingWord.AvailableDeltaHi] = words[from + CommandLegWord.AvailableDelta + 1];
      legs[at + PostingWord.FrozenDeltaLo] = words[from + CommandLegWord.FrozenDelta];
      legs[at + PostingWord.FrozenDeltaHi] = words[from + CommandLegWord.FrozenDelta + 1];
    }
    this.legCount = legCount;
    return this.checkLegsBalanced();
  }

  /**
   * Per currency, the legs' available + frozen deltas must sum to zero. Exact word arithmetic:
   * at most 24 low words and 24 high words are summed, so both sums stay exact in float64.
   */
  private checkLegsBalanced(): RejectCode {
    const legCount = this.legCount;
    const legs = this.legs;
    for (let leg = 0; leg < legCount; leg++) {
      const currency = legs[leg * PostingWord.Words + PostingWord.Currency];
      if (this.currencySeenBefore(leg, currency)) continue;
      let lowSum = 0;
      let highSum = 0;
      for (let other = leg; other < legCount; other++) {
        const at = other * PostingWord.Words;
        if (legs[at + PostingWord.Currency] !== currency) continue;
        lowSum += (legs[at + PostingWord.AvailableDeltaLo] >>> 0) + (legs[at + PostingWord.FrozenDeltaLo] >>> 0);
        highSum += legs[at + PostingWord.AvailableDeltaHi] + legs[at + PostingWord.FrozenDeltaHi];
      }
      const carry = Math.floor(lowSum / Limit.TwoPow32);
      if (lowSum !== carry * Limit.TwoPow32 || highSum + carry !== 0) return RejectCode.LegsNotBalanced;
    }
    return RejectCode.None;
  }

  private currencySeenBefore(leg: number, currency: number): boolean {
    for (let earlier = 0; earlier < leg; earlier++) if (this.legs[earlier * PostingWord.Words + PostingWord.Currency] === currency) return true;
    return false;
  }

  /** Finds each leg's balance and links legs that name the same balance. */
  private resolveBuckets(): void {
    const legCount = this.legCount;
    const legs = this.legs;
    for (let leg = 0; leg < legCount; leg++) {
      const at = leg * PostingWord.Words;
      legs[at + PostingWord.IsLast] = 1;
      const previous = this.previousLegOnSameBalance(leg);
      legs[at + PostingWord.Previous] = previous;
      if (previous >= 0) {
        legs[previous * PostingWord.Words + PostingWord.IsLast] = 0;
        legs[at + PostingWord.Bucket] = legs[previous * PostingWord.Words + PostingWord.Bucket];
      } else {
        legs[at + PostingWord.Bucket] = findBucket(
          this.tableWords, this.tableMask, legs[at + PostingWord.AccountLo], legs[at + PostingWord.AccountHi], legs[at + PostingWord.Currency], legs[at + PostingWord.KeyPartition],
        );
      }
    }
  }

  private previousLegOnSameBalance(leg: number): number {
    const legs = this.legs;
    const at = leg * PostingWord.Words;
    for (let earlier = leg - 1; earlier >= 0; earlier--) {
      const other = earlier * PostingWord.Words;
      if (
        legs[other + PostingWord.AccountLo] === legs[at + PostingWord.AccountLo] && legs[other + PostingWord.AccountHi] === legs[at + PostingWord.AccountHi] &&
        legs[other + PostingWord.Currency] === legs[at + PostingWord.Currency] && legs[other + PostingWord.KeyPartition] === legs[at + PostingWord.KeyPartition]
      ) {
        return earlier;
      }
    }
    return -1;
  }

  /**
   * Computes every leg's resulting balances and checks them: INSUFFICIENT_AVAILABLE /
   * INSUFFICIENT_FROZEN, AMOUNT_OVERFLOW, BALANCE_TABLE_FULL or None.
   *
   * Exact 64-bit arithmetic on words, never BigInt: a running value is a low word in
   * [0, 2^32) plus a high word kept as an unbounded float64 integer, so its sign is the sign
   * of the high word and it fits int64 exactly when the high word fits int32. This stays
   * allocation-free and fast for balances beyond 2^53 too (the external account of a
   * currency with scale 8 passes 2^53 after 90 million coins of deposits).
   */
  private evaluatePosting(): RejectCode {
    this.resolveBuckets();
    const legCount = this.legCount;
    const legs = this.legs;
    let needed = 0;
    for (let leg = 0; leg < legCount; leg++) {
      const at = leg * PostingWord.Words;
      const previous = legs[at + PostingWord.Previous];
      const availableLo = legs[at + PostingWord.AvailableDeltaLo];
      const availableHi = legs[at + PostingWord.AvailableDeltaHi];
      const frozenLo = legs[at + PostingWord.FrozenDeltaLo];
      const frozenHi = legs[at + PostingWord.FrozenDeltaHi];
      if (previous >= 0) {
        this.addToRunning(leg, previous, availableLo, availableHi, frozenLo, frozenHi);
      } else {
        this.addToBalance(leg, legs[at + PostingWord.Bucket], availableLo, availableHi, frozenLo, frozenHi);
        if (legs[at + PostingWord.Bucket] < 0) needed++;
      }
    }
    const running = this.running;
    for (let leg = 0; leg < legCount; leg++) {
      if (legs[leg * PostingWord.Words + PostingWord.IsUser] === 0) continue;
      if (running[leg * RunningWord.Words + RunningWord.AvailableHi] < 0) return RejectCode.InsufficientAvailable;
      if (running[leg * RunningWord.Words + RunningWord.FrozenHi] < 0) return RejectCode.InsufficientFrozen;
    }
    for (let leg = 0; leg < legCount; leg++) {
      if (!fitsInt64(running[leg * RunningWord.Words + RunningWord.AvailableHi], running[leg * RunningWord.Words + RunningWord.FrozenHi])) return RejectCode.AmountOverflow;
    }
    if (needed > this.table.free) return RejectCode.BalanceTableFull;
    return RejectCode.None;
  }

  /** Writes the legs to the output slots it claims, and each touched balance once (its last leg's result), creating missing ones. */
  private commitPosting(): void {
    const legCount = this.legCount;
    const legs = this.legs;
    let o = this.claimLegSlots(legCount);
    for (let leg = 0; leg < legCount; leg++) {
      if (leg > 0 && (leg & 1) === 0) {
        o = this.output.slotByteOffset(this.claimedFirst + 1 + (leg >> 1)) >> 2;
        this.writeLegSlotHeader(o, legCount - leg >= 2 ? 2 : 1);
      }
      const at = leg * PostingWord.Words;
      const accountLo = legs[at + PostingWord.AccountLo];
      const accountHi = legs[at + PostingWord.AccountHi];
      const currency = legs[at + PostingWord.Currency];
      this.fillLeg(
        o + LegSlotWord.FirstLeg + (leg & 1) * JournalWord.Words, leg, accountLo, accountHi, currency, legs[at + PostingWord.Partition],
        legs[at + PostingWord.AvailableDeltaLo], legs[at + PostingWord.AvailableDeltaHi], legs[at + PostingWord.FrozenDeltaLo], legs[at + PostingWord.FrozenDeltaHi],
      );
      if (legs[at + PostingWord.IsLast] !== 0) this.writeBalance(leg, legs[at + PostingWord.Bucket], accountLo, accountHi, currency, legs[at + PostingWord.KeyPartition]);
    }
  }

  /**
   * Claims and writes the outcome slot of a command that has no legs (a rejection or a
   * duplicate replay); returns 1, the slots written. `originalLo`/`originalHi` are the
   * float64 bits of the original offset: the command's own, or for a duplicate the recorded one.
   */
  private finish(slot: number, status: number, reason: number, flags: number, originalLo: number, originalHi: number): number {
    this.counters[(flags & Limit.FlagDuplicate) !== 0 ? Limit.CounterDuplicates : reason]++;
    this.writeOutcome(this.output.claim(1), slot, status, reason, flags, 0, 1, originalLo, originalHi);
    return 1;
  }

  /** Writes the outcome slot at output position `first` for the command in `slot`. */
  private writeOutcome(
    first: number, slot: number, status: number, reason: number, flags: number, legCount: number, slotCount: number, originalLo: number, originalHi: number,
  ): void {
    const out = this.output.slotByteOffset(first);
    const o = out >> 2;
    const outWords = this.outWords;
    const words = this.commandWords;
    const w = slot >> 2;
    const header = words[w + CommandWord.Header];
    const txIdLength = header >>> 24;
    outWords[o + OutcomeWord.Header0] = SlotKind.Outcome | (status << 8) | (reason << 16) | (flags << 24);
    outWords[o + OutcomeWord.Header1] = legCount | (slotCount << 8) | (txIdLength << 16) | ((header & 0xff) << 24);
    outWords[o + OutcomeWord.Partition] = words[w + CommandWord.Partition];
    outWords[o + OutcomeWord.Reserved] = 0;
    outWords[o + OutcomeWord.KafkaOffset] = words[w + CommandWord.KafkaOffset];
    outWords[o + OutcomeWord.KafkaOffset + 1] = words[w + CommandWord.KafkaOffset + 1];
    this.outFloats[(out >> 3) + (OutcomeWord.Sequence >> 1)] = this.sequenceCell[0];
    outWords[o + OutcomeWord.PayloadHash] = words[w + CommandWord.PayloadHash];
    outWords[o + OutcomeWord.PayloadHash + 1] = words[w + CommandWord.PayloadHash + 1];
    outWords[o + OutcomeWord.OriginalOffset] = originalLo;
    outWords[o + OutcomeWord.OriginalOffset + 1] = originalHi;
    outWords[o + OutcomeWord.Account] = words[w + CommandWord.Account];
    outWords[o + OutcomeWord.Account + 1] = words[w + CommandWord.Account + 1];
    outWords[o + OutcomeWord.TxIdHash] = words[w + CommandWord.TxIdHash];
    outWords[o + OutcomeWord.TxIdHash + 1] = words[w + CommandWord.TxIdHash + 1];
    // Only the words holding the tx_id; bytes past txIdLength are undefined in the output.
    const txIdWords = (txIdLength + 3) >> 2;
    for (let i = 0; i < txIdWords; i++) outWords[o + OutcomeWord.TxId + i] = words[w + CommandWord.TxId + i];
  }

  /** The first four words of a leg slot at word `o`: its kind and leg count, then reserved zeros. */
  private writeLegSlotHeader(o: number, legsInSlot: number): void {
    const outWords = this.outWords;
    outWords[o + LegSlotWord.Header] = SlotKind.Legs | (legsInSlot << 8);
    outWords[o + LegSlotWord.Header + 1] = 0;
    outWords[o + LegSlotWord.Header + 2] = 0;
    outWords[o + LegSlotWord.Header + 3] = 0;
  }

  /**
   * A 64-bit hash (16 hex digits) of the engine's state that does not depend on insertion
   * order nor on how partitions were interleaved: the per-lane sum of a hash of every
   * non-zero balance (account, currency, key partition, available, frozen) plus, per assigned
   * partition, a hash of its dedup window's contents (tx_id hash, payload hash, outcome,
   * offset). Sequences are left out: they depend on the interleaving of partitions. Zero
   * balances are left out so a table reloaded without them hashes the same. O(buckets).
   */
  stateHash(): string {
    let laneA = 0;
    let laneB = 0;
    const words = this.tableWords;
    for (let bucket = 0; bucket < this.table.bucketCount; bucket++) {
      const base = bucket * BUCKET_WORDS;
      if (words[base + VERSION_WORD] === 0) continue;
      if ((words[base + AVAILABLE_WORD] | words[base + AVAILABLE_WORD + 1] | words[base + FROZEN_WORD] | words[base + FROZEN_WORD + 1]) === 0) continue;
      let a = 0x6a09e667;
      let b = 0xbb67ae85;
      for (let word = 1; word <= 10; word++) {
        if (word === 8 || word === 9) continue; // last change sequence
        a = mix32(a, words[base + word]);
        b = mix32(b, words[base + word] ^ 0x5a5a5a5a);
      }
      laneA = (laneA + finalize32(a)) | 0;
      laneB = (laneB + finalize32(b)) | 0;
    }
    for (let partition = 0; partition < Limit.PartitionsMax; partition++) {
      const dedup = this.dedups[partition];
      if (dedup === null) continue;
      dedup.contentHash(this.hashScratch);
      laneA = (laneA + finalize32(mix32(mix32(0x3c6ef372, partition), this.hashScratch[0]))) | 0;
      laneB = (laneB + finalize32(mix32(mix32(0xa54ff53a, partition), this.hashScratch[1]))) | 0;
    }
    return (laneA >>> 0).toString(16).padStart(8, '0') + (laneB >>> 0).toString(16).padStart(8, '0');
  }
}

/** Why the native core cannot write into `output`, or undefined if it can. */
function unsupportedOutput(output: OutputRegion): string | undefined {
  const slotCount = output.slotCount;
  if (slotCount === undefined || output.nextPosition === undefined || output.awaitRoom === undefined) return 'the output region does not offer slotCount, nextPosition() and awaitRoom()';
  if (!Number.isInteger(slotCount) || slotCount < OUTPUT_SLOTS_PER_COMMAND_MAX || (slotCount & (slotCount - 1)) !== 0 || output.buffer.byteLength < slotCount * OUTPUT_SLOT_BYTES) {
    return `the output region's slot count ${slotCount} is not a power of two that its buffer holds`;
  }
  for (const position of [1, slotCount - 1, slotCount, slotCount + 3]) {
    if (output.slotByteOffset(position) !== (position % slotCount) * OUTPUT_SLOT_BYTES) return 'the output region does not place slot p at (p mod slotCount) x OUTPUT_SLOT_BYTES';
  }
  return undefined;
}

/**
 * A settle posts against the trade's system accounts (fees, clearing, configured ones), never
 * against external (0) or transit (3): deposits and withdrawals alone move money across 0,
 * and transit must equal the cross-partition credits in flight (ARCHITECTURE.md section 4),
 * which a settle leg on it would break (and mint user money out of it).
 */
function settleLegsAvoidReservedAccounts(words: Int32Array, w: number, legCount: number): boolean {
  for (let leg = 0; leg < legCount; leg++) {
    const from = w + CommandWord.Legs + leg * CommandLegWord.Words;
    if (words[from + CommandLegWord.Account + 1] !== 0) continue;
    const accountLo = words[from + CommandLegWord.Account];
    if (accountLo === Limit.ExternalAccount || accountLo === Limit.TransitAccount) return false;
  }
  return true;
}
