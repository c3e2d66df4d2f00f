// The engine on its own worker thread, fed through the real command ring and drained
// through the real output ring, while another thread reads the shared balance table.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { EngineThread } from './engine_thread';
import { loadNativeCore } from './native_core';
import { OutputDrain } from './output_drain';
import { CommandSlotViews } from './command_slot';
import { CurrencyRegistry } from './currency_registry';
import { decodeCommand } from './command_decoder';
import { OUT_REASON_OFFSET, OUT_STATUS_OFFSET } from './output_layout';
import type { SeqlockReaderData } from './seqlock_reader_worker';
import { Sequencer, YieldingWaitStrategy } from '../ringbuffer';

// One producer role per ring: feed() is called more than once per engine.
const sequencers = new Map<EngineThread, Sequencer>();

const PARTITIONS = 1;
const registry = CurrencyRegistry.fromConfig([{ code: 'USDT', scale: 8 }, { code: 'BTC', scale: 8 }]);
const USDT = registry.idOfCode('USDT');

// Deterministic freeze/unfreeze amounts: they move value between available and frozen of one
// balance whose words straddle 2^32, so a torn read would break available + frozen.
function freezeUnfreezeLoad(count: number, round = 0): Buffer[] {
  const messages = round > 0 ? [] : [Buffer.from(JSON.stringify({ type: 'deposit', tx_id: 'seed', account: '1001', currency: 'USDT', amount: '40000000000' }))];
  let state = 0x2545f491 + round;
  let frozen = '';
  for (let i = 0; i < count; i++) {
    // Freeze a pseudo-random amount, then unfreeze exactly that amount.
    if (i % 2 === 0) {
      state = (Math.imul(state, 1103515245) + 12345) >>> 0;
      frozen = `${1 + (state % 2_000_000_000) * 4}.${String(state % 100_000_000).padStart(8, '0')}`;
    }
    const type = i % 2 === 0 ? 'freeze' : 'unfreeze';
    messages.push(Buffer.from(JSON.stringify({ type, tx_id: `r${round}-t${i}`, account: '1001', currency: 'USDT', amount: frozen })));
  }
  return messages;
}

async function feed(engine: EngineThread, drain: OutputDrain, messages: Buffer[], onOutcome: (status: number, reason: number) => void): Promise<void> {
  const sequencer = sequencers.get(engine) ?? engine.commandRing.acquireSequencer(new YieldingWaitStrategy(100));
  sequencers.set(engine, sequencer);
  const views = new CommandSlotViews(engine.commandRing.data);
  const bytes = new Uint8Array(engine.outputRing.data);
  const visit = (_ring: unknown, position: number): void => {
    const offset = engine.outputRing.slotOffset(position);
    onOutcome(bytes[offset + OUT_STATUS_OFFSET]!, bytes[offset + OUT_REASON_OFFSET]!);
  };
  let seen = 0;
  let sent = 0;
  while (seen < messages.length) {
    const batch = Math.min(256, messages.length - sent);
    const first = batch > 0 ? sequencer.tryClaim(batch) : -1;
    if (first >= 0) {
      for (let i = 0; i < batch; i++) decodeCommand(messages[sent + i]!, 0, sent + i, PARTITIONS, registry, views, engine.commandRing.slotOffset(first + i));
      sequencer.publish(first + batch - 1);
      sent += batch;
    }
    const drained = drain.drain(visit);
    seen += drained;
    if (first < 0 && drained === 0) await new Promise((resolve) => setImmediate(resolve));
  }
}

// Both cores write the table under the seqlock: the C core (engine/native/balance_core.c)
// with its own stores, so the torn-read and back-pressure tests run against each.
const nativeUnavailable = loadNativeCore().core === null ? `native core unavailable: ${loadNativeCore().error}` : false;
const CORES = ['native', 'typescript'] as const;

for (const core of CORES) test(`the engine worker (${core} core) applies ring commands while a reader thread never sees a torn balance`, { timeout: 120_000, skip: core === 'native' && nativeUnavailable }, async () => {
  const testStartedMs = Date.now();
  const engine = await EngineThread.start({ commandSlotCount: 1024, outputSlotCount: 4096, balanceCapacity: 1024, dedupWindow: 1 << 20, core });
  try {
    assert.equal(engine.core, core);
    await engine.assign(0);
    const drain = new OutputDrain(engine.outputRing);
    const messages = freezeUnfreezeLoad(200_000);
    // Words: 0 stop (set here), 1 reading started, 2 distinct values seen so far (set by the reader).
    const stop = new SharedArrayBuffer(12);
    const readerData: SeqlockReaderData = { table: engine.tableDescriptor, account: '1001', currency: USDT, expectedTotal: '4000000000000000000', stop };
    // The seed deposit goes first, so the reader only starts once the balance exists.
    let accepted = 0;
    let rejected = 0;
    await feed(engine, drain, messages.slice(0, 1), () => accepted++);
    const reader = new Worker(path.join(__dirname, 'seqlock_reader_worker.js'), { workerData: readerData });
    const readerDone = new Promise<{ reads: number; violations: number; distinct: number }>((resolve, reject) => {
      reader.once('message', resolve);
      reader.once('error', reject);
    });
    // The writes start only once the reader reads: the engine can apply all of them in less
    // time than a worker thread takes to start.
    const flags = new Int32Array(stop);
    for (const deadline = Date.now() + 30_000; Atomics.load(flags, 1) === 0 && Date.now() < deadline;) await new Promise((resolve) => setTimeout(resolve, 1));
    assert.equal(Atomics.load(flags, 1), 1, 'the reader started reading');
    await feed(engine, drain, messages.slice(1), (status) => (status === 1 ? accepted++ : rejected++));
    // On a loaded machine the reader thread may have had little CPU while the engine wrote
    // (the native core applies a round in a few milliseconds): more rounds of writes until it
    // has read the balance changing many times, bounded in time rather than in rounds.
    let fed = messages.length;
    const roundsDeadline = testStartedMs + 100_000;
    for (let round = 1; Atomics.load(flags, 2) <= 10 && Date.now() < roundsDeadline; round++) {
      const more = freezeUnfreezeLoad(20_000, round);
      await feed(engine, drain, more, (status) => (status === 1 ? accepted++ : rejected++));
      fed += more.length;
    }
    Atomics.store(new Int32Array(stop), 0, 1);
    const readings = await readerDone;
    assert.equal(accepted + rejected, fed);
    assert.equal(rejected, 0, 'every freeze/unfreeze fits the balance');
    assert.ok(readings.reads > 1000, `reader made ${readings.reads} reads`);
    assert.ok(readings.distinct > 10, `reader saw the balance change (${readings.distinct} distinct values)`);
    assert.equal(readings.violations, 0, 'no torn (available, frozen) pair');
    const balance = engine.tableReader().readBalance(1001n, USDT);
    assert.equal(balance!.available + balance!.frozen, 4_000_000_000_000_000_000n);
    const report = await engine.report();
    assert.equal(report.sequence, fed);
  } finally {
    await engine.stop();
  }
});

// A batch's output may outgrow the output ring: here every batch of 256 deposits needs 512
// output slots of a 256-slot ring. What the batch has written so far is published when a
// claim finds the ring full, so the consumer can free room; before, the engine waited on
// itself forever.
for (const core of CORES) test(`a batch with more output than the output ring holds is applied, not stuck (${core} core)`, { timeout: 60_000, skip: core === 'native' && nativeUnavailable }, async () => {
  const engine = await EngineThread.start({ commandSlotCount: 1024, outputSlotCount: 256, balanceCapacity: 1024, dedupWindow: 1 << 16, core });
  try {
    assert.equal(engine.core, core);
    await engine.assign(0);
    const drain = new OutputDrain(engine.outputRing);
    const messages = Array.from({ length: 5000 }, (_, i) => Buffer.from(JSON.stringify({ type: 'deposit', tx_id: `big-${i}`, account: String(1000 + (i % 50)), currency: 'USDT', amount: '1' })));
    let accepted = 0;
    await feed(engine, drain, messages, (status) => (status === 1 ? accepted++ : undefined));
    assert.equal(accepted, messages.length);
    assert.equal((await engine.report()).sequence, messages.length);
  } finally {
    await engine.stop();
  }
});

test('same commands through two engine threads give the same state hash', { timeout: 60_000 }, async () => {
  const hashes: string[] = [];
  for (let run = 0; run < 2; run++) {
    const engine = await EngineThread.start({ commandSlotCount: 256, outputSlotCount: 2048, balanceCapacity: 1024, dedupWindow: 4096 });
    try {
      await engine.assign(0);
      await feed(engine, new OutputDrain(engine.outputRing), freezeUnfreezeLoad(20_000), () => undefined);
      hashes.push((await engine.report()).stateHash);
    } finally {
      await engine.stop();
    }
  }
  assert.equal(hashes[0], hashes[1]);
});

test('a worker that dies is reported once through onFailure; a clean stop is not a failure', { timeout: 60_000 }, async () => {
  const failures: Error[] = [];
  let reported: () => void = () => {};
  const failed = new Promise<void>((resolve) => { reported = resolve; });
  const engine = await EngineThread.start({
    commandSlotCount: 64, outputSlotCount: 256, balanceCapacity: 64, dedupWindow: 1024,
    onFailure: (error) => { failures.push(error); reported(); },
  });
  // A command for a partition the engine was never given breaks the engine's invariant: it throws.
  const sequencer = engine.commandRing.acquireSequencer(new YieldingWaitStrategy(100));
  const first = sequencer.tryClaim(1);
  decodeCommand(Buffer.from(JSON.stringify({ type: 'deposit', tx_id: 'd1', account: '1001', currency: 'USDT', amount: '1' })), 0, 0, PARTITIONS, registry, new CommandSlotViews(engine.commandRing.data), engine.commandRing.slotOffset(first));
  sequencer.publish(first);
  await failed;
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.equal(failures.length, 1, 'reported once (error, then exit)');
  assert.match(failures[0]!.message, /engine worker failed: .*not assigned/);
  assert.equal(engine.failed, failures[0]);
  await assert.rejects(engine.report(), /engine worker failed/);

  const clean = await EngineThread.start({ commandSlotCount: 64, outputSlotCount: 256, balanceCapacity: 64, dedupWindow: 1024, onFailure: (error) => failures.push(error) });
  await clean.stop();
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.equal(failures.length, 1);
  assert.equal(clean.failed, undefined);
});
