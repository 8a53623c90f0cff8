-- receipts.md §3.5 for telemetry: the highest batch_seq up to which every batch of the chain
-- (prev_batch_seq, kept in omega_batches.prev_commit_seq for telemetry entries) is stored.
ALTER TABLE omega_lineages ADD COLUMN batch_seq_through bigint NOT NULL DEFAULT 0;
