//! Tool parameters that exist only on the MCP side: ways to name a secret
//! (by id, or by name + project + environment) that REST expresses in its path.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::vault::Permission;
use crate::vault::secrets::SecretRef;
use crate::vault::views::{SecretType, UpdateApiKey, UpdateProject};

/// Which secret: give `id`, or `name` (with `projectId` / `environment` when the
/// secret was filed under them).
///
/// Arguments it does not know are refused, not ignored: an agent that writes
/// `env` for `environment` would otherwise delete the secret of the default
/// environment. (It is flattened into other tools' parameters, where serde
/// cannot deny unknown fields, so it collects them and refuses them itself.)
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretTarget {
    /// The secret's id (from list_secrets or set_secret).
    pub id: Option<String>,
    /// The secret's name, e.g. `STRIPE_SECRET_KEY`; used when no id is given.
    pub name: Option<String>,
    /// The project the named secret is filed under, if any.
    pub project_id: Option<String>,
    /// The environment of the named secret, if any.
    pub environment: Option<String>,
    #[serde(flatten)]
    #[schemars(skip)]
    unknown: std::collections::BTreeMap<String, serde_json::Value>,
}

impl SecretTarget {
    pub fn as_ref(&self) -> Result<SecretRef<'_>> {
        if !self.unknown.is_empty() {
            let names: Vec<&str> = self.unknown.keys().map(String::as_str).collect();
            return Err(Error::InvalidRequest(format!("unknown argument(s): {}", names.join(", "))));
        }
        match (&self.id, &self.name) {
            (Some(_), Some(_)) => Err(Error::InvalidRequest("give the secret's id or its name, not both".into())),
            (Some(id), None) => Ok(SecretRef::Id(id)),
            (None, Some(name)) => {
                Ok(SecretRef::Name { name, project_id: self.project_id.as_deref(), environment: self.environment.as_deref() })
            }
            (None, None) => {
                Err(Error::InvalidRequest("give the secret's id, or its name (with projectId and environment if it has them)".into()))
            }
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GetSecretParams {
    #[serde(flatten)]
    pub target: SecretTarget,
    /// An older version number; absent means the current one.
    pub version: Option<i64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VersionsParams {
    #[serde(flatten)]
    pub target: SecretTarget,
    /// Page size, 1-1000 (default 100).
    #[schemars(range(min = 1, max = 1000))]
    pub limit: Option<i64>,
    /// `nextCursor` from the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateMetadataParams {
    #[serde(flatten)]
    pub target: SecretTarget,
    /// New description ("" clears it).
    pub description: Option<String>,
    /// Replaces the tags.
    pub tags: Option<Vec<String>>,
    pub secret_type: Option<SecretType>,
    /// Apply only if the secret is still at this version.
    pub expected_version: Option<i64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IdParams {
    /// The resource's id.
    pub id: String,
}

/// A project's id and what to change; absent fields stay as they are.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateProjectParams {
    /// The project's id.
    pub id: String,
    /// A new name (unique within the tenant).
    pub name: Option<String>,
    /// A new description ("" clears it).
    pub description: Option<String>,
    /// Replaces the tags.
    pub tags: Option<Vec<String>>,
}

impl UpdateProjectParams {
    pub fn split(self) -> (String, UpdateProject) {
        (self.id, UpdateProject { name: self.name, description: self.description, tags: self.tags })
    }
}

/// An API key's id and what to change; absent fields stay as they are.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateApiKeyParams {
    /// The key's id (from list_api_keys), not the key itself.
    pub id: String,
    /// A new name.
    pub name: Option<String>,
    /// read < write < admin; at most your own key's permission.
    pub permissions: Option<Permission>,
    /// Limit the key to these project ids (within your own key's scope); [] for
    /// the whole tenant, if your own key has no project scope.
    pub project_scope: Option<Vec<String>>,
    /// When the key stops working (RFC 3339), or null to make it never expire.
    #[serde(default, deserialize_with = "crate::vault::views::present")]
    #[schemars(transform = crate::vault::views::no_default)]
    pub expires_at: Option<Option<DateTime<Utc>>>,
}

impl UpdateApiKeyParams {
    pub fn split(self) -> (String, UpdateApiKey) {
        let change =
            UpdateApiKey { name: self.name, permissions: self.permissions, project_scope: self.project_scope, expires_at: self.expires_at };
        (self.id, change)
    }
}
