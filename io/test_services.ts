// Where the tests find the real services that `npm run services:up` started. Tests use the
// same environment variables as the service, so CI and a developer's shell agree.

import { randomBytes } from 'node:crypto';
import Kafka from '@confluentinc/kafka-javascript';

export const testKafkaBrokers = process.env['TALLY_KAFKA_BROKERS'] ?? '127.0.0.1:9092';
export const testPgUrl = process.env['TALLY_PG_URL'] ?? 'postgres://postgres@127.0.0.1:5432/tally';

// A name no other test run uses, so tests can run in parallel and leave no shared state.
export function uniqueName(prefix: string): string {
  return `${prefix}_${process.pid}_${randomBytes(4).toString('hex')}`;
}

// Creates a topic of its own for a test or benchmark on the test broker.
export function createTopic(topic: string, partitions: number, config?: Record<string, string>): Promise<void> {
  const admin = Kafka.AdminClient.create({ 'bootstrap.servers': testKafkaBrokers });
  return new Promise((resolve, reject) => {
    admin.createTopic({ topic, num_partitions: partitions, replication_factor: 1, ...(config === undefined ? {} : { config }) }, 10_000, (err) => {
      admin.disconnect();
      if (err) reject(err);
      else resolve();
    });
  });
}
