//! Tenant backups (`vault::backups`): the stored archives, a consistent
//! snapshot of everything an archive holds, and the restore that replaces a
//! tenant's secrets with an archive's in one transaction. A trait of its own
//! beside [`Store`](super::Store), reached with `Store::backups`; the SQL is
//! in `sql::backups`, for both databases.
//!
//! A restore rewrites every secret of a tenant: `CachedStore` wraps it as a
//! write of all of them (see `cached`), and the store announces it to the
//! other processes like every other write.

use async_trait::async_trait;

use super::environments::{EnvironmentRow, TemplateRow};
use super::rotation::PolicyRow;
use super::{AuditRow, Millis, ProjectRow, QuotaOf, SecretRow, VersionRow};
use crate::error::Result;

/// The most backups one tenant keeps; past it a new one is refused (409).
pub const MAX_BACKUPS_PER_TENANT: i64 = 20;

/// One stored backup. `archive` is filled only where asked for (a download,
/// a restore); listings leave it empty.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BackupRow {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub created_at: Millis,
    /// The key (or owner) that made it.
    pub created_by: String,
    pub secrets: i64,
    pub versions: i64,
    pub projects: i64,
    pub size_bytes: i64,
    pub passphrase_protected: bool,
    #[sqlx(default)]
    pub archive: Vec<u8>,
}

/// A version a rotation replaced (see `store::rotation`).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RetirementRow {
    pub secret_id: String,
    pub version: i64,
    pub rotated_at: Millis,
    pub retired_at: Millis,
}

/// Everything of a tenant a backup holds, as rows: read in one snapshot
/// ([`BackupStore::snapshot`]), or made from an archive for a restore (then
/// every version sealed for the restoring tenant).
#[derive(Debug, Default)]
pub struct TenantData {
    /// Soft-deleted ones included (they stay restorable after a restore).
    pub secrets: Vec<SecretRow>,
    pub versions: Vec<VersionRow>,
    pub projects: Vec<ProjectRow>,
    pub environments: Vec<EnvironmentRow>,
    pub templates: Vec<TemplateRow>,
    pub policies: Vec<PolicyRow>,
    pub retirements: Vec<RetirementRow>,
    /// The tenant's approval policy (`gate_sensitive`).
    pub gate_sensitive: bool,
}

#[async_trait]
pub trait BackupStore: Send + Sync {
    /// The tenant's secrets (every version), projects, environments,
    /// templates, rotation policies, retirements and approval policy, read
    /// in ONE read transaction (PostgreSQL: REPEATABLE READ, READ ONLY), so
    /// an archive never mixes states.
    async fn snapshot(&self, tenant_id: &str) -> Result<TenantData>;
    /// Stores a backup with its audit entry; 409 `CONFLICT` when the tenant
    /// keeps `max` already (counted under the tenant's lock).
    async fn insert_backup(&self, row: &BackupRow, max: i64, audit: &AuditRow) -> Result<()>;
    /// The tenant's backups, newest first, without their archives.
    async fn list_backups(&self, tenant_id: &str) -> Result<Vec<BackupRow>>;
    /// One backup, with its archive when `archive` is true.
    async fn get_backup(&self, tenant_id: &str, id: &str, archive: bool) -> Result<Option<BackupRow>>;
    async fn delete_backup(&self, tenant_id: &str, id: &str, audit: &AuditRow) -> Result<bool>;
    /// Replaces the tenant's secrets (with their versions, tags,
    /// retirements and rotation policies) and projects (with their
    /// environments and templates) by `data`, in ONE transaction with the
    /// audit entry: the old rows go, `data`'s go in as they are (sealed by
    /// the caller for this tenant). The approval policy becomes
    /// `data.gate_sensitive`. The tenant's share links end (values erased)
    /// and its pending and approved read grants expire: both were given
    /// for values that are gone. Refused (`PLAN_LIMIT_REACHED`, nothing
    /// changed) when `data`'s live secrets exceed the plan's quota.
    async fn restore(&self, tenant_id: &str, data: &TenantData, max_secrets: QuotaOf<'_>, now: Millis, audit: &AuditRow) -> Result<()>;
}
