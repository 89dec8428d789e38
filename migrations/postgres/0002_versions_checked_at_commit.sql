-- A new version's secret is checked at COMMIT, as on SQLite (where it lets a
-- batch insert its versions in one statement): the two schemas stay alike.
ALTER TABLE secret_versions ALTER CONSTRAINT secret_versions_secret_id_fkey DEFERRABLE INITIALLY DEFERRED;
