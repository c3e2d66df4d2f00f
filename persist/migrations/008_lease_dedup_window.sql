-- The dedup window (TALLY_DEDUP_WINDOW) of the instance that last took each partition. The
-- credit relay of another instance must not assume its own window on the credited partition:
-- a credit is relayed again only while the credited partition's backlog is a quarter of ITS
-- window (io/credit_relay.ts), and instances may run different windows for a while (a rolling
-- change of the setting). NULL until an instance of this version takes the partition.
ALTER TABLE partition_leases
  ADD COLUMN dedup_window bigint CHECK (dedup_window IS NULL OR dedup_window > 0);
