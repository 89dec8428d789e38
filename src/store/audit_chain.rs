//! Reading the audit chain back for `verify` (see `store::chain`,
//! `vault::audit_verify`). A trait of its own beside [`Store`](super::Store),
//! reached with `Store::audit_chain`; the SQL is in `sql::audit_chain`.

use async_trait::async_trait;

use super::AuditRow;
use super::chain::Head;
use crate::error::Result;

/// The last entry retention pruned from a chain (written by the retention job).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Checkpoint {
    pub seq: i64,
    pub hash: Vec<u8>,
    pub pruned_before: i64,
    pub pruned_entries: i64,
}

#[async_trait]
pub trait AuditChainStore: Send + Sync {
    /// The chain's head, `None` before its first entry.
    async fn head(&self, chain: &str) -> Result<Option<Head>>;
    async fn checkpoint(&self, chain: &str) -> Result<Option<Checkpoint>>;
    /// Up to `limit` entries after position `after`, in chain order.
    async fn page(&self, chain: &str, after: i64, limit: i64) -> Result<Vec<AuditRow>>;
    /// The first position whose entry is at `at` or later.
    async fn first_since(&self, chain: &str, at: i64) -> Result<Option<i64>>;
    /// The entry at `seq`, if present.
    async fn entry(&self, chain: &str, seq: i64) -> Result<Option<AuditRow>>;
    /// Entries written before chaining (no position).
    async fn unchained(&self, chain: &str) -> Result<i64>;
}
