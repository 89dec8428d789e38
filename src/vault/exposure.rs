//! What a read of a secret may answer (its exposure), and using a value
//! without answering it: `latchkey run`, the proxy, `.env` files, checks.
//!
//! An agent that reads a value carries it in its context from then on: into
//! chat logs, provider logs, and whatever a prompt injection asks it to send.
//! A secret's owner decides per secret whether an agent may see the value
//! (`reveal`), a preview of it (`masked`), or nothing (`use_only`); every use
//! below works in all three modes, and is audited with its mechanism.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::secrets::{MAX_LIST_PAGE, SecretRef};
use super::views::{ListSecrets, SecretMeta};
use super::{Principal, Vault, audited, names};
use crate::error::{Error, Result};
use crate::store::SecretRow;

/// What a read of the value answers. Ordered: a later mode shows less.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Exposure {
    /// The value (as before exposure modes existed).
    #[default]
    Reveal,
    /// A preview (`sk_live_…4f2a`), the length and a fingerprint; never the value.
    Masked,
    /// Nothing: only uses (`latchkey run`, the proxy, checks) reach the value.
    UseOnly,
}

impl Exposure {
    pub fn as_str(self) -> &'static str {
        match self {
            Exposure::Reveal => "reveal",
            Exposure::Masked => "masked",
            Exposure::UseOnly => "use_only",
        }
    }

    /// A stored mode; anything else is an integrity error.
    pub fn of_row(s: &SecretRow) -> Result<Self> {
        match s.exposure.as_str() {
            "reveal" => Ok(Exposure::Reveal),
            "masked" => Ok(Exposure::Masked),
            "use_only" => Ok(Exposure::UseOnly),
            _ => Err(super::views::unreadable("secrets", &s.id, "exposure")),
        }
    }
}

/// How a value is used without being answered; the audit entry names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// `latchkey run`: environment variables of a child process.
    Run,
    /// The `run_with_secrets` MCP tool (stdio only).
    RunTool,
    /// An HTTP request the server makes with the value (the proxy).
    Proxy,
    /// A `.env` file written by the `write_env_file` MCP tool (stdio only).
    EnvFile,
    /// A constant-time comparison with a candidate.
    Verify,
    /// Equality of two environments' values.
    Compare,
    /// A copy into another environment (`POST /api/v1/secrets/promote`):
    /// the value moves inside the vault and is never answered.
    Promote,
}

impl Mechanism {
    pub fn as_str(self) -> &'static str {
        match self {
            Mechanism::Run => "run",
            Mechanism::RunTool => "run_with_secrets",
            Mechanism::Proxy => "proxy",
            Mechanism::EnvFile => "env_file",
            Mechanism::Verify => "verify",
            Mechanism::Compare => "compare",
            Mechanism::Promote => "promote",
        }
    }

    /// Whether the approval gate applies. A comparison learns only whether
    /// two values are equal, which is not what an approval protects.
    fn gated(self) -> bool {
        self != Mechanism::Compare
    }
}

/// Why a value is opened: the read of a front, a hand-off (share, claim),
/// or a use. Decides what exposure allows and what the audit entry says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Purpose {
    Read,
    HandOff,
    Use(Mechanism),
}

impl Purpose {
    /// Refuses what the secret's exposure forbids, before anything is decrypted.
    pub(super) fn allowed(self, exposure: Exposure, name: &str) -> Result<()> {
        match (self, exposure) {
            (Purpose::Use(_), _) | (_, Exposure::Reveal) | (Purpose::Read, Exposure::Masked) => Ok(()),
            (Purpose::Read, Exposure::UseOnly) => Err(Error::ExposureDenied(format!(
                "'{name}' is use_only: its value is never answered; use it without seeing it (latchkey run, \
                 http_request_with_secret, verify_secret)"
            ))),
            (Purpose::HandOff, e) => {
                Err(Error::ExposureDenied(format!("'{name}' is {}: only a reveal secret's value can be shared or handed over", e.as_str())))
            }
        }
    }

    pub(super) fn gated(self) -> bool {
        match self {
            Purpose::Use(m) => m.gated(),
            _ => true,
        }
    }
}

/// What a `masked` read answers instead of the value.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Masked {
    /// The value's recognisable start (up to its last `_`/`-` in the first
    /// ten characters, e.g. `sk_live_`) and its last four characters, or
    /// only `…` when the value is too short to show any of it.
    pub preview: String,
    /// The value's length in characters.
    pub length: usize,
    /// A keyed fingerprint: equal values of this tenant have equal ones.
    pub fingerprint: String,
}

/// The preview of a masked value: never more than a quarter of it.
pub fn preview(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    if chars.len() < 16 {
        return "…".into();
    }
    let head = chars.iter().take(10).rposition(|c| *c == '_' || *c == '-').map_or(0, |i| i + 1).min(chars.len() / 4);
    let tail: String = chars[chars.len() - 4..].iter().collect();
    let head: String = chars[..head].iter().collect();
    format!("{head}…{tail}")
}

/// A value opened for a use: it goes into a child's environment, a request
/// or a comparison, never into an answer.
pub struct UsedSecret {
    pub meta: SecretMeta,
    pub value: Zeroizing<String>,
    /// The version the value belongs to.
    pub version: i64,
}

/// Which secrets a bulk use takes: a project's and environment's, or only
/// some of them by name.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub project_id: Option<String>,
    pub environment: Option<String>,
    /// Only these names (each must exist); empty: every secret selected.
    pub only: Vec<String>,
}

impl Vault {
    /// Opens a secret's current value for a use. Exposure does not limit a
    /// use (that is its point); permission, scopes, project scope and the
    /// approval gate do, as for a read. Audited `secret.use` with the
    /// mechanism, before the value is handed back.
    pub async fn use_secret(&self, p: &Principal, r: SecretRef<'_>, m: Mechanism) -> Result<UsedSecret> {
        let rid = r.id();
        audited!(self, p, "secret.use", "secret", rid, self.use_inner(p, &r, m).await)
    }

    async fn use_inner(&self, p: &Principal, r: &SecretRef<'_>, m: Mechanism) -> Result<UsedSecret> {
        let opened = self.open_value(p, r, None, None, Purpose::Use(m)).await?;
        Ok(UsedSecret { meta: opened.meta, value: opened.value, version: opened.version })
    }

    /// Opens every selected secret for a use, one audit entry each. A name
    /// in `only` that is not there is 404 naming it, before anything is opened.
    pub async fn use_secrets(&self, p: &Principal, sel: &Selection, m: Mechanism) -> Result<Vec<UsedSecret>> {
        let metas = self.select(p, sel).await?;
        let mut used = Vec::with_capacity(metas.len());
        for meta in metas {
            used.push(self.use_secret(p, SecretRef::Id(&meta.id), m).await?);
        }
        Ok(used)
    }

    /// The metadata of the selected secrets, by name.
    async fn select(&self, p: &Principal, sel: &Selection) -> Result<Vec<SecretMeta>> {
        let environment = names::environment(sel.environment.as_deref())?;
        let mut all = Vec::new();
        let mut cursor = None;
        loop {
            let q = ListSecrets {
                project_id: sel.project_id.clone(),
                environment: Some(environment.clone()).filter(|e| !e.is_empty()),
                limit: Some(MAX_LIST_PAGE),
                cursor: cursor.take(),
                ..Default::default()
            };
            let page = self.list_secrets(p, q).await?;
            all.extend(page.secrets.into_iter().filter(|s| {
                // Without an environment, only the secrets without one.
                s.environment.as_deref().unwrap_or("") == environment && (sel.project_id.is_some() || s.project_id.is_none())
            }));
            match page.next_cursor {
                Some(next) if page.has_more => cursor = Some(next),
                _ => break,
            }
        }
        if sel.only.is_empty() {
            return Ok(all);
        }
        let missing: Vec<&str> = sel.only.iter().filter(|n| !all.iter().any(|s| &s.name == *n)).map(String::as_str).collect();
        if !missing.is_empty() {
            return Err(Error::SecretsNotFound(format!("no secret named {} here", missing.join(", "))));
        }
        all.retain(|s| sel.only.contains(&s.name));
        Ok(all)
    }

    /// The keyed fingerprint of a value under a tenant's key (see [`Masked`]).
    pub async fn fingerprint(&self, tenant_id: &str, value: &str) -> Result<String> {
        Ok(self.data_key(tenant_id).await?.fingerprint(value.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_preview_shows_a_prefix_and_four_last_characters_of_long_values_only() {
        assert_eq!(preview("sk_live_51HqLyjWDarjtT1zdp7dc4f2a"), "sk_live_…4f2a");
        assert_eq!(preview("ghp_abcdefghijklmnopqrstuvwxyz0123456789"), "ghp_…6789");
        assert_eq!(preview("plainpasswordvalue"), "…alue");
        assert_eq!(preview("short-value"), "…");
        assert_eq!(preview("a_b_c_d_e_f_g_h_i"), "a_b_…_h_i", "the prefix never exceeds a quarter");
    }

    #[test]
    fn exposure_allows_reads_hand_offs_and_uses_as_documented() {
        for e in [Exposure::Reveal, Exposure::Masked, Exposure::UseOnly] {
            assert!(Purpose::Use(Mechanism::Run).allowed(e, "X").is_ok());
        }
        assert!(Purpose::Read.allowed(Exposure::Masked, "X").is_ok());
        assert_eq!(Purpose::Read.allowed(Exposure::UseOnly, "X").unwrap_err().code(), "EXPOSURE_DENIED");
        assert_eq!(Purpose::HandOff.allowed(Exposure::Masked, "X").unwrap_err().code(), "EXPOSURE_DENIED");
        assert!(Purpose::HandOff.allowed(Exposure::Reveal, "X").is_ok());
    }
}
