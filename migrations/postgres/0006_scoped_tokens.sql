-- Scoped tokens are rows of `api_keys` (kind 'token'), so the one liveness
-- rule, the cache and the audit trail's credential check apply to them as
-- they are. A key's row keeps the defaults: kind 'key', no scopes, no limits.
ALTER TABLE api_keys ADD COLUMN kind TEXT NOT NULL DEFAULT 'key';
-- JSON array of scope strings (`secrets:{action}:{glob}`).
ALTER TABLE api_keys ADD COLUMN scopes TEXT;
ALTER TABLE api_keys ADD COLUMN max_uses BIGINT;
ALTER TABLE api_keys ADD COLUMN uses BIGINT NOT NULL DEFAULT 0;
-- JSON array of addresses and CIDRs.
ALTER TABLE api_keys ADD COLUMN ip_allowlist TEXT;
ALTER TABLE api_keys ADD COLUMN parent_key_id TEXT;
ALTER TABLE api_keys ADD COLUMN reason TEXT;
ALTER TABLE api_keys ADD COLUMN approval_id TEXT;
CREATE INDEX api_keys_parent ON api_keys(parent_key_id) WHERE parent_key_id IS NOT NULL;
