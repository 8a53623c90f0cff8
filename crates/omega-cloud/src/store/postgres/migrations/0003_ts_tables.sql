-- Telemetry tables (cloud.md §11): one row per provisioned edge_ts_* table, like
-- omega_mirrors for mirrors. Field columns grow as samples bring them.
CREATE TABLE omega_ts_tables (
    ts_name      text PRIMARY KEY,
    scope        text NOT NULL,
    source_table text NOT NULL,
    columns      jsonb NOT NULL,
    hypertable   boolean NOT NULL,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL
);
CREATE INDEX omega_ts_tables_source ON omega_ts_tables (scope, source_table);

-- Replay reads staged samples in (batch_seq, event time) order (§9.3).
CREATE INDEX omega_staged_samples_order
    ON omega_staged_samples (device_id, source_table, batch_seq, event_ts, row_id);
