-- Latchkey schema (SQLite). Times are Unix milliseconds; ids are UUID text.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
);

CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    email       TEXT,
    agent       TEXT,
    description TEXT,
    plan        TEXT NOT NULL,
    wrapped_key BLOB NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    prefix        TEXT NOT NULL,
    key_hash      BLOB NOT NULL UNIQUE,
    permission    TEXT NOT NULL,
    project_scope TEXT NOT NULL,
    expires_at    INTEGER,
    revoked_at    INTEGER,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX api_keys_tenant ON api_keys(tenant_id, created_at);

CREATE TABLE projects (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    description TEXT,
    tags        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    UNIQUE (tenant_id, name)
);

CREATE TABLE secrets (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    project_id      TEXT REFERENCES projects(id),
    environment     TEXT NOT NULL,
    name            TEXT NOT NULL,
    secret_type     TEXT NOT NULL,
    description     TEXT,
    tags            TEXT NOT NULL,
    current_version INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE UNIQUE INDEX secrets_identity ON secrets(tenant_id, COALESCE(project_id, ''), environment, name);
CREATE INDEX secrets_by_name ON secrets(tenant_id, name, id);
CREATE INDEX secrets_by_project ON secrets(project_id);

CREATE TABLE secret_tags (
    secret_id TEXT NOT NULL REFERENCES secrets(id) ON DELETE CASCADE,
    tenant_id TEXT NOT NULL,
    tag       TEXT NOT NULL,
    PRIMARY KEY (secret_id, tag)
);
CREATE INDEX secret_tags_lookup ON secret_tags(tenant_id, tag);

CREATE TABLE secret_versions (
    secret_id  TEXT NOT NULL REFERENCES secrets(id) ON DELETE CASCADE,
    version    INTEGER NOT NULL,
    sealed     BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    PRIMARY KEY (secret_id, version)
);

-- Append-only: no code path updates or deletes a row here.
CREATE TABLE audit_log (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id     TEXT,
    at            INTEGER NOT NULL,
    actor         TEXT NOT NULL,
    front         TEXT NOT NULL,
    action        TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id   TEXT,
    outcome       TEXT NOT NULL,
    ip            TEXT,
    user_agent    TEXT,
    detail        TEXT
);
CREATE INDEX audit_by_tenant_time ON audit_log(tenant_id, at);
