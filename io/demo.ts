// `npm run demo`: runs the engine service in this process, sends a short load of commands
// through the real broker, waits until all of it is committed to PostgreSQL, and prints the
// balances it serves over real HTTP and the audit's verdict. Re-running it is safe: tx_ids
// are the same every run, so repeats are answered from the dedup window (recovered from
// PostgreSQL at start-up) and the balances come out identical.

import { loadConfig } from './config';
import { createLogger } from './logger';
import { ensureDatabase } from '../persist/database';
import { migrate } from '../persist/migrate';
import { runAudit } from '../persist/audit';
import { Service } from './service';
import { CommandProducer } from './command_producer';
import { homePartitionOfAccountDecimal } from '../engine/partitioner';
import { COUNTER_DUPLICATES } from '../engine/balance_engine';
import { rejectCodeName } from '../engine/reject_code';

const USERS = 1000;
const BULK_COMMANDS = 50_000;
const SHOWN_ACCOUNTS = ['1000', '1001', '1002', '1003', '1004', '1005'];

type Command = Record<string, unknown> & { account?: string; from?: string };

function demoCommands(partitions: number): Command[] {
  const user = (i: number): string => String(1000 + i);
  const commands: Command[] = [];
  for (let i = 0; i < USERS; i++) {
    commands.push({ type: 'deposit', tx_id: `demo-dep-usdt-${i}`, account: user(i), currency: 'USDT', amount: '1000' });
    commands.push({ type: 'deposit', tx_id: `demo-dep-btc-${i}`, account: user(i), currency: 'BTC', amount: '0.5' });
  }
  commands.push({ type: 'freeze', tx_id: 'demo-freeze-1001', account: '1001', currency: 'USDT', amount: '150' });
  commands.push({ type: 'settle', tx_id: 'demo-settle-1001', account: '1001', legs: [
    { account: '1001', currency: 'USDT', available: '0', frozen: '-100' },
    { account: '1', currency: 'USDT', available: '0.1', frozen: '0' },
    { account: '2', currency: 'USDT', available: '99.9', frozen: '0' },
    { account: '2', currency: 'BTC', available: '-0.001', frozen: '0' },
    { account: '1001', currency: 'BTC', available: '0.001', frozen: '0' },
  ] });
  commands.push({ type: 'withdraw', tx_id: 'demo-withdraw-too-much', account: '1002', currency: 'USDT', amount: '5000' });
  commands.push({ type: 'withdraw', tx_id: 'demo-withdraw-1003', account: '1003', currency: 'USDT', amount: '12.5' });
  commands.push({ type: 'deposit', tx_id: 'demo-dep-usdt-4', account: '1004', currency: 'USDT', amount: '1000' });
  // Transfers between users of one partition; a later issue adds cross-partition transit.
  const byPartition = new Map<number, string[]>();
  for (let i = 0; i < USERS; i++) {
    const partition = homePartitionOfAccountDecimal(user(i), partitions);
    byPartition.set(partition, [...(byPartition.get(partition) ?? []), user(i)]);
  }
  for (let n = 0; commands.length < BULK_COMMANDS; n++) {
    const group = byPartition.get(n % partitions) ?? [];
    if (group.length < 2) continue;
    const from = group[(n * 7) % group.length]!;
    const to = group[(n * 13 + 1) % group.length]!;
    if (from !== to) commands.push({ type: 'transfer', tx_id: `demo-tr-${n}`, from, to, currency: 'USDT', amount: `${1 + (n % 5)}.25` });
  }
  return commands;
}

async function waitUntilApplied(service: Service, target: Map<number, number>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const behind = (): boolean => [...target].some(([partition, offset]) => service.durableOffsetOf(partition) < offset);
  while (behind()) {
    if (Date.now() > deadline) throw new Error(`the engine did not apply the demo load within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function printBalances(port: number): Promise<void> {
  console.log('\nbalances served by GET /v1/accounts/{account}/balances:');
  for (const account of [...SHOWN_ACCOUNTS, '0', '1', '2']) {
    const response = await fetch(`http://127.0.0.1:${port}/v1/accounts/${account}/balances`);
    const body = (await response.json()) as { balances: Array<{ currency: string; available: string; frozen: string }> };
    const cells = body.balances.map((b) => `${b.currency} available ${b.available} frozen ${b.frozen}`).join(' | ');
    console.log(`  account ${account.padStart(5)}: ${cells || '(none)'}`);
  }
}

async function main(): Promise<void> {
  const config = loadConfig({ TALLY_DEDUP_WINDOW: '1000000', TALLY_PARTITION_ASSIGNMENT: 'static', TALLY_TRANSFER_SECRET: 'demo-secret-not-for-production', TALLY_HTTP_PORT: '0', TALLY_LOG_LEVEL: 'warn', ...process.env });
  const log = createLogger(config.logLevel);
  await ensureDatabase(config.pgUrl);
  await migrate(config.pgUrl);
  const service = await Service.start(config, log);
  const producer = await CommandProducer.connect({ brokers: config.kafkaBrokers, topic: config.commandsTopic });
  try {
    const commands = demoCommands(config.commandPartitions);
    const started = process.hrtime.bigint();
    for (const command of commands) producer.send(String(command.account ?? command.from), Buffer.from(JSON.stringify(command)));
    producer.send('1005', Buffer.from('{"type":"deposit","tx_id":"demo-malformed"'));
    await producer.flush();
    await waitUntilApplied(service, producer.lastOffsets, 120_000);
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    console.log(`sent ${commands.length + 1} commands through Kafka; all applied by the engine and committed to PostgreSQL in ${seconds.toFixed(2)} s`);
    await printBalances(service.http.port);
    const findings = await runAudit(config.pgUrl);
    console.log(findings.length === 0 ? '\naudit of the database: passed (conservation, balances = journal, one outcome per tx)' : `\naudit FAILED: ${JSON.stringify(findings)}`);
    // The demo's last word is the audit's: a failed one fails the command too.
    if (findings.length > 0) process.exitCode = 1;
    const report = await service.engine.report();
    const rejected = report.counters.slice(1, COUNTER_DUPLICATES).map((count, i) => (count > 0 ? `${rejectCodeName(i + 1)} ${count}` : '')).filter(Boolean);
    console.log(`\noutcomes: ${report.counters[0]} accepted, rejected: ${rejected.join(', ') || 'none'}, duplicates answered from the dedup window: ${report.counters[COUNTER_DUPLICATES]}`);
    console.log(`engine state hash ${report.stateHash} (counts cover this run; balances are identical on every run)`);
  } finally {
    await producer.disconnect();
    await service.stop();
  }
}

main().then(
  () => process.exit(process.exitCode ?? 0),
  (error: unknown) => {
    console.error(`demo failed: ${(error as Error).stack ?? String(error)}`);
    process.exit(1);
  },
);
