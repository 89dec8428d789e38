-- Tamper-evident audit (issue 27). Each chain (a tenant's entries; '' for
-- entries without a tenant) numbers its entries 1, 2, 3 … (`chain_seq`) and
-- each entry carries an HMAC over its content and its predecessor's hash
-- (`chain_hash`). Rows written before this migration keep NULL in both: they
-- are reported as unchained, not broken. `client`, `tool`, `reason` say which
-- agent acted, through which MCP tool, and why (when the caller said).
ALTER TABLE audit_log ADD COLUMN chain_seq BIGINT;
ALTER TABLE audit_log ADD COLUMN chain_hash BYTEA;
ALTER TABLE audit_log ADD COLUMN client TEXT;
ALTER TABLE audit_log ADD COLUMN tool TEXT;
ALTER TABLE audit_log ADD COLUMN reason TEXT;

-- One entry per position of a chain (a second writer with a stale head fails
-- here instead of forking the chain), and the order `verify` walks.
CREATE UNIQUE INDEX audit_chain_order ON audit_log(COALESCE(tenant_id, ''), chain_seq) WHERE chain_seq IS NOT NULL;

-- The last entry of each chain, advanced in the transaction that appends:
-- an entry deleted from the end shows as a head beyond the last row.
CREATE TABLE audit_chain_heads (
    chain TEXT NOT NULL PRIMARY KEY,
    seq   BIGINT NOT NULL,
    hash  BYTEA NOT NULL
);

-- The last entry retention pruned from each chain: `verify` starts after it.
CREATE TABLE audit_checkpoints (
    chain          TEXT NOT NULL PRIMARY KEY,
    seq            BIGINT NOT NULL,
    hash           BYTEA NOT NULL,
    pruned_before  BIGINT NOT NULL,
    pruned_entries BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);
