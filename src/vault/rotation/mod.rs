//! Rotation: a secret's value replaced by a new version, by hand or on a
//! schedule, with a grace period during which the replaced version stays
//! readable by number (then 410 VERSION_RETIRED).
//!
//! A rotation is one transaction (`RotationStore::rotate`): the new version,
//! the retiring one, the end of the secret's read grants (approved for the
//! old value), the revocation of live scoped tokens whose read scope covers
//! the secret's path (they were handed out for the old value), and the audit
//! entries: `secret.rotated` (versions from and to, trigger, reason; never a
//! value) and a `token.revoke` per token.
//!
//! Its answer never holds the new value, whoever asks: the published
//! references answer a rotation with its version and time, and a caller who
//! may read the value reads it like any other, audited as a read.
//!
//! - [`schedule`]: cron expressions, intervals and durations.
//! - [`generator`]: new values from the OS's CSPRNG.
//! - [`scheduler`]: the background job that runs due rotations once across
//!   servers and writes `secret.rotation_due` alerts.

pub mod generator;
pub mod schedule;
pub mod scheduler;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::principal::WithDetail;
use super::scopes::{ScopeAction, Scopes};
use super::secrets::SecretRef;
use super::views::time;
use super::{Permission, Principal, Vault, audited, names};
use crate::crypto::SecretAad;
use crate::error::{Error, Result};
use crate::store::rotation::{Advance, PolicyRow, RotateOutcome, Rotated};
use crate::store::{Millis, SecretRow, VersionRow, WriteOutcome, now_millis};
pub use generator::Generator;
use schedule::Schedule;

/// The most policies one listing answers.
const MAX_POLICIES: i64 = 1000;

/// `POST /api/v1/rotation`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreatePolicy {
    pub secret_id: String,
    /// A cron expression (`0 3 * * MON`; a leading seconds field is allowed) or an interval (`30d`, `12h`, at least `1m`).
    pub schedule: String,
    /// Write a `secret.rotation_due` audit entry this many days before each due rotation (0 to 365).
    pub alert_days_before: Option<i64>,
    /// Accepted for SecretCarousel's clients; Latchkey sends no email (watch the audit trail for `secret.rotation_due`).
    pub alert_email: Option<String>,
    /// How a scheduled rotation makes the new value; without one, values shaped like the current one.
    pub generator: Option<Generator>,
    /// How long the replaced version stays readable by number: `0` (default) to `30d`, e.g. `24h`.
    pub grace_period: Option<String>,
    /// When the first scheduled rotation is due (default: the schedule's next time from now).
    pub next_rotation_at: Option<DateTime<Utc>>,
}

/// `PUT /api/v1/rotation/{id}`: the fields given change.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdatePolicy {
    /// A new schedule; the next rotation moves to its next time from now unless `nextRotationAt` is given.
    pub schedule: Option<String>,
    pub alert_days_before: Option<i64>,
    pub alert_email: Option<String>,
    pub generator: Option<Generator>,
    pub grace_period: Option<String>,
    pub next_rotation_at: Option<DateTime<Utc>>,
}

/// A rotation policy.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyView {
    pub id: String,
    /// Same as `id`.
    pub policy_id: String,
    pub secret_id: String,
    pub schedule: String,
    /// `cron` or `interval`.
    pub schedule_type: String,
    pub alert_days_before: Option<i64>,
    pub generator: Option<Generator>,
    /// `0` or a duration such as `24h`.
    pub grace_period: String,
    pub next_rotation_at: DateTime<Utc>,
    pub last_rotated_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl TryFrom<&PolicyRow> for PolicyView {
    type Error = Error;

    fn try_from(r: &PolicyRow) -> Result<Self> {
        let generator = r.generator.as_deref().map(serde_json::from_str).transpose().map_err(|_| Error::Integrity)?;
        Ok(PolicyView {
            id: r.id.clone(),
            policy_id: r.id.clone(),
            secret_id: r.secret_id.clone(),
            schedule: r.schedule.clone(),
            schedule_type: Schedule::parse(&r.schedule).map(|s| s.kind()).unwrap_or("cron").to_owned(),
            alert_days_before: r.alert_days_before,
            generator,
            grace_period: schedule::format_ms(r.grace_period_ms),
            next_rotation_at: time(r.next_run_at, "rotation_policies", &r.id, "next_run_at")?,
            last_rotated_at: r.last_rotated_at.map(|t| time(t, "rotation_policies", &r.id, "last_rotated_at")).transpose()?,
            created_at: time(r.created_at, "rotation_policies", &r.id, "created_at")?,
            updated_at: time(r.updated_at, "rotation_policies", &r.id, "updated_at")?,
        })
    }
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyList {
    pub policies: Vec<PolicyView>,
    pub count: usize,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyDeleted {
    pub id: String,
    pub deleted: bool,
}

/// The options of a rotation. Every field is optional.
#[derive(Debug, Default, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RotateOptions {
    /// The new value; without it the secret's generator (its policy's, else
    /// one shaped like the current value) makes one.
    #[serde(alias = "new_value")]
    pub new_value: Option<String>,
    /// Why, for the audit trail (at most 500 characters).
    pub reason: Option<String>,
    /// How long the replaced version stays readable by number: `0` to `30d`
    /// (default: the policy's, else 0).
    #[serde(alias = "grace_period")]
    pub grace_period: Option<String>,
}

/// `POST /api/v1/rotation/secrets/{id}/rotate`: the options, either at the
/// top level or under `options` (SecretCarousel's SDK sends
/// `{"options": {…}}`), or no body at all.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RotateRequest {
    #[serde(alias = "new_value")]
    pub new_value: Option<String>,
    pub reason: Option<String>,
    #[serde(alias = "grace_period")]
    pub grace_period: Option<String>,
    pub options: Option<RotateOptions>,
}

impl RotateRequest {
    /// The options, wherever they were given; one given in both places
    /// differently is 400.
    pub fn options(self) -> Result<RotateOptions> {
        let o = self.options.unwrap_or_default();
        fn one<T: PartialEq>(what: &str, top: Option<T>, nested: Option<T>) -> Result<Option<T>> {
            match (top, nested) {
                (Some(a), Some(b)) if a != b => {
                    Err(Error::InvalidRequest(format!("{what} is given twice, differently (top level and options)")))
                }
                (a, b) => Ok(a.or(b)),
            }
        }
        Ok(RotateOptions {
            new_value: one("newValue", self.new_value, o.new_value)?,
            reason: one("reason", self.reason, o.reason)?,
            grace_period: one("gracePeriod", self.grace_period, o.grace_period)?,
        })
    }
}

/// What a rotation did. Never the value.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RotationResult {
    pub secret_id: String,
    pub name: String,
    pub rotated: bool,
    /// The new current version.
    pub version: i64,
    pub previous_version: i64,
    pub rotated_at: DateTime<Utc>,
    /// Whether the server generated the value (no `newValue` given).
    pub generated: bool,
    /// The replaced version while it stays readable (a grace period), else null.
    pub retiring_version: Option<i64>,
    pub grace_ends_at: Option<DateTime<Utc>>,
    /// Scoped tokens revoked because their read scope covered the secret.
    pub tokens_revoked: usize,
    /// Approved read grants the rotation ended.
    pub grants_ended: u64,
    pub policy_id: Option<String>,
    pub next_rotation_at: Option<DateTime<Utc>>,
}

/// `GET /api/v1/rotation/secrets/{id}/status`.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RotationStatus {
    pub secret_id: String,
    pub name: String,
    pub current_version: i64,
    /// The secret's policy, if it has one.
    pub policy: Option<PolicyView>,
    pub last_rotated_at: Option<DateTime<Utc>>,
    pub next_rotation_at: Option<DateTime<Utc>>,
    /// Whether the next rotation is due (or overdue).
    pub due: bool,
    pub retiring_version: Option<i64>,
    pub grace_ends_at: Option<DateTime<Utc>>,
}

/// What set off a rotation, in its audit entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Manual,
    Schedule,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Manual => "manual",
            Trigger::Schedule => "schedule",
        }
    }
}

/// The retiring version and the end of its grace, while the grace lasts.
pub fn retiring(row: &SecretRow, now: Millis) -> Option<(i64, Millis)> {
    match (row.retiring_version, row.retiring_until) {
        (Some(v), Some(until)) if until > now => Some((v, until)),
        _ => None,
    }
}

fn alert_days(n: Option<i64>) -> Result<Option<i64>> {
    match n {
        Some(d) if !(0..=365).contains(&d) => Err(Error::InvalidRequest("alertDaysBefore must be between 0 and 365".into())),
        n => Ok(n),
    }
}

fn generator_json(g: Option<Generator>) -> Result<Option<String>> {
    g.map(|g| {
        g.validate()?;
        Ok(serde_json::to_string(&g).expect("serialisable"))
    })
    .transpose()
}

impl Vault {
    pub async fn create_rotation_policy(&self, p: &Principal, req: CreatePolicy) -> Result<PolicyView> {
        audited!(self, p, "rotation.policy_created", "rotation_policy", None, self.create_policy_inner(p, req).await)
    }

    async fn create_policy_inner(&self, p: &Principal, req: CreatePolicy) -> Result<PolicyView> {
        p.require(Permission::Write)?;
        p.require_key("manage rotation policies")?;
        let schedule = Schedule::parse(&req.schedule)?;
        let alert_days_before = alert_days(req.alert_days_before)?;
        let generator = generator_json(req.generator)?;
        let grace = req.grace_period.as_deref().map(schedule::grace_ms).transpose()?.unwrap_or(0);
        let secret = self.visible_secret(p, &SecretRef::Id(&req.secret_id), ScopeAction::Write).await?;
        let now = now_millis();
        let next_run_at = match req.next_rotation_at {
            Some(at) => at.timestamp_millis(),
            None => schedule.next_after(now)?,
        };
        let row = PolicyRow {
            id: uuid::Uuid::new_v4().to_string(),
            tenant_id: p.tenant_id.clone(),
            secret_id: secret.id.clone(),
            schedule: req.schedule.trim().to_owned(),
            alert_days_before,
            generator,
            grace_period_ms: grace,
            next_run_at,
            alerted_for: None,
            last_rotated_at: None,
            created_by: p.key_id.clone(),
            created_at: now,
            updated_at: now,
        };
        let audit = p.audit("rotation.policy_created", "rotation_policy", Some(&row.id), "success").detail(serde_json::json!({
            "secretId": secret.id, "name": secret.name, "schedule": row.schedule, "gracePeriodMs": grace,
        }));
        self.store.rotations().insert_policy(&row, &audit).await?;
        PolicyView::try_from(&row)
    }

    pub async fn list_rotation_policies(&self, p: &Principal) -> Result<PolicyList> {
        audited!(
            self,
            p,
            "rotation.policy_list",
            "rotation_policy",
            None,
            async {
                p.require(Permission::Read)?;
                p.require_key("list rotation policies")?;
                let rows = self.store.rotations().list_policies(&p.tenant_id, MAX_POLICIES).await?;
                // A project-scoped key sees the policies of the secrets it sees.
                let mut policies = Vec::with_capacity(rows.len());
                for r in &rows {
                    if p.project_scope.is_some() && self.visible_secret(p, &SecretRef::Id(&r.secret_id), ScopeAction::Read).await.is_err() {
                        continue;
                    }
                    policies.push(PolicyView::try_from(r)?);
                }
                Ok(PolicyList { count: policies.len(), policies })
            }
            .await
        )
    }

    /// A policy the caller may see: its secret must be visible to it too.
    async fn visible_policy(&self, p: &Principal, id: &str, action: ScopeAction) -> Result<(PolicyRow, SecretRow)> {
        let row = match names::is_id(id) {
            true => self.store.rotations().get_policy(&p.tenant_id, id).await?,
            false => None,
        };
        let row = row.ok_or(Error::NotFound("rotation policy"))?;
        let secret = self.visible_secret(p, &SecretRef::Id(&row.secret_id), action).await.map_err(|e| match e {
            Error::SecretNotFound => Error::NotFound("rotation policy"),
            e => e,
        })?;
        Ok((row, secret))
    }

    pub async fn update_rotation_policy(&self, p: &Principal, id: &str, req: UpdatePolicy) -> Result<PolicyView> {
        audited!(
            self,
            p,
            "rotation.policy_updated",
            "rotation_policy",
            Some(id),
            async {
                p.require(Permission::Write)?;
                p.require_key("manage rotation policies")?;
                let (mut row, _) = self.visible_policy(p, id, ScopeAction::Write).await?;
                let now = now_millis();
                if let Some(s) = &req.schedule {
                    let schedule = Schedule::parse(s)?;
                    row.schedule = s.trim().to_owned();
                    row.next_run_at = schedule.next_after(now)?;
                }
                if let Some(at) = req.next_rotation_at {
                    row.next_run_at = at.timestamp_millis();
                }
                if req.alert_days_before.is_some() {
                    row.alert_days_before = alert_days(req.alert_days_before)?;
                }
                if req.generator.is_some() {
                    row.generator = generator_json(req.generator)?;
                }
                if let Some(g) = &req.grace_period {
                    row.grace_period_ms = schedule::grace_ms(g)?;
                }
                row.updated_at = now.max(row.updated_at + 1);
                let audit = p.audit("rotation.policy_updated", "rotation_policy", Some(&row.id), "success").detail(serde_json::json!({
                    "secretId": row.secret_id, "schedule": row.schedule, "gracePeriodMs": row.grace_period_ms,
                }));
                if !self.store.rotations().update_policy(&row, &audit).await? {
                    return Err(Error::NotFound("rotation policy"));
                }
                PolicyView::try_from(&row)
            }
            .await
        )
    }

    pub async fn delete_rotation_policy(&self, p: &Principal, id: &str) -> Result<PolicyDeleted> {
        audited!(
            self,
            p,
            "rotation.policy_deleted",
            "rotation_policy",
            Some(id),
            async {
                p.require(Permission::Write)?;
                p.require_key("manage rotation policies")?;
                let (row, _) = self.visible_policy(p, id, ScopeAction::Write).await?;
                let audit = p
                    .audit("rotation.policy_deleted", "rotation_policy", Some(&row.id), "success")
                    .detail(serde_json::json!({ "secretId": row.secret_id }));
                if !self.store.rotations().delete_policy(&p.tenant_id, &row.id, &audit).await? {
                    return Err(Error::NotFound("rotation policy"));
                }
                Ok(PolicyDeleted { id: row.id, deleted: true })
            }
            .await
        )
    }

    /// Sets a secret's policy, creating or changing it (MCP's `set_rotation_policy`).
    pub async fn set_rotation_policy(&self, p: &Principal, secret: SecretRef<'_>, req: CreatePolicy) -> Result<PolicyView> {
        let row = audited!(
            self,
            p,
            "rotation.policy_updated",
            "rotation_policy",
            None,
            async {
                p.require(Permission::Write)?;
                self.visible_secret(p, &secret, ScopeAction::Write).await
            }
            .await
        )?;
        match self.store.rotations().policy_for_secret(&p.tenant_id, &row.id).await? {
            None => self.create_rotation_policy(p, CreatePolicy { secret_id: row.id, ..req }).await,
            Some(existing) => {
                let update = UpdatePolicy {
                    schedule: Some(req.schedule),
                    alert_days_before: req.alert_days_before,
                    alert_email: None,
                    generator: req.generator,
                    grace_period: req.grace_period,
                    next_rotation_at: req.next_rotation_at,
                };
                self.update_rotation_policy(p, &existing.id, update).await
            }
        }
    }

    /// Rotates a secret now (by hand): `POST /api/v1/rotation/secrets/{id}/rotate`.
    pub async fn rotate_secret(&self, p: &Principal, r: SecretRef<'_>, opts: RotateOptions) -> Result<RotationResult> {
        let p = &*p.with_reason(opts.reason.as_deref());
        let rid = r.id().map(str::to_owned);
        audited!(
            self,
            p,
            "secret.rotated",
            "secret",
            rid.as_deref(),
            async {
                p.require(Permission::Write)?;
                let secret = self.visible_secret(p, &r, ScopeAction::Write).await?;
                let policy = self.store.rotations().policy_for_secret(&p.tenant_id, &secret.id).await?;
                let done = self.rotate_row(p, &secret, policy.as_ref(), opts, Trigger::Manual, None).await?;
                done.ok_or_else(|| Error::internal("a manual rotation cannot be taken"))
            }
            .await
        )
    }

    /// `POST /api/v1/rotation/{id}/rotate-now`: `id` is a policy's, or a
    /// secret's (SecretCarousel's `sc rotate ID` sends a secret id).
    pub async fn rotate_now(&self, p: &Principal, id: &str, opts: RotateOptions) -> Result<RotationResult> {
        let policy = match names::is_id(id) {
            true => self.store.rotations().get_policy(&p.tenant_id, id).await?,
            false => None,
        };
        match policy {
            Some(policy) => self.rotate_secret(p, SecretRef::Id(&policy.secret_id), opts).await,
            None => self.rotate_secret(p, SecretRef::Id(id), opts).await,
        }
    }

    pub async fn rotation_status(&self, p: &Principal, r: SecretRef<'_>) -> Result<RotationStatus> {
        let rid = r.id().map(str::to_owned);
        audited!(
            self,
            p,
            "secret.rotation_status",
            "secret",
            rid.as_deref(),
            async {
                p.require(Permission::Read)?;
                let secret = self.visible_secret(p, &r, ScopeAction::Read).await?;
                let policy = self.store.rotations().policy_for_secret(&p.tenant_id, &secret.id).await?;
                let last = self.store.rotations().last_rotated_at(&secret.id).await?;
                let now = now_millis();
                let retiring = retiring(&secret, now);
                let policy = policy.as_ref().map(PolicyView::try_from).transpose()?;
                let next = policy.as_ref().map(|p| p.next_rotation_at);
                self.record_read(p, p.audit("secret.rotation_status", "secret", Some(&secret.id), "success")).await?;
                Ok(RotationStatus {
                    secret_id: secret.id.clone(),
                    name: secret.name.clone(),
                    current_version: secret.current_version,
                    due: next.is_some_and(|n| n.timestamp_millis() <= now),
                    last_rotated_at: last.map(|t| time(t, "secret_retirements", &secret.id, "rotated_at")).transpose()?,
                    next_rotation_at: next,
                    policy,
                    retiring_version: retiring.map(|r| r.0),
                    grace_ends_at: retiring.map(|r| time(r.1, "secrets", &secret.id, "retiring_until")).transpose()?,
                })
            }
            .await
        )
    }

    /// 410 VERSION_RETIRED when `version` of `row` was replaced by a
    /// rotation and its grace is over (the current version never is).
    pub(crate) async fn check_retired(&self, row: &SecretRow, version: i64) -> Result<()> {
        if version == row.current_version {
            return Ok(());
        }
        if let Some(at) = self.store.rotations().retired_at(&row.id, version).await?
            && at <= now_millis()
        {
            return Err(Error::VersionRetired(format!(
                "version {version} of '{}' was retired by a rotation; read the current version ({})",
                row.name, row.current_version
            )));
        }
        Ok(())
    }

    /// The rotation itself, for a secret the caller may write. `None`: a
    /// scheduled rotation another server took.
    async fn rotate_row(
        &self,
        p: &Principal,
        secret: &SecretRow,
        policy: Option<&PolicyRow>,
        opts: RotateOptions,
        trigger: Trigger,
        seen_next_run_at: Option<Millis>,
    ) -> Result<Option<RotationResult>> {
        let reason = opts.reason.as_deref().map(|r| names::text("reason", r.trim(), 500)).transpose()?.filter(|r| !r.is_empty());
        let grace = match (&opts.grace_period, policy) {
            (Some(g), _) => schedule::grace_ms(g)?,
            (None, Some(policy)) => policy.grace_period_ms,
            (None, None) => 0,
        };
        let key = self.data_key(&p.tenant_id).await?;
        let generated = opts.new_value.is_none();
        let value: Zeroizing<String> = match opts.new_value {
            Some(v) => {
                self.check_value(&v)?;
                if v.is_empty() {
                    return Err(Error::InvalidRequest("newValue must not be empty".into()));
                }
                Zeroizing::new(v)
            }
            None => self.generator_for(secret, policy).await?.generate()?,
        };
        let now = now_millis();
        let advance = match policy {
            Some(policy) => Some(Advance {
                policy_id: policy.id.clone(),
                seen_next_run_at,
                next_run_at: Schedule::parse(&policy.schedule)?.next_after(now)?,
            }),
            None => None,
        };
        let sealer = key.sealer();
        let policy_id = policy.map(|p| p.id.clone());
        let change = |current: &SecretRow, tokens: &[crate::store::ApiKeyRow], grants: u64| -> Result<Rotated> {
            if current.deleted_at.is_some() {
                return Err(Error::SecretNotFound);
            }
            if current.expires_at.is_some_and(|at| at <= now) {
                return Err(Error::SecretExpired(format!("'{}' has expired: rotate it after giving it a new expiry", current.name)));
            }
            p.require_secret(ScopeAction::Write, current)?;
            let from = current.current_version;
            let to = from + 1;
            let mut row = current.clone();
            row.current_version = to;
            row.updated_at = now.max(current.updated_at + 1);
            let grace_ends = (grace > 0).then(|| now + grace);
            row.retiring_version = grace_ends.map(|_| from);
            row.retiring_until = grace_ends;
            let version = VersionRow {
                secret_id: current.id.clone(),
                version: to,
                sealed: sealer.seal(&SecretAad { tenant_id: &p.tenant_id, secret_id: &current.id, version: to }, value.as_bytes()),
                created_at: now,
                created_by: p.key_id.clone(),
            };
            let path = super::scopes::path(&current.environment, &current.name);
            let revoke: Vec<&crate::store::ApiKeyRow> = tokens.iter().filter(|t| token_reads(t, current, &path)).collect();
            let mut detail = serde_json::json!({
                "name": current.name, "version": { "from": from, "to": to }, "trigger": trigger.as_str(),
                "generated": generated, "gracePeriodMs": grace, "grantsEnded": grants,
                "tokensRevoked": revoke.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
            });
            if let Some(r) = &reason {
                detail["reason"] = serde_json::json!(r);
            }
            if let Some(id) = &policy_id {
                detail["policyId"] = serde_json::json!(id);
            }
            let mut audit = vec![p.audit("secret.rotated", "secret", Some(&current.id), "success").detail(detail)];
            for t in &revoke {
                audit.push(
                    p.audit("token.revoke", "token", Some(&t.id), "success")
                        .detail(serde_json::json!({ "prefix": t.prefix, "reason": "secret rotated", "secretId": current.id })),
                );
            }
            Ok(Rotated { row, version, retired: (from, now + grace), revoke: revoke.iter().map(|t| t.id.clone()).collect(), audit })
        };
        let outcome = self.store.rotations().rotate(&p.tenant_id, &secret.id, advance.as_ref(), now, &change).await?;
        let (row, (tokens_revoked, grants_ended)) = match outcome {
            RotateOutcome::Taken => return Ok(None),
            RotateOutcome::Done(WriteOutcome::Written(row), counts) => (row, counts),
            RotateOutcome::Done(WriteOutcome::Missing, _) => return Err(Error::SecretNotFound),
            RotateOutcome::Done(WriteOutcome::Stale { current }, _) => {
                return Err(Error::VersionConflict { expected: secret.current_version, current });
            }
        };
        let retiring = retiring(&row, now - 1);
        Ok(Some(RotationResult {
            secret_id: row.id.clone(),
            name: row.name.clone(),
            rotated: true,
            version: row.current_version,
            previous_version: row.current_version - 1,
            rotated_at: time(now, "secrets", &row.id, "updated_at")?,
            generated,
            retiring_version: retiring.map(|r| r.0),
            grace_ends_at: retiring.map(|r| time(r.1, "secrets", &row.id, "retiring_until")).transpose()?,
            tokens_revoked,
            grants_ended,
            policy_id: advance.as_ref().map(|a| a.policy_id.clone()),
            next_rotation_at: advance
                .as_ref()
                .map(|a| time(a.next_run_at, "rotation_policies", &a.policy_id, "next_run_at"))
                .transpose()?,
        }))
    }

    /// The policy's generator, else one shaped like the current value.
    async fn generator_for(&self, secret: &SecretRow, policy: Option<&PolicyRow>) -> Result<Generator> {
        if let Some(json) = policy.and_then(|p| p.generator.as_deref()) {
            return serde_json::from_str(json).map_err(|_| Error::Integrity);
        }
        let Some(v) = self.store.get_version(&secret.id, secret.current_version).await? else {
            return Ok(Generator::default());
        };
        let key = self.key_for(&secret.tenant_id, &v.sealed).await?;
        let plain = key.open(&SecretAad { tenant_id: &secret.tenant_id, secret_id: &secret.id, version: v.version }, &v.sealed)?;
        let plain = Zeroizing::new(plain);
        Ok(std::str::from_utf8(&plain).map(Generator::like).unwrap_or_default())
    }
}

/// Whether a live token may read `secret` (at `path`): its project scope
/// covers the secret's project and one of its scopes allows `read` there.
/// A token whose stored scopes do not parse is revoked, not spared.
fn token_reads(t: &crate::store::ApiKeyRow, secret: &SecretRow, path: &str) -> bool {
    let projects: Vec<String> = serde_json::from_str(&t.project_scope).unwrap_or_default();
    if !projects.is_empty() && !secret.project_id.as_ref().is_some_and(|p| projects.contains(p)) {
        return false;
    }
    let raw: Vec<String> = match t.scopes.as_deref().map(serde_json::from_str) {
        Some(Ok(raw)) => raw,
        _ => return true,
    };
    match Scopes::parse(&raw) {
        Ok(scopes) => scopes.allows(ScopeAction::Read, path),
        Err(_) => true,
    }
}
