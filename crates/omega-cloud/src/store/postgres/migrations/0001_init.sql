-- Omega cloud store, PostgreSQL, version 1 (cloud.md §3.2, §3.3).
-- Staged and quarantined row images are `text` holding the exact wire JSON: `jsonb` would
-- rewrite numbers (1e16 → 10000000000000000) and lose the REAL/INTEGER distinction.

CREATE TABLE omega_devices (
    device_id        text PRIMARY KEY,
    first_seen       timestamptz NOT NULL,
    last_seen        timestamptz NOT NULL,
    next_control_seq bigint NOT NULL DEFAULT 1,
    enrollment       jsonb
);

CREATE TABLE omega_lineages (
    id                   uuid PRIMARY KEY,
    device_id            text NOT NULL,
    source_table         text NOT NULL,
    kinds                jsonb NOT NULL DEFAULT '[]',
    status               text NOT NULL DEFAULT 'active',
    pause_causes         jsonb NOT NULL DEFAULT '[]',
    device_paused        boolean NOT NULL DEFAULT false,
    journal_epoch        uuid,
    last_commit_seq      bigint,
    last_batch_seq       bigint,
    confirmed_through    bigint NOT NULL DEFAULT 0,
    schema_hash          text,
    staged_rows          bigint NOT NULL DEFAULT 0,
    staged_bytes         bigint NOT NULL DEFAULT 0,
    consecutive_failures bigint NOT NULL DEFAULT 0,
    mirror_table         text,
    ts_table             text,
    created_at           timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL,
    last_batch_at        timestamptz,
    UNIQUE (device_id, source_table)
);

CREATE TABLE omega_batches (
    device_id        text NOT NULL,
    batch_id         uuid NOT NULL,
    kind             text,
    source_table     text,
    status           text NOT NULL,
    rejection_code   text,
    journal_epoch    uuid,
    first_commit_seq bigint,
    last_commit_seq  bigint,
    prev_commit_seq  bigint,
    batch_seq        bigint,
    row_count        bigint NOT NULL,
    deliveries       bigint NOT NULL DEFAULT 1,
    received_at      timestamptz NOT NULL,
    last_delivery_at timestamptz NOT NULL,
    PRIMARY KEY (device_id, batch_id)
);
CREATE INDEX omega_batches_chain
    ON omega_batches (device_id, source_table, journal_epoch, prev_commit_seq);
CREATE INDEX omega_batches_batch_seq
    ON omega_batches (device_id, source_table, batch_seq) WHERE batch_seq IS NOT NULL;

CREATE TABLE omega_schemas (
    schema_hash text PRIMARY KEY,
    table_name  text NOT NULL,
    columns     jsonb NOT NULL,
    created_at  timestamptz NOT NULL
);

CREATE TABLE omega_schema_versions (
    lineage_id  uuid NOT NULL,
    schema_hash text NOT NULL,
    class       text NOT NULL,
    first_seen  timestamptz NOT NULL,
    last_seen   timestamptz NOT NULL,
    PRIMARY KEY (lineage_id, schema_hash)
);

CREATE TABLE omega_reviews (
    id            uuid PRIMARY KEY,
    scope         text NOT NULL,
    source_table  text NOT NULL,
    schema_hash   text NOT NULL,
    class         text NOT NULL,
    columns       jsonb,
    compared_hash text,
    diff          jsonb,
    status        text NOT NULL,
    decisions     jsonb NOT NULL DEFAULT '[]',
    decided_by    text,
    reason        text,
    mirror_table  text,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    decided_at    timestamptz,
    UNIQUE (scope, source_table, schema_hash)
);
CREATE INDEX omega_reviews_approved ON omega_reviews (scope, source_table, status, decided_at);

CREATE TABLE omega_bindings (
    scope         text NOT NULL,
    source_table  text NOT NULL,
    schema_hash   text NOT NULL,
    column_name   text NOT NULL,
    action        text NOT NULL,
    mirror_column text,
    mirror_table  text NOT NULL,
    PRIMARY KEY (scope, source_table, schema_hash, column_name)
);

CREATE TABLE omega_mirrors (
    mirror_name  text PRIMARY KEY,
    scope        text NOT NULL,
    source_table text NOT NULL,
    key_columns  jsonb NOT NULL,
    columns      jsonb NOT NULL,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL
);
CREATE INDEX omega_mirrors_source ON omega_mirrors (scope, source_table);

CREATE TABLE omega_staged_rows (
    device_id      text NOT NULL,
    source_table   text NOT NULL,
    journal_epoch  uuid NOT NULL,
    source_pk_hash text NOT NULL,
    commit_seq     bigint NOT NULL,
    op             text NOT NULL,
    pk             text NOT NULL,
    row            text,
    schema_hash    text NOT NULL,
    batch_id       uuid NOT NULL,
    snapshot_id    uuid,
    snapshot_part  bigint,
    snapshot_last  boolean,
    reason         text NOT NULL,
    size_bytes     bigint NOT NULL,
    staged_at      timestamptz NOT NULL,
    PRIMARY KEY (device_id, source_table, journal_epoch, source_pk_hash, commit_seq)
);
CREATE INDEX omega_staged_rows_order
    ON omega_staged_rows (device_id, source_table, journal_epoch, commit_seq);
CREATE INDEX omega_staged_rows_hash ON omega_staged_rows (source_table, schema_hash);
CREATE INDEX omega_staged_rows_snapshot
    ON omega_staged_rows (device_id, source_table, snapshot_id) WHERE snapshot_id IS NOT NULL;

CREATE TABLE omega_staged_samples (
    device_id    text NOT NULL,
    source_table text NOT NULL,
    row_id       text NOT NULL,
    event_ts     timestamptz NOT NULL,
    fields       text NOT NULL,
    schema_hash  text NOT NULL,
    batch_id     uuid NOT NULL,
    batch_seq    bigint NOT NULL,
    size_bytes   bigint NOT NULL,
    staged_at    timestamptz NOT NULL,
    PRIMARY KEY (device_id, source_table, row_id, event_ts)
);

CREATE TABLE omega_snapshots (
    device_id     text NOT NULL,
    source_table  text NOT NULL,
    snapshot_id   uuid NOT NULL,
    journal_epoch uuid NOT NULL,
    h             bigint NOT NULL,
    parts         jsonb NOT NULL DEFAULT '[]',
    last_part     bigint,
    state         text NOT NULL,
    updated_at    timestamptz NOT NULL,
    PRIMARY KEY (device_id, source_table, snapshot_id)
);

CREATE TABLE omega_controls (
    control_id      uuid PRIMARY KEY,
    device_id       text NOT NULL,
    control_seq     bigint NOT NULL,
    kind            text NOT NULL,
    source_table    text,
    payload         bytea NOT NULL,
    state           text NOT NULL,
    attempts        bigint NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    last_sent_at    timestamptz,
    created_at      timestamptz NOT NULL,
    acked_at        timestamptz,
    UNIQUE (device_id, control_seq)
);

CREATE TABLE omega_quarantine (
    id             uuid PRIMARY KEY,
    device_id      text,
    topic          text NOT NULL,
    code           text NOT NULL,
    message        text NOT NULL,
    payload_prefix bytea NOT NULL,
    payload_bytes  bigint NOT NULL,
    batch_id       uuid,
    received_at    timestamptz NOT NULL
);
CREATE INDEX omega_quarantine_code ON omega_quarantine (code, id);
CREATE INDEX omega_quarantine_device ON omega_quarantine (device_id, id);

CREATE TABLE omega_observations (
    device_id    text NOT NULL,
    source_table text NOT NULL,
    schema_hash  text NOT NULL,
    observed_at  timestamptz NOT NULL,
    received_at  timestamptz NOT NULL,
    PRIMARY KEY (device_id, source_table)
);

CREATE TABLE omega_idempotency (
    key            text PRIMARY KEY,
    request_digest text NOT NULL,
    status         integer NOT NULL,
    response       jsonb NOT NULL,
    created_at     timestamptz NOT NULL
);
