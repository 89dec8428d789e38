//! [`RotationStore`] for every [`Backend`]: rotation policies, retired
//! versions and the rotation itself.

use async_trait::async_trait;
use sqlx::{AssertSqlSafe, Transaction};

use super::dialect::{Dialect, query};
use super::{Backend, KEY_COLS, SECRET_COLS, writes};
use crate::error::{Error, Result};
use crate::store::rotation::*;
use crate::store::{ApiKeyRow, AuditRow, Millis, SecretRow, WriteOutcome};

pub(super) const POLICY_COLS: &str = "id, tenant_id, secret_id, schedule, alert_days_before, generator, grace_period_ms, next_run_at, \
     alerted_for, last_rotated_at, created_by, created_at, updated_at";

const ONE_PER_SECRET: &str = "that secret has a rotation policy already: change it with PUT /api/v1/rotation/{id}";

/// A policy's row as it is: a new policy's, or a restored backup's.
/// `on_unique` says what a taken id (or secret) means to the caller.
pub(super) async fn insert_policy_row<D: Dialect>(
    tx: &mut Transaction<'_, D>,
    r: &PolicyRow,
    on_unique: impl FnOnce() -> Error,
) -> Result<()> {
    query::<D>(AssertSqlSafe(format!(
        "INSERT INTO rotation_policies ({POLICY_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
    )))
    .bind(&r.id)
    .bind(&r.tenant_id)
    .bind(&r.secret_id)
    .bind(&r.schedule)
    .bind(r.alert_days_before)
    .bind(&r.generator)
    .bind(r.grace_period_ms)
    .bind(r.next_run_at)
    .bind(r.alerted_for)
    .bind(r.last_rotated_at)
    .bind(&r.created_by)
    .bind(r.created_at)
    .bind(r.updated_at)
    .execute(&mut **tx)
    .await
    .map_err(|e| writes::constraint_error(e, on_unique))?;
    Ok(())
}

#[async_trait]
impl<B: Backend> RotationStore for B {
    async fn insert_policy(&self, r: &PolicyRow, audit: &AuditRow) -> Result<()> {
        let mut conn = self.write_conn().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        insert_policy_row(&mut tx, r, || Error::Conflict(ONE_PER_SECRET.into())).await?;
        writes::insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_policy(&self, tenant_id: &str, id: &str) -> Result<Option<PolicyRow>> {
        query::<B::Db>(AssertSqlSafe(format!("SELECT {POLICY_COLS} FROM rotation_policies WHERE tenant_id = $1 AND id = $2")))
            .bind(tenant_id)
            .bind(id)
            .fetch_optional(self.reader())
            .await
    }

    async fn policy_for_secret(&self, tenant_id: &str, secret_id: &str) -> Result<Option<PolicyRow>> {
        query::<B::Db>(AssertSqlSafe(format!("SELECT {POLICY_COLS} FROM rotation_policies WHERE tenant_id = $1 AND secret_id = $2")))
            .bind(tenant_id)
            .bind(secret_id)
            .fetch_optional(self.reader())
            .await
    }

    async fn list_policies(&self, tenant_id: &str, limit: i64) -> Result<Vec<PolicyRow>> {
        query::<B::Db>(AssertSqlSafe(format!(
            "SELECT {POLICY_COLS} FROM rotation_policies WHERE tenant_id = $1 ORDER BY created_at, id LIMIT $2"
        )))
        .bind(tenant_id)
        .bind(limit)
        .fetch_all(self.reader())
        .await
    }

    async fn update_policy(&self, r: &PolicyRow, audit: &AuditRow) -> Result<bool> {
        let mut conn = self.write_conn().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        let n = query::<B::Db>(
            "UPDATE rotation_policies SET schedule = $3, alert_days_before = $4, generator = $5, grace_period_ms = $6, \
             next_run_at = $7, updated_at = $8 WHERE tenant_id = $1 AND id = $2",
        )
        .bind(&r.tenant_id)
        .bind(&r.id)
        .bind(&r.schedule)
        .bind(r.alert_days_before)
        .bind(&r.generator)
        .bind(r.grace_period_ms)
        .bind(r.next_run_at)
        .bind(r.updated_at)
        .execute(&mut *tx)
        .await?;
        if n == 0 {
            return Ok(false);
        }
        writes::insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn delete_policy(&self, tenant_id: &str, id: &str, audit: &AuditRow) -> Result<bool> {
        let mut conn = self.write_conn().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        let n = query::<B::Db>("DELETE FROM rotation_policies WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_id)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if n == 0 {
            return Ok(false);
        }
        writes::insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn due_policies(&self, now: Millis, limit: i64) -> Result<Vec<PolicyRow>> {
        query::<B::Db>(AssertSqlSafe(format!(
            "SELECT {POLICY_COLS} FROM rotation_policies WHERE next_run_at <= $1 ORDER BY next_run_at, id LIMIT $2"
        )))
        .bind(now)
        .bind(limit)
        .fetch_all(self.reader())
        .await
    }

    async fn alerts_due(&self, now: Millis, limit: i64) -> Result<Vec<PolicyRow>> {
        query::<B::Db>(AssertSqlSafe(format!(
            "SELECT {POLICY_COLS} FROM rotation_policies WHERE alert_days_before IS NOT NULL \
             AND next_run_at - alert_days_before * 86400000 <= $1 AND (alerted_for IS NULL OR alerted_for <> next_run_at) \
             ORDER BY next_run_at, id LIMIT $2"
        )))
        .bind(now)
        .bind(limit)
        .fetch_all(self.reader())
        .await
    }

    async fn mark_alerted(&self, id: &str, next_run_at: Millis, audit: &AuditRow) -> Result<bool> {
        let mut conn = self.write_conn().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        let n = query::<B::Db>(
            "UPDATE rotation_policies SET alerted_for = $2 WHERE id = $1 AND next_run_at = $2 \
             AND (alerted_for IS NULL OR alerted_for <> $2)",
        )
        .bind(id)
        .bind(next_run_at)
        .execute(&mut *tx)
        .await?;
        if n == 0 {
            return Ok(false);
        }
        writes::insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn rotate(
        &self,
        tenant_id: &str,
        id: &str,
        advance: Option<&Advance>,
        now: Millis,
        change: RotateChange<'_>,
    ) -> Result<RotateOutcome> {
        let mut conn = self.write_conn().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        // The secret's row first (every writer of a version takes it first),
        // then the policy's: one order for every rotation.
        let current: Option<SecretRow> =
            query::<B::Db>(AssertSqlSafe(format!("SELECT {SECRET_COLS} FROM secrets WHERE tenant_id = $1 AND id = $2{}", B::FOR_UPDATE)))
                .bind(tenant_id)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(current) = current else { return Ok(RotateOutcome::Done(WriteOutcome::Missing, (0, 0))) };
        if let Some(a) = advance {
            // The claim: on PostgreSQL a second server's UPDATE waits for
            // this row, then finds `next_run_at` moved and changes nothing.
            let n = query::<B::Db>(
                "UPDATE rotation_policies SET next_run_at = $3, last_rotated_at = $4, updated_at = $4 \
                 WHERE tenant_id = $1 AND id = $2 AND ($5 IS NULL OR next_run_at = $5)",
            )
            .bind(tenant_id)
            .bind(&a.policy_id)
            .bind(a.next_run_at)
            .bind(now)
            .bind(a.seen_next_run_at)
            .execute(&mut *tx)
            .await?;
            if n == 0 && a.seen_next_run_at.is_some() {
                return Ok(RotateOutcome::Taken);
            }
        }
        // A grant was approved for the value it would read: a new value
        // needs a new approval.
        let grants = query::<B::Db>(
            "UPDATE approvals SET status = 'expired' WHERE tenant_id = $1 AND secret_id = $2 AND kind = 'read' AND status = 'approved'",
        )
        .bind(tenant_id)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let tokens: Vec<ApiKeyRow> = query::<B::Db>(AssertSqlSafe(format!(
            "SELECT {KEY_COLS} FROM api_keys WHERE tenant_id = $1 AND kind = 'token' AND revoked_at IS NULL \
             AND (expires_at IS NULL OR expires_at > $2)"
        )))
        .bind(tenant_id)
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        let r = change(&current, &tokens, grants)?;
        let n = query::<B::Db>(
            "UPDATE secrets SET current_version = $3, updated_at = $4, retiring_version = $5, retiring_until = $6 \
             WHERE tenant_id = $1 AND id = $2 AND current_version = $7",
        )
        .bind(tenant_id)
        .bind(id)
        .bind(r.row.current_version)
        .bind(r.row.updated_at)
        .bind(r.row.retiring_version)
        .bind(r.row.retiring_until)
        .bind(current.current_version)
        .execute(&mut *tx)
        .await?;
        if n == 0 {
            return Ok(RotateOutcome::Done(WriteOutcome::Stale { current: current.current_version }, (0, 0)));
        }
        writes::insert_version(&mut tx, &r.version).await?;
        // One retiring version at a time (the row names one): a rotation
        // ends the grace of the version the previous one left readable.
        query::<B::Db>("UPDATE secret_retirements SET retired_at = $2 WHERE secret_id = $1 AND retired_at > $2")
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        query::<B::Db>("INSERT INTO secret_retirements (secret_id, version, rotated_at, retired_at) VALUES ($1, $2, $3, $4)")
            .bind(id)
            .bind(r.retired.0)
            .bind(now)
            .bind(r.retired.1)
            .execute(&mut *tx)
            .await?;
        // The actor's entry first, while its own key is as it was: a token
        // may rotate a secret its own scope covers, and so revoke itself.
        writes::insert_audits(&mut tx, &r.audit).await?;
        for token in &r.revoke {
            query::<B::Db>("UPDATE api_keys SET revoked_at = $3, updated_at = $3 WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL")
                .bind(tenant_id)
                .bind(token)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        self.announce_change(&mut tx, tenant_id).await?;
        tx.commit().await?;
        Ok(RotateOutcome::Done(WriteOutcome::Written(Box::new(r.row)), (r.revoke.len(), grants)))
    }

    async fn retired_at(&self, secret_id: &str, version: i64) -> Result<Option<Millis>> {
        query::<B::Db>("SELECT retired_at FROM secret_retirements WHERE secret_id = $1 AND version = $2")
            .bind(secret_id)
            .bind(version)
            .fetch_optional_scalar(self.reader())
            .await
    }

    async fn last_rotated_at(&self, secret_id: &str) -> Result<Option<Millis>> {
        let at: Option<Option<Millis>> = query::<B::Db>("SELECT MAX(rotated_at) FROM secret_retirements WHERE secret_id = $1")
            .bind(secret_id)
            .fetch_optional_scalar(self.reader())
            .await?;
        Ok(at.flatten())
    }
}
