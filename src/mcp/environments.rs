//! Environment tools: promote, `.env` import, template validation (see
//! `vault::batch` and `vault::environments`).

use rmcp::handler::server::wrapper::Parameters;
use rmcp::{Json, tool, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;

use super::{Caller, LatchkeyMcp};
use crate::error::Error;
use crate::vault::batch::{BatchPlan, ImportRequest, PromoteRequest};
use crate::vault::environments::TemplateValidation;

/// `promote_environment`: one environment's secrets into another.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PromoteParams {
    /// The project both environments belong to (none: secrets under no project).
    pub project_id: Option<String>,
    /// The source environment, e.g. `staging`.
    pub from_environment: String,
    /// The target environment, e.g. `production`.
    pub to_environment: String,
    /// Only these secret names (default: all of the source environment).
    pub names: Option<Vec<String>>,
    /// Give existing target secrets with another value the source's value (default false: skip them).
    #[serde(default)]
    pub overwrite: bool,
    /// Write the plan (default false: a dry run that only answers it).
    #[serde(default)]
    pub apply: bool,
}

/// `import_env`: dotenv text into an environment.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImportParams {
    /// The dotenv text (NAME=value lines; quotes, comments and `export` allowed). Never echoed back.
    pub content: String,
    /// The environment to import into (e.g. `development`).
    pub environment: String,
    /// The project (none: secrets under no project).
    pub project_id: Option<String>,
    /// Give existing secrets with another value a new version (default false: skip them).
    #[serde(default)]
    pub overwrite: bool,
    /// Answer the plan and write nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// `validate_environment`: a project's template against one environment.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ValidateParams {
    pub project_id: String,
    pub environment: String,
}

#[tool_router(router = environment_tools, vis = "pub(super)")]
impl LatchkeyMcp {
    /// Copy secrets from one environment of a project to another (e.g.
    /// staging to production) without seeing any value. A dry run unless
    /// `apply` is true: answers by name what would be `created`, `updated`
    /// (only with `overwrite`), `unchanged` or `skipped`. Applied, it writes
    /// everything in one transaction. Every source value is audited as a use.
    #[tool(annotations(read_only_hint = false, destructive_hint = false, idempotent_hint = true, open_world_hint = false))]
    async fn promote_environment(&self, Parameters(p): Parameters<PromoteParams>, caller: Caller) -> Result<Json<BatchPlan>, Error> {
        let req = PromoteRequest {
            project_id: p.project_id,
            from_environment: p.from_environment,
            to_environment: p.to_environment,
            names: p.names,
            overwrite: p.overwrite,
            dry_run: !p.apply,
        };
        Ok(Json(self.vault.promote(&self.principal(caller).await?, &req).await?))
    }

    /// Store the secrets of a `.env` text in one environment, all in one
    /// transaction: answers the names `created`, `updated` (only with
    /// `overwrite`), `unchanged` and `skipped`, never a value. Any bad line
    /// fails the whole import with its line number (the text is never
    /// echoed) and nothing is stored. `dryRun` answers the plan only.
    #[tool(annotations(read_only_hint = false, destructive_hint = false, idempotent_hint = true, open_world_hint = false))]
    async fn import_env(&self, Parameters(p): Parameters<ImportParams>, caller: Caller) -> Result<Json<BatchPlan>, Error> {
        let req = ImportRequest {
            project_id: p.project_id,
            environment: p.environment,
            text: p.content,
            overwrite: p.overwrite,
            dry_run: p.dry_run,
            ..ImportRequest::default()
        };
        Ok(Json(self.vault.import_env(&self.principal(caller).await?, &req).await?))
    }

    /// Check an environment of a project against the project's template:
    /// answers `valid` and the `missing` required names with their
    /// descriptions. Use it before a deploy.
    #[tool(annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false))]
    async fn validate_environment(
        &self,
        Parameters(p): Parameters<ValidateParams>,
        caller: Caller,
    ) -> Result<Json<TemplateValidation>, Error> {
        Ok(Json(self.vault.validate_template(&self.principal(caller).await?, &p.project_id, &p.environment).await?))
    }
}
