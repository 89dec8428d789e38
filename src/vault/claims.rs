//! Claim tokens: one tenant hands a secret to another without the value
//! passing through a chat, a ticket or a prompt.
//!
//! The creator makes a claim for a target tenant from a value or from one of
//! its own secrets (a real, audited read, subject to the access tier and
//! approvals), and gets a `ctk_…` token once; it passes the token to the
//! other agent out of band. The pending value is sealed like a version, with
//! the creator's data key, bound to the claim (`claim/{id}`, version 0); the
//! token is stored as its SHA-256. The target redeems it once: one store
//! transaction takes the claim (one conditional UPDATE), stores the value as
//! a new secret in the target's vault, erases the ciphertext and writes both
//! tenants' audit entries. Every other tenant is answered as if the token did
//! not exist. Expiry is never stored: a pending claim past `expires_at` is
//! expired, and its ciphertext is erased the first time anything notices
//! (a redemption, a listing, the sweep).

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::principal::WithDetail;
use super::scopes::ScopeAction;
use super::secrets::SecretRef;
use super::views::{AccessTier, ReadVersion, SecretMeta, SecretType};
use super::{Permission, Principal, Vault, audited, names, plans};
use crate::crypto::{SecretAad, tokens};
use crate::error::{Error, Result};
use crate::store::claims::{CLAIMED, ClaimRow, PENDING, REVOKED};
use crate::store::{AuditRow, Millis, SecretRow, VersionRow, now_millis};

/// The token's readable prefix.
pub const CLAIM_TOKEN_PREFIX: &str = "ctk_";
/// How long a claim lives unless asked otherwise.
pub const DEFAULT_MINUTES: i64 = 5;
/// The longest listing.
const LIST_LIMIT: i64 = 500;

/// A new claim token: the value to hand over (`secretValue`, or `secretId`
/// of one of your secrets), for whom and under which contract.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateClaim {
    /// The value to hand over. Give this or `secretId`, not both.
    pub secret_value: Option<String>,
    /// One of your secrets to hand over instead of a value: its current value
    /// is read (audited as a read; a tier that needs approval answers 403
    /// APPROVAL_REQUIRED first), so it never passes through your context.
    pub secret_id: Option<String>,
    /// The name the secret takes in the target's vault (the source secret's
    /// name by default when `secretId` is given); the redeemer may give another.
    pub secret_name: Option<String>,
    /// The type the secret takes in the target's vault (default: the source's, or `custom`).
    pub secret_type: Option<SecretType>,
    /// The tenant that may redeem the token.
    #[schemars(length(min = 1, max = 63))]
    pub target_tenant_id: String,
    /// Your reference to the agreement this hand-off belongs to (1-200
    /// characters); recorded in both tenants' audit trails.
    #[schemars(length(min = 1, max = 200))]
    pub contract_id: String,
    /// Lifetime in minutes (default 5; at most the server's bound, 1440 unless configured).
    #[schemars(range(min = 1))]
    pub expires_in_minutes: Option<i64>,
    /// Lifetime in hours, instead of minutes.
    #[schemars(range(min = 1))]
    pub expires_in_hours: Option<i64>,
}

/// A claim token, made: the token is shown this once.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClaimIssued {
    pub id: String,
    /// `ctk_…`: pass it to the other agent out of band; it redeems it once.
    pub token: String,
    /// Same as `token` (the name SecretCarousel's CLI reads).
    pub access_token: String,
    pub expires_at: DateTime<Utc>,
    pub target_tenant_id: String,
    pub contract_id: String,
    pub secret_name: Option<String>,
}

/// Where a redeemed claim goes in your vault. All optional; the body may be
/// absent. The name defaults to the claim's `secretName`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedeemClaim {
    /// The new secret's name (required when the claim names none).
    pub name: Option<String>,
    /// A project of yours to file it under.
    pub project_id: Option<String>,
    /// An environment such as `production`.
    pub environment: Option<String>,
}

/// A redeemed claim: the new secret in your vault (never its value).
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClaimRedeemed {
    #[serde(flatten)]
    pub secret: SecretMeta,
    /// Same as `name` (SecretCarousel's name for it).
    pub secret_name: String,
    pub claim_id: String,
    pub contract_id: String,
    /// The tenant that handed the secret over.
    pub from_tenant_id: String,
}

/// A claim token as its creator and its target see it: never a value or the token.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClaimView {
    pub id: String,
    /// Same as `id` (the name SecretCarousel's CLI reads).
    pub claim_token_id: String,
    /// `pending`, `claimed`, `expired` or `revoked`.
    pub status: String,
    pub contract_id: String,
    pub creator_tenant_id: String,
    pub target_tenant_id: String,
    pub secret_name: Option<String>,
    pub secret_type: Option<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub redeemed_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// The secret the redemption created (shown to the target only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redeemed_secret_id: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClaimList {
    pub claim_tokens: Vec<ClaimView>,
    pub count: usize,
}

/// Filters of a claim listing.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListClaims {
    /// Only claims in this state: `pending`, `claimed`, `expired` or `revoked`.
    pub status: Option<String>,
}

fn at(ms: Millis, id: &str, field: &'static str) -> Result<DateTime<Utc>> {
    super::views::time(ms, "claim_tokens", &id, field)
}

impl ClaimView {
    fn of(c: &ClaimRow, viewer: &str, now: Millis) -> Result<Self> {
        Ok(ClaimView {
            id: c.id.clone(),
            claim_token_id: c.id.clone(),
            status: c.state(now).to_owned(),
            contract_id: c.contract_id.clone(),
            creator_tenant_id: c.creator_tenant_id.clone(),
            target_tenant_id: c.target_tenant_id.clone(),
            secret_name: c.secret_name.clone(),
            secret_type: c.secret_type.clone(),
            created_at: at(c.created_at, &c.id, "created_at")?,
            expires_at: at(c.expires_at, &c.id, "expires_at")?,
            redeemed_at: c.redeemed_at.map(|t| at(t, &c.id, "redeemed_at")).transpose()?,
            revoked_at: c.revoked_at.map(|t| at(t, &c.id, "revoked_at")).transpose()?,
            redeemed_secret_id: if viewer == c.target_tenant_id { c.redeemed_secret_id.clone() } else { None },
        })
    }
}

/// What binds a pending value to its claim.
fn claim_aad<'a>(creator: &'a str, secret_id: &'a str) -> SecretAad<'a> {
    SecretAad { tenant_id: creator, secret_id, version: 0 }
}

/// `row` for another tenant's trail: the same action, as that tenant sees
/// it. Not a key's own entry there, so no credential is checked for it.
fn mirrored(row: &AuditRow, tenant_id: &str) -> AuditRow {
    let mut r = row.clone();
    r.tenant_id = Some(tenant_id.to_owned());
    r.credential = None;
    r.served = None;
    r
}

/// The claim's other party, seen from `tenant_id`, when it is another tenant.
fn others<'a>(c: &'a ClaimRow, tenant_id: &str) -> Vec<&'a str> {
    let mut v = Vec::new();
    for t in [c.creator_tenant_id.as_str(), c.target_tenant_id.as_str()] {
        if t != tenant_id && !v.contains(&t) {
            v.push(t);
        }
    }
    v
}

impl Vault {
    /// Makes a claim token for another tenant (see the module's doc).
    pub async fn create_claim(&self, p: &Principal, req: CreateClaim) -> Result<ClaimIssued> {
        audited!(self, p, "claim.create", "claim_token", None, self.create_claim_inner(p, req).await)
    }

    async fn create_claim_inner(&self, p: &Principal, req: CreateClaim) -> Result<ClaimIssued> {
        plans::require_feature(&p.plan, plans::CLAIMS, "claim tokens")?;
        p.require_key("create claim tokens")?;
        p.require(Permission::Write)?;
        let contract_id = names::label("contractId", &req.contract_id, 200)?;
        let minutes = match (req.expires_in_minutes, req.expires_in_hours) {
            (Some(_), Some(_)) => return Err(Error::InvalidRequest("give expiresInMinutes or expiresInHours, not both".into())),
            (Some(m), None) => m,
            (None, Some(h)) => h.saturating_mul(60),
            (None, None) => DEFAULT_MINUTES,
        };
        let max = i64::from(self.config.max_claim_minutes);
        if minutes < 1 || minutes > max {
            return Err(Error::InvalidRequest(format!(
                "a claim token lives from 1 minute to {max} minutes ({} hours) on this server",
                max / 60
            )));
        }
        let mut secret_name = req.secret_name.as_deref().map(names::secret_name).transpose()?;
        let mut secret_type = req.secret_type.map(|t| t.as_str().to_owned());
        let target = req.target_tenant_id.trim();
        if target.is_empty() || target.len() > 63 || self.store.get_tenant(target).await?.is_none() {
            return Err(Error::NotFound("target tenant"));
        }
        let (value, source) = match (req.secret_value, req.secret_id) {
            (Some(_), Some(_)) => return Err(Error::InvalidRequest("give secretValue or secretId, not both".into())),
            (None, None) => {
                return Err(Error::InvalidRequest("give secretValue (the value to hand over) or secretId (one of your secrets)".into()));
            }
            (Some(value), None) => {
                self.check_value(&value)?;
                (value, None)
            }
            (None, Some(id)) => {
                let reason = format!("handing it over by claim token (contract {contract_id})");
                let reason: String = reason.chars().take(500).collect();
                let (meta, value) =
                    self.read_to_hand_off(p, SecretRef::Id(&id), &ReadVersion { version: None, reason: Some(reason) }).await?;
                secret_name.get_or_insert_with(|| meta.name.clone());
                secret_type.get_or_insert_with(|| meta.secret_type.clone());
                (value.to_string(), Some(meta.id))
            }
        };

        let value = zeroize::Zeroizing::new(value);
        let now = now_millis();
        let id = uuid::Uuid::new_v4().to_string();
        let token = tokens::generate(CLAIM_TOKEN_PREFIX);
        let key = self.data_key(&p.tenant_id).await?;
        let aad_id = format!("claim/{id}");
        let row = ClaimRow {
            id: id.clone(),
            token_hash: tokens::hash(&token),
            creator_tenant_id: p.tenant_id.clone(),
            creator_key_id: p.key_id.clone(),
            target_tenant_id: target.to_owned(),
            contract_id: contract_id.clone(),
            secret_name: secret_name.clone(),
            secret_type,
            source_secret_id: source.clone(),
            sealed: Some(key.seal(&claim_aad(&p.tenant_id, &aad_id), value.as_bytes())),
            status: PENDING.into(),
            created_at: now,
            expires_at: now + minutes * 60_000,
            redeemed_at: None,
            redeemed_by: None,
            redeemed_secret_id: None,
            revoked_at: None,
        };
        let entry = p.audit("claim.create", "claim_token", Some(&id), "success").detail(serde_json::json!({
            "contractId": contract_id,
            "creatorTenantId": p.tenant_id,
            "targetTenantId": row.target_tenant_id,
            "secretName": secret_name,
            "sourceSecretId": source,
            "expiresAt": at(row.expires_at, &id, "expires_at")?,
        }));
        let mut audit = vec![entry];
        for other in others(&row, &p.tenant_id) {
            audit.push(mirrored(&audit[0], other));
        }
        self.store.claims().insert_claim(&row, &audit).await?;
        Ok(ClaimIssued {
            id,
            access_token: token.clone(),
            token,
            expires_at: at(row.expires_at, &row.id, "expires_at")?,
            target_tenant_id: row.target_tenant_id,
            contract_id,
            secret_name,
        })
    }

    /// Redeems a claim token into the caller's vault, once.
    pub async fn redeem_claim(&self, p: &Principal, token: &str, req: RedeemClaim) -> Result<ClaimRedeemed> {
        let mut seen = None;
        match self.redeem_claim_inner(p, token, req, &mut seen).await {
            Ok(done) => Ok(done),
            Err(e) => Err(self.redeem_failed(p, seen.as_ref(), e).await),
        }
    }

    /// Records a failed redemption in the caller's trail and, when a claim
    /// was found, in its creator's and target's, with the contract id (the
    /// caller's own entry names the claim only if it is a party to it).
    async fn redeem_failed(&self, p: &Principal, claim: Option<&ClaimRow>, err: Error) -> Error {
        let err = self.dead_key_first(p, err).await;
        if matches!(err, Error::Internal(_)) {
            return err;
        }
        let party = claim.filter(|c| c.target_tenant_id == p.tenant_id || c.creator_tenant_id == p.tenant_id);
        let mut own = p.audit("claim.redeem", "claim_token", party.map(|c| c.id.as_str()), err.audit_outcome());
        own.credential = None;
        let mut detail = serde_json::json!({ "code": err.code() });
        if let Some(c) = party {
            detail["contractId"] = c.contract_id.clone().into();
        }
        let own = own.detail(detail);
        let mut rows = vec![own];
        if let Some(c) = claim {
            let mut theirs = p.audit("claim.redeem", "claim_token", Some(&c.id), err.audit_outcome());
            theirs = theirs.detail(serde_json::json!({
                "code": err.code(),
                "contractId": c.contract_id,
                "redeemerTenantId": p.tenant_id,
            }));
            for other in others(c, &p.tenant_id) {
                rows.push(mirrored(&theirs, other));
            }
        }
        for row in rows {
            if let Err(e) = self.record(row).await {
                return e;
            }
        }
        err
    }

    async fn redeem_claim_inner(&self, p: &Principal, token: &str, req: RedeemClaim, seen: &mut Option<ClaimRow>) -> Result<ClaimRedeemed> {
        plans::require_feature(&p.plan, plans::CLAIMS, "claim tokens")?;
        p.require(Permission::Write)?;
        let missing = || Error::NotFound("claim token");
        if !token.starts_with(CLAIM_TOKEN_PREFIX) || token.len() > 200 {
            return Err(missing());
        }
        let hash = tokens::hash(token);
        let claim = self.store.claims().find_claim_by_hash(&hash).await?.ok_or_else(missing)?;
        *seen = Some(claim.clone());
        if claim.target_tenant_id != p.tenant_id {
            return Err(missing());
        }
        let now = now_millis();
        // The state as read chooses the error early; the conditional UPDATE decides.
        self.claim_state_error(&claim, now).await?;

        let name = match req.name.as_deref().or(claim.secret_name.as_deref()) {
            Some(n) => names::secret_name(n)?,
            None => {
                return Err(Error::InvalidRequest("this claim token names no secret: give a name in the body, {\"name\": \"…\"}".into()));
            }
        };
        let environment = names::environment(req.environment.as_deref())?;
        let project_id = req.project_id.filter(|p| !p.is_empty());
        p.require_path(ScopeAction::Write, project_id.as_deref(), &environment, &name)?;
        self.check_project(p, project_id.as_deref()).await?;
        self.check_environment(&p.tenant_id, project_id.as_deref(), &environment).await?;

        let creator_key = self.key_for(&claim.creator_tenant_id, claim.sealed.as_deref().unwrap_or_default()).await?;
        let target_key = self.data_key(&p.tenant_id).await?;
        let secret_id = uuid::Uuid::new_v4().to_string();
        let make = |c: &ClaimRow| -> Result<(SecretRow, VersionRow, Vec<AuditRow>)> {
            let sealed = c.sealed.as_deref().ok_or(Error::ClaimAlreadyRedeemed)?;
            let aad_id = format!("claim/{}", c.id);
            // The plaintext lives only between the two keys, and is wiped after.
            let value = zeroize::Zeroizing::new(creator_key.open(&claim_aad(&c.creator_tenant_id, &aad_id), sealed)?);
            let now = c.redeemed_at.unwrap_or(now);
            let secret = SecretRow {
                id: secret_id.clone(),
                tenant_id: p.tenant_id.clone(),
                project_id: project_id.clone(),
                environment: environment.clone(),
                name: name.clone(),
                secret_type: c.secret_type.clone().unwrap_or_else(|| SecretType::Custom.as_str().to_owned()),
                description: None,
                tags: "[]".into(),
                current_version: 1,
                created_at: now,
                updated_at: now,
                access_tier: AccessTier::Standard.as_str().to_owned(),
                exposure: "reveal".into(),
                bindings: "[]".into(),
                expires_at: None,
                deleted_at: None,
                max_versions: None,
                retiring_version: None,
                retiring_until: None,
            };
            let first = VersionRow {
                secret_id: secret.id.clone(),
                version: 1,
                sealed: target_key.seal(&SecretAad { tenant_id: &p.tenant_id, secret_id: &secret.id, version: 1 }, &value),
                created_at: now,
                created_by: p.key_id.clone(),
            };
            let redeemed = p.audit("claim.redeem", "claim_token", Some(&c.id), "success").detail(serde_json::json!({
                "contractId": c.contract_id,
                "creatorTenantId": c.creator_tenant_id,
                "secretId": secret.id,
                "name": secret.name,
            }));
            let created = p.audit("secret.create", "secret", Some(&secret.id), "success").detail(serde_json::json!({
                "name": secret.name, "version": 1, "environment": secret.environment, "projectId": secret.project_id,
                "accessTier": secret.access_tier, "claimId": c.id, "contractId": c.contract_id,
            }));
            let mut audit = vec![redeemed, created];
            if c.creator_tenant_id != p.tenant_id {
                let mut theirs = p.audit("claim.redeem", "claim_token", Some(&c.id), "success").detail(serde_json::json!({
                    "contractId": c.contract_id,
                    "targetTenantId": c.target_tenant_id,
                }));
                theirs = mirrored(&theirs, &c.creator_tenant_id);
                audit.push(theirs);
            }
            Ok((secret, first, audit))
        };
        let quota = |plan: &str| Ok(plans::limits(plan)?.max_secrets);
        let taken = self.store.claims().redeem_claim(&hash, &p.tenant_id, &p.key_id, now, &quota, &make).await?;
        let Some(taken) = taken else {
            // Someone else took it, or it ended meanwhile: read it once to say which.
            let now = now_millis();
            let current = self.store.claims().get_claim(&claim.id).await?.ok_or_else(missing)?;
            self.claim_state_error(&current, now).await?;
            return Err(Error::ClaimAlreadyRedeemed);
        };
        let secret = self.store.get_secret(&p.tenant_id, &secret_id).await?.ok_or_else(|| Error::internal("redeemed secret vanished"))?;
        Ok(ClaimRedeemed {
            secret_name: secret.name.clone(),
            secret: SecretMeta::try_from(&secret)?,
            claim_id: taken.id,
            contract_id: taken.contract_id,
            from_tenant_id: taken.creator_tenant_id,
        })
    }

    /// The error a claim that can no longer be redeemed answers; erases the
    /// ciphertext of an expired one the first time it is noticed.
    async fn claim_state_error(&self, c: &ClaimRow, now: Millis) -> Result<()> {
        match c.state(now) {
            CLAIMED => Err(Error::ClaimAlreadyRedeemed),
            REVOKED => Err(Error::ClaimRevoked),
            "expired" => {
                if c.sealed.is_some() {
                    self.store.claims().erase_expired_claims(now).await?;
                }
                Err(Error::ClaimExpired)
            }
            _ if c.sealed.is_none() => Err(Error::ClaimAlreadyRedeemed),
            _ => Ok(()),
        }
    }

    /// Claims the caller's tenant made or is the target of, newest first.
    pub async fn list_claims(&self, p: &Principal, q: ListClaims) -> Result<ClaimList> {
        audited!(self, p, "claim.list", "claim_token", None, self.list_claims_inner(p, q).await)
    }

    async fn list_claims_inner(&self, p: &Principal, q: ListClaims) -> Result<ClaimList> {
        p.require_key("list claim tokens")?;
        if let Some(s) = &q.status
            && ![PENDING, CLAIMED, "expired", REVOKED].contains(&s.as_str())
        {
            return Err(Error::InvalidRequest("status must be one of pending, claimed, expired, revoked".into()));
        }
        let now = now_millis();
        let rows = self.store.claims().list_claims(&p.tenant_id, LIST_LIMIT).await?;
        if rows.iter().any(|c| c.state(now) == "expired" && c.sealed.is_some()) {
            self.store.claims().erase_expired_claims(now).await?;
        }
        let claim_tokens = rows
            .iter()
            .filter(|c| q.status.as_deref().is_none_or(|s| c.state(now) == s))
            .map(|c| ClaimView::of(c, &p.tenant_id, now))
            .collect::<Result<Vec<_>>>()?;
        let count = claim_tokens.len();
        self.record_read(p, p.audit("claim.list", "claim_token", None, "success").detail(serde_json::json!({ "count": count }))).await?;
        Ok(ClaimList { claim_tokens, count })
    }

    /// One claim the caller's tenant made or is the target of; any other answers 404.
    pub async fn get_claim(&self, p: &Principal, id: &str) -> Result<ClaimView> {
        audited!(self, p, "claim.list", "claim_token", Some(id), self.get_claim_inner(p, id).await)
    }

    async fn visible_claim(&self, p: &Principal, id: &str) -> Result<ClaimRow> {
        let found = if names::is_id(id) { self.store.claims().get_claim(id).await? } else { None };
        found.filter(|c| c.creator_tenant_id == p.tenant_id || c.target_tenant_id == p.tenant_id).ok_or(Error::NotFound("claim token"))
    }

    async fn get_claim_inner(&self, p: &Principal, id: &str) -> Result<ClaimView> {
        p.require_key("read claim tokens")?;
        let c = self.visible_claim(p, id).await?;
        let now = now_millis();
        if c.state(now) == "expired" && c.sealed.is_some() {
            self.store.claims().erase_expired_claims(now).await?;
        }
        let view = ClaimView::of(&c, &p.tenant_id, now)?;
        self.record_read(p, p.audit("claim.list", "claim_token", Some(&c.id), "success")).await?;
        Ok(view)
    }

    /// Revokes a claim the caller's tenant made and nobody redeemed yet,
    /// erasing its pending value.
    pub async fn revoke_claim(&self, p: &Principal, id: &str) -> Result<ClaimView> {
        audited!(self, p, "claim.revoke", "claim_token", Some(id), self.revoke_claim_inner(p, id).await)
    }

    async fn revoke_claim_inner(&self, p: &Principal, id: &str) -> Result<ClaimView> {
        p.require_key("revoke claim tokens")?;
        p.require(Permission::Write)?;
        let c = self.visible_claim(p, id).await?;
        let ended = |c: &ClaimRow| match c.status.as_str() {
            CLAIMED => Error::Conflict("this claim token was already redeemed; it can no longer be revoked".into()),
            REVOKED => Error::AlreadyRevoked("this claim token is already revoked".into()),
            _ => Error::Conflict("this claim token changed meanwhile; send the request again".into()),
        };
        if c.creator_tenant_id != p.tenant_id {
            return Err(Error::ScopeDenied("only the tenant that created a claim token can revoke it".into()));
        }
        if c.status != PENDING {
            return Err(ended(&c));
        }
        let now = now_millis();
        let entry = p.audit("claim.revoke", "claim_token", Some(&c.id), "success").detail(serde_json::json!({
            "contractId": c.contract_id,
            "targetTenantId": c.target_tenant_id,
        }));
        let mut audit = vec![entry];
        for other in others(&c, &p.tenant_id) {
            audit.push(mirrored(&audit[0], other));
        }
        match self.store.claims().revoke_claim(&p.tenant_id, &c.id, now, &audit).await? {
            Some(revoked) => ClaimView::of(&revoked, &p.tenant_id, now),
            None => {
                let current = self.store.claims().get_claim(&c.id).await?.ok_or(Error::NotFound("claim token"))?;
                Err(ended(&current))
            }
        }
    }
}
