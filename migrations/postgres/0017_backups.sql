-- Tenant backups (issue 27): each row is one self-contained archive
-- (`vault::backups::archive`), sealed with a key of its own that the
-- tenant's data key wraps (and a passphrase-derived key too, when one was
-- given). Kept in the database so every replica serves and restores the
-- same ones; the counts and size are the archive's, copied out for listings.
CREATE TABLE backups (
    id                   TEXT PRIMARY KEY,
    tenant_id            TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name                 TEXT NOT NULL,
    created_at           BIGINT NOT NULL,
    created_by           TEXT NOT NULL,
    secrets              BIGINT NOT NULL,
    versions             BIGINT NOT NULL,
    projects             BIGINT NOT NULL,
    size_bytes           BIGINT NOT NULL,
    passphrase_protected BOOLEAN NOT NULL,
    archive              BYTEA NOT NULL
);
CREATE INDEX backups_tenant ON backups(tenant_id, created_at);
