//! A project's environments and template (`vault::environments`). A trait of
//! its own beside [`Store`](super::Store), reached with `Store::environments`;
//! the SQL is in `sql::environments`, for both databases. Nothing here is
//! cached: each request reads the few rows it needs.

use async_trait::async_trait;

use super::{AuditRow, Millis};
use crate::error::Result;

/// The environments every new project starts with.
pub const DEFAULT_ENVIRONMENTS: [&str; 3] = ["development", "staging", "production"];

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EnvironmentRow {
    pub tenant_id: String,
    pub project_id: String,
    pub name: String,
    pub created_at: Millis,
}

/// One required name of a project's template.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TemplateRow {
    pub tenant_id: String,
    pub project_id: String,
    pub name: String,
    pub description: Option<String>,
    /// False: listed for reference, never reported missing.
    pub required: bool,
    pub created_at: Millis,
}

#[async_trait]
pub trait EnvironmentStore: Send + Sync {
    /// The project's environments, by name.
    async fn list_environments(&self, tenant_id: &str, project_id: &str) -> Result<Vec<EnvironmentRow>>;
    /// Every environment of the tenant's projects, by project and name.
    async fn list_tenant_environments(&self, tenant_id: &str) -> Result<Vec<EnvironmentRow>>;
    /// A new environment with its audit entry; 409 `ALREADY_EXISTS` when the
    /// project has one of that name; `NotFound("project")` when the project is gone.
    async fn insert_environment(&self, row: &EnvironmentRow, audit: &AuditRow) -> Result<()>;
    /// Removes an environment no secret of the project uses (soft-deleted
    /// ones included: their name is still theirs). `Ok(false)`: no such
    /// environment; `Err(Conflict)`: secrets still use it.
    async fn delete_environment(&self, tenant_id: &str, project_id: &str, name: &str, audit: &AuditRow) -> Result<bool>;
    /// The project's template, by name.
    async fn list_template(&self, tenant_id: &str, project_id: &str) -> Result<Vec<TemplateRow>>;
    /// Adds the entries, or replaces the descriptions of those that exist,
    /// in one transaction with the audit entry.
    async fn upsert_template(&self, rows: &[TemplateRow], audit: &AuditRow) -> Result<()>;
    /// Removes one entry; `Ok(false)` when it was not there.
    async fn delete_template(&self, tenant_id: &str, project_id: &str, name: &str, audit: &AuditRow) -> Result<bool>;
}
