// bench:fanout — the main thread's work per durable command before its event is published:
// reading the outcome out of the output ring and building its result event (io/durable_outcome.ts).
// Two ways, alternating, several rounds, on the same slots of a real engine's output ring:
//   reference  every resulting balance formatted (system accounts included) into objects,
//              then resultEventJson() filters and joins them (the fan-out before 2026-12-01)
//   slots      the event built straight from the slots, user balances only, no balance
//              objects (what io/service.ts does while no WebSocket client subscribes)
// The mix follows bench/e2e's workload: deposits, withdrawals, transfers, 5-leg settles.
//   node dist/bench/fanout.bench.js [--smoke]

import { performance } from 'node:perf_hooks';
import { CommandType } from '../engine/command_layout';
import { CurrencyRegistry } from '../engine/currency_registry';
import { SeededRandom } from '../engine/wire_fixtures';
import { DurableRange } from '../persist/batcher';
import { FixtureCommand, InProcessEngine } from '../persist/engine_fixture';
import { forEachDurableOutcome, resultEventJson } from '../io/durable_outcome';

const smoke = process.argv.includes('--smoke') || process.env['BENCH_SMOKE'] === '1';
const COMMANDS = smoke ? 5_000 : 60_000;
const ROUNDS = smoke ? 1 : 5;
const PASSES = smoke ? 2 : 10;
const registry = CurrencyRegistry.fromConfig([{ code: 'USDT', scale: 6 }, { code: 'BTC', scale: 8 }]);


function durableRange(): DurableRange {
  const engine = new InProcessEngine({ outputSlotCount: 1 << 18, balanceCapacity: 1 << 16, dedupWindow: 1 << 17, partitions: [0] });
  const seeded = new SeededRandom(11);
  const random = (): number => seeded.nextU32() / 4294967296;
  for (let index = 0; index < COMMANDS; index++) {
    const r = random();
    const account = BigInt(100_000 + Math.floor(random() * 10_000));
    const base = { partition: 0, txId: `e2e-${index}-${Math.floor(random() * 1e9).toString(36)}`, account, currency: r < 0.5 ? 1 : 2 };
    let command: FixtureCommand;
    if (r < 0.4) command = { ...base, type: CommandType.Deposit, amount: BigInt(1 + Math.floor(random() * 1e12)) };
    else if (r < 0.6) command = { ...base, type: CommandType.Withdraw, amount: BigInt(1 + Math.floor(random() * 1e6)) };
    else if (r < 0.8) command = { ...base, type: CommandType.Transfer, counterAccount: account + 1n, amount: BigInt(1 + Math.floor(random() * 1e6)) };
    else {
      command = { ...base, type: CommandType.Settle, legs: [
        { account, currency: 1, home: 0, available: -10_000n, frozen: 0n },
        { account: 1n, currency: 1, home: 0, available: 10n, frozen: 0n },
        { account: 2n, currency: 1, home: 0, available: 9_990n, frozen: 0n },
        { account: 2n, currency: 2, home: 0, available: -3n, frozen: 0n },
        { account, currency: 2, home: 0, available: 3n, frozen: 0n },
      ] };
    }
    engine.apply(command);
  }
  engine.publish();
  return { ring: engine.ring, firstPosition: 0, lastPosition: engine.ring.publishedSequence(), commandCount: COMMANDS, unwrittenPartitions: [] };
}

function main(): void {
  const range = durableRange();
  let checksum = 0;
  const ways = {
    reference: (): void => forEachDurableOutcome(range, registry, (outcome) => { checksum += resultEventJson(outcome).length; }, true),
    slots: (): void => forEachDurableOutcome(range, registry, (outcome) => { checksum += outcome.eventJson.length; }, false),
  };
  const best: Record<keyof typeof ways, number> = { reference: Infinity, slots: Infinity };
  for (let round = 0; round < ROUNDS; round++) {
    for (const name of Object.keys(ways) as (keyof typeof ways)[]) {
      const startedMs = performance.now();
      for (let pass = 0; pass < PASSES; pass++) ways[name]();
      const nsPerCommand = ((performance.now() - startedMs) * 1e6) / (PASSES * COMMANDS);
      best[name] = Math.min(best[name], nsPerCommand);
      console.log(`round ${round + 1} ${name.padEnd(9)} ${nsPerCommand.toFixed(0)} ns per command`);
    }
  }
  console.log(`bench:fanout: ${COMMANDS} commands, best of ${ROUNDS} rounds of ${PASSES} passes; reference ${best.reference.toFixed(0)} ns, slots ${best.slots.toFixed(0)} ns per command (checksum ${checksum})`);
  console.log(JSON.stringify({
    bench: 'fanout', smoke, commands: COMMANDS, referenceNsPerCommand: Math.round(best.reference), slotsNsPerCommand: Math.round(best.slots),
    speedup: Math.round((best.reference / best.slots) * 100) / 100, checksum,
  }));
}

main();
