//! The rows and units of work of claim tokens: one tenant hands a secret to
//! another (`vault::claims`). A trait of its own beside [`Store`](super::Store),
//! reached with `Store::claims`; the SQL is in `sql::claims`, for both databases.
//!
//! Nothing here is cached. A redemption creates a secret in the target
//! tenant, which the cache in front of the store (`CachedStore`) never holds
//! a negative answer for (it fills only secrets it found, by id, and finds
//! names in the database), so the new secret is visible at once to reads by
//! id and by name, in this process and in every other.

use async_trait::async_trait;

use super::{AuditRow, Millis, QuotaOf, SecretRow, VersionRow};
use crate::error::Result;

/// `claim_tokens.status` of a claim not yet ended (past `expires_at` it reads as `expired`).
pub const PENDING: &str = "pending";
pub const CLAIMED: &str = "claimed";
pub const REVOKED: &str = "revoked";

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClaimRow {
    pub id: String,
    pub token_hash: Vec<u8>,
    pub creator_tenant_id: String,
    /// The key that made the claim.
    pub creator_key_id: String,
    pub target_tenant_id: String,
    /// The creator's reference to the agreement the hand-off belongs to.
    pub contract_id: String,
    /// The name the secret takes in the target's vault unless the redeemer gives one.
    pub secret_name: Option<String>,
    pub secret_type: Option<String>,
    /// The creator's secret the value was read from, if it was.
    pub source_secret_id: Option<String>,
    /// The value, sealed with the creator's data key for `claim/{id}`;
    /// `None` once the claim ended (redeemed, revoked, expired and noticed).
    pub sealed: Option<Vec<u8>>,
    /// `pending`, `claimed` or `revoked`.
    pub status: String,
    pub created_at: Millis,
    pub expires_at: Millis,
    pub redeemed_at: Option<Millis>,
    /// The target's key that redeemed it.
    pub redeemed_by: Option<String>,
    /// The secret the redemption created in the target's vault.
    pub redeemed_secret_id: Option<String>,
    pub revoked_at: Option<Millis>,
}

impl ClaimRow {
    /// `pending`, `claimed`, `revoked`, or `expired` (pending past its time).
    pub fn state(&self, now: Millis) -> &str {
        if self.status == PENDING && self.expires_at <= now { "expired" } else { &self.status }
    }
}

/// What a redemption stores, made from the claim as the redemption took it
/// (see [`ClaimStore::redeem_claim`]): the new secret, its first version
/// (opened with the creator's key, sealed with the target's), and the audit
/// entries (the redeemer's, with its credential, and the creator's).
pub type ClaimRedeem<'a> = &'a (dyn Fn(&ClaimRow) -> Result<(SecretRow, VersionRow, Vec<AuditRow>)> + Send + Sync);

#[async_trait]
pub trait ClaimStore: Send + Sync {
    /// A new claim, with its audit entries (both tenants' trails).
    async fn insert_claim(&self, claim: &ClaimRow, audit: &[AuditRow]) -> Result<()>;
    async fn find_claim_by_hash(&self, token_hash: &[u8]) -> Result<Option<ClaimRow>>;
    async fn get_claim(&self, id: &str) -> Result<Option<ClaimRow>>;
    /// Claims the tenant made or is the target of, newest first, at most `limit`.
    async fn list_claims(&self, tenant_id: &str, limit: i64) -> Result<Vec<ClaimRow>>;
    /// Redeems a claim in ONE transaction: takes it with one conditional
    /// UPDATE (pending, not expired at `now`, `target_tenant_id` the
    /// redeemer's, still sealed), lets `then` make the secret from it,
    /// inserts the secret and its first version under the target's plan
    /// quota (as `Store::create_secret` does), erases the ciphertext and
    /// records the secret id, and appends the audit entries. `None`: no
    /// such claim could be taken, and nothing changed. A taken name (409),
    /// a quota (403) or a dead credential rolls everything back: the claim
    /// stays pending.
    async fn redeem_claim(
        &self,
        token_hash: &[u8],
        target_tenant_id: &str,
        redeemed_by: &str,
        now: Millis,
        max_secrets: QuotaOf<'_>,
        then: ClaimRedeem<'_>,
    ) -> Result<Option<ClaimRow>>;
    /// Revokes a pending claim the tenant made (one conditional UPDATE that
    /// also erases the ciphertext), with its audit entries. `None`: not pending.
    async fn revoke_claim(&self, creator_tenant_id: &str, id: &str, now: Millis, audit: &[AuditRow]) -> Result<Option<ClaimRow>>;
    /// Erases the ciphertext of every claim expired at `now` that still has
    /// one (one UPDATE); answers how many.
    async fn erase_expired_claims(&self, now: Millis) -> Result<u64>;
}
