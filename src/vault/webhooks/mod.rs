//! Webhooks: a tenant's subscriptions to its events, pushed to a URL as
//! signed JSON.
//!
//! An event is an audit entry of a successful action that maps to an event
//! name (the `webhook_events` table of the migrations): a trigger on
//! `audit_log` enqueues one delivery per subscribed webhook in the
//! transaction of the action, so an event is never lost nor sent for an
//! action that rolled back, and the audited reads pay only the trigger's
//! `WHEN` test. The [`worker`] delivers them at least once, with backoff.
//!
//! Managing webhooks takes an admin API key (or an owner) with no project
//! scope: a webhook receives the events of every project. The signing
//! secret is sealed with the tenant's data key and answered once, when it is
//! made. Payloads and audit entries never hold a value, nor the secret.

pub mod worker;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::principal::WithDetail;
use super::views::{opt_time, time};
use super::{Permission, Principal, Vault, audited};
use crate::crypto::SecretAad;
use crate::error::{Error, Result};
use crate::outbound::{Outbound, Url};
use crate::store::now_millis;
use crate::store::webhooks::{DeliveryRow, PENDING, WebhookRow};

/// The events a webhook can subscribe to (`*`: all of them). Each is the
/// successful audit action(s) the migrations' `webhook_events` maps to it.
pub const EVENTS: &[&str] = &[
    "secret.created",
    "secret.updated",
    "secret.deleted",
    "secret.rotated",
    "secret.shared",
    "secret.restored",
    "secret.purged",
    "secret.rotation_due",
    "apikey.created",
    "apikey.revoked",
    "backup.created",
    "approval.requested",
    "approval.decided",
    "claim.created",
    "claim.redeemed",
    "tenant.key_rotated",
];
/// What `POST /api/v1/webhooks/{id}/test` sends, to that webhook only.
pub const TEST_EVENT: &str = "webhook.test";
/// The most webhooks one tenant may have.
pub const MAX_PER_TENANT: i64 = 20;
/// How many deliveries `GET /api/v1/webhooks/{id}` shows.
const RECENT_DELIVERIES: i64 = 25;
const SECRET_PREFIX: &str = "whsec_";
const MAX_URL_LEN: usize = 2048;
const MAX_DESCRIPTION: usize = 500;

/// `POST /api/v1/webhooks`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateWebhook {
    /// Where events are POSTed: an `https` (or `http`) URL.
    pub url: String,
    /// Event names, or `["*"]` for all of them.
    pub events: Vec<String>,
    /// The signing secret (8 to 256 characters); without one, a `whsec_…` secret is made and answered once.
    pub secret: Option<String>,
    pub description: Option<String>,
    /// Default true.
    pub enabled: Option<bool>,
}

/// `PUT /api/v1/webhooks/{id}`: the fields given change.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateWebhook {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    /// `false` cancels the webhook's pending deliveries.
    pub enabled: Option<bool>,
    pub description: Option<String>,
    /// A new signing secret of your own.
    pub secret: Option<String>,
    /// `true`: a new `whsec_…` secret is made and answered once, as `secret`.
    pub regenerate_secret: Option<bool>,
}

/// A webhook. `secret` only in the answer that made it.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookView {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    pub description: Option<String>,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The signing secret: answered once, when the server made it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// One delivery of an event to a webhook. Never a body.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryView {
    pub id: String,
    pub event_id: String,
    pub event: String,
    /// `pending`, `delivered`, `failed` (gave up 24 h after the event) or `cancelled` (webhook disabled).
    pub status: String,
    pub attempts: i64,
    /// The HTTP status the last attempt got, if the receiver answered.
    pub last_status_code: Option<i64>,
    /// Why the last attempt failed, in short.
    pub last_error: Option<String>,
    /// When the next attempt is due (pending deliveries only).
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// `GET /api/v1/webhooks/{id}`: the webhook and its latest deliveries.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookDetail {
    #[serde(flatten)]
    pub webhook: WebhookView,
    /// Newest first, at most 25.
    pub deliveries: Vec<DeliveryView>,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookList {
    pub webhooks: Vec<WebhookView>,
    pub count: usize,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookDeleted {
    pub id: String,
    pub deleted: bool,
}

/// `POST /api/v1/webhooks/{id}/test`.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TestQueued {
    pub delivery_id: String,
    pub event_id: String,
    pub event: String,
}

impl WebhookView {
    fn read(r: &WebhookRow) -> Result<Self> {
        Ok(WebhookView {
            id: r.id.clone(),
            url: r.url.clone(),
            events: events_of(&r.events),
            description: r.description.clone(),
            enabled: r.enabled,
            created_at: time(r.created_at, "webhooks", &r.id, "created_at")?,
            updated_at: time(r.updated_at, "webhooks", &r.id, "updated_at")?,
            secret: None,
        })
    }
}

impl DeliveryView {
    fn read(d: &DeliveryRow) -> Result<Self> {
        Ok(DeliveryView {
            id: d.id.clone(),
            event_id: d.event_id.clone(),
            event: d.event.clone(),
            status: d.status.clone(),
            attempts: d.attempts,
            last_status_code: d.last_status,
            last_error: d.last_error.clone(),
            next_attempt_at: if d.status == PENDING {
                Some(time(d.next_attempt_at, "webhook_deliveries", &d.id, "next_attempt_at")?)
            } else {
                None
            },
            created_at: time(d.created_at, "webhook_deliveries", &d.id, "created_at")?,
            delivered_at: opt_time(d.delivered_at, "webhook_deliveries", &d.id, "delivered_at")?,
        })
    }
}

/// The stored form of a list of events: `,a,b,` (what the trigger matches).
fn stored_events(events: &[String]) -> Result<String> {
    if events.is_empty() {
        return Err(Error::InvalidRequest(format!("events must name at least one event: * or {}", EVENTS.join(", "))));
    }
    let mut names: Vec<&str> = Vec::with_capacity(events.len());
    for e in events {
        let e = e.trim();
        if e != "*" && !EVENTS.contains(&e) {
            return Err(Error::InvalidRequest(format!(
                "unknown event '{}': the events are * (all of them), {}",
                e.chars().take(64).collect::<String>(),
                EVENTS.join(", ")
            )));
        }
        if !names.contains(&e) {
            names.push(e);
        }
    }
    if names.contains(&"*") {
        names = vec!["*"];
    }
    Ok(format!(",{},", names.join(",")))
}

fn events_of(stored: &str) -> Vec<String> {
    stored.split(',').filter(|e| !e.is_empty()).map(str::to_owned).collect()
}

fn new_secret() -> Zeroizing<String> {
    use base64::Engine;
    let bytes: Zeroizing<[u8; 32]> = Zeroizing::new(rand::random());
    Zeroizing::new(format!("{SECRET_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes.as_ref())))
}

fn given_secret(s: String) -> Result<Zeroizing<String>> {
    let s = Zeroizing::new(s);
    let n = s.chars().count();
    if !(8..=256).contains(&n) || s.chars().any(char::is_control) {
        return Err(Error::InvalidRequest("secret must be 8 to 256 characters, without control characters".into()));
    }
    Ok(s)
}

fn description(d: Option<String>) -> Result<Option<String>> {
    match d {
        Some(d) if d.chars().count() > MAX_DESCRIPTION => {
            Err(Error::InvalidRequest(format!("description is limited to {MAX_DESCRIPTION} characters")))
        }
        Some(d) if d.trim().is_empty() => Ok(None),
        d => Ok(d),
    }
}

/// What a webhook's secret is sealed for: its own id, so a sealed secret
/// copied to another row does not open.
fn aad_id(id: &str) -> String {
    format!("webhook/{id}")
}

/// A URL's origin, for the audit trail: a URL's path and query may hold a
/// credential of the receiver's (Slack's do).
fn origin(url: &str) -> String {
    Url::parse(url).map(|u| u.origin().ascii_serialization()).unwrap_or_default()
}

impl Vault {
    /// Who may manage webhooks: an admin key (or owner) with no project scope.
    fn require_webhooks(&self, p: &Principal) -> Result<()> {
        p.require_key("manage webhooks")?;
        p.require(Permission::Admin)?;
        if p.project_scope.is_some() {
            return Err(Error::ScopeDenied(
                "a project-scoped key cannot manage webhooks: a webhook receives every project's events".into(),
            ));
        }
        Ok(())
    }

    /// A URL events may be sent to, as the outbound guard sees it before
    /// resolution (a name that resolves to a refused address is refused at
    /// each delivery); a refused one answers 400 here, naming why.
    fn webhook_url(&self, raw: &str) -> Result<String> {
        let raw = raw.trim();
        if raw.len() > MAX_URL_LEN {
            return Err(Error::InvalidRequest(format!("url is limited to {MAX_URL_LEN} characters")));
        }
        let url = Url::parse(raw).map_err(|e| Error::InvalidRequest(format!("url is not a URL: {e}")))?;
        Outbound::shared(self.config.allow_private_destinations)?.check_url(&url).map_err(|e| match e {
            Error::DestinationRefused(why) => Error::InvalidRequest(why),
            e => e,
        })?;
        Ok(url.to_string())
    }

    async fn seal_webhook_secret(&self, tenant_id: &str, id: &str, secret: &str) -> Result<Vec<u8>> {
        let key = self.data_key(tenant_id).await?;
        Ok(key.seal(&SecretAad { tenant_id, secret_id: &aad_id(id), version: 0 }, secret.as_bytes()))
    }

    pub(crate) async fn open_webhook_secret(&self, row: &WebhookRow) -> Result<Zeroizing<Vec<u8>>> {
        let key = self.key_for(&row.tenant_id, &row.secret_sealed).await?;
        Ok(Zeroizing::new(key.open(&SecretAad { tenant_id: &row.tenant_id, secret_id: &aad_id(&row.id), version: 0 }, &row.secret_sealed)?))
    }

    pub async fn create_webhook(&self, p: &Principal, req: CreateWebhook) -> Result<WebhookView> {
        audited!(self, p, "webhook.create", "webhook", None, self.create_webhook_inner(p, req).await)
    }

    async fn create_webhook_inner(&self, p: &Principal, req: CreateWebhook) -> Result<WebhookView> {
        self.require_webhooks(p)?;
        let url = self.webhook_url(&req.url)?;
        let events = stored_events(&req.events)?;
        let description = description(req.description)?;
        let (secret, generated) = match req.secret {
            Some(s) => (given_secret(s)?, false),
            None => (new_secret(), true),
        };
        let now = now_millis();
        let id = format!("wh_{}", uuid::Uuid::new_v4().simple());
        let row = WebhookRow {
            secret_sealed: self.seal_webhook_secret(&p.tenant_id, &id, &secret).await?,
            id,
            tenant_id: p.tenant_id.clone(),
            url,
            events,
            description,
            enabled: req.enabled.unwrap_or(true),
            created_by: p.key_id.clone(),
            created_at: now,
            updated_at: now,
        };
        let audit = p.audit("webhook.create", "webhook", Some(&row.id), "success").detail(serde_json::json!({
            "origin": origin(&row.url), "events": events_of(&row.events), "enabled": row.enabled, "secretGenerated": generated,
        }));
        self.store.webhooks().insert_webhook(&row, MAX_PER_TENANT, &audit).await?;
        let mut view = WebhookView::read(&row)?;
        if generated {
            view.secret = Some(secret.to_string());
        }
        Ok(view)
    }

    pub async fn list_webhooks(&self, p: &Principal) -> Result<WebhookList> {
        audited!(
            self,
            p,
            "webhook.list",
            "webhook",
            None,
            async {
                self.require_webhooks(p)?;
                let rows = self.store.webhooks().list_webhooks(&p.tenant_id).await?;
                self.record_read(p, p.audit("webhook.list", "webhook", None, "success")).await?;
                let webhooks = rows.iter().map(WebhookView::read).collect::<Result<Vec<_>>>()?;
                Ok(WebhookList { count: webhooks.len(), webhooks })
            }
            .await
        )
    }

    async fn own_webhook(&self, p: &Principal, id: &str) -> Result<WebhookRow> {
        self.store.webhooks().get_webhook(&p.tenant_id, id).await?.ok_or(Error::NotFound("webhook"))
    }

    pub async fn get_webhook(&self, p: &Principal, id: &str) -> Result<WebhookDetail> {
        audited!(
            self,
            p,
            "webhook.read",
            "webhook",
            Some(id),
            async {
                self.require_webhooks(p)?;
                let row = self.own_webhook(p, id).await?;
                let deliveries = self.store.webhooks().recent_deliveries(&row.id, RECENT_DELIVERIES).await?;
                self.record_read(p, p.audit("webhook.read", "webhook", Some(&row.id), "success")).await?;
                Ok(WebhookDetail {
                    webhook: WebhookView::read(&row)?,
                    deliveries: deliveries.iter().map(DeliveryView::read).collect::<Result<Vec<_>>>()?,
                })
            }
            .await
        )
    }

    pub async fn update_webhook(&self, p: &Principal, id: &str, req: UpdateWebhook) -> Result<WebhookView> {
        audited!(self, p, "webhook.update", "webhook", Some(id), self.update_webhook_inner(p, id, req).await)
    }

    async fn update_webhook_inner(&self, p: &Principal, id: &str, req: UpdateWebhook) -> Result<WebhookView> {
        self.require_webhooks(p)?;
        let mut row = self.own_webhook(p, id).await?;
        if let Some(url) = &req.url {
            row.url = self.webhook_url(url)?;
        }
        if let Some(events) = &req.events {
            row.events = stored_events(events)?;
        }
        if let Some(d) = req.description {
            row.description = description(Some(d))?;
        }
        if let Some(on) = req.enabled {
            row.enabled = on;
        }
        let secret = match (req.secret, req.regenerate_secret.unwrap_or(false)) {
            (Some(_), true) => return Err(Error::InvalidRequest("give secret or regenerateSecret, not both".into())),
            (Some(s), false) => Some((given_secret(s)?, false)),
            (None, true) => Some((new_secret(), true)),
            (None, false) => None,
        };
        if let Some((s, _)) = &secret {
            row.secret_sealed = self.seal_webhook_secret(&p.tenant_id, &row.id, s).await?;
        }
        row.updated_at = now_millis();
        let audit = p.audit("webhook.update", "webhook", Some(&row.id), "success").detail(serde_json::json!({
            "origin": origin(&row.url), "events": events_of(&row.events), "enabled": row.enabled,
            "secretChanged": secret.is_some(),
        }));
        if !self.store.webhooks().update_webhook(&row, &audit).await? {
            return Err(Error::NotFound("webhook"));
        }
        let mut view = WebhookView::read(&row)?;
        if let Some((s, true)) = secret {
            view.secret = Some(s.to_string());
        }
        Ok(view)
    }

    pub async fn delete_webhook(&self, p: &Principal, id: &str) -> Result<WebhookDeleted> {
        audited!(
            self,
            p,
            "webhook.delete",
            "webhook",
            Some(id),
            async {
                self.require_webhooks(p)?;
                let row = self.own_webhook(p, id).await?;
                let audit = p
                    .audit("webhook.delete", "webhook", Some(&row.id), "success")
                    .detail(serde_json::json!({ "origin": origin(&row.url) }));
                if !self.store.webhooks().delete_webhook(&p.tenant_id, &row.id, &audit).await? {
                    return Err(Error::NotFound("webhook"));
                }
                Ok(WebhookDeleted { id: row.id, deleted: true })
            }
            .await
        )
    }

    /// Enqueues a `webhook.test` event for this webhook only.
    pub async fn test_webhook(&self, p: &Principal, id: &str) -> Result<TestQueued> {
        audited!(
            self,
            p,
            "webhook.test",
            "webhook",
            Some(id),
            async {
                self.require_webhooks(p)?;
                let row = self.own_webhook(p, id).await?;
                if !row.enabled {
                    return Err(Error::Conflict("this webhook is disabled: enable it first (PUT with enabled: true)".into()));
                }
                let now = now_millis();
                let d = DeliveryRow {
                    id: format!("whd_{}", &uuid::Uuid::new_v4().simple().to_string()[..24]),
                    webhook_id: row.id.clone(),
                    tenant_id: p.tenant_id.clone(),
                    event_id: format!("evt_test_{}", uuid::Uuid::new_v4().simple()),
                    event: TEST_EVENT.into(),
                    created_at: now,
                    actor: p.key_id.clone(),
                    resource_type: "webhook".into(),
                    resource_id: Some(row.id.clone()),
                    detail: Some(serde_json::json!({ "test": true }).to_string()),
                    status: PENDING.into(),
                    attempts: 0,
                    next_attempt_at: now,
                    last_status: None,
                    last_error: None,
                    delivered_at: None,
                };
                let audit = p
                    .audit("webhook.test", "webhook", Some(&row.id), "success")
                    .detail(serde_json::json!({ "deliveryId": d.id, "eventId": d.event_id }));
                self.store.webhooks().insert_delivery(&d, &audit).await?;
                Ok(TestQueued { delivery_id: d.id, event_id: d.event_id, event: d.event })
            }
            .await
        )
    }

    /// Pending deliveries across every tenant (for metrics).
    pub async fn webhook_queue_depth(&self) -> Result<i64> {
        self.store.webhooks().queue_depth().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_checked_and_stored_between_commas() {
        assert_eq!(
            stored_events(&["secret.created".into(), "secret.created".into(), "apikey.revoked".into()]).unwrap(),
            ",secret.created,apikey.revoked,"
        );
        assert_eq!(stored_events(&["secret.deleted".into(), "*".into()]).unwrap(), ",*,");
        let err = stored_events(&["secret.read".into()]).unwrap_err().to_string();
        assert!(err.contains("unknown event 'secret.read'") && err.contains("secret.rotation_due"), "{err}");
        assert!(stored_events(&[]).is_err());
        assert!(stored_events(&[TEST_EVENT.into()]).is_err(), "the test event is sent by asking, not subscribed to");
        assert_eq!(events_of(",a,b,"), ["a", "b"]);
    }

    #[test]
    fn every_event_has_an_action_in_both_migrations() {
        for (name, sql) in [
            (
                "sqlite",
                concat!(
                    include_str!("../../../migrations/sqlite/0015_webhooks.sql"),
                    include_str!("../../../migrations/sqlite/0018_webhook_trigger.sql")
                ),
            ),
            (
                "postgres",
                concat!(
                    include_str!("../../../migrations/postgres/0016_webhooks.sql"),
                    include_str!("../../../migrations/postgres/0019_webhook_trigger.sql")
                ),
            ),
        ] {
            for e in EVENTS {
                assert!(sql.contains(&format!("', '{e}')")), "{name}: no action maps to {e}");
            }
        }
    }

    #[test]
    fn generated_secrets_are_prefixed_and_random() {
        let (a, b) = (new_secret(), new_secret());
        assert!(a.starts_with(SECRET_PREFIX) && a.len() == SECRET_PREFIX.len() + 43, "{}", a.as_str());
        assert_ne!(a.as_str(), b.as_str());
    }
}
