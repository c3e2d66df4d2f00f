// Model-based test of the balance engine: a reference model written independently from the
// contract (plain Maps and BigInts, no engine code) and a seeded workload generator. The
// engine's outcome, journal legs and balances must equal the model's, command by command.
//
//   MODEL_SEED=<n>      seed of the workload (printed on failure, so a failure can be replayed)
//   MODEL_COMMANDS=<n>  commands to run (default 200000; the full run is 1000000 or more)
//
// Invariants (conservation, no negative user balance, sequences) are checked after every
// batch of 1000 commands, all balances are compared every 50 batches and at the end.
//
// Transfers across partitions: the workload plays the relay too. Each accepted transfer whose
// `to` lives on another partition leaves its amount in its partition's transit account and
// queues a credit for `to`'s partition; the relay sends queued credits in random order among
// the other commands, resends some (which must replay as duplicates), and requeues one that
// met BALANCE_TABLE_FULL (not recorded, so a retry may apply). The transit accounts summed
// over partitions must always equal the credits still owed (ARCHITECTURE.md section 4), and
// after the relay has drained, every credit is applied exactly once or was rejected.
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { BalanceEngine, EngineCoreName } from './balance_engine';
import { BalanceTable } from './balance_table';
import { COMMAND_SLOT_BYTES, CommandType, PAYLOAD_HASH_OFFSET } from './command_layout';
import { CommandSlotWriter, SettleLegFields, txIdHash64 } from './command_slot_writer';
import { InvariantChecker } from './engine_invariants';
import { loadNativeCore } from './native_core';
import { OutputBuffer } from './output_buffer';
import {
  CreditOutRecord, LegRecord, OUTCOME_FLAG_CREDIT_OUT, OUTCOME_FLAG_DUPLICATE, OUTCOME_FLAG_RECORDED, OUTPUT_SLOT_BYTES, OutcomeRecord,
  readCreditOut, readLeg, readOutcome,
} from './output_layout';
import { RejectCode, rejectCodeName } from './reject_code';

const SEED = Number(process.env.MODEL_SEED ?? 20240601);
const COMMANDS = Number(process.env.MODEL_COMMANDS ?? 200_000);
const ACCOUNTS = 12_000;
const PARTITIONS = 4;
const CURRENCY_SCALES = [2, 6, 8, 8, 18];
const UNKNOWN_CURRENCY_ID = 9;
const DEDUP_WINDOW = 5_000;
const TABLE_CAPACITY = Number(process.env.MODEL_TABLE_CAPACITY ?? 18_000);
const BATCH = 1000;
const FULL_COMPARE_EVERY_BATCHES = 50;
const HISTORY = 30_000;
const I64_MAX = (1n << 63n) - 1n;
const I64_MIN = -(1n << 63n);
/** tx_ids starting with this prefix all share one tx_id hash: collisions must never look like duplicates. */
const COLLIDING_PREFIX = 'c-';
const COLLIDING_HASH = 0x0123456789abcdefn;

// ───────────────────────────── seeded PRNG (mulberry32) ─────────────────────────────

class Random {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }
  next(): number {
    this.state = (this.state + 0x6d2b79f5) | 0;
    let t = Math.imul(this.state ^ (this.state >>> 15), 1 | this.state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(bound: number): number {
    return Math.floor(this.next() * bound);
  }
  chance(probability: number): boolean {
    return this.next() < probability;
  }
  /** Uniform-ish bigint in [0, bound). */
  bigint(bound: bigint): bigint {
    if (bound <= 0n) return 0n;
    const wide = (BigInt(Math.floor(this.next() * 2 ** 32)) << 32n) | BigInt(Math.floor(this.next() * 2 ** 32));
    return wide % bound;
  }
}

// ───────────────────────────── commands as the generator and model see them ─────────────────────────────

interface ModelCommand {
  readonly type: number;
  readonly rejectCode: number;
  readonly txId: string;
  readonly partition: number;
  readonly kafkaOffset: number;
  readonly account: bigint;
  readonly counterAccount: bigint;
  readonly currency: number;
  readonly accountHome: number;
  readonly counterHome: number;
  readonly amount: bigint;
  readonly legs: readonly SettleLegFields[];
  readonly legCount: number;
  payloadHash: bigint;
}

interface ModelLeg {
  readonly account: bigint;
  readonly currency: number;
  readonly partition: number;
  readonly availableDelta: bigint;
  readonly frozenDelta: bigint;
  resultingAvailable: bigint;
  resultingFrozen: bigint;
}

interface ModelOutcome {
  readonly status: number;
  readonly reason: number;
  readonly duplicate: boolean;
  readonly recorded: boolean;
  readonly originalOffset: number;
  readonly legs: readonly ModelLeg[];
  /** The credit an accepted crossing transfer owes `to`'s partition, else null. */
  readonly creditOut: CreditOutRecord | null;
}

interface Balance {
  available: bigint;
  frozen: bigint;
}

interface StoredOutcome {
  readonly status: number;
  readonly reason: number;
  readonly payloadHash: bigint;
  readonly offset: number;
}

// ───────────────────────────── the reference model ─────────────────────────────

const ACCEPTED = 1;
const REJECTED = 2;
const TRANSIT = 3n;

function isSystem(account: bigint): boolean {
  return account < 1000n;
}

function balanceKey(account: bigint, currency: number, partition: number): string {
  return isSystem(account) ? `${account}/${currency}/p${partition}` : `${account}/${currency}`;
}

/** The contract of ARCHITECTURE.md section 3 plus the engine's documented decisions, in plain BigInts. */
class ReferenceModel {
  readonly balances = new Map<string, Balance>();
  private readonly windows = new Map<number, { outcomes: Map<string, StoredOutcome>; fifo: string[]; head: number }>();

  constructor(private readonly capacity: number, private readonly window: number) {}

  balance(account: bigint, currency: number, partition: number): Balance {
    return this.balances.get(balanceKey(account, currency, partition)) ?? { available: 0n, frozen: 0n };
  }

  apply(command: ModelCommand): ModelOutcome {
    if (command.txId.length === 0) return this.outcome(REJECTED, command.rejectCode || RejectCode.Malformed, command.kafkaOffset);
    if (command.rejectCode === RejectCode.Malformed || this.isMalformed(command)) return this.outcome(REJECTED, RejectCode.Malformed, command.kafkaOffset);
    const window = this.windowOf(command.partition);
    const stored = window.outcomes.get(command.txId);
    if (stored !== undefined) {
      if (stored.payloadHash === command.payloadHash) return { status: stored.status, reason: stored.reason, duplicate: true, recorded: false, originalOffset: stored.offset, legs: [], creditOut: null };
      return this.outcome(REJECTED, RejectCode.DuplicateTxIdConflict, command.kafkaOffset);
    }
    let reason = command.rejectCode;
    let legs: ModelLeg[] = [];
    if (reason === RejectCode.None) [reason, legs] = this.postingOf(command);
    if (reason === RejectCode.None) reason = this.evaluateAndApply(legs);
    if (reason === RejectCode.BalanceTableFull) return this.outcome(REJECTED, reason, command.kafkaOffset);
    const status = reason === RejectCode.None ? ACCEPTED : REJECTED;
    this.record(window, command, status, reason);
    const crossing = command.type === CommandType.Transfer && command.counterHome !== command.partition;
    const creditOut = status === ACCEPTED && crossing ? { to: command.counterAccount, toPartition: command.counterHome } : null;
    return { status, reason, duplicate: false, recorded: true, originalOffset: command.kafkaOffset, legs: status === ACCEPTED ? legs : [], creditOut };
  }

  private outcome(status: number, reason: number, offset: number): ModelOutcome {
    return { status, reason, duplicate: false, recorded: false, originalOffset: offset, legs: [], creditOut: null };
  }

  private isMalformed(command: ModelCommand): boolean {
    if (command.type < CommandType.Deposit || command.type > CommandType.Credit) return true;
    if ((command.type === CommandType.Credit) !== /^~[xr][0-9]+-[0-9]+$/.test(command.txId)) return true;
    if (isSystem(command.account)) return true;
    if (command.type === CommandType.Transfer && isSystem(command.counterAccount)) return true;
    if (command.type === CommandType.Settle && (command.legCount < 1 || command.legCount > 12)) return true;
    // External (0) and transit (3) have their own commands (ARCHITECTURE.md sections 3 and 4).
    if (command.type === CommandType.Settle && command.legs.slice(0, command.legCount).some((leg) => leg.account === 0n || leg.account === 3n)) return true;
    return false;
  }

  private windowOf(partition: number) {
    let window = this.windows.get(partition);
    if (window === undefined) {
      window = { outcomes: new Map(), fifo: [], head: 0 };
      this.windows.set(partition, window);
    }
    return window;
  }

  private record(window: { outcomes: Map<string, StoredOutcome>; fifo: string[]; head: number }, command: ModelCommand, status: number, reason: number): void {
    if (window.outcomes.size === this.window) {
      window.outcomes.delete(window.fifo[window.head]);
      window.head++;
      if (window.head > 100_000) {
        window.fifo = window.fifo.slice(window.head);
        window.head = 0;
      }
    }
    window.outcomes.set(command.txId, { status, reason, payloadHash: command.payloadHash, offset: command.kafkaOffset });
    window.fifo.push(command.txId);
  }

  private postingOf(command: ModelCommand): [number, ModelLeg[]] {
    const p = command.partition;
    const leg = (account: bigint, currency: number, available: bigint, frozen: bigint): ModelLeg => ({
      account, currency, partition: p, availableDelta: available, frozenDelta: frozen, resultingAvailable: 0n, resultingFrozen: 0n,
    });
    if (command.type !== CommandType.Settle && command.amount <= 0n) return [RejectCode.BadAmount, []];
    if (command.accountHome !== p) return [RejectCode.WrongPartition, []];
    const a = command.amount;
    const user = command.account;
    const c = command.currency;
    switch (command.type) {
      case CommandType.Deposit: return [RejectCode.None, [leg(user, c, a, 0n), leg(0n, c, -a, 0n)]];
      case CommandType.Withdraw: return [RejectCode.None, [leg(user, c, -a, 0n), leg(0n, c, a, 0n)]];
      case CommandType.Freeze: return [RejectCode.None, [leg(user, c, -a, a)]];
      case CommandType.Unfreeze: return [RejectCode.None, [leg(user, c, a, -a)]];
      case CommandType.Transfer:
        // `to` on another partition: the amount waits in this partition's transit account for the credit there.
        if (command.counterHome !== p) return [RejectCode.None, [leg(user, c, -a, 0n), leg(TRANSIT, c, a, 0n)]];
        return [RejectCode.None, [leg(user, c, -a, 0n), leg(command.counterAccount, c, a, 0n)]];
      case CommandType.Credit: return [RejectCode.None, [leg(user, c, a, 0n), leg(TRANSIT, c, -a, 0n)]];
      default: {
        const legs = command.legs.slice(0, command.legCount);
        if (legs.some((l) => !isSystem(l.account) && l.home !== p)) return [RejectCode.WrongPartition, []];
        const sums = new Map<number, bigint>();
        for (const l of legs) sums.set(l.currency, (sums.get(l.currency) ?? 0n) + l.available + l.frozen);
        if ([...sums.values()].some((sum) => sum !== 0n)) return [RejectCode.LegsNotBalanced, []];
        return [RejectCode.None, legs.map((l) => leg(l.account, l.currency, l.available, l.frozen))];
      }
    }
  }

  /** Legs apply in order; a user balance may not be negative after any leg; every balance stays in int64. */
  private evaluateAndApply(legs: ModelLeg[]): number {
    const running = new Map<string, Balance>();
    for (const leg of legs) {
      const key = balanceKey(leg.account, leg.currency, leg.partition);
      const before = running.get(key) ?? this.balances.get(key) ?? { available: 0n, frozen: 0n };
      const after = { available: before.available + leg.availableDelta, frozen: before.frozen + leg.frozenDelta };
      running.set(key, after);
      leg.resultingAvailable = after.available;
      leg.resultingFrozen = after.frozen;
    }
    for (const leg of legs) {
      if (isSystem(leg.account)) continue;
      if (leg.resultingAvailable < 0n) return RejectCode.InsufficientAvailable;
      if (leg.resultingFrozen < 0n) return RejectCode.InsufficientFrozen;
    }
    const outside = (value: bigint) => value > I64_MAX || value < I64_MIN;
    if (legs.some((leg) => outside(leg.resultingAvailable) || outside(leg.resultingFrozen))) return RejectCode.AmountOverflow;
    const created = [...running.keys()].filter((key) => !this.balances.has(key)).length;
    if (this.balances.size + created > this.capacity) return RejectCode.BalanceTableFull;
    for (const [key, balance] of running) this.balances.set(key, balance);
    return RejectCode.None;
  }
}

// ───────────────────────────── the workload generator ─────────────────────────────

/** Where the relay stands with the credit of one accepted crossing transfer. */
const enum RelayState {
  Queued = 0,
  Sent = 1,
  Applied = 2,
  /** Rejected and recorded (AMOUNT_OVERFLOW): the amount stays in transit for an operator. */
  Rejected = 3,
  /** Met BALANCE_TABLE_FULL RELAY_ATTEMPTS_MAX times: still owed, the relay waits for room. */
  Parked = 4,
}

/** Sends of one credit that meet BALANCE_TABLE_FULL before the relay parks it (a full table stays full here). */
const RELAY_ATTEMPTS_MAX = 3;
/**
 * The relay retries only credits sent recently: its retry horizon must stay inside the dedup
 * window (DEDUP_WINDOW), or a retry would apply a credit twice.
 */
const RELAY_RETRY_HORIZON = 256;

interface RelayedCredit {
  readonly command: ModelCommand;
  state: RelayState;
  attempts: number;
}

class Workload {
  readonly accounts: bigint[] = [];
  readonly homes: number[] = [];
  private readonly accountsByPartition: number[][] = Array.from({ length: PARTITIONS }, () => []);
  private readonly history: ModelCommand[] = [];
  private readonly malformedTxIds: { txId: string; partition: number }[] = [];
  private readonly offsets = new Array<number>(PARTITIONS).fill(0);
  /** Recently credited (account index, currency) pairs: debits mostly pick these, so most are affordable. */
  private readonly funded: { index: number; currency: number }[] = [];
  private txCounter = 0;
  /** Credits owed by accepted crossing transfers, by tx_id, and the tx_ids queued for the relay. */
  readonly relayed = new Map<string, RelayedCredit>();
  private readonly relayQueue: string[] = [];
  /** Credits sent recently (a ring of RELAY_RETRY_HORIZON), for relay retries. */
  private readonly relaySent: string[] = [];
  private relaySentCount = 0;
  /** Per currency: amounts moved into transit minus amounts taken out (the credits still owed). */
  readonly inFlight = new Map<number, bigint>();
  /** Accepted credits that were not a relayed credit's first acceptance (a copy applied again after leaving the dedup window), and their amounts per currency. */
  strayCredits = 0;
  readonly strayAmounts = new Map<number, bigint>();

  constructor(private readonly random: Random, private readonly model: ReferenceModel) {
    for (let i = 0; i < ACCOUNTS; i++) {
      // Some ids use the whole u64 range, so high words of 2^31 and more are exercised.
      const account = i % 97 === 5 ? (1n << 64n) - 1n - BigInt(i) : 1000n + BigInt(i);
      const home = Number((account * 2654435761n) % 1000003n) % PARTITIONS;
      this.accounts.push(account);
      this.homes.push(home);
      this.accountsByPartition[home].push(i);
    }
  }

  next(): ModelCommand {
    const random = this.random;
    const r = random.next();
    let command: ModelCommand;
    if (r < 0.04 && this.history.length > 0) command = this.duplicate();
    else if (r < 0.06 && this.history.length > 0) command = this.conflict();
    else if (r < 0.065 && this.malformedTxIds.length > 0) command = this.correctedResend();
    else if (r < 0.1 && this.relayQueue.length > 0) command = this.relayCredit();
    else command = this.fresh();
    this.history.push(command);
    if (this.history.length > HISTORY * 2) this.history.splice(0, HISTORY);
    return command;
  }

  /** The credits still queued, for draining at the end. */
  get relayBacklog(): number {
    return this.relayQueue.length;
  }

  /** The next credit the relay sends: a queued one in random order, or sometimes a retry of one sent before. */
  relayCredit(): ModelCommand {
    const random = this.random;
    if (this.relaySent.length > 0 && random.chance(0.05)) {
      const original = this.relayed.get(this.relaySent[random.int(this.relaySent.length)])!.command;
      return { ...original, kafkaOffset: this.nextOffset(original.partition) };
    }
    const at = random.int(this.relayQueue.length);
    const txId = this.relayQueue[at];
    this.relayQueue[at] = this.relayQueue[this.relayQueue.length - 1];
    this.relayQueue.pop();
    const relayed = this.relayed.get(txId)!;
    // A requeued credit may have been applied meanwhile by a retry: then this is one more retry.
    if (relayed.state === RelayState.Queued) relayed.state = RelayState.Sent;
    this.relaySent[this.relaySentCount++ % RELAY_RETRY_HORIZON] = txId;
    return { ...relayed.command, kafkaOffset: this.nextOffset(relayed.command.partition) };
  }

  /**
   * What the rest of the system does with an outcome: persistence queues the credit an accepted
   * crossing transfer owes; the relay requeues a credit that met BALANCE_TABLE_FULL and forgets
   * one that was applied or rejected. Also keeps the transit ledger.
   */
  observe(command: ModelCommand, outcome: ModelOutcome): void {
    if (outcome.duplicate || !outcome.recorded && outcome.reason !== RejectCode.BalanceTableFull) return;
    const change = (delta: bigint) => this.inFlight.set(command.currency, (this.inFlight.get(command.currency) ?? 0n) + delta);
    if (outcome.creditOut !== null) {
      change(command.amount);
      // Derived from the original's partition and offset: unique, and the same on every replay of the log.
      const txId = `~x${command.partition}-${command.kafkaOffset}`;
      const credit: ModelCommand = {
        type: CommandType.Credit, rejectCode: 0, txId, partition: outcome.creditOut.toPartition, kafkaOffset: -1, account: outcome.creditOut.to,
        counterAccount: 0n, currency: command.currency, accountHome: outcome.creditOut.toPartition, counterHome: 0, amount: command.amount,
        legs: [], legCount: 0, payloadHash: 0n,
      };
      this.relayed.set(txId, { command: credit, state: RelayState.Queued, attempts: 0 });
      this.relayQueue.push(txId);
      return;
    }
    if (command.type !== CommandType.Credit) return;
    const relayed = this.relayed.get(command.txId);
    if (outcome.status === ACCEPTED) {
      change(-command.amount);
      if (relayed !== undefined && relayed.command.amount === command.amount && relayed.state !== RelayState.Applied) relayed.state = RelayState.Applied;
      else {
        this.strayCredits++;
        this.strayAmounts.set(command.currency, (this.strayAmounts.get(command.currency) ?? 0n) + command.amount);
      }
    } else if (relayed !== undefined && relayed.state === RelayState.Sent) {
      if (outcome.reason === RejectCode.BalanceTableFull) {
        relayed.attempts++;
        relayed.state = relayed.attempts < RELAY_ATTEMPTS_MAX ? RelayState.Queued : RelayState.Parked;
        if (relayed.state === RelayState.Queued) this.relayQueue.push(command.txId);
      } else {
        relayed.state = RelayState.Rejected;
      }
    }
  }

  private nextOffset(partition: number): number {
    return this.offsets[partition]++;
  }

  private strayCreditTxId(partition: number): string {
    return `~r${partition}-${this.txCounter++}`;
  }

  private newTxId(): string {
    const n = this.txCounter++;
    const r = this.random.next();
    if (r < 0.01) return `${COLLIDING_PREFIX}${n}`;
    if (r < 0.02) return `long-${n}-`.padEnd(64, 'x');
    if (r < 0.03) return `ü-${n}`;
    return `tx-${n}`;
  }

  private duplicate(): ModelCommand {
    const original = this.history[this.history.length - 1 - this.random.int(Math.min(this.history.length, HISTORY))];
    return { ...original, kafkaOffset: this.nextOffset(original.partition) };
  }

  private conflict(): ModelCommand {
    const original = this.history[this.history.length - 1 - this.random.int(Math.min(this.history.length, HISTORY))];
    return { ...original, amount: original.amount + 1n, legs: original.legs, kafkaOffset: this.nextOffset(original.partition), currency: original.type === CommandType.Settle ? original.currency + 1 : original.currency };
  }

  private correctedResend(): ModelCommand {
    const { txId, partition } = this.malformedTxIds.splice(this.random.int(this.malformedTxIds.length), 1)[0];
    const index = this.randomAccountOn(partition);
    return this.single(CommandType.Deposit, txId, index, this.random.int(CURRENCY_SCALES.length), this.typicalAmount(0));
  }

  private randomAccountOn(partition: number): number {
    const list = this.accountsByPartition[partition];
    return list[this.random.int(list.length)];
  }

  private typicalAmount(currency: number): bigint {
    const scale = CURRENCY_SCALES[currency] ?? 8;
    const r = this.random.next();
    if (r < 0.002) return (1n << 62n) + this.random.bigint(1n << 62n); // near the int64 limit
    if (r < 0.02) return (1n << 53n) + this.random.bigint(1n << 55n); // beyond float64's exact range
    const magnitude = 10n ** BigInt(Math.min(scale + 3, 15));
    return 1n + this.random.bigint(magnitude);
  }

  private single(type: number, txId: string, index: number, currency: number, amount: bigint, overrides: Partial<ModelCommand> = {}): ModelCommand {
    const home = this.homes[index];
    return {
      type, rejectCode: 0, txId, partition: home, kafkaOffset: -1, account: this.accounts[index], counterAccount: 0n, currency,
      accountHome: home, counterHome: home, amount, legs: [], legCount: 0, payloadHash: 0n, ...overrides,
    } as ModelCommand;
  }

  private fresh(): ModelCommand {
    const random = this.random;
    const txId = this.newTxId();
    let index = random.int(ACCOUNTS);
    let currency = random.int(CURRENCY_SCALES.length);
    if (this.funded.length > 0 && random.chance(0.75)) ({ index, currency } = this.funded[random.int(this.funded.length)]);
    const home = this.homes[index];
    let command: ModelCommand;
    const r = random.next();
    if (r < 0.01) {
      command = this.single(CommandType.Deposit, txId, index, currency, this.typicalAmount(currency), { rejectCode: RejectCode.Malformed });
      this.malformedTxIds.push({ txId, partition: home });
    } else if (r < 0.02) command = this.single(CommandType.Withdraw, txId, index, currency, 0n, { rejectCode: RejectCode.BadAmount });
    else if (r < 0.025) command = this.single(CommandType.Freeze, txId, index, currency, -this.typicalAmount(currency));
    else if (r < 0.035) command = this.single(CommandType.Deposit, txId, index, UNKNOWN_CURRENCY_ID, 5n, { rejectCode: RejectCode.UnknownCurrency });
    else if (r < 0.04) command = this.single(CommandType.Deposit, txId, index, currency, 0n, { rejectCode: RejectCode.AmountOverflow });
    else if (r < 0.045) command = this.single(CommandType.Unparseable, '', index, 0, 0n, { rejectCode: random.chance(0.5) ? RejectCode.Malformed : 0 });
    else if (r < 0.05) command = this.single(CommandType.Deposit, txId, index, currency, 5n, { account: BigInt(random.int(4)) });
    else if (r < 0.06) command = this.single(CommandType.Deposit, txId, index, currency, this.typicalAmount(currency), { partition: (home + 1 + random.int(PARTITIONS - 1)) % PARTITIONS });
    // Credits not owed by any transfer (a refund's shape, ~r, unlike the relay's ~x): wrong
    // partition, bad amount, a system account; and one whose tx_id is not of the credit shape.
    else if (r < 0.063) command = this.single(CommandType.Credit, this.strayCreditTxId(home), index, currency, this.typicalAmount(currency), { partition: (home + 1 + random.int(PARTITIONS - 1)) % PARTITIONS, counterHome: 0 });
    else if (r < 0.064) command = this.single(CommandType.Credit, this.strayCreditTxId(home), index, currency, random.chance(0.5) ? 0n : -this.typicalAmount(currency), { counterHome: 0 });
    else if (r < 0.065) command = this.single(CommandType.Credit, txId, index, currency, this.typicalAmount(currency), { counterHome: 0 });
    else if (r < 0.066) command = this.single(CommandType.Credit, this.strayCreditTxId(home), index, currency, 5n, { account: BigInt(random.int(4)), counterHome: 0 });
    else if (r < 0.3) {
      command = this.single(CommandType.Deposit, txId, index, currency, this.typicalAmount(currency));
      if (this.funded.length < 2000) this.funded.push({ index, currency });
      else this.funded[random.int(this.funded.length)] = { index, currency };
    }
    else if (r < 0.45) command = this.single(CommandType.Withdraw, txId, index, currency, this.amountAgainst(this.model.balance(this.accounts[index], currency, home).available));
    else if (r < 0.58) command = this.single(CommandType.Freeze, txId, index, currency, this.amountAgainst(this.model.balance(this.accounts[index], currency, home).available));
    else if (r < 0.7) command = this.single(CommandType.Unfreeze, txId, index, currency, this.amountAgainst(this.model.balance(this.accounts[index], currency, home).frozen));
    else if (r < 0.83) command = this.transfer(txId, index, currency);
    else command = this.settle(txId, index);
    return { ...command, kafkaOffset: this.nextOffset(command.partition) };
  }

  /** Mostly affordable, sometimes an overdraft (about a quarter of the time). */
  private amountAgainst(balance: bigint): bigint {
    if (balance <= 0n || this.random.chance(0.05)) return this.typicalAmount(this.random.int(CURRENCY_SCALES.length));
    const amount = 1n + this.random.bigint((balance * 13n) / 10n);
    return amount > I64_MAX ? I64_MAX : amount; // a decoder never passes an amount beyond int64

  }

  private transfer(txId: string, index: number, currency: number): ModelCommand {
    const home = this.homes[index];
    const r = this.random.next();
    let toIndex = this.randomAccountOn(home);
    if (r < 0.3) toIndex = this.randomAccountOn((home + 1 + this.random.int(PARTITIONS - 1)) % PARTITIONS);
    else if (r < 0.33) toIndex = index;
    const amount = this.amountAgainst(this.model.balance(this.accounts[index], currency, home).available);
    const counter = this.accounts[toIndex];
    const toSystem = r > 0.995;
    return this.single(CommandType.Transfer, txId, index, currency, amount, { counterAccount: toSystem ? 2n : counter, counterHome: this.homes[toIndex] });
  }

  private settle(txId: string, index: number): ModelCommand {
    const random = this.random;
    const home = this.homes[index];
    const account = this.accounts[index];
    const quoteCurrency = random.int(CURRENCY_SCALES.length);
    const baseCurrency = (quoteCurrency + 1 + random.int(CURRENCY_SCALES.length - 1)) % CURRENCY_SCALES.length;
    const buyer = random.chance(0.5);
    const payCurrency = buyer ? quoteCurrency : baseCurrency;
    const getCurrency = buyer ? baseCurrency : quoteCurrency;
    const pay = this.amountAgainst(this.model.balance(account, payCurrency, home).frozen);
    const get = this.typicalAmount(getCurrency);
    const fee = get / 1000n;
    let legs: SettleLegFields[] = [
      { account, currency: payCurrency, home, available: 0n, frozen: -pay },
      { account: 2n, currency: payCurrency, home, available: pay, frozen: 0n },
      { account: 2n, currency: getCurrency, home, available: -get, frozen: 0n },
      { account, currency: getCurrency, home, available: get - fee, frozen: 0n },
      { account: 1n, currency: getCurrency, home, available: fee, frozen: 0n },
    ];
    const r = random.next();
    if (r < 0.05) legs[1] = { ...legs[1], available: legs[1].available + 1n }; // unbalanced
    else if (r < 0.1) {
      // Another user of the same partition pays part of it (allowed), or one of another partition (WRONG_PARTITION).
      const otherPartition = random.chance(0.3) ? (home + 1) % PARTITIONS : home;
      const other = this.randomAccountOn(otherPartition);
      legs.push({ account: this.accounts[other], currency: payCurrency, home: otherPartition, available: -1n, frozen: 0n }, { account: 2n, currency: payCurrency, home, available: 1n, frozen: 0n });
    } else if (r < 0.15) {
      // The same balance in several legs, up to 12 legs: a refund from frozen back to available.
      const refund = random.bigint(pay + 1n);
      legs.push({ account, currency: payCurrency, home, available: refund, frozen: -refund });
      while (legs.length < 12) legs.push({ account: 1n, currency: getCurrency, home, available: 0n, frozen: 0n });
    } else if (r < 0.17) {
      // Huge system-account movements that overflow int64 once summed with earlier ones.
      legs = [
        { account: 2n, currency: getCurrency, home, available: I64_MAX, frozen: 0n },
        { account: 1n, currency: getCurrency, home, available: -I64_MAX, frozen: 0n },
      ];
    } else if (r < 0.18) {
      return this.single(CommandType.Settle, txId, index, 0, 0n, { legs, legCount: random.chance(0.5) ? 0 : 13 });
    } else if (r < 0.19) {
      // A leg on external or transit, paid to the user from it: never a settle's to move.
      const reserved = random.chance(0.5) ? 0n : 3n;
      legs.push({ account: reserved, currency: getCurrency, home, available: -1n, frozen: 0n }, { account, currency: getCurrency, home, available: 1n, frozen: 0n });
    }
    return this.single(CommandType.Settle, txId, index, 0, 0n, { legs, legCount: legs.length });
  }
}

// ───────────────────────────── running engine and model side by side ─────────────────────────────

interface Harness {
  readonly engine: BalanceEngine;
  readonly table: BalanceTable;
  readonly output: OutputBuffer;
  readonly writer: CommandSlotWriter;
  readonly commands: ArrayBuffer;
}

function newHarness(capacity: number, core: EngineCoreName = 'typescript'): Harness {
  const table = BalanceTable.create({ capacity });
  const commands = new ArrayBuffer(COMMAND_SLOT_BYTES * 4);
  const output = new OutputBuffer(1 << 10);
  const engine = new BalanceEngine({ table, commands, output, core });
  for (let partition = 0; partition < PARTITIONS; partition++) engine.assignPartition(partition, { dedupWindow: DEDUP_WINDOW });
  return { engine, table, output, writer: new CommandSlotWriter(commands), commands };
}

/** Writes the command into slot 0, computing its hashes; returns the payload hash the slot carries. */
function writeCommand(harness: Harness, command: ModelCommand): bigint {
  const txIdBytes = Buffer.from(command.txId, 'utf8');
  harness.writer.write(0, {
    type: command.type, rejectCode: command.rejectCode, txId: txIdBytes, partition: command.partition, kafkaOffset: command.kafkaOffset,
    account: BigInt.asUintN(64, command.account), counterAccount: command.counterAccount, currency: command.currency,
    accountHome: command.accountHome, counterHome: command.counterHome, amount: BigInt.asIntN(64, command.amount),
    legs: command.legs.slice(0, 12), legCount: command.legCount,
    txIdHash: command.txId.startsWith(COLLIDING_PREFIX) ? COLLIDING_HASH : txIdHash64(txIdBytes),
  });
  return new DataView(harness.commands).getBigUint64(PAYLOAD_HASH_OFFSET, true);
}

function describe(command: ModelCommand): string {
  return JSON.stringify(command, (_key, value) => (typeof value === 'bigint' ? value.toString() : value));
}

interface EngineOutput {
  readonly outcome: OutcomeRecord;
  readonly legs: LegRecord[];
  /** The leg slot's tail, read only when the outcome is flagged OUTCOME_FLAG_CREDIT_OUT. */
  readonly creditOut: CreditOutRecord | null;
}

function compareOutcome(index: number, command: ModelCommand, expected: ModelOutcome, actual: EngineOutput): void {
  const context = () => `seed ${SEED}, command #${index}: ${describe(command)}\n  model: ${describe(expected as unknown as ModelCommand)}\n  engine: ${describe(actual as unknown as ModelCommand)}\n  replay: MODEL_SEED=${SEED} MODEL_COMMANDS=${index + 1}`;
  const outcome = actual.outcome;
  const flags = (expected.duplicate ? OUTCOME_FLAG_DUPLICATE : 0) | (expected.recorded ? OUTCOME_FLAG_RECORDED : 0) | (expected.creditOut !== null ? OUTCOME_FLAG_CREDIT_OUT : 0);
  if (outcome.status !== expected.status || outcome.reason !== expected.reason || outcome.flags !== flags) {
    assert.fail(`outcome differs (engine ${outcome.status}/${rejectCodeName(outcome.reason)}/flags ${outcome.flags}, model ${expected.status}/${rejectCodeName(expected.reason)}/flags ${flags})\n${context()}`);
  }
  if (outcome.originalOffset !== expected.originalOffset || outcome.kafkaOffset !== command.kafkaOffset || outcome.txId !== command.txId.slice(0, 64) || outcome.sequence !== index + 1) {
    assert.fail(`outcome fields differ\n${context()}`);
  }
  if (actual.legs.length !== expected.legs.length) assert.fail(`leg count differs\n${context()}`);
  if (expected.creditOut !== null && (actual.creditOut?.to !== BigInt.asUintN(64, expected.creditOut.to) || actual.creditOut.toPartition !== expected.creditOut.toPartition)) {
    assert.fail(`credit owed differs\n${context()}`);
  }
  for (let i = 0; i < expected.legs.length; i++) {
    const e = expected.legs[i];
    const a = actual.legs[i];
    if (
      a.account !== BigInt.asUintN(64, e.account) || a.currency !== e.currency || a.partition !== e.partition ||
      a.availableDelta !== e.availableDelta || a.frozenDelta !== e.frozenDelta ||
      a.resultingAvailable !== e.resultingAvailable || a.resultingFrozen !== e.resultingFrozen
    ) {
      assert.fail(`leg ${i} differs\n${context()}`);
    }
  }
}

function compareBalance(table: BalanceTable, model: ReferenceModel, account: bigint, currency: number, partition: number, where: string): void {
  const expected = model.balances.get(balanceKey(account, currency, partition));
  const unsigned = BigInt.asUintN(64, account);
  const bucket = table.find(Number(unsigned & 0xffffffffn) | 0, Number(unsigned >> 32n) | 0, currency, isSystem(account) ? partition : -1);
  const actual = bucket < 0 ? undefined : { available: table.available(bucket), frozen: table.frozen(bucket) };
  if (expected?.available !== actual?.available || expected?.frozen !== actual?.frozen) {
    assert.fail(`balance of ${account}/${currency}/p${partition} differs: model ${expected?.available}/${expected?.frozen}, engine ${actual?.available}/${actual?.frozen} (${where})`);
  }
}

function compareAllBalances(table: BalanceTable, model: ReferenceModel, where: string): void {
  assert.equal(table.count, model.balances.size, `balance count differs (${where})`);
  for (const key of model.balances.keys()) {
    const [account, currency, partition] = key.split('/');
    compareBalance(table, model, BigInt(account), Number(currency), partition === undefined ? 0 : Number(partition.slice(1)), where);
  }
}

/** The engine's output for the command whose outcome slot is at `position`, the credit tail included. */
function readOutput(harness: Harness, position: number): EngineOutput {
  const { outcome, legs } = harness.output.read(position);
  const creditOut = (outcome.flags & OUTCOME_FLAG_CREDIT_OUT) !== 0 ? readCreditOut(harness.output.buffer, harness.output.slotByteOffset(position + 1)) : null;
  return { outcome, legs, creditOut };
}

/**
 * Per currency, the transit accounts summed over all partitions (engine state) must equal the
 * credits still owed by the workload's ledger: moved in by accepted crossing transfers, out by
 * accepted credits.
 */
function checkTransit(table: BalanceTable, workload: Workload, where: string): void {
  for (let currency = 0; currency <= UNKNOWN_CURRENCY_ID; currency++) {
    let transit = 0n;
    for (let partition = 0; partition < PARTITIONS; partition++) {
      const bucket = table.find(Number(TRANSIT), 0, currency, partition);
      if (bucket >= 0) transit += table.available(bucket) + table.frozen(bucket);
    }
    const owed = workload.inFlight.get(currency) ?? 0n;
    if (transit !== owed) assert.fail(`transit of currency ${currency} summed over partitions is ${transit}, credits owed ${owed} (${where})`);
  }
}

/** Kinds of command the cross-partition part of the workload must reach. */
function crossingKind(command: ModelCommand, expected: ModelOutcome): string | undefined {
  if (command.type === CommandType.Transfer && command.counterHome !== command.partition && !isSystem(command.counterAccount)) {
    return expected.duplicate ? 'crossing transfer DUPLICATE' : `crossing transfer ${rejectCodeName(expected.reason)}`;
  }
  if (command.type !== CommandType.Credit) return undefined;
  return expected.duplicate ? 'credit DUPLICATE' : `credit ${rejectCodeName(expected.reason)}`;
}

// The native core (engine/native/balance_core.c) where it is built; x86-64 Linux, so always in CI.
const nativeUnavailable = loadNativeCore().core === null ? `native core unavailable: ${loadNativeCore().error}` : false;
const FIRST_SLOT = new Int32Array(1);

for (const core of ['typescript', 'native'] as const) test(`engine (${core} core) equals the reference model command by command (seed ${SEED}, ${COMMANDS} commands)`, { skip: core === 'native' && nativeUnavailable }, () => {
  const random = new Random(SEED);
  const model = new ReferenceModel(TABLE_CAPACITY, DEDUP_WINDOW);
  const workload = new Workload(random, model);
  const harness = newHarness(TABLE_CAPACITY, core);
  assert.equal(harness.engine.coreName, core);
  // The native core runs only through applyBatch(): one command per call here, so each is compared at once.
  const applyOne = core === 'native' ? () => harness.engine.applyBatch(FIRST_SLOT, 1) : () => harness.engine.apply(0);
  const invariants = new InvariantChecker(harness.engine);
  const reasons = new Map<string, number>();
  const engineDecided = new Map<string, number>();
  const crossings = new Map<string, number>();
  const startedMs = Date.now();
  let index = 0;
  const step = (command: ModelCommand): void => {
    command.payloadHash = writeCommand(harness, command);
    const position = harness.output.position;
    const slots = applyOne();
    const expected = model.apply(command);
    workload.observe(command, expected);
    const actual = readOutput(harness, position);
    assert.equal(actual.outcome.slotCount, slots);
    compareOutcome(index, command, expected, actual);
    for (const leg of expected.legs) compareBalance(harness.table, model, leg.account, leg.currency, leg.partition, `seed ${SEED}, after command #${index}`);
    const name = expected.duplicate ? 'DUPLICATE' : rejectCodeName(expected.reason);
    reasons.set(name, (reasons.get(name) ?? 0) + 1);
    // Decided by the engine, not set by the generator as a decoder would (its preset code).
    if (command.rejectCode === 0 && !expected.duplicate) engineDecided.set(name, (engineDecided.get(name) ?? 0) + 1);
    const kind = crossingKind(command, expected);
    if (kind !== undefined) crossings.set(kind, (crossings.get(kind) ?? 0) + 1);
    if ((index + 1) % BATCH === 0) {
      try {
        invariants.check();
      } catch (error) {
        throw new Error(`seed ${SEED}, after command #${index}: ${(error as Error).message}`);
      }
      if ((index + 1) % (BATCH * FULL_COMPARE_EVERY_BATCHES) === 0) {
        compareAllBalances(harness.table, model, `seed ${SEED}, after command #${index}`);
        checkTransit(harness.table, workload, `seed ${SEED}, after command #${index}`);
      }
    }
    index++;
  };
  while (index < COMMANDS) step(workload.next());
  // The relay drains what is still owed. A credit whose balance cannot be created (the table is
  // full) stays queued after a bounded number of retries: it is owed, not lost.
  const drainMax = index + 100 * (workload.relayBacklog + 1);
  while (workload.relayBacklog > 0 && index < drainMax) step(workload.relayCredit());
  invariants.check();
  compareAllBalances(harness.table, model, `seed ${SEED}, at the end`);
  checkTransit(harness.table, workload, `seed ${SEED}, at the end`);
  const states = [0, 0, 0, 0, 0];
  for (const relayed of workload.relayed.values()) states[relayed.state]++;
  assert.equal(states[RelayState.Sent], 0, 'every credit sent was applied, rejected, or requeued');
  // Exactly once: what transit still holds is the credits not applied, less the stray copies applied twice.
  const notApplied = new Map<number, bigint>();
  for (const { command, state } of workload.relayed.values()) {
    if (state !== RelayState.Applied) notApplied.set(command.currency, (notApplied.get(command.currency) ?? 0n) + command.amount);
  }
  for (let currency = 0; currency <= UNKNOWN_CURRENCY_ID; currency++) {
    const expected = (notApplied.get(currency) ?? 0n) - (workload.strayAmounts.get(currency) ?? 0n);
    assert.equal(workload.inFlight.get(currency) ?? 0n, expected, `currency ${currency}: credits owed by the ledger and by the relay differ`);
  }
  const summary = [...reasons].sort((a, b) => b[1] - a[1]).map(([name, count]) => `${name} ${count}`).join(', ');
  const crossingSummary = [...crossings].sort((a, b) => b[1] - a[1]).map(([name, count]) => `${name} ${count}`).join(', ');
  console.log(`model test (${core} core): seed ${SEED}, ${index} commands (${index - COMMANDS} to drain the relay) in ${((Date.now() - startedMs) / 1000).toFixed(1)} s; ${harness.table.count} balances; outcomes: ${summary}`);
  console.log(`  across partitions: ${crossingSummary}; credits owed ${workload.relayed.size}: applied ${states[RelayState.Applied]}, rejected ${states[RelayState.Rejected]}, parked for room in the table ${states[RelayState.Parked]}, still queued ${states[RelayState.Queued]}; stray credits ${workload.strayCredits}`);
  // The workload must actually reach the interesting cases.
  for (const name of ['NONE', 'DUPLICATE', 'BALANCE_TABLE_FULL', 'DUPLICATE_TX_ID_CONFLICT', 'INSUFFICIENT_AVAILABLE', 'INSUFFICIENT_FROZEN', 'WRONG_PARTITION', 'MALFORMED', 'BAD_AMOUNT', 'UNKNOWN_CURRENCY', 'AMOUNT_OVERFLOW', 'LEGS_NOT_BALANCED']) {
    if (name === 'BALANCE_TABLE_FULL' && process.env.MODEL_TABLE_CAPACITY !== undefined) continue;
    if (COMMANDS >= 50_000) assert.ok((reasons.get(name) ?? 0) > 0, `workload never produced ${name}`);
  }
  // The rules the engine itself applies (not codes a decoder preset) must each be reached too.
  for (const name of ['BAD_AMOUNT', 'AMOUNT_OVERFLOW', 'MALFORMED', 'WRONG_PARTITION', 'LEGS_NOT_BALANCED', 'INSUFFICIENT_AVAILABLE', 'INSUFFICIENT_FROZEN', 'BALANCE_TABLE_FULL']) {
    if (name === 'BALANCE_TABLE_FULL' && process.env.MODEL_TABLE_CAPACITY !== undefined) continue;
    if (COMMANDS >= 50_000) assert.ok((engineDecided.get(name) ?? 0) > 0, `the engine itself never decided ${name} (only presets reached it): ${JSON.stringify([...engineDecided])}`);
  }
  for (const kind of ['crossing transfer NONE', 'crossing transfer INSUFFICIENT_AVAILABLE', 'crossing transfer DUPLICATE', 'credit NONE', 'credit DUPLICATE', 'credit WRONG_PARTITION', 'credit BAD_AMOUNT', 'credit MALFORMED', 'credit DUPLICATE_TX_ID_CONFLICT']) {
    if (COMMANDS >= 50_000) assert.ok((crossings.get(kind) ?? 0) > 0, `workload never produced a ${kind}`);
  }
});

/** Commands generated once, as raw slots, for the determinism tests. */
function generateSlots(seed: number, count: number): { slots: Uint8Array[]; partitions: number[] } {
  const random = new Random(seed);
  const model = new ReferenceModel(1 << 20, DEDUP_WINDOW);
  const workload = new Workload(random, model);
  const harness = newHarness(1 << 10);
  const slots: Uint8Array[] = [];
  const partitions: number[] = [];
  for (let i = 0; i < count; i++) {
    const command = workload.next();
    command.payloadHash = writeCommand(harness, command);
    workload.observe(command, model.apply(command));
    slots.push(new Uint8Array(harness.commands, 0, COMMAND_SLOT_BYTES).slice());
    partitions.push(command.partition);
  }
  return { slots, partitions };
}

function runSlots(slots: Uint8Array[], order: number[]): { hash: string; output: Uint8Array[] } {
  const harness = newHarness(1 << 20);
  const bytes = new Uint8Array(harness.commands);
  const output: Uint8Array[] = [];
  for (const index of order) {
    bytes.set(slots[index], 0);
    const position = harness.output.position;
    const slotCount = harness.engine.apply(0);
    output.push(harness.output.bytes(position, slotCount));
  }
  return { hash: harness.engine.stateHash(), output };
}

test('determinism: the same commands give the same output bytes and state hash', () => {
  const { slots } = generateSlots(SEED ^ 0x5eed, 20_000);
  const order = slots.map((_slot, index) => index);
  const first = runSlots(slots, order);
  const second = runSlots(slots, order);
  assert.equal(first.hash, second.hash);
  for (let i = 0; i < order.length; i++) assert.deepEqual(first.output[i], second.output[i], `output of command #${i} differs`);
});

test('the state hash does not depend on how partitions interleave', () => {
  const { slots, partitions } = generateSlots(SEED ^ 0xbeef, 20_000);
  const inOrder = slots.map((_slot, index) => index);
  const byPartition = [...inOrder].sort((a, b) => partitions[a] - partitions[b] || a - b);
  const first = runSlots(slots, inOrder);
  const second = runSlots(slots, byPartition);
  assert.equal(first.hash, second.hash);
  const third = runSlots(slots, inOrder.slice(0, 10_000));
  assert.notEqual(first.hash, third.hash, 'half of the commands must give another hash');
});

/** The outcome and legs in the output bytes of one command (bytes past a tx_id are undefined, so records are compared). */
function decodeOutput(bytes: Uint8Array): { outcome: OutcomeRecord; legs: LegRecord[] } {
  const buffer = bytes.slice().buffer;
  const outcome = readOutcome(buffer, 0);
  const legs: LegRecord[] = [];
  for (let leg = 0; leg < outcome.legCount; leg++) legs.push(readLeg(buffer, OUTPUT_SLOT_BYTES * (1 + (leg >> 1)), leg));
  return { outcome, legs };
}

/**
 * An output buffer that grants a few slots at a time (7 to 64): a native batch is then cut
 * into many calls, each resuming where the last stopped (as when the output ring is nearly
 * full), and it must still equal apply() one by one.
 */
class GrudgingOutput extends OutputBuffer {
  constructor(slotCount: number, private readonly random: Random) {
    super(slotCount);
  }
  override awaitRoom(): number {
    return 7 + this.random.int(58);
  }
}

for (const core of ['typescript', 'native', 'native mixed with apply()', 'native, output room granted a few slots at a time'] as const) test(`applyBatch() (${core}) gives the same outcomes, legs and state hash as apply() one by one`, { skip: core !== 'typescript' && nativeUnavailable }, () => {
  const { slots } = generateSlots(SEED ^ 0xba7c, 20_000);
  const expected = runSlots(slots, slots.map((_slot, index) => index));
  const slotsInBuffer = 256;
  const table = BalanceTable.create({ capacity: 1 << 20 });
  const commands = new ArrayBuffer(COMMAND_SLOT_BYTES * slotsInBuffer);
  const bytes = new Uint8Array(commands);
  const output = core === 'native, output room granted a few slots at a time' ? new GrudgingOutput(1 << 14, new Random(SEED ^ 0x7007)) : new OutputBuffer(1 << 14);
  const engine = new BalanceEngine({ table, commands, output, core: core === 'typescript' ? 'typescript' : 'native' });
  // Mixed: about a third of the batches go through apply() one by one (TypeScript) on the same
  // engine, so both paths must keep every piece of shared state (dedup windows, table count).
  const mixed = core === 'native mixed with apply()';
  for (let partition = 0; partition < PARTITIONS; partition++) engine.assignPartition(partition, { dedupWindow: DEDUP_WINDOW });
  const random = new Random(SEED ^ 0x0ff5e7);
  const offsets = new Int32Array(slotsInBuffer);
  let next = 0;
  while (next < slots.length) {
    // Batches of 1..256 commands (groups cut anywhere), in slots taken in a shuffled order.
    const count = Math.min(slots.length - next, 1 + random.int(slotsInBuffer));
    const positions = Array.from({ length: slotsInBuffer }, (_value, index) => index).sort(() => random.next() - 0.5);
    for (let i = 0; i < count; i++) {
      offsets[i] = positions[i] * COMMAND_SLOT_BYTES;
      bytes.set(slots[next + i], offsets[i]);
    }
    const position = output.position;
    let written = 0;
    if (mixed && random.int(3) === 0) for (let i = 0; i < count; i++) written += engine.apply(offsets[i]);
    else written = engine.applyBatch(offsets, count);
    assert.equal(output.position - position, written);
    let at = position;
    for (let i = 0; i < count; i++) {
      const actual = output.read(at);
      assert.deepEqual(actual, decodeOutput(expected.output[next + i]), `output of command #${next + i} differs`);
      at += actual.outcome.slotCount;
    }
    next += count;
  }
  assert.equal(engine.stateHash(), expected.hash);
  assert.equal(engine.coreName, core === 'typescript' ? 'typescript' : 'native');
});
