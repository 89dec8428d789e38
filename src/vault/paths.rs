//! Secrets addressed by path (ScaiVault's and AgentSecretStore's
//! addressing): `{environment}/{name}`, or the bare name of a secret without
//! an environment, as `scopes::path` spells it; the project, which the path
//! does not hold, comes from `projectId` as in a listing.
//!
//! Reading a path back into (environment, name) is ambiguous, since a name
//! may hold `/` itself. The rule is simple and exact: first the first
//! segment as the environment and the rest as the name; if no live secret is
//! there, the whole path as the name of a secret without an environment. A
//! write that finds neither creates the first reading (a path without `/`:
//! the bare name).

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::lifecycle::{DeleteParams, DeleteResult};
use super::secrets::SecretRef;
use super::views::*;
use super::{Principal, Vault, names};
use crate::error::{Error, Result};

/// `GET /api/v1/secrets/path/{*path}`.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PathRead {
    pub project_id: Option<String>,
    /// An older version number; absent means the current one.
    pub version: Option<i64>,
    /// Why you need the value (shown to the approver of a gated tier).
    pub reason: Option<String>,
}

/// `PUT` and `DELETE /api/v1/secrets/path/{*path}`'s query.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PathWriteQuery {
    pub project_id: Option<String>,
}

/// `DELETE /api/v1/secrets/path/{*path}`'s query: the project, and the
/// delete's own parameters.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PathDelete {
    pub project_id: Option<String>,
    /// Erase now (admin keys only).
    pub permanent: Option<bool>,
    /// Delete only this (non-current) version.
    pub version: Option<i64>,
}

/// `PUT /api/v1/secrets/path/{*path}`: creates the secret there, or writes
/// its next version; the fields as on create.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PathWrite {
    pub value: String,
    pub secret_type: Option<SecretType>,
    pub description: Option<String>,
    pub tags: Option<Vec<String>>,
    pub access_tier: Option<AccessTier>,
    pub exposure: Option<super::exposure::Exposure>,
    /// RFC 3339; on an existing secret `null` clears the expiry.
    #[serde(default, deserialize_with = "super::lifecycle::double_option")]
    pub expires_at: Option<Option<DateTime<Utc>>>,
    /// `90d`, `24h`, `30m` from now.
    pub expires_in: Option<String>,
    /// Keep at most this many versions (1-100).
    #[serde(default, deserialize_with = "super::lifecycle::double_option")]
    pub max_versions: Option<Option<i64>>,
    /// Only write if the secret is at this version (0: must not exist yet).
    pub expected_version: Option<i64>,
}

/// The readings of a path, in the order they are tried: (environment, name).
pub fn readings(path: &str) -> Vec<(String, String)> {
    let mut out = Vec::with_capacity(2);
    if let Some((env, name)) = path.split_once('/')
        && !env.is_empty()
        && !name.is_empty()
        && names::environment(Some(env)).is_ok()
    {
        out.push((env.to_owned(), name.to_owned()));
    }
    out.push((String::new(), path.to_owned()));
    out
}

impl Vault {
    /// The (environment, name) a path names: the first reading with a live
    /// secret, else the first reading (where a write creates it).
    async fn resolve_path(&self, p: &Principal, project_id: Option<&str>, path: &str) -> Result<((String, String), bool)> {
        if path.is_empty() {
            return Err(Error::InvalidRequest("the path is empty: give {environment}/{name} or a bare name".into()));
        }
        let readings = readings(path);
        for r in &readings {
            if let Some(row) = self.store.find_secret(&p.tenant_id, project_id, &r.0, &r.1).await?
                && row.deleted_at.is_none()
            {
                return Ok((r.clone(), true));
            }
        }
        Ok((readings.into_iter().next().expect("one reading at least"), false))
    }

    pub async fn read_path(&self, p: &Principal, path: &str, q: PathRead) -> Result<SecretValue> {
        let project = q.project_id.as_deref().filter(|s| !s.is_empty());
        let ((env, name), _) = self.resolve_path(p, project, path).await?;
        let r = SecretRef::Name { name: &name, project_id: project, environment: Some(&env) };
        self.read_secret(p, r, &ReadVersion { version: q.version, reason: q.reason }).await
    }

    /// Creates the secret at `path`, or writes its next version: `created` says which.
    pub async fn write_path(&self, p: &Principal, path: &str, project_id: Option<String>, w: PathWrite) -> Result<SetSecretResult> {
        let project = project_id.filter(|s| !s.is_empty());
        let ((env, name), exists) = self.resolve_path(p, project.as_deref(), path).await?;
        if !exists && w.expected_version.is_none_or(|v| v == 0) {
            let create = CreateSecret {
                name: name.clone(),
                value: w.value.clone(),
                secret_type: w.secret_type,
                tags: w.tags.clone().unwrap_or_default(),
                project_id: project.clone(),
                environment: Some(env.clone()),
                description: w.description.clone(),
                access_tier: w.access_tier,
                exposure: w.exposure,
                bindings: None,
                expires_at: w.expires_at.flatten(),
                expires_in: w.expires_in.clone(),
                max_versions: w.max_versions.flatten(),
            };
            match self.create_secret(p, create).await {
                Ok(secret) => return Ok(SetSecretResult { created: true, secret }),
                // Created meanwhile: write its next version below.
                Err(Error::AlreadyExists(_)) if w.expected_version.is_none() => {}
                Err(e) => return Err(e),
            }
        }
        let r = SecretRef::Name { name: &name, project_id: project.as_deref(), environment: Some(&env) };
        let edit = EditSecret {
            value: Some(w.value),
            description: w.description,
            tags: w.tags,
            secret_type: w.secret_type,
            access_tier: w.access_tier,
            exposure: w.exposure,
            expires_at: w.expires_at,
            expires_in: w.expires_in,
            max_versions: w.max_versions,
            expected_version: w.expected_version.filter(|v| *v != 0),
            ..Default::default()
        };
        if w.expected_version == Some(0) {
            return Err(Error::VersionConflict { expected: 0, current: self.read_meta_version(p, &r).await? });
        }
        Ok(SetSecretResult { created: false, secret: self.update_secret(p, r, edit).await? })
    }

    async fn read_meta_version(&self, p: &Principal, r: &SecretRef<'_>) -> Result<i64> {
        Ok(self.visible_secret(p, r, super::scopes::ScopeAction::Write).await?.current_version)
    }

    pub async fn delete_path(&self, p: &Principal, path: &str, q: PathDelete) -> Result<DeleteResult> {
        let project = q.project_id.as_deref().filter(|s| !s.is_empty());
        let ((env, name), _) = self.resolve_path(p, project, path).await?;
        let r = SecretRef::Name { name: &name, project_id: project, environment: Some(&env) };
        self.delete_secret_with(p, r, DeleteParams { permanent: q.permanent, version: q.version }).await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_path_reads_as_environment_and_name_then_as_a_bare_name() {
        let r = super::readings("production/stripe/key");
        assert_eq!(r, vec![("production".into(), "stripe/key".into()), (String::new(), "production/stripe/key".into())]);
        assert_eq!(super::readings("TOKEN"), vec![(String::new(), "TOKEN".into())]);
        assert_eq!(super::readings("/x"), vec![(String::new(), "/x".into())]);
    }
}
