-- The ledger of record. Everything here is LOGGED and written with synchronous_commit on:
-- a COMMIT that returned is on disk. Only staging tables (created per flush) may be
-- unlogged or temporary.
--
-- Account ids are unsigned 64-bit on the wire. They are stored in BIGINT as the same 64
-- bits (two's complement), so ids at or above 2^63 read back negative in SQL; use
-- tally_account_text(account) to print them as the decimal strings of the contract.
-- Amounts are BIGINT minor units of the currency's scale.

CREATE TABLE currencies (
  id      smallint PRIMARY KEY CHECK (id > 0),
  code    text     NOT NULL UNIQUE CHECK (code ~ '^[A-Z0-9]{1,16}$'),
  scale   smallint NOT NULL CHECK (scale BETWEEN 0 AND 18)
);

-- One row per (partition, account, currency). User accounts live on their home partition
-- only; system accounts (ids below 1000) have one row per partition. last_offset is the
-- Kafka offset (in that partition) of the command that last changed the row: offsets only
-- grow within a partition, on every instance, so a flush may overwrite a row only with a
-- higher last_offset and an older batch can never overwrite a newer balance.
CREATE TABLE balances (
  partition    integer  NOT NULL,
  account      bigint   NOT NULL,
  currency_id  smallint NOT NULL REFERENCES currencies (id),
  available    bigint   NOT NULL,
  frozen       bigint   NOT NULL,
  last_offset  bigint   NOT NULL,
  PRIMARY KEY (partition, account, currency_id)
);

-- Append-only journal of legs: every balance equals the sum of its legs.
CREATE TABLE journal (
  partition        integer  NOT NULL,
  kafka_offset     bigint   NOT NULL,
  leg_index        smallint NOT NULL,
  tx_id            text     NOT NULL,
  account          bigint   NOT NULL,
  currency_id      smallint NOT NULL REFERENCES currencies (id),
  delta_available  bigint   NOT NULL,
  delta_frozen     bigint   NOT NULL,
  kind             smallint NOT NULL,
  PRIMARY KEY (partition, kafka_offset, leg_index)
);

-- The stored outcome of every command that carried a usable tx_id, once per partition.
CREATE TABLE tx_outcomes (
  partition     integer  NOT NULL,
  tx_id         text     NOT NULL CHECK (length(tx_id) BETWEEN 1 AND 64),
  kafka_offset  bigint   NOT NULL,
  accepted      boolean  NOT NULL,
  reason        text,
  payload_hash  bigint   NOT NULL,
  PRIMARY KEY (partition, tx_id)
);
CREATE INDEX tx_outcomes_offset ON tx_outcomes (partition, kafka_offset);

-- Ownership of a partition. fencing_token grows on every takeover; every flush updates
-- next_offset only WHERE fencing_token = <its own token>, so a paused zombie can never
-- write after a successor took over.
CREATE TABLE partition_leases (
  topic          text        NOT NULL,
  partition      integer     NOT NULL,
  owner          text,
  fencing_token  bigint      NOT NULL DEFAULT 0,
  lease_expiry   timestamptz,
  next_offset    bigint      NOT NULL DEFAULT 0 CHECK (next_offset >= 0),
  PRIMARY KEY (topic, partition)
);

CREATE FUNCTION tally_account_text(account bigint) RETURNS text
  LANGUAGE sql IMMUTABLE STRICT
  AS $$ SELECT CASE WHEN account >= 0 THEN account::text
                    ELSE (account::numeric + 18446744073709551616)::text END $$;
