-- Per-tenant data-key rotation (issue 27). `tenants.wrapped_key` stays the
-- current generation's key, which seals everything new; a rotation moves it
-- here, under its generation, and keeps it: what it sealed opens until the
-- background pass has sealed it again, and afterwards whatever a replica
-- that had not heard of the rotation yet sealed under it. A blob names the
-- generation that sealed it (`crypto::keys::FORMAT_V2`).
ALTER TABLE tenants ADD COLUMN key_generation BIGINT NOT NULL DEFAULT 0;

CREATE TABLE tenant_keys (
    tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    generation  BIGINT NOT NULL,
    wrapped_key BYTEA NOT NULL,
    retired_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, generation)
);

-- The latest rotation of each tenant and its background pass: the pass walks
-- the tenant's versions by (secret, version) from the cursor, in batches that
-- each commit the cursor with the re-sealed rows, under a lease, so a crash
-- resumes where the last batch ended and two replicas never work one tenant.
CREATE TABLE key_rotations (
    tenant_id        TEXT PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
    generation       BIGINT NOT NULL,
    state            TEXT NOT NULL,
    started_at       BIGINT NOT NULL,
    started_by       TEXT NOT NULL,
    finished_at      BIGINT,
    resealed         BIGINT NOT NULL DEFAULT 0,
    passes           BIGINT NOT NULL DEFAULT 0,
    pass_started_at  BIGINT,
    cursor_secret    TEXT,
    cursor_version   BIGINT,
    leased_by        TEXT,
    leased_until     BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX key_rotations_started ON key_rotations(started_at);
