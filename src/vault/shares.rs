//! Share links for people: a key hands one secret's value to a person who
//! has no key, as a link (`{public base}/s/shr_…`) that works a few times
//! for a few hours, optionally behind a password and an address allowlist.
//!
//! - The value is taken once, when the link is made, by a real read
//!   (`read_secret`: audited, subject to the access tier and approvals),
//!   and sealed into the link's row with the tenant's data key, bound to
//!   `share/{id}`. Opening the link never reads the secret again; deleting
//!   the secret revokes its links in the same transaction.
//! - The token is stored as its SHA-256 and shown once.
//! - Each use is ONE conditional UPDATE (`uses < max_uses`, not revoked,
//!   not expired, not locked), which erases the value when it takes the
//!   last use: `maxUses = N` gives exactly N successes under any concurrency.
//! - Passwords: PBKDF2-HMAC-SHA256, 600,000 iterations, a random 16-byte
//!   salt, stored as `pbkdf2-sha256$600000$salt$hash` (base64); checked in
//!   constant time on a bounded pool (one check per core at once), so
//!   guessing cannot starve other requests. Five wrong passwords in a row
//!   lock the link for 15 minutes; a success resets the count, and so does
//!   the end of a lock.
//! - Every access, success or failure, is audited (`share.access`) in the
//!   owning tenant's trail, never with the value, the token or a password.
//!   Unknown tokens are counted per client address like failed
//!   authentications (`auth::FailedAuth`) and recorded sampled.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use chrono::{DateTime, Utc};
use rand::RngCore;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::principal::WithDetail;
use super::secrets::SecretRef;
use super::views::{ReadVersion, json_list, time};
use super::{Origin, Permission, Principal, Vault, audited, names, plans};
use crate::crypto::{SecretAad, tokens};
use crate::error::{Error, Result};
use crate::store::shares::ShareRow;
use crate::store::{Millis, now_millis};

/// What every share token starts with.
pub const SHARE_TOKEN_PREFIX: &str = "shr_";
/// A link lives `expirationHours` (default 24, 1 to 720: 30 days).
pub const DEFAULT_EXPIRATION_HOURS: i64 = 24;
pub const MAX_EXPIRATION_HOURS: i64 = 720;
/// A link works `maxUses` times (default 1, 1 to 1000).
pub const DEFAULT_MAX_USES: i64 = 1;
pub const MAX_USES: i64 = 1000;
/// A password's length in characters.
const PASSWORD_CHARS: std::ops::RangeInclusive<usize> = 8..=200;
const MAX_ALLOWED_IPS: usize = 32;
/// Wrong passwords in a row that lock a link, and for how long.
pub const LOCK_AFTER: i64 = 5;
pub const LOCK_FOR: Duration = Duration::from_secs(15 * 60);
const PBKDF2_ITERATIONS: u32 = 600_000;
const PASSWORD_SCHEME: &str = "pbkdf2-sha256";
/// The most links a listing answers (newest first).
const LIST_LIMIT: i64 = 1000;
/// The actor of an access: whoever holds the link.
const LINK_HOLDER: &str = "link-holder";

/// What guards the public access path: the pool passwords are checked on,
/// and the count of unknown tokens per client address.
pub(super) struct Guards {
    checks: Arc<tokio::sync::Semaphore>,
    lookups: super::auth::FailedAuth,
}

impl Guards {
    pub(super) fn new(failures_per_minute: u32) -> Self {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        Guards { checks: Arc::new(tokio::sync::Semaphore::new(cores)), lookups: super::auth::FailedAuth::new(failures_per_minute) }
    }
}

// ---------------------------------------------------------------- requests and views

/// `POST /api/v1/shares`: a link to one secret's current value.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateShare {
    /// The secret to share; its current value is read (audited) now.
    pub secret_id: String,
    /// Hours the link works, 1-720 (default 24).
    #[schemars(range(min = 1, max = 720))]
    pub expiration_hours: Option<i64>,
    /// How many times the link may be opened, 1-1000 (default 1).
    #[schemars(range(min = 1, max = 1000))]
    pub max_uses: Option<i64>,
    /// A password the person must give, 8-200 characters (stored as a PBKDF2 hash).
    pub password: Option<String>,
    /// Client addresses and CIDRs the link may be opened from (at most 32); absent or empty: any.
    #[serde(rename = "allowedIPs", alias = "allowedIps")]
    pub allowed_ips: Option<Vec<String>>,
}

/// The new link. `token` and `url` are shown this once.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShareCreated {
    pub id: String,
    pub token: String,
    /// Same as `token` (SecretCarousel's CLI reads this name).
    pub access_token: String,
    /// `{public base}/s/{token}`: give it to the person; opening it counts a use.
    pub url: String,
    pub expires_at: DateTime<Utc>,
    pub max_uses: i64,
    pub secret_id: String,
    pub secret_name: String,
    pub has_password: bool,
    /// The link as `GET /api/v1/shares/{id}` shows it (SecretCarousel's CLI
    /// reads `share.expiresAt`).
    pub share: ShareView,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ShareStatus {
    Active,
    Expired,
    /// Every use was taken.
    Exhausted,
    Revoked,
}

/// Which links a listing shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StatusFilter {
    Active,
    Expired,
    Exhausted,
    Revoked,
    All,
}

/// `GET /api/v1/shares`: active links unless `status` says otherwise.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListShares {
    /// `active` (default), `expired`, `exhausted`, `revoked` or `all`.
    pub status: Option<StatusFilter>,
    /// `true`: every link, revoked ones included (as `status=all`), unless `status` is given.
    pub include_revoked: Option<bool>,
}

/// A link's state and counters; never its token or value.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShareView {
    pub id: String,
    /// Same as `id` (the name SecretCarousel's CLI reads).
    pub share_id: String,
    pub status: ShareStatus,
    pub secret_id: String,
    /// The secret's name when the link was made.
    pub secret_name: String,
    pub secret_type: String,
    pub uses: i64,
    pub max_uses: i64,
    pub uses_left: i64,
    /// Same as `uses` and `usesLeft` (SecretCarousel's CLI reads these names).
    pub current_uses: i64,
    pub remaining_uses: i64,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    /// The key that made it.
    pub created_by: String,
    pub has_password: bool,
    #[serde(rename = "allowedIPs")]
    pub allowed_ips: Option<Vec<String>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoke_reason: Option<String>,
    /// Same as `revokeReason` (SecretCarousel's CLI reads this name).
    pub revocation_reason: Option<String>,
    pub last_accessed_at: Option<DateTime<Utc>>,
    /// Set while wrong passwords keep it locked.
    pub locked_until: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShareList {
    pub shares: Vec<ShareView>,
    pub count: usize,
}

/// `POST /api/v1/shares/{id}/revoke` (body optional).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RevokeShare {
    /// Why (at most 500 characters), recorded with the link and in the audit trail.
    pub reason: Option<String>,
}

/// `POST /api/v1/shares/{id}/extend`: at least one of the two.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExtendShare {
    /// The link then works until now + this many hours (1-720); this may shorten it.
    #[schemars(range(min = 1, max = 720))]
    pub expiration_hours: Option<i64>,
    /// The new total of uses (1-1000), above the uses already taken.
    #[schemars(range(min = 1, max = 1000))]
    pub max_uses: Option<i64>,
}

/// `POST /api/v1/shares/access/{token}` (body optional).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccessShare {
    /// The link's password, if it has one.
    pub password: Option<String>,
}

/// The value a link gives, once per use.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SharedSecret {
    pub share_id: String,
    pub name: String,
    pub secret_type: String,
    pub value: String,
    /// Uses left after this one; `null`: unlimited.
    pub uses_left: Option<i64>,
    /// RFC 3339.
    pub expires_at: String,
}

/// What the page shows before a reveal; counts nothing, reveals nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShareState {
    Active,
    Expired,
    Exhausted,
    Revoked,
    Locked { retry_after_secs: u64 },
}

#[derive(Debug, Clone)]
pub struct ShareLanding {
    pub state: ShareState,
    pub needs_password: bool,
    pub secret_name: String,
    /// RFC 3339.
    pub expires_at: String,
    pub uses_left: Option<i64>,
}

// ---------------------------------------------------------------- rules

/// A link's status at `now`: revoked, then expired, then used up.
fn status_of(row: &ShareRow, now: Millis) -> ShareStatus {
    if row.revoked_at.is_some() {
        ShareStatus::Revoked
    } else if row.expires_at <= now {
        ShareStatus::Expired
    } else if row.uses >= row.max_uses || row.sealed.is_none() {
        ShareStatus::Exhausted
    } else {
        ShareStatus::Active
    }
}

fn locked_for(row: &ShareRow, now: Millis) -> Option<Duration> {
    row.locked_until.filter(|&until| until > now).map(|until| Duration::from_millis(u64::try_from(until - now).unwrap_or(0)))
}

fn aad_id(id: &str) -> String {
    format!("share/{id}")
}

fn allowed_ips(row: &ShareRow) -> Result<Option<Vec<String>>> {
    row.allowed_ips.as_deref().map(|l| json_list(l, "shares", &row.id, "allowed_ips")).transpose()
}

fn rfc3339(ms: Millis, id: &str, field: &'static str) -> Result<String> {
    Ok(time(ms, "shares", &id, field)?.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

fn hours(field: &str, h: i64) -> Result<i64> {
    if !(1..=MAX_EXPIRATION_HOURS).contains(&h) {
        return Err(Error::InvalidRequest(format!("{field} must be between 1 and {MAX_EXPIRATION_HOURS} (hours)")));
    }
    Ok(h * 3_600_000)
}

fn uses(n: i64) -> Result<i64> {
    if !(1..=MAX_USES).contains(&n) {
        return Err(Error::InvalidRequest(format!("maxUses must be between 1 and {MAX_USES}")));
    }
    Ok(n)
}

impl ShareView {
    fn of(row: &ShareRow, now: Millis) -> Result<Self> {
        let t = |ms: Millis, field| time(ms, "shares", &row.id, field);
        Ok(ShareView {
            id: row.id.clone(),
            share_id: row.id.clone(),
            status: status_of(row, now),
            secret_id: row.secret_id.clone(),
            secret_name: row.secret_name.clone(),
            secret_type: row.secret_type.clone(),
            uses: row.uses,
            max_uses: row.max_uses,
            uses_left: (row.max_uses - row.uses).max(0),
            current_uses: row.uses,
            remaining_uses: (row.max_uses - row.uses).max(0),
            expires_at: t(row.expires_at, "expires_at")?,
            created_at: t(row.created_at, "created_at")?,
            created_by: row.created_by.clone(),
            has_password: row.password_hash.is_some(),
            allowed_ips: allowed_ips(row)?,
            revoked_at: row.revoked_at.map(|ms| t(ms, "revoked_at")).transpose()?,
            revoke_reason: row.revoke_reason.clone(),
            revocation_reason: row.revoke_reason.clone(),
            last_accessed_at: row.last_accessed_at.map(|ms| t(ms, "last_accessed_at")).transpose()?,
            locked_until: row.locked_until.filter(|&u| u > now).map(|ms| t(ms, "locked_until")).transpose()?,
        })
    }
}

// ---------------------------------------------------------------- passwords

/// `pbkdf2-sha256$600000$salt$hash`, base64 without padding.
fn hash_password(password: &str) -> String {
    let mut salt = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    let out = crate::crypto::pbkdf2::pbkdf2_sha256(password.as_bytes(), &salt, PBKDF2_ITERATIONS);
    format!("{PASSWORD_SCHEME}${PBKDF2_ITERATIONS}${}${}", B64.encode(salt), B64.encode(out))
}

/// Whether `password` matches `stored`, compared in constant time. A
/// stored hash that does not parse is an integrity error.
fn password_matches(password: &str, stored: &str) -> Result<bool> {
    let parts: Vec<&str> = stored.split('$').collect();
    let parsed = match parts.as_slice() {
        [PASSWORD_SCHEME, n, salt, hash] => n
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=10_000_000).contains(n))
            .zip(B64.decode(salt).ok())
            .zip(B64.decode(hash).ok().filter(|h| h.len() == 32)),
        _ => None,
    };
    let Some(((iterations, salt), hash)) = parsed else {
        tracing::error!("shares.password_hash does not parse");
        return Err(Error::Integrity);
    };
    let out = crate::crypto::pbkdf2::pbkdf2_sha256(password.as_bytes(), &salt, iterations);
    Ok(out.as_slice().ct_eq(&hash).into())
}

impl Vault {
    /// Runs a password hash or check on the bounded pool: at most one per
    /// core at once, off the async workers.
    async fn on_password_pool<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        let _permit = self.share_guards.checks.clone().acquire_owned().await.map_err(Error::internal)?;
        tokio::task::spawn_blocking(work).await.map_err(Error::internal)
    }

    // ------------------------------------------------------------ creating

    /// `POST /api/v1/shares`: reads the secret (audited, gated tiers need
    /// an approval first) and seals its value into a new link.
    pub async fn create_share(&self, p: &Principal, req: CreateShare) -> Result<ShareCreated> {
        audited!(self, p, "share.create", "share", None, self.create_share_inner(p, req).await)
    }

    async fn create_share_inner(&self, p: &Principal, req: CreateShare) -> Result<ShareCreated> {
        plans::require_feature(&p.plan, plans::SHARES, "share links")?;
        p.require_key("create share links")?;
        p.require(Permission::Read)?;
        // Validated before anything is read: bad input is 400 whoever asks.
        let lifetime = hours("expirationHours", req.expiration_hours.unwrap_or(DEFAULT_EXPIRATION_HOURS))?;
        let max_uses = uses(req.max_uses.unwrap_or(DEFAULT_MAX_USES))?;
        let password = req.password.filter(|p| !p.is_empty()).map(Zeroizing::new);
        if let Some(pw) = &password
            && !PASSWORD_CHARS.contains(&pw.chars().count())
        {
            return Err(Error::InvalidRequest(format!("password must be {}-{} characters", PASSWORD_CHARS.start(), PASSWORD_CHARS.end())));
        }
        let allowed = match req.allowed_ips.filter(|l| !l.is_empty()) {
            Some(list) if list.len() > MAX_ALLOWED_IPS => {
                return Err(Error::InvalidRequest(format!("allowedIPs holds at most {MAX_ALLOWED_IPS} entries")));
            }
            Some(list) => Some(list.iter().map(|e| super::tokens::address_entry("allowedIPs", e)).collect::<Result<Vec<_>>>()?),
            None => None,
        };

        let read = ReadVersion { version: None, reason: Some("to make a share link for a person".into()) };
        let (secret, value) = self.read_to_hand_off(p, SecretRef::Id(&req.secret_id), &read).await?;
        let password_hash = match password {
            Some(pw) => Some(self.on_password_pool(move || hash_password(&pw)).await?),
            None => None,
        };
        let now = now_millis();
        let id = uuid::Uuid::new_v4().to_string();
        let key = self.data_key(&p.tenant_id).await?;
        let sealed = key.seal(&SecretAad { tenant_id: &p.tenant_id, secret_id: &aad_id(&id), version: 0 }, value.as_bytes());
        let token = tokens::generate(SHARE_TOKEN_PREFIX);
        let row = ShareRow {
            id: id.clone(),
            token_hash: tokens::hash(&token),
            tenant_id: p.tenant_id.clone(),
            secret_id: secret.id.clone(),
            secret_name: secret.name.clone(),
            secret_type: secret.secret_type.clone(),
            project_id: secret.project_id.clone(),
            created_by: p.key_id.clone(),
            sealed: Some(sealed),
            password_hash,
            allowed_ips: allowed.as_ref().map(|l| serde_json::to_string(l).expect("serialisable")),
            max_uses,
            uses: 0,
            failed_attempts: 0,
            locked_until: None,
            created_at: now,
            expires_at: now + lifetime,
            revoked_at: None,
            revoke_reason: None,
            last_accessed_at: None,
        };
        let audit = p.audit("share.create", "share", Some(&id), "success").detail(serde_json::json!({
            "secretId": row.secret_id,
            "name": row.secret_name,
            "expiresAt": rfc3339(row.expires_at, &id, "expires_at")?,
            "maxUses": max_uses,
            "hasPassword": row.password_hash.is_some(),
            "allowedIPs": allowed,
        }));
        self.store.shares().insert_share(&row, &audit).await?;
        let share = ShareView::of(&row, now)?;
        Ok(ShareCreated {
            share,
            url: format!("{}/s/{token}", self.public_base()),
            access_token: token.clone(),
            token,
            expires_at: time(row.expires_at, "shares", &id, "expires_at")?,
            max_uses,
            secret_id: row.secret_id,
            secret_name: row.secret_name,
            has_password: row.password_hash.is_some(),
            id,
        })
    }

    // ------------------------------------------------------------ the public side

    /// The link a token names, whatever its state; 404 `NotFound("share")`.
    async fn share_by_token(&self, token: &str) -> Result<Option<ShareRow>> {
        // Anything else cannot be a token this server made: no lookup.
        if !token.starts_with(SHARE_TOKEN_PREFIX) || token.len() > 128 {
            return Ok(None);
        }
        let hash = tokens::hash(token);
        Ok(self.store.shares().find_share_by_token(&hash).await?.filter(|r| tokens::hashes_match(&r.token_hash, &hash)))
    }

    /// The owning tenant's plan must still include share links.
    async fn share_plan_allows(&self, row: &ShareRow) -> Result<()> {
        let tenant = self.store.get_tenant(&row.tenant_id).await?.ok_or(Error::NotFound("share"))?;
        plans::require_feature(&tenant.plan, plans::SHARES, "share links")
    }

    /// What the page shows before a reveal; counts nothing, reveals nothing.
    /// 404 `NotFound("share")` for an unknown token.
    pub async fn share_landing(&self, token: &str, origin: &Origin) -> Result<ShareLanding> {
        let Some(row) = self.share_by_token(token).await? else {
            return Err(self.unknown_share(origin).await);
        };
        self.share_plan_allows(&row).await?;
        let now = now_millis();
        // Noticing expiry erases the value, here as on an access.
        self.refusal(&row, now).await?;
        let state = match (status_of(&row, now), locked_for(&row, now)) {
            (ShareStatus::Revoked, _) => ShareState::Revoked,
            (ShareStatus::Expired, _) => ShareState::Expired,
            (ShareStatus::Exhausted, _) => ShareState::Exhausted,
            (ShareStatus::Active, Some(wait)) => ShareState::Locked { retry_after_secs: wait.as_secs().max(1) },
            (ShareStatus::Active, None) => ShareState::Active,
        };
        Ok(ShareLanding {
            state,
            needs_password: row.password_hash.is_some(),
            secret_name: row.secret_name.clone(),
            expires_at: rfc3339(row.expires_at, &row.id, "expires_at")?,
            uses_left: Some((row.max_uses - row.uses).max(0)),
        })
    }

    /// Public access: checks state, IP allowlist (`origin.ip`), lockout and
    /// password; counts one use with one conditional UPDATE; audits
    /// `share.access` in the owning tenant's trail. Errors: NotFound("share"),
    /// ShareExpired, ShareExhausted, ShareRevoked, IpNotAllowed,
    /// PasswordRequired, InvalidPassword, ShareLocked, PlanLimitReached, and
    /// RateLimited for an unknown token from a client whose unknown tokens
    /// exceed the minute's allowance (`--auth-failures-per-minute`).
    pub async fn access_share(&self, token: &str, password: Option<String>, origin: Origin) -> Result<SharedSecret> {
        let password = password.map(Zeroizing::new);
        let Some(row) = self.share_by_token(token).await? else {
            return Err(self.unknown_share(&origin).await);
        };
        match self.access_inner(&row, password, &origin).await {
            Ok(shared) => Ok(shared),
            // Recorded with the failed attempt it counted, in one transaction.
            Err(e @ Error::InvalidPassword) => Err(e),
            Err(e @ (Error::Internal(_) | Error::Integrity)) => Err(e),
            Err(e) => {
                let row = origin
                    .audit(Some(&row.tenant_id), LINK_HOLDER, "share.access", "share", Some(&row.id), e.audit_outcome())
                    .detail(serde_json::json!({ "code": e.code() }));
                match self.record(row).await {
                    Ok(_) => Err(e),
                    Err(failed) => Err(failed),
                }
            }
        }
    }

    /// The answer to a token no link has, opened or accessed: 404, counted per
    /// client address like failed authentications, so guessing is throttled
    /// (past the minute's allowance 429, unrecorded; otherwise recorded at
    /// most once a minute per address). A real link is never held back.
    async fn unknown_share(&self, origin: &Origin) -> Error {
        let sources: Vec<String> = origin.ip.iter().map(|ip| format!("ip:{}", super::throttle::client_key(ip))).collect();
        if let Some(wait) = self.share_guards.lookups.blocked(&sources) {
            return Error::RateLimited { retry_after: wait };
        }
        let group = (None, "unknown-share".to_owned(), origin.ip.clone(), "unknown");
        if let Some(repeats) = self.share_guards.lookups.count(&sources, group) {
            let mut detail = serde_json::json!({ "code": "NOT_FOUND", "reason": "unknown token" });
            if repeats > 0 {
                detail["repeats"] = repeats.into();
            }
            if let Err(e) = self.record(origin.audit(None, LINK_HOLDER, "share.access", "share", None, "not_found").detail(detail)).await {
                return e;
            }
        }
        Error::NotFound("share")
    }

    /// Why a link cannot be used now, if it cannot (in the order the API
    /// promises); erases the value of a link found expired.
    async fn refusal(&self, row: &ShareRow, now: Millis) -> Result<Option<Error>> {
        Ok(match status_of(row, now) {
            ShareStatus::Revoked => Some(Error::ShareRevoked),
            ShareStatus::Expired => {
                if row.sealed.is_some() {
                    self.store.shares().erase_ended_shares(Some(&row.tenant_id), now).await?;
                }
                Some(Error::ShareExpired)
            }
            ShareStatus::Exhausted => Some(Error::ShareExhausted),
            ShareStatus::Active => None,
        })
    }

    async fn access_inner(&self, row: &ShareRow, password: Option<Zeroizing<String>>, origin: &Origin) -> Result<SharedSecret> {
        self.share_plan_allows(row).await?;
        if let Some(e) = self.refusal(row, now_millis()).await? {
            return Err(e);
        }
        if let Some(nets) = allowed_ips(row)?
            && !super::tokens::ip_in(&nets, origin.ip.as_deref())
        {
            return Err(Error::IpNotAllowed);
        }
        if let Some(wait) = locked_for(row, now_millis()) {
            return Err(Error::ShareLocked { retry_after: wait });
        }
        if let Some(stored) = row.password_hash.clone() {
            let Some(given) = password.filter(|p| !p.is_empty()) else { return Err(Error::PasswordRequired) };
            if !self.on_password_pool(move || password_matches(&given, &stored)).await?? {
                return Err(self.wrong_password(row, origin).await?);
            }
        }
        let now = now_millis();
        // Made before the use is taken, so it says nothing that depends on
        // which use this is (concurrent accesses read the same row).
        let audit = origin
            .audit(Some(&row.tenant_id), LINK_HOLDER, "share.access", "share", Some(&row.id), "success")
            .detail(serde_json::json!({ "secretId": row.secret_id, "name": row.secret_name }));
        let Some(taken) = self.store.shares().take_share_use(&row.id, now, &audit).await? else {
            // Another request took the last use, or the link changed meanwhile: say why.
            let current = self.store.shares().get_share(&row.tenant_id, &row.id).await?.ok_or(Error::NotFound("share"))?;
            let now = now_millis();
            if let Some(e) = self.refusal(&current, now).await? {
                return Err(e);
            }
            if let Some(wait) = locked_for(&current, now) {
                return Err(Error::ShareLocked { retry_after: wait });
            }
            return Err(Error::ShareExhausted);
        };
        // The value as sealed when the link was made: the UPDATE above
        // only ever erases it, so the row read before it holds the same.
        let sealed = row.sealed.as_deref().ok_or(Error::ShareExhausted)?;
        let key = self.key_for(&row.tenant_id, sealed).await?;
        let plain = key.open(&SecretAad { tenant_id: &row.tenant_id, secret_id: &aad_id(&row.id), version: 0 }, sealed)?;
        let value = String::from_utf8(plain).map_err(|_| Error::Integrity)?;
        Ok(SharedSecret {
            share_id: row.id.clone(),
            name: row.secret_name.clone(),
            secret_type: row.secret_type.clone(),
            value,
            uses_left: Some((taken.max_uses - taken.uses).max(0)),
            expires_at: rfc3339(taken.expires_at, &row.id, "expires_at")?,
        })
    }

    /// Counts a wrong password (audited in the same transaction); the
    /// `LOCK_AFTER`th in a row locks the link for `LOCK_FOR`.
    async fn wrong_password(&self, row: &ShareRow, origin: &Origin) -> Result<Error> {
        let now = now_millis();
        let lock_until = now + i64::try_from(LOCK_FOR.as_millis()).unwrap_or(i64::MAX);
        let audit = origin
            .audit(Some(&row.tenant_id), LINK_HOLDER, "share.access", "share", Some(&row.id), Error::InvalidPassword.audit_outcome())
            .detail(serde_json::json!({ "code": Error::InvalidPassword.code() }));
        match self.store.shares().fail_share_password(&row.id, now, LOCK_AFTER, lock_until, &audit).await? {
            Some(_) => Ok(Error::InvalidPassword),
            // Locked meanwhile by other wrong passwords.
            None => {
                let current = self.store.shares().get_share(&row.tenant_id, &row.id).await?.ok_or(Error::NotFound("share"))?;
                Ok(match locked_for(&current, now_millis()) {
                    Some(wait) => Error::ShareLocked { retry_after: wait },
                    None => Error::InvalidPassword,
                })
            }
        }
    }

    // ------------------------------------------------------------ managing

    /// A link of the caller's tenant within its project scope; any other
    /// answers 404 like a missing one. Scoped tokens manage no links.
    async fn visible_share(&self, p: &Principal, id: &str) -> Result<ShareRow> {
        p.require_key("manage share links")?;
        let row = match names::is_id(id) {
            true => self.store.shares().get_share(&p.tenant_id, id).await?,
            false => None,
        };
        row.filter(|r| p.covers(r.project_id.as_deref())).ok_or(Error::NotFound("share"))
    }

    /// `GET /api/v1/shares`.
    pub async fn list_shares(&self, p: &Principal, q: ListShares) -> Result<ShareList> {
        audited!(self, p, "share.list", "share", None, self.list_shares_inner(p, q).await)
    }

    async fn list_shares_inner(&self, p: &Principal, q: ListShares) -> Result<ShareList> {
        p.require_key("list share links")?;
        p.require(Permission::Read)?;
        let filter = match (q.status, q.include_revoked) {
            (Some(s), _) => s,
            (None, Some(true)) => StatusFilter::All,
            (None, _) => StatusFilter::Active,
        };
        let now = now_millis();
        // A listing is one of the moments expiry is noticed: values go now.
        self.store.shares().erase_ended_shares(Some(&p.tenant_id), now).await?;
        let rows = self.store.shares().list_shares(&p.tenant_id, LIST_LIMIT).await?;
        let wanted = |s: ShareStatus| match filter {
            StatusFilter::All => true,
            StatusFilter::Active => s == ShareStatus::Active,
            StatusFilter::Expired => s == ShareStatus::Expired,
            StatusFilter::Exhausted => s == ShareStatus::Exhausted,
            StatusFilter::Revoked => s == ShareStatus::Revoked,
        };
        let shares: Vec<ShareView> = rows
            .iter()
            .filter(|r| p.covers(r.project_id.as_deref()) && wanted(status_of(r, now)))
            .map(|r| ShareView::of(r, now))
            .collect::<Result<_>>()?;
        self.record_read(p, p.audit("share.list", "share", None, "success").detail(serde_json::json!({ "count": shares.len() }))).await?;
        Ok(ShareList { count: shares.len(), shares })
    }

    /// `GET /api/v1/shares/{id}`.
    pub async fn get_share(&self, p: &Principal, id: &str) -> Result<ShareView> {
        audited!(
            self,
            p,
            "share.list",
            "share",
            Some(id),
            async {
                p.require(Permission::Read)?;
                let row = self.visible_share(p, id).await?;
                let view = ShareView::of(&row, now_millis())?;
                self.record_read(p, p.audit("share.list", "share", Some(&row.id), "success")).await?;
                Ok(view)
            }
            .await
        )
    }

    /// `POST /api/v1/shares/{id}/revoke` and `DELETE /api/v1/shares/{id}`:
    /// the link stops at once and its value is erased; 409 `ALREADY_REVOKED`.
    pub async fn revoke_share(&self, p: &Principal, id: &str, req: RevokeShare) -> Result<ShareView> {
        let p = &*p.with_reason(req.reason.as_deref());
        audited!(self, p, "share.revoke", "share", Some(id), self.revoke_share_inner(p, id, req).await)
    }

    async fn revoke_share_inner(&self, p: &Principal, id: &str, req: RevokeShare) -> Result<ShareView> {
        p.require(Permission::Write)?;
        let reason = req.reason.as_deref().map(|r| names::text("reason", r.trim(), 500)).transpose()?.filter(|r| !r.is_empty());
        let row = self.visible_share(p, id).await?;
        let now = now_millis();
        let audit = p
            .audit("share.revoke", "share", Some(&row.id), "success")
            .detail(serde_json::json!({ "secretId": row.secret_id, "name": row.secret_name, "reason": reason }));
        match self.store.shares().revoke_share(&p.tenant_id, &row.id, now, reason.as_deref(), &audit).await? {
            Some(revoked) => ShareView::of(&revoked, now),
            None => Err(Error::AlreadyRevoked("this share link is already revoked".into())),
        }
    }

    /// `POST /api/v1/shares/{id}/extend`: a new expiry (now + hours) and/or
    /// a new total of uses, for a link that still holds its value.
    pub async fn extend_share(&self, p: &Principal, id: &str, req: ExtendShare) -> Result<ShareView> {
        audited!(self, p, "share.extend", "share", Some(id), self.extend_share_inner(p, id, req).await)
    }

    async fn extend_share_inner(&self, p: &Principal, id: &str, req: ExtendShare) -> Result<ShareView> {
        p.require(Permission::Write)?;
        if req.expiration_hours.is_none() && req.max_uses.is_none() {
            return Err(Error::InvalidRequest("give expirationHours, maxUses or both".into()));
        }
        let lifetime = req.expiration_hours.map(|h| hours("expirationHours", h)).transpose()?;
        let max_uses = req.max_uses.map(uses).transpose()?;
        let row = self.visible_share(p, id).await?;
        let now = now_millis();
        let why_not = |row: &ShareRow| match status_of(row, now) {
            ShareStatus::Revoked => Some(Error::Conflict("a revoked share link cannot be extended; create a new one".into())),
            ShareStatus::Expired => Some(Error::Conflict("this share link has expired and its value was erased; create a new one".into())),
            ShareStatus::Exhausted => Some(Error::Conflict(
                "this share link's last use was taken and its value erased with it, so it cannot get uses back; create a new one".into(),
            )),
            ShareStatus::Active => None,
        };
        if let Some(e) = why_not(&row) {
            return Err(e);
        }
        if let Some(n) = max_uses
            && n <= row.uses
        {
            return Err(Error::InvalidRequest(format!("maxUses must be above the {} use(s) already taken", row.uses)));
        }
        let expires_at = lifetime.map(|l| now + l);
        let audit = p.audit("share.extend", "share", Some(&row.id), "success").detail(serde_json::json!({
            "secretId": row.secret_id,
            "expiresAt": expires_at.map(|e| rfc3339(e, &row.id, "expires_at")).transpose()?,
            "maxUses": max_uses,
        }));
        match self.store.shares().extend_share(&p.tenant_id, &row.id, now, expires_at, max_uses, &audit).await? {
            Some(extended) => ShareView::of(&extended, now),
            None => {
                // It changed meanwhile (revoked, used up, expired): say how.
                let current = self.store.shares().get_share(&p.tenant_id, &row.id).await?.ok_or(Error::NotFound("share"))?;
                Err(why_not(&current)
                    .unwrap_or_else(|| Error::InvalidRequest(format!("maxUses must be above the {} use(s) already taken", current.uses))))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_salted_and_check_in_constant_time() {
        let a = hash_password("correct horse");
        let b = hash_password("correct horse");
        assert_ne!(a, b, "a fresh salt each time");
        assert!(a.starts_with("pbkdf2-sha256$600000$"), "{a}");
        assert!(password_matches("correct horse", &a).unwrap());
        assert!(!password_matches("correct horsf", &a).unwrap());
        assert!(matches!(password_matches("x", "pbkdf2-sha256$0$AA$AA"), Err(Error::Integrity)));
        assert!(matches!(password_matches("x", "md5$1$2"), Err(Error::Integrity)));
    }
}
