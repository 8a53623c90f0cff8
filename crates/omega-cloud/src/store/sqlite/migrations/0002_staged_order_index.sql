-- Replay reads staged rows in (epoch, commit_seq, pk hash) order and removes them by full
-- key. Every row of a snapshot shares one commit_seq, so an index ending at commit_seq made
-- each removal scan the whole snapshot (seconds per 1,000-row chunk on 100k staged rows).
-- Ending the index with the pk hash serves both the order and the removal.
DROP INDEX omega_staged_rows_order;
CREATE INDEX omega_staged_rows_order
    ON omega_staged_rows (device_id, source_table, journal_epoch, commit_seq, source_pk_hash);
