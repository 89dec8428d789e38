//! Lifecycle tools (see `vault::lifecycle`): what expires soon, and bringing
//! back a deleted secret.

use rmcp::handler::server::wrapper::Parameters;
use rmcp::{Json, tool, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;

use super::{Caller, LatchkeyMcp};
use crate::error::Error;
use crate::vault::lifecycle::ExpiringQuery;
use crate::vault::secrets::SecretRef;
use crate::vault::views::{SecretMeta, SecretPage};

/// `list_expiring_secrets`: the window.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExpiringParams {
    /// Secrets expiring within this many days from now, 1-365 (default 7).
    pub days: Option<i64>,
    /// Only this project's.
    pub project_id: Option<String>,
    /// Also those already expired.
    pub include_expired: Option<bool>,
}

/// `restore_secret`: which deleted secret.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RestoreParams {
    /// The deleted secret: its id (from the SECRET_EXISTS error's deletedSecretId, or list_secrets with
    /// deleted=true), or its name (with projectId and environment when it is filed under them).
    pub secret: String,
    pub project_id: Option<String>,
    pub environment: Option<String>,
}

#[tool_router(router = lifecycle_tools, vis = "pub(super)")]
impl LatchkeyMcp {
    /// List secrets whose expiresAt falls within the next `days` (default 7):
    /// names and expiry times, never values. Use it to renew credentials
    /// before reads of them start failing with SECRET_EXPIRED.
    #[tool(annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false))]
    async fn list_expiring_secrets(&self, Parameters(p): Parameters<ExpiringParams>, caller: Caller) -> Result<Json<SecretPage>, Error> {
        let q = ExpiringQuery { days: p.days, project_id: p.project_id, include_expired: p.include_expired, ..Default::default() };
        Ok(Json(self.vault.list_expiring(&self.principal(caller).await?, q).await?))
    }

    /// Restore a deleted secret (deleted secrets stay restorable for the
    /// server's retention, 30 days by default): it comes back with its
    /// versions and name. Needs write permission.
    #[tool(annotations(read_only_hint = false, destructive_hint = false, idempotent_hint = false, open_world_hint = false))]
    async fn restore_secret(&self, Parameters(p): Parameters<RestoreParams>, caller: Caller) -> Result<Json<SecretMeta>, Error> {
        let target = SecretRef::id_or_name(&p.secret, p.project_id.as_deref(), p.environment.as_deref());
        Ok(Json(self.vault.restore_secret(&self.principal(caller).await?, target).await?))
    }
}
