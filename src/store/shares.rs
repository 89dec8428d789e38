//! The rows and units of work of share links (`vault::shares`): a trait of
//! its own beside [`Store`](super::Store), reached with `Store::shares`; the
//! SQL is in `sql::shares`, for both databases.
//!
//! Every counted change is one conditional UPDATE (a use, a failed password,
//! a revocation, an extension), never a read then a write, so concurrent
//! requests on any number of replicas cannot take more than they may.

use async_trait::async_trait;

use super::{AuditRow, Millis};
use crate::error::Result;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ShareRow {
    pub id: String,
    pub token_hash: Vec<u8>,
    pub tenant_id: String,
    pub secret_id: String,
    /// The secret as it was when the link was made.
    pub secret_name: String,
    pub secret_type: String,
    pub project_id: Option<String>,
    /// The key that made the link.
    pub created_by: String,
    /// The value, sealed for `share/{id}`; `None` once erased.
    pub sealed: Option<Vec<u8>>,
    /// `pbkdf2-sha256$…` (see `vault::shares`); `None`: no password.
    pub password_hash: Option<String>,
    /// JSON array of CIDRs; `None`: any address.
    pub allowed_ips: Option<String>,
    pub max_uses: i64,
    pub uses: i64,
    /// Wrong passwords since the last success or the end of the last lock.
    pub failed_attempts: i64,
    pub locked_until: Option<Millis>,
    pub created_at: Millis,
    pub expires_at: Millis,
    pub revoked_at: Option<Millis>,
    pub revoke_reason: Option<String>,
    pub last_accessed_at: Option<Millis>,
}

/// What a wrong password did (see [`ShareStore::fail_share_password`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failed {
    pub failed_attempts: i64,
    /// Set when this failure locked the link.
    pub locked_until: Option<Millis>,
}

#[async_trait]
pub trait ShareStore: Send + Sync {
    async fn insert_share(&self, share: &ShareRow, audit: &AuditRow) -> Result<()>;
    /// A link by the hash of its token, whatever its state.
    async fn find_share_by_token(&self, token_hash: &[u8]) -> Result<Option<ShareRow>>;
    async fn get_share(&self, tenant_id: &str, id: &str) -> Result<Option<ShareRow>>;
    /// The tenant's links, newest first, at most `limit`.
    async fn list_shares(&self, tenant_id: &str, limit: i64) -> Result<Vec<ShareRow>>;
    /// Takes one use: ONE conditional UPDATE (uses left, not revoked, not
    /// expired, not locked, value not erased) that resets the failed
    /// passwords and erases the value when it takes the last use; `audit`
    /// goes in with it. `None`: nothing was taken, nothing written.
    async fn take_share_use(&self, id: &str, now: Millis, audit: &AuditRow) -> Result<Option<ShareRow>>;
    /// Counts a wrong password: ONE conditional UPDATE (not locked at
    /// `now`) that restarts the count when a lock has ended and locks the
    /// link until `lock_until` at the `lock_after`th failure; `audit` goes in
    /// with it. `None`: the link was locked meanwhile, nothing written.
    async fn fail_share_password(
        &self,
        id: &str,
        now: Millis,
        lock_after: i64,
        lock_until: Millis,
        audit: &AuditRow,
    ) -> Result<Option<Failed>>;
    /// Revokes a live link of the tenant and erases its value. `None`: no
    /// such link, or it is revoked already.
    async fn revoke_share(
        &self,
        tenant_id: &str,
        id: &str,
        now: Millis,
        reason: Option<&str>,
        audit: &AuditRow,
    ) -> Result<Option<ShareRow>>;
    /// Gives a link a new expiry and/or maximum of uses, if it is neither
    /// revoked nor expired, still holds its value, and keeps a use left
    /// (`max_uses > uses`). `None`: it is not such a link, nothing written.
    async fn extend_share(
        &self,
        tenant_id: &str,
        id: &str,
        now: Millis,
        expires_at: Option<Millis>,
        max_uses: Option<i64>,
        audit: &AuditRow,
    ) -> Result<Option<ShareRow>>;
    /// Erases the values of links that have expired, are used up or are
    /// revoked (of one tenant, or of all); answers how many.
    async fn erase_ended_shares(&self, tenant_id: Option<&str>, now: Millis) -> Result<u64>;
}
