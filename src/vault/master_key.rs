//! Moving the vault to another master key (`latchkey rotate-master-key`).
//!
//! Only the tenants' data keys (every generation) and the vault's own keys (`Vault::OWN_KEYS`)
//! are wrapped by the master key, so a rotation rewraps them, never a secret: every tenant's wrapping and the key check
//! change in one transaction, so the database is wholly under one key or
//! wholly under the other, never between. Processes started with both keys
//! (`LATCHKEY_NEW_MASTER_KEY` beside the current one) keep serving
//! throughout: they open either wrapping, and wrap new tenants' keys under
//! the new key already. docs/operations.md gives the order of steps.

use serde::Serialize;

use super::principal::WithDetail;
use super::{Front, Origin, Vault};
use crate::error::{Error, Result};
use crate::store::keyring::{MetaRewrap, Rewrap};

/// Tenants read per query while collecting the rewraps.
const PAGE: i64 = 500;

/// What a rotation did.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rotated {
    /// Tenant data keys (one per tenant and generation) now wrapped by the
    /// new master key.
    pub rewrapped: usize,
    /// Tenant data keys that already were (created during the rotation, or
    /// by an earlier run that this one completes).
    pub already: usize,
}

impl Vault {
    /// Rewraps every tenant's data key under the next master key and stores
    /// the next key's check, in one transaction. `progress(tenants)` is
    /// called as tenants are read. Needs a next key (else 400).
    pub async fn rotate_master_key(&self, progress: &(dyn Fn(usize) + Sync)) -> Result<Rotated> {
        let check = self
            .master
            .next_key_check()
            .ok_or_else(|| Error::InvalidRequest("no new master key: set LATCHKEY_NEW_MASTER_KEY (or LATCHKEY_NEW_PASSPHRASE)".into()))?;
        let (mut rewraps, mut already, mut after) = (Vec::new(), 0, None::<(String, i64)>);
        loop {
            let page = self.store.keyring().wrapped_keys(after.as_ref().map(|(t, g)| (t.as_str(), *g)), PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some((last.tenant_id.clone(), last.generation));
            for k in page {
                let generation = super::data_keys::generation(k.generation)?;
                match self.master.rewrap(&k.tenant_id, generation, &k.wrapped_key)? {
                    Some(new) => rewraps.push(Rewrap {
                        tenant_id: k.tenant_id,
                        generation: k.generation,
                        current: k.current,
                        old: k.wrapped_key,
                        new,
                    }),
                    None => already += 1,
                }
            }
            progress(rewraps.len() + already);
        }
        let mut meta = Vec::new();
        for (key, purpose) in super::OWN_KEYS {
            if let Some(old) = self.store.meta_get(key).await?
                && let Some(new) = self.master.rewrap_key(purpose, &old)?
            {
                meta.push(MetaRewrap { key, old, new });
            }
        }
        let audit = Origin::new(Front::Cli)
            .audit(None, "operator", "master_key.rotated", "master_key", None, "success")
            .detail(serde_json::json!({ "rewrapped": rewraps.len(), "already": already }));
        self.store.keyring().rewrap_all(&rewraps, &meta, &check, &audit).await?;
        Ok(Rotated { rewrapped: rewraps.len(), already })
    }
}
