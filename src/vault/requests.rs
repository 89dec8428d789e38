//! Secret requests: an agent needs a value it must never see, so it asks a
//! human for it.
//!
//! The agent creates a request (`request_secret`, `POST
//! /api/v1/secret-requests`): the secret's name and place, why, how to get
//! the value (`instructions`, an `obtainUrl`), and the exposure and tier
//! the new secret gets. It answers the page's URL, `/requests/{id}`, which
//! the agent shows its user (or the MCP server asks the client to open, by
//! URL-mode elicitation). An owner of the tenant signs in there and pastes
//! the value; [`Vault::fulfil_request`] stores it straight into the vault
//! and marks the request fulfilled with the secret's id. The agent polls
//! (`request_status`) and learns the id and name, never the value; no value
//! is ever stored in a request or shown on a page after it was sent.
//!
//! A request lives 24 hours unless asked otherwise; `expired` is never
//! stored (pending past `expires_at`). Choices, for the integrator:
//! - `exposure` defaults to `use_only`: the value came from a human so that
//!   the agent would not see it; an agent that must read it asks for
//!   `reveal` (the owner sees that on the page before pasting).
//! - A name that already exists in the request's project and environment
//!   gets a new version, keeping that secret's exposure and tier (a request
//!   never loosens an existing secret); otherwise a new secret is created
//!   with the request's exposure and tier.
//! - Storing a value is a strong owner action: once the tenant's owners
//!   have passkeys, it takes a fresh one (the page asks for it), since a
//!   value planted with a copied cookie would be used as the real one.
//! - Fulfilment is two store steps around `Vault::set_secret`: a conditional
//!   UPDATE takes the request (`filling`, read as `pending`), the secret is
//!   written like any owner write (cache, version writer, its own audit
//!   entry), then a second conditional UPDATE marks the request fulfilled
//!   with `request.fulfil` audited in the same transaction. A failed write
//!   puts the request back to `pending`; a writer that died leaves it
//!   `filling`, which another owner may take again after a minute.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::exposure::Exposure;
use super::principal::WithDetail;
use super::scopes::ScopeAction;
use super::views::{AccessTier, SetSecret};
use super::{Permission, Principal, Vault, audited, names};
use crate::error::{Error, Result};
use crate::store::requests::{CANCELLED, EXPIRED, FULFILLED, PENDING, RequestRow};
use crate::store::{Millis, now_millis};

/// How long a request lives unless asked otherwise: a day.
pub const DEFAULT_MINUTES: i64 = 24 * 60;
/// The longest a request may live: a week.
pub const MAX_MINUTES: i64 = 7 * 24 * 60;
/// The longest listing.
const LIST_LIMIT: i64 = 200;
/// The exposure a requested secret gets unless the request says otherwise.
pub const DEFAULT_EXPOSURE: Exposure = Exposure::UseOnly;

/// A new secret request: what the agent needs, and why.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateRequest {
    /// The secret's name once filled, e.g. `STRIPE_SECRET_KEY` (a new version if it exists there already).
    #[schemars(length(min = 1, max = 256))]
    pub name: String,
    /// Why you need it, shown to the human (1-500 characters).
    #[schemars(length(min = 1, max = 500))]
    pub reason: String,
    /// Project id the secret goes into (optional).
    pub project_id: Option<String>,
    /// Environment such as `production` (optional).
    pub environment: Option<String>,
    /// How the human gets the value, shown on the page (up to 2000 characters).
    pub instructions: Option<String>,
    /// Where the human gets the value (an http or https URL), shown as a link on the page.
    pub obtain_url: Option<String>,
    /// The new secret's exposure: `use_only` (default: you can use it, never read it), `masked` or `reveal`.
    pub exposure: Option<Exposure>,
    /// The new secret's access tier: `standard` (default), `sensitive` or `critical`.
    pub access_tier: Option<AccessTier>,
    /// Lifetime in minutes (default 1440, a day; at most 10080, a week).
    #[schemars(range(min = 1, max = 10080))]
    pub expires_in_minutes: Option<i64>,
}

/// A secret request as the agent sees it: never a value.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestView {
    pub id: String,
    /// `pending`, `fulfilled`, `cancelled` or `expired`.
    pub status: String,
    /// The page where a human owner supplies the value: show it to your user.
    pub request_url: String,
    pub name: String,
    pub reason: String,
    pub project_id: Option<String>,
    pub environment: Option<String>,
    pub instructions: Option<String>,
    pub obtain_url: Option<String>,
    pub exposure: String,
    pub access_tier: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub fulfilled_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    /// The secret holding the value, once fulfilled (use it by this id; the value is never here).
    pub secret_id: Option<String>,
    /// The key that asked.
    pub requested_by: String,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestList {
    pub requests: Vec<RequestView>,
    pub count: usize,
}

/// Filters of a request listing.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListRequests {
    /// Only requests in this state: `pending`, `fulfilled`, `cancelled` or `expired`.
    pub status: Option<String>,
}

/// A request as the page shows it to an owner.
#[derive(Debug, Clone)]
pub struct RequestPage {
    pub row: RequestRow,
    pub state: &'static str,
    /// The requester's key name (or id when it is gone).
    pub requester: String,
    /// The secret's name, when filled (it may have been renamed since).
    pub secret_name: Option<String>,
}

fn at(ms: Millis, id: &str, field: &'static str) -> Result<DateTime<Utc>> {
    super::views::time(ms, "secret_requests", &id, field)
}

/// An http or https URL a person may open: no other scheme (no
/// `javascript:`, no `data:`), a host, and printable ASCII only (a
/// percent-encoded or punycode URL), so nothing invisible or reordering
/// (a bidirectional control) changes what the owner reads.
pub fn obtain_url(raw: &str) -> Result<String> {
    let bad = || {
        Error::InvalidRequest(
            "obtainUrl must be an http:// or https:// URL of at most 2000 printable ASCII characters (percent-encode the rest)".into(),
        )
    };
    let u = raw.trim();
    let lower = u.to_ascii_lowercase();
    let rest = lower.strip_prefix("https://").or_else(|| lower.strip_prefix("http://")).ok_or_else(bad)?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if u.len() > 2000 || host.is_empty() || host.starts_with('@') || !u.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad());
    }
    Ok(u.to_owned())
}

impl Vault {
    /// The page where an owner fulfils request `id`.
    pub fn request_url(&self, id: &str) -> String {
        format!("{}/requests/{id}", self.public_base().trim_end_matches('/'))
    }

    fn request_view(&self, r: &RequestRow, now: Millis) -> Result<RequestView> {
        let state = r.state(now);
        Ok(RequestView {
            id: r.id.clone(),
            status: state.to_owned(),
            request_url: self.request_url(&r.id),
            name: r.name.clone(),
            reason: r.reason.clone(),
            project_id: r.project_id.clone(),
            environment: Some(r.environment.clone()).filter(|e| !e.is_empty()),
            instructions: r.instructions.clone(),
            obtain_url: r.obtain_url.clone(),
            exposure: r.exposure.clone(),
            access_tier: r.access_tier.clone(),
            created_at: at(r.created_at, &r.id, "created_at")?,
            expires_at: at(r.expires_at, &r.id, "expires_at")?,
            fulfilled_at: r.fulfilled_at.map(|t| at(t, &r.id, "fulfilled_at")).transpose()?,
            cancelled_at: r.cancelled_at.map(|t| at(t, &r.id, "cancelled_at")).transpose()?,
            secret_id: if state == FULFILLED { r.secret_id.clone() } else { None },
            requested_by: r.requester_key_id.clone(),
        })
    }

    /// Asks a human for a value (see the module's doc).
    pub async fn create_request(&self, p: &Principal, req: CreateRequest) -> Result<RequestView> {
        let p = &*p.with_reason(Some(&req.reason));
        audited!(self, p, "request.create", "secret_request", None, self.create_request_inner(p, req).await)
    }

    async fn create_request_inner(&self, p: &Principal, req: CreateRequest) -> Result<RequestView> {
        p.require(Permission::Read)?;
        let name = names::secret_name(&req.name)?;
        let environment = names::environment(req.environment.as_deref())?;
        let reason = names::label("reason", &req.reason, 500)?;
        let instructions =
            req.instructions.as_deref().map(|i| names::text("instructions", i.trim(), 2000)).transpose()?.filter(|i| !i.is_empty());
        let obtain = req.obtain_url.as_deref().filter(|u| !u.trim().is_empty()).map(obtain_url).transpose()?;
        let exposure = req.exposure.unwrap_or(DEFAULT_EXPOSURE).as_str().to_owned();
        let tier = req.access_tier.unwrap_or(AccessTier::Standard);
        let minutes = req.expires_in_minutes.unwrap_or(DEFAULT_MINUTES);
        if !(1..=MAX_MINUTES).contains(&minutes) {
            return Err(Error::InvalidRequest(format!("expiresInMinutes must be from 1 to {MAX_MINUTES}")));
        }
        let project_id = req.project_id.filter(|p| !p.is_empty());
        // The requester will use the secret: its reach must cover the place.
        p.require_path(ScopeAction::Read, project_id.as_deref(), &environment, &name)?;
        self.check_project(p, project_id.as_deref()).await?;
        let requester_name = match self.store.get_api_key(&p.tenant_id, &p.key_id).await? {
            Some(k) => k.name,
            None => p.key_id.clone(),
        };
        let now = now_millis();
        let row = RequestRow {
            id: uuid::Uuid::new_v4().to_string(),
            tenant_id: p.tenant_id.clone(),
            requester_key_id: p.key_id.clone(),
            requester_name,
            name,
            reason,
            project_id,
            environment,
            instructions,
            obtain_url: obtain,
            exposure,
            access_tier: tier.as_str().to_owned(),
            status: PENDING.into(),
            created_at: now,
            expires_at: now + minutes * 60_000,
            taken_at: None,
            fulfilled_at: None,
            fulfilled_by: None,
            secret_id: None,
            cancelled_at: None,
        };
        let audit = p.audit("request.create", "secret_request", Some(&row.id), "success").detail(serde_json::json!({
            "name": row.name, "projectId": row.project_id, "environment": row.environment,
            "exposure": row.exposure, "accessTier": row.access_tier,
            "expiresAt": at(row.expires_at, &row.id, "expires_at")?,
        }));
        self.store.requests().insert_request(&row, &audit).await?;
        self.request_view(&row, now)
    }

    /// One request the caller may see (its tenant's, within its project scope); any other is 404.
    async fn visible_request(&self, p: &Principal, id: &str) -> Result<RequestRow> {
        let found = if names::is_id(id) { self.store.requests().get_request(&p.tenant_id, id).await? } else { None };
        found.filter(|r| p.covers(r.project_id.as_deref())).ok_or(Error::NotFound("secret request"))
    }

    /// A request's status: once fulfilled, the secret's id (never the value).
    pub async fn request_status(&self, p: &Principal, id: &str) -> Result<RequestView> {
        audited!(
            self,
            p,
            "request.read",
            "secret_request",
            Some(id),
            async {
                let r = self.visible_request(p, id).await?;
                let view = self.request_view(&r, now_millis())?;
                self.record_read(p, p.audit("request.read", "secret_request", Some(&r.id), "success")).await?;
                Ok(view)
            }
            .await
        )
    }

    /// The tenant's requests the caller may see, newest first.
    pub async fn list_requests(&self, p: &Principal, q: ListRequests) -> Result<RequestList> {
        audited!(
            self,
            p,
            "request.list",
            "secret_request",
            None,
            async {
                if let Some(s) = &q.status
                    && ![PENDING, FULFILLED, CANCELLED, EXPIRED].contains(&s.as_str())
                {
                    return Err(Error::InvalidRequest("status must be one of pending, fulfilled, cancelled, expired".into()));
                }
                let now = now_millis();
                let rows = self.store.requests().list_requests(&p.tenant_id, LIST_LIMIT).await?;
                let requests = rows
                    .iter()
                    .filter(|r| p.covers(r.project_id.as_deref()))
                    .filter(|r| q.status.as_deref().is_none_or(|s| r.state(now) == s))
                    .map(|r| self.request_view(r, now))
                    .collect::<Result<Vec<_>>>()?;
                let count = requests.len();
                self.record_read(
                    p,
                    p.audit("request.list", "secret_request", None, "success").detail(serde_json::json!({ "count": count })),
                )
                .await?;
                Ok(RequestList { requests, count })
            }
            .await
        )
    }

    /// The error a request that can no longer be filled or cancelled answers.
    fn request_state_error(r: &RequestRow, now: Millis) -> Result<()> {
        match r.state(now) {
            FULFILLED => Err(Error::RequestFulfilled),
            CANCELLED => Err(Error::RequestCancelled),
            EXPIRED => Err(Error::RequestExpired),
            _ if r.status != PENDING => Err(Error::Conflict("this request is being fulfilled right now".into())),
            _ => Ok(()),
        }
    }

    /// Cancels a pending request (any key of the tenant that may see it, or an owner).
    pub async fn cancel_request(&self, p: &Principal, id: &str) -> Result<RequestView> {
        audited!(
            self,
            p,
            "request.cancel",
            "secret_request",
            Some(id),
            async {
                p.require(Permission::Read)?;
                let r = self.visible_request(p, id).await?;
                let now = now_millis();
                Self::request_state_error(&r, now)?;
                let audit =
                    p.audit("request.cancel", "secret_request", Some(&r.id), "success").detail(serde_json::json!({ "name": r.name }));
                match self.store.requests().cancel_request(&p.tenant_id, &r.id, now, &audit).await? {
                    Some(done) => self.request_view(&done, now),
                    None => {
                        let current = self.visible_request(p, id).await?;
                        Self::request_state_error(&current, now_millis())?;
                        Err(Error::Conflict("this request is being fulfilled right now".into()))
                    }
                }
            }
            .await
        )
    }

    /// A request as its page shows it to an owner.
    pub async fn request_page(&self, p: &Principal, id: &str) -> Result<RequestPage> {
        p.require_owner("answer a secret request", false)?;
        let row = self.visible_request(p, id).await?;
        let now = now_millis();
        let secret_name = match (&row.secret_id, row.state(now)) {
            (Some(sid), FULFILLED) => self.store.get_secret(&p.tenant_id, sid).await?.map(|s| s.name),
            _ => None,
        };
        Ok(RequestPage { state: row.state(now), requester: row.requester_name.clone(), secret_name, row })
    }

    /// An owner supplies the value: stored straight into the vault, the
    /// request marked fulfilled with the secret's id (see the module's doc).
    pub async fn fulfil_request(&self, p: &Principal, id: &str, value: zeroize::Zeroizing<String>) -> Result<RequestView> {
        audited!(self, p, "request.fulfil", "secret_request", Some(id), self.fulfil_request_inner(p, id, value).await)
    }

    async fn fulfil_request_inner(&self, p: &Principal, id: &str, value: zeroize::Zeroizing<String>) -> Result<RequestView> {
        // Strong: a value planted by whoever copied an owner's cookie would
        // be used by the agent as the real one; once the tenant's owners
        // have passkeys, storing it takes a fresh one.
        p.require_owner("answer a secret request", true)?;
        if value.is_empty() {
            return Err(Error::InvalidRequest("paste the value: it is empty".into()));
        }
        self.check_value(&value)?;
        let r = self.visible_request(p, id).await?;
        Self::request_state_error(&r, now_millis())?;
        let Some(r) = self.store.requests().take_request(&p.tenant_id, &r.id, now_millis()).await? else {
            let current = self.visible_request(p, id).await?;
            Self::request_state_error(&current, now_millis())?;
            return Err(Error::Conflict("this request is being fulfilled right now".into()));
        };
        let existing = self.store.find_secret(&p.tenant_id, r.project_id.as_deref(), &r.environment, &r.name).await;
        // A new secret takes the request's tier and exposure; an existing
        // one keeps its own (a request never loosens a secret).
        let set = |new: bool| SetSecret {
            name: r.name.clone(),
            value: value.to_string(),
            project_id: r.project_id.clone(),
            environment: Some(r.environment.clone()).filter(|e| !e.is_empty()),
            secret_type: None,
            tags: None,
            description: None,
            access_tier: if new { serde_json::from_value::<AccessTier>(r.access_tier.clone().into()).ok() } else { None },
            exposure: if new { serde_json::from_value::<Exposure>(r.exposure.clone().into()).ok() } else { None },
            expected_version: None,
        };
        let written = match existing {
            Ok(found) => self.set_secret(p, set(found.is_none())).await,
            Err(e) => Err(e),
        };
        let secret = match written {
            Ok(s) => s,
            Err(e) => {
                self.store.requests().release_request(&p.tenant_id, &r.id).await?;
                return Err(e);
            }
        };
        let now = now_millis();
        let audit = p.audit("request.fulfil", "secret_request", Some(&r.id), "success").detail(serde_json::json!({
            "name": r.name, "secretId": secret.secret.id, "version": secret.secret.version, "created": secret.created,
        }));
        let owner = p.human.as_ref().and_then(|h| h.owner_id.clone()).unwrap_or_else(|| p.key_id.clone());
        match self.store.requests().finish_request(&p.tenant_id, &r.id, now, &owner, &secret.secret.id, &audit).await? {
            Some(done) => self.request_view(&done, now),
            None => Err(Error::Conflict("this request changed while its secret was written; the secret is stored".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::requests::{CANCELLED, FILLING};

    #[test]
    fn an_obtain_url_is_http_or_https_with_a_host() {
        for ok in ["https://dashboard.stripe.com/apikeys", "http://localhost:8080/x?y=1#z", "HTTPS://Example.com"] {
            assert_eq!(obtain_url(ok).unwrap(), ok);
        }
        for bad in [
            "javascript:alert(1)",
            "data:text/html,hi",
            "ftp://example.com",
            "https://",
            "https:///path",
            "https://@evil.example",
            "https://example.com/a b",
            "https://example.com/\u{202e}txt",
            "//example.com",
        ] {
            assert_eq!(obtain_url(bad).unwrap_err().code(), "INVALID_REQUEST", "{bad}");
        }
        assert!(obtain_url(&format!("https://example.com/{}", "a".repeat(2000))).is_err());
    }

    #[test]
    fn a_request_reads_expired_past_its_time_and_filling_reads_pending() {
        let mut r = RequestRow {
            id: "r".into(),
            tenant_id: "t".into(),
            requester_key_id: "k".into(),
            requester_name: "k".into(),
            name: "N".into(),
            reason: "why".into(),
            project_id: None,
            environment: String::new(),
            instructions: None,
            obtain_url: None,
            exposure: "use_only".into(),
            access_tier: "standard".into(),
            status: PENDING.into(),
            created_at: 0,
            expires_at: 100,
            taken_at: None,
            fulfilled_at: None,
            fulfilled_by: None,
            secret_id: None,
            cancelled_at: None,
        };
        assert_eq!(r.state(99), PENDING);
        assert_eq!(r.state(100), EXPIRED);
        r.status = FILLING.into();
        assert_eq!(r.state(99), PENDING);
        r.status = FULFILLED.into();
        assert_eq!(r.state(1000), FULFILLED, "a fulfilled request never expires");
        r.status = CANCELLED.into();
        assert_eq!(r.state(1000), CANCELLED);
    }
}
