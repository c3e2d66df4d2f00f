// The baseline (bench/baseline/) spawned as a child process with a scratch database of its
// own on the same PostgreSQL server, bulk-loaded with the state that the workload's preload
// commands leave, and its own commands and events topics on the same broker.

import { spawn } from 'node:child_process';
import path from 'node:path';
import { ensureDatabase, withDatabase } from '../../persist/database';
import { createTopic, testKafkaBrokers, testPgUrl, uniqueName } from '../../io/test_services';
import { createBaselineSchema, preloadBalances } from '../baseline/baseline_schema';
import { parseAmount } from '../baseline/decimal_amount';
import { E2E_CURRENCIES, E2E_PARTITIONS, FIRST_USER_ACCOUNT, PRELOAD } from './e2e_workload';
import { SystemUnderTest, keepLog, terminate, waitForOutput } from './system_under_test';
import pg from 'pg';

const START_TIMEOUT_MS = 60_000;
const STOP_GRACE_MS = 30_000;

export async function startBaseline(logPath: string, accounts: number, concurrency: number): Promise<SystemUnderTest> {
  const commandsTopic = uniqueName('baseline.bench.e2e.commands');
  const eventsTopic = uniqueName('baseline.bench.e2e.events');
  await createTopic(commandsTopic, E2E_PARTITIONS);
  await createTopic(eventsTopic, E2E_PARTITIONS);
  const name = uniqueName('baseline_bench_e2e');
  const url = withDatabase(testPgUrl, name);
  await ensureDatabase(url);
  const drop = (): Promise<void> => dropDatabase(name);
  const output: string[] = [];
  try {
    await createBaselineSchema(url);
    await preloadBalances(url, FIRST_USER_ACCOUNT, accounts, Object.entries(PRELOAD).map(([code, preload]) => {
      const deposit = parseAmount(preload.deposit, preload.scale)!;
      const frozen = parseAmount(preload.freeze, preload.scale)!;
      return { code, available: deposit - frozen, frozen };
    }));
  } catch (error) {
    await drop();
    throw error;
  }
  const child = spawn(process.execPath, [path.join(__dirname, '..', 'baseline', 'baseline_service.js')], {
    env: {
      ...process.env, KAFKAJS_NO_PARTITIONER_WARNING: '1', BASELINE_KAFKA_BROKERS: testKafkaBrokers, BASELINE_PG_URL: url,
      BASELINE_COMMANDS_TOPIC: commandsTopic, BASELINE_EVENTS_TOPIC: eventsTopic, BASELINE_CONSUMER_GROUP: uniqueName('baseline-e2e'),
      BASELINE_CONCURRENCY: String(concurrency), BASELINE_CURRENCIES: E2E_CURRENCIES,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const keep = (chunk: Buffer): void => {
    output.push(chunk.toString());
    if (output.length > 2000) output.splice(0, 1000);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  keepLog(child, logPath);
  const outputTail = (): string => output.join('').slice(-8000);
  try {
    await waitForOutput(child, outputTail, 'baseline ready', START_TIMEOUT_MS);
  } catch (error) {
    await terminate(child, 1000);
    await drop();
    throw error;
  }
  return {
    name: 'baseline', commandsTopic, eventsTopic, child, databaseName: name, preloadByCommands: false, outputTail,
    stop: async () => {
      await terminate(child, STOP_GRACE_MS);
      await drop();
    },
  };
}

async function dropDatabase(name: string): Promise<void> {
  const admin = new pg.Client({ connectionString: withDatabase(testPgUrl, 'postgres') });
  await admin.connect();
  try {
    await admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
  } finally {
    await admin.end();
  }
}
