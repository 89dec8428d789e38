//! The tenants' wrapped data keys as a master-key rotation sees them
//! (`vault::master_key`). A trait of its own beside [`Store`](super::Store),
//! reached with `Store::keyring`; the SQL is in `sql::keyring`. Nothing here is
//! cached: the vault keeps unwrapped data keys, which a rotation does not change.

use async_trait::async_trait;

use super::AuditRow;
use crate::error::Result;

/// One tenant's data key moving from one wrapping to another.
#[derive(Debug, Clone)]
pub struct Rewrap {
    pub tenant_id: String,
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

#[async_trait]
pub trait KeyringStore: Send + Sync {
    /// A page of (tenant id, wrapped data key), by id, after `after`.
    async fn wrapped_keys(&self, after: Option<&str>, limit: i64) -> Result<Vec<(String, Vec<u8>)>>;
    /// Every rewrap (tenants' data keys, the vault's own keys in `meta`) and
    /// the new key check in ONE transaction with its audit entry; a wrapping
    /// that is no longer `old` fails it all (409: run the rotation again).
    async fn rewrap_all(&self, rewraps: &[Rewrap], meta: &[MetaRewrap], key_check: &[u8], audit: &AuditRow) -> Result<()>;
}
