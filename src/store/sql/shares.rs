//! [`ShareStore`] for every [`Backend`]: share links.

use async_trait::async_trait;
use sqlx::{AssertSqlSafe, Transaction};

use super::dialect::{Dialect, query};
use super::{Backend, writes};
use crate::error::{Error, Result};
use crate::store::shares::*;
use crate::store::{AuditRow, Millis};

const SHARE_COLS: &str = "id, token_hash, tenant_id, secret_id, secret_name, secret_type, project_id, created_by, sealed, \
     password_hash, allowed_ips, max_uses, uses, failed_attempts, locked_until, created_at, expires_at, revoked_at, \
     revoke_reason, last_accessed_at";

/// Why a deleted secret's links stopped (see `LifecycleStore::soft_delete` and `purge`).
pub(super) const SECRET_DELETED: &str = "the secret was deleted";

/// Revokes the links of a secret being deleted and erases their values,
/// inside the deletion's transaction.
pub(super) async fn revoke_for_secret<D: Dialect>(
    tx: &mut Transaction<'_, D>,
    tenant_id: &str,
    secret_id: &str,
    now: Millis,
) -> Result<()> {
    query::<D>(
        "UPDATE shares SET revoked_at = COALESCE(revoked_at, $3), revoke_reason = COALESCE(revoke_reason, $4), sealed = NULL \
         WHERE tenant_id = $1 AND secret_id = $2 AND (revoked_at IS NULL OR sealed IS NOT NULL)",
    )
    .bind(tenant_id)
    .bind(secret_id)
    .bind(now)
    .bind(SECRET_DELETED)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[async_trait]
impl<B: Backend> ShareStore for B {
    async fn insert_share(&self, s: &ShareRow, audit: &AuditRow) -> Result<()> {
        let mut conn = self.write_conn().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        query::<B::Db>(AssertSqlSafe(format!(
            "INSERT INTO shares ({SHARE_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)"
        )))
        .bind(&s.id)
        .bind(&s.token_hash)
        .bind(&s.tenant_id)
        .bind(&s.secret_id)
        .bind(&s.secret_name)
        .bind(&s.secret_type)
        .bind(&s.project_id)
        .bind(&s.created_by)
        .bind(&s.sealed)
        .bind(&s.password_hash)
        .bind(&s.allowed_ips)
        .bind(s.max_uses)
        .bind(s.uses)
        .bind(s.failed_attempts)
        .bind(s.locked_until)
        .bind(s.created_at)
        .bind(s.expires_at)
        .bind(s.revoked_at)
        .bind(&s.revoke_reason)
        .bind(s.last_accessed_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| writes::constraint_error(e, || Error::Conflict("that share link exists".into())))?;
        writes::insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn find_share_by_token(&self, token_hash: &[u8]) -> Result<Option<ShareRow>> {
        query::<B::Db>(AssertSqlSafe(format!("SELECT {SHARE_COLS} FROM shares WHERE token_hash = $1")))
            .bind(token_hash)
            .fetch_optional(self.reader())
            .await
    }

    async fn get_share(&self, tenant_id: &str, id: &str) -> Result<Option<ShareRow>> {
        query::<B::Db>(AssertSqlSafe(format!("SELECT {SHARE_COLS} FROM shares WHERE tenant_id = $1 AND id = $2")))
            .bind(tenant_id)
            .bind(id)
            .fetch_optional(self.reader())
            .await
    }

    async fn list_shares(&self, tenant_id: &str, limit: i64) -> Result<Vec<ShareRow>> {
        query::<B::Db>(AssertSqlSafe(format!("SELECT {SHARE_COLS} FROM shares WHERE tenant_id = $1 ORDER BY created_at DESC, id LIMIT $2")))
            .bind(tenant_id)
            .bind(limit)
            .fetch_all(self.reader())
            .await
    }

    async fn take_share_use(&self, id: &str, now: Millis, audit: &AuditRow) -> Result<Option<ShareRow>> {
        let mut conn = self.write_conn().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        let taken: Option<ShareRow> = query::<B::Db>(AssertSqlSafe(format!(
            "UPDATE shares SET uses = uses + 1, failed_attempts = 0, locked_until = NULL, last_accessed_at = $2, \
             sealed = CASE WHEN uses + 1 >= max_uses THEN NULL ELSE sealed END \
             WHERE id = $1 AND uses < max_uses AND revoked_at IS NULL AND expires_at > $2 AND sealed IS NOT NULL \
             AND (locked_until IS NULL OR locked_until <= $2) RETURNING {SHARE_COLS}"
        )))
        .bind(id)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        if taken.is_none() {
            return Ok(None);
        }
        writes::insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(taken)
    }

    async fn fail_share_password(
        &self,
        id: &str,
        now: Millis,
        lock_after: i64,
        lock_until: Millis,
        audit: &AuditRow,
    ) -> Result<Option<Failed>> {
        let mut conn = self.write_conn().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        // Only an unlocked link gets here; a lock that has ended restarts the count.
        let failed: Option<(i64, Option<Millis>)> = query::<B::Db>(
            "UPDATE shares SET \
             failed_attempts = CASE WHEN locked_until IS NOT NULL THEN 1 ELSE failed_attempts + 1 END, \
             locked_until = CASE WHEN (CASE WHEN locked_until IS NOT NULL THEN 1 ELSE failed_attempts + 1 END) >= $3 \
             THEN $4 ELSE NULL END \
             WHERE id = $1 AND (locked_until IS NULL OR locked_until <= $2) RETURNING failed_attempts, locked_until",
        )
        .bind(id)
        .bind(now)
        .bind(lock_after)
        .bind(lock_until)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((failed_attempts, locked_until)) = failed else { return Ok(None) };
        writes::insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(Some(Failed { failed_attempts, locked_until }))
    }

    async fn revoke_share(
        &self,
        tenant_id: &str,
        id: &str,
        now: Millis,
        reason: Option<&str>,
        audit: &AuditRow,
    ) -> Result<Option<ShareRow>> {
        let mut conn = self.write_conn().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        let revoked: Option<ShareRow> = query::<B::Db>(AssertSqlSafe(format!(
            "UPDATE shares SET revoked_at = $3, revoke_reason = $4, sealed = NULL \
             WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL RETURNING {SHARE_COLS}"
        )))
        .bind(tenant_id)
        .bind(id)
        .bind(now)
        .bind(reason.map(str::to_owned))
        .fetch_optional(&mut *tx)
        .await?;
        if revoked.is_none() {
            return Ok(None);
        }
        writes::insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(revoked)
    }

    async fn extend_share(
        &self,
        tenant_id: &str,
        id: &str,
        now: Millis,
        expires_at: Option<Millis>,
        max_uses: Option<i64>,
        audit: &AuditRow,
    ) -> Result<Option<ShareRow>> {
        let mut conn = self.write_conn().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        let extended: Option<ShareRow> = query::<B::Db>(AssertSqlSafe(format!(
            "UPDATE shares SET expires_at = COALESCE($4, expires_at), max_uses = COALESCE($5, max_uses) \
             WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL AND expires_at > $3 AND sealed IS NOT NULL \
             AND COALESCE($5, max_uses) > uses RETURNING {SHARE_COLS}"
        )))
        .bind(tenant_id)
        .bind(id)
        .bind(now)
        .bind(expires_at)
        .bind(max_uses)
        .fetch_optional(&mut *tx)
        .await?;
        if extended.is_none() {
            return Ok(None);
        }
        writes::insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(extended)
    }

    async fn erase_ended_shares(&self, tenant_id: Option<&str>, now: Millis) -> Result<u64> {
        let mut conn = self.write_conn().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        // Revoked and used-up links were erased by the UPDATE that ended
        // them; the second clause is a safety net, the first the real work.
        let sql = "UPDATE shares SET sealed = NULL WHERE sealed IS NOT NULL \
                   AND (expires_at <= $1 OR revoked_at IS NOT NULL OR uses >= max_uses)";
        let n = match tenant_id {
            Some(t) => query::<B::Db>(AssertSqlSafe(format!("{sql} AND tenant_id = $2"))).bind(now).bind(t).execute(&mut *tx).await?,
            None => query::<B::Db>(sql).bind(now).execute(&mut *tx).await?,
        };
        tx.commit().await?;
        Ok(n)
    }
}
