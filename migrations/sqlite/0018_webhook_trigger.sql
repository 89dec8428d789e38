-- The webhook trigger's condition becomes a look into `webhooks` by tenant:
-- one index seek, which finds nothing for every entry of a tenant without
-- webhooks. The list of actions it replaces was built into a temporary
-- b-tree for every audit row (a trigger's program runs afresh per row),
-- which cost the audited read measurably (tools/BENCHMARKS.md, run 45). The
-- body's join with `webhook_events` picks the actions that are events.
-- A data-key rotation becomes one (issue 27).
INSERT INTO webhook_events (action, event) VALUES ('tenant.key_rotated', 'tenant.key_rotated');

DROP TRIGGER audit_log_webhooks;
CREATE TRIGGER audit_log_webhooks AFTER INSERT ON audit_log
WHEN NEW.outcome = 'success' AND NEW.tenant_id IS NOT NULL
 AND EXISTS (SELECT 1 FROM webhooks w WHERE w.tenant_id = NEW.tenant_id AND w.enabled = 1)
BEGIN
    INSERT INTO webhook_deliveries (id, webhook_id, tenant_id, event_id, event, created_at, actor, resource_type,
                                    resource_id, detail, status, attempts, next_attempt_at)
    SELECT 'whd_' || lower(hex(randomblob(12))), w.id, w.tenant_id, 'evt_' || NEW.id, m.event, NEW.at, NEW.actor,
           NEW.resource_type, NEW.resource_id, NEW.detail, 'pending', 0, NEW.at
    FROM webhooks w JOIN webhook_events m ON m.action = NEW.action
    WHERE w.tenant_id = NEW.tenant_id AND w.enabled = 1
      AND (instr(w.events, ',' || m.event || ',') > 0 OR instr(w.events, ',*,') > 0);
END;
