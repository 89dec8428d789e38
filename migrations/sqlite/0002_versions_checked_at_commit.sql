-- A new version's secret is checked at COMMIT rather than row by row. Every
-- batch of new versions reads its secrets first, in the same transaction,
-- so the check cannot fail there; checked at commit, the batch inserts all
-- of its versions in one statement without a statement journal (see
-- `batch_sql` in src/store/sqlite.rs). SQLite cannot change a constraint,
-- so the table is rebuilt with the same rows.
CREATE TABLE secret_versions_new (
    secret_id  TEXT NOT NULL REFERENCES secrets(id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    version    INTEGER NOT NULL,
    sealed     BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    PRIMARY KEY (secret_id, version)
);
INSERT INTO secret_versions_new (secret_id, version, sealed, created_at, created_by)
    SELECT secret_id, version, sealed, created_at, created_by FROM secret_versions;
DROP TABLE secret_versions;
ALTER TABLE secret_versions_new RENAME TO secret_versions;
