//! A project's environments and its template (secr's model): a secret in a
//! project must name one of the project's environments; the template lists
//! the names every environment must hold, and validation answers those an
//! environment lacks. Secrets without a project keep free-form environments.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::principal::WithDetail;
use super::scopes::ScopeAction;
use super::views::Deleted;
use super::{Permission, Principal, Vault, audited, names};
use crate::error::{Error, Result};
use crate::store::environments::{EnvironmentRow, TemplateRow};
use crate::store::now_millis;

/// `POST /api/v1/projects/{id}/environments`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateEnvironment {
    /// 1-64 characters of A-Z a-z 0-9 _ - .
    pub name: String,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentView {
    pub project_id: String,
    pub name: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentList {
    pub project_id: String,
    pub environments: Vec<EnvironmentView>,
    pub count: usize,
}

/// One required name of a template.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TemplateEntry {
    /// A secret name every environment must hold.
    pub name: String,
    /// Why it is needed (shown when it is missing).
    pub description: Option<String>,
    /// Default true; false lists it without ever reporting it missing.
    pub required: Option<bool>,
}

/// `POST /api/v1/projects/{id}/template`: one entry, a list of entries, or
/// `{entries: [...]}`. Existing names get the new description and `required`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum TemplateInput {
    One(TemplateEntry),
    Many(Vec<TemplateEntry>),
    Wrapped { entries: Vec<TemplateEntry> },
}

impl TemplateInput {
    fn into_entries(self) -> Vec<TemplateEntry> {
        match self {
            TemplateInput::One(e) => vec![e],
            TemplateInput::Many(v) | TemplateInput::Wrapped { entries: v } => v,
        }
    }
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateEntryView {
    pub name: String,
    pub description: Option<String>,
    pub required: bool,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateView {
    pub project_id: String,
    pub entries: Vec<TemplateEntryView>,
    pub count: usize,
}

/// `GET …/template/validate?environment=`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ValidateQuery {
    pub environment: String,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MissingName {
    pub name: String,
    pub description: Option<String>,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateValidation {
    pub project_id: String,
    pub environment: String,
    /// True when no required name is missing.
    pub valid: bool,
    pub missing: Vec<MissingName>,
    /// How many required names the template has.
    pub required: usize,
}

fn time(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

fn env_view(r: &EnvironmentRow) -> EnvironmentView {
    EnvironmentView { project_id: r.project_id.clone(), name: r.name.clone(), created_at: time(r.created_at) }
}

fn template_view(project_id: &str, rows: &[TemplateRow]) -> TemplateView {
    let entries: Vec<_> =
        rows.iter().map(|r| TemplateEntryView { name: r.name.clone(), description: r.description.clone(), required: r.required }).collect();
    TemplateView { project_id: project_id.to_owned(), count: entries.len(), entries }
}

/// An environment's name as a project holds it: never empty.
fn environment_name(raw: &str) -> Result<String> {
    let name = names::environment(Some(raw))?;
    if name.is_empty() {
        return Err(Error::InvalidRequest("environment must be 1-64 characters of A-Z a-z 0-9 _ - .".into()));
    }
    Ok(name)
}

impl Vault {
    /// Refuses an environment the project does not have (400 naming the
    /// project's). A secret without a project, or without an environment,
    /// passes: those keep free-form environments.
    pub async fn check_environment(&self, tenant_id: &str, project_id: Option<&str>, env: &str) -> Result<()> {
        let Some(project) = project_id.filter(|p| !p.is_empty()) else { return Ok(()) };
        if env.is_empty() {
            return Ok(());
        }
        let envs = self.store.environments().list_environments(tenant_id, project).await?;
        if envs.iter().any(|e| e.name == env) {
            return Ok(());
        }
        let known: Vec<&str> = envs.iter().map(|e| e.name.as_str()).collect();
        Err(Error::InvalidRequest(format!(
            "environment '{env}' is not one of the project's ({}); add it with POST /api/v1/projects/{project}/environments",
            known.join(", ")
        )))
    }

    /// Fills each view's environments (one query for all of them).
    pub(super) async fn with_environments(&self, tenant_id: &str, views: &mut [super::views::ProjectView]) -> Result<()> {
        if views.is_empty() {
            return Ok(());
        }
        let rows = if views.len() == 1 {
            self.store.environments().list_environments(tenant_id, &views[0].id).await?
        } else {
            self.store.environments().list_tenant_environments(tenant_id).await?
        };
        for v in views.iter_mut() {
            v.environments = rows.iter().filter(|r| r.project_id == v.id).map(|r| r.name.clone()).collect();
        }
        Ok(())
    }

    pub async fn list_environments(&self, p: &Principal, project_id: &str) -> Result<EnvironmentList> {
        audited!(
            self,
            p,
            "project.environments",
            "project",
            Some(project_id),
            async {
                p.require(Permission::Read)?;
                let project = self.visible_project(p, project_id).await?;
                let rows = self.store.environments().list_environments(&p.tenant_id, &project.id).await?;
                self.record_read(p, p.audit("project.environments", "project", Some(&project.id), "success")).await?;
                let environments: Vec<_> = rows.iter().map(env_view).collect();
                Ok(EnvironmentList { project_id: project.id, count: environments.len(), environments })
            }
            .await
        )
    }

    pub async fn create_environment(&self, p: &Principal, project_id: &str, req: CreateEnvironment) -> Result<EnvironmentView> {
        audited!(
            self,
            p,
            "project.environment_created",
            "project",
            Some(project_id),
            async {
                p.require(Permission::Write)?;
                let name = environment_name(&req.name)?;
                let project = self.visible_project(p, project_id).await?;
                let row = EnvironmentRow { tenant_id: p.tenant_id.clone(), project_id: project.id.clone(), name, created_at: now_millis() };
                let audit = p
                    .audit("project.environment_created", "project", Some(&project.id), "success")
                    .detail(serde_json::json!({ "environment": row.name }));
                self.store.environments().insert_environment(&row, &audit).await?;
                Ok(env_view(&row))
            }
            .await
        )
    }

    /// Removes an environment no secret of the project uses (409 otherwise).
    pub async fn delete_environment(&self, p: &Principal, project_id: &str, name: &str) -> Result<Deleted> {
        audited!(
            self,
            p,
            "project.environment_deleted",
            "project",
            Some(project_id),
            async {
                p.require(Permission::Write)?;
                let name = environment_name(name)?;
                let project = self.visible_project(p, project_id).await?;
                let audit = p
                    .audit("project.environment_deleted", "project", Some(&project.id), "success")
                    .detail(serde_json::json!({ "environment": name }));
                if !self.store.environments().delete_environment(&p.tenant_id, &project.id, &name, &audit).await? {
                    return Err(Error::NotFound("environment"));
                }
                Ok(Deleted { id: name, deleted: true, restorable_until: None })
            }
            .await
        )
    }

    pub async fn get_template(&self, p: &Principal, project_id: &str) -> Result<TemplateView> {
        audited!(
            self,
            p,
            "project.template",
            "project",
            Some(project_id),
            async {
                p.require(Permission::Read)?;
                let project = self.visible_project(p, project_id).await?;
                let rows = self.store.environments().list_template(&p.tenant_id, &project.id).await?;
                self.record_read(p, p.audit("project.template", "project", Some(&project.id), "success")).await?;
                Ok(template_view(&project.id, &rows))
            }
            .await
        )
    }

    /// Adds names to the template (or changes their description and
    /// `required`); answers the whole template.
    pub async fn set_template(&self, p: &Principal, project_id: &str, input: TemplateInput) -> Result<TemplateView> {
        audited!(
            self,
            p,
            "project.template_changed",
            "project",
            Some(project_id),
            async {
                p.require(Permission::Write)?;
                let entries = input.into_entries();
                if entries.is_empty() || entries.len() > 500 {
                    return Err(Error::InvalidRequest("give 1 to 500 template entries".into()));
                }
                let project = self.visible_project(p, project_id).await?;
                let now = now_millis();
                let rows = entries
                    .iter()
                    .map(|e| {
                        Ok(TemplateRow {
                            tenant_id: p.tenant_id.clone(),
                            project_id: project.id.clone(),
                            name: names::secret_name(&e.name)?,
                            description: e.description.as_deref().map(|d| names::text("description", d, 1024)).transpose()?,
                            required: e.required.unwrap_or(true),
                            created_at: now,
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                let audit = p.audit("project.template_changed", "project", Some(&project.id), "success").detail(serde_json::json!({
                    "set": rows.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
                }));
                self.store.environments().upsert_template(&rows, &audit).await?;
                let all = self.store.environments().list_template(&p.tenant_id, &project.id).await?;
                Ok(template_view(&project.id, &all))
            }
            .await
        )
    }

    pub async fn delete_template_entry(&self, p: &Principal, project_id: &str, name: &str) -> Result<Deleted> {
        audited!(
            self,
            p,
            "project.template_changed",
            "project",
            Some(project_id),
            async {
                p.require(Permission::Write)?;
                let project = self.visible_project(p, project_id).await?;
                let audit = p
                    .audit("project.template_changed", "project", Some(&project.id), "success")
                    .detail(serde_json::json!({ "removed": name }));
                if !self.store.environments().delete_template(&p.tenant_id, &project.id, name, &audit).await? {
                    return Err(Error::NotFound("template entry"));
                }
                Ok(Deleted { id: name.to_owned(), deleted: true, restorable_until: None })
            }
            .await
        )
    }

    /// The template's required names the environment lacks (a secret the
    /// caller may not list counts as missing: it cannot rely on it).
    pub async fn validate_template(&self, p: &Principal, project_id: &str, environment: &str) -> Result<TemplateValidation> {
        audited!(
            self,
            p,
            "project.template_validated",
            "project",
            Some(project_id),
            async {
                p.require(Permission::Read)?;
                let project = self.visible_project(p, project_id).await?;
                let environment = environment_name(environment)?;
                self.check_environment(&p.tenant_id, Some(&project.id), &environment).await?;
                let template = self.store.environments().list_template(&p.tenant_id, &project.id).await?;
                let present = self.secrets_in(p, Some(&project.id), &environment, ScopeAction::List).await?;
                let missing: Vec<MissingName> = template
                    .iter()
                    .filter(|t| t.required && !present.iter().any(|s| s.name == t.name))
                    .map(|t| MissingName { name: t.name.clone(), description: t.description.clone() })
                    .collect();
                self.record_read(
                    p,
                    p.audit("project.template_validated", "project", Some(&project.id), "success")
                        .detail(serde_json::json!({ "environment": environment, "missing": missing.len() })),
                )
                .await?;
                Ok(TemplateValidation {
                    project_id: project.id,
                    environment,
                    valid: missing.is_empty(),
                    required: template.iter().filter(|t| t.required).count(),
                    missing,
                })
            }
            .await
        )
    }
}
