// Loading a recovered partition: a load that fails part-way (more new balances than the table
// has room for) is undone, says what to do, and the partition loads once there is room,
// instead of every retry tripping over the half-written balances.
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { BalanceEngine } from './balance_engine';
import { BalanceTable, attach } from './balance_table';
import { COMMAND_SLOT_BYTES } from './command_layout';
import { OutputBuffer } from './output_buffer';
import { PartitionLoadError, loadPartition } from './partition_loader';
import { BALANCE_ACCOUNT_WORD, BALANCE_AVAILABLE_WORD, BALANCE_CURRENCY_WORD, BALANCE_ROW_BYTES, BALANCE_ROW_WORDS, OUTCOME_ROW_BYTES } from './recovery_layout';

const USDT = 1;
const CAPACITY = 1024;

/** Balance rows of `count` user accounts from `firstAccount`, each holding `amount` USDT. */
function balanceRows(firstAccount: number, count: number, amount: number): SharedArrayBuffer {
  const buffer = new SharedArrayBuffer(Math.max(1, count) * BALANCE_ROW_BYTES);
  const words = new Int32Array(buffer);
  for (let row = 0; row < count; row++) {
    const base = row * BALANCE_ROW_WORDS;
    words[base + BALANCE_ACCOUNT_WORD] = firstAccount + row;
    words[base + BALANCE_AVAILABLE_WORD] = amount;
    words[base + BALANCE_CURRENCY_WORD] = USDT;
  }
  return buffer;
}

function load(engine: BalanceEngine, partition: number, firstAccount: number, count: number) {
  return loadPartition(engine, partition, 16, { balances: balanceRows(firstAccount, count, 5), balanceCount: count, outcomes: new SharedArrayBuffer(OUTCOME_ROW_BYTES), outcomeCount: 0 });
}

test('a load that runs out of room is undone and can be retried once there is room', () => {
  const table = BalanceTable.create({ capacity: CAPACITY });
  const engine = new BalanceEngine({ table, commands: new ArrayBuffer(COMMAND_SLOT_BYTES), output: new OutputBuffer(64) });
  const reader = attach(table.descriptor());
  // Partition 0 held 600 balances here, then went to another instance (released: zeroed entries).
  load(engine, 0, 10_000, 600);
  engine.releasePartition(0);
  // Another partition now fills most of what is left.
  load(engine, 1, 50_000, CAPACITY - 600 - 100);
  // Partition 0 comes back with 600 balances of other accounts: the room check counts its 600
  // released entries, but new keys need new entries, and only 100 are free.
  assert.throws(() => load(engine, 0, 20_000, 600), (error: unknown) => error instanceof PartitionLoadError && /balance table full.*raise TALLY_BALANCE_CAPACITY/.test(error.message));
  assert.equal(engine.dedupIndexOf(0), null, 'the failed load left no window');
  assert.equal(reader.readBalance(20_000n, USDT, undefined)?.available ?? 0n, 0n, 'the failed load left no balance');
  // With fewer new accounts it fits (the old entries of partition 0 are reused), and no half-written balance is taken for a conflict.
  const loaded = load(engine, 0, 10_000, 600);
  assert.equal(loaded.balanceCount, 600);
  assert.equal(reader.readBalance(10_599n, USDT, undefined)?.available, 5n);
  assert.equal(reader.readBalance(50_000n, USDT, undefined)?.available, 5n, 'the other partition is untouched');
});
