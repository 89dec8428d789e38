//! Rotation tools (see `vault::rotation`): rotate a secret, read its
//! rotation status, set its policy. No tool answers a value.

use rmcp::handler::server::wrapper::Parameters;
use rmcp::{Json, tool, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;

use super::{Caller, LatchkeyMcp};
use crate::error::Error;
use crate::vault::rotation::{CreatePolicy, Generator, PolicyView, RotateOptions, RotationResult, RotationStatus};
use crate::vault::secrets::SecretRef;

/// `rotate_secret`: which secret, and how.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RotateParams {
    /// The secret: its id, or its name (with projectId and environment when it is filed under them).
    pub secret: String,
    /// The new value; without it the server generates one (the policy's generator, else shaped like the current value).
    pub new_value: Option<String>,
    /// Why, for the audit trail.
    pub reason: Option<String>,
    /// How long the replaced version stays readable by number: `0` to `30d` (default: the policy's, else 0).
    pub grace_period: Option<String>,
    pub project_id: Option<String>,
    pub environment: Option<String>,
}

/// `get_rotation_status`: which secret.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StatusParams {
    /// The secret: its id, or its name (with projectId and environment when it is filed under them).
    pub secret: String,
    pub project_id: Option<String>,
    pub environment: Option<String>,
}

/// `set_rotation_policy`: a secret's schedule and how it rotates.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyParams {
    /// The secret: its id, or its name (with projectId and environment when it is filed under them).
    pub secret: String,
    /// A cron expression (`0 3 * * MON`, UTC) or an interval (`30d`, `12h`).
    pub schedule: String,
    /// How values are made: `{length, alphabet, prefix}`; without it, shaped like the current value.
    pub generator: Option<Generator>,
    /// How long a replaced version stays readable by number: `0` to `30d`.
    pub grace_period: Option<String>,
    /// Write a `secret.rotation_due` audit entry this many days before each due rotation.
    pub alert_days_before: Option<i64>,
    pub project_id: Option<String>,
    pub environment: Option<String>,
}

#[tool_router(router = rotation_tools, vis = "pub(super)")]
impl LatchkeyMcp {
    /// Rotate a secret now: a new version (give newValue, or let the server
    /// generate one), the old one readable by version number for gracePeriod
    /// and then retired. Ends the secret's read grants and revokes scoped
    /// tokens that can read it. Answers the versions and times, never the
    /// value. Needs write permission; audited as secret.rotated.
    #[tool(annotations(read_only_hint = false, destructive_hint = true, idempotent_hint = false, open_world_hint = false))]
    async fn rotate_secret(&self, Parameters(p): Parameters<RotateParams>, caller: Caller) -> Result<Json<RotationResult>, Error> {
        let principal = self.principal(caller).await?;
        let target = SecretRef::id_or_name(&p.secret, p.project_id.as_deref(), p.environment.as_deref());
        let opts = RotateOptions { new_value: p.new_value, reason: p.reason, grace_period: p.grace_period };
        Ok(Json(self.vault.rotate_secret(&principal, target, opts).await?))
    }

    /// A secret's rotation status: its policy (schedule, generator, grace
    /// period), when it was last rotated and is next due, its current version
    /// and the retiring one with the end of its grace. No value.
    #[tool(annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false))]
    async fn get_rotation_status(&self, Parameters(p): Parameters<StatusParams>, caller: Caller) -> Result<Json<RotationStatus>, Error> {
        let principal = self.principal(caller).await?;
        let target = SecretRef::id_or_name(&p.secret, p.project_id.as_deref(), p.environment.as_deref());
        Ok(Json(self.vault.rotation_status(&principal, target).await?))
    }

    /// Give a secret a rotation schedule, or change the one it has: the
    /// server then rotates it when due (generated values), once across all
    /// servers. Needs write permission and an API key.
    #[tool(annotations(read_only_hint = false, destructive_hint = false, idempotent_hint = true, open_world_hint = false))]
    async fn set_rotation_policy(&self, Parameters(p): Parameters<PolicyParams>, caller: Caller) -> Result<Json<PolicyView>, Error> {
        let principal = self.principal(caller).await?;
        let target = SecretRef::id_or_name(&p.secret, p.project_id.as_deref(), p.environment.as_deref());
        let req = CreatePolicy {
            secret_id: String::new(),
            schedule: p.schedule,
            alert_days_before: p.alert_days_before,
            alert_email: None,
            generator: p.generator,
            grace_period: p.grace_period,
            next_rotation_at: None,
        };
        Ok(Json(self.vault.set_rotation_policy(&principal, target, req).await?))
    }
}
