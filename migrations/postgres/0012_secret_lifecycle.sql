-- A secret's life after its creation (issue 26). Times are Unix milliseconds.
-- `expires_at`: reads answer 410 SECRET_EXPIRED from then on; lists hide it.
-- `deleted_at`: a soft delete; the row (and so its name) stays until the
-- purge job erases it once the operator's retention has passed.
-- `max_versions`: the oldest versions beyond it are pruned on each write.
-- `retiring_version` / `retiring_until`: after a rotation with a grace
-- period, the previous version stays readable by number until then.
ALTER TABLE secrets ADD COLUMN expires_at BIGINT;
ALTER TABLE secrets ADD COLUMN deleted_at BIGINT;
ALTER TABLE secrets ADD COLUMN max_versions BIGINT;
ALTER TABLE secrets ADD COLUMN retiring_version BIGINT;
ALTER TABLE secrets ADD COLUMN retiring_until BIGINT;
CREATE INDEX secrets_expiring ON secrets(tenant_id, expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX secrets_deleted ON secrets(deleted_at) WHERE deleted_at IS NOT NULL;
