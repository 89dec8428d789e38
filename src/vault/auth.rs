//! Who is calling, decided once per request for every front: a credential
//! becomes a [`Principal`] here and nowhere else, every authenticated call is
//! charged to its tenant's plan here, and every failed attempt is recorded
//! and throttled here.
//!
//! One rule says whether a key may still act ([`dead_reason`]); the store
//! applies the same rule in SQL inside every write and batch (see
//! `store::liveness`), where it also holds the key to the rights the request
//! presented.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::principal::{CallerKind, Origin, Principal, WithDetail};
use super::{Permission, Vault};
use crate::crypto::tokens;
use crate::error::{Error, Result};
use crate::store::{ApiKeyRow, Millis, now_millis};

/// Why a key row can no longer act at `now`, or `None` while it can: the
/// one rule for "still live" of every caller backed by a key.
pub fn dead_reason(key: &ApiKeyRow, now: Millis) -> Option<&'static str> {
    if key.revoked_at.is_some() {
        Some("revoked")
    } else if key.expires_at.is_some_and(|e| e <= now) {
        Some("expired")
    } else {
        None
    }
}

/// A failed authentication: why, and whose key it was if the key exists.
pub(super) struct Failure<'a> {
    pub tenant_id: Option<&'a str>,
    /// The key's id, or what the caller presented instead (`anonymous`, `unknown-key`).
    pub actor: &'a str,
    pub reason: &'static str,
    /// The presented key's hash, when one was presented.
    pub presented: Option<&'a [u8]>,
}

/// Failed authentications, throttled and sampled.
///
/// A client (by address) or a presented key that fails more than the
/// operator's `--auth-failures-per-minute` within a minute has its further
/// failures answered 429 for the rest of that minute, unrecorded: a dead key
/// cannot make the server write without bound. Each failure that is
/// answered 401 is recorded, but at most once a minute for the same tenant,
/// actor, client address and reason; the next recorded one says how many were
/// left out before it (`repeats`). So a flood of bad requests costs the trail
/// a row per minute per source, not a row per request.
pub(super) struct FailedAuth {
    per_minute: u32,
    windows: Mutex<Windows>,
}

#[derive(Default)]
struct Windows {
    /// Failures in the current minute, by client address or presented key.
    counts: HashMap<String, (Instant, u32)>,
    /// When each kind of failure was last recorded, and how many since.
    recorded: HashMap<FailureKind, (Instant, u64)>,
}

/// Failures recorded together: (tenant, actor, client address, reason).
pub(super) type FailureKind = (Option<String>, String, Option<String>, &'static str);

const WINDOW: Duration = Duration::from_secs(60);

/// Above this many tracked sources, stale ones are swept on the next failure.
const SWEEP_ABOVE: usize = 16 * 1024;

impl FailedAuth {
    pub(super) fn new(per_minute: u32) -> Self {
        FailedAuth { per_minute: per_minute.max(1), windows: Mutex::new(Windows::default()) }
    }

    /// How long `sources` must wait before failing again, if one of them
    /// used up its failures for this minute.
    pub(super) fn blocked(&self, sources: &[String]) -> Option<Duration> {
        let w = self.windows.lock().expect("not poisoned");
        sources
            .iter()
            .filter_map(|s| w.counts.get(s))
            .filter(|(start, n)| start.elapsed() < WINDOW && *n >= self.per_minute)
            .map(|(start, _)| WINDOW.saturating_sub(start.elapsed()).max(Duration::from_secs(1)))
            .max()
    }

    /// Counts one failure of `sources`; the repeats to record with it, or
    /// `None` when this failure is left off the record.
    pub(super) fn count(&self, sources: &[String], group: FailureKind) -> Option<u64> {
        let mut w = self.windows.lock().expect("not poisoned");
        if w.counts.len() > SWEEP_ABOVE {
            w.counts.retain(|_, (start, _)| start.elapsed() < WINDOW);
        }
        if w.recorded.len() > SWEEP_ABOVE {
            w.recorded.retain(|_, (at, _)| at.elapsed() < WINDOW);
        }
        for s in sources {
            let entry = w.counts.entry(s.clone()).or_insert((Instant::now(), 0));
            if entry.0.elapsed() >= WINDOW {
                *entry = (Instant::now(), 0);
            }
            entry.1 += 1;
        }
        match w.recorded.get_mut(&group) {
            Some((at, left_out)) if at.elapsed() < WINDOW => {
                *left_out += 1;
                None
            }
            Some((at, left_out)) => {
                let repeats = *left_out;
                *at = Instant::now();
                *left_out = 0;
                Some(repeats)
            }
            None => {
                w.recorded.insert(group, (Instant::now(), 0));
                Some(0)
            }
        }
    }
}

/// What a failed attempt is counted under: its client address and, when it
/// presented one, its key (by hash).
fn sources(origin: &Origin, presented: Option<&[u8]>) -> Vec<String> {
    let mut out = Vec::with_capacity(2);
    if let Some(ip) = &origin.ip {
        out.push(format!("ip:{}", super::throttle::client_key(ip)));
    }
    if let Some(hash) = presented {
        use base64::Engine;
        out.push(format!("key:{}", base64::engine::general_purpose::STANDARD_NO_PAD.encode(hash)));
    }
    out
}

impl Vault {
    /// Resolves a presented API key to a principal and charges the call to
    /// its tenant's plan. Unknown, expired and revoked keys answer 401 (never
    /// billed, recorded as sampled `auth.failed` entries), and 429 once their
    /// client or key has failed too often this minute. A live key is never
    /// held back by others' failures from its address (a shared NAT).
    pub async fn authenticate(&self, token: &str, origin: Origin) -> Result<Principal> {
        self.authenticate_as(token, origin, true).await
    }

    /// [`Vault::authenticate`]; `count_use` false leaves a token's uses as
    /// they are (a `latchkey mcp` session counts each call instead).
    async fn authenticate_as(&self, token: &str, origin: Origin, count_use: bool) -> Result<Principal> {
        let seen_epoch = self.store.change_epoch();
        let hash = tokens::hash(token);
        let found = self.store.find_api_key(&hash).await?.filter(|k| tokens::hashes_match(&k.key.key_hash, &hash));
        let Some(crate::store::KeyWithPlan { key, plan }) = found else {
            let failure = Failure { tenant_id: None, actor: "unknown-key", reason: "unknown", presented: Some(&hash) };
            return Err(self.refuse(&origin, failure, Error::Unauthorized("invalid API key".into())).await);
        };
        if let Some(why) = dead_reason(&key, now_millis()) {
            let err = match (key.is_token(), why) {
                (true, "revoked") => Error::TokenRevoked,
                (true, _) => Error::TokenExpired,
                (false, _) => Error::Unauthorized(format!("this API key is {why}")),
            };
            let failure = Failure { tenant_id: Some(&key.tenant_id), actor: &key.id, reason: why, presented: Some(&hash) };
            return Err(self.refuse(&origin, failure, err).await);
        }
        if key.is_token() && !super::tokens::ip_allowed(&key, origin.ip.as_deref())? {
            let failure = Failure { tenant_id: Some(&key.tenant_id), actor: &key.id, reason: "ip_not_allowed", presented: Some(&hash) };
            return Err(self.refuse(&origin, failure, Error::IpNotAllowed).await);
        }
        self.admit(&key.tenant_id, &plan).await?;
        if count_use && key.max_uses.is_some() && !self.store.use_token(&key.id).await? {
            let failure = Failure { tenant_id: Some(&key.tenant_id), actor: &key.id, reason: "exhausted", presented: Some(&hash) };
            return Err(self.refuse(&origin, failure, Error::TokenExhausted).await);
        }
        principal_of(key, plan, CallerKind::ApiKey, origin, seen_epoch)
    }

    /// Refuses a request that presented no usable credential (none at all
    /// where one is needed, or malformed headers): recorded like any failed
    /// authentication, and throttled by client address.
    pub async fn refuse_anonymous(&self, origin: &Origin, err: Error) -> Error {
        let reason = if matches!(&err, Error::Unauthorized(m) if m.starts_with("malformed")) { "malformed" } else { "missing" };
        self.refuse(origin, Failure { tenant_id: None, actor: "anonymous", reason, presented: None }, err).await
    }

    /// Counts and (sampled) records a failed authentication, then hands
    /// `err` back. The one place an `auth.failed` entry is written.
    pub(super) async fn refuse(&self, origin: &Origin, f: Failure<'_>, err: Error) -> Error {
        let sources = sources(origin, f.presented);
        if let Some(wait) = self.failed_auth.blocked(&sources) {
            return Error::RateLimited { retry_after: wait };
        }
        let group = (f.tenant_id.map(str::to_owned), f.actor.to_owned(), origin.ip.clone(), f.reason);
        let Some(repeats) = self.failed_auth.count(&sources, group) else {
            return err;
        };
        let mut detail = serde_json::json!({ "reason": f.reason });
        if repeats > 0 {
            detail["repeats"] = repeats.into();
        }
        let resource_id = f.tenant_id.map(|_| f.actor);
        let row = origin.audit(f.tenant_id, f.actor, "auth.failed", "api_key", resource_id, "denied").detail(detail);
        match self.record(row).await {
            Ok(_) => err,
            Err(e) => e,
        }
    }

    /// Charges one call to the tenant's plan: its per-minute rate (429) and
    /// its month's calls (403 `PLAN_LIMIT_REACHED`). Every authenticated call
    /// pays, on every front: HTTP requests as they authenticate, each call of
    /// a `latchkey mcp` session as it runs ([`Vault::session_caller`]).
    // `&String`: see `Throttle::check`.
    #[allow(clippy::ptr_arg)]
    pub(super) async fn admit(&self, tenant_id: &String, plan: &str) -> Result<()> {
        if let Some(limiter) = self.request_limiters.get(plan)
            && let Err(wait) = limiter.check(tenant_id)
        {
            return Err(Error::RateLimited { retry_after: wait.max(Duration::from_secs(1)) });
        }
        if let Some(&limit) = self.monthly_caps.get(plan) {
            self.monthly_calls.count(self.store.as_ref(), tenant_id, limit).await?;
        }
        Ok(())
    }

    /// Looks the caller's key up again in the database: used when another
    /// process changed the database while a request was served from the cache,
    /// for every call of a long `latchkey mcp` session, and before any change
    /// to API keys (a key another process revoked a moment ago must not mint
    /// or change one on the cache's word). The tenant's plan is read again
    /// too: an operator may have moved it since.
    pub async fn recheck(&self, p: &Principal) -> Result<Principal> {
        let seen_epoch = self.store.change_epoch();
        match p.kind {
            // Not keys: an owner is live while its row is not revoked.
            CallerKind::Owner => {
                let owner = self.store.owners().get_owner(&p.tenant_id, &p.key_id).await?;
                return match owner {
                    Some(o) if o.revoked_at.is_none() => Ok(Principal { seen_epoch, ..p.clone() }),
                    _ => Err(Error::Unauthorized("this owner was revoked".into())),
                };
            }
            CallerKind::Operator => return Ok(Principal { seen_epoch, ..p.clone() }),
            CallerKind::ApiKey | CallerKind::LocalSession | CallerKind::Token => {}
        }
        let (key, tenant) = tokio::try_join!(self.store.get_api_key(&p.tenant_id, &p.key_id), self.store.get_tenant(&p.tenant_id))?;
        match (key, tenant) {
            (Some(key), Some(tenant)) if tokens::hashes_match(&key.key_hash, &p.credential.key_hash) => {
                match dead_reason(&key, now_millis()) {
                    // The same request or session: what it opened stays guarded.
                    None => principal_of(key, tenant.plan, p.kind, p.origin.clone(), seen_epoch)
                        .map(|fresh| Principal { touched: p.touched.clone(), ..fresh }),
                    Some("revoked") if key.is_token() => Err(Error::TokenRevoked),
                    Some(_) if key.is_token() => Err(Error::TokenExpired),
                    Some(_) => Err(Error::Unauthorized(crate::store::DEAD_KEY.into())),
                }
            }
            _ => Err(Error::Unauthorized(crate::store::DEAD_KEY.into())),
        }
    }

    /// Opens a `latchkey mcp` session: as the key the user gave
    /// (`LATCHKEY_API_KEY`), or as the local tenant's own session key.
    pub async fn open_session(&self, api_key: Option<&str>, local_tenant: &str, origin: Origin) -> Result<Session> {
        let principal = match api_key {
            Some(key) => self.authenticate_as(key, origin, false).await?,
            None => self.local_principal(&super::names::tenant_id(local_tenant)?, origin).await?,
        };
        Ok(Session { principal: Mutex::new(principal), renewing: Default::default() })
    }

    /// The caller of a session's next call, checked in the database (the
    /// key may have been revoked or have expired since the session began)
    /// and charged to its tenant's plan, as an HTTP request is when it
    /// authenticates. A local session key that expired is replaced as a new
    /// session would replace it; a key the user gave, or a local key someone
    /// revoked, is not: revoking the key a session acts with is how an admin
    /// stops that session.
    pub async fn session_caller(&self, session: &Session) -> Result<Principal> {
        let seen = session.principal.lock().expect("not poisoned").clone();
        let current = match self.recheck(&seen).await {
            Err(Error::Unauthorized(_)) if seen.kind == CallerKind::LocalSession => {
                let _one = session.renewing.lock().await;
                let latest = session.principal.lock().expect("not poisoned").clone();
                if (&latest.key_id, &latest.credential) != (&seen.key_id, &seen.credential) {
                    // Another call renewed it meanwhile.
                    self.recheck(&latest).await?
                } else {
                    let renewed = self.renew_local_principal(&seen).await?;
                    *session.principal.lock().expect("not poisoned") = renewed.clone();
                    renewed
                }
            }
            checked => checked?,
        };
        self.admit(&current.tenant_id, &current.plan).await?;
        // Each call of a session given a token is one of its uses.
        if current.kind == CallerKind::Token && !self.store.use_token(&current.key_id).await? {
            return Err(Error::TokenExhausted);
        }
        Ok(current)
    }
}

/// The caller of a `latchkey mcp` session (stdio), held for its length.
pub struct Session {
    principal: Mutex<Principal>,
    /// Held while renewing: calls run concurrently, and one new key is enough.
    renewing: tokio::sync::Mutex<()>,
}

impl Session {
    /// The tenant the session acts in.
    pub fn tenant_id(&self) -> String {
        self.principal.lock().expect("not poisoned").tenant_id.clone()
    }

    /// The values the session's calls opened that its client may not see.
    pub fn touched(&self) -> crate::redact::Touched {
        self.principal.lock().expect("not poisoned").touched.clone()
    }
}

pub(super) fn principal_of(key: ApiKeyRow, plan: String, kind: CallerKind, origin: Origin, seen_epoch: u64) -> Result<Principal> {
    // Unreadable, it would read as no scope at all: every project.
    let scope: Vec<String> = serde_json::from_str(&key.project_scope).map_err(|_| {
        tracing::error!(key = %key.id, "api_keys.project_scope is not a JSON list of ids");
        Error::Integrity
    })?;
    let (credential, permission) = (crate::store::Credential::of(&key), Permission::parse(&key.permission)?);
    // A token is a token however it is reached; its reach is its scopes.
    let (kind, scopes) = if key.is_token() { (CallerKind::Token, Some(super::tokens::scopes_of(&key)?)) } else { (kind, None) };
    Ok(Principal {
        tenant_id: key.tenant_id,
        key_id: key.id,
        kind,
        credential,
        plan,
        permission,
        project_scope: if scope.is_empty() { None } else { Some(scope) },
        origin,
        seen_epoch,
        scopes,
        human: None,
        touched: Default::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_throttled_per_source_and_sampled() {
        let f = FailedAuth::new(3);
        let (ip, key) = (vec!["ip:a".to_owned()], vec!["ip:b".to_owned(), "key:k".to_owned()]);
        let group = |ip: &str| (None, "unknown-key".to_owned(), Some(ip.to_owned()), "unknown");
        assert_eq!(f.count(&ip, group("a")), Some(0), "the first is recorded");
        assert_eq!(f.count(&ip, group("a")), None, "a repeat within the minute is not");
        assert!(f.blocked(&ip).is_none());
        assert_eq!(f.count(&ip, group("a")), None);
        let wait = f.blocked(&ip).expect("three failures use up the minute");
        assert!(wait > Duration::ZERO && wait <= WINDOW);
        assert!(f.blocked(&key).is_none(), "another client with another key is not blocked");
        f.count(&key, group("b"));
        f.count(&key, group("b"));
        f.count(&key, group("b"));
        assert!(f.blocked(&["ip:c".to_owned(), "key:k".to_owned()]).is_some(), "the same key from a third client is");
    }

    #[test]
    fn liveness() {
        let (row, _) = super::super::keys::new_key("t", "free", "k".into(), Permission::Read, &[], Some(1_000));
        assert_eq!(dead_reason(&row, 999), None);
        assert_eq!(dead_reason(&row, 1_000), Some("expired"));
        let revoked = ApiKeyRow { revoked_at: Some(5), ..row };
        assert_eq!(dead_reason(&revoked, 0), Some("revoked"));
    }
}
