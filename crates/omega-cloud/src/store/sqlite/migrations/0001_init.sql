-- Omega cloud store, SQLite, version 1 (cloud.md §3.2). UUIDs are lowercase TEXT, JSON is
-- TEXT, times are RFC 3339 TEXT with 6 fraction digits (sortable).

CREATE TABLE omega_devices (
    device_id        TEXT PRIMARY KEY,
    first_seen       TEXT NOT NULL,
    last_seen        TEXT NOT NULL,
    next_control_seq INTEGER NOT NULL DEFAULT 1,
    enrollment       TEXT
);

CREATE TABLE omega_lineages (
    id                   TEXT PRIMARY KEY,
    device_id            TEXT NOT NULL,
    source_table         TEXT NOT NULL,
    kinds                TEXT NOT NULL DEFAULT '[]',
    status               TEXT NOT NULL DEFAULT 'active',
    pause_causes         TEXT NOT NULL DEFAULT '[]',
    device_paused        INTEGER NOT NULL DEFAULT 0,
    journal_epoch        TEXT,
    last_commit_seq      INTEGER,
    last_batch_seq       INTEGER,
    confirmed_through    INTEGER NOT NULL DEFAULT 0,
    schema_hash          TEXT,
    staged_rows          INTEGER NOT NULL DEFAULT 0,
    staged_bytes         INTEGER NOT NULL DEFAULT 0,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    mirror_table         TEXT,
    ts_table             TEXT,
    created_at           TEXT NOT NULL,
    updated_at           TEXT NOT NULL,
    last_batch_at        TEXT,
    UNIQUE (device_id, source_table)
);

CREATE TABLE omega_batches (
    device_id        TEXT NOT NULL,
    batch_id         TEXT NOT NULL,
    kind             TEXT,
    source_table     TEXT,
    status           TEXT NOT NULL,
    rejection_code   TEXT,
    journal_epoch    TEXT,
    first_commit_seq INTEGER,
    last_commit_seq  INTEGER,
    prev_commit_seq  INTEGER,
    batch_seq        INTEGER,
    row_count        INTEGER NOT NULL,
    deliveries       INTEGER NOT NULL DEFAULT 1,
    received_at      TEXT NOT NULL,
    last_delivery_at TEXT NOT NULL,
    PRIMARY KEY (device_id, batch_id)
);
CREATE INDEX omega_batches_chain
    ON omega_batches (device_id, source_table, journal_epoch, prev_commit_seq);
CREATE INDEX omega_batches_batch_seq
    ON omega_batches (device_id, source_table, batch_seq) WHERE batch_seq IS NOT NULL;

CREATE TABLE omega_schemas (
    schema_hash TEXT PRIMARY KEY,
    table_name  TEXT NOT NULL,
    columns     TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

CREATE TABLE omega_schema_versions (
    lineage_id  TEXT NOT NULL,
    schema_hash TEXT NOT NULL,
    class       TEXT NOT NULL,
    first_seen  TEXT NOT NULL,
    last_seen   TEXT NOT NULL,
    PRIMARY KEY (lineage_id, schema_hash)
);

CREATE TABLE omega_reviews (
    id            TEXT PRIMARY KEY,
    scope         TEXT NOT NULL,
    source_table  TEXT NOT NULL,
    schema_hash   TEXT NOT NULL,
    class         TEXT NOT NULL,
    columns       TEXT,
    compared_hash TEXT,
    diff          TEXT,
    status        TEXT NOT NULL,
    decisions     TEXT NOT NULL DEFAULT '[]',
    decided_by    TEXT,
    reason        TEXT,
    mirror_table  TEXT,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    decided_at    TEXT,
    UNIQUE (scope, source_table, schema_hash)
);
CREATE INDEX omega_reviews_approved ON omega_reviews (scope, source_table, status, decided_at);

CREATE TABLE omega_bindings (
    scope         TEXT NOT NULL,
    source_table  TEXT NOT NULL,
    schema_hash   TEXT NOT NULL,
    column_name   TEXT NOT NULL,
    action        TEXT NOT NULL,
    mirror_column TEXT,
    mirror_table  TEXT NOT NULL,
    PRIMARY KEY (scope, source_table, schema_hash, column_name)
);

CREATE TABLE omega_mirrors (
    mirror_name  TEXT PRIMARY KEY,
    scope        TEXT NOT NULL,
    source_table TEXT NOT NULL,
    key_columns  TEXT NOT NULL,
    columns      TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);
CREATE INDEX omega_mirrors_source ON omega_mirrors (scope, source_table);

CREATE TABLE omega_staged_rows (
    device_id      TEXT NOT NULL,
    source_table   TEXT NOT NULL,
    journal_epoch  TEXT NOT NULL,
    source_pk_hash TEXT NOT NULL,
    commit_seq     INTEGER NOT NULL,
    op             TEXT NOT NULL,
    pk             TEXT NOT NULL,
    row            TEXT,
    schema_hash    TEXT NOT NULL,
    batch_id       TEXT NOT NULL,
    snapshot_id    TEXT,
    snapshot_part  INTEGER,
    snapshot_last  INTEGER,
    reason         TEXT NOT NULL,
    size_bytes     INTEGER NOT NULL,
    staged_at      TEXT NOT NULL,
    PRIMARY KEY (device_id, source_table, journal_epoch, source_pk_hash, commit_seq)
);
CREATE INDEX omega_staged_rows_order
    ON omega_staged_rows (device_id, source_table, journal_epoch, commit_seq);
CREATE INDEX omega_staged_rows_hash ON omega_staged_rows (source_table, schema_hash);
CREATE INDEX omega_staged_rows_snapshot
    ON omega_staged_rows (device_id, source_table, snapshot_id) WHERE snapshot_id IS NOT NULL;

CREATE TABLE omega_staged_samples (
    device_id    TEXT NOT NULL,
    source_table TEXT NOT NULL,
    row_id       TEXT NOT NULL,
    event_ts     TEXT NOT NULL,
    fields       TEXT NOT NULL,
    schema_hash  TEXT NOT NULL,
    batch_id     TEXT NOT NULL,
    batch_seq    INTEGER NOT NULL,
    size_bytes   INTEGER NOT NULL,
    staged_at    TEXT NOT NULL,
    PRIMARY KEY (device_id, source_table, row_id, event_ts)
);

CREATE TABLE omega_snapshots (
    device_id     TEXT NOT NULL,
    source_table  TEXT NOT NULL,
    snapshot_id   TEXT NOT NULL,
    journal_epoch TEXT NOT NULL,
    h             INTEGER NOT NULL,
    parts         TEXT NOT NULL DEFAULT '[]',
    last_part     INTEGER,
    state         TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    PRIMARY KEY (device_id, source_table, snapshot_id)
);

CREATE TABLE omega_controls (
    control_id      TEXT PRIMARY KEY,
    device_id       TEXT NOT NULL,
    control_seq     INTEGER NOT NULL,
    kind            TEXT NOT NULL,
    source_table    TEXT,
    payload         BLOB NOT NULL,
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT,
    last_sent_at    TEXT,
    created_at      TEXT NOT NULL,
    acked_at        TEXT,
    UNIQUE (device_id, control_seq)
);

CREATE TABLE omega_quarantine (
    id             TEXT PRIMARY KEY,
    device_id      TEXT,
    topic          TEXT NOT NULL,
    code           TEXT NOT NULL,
    message        TEXT NOT NULL,
    payload_prefix BLOB NOT NULL,
    payload_bytes  INTEGER NOT NULL,
    batch_id       TEXT,
    received_at    TEXT NOT NULL
);
CREATE INDEX omega_quarantine_code ON omega_quarantine (code, id);
CREATE INDEX omega_quarantine_device ON omega_quarantine (device_id, id);

CREATE TABLE omega_observations (
    device_id    TEXT NOT NULL,
    source_table TEXT NOT NULL,
    schema_hash  TEXT NOT NULL,
    observed_at  TEXT NOT NULL,
    received_at  TEXT NOT NULL,
    PRIMARY KEY (device_id, source_table)
);

CREATE TABLE omega_idempotency (
    key            TEXT PRIMARY KEY,
    request_digest TEXT NOT NULL,
    status         INTEGER NOT NULL,
    response       TEXT NOT NULL,
    created_at     TEXT NOT NULL
);
