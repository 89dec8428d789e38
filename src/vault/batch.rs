//! Many secrets of one place at once: `.env` import and export, and promotion
//! from one environment to another. [`Vault::upsert_many`] plans every
//! name first (`create | update | unchanged | skipped`), and a real run
//! writes the whole plan in ONE transaction with its audit entries
//! (`Store::write_batch`): all or nothing.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::exposure::{Exposure, Mechanism, Purpose};
use super::principal::WithDetail;
use super::scopes::ScopeAction;
use super::secrets::{MAX_LIST_PAGE, SecretRef};
use super::views::{AccessTier, ReadVersion, SecretType};
use super::{Permission, Principal, Vault, audited, names, plans};
use crate::crypto::SecretAad;
use crate::error::{Error, Result};
use crate::store::{BatchWrite, SecretFilter, SecretRow, VersionRow, now_millis};

/// At most this many pages of [`MAX_LIST_PAGE`] secrets are read for one
/// environment (a bound on the work of one request).
const MAX_PAGES: usize = 200;

/// What a batch did, or would do (`applied: false`): names only, never values.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BatchPlan {
    /// New secrets.
    pub created: Vec<String>,
    /// Existing secrets given a new version (their value differed).
    pub updated: Vec<String>,
    /// Existing secrets whose value is already the one given.
    pub unchanged: Vec<String>,
    /// Existing secrets with another value, left alone (`overwrite` was false).
    pub skipped: Vec<String>,
    /// Whether the plan was written (false for a dry run).
    pub applied: bool,
}

/// How a secret the batch creates is made (a promotion copies its source's).
#[derive(Debug, Clone)]
pub struct Shape {
    pub secret_type: String,
    pub description: Option<String>,
    /// JSON array, as stored.
    pub tags: String,
    pub access_tier: String,
    pub exposure: String,
    /// JSON array, as stored.
    pub bindings: String,
}

impl Default for Shape {
    fn default() -> Self {
        Shape {
            secret_type: SecretType::Custom.as_str().to_owned(),
            description: None,
            tags: "[]".into(),
            access_tier: AccessTier::Standard.as_str().to_owned(),
            exposure: Exposure::Reveal.as_str().to_owned(),
            bindings: "[]".into(),
        }
    }
}

impl Shape {
    fn of(row: &SecretRow) -> Self {
        Shape {
            secret_type: row.secret_type.clone(),
            description: row.description.clone(),
            tags: row.tags.clone(),
            access_tier: row.access_tier.clone(),
            exposure: row.exposure.clone(),
            bindings: row.bindings.clone(),
        }
    }
}

/// One name and value of a batch.
pub struct BatchEntry {
    pub name: String,
    pub value: Zeroizing<String>,
    /// For a create: `None` is a custom, standard, reveal secret.
    pub shape: Option<Shape>,
}

/// A batch write into one project and environment.
pub struct UpsertMany {
    pub project_id: Option<String>,
    pub environment: String,
    pub entries: Vec<BatchEntry>,
    /// Write a new version of an existing secret whose value differs (else skip it).
    pub overwrite: bool,
    pub dry_run: bool,
    /// The summary audit entry's action (`secrets.imported`, `secrets.promoted`).
    pub action: &'static str,
    /// More of the summary entry's detail (never a value).
    pub detail: serde_json::Value,
}

/// `GET /api/v1/secrets/export/env`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExportQuery {
    /// The project (absent: secrets without a project).
    pub project_id: Option<String>,
    /// The environment to export (empty: secrets without an environment).
    #[serde(default)]
    pub environment: String,
}

/// An import of `.env` text.
#[derive(Debug, Clone, Default)]
pub struct ImportRequest {
    pub project_id: Option<String>,
    pub environment: String,
    pub text: String,
    pub overwrite: bool,
    pub dry_run: bool,
    /// The type of the secrets it creates (default custom).
    pub secret_type: Option<SecretType>,
    /// The tier of the secrets it creates (default standard).
    pub access_tier: Option<AccessTier>,
}

/// `POST /api/v1/secrets/promote`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PromoteRequest {
    /// The project (absent: secrets without a project).
    pub project_id: Option<String>,
    pub from_environment: String,
    pub to_environment: String,
    /// Only these names (default: every secret of `fromEnvironment`).
    pub names: Option<Vec<String>>,
    /// Give existing secrets of `toEnvironment` the source's value (default false: skip them).
    #[serde(default)]
    pub overwrite: bool,
    /// Answer the plan and write nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// Two values, compared in constant time.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

impl Vault {
    /// The secrets of one project and environment the caller may `action`,
    /// by name (through the listing every reader goes through).
    pub(super) async fn secrets_in(
        &self,
        p: &Principal,
        project_id: Option<&str>,
        environment: &str,
        action: ScopeAction,
    ) -> Result<Vec<SecretRow>> {
        let mut filter = SecretFilter {
            environment: Some(environment.to_owned()).filter(|e| !e.is_empty()),
            project_id: project_id.map(str::to_owned),
            project_scope: p.project_scope.clone(),
            limit: MAX_LIST_PAGE + 1,
            ..Default::default()
        };
        let mut found = Vec::new();
        for _ in 0..MAX_PAGES {
            let batch = self.store.list_secrets(&p.tenant_id, &filter).await?;
            let more = batch.len() as i64 == filter.limit;
            filter.after = batch.last().map(|s| (s.name.clone(), s.id.clone()));
            found.extend(batch.into_iter().filter(|s| {
                s.project_id.as_deref() == project_id
                    && s.environment == environment
                    && p.allows_secret(action, s.project_id.as_deref(), &s.environment, &s.name)
            }));
            if !more {
                return Ok(found);
            }
        }
        Err(Error::InvalidRequest(format!("more than {} secrets in one environment: narrow the request", MAX_PAGES as i64 * MAX_LIST_PAGE)))
    }

    /// Sets many names of one place to values in ONE transaction: creates
    /// the missing, gives a new version to those whose value differs (when
    /// `overwrite`, else skips them), leaves equal ones alone. The plan is
    /// made first; comparing with an existing value opens it as a use
    /// (`compare`, audited). A secret that moves on between the plan and
    /// the write fails the whole batch (409 VERSION_CONFLICT) and nothing is
    /// stored. A dry run answers the plan and writes nothing.
    pub async fn upsert_many(&self, p: &Principal, req: UpsertMany) -> Result<BatchPlan> {
        let action = req.action;
        audited!(self, p, action, "secret", None, self.upsert_many_inner(p, req).await)
    }

    async fn upsert_many_inner(&self, p: &Principal, req: UpsertMany) -> Result<BatchPlan> {
        p.require(Permission::Write)?;
        let project_id = req.project_id.filter(|p| !p.is_empty());
        let project = project_id.as_deref();
        let environment = names::environment(Some(&req.environment))?;
        self.check_project(p, project).await?;
        self.check_environment(&p.tenant_id, project, &environment).await?;
        let mut seen = std::collections::HashSet::new();
        for e in &req.entries {
            names::secret_name(&e.name)?;
            if !seen.insert(e.name.as_str()) {
                return Err(Error::InvalidRequest(format!("'{}' is given twice", e.name)));
            }
            self.check_value(&e.value)?;
            p.require_path(ScopeAction::Write, project, &environment, &e.name)?;
        }

        let mut plan = BatchPlan::default();
        let mut writes = Vec::new();
        let mut audits = Vec::new();
        let key = self.data_key(&p.tenant_id).await?;
        let now = now_millis();
        for e in req.entries {
            let here = SecretRef::Name { name: &e.name, project_id: project, environment: Some(&environment) };
            let existing = match self.visible_secret(p, &here, ScopeAction::Write).await {
                Ok(row) => Some(row),
                Err(Error::SecretNotFound) => None,
                Err(err) => return Err(err),
            };
            let Some(row) = existing else {
                let shape = e.shape.unwrap_or_default();
                let secret = SecretRow {
                    id: uuid::Uuid::new_v4().to_string(),
                    tenant_id: p.tenant_id.clone(),
                    project_id: project_id.clone(),
                    environment: environment.clone(),
                    name: e.name.clone(),
                    secret_type: shape.secret_type,
                    description: shape.description,
                    tags: shape.tags,
                    current_version: 1,
                    created_at: now,
                    updated_at: now,
                    access_tier: shape.access_tier,
                    exposure: shape.exposure,
                    bindings: shape.bindings,
                    expires_at: None,
                    deleted_at: None,
                    max_versions: None,
                    retiring_version: None,
                    retiring_until: None,
                };
                let first = VersionRow {
                    secret_id: secret.id.clone(),
                    version: 1,
                    sealed: key.seal(&SecretAad { tenant_id: &p.tenant_id, secret_id: &secret.id, version: 1 }, e.value.as_bytes()),
                    created_at: now,
                    created_by: p.key_id.clone(),
                };
                audits.push(p.audit("secret.create", "secret", Some(&secret.id), "success").detail(serde_json::json!({
                    "name": secret.name, "version": 1, "environment": secret.environment, "projectId": secret.project_id,
                    "accessTier": secret.access_tier, "exposure": secret.exposure, "batch": action_name(req.action),
                })));
                plan.created.push(e.name);
                writes.push(BatchWrite::Create { secret: Box::new(secret), first });
                continue;
            };
            let current =
                self.open_value(p, &SecretRef::Id(&row.id), Some(row.current_version), None, Purpose::Use(Mechanism::Compare)).await?;
            if same(&current.value, &e.value) {
                plan.unchanged.push(e.name);
            } else if !req.overwrite {
                plan.skipped.push(e.name);
            } else {
                let version = row.current_version + 1;
                writes.push(BatchWrite::Version {
                    secret_id: row.id.clone(),
                    expected_version: row.current_version,
                    version: VersionRow {
                        secret_id: row.id.clone(),
                        version,
                        sealed: key.seal(&SecretAad { tenant_id: &p.tenant_id, secret_id: &row.id, version }, e.value.as_bytes()),
                        created_at: now,
                        created_by: p.key_id.clone(),
                    },
                });
                audits.push(p.audit("secret.update", "secret", Some(&row.id), "success").detail(serde_json::json!({
                    "name": row.name, "version": version, "newVersion": true, "batch": action_name(req.action),
                })));
                plan.updated.push(e.name);
            }
        }
        let mut detail = serde_json::json!({
            "projectId": project_id, "environment": environment, "dryRun": req.dry_run,
            "created": plan.created, "updated": plan.updated, "unchanged": plan.unchanged, "skipped": plan.skipped,
        });
        if let (Some(d), Some(extra)) = (detail.as_object_mut(), req.detail.as_object()) {
            d.extend(extra.clone());
        }
        let summary = p.audit(req.action, "secret", None, "success").detail(detail);
        if req.dry_run {
            self.record_read(p, summary).await?;
            return Ok(plan);
        }
        audits.push(summary);
        self.store.write_batch(&p.tenant_id, &writes, &|plan| Ok(plans::limits(plan)?.max_secrets), &audits).await?;
        plan.applied = true;
        Ok(plan)
    }

    /// A project's environment as `.env` entries, by name: every secret is
    /// a hand-off read (audited each), so only `reveal` secrets are answered;
    /// a `masked` or `use_only` one refuses the whole export (403
    /// EXPOSURE_DENIED naming it) before any value is read.
    pub async fn export_env(&self, p: &Principal, q: &ExportQuery) -> Result<Vec<(String, Zeroizing<String>)>> {
        audited!(self, p, "secrets.exported", "secret", None, self.export_env_inner(p, q).await)
    }

    async fn export_env_inner(&self, p: &Principal, q: &ExportQuery) -> Result<Vec<(String, Zeroizing<String>)>> {
        p.require(Permission::Read)?;
        let project = q.project_id.as_deref().filter(|p| !p.is_empty());
        let environment = names::environment(Some(&q.environment))?;
        self.check_project(p, project).await?;
        let rows = self.secrets_in(p, project, &environment, ScopeAction::Read).await?;
        for row in &rows {
            Purpose::HandOff.allowed(Exposure::of_row(row)?, &row.name)?;
        }
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let (_, value) = self.read_to_hand_off(p, SecretRef::Id(&row.id), &ReadVersion::default()).await?;
            out.push((row.name.clone(), value));
        }
        self.record_read(
            p,
            p.audit("secrets.exported", "secret", None, "success").detail(serde_json::json!({
                "projectId": project, "environment": environment, "count": out.len(),
                "names": rows.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            })),
        )
        .await?;
        Ok(out)
    }

    /// `.env` text into one project and environment (see [`Vault::upsert_many`]):
    /// any bad line is 400 listing the line numbers, and nothing is stored.
    /// Neither the text nor a value is ever part of an answer or an error.
    pub async fn import_env(&self, p: &Principal, req: &ImportRequest) -> Result<BatchPlan> {
        let entries = match crate::dotenv::parse(&req.text) {
            Ok(entries) => entries,
            Err(lines) => return Err(self.audit_failure(p, "secrets.imported", "secret", None, Error::InvalidLines(lines)).await),
        };
        let shape = Shape {
            secret_type: req.secret_type.unwrap_or(SecretType::Custom).as_str().to_owned(),
            access_tier: req.access_tier.unwrap_or(AccessTier::Standard).as_str().to_owned(),
            ..Shape::default()
        };
        let entries = entries
            .into_iter()
            .map(|(name, value)| BatchEntry { name, value: Zeroizing::new(value), shape: Some(shape.clone()) })
            .collect();
        self.upsert_many(
            p,
            UpsertMany {
                project_id: req.project_id.clone(),
                environment: req.environment.clone(),
                entries,
                overwrite: req.overwrite,
                dry_run: req.dry_run,
                action: "secrets.imported",
                detail: serde_json::json!({}),
            },
        )
        .await
    }

    /// Copies one environment's secrets (or the named ones) into another of
    /// the same project in ONE transaction (see [`Vault::upsert_many`]).
    /// Reading a source value is a use (`promote`, audited; the approval gate
    /// applies), so `masked` and `use_only` secrets promote too; a secret the
    /// promotion creates keeps its source's type, tier, exposure, tags,
    /// description and bindings. No value is ever answered.
    pub async fn promote(&self, p: &Principal, req: &PromoteRequest) -> Result<BatchPlan> {
        let entries = match self.promote_sources(p, req).await {
            Ok(entries) => entries,
            Err(e) => return Err(self.audit_failure(p, "secrets.promoted", "secret", None, e).await),
        };
        self.upsert_many(
            p,
            UpsertMany {
                project_id: req.project_id.clone(),
                environment: req.to_environment.clone(),
                entries,
                overwrite: req.overwrite,
                dry_run: req.dry_run,
                action: "secrets.promoted",
                detail: serde_json::json!({ "fromEnvironment": req.from_environment, "toEnvironment": req.to_environment }),
            },
        )
        .await
    }

    async fn promote_sources(&self, p: &Principal, req: &PromoteRequest) -> Result<Vec<BatchEntry>> {
        p.require(Permission::Write)?;
        let project = req.project_id.as_deref().filter(|p| !p.is_empty());
        let from = names::environment(Some(&req.from_environment))?;
        let to = names::environment(Some(&req.to_environment))?;
        if from == to {
            return Err(Error::InvalidRequest("fromEnvironment and toEnvironment must differ".into()));
        }
        self.check_project(p, project).await?;
        self.check_environment(&p.tenant_id, project, &from).await?;
        let rows = match &req.names {
            Some(list) => {
                let mut rows = Vec::with_capacity(list.len());
                for name in list {
                    let name = names::secret_name(name)?;
                    let here = SecretRef::Name { name: &name, project_id: project, environment: Some(&from) };
                    rows.push(self.visible_secret(p, &here, ScopeAction::Read).await?);
                }
                rows
            }
            None => self.secrets_in(p, project, &from, ScopeAction::Read).await?,
        };
        let mut entries = Vec::with_capacity(rows.len());
        for row in rows {
            let opened = self.open_value(p, &SecretRef::Id(&row.id), None, None, Purpose::Use(Mechanism::Promote)).await?;
            entries.push(BatchEntry { name: row.name.clone(), value: opened.value, shape: Some(Shape::of(&row)) });
        }
        Ok(entries)
    }
}

/// What a batch's per-secret audit entries say they belong to.
fn action_name(action: &str) -> &str {
    action.strip_prefix("secrets.").unwrap_or(action)
}
