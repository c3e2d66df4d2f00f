-- Every flush appends about 1.75 journal legs, one outcome and 1–2 balance rows per command;
-- PostgreSQL's work per row is what bounds the durable rate (docs/benchmarks.md, bench:persist).
-- Measured on 800 000 commands, one flush worker (PostgreSQL CPU per command and the flush's
-- journal step): the journal's primary key cost 2.1 µs of the journal step's 3.5 µs per command
-- and 230 of the 760 bytes of WAL per command, a b-tree descent and a WAL record per leg.
--
-- What the key guarded is kept, more cheaply:
--   * "no command is journalled twice": a command's legs and its outcome are written by the same
--     COPY pass of the same transaction, so one outcome per (partition, kafka_offset) implies one
--     set of legs per offset. tx_outcomes (partition, kafka_offset) becomes UNIQUE (the index
--     recovery and republishing already read), and the outcome upsert refuses a row at or below
--     the stored offset instead of skipping it (persist/flush_task.ts), so a batch written again
--     fails its transaction rather than doubling legs. `npm run audit` still checks every balance
--     against the sum of its legs and every journalled tx against one outcome.
--   * finding a command's legs: a BRIN index on kafka_offset (legs are appended in offset order
--     per partition and partitions advance together, so block ranges stay narrow): look the
--     offset up in tx_outcomes, then
--     SELECT … FROM journal WHERE partition = $1 AND kafka_offset = $2.
--
-- Balances are updated in place, row by row; with free space on the page PostgreSQL makes the
-- update HOT (no new index entry, less WAL): 6.2 → 3.8 µs per updated row measured on a
-- 400 000-row table. Fillfactor 75 leaves that space on pages written from now on (existing
-- pages get it on a rewrite: VACUUM FULL balances, in a maintenance window).

ALTER TABLE journal DROP CONSTRAINT journal_pkey;
CREATE INDEX journal_offset_brin ON journal USING brin (kafka_offset);

DROP INDEX tx_outcomes_offset;
CREATE UNIQUE INDEX tx_outcomes_offset ON tx_outcomes (partition, kafka_offset);

ALTER TABLE balances SET (fillfactor = 75);
