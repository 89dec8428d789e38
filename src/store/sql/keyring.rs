//! [`KeyringStore`] for every [`Backend`]: the master-key rotation's reads and
//! its one transaction, and a tenant's data-key rotation with its pass.

use async_trait::async_trait;
use sqlx::AssertSqlSafe;

use super::dialect::query;
use super::{Backend, writes};
use crate::error::{Error, Result};
use crate::store::keyring::*;
use crate::store::{AuditRow, Millis};

const ROTATION_COLS: &str = "tenant_id, generation, state, started_at, started_by, finished_at, resealed, passes, pass_started_at, \
     cursor_secret, cursor_version, leased_until";

#[async_trait]
impl<B: Backend> KeyringStore for B {
    async fn wrapped_keys(&self, after: Option<(&str, i64)>, limit: i64) -> Result<Vec<WrappedKey>> {
        let (tenant, generation) = after.unwrap_or(("", -1));
        let rows: Vec<(String, i64, i64, Vec<u8>)> = query::<B::Db>(
            "SELECT tenant_id, generation, current, wrapped_key FROM ( \
               SELECT id AS tenant_id, key_generation AS generation, CAST(1 AS BIGINT) AS current, wrapped_key FROM tenants \
               UNION ALL SELECT tenant_id, generation, CAST(0 AS BIGINT) AS current, wrapped_key FROM tenant_keys) k \
             WHERE tenant_id > $1 OR (tenant_id = $1 AND generation > $2) ORDER BY tenant_id, generation LIMIT $3",
        )
        .bind(tenant)
        .bind(generation)
        .bind(limit)
        .fetch_all(self.reader())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(tenant_id, generation, current, wrapped_key)| WrappedKey { tenant_id, generation, current: current == 1, wrapped_key })
            .collect())
    }

    async fn rewrap_all(&self, rewraps: &[Rewrap], meta: &[MetaRewrap], key_check: &[u8], audit: &AuditRow) -> Result<()> {
        let mut conn = self.write_conn().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        for r in rewraps {
            // A data-key rotation that started meanwhile moved the current key
            // into `tenant_keys`: the condition on the generation catches it.
            let sql = if r.current {
                "UPDATE tenants SET wrapped_key = $3 WHERE id = $1 AND wrapped_key = $2 AND key_generation = $4"
            } else {
                "UPDATE tenant_keys SET wrapped_key = $3 WHERE tenant_id = $1 AND wrapped_key = $2 AND generation = $4"
            };
            let n = query::<B::Db>(sql).bind(&r.tenant_id).bind(&r.old).bind(&r.new).bind(r.generation).execute(&mut *tx).await?;
            if n == 0 {
                return Err(Error::Conflict(format!(
                    "tenant '{}' changed while the master key was being rotated; nothing was changed, run it again",
                    r.tenant_id
                )));
            }
        }
        for m in meta {
            let n = query::<B::Db>("UPDATE meta SET value = $3 WHERE key = $1 AND value = $2")
                .bind(m.key)
                .bind(&m.old)
                .bind(&m.new)
                .execute(&mut *tx)
                .await?;
            if n == 0 {
                return Err(Error::Conflict(format!("'{}' changed while the master key was being rotated; run it again", m.key)));
            }
        }
        query::<B::Db>("UPDATE meta SET value = $1 WHERE key = 'key_check'").bind(key_check).execute(&mut *tx).await?;
        writes::insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn tenant_keys(&self, tenant_id: &str) -> Result<Option<TenantKeys>> {
        // The retired keys are read second: a rotation committing between the
        // two reads moves the current key there, so none is missed.
        let Some((generation, current)) = query::<B::Db>("SELECT key_generation, wrapped_key FROM tenants WHERE id = $1")
            .bind(tenant_id)
            .fetch_optional(self.reader())
            .await?
        else {
            return Ok(None);
        };
        let older: Vec<(i64, Vec<u8>)> =
            query::<B::Db>("SELECT generation, wrapped_key FROM tenant_keys WHERE tenant_id = $1 AND generation <> $2 ORDER BY generation")
                .bind(tenant_id)
                .bind(generation)
                .fetch_all(self.reader())
                .await?;
        Ok(Some(TenantKeys { generation, current, older }))
    }

    async fn start_key_rotation(&self, tenant_id: &str, from: i64, wrapped: &[u8], by: &str, audit: &AuditRow) -> Result<KeyRotationRow> {
        let now = audit.at;
        let mut conn = self.write_conn().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        query::<B::Db>(B::LOCK_TENANT).bind(tenant_id).execute(&mut *tx).await?;
        let state: Option<String> =
            query::<B::Db>("SELECT state FROM key_rotations WHERE tenant_id = $1").bind(tenant_id).fetch_optional_scalar(&mut *tx).await?;
        if state.as_deref() == Some(RUNNING) {
            return Err(Error::Conflict(
                "a data-key rotation of this tenant is still running: GET /api/v1/tenant/key shows its progress".into(),
            ));
        }
        let retired = query::<B::Db>(
            "INSERT INTO tenant_keys (tenant_id, generation, wrapped_key, retired_at) \
             SELECT id, key_generation, wrapped_key, $3 FROM tenants WHERE id = $1 AND key_generation = $2",
        )
        .bind(tenant_id)
        .bind(from)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if retired == 0 {
            return Err(Error::Conflict("the tenant's data key changed meanwhile; send the request again".into()));
        }
        query::<B::Db>("UPDATE tenants SET wrapped_key = $2, key_generation = $3 WHERE id = $1")
            .bind(tenant_id)
            .bind(wrapped)
            .bind(from + 1)
            .execute(&mut *tx)
            .await?;
        let row: KeyRotationRow = query::<B::Db>(AssertSqlSafe(format!(
            "INSERT INTO key_rotations (tenant_id, generation, state, started_at, started_by) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (tenant_id) DO UPDATE SET generation = excluded.generation, state = excluded.state, \
               started_at = excluded.started_at, started_by = excluded.started_by, finished_at = NULL, resealed = 0, passes = 0, \
               pass_started_at = NULL, cursor_secret = NULL, cursor_version = NULL, leased_by = NULL, leased_until = 0 \
             RETURNING {ROTATION_COLS}"
        )))
        .bind(tenant_id)
        .bind(from + 1)
        .bind(RUNNING)
        .bind(now)
        .bind(by)
        .fetch_one(&mut *tx)
        .await?;
        writes::insert_audit(&mut tx, audit).await?;
        self.announce_change(&mut tx, tenant_id).await?;
        tx.commit().await?;
        Ok(row)
    }

    async fn key_rotation(&self, tenant_id: &str) -> Result<Option<KeyRotationRow>> {
        query::<B::Db>(AssertSqlSafe(format!("SELECT {ROTATION_COLS} FROM key_rotations WHERE tenant_id = $1")))
            .bind(tenant_id)
            .fetch_optional(self.reader())
            .await
    }

    async fn key_rotations_since(&self, since: Millis) -> Result<Vec<(String, i64)>> {
        query::<B::Db>("SELECT tenant_id, generation FROM key_rotations WHERE started_at >= $1").bind(since).fetch_all(self.reader()).await
    }

    async fn lease_key_rotation(
        &self,
        by: &str,
        now: Millis,
        lease_until: Millis,
        started_before: Millis,
    ) -> Result<Option<KeyRotationRow>> {
        // A read first: with no rotation running (nearly always) the poll
        // costs no write, which on SQLite would take the one writer.
        let due: Option<String> = query::<B::Db>(
            "SELECT tenant_id FROM key_rotations WHERE state = $1 AND (leased_until < $2 OR leased_by = $3) AND started_at <= $4 \
             ORDER BY started_at LIMIT 1",
        )
        .bind(RUNNING)
        .bind(now)
        .bind(by)
        .bind(started_before)
        .fetch_optional_scalar(self.reader())
        .await?;
        let Some(tenant_id) = due else { return Ok(None) };
        let mut conn = self.write_conn().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        let row: Option<KeyRotationRow> = query::<B::Db>(AssertSqlSafe(format!(
            "UPDATE key_rotations SET leased_by = $2, leased_until = $4 WHERE tenant_id = $1 AND state = $5 AND (leased_until < $3 OR leased_by = $2) \
             RETURNING {ROTATION_COLS}"
        )))
        .bind(&tenant_id)
        .bind(by)
        .bind(now)
        .bind(lease_until)
        .bind(RUNNING)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(row)
    }

    async fn count_versions(&self, tenant_id: &str) -> Result<i64> {
        query::<B::Db>("SELECT COUNT(*) FROM secret_versions v JOIN secrets s ON s.id = v.secret_id WHERE s.tenant_id = $1")
            .bind(tenant_id)
            .fetch_one_scalar(self.reader())
            .await
    }

    async fn versions_after(&self, tenant_id: &str, after: Option<(&str, i64)>, limit: i64) -> Result<Vec<SealedVersion>> {
        let (secret, version) = after.unwrap_or(("", 0));
        query::<B::Db>(
            "SELECT v.secret_id, v.version, v.sealed FROM secret_versions v JOIN secrets s ON s.id = v.secret_id \
             WHERE s.tenant_id = $1 AND (v.secret_id > $2 OR (v.secret_id = $2 AND v.version > $3)) \
             ORDER BY v.secret_id, v.version LIMIT $4",
        )
        .bind(tenant_id)
        .bind(secret)
        .bind(version)
        .bind(limit)
        .fetch_all(self.reader())
        .await
    }

    async fn save_key_rotation(&self, row: &KeyRotationRow, by: &str, reseals: &[Reseal]) -> Result<bool> {
        let mut conn = self.write_conn().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        let held = query::<B::Db>(
            "UPDATE key_rotations SET state = $4, finished_at = $5, passes = $6, pass_started_at = $7, cursor_secret = $8, \
               cursor_version = $9, leased_until = $10 \
             WHERE tenant_id = $1 AND generation = $2 AND leased_by = $3 AND state = $11",
        )
        .bind(&row.tenant_id)
        .bind(row.generation)
        .bind(by)
        .bind(&row.state)
        .bind(row.finished_at)
        .bind(row.passes)
        .bind(row.pass_started_at)
        .bind(&row.cursor_secret)
        .bind(row.cursor_version)
        .bind(row.leased_until)
        .bind(RUNNING)
        .execute(&mut *tx)
        .await?;
        if held == 0 {
            return Ok(false);
        }
        // A version deleted, or written again, since the pass read it is left
        // as it is now, and not counted.
        let mut resealed = 0i64;
        for r in reseals {
            resealed += query::<B::Db>("UPDATE secret_versions SET sealed = $3 WHERE secret_id = $1 AND version = $2 AND sealed = $4")
                .bind(&r.secret_id)
                .bind(r.version)
                .bind(&r.new)
                .bind(&r.old)
                .execute(&mut *tx)
                .await? as i64;
        }
        query::<B::Db>("UPDATE key_rotations SET resealed = resealed + $2 WHERE tenant_id = $1")
            .bind(&row.tenant_id)
            .bind(resealed)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }
}
