-- Result events are published after the flush commits, so a crash can lose the ones the
-- broker had not acknowledged yet. Each partition records how far its events are known
-- delivered; a new owner republishes the stored outcomes from there up to next_offset
-- (io/event_publisher.ts, docs/api.md), which makes delivery at-least-once across crashes.
ALTER TABLE partition_leases ADD COLUMN events_next_offset bigint NOT NULL DEFAULT 0 CHECK (events_next_offset >= 0);
-- Existing partitions start as fully delivered: their history is not republished.
UPDATE partition_leases SET events_next_offset = next_offset;
