-- Tenant backups (issue 27): each row is one self-contained archive
-- (`vault::backups::archive`), sealed with a key of its own that the
-- tenant's data key wraps (and a passphrase-derived key too, when one was
-- given). Kept in the database so every replica serves and restores the
-- same ones; the counts and size are the archive's, copied out for listings.
CREATE TABLE backups (
    id                   TEXT PRIMARY KEY,
    tenant_id            TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name                 TEXT NOT NULL,
    created_at           INTEGER NOT NULL,
    created_by           TEXT NOT NULL,
    secrets              INTEGER NOT NULL,
    versions             INTEGER NOT NULL,
    projects             INTEGER NOT NULL,
    size_bytes           INTEGER NOT NULL,
    passphrase_protected INTEGER NOT NULL,
    archive              BLOB NOT NULL
);
CREATE INDEX backups_tenant ON backups(tenant_id, created_at);
