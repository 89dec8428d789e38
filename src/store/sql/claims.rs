//! [`ClaimStore`] for every [`Backend`]: claim tokens and their redemption.

use async_trait::async_trait;
use sqlx::AssertSqlSafe;

use super::dialect::query;
use super::{Backend, writes};
use crate::error::{Error, Result};
use crate::store::claims::*;
use crate::store::{AuditRow, Millis, QuotaOf};

const CLAIM_COLS: &str = "id, token_hash, creator_tenant_id, creator_key_id, target_tenant_id, contract_id, secret_name, \
     secret_type, source_secret_id, sealed, status, created_at, expires_at, redeemed_at, redeemed_by, redeemed_secret_id, revoked_at";

#[async_trait]
impl<B: Backend> ClaimStore for B {
    async fn insert_claim(&self, c: &ClaimRow, audit: &[AuditRow]) -> Result<()> {
        let mut conn = self.write_conn().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        query::<B::Db>(AssertSqlSafe(format!(
            "INSERT INTO claim_tokens ({CLAIM_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
        )))
        .bind(&c.id)
        .bind(&c.token_hash)
        .bind(&c.creator_tenant_id)
        .bind(&c.creator_key_id)
        .bind(&c.target_tenant_id)
        .bind(&c.contract_id)
        .bind(&c.secret_name)
        .bind(&c.secret_type)
        .bind(&c.source_secret_id)
        .bind(&c.sealed)
        .bind(&c.status)
        .bind(c.created_at)
        .bind(c.expires_at)
        .bind(c.redeemed_at)
        .bind(&c.redeemed_by)
        .bind(&c.redeemed_secret_id)
        .bind(c.revoked_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| writes::constraint_error(e, || Error::Conflict("that claim token exists".into())))?;
        writes::insert_audits(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn find_claim_by_hash(&self, token_hash: &[u8]) -> Result<Option<ClaimRow>> {
        query::<B::Db>(AssertSqlSafe(format!("SELECT {CLAIM_COLS} FROM claim_tokens WHERE token_hash = $1")))
            .bind(token_hash)
            .fetch_optional(self.reader())
            .await
    }

    async fn get_claim(&self, id: &str) -> Result<Option<ClaimRow>> {
        query::<B::Db>(AssertSqlSafe(format!("SELECT {CLAIM_COLS} FROM claim_tokens WHERE id = $1")))
            .bind(id)
            .fetch_optional(self.reader())
            .await
    }

    async fn list_claims(&self, tenant_id: &str, limit: i64) -> Result<Vec<ClaimRow>> {
        // Two index range scans (by creator, by target), merged.
        query::<B::Db>(AssertSqlSafe(format!(
            "SELECT {CLAIM_COLS} FROM claim_tokens WHERE creator_tenant_id = $1 \
             UNION SELECT {CLAIM_COLS} FROM claim_tokens WHERE target_tenant_id = $1 \
             ORDER BY created_at DESC, id DESC LIMIT $2"
        )))
        .bind(tenant_id)
        .bind(limit)
        .fetch_all(self.reader())
        .await
    }

    async fn redeem_claim(
        &self,
        token_hash: &[u8],
        target_tenant_id: &str,
        redeemed_by: &str,
        now: Millis,
        max_secrets: QuotaOf<'_>,
        then: ClaimRedeem<'_>,
    ) -> Result<Option<ClaimRow>> {
        let mut conn = self.write_conn().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        // The one statement that decides which redemption wins: on
        // PostgreSQL a concurrent one waits for this row and then finds it
        // no longer pending; on SQLite there is one writer.
        let taken: Option<ClaimRow> = query::<B::Db>(AssertSqlSafe(format!(
            "UPDATE claim_tokens SET status = 'claimed', redeemed_at = $3, redeemed_by = $4 \
             WHERE token_hash = $1 AND target_tenant_id = $2 AND status = 'pending' AND expires_at > $3 AND sealed IS NOT NULL \
             RETURNING {CLAIM_COLS}"
        )))
        .bind(token_hash)
        .bind(target_tenant_id)
        .bind(now)
        .bind(redeemed_by)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(mut claim) = taken else { return Ok(None) };
        let (secret, first, audit) = then(&claim)?;
        writes::insert_secret(&mut tx, B::LOCK_TENANT, &secret, &first, max_secrets).await?;
        // Erased in the same transaction that took it: a claim that is
        // redeemed never keeps its ciphertext.
        query::<B::Db>("UPDATE claim_tokens SET sealed = NULL, redeemed_secret_id = $2 WHERE id = $1")
            .bind(&claim.id)
            .bind(&secret.id)
            .execute(&mut *tx)
            .await?;
        writes::insert_audits(&mut tx, &audit).await?;
        tx.commit().await?;
        claim.sealed = None;
        claim.redeemed_secret_id = Some(secret.id);
        Ok(Some(claim))
    }

    async fn revoke_claim(&self, creator_tenant_id: &str, id: &str, now: Millis, audit: &[AuditRow]) -> Result<Option<ClaimRow>> {
        let mut conn = self.write_conn().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        let revoked: Option<ClaimRow> = query::<B::Db>(AssertSqlSafe(format!(
            "UPDATE claim_tokens SET status = 'revoked', revoked_at = $3, sealed = NULL \
             WHERE id = $1 AND creator_tenant_id = $2 AND status = 'pending' RETURNING {CLAIM_COLS}"
        )))
        .bind(id)
        .bind(creator_tenant_id)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        if revoked.is_none() {
            return Ok(None);
        }
        writes::insert_audits(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(revoked)
    }

    async fn erase_expired_claims(&self, now: Millis) -> Result<u64> {
        let mut conn = self.write_conn().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        let n = query::<B::Db>("UPDATE claim_tokens SET sealed = NULL WHERE expires_at <= $1 AND sealed IS NOT NULL")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(n)
    }
}
