// Test support for the failure tests: a seeded workload of JSON commands with the partition
// and offset each will get in a fresh topic, and the state a single, uninterrupted engine
// reaches over it — the model the database must equal after any number of crashes.

import { SeededRandom } from '../engine/wire_fixtures';
import { homePartitionOfAccountDecimal } from '../engine/partitioner';
import { CurrencyRegistry } from '../engine/currency_registry';
import { CommandSlotViews } from '../engine/command_slot';
import { decodeCommand } from '../engine/command_decoder';
import { BalanceEngine } from '../engine/balance_engine';
import { BalanceTable } from '../engine/balance_table';
import { OutputBuffer } from '../engine/output_buffer';
import { OUTCOME_FLAG_DUPLICATE, OUTCOME_FLAG_RECORDED } from '../engine/output_layout';
import { rejectCodeName } from '../engine/reject_code';

export interface WorkloadMessage {
  readonly key: string;
  readonly value: Buffer;
  readonly partition: number;
  readonly offset: number;
}

export interface ModelOutcome {
  readonly partition: number;
  readonly txId: string;
  readonly offset: number;
  readonly accepted: boolean;
  readonly reason: string | null;
}

/** What a command's result event must say, whoever publishes it (live or republished). */
export interface ModelEvent {
  readonly txId: string;
  readonly status: 'accepted' | 'rejected';
  readonly reason: string | undefined;
  /** The offset of the stored outcome a duplicate repeats; undefined for others. */
  readonly originalOffset: number | undefined;
}

export interface ModelState {
  // "partition/account/currencyCode" → [available, frozen] in minor units.
  readonly balances: Map<string, [bigint, bigint]>;
  readonly outcomes: ModelOutcome[];
  /** "partition/offset" → the command's result event, for every command (recorded or not). */
  readonly events: Map<string, ModelEvent>;
  readonly journalLegs: number;
  readonly messagesPerPartition: number[];
}

export const WORKLOAD_CURRENCIES = [{ code: 'USDT', scale: 6 }, { code: 'BTC', scale: 8 }] as const;

export function buildWorkload(seed: number, count: number, partitions: number, users: number): WorkloadMessage[] {
  const random = new SeededRandom(seed);
  const accounts = Array.from({ length: users }, (_, i) => String(1000 + i * 7));
  const byPartition = new Map<number, string[]>();
  for (const account of accounts) {
    const home = homePartitionOfAccountDecimal(account, partitions);
    byPartition.set(home, [...(byPartition.get(home) ?? []), account]);
  }
  const nextOffset = new Array<number>(partitions).fill(0);
  const messages: WorkloadMessage[] = [];
  const sent: Array<{ key: string; value: Buffer }> = [];
  for (let i = 0; i < count; i++) {
    const account = random.pick(accounts);
    const currency = random.pick(WORKLOAD_CURRENCIES).code;
    const amount = `${1 + random.int(500)}.${random.digits(2)}`;
    const roll = random.int(100);
    let value: string;
    if (roll < 30) value = JSON.stringify({ type: 'deposit', tx_id: `c${i}`, account, currency, amount });
    else if (roll < 42) value = JSON.stringify({ type: 'withdraw', tx_id: `c${i}`, account, currency, amount });
    else if (roll < 54) value = JSON.stringify({ type: 'freeze', tx_id: `c${i}`, account, currency, amount });
    else if (roll < 64) value = JSON.stringify({ type: 'unfreeze', tx_id: `c${i}`, account, currency, amount });
    else if (roll < 88) {
      const to = random.pick(byPartition.get(homePartitionOfAccountDecimal(account, partitions))!);
      value = JSON.stringify({ type: 'transfer', tx_id: `c${i}`, from: account, to, currency, amount });
    } else if (roll < 94 && sent.length > 0) {
      const earlier = random.pick(sent);
      messages.push(place(earlier.key, earlier.value, partitions, nextOffset));
      continue;
    } else if (roll < 97) value = JSON.stringify({ type: 'deposit', tx_id: `c${i >> 1}`, account, currency, amount: '0.01' });
    else value = `{"type":"deposit","tx_id":"m${i}",`;
    const buffer = Buffer.from(value);
    sent.push({ key: account, value: buffer });
    messages.push(place(account, buffer, partitions, nextOffset));
  }
  return messages;
}

function place(key: string, value: Buffer, partitions: number, nextOffset: number[]): WorkloadMessage {
  const partition = homePartitionOfAccountDecimal(key, partitions);
  const offset = nextOffset[partition]!;
  nextOffset[partition] = offset + 1;
  return { key, value, partition, offset };
}

// Runs the workload through one engine, in each partition's log order, with no crash.
/** The model's dedup window per partition: a test whose service window is smaller must not send more commands than that window. */
export const MODEL_DEDUP_WINDOW = 1 << 20;

export function modelRun(messages: readonly WorkloadMessage[], partitions: number): ModelState {
  const registry = CurrencyRegistry.fromConfig(WORKLOAD_CURRENCIES);
  const views = new CommandSlotViews(new ArrayBuffer(512));
  const output = new OutputBuffer(16);
  const table = BalanceTable.create({ capacity: 1 << 16 });
  const engine = new BalanceEngine({ table, commands: views.bytes.buffer, output });
  for (let p = 0; p < partitions; p++) engine.assignPartition(p, { dedupWindow: MODEL_DEDUP_WINDOW });
  const outcomes: ModelOutcome[] = [];
  const events = new Map<string, ModelEvent>();
  let journalLegs = 0;
  for (const message of messages) {
    decodeCommand(message.value, message.partition, message.offset, partitions, registry, views, 0);
    const position = output.position;
    engine.apply(0);
    const { outcome } = output.read(position);
    events.set(`${message.partition}/${message.offset}`, {
      txId: outcome.txId, status: outcome.status === 1 ? 'accepted' : 'rejected', reason: outcome.status === 1 ? undefined : rejectCodeName(outcome.reason),
      originalOffset: (outcome.flags & OUTCOME_FLAG_DUPLICATE) !== 0 ? outcome.originalOffset : undefined,
    });
    if ((outcome.flags & OUTCOME_FLAG_RECORDED) === 0) continue;
    outcomes.push({ partition: message.partition, txId: outcome.txId, offset: message.offset, accepted: outcome.status === 1, reason: outcome.status === 1 ? null : rejectCodeName(outcome.reason) });
    journalLegs += outcome.legCount;
  }
  const balances = new Map<string, [bigint, bigint]>();
  for (let bucket = 0; bucket < table.bucketCount; bucket++) {
    if (!table.isOccupied(bucket)) continue;
    const account = table.account(bucket);
    const partition = account < 1000n ? table.keyPartition(bucket) : homePartitionOfAccountDecimal(account.toString(), partitions);
    balances.set(`${partition}/${account}/${registry.codeOf(table.currency(bucket))}`, [table.available(bucket), table.frozen(bucket)]);
  }
  const messagesPerPartition = new Array<number>(partitions).fill(0);
  for (const message of messages) messagesPerPartition[message.partition]!++;
  return { balances, outcomes, events, journalLegs, messagesPerPartition };
}
