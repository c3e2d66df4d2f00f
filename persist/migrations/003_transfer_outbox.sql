-- Cross-partition transfers (docs/persistence.md "Transfers across partitions"). An accepted
-- transfer whose `to` lives on another partition debits `from` into the source partition's
-- transit account (3) and, in the same flush transaction, writes the credit it owes here.
-- The relay produces the credit to the commands topic keyed by `to` and marks the row sent
-- once the broker acknowledged it; unsent rows are produced again after any crash. The credit
-- carries a tx_id derived from the source (partition, kafka_offset): '~x<partition>-<offset>',
-- so every retry is the same command and the credited partition's dedup applies it once.
CREATE TABLE transfer_outbox (
  partition     integer  NOT NULL,
  kafka_offset  bigint   NOT NULL,
  tx_id         text     NOT NULL,
  from_account  bigint   NOT NULL,
  to_account    bigint   NOT NULL,
  to_partition  integer  NOT NULL,
  currency_id   smallint NOT NULL,
  amount        bigint   NOT NULL CHECK (amount > 0),
  sent          boolean  NOT NULL DEFAULT false,
  -- An operator's resolution of a credit the credited side rejected: 'refunded' once the
  -- refund credit back to `from` is produced (tally resolve-credit).
  resolution    text,
  PRIMARY KEY (partition, kafka_offset)
);
CREATE INDEX transfer_outbox_unsent ON transfer_outbox (partition) WHERE NOT sent;

CREATE FUNCTION tally_credit_tx_id(partition integer, kafka_offset bigint) RETURNS text
  LANGUAGE sql IMMUTABLE AS $$ SELECT '~x' || partition || '-' || kafka_offset $$;
CREATE FUNCTION tally_refund_tx_id(partition integer, kafka_offset bigint) RETURNS text
  LANGUAGE sql IMMUTABLE AS $$ SELECT '~r' || partition || '-' || kafka_offset $$;
