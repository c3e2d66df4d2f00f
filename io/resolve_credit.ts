// `tally resolve-credit <credit tx_id>`: the operator's resolution of a cross-partition credit
// that the credited partition rejected (for example AMOUNT_OVERFLOW on the receiving balance).
// The money sits in the sending partition's transit account; this produces a refund credit to
// the sender on the sending partition (tx_id '~r<partition>-<offset>', so a copy produced
// again soon after is a duplicate) and records the resolution on the outbox row; once
// recorded, it is never produced again. `npm run audit` reports such
// credits until their refund is applied.

import pg from 'pg';
import { CurrencyRegistry } from '../engine/currency_registry';
import { formatAmountBigInt } from '../engine/amount';
import { CommandProducer } from './command_producer';
import { refundTxIdOf } from './durable_outcome';
import { homePartitionOfAccountDecimal } from '../engine/partitioner';
import type { TallyConfig } from './config';

export async function resolveCredit(config: TallyConfig, creditTxId: string): Promise<string> {
  const match = /^~x([0-9]{1,5})-([0-9]{1,16})$/.exec(creditTxId);
  if (match === null) throw new Error(`"${creditTxId}" is not a credit tx_id (they look like ~x<partition>-<offset>; npm run audit lists stranded ones)`);
  const [partition, offset] = [Number(match[1]), Number(match[2])];
  const client = new pg.Client({ connectionString: config.pgUrl, connectionTimeoutMillis: 10_000 });
  await client.connect();
  try {
    const found = await client.query<{
      from_account: string; currency_id: number; amount: string; to_partition: number; resolution: string | null; accepted: boolean | null; reason: string | null;
      refund_accepted: boolean | null; refund_reason: string | null;
    }>(
      `SELECT tally_account_text(o.from_account) AS from_account, o.currency_id, o.amount, o.to_partition, o.resolution, c.accepted, c.reason,
              r.accepted AS refund_accepted, r.reason AS refund_reason
         FROM transfer_outbox o
         LEFT JOIN tx_outcomes c ON c.partition = o.to_partition AND c.tx_id = tally_credit_tx_id(o.partition, o.kafka_offset)
         LEFT JOIN tx_outcomes r ON r.partition = o.partition AND r.tx_id = tally_refund_tx_id(o.partition, o.kafka_offset)
        WHERE o.partition = $1 AND o.kafka_offset = $2`, [partition, offset]);
    const row = found.rows[0];
    if (row === undefined) throw new Error(`no cross-partition transfer at partition ${partition} offset ${offset}`);
    // A refund with an outcome is never produced again: once it has left the sending
    // partition's dedup window a second one would be applied as a new command.
    if (row.refund_accepted === true) throw new Error(`credit ${creditTxId} was refunded already (${refundTxIdOf(partition, offset)} applied); nothing to resolve`);
    if (row.refund_accepted === false) throw new Error(`the refund ${refundTxIdOf(partition, offset)} of credit ${creditTxId} was rejected (${row.refund_reason}); resolve it by hand`);
    // Produced and acknowledged by the broker, not applied yet (the sending partition is
    // stopped or behind): it is in the partition's log and applies when the partition gets
    // there. A second copy more than a dedup window of commands after the first would be
    // applied too: a double refund.
    if (row.resolution === 'refunded') throw new Error(`the refund ${refundTxIdOf(partition, offset)} of credit ${creditTxId} was produced already and waits in partition ${partition}'s log (not applied yet: is the partition applied and caught up?); not producing it again`);
    if (row.accepted === null) throw new Error(`credit ${creditTxId} is still in flight (no outcome on partition ${row.to_partition} yet); nothing to resolve`);
    if (row.accepted) throw new Error(`credit ${creditTxId} was applied on partition ${row.to_partition}; nothing to resolve`);
    // The outcome row says what the tx_id's latest recorded copy got: a copy sent again after
    // the credit left its partition's dedup window moves the row, so a credit applied once and
    // rejected on that later copy reads "rejected". Its journal legs say it was applied; a
    // refund would then pay the sender back money the receiver kept. (A scan of the journal,
    // which has no index by tx_id: an operator's command, run rarely.)
    const legs = await client.query(
      'SELECT partition, tx_id FROM journal WHERE (partition = $1 AND tx_id = $2) OR (partition = $3 AND tx_id = $4) LIMIT 1',
      [row.to_partition, creditTxId, partition, refundTxIdOf(partition, offset)]);
    if (legs.rows.length > 0) {
      const applied = legs.rows[0] as { tx_id: string };
      throw new Error(`${applied.tx_id === creditTxId ? `credit ${creditTxId} was applied on partition ${row.to_partition} (its legs are in the journal; a later copy of it was rejected)` : `credit ${creditTxId} was refunded already (${applied.tx_id} is in the journal)`}; nothing to resolve`);
    }
    // The refund must apply on the sending partition, whose transit account holds the money.
    // If the sender's home moved (the topic's partition count changed), a refund there is
    // WRONG_PARTITION and one sent by key lands elsewhere, where neither the audit nor this
    // tool would see it (and running it again would pay twice): an operator's case.
    const home = homePartitionOfAccountDecimal(row.from_account, config.commandPartitions);
    if (home !== partition) {
      throw new Error(`the sender ${row.from_account} of credit ${creditTxId} now lives on partition ${home}, not on the transfer's partition ${partition} (TALLY_COMMAND_PARTITIONS is ${config.commandPartitions}: the partition count changed); a refund cannot be applied there: resolve it by hand`);
    }
    const registry = CurrencyRegistry.fromConfig(config.currencies);
    const refund = {
      type: 'credit', tx_id: refundTxIdOf(partition, offset), account: row.from_account,
      currency: registry.codeOf(row.currency_id), amount: formatAmountBigInt(BigInt(row.amount), registry.scaleOf(row.currency_id)),
    };
    const producer = await CommandProducer.connect({ brokers: config.kafkaBrokers, topic: config.commandsTopic });
    try {
      // To the sending partition itself, where the refund's outcome is looked for.
      producer.send(row.from_account, Buffer.from(JSON.stringify(refund)), partition);
      await producer.flush();
    } finally {
      await producer.disconnect();
    }
    await client.query(`UPDATE transfer_outbox SET resolution = 'refunded' WHERE partition = $1 AND kafka_offset = $2`, [partition, offset]);
    return `credit ${creditTxId} (rejected: ${row.reason}) refunded to ${row.from_account} as ${refund.tx_id}: ${refund.amount} ${refund.currency}`;
  } finally {
    await client.end();
  }
}
