//! Tool parameters: a vault request type (`vault/views.rs`, the same one REST
//! takes as a body or query) plus what REST expresses in its path, namely
//! which resource: an id, or a secret by id or by name + project + environment.
//!
//! The request type is flattened in, so it is declared (and documented) once.
//! serde cannot deny unknown fields across `flatten`, so each one that
//! flattens ends with something that takes the arguments no field took and refuses them:
//! [`SecretTarget`] or [`NoOtherArguments`]. Flatten order matters: the
//! request type comes first and takes its fields, the refusing part last.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{Error, Result};
use crate::vault::secrets::SecretRef;
use crate::vault::views::{EditSecret, ReadVersion, SecretValue, UpdateApiKey, UpdateProject, UpdateSecret, VersionPage};

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
    unknown: BTreeMap<String, serde_json::Value>,
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

/// The arguments the fields before it did not take, refused while the
/// parameters are read, so the call fails as INVALID_REQUEST before it runs.
#[derive(Debug)]
pub struct NoOtherArguments;

impl<'de> Deserialize<'de> for NoOtherArguments {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let rest = BTreeMap::<String, serde::de::IgnoredAny>::deserialize(d)?;
        if rest.is_empty() {
            return Ok(NoOtherArguments);
        }
        let names: Vec<&str> = rest.keys().map(String::as_str).collect();
        Err(serde::de::Error::custom(format_args!("unknown argument(s): {}", names.join(", "))))
    }
}

/// `get_secret`: a secret and, optionally, which version.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct GetSecretParams {
    #[serde(flatten)]
    pub read: ReadVersion,
    #[serde(flatten)]
    pub target: SecretTarget,
}

/// `list_secret_versions`: a secret and a page of its history.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct VersionsParams {
    #[serde(flatten)]
    pub page: VersionPage,
    #[serde(flatten)]
    pub target: SecretTarget,
}

/// `update_secret_metadata`: a secret and the change REST's `PUT
/// /api/v1/secrets/{id}` takes, without its `value` (the tool writes no new
/// version; `set_secret` does), which is left out of the schema and refused.
/// `name` and `environment` say which secret, so a rename or a move is
/// `newName` / `newEnvironment`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = without_value)]
pub struct UpdateMetadataParams {
    /// Rename the secret (same rules as a new name; a taken name is 409 ALREADY_EXISTS).
    new_name: Option<String>,
    /// Move the secret to this environment ("" for none; a taken slot is 409 ALREADY_EXISTS).
    new_environment: Option<String>,
    #[serde(flatten)]
    change: UpdateSecret,
    #[serde(flatten)]
    pub target: SecretTarget,
}

impl UpdateMetadataParams {
    /// The change, taken out; a `value` in it is refused.
    pub fn change(&mut self) -> Result<EditSecret> {
        if self.change.value.is_some() {
            return Err(Error::InvalidRequest(
                "unknown argument(s): value (update_secret_metadata changes no value; set_secret writes a new version)".into(),
            ));
        }
        let mut edit = EditSecret::from(std::mem::take(&mut self.change));
        (edit.name, edit.environment) = (self.new_name.take(), self.new_environment.take());
        Ok(edit)
    }
}

fn without_value(schema: &mut schemars::Schema) {
    if let Some(properties) = schema.get_mut("properties").and_then(|p| p.as_object_mut()) {
        properties.remove("value");
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IdParams {
    /// The resource's id.
    pub id: String,
}

/// A project's id and what to change; absent fields stay as they are.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(extend("additionalProperties" = false))]
pub struct UpdateProjectParams {
    /// The project's id.
    pub id: String,
    #[serde(flatten)]
    pub change: UpdateProject,
    #[serde(flatten)]
    #[schemars(skip)]
    _rest: NoOtherArguments,
}

/// An API key's id and what to change; absent fields stay as they are.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(extend("additionalProperties" = false))]
pub struct UpdateApiKeyParams {
    /// The key's id (from list_api_keys), not the key itself.
    pub id: String,
    #[serde(flatten)]
    pub change: UpdateApiKey,
    #[serde(flatten)]
    #[schemars(skip)]
    _rest: NoOtherArguments,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read<T: serde::de::DeserializeOwned>(args: serde_json::Value) -> std::result::Result<T, String> {
        serde_json::from_value(args).map_err(|e| e.to_string())
    }

    /// Flattened, the view types still read absent, `null` and a value apart,
    /// and whatever no field takes is refused, by name.
    #[test]
    fn flattened_requests_read_as_they_do_alone_and_refuse_the_rest() {
        let absent: UpdateApiKeyParams = read(json!({ "id": "k", "name": "n" })).unwrap();
        assert_eq!((absent.id.as_str(), absent.change.name.as_deref(), absent.change.expires_at), ("k", Some("n"), None));
        let cleared: UpdateApiKeyParams = read(json!({ "id": "k", "expiresAt": null })).unwrap();
        assert_eq!(cleared.change.expires_at, Some(None));
        let typo = read::<UpdateApiKeyParams>(json!({ "id": "k", "permission": "read" })).unwrap_err();
        assert!(typo.contains("unknown argument(s): permission"), "{typo}");
        assert!(read::<UpdateApiKeyParams>(json!({ "id": "k", "permissions": "root" })).is_err());
        assert!(read::<UpdateApiKeyParams>(json!({ "name": "n" })).unwrap_err().contains("missing field `id`"));

        let project: UpdateProjectParams = read(json!({ "id": "p", "tags": ["a"] })).unwrap();
        assert_eq!(project.change.tags, Some(vec!["a".to_owned()]));
        assert!(read::<UpdateProjectParams>(json!({ "id": "p", "title": "x" })).unwrap_err().contains("unknown argument(s): title"));

        let page: VersionsParams = read(json!({ "name": "DB", "limit": 5, "cursor": "c" })).unwrap();
        assert_eq!((page.page.limit, page.page.cursor.as_deref()), (Some(5), Some("c")));
        assert!(matches!(page.target.as_ref(), Ok(SecretRef::Name { name: "DB", .. })));
        let misnamed: VersionsParams = read(json!({ "name": "DB", "limit": 5, "env": "prod" })).unwrap();
        assert!(misnamed.target.as_ref().is_err_and(|e| e.to_string().contains("env")));

        let get: GetSecretParams = read(json!({ "id": "s", "version": 2 })).unwrap();
        assert_eq!(get.read.version, Some(2));
        assert!(read::<GetSecretParams>(json!({ "id": 5 })).is_err());

        let mut meta: UpdateMetadataParams = read(json!({ "id": "s", "description": "d", "expectedVersion": 3 })).unwrap();
        let change = meta.change().unwrap();
        assert_eq!((change.description.as_deref(), change.expected_version, change.value), (Some("d"), Some(3), None));
        let mut valued: UpdateMetadataParams = read(json!({ "id": "s", "value": "v" })).unwrap();
        assert!(valued.change().is_err_and(|e| e.to_string().contains("value")));
    }

    /// The tool schemas say what the parameters take: no `value` for metadata,
    /// no other fields where the parameters refuse them.
    #[test]
    fn schemas_match_what_is_read() {
        let meta = serde_json::to_value(schemars::schema_for!(UpdateMetadataParams)).unwrap();
        assert!(meta["properties"].get("value").is_none() && meta["properties"].get("description").is_some(), "{meta}");
        for schema in [schemars::schema_for!(UpdateApiKeyParams), schemars::schema_for!(UpdateProjectParams)] {
            let schema = serde_json::to_value(schema).unwrap();
            assert_eq!((schema["additionalProperties"].clone(), schema["required"].clone()), (json!(false), json!(["id"])), "{schema}");
        }
    }
}

/// `approval_status`: which approval request.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApprovalParams {
    /// The approvalId get_secret answered.
    pub approval_id: String,
}

/// `wait_for_approval`: which request, and for how long at most.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WaitParams {
    /// The approvalId get_secret answered.
    pub approval_id: String,
    /// How long to wait for a decision, 1-300 seconds (default 120).
    pub timeout_seconds: Option<u64>,
}

/// What `get_secret` answers: the secret and its value or, for a secret
/// whose tier needs a human's approval and no live grant, the request to
/// show the user (`approvalRequired: true`), without any value.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRead {
    #[serde(flatten)]
    pub secret: Option<SecretValue>,
    /// True when a human must approve this read first: show approvalUrl to your user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval_required: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval_id: Option<String>,
    /// The page where the user approves or denies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval_url: Option<String>,
}

/// `request_token`: a scoped token to hand to a sub-agent or a script, or
/// (with `approvalId` alone) the token an owner approved.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestTokenParams {
    /// `secrets:{read|write|list|delete|*}:{glob}`, the glob matched against a
    /// secret's path `{environment}/{name}` (`production/gemini/*`).
    /// Required unless approvalId is given.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Seconds, or "15m", "1h", "7d"; default 1h.
    pub ttl: Option<crate::vault::tokens::Ttl>,
    /// How many requests the token answers.
    pub max_uses: Option<i64>,
    /// Client addresses and CIDRs it may be used from.
    pub ip_allowlist: Option<Vec<String>>,
    /// Project ids within your own key's scope.
    #[serde(default)]
    pub project_scope: Vec<String>,
    /// Why the token is needed: shown to the owner who approves.
    pub reason: Option<String>,
    /// Fetch the token of this approved request (the approvalId an earlier
    /// request_token answered) instead of asking for a new one.
    pub approval_id: Option<String>,
}

impl RequestTokenParams {
    /// The approval to redeem, or the token request to make.
    pub fn into_request(self) -> Result<std::result::Result<String, crate::vault::tokens::TokenRequest>> {
        match self.approval_id {
            Some(id)
                if self.scopes.is_empty()
                    && self.ttl.is_none()
                    && self.max_uses.is_none()
                    && self.ip_allowlist.is_none()
                    && self.project_scope.is_empty()
                    && self.reason.is_none() =>
            {
                Ok(Ok(id))
            }
            Some(_) => Err(Error::InvalidRequest("give approvalId alone to fetch an approved token, or the request without it".into())),
            None => Ok(Err(crate::vault::tokens::TokenRequest {
                scopes: self.scopes,
                ttl: self.ttl,
                max_uses: self.max_uses,
                ip_allowlist: self.ip_allowlist,
                project_scope: self.project_scope,
                reason: self.reason,
                approval_id: None,
            })),
        }
    }
}
