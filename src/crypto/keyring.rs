//! The master keys a process holds: the current one and, while an operator
//! moves the vault to another (`latchkey rotate-master-key`), the next one.
//!
//! A tenant's data key is wrapped by exactly one master key. During a
//! rotation some are wrapped by the old key and some by the new one, and a
//! process that holds both opens either: the wrapping's authentication tag
//! says which key made it, so trying one then the other is exact. New data
//! keys are wrapped by the key the vault is moving to, so nothing written
//! during the rotation is left behind under the old one.

use super::keys::{DataKey, MasterKey};
use crate::error::{Error, Result};

pub struct Keyring {
    current: MasterKey,
    next: Option<MasterKey>,
}

impl From<MasterKey> for Keyring {
    fn from(current: MasterKey) -> Self {
        Keyring { current, next: None }
    }
}

impl Keyring {
    pub fn new(current: MasterKey, next: Option<MasterKey>) -> Self {
        Keyring { current, next }
    }

    /// The key new wrappings are made with: the next one when there is one.
    fn wrapping(&self) -> &MasterKey {
        self.next.as_ref().unwrap_or(&self.current)
    }

    pub fn has_next(&self) -> bool {
        self.next.is_some()
    }

    /// A fresh data key of `generation` for `tenant_id`, wrapped by
    /// [`Self::wrapping`].
    pub fn new_data_key(&self, tenant_id: &str, generation: u32) -> (DataKey, Vec<u8>) {
        self.wrapping().new_data_key(tenant_id, generation)
    }

    pub fn unwrap_data_key(&self, tenant_id: &str, generation: u32, wrapped: &[u8]) -> Result<DataKey> {
        match (self.current.unwrap_data_key(tenant_id, generation, wrapped), &self.next) {
            (Ok(key), _) => Ok(key),
            (Err(_), Some(next)) => next.unwrap_data_key(tenant_id, generation, wrapped),
            (Err(e), None) => Err(e),
        }
    }

    /// `wrapped` opened by whichever key made it and wrapped again by the
    /// next key; `None` when it already is.
    pub fn rewrap(&self, tenant_id: &str, generation: u32, wrapped: &[u8]) -> Result<Option<Vec<u8>>> {
        let next = self.next.as_ref().ok_or_else(|| Error::internal("rewrap without a next master key"))?;
        if next.unwrap_data_key(tenant_id, generation, wrapped).is_ok() {
            return Ok(None);
        }
        let key = self.current.unwrap_data_key(tenant_id, generation, wrapped)?;
        Ok(Some(next.wrap_data_key(tenant_id, &key)))
    }

    /// A key of the vault's own wrapped by [`Self::wrapping`] (see
    /// `MasterKey::wrap_key`).
    pub fn wrap_key(&self, purpose: &[u8], key: &[u8; 32]) -> Vec<u8> {
        self.wrapping().wrap_key(purpose, key)
    }

    pub fn unwrap_key(&self, purpose: &[u8], wrapped: &[u8]) -> Result<zeroize::Zeroizing<[u8; 32]>> {
        match (self.current.unwrap_key(purpose, wrapped), &self.next) {
            (Ok(key), _) => Ok(key),
            (Err(_), Some(next)) => next.unwrap_key(purpose, wrapped),
            (Err(e), None) => Err(e),
        }
    }

    /// Like [`Self::rewrap`], for a key of the vault's own.
    pub fn rewrap_key(&self, purpose: &[u8], wrapped: &[u8]) -> Result<Option<Vec<u8>>> {
        let next = self.next.as_ref().ok_or_else(|| Error::internal("rewrap without a next master key"))?;
        if next.unwrap_key(purpose, wrapped).is_ok() {
            return Ok(None);
        }
        let key = self.current.unwrap_key(purpose, wrapped)?;
        Ok(Some(next.wrap_key(purpose, &key)))
    }

    /// The key check a new database starts with (see `Vault::open`).
    pub fn key_check(&self) -> Vec<u8> {
        self.wrapping().key_check()
    }

    /// The next key's check, which a finished rotation stores.
    pub fn next_key_check(&self) -> Option<Vec<u8>> {
        self.next.as_ref().map(MasterKey::key_check)
    }

    /// Whether the stored key check was made by one of our keys.
    pub fn accepts(&self, stored: &[u8]) -> bool {
        self.current.verify_key_check(stored) || self.next.as_ref().is_some_and(|n| n.verify_key_check(stored))
    }

    /// Whether the stored key check was made by the next key (the rotation
    /// has committed).
    pub fn next_made(&self, stored: &[u8]) -> bool {
        self.next.as_ref().is_some_and(|n| n.verify_key_check(stored))
    }
}
