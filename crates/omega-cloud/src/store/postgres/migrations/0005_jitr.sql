-- cloud.md §16: JITR enrollment. Bootstrap certificates issued by `omega cloud bootstrap-cert
-- issue` (with their quota and revocation) and the devices enrolled through them.
CREATE TABLE omega_bootstrap_certs (
    serial      text PRIMARY KEY,
    org_id      text NOT NULL,
    fleet_id    text NOT NULL,
    max_devices bigint NOT NULL,
    not_after   timestamptz NOT NULL,
    issued_at   timestamptz NOT NULL,
    revoked_at  timestamptz
);

CREATE TABLE omega_enrollments (
    device_id         text PRIMARY KEY,
    org_id            text NOT NULL,
    fleet_id          text NOT NULL,
    project_id        text,
    bootstrap_serial  text NOT NULL,
    public_key_sha256 text NOT NULL,
    cert_serial       text NOT NULL,
    enrolled_at       timestamptz NOT NULL
);
CREATE INDEX omega_enrollments_fleet ON omega_enrollments (org_id, fleet_id);
CREATE INDEX omega_enrollments_bootstrap ON omega_enrollments (bootstrap_serial);
