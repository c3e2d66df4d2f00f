// Rule-by-rule tests of the balance engine (the model test covers random mixes).
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { BalanceEngine, COUNTER_DUPLICATES } from './balance_engine';
import { BalanceTable, attach } from './balance_table';
import { COMMAND_SLOT_BYTES, CommandType } from './command_layout';
import { CommandFields, CommandSlotWriter } from './command_slot_writer';
import { InvariantChecker } from './engine_invariants';
import { OutputBuffer } from './output_buffer';
import {
  LEG_SLOT_CREDIT_TO_ACCOUNT_OFFSET, LEG_SLOT_CREDIT_TO_PARTITION_OFFSET, OUTCOME_FLAG_CREDIT_OUT, OUTCOME_FLAG_DUPLICATE, OUTCOME_FLAG_RECORDED,
  OUTPUT_SLOT_BYTES, readCreditOut, readLeg, readOutcome,
} from './output_layout';
import { RejectCode } from './reject_code';

const USDT = 1;
const BTC = 2;
const I64_MAX = (1n << 63n) - 1n;

type Fields = Omit<CommandFields, 'kafkaOffset' | 'partition'> & { partition?: number };

function harness(options: { capacity?: number; dedupWindow?: number } = {}) {
  const table = BalanceTable.create({ capacity: options.capacity ?? 1024 });
  const commands = new ArrayBuffer(COMMAND_SLOT_BYTES);
  const output = new OutputBuffer(64);
  const engine = new BalanceEngine({ table, commands, output });
  engine.assignPartition(0, { dedupWindow: options.dedupWindow ?? 1000 });
  engine.assignPartition(1, { dedupWindow: options.dedupWindow ?? 1000 });
  const writer = new CommandSlotWriter(commands);
  const reader = attach(table.descriptor());
  const invariants = new InvariantChecker(engine);
  let kafkaOffset = 0;
  function run(fields: Fields) {
    writer.write(0, { partition: 0, kafkaOffset: kafkaOffset++, ...fields });
    const position = output.position;
    const slots = engine.apply(0);
    const result = output.read(position);
    assert.equal(result.outcome.slotCount, slots);
    invariants.check();
    return result;
  }
  function balance(account: bigint, currency: number, partition?: number): [bigint, bigint] | undefined {
    const reading = reader.readBalance(account, currency, partition);
    return reading === undefined ? undefined : [reading.available, reading.frozen];
  }
  return { table, engine, output, run, balance, reader };
}

const deposit = (txId: string, account: bigint, amount: bigint, currency = USDT): Fields => ({ type: CommandType.Deposit, txId, account, currency, amount });

test('deposit credits the user and debits external account 0 of the partition', () => {
  const h = harness();
  const { outcome, legs } = h.run(deposit('d1', 1001n, 100n));
  assert.equal(outcome.status, 1);
  assert.equal(outcome.flags, OUTCOME_FLAG_RECORDED);
  assert.equal(outcome.txId, 'd1');
  assert.deepEqual(legs.map((leg) => [leg.account, leg.partition, leg.availableDelta, leg.resultingAvailable]), [[1001n, 0, 100n, 100n], [0n, 0, -100n, -100n]]);
  assert.deepEqual(h.balance(1001n, USDT), [100n, 0n]);
  assert.deepEqual(h.balance(0n, USDT, 0), [-100n, 0n]);
});

test('withdraw, freeze, unfreeze check the user balance and never go negative', () => {
  const h = harness();
  h.run(deposit('d1', 1001n, 100n));
  assert.equal(h.run({ type: CommandType.Withdraw, txId: 'w1', account: 1001n, currency: USDT, amount: 101n }).outcome.reason, RejectCode.InsufficientAvailable);
  assert.equal(h.run({ type: CommandType.Withdraw, txId: 'w2', account: 1001n, currency: USDT, amount: 30n }).outcome.status, 1);
  assert.equal(h.run({ type: CommandType.Freeze, txId: 'f1', account: 1001n, currency: USDT, amount: 71n }).outcome.reason, RejectCode.InsufficientAvailable);
  assert.equal(h.run({ type: CommandType.Freeze, txId: 'f2', account: 1001n, currency: USDT, amount: 50n }).outcome.status, 1);
  assert.equal(h.run({ type: CommandType.Unfreeze, txId: 'u1', account: 1001n, currency: USDT, amount: 51n }).outcome.reason, RejectCode.InsufficientFrozen);
  assert.equal(h.run({ type: CommandType.Unfreeze, txId: 'u2', account: 1001n, currency: USDT, amount: 20n }).outcome.status, 1);
  assert.deepEqual(h.balance(1001n, USDT), [40n, 30n]);
  assert.deepEqual(h.balance(0n, USDT, 0), [-70n, 0n]);
  assert.equal(h.run({ type: CommandType.Withdraw, txId: 'w3', account: 1001n, currency: USDT, amount: 0n }).outcome.reason, RejectCode.BadAmount);
});

test('transfer moves available between users of the partition', () => {
  const h = harness();
  h.run(deposit('d1', 1001n, 100n));
  const { outcome, legs } = h.run({ type: CommandType.Transfer, txId: 't1', account: 1001n, counterAccount: 1002n, currency: USDT, amount: 60n });
  assert.equal(outcome.status, 1);
  assert.equal(outcome.flags, OUTCOME_FLAG_RECORDED);
  assert.equal(outcome.slotCount, 2);
  assert.deepEqual(legs.map((leg) => [leg.account, leg.availableDelta]), [[1001n, -60n], [1002n, 60n]]);
  assert.equal(h.run({ type: CommandType.Transfer, txId: 't2', account: 1001n, counterAccount: 1003n, accountHome: 1, currency: USDT, amount: 1n }).outcome.reason, RejectCode.WrongPartition);
  assert.equal(h.run({ type: CommandType.Transfer, txId: 't3', account: 1001n, counterAccount: 1002n, currency: USDT, amount: 41n }).outcome.reason, RejectCode.InsufficientAvailable);
  assert.equal(h.run({ type: CommandType.Transfer, txId: 't4', account: 1001n, counterAccount: 5n, currency: USDT, amount: 1n }).outcome.reason, RejectCode.Malformed);
  assert.deepEqual(h.balance(1002n, USDT), [60n, 0n]);
});

test('a user account whose home is another partition is WRONG_PARTITION', () => {
  const h = harness();
  assert.equal(h.run({ ...deposit('d1', 1001n, 5n), accountHome: 1 }).outcome.reason, RejectCode.WrongPartition);
  assert.equal(h.balance(1001n, USDT), undefined);
});

test('settle applies all legs atomically against system accounts of its partition', () => {
  const h = harness();
  h.run(deposit('d1', 1001n, 100n));
  h.run({ type: CommandType.Freeze, txId: 'f1', account: 1001n, currency: USDT, amount: 100n });
  const legs = [
    { account: 1001n, currency: USDT, home: 0, available: 0n, frozen: -100n },
    { account: 1n, currency: USDT, home: 0, available: 1n, frozen: 0n },
    { account: 2n, currency: USDT, home: 0, available: 99n, frozen: 0n },
    { account: 2n, currency: BTC, home: 0, available: -1000n, frozen: 0n },
    { account: 1001n, currency: BTC, home: 0, available: 1000n, frozen: 0n },
  ];
  const unbalanced = legs.map((leg, i) => (i === 1 ? { ...leg, available: 2n } : leg));
  assert.equal(h.run({ type: CommandType.Settle, txId: 's0', account: 1001n, legs: unbalanced }).outcome.reason, RejectCode.LegsNotBalanced);
  const { outcome, legs: journal } = h.run({ type: CommandType.Settle, txId: 's1', account: 1001n, legs });
  assert.equal(outcome.status, 1);
  assert.equal(outcome.legCount, 5);
  assert.equal(outcome.slotCount, 4);
  assert.deepEqual(journal.map((leg) => [leg.account, leg.currency, leg.resultingAvailable, leg.resultingFrozen]), [
    [1001n, USDT, 0n, 0n], [1n, USDT, 1n, 0n], [2n, USDT, 99n, 0n], [2n, BTC, -1000n, 0n], [1001n, BTC, 1000n, 0n],
  ]);
  // Spending the same frozen twice fails and changes nothing.
  assert.equal(h.run({ type: CommandType.Settle, txId: 's2', account: 1001n, legs }).outcome.reason, RejectCode.InsufficientFrozen);
  assert.deepEqual(h.balance(2n, BTC, 0), [-1000n, 0n]);
  assert.deepEqual(h.balance(1001n, BTC), [1000n, 0n]);
});

// External (0) moves only with deposits and withdrawals, transit (3) only with crossing
// transfers and their credits (it must equal the credits in flight): a settle leg on either
// would mint user money out of it. MALFORMED, not recorded (a corrected settle may reuse the
// tx_id); fees (1), clearing (2) and other system accounts stay a settle's counterparts.
test('a settle leg on external (0) or transit (3) is MALFORMED and changes nothing; fees, clearing and other system accounts are allowed', () => {
  const h = harness();
  for (const reserved of [0n, 3n]) {
    const legs = [
      { account: reserved, currency: USDT, home: 0, available: -1_000_000n, frozen: 0n },
      { account: 1001n, currency: USDT, home: 0, available: 1_000_000n, frozen: 0n },
    ];
    const { outcome } = h.run({ type: CommandType.Settle, txId: `mint-${reserved}`, account: 1001n, legs });
    assert.deepEqual([outcome.status, outcome.reason, outcome.flags & 2], [2, RejectCode.Malformed, 0], `account ${reserved}`);
    assert.equal(h.balance(1001n, USDT), undefined);
    assert.equal(h.balance(reserved, USDT, 0), undefined);
  }
  const counterparts = [
    { account: 999n, currency: USDT, home: 0, available: -5n, frozen: 0n },
    { account: 1001n, currency: USDT, home: 0, available: 5n, frozen: 0n },
  ];
  assert.equal(h.run({ type: CommandType.Settle, txId: 'mint-0', account: 1001n, legs: counterparts }).outcome.status, 1, 'a configured system account, and the tx_id of the refused settle is free');
  assert.deepEqual(h.balance(1001n, USDT), [5n, 0n]);
});

test('settle legs apply in the order written: a user balance may not be negative after any leg (docs/wire-format.md)', () => {
  const h = harness();
  const proceeds = { account: 1001n, currency: USDT, home: 0, available: 100n, frozen: 0n };
  const fee = { account: 1001n, currency: USDT, home: 0, available: -1n, frozen: 0n };
  const feeAccount = { account: 1n, currency: USDT, home: 0, available: 1n, frozen: 0n };
  const clearing = { account: 2n, currency: USDT, home: 0, available: -100n, frozen: 0n };
  // Fee first on an empty balance: negative after the first leg, so the whole settle is rejected.
  const feeFirst = h.run({ type: CommandType.Settle, txId: 's1', account: 1001n, legs: [fee, feeAccount, clearing, proceeds] });
  assert.equal(feeFirst.outcome.reason, RejectCode.InsufficientAvailable);
  assert.equal(h.balance(1001n, USDT), undefined);
  // The same legs with the proceeds first are accepted; the system account went negative on the way.
  const proceedsFirst = h.run({ type: CommandType.Settle, txId: 's2', account: 1001n, legs: [proceeds, fee, feeAccount, clearing] });
  assert.equal(proceedsFirst.outcome.status, 1);
  assert.deepEqual(h.balance(1001n, USDT), [99n, 0n]);
  assert.deepEqual(h.balance(2n, USDT, 0), [-100n, 0n]);
});

test('settle may name other users of its partition but not of another partition', () => {
  const h = harness();
  h.run(deposit('d1', 1002n, 10n));
  const legs = [
    { account: 1002n, currency: USDT, home: 0, available: -10n, frozen: 0n },
    { account: 1001n, currency: USDT, home: 0, available: 10n, frozen: 0n },
  ];
  assert.equal(h.run({ type: CommandType.Settle, txId: 's1', account: 1001n, legs }).outcome.status, 1);
  const foreign = [legs[1], { ...legs[0], account: 1003n, home: 1 }];
  assert.equal(h.run({ type: CommandType.Settle, txId: 's2', account: 1001n, legs: foreign }).outcome.reason, RejectCode.WrongPartition);
  assert.equal(h.run({ type: CommandType.Settle, txId: 's3', account: 1001n, legs, legCount: 13 }).outcome.reason, RejectCode.Malformed);
});

test('system accounts exist once per partition and readers sum them', () => {
  const h = harness();
  h.run(deposit('d1', 1001n, 7n));
  h.run({ ...deposit('d2', 1002n, 5n), partition: 1, accountHome: 1 });
  assert.deepEqual(h.balance(0n, USDT, 0), [-7n, 0n]);
  assert.deepEqual(h.balance(0n, USDT, 1), [-5n, 0n]);
  assert.deepEqual(h.balance(0n, USDT), [-12n, 0n]);
  assert.deepEqual(h.reader.systemPartitions(), [0, 1]);
  h.run(deposit('d3', 1001n, 3n, BTC));
  assert.deepEqual(h.reader.listBalancesOfAccount(1001n).map((b) => [b.currency, b.available]), [[USDT, 7n], [BTC, 3n]]);
  assert.deepEqual(h.reader.listBalancesOfAccount(0n, 1).map((b) => [b.currency, b.partition, b.available]), [[USDT, 1, -5n]]);
});

test('dedup: same payload replays the stored outcome, other payload conflicts, per partition', () => {
  const h = harness();
  const first = h.run(deposit('x', 1001n, 10n));
  const replay = h.run(deposit('x', 1001n, 10n));
  assert.equal(replay.outcome.flags, OUTCOME_FLAG_DUPLICATE);
  assert.equal(replay.outcome.status, 1);
  assert.equal(replay.outcome.legCount, 0);
  assert.equal(replay.outcome.originalOffset, first.outcome.kafkaOffset);
  assert.equal(h.run(deposit('x', 1001n, 11n)).outcome.reason, RejectCode.DuplicateTxIdConflict);
  assert.equal(h.run(deposit('x', 1001n, 10n)).outcome.flags, OUTCOME_FLAG_DUPLICATE, 'a conflict does not overwrite the original');
  // A rejection is stored too and replayed.
  assert.equal(h.run({ type: CommandType.Withdraw, txId: 'w', account: 1001n, currency: USDT, amount: 99n }).outcome.reason, RejectCode.InsufficientAvailable);
  h.run(deposit('more', 1001n, 1000n));
  const again = h.run({ type: CommandType.Withdraw, txId: 'w', account: 1001n, currency: USDT, amount: 99n });
  assert.deepEqual([again.outcome.reason, again.outcome.flags], [RejectCode.InsufficientAvailable, OUTCOME_FLAG_DUPLICATE]);
  // The same tx_id on another partition is another transaction.
  assert.equal(h.run({ ...deposit('x', 1005n, 1n), partition: 1, accountHome: 1 }).outcome.flags, OUTCOME_FLAG_RECORDED);
  assert.deepEqual(h.balance(1001n, USDT), [1010n, 0n]);
  assert.equal(h.engine.counters[COUNTER_DUPLICATES], 3);
});

test('MALFORMED is not recorded, so a corrected resend with the same tx_id is applied', () => {
  const h = harness();
  const malformed = h.run({ ...deposit('m', 1001n, 10n), rejectCode: RejectCode.Malformed });
  assert.deepEqual([malformed.outcome.reason, malformed.outcome.flags], [RejectCode.Malformed, 0]);
  assert.equal(h.run(deposit('m', 1001n, 10n)).outcome.status, 1);
  // BAD_AMOUNT is recorded: the same bad message is a duplicate, a corrected one a conflict.
  h.run({ ...deposit('b', 1001n, 0n), rejectCode: RejectCode.BadAmount });
  assert.equal(h.run({ ...deposit('b', 1001n, 0n), rejectCode: RejectCode.BadAmount }).outcome.flags, OUTCOME_FLAG_DUPLICATE);
  assert.equal(h.run(deposit('b', 1001n, 10n)).outcome.reason, RejectCode.DuplicateTxIdConflict);
  const unparseable = h.run({ type: CommandType.Unparseable, txId: '', account: 0n });
  assert.deepEqual([unparseable.outcome.reason, unparseable.outcome.flags], [RejectCode.Malformed, 0]);
  assert.equal(h.run({ ...deposit('sys', 5n, 10n) }).outcome.reason, RejectCode.Malformed);
});

test('amounts near int64: exact slow path, AMOUNT_OVERFLOW applies nothing', () => {
  const h = harness();
  const big = I64_MAX - 5n;
  assert.equal(h.run(deposit('d1', 1001n, big)).outcome.status, 1);
  assert.deepEqual(h.balance(1001n, USDT), [big, 0n]);
  assert.equal(h.run(deposit('d2', 1001n, 6n)).outcome.reason, RejectCode.AmountOverflow);
  assert.equal(h.run(deposit('d3', 1001n, 5n)).outcome.status, 1);
  assert.deepEqual(h.balance(1001n, USDT), [I64_MAX, 0n]);
  // External account 0 reached -I64_MAX; another user's deposit of 2 would take it below int64.
  assert.equal(h.run(deposit('d4', 1002n, 2n)).outcome.reason, RejectCode.AmountOverflow);
  assert.equal(h.run(deposit('d5', 1002n, 1n)).outcome.status, 1);
  assert.deepEqual(h.balance(0n, USDT, 0), [-(1n << 63n), 0n]);
  assert.equal(h.run({ type: CommandType.Withdraw, txId: 'w1', account: 1001n, currency: USDT, amount: I64_MAX }).outcome.status, 1);
  assert.deepEqual(h.balance(1001n, USDT), [0n, 0n]);
  assert.equal(h.balance(0n, USDT, 0)![0], -1n);
});

test('a full balance table rejects with BALANCE_TABLE_FULL, raises the flag and records nothing', () => {
  const h = harness({ capacity: 2 });
  assert.equal(h.run(deposit('d1', 1001n, 1n)).outcome.status, 1); // user + external: 2 balances
  const full = h.run(deposit('d2', 1002n, 1n));
  assert.deepEqual([full.outcome.reason, full.outcome.flags], [RejectCode.BalanceTableFull, 0]);
  assert.equal(h.table.isFull, true);
  assert.equal(h.reader.fullRejections, 1);
  assert.equal(h.run(deposit('d3', 1001n, 1n)).outcome.status, 1, 'existing balances still work');
  assert.equal(h.table.count, 2);
});

test('the dedup window evicts the oldest tx_id first', () => {
  const h = harness({ dedupWindow: 2 });
  h.run(deposit('a', 1001n, 1n));
  h.run(deposit('b', 1001n, 1n));
  h.run(deposit('c', 1001n, 1n));
  assert.equal(h.run(deposit('a', 1001n, 1n)).outcome.flags, OUTCOME_FLAG_RECORDED, 'a left the window and applies again');
  assert.equal(h.run(deposit('c', 1001n, 1n)).outcome.flags, OUTCOME_FLAG_DUPLICATE);
  assert.deepEqual(h.balance(1001n, USDT), [4n, 0n]);
});

test('sequences increase per command and balances record the last change', () => {
  const h = harness();
  const a = h.run(deposit('d1', 1001n, 1n));
  h.run(deposit('d2', 1002n, 1n));
  const c = h.run(deposit('d1', 1001n, 1n));
  assert.deepEqual([a.outcome.sequence, c.outcome.sequence], [1, 3]);
  assert.equal(h.reader.readBalance(1001n, USDT)!.lastChangeSequence, 1);
  assert.equal(h.reader.readBalance(0n, USDT, 0)!.lastChangeSequence, 2);
});

const crossing = (txId: string, from: bigint, to: bigint, amount: bigint, toPartition = 1): Fields => ({
  type: CommandType.Transfer, txId, account: from, counterAccount: to, counterHome: toPartition, currency: USDT, amount,
});
const credit = (txId: string, account: bigint, amount: bigint, partition = 1): Fields => ({ type: CommandType.Credit, txId, account, currency: USDT, amount, partition, accountHome: partition });

test('a transfer whose `to` lives on another partition debits `from` into transit (3) and names the credit in the leg slot tail', () => {
  const h = harness();
  h.run(deposit('d1', 1001n, 100n));
  // Stale bytes in the ring: the tail must be written whole, its last four bytes as zeros.
  new Uint8Array(h.output.buffer).fill(0xee);
  const to = (1n << 64n) - 7n; // high word above 2^31
  const position = h.output.position;
  const { outcome, legs } = h.run(crossing('x1', 1001n, to, 60n, 1));
  assert.deepEqual([outcome.status, outcome.reason, outcome.flags, outcome.legCount, outcome.slotCount], [1, RejectCode.None, OUTCOME_FLAG_RECORDED | OUTCOME_FLAG_CREDIT_OUT, 2, 2]);
  assert.deepEqual(
    legs.map((leg) => [leg.account, leg.currency, leg.partition, leg.availableDelta, leg.frozenDelta, leg.resultingAvailable, leg.resultingFrozen]),
    [[1001n, USDT, 0, -60n, 0n, 40n, 0n], [3n, USDT, 0, 60n, 0n, 60n, 0n]],
  );
  // The same through the raw readers, and the tail byte by byte.
  const buffer = h.output.buffer;
  const outcomeSlot = h.output.slotByteOffset(position);
  const legSlot = h.output.slotByteOffset(position + 1);
  assert.equal(readOutcome(buffer, outcomeSlot).flags & OUTCOME_FLAG_CREDIT_OUT, OUTCOME_FLAG_CREDIT_OUT);
  assert.deepEqual([readLeg(buffer, legSlot, 1).account, readLeg(buffer, legSlot, 1).availableDelta], [3n, 60n]);
  const tail = new DataView(buffer, legSlot, OUTPUT_SLOT_BYTES);
  assert.equal(LEG_SLOT_CREDIT_TO_ACCOUNT_OFFSET, 112);
  assert.equal(LEG_SLOT_CREDIT_TO_PARTITION_OFFSET, 120);
  assert.equal(tail.getUint32(112, true), Number(to & 0xffffffffn), 'lo word first');
  assert.equal(tail.getUint32(116, true), Number(to >> 32n), 'then hi word');
  assert.equal(tail.getBigUint64(112, true), to);
  assert.equal(tail.getUint32(120, true), 1);
  assert.equal(tail.getUint32(124, true), 0);
  assert.deepEqual(readCreditOut(buffer, legSlot), { to, toPartition: 1 });
  // Only `from` and this partition's transit changed; `to` is credited on its own partition.
  assert.deepEqual(h.balance(1001n, USDT), [40n, 0n]);
  assert.deepEqual(h.balance(3n, USDT, 0), [60n, 0n]);
  assert.equal(h.balance(to, USDT), undefined);
  assert.equal(h.balance(3n, USDT, 1), undefined);
  // A second crossing transfer adds to the same transit balance.
  assert.deepEqual(h.run(crossing('x2', 1001n, 1005n, 15n, 1)).legs.map((leg) => leg.resultingAvailable), [25n, 75n]);
});

test('a crossing transfer is checked like a local one; rejections and replays carry no flag and no legs', () => {
  const h = harness();
  h.run(deposit('d1', 1001n, 100n));
  const noCredit = (fields: Fields) => {
    const { outcome, legs } = h.run(fields);
    assert.equal(outcome.flags & OUTCOME_FLAG_CREDIT_OUT, 0, fields.txId as string);
    assert.equal(legs.length, 0);
    return [outcome.reason, outcome.flags];
  };
  assert.deepEqual(noCredit(crossing('r1', 1001n, 1005n, 101n)), [RejectCode.InsufficientAvailable, OUTCOME_FLAG_RECORDED]);
  assert.deepEqual(noCredit(crossing('r2', 1001n, 1005n, 0n)), [RejectCode.BadAmount, OUTCOME_FLAG_RECORDED]);
  assert.deepEqual(noCredit({ ...crossing('r3', 1001n, 1005n, 1n), accountHome: 1 }), [RejectCode.WrongPartition, OUTCOME_FLAG_RECORDED]);
  assert.deepEqual(noCredit({ ...crossing('r4', 1001n, 3n, 1n) }), [RejectCode.Malformed, 0]);
  assert.deepEqual(noCredit({ ...crossing('r5', 1001n, 1005n, 1n), rejectCode: RejectCode.UnknownCurrency }), [RejectCode.UnknownCurrency, OUTCOME_FLAG_RECORDED]);
  assert.equal(h.run(crossing('ok', 1001n, 1005n, 100n)).outcome.flags, OUTCOME_FLAG_RECORDED | OUTCOME_FLAG_CREDIT_OUT);
  const replay = h.run(crossing('ok', 1001n, 1005n, 100n));
  assert.deepEqual([replay.outcome.status, replay.outcome.flags, replay.outcome.legCount, replay.outcome.slotCount], [1, OUTCOME_FLAG_DUPLICATE, 0, 1]);
  assert.deepEqual(noCredit(crossing('ok', 1001n, 1005n, 99n)), [RejectCode.DuplicateTxIdConflict, 0]);
  assert.deepEqual(h.balance(1001n, USDT), [0n, 0n]);
  assert.deepEqual(h.balance(3n, USDT, 0), [100n, 0n]);
});

test('a crossing transfer: AMOUNT_OVERFLOW in transit, BALANCE_TABLE_FULL for a new transit balance', () => {
  const h = harness();
  h.run(deposit('d1', 1001n, I64_MAX));
  assert.equal(h.run(crossing('x1', 1001n, 1005n, I64_MAX)).outcome.status, 1);
  h.run(deposit('d2', 1002n, 1n));
  assert.equal(h.run(crossing('x2', 1002n, 1005n, 1n)).outcome.reason, RejectCode.AmountOverflow);
  assert.deepEqual(h.balance(3n, USDT, 0), [I64_MAX, 0n]);
  assert.deepEqual(h.balance(1002n, USDT), [1n, 0n]);
  const small = harness({ capacity: 2 });
  small.run(deposit('d1', 1001n, 5n));
  const full = small.run(crossing('x1', 1001n, 1005n, 1n));
  assert.deepEqual([full.outcome.reason, full.outcome.flags], [RejectCode.BalanceTableFull, 0]);
  assert.deepEqual(small.balance(1001n, USDT), [5n, 0n]);
});

test('credit moves the amount from transit (3) of its partition to the account; transit nets to zero across partitions', () => {
  const h = harness();
  h.run(deposit('d1', 1001n, 100n));
  h.run(crossing('x1', 1001n, 1005n, 60n, 1));
  const { outcome, legs } = h.run(credit('~x0-1', 1005n, 60n, 1));
  assert.deepEqual([outcome.status, outcome.flags, outcome.legCount, outcome.slotCount, outcome.partition, outcome.commandType], [1, OUTCOME_FLAG_RECORDED, 2, 2, 1, CommandType.Credit]);
  assert.deepEqual(
    legs.map((leg) => [leg.account, leg.partition, leg.availableDelta, leg.frozenDelta, leg.resultingAvailable]),
    [[1005n, 1, 60n, 0n, 60n], [3n, 1, -60n, 0n, -60n]],
  );
  assert.deepEqual(h.balance(1005n, USDT), [60n, 0n]);
  assert.deepEqual(h.balance(3n, USDT, 0), [60n, 0n]);
  assert.deepEqual(h.balance(3n, USDT, 1), [-60n, 0n]);
  assert.deepEqual(h.balance(3n, USDT), [0n, 0n], 'summed over partitions');
  // A credit may arrive before anything else touched transit there: transit goes negative.
  assert.deepEqual(h.run(credit('~x0-12', 1006n, 5n, 1)).legs.map((leg) => leg.resultingAvailable), [5n, -65n]);
});

test('credit: the account must live on the command partition, else WRONG_PARTITION (recorded)', () => {
  const h = harness();
  const wrong = h.run({ ...credit('~x0-11', 1005n, 5n, 1), accountHome: 0 });
  assert.deepEqual([wrong.outcome.status, wrong.outcome.reason, wrong.outcome.flags, wrong.legs.length], [2, RejectCode.WrongPartition, OUTCOME_FLAG_RECORDED, 0]);
  const replay = h.run({ ...credit('~x0-11', 1005n, 5n, 1), accountHome: 0 });
  assert.deepEqual([replay.outcome.reason, replay.outcome.flags], [RejectCode.WrongPartition, OUTCOME_FLAG_DUPLICATE]);
  assert.equal(h.balance(1005n, USDT), undefined);
  assert.equal(h.balance(3n, USDT, 1), undefined);
  assert.equal(h.run({ ...credit('~x0-12', 5n, 5n, 1) }).outcome.reason, RejectCode.Malformed, 'a system account is never credited');
  assert.equal(h.run(credit('~x0-13', 1005n, 0n, 1)).outcome.reason, RejectCode.BadAmount);
});

test('credit: a relay retry replays the stored outcome and changes nothing', () => {
  const h = harness();
  const first = h.run(credit('~x0-11', 1005n, 7n, 1));
  const retry = h.run(credit('~x0-11', 1005n, 7n, 1));
  assert.deepEqual([retry.outcome.status, retry.outcome.reason, retry.outcome.flags, retry.outcome.legCount], [1, RejectCode.None, OUTCOME_FLAG_DUPLICATE, 0]);
  assert.equal(retry.outcome.originalOffset, first.outcome.kafkaOffset);
  assert.deepEqual(h.balance(1005n, USDT), [7n, 0n]);
  assert.deepEqual(h.balance(3n, USDT, 1), [-7n, 0n]);
  assert.equal(h.engine.counters[COUNTER_DUPLICATES], 1);
});

test('credit: the same tx_id with another payload is DUPLICATE_TX_ID_CONFLICT (as a deposit it is MALFORMED, below)', () => {
  const h = harness();
  h.run(credit('~x0-11', 1005n, 7n, 1));
  const conflicts: Fields[] = [
    credit('~x0-11', 1005n, 8n, 1),
    credit('~x0-11', 1006n, 7n, 1),
    { ...credit('~x0-11', 1005n, 7n, 1), currency: BTC },
  ];
  for (const fields of conflicts) {
    const { outcome, legs } = h.run(fields);
    assert.deepEqual([outcome.reason, outcome.flags, legs.length], [RejectCode.DuplicateTxIdConflict, 0, 0], JSON.stringify(fields, (_key, value) => (typeof value === 'bigint' ? String(value) : value)));
  }
  assert.equal(h.run(credit('~x0-11', 1005n, 7n, 1)).outcome.flags, OUTCOME_FLAG_DUPLICATE, 'a conflict does not overwrite the original');
  assert.deepEqual(h.balance(1005n, USDT), [7n, 0n]);
  assert.equal(h.balance(0n, USDT, 1), undefined, 'a credit never touches the external account');
});

test('a tx_id of the credit shape (~x<p>-<o>, ~r<p>-<o>) is MALFORMED on any other command, so it stays free for the credit', () => {
  const h = harness();
  for (const txId of ['~x1-5', '~r0-123456789']) {
    const forged = h.run({ ...deposit(txId, 1005n, 100n), partition: 1, accountHome: 1 });
    assert.deepEqual([forged.outcome.reason, forged.outcome.flags, forged.legs.length], [RejectCode.Malformed, 0, 0], txId);
  }
  const transfer = h.run({ type: CommandType.Transfer, txId: '~x1-6', account: 1001n, counterAccount: 1002n, currency: USDT, amount: 1n });
  assert.equal(transfer.outcome.reason, RejectCode.Malformed);
  const real = h.run(credit('~x1-5', 1005n, 60n, 1));
  assert.deepEqual([real.outcome.status, real.outcome.flags], [1, OUTCOME_FLAG_RECORDED], 'the real credit is applied');
  assert.deepEqual(h.balance(1005n, USDT), [60n, 0n]);
  // Only that exact shape is reserved.
  for (const txId of ['~x1-', '~x-5', '~y1-5', '~x1-5a', 'a~x1-5', '~x1_5']) assert.equal(h.run({ ...deposit(txId, 1001n, 1n) }).outcome.status, 1, txId);
});

test('a credit whose tx_id is not of the credit shape is MALFORMED, not recorded, and moves nothing out of transit', () => {
  const h = harness();
  // Only Tally sends credits, always with ~x<p>-<o> (or ~r<p>-<o> for a refund): anything else
  // claiming to be a credit is not the half of a transfer and must not credit anyone.
  for (const txId of ['c1', 'x1/credit', '~x1-', '~y1-5', 'a~x1-5']) {
    const forged = h.run(credit(txId, 1005n, 60n, 1));
    assert.deepEqual([forged.outcome.status, forged.outcome.reason, forged.outcome.flags, forged.legs.length], [2, RejectCode.Malformed, 0, 0], txId);
    assert.equal(h.run(credit(txId, 1005n, 60n, 1)).outcome.flags, 0, `${txId}: not recorded, so a retry is MALFORMED again, not a duplicate`);
  }
  assert.equal(h.balance(1005n, USDT), undefined);
  assert.equal(h.balance(3n, USDT, 1), undefined);
  assert.equal(h.run(credit('~r0-7', 1005n, 60n, 1)).outcome.status, 1, 'a refund credit (~r) is applied');
  assert.deepEqual(h.balance(1005n, USDT), [60n, 0n]);
});

test('credit: AMOUNT_OVERFLOW and BALANCE_TABLE_FULL as for a deposit', () => {
  const h = harness();
  h.run({ ...deposit('d1', 1005n, I64_MAX), partition: 1, accountHome: 1 });
  assert.deepEqual([h.run(credit('~x0-11', 1005n, 1n, 1)).outcome.reason], [RejectCode.AmountOverflow]);
  assert.deepEqual(h.balance(1005n, USDT), [I64_MAX, 0n]);
  const small = harness({ capacity: 2 });
  assert.equal(small.run(credit('~x0-11', 1005n, 1n, 1)).outcome.status, 1);
  const full = small.run(credit('~x0-12', 1006n, 1n, 1));
  assert.deepEqual([full.outcome.reason, full.outcome.flags], [RejectCode.BalanceTableFull, 0]);
  assert.equal(small.run(credit('~x0-12', 1005n, 1n, 1)).outcome.status, 1, 'BALANCE_TABLE_FULL is not recorded: the tx_id is free');
});
