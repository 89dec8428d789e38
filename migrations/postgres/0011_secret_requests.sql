-- Secret requests (issue 25): an agent asks for a value it needs; a human
-- owner pastes it on `/requests/{id}`, and it goes straight into the vault.
-- The agent learns the secret's id and name, never the value: no value is
-- ever stored here. `expired` is never stored: it is `pending` past
-- `expires_at`. `filling` is the short step between an owner taking the
-- request and the secret being written (read as `pending`; a `filling` row
-- older than a minute may be taken again, should its writer have died).
CREATE TABLE secret_requests (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    requester_key_id TEXT NOT NULL,
    requester_name   TEXT NOT NULL,
    name             TEXT NOT NULL,
    reason           TEXT NOT NULL,
    project_id       TEXT,
    environment      TEXT NOT NULL,
    instructions     TEXT,
    obtain_url       TEXT,
    exposure         TEXT NOT NULL,
    access_tier      TEXT NOT NULL,
    status           TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL,
    taken_at         BIGINT,
    fulfilled_at     BIGINT,
    fulfilled_by     TEXT,
    secret_id        TEXT,
    cancelled_at     BIGINT
);
CREATE INDEX secret_requests_tenant ON secret_requests(tenant_id, created_at);
