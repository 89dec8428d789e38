//! The rows and units of work of rotation (`vault::rotation`): a policy per
//! secret, the versions a rotation retired, and the rotation itself. A trait
//! of its own beside [`Store`](super::Store), reached with `Store::rotations`;
//! the SQL is in `sql::rotation`, for both databases.
//!
//! Nothing here is cached, but a rotation changes a secret and may revoke
//! keys (tokens): the cache in front wraps [`RotationStore::rotate`] as it
//! wraps every such write.

use async_trait::async_trait;

use super::{ApiKeyRow, AuditRow, Millis, SecretRow, VersionRow, WriteOutcome};
use crate::error::Result;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PolicyRow {
    pub id: String,
    pub tenant_id: String,
    pub secret_id: String,
    /// A cron expression or an interval (`30d`, `12h`), as given.
    pub schedule: String,
    pub alert_days_before: Option<i64>,
    /// JSON `{length, alphabet, prefix}`; `None`: inferred from the value.
    pub generator: Option<String>,
    pub grace_period_ms: i64,
    /// When the next scheduled rotation is due.
    pub next_run_at: Millis,
    /// The due time a `secret.rotation_due` alert was written for.
    pub alerted_for: Option<Millis>,
    pub last_rotated_at: Option<Millis>,
    pub created_by: String,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// How a rotation moves its secret's policy on (see [`RotationStore::rotate`]).
#[derive(Debug, Clone)]
pub struct Advance {
    pub policy_id: String,
    /// A scheduled rotation: the due time it saw. The rotation happens only
    /// if the policy still says so (one conditional UPDATE): of the servers
    /// that saw it due, exactly one rotates. `None`: a manual rotation.
    pub seen_next_run_at: Option<Millis>,
    pub next_run_at: Millis,
}

/// What a rotation writes, made inside its transaction from the secret as it
/// is there, the tenant's live tokens and how many read grants it ended.
pub struct Rotated {
    /// The secret with its next version number and its retiring version.
    pub row: SecretRow,
    pub version: VersionRow,
    /// The replaced version and when it stops being readable.
    pub retired: (i64, Millis),
    /// Tokens to revoke (those whose read scope covers the secret).
    pub revoke: Vec<String>,
    /// `secret.rotated` first (with the actor's credential), then one per revoked token.
    pub audit: Vec<AuditRow>,
}

pub type RotateChange<'a> = &'a (dyn Fn(&SecretRow, &[ApiKeyRow], u64) -> Result<Rotated> + Send + Sync);

/// What a rotation found.
#[derive(Debug)]
pub enum RotateOutcome {
    /// With how many tokens it revoked and read grants it ended.
    Done(WriteOutcome, (usize, u64)),
    /// A scheduled rotation another server (or an earlier run) already took.
    Taken,
}

#[async_trait]
pub trait RotationStore: Send + Sync {
    /// A new policy with its audit entry; 409 when the secret has one.
    async fn insert_policy(&self, row: &PolicyRow, audit: &AuditRow) -> Result<()>;
    async fn get_policy(&self, tenant_id: &str, id: &str) -> Result<Option<PolicyRow>>;
    async fn policy_for_secret(&self, tenant_id: &str, secret_id: &str) -> Result<Option<PolicyRow>>;
    /// The tenant's policies, oldest first, at most `limit`.
    async fn list_policies(&self, tenant_id: &str, limit: i64) -> Result<Vec<PolicyRow>>;
    /// Rewrites a policy's settings (schedule, alert, generator, grace,
    /// next run); false when it is gone.
    async fn update_policy(&self, row: &PolicyRow, audit: &AuditRow) -> Result<bool>;
    async fn delete_policy(&self, tenant_id: &str, id: &str, audit: &AuditRow) -> Result<bool>;
    /// Every tenant's policies due at `now`, most overdue first, at most `limit`.
    async fn due_policies(&self, now: Millis, limit: i64) -> Result<Vec<PolicyRow>>;
    /// Policies whose alert window has opened at `now` and whose current due
    /// time was not alerted yet, at most `limit`.
    async fn alerts_due(&self, now: Millis, limit: i64) -> Result<Vec<PolicyRow>>;
    /// Records the alert for the due time `next_run_at` with its audit entry,
    /// once (one conditional UPDATE); false when another server did.
    async fn mark_alerted(&self, id: &str, next_run_at: Millis, audit: &AuditRow) -> Result<bool>;
    /// Rotates a secret in ONE transaction: holds its row, takes the policy
    /// (`advance`; a scheduled one only as it was seen, else `Taken` and
    /// nothing changes), ends the secret's approved read grants, lets
    /// `change` make the new version from the row and the tenant's live
    /// tokens, writes it, retires the replaced version, revokes the tokens
    /// it names, and appends the audit entries (the first one's credential
    /// checked, as every write's).
    async fn rotate(
        &self,
        tenant_id: &str,
        id: &str,
        advance: Option<&Advance>,
        now: Millis,
        change: RotateChange<'_>,
    ) -> Result<RotateOutcome>;
    /// When a version a rotation replaced stops (or stopped) being readable.
    async fn retired_at(&self, secret_id: &str, version: i64) -> Result<Option<Millis>>;
    /// When the secret was last rotated.
    async fn last_rotated_at(&self, secret_id: &str) -> Result<Option<Millis>>;
}
