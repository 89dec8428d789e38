-- Owners: the tenant's humans, who decide approvals (issue 23). An owner
-- signs in with a one-time link or an owner token (`lko_…`, stored hashed),
-- then holds a page session; a passkey makes strong actions need a fresh,
-- user-verified assertion. Single-use rows (links, ceremony state) are
-- consumed by one conditional UPDATE each.
CREATE TABLE owners (
    id         TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    token_hash BYTEA NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX owners_tenant ON owners(tenant_id, created_at);

-- One-time links: `signin` (an owner's) or `setup` (no owner yet: the first
-- person to open it names themselves and becomes one).
CREATE TABLE owner_links (
    hash       BYTEA PRIMARY KEY,
    tenant_id  TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    owner_id   TEXT,
    purpose    TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);

-- Page sessions, by the hash of the cookie. The WebAuthn ceremony under way
-- (registration or an assertion for one named action) lives here, so any
-- replica can finish what another began.
CREATE TABLE owner_sessions (
    id_hash          BYTEA PRIMARY KEY,
    owner_id         TEXT NOT NULL REFERENCES owners(id) ON DELETE CASCADE,
    tenant_id        TEXT NOT NULL,
    csrf             TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL,
    ceremony         TEXT,
    ceremony_purpose TEXT,
    ceremony_at      BIGINT
);

CREATE TABLE passkeys (
    credential_id TEXT PRIMARY KEY,
    owner_id      TEXT NOT NULL REFERENCES owners(id) ON DELETE CASCADE,
    tenant_id     TEXT NOT NULL,
    passkey       TEXT NOT NULL,
    name          TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    last_used_at  BIGINT
);
CREATE INDEX passkeys_tenant ON passkeys(tenant_id, owner_id);
