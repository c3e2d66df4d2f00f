// The fan-out builds each result event straight from the output slots (user balances only,
// last leg per key, no system account formatted). These tests hold it to the reference,
// resultEventJson() of the outcome read with all its balances (the same key collection, its
// own filtering and formatting), over a seeded mix of every command kind on a real engine's
// output ring, and to one event written out by hand (which pins which balances appear, once
// each, in which order).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CommandType } from '../engine/command_layout';
import { CurrencyRegistry } from '../engine/currency_registry';
import { RejectCode } from '../engine/reject_code';
import { SeededRandom } from '../engine/wire_fixtures';
import { InProcessEngine, FixtureCommand } from '../persist/engine_fixture';
import { DurableOutcome, forEachDurableOutcome, resultEventJson } from './durable_outcome';

const USDT = 1;
const BTC = 2;
const registry = CurrencyRegistry.fromConfig([{ code: 'USDT', scale: 6 }, { code: 'BTC', scale: 8 }]);
const U64_MAX = (1n << 64n) - 1n;

function outcomesOf(engine: InProcessEngine, withBalances: boolean): DurableOutcome[] {
  engine.publish();
  const outcomes: DurableOutcome[] = [];
  const range = { ring: engine.ring, firstPosition: 0, lastPosition: engine.ring.publishedSequence(), commandCount: 0 };
  forEachDurableOutcome(range, registry, (outcome) => outcomes.push(outcome), withBalances);
  return outcomes;
}


test('events built from the slots equal the reference for every kind of command', () => {
  const engine = new InProcessEngine({ outputSlotCount: 1 << 15, balanceCapacity: 4096, dedupWindow: 1 << 14, partitions: [0, 1] });
  const seeded = new SeededRandom(7);
  const random = (): number => seeded.nextU32() / 4294967296;
  const accounts = [1000n, 1001n, 1002n, 2n ** 31n + 5n, 2n ** 32n + 7n, U64_MAX];
  const pick = (): bigint => accounts[Math.floor(random() * accounts.length)]!;
  const amount = (): bigint => (random() < 0.1 ? BigInt(Math.floor(random() * 2 ** 52)) * 1000n : BigInt(1 + Math.floor(random() * 10_000_000)));
  const sent: FixtureCommand[] = [];
  for (let index = 0; index < 3000; index++) {
    const r = random();
    const currency = random() < 0.5 ? USDT : BTC;
    const base = { partition: 0, accountHome: 0, counterHome: 0, txId: `t-${index}`, account: pick(), currency };
    let command: FixtureCommand;
    if (r < 0.05 && sent.length > 0) command = sent[Math.floor(random() * sent.length)]!; // a duplicate
    else if (r < 0.3) command = { ...base, type: CommandType.Deposit, amount: amount() };
    else if (r < 0.45) command = { ...base, type: CommandType.Withdraw, amount: amount() };
    else if (r < 0.55) command = { ...base, type: CommandType.Freeze, amount: amount() };
    else if (r < 0.65) command = { ...base, type: CommandType.Unfreeze, amount: amount() };
    else if (r < 0.8) command = { ...base, type: CommandType.Transfer, counterAccount: pick(), amount: amount() };
    else if (r < 0.83) command = { ...base, type: CommandType.Transfer, counterAccount: 5000n, counterHome: 1, amount: BigInt(1 + Math.floor(random() * 100)) };
    else if (r < 0.86) command = { ...base, type: CommandType.Deposit, amount: 0n, rejectCode: RejectCode.BadAmount };
    else {
      const quote = BigInt(1 + Math.floor(random() * 1000));
      const bought = BigInt(1 + Math.floor(random() * 1000));
      const account = base.account;
      command = { ...base, type: CommandType.Settle, legs: [
        { account, currency: USDT, home: 0, available: -quote, frozen: 0n },
        { account: 1n, currency: USDT, home: 0, available: 1n, frozen: 0n },
        { account: 2n, currency: USDT, home: 0, available: quote - 1n, frozen: 0n },
        { account: 2n, currency: BTC, home: 0, available: -bought, frozen: 0n },
        { account, currency: BTC, home: 0, available: bought, frozen: 0n },
        { account, currency: USDT, home: 0, available: 0n, frozen: 0n },
      ] };
    }
    sent.push(command);
    engine.apply(command);
  }
  const full = outcomesOf(engine, true);
  assert.equal(full.length, 3000);
  const kinds = new Set<string>();
  for (const outcome of full) {
    assert.equal(outcome.eventJson, resultEventJson(outcome), `command at offset ${outcome.offset}`);
    kinds.add(outcome.duplicate ? 'duplicate' : outcome.credit !== undefined ? 'credit' : `${outcome.commandType}:${outcome.status}`);
  }
  for (const kind of ['duplicate', 'credit', `${CommandType.Settle}:accepted`, `${CommandType.Withdraw}:rejected`, `${CommandType.Transfer}:accepted`]) {
    assert.ok(kinds.has(kind), `the mix holds ${kind}`);
  }
  assert.ok(full.some((o) => o.balances.some((b) => b.account === U64_MAX.toString())), 'the largest account id is in the mix');
  // Read without balances: the same events, nothing formatted for the stream.
  const lean = outcomesOf(engine, false);
  assert.deepEqual(lean.map((o) => o.eventJson), full.map((o) => o.eventJson));
  assert.ok(lean.every((o) => o.balances.length === 0));
});

test('a settle event lists each user balance once, after its last leg, in first-leg order, and no system account', () => {
  const engine = new InProcessEngine({ outputSlotCount: 1024, balanceCapacity: 1024, dedupWindow: 1024, partitions: [0] });
  engine.apply({ partition: 0, type: CommandType.Deposit, txId: 'd', account: 1001n, currency: USDT, amount: 100_000000n });
  engine.apply({ partition: 0, type: CommandType.Freeze, txId: 'f', account: 1001n, currency: USDT, amount: 10_000000n });
  engine.apply({ partition: 0, type: CommandType.Settle, txId: 's "1"', account: 1001n, legs: [
    { account: 1001n, currency: USDT, home: 0, available: 0n, frozen: -10_000000n },
    { account: 1n, currency: USDT, home: 0, available: 10000n, frozen: 0n },
    { account: 2n, currency: USDT, home: 0, available: 9_989999n, frozen: 0n },
    { account: 2n, currency: BTC, home: 0, available: -25n, frozen: 0n },
    { account: 1001n, currency: BTC, home: 0, available: 25n, frozen: 0n },
    { account: 1001n, currency: USDT, home: 0, available: 1n, frozen: 0n },
  ] });
  const settle = outcomesOf(engine, false)[2]!;
  assert.equal(settle.eventJson, '{"tx_id":"s \\"1\\"","status":"accepted","partition":0,"offset":"2","balances":[' +
    '{"account":"1001","currency":"USDT","available":"90.000001","frozen":"0"},' +
    '{"account":"1001","currency":"BTC","available":"0.00000025","frozen":"0"}]}');
});
