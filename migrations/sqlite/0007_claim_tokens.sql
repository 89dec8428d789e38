-- Claim tokens (issue 24): one tenant hands a secret to another without the
-- value passing through a chat or a prompt. The token (`ctk_…`) is stored
-- hashed and shown once; the pending value is sealed with the creating
-- tenant's data key, bound to the row (`claim/{id}`), and erased (set to
-- NULL) by the one conditional UPDATE that ends the claim: redemption,
-- revocation, or the first time anything notices it expired. `expired` is
-- never stored: it is `pending` past `expires_at`.
CREATE TABLE claim_tokens (
    id                 TEXT PRIMARY KEY,
    token_hash         BLOB NOT NULL UNIQUE,
    creator_tenant_id  TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    creator_key_id     TEXT NOT NULL,
    target_tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    contract_id        TEXT NOT NULL,
    secret_name        TEXT,
    secret_type        TEXT,
    source_secret_id   TEXT,
    sealed             BLOB,
    status             TEXT NOT NULL,
    created_at         INTEGER NOT NULL,
    expires_at         INTEGER NOT NULL,
    redeemed_at        INTEGER,
    redeemed_by        TEXT,
    redeemed_secret_id TEXT,
    revoked_at         INTEGER
);
CREATE INDEX claim_tokens_creator ON claim_tokens(creator_tenant_id, created_at);
CREATE INDEX claim_tokens_target ON claim_tokens(target_tenant_id, created_at);
-- What the sweep erases: pending ciphertexts, by expiry.
CREATE INDEX claim_tokens_sealed_expiry ON claim_tokens(expires_at) WHERE sealed IS NOT NULL;
