-- Webhooks (issue 27). Times are Unix milliseconds.
-- `webhooks`: a tenant's subscriptions. `events` is the subscribed event
-- names between commas (`,secret.created,secret.deleted,`, or `,*,` for
-- every event), so the trigger below matches one with a substring test.
-- `secret_sealed`: the signing secret, sealed with the tenant's data key.
CREATE TABLE webhooks (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    url           TEXT NOT NULL,
    events        TEXT NOT NULL,
    secret_sealed BYTEA NOT NULL,
    description   TEXT,
    enabled       BOOLEAN NOT NULL DEFAULT TRUE,
    created_by    TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE INDEX webhooks_by_tenant ON webhooks(tenant_id);

-- Which audit action is which event (only successful entries are events).
CREATE TABLE webhook_events (
    action TEXT PRIMARY KEY,
    event  TEXT NOT NULL
);
INSERT INTO webhook_events (action, event) VALUES
    ('secret.create', 'secret.created'),
    ('secret.update', 'secret.updated'),
    ('secret.deleted', 'secret.deleted'),
    ('secret.rotated', 'secret.rotated'),
    ('share.create', 'secret.shared'),
    ('apikey.create', 'apikey.created'),
    ('apikey.revoke', 'apikey.revoked'),
    ('backup.created', 'backup.created'),
    ('approval.requested', 'approval.requested'),
    ('approval.approved', 'approval.decided'),
    ('approval.denied', 'approval.decided'),
    ('claim.create', 'claim.created'),
    ('claim.redeem', 'claim.redeemed'),
    ('secret.rotation_due', 'secret.rotation_due'),
    ('secret.restored', 'secret.restored'),
    ('secret.purged', 'secret.purged');

-- The durable queue: one row per webhook and event, written in the
-- transaction of the action (the trigger below) and claimed by the delivery
-- worker with a lease: `next_attempt_at` moved past the attempt's deadline,
-- so a worker that dies mid-attempt leaves it due again once that passes.
-- `status`: pending | delivered | failed | cancelled (the webhook was disabled).
-- The event's fields are copied from its audit entry (never a value).
CREATE TABLE webhook_deliveries (
    id              TEXT PRIMARY KEY,
    webhook_id      TEXT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    tenant_id       TEXT NOT NULL,
    event_id        TEXT NOT NULL,
    event           TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    actor           TEXT NOT NULL,
    resource_type   TEXT NOT NULL,
    resource_id     TEXT,
    detail          TEXT,
    status          TEXT NOT NULL DEFAULT 'pending',
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    last_status     BIGINT,
    last_error      TEXT,
    delivered_at    BIGINT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_by_hook ON webhook_deliveries(webhook_id, created_at);

-- Enqueues an event in the transaction of its audit entry. The WHEN test
-- keeps every other entry (reads, uses, listings) a no-op: the function
-- runs only for the actions that are events.
CREATE FUNCTION webhooks_enqueue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_deliveries (id, webhook_id, tenant_id, event_id, event, created_at, actor, resource_type,
                                    resource_id, detail, status, attempts, next_attempt_at)
    SELECT 'whd_' || replace(gen_random_uuid()::text, '-', ''), w.id, w.tenant_id, 'evt_' || NEW.id, m.event, NEW.at,
           NEW.actor, NEW.resource_type, NEW.resource_id, NEW.detail, 'pending', 0, NEW.at
    FROM webhooks w JOIN webhook_events m ON m.action = NEW.action
    WHERE w.tenant_id = NEW.tenant_id AND w.enabled
      AND (strpos(w.events, ',' || m.event || ',') > 0 OR strpos(w.events, ',*,') > 0);
    RETURN NULL;
END
$$;
CREATE TRIGGER audit_log_webhooks AFTER INSERT ON audit_log FOR EACH ROW
WHEN (NEW.outcome = 'success' AND NEW.tenant_id IS NOT NULL AND NEW.action IN (
    'secret.create', 'secret.update', 'secret.deleted', 'secret.rotated', 'share.create', 'apikey.create',
    'apikey.revoke', 'backup.created', 'approval.requested', 'approval.approved', 'approval.denied',
    'claim.create', 'claim.redeem', 'secret.rotation_due', 'secret.restored', 'secret.purged'))
EXECUTE FUNCTION webhooks_enqueue();
