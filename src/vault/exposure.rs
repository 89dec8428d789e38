//! STUB of the integrator's exposure core (shared plan), so H1's code builds
//! and runs before it lands: uses are plain audited reads here. On merge the
//! integrator's file replaces this one whole.

use zeroize::Zeroizing;

use super::secrets::SecretRef;
use super::views::{ListSecrets, ReadVersion, SecretMeta};
use super::{Principal, Vault};
use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Run,
    RunTool,
    Proxy,
    EnvFile,
    Verify,
    Compare,
}

pub struct UsedSecret {
    pub meta: SecretMeta,
    pub value: Zeroizing<String>,
    pub version: i64,
}

#[derive(Debug, Default, Clone)]
pub struct Selection {
    pub project_id: Option<String>,
    pub environment: Option<String>,
    pub only: Vec<String>,
}

impl Vault {
    pub async fn use_secrets(&self, p: &Principal, sel: &Selection, _m: Mechanism) -> Result<Vec<UsedSecret>> {
        let mut metas = Vec::new();
        let mut cursor = None;
        loop {
            let q = ListSecrets {
                project_id: sel.project_id.clone(),
                environment: sel.environment.clone(),
                limit: Some(500),
                cursor: cursor.take(),
                ..Default::default()
            };
            let page = self.list_secrets(p, q).await?;
            metas.extend(page.secrets.into_iter().filter(|s| sel.only.is_empty() || sel.only.contains(&s.name)));
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        if let Some(missing) = sel.only.iter().find(|n| !metas.iter().any(|m| &m.name == *n)) {
            return Err(Error::InvalidRequest(format!("secret '{missing}' not found")));
        }
        let mut out = Vec::new();
        for meta in metas {
            let read = self.read_secret(p, SecretRef::Id(&meta.id), &ReadVersion::default()).await?;
            out.push(UsedSecret { version: read.value_version, value: Zeroizing::new(read.value), meta });
        }
        Ok(out)
    }
}
