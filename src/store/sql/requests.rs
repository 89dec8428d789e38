//! [`RequestStore`] for every [`Backend`]: secret requests.

use async_trait::async_trait;
use sqlx::AssertSqlSafe;

use super::dialect::query;
use super::{Backend, writes};
use crate::error::{Error, Result};
use crate::store::requests::*;
use crate::store::{AuditRow, Millis};

const REQUEST_COLS: &str = "id, tenant_id, requester_key_id, requester_name, name, reason, project_id, environment, \
     instructions, obtain_url, exposure, access_tier, status, created_at, expires_at, taken_at, fulfilled_at, fulfilled_by, \
     secret_id, cancelled_at";

/// Whether a row may be taken or cancelled now: pending and not expired, or
/// stuck in `filling` past the hold. `$3` is now.
const OPEN: &str = "((status = 'pending' AND expires_at > $3) OR (status = 'filling' AND taken_at <= $3 - 60000))";

#[async_trait]
impl<B: Backend> RequestStore for B {
    async fn insert_request(&self, r: &RequestRow, audit: &AuditRow) -> Result<()> {
        let mut conn = self.write_conn().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        query::<B::Db>(AssertSqlSafe(format!(
            "INSERT INTO secret_requests ({REQUEST_COLS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)"
        )))
        .bind(&r.id)
        .bind(&r.tenant_id)
        .bind(&r.requester_key_id)
        .bind(&r.requester_name)
        .bind(&r.name)
        .bind(&r.reason)
        .bind(&r.project_id)
        .bind(&r.environment)
        .bind(&r.instructions)
        .bind(&r.obtain_url)
        .bind(&r.exposure)
        .bind(&r.access_tier)
        .bind(&r.status)
        .bind(r.created_at)
        .bind(r.expires_at)
        .bind(r.taken_at)
        .bind(r.fulfilled_at)
        .bind(&r.fulfilled_by)
        .bind(&r.secret_id)
        .bind(r.cancelled_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| writes::constraint_error(e, || Error::Conflict("that secret request exists".into())))?;
        writes::insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_request(&self, tenant_id: &str, id: &str) -> Result<Option<RequestRow>> {
        query::<B::Db>(AssertSqlSafe(format!("SELECT {REQUEST_COLS} FROM secret_requests WHERE id = $1 AND tenant_id = $2")))
            .bind(id)
            .bind(tenant_id)
            .fetch_optional(self.reader())
            .await
    }

    async fn list_requests(&self, tenant_id: &str, limit: i64) -> Result<Vec<RequestRow>> {
        query::<B::Db>(AssertSqlSafe(format!(
            "SELECT {REQUEST_COLS} FROM secret_requests WHERE tenant_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2"
        )))
        .bind(tenant_id)
        .bind(limit)
        .fetch_all(self.reader())
        .await
    }

    async fn take_request(&self, tenant_id: &str, id: &str, now: Millis) -> Result<Option<RequestRow>> {
        debug_assert_eq!(FILLING_HOLD_MS, 60_000, "OPEN spells the hold out");
        let mut conn = self.write_conn().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        let taken: Option<RequestRow> = query::<B::Db>(AssertSqlSafe(format!(
            "UPDATE secret_requests SET status = 'filling', taken_at = $3 \
             WHERE id = $1 AND tenant_id = $2 AND {OPEN} RETURNING {REQUEST_COLS}"
        )))
        .bind(id)
        .bind(tenant_id)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(taken)
    }

    async fn finish_request(
        &self,
        tenant_id: &str,
        id: &str,
        now: Millis,
        by: &str,
        secret_id: &str,
        audit: &AuditRow,
    ) -> Result<Option<RequestRow>> {
        let mut conn = self.write_conn().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        let done: Option<RequestRow> = query::<B::Db>(AssertSqlSafe(format!(
            "UPDATE secret_requests SET status = 'fulfilled', fulfilled_at = $3, fulfilled_by = $4, secret_id = $5 \
             WHERE id = $1 AND tenant_id = $2 AND status = 'filling' RETURNING {REQUEST_COLS}"
        )))
        .bind(id)
        .bind(tenant_id)
        .bind(now)
        .bind(by)
        .bind(secret_id)
        .fetch_optional(&mut *tx)
        .await?;
        if done.is_none() {
            return Ok(None);
        }
        writes::insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(done)
    }

    async fn release_request(&self, tenant_id: &str, id: &str) -> Result<()> {
        let mut conn = self.write_conn().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        query::<B::Db>(
            "UPDATE secret_requests SET status = 'pending', taken_at = NULL WHERE id = $1 AND tenant_id = $2 AND status = 'filling'",
        )
        .bind(id)
        .bind(tenant_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn cancel_request(&self, tenant_id: &str, id: &str, now: Millis, audit: &AuditRow) -> Result<Option<RequestRow>> {
        let mut conn = self.write_conn().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        let done: Option<RequestRow> = query::<B::Db>(AssertSqlSafe(format!(
            "UPDATE secret_requests SET status = 'cancelled', cancelled_at = $3 \
             WHERE id = $1 AND tenant_id = $2 AND {OPEN} RETURNING {REQUEST_COLS}"
        )))
        .bind(id)
        .bind(tenant_id)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        if done.is_none() {
            return Ok(None);
        }
        writes::insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(done)
    }
}
