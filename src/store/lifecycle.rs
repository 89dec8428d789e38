//! The units of work of a secret's end of life (`vault::lifecycle`): a soft
//! delete that keeps the secret restorable (and its name reserved), its
//! restoration, the purge that erases it for good (by an admin at once, or
//! by the sweep once retention passed), and the deletion of one old version.
//! A trait of its own beside [`Store`](super::Store), reached with
//! `Store::lifecycle`; the SQL is in `sql::lifecycle`, for both databases.
//!
//! Every method changes a secret the cache in front of the store may hold,
//! so `CachedStore` wraps each one as a write of that secret.

use async_trait::async_trait;

use super::{AuditRow, Millis, QuotaOf, SecretRow};
use crate::error::Result;

/// What a version deletion found (see [`LifecycleStore::delete_version`]).
#[derive(Debug, PartialEq, Eq)]
pub enum VersionDeleted {
    Deleted,
    /// The version asked for is the secret's current one: never deleted.
    Current,
    /// No such live secret of the tenant, or no such version.
    Missing,
}

#[async_trait]
pub trait LifecycleStore: Send + Sync {
    /// Marks a live secret deleted at `now` (one conditional UPDATE), ends
    /// its share links (values erased), with its audit entry. `None`: no
    /// live secret of the tenant with this id; nothing changed.
    async fn soft_delete(&self, tenant_id: &str, id: &str, now: Millis, audit: &AuditRow) -> Result<Option<SecretRow>>;
    /// Clears a soft-deleted secret's `deleted_at`, under the tenant's plan
    /// quota (counted as a creation counts, live secrets only), with its
    /// audit entry. `None`: no soft-deleted secret of the tenant with this id.
    async fn restore(
        &self,
        tenant_id: &str,
        id: &str,
        now: Millis,
        max_secrets: QuotaOf<'_>,
        audit: &AuditRow,
    ) -> Result<Option<SecretRow>>;
    /// Erases a secret: its row, versions and tags, in one transaction, its
    /// share links ended, with its audit entry. With `deleted_before`, only a
    /// secret soft-deleted at or before that time (the sweep: a restore that
    /// got there first wins). False: nothing matched, nothing changed (and no
    /// audit entry), so of racing purges exactly one is recorded.
    async fn purge(&self, tenant_id: &str, id: &str, deleted_before: Option<Millis>, audit: &AuditRow) -> Result<bool>;
    /// Up to `limit` secrets (every tenant's) soft-deleted at or before `cutoff`, oldest first.
    async fn purgeable(&self, cutoff: Millis, limit: i64) -> Result<Vec<SecretRow>>;
    /// Deletes one version of a live secret, never its current one, under
    /// the secret's row lock, with its audit entry.
    async fn delete_version(&self, tenant_id: &str, id: &str, version: i64, audit: &AuditRow) -> Result<VersionDeleted>;
}
