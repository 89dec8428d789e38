-- Rotation (issue 26). Times are Unix milliseconds.
-- `rotation_policies`: one per secret; the scheduler claims a due policy with
-- one conditional UPDATE of `next_run_at` (from the value it saw), so each
-- due rotation runs once however many servers share the database.
-- `alerted_for`: the due time whose `secret.rotation_due` alert was written
-- (once per due date).
-- `generator`: JSON {length, alphabet, prefix}; NULL: inferred from the value.
CREATE TABLE rotation_policies (
    id                TEXT PRIMARY KEY,
    tenant_id         TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    secret_id         TEXT NOT NULL REFERENCES secrets(id) ON DELETE CASCADE,
    schedule          TEXT NOT NULL,
    alert_days_before BIGINT,
    generator         TEXT,
    grace_period_ms   BIGINT NOT NULL,
    next_run_at       BIGINT NOT NULL,
    alerted_for       BIGINT,
    last_rotated_at   BIGINT,
    created_by        TEXT NOT NULL,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);
CREATE UNIQUE INDEX rotation_policies_one_per_secret ON rotation_policies(tenant_id, secret_id);
CREATE INDEX rotation_policies_due ON rotation_policies(next_run_at);
-- A version a rotation replaced: readable by number until `retired_at`
-- (the end of the grace period; the rotation's own time when there is
-- none), 410 VERSION_RETIRED after.
CREATE TABLE secret_retirements (
    secret_id  TEXT NOT NULL REFERENCES secrets(id) ON DELETE CASCADE,
    version    BIGINT NOT NULL,
    rotated_at BIGINT NOT NULL,
    retired_at BIGINT NOT NULL,
    PRIMARY KEY (secret_id, version)
);
