-- A credit the broker acknowledged can still pass its partition without an outcome: the
-- credited partition's balance table was full (BALANCE_TABLE_FULL is not recorded, so the
-- same command may be retried once there is room), or the broker lost the message. Marking
-- the row sent then left the money in transit for good. The relay now keeps the offset its
-- credit got on the credited partition (`sent_offset`) and sends it again once that
-- partition's durable next offset has passed it with no outcome for the credit's tx_id;
-- `confirmed` marks rows whose credit has an outcome (applied or rejected), so the sweep only
-- looks at the few still open. docs/persistence.md "Transfers across partitions".
ALTER TABLE transfer_outbox
  ADD COLUMN sent_offset bigint,
  ADD COLUMN confirmed boolean NOT NULL DEFAULT false;
UPDATE transfer_outbox o SET confirmed = true
 WHERE EXISTS (SELECT 1 FROM tx_outcomes c WHERE c.partition = o.to_partition AND c.tx_id = tally_credit_tx_id(o.partition, o.kafka_offset));
-- Unsent rows are unconfirmed too: one partial index serves the relay's every query.
DROP INDEX transfer_outbox_unsent;
CREATE INDEX transfer_outbox_unconfirmed ON transfer_outbox (partition) WHERE NOT confirmed;
