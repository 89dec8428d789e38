-- A data-key rotation becomes a webhook event (issue 27): its action joins
-- the map and the trigger's list.
INSERT INTO webhook_events (action, event) VALUES ('tenant.key_rotated', 'tenant.key_rotated');

DROP TRIGGER audit_log_webhooks ON audit_log;
CREATE TRIGGER audit_log_webhooks AFTER INSERT ON audit_log FOR EACH ROW
WHEN (NEW.outcome = 'success' AND NEW.tenant_id IS NOT NULL AND NEW.action IN (
    'secret.create', 'secret.update', 'secret.deleted', 'secret.rotated', 'share.create', 'apikey.create',
    'apikey.revoke', 'backup.created', 'approval.requested', 'approval.approved', 'approval.denied',
    'claim.create', 'claim.redeem', 'secret.rotation_due', 'secret.restored', 'secret.purged', 'tenant.key_rotated'))
EXECUTE FUNCTION webhooks_enqueue();
