// Shared steps of the failure tests (kill -9, zombie, PostgreSQL restart): a topic of their
// own, the stored next offsets, and the comparison of the database with a model run.

import assert from 'node:assert/strict';
import Kafka from '@confluentinc/kafka-javascript';
import pg from 'pg';
import { uniqueName } from './test_services';
export { createTopic } from './test_services';
import type { ModelState } from './test_workload';
import type { Service } from './service';

export async function nextOffsets(client: pg.Client, topic: string, partitions: number): Promise<number[]> {
  const rows = (await client.query<{ partition: number; next_offset: string }>('SELECT partition, next_offset FROM partition_leases WHERE topic = $1', [topic])).rows;
  const offsets = new Array<number>(partitions).fill(0);
  for (const row of rows) offsets[row.partition] = Number(row.next_offset);
  return offsets;
}

export async function compareWithModel(client: pg.Client, model: ModelState): Promise<void> {
  const balances = await client.query<{ partition: number; account: string; code: string; available: string; frozen: string }>(
    'SELECT b.partition, tally_account_text(b.account) AS account, c.code, b.available, b.frozen FROM balances b JOIN currencies c ON c.id = b.currency_id');
  const stored = new Map(balances.rows.map((r) => [`${r.partition}/${r.account}/${r.code}`, [BigInt(r.available), BigInt(r.frozen)]]));
  for (const [key, [available, frozen]] of model.balances) {
    if (available === 0n && frozen === 0n && !stored.has(key)) continue;
    assert.deepEqual(stored.get(key), [available, frozen], `balance ${key}`);
  }
  assert.equal(stored.size, [...model.balances.keys()].filter((k) => stored.has(k)).length, 'no balance the model does not have');
  const outcomes = await client.query<{ partition: number; tx_id: string; kafka_offset: string; accepted: boolean; reason: string | null }>(
    'SELECT partition, tx_id, kafka_offset, accepted, reason FROM tx_outcomes ORDER BY partition, kafka_offset');
  const expected = [...model.outcomes].sort((a, b) => a.partition - b.partition || a.offset - b.offset);
  assert.deepEqual(outcomes.rows.map((r) => [r.partition, r.tx_id, Number(r.kafka_offset), r.accepted, r.reason]),
    expected.map((o) => [o.partition, o.txId, o.offset, o.accepted, o.reason]), 'outcomes equal the model, each tx_id once');
  const journal = await client.query<{ legs: string }>('SELECT COUNT(*) AS legs FROM journal');
  assert.equal(Number(journal.rows[0]!.legs), model.journalLegs, 'journal legs equal the model');
}

// Everything a flush can write, as one comparable string: balances, journal, outcomes and
// the partitions' next offsets (lease owners and expiries are left out: renewals touch them).
export async function ledgerSnapshot(client: pg.Client): Promise<string> {
  const parts = await Promise.all([
    client.query('SELECT partition, account, currency_id, available, frozen, last_offset FROM balances ORDER BY 1, 2, 3'),
    client.query('SELECT COUNT(*) AS legs, COALESCE(SUM(delta_available), 0) AS available FROM journal'),
    client.query('SELECT partition, tx_id, kafka_offset, accepted, reason FROM tx_outcomes ORDER BY 1, 2'),
    client.query('SELECT topic, partition, next_offset, fencing_token FROM partition_leases ORDER BY 1, 2'),
  ]);
  return JSON.stringify(parts.map((p) => p.rows));
}

// The HTTP port a `tally start` child logged when it started.
export function httpPortOf(output: readonly string[]): number | undefined {
  const match = /"port":(\d+)[^\n]*"msg":"tally started"/.exec(output.join(''));
  return match === null ? undefined : Number(match[1]);
}

/** GET /readyz of a spawned instance, found by its "tally started" log line; 0 while it does not answer. */
export async function readyStatusOf(output: readonly string[]): Promise<number> {
  const port = httpPortOf(output);
  if (port === undefined) return 0;
  try {
    return (await fetch(`http://127.0.0.1:${port}/readyz`)).status;
  } catch {
    return 0;
  }
}

/** The sum of a metric's samples on GET /metrics whose labels contain `labels` (e.g. 'reason="fenced"'); 0 if none. */
export async function metricValue(port: number, name: string, labels = ''): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    const match = /^([a-z_]+)(\{[^}]*\})? (\S+)$/.exec(line);
    if (match === null || match[1] !== name || !(match[2] ?? '').includes(labels)) continue;
    sum += Number(match[3]);
  }
  return sum;
}

/** A result event as the failure tests look at it. */
export interface SeenEvent {
  readonly partition: number;
  readonly offset: number;
  readonly txId: string;
  readonly replayed: boolean;
  readonly status: string;
  readonly reason: string | undefined;
  readonly originalOffset: number | undefined;
}

/** Every result event of the topic from the start, read until none came for `quietMs`. */
export async function readAllEvents(brokers: string, topic: string, quietMs = 3000, timeoutMs = 60_000): Promise<SeenEvent[]> {
  const consumer = new Kafka.KafkaConsumer({ 'bootstrap.servers': brokers, 'group.id': uniqueName('events-check'), 'enable.auto.commit': false }, { 'auto.offset.reset': 'earliest' });
  await new Promise<void>((resolve, reject) => consumer.connect({ timeout: 10_000 }, (error) => (error ? reject(error) : resolve())));
  const events: SeenEvent[] = [];
  try {
    consumer.subscribe([topic]);
    consumer.setDefaultConsumeTimeout(100);
    const deadline = Date.now() + timeoutMs;
    let lastSeen = Date.now();
    while (Date.now() - lastSeen < quietMs && Date.now() < deadline) {
      const messages = await new Promise<Kafka.Message[]>((resolve, reject) => consumer.consume(1000, (error, batch) => (error ? reject(error) : resolve(batch))));
      // The quiet period counts from the group's assignment: joining a new group (and, on a
      // fresh broker, creating its offsets topic) can take longer than the period itself.
      if (consumer.assignments().length === 0) lastSeen = Date.now();
      for (const message of messages) {
        const event = JSON.parse(message.value!.toString()) as { tx_id: string; partition: number; offset: string; replayed?: boolean; status: string; reason?: string; original_offset?: string };
        events.push({
          partition: event.partition, offset: Number(event.offset), txId: event.tx_id, replayed: event.replayed === true, status: event.status, reason: event.reason,
          originalOffset: event.original_offset === undefined ? undefined : Number(event.original_offset),
        });
      }
      if (messages.length > 0) lastSeen = Date.now();
    }
  } finally {
    await new Promise<void>((resolve) => consumer.disconnect(() => resolve()));
  }
  return events;
}

/** As a paused old owner's flush holds it: partition 0's lease row, locked FOR UPDATE in an open transaction. */
export async function lockLeaseRowOfPartition0(databaseUrl: string, topic: string): Promise<pg.Client> {
  const locker = new pg.Client({ connectionString: databaseUrl });
  await locker.connect();
  await locker.query('INSERT INTO partition_leases (topic, partition, owner, fencing_token) VALUES ($1, 0, $2, 1)', [topic, 'a-paused-zombie']);
  await locker.query('BEGIN');
  await locker.query('SELECT * FROM partition_leases WHERE topic = $1 AND partition = 0 FOR UPDATE', [topic]);
  return locker;
}

/** Waits until an in-process service applies all `partitions` and reports ready. */
export async function waitServiceReady(service: Service, partitions: number): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (!(service.isReady() && service.ownedPartitions().length === partitions)) {
    assert.ok(Date.now() < deadline, 'the service takes every partition and reports ready');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
