// The native core's own contract (engine/native/balance_core.c), beyond giving the same
// results as the TypeScript engine (the model tests in balance_engine.model.test.ts and the
// engine thread tests run both cores): which core is chosen, and that a batch stopped by an
// error leaves the engine exactly where apply() one by one would have.
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { BalanceEngine } from './balance_engine';
import { BalanceTable } from './balance_table';
import { COMMAND_SLOT_BYTES, CommandType } from './command_layout';
import { CommandSlotWriter } from './command_slot_writer';
import { loadNativeCore } from './native_core';
import { OutputBuffer } from './output_buffer';
import { OUTPUT_SLOT_BYTES, OutputRegion } from './output_layout';

const skip = loadNativeCore().core === null ? `native core unavailable: ${loadNativeCore().error}` : false;

/** An output region without what the native core needs (no slotCount, nextPosition, awaitRoom). */
class PlainRegion implements OutputRegion {
  readonly buffer = new ArrayBuffer(64 * OUTPUT_SLOT_BYTES);
  private next = 0;
  claim(slotCount: number): number {
    const first = this.next;
    this.next += slotCount;
    return first;
  }
  slotByteOffset(position: number): number {
    return (position % 64) * OUTPUT_SLOT_BYTES;
  }
}

function engineWith(core: 'auto' | 'native' | 'typescript', output: OutputRegion, commands: ArrayBuffer): BalanceEngine {
  const engine = new BalanceEngine({ table: BalanceTable.create({ capacity: 64 }), commands, output, core });
  engine.assignPartition(0, { dedupWindow: 16 });
  return engine;
}

test('auto takes the native core where it loads, and TypeScript for an output region it cannot write', { skip }, () => {
  const commands = new ArrayBuffer(COMMAND_SLOT_BYTES);
  assert.equal(engineWith('auto', new OutputBuffer(64), commands).coreName, 'native');
  assert.equal(engineWith('typescript', new OutputBuffer(64), commands).coreName, 'typescript');
  assert.equal(engineWith('auto', new PlainRegion(), commands).coreName, 'typescript');
  assert.throws(() => engineWith('native', new PlainRegion(), commands), /the native core is unavailable: the output region does not offer slotCount/);
  assert.throws(() => new BalanceEngine({ table: BalanceTable.create({ capacity: 4 }), commands, output: new OutputBuffer(8), core: 'c' as 'native' }), /core must be one of auto, native, typescript/);
});

test('a batch stopped by a command of an unassigned partition: the commands before it are applied and claimed, the error is apply()\'s', { skip }, () => {
  const results = (['typescript', 'native'] as const).map((core) => {
    const commands = new ArrayBuffer(COMMAND_SLOT_BYTES * 4);
    const writer = new CommandSlotWriter(commands);
    for (let i = 0; i < 4; i++) {
      writer.write(i * COMMAND_SLOT_BYTES, { type: CommandType.Deposit, txId: `d-${i}`, partition: i === 2 ? 7 : 0, kafkaOffset: i, account: 1001n, currency: 0, amount: 5n });
    }
    const output = new OutputBuffer(64);
    const engine = engineWith(core, output, commands);
    assert.equal(engine.coreName, core);
    const offsets = Int32Array.from([0, 1, 2, 3], (i) => i * COMMAND_SLOT_BYTES);
    let message = '';
    try {
      engine.applyBatch(offsets, 4);
    } catch (error) {
      message = (error as Error).message;
    }
    return { message, position: output.position, sequence: engine.sequence, hash: engine.stateHash(), accepted: engine.counters[0] };
  });
  assert.match(results[0].message, /command for partition 7, which this engine was not assigned/);
  assert.deepEqual(results[1], results[0]);
  assert.equal(results[1].position, 4, 'two deposits of two slots each were claimed');
  assert.equal(results[1].accepted, 2);
});

test('the native core refuses slot offsets outside the command buffer before applying anything', { skip }, () => {
  const commands = new ArrayBuffer(COMMAND_SLOT_BYTES * 2);
  const output = new OutputBuffer(64);
  const engine = engineWith('native', output, commands);
  assert.throws(() => engine.applyBatch(Int32Array.from([0, COMMAND_SLOT_BYTES * 2]), 2), /a command slot offset outside the command buffer/);
  assert.throws(() => engine.applyBatch(Int32Array.from([-COMMAND_SLOT_BYTES]), 1), /outside the command buffer/);
  assert.equal(engine.sequence, 0);
  assert.equal(output.position, 0);
});

test('a decoder code past the counters (a foreign or future reject code) is reported and recorded alike by both cores, and counted by neither', { skip }, () => {
  const results = (['typescript', 'native'] as const).map((core) => {
    const commands = new ArrayBuffer(COMMAND_SLOT_BYTES * 2);
    const writer = new CommandSlotWriter(commands);
    writer.write(0, { type: CommandType.Deposit, rejectCode: 200, txId: '', partition: 0, kafkaOffset: 1, account: 1001n, currency: 0, amount: 5n });
    writer.write(COMMAND_SLOT_BYTES, { type: CommandType.Deposit, rejectCode: 200, txId: 'odd-code', partition: 0, kafkaOffset: 2, account: 1001n, currency: 0, amount: 5n });
    const output = new OutputBuffer(64);
    const engine = engineWith(core, output, commands);
    const written = engine.applyBatch(Int32Array.from([0, COMMAND_SLOT_BYTES]), 2);
    return { written, first: output.read(0).outcome, second: output.read(1).outcome, counters: Array.from(engine.counters), hash: engine.stateHash() };
  });
  assert.deepEqual(results[1], results[0]);
  assert.equal(results[1].first.reason, 200);
  assert.equal(results[1].second.reason, 200);
  assert.equal(results[1].counters.reduce((sum, value) => sum + value, 0), 0);
});
