//! The tenants' wrapped data keys: as a master-key rotation sees them
//! (`vault::master_key`), and as a tenant's data-key rotation moves them to a
//! new generation and reseals the tenant's versions (`vault::data_keys`). A
//! trait of its own beside [`Store`](super::Store), reached with
//! `Store::keyring`; the SQL is in `sql::keyring`. Nothing here is cached:
//! the vault keeps unwrapped data keys and drops them when a rotation starts.

use async_trait::async_trait;

use super::{AuditRow, Millis};
use crate::error::Result;

/// One tenant's data key (of one generation) moving from one master-key
/// wrapping to another.
#[derive(Debug, Clone)]
pub struct Rewrap {
    pub tenant_id: String,
    pub generation: i64,
    /// Whether it is the tenant's current generation (`tenants`) or a
    /// retired one (`tenant_keys`).
    pub current: bool,
    /// The wrapping read before the rotation; the update is conditional on it.
    pub old: Vec<u8>,
    pub new: Vec<u8>,
}

/// A key of the vault's own, kept wrapped in `meta`, moving likewise.
#[derive(Debug, Clone)]
pub struct MetaRewrap {
    pub key: &'static str,
    pub old: Vec<u8>,
    pub new: Vec<u8>,
}

/// A wrapped data key as a master-key rotation pages through them.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WrappedKey {
    pub tenant_id: String,
    pub generation: i64,
    pub current: bool,
    pub wrapped_key: Vec<u8>,
}

/// A tenant's wrapped data keys: the current generation's and the retired ones'.
#[derive(Debug, Clone)]
pub struct TenantKeys {
    pub generation: i64,
    pub current: Vec<u8>,
    pub older: Vec<(i64, Vec<u8>)>,
}

/// `key_rotations.state` of a rotation whose pass has not ended.
pub const RUNNING: &str = "running";
/// `key_rotations.state` once every version is sealed under the new generation.
pub const DONE: &str = "done";

/// A tenant's latest data-key rotation and where its background pass stands.
/// Only the lease holder changes a running one, writing the whole row back
/// ([`KeyringStore::save_key_rotation`]).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct KeyRotationRow {
    pub tenant_id: String,
    /// The generation the tenant moved to.
    pub generation: i64,
    pub state: String,
    pub started_at: Millis,
    pub started_by: String,
    pub finished_at: Option<Millis>,
    /// Versions resealed under `generation`, over every pass.
    pub resealed: i64,
    /// Passes over the tenant's versions begun.
    pub passes: i64,
    pub pass_started_at: Option<Millis>,
    /// The last version the current pass has done, by (secret id, version).
    pub cursor_secret: Option<String>,
    pub cursor_version: Option<i64>,
    pub leased_until: Millis,
}

/// A version as a pass reads it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SealedVersion {
    pub secret_id: String,
    pub version: i64,
    pub sealed: Vec<u8>,
}

/// A version sealed again under the new generation; written only if it
/// still holds `old`.
#[derive(Debug, Clone)]
pub struct Reseal {
    pub secret_id: String,
    pub version: i64,
    pub old: Vec<u8>,
    pub new: Vec<u8>,
}

#[async_trait]
pub trait KeyringStore: Send + Sync {
    /// A page of every wrapped data key (current and retired generations), by
    /// (tenant, generation), after `after`.
    async fn wrapped_keys(&self, after: Option<(&str, i64)>, limit: i64) -> Result<Vec<WrappedKey>>;
    /// Every rewrap (tenants' data keys, the vault's own keys in `meta`) and
    /// the new key check in ONE transaction with its audit entry; a wrapping
    /// that is no longer `old` fails it all (409: run the rotation again).
    async fn rewrap_all(&self, rewraps: &[Rewrap], meta: &[MetaRewrap], key_check: &[u8], audit: &AuditRow) -> Result<()>;

    /// The tenant's wrapped data keys; `None` for a tenant that is gone.
    async fn tenant_keys(&self, tenant_id: &str) -> Result<Option<TenantKeys>>;

    /// Starts a data-key rotation in ONE transaction with its audit entry:
    /// the current key (of generation `from`) is retired into `tenant_keys`,
    /// `wrapped` becomes the current key of generation `from + 1`, and the
    /// tenant's rotation row starts over. 409 while a rotation of the tenant
    /// is running, or when the generation is no longer `from`.
    async fn start_key_rotation(&self, tenant_id: &str, from: i64, wrapped: &[u8], by: &str, audit: &AuditRow) -> Result<KeyRotationRow>;

    async fn key_rotation(&self, tenant_id: &str) -> Result<Option<KeyRotationRow>>;

    /// (tenant, generation) of the rotations started at or after `since`:
    /// a replica drops its cached keys of those tenants.
    async fn key_rotations_since(&self, since: Millis) -> Result<Vec<(String, i64)>>;

    /// Takes the lease of one running rotation started before
    /// `started_before` whose lease has lapsed or is `by`'s already (no write
    /// when there is none), until `lease_until`, for `by`.
    async fn lease_key_rotation(
        &self,
        by: &str,
        now: Millis,
        lease_until: Millis,
        started_before: Millis,
    ) -> Result<Option<KeyRotationRow>>;

    /// The tenant's versions, every secret (soft-deleted ones too) together.
    async fn count_versions(&self, tenant_id: &str) -> Result<i64>;

    /// Up to `limit` of the tenant's versions after `after`, by (secret id, version).
    async fn versions_after(&self, tenant_id: &str, after: Option<(&str, i64)>, limit: i64) -> Result<Vec<SealedVersion>>;

    /// One batch in ONE transaction: the reseals (each only if the version
    /// still holds its old blob) and the rotation row as `row` says, if `by`
    /// still holds the lease; `false` (nothing written) when it does not.
    async fn save_key_rotation(&self, row: &KeyRotationRow, by: &str, reseals: &[Reseal]) -> Result<bool>;
}
