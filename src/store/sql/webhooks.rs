//! [`WebhookStore`] for every [`Backend`]: webhooks and their delivery queue.

use async_trait::async_trait;
use sqlx::AssertSqlSafe;

use super::dialect::query;
use super::{Backend, writes};
use crate::error::{Error, Result};
use crate::store::webhooks::*;
use crate::store::{AuditRow, Millis};

const HOOK_COLS: &str = "id, tenant_id, url, events, secret_sealed, description, enabled, created_by, created_at, updated_at";
const DELIVERY_COLS: &str = "id, webhook_id, tenant_id, event_id, event, created_at, actor, resource_type, resource_id, detail, \
     status, attempts, next_attempt_at, last_status, last_error, delivered_at";

/// Appended to the claim's inner SELECT: PostgreSQL's servers skip the rows
/// another one is claiming; SQLite has one writer, which is enough.
fn skip_locked<B: Backend>() -> &'static str {
    if B::FOR_UPDATE.is_empty() { "" } else { " FOR UPDATE SKIP LOCKED" }
}

#[async_trait]
impl<B: Backend> WebhookStore for B {
    async fn insert_webhook(&self, r: &WebhookRow, max_per_tenant: i64, audit: &AuditRow) -> Result<()> {
        let mut conn = self.write_conn().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        // Serialises concurrent creations of one tenant (PostgreSQL: a row lock).
        query::<B::Db>(B::LOCK_TENANT).bind(&r.tenant_id).execute(&mut *tx).await?;
        let n: i64 =
            query::<B::Db>("SELECT COUNT(*) FROM webhooks WHERE tenant_id = $1").bind(&r.tenant_id).fetch_one_scalar(&mut *tx).await?;
        if n >= max_per_tenant {
            return Err(Error::PlanLimitReached(format!(
                "a tenant has at most {max_per_tenant} webhooks; delete one first (subscribe one to several events, or to *)"
            )));
        }
        query::<B::Db>(AssertSqlSafe(format!("INSERT INTO webhooks ({HOOK_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)")))
            .bind(&r.id)
            .bind(&r.tenant_id)
            .bind(&r.url)
            .bind(&r.events)
            .bind(&r.secret_sealed)
            .bind(&r.description)
            .bind(r.enabled)
            .bind(&r.created_by)
            .bind(r.created_at)
            .bind(r.updated_at)
            .execute(&mut *tx)
            .await
            .map_err(|e| writes::constraint_error(e, || Error::Conflict("that webhook exists".into())))?;
        writes::insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_webhook(&self, tenant_id: &str, id: &str) -> Result<Option<WebhookRow>> {
        query::<B::Db>(AssertSqlSafe(format!("SELECT {HOOK_COLS} FROM webhooks WHERE tenant_id = $1 AND id = $2")))
            .bind(tenant_id)
            .bind(id)
            .fetch_optional(self.reader())
            .await
    }

    async fn list_webhooks(&self, tenant_id: &str) -> Result<Vec<WebhookRow>> {
        query::<B::Db>(AssertSqlSafe(format!("SELECT {HOOK_COLS} FROM webhooks WHERE tenant_id = $1 ORDER BY created_at, id")))
            .bind(tenant_id)
            .fetch_all(self.reader())
            .await
    }

    async fn update_webhook(&self, r: &WebhookRow, audit: &AuditRow) -> Result<bool> {
        let mut conn = self.write_conn().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        let n = query::<B::Db>(
            "UPDATE webhooks SET url = $3, events = $4, secret_sealed = $5, description = $6, enabled = $7, updated_at = $8 \
             WHERE tenant_id = $1 AND id = $2",
        )
        .bind(&r.tenant_id)
        .bind(&r.id)
        .bind(&r.url)
        .bind(&r.events)
        .bind(&r.secret_sealed)
        .bind(&r.description)
        .bind(r.enabled)
        .bind(r.updated_at)
        .execute(&mut *tx)
        .await?;
        if n == 0 {
            return Ok(false);
        }
        if !r.enabled {
            query::<B::Db>("UPDATE webhook_deliveries SET status = $2, last_error = $3 WHERE webhook_id = $1 AND status = $4")
                .bind(&r.id)
                .bind(CANCELLED)
                .bind("the webhook was disabled")
                .bind(PENDING)
                .execute(&mut *tx)
                .await?;
        }
        writes::insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn delete_webhook(&self, tenant_id: &str, id: &str, audit: &AuditRow) -> Result<bool> {
        let mut conn = self.write_conn().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        let n = query::<B::Db>("DELETE FROM webhooks WHERE tenant_id = $1 AND id = $2").bind(tenant_id).bind(id).execute(&mut *tx).await?;
        if n == 0 {
            return Ok(false);
        }
        // The foreign key cascades too; said here so it holds whatever the schema says.
        query::<B::Db>("DELETE FROM webhook_deliveries WHERE webhook_id = $1").bind(id).execute(&mut *tx).await?;
        writes::insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn insert_delivery(&self, d: &DeliveryRow, audit: &AuditRow) -> Result<()> {
        let mut conn = self.write_conn().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        query::<B::Db>(AssertSqlSafe(format!(
            "INSERT INTO webhook_deliveries ({DELIVERY_COLS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
        )))
        .bind(&d.id)
        .bind(&d.webhook_id)
        .bind(&d.tenant_id)
        .bind(&d.event_id)
        .bind(&d.event)
        .bind(d.created_at)
        .bind(&d.actor)
        .bind(&d.resource_type)
        .bind(&d.resource_id)
        .bind(&d.detail)
        .bind(&d.status)
        .bind(d.attempts)
        .bind(d.next_attempt_at)
        .bind(d.last_status)
        .bind(&d.last_error)
        .bind(d.delivered_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| writes::constraint_error(e, || Error::Conflict("that delivery exists".into())))?;
        writes::insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn recent_deliveries(&self, webhook_id: &str, limit: i64) -> Result<Vec<DeliveryRow>> {
        query::<B::Db>(AssertSqlSafe(format!(
            "SELECT {DELIVERY_COLS} FROM webhook_deliveries WHERE webhook_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2"
        )))
        .bind(webhook_id)
        .bind(limit)
        .fetch_all(self.reader())
        .await
    }

    async fn claim_due(&self, now: Millis, lease_until: Millis, limit: i64) -> Result<Vec<DeliveryRow>> {
        // A read first: an idle queue costs no write (SQLite's one writer).
        let any: Option<i64> =
            query::<B::Db>("SELECT next_attempt_at FROM webhook_deliveries WHERE status = $1 AND next_attempt_at <= $2 LIMIT 1")
                .bind(PENDING)
                .bind(now)
                .fetch_optional_scalar(self.reader())
                .await?;
        if any.is_none() {
            return Ok(Vec::new());
        }
        let mut conn = self.write_conn().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        // The outer conditions again: PostgreSQL rechecks them on a row that
        // changed after the inner SELECT saw it.
        let rows: Vec<DeliveryRow> = query::<B::Db>(AssertSqlSafe(format!(
            "UPDATE webhook_deliveries SET attempts = attempts + 1, next_attempt_at = $3 \
             WHERE id IN (SELECT id FROM webhook_deliveries WHERE status = $1 AND next_attempt_at <= $2 \
                          ORDER BY next_attempt_at LIMIT $4{}) \
             AND status = $1 AND next_attempt_at <= $2 RETURNING {DELIVERY_COLS}",
            skip_locked::<B>()
        )))
        .bind(PENDING)
        .bind(now)
        .bind(lease_until)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(rows)
    }

    async fn finish(&self, id: &str, attempts: i64, a: &Attempt) -> Result<bool> {
        let mut conn = self.write_conn().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        let n = query::<B::Db>(
            "UPDATE webhook_deliveries SET status = $3, next_attempt_at = $4, last_status = $5, last_error = $6, delivered_at = $7 \
             WHERE id = $1 AND attempts = $2 AND status = $8",
        )
        .bind(id)
        .bind(attempts)
        .bind(a.status)
        .bind(a.next_attempt_at)
        .bind(a.last_status)
        .bind(&a.last_error)
        .bind(a.delivered_at)
        .bind(PENDING)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(n == 1)
    }

    async fn prune_finished(&self, before: Millis, limit: i64) -> Result<u64> {
        let mut conn = self.write_conn().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        let n = query::<B::Db>(
            "DELETE FROM webhook_deliveries WHERE id IN \
             (SELECT id FROM webhook_deliveries WHERE status <> $1 AND created_at < $2 LIMIT $3)",
        )
        .bind(PENDING)
        .bind(before)
        .bind(limit)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(n)
    }

    async fn queue_depth(&self) -> Result<i64> {
        query::<B::Db>("SELECT COUNT(*) FROM webhook_deliveries WHERE status = $1").bind(PENDING).fetch_one_scalar(self.reader()).await
    }
}
