//! [`EnvironmentStore`] for every [`Backend`]: project environments and templates.

use async_trait::async_trait;
use sqlx::Transaction;

use super::dialect::{Dialect, query};
use super::{Backend, writes};
use crate::error::{Error, Result};
use crate::store::AuditRow;
use crate::store::environments::*;

/// The default environments of a new project, inside the project's own
/// insert (`Store::insert_project`).
pub(super) async fn insert_defaults<D: Dialect>(tx: &mut Transaction<'_, D>, tenant_id: &str, project_id: &str, at: i64) -> Result<()> {
    for name in DEFAULT_ENVIRONMENTS {
        query::<D>("INSERT INTO project_environments (tenant_id, project_id, name, created_at) VALUES ($1, $2, $3, $4)")
            .bind(tenant_id)
            .bind(project_id)
            .bind(name)
            .bind(at)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

#[async_trait]
impl<B: Backend> EnvironmentStore for B {
    async fn list_environments(&self, tenant_id: &str, project_id: &str) -> Result<Vec<EnvironmentRow>> {
        query::<B::Db>(
            "SELECT tenant_id, project_id, name, created_at FROM project_environments \
             WHERE tenant_id = $1 AND project_id = $2 ORDER BY name",
        )
        .bind(tenant_id)
        .bind(project_id)
        .fetch_all(self.reader())
        .await
    }

    async fn list_tenant_environments(&self, tenant_id: &str) -> Result<Vec<EnvironmentRow>> {
        query::<B::Db>(
            "SELECT tenant_id, project_id, name, created_at FROM project_environments \
             WHERE tenant_id = $1 ORDER BY project_id, name",
        )
        .bind(tenant_id)
        .fetch_all(self.reader())
        .await
    }

    async fn insert_environment(&self, e: &EnvironmentRow, audit: &AuditRow) -> Result<()> {
        let mut conn = self.write_conn().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        let project: Option<String> = query::<B::Db>("SELECT id FROM projects WHERE tenant_id = $1 AND id = $2")
            .bind(&e.tenant_id)
            .bind(&e.project_id)
            .fetch_optional_scalar(&mut *tx)
            .await?;
        if project.is_none() {
            return Err(Error::NotFound("project"));
        }
        query::<B::Db>("INSERT INTO project_environments (tenant_id, project_id, name, created_at) VALUES ($1, $2, $3, $4)")
            .bind(&e.tenant_id)
            .bind(&e.project_id)
            .bind(&e.name)
            .bind(e.created_at)
            .execute(&mut *tx)
            .await
            .map_err(|err| {
                writes::constraint_error(err, || Error::AlreadyExists(format!("the project has an environment named '{}'", e.name)))
            })?;
        writes::insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn delete_environment(&self, tenant_id: &str, project_id: &str, name: &str, audit: &AuditRow) -> Result<bool> {
        let mut conn = self.write_conn().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        // Soft-deleted secrets count: their place is still theirs. (A secret
        // created meanwhile checked the environment before this commit; it
        // stays readable and movable, and the environment can be made again.)
        let used: i64 = query::<B::Db>("SELECT COUNT(*) FROM secrets WHERE tenant_id = $1 AND project_id = $2 AND environment = $3")
            .bind(tenant_id)
            .bind(project_id)
            .bind(name)
            .fetch_one_scalar(&mut *tx)
            .await?;
        if used > 0 {
            return Err(Error::Conflict(format!(
                "{used} secret(s) of the project still use environment '{name}'; move or delete them first"
            )));
        }
        let n = query::<B::Db>("DELETE FROM project_environments WHERE tenant_id = $1 AND project_id = $2 AND name = $3")
            .bind(tenant_id)
            .bind(project_id)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        if n == 0 {
            return Ok(false);
        }
        writes::insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn list_template(&self, tenant_id: &str, project_id: &str) -> Result<Vec<TemplateRow>> {
        query::<B::Db>(
            "SELECT tenant_id, project_id, name, description, required, created_at FROM project_templates \
             WHERE tenant_id = $1 AND project_id = $2 ORDER BY name",
        )
        .bind(tenant_id)
        .bind(project_id)
        .fetch_all(self.reader())
        .await
    }

    async fn upsert_template(&self, rows: &[TemplateRow], audit: &AuditRow) -> Result<()> {
        let mut conn = self.write_conn().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        for t in rows {
            let project: Option<String> = query::<B::Db>("SELECT id FROM projects WHERE tenant_id = $1 AND id = $2")
                .bind(&t.tenant_id)
                .bind(&t.project_id)
                .fetch_optional_scalar(&mut *tx)
                .await?;
            if project.is_none() {
                return Err(Error::NotFound("project"));
            }
            query::<B::Db>(
                "INSERT INTO project_templates (tenant_id, project_id, name, description, required, created_at) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (tenant_id, project_id, name) DO UPDATE SET description = excluded.description, required = excluded.required",
            )
            .bind(&t.tenant_id)
            .bind(&t.project_id)
            .bind(&t.name)
            .bind(&t.description)
            .bind(t.required)
            .bind(t.created_at)
            .execute(&mut *tx)
            .await?;
        }
        writes::insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn delete_template(&self, tenant_id: &str, project_id: &str, name: &str, audit: &AuditRow) -> Result<bool> {
        let mut conn = self.write_conn().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        let n = query::<B::Db>("DELETE FROM project_templates WHERE tenant_id = $1 AND project_id = $2 AND name = $3")
            .bind(tenant_id)
            .bind(project_id)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        if n == 0 {
            return Ok(false);
        }
        writes::insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }
}
