-- A version's secret is no longer checked by a foreign key. PostgreSQL
-- checks one by running a query per inserted row, at commit: a fifth to a
-- third of the database's CPU per durable write. Every path that writes a
-- version holds its secret's row until it commits (the batch's UPDATE or
-- SELECT ... FOR UPDATE, or the INSERT that creates the secret), and deleting
-- a secret deletes its row first, then its versions (`delete_secret` in
-- src/store/sql.rs), so a version cannot outlive its secret.
ALTER TABLE secret_versions DROP CONSTRAINT IF EXISTS secret_versions_secret_id_fkey;
