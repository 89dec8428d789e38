//! [`OwnerStore`] for every [`Backend`]: owners, links, sessions, passkeys.

use async_trait::async_trait;
use sqlx::{AssertSqlSafe, Transaction};

use super::dialect::{Dialect, query};
use super::{Backend, writes};
use crate::error::{Error, Result};
use crate::store::owners::*;
use crate::store::{AuditRow, Millis};

const OWNER_COLS: &str = "id, tenant_id, name, token_hash, created_at, created_by, revoked_at";
const LINK_COLS: &str = "hash, tenant_id, owner_id, purpose, created_at, expires_at, used_at";
const SESSION_COLS: &str = "id_hash, owner_id, tenant_id, csrf, created_at, expires_at";
const PASSKEY_COLS: &str = "credential_id, owner_id, tenant_id, passkey, name, created_at, last_used_at";

async fn insert_owner<D: Dialect>(tx: &mut Transaction<'_, D>, o: &OwnerRow) -> Result<()> {
    query::<D>(AssertSqlSafe(format!("INSERT INTO owners ({OWNER_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7)")))
        .bind(&o.id)
        .bind(&o.tenant_id)
        .bind(&o.name)
        .bind(&o.token_hash)
        .bind(o.created_at)
        .bind(&o.created_by)
        .bind(o.revoked_at)
        .execute(&mut **tx)
        .await
        .map_err(|e| writes::constraint_error(e, || Error::Conflict("that owner exists".into())))?;
    Ok(())
}

pub(super) async fn insert_link<D: Dialect>(tx: &mut Transaction<'_, D>, l: &LinkRow) -> Result<()> {
    query::<D>(AssertSqlSafe(format!("INSERT INTO owner_links ({LINK_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7)")))
        .bind(&l.hash)
        .bind(&l.tenant_id)
        .bind(&l.owner_id)
        .bind(&l.purpose)
        .bind(l.created_at)
        .bind(l.expires_at)
        .bind(l.used_at)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn insert_session<D: Dialect>(tx: &mut Transaction<'_, D>, s: &SessionRow) -> Result<()> {
    query::<D>(AssertSqlSafe(format!("INSERT INTO owner_sessions ({SESSION_COLS}) VALUES ($1, $2, $3, $4, $5, $6)")))
        .bind(&s.id_hash)
        .bind(&s.owner_id)
        .bind(&s.tenant_id)
        .bind(&s.csrf)
        .bind(s.created_at)
        .bind(s.expires_at)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

#[async_trait]
impl<B: Backend> OwnerStore for B {
    async fn insert_owner(&self, owner: &OwnerRow, link: Option<&LinkRow>, audit: &AuditRow) -> Result<()> {
        let mut conn = self.write_conn().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        insert_owner(&mut tx, owner).await?;
        if let Some(link) = link {
            insert_link(&mut tx, link).await?;
        }
        writes::insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn insert_link(&self, link: &LinkRow, audit: &AuditRow) -> Result<()> {
        let mut conn = self.write_conn().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        insert_link(&mut tx, link).await?;
        writes::insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn find_owner_by_token(&self, token_hash: &[u8]) -> Result<Option<OwnerRow>> {
        query::<B::Db>(AssertSqlSafe(format!("SELECT {OWNER_COLS} FROM owners WHERE token_hash = $1 AND revoked_at IS NULL")))
            .bind(token_hash)
            .fetch_optional(self.reader())
            .await
    }

    async fn get_owner(&self, tenant_id: &str, id: &str) -> Result<Option<OwnerRow>> {
        query::<B::Db>(AssertSqlSafe(format!("SELECT {OWNER_COLS} FROM owners WHERE tenant_id = $1 AND id = $2")))
            .bind(tenant_id)
            .bind(id)
            .fetch_optional(self.reader())
            .await
    }

    async fn list_owners(&self, tenant_id: &str) -> Result<Vec<OwnerRow>> {
        query::<B::Db>(AssertSqlSafe(format!("SELECT {OWNER_COLS} FROM owners WHERE tenant_id = $1 ORDER BY created_at, id")))
            .bind(tenant_id)
            .fetch_all(self.reader())
            .await
    }

    async fn use_link(&self, hash: &[u8], now: Millis, then: LinkUse<'_>) -> Result<Option<LinkRow>> {
        let mut conn = self.write_conn().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        let link: Option<LinkRow> = query::<B::Db>(AssertSqlSafe(format!(
            "UPDATE owner_links SET used_at = $2 WHERE hash = $1 AND used_at IS NULL AND expires_at > $2 RETURNING {LINK_COLS}"
        )))
        .bind(hash)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(link) = link else { return Ok(None) };
        let (owner, session, audit) = then(&link)?;
        if let Some(owner) = &owner {
            insert_owner(&mut tx, owner).await?;
        }
        insert_session(&mut tx, &session).await?;
        writes::insert_audit(&mut tx, &audit).await?;
        tx.commit().await?;
        Ok(Some(link))
    }

    async fn insert_session(&self, session: &SessionRow, audit: &AuditRow) -> Result<()> {
        let mut conn = self.write_conn().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        insert_session(&mut tx, session).await?;
        writes::insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn find_session(&self, id_hash: &[u8], now: Millis) -> Result<Option<SessionRow>> {
        query::<B::Db>(
            "SELECT s.id_hash, s.owner_id, s.tenant_id, s.csrf, s.created_at, s.expires_at FROM owner_sessions s \
             JOIN owners o ON o.id = s.owner_id WHERE s.id_hash = $1 AND s.expires_at > $2 AND o.revoked_at IS NULL",
        )
        .bind(id_hash)
        .bind(now)
        .fetch_optional(self.reader())
        .await
    }

    async fn delete_session(&self, id_hash: &[u8], audit: &AuditRow) -> Result<()> {
        let mut conn = self.write_conn().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        query::<B::Db>("DELETE FROM owner_sessions WHERE id_hash = $1").bind(id_hash).execute(&mut *tx).await?;
        writes::insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn begin_ceremony(&self, id_hash: &[u8], state: &str, purpose: &str, now: Millis) -> Result<bool> {
        let mut conn = self.write_conn().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        let n = query::<B::Db>(
            "UPDATE owner_sessions SET ceremony = $2, ceremony_purpose = $3, ceremony_at = $4 WHERE id_hash = $1 AND expires_at > $4",
        )
        .bind(id_hash)
        .bind(state)
        .bind(purpose)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(n == 1)
    }

    async fn take_ceremony(&self, id_hash: &[u8], purpose: &str, not_before: Millis) -> Result<Option<String>> {
        let mut conn = self.write_conn().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        // RETURNING gives the row as updated: the state stays (dead without
        // its purpose and time) so that the one statement can hand it back.
        let state = query::<B::Db>(
            "UPDATE owner_sessions SET ceremony_purpose = NULL, ceremony_at = NULL \
             WHERE id_hash = $1 AND ceremony_purpose = $2 AND ceremony_at >= $3 RETURNING ceremony",
        )
        .bind(id_hash)
        .bind(purpose)
        .bind(not_before)
        .fetch_optional_scalar::<Option<String>>(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(state.flatten())
    }

    async fn insert_passkey(&self, p: &PasskeyRow, audit: &AuditRow) -> Result<()> {
        let mut conn = self.write_conn().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        query::<B::Db>(AssertSqlSafe(format!("INSERT INTO passkeys ({PASSKEY_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7)")))
            .bind(&p.credential_id)
            .bind(&p.owner_id)
            .bind(&p.tenant_id)
            .bind(&p.passkey)
            .bind(&p.name)
            .bind(p.created_at)
            .bind(p.last_used_at)
            .execute(&mut *tx)
            .await
            .map_err(|e| writes::constraint_error(e, || Error::AlreadyExists("this passkey is already registered".into())))?;
        writes::insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_passkeys(&self, tenant_id: &str, owner_id: Option<&str>) -> Result<Vec<PasskeyRow>> {
        query::<B::Db>(AssertSqlSafe(format!(
            "SELECT {PASSKEY_COLS} FROM passkeys WHERE tenant_id = $1 AND ($2 IS NULL OR owner_id = $2) ORDER BY created_at"
        )))
        .bind(tenant_id)
        .bind(owner_id.map(str::to_owned))
        .fetch_all(self.reader())
        .await
    }

    async fn touch_passkey(&self, credential_id: &str, passkey: &str, at: Millis) -> Result<()> {
        let mut conn = self.write_conn().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        query::<B::Db>("UPDATE passkeys SET passkey = $2, last_used_at = $3 WHERE credential_id = $1")
            .bind(credential_id)
            .bind(passkey)
            .bind(at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn tenant_has_passkey(&self, tenant_id: &str) -> Result<bool> {
        let n: i64 = query::<B::Db>(
            "SELECT COUNT(*) FROM passkeys p JOIN owners o ON o.id = p.owner_id WHERE p.tenant_id = $1 AND o.revoked_at IS NULL",
        )
        .bind(tenant_id)
        .fetch_one_scalar(self.reader())
        .await?;
        Ok(n > 0)
    }
}
