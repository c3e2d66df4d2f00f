-- Commands whose outcome is not recorded in tx_outcomes still get a result event: a repeat of
-- a tx_id (the stored outcome again, flagged duplicate), a conflicting repeat
-- (DUPLICATE_TX_ID_CONFLICT), a malformed message (MALFORMED, perhaps with no tx_id) and a
-- command the full balance table turned away (BALANCE_TABLE_FULL). A crash between a flush's
-- COMMIT and the broker's acknowledgement of its events lost those events for good: the next
-- owner republishes from what the database holds, and it held nothing of them. Each flush now
-- appends them here, in the same transaction, so the republish finds every command from
-- events_next_offset on. Rows below their partition's events_next_offset are no longer needed
-- and are deleted whenever an instance records delivered positions (io/event_positions.ts):
-- while events flow the table holds about a second of such commands; while a partition's
-- position is held (an event the broker refused for good, a failed republish) it grows.
--
--   original_offset   NULL, or for a duplicate replay the offset of the command that
--                     recorded the outcome; accepted/reason are then that outcome's.
--
-- The key is the guard tx_outcomes' unique (partition, kafka_offset) index is for outcomes: a
-- batch written twice fails its transaction instead of doubling rows (and their republished
-- events); and it is the index the republish and the deletes read by partition and offset.
CREATE TABLE tx_replies (
  partition integer NOT NULL,
  kafka_offset bigint NOT NULL,
  tx_id text NOT NULL,
  accepted boolean NOT NULL,
  reason text,
  original_offset bigint,
  PRIMARY KEY (partition, kafka_offset)
) WITH (
  -- Rows are deleted every second: a vacuum truncating the emptied tail would take an ACCESS
  -- EXCLUSIVE lock that a flush's COPY waits behind. The freed pages are reused instead.
  vacuum_truncate = false
);
