//! [`LifecycleStore`] for every [`Backend`]: soft delete, restore, purge,
//! version deletion.

use async_trait::async_trait;
use sqlx::AssertSqlSafe;

use super::dialect::query;
use super::{Backend, SECRET_COLS, writes};
use crate::error::Result;
use crate::store::lifecycle::*;
use crate::store::{AuditRow, Millis, QuotaOf, SecretRow};

#[async_trait]
impl<B: Backend> LifecycleStore for B {
    async fn soft_delete(&self, tenant_id: &str, id: &str, now: Millis, audit: &AuditRow) -> Result<Option<SecretRow>> {
        let mut conn = self.write_conn().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        // `updated_at` moves, as every change of a secret's state does (the
        // cache and PostgreSQL's version batch compare it).
        let row: Option<SecretRow> = query::<B::Db>(AssertSqlSafe(format!(
            "UPDATE secrets SET deleted_at = $3, updated_at = CASE WHEN updated_at >= $3 THEN updated_at + 1 ELSE $3 END \
             WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL RETURNING {SECRET_COLS}"
        )))
        .bind(tenant_id)
        .bind(id)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else { return Ok(None) };
        // Its share links end with it, their values erased, as before soft delete.
        super::shares::revoke_for_secret(&mut tx, tenant_id, id, now).await?;
        self.announce_change(&mut tx, tenant_id).await?;
        writes::insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(Some(row))
    }

    async fn restore(
        &self,
        tenant_id: &str,
        id: &str,
        now: Millis,
        max_secrets: QuotaOf<'_>,
        audit: &AuditRow,
    ) -> Result<Option<SecretRow>> {
        let mut conn = self.write_conn().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        writes::check_quota(&mut tx, B::LOCK_TENANT, tenant_id, max_secrets).await?;
        let row: Option<SecretRow> = query::<B::Db>(AssertSqlSafe(format!(
            "UPDATE secrets SET deleted_at = NULL, updated_at = CASE WHEN updated_at >= $3 THEN updated_at + 1 ELSE $3 END \
             WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NOT NULL RETURNING {SECRET_COLS}"
        )))
        .bind(tenant_id)
        .bind(id)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else { return Ok(None) };
        self.announce_change(&mut tx, tenant_id).await?;
        writes::insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(Some(row))
    }

    async fn purge(&self, tenant_id: &str, id: &str, deleted_before: Option<Millis>, audit: &AuditRow) -> Result<bool> {
        let mut conn = self.write_conn().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        // The secret's row first. Every write of a version holds that row
        // until it commits, so on PostgreSQL this waits for a version batch
        // in flight, and the deletes below, each a statement with a snapshot
        // of its own, see what that batch wrote. PostgreSQL's versions have
        // no foreign key to cascade from (migration 0003): deleted the other
        // way round, they could outlive their secret.
        let n = match deleted_before {
            None => {
                query::<B::Db>("DELETE FROM secrets WHERE tenant_id = $1 AND id = $2").bind(tenant_id).bind(id).execute(&mut *tx).await?
            }
            Some(cutoff) => {
                query::<B::Db>("DELETE FROM secrets WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NOT NULL AND deleted_at <= $3")
                    .bind(tenant_id)
                    .bind(id)
                    .bind(cutoff)
                    .execute(&mut *tx)
                    .await?
            }
        };
        if n == 0 {
            return Ok(false);
        }
        writes::erase_secret_rows(&mut tx, id).await?;
        super::shares::revoke_for_secret(&mut tx, tenant_id, id, crate::store::now_millis()).await?;
        self.announce_change(&mut tx, tenant_id).await?;
        writes::insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn purgeable(&self, cutoff: Millis, limit: i64) -> Result<Vec<SecretRow>> {
        query::<B::Db>(AssertSqlSafe(format!(
            "SELECT {SECRET_COLS} FROM secrets WHERE deleted_at IS NOT NULL AND deleted_at <= $1 ORDER BY deleted_at, id LIMIT $2"
        )))
        .bind(cutoff)
        .bind(limit)
        .fetch_all(self.reader())
        .await
    }

    async fn delete_version(&self, tenant_id: &str, id: &str, version: i64, audit: &AuditRow) -> Result<VersionDeleted> {
        let mut conn = self.write_conn().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        let current: Option<i64> = query::<B::Db>(AssertSqlSafe(format!(
            "SELECT current_version FROM secrets WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL{}",
            B::FOR_UPDATE
        )))
        .bind(tenant_id)
        .bind(id)
        .fetch_optional_scalar(&mut *tx)
        .await?;
        match current {
            None => return Ok(VersionDeleted::Missing),
            Some(c) if c == version => return Ok(VersionDeleted::Current),
            Some(_) => {}
        }
        let n = query::<B::Db>("DELETE FROM secret_versions WHERE secret_id = $1 AND version = $2")
            .bind(id)
            .bind(version)
            .execute(&mut *tx)
            .await?;
        if n == 0 {
            return Ok(VersionDeleted::Missing);
        }
        self.announce_change(&mut tx, tenant_id).await?;
        writes::insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(VersionDeleted::Deleted)
    }
}
