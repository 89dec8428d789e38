//! Where `latchkey env` reads and writes: the local database, acting as the
//! key in `LATCHKEY_API_KEY` or the local tenant's admin (opened as `latchkey
//! run` opens it), or a server over REST as that key. Each operation is the
//! vault call the REST route makes, so both answer the same.

use serde_json::json;
use zeroize::Zeroizing;

use super::Connection;
use crate::error::{Error, Result};
use crate::run::remote::Api;
use crate::vault::batch::{BatchPlan, ExportQuery, ImportRequest, PromoteRequest};
use crate::vault::{Principal, Vault};

pub(super) enum Target<'a> {
    Local { vault: std::sync::Arc<Vault>, principal: Box<Principal> },
    Remote(Api<'a>),
}

impl<'a> Target<'a> {
    /// `agent` names the command in the audit trail (local) or User-Agent (remote).
    pub(super) async fn open(conn: &Connection, api_key: Option<&'a str>, agent: &str) -> Result<Target<'a>> {
        match conn.url.as_deref().filter(|u| !u.is_empty()) {
            Some(url) => {
                let key = api_key.ok_or_else(|| Error::Unauthorized("--url needs LATCHKEY_API_KEY: the key to act with".into()))?;
                Ok(Target::Remote(Api::new(url, key, &agent.replace(' ', "-"))?))
            }
            None => {
                let (vault, principal) = crate::run::open_local(&conn.store, &conn.policy, api_key, &conn.tenant, agent).await?;
                Ok(Target::Local { vault, principal: Box::new(principal) })
            }
        }
    }

    pub(super) async fn close(&self) {
        if let Target::Local { vault, .. } = self {
            vault.store().close().await;
        }
    }

    /// The project's id, given its id or name.
    async fn project_id(&self, project: Option<&str>) -> Result<Option<String>> {
        let Some(wanted) = project.filter(|p| !p.is_empty()) else { return Ok(None) };
        Ok(Some(match self {
            Target::Local { vault, principal } => crate::run::project_id(vault, principal, wanted).await?,
            Target::Remote(api) => api.project_id(wanted).await?,
        }))
    }

    /// The environment's secrets, names and values, in name order.
    pub(super) async fn export(&self, project: Option<&str>, environment: &str) -> Result<Vec<(String, Zeroizing<String>)>> {
        let project_id = self.project_id(project).await?;
        match self {
            Target::Local { vault, principal } => {
                let q = ExportQuery { project_id, environment: environment.to_owned() };
                vault.export_env(principal, &q).await
            }
            Target::Remote(api) => {
                let mut query = vec![("environment", environment.to_owned())];
                query.extend(project_id.map(|p| ("projectId", p)));
                let text = api.get_text("/api/v1/secrets/export/env", &query).await?;
                let entries = crate::dotenv::parse(&text).map_err(|lines| {
                    Error::InvalidRequest(format!(
                        "the server's export does not parse as .env text ({} bad line(s), first: line {})",
                        lines.len(),
                        lines.first().map_or(0, |l| l.line)
                    ))
                })?;
                Ok(entries.into_iter().map(|(name, value)| (name, Zeroizing::new(value))).collect())
            }
        }
    }

    pub(super) async fn import(
        &self,
        project: Option<&str>,
        environment: &str,
        text: Zeroizing<String>,
        overwrite: bool,
        dry_run: bool,
    ) -> Result<BatchPlan> {
        let project_id = self.project_id(project).await?;
        match self {
            Target::Local { vault, principal } => {
                let req = ImportRequest {
                    project_id,
                    environment: environment.to_owned(),
                    text: text.as_str().to_owned(),
                    overwrite,
                    dry_run,
                    ..Default::default()
                };
                let plan = vault.import_env(principal, &req).await;
                drop(Zeroizing::new(req.text));
                plan
            }
            Target::Remote(api) => {
                let body = json!({
                    "projectId": project_id, "environment": environment, "content": text.as_str(),
                    "overwrite": overwrite, "dryRun": dry_run,
                });
                let answer = api.post("/api/v1/secrets/import", &body).await;
                // The body held every value; zero the copy serde_json made.
                if let serde_json::Value::Object(mut m) = body
                    && let Some(serde_json::Value::String(t)) = m.remove("content")
                {
                    drop(Zeroizing::new(t));
                }
                plan_of(answer?)
            }
        }
    }

    pub(super) async fn promote(
        &self,
        project: Option<&str>,
        from: &str,
        to: &str,
        names: Option<Vec<String>>,
        overwrite: bool,
        dry_run: bool,
    ) -> Result<BatchPlan> {
        let project_id = self.project_id(project).await?;
        match self {
            Target::Local { vault, principal } => {
                let req = PromoteRequest {
                    project_id,
                    from_environment: from.to_owned(),
                    to_environment: to.to_owned(),
                    names,
                    overwrite,
                    dry_run,
                };
                vault.promote(principal, &req).await
            }
            Target::Remote(api) => {
                let body = json!({
                    "projectId": project_id, "fromEnvironment": from, "toEnvironment": to,
                    "names": names, "overwrite": overwrite, "dryRun": dry_run,
                });
                plan_of(api.post("/api/v1/secrets/promote", &body).await?)
            }
        }
    }
}

fn plan_of(answer: serde_json::Value) -> Result<BatchPlan> {
    serde_json::from_value(answer).map_err(|e| Error::InvalidRequest(format!("the server's answer is not a Latchkey plan: {e}")))
}
