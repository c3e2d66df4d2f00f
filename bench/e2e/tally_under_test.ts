// Tally as operators run it: `tally start` spawned as a child process (io/tally_process.ts)
// with a scratch database, unique commands and events topics of E2E_PARTITIONS partitions and
// a consumer group of its own; every other setting is the default.

import type { ChildProcess } from 'node:child_process';
import { createScratchDatabase } from '../../persist/scratch_database';
import { spawnTally } from '../../io/tally_process';
import { createTopic, testKafkaBrokers, testPgUrl, uniqueName } from '../../io/test_services';
import { E2E_CURRENCIES, E2E_PARTITIONS } from './e2e_workload';
import { SystemUnderTest, keepLog, terminate, waitForOutput } from './system_under_test';

const START_TIMEOUT_MS = 120_000;
const READY_POLL_MS = 100;
const STOP_GRACE_MS = 60_000;

export async function startTally(logPath: string, extraEnv: Record<string, string> = {}): Promise<SystemUnderTest> {
  const commandsTopic = uniqueName('tally.bench.e2e.commands');
  const eventsTopic = uniqueName('tally.bench.e2e.events');
  await createTopic(commandsTopic, E2E_PARTITIONS);
  await createTopic(eventsTopic, E2E_PARTITIONS);
  const database = await createScratchDatabase(testPgUrl, 'tally_bench_e2e');
  const tally = spawnTally({
    TALLY_KAFKA_BROKERS: testKafkaBrokers, TALLY_PG_URL: database.url, TALLY_COMMANDS_TOPIC: commandsTopic,
    TALLY_EVENTS_TOPIC: eventsTopic, TALLY_COMMAND_PARTITIONS: String(E2E_PARTITIONS), TALLY_CONSUMER_GROUP: uniqueName('tally-e2e'),
    TALLY_CURRENCIES: E2E_CURRENCIES, TALLY_LOG_LEVEL: 'info', ...extraEnv,
  });
  keepLog(tally.child, logPath);
  const outputTail = (): string => tally.output.join('').slice(-8000);
  try {
    await waitForOutput(tally.child, outputTail, '"tally started"', START_TIMEOUT_MS);
    await waitUntilServing(tally.child, httpPortOf(outputTail()), START_TIMEOUT_MS);
  } catch (error) {
    await terminate(tally.child, 1000);
    await database.drop();
    throw error;
  }
  return {
    name: 'tally', commandsTopic, eventsTopic, child: tally.child, databaseName: database.name, preloadByCommands: true, outputTail,
    stop: async () => {
      await terminate(tally.child, STOP_GRACE_MS);
      await database.drop();
    },
  };
}

function httpPortOf(output: string): number {
  const line = output.split('\n').find((text) => text.includes('"tally started"'));
  const port = line === undefined ? undefined : (JSON.parse(line) as { port?: number }).port;
  if (port === undefined) throw new Error(`no HTTP port in the "tally started" line: ${line}`);
  return port;
}

/**
 * "tally started" comes before the consumer group has assigned the partitions; Tally serves
 * once /readyz answers 200 with every partition recovered and applied.
 */
async function waitUntilServing(child: ChildProcess, port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`tally exited (${child.exitCode}) before it was ready`);
    const response = await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => undefined);
    const body = response === undefined ? undefined : ((await response.json()) as { partitions?: number[] });
    if (response?.status === 200 && body?.partitions?.length === E2E_PARTITIONS) return;
    if (Date.now() > deadline) throw new Error(`tally not ready with ${E2E_PARTITIONS} partitions within ${timeoutMs} ms: ${JSON.stringify(body)}`);
    await new Promise((resolve) => setTimeout(resolve, READY_POLL_MS));
  }
}
