//! Request and response types, shared by REST (JSON bodies, OpenAPI) and MCP
//! (tool parameters, structured output). Field names follow SecretCarousel's
//! camelCase. Nothing here that lists or describes a secret carries its value;
//! only [`SecretValue`] does, and only an audited read returns it.

use chrono::{DateTime, TimeZone, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::plans::PlanLimits;
use crate::error::{Error, Result};
use crate::store::{ApiKeyRow, AuditRow, Millis, ProjectRow, SecretRow, VersionMeta};

/// A stored value this server cannot read was not written by it, or was
/// damaged since: an integrity error, never a default that passes for data
/// (the epoch as a date, no tags, no project scope, which reads as "every
/// project"). The log names the table, row and field for the operator; the
/// value stays out of it.
pub(crate) fn unreadable(table: &'static str, id: &dyn std::fmt::Display, field: &'static str) -> Error {
    tracing::error!(table, row = %id, field, "stored data failed to parse");
    Error::Integrity
}

pub(crate) fn time(ms: Millis, table: &'static str, id: &dyn std::fmt::Display, field: &'static str) -> Result<DateTime<Utc>> {
    Utc.timestamp_millis_opt(ms).single().ok_or_else(|| unreadable(table, id, field))
}

/// A stored JSON list of strings (tags, a key's project scope), or an
/// integrity error naming where it was.
/// An optional time column (`None` stays `None`).
pub(crate) fn opt_time(
    ms: Option<Millis>,
    table: &'static str,
    id: &dyn std::fmt::Display,
    field: &'static str,
) -> Result<Option<DateTime<Utc>>> {
    ms.map(|ms| time(ms, table, id, field)).transpose()
}

pub(crate) fn json_list(text: &str, table: &'static str, id: &dyn std::fmt::Display, field: &'static str) -> Result<Vec<String>> {
    serde_json::from_str(text).map_err(|_| unreadable(table, id, field))
}

/// The kinds of secret SecretCarousel defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SecretType {
    DatabaseCredentials,
    ApiKey,
    Certificate,
    OauthToken,
    EncryptionKey,
    Configuration,
    Custom,
}

impl SecretType {
    pub fn as_str(self) -> &'static str {
        match self {
            SecretType::DatabaseCredentials => "database-credentials",
            SecretType::ApiKey => "api-key",
            SecretType::Certificate => "certificate",
            SecretType::OauthToken => "oauth-token",
            SecretType::EncryptionKey => "encryption-key",
            SecretType::Configuration => "configuration",
            SecretType::Custom => "custom",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        serde_json::from_value(serde_json::Value::String(s.to_owned())).map_err(|_| {
            Error::InvalidRequest(
                "secretType must be one of database-credentials, api-key, certificate, oauth-token, encryption-key, configuration, custom"
                    .into(),
            )
        })
    }
}

/// How closely a secret's value is guarded: reading a `critical` one always
/// needs a human's approval, a `sensitive` one when the tenant's policy says
/// so (see `vault::approvals`). Ordered: a later tier is higher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AccessTier {
    Standard,
    Sensitive,
    Critical,
}

impl AccessTier {
    pub fn as_str(self) -> &'static str {
        match self {
            AccessTier::Standard => "standard",
            AccessTier::Sensitive => "sensitive",
            AccessTier::Critical => "critical",
        }
    }

    /// A stored tier; anything else is an integrity error.
    pub fn of_row(s: &SecretRow) -> Result<Self> {
        match s.access_tier.as_str() {
            "standard" => Ok(AccessTier::Standard),
            "sensitive" => Ok(AccessTier::Sensitive),
            "critical" => Ok(AccessTier::Critical),
            _ => Err(unreadable("secrets", &s.id, "access_tier")),
        }
    }
}

/// The query of a route that takes no parameters: any parameter is refused
/// (400 naming it), as every route refuses those it does not know, so that
/// a client learns of its mistake instead of getting an answer that ignored it.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

// ---------------------------------------------------------------- signup, plan

/// Self-signup: creates a tenant and its first (admin) API key.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SignupRequest {
    /// The tenant's id: 3-63 lowercase letters, digits and inner hyphens. Must be unused.
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$"))]
    pub tenant_id: String,
    /// A human to reach about this tenant (optional).
    pub email: Option<String>,
    /// The agent signing up, e.g. "claude-code" (optional).
    pub agent: Option<String>,
    /// What the tenant is for (optional).
    pub description: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignupResponse {
    /// The tenant's first API key (admin). Shown once: store it now.
    pub api_key: String,
    pub tenant_id: String,
    pub plan: String,
    pub limits: PlanLimits,
    /// Where to go next.
    pub quickstart: Quickstart,
    /// Hand this link to your human: it is how they become this tenant's
    /// owner, who approves reads of critical secrets on the approval page.
    /// Single use, valid 24 h; the first person to open it becomes owner.
    pub owner_setup_url: String,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Quickstart {
    pub docs: String,
    pub steps: String,
    pub auth_header: String,
}

/// The current key's view of its tenant: plan, usage and what the key may do.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WhoAmI {
    pub tenant_id: String,
    pub plan: String,
    pub limits: PlanLimits,
    pub usage: Usage,
    pub key_id: String,
    pub permissions: super::Permission,
    /// Project ids this key is limited to; absent means all projects.
    pub project_scope: Option<Vec<String>>,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    pub secrets: i64,
    /// Audited operations since the start of the current month (UTC).
    pub api_calls_this_month: i64,
}

// ---------------------------------------------------------------- secrets

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateSecret {
    /// Name, unique per project and environment, e.g. `STRIPE_SECRET_KEY` or `production/stripe/key`.
    #[schemars(length(min = 1, max = 256))]
    pub name: String,
    /// The secret value. Encrypted at rest; never shown in lists or logs.
    pub value: String,
    /// Defaults to `custom`.
    pub secret_type: Option<SecretType>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Project to file the secret under (optional).
    pub project_id: Option<String>,
    /// Environment such as `production` or `staging` (optional).
    pub environment: Option<String>,
    pub description: Option<String>,
    /// `standard` (default), `sensitive` or `critical`: reading a gated tier's value needs a human's approval.
    /// Any key that may write can raise a tier; only an owner can lower one.
    pub access_tier: Option<AccessTier>,
    /// `reveal` (default): reads answer the value; `masked`: reads answer a preview; `use_only`: no read
    /// answers it, only uses (latchkey run, the proxy, verify). Any writer can tighten it; only an owner can loosen it.
    pub exposure: Option<super::exposure::Exposure>,
    /// Where the server's proxy may send the value (`POST /api/v1/secrets/{id}/proxy`); none by default.
    pub bindings: Option<Vec<super::bindings::Binding>>,
    /// When reads start answering 410 SECRET_EXPIRED (RFC 3339, in the future); not with expiresIn.
    pub expires_at: Option<DateTime<Utc>>,
    /// Expire this long from now: `90d`, `24h`, `30m`; not with expiresAt.
    pub expires_in: Option<String>,
    /// Keep at most this many versions (1-100): each new version deletes the oldest beyond it.
    #[schemars(range(min = 1, max = 100))]
    pub max_versions: Option<i64>,
}

/// A change to a secret. A `value` creates a new version; metadata alone does not.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateSecret {
    /// New value: stored as the next version.
    pub value: Option<String>,
    /// New description ("" clears it).
    pub description: Option<String>,
    /// Replaces the tags.
    pub tags: Option<Vec<String>>,
    pub secret_type: Option<SecretType>,
    /// Raise the secret's access tier (`sensitive`, `critical`); lowering one is an owner's action (403 OWNER_REQUIRED).
    pub access_tier: Option<AccessTier>,
    /// Tighten the exposure (`reveal` → `masked` → `use_only`); loosening is an owner's action (403 OWNER_REQUIRED).
    pub exposure: Option<super::exposure::Exposure>,
    /// Replace the proxy's bindings; on a `masked`/`use_only` secret, only an owner may add one (403 OWNER_REQUIRED).
    pub bindings: Option<Vec<super::bindings::Binding>>,
    /// Apply only if the secret is still at this version (else 409 VERSION_CONFLICT).
    pub expected_version: Option<i64>,
}

/// A change to a secret through `PUT /api/v1/secrets/{id}`: what
/// [`UpdateSecret`] changes, and also the secret's name or environment (a
/// rename or a move, as SecretCarousel's `sc secret update --name/--env`
/// sends). The secret keeps its id, versions and values.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EditSecret {
    /// New name (a rename), as on create; the new name, project and
    /// environment must not be taken (else 409 ALREADY_EXISTS, nothing changes).
    #[schemars(length(min = 1, max = 256))]
    pub name: Option<String>,
    /// Move to this environment ("" for none), as on create; same rule.
    pub environment: Option<String>,
    /// New value: stored as the next version.
    pub value: Option<String>,
    pub description: Option<String>,
    pub tags: Option<Vec<String>>,
    pub secret_type: Option<SecretType>,
    /// Change the access tier: any key that may write can raise it; lowering it is an owner's action (403 OWNER_REQUIRED).
    pub access_tier: Option<AccessTier>,
    /// Tighten the exposure (`reveal` → `masked` → `use_only`); loosening is an owner's action (403 OWNER_REQUIRED).
    pub exposure: Option<super::exposure::Exposure>,
    /// Replace the proxy's bindings; on a `masked`/`use_only` secret, only an owner may add one (403 OWNER_REQUIRED).
    pub bindings: Option<Vec<super::bindings::Binding>>,
    /// RFC 3339, in the future; `null` clears the expiry. Not with expiresIn.
    #[serde(default, deserialize_with = "super::lifecycle::double_option")]
    pub expires_at: Option<Option<DateTime<Utc>>>,
    /// Expire this long from now: `90d`, `24h`, `30m`.
    pub expires_in: Option<String>,
    /// Keep at most this many versions (1-100); `null` keeps all.
    #[serde(default, deserialize_with = "super::lifecycle::double_option")]
    pub max_versions: Option<Option<i64>>,
    /// Apply only if the secret is still at this version (else 409 VERSION_CONFLICT).
    pub expected_version: Option<i64>,
}

impl From<UpdateSecret> for EditSecret {
    fn from(u: UpdateSecret) -> Self {
        EditSecret {
            name: None,
            environment: None,
            value: u.value,
            description: u.description,
            tags: u.tags,
            secret_type: u.secret_type,
            access_tier: u.access_tier,
            exposure: u.exposure,
            bindings: u.bindings,
            expires_at: None,
            expires_in: None,
            max_versions: None,
            expected_version: u.expected_version,
        }
    }
}

/// Create a secret, or add a version when one with this name exists in the
/// same project and environment.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetSecret {
    /// Name, unique per project and environment, e.g. `STRIPE_SECRET_KEY` or `production/stripe/key`.
    #[schemars(length(min = 1, max = 256))]
    pub name: String,
    /// The secret value. Encrypted at rest; never shown in lists or logs.
    pub value: String,
    /// Project id (optional).
    pub project_id: Option<String>,
    /// Environment such as `production` (optional).
    pub environment: Option<String>,
    /// Used when creating; on an existing secret, changes its type.
    pub secret_type: Option<SecretType>,
    /// Used when creating; on an existing secret, replaces its tags.
    pub tags: Option<Vec<String>>,
    pub description: Option<String>,
    /// `standard` (default), `sensitive` or `critical`. Raising is allowed to any writer; lowering
    /// needs a human owner (no MCP caller is one: 403 OWNER_REQUIRED).
    pub access_tier: Option<AccessTier>,
    /// `reveal` (default), `masked` or `use_only`: what reads answer. Tightening is allowed to any writer;
    /// loosening needs a human owner (403 OWNER_REQUIRED).
    pub exposure: Option<super::exposure::Exposure>,
    /// Only write if the secret is currently at this version (0 = must not exist yet).
    pub expected_version: Option<i64>,
}

/// What `set_secret` did.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SetSecretResult {
    /// True when a new secret was created, false when a new version was added.
    pub created: bool,
    pub secret: SecretMeta,
}

/// A secret's metadata. Never includes the value.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretMeta {
    pub id: String,
    /// Same as `id` (SecretCarousel's name for it).
    pub secret_id: String,
    pub name: String,
    pub secret_type: String,
    pub project_id: Option<String>,
    pub environment: Option<String>,
    pub description: Option<String>,
    pub tags: Vec<String>,
    /// The current version number.
    pub version: i64,
    /// `standard`, `sensitive` or `critical` (reading a gated tier's value needs approval).
    pub access_tier: AccessTier,
    /// `reveal`, `masked` or `use_only`: what a read of the value answers.
    pub exposure: super::exposure::Exposure,
    /// Where the server's proxy may send the value.
    pub bindings: Vec<super::bindings::Binding>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When reads start answering 410 SECRET_EXPIRED; absent when it never expires.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// How many versions are kept; absent when all are.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_versions: Option<i64>,
    /// Only in the restorable listing (`deleted=true`): when it was deleted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<DateTime<Utc>>,
    /// Only in the restorable listing: until when it can be restored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restorable_until: Option<DateTime<Utc>>,
    /// After a rotation with a grace period, until it ends: the replaced
    /// version, still readable by number (then 410 VERSION_RETIRED).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retiring_version: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grace_ends_at: Option<DateTime<Utc>>,
}

impl TryFrom<&SecretRow> for SecretMeta {
    type Error = Error;

    fn try_from(s: &SecretRow) -> Result<Self> {
        Ok(SecretMeta {
            id: s.id.clone(),
            secret_id: s.id.clone(),
            name: s.name.clone(),
            secret_type: s.secret_type.clone(),
            project_id: s.project_id.clone(),
            environment: (!s.environment.is_empty()).then(|| s.environment.clone()),
            description: s.description.clone(),
            tags: json_list(&s.tags, "secrets", &s.id, "tags")?,
            version: s.current_version,
            access_tier: AccessTier::of_row(s)?,
            exposure: super::exposure::Exposure::of_row(s)?,
            bindings: super::bindings::of_row(&s.bindings, &s.id)?,
            created_at: time(s.created_at, "secrets", &s.id, "created_at")?,
            updated_at: time(s.updated_at, "secrets", &s.id, "updated_at")?,
            expires_at: opt_time(s.expires_at, "secrets", &s.id, "expires_at")?,
            max_versions: s.max_versions,
            deleted_at: opt_time(s.deleted_at, "secrets", &s.id, "deleted_at")?,
            restorable_until: None,
            retiring_version: super::rotation::retiring(s, crate::store::now_millis()).map(|r| r.0),
            grace_ends_at: super::rotation::retiring(s, crate::store::now_millis())
                .map(|r| time(r.1, "secrets", &s.id, "retiring_until"))
                .transpose()?,
        })
    }
}

/// A secret with its decrypted value: the answer to an explicit, audited read.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretValue {
    #[serde(flatten)]
    pub meta: SecretMeta,
    /// The value; `null` for a `masked` secret, whose read answers `masked` instead.
    pub value: Option<String>,
    /// For a `masked` secret only: a preview, the length and a fingerprint of the value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub masked: Option<super::exposure::Masked>,
    /// The version this value belongs to (the current one unless an older was asked for).
    pub value_version: i64,
}

/// A filter it does not know is refused rather than ignored: ignored, a typo
/// (or SecretCarousel's `category`, which Latchkey has not) would list every
/// secret as if it matched, and an agent may act on what it lists.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListSecrets {
    pub secret_type: Option<SecretType>,
    pub environment: Option<String>,
    pub project_id: Option<String>,
    /// Only secrets carrying this tag.
    pub tag: Option<String>,
    /// Case-insensitive substring of name, description or a tag.
    pub search: Option<String>,
    /// Same as `search` (SecretCarousel's CLI sends `q`); both, if different, are refused.
    pub q: Option<String>,
    /// Page size, 1-500 (default 50).
    #[schemars(range(min = 1, max = 500))]
    pub limit: Option<i64>,
    /// `nextCursor` from the previous page.
    pub cursor: Option<String>,
    /// Also list expired secrets (left out by default).
    pub include_expired: Option<bool>,
    /// List only soft-deleted secrets that can still be restored, with deletedAt and restorableUntil.
    pub deleted: Option<bool>,
    /// Only secrets whose path (`{environment}/{name}`, the bare name without an environment) starts with this.
    pub prefix: Option<String>,
    /// `GET /api/v1/secrets/expiring`'s window; not a query parameter.
    #[serde(skip)]
    #[schemars(skip)]
    pub expiring_within_days: Option<i64>,
}

/// Which version of a secret to read. A misspelt `version` is refused:
/// ignored, it would answer the current value as if it were the one asked for.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReadVersion {
    /// An older version number; absent means the current one.
    pub version: Option<i64>,
    /// Why you need the value (at most 500 characters): shown to the human
    /// who decides when the secret's tier needs an approval.
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretPage {
    pub secrets: Vec<SecretMeta>,
    pub count: usize,
    pub has_more: bool,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VersionInfo {
    pub version: i64,
    pub created_at: DateTime<Utc>,
    /// The API key id that wrote this version.
    pub created_by: String,
    pub current: bool,
}

impl VersionInfo {
    pub fn new(secret_id: &str, v: &VersionMeta, current: i64) -> Result<Self> {
        Ok(VersionInfo {
            version: v.version,
            created_at: time(v.created_at, "secret_versions", &format_args!("{secret_id}@{}", v.version), "created_at")?,
            created_by: v.created_by.clone(),
            current: v.version == current,
        })
    }
}

/// A page of a secret's version history, newest first.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VersionPage {
    /// Page size, 1-1000 (default 100).
    #[schemars(range(min = 1, max = 1000))]
    pub limit: Option<i64>,
    /// `nextCursor` from the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VersionList {
    pub secret_id: String,
    pub name: String,
    pub current_version: i64,
    /// Newest first.
    pub versions: Vec<VersionInfo>,
    pub has_more: bool,
    /// Pass as `cursor` to get older versions; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Deleted {
    pub id: String,
    pub deleted: bool,
    /// A secret's soft delete: until when it can be restored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restorable_until: Option<DateTime<Utc>>,
}

// ---------------------------------------------------------------- projects

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateProject {
    /// Unique within the tenant.
    pub name: String,
    pub description: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateProject {
    /// A new name (unique within the tenant).
    pub name: Option<String>,
    /// A new description ("" clears it).
    pub description: Option<String>,
    /// Replaces the tags.
    pub tags: Option<Vec<String>>,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProjectView {
    pub id: String,
    pub project_id: String,
    pub name: String,
    pub description: Option<String>,
    pub tags: Vec<String>,
    pub secret_count: i64,
    /// The environments its secrets may name (see `POST /api/v1/projects/{id}/environments`).
    pub environments: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl TryFrom<&ProjectRow> for ProjectView {
    type Error = Error;

    fn try_from(p: &ProjectRow) -> Result<Self> {
        Ok(ProjectView {
            id: p.id.clone(),
            project_id: p.id.clone(),
            name: p.name.clone(),
            description: p.description.clone(),
            tags: json_list(&p.tags, "projects", &p.id, "tags")?,
            secret_count: p.secret_count,
            environments: Vec::new(),
            created_at: time(p.created_at, "projects", &p.id, "created_at")?,
            updated_at: time(p.updated_at, "projects", &p.id, "updated_at")?,
        })
    }
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProjectList {
    pub projects: Vec<ProjectView>,
    pub count: usize,
}

// ---------------------------------------------------------------- API keys

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateApiKey {
    pub name: String,
    /// read < write < admin; at most the creating key's own permission.
    pub permissions: super::Permission,
    /// Limit the key to these project ids (within the creating key's own scope).
    #[serde(default)]
    pub project_scope: Vec<String>,
    /// When the key stops working (RFC 3339).
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateApiKey {
    /// A new name.
    pub name: Option<String>,
    /// read < write < admin; at most your own key's permission.
    pub permissions: Option<super::Permission>,
    /// Limit the key to these project ids (within your own key's scope); [] for
    /// the whole tenant, if your own key has no project scope.
    pub project_scope: Option<Vec<String>>,
    /// A new expiry (RFC 3339), or `null` to make the key never expire;
    /// absent leaves it as it is.
    #[serde(default, deserialize_with = "present")]
    #[schemars(transform = no_default)]
    pub expires_at: Option<Option<DateTime<Utc>>>,
}

/// Absent and `null` mean different things where [`present`] reads a field,
/// so its schema must not tell a client that leaving it out means `null`.
fn no_default(schema: &mut schemars::Schema) {
    schema.remove("default");
}

/// `Some(None)` for an explicit `null`, so that absent and `null` differ.
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// An API key as listed: never the key itself, only its prefix.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyView {
    pub id: String,
    pub name: String,
    /// The first characters of the key, to recognise it.
    pub prefix: String,
    pub permissions: String,
    pub project_scope: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked: bool,
    pub revoked_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl ApiKeyView {
    /// The view of a stored key, or an integrity error if a field of it does
    /// not parse. An unreadable project scope must not list as none, which
    /// means the whole tenant.
    pub fn read(k: &ApiKeyRow) -> Result<Self> {
        let at = |ms: Millis, field| time(ms, "api_keys", &k.id, field);
        Ok(ApiKeyView {
            id: k.id.clone(),
            name: k.name.clone(),
            prefix: k.prefix.clone(),
            permissions: k.permission.clone(),
            project_scope: json_list(&k.project_scope, "api_keys", &k.id, "project_scope")?,
            expires_at: k.expires_at.map(|t| at(t, "expires_at")).transpose()?,
            revoked: k.revoked_at.is_some(),
            revoked_at: k.revoked_at.map(|t| at(t, "revoked_at")).transpose()?,
            created_at: at(k.created_at, "created_at")?,
        })
    }
}

/// A newly issued key: the only time the full key is shown.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssuedApiKey {
    /// The full key. Shown once; only its hash is stored.
    pub api_key: String,
    #[serde(flatten)]
    pub key: ApiKeyView,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyList {
    pub api_keys: Vec<ApiKeyView>,
    pub count: usize,
}

// ---------------------------------------------------------------- audit

/// Filters it does not know are refused: ignored, a misspelt `action` would
/// answer the whole trail as if it matched.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuditQuery {
    /// e.g. `secret.read`, `secret.create`, `apikey.revoke`, `auth.failed`.
    pub action: Option<String>,
    /// e.g. `secret`, `project`, `api_key`, `tenant`, `audit`.
    pub resource_type: Option<String>,
    /// The acting key's id (or `operator`, `system`).
    pub actor: Option<String>,
    /// `rest`, `mcp`, `cli`, `page`, `job` or `system`.
    pub front: Option<String>,
    /// An MCP tool's name, e.g. `get_secret`.
    pub tool: Option<String>,
    /// RFC 3339 time or `YYYY-MM-DD` (inclusive).
    pub start_date: Option<String>,
    /// RFC 3339 time or `YYYY-MM-DD` (inclusive, whole day).
    pub end_date: Option<String>,
    /// 1-1000, default 100.
    #[schemars(range(min = 1, max = 1000))]
    pub limit: Option<i64>,
    /// Entries to skip, 0-10000. Deeper: follow `nextCursor`, or narrow the dates.
    #[schemars(range(min = 0, max = 10000))]
    pub offset: Option<i64>,
    /// `nextCursor` from the previous page: the page starts after it (instead of `offset`).
    pub cursor: Option<String>,
}

/// As [`AuditQuery`], unknown parameters are refused.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuditExportQuery {
    /// `json` (the default) or `csv`.
    pub format: Option<ExportFormat>,
    /// As for `GET /api/v1/audit`.
    pub action: Option<String>,
    /// As for `GET /api/v1/audit`.
    pub resource_type: Option<String>,
    /// As for `GET /api/v1/audit`.
    pub actor: Option<String>,
    /// As for `GET /api/v1/audit`.
    pub front: Option<String>,
    /// As for `GET /api/v1/audit`.
    pub tool: Option<String>,
    /// RFC 3339 time or `YYYY-MM-DD` (inclusive).
    pub start_date: Option<String>,
    /// RFC 3339 time or `YYYY-MM-DD` (inclusive, whole day).
    pub end_date: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    #[default]
    Json,
    Csv,
}

/// The JSON export's shape. It is written as it is read, page by page, so
/// this type only describes it (in the OpenAPI document).
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct AuditExport {
    /// Every matching entry, newest first.
    pub logs: Vec<AuditEntry>,
    /// How many `logs` holds.
    pub count: i64,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    pub id: i64,
    pub timestamp: DateTime<Utc>,
    pub action: String,
    pub resource_type: String,
    pub resource_id: Option<String>,
    /// The API key id that acted.
    pub actor: String,
    /// `rest`, `mcp` or `cli`.
    pub front: String,
    /// `success`, `denied`, `not_found`, `rejected` or `error`.
    pub outcome: String,
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
    pub detail: Option<serde_json::Value>,
    /// The agent that acted: the MCP client's `name/version` from
    /// `initialize`, else the request's User-Agent.
    pub client: Option<String>,
    /// The MCP tool whose call made the entry.
    pub tool: Option<String>,
    /// The reason the caller gave, where the action takes one.
    pub reason: Option<String>,
}

impl TryFrom<&AuditRow> for AuditEntry {
    type Error = Error;

    fn try_from(a: &AuditRow) -> Result<Self> {
        Ok(AuditEntry {
            id: a.id,
            timestamp: time(a.at, "audit_log", &a.id, "at")?,
            action: a.action.clone(),
            resource_type: a.resource_type.clone(),
            resource_id: a.resource_id.clone(),
            actor: a.actor.clone(),
            front: a.front.clone(),
            outcome: a.outcome.clone(),
            ip_address: a.ip.clone(),
            user_agent: a.user_agent.clone(),
            client: a.client.clone(),
            tool: a.tool.clone(),
            reason: a.reason.clone(),
            detail: a
                .detail
                .as_deref()
                .map(|d| serde_json::from_str(d).map_err(|_| unreadable("audit_log", &a.id, "detail")))
                .transpose()?,
        })
    }
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditPage {
    pub logs: Vec<AuditEntry>,
    /// Entries matching the filters and dates. Exact when `totalIsLowerBound`
    /// is false; otherwise at least this many (counting stops at 10000 matches,
    /// or, with an action or resourceType filter, after the 100000 newest
    /// entries in the date range).
    pub total: i64,
    /// `total` is a lower bound: more entries may match than were counted.
    pub total_is_lower_bound: bool,
    pub limit: i64,
    pub offset: i64,
    /// More entries may match past this page; pass `nextCursor` as `cursor`.
    /// With an action or resourceType filter, a page examines the 100000
    /// next entries, so it may hold fewer than `limit` (even none) while
    /// `hasMore` is true.
    pub has_more: bool,
    /// Pass as `cursor` to get the next page; null when `hasMore` is false.
    pub next_cursor: Option<String>,
}
