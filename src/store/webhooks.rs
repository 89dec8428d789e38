//! The rows and units of work of webhooks (`vault::webhooks`): a tenant's
//! subscriptions and the durable queue of their deliveries. A trait of its
//! own beside [`Store`](super::Store), reached with `Store::webhooks`; the
//! SQL is in `sql::webhooks`, for both databases.
//!
//! Events are enqueued by a trigger on `audit_log` (see the migrations
//! `*_webhooks.sql`), so an event goes in with the audit entry of its action,
//! in the same transaction, and no write path here or elsewhere changes.
//! Nothing here is cached.

use async_trait::async_trait;

use super::{AuditRow, Millis};
use crate::error::Result;

/// `webhook_deliveries.status` of a delivery still to be made (or being made).
pub const PENDING: &str = "pending";
pub const DELIVERED: &str = "delivered";
pub const FAILED: &str = "failed";
/// A pending delivery of a webhook that was disabled.
pub const CANCELLED: &str = "cancelled";

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WebhookRow {
    pub id: String,
    pub tenant_id: String,
    pub url: String,
    /// The subscribed events between commas: `,secret.created,`, `,*,`.
    pub events: String,
    /// The signing secret, sealed with the tenant's data key.
    pub secret_sealed: Vec<u8>,
    pub description: Option<String>,
    pub enabled: bool,
    pub created_by: String,
    pub created_at: Millis,
    pub updated_at: Millis,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeliveryRow {
    pub id: String,
    pub webhook_id: String,
    pub tenant_id: String,
    /// `evt_` and the audit entry's id: the same for every webhook it goes to.
    pub event_id: String,
    pub event: String,
    /// When the event happened.
    pub created_at: Millis,
    pub actor: String,
    pub resource_type: String,
    pub resource_id: Option<String>,
    /// The audit entry's detail (JSON, never a value).
    pub detail: Option<String>,
    pub status: String,
    pub attempts: i64,
    /// When it is due; while an attempt runs, the end of its lease.
    pub next_attempt_at: Millis,
    /// The HTTP status of the last attempt, if one answered.
    pub last_status: Option<i64>,
    /// A short note on the last failure (never more than a truncated line).
    pub last_error: Option<String>,
    pub delivered_at: Option<Millis>,
}

/// How an attempt ended (see [`WebhookStore::finish`]).
#[derive(Debug, Clone)]
pub struct Attempt {
    pub status: &'static str,
    pub next_attempt_at: Millis,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub delivered_at: Option<Millis>,
}

#[async_trait]
pub trait WebhookStore: Send + Sync {
    /// A new webhook with its audit entry; `PLAN_LIMIT_REACHED` when the
    /// tenant has `max_per_tenant` already (counted under the tenant's lock).
    async fn insert_webhook(&self, row: &WebhookRow, max_per_tenant: i64, audit: &AuditRow) -> Result<()>;
    async fn get_webhook(&self, tenant_id: &str, id: &str) -> Result<Option<WebhookRow>>;
    /// The tenant's webhooks, oldest first.
    async fn list_webhooks(&self, tenant_id: &str) -> Result<Vec<WebhookRow>>;
    /// Rewrites a webhook's settings; a webhook turned off has its pending
    /// deliveries cancelled in the same transaction. False when it is gone.
    async fn update_webhook(&self, row: &WebhookRow, audit: &AuditRow) -> Result<bool>;
    /// Deletes a webhook and its deliveries; false when it is gone.
    async fn delete_webhook(&self, tenant_id: &str, id: &str, audit: &AuditRow) -> Result<bool>;
    /// Enqueues one delivery (the test event) with its audit entry.
    async fn insert_delivery(&self, row: &DeliveryRow, audit: &AuditRow) -> Result<()>;
    /// A webhook's latest deliveries, newest first, at most `limit`.
    async fn recent_deliveries(&self, webhook_id: &str, limit: i64) -> Result<Vec<DeliveryRow>>;
    /// Takes up to `limit` deliveries due at `now`, each for one worker
    /// across every server (PostgreSQL: `FOR UPDATE SKIP LOCKED`; both: one
    /// conditional UPDATE): counts the attempt and moves `next_attempt_at`
    /// to `lease_until`, so a worker that dies leaves it due again then.
    async fn claim_due(&self, now: Millis, lease_until: Millis, limit: i64) -> Result<Vec<DeliveryRow>>;
    /// Records how the attempt `attempts` of a delivery ended, unless
    /// another worker took it since (its lease lapsed): false then.
    async fn finish(&self, id: &str, attempts: i64, how: &Attempt) -> Result<bool>;
    /// Deletes up to `limit` finished deliveries (delivered, failed,
    /// cancelled) of events older than `before`; answers how many.
    async fn prune_finished(&self, before: Millis, limit: i64) -> Result<u64>;
    /// Deliveries still pending, every tenant's (for metrics).
    async fn queue_depth(&self) -> Result<i64>;
}
