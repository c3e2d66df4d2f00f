-- Commands whose outcome is not recorded in tx_outcomes still get a result event: a repeat of
-- a tx_id (the stored outcome again, flagged duplicate), a conflicting repeat
-- (DUPLICATE_TX_ID_CONFLICT), a malformed message (MALFORMED, perhaps with no tx_id) and a
-- command the full balance table turned away (BALANCE_TABLE_FULL). A crash between a flush's
-- COMMIT and the broker's acknowledgement of its events lost those events for good: the next
-- owner republishes from what the database holds, and it held nothing of them. Each flush now
-- appends them here, in the same transaction, so the republish finds every command from
-- events_next_offset on. Rows below their partition's events_next_offset are no longer needed
-- and are deleted whenever an instance records delivered positions (io/event_positions.ts),
-- so the table holds about a second of such commands.
--
--   original_offset   NULL, or for a duplicate replay the offset of the command that
--                     recorded the outcome; accepted/reason are then that outcome's.
CREATE TABLE tx_replies (
  partition integer NOT NULL,
  kafka_offset bigint NOT NULL,
  tx_id text NOT NULL,
  accepted boolean NOT NULL,
  reason text,
  original_offset bigint
);
-- Appended in offset order per partition, read and deleted by offset range: a BRIN index
-- costs an insert nothing (the journal's reasoning, migration 005).
CREATE INDEX tx_replies_offset_brin ON tx_replies USING brin (kafka_offset);
