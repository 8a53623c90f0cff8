-- cloud.md §16: JITR enrollment. Bootstrap certificates issued by `omega cloud bootstrap-cert
-- issue` (with their quota and revocation) and the devices enrolled through them.
CREATE TABLE omega_bootstrap_certs (
    serial      TEXT PRIMARY KEY,
    org_id      TEXT NOT NULL,
    fleet_id    TEXT NOT NULL,
    max_devices INTEGER NOT NULL,
    not_after   TEXT NOT NULL,
    issued_at   TEXT NOT NULL,
    revoked_at  TEXT
);

CREATE TABLE omega_enrollments (
    device_id         TEXT PRIMARY KEY,
    org_id            TEXT NOT NULL,
    fleet_id          TEXT NOT NULL,
    project_id        TEXT,
    bootstrap_serial  TEXT NOT NULL,
    public_key_sha256 TEXT NOT NULL,
    cert_serial       TEXT NOT NULL,
    enrolled_at       TEXT NOT NULL
);
CREATE INDEX omega_enrollments_fleet ON omega_enrollments (org_id, fleet_id);
CREATE INDEX omega_enrollments_bootstrap ON omega_enrollments (bootstrap_serial);
