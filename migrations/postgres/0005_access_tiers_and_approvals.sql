-- Access tiers, the tenant's approval policy, and approval requests (issue 23).
-- A secret's tier says whether reading its value needs a human's approval:
-- `critical` always does, `sensitive` when the tenant's policy says so.
ALTER TABLE secrets ADD COLUMN access_tier TEXT NOT NULL DEFAULT 'standard';
ALTER TABLE tenants ADD COLUMN gate_sensitive BOOLEAN NOT NULL DEFAULT FALSE;

-- A request for a human's approval: to read one secret (`kind` read), or to
-- be issued a scoped token whose scopes cover gated secrets (`kind` token).
-- Every change of `status` is one conditional UPDATE from the state it leaves.
CREATE TABLE approvals (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    kind             TEXT NOT NULL,
    requester_id     TEXT NOT NULL,
    requester_name   TEXT NOT NULL,
    secret_id        TEXT,
    token_request    TEXT,
    gated_secret_ids TEXT,
    reason           TEXT,
    ip               TEXT,
    status           TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL,
    decided_at       BIGINT,
    decided_by       TEXT,
    decided_how      TEXT,
    deny_reason      TEXT,
    grant_expires_at BIGINT,
    grant_uses_left  BIGINT
);
CREATE INDEX approvals_by_status ON approvals(tenant_id, status, created_at);
CREATE INDEX approvals_by_requester ON approvals(tenant_id, requester_id, secret_id, status);
-- One pending read request per requester and secret: concurrent reads reuse it.
CREATE UNIQUE INDEX approvals_one_pending ON approvals(tenant_id, requester_id, secret_id) WHERE status = 'pending' AND kind = 'read';
