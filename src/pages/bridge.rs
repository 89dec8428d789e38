//! The page's calls into the approvals service (B's `vault::approvals`),
//! turned into what the templates show. Stubbed until that branch lands.

use super::Item;
use crate::error::{Error, Result};
use crate::vault::{Principal, Vault};

pub(super) async fn items(_vault: &Vault, _p: &Principal, _status: Option<&str>) -> Result<Vec<Item>> {
    Ok(vec![])
}

pub(super) async fn item(_vault: &Vault, _p: &Principal, _id: &str) -> Result<Item> {
    Err(Error::NotFound("approval"))
}

pub(super) async fn approve(_vault: &Vault, _p: &Principal, _id: &str, _ttl: &str, _uses: u32) -> Result<()> {
    Err(Error::NotFound("approval"))
}

pub(super) async fn deny(_vault: &Vault, _p: &Principal, _id: &str, _reason: &str) -> Result<()> {
    Err(Error::NotFound("approval"))
}

pub(super) async fn gate_sensitive(_vault: &Vault, _p: &Principal) -> Result<bool> {
    Ok(false)
}

pub(super) async fn set_gate_sensitive(_vault: &Vault, _p: &Principal, _on: bool) -> Result<()> {
    Err(Error::NotFound("policy"))
}

pub(super) async fn gated_secrets(_vault: &Vault, _p: &Principal) -> Result<Vec<(String, String)>> {
    Ok(vec![])
}

pub(super) async fn set_tier(_vault: &Vault, _p: &Principal, _secret_id: &str, _tier: &str) -> Result<()> {
    Err(Error::SecretNotFound)
}
