//! The rows and units of work of secret requests (`vault::requests`): an
//! agent asks for a value, a human owner supplies it on a page. A trait of
//! its own beside [`Store`](super::Store), reached with `Store::requests`;
//! the SQL is in `sql::requests`, for both databases. No value is ever
//! stored here: the owner's value goes into the vault as a secret (through
//! `Vault::set_secret`, so the cache and the version writer see it like any
//! other write), and the request records only the secret's id.
//!
//! Nothing here is cached.

use async_trait::async_trait;

use super::{AuditRow, Millis};
use crate::error::Result;

/// `secret_requests.status` of a request nobody answered yet (past
/// `expires_at` it reads as `expired`).
pub const PENDING: &str = "pending";
/// An owner took the request and is writing the secret; reads as `pending`.
pub const FILLING: &str = "filling";
pub const FULFILLED: &str = "fulfilled";
pub const CANCELLED: &str = "cancelled";
pub const EXPIRED: &str = "expired";
/// How long a `filling` request is held for its writer before another owner
/// may take it again (the writer died between the two steps).
pub const FILLING_HOLD_MS: Millis = 60_000;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RequestRow {
    pub id: String,
    pub tenant_id: String,
    /// The key that asked.
    pub requester_key_id: String,
    /// That key's name when it asked, for the page.
    pub requester_name: String,
    /// The secret's name the value goes under.
    pub name: String,
    pub reason: String,
    pub project_id: Option<String>,
    /// Empty when the secret belongs to no environment.
    pub environment: String,
    pub instructions: Option<String>,
    /// Where the human gets the value (http/https only).
    pub obtain_url: Option<String>,
    /// The exposure the new secret gets: `reveal`, `masked` or `use_only`.
    pub exposure: String,
    /// The access tier the new secret gets.
    pub access_tier: String,
    /// `pending`, `filling`, `fulfilled` or `cancelled`.
    pub status: String,
    pub created_at: Millis,
    pub expires_at: Millis,
    /// When an owner took it (`filling`).
    pub taken_at: Option<Millis>,
    pub fulfilled_at: Option<Millis>,
    /// The owner who fulfilled it.
    pub fulfilled_by: Option<String>,
    /// The secret the value went into.
    pub secret_id: Option<String>,
    pub cancelled_at: Option<Millis>,
}

impl RequestRow {
    /// `pending`, `fulfilled`, `cancelled`, or `expired` (pending past its
    /// time). A request being filled reads as `pending`.
    pub fn state(&self, now: Millis) -> &'static str {
        match self.status.as_str() {
            FULFILLED => FULFILLED,
            CANCELLED => CANCELLED,
            _ if self.expires_at <= now => EXPIRED,
            _ => PENDING,
        }
    }
}

#[async_trait]
pub trait RequestStore: Send + Sync {
    /// A new request, with its audit entry, in one transaction.
    async fn insert_request(&self, r: &RequestRow, audit: &AuditRow) -> Result<()>;
    /// One of the tenant's requests.
    async fn get_request(&self, tenant_id: &str, id: &str) -> Result<Option<RequestRow>>;
    /// The tenant's requests, newest first, at most `limit`.
    async fn list_requests(&self, tenant_id: &str, limit: i64) -> Result<Vec<RequestRow>>;
    /// Takes a request for fulfilment with one conditional UPDATE: pending
    /// and not expired at `now` (or `filling` and held longer than
    /// [`FILLING_HOLD_MS`]) becomes `filling`. `None`: nobody may fill it now.
    async fn take_request(&self, tenant_id: &str, id: &str, now: Millis) -> Result<Option<RequestRow>>;
    /// Ends a `filling` request as `fulfilled`, with the secret it made,
    /// and its audit entry. `None`: it was not `filling`.
    async fn finish_request(
        &self,
        tenant_id: &str,
        id: &str,
        now: Millis,
        by: &str,
        secret_id: &str,
        audit: &AuditRow,
    ) -> Result<Option<RequestRow>>;
    /// Puts a `filling` request back to `pending` (its secret could not be written).
    async fn release_request(&self, tenant_id: &str, id: &str) -> Result<()>;
    /// Cancels a pending (or `filling`-too-long) request, with its audit entry. `None`: it was not.
    async fn cancel_request(&self, tenant_id: &str, id: &str, now: Millis, audit: &AuditRow) -> Result<Option<RequestRow>>;
}
