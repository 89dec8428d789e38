//! Check tools that use a value without returning it (see `vault::checks`).

use rmcp::handler::server::wrapper::Parameters;
use rmcp::{Json, tool, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;

use super::{Caller, LatchkeyMcp};
use crate::error::Error;
use crate::vault::checks::{CompareQuery, CompareResult, VerifyResult};
use crate::vault::secrets::SecretRef;

/// `verify_secret`: which secret, and the candidate.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VerifyParams {
    /// The secret: its id, or its name (with projectId and environment when it is filed under them).
    pub secret: String,
    /// The value to check. Never stored, logged or echoed.
    pub candidate: String,
    /// The project of a secret named by name.
    pub project_id: Option<String>,
    /// The environment of a secret named by name.
    pub environment: Option<String>,
}

/// `compare_environments`: two environments of one project.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CompareParams {
    /// The project id both environments belong to (none: secrets under no project).
    pub project: Option<String>,
    /// The first environment, e.g. `staging`.
    pub from: String,
    /// The second environment, e.g. `production`.
    pub to: String,
}

#[tool_router(router = check_tools, vis = "pub(super)")]
impl LatchkeyMcp {
    /// Check whether a candidate value is a secret's current value, without
    /// reading the secret: answers `match` true or false, never the value
    /// (works on use_only and masked secrets too). Use it to confirm a value
    /// a user or a config holds is the stored one. Audited; at most 10 per
    /// minute per secret (VERIFY_LIMITED with a retry delay past that).
    #[tool(annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false))]
    async fn verify_secret(&self, Parameters(p): Parameters<VerifyParams>, caller: Caller) -> Result<Json<VerifyResult>, Error> {
        let principal = self.principal(caller).await?;
        let target = SecretRef::id_or_name(&p.secret, p.project_id.as_deref(), p.environment.as_deref());
        Ok(Json(self.vault.verify_secret(&principal, target, &p.candidate).await?))
    }

    /// Compare two environments (e.g. staging and production) of a project
    /// without seeing any value: per secret name, `equal`, `different`,
    /// `only_in_from` or `only_in_to`. Use it to find drift or a missing
    /// secret before a deploy. Every secret compared is audited as a use.
    #[tool(annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false))]
    async fn compare_environments(&self, Parameters(p): Parameters<CompareParams>, caller: Caller) -> Result<Json<CompareResult>, Error> {
        let q = CompareQuery { from: p.from, to: p.to, project_id: p.project };
        Ok(Json(self.vault.compare_environments(&self.principal(caller).await?, q).await?))
    }
}
