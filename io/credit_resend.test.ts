// A cross-partition credit that its partition passes without an outcome is sent again, so
// the money does not stay in transit: the real service, broker and PostgreSQL, with a balance
// table so small that the credited partition cannot create the receiving balance
// (BALANCE_TABLE_FULL, which is not recorded). The audit reports the credit while it waits;
// once the instance restarts with room, the relay sends it again and it is applied.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { loadConfig, TallyConfig } from './config';
import { createLogger } from './logger';
import { Service } from './service';
import { CommandProducer } from './command_producer';
import { createTopic, testKafkaBrokers, testPgUrl, uniqueName } from './test_services';
import { createScratchDatabase } from '../persist/scratch_database';
import { runAudit } from '../persist/audit';
import { waitServiceReady } from './failure_support';
import { waitFor } from './tally_process';
import { homePartitionOfAccountDecimal } from '../engine/partitioner';

const PARTITIONS = 2;
const TABLE_CAPACITY_MIN = 1024;
const FILLERS = 1500;

function serviceConfig(topic: string, events: string, database: string, group: string, capacity: number): TallyConfig {
  return loadConfig({
    TALLY_KAFKA_BROKERS: testKafkaBrokers, TALLY_PG_URL: database, TALLY_COMMANDS_TOPIC: topic, TALLY_EVENTS_TOPIC: events,
    TALLY_COMMAND_PARTITIONS: String(PARTITIONS), TALLY_CONSUMER_GROUP: group, TALLY_INSTANCE_ID: uniqueName('resend'),
    TALLY_HTTP_PORT: '0', TALLY_DEDUP_WINDOW: '8192', TALLY_BALANCE_CAPACITY: String(capacity), TALLY_CURRENCIES: 'USDT:6',
    TALLY_KAFKA_SESSION_TIMEOUT_MS: '6000',
  }, undefined);
}


test('a credit its partition passed without an outcome (balance table full) is sent again and applied once there is room', { timeout: 240_000 }, async () => {
  const topic = uniqueName('tally.commands.resend');
  const eventsTopic = uniqueName('tally.events.resend');
  await createTopic(topic, PARTITIONS);
  await createTopic(eventsTopic, PARTITIONS);
  const database = await createScratchDatabase(testPgUrl, 'tally_resend');
  const group = uniqueName('tally-resend');
  const client = new pg.Client({ connectionString: database.url });
  await client.connect();
  let service: Service | undefined = await Service.start(serviceConfig(topic, eventsTopic, database.url, group, TABLE_CAPACITY_MIN), createLogger('error'));
  const producer = await CommandProducer.connect({ brokers: testKafkaBrokers, topic });
  const send = (key: string, value: object): void => producer.send(key, Buffer.from(JSON.stringify(value)));
  const outcomeOf = async (txId: string): Promise<{ accepted: boolean; reason: string | null } | undefined> =>
    (await client.query<{ accepted: boolean; reason: string | null }>('SELECT accepted, reason FROM tx_outcomes WHERE tx_id = $1', [txId])).rows[0];
  try {
    await waitServiceReady(service, PARTITIONS);
    const users = Array.from({ length: 200 }, (_, i) => String(7000 + i));
    const sender = users[0]!;
    const home = homePartitionOfAccountDecimal(sender, PARTITIONS);
    const [known, receiver] = users.filter((u) => homePartitionOfAccountDecimal(u, PARTITIONS) !== home);
    // The sender, a known receiver and both partitions' transit balances exist before the table fills.
    send(sender, { type: 'deposit', tx_id: 'fund', account: sender, currency: 'USDT', amount: '100' });
    send(known!, { type: 'deposit', tx_id: 'known', account: known!, currency: 'USDT', amount: '1' });
    send(sender, { type: 'transfer', tx_id: 'warm-up', from: sender, to: known!, currency: 'USDT', amount: '1' });
    await producer.flush();
    await waitFor('the warm-up credit', 60_000, async () => (await client.query("SELECT 1 FROM tx_outcomes WHERE tx_id LIKE '~x%' AND accepted")).rowCount === 1);
    for (let i = 0; i < FILLERS; i++) {
      const account = String(100_000 + i);
      send(account, { type: 'deposit', tx_id: `fill-${i}`, account, currency: 'USDT', amount: '1' });
    }
    await producer.flush();
    await waitFor('the fillers to be durable', 120_000, async () => {
      const rows = await client.query<{ next: string }>('SELECT COALESCE(SUM(next_offset), 0) AS next FROM partition_leases WHERE topic = $1', [topic]);
      return Number(rows.rows[0]!.next) >= 3 + 1 + FILLERS; // 3 set-up commands, the warm-up credit, the fillers
    });

    send(sender, { type: 'transfer', tx_id: 'to-new', from: sender, to: receiver!, currency: 'USDT', amount: '7' });
    await producer.flush();
    await waitFor('the transfer to be debited', 60_000, async () => (await outcomeOf('to-new'))?.accepted === true);
    const row = (await client.query<{ partition: number; kafka_offset: string }>('SELECT partition, kafka_offset FROM transfer_outbox WHERE tx_id = $1', ['to-new'])).rows[0]!;
    const creditTxId = `~x${row.partition}-${row.kafka_offset}`;
    // The credit reaches its partition, which has no room for the receiver's balance: no
    // outcome is recorded, the audit says so (and the transit still holds the money).
    await waitFor('the audit to report the credit passed unapplied', 60_000, async () =>
      (await runAudit(database.url)).some((finding) => finding.check === 'no_credit_passed_unapplied' && finding.rows.some((r) => r['credit_tx_id'] === creditTxId)));
    assert.equal(await outcomeOf(creditTxId), undefined, 'the full table recorded no outcome for the credit');

    await service.stop();
    service = await Service.start(serviceConfig(topic, eventsTopic, database.url, group, 4 * TABLE_CAPACITY_MIN), createLogger('error'));
    await waitServiceReady(service, PARTITIONS);
    await waitFor('the credit to be sent again and applied', 60_000, async () => (await outcomeOf(creditTxId))?.accepted === true);
    const balance = await (await fetch(`http://127.0.0.1:${service.http.port}/v1/accounts/${receiver}/balances/USDT`)).json() as { balances: Array<{ available: string }> };
    assert.deepEqual(balance.balances.map((b) => b.available), ['7'], 'the receiver got the amount once');
    assert.match(await (await fetch(`http://127.0.0.1:${service.http.port}/metrics`)).text(), /tally_credits_resent_unapplied_total [1-9]/, 'the resend is counted');
    await waitFor('the outbox row to be confirmed', 30_000, async () =>
      (await client.query<{ confirmed: boolean }>('SELECT confirmed FROM transfer_outbox WHERE tx_id = $1', ['to-new'])).rows[0]!.confirmed);
    assert.deepEqual(await runAudit(database.url), [], 'applied: the audit passes');
  } finally {
    await producer.disconnect();
    await service?.stop();
    await client.end();
    await database.drop();
  }
});
