-- Use without reveal (issue 25). `exposure` says what a read of the value
-- answers: `reveal` the value, `masked` a preview, `use_only` nothing (only
-- uses such as `latchkey run` and the proxy reach it). `bindings` (a JSON
-- array) names where the server's proxy may send the value.
ALTER TABLE secrets ADD COLUMN exposure TEXT NOT NULL DEFAULT 'reveal';
ALTER TABLE secrets ADD COLUMN bindings TEXT NOT NULL DEFAULT '[]';
