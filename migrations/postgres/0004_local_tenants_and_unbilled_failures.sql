-- A tenant created by `latchkey mcp` for its local session is marked as such,
-- and a session adopts only a tenant so marked: a tenant of the same name made
-- by a remote signup is never adopted (its owner would read what the local
-- user stores). Tenants an earlier version created for a local session are
-- known by the `via` of their signup entry (a one-time scan of the trail).
ALTER TABLE tenants ADD COLUMN local_only BOOLEAN NOT NULL DEFAULT FALSE;
UPDATE tenants SET local_only = TRUE WHERE id IN (
    SELECT tenant_id FROM audit_log
    WHERE action = 'tenant.signup' AND tenant_id IS NOT NULL AND detail LIKE '%"via":"local"%'
);

-- Failed authentications are not billed: the month's count subtracts them,
-- counted through this index, which holds only those entries (every other
-- insert pays for a predicate test, nothing more).
CREATE INDEX audit_auth_failures ON audit_log(tenant_id, at, action) WHERE action = 'auth.failed';
