//! Scoped tokens: short-lived credentials an agent asks for with its key,
//! never wider than that key (permission, project scope, expiry), limited to
//! the secrets their scopes cover (`vault::scopes`), and optionally to a
//! number of uses and to client addresses.
//!
//! A token is a row of `api_keys` of kind `token`, so the liveness rule
//! (`vault::auth::dead_reason`, `store::liveness`), the key cache and the
//! audit trail's credential check apply to it as to any key. Its uses are
//! counted past the cache by one conditional update (`Store::use_token`).

use std::net::IpAddr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use ipnet::IpNet;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::principal::{CallerKind, WithDetail};
use super::scopes::{ScopeAction, Scopes};
use super::views::{json_list, time};
use super::{Permission, Principal, Vault, audited, keys, names};
use crate::crypto::tokens;
use crate::error::{Error, Result};
use crate::store::{ApiKeyRow, KIND_TOKEN, now_millis};

/// What every token starts with.
pub const TOKEN_PREFIX: &str = "lkt_";

/// A token lives this long unless asked otherwise, and at most [`MAX_TTL`].
pub const DEFAULT_TTL: i64 = 3600;
pub const MAX_TTL: i64 = 30 * 24 * 3600;
/// Bounds on the optional limits, so a request cannot store without bound.
const MAX_USES: i64 = 1_000_000;
const MAX_ALLOWLIST: usize = 32;

/// A lifetime: seconds, or a number with a unit `s`, `m`, `h`, `d` ("15m", "7d").
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Ttl {
    Seconds(i64),
    Text(String),
}

impl Ttl {
    /// The lifetime in seconds: 1 s to 30 days, else 400.
    pub fn seconds(&self) -> Result<i64> {
        let bad =
            || Error::InvalidRequest("ttl must be seconds or a number with s, m, h or d (\"15m\", \"1h\", \"7d\"), at most 30d".into());
        let secs = match self {
            Ttl::Seconds(n) => *n,
            Ttl::Text(t) => {
                let t = t.trim();
                let (digits, unit) = match t.char_indices().last() {
                    Some((i, c)) if c.is_ascii_alphabetic() => (&t[..i], c),
                    _ => (t, 's'),
                };
                let n: i64 = if !digits.is_empty() && digits.len() <= 9 && digits.bytes().all(|b| b.is_ascii_digit()) {
                    digits.parse().map_err(|_| bad())?
                } else {
                    return Err(bad());
                };
                n * match unit {
                    's' => 1,
                    'm' => 60,
                    'h' => 3600,
                    'd' => 86400,
                    _ => return Err(bad()),
                }
            }
        };
        if (1..=MAX_TTL).contains(&secs) { Ok(secs) } else { Err(bad()) }
    }
}

/// `POST /api/v1/tokens`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenRequest {
    /// `secrets:{read|write|list|delete|*}:{glob}`, the glob matched against
    /// a secret's path `{environment}/{name}` (`production/gemini/*`).
    pub scopes: Vec<String>,
    /// Seconds, or "15m", "1h", "7d"; default 1h, at most 30d and never
    /// past the asking key's own expiry.
    pub ttl: Option<Ttl>,
    /// The token answers this many requests, then 401 `TOKEN_EXHAUSTED`.
    #[schemars(range(min = 1, max = 1000000))]
    pub max_uses: Option<i64>,
    /// Client addresses and CIDRs the token may be used from (else 401 `IP_NOT_ALLOWED`).
    pub ip_allowlist: Option<Vec<String>>,
    /// Project ids, within the asking key's own scope; default: the key's scope.
    #[serde(default)]
    pub project_scope: Vec<String>,
    /// Why the token is needed, for the audit trail and the owner.
    pub reason: Option<String>,
    /// The approval this token is issued under (set by the redeem, never by a client).
    #[serde(skip)]
    #[schemars(skip)]
    pub approval_id: Option<String>,
}

/// A newly issued token: the only time it is shown.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenIssued {
    /// The token (`lkt_…`); send it like an API key. Shown once; only its hash is stored.
    pub token: Option<String>,
    pub token_id: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    /// True when a scope covers secrets that need an owner's approval first.
    pub requires_approval: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval_url: Option<String>,
    pub scopes: Vec<String>,
    pub max_uses: Option<i64>,
    pub ip_allowlist: Option<Vec<String>>,
}

/// A token as listed: never the token or its hash.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenView {
    pub id: String,
    /// The first characters of the token, to recognise it.
    pub prefix: String,
    pub scopes: Vec<String>,
    pub project_scope: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub max_uses: Option<i64>,
    /// Requests made so far (counted when `maxUses` is set).
    pub uses: i64,
    pub ip_allowlist: Option<Vec<String>>,
    pub reason: Option<String>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// The id of the key that minted it.
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl TokenView {
    pub fn read(k: &ApiKeyRow) -> Result<Self> {
        let at = |ms, field| time(ms, "api_keys", &k.id, field);
        let list = |text: &Option<String>, field| text.as_deref().map(|t| json_list(t, "api_keys", &k.id, field)).transpose();
        Ok(TokenView {
            id: k.id.clone(),
            prefix: k.prefix.clone(),
            scopes: list(&k.scopes, "scopes")?.unwrap_or_default(),
            project_scope: json_list(&k.project_scope, "api_keys", &k.id, "project_scope")?,
            expires_at: k.expires_at.map(|t| at(t, "expires_at")).transpose()?,
            max_uses: k.max_uses,
            uses: k.uses,
            ip_allowlist: list(&k.ip_allowlist, "ip_allowlist")?,
            reason: k.reason.clone(),
            revoked_at: k.revoked_at.map(|t| at(t, "revoked_at")).transpose()?,
            created_by: k.parent_key_id.clone(),
            created_at: at(k.created_at, "created_at")?,
        })
    }
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenList {
    pub tokens: Vec<TokenView>,
    pub count: usize,
}

/// A token row's scopes, parsed; unreadable ones are an integrity error
/// (read as none, the token would reach nothing, but the row was tampered with).
pub(super) fn scopes_of(key: &ApiKeyRow) -> Result<Arc<Scopes>> {
    let raw = key.scopes.as_deref().map(|t| json_list(t, "api_keys", &key.id, "scopes")).transpose()?.unwrap_or_default();
    Scopes::parse(&raw).map(Arc::new).map_err(|_| {
        tracing::error!(key = %key.id, "api_keys.scopes do not parse");
        Error::Integrity
    })
}

/// Whether a token may be used from `ip` (the request's `Origin::ip`): any
/// address when it has no allowlist, none when the address is unknown.
pub(super) fn ip_allowed(key: &ApiKeyRow, ip: Option<&str>) -> Result<bool> {
    let Some(list) = key.ip_allowlist.as_deref() else { return Ok(true) };
    let nets = json_list(list, "api_keys", &key.id, "ip_allowlist")?;
    Ok(ip_in(&nets, ip))
}

/// Whether the client address `ip` lies in one of `nets` (stored CIDRs);
/// never when the address is unknown. Tokens and share links judge alike.
pub(crate) fn ip_in(nets: &[String], ip: Option<&str>) -> bool {
    let Some(ip) = ip.and_then(|ip| ip.parse::<IpAddr>().ok()) else { return false };
    // An IPv4 client reached over an IPv6 socket counts as the IPv4 address.
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    nets.iter().filter_map(|n| n.parse::<IpNet>().ok()).any(|n| n.contains(&ip))
}

/// Parses an allowlist entry (address or CIDR) into its stored form, a CIDR.
fn allowlist_entry(raw: &str) -> Result<String> {
    address_entry("ipAllowlist", raw)
}

/// An address or CIDR of the list `field`, as a CIDR; 400 naming `field` otherwise.
pub(crate) fn address_entry(field: &str, raw: &str) -> Result<String> {
    let raw = raw.trim();
    let net = raw
        .parse::<IpNet>()
        .or_else(|_| raw.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| Error::InvalidRequest(format!("{field}: '{}' is not an IP address or CIDR", raw.escape_debug())))?;
    Ok(net.trunc().to_string())
}

impl Vault {
    /// `POST /api/v1/tokens`: mints a token, audited (`token.create`).
    pub async fn create_token(&self, p: &Principal, req: TokenRequest) -> Result<TokenIssued> {
        let p = &*p.with_reason(req.reason.as_deref());
        audited!(self, p, "token.create", "token", None, self.issue_token(p, req).await)
    }

    /// `POST /api/v1/approvals/{id}/redeem`: the token an owner approved,
    /// issued once to the key that asked (the approval is taken with one
    /// conditional update), under the rules of the moment: a key narrowed
    /// since gets 403 like a new request would. The approval's `ttl` caps
    /// the token's lifetime; it may then read the gated secrets the request
    /// covered when it was approved.
    pub async fn redeem_token_approval(&self, p: &Principal, approval_id: &str) -> Result<TokenIssued> {
        audited!(self, p, "token.create", "token", None, self.redeem_inner(p, approval_id).await)
    }

    async fn redeem_inner(&self, p: &Principal, approval_id: &str) -> Result<TokenIssued> {
        if !matches!(p.kind, CallerKind::ApiKey | CallerKind::LocalSession) {
            return Err(Error::ScopeDenied("only the API key that asked for a token can redeem its approval".into()));
        }
        let (approval, request) = self.take_token_approval(p, approval_id).await?;
        let mut req: TokenRequest = serde_json::from_value(request).map_err(|_| Error::Integrity)?;
        if let Some(until) = approval.grant_expires_at {
            let left = ((until.timestamp_millis() - now_millis()) / 1000).max(1);
            let asked = req.ttl.clone().unwrap_or(Ttl::Seconds(DEFAULT_TTL)).seconds()?;
            req.ttl = Some(Ttl::Seconds(asked.min(left)));
        }
        req.approval_id = Some(approval.id);
        self.issue_token(p, req).await
    }

    /// The gated secrets (their tier needs approval under the tenant's
    /// policy) that `scopes` would let a token read, within `project_scope`
    /// (empty: every project).
    async fn gated_secrets_covered(&self, p: &Principal, scopes: &Scopes, project_scope: &[String]) -> Result<Vec<String>> {
        let covered: Vec<_> = self
            .store
            .list_protected_secrets(&p.tenant_id)
            .await?
            .into_iter()
            .filter(|row| project_scope.is_empty() || row.project_id.as_ref().is_some_and(|id| project_scope.contains(id)))
            .filter(|row| scopes.allows(ScopeAction::Read, &super::scopes::path(&row.environment, &row.name)))
            .collect();
        // The policy is read once, and only when a sensitive secret is among them.
        let sensitive_gated = match covered.iter().any(|r| r.access_tier == "sensitive") {
            true => self.gated(&p.tenant_id, "sensitive").await?,
            false => false,
        };
        Ok(covered.into_iter().filter(|r| r.access_tier == "critical" || sensitive_gated).map(|r| r.id).collect())
    }

    /// Whether the token `p` was issued through an approval that covered
    /// the gated secret `secret_id`: such a token reads it without asking again.
    pub(crate) async fn token_approved_for(&self, p: &Principal, secret_id: &str) -> Result<bool> {
        if p.kind != CallerKind::Token {
            return Ok(false);
        }
        let Some(approval_id) = self.store.get_api_key(&p.tenant_id, &p.key_id).await?.and_then(|k| k.approval_id) else {
            return Ok(false);
        };
        let Some(approval) = self.store.get_approval(Some(&p.tenant_id), &approval_id).await? else {
            return Ok(false);
        };
        let covered: Vec<String> = match approval.gated_secret_ids.as_deref() {
            Some(ids) => serde_json::from_str(ids).map_err(|_| Error::Integrity)?,
            None => Vec::new(),
        };
        Ok(approval.kind == "token" && approval.status == "used" && covered.iter().any(|id| id == secret_id))
    }

    /// Checks a token request against the asking key and mints the token:
    /// its row (hash only) and audit entry in one transaction. The one place
    /// tokens are made, also after an approval (the redeem).
    pub async fn issue_token(&self, p: &Principal, req: TokenRequest) -> Result<TokenIssued> {
        if !matches!(p.kind, CallerKind::ApiKey | CallerKind::LocalSession) {
            return Err(Error::ScopeDenied("only an API key can ask for a token; a token cannot mint another".into()));
        }
        // Validated before anything is read: bad input is 400 whoever asks.
        let scopes = Scopes::parse(&req.scopes)?;
        let ttl = req.ttl.clone().unwrap_or(Ttl::Seconds(DEFAULT_TTL)).seconds()?;
        if let Some(n) = req.max_uses
            && !(1..=MAX_USES).contains(&n)
        {
            return Err(Error::InvalidRequest(format!("maxUses must be between 1 and {MAX_USES}")));
        }
        let allowlist = match &req.ip_allowlist {
            Some(list) if list.is_empty() || list.len() > MAX_ALLOWLIST => {
                return Err(Error::InvalidRequest(format!("ipAllowlist must hold 1-{MAX_ALLOWLIST} entries")));
            }
            Some(list) => Some(list.iter().map(|e| allowlist_entry(e)).collect::<Result<Vec<_>>>()?),
            None => None,
        };
        let reason = req.reason.as_deref().map(|r| names::text("reason", r, 500)).transpose()?.filter(|r| !r.is_empty());

        let p = &self.recheck(p).await?;
        let permission = scopes.permission();
        if permission > p.permission {
            let wide: Vec<String> = scopes
                .iter()
                .filter(|s| s.action.permission() > p.permission)
                .map(|s| format!("secrets:{}:{}", s.action.as_str(), s.glob))
                .collect();
            return Err(Error::ScopeDenied(format!(
                "this key has '{}' permission; scope {} needs '{}'",
                p.permission.as_str(),
                wide.join(", "),
                permission.as_str()
            )));
        }
        let scope = if req.project_scope.is_empty() {
            p.project_scope.clone().unwrap_or_default()
        } else {
            self.grantable_scope(p, &req.project_scope).await?
        };
        let parent =
            self.store.get_api_key(&p.tenant_id, &p.key_id).await?.ok_or_else(|| Error::Unauthorized(crate::store::DEAD_KEY.into()))?;
        let now = now_millis();
        let expires_at = now + ttl * 1000;
        if let Some(limit) = parent.expires_at
            && expires_at > limit
        {
            let until = time(limit, "api_keys", &parent.id, "expires_at")?;
            return Err(Error::ScopeDenied(format!(
                "ttl reaches past this key's own expiry ({}); ask for a shorter one",
                until.to_rfc3339()
            )));
        }

        // A scope that reaches a gated secret waits for an owner: the request
        // is kept with the approval and issued by the redeem, checked again then.
        if req.approval_id.is_none() {
            let gated = self.gated_secrets_covered(p, &scopes, &scope).await?;
            if !gated.is_empty() {
                let approval = self.request_token_approval(p, serde_json::to_value(&req).map_err(Error::internal)?, gated).await?;
                return Ok(TokenIssued {
                    token: None,
                    token_id: None,
                    expires_at: None,
                    requires_approval: true,
                    approval_id: Some(approval.id),
                    approval_url: Some(approval.approval_url),
                    scopes: scopes.to_strings(),
                    max_uses: req.max_uses,
                    ip_allowlist: allowlist,
                });
            }
        }

        let token = tokens::generate(TOKEN_PREFIX);
        let scope_strings = scopes.to_strings();
        let row = ApiKeyRow {
            id: uuid::Uuid::new_v4().to_string(),
            tenant_id: p.tenant_id.clone(),
            name: names::label("token name", &format!("token of {}", parent.name), 128).unwrap_or_else(|_| "token".into()),
            prefix: tokens::display_prefix(&token, TOKEN_PREFIX),
            key_hash: tokens::hash(&token),
            permission: permission.as_str().into(),
            project_scope: serde_json::to_string(&scope).expect("serialisable"),
            expires_at: Some(expires_at),
            revoked_at: None,
            created_at: now,
            updated_at: now,
            kind: KIND_TOKEN.into(),
            scopes: Some(serde_json::to_string(&scope_strings).expect("serialisable")),
            max_uses: req.max_uses,
            uses: 0,
            ip_allowlist: allowlist.as_ref().map(|l| serde_json::to_string(l).expect("serialisable")),
            parent_key_id: Some(p.key_id.clone()),
            reason: reason.clone(),
            approval_id: req.approval_id.clone(),
        };
        let audit = p.audit("token.create", "token", Some(&row.id), "success").detail(serde_json::json!({
            "scopes": scope_strings,
            "ttl": ttl,
            "maxUses": req.max_uses,
            "ipAllowlist": allowlist,
            "projectScope": scope,
            "reason": reason,
            "approvalId": req.approval_id,
        }));
        self.store.insert_api_key(&row, &audit).await?;
        Ok(TokenIssued {
            token: Some(token),
            token_id: Some(row.id.clone()),
            expires_at: Some(time(expires_at, "api_keys", &row.id, "expires_at")?),
            requires_approval: false,
            approval_id: None,
            approval_url: None,
            scopes: scope_strings,
            max_uses: req.max_uses,
            ip_allowlist: allowlist,
        })
    }

    /// Whether `p` may see and revoke the token `row`: the key that minted
    /// it, or an admin key whose project scope reaches as far as the token's.
    fn manages_token(p: &Principal, row: &ApiKeyRow) -> Result<bool> {
        Ok(row.is_token()
            && (row.parent_key_id.as_deref() == Some(p.key_id.as_str())
                || (p.permission == Permission::Admin && keys::within_reach(p, row)?)))
    }

    /// `GET /api/v1/tokens`: an admin key sees the tenant's tokens, any other
    /// key those it minted.
    pub async fn list_tokens(&self, p: &Principal) -> Result<TokenList> {
        audited!(
            self,
            p,
            "token.list",
            "token",
            None,
            async {
                p.require_key("list tokens")?;
                let parent = (p.permission != Permission::Admin).then_some(p.key_id.as_str());
                let rows = self.store.list_tokens(&p.tenant_id, parent).await?;
                self.record_read(p, p.audit("token.list", "token", None, "success")).await?;
                let mut tokens = Vec::with_capacity(rows.len());
                for row in &rows {
                    if Self::manages_token(p, row)? {
                        tokens.push(TokenView::read(row)?);
                    }
                }
                Ok(TokenList { count: tokens.len(), tokens })
            }
            .await
        )
    }

    /// `POST /api/v1/tokens/{id}/revoke`: stops the token at once (the next
    /// request it makes answers 401 `TOKEN_REVOKED`); a second time is 409
    /// `ALREADY_REVOKED`.
    pub async fn revoke_token(&self, p: &Principal, id: &str) -> Result<()> {
        audited!(
            self,
            p,
            "token.revoke",
            "token",
            Some(id),
            async {
                p.require_key("revoke tokens")?;
                let p = &self.recheck(p).await?;
                let row = if names::is_id(id) { self.store.get_api_key(&p.tenant_id, id).await? } else { None };
                let mut row = match row {
                    Some(row) if Self::manages_token(p, &row)? => row,
                    _ => return Err(Error::NotFound("token")),
                };
                let already = || Error::AlreadyRevoked("this token is already revoked".into());
                if row.revoked_at.is_some() {
                    return Err(already());
                }
                let seen = row.updated_at;
                let now = now_millis();
                row.revoked_at = Some(now);
                row.updated_at = now.max(seen + 1);
                let audit = p.audit("token.revoke", "token", Some(&row.id), "success").detail(serde_json::json!({ "prefix": row.prefix }));
                // Conditional on the row as read: of two revocations racing, one wins.
                if self.store.update_api_key(&row, seen, &audit).await? {
                    return Ok(());
                }
                match self.store.get_api_key(&p.tenant_id, id).await? {
                    Some(r) if r.revoked_at.is_some() => Err(already()),
                    _ => Err(Error::Conflict("this token changed meanwhile; try again".into())),
                }
            }
            .await
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls() {
        let s = |t: &str| Ttl::Text(t.into()).seconds();
        assert_eq!(s("15m").unwrap(), 900);
        assert_eq!(s("1h").unwrap(), 3600);
        assert_eq!(s("7d").unwrap(), 7 * 86400);
        assert_eq!(s("30d").unwrap(), MAX_TTL);
        assert_eq!(s("90").unwrap(), 90);
        assert_eq!(Ttl::Seconds(5).seconds().unwrap(), 5);
        for bad in ["31d", "0s", "", "h", "-1h", "1w", "1.5h", "99999999999d"] {
            assert!(s(bad).is_err(), "{bad}");
        }
        assert!(Ttl::Seconds(0).seconds().is_err());
        assert!(Ttl::Seconds(MAX_TTL + 1).seconds().is_err());
    }

    #[test]
    fn allowlists() {
        assert_eq!(allowlist_entry("10.1.2.3/8").unwrap(), "10.0.0.0/8");
        assert_eq!(allowlist_entry("127.0.0.1").unwrap(), "127.0.0.1/32");
        assert_eq!(allowlist_entry("::1").unwrap(), "::1/128");
        assert!(allowlist_entry("nope").is_err());
        let (mut row, _) = keys::new_key("t", "free", "k".into(), Permission::Read, &[], None);
        row.ip_allowlist = Some(r#"["10.0.0.0/8"]"#.into());
        assert!(ip_allowed(&row, Some("10.9.9.9")).unwrap());
        assert!(!ip_allowed(&row, Some("127.0.0.1")).unwrap());
        assert!(ip_allowed(&row, Some("::ffff:10.0.0.1")).unwrap());
        assert!(!ip_allowed(&row, None).unwrap());
        row.ip_allowlist = None;
        assert!(ip_allowed(&row, None).unwrap());
    }
}
