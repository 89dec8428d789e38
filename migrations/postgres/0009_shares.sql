-- Share links for people (issue 24): a secret's value as it was when the
-- link was made, sealed with the tenant's data key and bound to the row
-- (`share/{id}`). The token is stored hashed. `sealed` is set to NULL when
-- the link ends (its last use, revocation, the secret's deletion, and
-- expiry as soon as anything notices it): the value is erased, not flagged.
CREATE TABLE shares (
    id               TEXT PRIMARY KEY,
    token_hash       BYTEA NOT NULL UNIQUE,
    tenant_id        TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    secret_id        TEXT NOT NULL,
    -- The secret as it was shared: its name, type and project.
    secret_name      TEXT NOT NULL,
    secret_type      TEXT NOT NULL,
    project_id       TEXT,
    -- The key that made the link.
    created_by       TEXT NOT NULL,
    sealed           BYTEA,
    -- `pbkdf2-sha256$iterations$salt$hash` (base64), or NULL: no password.
    password_hash    TEXT,
    -- JSON array of CIDRs, or NULL: any address.
    allowed_ips      TEXT,
    max_uses         BIGINT NOT NULL,
    uses             BIGINT NOT NULL DEFAULT 0,
    failed_attempts  BIGINT NOT NULL DEFAULT 0,
    locked_until     BIGINT,
    created_at       BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL,
    revoked_at       BIGINT,
    revoke_reason    TEXT,
    last_accessed_at BIGINT
);
CREATE INDEX shares_tenant ON shares(tenant_id, created_at);
CREATE INDEX shares_secret ON shares(tenant_id, secret_id);
-- What the sweep erases: live ciphertexts by expiry.
CREATE INDEX shares_sealed ON shares(expires_at) WHERE sealed IS NOT NULL;
