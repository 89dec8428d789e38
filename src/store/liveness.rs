//! The one rule for "is this credential still live", as SQL.
//!
//! A request carries its API key as it was when the key was looked up (a
//! [`Credential`](super::Credential): hash, permission, project scope), often
//! from a cache that has not yet heard of a change another process made a
//! moment ago. So every statement that makes a keyed action durable asks the
//! database again, inside the same statement or transaction:
//!
//! > A credential is live at time `at` when an `api_keys` row has exactly its
//! > hash, permission and project scope, and is neither revoked nor expired
//! > at `at`.
//!
//! A key that was revoked, expired, regenerated (same id, new hash),
//! narrowed or widened (other rights), or deleted is not live, and the
//! action it asked for is refused. An entry with no credential at all
//! (`AuditRow::credential == None`: the operator's CLI, anonymous or failed
//! attempts) is not a key's action and is not checked. `at` is always the
//! moment the statement is sent, never the time an entry was made: an entry
//! can wait in a queue while its key expires.
//!
//! Where the rule is applied, one predicate each ([`credential_is_live`]):
//! - a single write's audit insert ([`guarded_audit_sql`]), which rolls the
//!   write back when it refuses;
//! - the version batches, PostgreSQL's (both the compare-and-set statement
//!   and the locked transaction) and SQLite's: the jobs of a dead credential
//!   are refused, the others go on;
//! - PostgreSQL's audit batch: a success entry of a dead credential is left
//!   out and its request fails (`Appended::refused`). Failures are recorded
//!   whatever the key's state.
//!
//! SQLite's audit batch does not apply it in its statement: there the same
//! call reads `data_version`, which any other process's change to a key
//! moves (`Appended::changed`), and this process's own key changes go
//! through the cache (`CachedStore`); either way the vault looks the key up
//! again before it answers (`Vault::record_read`).

use std::sync::OnceLock;

use super::sql::{AUDIT_INTO, AUDIT_WIDTH, Params};

/// The rule, as an SQL expression over four SQL operands (parameters or
/// columns of the caller's query): true when a key row has exactly the hash,
/// permission and scope given and may still act at `at`. Never NULL for
/// non-NULL operands. One lookup of the unique index on `key_hash`.
pub(super) fn credential_is_live(hash: &str, permission: &str, scope: &str, at: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM api_keys WHERE key_hash = {hash} AND permission = {permission} AND project_scope = {scope} \
         AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > {at}))"
    )
}

/// The audit insert of a single write by a key: its one row goes in only if
/// the credential is live ([`credential_is_live`]); otherwise nothing is
/// inserted and the write rolls back. Parameters: the audit columns, then
/// the key's hash, permission and scope as the request presented them, and
/// the time. An entry without a credential takes [`plain_audit_sql`].
pub(super) fn guarded_audit_sql(params: Params) -> &'static str {
    static SQL: [OnceLock<String>; 2] = [const { OnceLock::new() }; 2];
    SQL[usize::from(params == Params::Anonymous)].get_or_init(|| {
        format!(
            "INSERT INTO {AUDIT_INTO} SELECT {} WHERE {}",
            params.list(1, AUDIT_WIDTH),
            credential_is_live(
                &params.list(AUDIT_WIDTH + 1, 1),
                &params.list(AUDIT_WIDTH + 2, 1),
                &params.list(AUDIT_WIDTH + 3, 1),
                &params.list(AUDIT_WIDTH + 4, 1)
            )
        )
    })
}

/// The audit insert of a single write with no credential to check (the
/// operator's CLI). Parameters: the audit columns.
pub(super) fn plain_audit_sql(params: Params) -> &'static str {
    static SQL: [OnceLock<String>; 2] = [const { OnceLock::new() }; 2];
    SQL[usize::from(params == Params::Anonymous)]
        .get_or_init(|| format!("INSERT INTO {AUDIT_INTO} VALUES ({})", params.list(1, AUDIT_WIDTH)))
}
