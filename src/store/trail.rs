//! The audit trail's upkeep: its size for `/metrics`, and retention's
//! pruning (`vault::retention`). A trait of its own beside
//! [`Store`](super::Store), reached with `Store::trail`; the SQL is in
//! `sql::trail`, for both databases. Nothing here is cached.
//!
//! Pruning keeps the hash chain verifiable (see `vault::audit` and the
//! `audit_checkpoints` table): a tenant's chain loses a prefix only, and the
//! seq and hash of its last deleted entry become the chain's checkpoint in
//! the transaction that deletes it, where `verify` starts from.

use async_trait::async_trait;
use futures::future::BoxFuture;

use super::Millis;
use crate::error::Result;

/// Every stored column of an audit entry, as retention archives it.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredEntry {
    pub id: i64,
    pub tenant_id: Option<String>,
    pub at: Millis,
    pub actor: String,
    pub front: String,
    pub action: String,
    pub resource_type: String,
    pub resource_id: Option<String>,
    pub outcome: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub detail: Option<String>,
    pub chain_seq: Option<i64>,
    #[serde(serialize_with = "hex_bytes")]
    pub chain_hash: Option<Vec<u8>>,
    pub client: Option<String>,
    pub tool: Option<String>,
    pub reason: Option<String>,
}

fn hex_bytes<S: serde::Serializer>(v: &Option<Vec<u8>>, s: S) -> std::result::Result<S::Ok, S::Error> {
    match v {
        Some(b) => s.serialize_str(&b.iter().map(|x| format!("{x:02x}")).collect::<String>()),
        None => s.serialize_none(),
    }
}

/// How big the trail is, as cheaply as the database can tell.
#[derive(Debug, Clone, Copy, Default)]
pub struct TrailSize {
    /// `max(id) - min(id) + 1`: two index lookups, never a count. It
    /// overstates a trail with holes (one tenant pruned ahead of another).
    pub rows: i64,
    /// PostgreSQL: `pg_total_relation_size('audit_log')` (table, indexes, TOAST).
    pub table_bytes: Option<i64>,
    /// SQLite: the database file's pages in use (`page_count - freelist_count`, times `page_size`).
    pub database_bytes: Option<i64>,
}

/// Archives a batch before it is deleted; runs inside the batch's
/// transaction, so an error leaves every row in place.
pub type Archive<'a> = &'a (dyn Fn(Vec<StoredEntry>) -> BoxFuture<'static, Result<()>> + Send + Sync);

/// What one pruning step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pruned {
    /// This many entries of the chain were deleted (0: nothing older is left).
    Deleted(u64),
    /// Another replica is pruning right now (PostgreSQL's advisory lock).
    Busy,
}

#[async_trait]
pub trait TrailStore: Send + Sync {
    /// See [`TrailSize`].
    async fn trail_size(&self) -> Result<TrailSize>;
    /// Every chain that may hold entries: each tenant's id, and `""` for
    /// entries of no tenant.
    async fn chains(&self) -> Result<Vec<String>>;
    /// Deletes up to `limit` of `chain`'s entries older than `before`, in
    /// chain order, in one transaction: first entries written before the
    /// chain existed (no `chain_seq`, by time), then the chain's oldest
    /// entries up to the first one that is not older than `before`. The
    /// chain's checkpoint moves to the last deleted chained entry in the
    /// same transaction. `archive` sees the rows first.
    async fn prune_chain(&self, chain: &str, before: Millis, limit: i64, archive: Option<Archive<'_>>) -> Result<Pruned>;
}
