-- The process that last took each partition: a random id per running instance. Two processes
-- may carry the same owner name (TALLY_INSTANCE_ID: a replacement started while the first was
-- frozen). A process that lost a lease while the database was unreachable takes it back only
-- if the row still names it, not merely its owner name: otherwise it would fence the other.
ALTER TABLE partition_leases ADD COLUMN owner_process text;
