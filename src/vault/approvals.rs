//! Access tiers, the tenant's approval policy, and approvals: a human says
//! yes before an agent reads a gated secret's value.
//!
//! A value read of a gated secret ([`Vault::gate`]) either takes one use of a
//! live grant for that requester and secret, or opens (or reuses) a pending
//! request and answers `403 APPROVAL_REQUIRED` with its URL. Only an owner
//! (or the operator at the terminal) decides a request; every status change
//! is one conditional UPDATE from the state it leaves, so racing deciders
//! end in exactly one final state and a grant of N uses serves N reads.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::principal::{CallerKind, WithDetail};
use super::views::AccessTier;
use super::{Principal, Vault, audited, names};
use crate::error::{Error, Result};
use crate::store::{ApprovalRow, AuditRow, Decision, Millis, SecretRow, now_millis};

/// How long a grant lasts when the approver does not say.
pub const DEFAULT_GRANT_TTL: Duration = Duration::from_secs(15 * 60);
/// The longest grant an approver may give.
pub const MAX_GRANT_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// The most reads one grant may allow.
pub const MAX_GRANT_USES: u32 = 1000;
/// How long a pending request waits for a decision, by default.
pub const DEFAULT_REQUEST_TTL: Duration = Duration::from_secs(3600);

const STATUSES: [&str; 5] = ["pending", "approved", "denied", "expired", "used"];

/// Parses a duration such as `90`, `90s`, `15m`, `1h`, `2d` (seconds when
/// no unit is given). Zero is refused.
pub fn parse_ttl(raw: &str) -> Result<Duration> {
    let bad = || Error::InvalidRequest(format!("'{raw}' is not a duration: give a number with s, m, h or d (e.g. 15m, 1h)"));
    let s = raw.trim();
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "m" => n.checked_mul(60).ok_or_else(bad)?,
        "h" => n.checked_mul(3600).ok_or_else(bad)?,
        "d" => n.checked_mul(86_400).ok_or_else(bad)?,
        _ => return Err(bad()),
    };
    if secs == 0 {
        return Err(Error::InvalidRequest("a duration must be longer than zero".into()));
    }
    Ok(Duration::from_secs(secs))
}

/// A grant's length: seconds, or a duration string (`15m`).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Ttl {
    Seconds(u64),
    Text(String),
}

impl Ttl {
    fn duration(&self) -> Result<Duration> {
        match self {
            Ttl::Seconds(0) => Err(Error::InvalidRequest("a duration must be longer than zero".into())),
            Ttl::Seconds(n) => Ok(Duration::from_secs(*n)),
            Ttl::Text(s) => parse_ttl(s),
        }
    }
}

/// `POST /api/v1/approvals/{id}/approve`: how long, and for how many reads.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApproveRequest {
    /// How long the grant lasts: seconds, or `15m`, `1h`, … (default 15 minutes, at most 30 days).
    pub ttl: Option<Ttl>,
    /// How many reads it allows (default 1, at most 1000).
    pub uses: Option<u32>,
}

/// `POST /api/v1/approvals/{id}/deny`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DenyRequest {
    /// Why, shown to the requester (required).
    pub reason: String,
}

/// `GET /api/v1/approvals?status=`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListApprovals {
    /// Only requests in this state: pending, approved, denied, expired or used.
    pub status: Option<String>,
}

/// An approval request as callers see it.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalView {
    pub id: String,
    /// `pending`, `approved`, `denied`, `expired` or `used`.
    pub status: String,
    /// `read` (one secret's value) or `token` (a scoped token covering gated secrets).
    pub kind: String,
    pub secret_id: Option<String>,
    pub secret_name: Option<String>,
    /// `environment/name` (the path scopes match).
    pub secret_path: Option<String>,
    pub access_tier: Option<String>,
    /// A token request's scopes.
    pub scopes: Option<Vec<String>>,
    /// The key or token that asked; only it can use the grant.
    pub requester_id: String,
    pub requester_name: String,
    pub reason: Option<String>,
    pub ip: Option<String>,
    pub created_at: DateTime<Utc>,
    /// When a pending request lapses.
    pub expires_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
    /// Who decided: an owner's id, or `operator` (the CLI).
    pub decided_by: Option<String>,
    /// How they proved it: `token`, `passkey` or `cli`.
    pub decided_how: Option<String>,
    pub deny_reason: Option<String>,
    pub grant_expires_at: Option<DateTime<Utc>>,
    pub grant_uses_left: Option<i64>,
    /// The page where an owner decides (show it to the user).
    pub approval_url: String,
}

fn at(ms: Millis, id: &str) -> Result<DateTime<Utc>> {
    Utc.timestamp_millis_opt(ms).single().ok_or_else(|| {
        tracing::error!(table = "approvals", row = %id, "stored time failed to parse");
        Error::Integrity
    })
}

/// Which tiers need approval.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TierPolicy {
    pub standard: bool,
    pub sensitive: bool,
    pub critical: bool,
}

/// `GET /api/v1/policy`: the tenant's approval policy.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyView {
    /// Whether reading a secret of each tier needs a human's approval
    /// (`critical` always does; `standard` never does).
    pub approval_required: TierPolicy,
}

/// `PUT /api/v1/policy`: the tiers to change; absent ones stay.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdatePolicyTiers {
    pub standard: Option<bool>,
    pub sensitive: Option<bool>,
    pub critical: Option<bool>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdatePolicy {
    pub approval_required: UpdatePolicyTiers,
}

impl Vault {
    /// The URL of an approval's page (see `Vault::set_site`).
    pub fn approval_url(&self, id: &str) -> String {
        format!("{}/approvals/{id}", self.public_base().trim_end_matches('/'))
    }

    fn view(&self, a: &ApprovalRow) -> Result<ApprovalView> {
        let scopes = match (&a.kind[..], &a.token_request) {
            ("token", Some(req)) => serde_json::from_str::<serde_json::Value>(req)
                .ok()
                .and_then(|v| v.get("scopes").cloned())
                .and_then(|s| serde_json::from_value::<Vec<String>>(s).ok()),
            _ => None,
        };
        Ok(ApprovalView {
            id: a.id.clone(),
            status: a.status.clone(),
            kind: a.kind.clone(),
            secret_id: a.secret_id.clone(),
            secret_name: a.secret_name.clone(),
            secret_path: a.secret_name.as_ref().map(|n| super::scopes::path(a.secret_environment.as_deref().unwrap_or(""), n)),
            access_tier: a.secret_tier.clone(),
            scopes,
            requester_id: a.requester_id.clone(),
            requester_name: a.requester_name.clone(),
            reason: a.reason.clone(),
            ip: a.ip.clone(),
            created_at: at(a.created_at, &a.id)?,
            expires_at: at(a.expires_at, &a.id)?,
            decided_at: a.decided_at.map(|t| at(t, &a.id)).transpose()?,
            decided_by: a.decided_by.clone(),
            decided_how: a.decided_how.clone(),
            deny_reason: a.deny_reason.clone(),
            grant_expires_at: a.grant_expires_at.map(|t| at(t, &a.id)).transpose()?,
            grant_uses_left: a.grant_uses_left,
            approval_url: self.approval_url(&a.id),
        })
    }

    /// Whether a secret of `tier` needs approval under the tenant's policy.
    /// Only `sensitive` reads the policy.
    pub(crate) async fn gated(&self, tenant_id: &str, tier: &str) -> Result<bool> {
        match tier {
            "critical" => Ok(true),
            "sensitive" => self.store.gate_sensitive(tenant_id).await,
            _ => Ok(false),
        }
    }

    /// The one check before a gated value leaves the vault: passes a
    /// standard secret at no cost; for a gated one, takes a use of the
    /// caller's live grant, or opens (reuses) a pending request and answers
    /// `APPROVAL_REQUIRED`. An owner asks too, and approves its own request
    /// on the page (with its passkey once it has one): an owner token is a
    /// copyable string, and must not read past the gate on its own. A scoped token issued through an approval (its `approval_id`)
    /// passes for the secrets that approval covered. Says whether passing took a use of a grant: a read
    /// tried again (its row came from a stale cache) must not take a second
    /// one, and must be judged again when it took none.
    pub(crate) async fn gate(&self, p: &Principal, row: &SecretRow, reason: Option<&str>) -> Result<Gate> {
        let tier = AccessTier::of_row(row)?;
        if tier == AccessTier::Standard || !self.gated(&p.tenant_id, tier.as_str()).await? || p.kind == CallerKind::Operator {
            return Ok(Gate::Open);
        }
        if self.token_approved_for(p, &row.id).await? {
            return Ok(Gate::Open);
        }
        let now = now_millis();
        let used = |a: &ApprovalRow| {
            p.audit("approval.used", "approval", Some(&a.id), "success").detail(serde_json::json!({
                "secretId": row.id, "name": row.name, "usesLeft": a.grant_uses_left,
            }))
        };
        if self.store.use_grant(&p.tenant_id, &p.key_id, &row.id, now, &used).await?.is_some() {
            return Ok(Gate::Granted);
        }
        let reason = reason.map(str::to_owned);
        let pending = self.open_request(p, NewRequest { kind: "read", secret: Some(row), reason, ..Default::default() }, now).await?;
        Err(Error::ApprovalRequired { approval_url: self.approval_url(&pending.id), approval_id: pending.id })
    }

    async fn open_request(&self, p: &Principal, what: NewRequest<'_>, now: Millis) -> Result<ApprovalRow> {
        let requester_name = match self.store.get_api_key(&p.tenant_id, &p.key_id).await? {
            Some(k) => k.name,
            None => p.key_id.clone(),
        };
        let ttl = i64::try_from(self.config.approval_request_ttl.as_millis()).unwrap_or(i64::MAX);
        let NewRequest { kind, secret, token_request, gated_secret_ids, reason } = what;
        let row = ApprovalRow {
            id: uuid::Uuid::new_v4().to_string(),
            tenant_id: p.tenant_id.clone(),
            kind: kind.to_owned(),
            requester_id: p.key_id.clone(),
            requester_name,
            secret_id: secret.map(|s| s.id.clone()),
            token_request,
            gated_secret_ids,
            reason,
            ip: p.origin.ip.clone(),
            status: "pending".into(),
            created_at: now,
            expires_at: now.saturating_add(ttl),
            decided_at: None,
            decided_by: None,
            decided_how: None,
            deny_reason: None,
            grant_expires_at: None,
            grant_uses_left: None,
            secret_name: secret.map(|s| s.name.clone()),
            secret_environment: secret.map(|s| s.environment.clone()),
            secret_tier: secret.map(|s| s.access_tier.clone()),
        };
        let requested = |a: &ApprovalRow| {
            p.audit("approval.requested", "approval", Some(&a.id), "success").detail(serde_json::json!({
                "kind": a.kind, "secretId": a.secret_id, "name": a.secret_name, "tier": a.secret_tier,
            }))
        };
        let expired = |a: &ApprovalRow| expired_entry(a);
        let mut opened = self.store.open_approval(&row, now, &requested, &expired).await?;
        if opened.secret_name.is_none() {
            (opened.secret_name, opened.secret_environment, opened.secret_tier) =
                (row.secret_name.clone(), row.secret_environment.clone(), row.secret_tier.clone());
        }
        Ok(opened)
    }

    /// Marks lapsed pending requests among `rows` expired (audited), in place.
    async fn expire_lapsed(&self, rows: &mut [ApprovalRow]) -> Result<()> {
        let now = now_millis();
        let lapsed: Vec<(String, String)> =
            rows.iter().filter(|a| a.status == "pending" && a.expires_at <= now).map(|a| (a.tenant_id.clone(), a.id.clone())).collect();
        let Some((tenant, _)) = lapsed.first().cloned() else { return Ok(()) };
        let ids: Vec<String> = lapsed.iter().filter(|(t, _)| *t == tenant).map(|(_, id)| id.clone()).collect();
        let expired = |a: &ApprovalRow| expired_entry(a);
        let changed = self.store.expire_approvals(&tenant, &ids, now, &expired).await?;
        for a in rows.iter_mut() {
            if changed.iter().any(|c| c.id == a.id) {
                a.status = "expired".into();
            }
        }
        // Other tenants' (the operator's listing of all): one call each.
        if lapsed.iter().any(|(t, _)| *t != tenant) {
            for a in rows.iter_mut().filter(|a| a.status == "pending" && a.expires_at <= now) {
                if !self.store.expire_approvals(&a.tenant_id, std::slice::from_ref(&a.id), now, &expired).await?.is_empty() {
                    a.status = "expired".into();
                }
            }
        }
        Ok(())
    }

    /// The approval `id` as `p` may see it: an owner or the operator sees
    /// every request of the tenant, anyone else only its own (others answer
    /// 404, as a missing one does).
    async fn visible_approval(&self, p: &Principal, id: &str) -> Result<ApprovalRow> {
        if !names::is_id(id) {
            return Err(Error::NotFound("approval"));
        }
        let mut row = self.store.get_approval(Some(&p.tenant_id), id).await?.ok_or(Error::NotFound("approval"))?;
        if !p.is_owner() && row.requester_id != p.key_id {
            return Err(Error::NotFound("approval"));
        }
        self.expire_lapsed(std::slice::from_mut(&mut row)).await?;
        Ok(row)
    }

    pub async fn list_approvals(&self, p: &Principal, status: Option<&str>) -> Result<Vec<ApprovalView>> {
        audited!(self, p, "approval.list", "approval", None, self.list_approvals_inner(p, status).await)
    }

    async fn list_approvals_inner(&self, p: &Principal, status: Option<&str>) -> Result<Vec<ApprovalView>> {
        let status = check_status(status)?;
        let requester = (!p.is_owner()).then_some(p.key_id.as_str());
        let mut rows = self.store.list_approvals(Some(&p.tenant_id), requester, status, 500).await?;
        self.expire_lapsed(&mut rows).await?;
        rows.retain(|a| status.is_none_or(|s| a.status == s));
        let views = rows.iter().map(|a| self.view(a)).collect::<Result<Vec<_>>>()?;
        self.record_read(p, p.audit("approval.list", "approval", None, "success").detail(serde_json::json!({ "count": views.len() })))
            .await?;
        Ok(views)
    }

    pub async fn get_approval(&self, p: &Principal, id: &str) -> Result<ApprovalView> {
        audited!(self, p, "approval.read", "approval", Some(id), self.get_approval_inner(p, id).await)
    }

    async fn get_approval_inner(&self, p: &Principal, id: &str) -> Result<ApprovalView> {
        let view = self.view(&self.visible_approval(p, id).await?)?;
        self.record_read(p, p.audit("approval.read", "approval", Some(id), "success")).await?;
        Ok(view)
    }

    /// An approval's state without an audit entry: what a waiting agent
    /// polls (`wait_for_approval`), which records one entry when it ends.
    pub(crate) async fn poll_approval(&self, p: &Principal, id: &str) -> Result<ApprovalView> {
        self.view(&self.visible_approval(p, id).await?)
    }

    pub async fn approve(&self, p: &Principal, id: &str, req: ApproveRequest) -> Result<ApprovalView> {
        audited!(self, p, "approval.approved", "approval", Some(id), self.approve_inner(p, id, req).await)
    }

    async fn approve_inner(&self, p: &Principal, id: &str, req: ApproveRequest) -> Result<ApprovalView> {
        let ttl = req.ttl.as_ref().map(Ttl::duration).transpose()?.unwrap_or(DEFAULT_GRANT_TTL);
        if ttl > MAX_GRANT_TTL {
            return Err(Error::InvalidRequest("ttl must be at most 30 days".into()));
        }
        let uses = req.uses.unwrap_or(1);
        if !(1..=MAX_GRANT_USES).contains(&uses) {
            return Err(Error::InvalidRequest(format!("uses must be between 1 and {MAX_GRANT_USES}")));
        }
        let row = self.decidable(p, id).await?;
        let now = now_millis();
        let d = Decision {
            status: "approved",
            decided_at: now,
            decided_by: p.key_id.clone(),
            decided_how: how(p).to_owned(),
            deny_reason: None,
            grant_expires_at: Some(now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX))),
            grant_uses_left: Some(i64::from(uses)),
        };
        let audit = p.audit("approval.approved", "approval", Some(&row.id), "success").detail(serde_json::json!({
            "how": d.decided_how, "kind": row.kind, "secretId": row.secret_id, "requester": row.requester_id,
            "ttlSeconds": ttl.as_secs(), "uses": uses,
        }));
        self.decide(p, row, d, audit).await
    }

    pub async fn deny(&self, p: &Principal, id: &str, reason: &str) -> Result<ApprovalView> {
        let p = &*p.with_reason(Some(reason));
        audited!(self, p, "approval.denied", "approval", Some(id), self.deny_inner(p, id, reason).await)
    }

    async fn deny_inner(&self, p: &Principal, id: &str, reason: &str) -> Result<ApprovalView> {
        let reason = names::text("reason", reason.trim(), 1024)?;
        if reason.is_empty() {
            return Err(Error::InvalidRequest("a denial needs a reason: say why, the requester will read it".into()));
        }
        let row = self.decidable(p, id).await?;
        let d = Decision {
            status: "denied",
            decided_at: now_millis(),
            decided_by: p.key_id.clone(),
            decided_how: how(p).to_owned(),
            deny_reason: Some(reason.clone()),
            grant_expires_at: None,
            grant_uses_left: None,
        };
        let audit = p.audit("approval.denied", "approval", Some(&row.id), "success").detail(serde_json::json!({
            "how": d.decided_how, "kind": row.kind, "secretId": row.secret_id, "requester": row.requester_id, "reason": reason,
        }));
        self.decide(p, row, d, audit).await
    }

    /// The request, once the caller is shown to be one who may decide it:
    /// an owner; with a fresh passkey (once the tenant has them) for a
    /// critical secret or a token request.
    async fn decidable(&self, p: &Principal, id: &str) -> Result<ApprovalRow> {
        p.require_owner("decide an approval", false)?;
        let row = self.visible_approval(p, id).await?;
        let critical = row.kind == "token" || row.secret_tier.as_deref().is_none_or(|t| t == "critical");
        p.require_owner("decide an approval", critical)?;
        Ok(row)
    }

    async fn decide(&self, p: &Principal, row: ApprovalRow, d: Decision, audit: AuditRow) -> Result<ApprovalView> {
        match self.store.decide_approval(&p.tenant_id, &row.id, &d, &audit).await? {
            Some(mut decided) => {
                (decided.secret_name, decided.secret_environment, decided.secret_tier) =
                    (row.secret_name, row.secret_environment, row.secret_tier);
                self.view(&decided)
            }
            None => {
                // Decided by someone else meanwhile, or lapsed: say which.
                let now = self.visible_approval(p, &row.id).await?;
                Err(Error::Conflict(format!("this approval request is already {}; nothing changed", now.status)))
            }
        }
    }

    /// For the token service: a token request whose scopes cover gated
    /// secrets opens (or reuses) a pending approval of kind `token` that
    /// carries the request. The caller answers `requiresApproval` with the
    /// returned view's id and URL.
    pub(crate) async fn request_token_approval(
        &self,
        p: &Principal,
        request: serde_json::Value,
        gated_secret_ids: Vec<String>,
    ) -> Result<ApprovalView> {
        let gated = serde_json::to_string(&gated_secret_ids).expect("serialisable");
        let reason = request.get("reason").and_then(|r| r.as_str()).map(str::to_owned);
        let row = self
            .open_request(
                p,
                NewRequest {
                    kind: "token",
                    token_request: Some(request.to_string()),
                    gated_secret_ids: Some(gated),
                    reason,
                    ..Default::default()
                },
                now_millis(),
            )
            .await?;
        self.view(&row)
    }

    /// For the token service: marks an approved token approval of the
    /// caller's as used, exactly once (one conditional UPDATE), and hands
    /// back the stored token request, from which the token is issued.
    pub(crate) async fn take_token_approval(&self, p: &Principal, id: &str) -> Result<(ApprovalView, serde_json::Value)> {
        let row = self.visible_approval(p, id).await?;
        if row.kind != "token" || row.requester_id != p.key_id {
            return Err(Error::NotFound("approval"));
        }
        let used =
            |a: &ApprovalRow| p.audit("approval.used", "approval", Some(&a.id), "success").detail(serde_json::json!({ "kind": "token" }));
        match self.store.take_token_approval(&p.tenant_id, id, &p.key_id, now_millis(), &used).await? {
            Some(taken) => {
                let request = serde_json::from_str(taken.token_request.as_deref().unwrap_or("null")).map_err(|_| Error::Integrity)?;
                Ok((self.view(&taken)?, request))
            }
            None => {
                let now = self.visible_approval(p, id).await?;
                let why = match now.status.as_str() {
                    "approved" => "its grant has expired".to_owned(),
                    "used" => "its token was already issued".to_owned(),
                    other => format!("it is {other}"),
                };
                Err(Error::Conflict(format!("this approval cannot be redeemed: {why}")))
            }
        }
    }

    pub async fn get_policy(&self, p: &Principal) -> Result<PolicyView> {
        audited!(
            self,
            p,
            "policy.read",
            "policy",
            None,
            async {
                let sensitive = self.store.gate_sensitive(&p.tenant_id).await?;
                self.record_read(p, p.audit("policy.read", "policy", None, "success")).await?;
                Ok(PolicyView { approval_required: TierPolicy { standard: false, sensitive, critical: true } })
            }
            .await
        )
    }

    pub async fn set_policy(&self, p: &Principal, req: UpdatePolicy) -> Result<PolicyView> {
        audited!(self, p, "policy.update", "policy", None, self.set_policy_inner(p, req).await)
    }

    async fn set_policy_inner(&self, p: &Principal, req: UpdatePolicy) -> Result<PolicyView> {
        let t = req.approval_required;
        if t.critical == Some(false) {
            return Err(Error::InvalidRequest("critical secrets always need approval; the policy cannot turn that off".into()));
        }
        if t.standard == Some(true) {
            return Err(Error::InvalidRequest("standard secrets never need approval: raise a secret's accessTier instead".into()));
        }
        p.require_owner("change the approval policy", true)?;
        let Some(sensitive) = t.sensitive else {
            return self.get_policy(p).await;
        };
        let audit =
            p.audit("policy.update", "policy", None, "success").detail(serde_json::json!({ "sensitive": sensitive, "how": how(p) }));
        if !self.store.set_gate_sensitive(&p.tenant_id, sensitive, &audit).await? {
            return Err(Error::NotFound("tenant"));
        }
        Ok(PolicyView { approval_required: TierPolicy { standard: false, sensitive, critical: true } })
    }

    /// The operator's view across tenants (`latchkey approvals list` without `--tenant`).
    pub async fn operator_list_approvals(&self, tenant: Option<&str>, status: Option<&str>) -> Result<Vec<ApprovalView>> {
        if let Some(t) = tenant {
            return self.list_approvals(&Principal::operator(t), status).await;
        }
        let status = check_status(status)?;
        let mut rows = self.store.list_approvals(None, None, status, 1000).await?;
        self.expire_lapsed(&mut rows).await?;
        rows.retain(|a| status.is_none_or(|s| a.status == s));
        rows.iter().map(|a| self.view(a)).collect()
    }

    /// The operator principal for the tenant an approval belongs to
    /// (`latchkey approvals approve|deny ID`).
    pub async fn operator_for_approval(&self, id: &str) -> Result<Principal> {
        if !names::is_id(id) {
            return Err(Error::NotFound("approval"));
        }
        let row = self.store.get_approval(None, id).await?.ok_or(Error::NotFound("approval"))?;
        Ok(Principal::operator(&row.tenant_id))
    }
}

/// How a read passed the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gate {
    /// Nothing to pass: standard, not gated by the policy, or an owner.
    Open,
    /// One use of the caller's grant was taken.
    Granted,
}

/// What a new approval request is for (see `Vault::open_request`).
#[derive(Default)]
struct NewRequest<'a> {
    kind: &'a str,
    secret: Option<&'a SecretRow>,
    token_request: Option<String>,
    gated_secret_ids: Option<String>,
    reason: Option<String>,
}

/// What the operator asks of `latchkey approvals …` / `latchkey policy set`.
pub enum OperatorCommand {
    List { tenant: Option<String>, status: Option<String> },
    Approve { id: String, ttl: String, uses: u32 },
    Deny { id: String, reason: String },
    SetSensitive { tenant: String, on: bool },
}

/// Runs an operator command; answers what to print.
pub async fn operator_command(vault: &Vault, command: OperatorCommand) -> Result<String> {
    Ok(match command {
        OperatorCommand::List { tenant, status } => json(&vault.operator_list_approvals(tenant.as_deref(), status.as_deref()).await?),
        OperatorCommand::Approve { id, ttl, uses } => {
            let p = vault.operator_for_approval(&id).await?;
            json(&vault.approve(&p, &id, ApproveRequest { ttl: Some(Ttl::Text(ttl)), uses: Some(uses) }).await?)
        }
        OperatorCommand::Deny { id, reason } => {
            let p = vault.operator_for_approval(&id).await?;
            json(&vault.deny(&p, &id, &reason).await?)
        }
        OperatorCommand::SetSensitive { tenant, on } => {
            let p = Principal::operator(&names::tenant_id(&tenant)?);
            let req = UpdatePolicy { approval_required: UpdatePolicyTiers { sensitive: Some(on), ..Default::default() } };
            json(&vault.set_policy(&p, req).await?)
        }
    })
}

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).expect("serialisable")
}

fn check_status(status: Option<&str>) -> Result<Option<&str>> {
    match status.filter(|s| !s.is_empty()) {
        Some(s) if !STATUSES.contains(&s) => {
            Err(Error::InvalidRequest("status must be one of pending, approved, denied, expired, used".into()))
        }
        s => Ok(s),
    }
}

/// How the decider proved who they are, for the audit trail.
fn how(p: &Principal) -> &'static str {
    p.human.as_ref().map_or("key", |h| h.how)
}

/// The entry of a request noticed lapsed: no caller's act, so the system's.
fn expired_entry(a: &ApprovalRow) -> AuditRow {
    let origin = super::Origin::new(super::Front::Cli);
    let mut row = origin.audit(Some(&a.tenant_id), "system", "approval.expired", "approval", Some(&a.id), "success");
    row.front = "system".into();
    row.detail = Some(serde_json::json!({ "kind": a.kind, "secretId": a.secret_id, "requester": a.requester_id }).to_string());
    row
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::views::{CreateSecret, SignupRequest};
    use crate::vault::{Front, Origin};

    /// The token service's half: a token request covering a gated secret
    /// waits for a decision, is redeemed once by the key that asked, and
    /// never by another.
    #[tokio::test]
    async fn a_token_approval_is_redeemed_once_by_its_requester() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(crate::store::sqlite::SqliteStore::open(dir.path()).await.unwrap());
        let master = crate::crypto::master::from_base64("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap();
        let vault = Vault::open(store, master, Default::default()).await.unwrap();
        let origin = || Origin::new(Front::Rest);
        let signup = |t: &str| SignupRequest { tenant_id: t.into(), email: None, agent: None, description: None };
        let key = vault.signup(signup("tokens"), origin()).await.unwrap().api_key;
        let p = vault.authenticate(&key, origin()).await.unwrap();
        let create = CreateSecret {
            name: "PROD_DB".into(),
            value: "v".into(),
            secret_type: None,
            tags: vec![],
            project_id: None,
            environment: Some("production".into()),
            description: None,
            access_tier: Some(AccessTier::Critical),
            exposure: None,
            bindings: None,
            expires_at: None,
            expires_in: None,
            max_versions: None,
        };
        let secret = vault.create_secret(&p, create).await.unwrap();

        let request = serde_json::json!({ "scopes": ["secrets:read:production/*"], "ttl": "1h", "reason": "deploy" });
        let pending = vault.request_token_approval(&p, request.clone(), vec![secret.id.clone()]).await.unwrap();
        assert_eq!((pending.kind.as_str(), pending.status.as_str()), ("token", "pending"));
        assert_eq!(pending.scopes.as_deref(), Some(&["secrets:read:production/*".to_owned()][..]));
        assert_eq!(pending.reason.as_deref(), Some("deploy"));
        let again = vault.request_token_approval(&p, request.clone(), vec![secret.id.clone()]).await.unwrap();
        assert_eq!(again.id, pending.id, "the same request reuses the pending approval");

        let early = vault.take_token_approval(&p, &pending.id).await.unwrap_err();
        assert!(matches!(&early, Error::Conflict(m) if m.contains("pending")), "{early:?}");
        let operator = vault.operator_for_approval(&pending.id).await.unwrap();
        vault.approve(&operator, &pending.id, ApproveRequest::default()).await.unwrap();

        let other_key = vault.signup(signup("other"), origin()).await.unwrap().api_key;
        let other = vault.authenticate(&other_key, origin()).await.unwrap();
        assert!(matches!(vault.take_token_approval(&other, &pending.id).await, Err(Error::NotFound(_))));

        let (taken, stored) = vault.take_token_approval(&p, &pending.id).await.unwrap();
        assert_eq!((taken.status.as_str(), stored), ("used", request));
        let twice = vault.take_token_approval(&p, &pending.id).await.unwrap_err();
        assert!(matches!(&twice, Error::Conflict(m) if m.contains("already issued")), "{twice:?}");
    }
}
