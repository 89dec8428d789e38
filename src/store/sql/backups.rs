//! [`BackupStore`] for every [`Backend`]: stored archives, the snapshot an
//! archive is made from, and the restore.

use async_trait::async_trait;
use sqlx::{AssertSqlSafe, Transaction};

use super::dialect::{Dialect, query};
use super::rotation::POLICY_COLS;
use super::{Backend, SECRET_COLS, writes};
use crate::error::{Error, Result};
use crate::store::backups::*;
use crate::store::{AuditRow, Millis, QuotaOf};

const BACKUP_COLS: &str = "id, tenant_id, name, created_at, created_by, secrets, versions, projects, size_bytes, passphrase_protected";
/// Why a restore ended the tenant's share links.
const RESTORED: &str = "the tenant was restored from a backup";

#[async_trait]
impl<B: Backend> BackupStore for B {
    async fn snapshot(&self, tenant_id: &str) -> Result<TenantData> {
        let mut tx = self.reader().begin().await?;
        if B::NAME == "postgres" {
            // One snapshot for every statement below (READ COMMITTED takes one per statement).
            query::<B::Db>("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY").execute(&mut *tx).await?;
        }
        let secrets = query::<B::Db>(AssertSqlSafe(format!("SELECT {SECRET_COLS} FROM secrets WHERE tenant_id = $1 ORDER BY id")))
            .bind(tenant_id)
            .fetch_all(&mut *tx)
            .await?;
        let versions = query::<B::Db>(
            "SELECT v.secret_id, v.version, v.sealed, v.created_at, v.created_by FROM secret_versions v \
             JOIN secrets s ON s.id = v.secret_id WHERE s.tenant_id = $1 ORDER BY v.secret_id, v.version",
        )
        .bind(tenant_id)
        .fetch_all(&mut *tx)
        .await?;
        let projects = query::<B::Db>(
            "SELECT id, tenant_id, name, description, tags, created_at, updated_at FROM projects WHERE tenant_id = $1 ORDER BY id",
        )
        .bind(tenant_id)
        .fetch_all(&mut *tx)
        .await?;
        let environments = query::<B::Db>(
            "SELECT tenant_id, project_id, name, created_at FROM project_environments WHERE tenant_id = $1 ORDER BY project_id, name",
        )
        .bind(tenant_id)
        .fetch_all(&mut *tx)
        .await?;
        let templates = query::<B::Db>(
            "SELECT tenant_id, project_id, name, description, required, created_at FROM project_templates \
             WHERE tenant_id = $1 ORDER BY project_id, name",
        )
        .bind(tenant_id)
        .fetch_all(&mut *tx)
        .await?;
        let policies =
            query::<B::Db>(AssertSqlSafe(format!("SELECT {POLICY_COLS} FROM rotation_policies WHERE tenant_id = $1 ORDER BY id")))
                .bind(tenant_id)
                .fetch_all(&mut *tx)
                .await?;
        let retirements = query::<B::Db>(
            "SELECT r.secret_id, r.version, r.rotated_at, r.retired_at FROM secret_retirements r \
             JOIN secrets s ON s.id = r.secret_id WHERE s.tenant_id = $1 ORDER BY r.secret_id, r.version",
        )
        .bind(tenant_id)
        .fetch_all(&mut *tx)
        .await?;
        let gate_sensitive: bool = query::<B::Db>("SELECT gate_sensitive FROM tenants WHERE id = $1")
            .bind(tenant_id)
            .fetch_optional_scalar(&mut *tx)
            .await?
            .ok_or(Error::NotFound("tenant"))?;
        tx.commit().await?;
        Ok(TenantData { secrets, versions, projects, environments, templates, policies, retirements, gate_sensitive })
    }

    async fn insert_backup(&self, r: &BackupRow, max: i64, audit: &AuditRow) -> Result<()> {
        let mut conn = self.write_conn().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        // Under the tenant's lock, so two concurrent backups cannot both take the last place.
        let _plan: String = query::<B::Db>(B::LOCK_TENANT).bind(&r.tenant_id).fetch_one_scalar(&mut *tx).await?;
        let kept: i64 =
            query::<B::Db>("SELECT COUNT(*) FROM backups WHERE tenant_id = $1").bind(&r.tenant_id).fetch_one_scalar(&mut *tx).await?;
        if kept >= max {
            return Err(Error::Conflict(format!(
                "this tenant keeps {kept} backups, the most it may: delete one (DELETE /api/v1/backup/{{id}}) first"
            )));
        }
        query::<B::Db>(AssertSqlSafe(format!(
            "INSERT INTO backups ({BACKUP_COLS}, archive) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        )))
        .bind(&r.id)
        .bind(&r.tenant_id)
        .bind(&r.name)
        .bind(r.created_at)
        .bind(&r.created_by)
        .bind(r.secrets)
        .bind(r.versions)
        .bind(r.projects)
        .bind(r.size_bytes)
        .bind(r.passphrase_protected)
        .bind(&r.archive)
        .execute(&mut *tx)
        .await?;
        writes::insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_backups(&self, tenant_id: &str) -> Result<Vec<BackupRow>> {
        query::<B::Db>(AssertSqlSafe(format!("SELECT {BACKUP_COLS} FROM backups WHERE tenant_id = $1 ORDER BY created_at DESC, id DESC")))
            .bind(tenant_id)
            .fetch_all(self.reader())
            .await
    }

    async fn get_backup(&self, tenant_id: &str, id: &str, archive: bool) -> Result<Option<BackupRow>> {
        let cols = if archive { format!("{BACKUP_COLS}, archive") } else { BACKUP_COLS.to_owned() };
        query::<B::Db>(AssertSqlSafe(format!("SELECT {cols} FROM backups WHERE tenant_id = $1 AND id = $2")))
            .bind(tenant_id)
            .bind(id)
            .fetch_optional(self.reader())
            .await
    }

    async fn delete_backup(&self, tenant_id: &str, id: &str, audit: &AuditRow) -> Result<bool> {
        let mut conn = self.write_conn().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        let n = query::<B::Db>("DELETE FROM backups WHERE tenant_id = $1 AND id = $2").bind(tenant_id).bind(id).execute(&mut *tx).await?;
        if n == 0 {
            return Ok(false);
        }
        writes::insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn restore(&self, tenant_id: &str, data: &TenantData, max_secrets: QuotaOf<'_>, now: Millis, audit: &AuditRow) -> Result<()> {
        let mut conn = self.write_conn().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        // The tenant's lock first (creations take it too), then its secrets'
        // rows (every version writer takes its secret's row first).
        let plan: String = query::<B::Db>(B::LOCK_TENANT).bind(tenant_id).fetch_one_scalar(&mut *tx).await?;
        if let Some(max) = max_secrets(&plan)? {
            let live = data.secrets.iter().filter(|s| s.deleted_at.is_none()).count() as i64;
            if live > max {
                return Err(Error::PlanLimitReached(format!(
                    "your plan allows {max} secrets and the backup holds {live}; upgrade the plan to restore it"
                )));
            }
        }
        let _held: Vec<(String,)> = query::<B::Db>(AssertSqlSafe(format!("SELECT id FROM secrets WHERE tenant_id = $1{}", B::FOR_UPDATE)))
            .bind(tenant_id)
            .fetch_all(&mut *tx)
            .await?;
        erase_tenant_data::<B::Db>(&mut tx, tenant_id, now).await?;
        insert_tenant_data::<B::Db>(&mut tx, tenant_id, data).await?;
        self.announce_change(&mut tx, tenant_id).await?;
        writes::insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// What a restore replaces, gone; and what pointed at it, ended.
async fn erase_tenant_data<D: Dialect>(tx: &mut Transaction<'_, D>, tenant_id: &str, now: Millis) -> Result<()> {
    query::<D>(
        "UPDATE shares SET revoked_at = COALESCE(revoked_at, $2), revoke_reason = COALESCE(revoke_reason, $3), sealed = NULL \
         WHERE tenant_id = $1 AND (revoked_at IS NULL OR sealed IS NOT NULL)",
    )
    .bind(tenant_id)
    .bind(now)
    .bind(RESTORED)
    .execute(&mut **tx)
    .await?;
    query::<D>("UPDATE approvals SET status = 'expired' WHERE tenant_id = $1 AND kind = 'read' AND status IN ('pending', 'approved')")
        .bind(tenant_id)
        .execute(&mut **tx)
        .await?;
    for sql in [
        "DELETE FROM rotation_policies WHERE tenant_id = $1",
        "DELETE FROM secret_retirements WHERE secret_id IN (SELECT id FROM secrets WHERE tenant_id = $1)",
        "DELETE FROM secret_versions WHERE secret_id IN (SELECT id FROM secrets WHERE tenant_id = $1)",
        "DELETE FROM secret_tags WHERE tenant_id = $1",
        "DELETE FROM secrets WHERE tenant_id = $1",
        "DELETE FROM project_templates WHERE tenant_id = $1",
        "DELETE FROM project_environments WHERE tenant_id = $1",
        "DELETE FROM projects WHERE tenant_id = $1",
    ] {
        query::<D>(sql).bind(tenant_id).execute(&mut **tx).await?;
    }
    Ok(())
}

async fn insert_tenant_data<D: Dialect>(tx: &mut Transaction<'_, D>, tenant_id: &str, d: &TenantData) -> Result<()> {
    let taken = |what: &str| {
        let what = what.to_owned();
        move || Error::Conflict(format!("the backup's {what} collides with one that exists on this server; nothing was restored"))
    };
    for p in &d.projects {
        query::<D>(
            "INSERT INTO projects (id, tenant_id, name, description, tags, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&p.id)
        .bind(tenant_id)
        .bind(&p.name)
        .bind(&p.description)
        .bind(&p.tags)
        .bind(p.created_at)
        .bind(p.updated_at)
        .execute(&mut **tx)
        .await
        .map_err(|e| writes::constraint_error(e, taken("project")))?;
    }
    for e in &d.environments {
        query::<D>("INSERT INTO project_environments (tenant_id, project_id, name, created_at) VALUES ($1, $2, $3, $4)")
            .bind(tenant_id)
            .bind(&e.project_id)
            .bind(&e.name)
            .bind(e.created_at)
            .execute(&mut **tx)
            .await
            .map_err(|err| writes::constraint_error(err, taken("environment")))?;
    }
    for t in &d.templates {
        query::<D>(
            "INSERT INTO project_templates (tenant_id, project_id, name, description, required, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(tenant_id)
        .bind(&t.project_id)
        .bind(&t.name)
        .bind(&t.description)
        .bind(t.required)
        .bind(t.created_at)
        .execute(&mut **tx)
        .await
        .map_err(|e| writes::constraint_error(e, taken("template entry")))?;
    }
    for s in &d.secrets {
        // An uploaded archive is input: its tags must parse (400), not fail as stored data would (500).
        serde_json::from_str::<Vec<String>>(&s.tags).map_err(|_| Error::InvalidRequest("the backup's tags do not parse".into()))?;
        debug_assert_eq!(s.tenant_id, tenant_id);
        writes::insert_secret_row(tx, s, taken("secret")).await?;
    }
    for v in &d.versions {
        writes::insert_version(tx, v).await?;
    }
    for r in &d.retirements {
        query::<D>("INSERT INTO secret_retirements (secret_id, version, rotated_at, retired_at) VALUES ($1, $2, $3, $4)")
            .bind(&r.secret_id)
            .bind(r.version)
            .bind(r.rotated_at)
            .bind(r.retired_at)
            .execute(&mut **tx)
            .await?;
    }
    for r in &d.policies {
        super::rotation::insert_policy_row(tx, r, taken("rotation policy")).await?;
    }
    query::<D>("UPDATE tenants SET gate_sensitive = $2 WHERE id = $1").bind(tenant_id).bind(d.gate_sensitive).execute(&mut **tx).await?;
    Ok(())
}
