//! The rotation scheduler: `latchkey serve` runs [`Vault::run_rotation_jobs`]
//! at start and then every `--jobs-interval-ms` (30 s by default).
//!
//! Exactly once across servers: each due policy is taken by the rotation's
//! own transaction with one conditional UPDATE of `next_run_at` from the
//! value the scheduler saw (`RotationStore::rotate`); a second server that
//! saw the same due time finds it moved and does nothing. Restarts lose
//! nothing: the due time is in the database, so a rotation that fell due
//! while no server ran is overdue at the next start, and runs then (once,
//! however many periods were missed). An alert (`secret.rotation_due`) is
//! written once per due time, by the same kind of conditional UPDATE.

use std::sync::Arc;
use std::time::Duration;

use super::{RotateOptions, Trigger};
use crate::error::{Error, Result};
use crate::store::now_millis;
use crate::store::rotation::PolicyRow;
use crate::vault::principal::{Front, Origin, WithDetail};
use crate::vault::{Principal, Vault};

/// The most due policies (and alerts) one run takes; the rest wait for the next.
const BATCH: i64 = 100;

/// Who a scheduled rotation's audit entries name.
pub const SCHEDULER: &str = "scheduler";

fn scheduler(tenant_id: &str) -> Principal {
    let mut p = Principal::operator(tenant_id);
    p.key_id = SCHEDULER.into();
    p.origin = Origin::new(Front::Job);
    p
}

impl Vault {
    /// Writes the alerts that fell due and runs the rotations that did.
    /// Answers how many rotations this server ran.
    pub async fn run_rotation_jobs(&self) -> Result<usize> {
        let now = now_millis();
        for policy in self.store.rotations().alerts_due(now, BATCH).await? {
            let p = scheduler(&policy.tenant_id);
            let audit = p.audit("secret.rotation_due", "secret", Some(&policy.secret_id), "success").detail(serde_json::json!({
                "policyId": policy.id,
                "dueAt": super::time(policy.next_run_at, "rotation_policies", &policy.id, "next_run_at")?,
                "alertDaysBefore": policy.alert_days_before,
            }));
            self.store.rotations().mark_alerted(&policy.id, policy.next_run_at, &audit).await?;
        }
        let mut ran = 0;
        for policy in self.store.rotations().due_policies(now, BATCH).await? {
            match self.rotate_scheduled(&policy).await {
                Ok(true) => ran += 1,
                Ok(false) => {}
                Err(e) => tracing::warn!(policy = %policy.id, "scheduled rotation failed: {}", e.public_message_with_cause()),
            }
        }
        Ok(ran)
    }

    /// One due policy: rotated here (true), taken by another server (false),
    /// or failed, in which case the failure is audited and the policy moves
    /// to its next time rather than failing again at every run.
    async fn rotate_scheduled(&self, policy: &PolicyRow) -> Result<bool> {
        let p = scheduler(&policy.tenant_id);
        let secret = self.store.get_secret(&policy.tenant_id, &policy.secret_id).await?.ok_or(Error::SecretNotFound);
        let outcome = match secret {
            Ok(secret) => {
                self.rotate_row(&p, &secret, Some(policy), RotateOptions::default(), Trigger::Schedule, Some(policy.next_run_at)).await
            }
            Err(e) => Err(e),
        };
        match outcome {
            Ok(done) => Ok(done.is_some()),
            Err(e @ Error::Internal(_)) => Err(e),
            Err(e) => {
                let mut next = policy.clone();
                next.next_run_at = super::Schedule::parse(&policy.schedule)?.next_after(now_millis())?;
                next.updated_at = now_millis().max(policy.updated_at + 1);
                let audit = p.audit("secret.rotated", "secret", Some(&policy.secret_id), e.audit_outcome()).detail(serde_json::json!({
                    "code": e.code(), "trigger": "schedule", "policyId": policy.id,
                }));
                self.store.rotations().update_policy(&next, &audit).await?;
                Err(e)
            }
        }
    }
}

/// Runs [`Vault::run_rotation_jobs`] at once and then every `every` until
/// `stop` is cancelled, never two runs at once.
pub async fn run_until(vault: Arc<Vault>, every: Duration, stop: tokio_util::sync::CancellationToken) {
    let vault = &vault;
    crate::vault::jobs::every(every, &stop, move || async move {
        match vault.run_rotation_jobs().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(rotations = n, "scheduled rotations ran"),
            Err(e) => tracing::warn!("rotation jobs failed: {}", e.public_message_with_cause()),
        }
    })
    .await
}
