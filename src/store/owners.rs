//! The rows and units of work of owners, the tenant's humans: owners, their
//! one-time links, page sessions (with the WebAuthn ceremony under way) and
//! passkeys. A trait of its own beside [`Store`](super::Store), reached with
//! `Store::owners`; the SQL is in `sql::owners`, for both databases.

use async_trait::async_trait;

use super::{AuditRow, Millis};
use crate::error::Result;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OwnerRow {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub token_hash: Vec<u8>,
    pub created_at: Millis,
    /// Who made this owner: `operator`, `signup` (the setup link) or an owner's id.
    pub created_by: String,
    pub revoked_at: Option<Millis>,
}

/// A one-time link: `signin` (for `owner_id`) or `setup` (no owner yet).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LinkRow {
    pub hash: Vec<u8>,
    pub tenant_id: String,
    pub owner_id: Option<String>,
    pub purpose: String,
    pub created_at: Millis,
    pub expires_at: Millis,
    pub used_at: Option<Millis>,
}

/// A page session, found by the hash of its cookie.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionRow {
    pub id_hash: Vec<u8>,
    pub owner_id: String,
    pub tenant_id: String,
    pub csrf: String,
    pub created_at: Millis,
    pub expires_at: Millis,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PasskeyRow {
    /// base64url, as WebAuthn names it.
    pub credential_id: String,
    pub owner_id: String,
    pub tenant_id: String,
    /// webauthn-rs's `Passkey`, serialised as JSON (public key and counter: no secret).
    pub passkey: String,
    pub name: String,
    pub created_at: Millis,
    pub last_used_at: Option<Millis>,
}

/// See [`OwnerStore::use_link`]: given the link as it was consumed, the owner
/// to create (a setup link), the session to open and the audit entry.
pub type LinkUse<'a> = &'a (dyn Fn(&LinkRow) -> Result<(Option<OwnerRow>, SessionRow, AuditRow)> + Send + Sync);

#[async_trait]
pub trait OwnerStore: Send + Sync {
    /// A new owner, with the sign-in link made for it.
    async fn insert_owner(&self, owner: &OwnerRow, link: Option<&LinkRow>, audit: &AuditRow) -> Result<()>;
    async fn insert_link(&self, link: &LinkRow, audit: &AuditRow) -> Result<()>;
    /// A live owner by the hash of its token.
    async fn find_owner_by_token(&self, token_hash: &[u8]) -> Result<Option<OwnerRow>>;
    async fn get_owner(&self, tenant_id: &str, id: &str) -> Result<Option<OwnerRow>>;
    async fn list_owners(&self, tenant_id: &str) -> Result<Vec<OwnerRow>>;
    /// Consumes an unused, unexpired link (one conditional UPDATE) and, in
    /// the same transaction, creates what `then` says. `None`: no such link
    /// was usable (unknown, used, expired), and nothing changed.
    async fn use_link(&self, hash: &[u8], now: Millis, then: LinkUse<'_>) -> Result<Option<LinkRow>>;
    async fn insert_session(&self, session: &SessionRow, audit: &AuditRow) -> Result<()>;
    /// A session that has not expired, of an owner who is not revoked.
    async fn find_session(&self, id_hash: &[u8], now: Millis) -> Result<Option<SessionRow>>;
    async fn delete_session(&self, id_hash: &[u8], audit: &AuditRow) -> Result<()>;
    /// Keeps `state` as the session's ceremony under way, for `purpose`.
    async fn begin_ceremony(&self, id_hash: &[u8], state: &str, purpose: &str, now: Millis) -> Result<bool>;
    /// Takes the session's ceremony for `purpose` if it began at or after
    /// `not_before`: one conditional UPDATE, so it is used at most once.
    async fn take_ceremony(&self, id_hash: &[u8], purpose: &str, not_before: Millis) -> Result<Option<String>>;
    async fn insert_passkey(&self, passkey: &PasskeyRow, audit: &AuditRow) -> Result<()>;
    /// The tenant's passkeys, or one owner's.
    async fn list_passkeys(&self, tenant_id: &str, owner_id: Option<&str>) -> Result<Vec<PasskeyRow>>;
    /// After an assertion: the passkey's new counter state and its use.
    async fn touch_passkey(&self, credential_id: &str, passkey: &str, at: Millis) -> Result<()>;
    /// Whether the tenant has a live owner with a passkey.
    async fn tenant_has_passkey(&self, tenant_id: &str) -> Result<bool>;
}
