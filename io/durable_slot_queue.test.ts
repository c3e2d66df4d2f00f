// The fan-out queue copies committed ranges out of the output ring and reads them later in
// slices. Checked against reading the same outcomes straight from the engine's ring: ranges
// that wrap around a small ring, the ring overwritten right after each push (the copy must
// not depend on it), slices that end inside a range and span several ranges.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CommandType } from '../engine/command_layout';
import { CurrencyRegistry } from '../engine/currency_registry';
import { OUTPUT_SLOT_BYTES } from '../engine/output_layout';
import { RingBuffer } from '../ringbuffer';
import { InProcessEngine } from '../persist/engine_fixture';
import { forEachDurableOutcome } from './durable_outcome';
import { DurableSlotQueue } from './durable_slot_queue';

const registry = CurrencyRegistry.fromConfig([{ code: 'USDT', scale: 6 }, { code: 'BTC', scale: 8 }]);
const noFailure = (error: unknown): void => assert.fail(`fan-out failed: ${String(error)}`);

/** 400 commands (deposits, withdrawals, 4-leg settles) on a fixture engine; their first slots. */
function workload(): { engine: InProcessEngine; starts: number[] } {
  const engine = new InProcessEngine({ outputSlotCount: 4096, balanceCapacity: 1024, dedupWindow: 4096, partitions: [0] });
  const starts: number[] = [];
  for (let index = 0; index < 400; index++) {
    const account = BigInt(1000 + (index % 17));
    if (index % 5 === 4) {
      starts.push(engine.apply({ partition: 0, type: CommandType.Settle, txId: `s${index}`, account, legs: [
        { account, currency: 1, home: 0, available: 0n, frozen: 0n },
        { account: 2n, currency: 1, home: 0, available: 0n, frozen: 0n },
        { account: 2n, currency: 2, home: 0, available: -1n, frozen: 0n },
        { account, currency: 2, home: 0, available: 1n, frozen: 0n },
      ] }));
    } else {
      starts.push(engine.apply({ partition: 0, type: index % 3 === 0 ? CommandType.Withdraw : CommandType.Deposit, txId: `t${index}`, account, currency: 1 + (index % 2), amount: 5n }));
    }
  }
  engine.publish();
  return { engine, starts };
}

test('ranges copied out of a wrapping ring read back as the same outcomes, in slices', () => {
  const { engine, starts } = workload();
  const expected: string[] = [];
  forEachDurableOutcome({ ring: engine.ring, firstPosition: 0, lastPosition: engine.ring.publishedSequence() }, registry, (o) => expected.push(o.eventJson), false);
  assert.equal(expected.length, 400);

  // Committed ranges of 1..40 commands (at most 120 slots), each placed in a 256-slot ring so that many wrap.
  const small = RingBuffer.create({ slotCount: 256, slotBytes: OUTPUT_SLOT_BYTES });
  const source = new Uint8Array(engine.ring.data);
  const target = new Uint8Array(small.data);
  const queue = new DurableSlotQueue(registry, noFailure);
  const taken: string[] = [];
  let command = 0;
  let shift = 1_000_003; // positions far from 0, so the ring's slot arithmetic is exercised
  let pushed = 0;
  let wrapped = 0;
  while (command < starts.length) {
    const count = Math.min(1 + ((command * 7) % 40), starts.length - command);
    const first = starts[command]!;
    const last = (command + count < starts.length ? starts[command + count]! : engine.ring.publishedSequence() + 1) - 1;
    for (let position = first; position <= last; position++) {
      const from = engine.ring.slotOffset(position);
      target.set(source.subarray(from, from + OUTPUT_SLOT_BYTES), small.slotOffset(position + shift));
    }
    if (small.slotOffset(last + shift) < small.slotOffset(first + shift)) wrapped++;
    queue.push({ ring: small, firstPosition: first + shift, lastPosition: last + shift, commandCount: count, unwrittenPartitions: [] });
    target.fill(0xee); // the ring is reused at once: the queue must hold its own copy
    pushed++;
    command += count;
    shift += 97;
    // Take a slice of 7 now and then, so reading runs behind pushing and across ranges.
    if (pushed % 3 === 0) queue.take(7, false, (o) => taken.push(o.eventJson));
  }
  assert.ok(wrapped >= 3, `${wrapped} ranges wrapped around the ring`);
  assert.equal(queue.commandCount, 400 - taken.length);
  while (!queue.empty) {
    const before = taken.length;
    assert.ok(queue.take(7, false, (o) => taken.push(o.eventJson)) === taken.length - before);
  }
  assert.equal(queue.commandCount, 0);
  assert.deepEqual(taken, expected);
});

test('contiguous ranges share one buffer, and a command whose fan-out throws is reported once and skipped', () => {
  const { engine, starts } = workload();
  const failures: Array<{ message: string; position: number; partition: number; offset: number }> = [];
  const queue = new DurableSlotQueue(registry, (error, position, partition, offset) => failures.push({ message: (error as Error).message, position, partition, offset }));
  // Committed one command at a time, as under a catch-up of many small batches.
  for (let command = 0; command < starts.length; command++) {
    const last = (command + 1 < starts.length ? starts[command + 1]! : engine.ring.publishedSequence() + 1) - 1;
    queue.push({ ring: engine.ring, firstPosition: starts[command]!, lastPosition: last, commandCount: 1, unwrittenPartitions: [] });
  }
  assert.equal(queue.chunkCount, 1, 'one buffer for 400 contiguous ranges');
  assert.equal(queue.byteCount, (engine.ring.publishedSequence() + 1) * OUTPUT_SLOT_BYTES);
  const seen: string[] = [];
  while (!queue.empty) {
    queue.take(50, false, (outcome) => {
      if (outcome.txId === 't101') throw new Error('a broken subscriber');
      seen.push(outcome.txId);
    });
  }
  assert.deepEqual(failures, [{ message: 'a broken subscriber', position: starts[101]!, partition: 0, offset: 101 }]);
  assert.equal(seen.length, 399);
  assert.equal(new Set(seen).size, 399, 'nothing is read twice');
  assert.ok(!seen.includes('t101'));
  assert.equal(queue.byteCount, 0);
});

test('commands of partitions a range did not commit (stopped, fenced) are never read: no event, cache entry or credit for them', () => {
  const engine = new InProcessEngine({ outputSlotCount: 1024, balanceCapacity: 1024, dedupWindow: 4096, partitions: [0, 1, 2] });
  const starts: number[] = [];
  for (let index = 0; index < 90; index++) {
    const partition = index % 3;
    starts.push(engine.apply({ partition, type: CommandType.Deposit, txId: `p${partition}-${index}`, account: BigInt(1000 + partition), currency: 1, amount: 5n }));
  }
  engine.publish();
  const queue = new DurableSlotQueue(registry, noFailure);
  // Two ranges of 45 commands: in the first, partition 1 was stopped before its flush; in the second, 1 and 2 were.
  queue.push({ ring: engine.ring, firstPosition: 0, lastPosition: starts[45]! - 1, commandCount: 45, unwrittenPartitions: [1] });
  queue.push({ ring: engine.ring, firstPosition: starts[45]!, lastPosition: engine.ring.publishedSequence(), commandCount: 45, unwrittenPartitions: [1, 2] });
  assert.equal(queue.commandCount, 30 + 15, 'only committed commands are queued');
  const read: string[] = [];
  while (!queue.empty) queue.take(7, false, (outcome) => read.push(outcome.txId));
  const expected = Array.from({ length: 90 }, (_, index) => index).filter((index) => index % 3 === 0 || (index % 3 === 2 && index < 45)).map((index) => `p${index % 3}-${index}`);
  assert.deepEqual(read, expected);
  assert.equal(queue.commandCount, 0);
});
