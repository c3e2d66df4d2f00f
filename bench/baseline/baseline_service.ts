// The conventional balance service the end-to-end benchmark compares Tally with, run as a
// child process of its own: a kafkajs consumer of the commands topic, one PostgreSQL
// transaction per command (command_transaction.ts), then a result event in the contract's
// format produced with kafkajs and awaited. Partitions are consumed concurrently, one
// pooled connection each, so commands of different partitions overlap and PostgreSQL can
// group their commits; within a partition commands stay in order. Offsets are committed by
// kafkajs after processing (at-least-once; the tx_outcomes lookup makes a redelivery
// harmless).
//
//   BASELINE_PG_URL=… BASELINE_COMMANDS_TOPIC=… BASELINE_EVENTS_TOPIC=… node dist/bench/baseline/baseline_service.js
//
// Prints "baseline ready" once it has joined its consumer group; stops on SIGTERM.

import { Kafka, logLevel } from 'kafkajs';
import pg from 'pg';
import { applyCommand, Outcome } from './command_transaction';

interface BaselineConfig {
  readonly brokers: string[];
  readonly commandsTopic: string;
  readonly eventsTopic: string;
  readonly pgUrl: string;
  readonly groupId: string;
  readonly concurrency: number;
  readonly scales: ReadonlyMap<string, number>;
}

function configFromEnvironment(env: NodeJS.ProcessEnv): BaselineConfig {
  const need = (name: string): string => {
    const value = env[name];
    if (value === undefined || value === '') throw new Error(`baseline: ${name} is required`);
    return value;
  };
  const scales = new Map((env['BASELINE_CURRENCIES'] ?? 'USDT:6,BTC:8').split(',').map((entry) => {
    const [code, scale] = entry.split(':');
    return [code!, Number(scale ?? 8)] as const;
  }));
  return {
    brokers: (env['BASELINE_KAFKA_BROKERS'] ?? '127.0.0.1:9092').split(','),
    commandsTopic: need('BASELINE_COMMANDS_TOPIC'),
    eventsTopic: need('BASELINE_EVENTS_TOPIC'),
    pgUrl: need('BASELINE_PG_URL'),
    groupId: env['BASELINE_CONSUMER_GROUP'] ?? 'baseline',
    concurrency: Number(env['BASELINE_CONCURRENCY'] ?? 8),
    scales,
  };
}

function eventJson(outcome: Outcome, partition: number, offset: string): string {
  if (outcome.accepted) return JSON.stringify({ tx_id: outcome.txId, status: 'accepted', partition, offset, balances: outcome.balances ?? [] });
  return JSON.stringify({ tx_id: outcome.txId, status: 'rejected', reason: outcome.reason, partition, offset });
}

async function main(): Promise<void> {
  const config = configFromEnvironment(process.env);
  const pool = new pg.Pool({ connectionString: config.pgUrl, max: config.concurrency });
  // Like most services written quickly, it gives up on a lost database connection; the benchmark reports it.
  pool.on('error', (error) => {
    console.error(`baseline: PostgreSQL connection lost: ${error.message}`);
    process.exit(1);
  });
  const kafka = new Kafka({ clientId: 'baseline', brokers: config.brokers, logLevel: logLevel.WARN });
  const producer = kafka.producer();
  const consumer = kafka.consumer({ groupId: config.groupId });
  await producer.connect();
  await consumer.connect();
  await consumer.subscribe({ topic: config.commandsTopic, fromBeginning: true });
  consumer.on(consumer.events.GROUP_JOIN, () => console.log('baseline ready'));
  await consumer.run({
    partitionsConsumedConcurrently: config.concurrency,
    eachMessage: async ({ partition, message }) => {
      const client = await pool.connect();
      let outcome: Outcome;
      try {
        outcome = await applyCommand(client, message.value ?? Buffer.alloc(0), partition, message.offset, config.scales);
      } finally {
        client.release();
      }
      await producer.send({ topic: config.eventsTopic, messages: [{ key: message.key, value: eventJson(outcome, partition, message.offset) }] });
    },
  });
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', () => resolve());
    process.once('SIGINT', () => resolve());
  });
  await consumer.disconnect();
  await producer.disconnect();
  await pool.end();
}

main().then(() => process.exit(0), (error: unknown) => {
  console.error(`baseline failed: ${(error as Error).stack ?? String(error)}`);
  process.exit(1);
});
