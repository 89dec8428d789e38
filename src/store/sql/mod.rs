//! The SQL behind [`Store`](super::Store), written once for both databases:
//! SQLite and PostgreSQL both accept this dialect (`$n` placeholders,
//! `COALESCE`, `RETURNING`, expression indexes). The code is ordinary
//! generic functions: over a database ([`dialect::Dialect`]) for the
//! statements, and over a [`Backend`] for what the two stores do
//! differently (connections, `BEGIN`, row locking, batch writers, hearing
//! of other processes).
//!
//! - [`dialect`]: how generic code runs a statement on either driver.
//! - [`store`]: `Store` for every [`Backend`], one method after another.
//! - [`writes`]: the steps a write transaction is made of (its audit entry,
//!   versions, tags, keys).
//! - [`filters`]: statements shaped by a request's filters.

mod approvals;
mod audit_chain;
mod backups;
mod claims;
pub(super) mod dialect;
mod environments;
mod filters;
mod keyring;
mod lifecycle;
pub(super) mod owners;
mod requests;
mod rotation;
mod shares;
mod store;
mod trail;
mod webhooks;
mod writes;

pub(super) use writes::{bind_audit, bind_linked};

use std::future::Future;

use sqlx::{Pool, Transaction};

use super::version_writer::VersionWriter;
use super::{Appended, AuditRow};
use crate::error::Result;
use dialect::Dialect;

/// What a database's store adds to the shared SQL. Implemented by
/// `SqliteStore` and `PgStore`; every implementor is a [`Store`](super::Store).
pub trait Backend: Send + Sync + 'static {
    type Db: Dialect;
    /// The connection a write transaction runs on, held for one unit of work.
    type WriteConn: Send;
    /// Which database this is, for logs and `whoami`.
    const NAME: &'static str;
    /// Reads a tenant's plan, and serialises quota checks and key changes
    /// per tenant (PostgreSQL: a row lock; SQLite: the one writer already does).
    const LOCK_TENANT: &'static str;
    /// Appended to a SELECT inside a write that must lock the row it reads.
    const FOR_UPDATE: &'static str;

    /// The pool reads go to.
    fn reader(&self) -> &Pool<Self::Db>;
    /// The group commit of new versions (see `version_writer`).
    fn versions(&self) -> &VersionWriter;
    /// The connection the next write transaction goes through.
    fn write_conn(&self) -> impl Future<Output = Result<Self::WriteConn>> + Send;
    /// Opens a write transaction on `conn`.
    fn begin_write(conn: &mut Self::WriteConn) -> impl Future<Output = Result<Transaction<'_, Self::Db>>> + Send;
    /// Tells other processes, once `tx` commits, that cached keys or secrets changed.
    fn announce_change(&self, tx: &mut Transaction<'_, Self::Db>, tenant_id: &str) -> impl Future<Output = Result<()>> + Send;
    /// [`Store::append_audit`](super::Store::append_audit).
    fn write_audit(&self, entries: &[AuditRow]) -> impl Future<Output = Result<Appended>> + Send;
    /// [`Store::changed_elsewhere`](super::Store::changed_elsewhere).
    fn detect_change_elsewhere(&self) -> impl Future<Output = Result<bool>> + Send;
    /// [`Store::tracks_changes`](super::Store::tracks_changes).
    fn can_detect_changes(&self) -> bool;
    /// Closes the writers' connections (the reader pool closes after).
    fn close_writer(&self) -> impl Future<Output = ()> + Send;
}

/// How a statement writes its parameters. SQLite resolves a numbered
/// parameter (`$7`) by searching the statement's list of names on every bind,
/// so binding n of them costs n²: a 64-row audit insert spent more time in
/// that search than in the insert. Anonymous `?` bind in order at no cost.
/// PostgreSQL only knows `$n`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Params {
    Numbered,
    Anonymous,
}

impl Params {
    /// The parameters `first..first + n`, comma-separated.
    pub fn list(self, first: usize, n: usize) -> String {
        let one = |k: usize| match self {
            Params::Numbered => format!("${k}"),
            Params::Anonymous => "?".to_owned(),
        };
        (first..first + n).map(one).collect::<Vec<_>>().join(", ")
    }

    /// `($1, …, $width), ($width+1, …), …` for `rows` rows: the VALUES list of
    /// a multi-row statement.
    pub fn values(self, rows: usize, width: usize) -> String {
        (0..rows).map(|r| format!("({})", self.list(r * width + 1, width))).collect::<Vec<_>>().join(", ")
    }
}

/// Most rows in one audit `INSERT` ([`AUDIT_WIDTH`] parameters each, far below either
/// database's limit); a larger batch takes several statements.
pub(super) const AUDIT_ROWS_PER_INSERT: usize = 64;

/// Every column of `secrets`, in [`SecretRow`](super::SecretRow)'s order.
pub(super) const SECRET_COLS: &str = "id, tenant_id, project_id, environment, name, secret_type, description, tags, current_version, created_at, updated_at, access_tier, \
     exposure, bindings, expires_at, deleted_at, max_versions, retiring_version, retiring_until";

/// The audit table and the columns every audit insert fills, in bind order
/// (see `bind_audit`).
pub(super) const AUDIT_INTO: &str = "audit_log (tenant_id, at, actor, front, action, resource_type, resource_id, outcome, ip, user_agent, detail, \
     chain_seq, chain_hash, client, tool, reason)";

/// How many columns [`AUDIT_INTO`] names: the parameters of one audit row.
pub(super) const AUDIT_WIDTH: usize = 16;

/// The columns of `api_keys`, in [`ApiKeyRow`](super::ApiKeyRow)'s order.
pub(super) const KEY_COLS: &str = "id, tenant_id, name, prefix, key_hash, permission, project_scope, expires_at, revoked_at, created_at, updated_at, \
     kind, scopes, max_uses, uses, ip_allowlist, parent_key_id, reason, approval_id";
