//! Checks that use a value without returning it: `verify` (is this
//! candidate the secret's value?) and `compare` (which names differ between
//! two environments?). Both go through [`Vault::use_secret`] /
//! [`Vault::use_secrets`], so they work on `masked` and `use_only` secrets
//! alike, obey permissions, scopes and project scope, and leave one
//! `secret.use` audit entry per secret used, naming the mechanism
//! (`verify`, `compare`). Neither answer ever holds a value, a preview or a
//! fingerprint: one bit per secret.
//!
//! A verification answers one bit, so a caller could guess a value one
//! candidate at a time: each secret allows [`VERIFY_PER_MINUTE`]
//! verifications a minute in this process (a keyed `governor` limiter, by
//! tenant and secret id), counted before anything is decrypted; past it,
//! 429 `VERIFY_LIMITED` with `Retry-After`. The comparison of the candidate
//! with the value takes the same time wherever they differ (`subtle`).
//!
//! A comparison uses both environments' secrets (one `secret.use` entry per
//! secret and side, as every use, so a compare of N names leaves up to 2N)
//! and compares current values in constant time.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::exposure::{Mechanism, Selection};
use super::scopes::ScopeAction;
use super::secrets::SecretRef;
use super::throttle::Throttle;
use super::{Permission, Principal, Vault, audited, names};
use crate::error::{Error, Result};

/// Verifications each secret allows per minute, per process.
pub const VERIFY_PER_MINUTE: u32 = 10;

fn verify_limiter() -> &'static Throttle {
    static LIMITER: OnceLock<Throttle> = OnceLock::new();
    LIMITER.get_or_init(|| Throttle::per_minute(VERIFY_PER_MINUTE))
}

/// `POST /api/v1/secrets/{id}/verify`: the candidate to check.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VerifyCandidate {
    /// The value to check against the secret's current value. Never stored, logged or echoed.
    pub candidate: String,
}

/// Whether the candidate is the secret's current value: nothing else.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerifyResult {
    /// True when the candidate equals the current value, byte for byte.
    #[serde(rename = "match")]
    pub matched: bool,
    pub secret_id: String,
    pub name: String,
    /// The version compared against.
    pub version: i64,
}

/// `GET /api/v1/secrets/compare`: two environments of one project (or of no project).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CompareQuery {
    /// The first environment, e.g. `staging`.
    pub from: String,
    /// The second environment, e.g. `production`.
    pub to: String,
    /// The project both belong to; none: secrets filed under no project.
    pub project_id: Option<String>,
}

/// How one name compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Comparison {
    Equal,
    Different,
    OnlyInFrom,
    OnlyInTo,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComparedName {
    pub name: String,
    /// `equal`, `different`, `only_in_from` or `only_in_to`.
    pub state: Comparison,
}

/// Per name, how two environments compare; never a value.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompareResult {
    pub project_id: Option<String>,
    pub from: String,
    pub to: String,
    /// Sorted by name.
    pub secrets: Vec<ComparedName>,
    pub equal: usize,
    pub different: usize,
    pub only_in_from: usize,
    pub only_in_to: usize,
}

/// Equal bytes, in time that depends only on the lengths.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

impl Vault {
    /// Whether `candidate` is the secret's current value (see the module's doc).
    pub async fn verify_secret(&self, p: &Principal, r: SecretRef<'_>, candidate: &str) -> Result<VerifyResult> {
        let rid = r.id().map(str::to_owned);
        audited!(self, p, "secret.verify", "secret", rid.as_deref(), self.verify_secret_inner(p, r, candidate).await)
    }

    async fn verify_secret_inner(&self, p: &Principal, r: SecretRef<'_>, candidate: &str) -> Result<VerifyResult> {
        p.require(Permission::Read)?;
        self.check_value(candidate)?;
        // The row only, nothing decrypted: the limit is keyed by the secret's
        // id however it was named, and counts before any value is opened.
        let row = self.visible_secret(p, &r, ScopeAction::Read).await?;
        if let Err(wait) = verify_limiter().check(&format!("{}/{}", p.tenant_id, row.id)) {
            return Err(Error::VerifyLimited { retry_after: wait.max(std::time::Duration::from_secs(1)) });
        }
        let used = self.use_secret(p, SecretRef::Id(&row.id), Mechanism::Verify).await?;
        Ok(VerifyResult {
            matched: same(&used.value, candidate),
            secret_id: used.meta.id.clone(),
            name: used.meta.name.clone(),
            version: used.version,
        })
    }

    /// How two environments' secrets compare, per name (see the module's doc).
    pub async fn compare_environments(&self, p: &Principal, q: CompareQuery) -> Result<CompareResult> {
        audited!(self, p, "secret.compare", "secret", None, self.compare_inner(p, q).await)
    }

    async fn compare_inner(&self, p: &Principal, q: CompareQuery) -> Result<CompareResult> {
        p.require(Permission::Read)?;
        let env = |what: &str, e: &str| -> Result<String> {
            let e = names::environment(Some(e.trim()))?;
            if e.is_empty() {
                return Err(Error::InvalidRequest(format!("give `{what}`, an environment such as staging")));
            }
            Ok(e)
        };
        let from = env("from", &q.from)?;
        let to = env("to", &q.to)?;
        if from == to {
            return Err(Error::InvalidRequest("from and to are the same environment".into()));
        }
        let project_id = q.project_id.filter(|p| !p.is_empty());
        self.check_project(p, project_id.as_deref()).await?;
        let side =
            |environment: &str| Selection { project_id: project_id.clone(), environment: Some(environment.to_owned()), only: Vec::new() };
        let left = self.use_secrets(p, &side(&from), Mechanism::Compare).await?;
        let right = self.use_secrets(p, &side(&to), Mechanism::Compare).await?;
        let right: BTreeMap<&str, &str> = right.iter().map(|u| (u.meta.name.as_str(), u.value.as_str())).collect();
        let left: BTreeMap<&str, &str> = left.iter().map(|u| (u.meta.name.as_str(), u.value.as_str())).collect();
        let mut secrets = Vec::new();
        for (name, value) in &left {
            let state = match right.get(name) {
                Some(other) if same(value, other) => Comparison::Equal,
                Some(_) => Comparison::Different,
                None => Comparison::OnlyInFrom,
            };
            secrets.push(ComparedName { name: (*name).to_owned(), state });
        }
        for name in right.keys().filter(|n| !left.contains_key(*n)) {
            secrets.push(ComparedName { name: (*name).to_owned(), state: Comparison::OnlyInTo });
        }
        secrets.sort_by(|a, b| a.name.cmp(&b.name));
        let count = |s: Comparison| secrets.iter().filter(|c| c.state == s).count();
        Ok(CompareResult {
            equal: count(Comparison::Equal),
            different: count(Comparison::Different),
            only_in_from: count(Comparison::OnlyInFrom),
            only_in_to: count(Comparison::OnlyInTo),
            project_id,
            from,
            to,
            secrets,
        })
    }
}
