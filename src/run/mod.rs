//! `latchkey run`: run a command with secrets as environment variables, its
//! output redacted (the `doppler run` / `op run` habit).
//!
//! ```text
//!  secrets: local vault (Vault::use_secrets, Mechanism::Run)  or  a server over REST (reveal only)
//!              │ names and values (Zeroizing)
//!          child.rs: spawn CMD with them in its environment; its stdout and stderr
//!              │    (a pseudo-terminal when ours is a terminal, else pipes) pass
//!              │    through redact::stream, one redactor per stream
//!          our stdout / stderr; the child's exit code (128+n for a signal) is ours
//! ```
//!
//! The local mode is how `use_only` secrets are used at all: it opens the
//! database like `latchkey mcp` and acts as the key in `LATCHKEY_API_KEY` or
//! the local tenant. Over `--url` it is one more REST client and gets only
//! what a read answers, so `masked` and `use_only` secrets are refused there.

pub mod child;
pub(crate) mod remote;

use std::ffi::OsString;
use std::sync::Arc;

use clap::Args;
use zeroize::Zeroizing;

use crate::config::{PolicyArgs, StoreArgs, open_vault};
use crate::error::{Error, Result};
use crate::redact::Redactor;
use crate::vault::exposure::{Mechanism, Selection};
use crate::vault::{Front, Origin, Principal, Vault};

/// `latchkey run [--project P] [--environment E] [--only NAME…] -- CMD ARGS…`
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The project whose secrets to inject, by id or name (default: the secrets filed under none).
    #[arg(long)]
    pub project: Option<String>,
    /// The environment whose secrets to inject, e.g. production (default: the secrets without one).
    #[arg(long)]
    pub environment: Option<String>,
    /// Only these secrets, by name (repeatable, or comma-separated); a name
    /// not found is an error.
    #[arg(long, value_name = "NAME", num_args = 1.., value_delimiter = ',')]
    pub only: Vec<String>,
    /// A Latchkey server to read the secrets from, with LATCHKEY_API_KEY. Without
    /// it the local database is opened, as `latchkey mcp` does.
    #[arg(long, env = "LATCHKEY_URL")]
    pub url: Option<String>,
    /// The local tenant to act for when LATCHKEY_API_KEY is not set (local mode).
    #[arg(long, env = "LATCHKEY_TENANT", default_value = crate::vault::tenants::LOCAL_TENANT)]
    pub tenant: String,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// The command to run and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

/// One secret to inject: its name (the variable's) and value.
pub struct Injected {
    pub name: String,
    pub value: Zeroizing<String>,
}

/// Runs the command; answers the exit code `latchkey run` exits with.
pub async fn run(args: RunArgs) -> Result<u8> {
    let api_key = std::env::var("LATCHKEY_API_KEY").ok().filter(|k| !k.is_empty()).map(Zeroizing::new);
    let secrets = match args.url.as_deref().filter(|u| !u.is_empty()) {
        Some(url) => {
            let key =
                api_key.ok_or_else(|| Error::Unauthorized("--url needs LATCHKEY_API_KEY: the key to read the secrets with".into()))?;
            let secrets = remote::fetch(url, &key, args.project.as_deref(), args.environment.as_deref(), &args.only).await?;
            check_names(&secrets)?;
            secrets
        }
        None => local(&args, api_key.as_deref().map(String::as_str)).await?,
    };
    let redactor = Arc::new(redactor_for(&secrets));
    let env: Vec<(String, Zeroizing<String>)> = secrets.into_iter().map(|s| (s.name, s.value)).collect();
    child::run(&args.command, env, redactor).await
}

/// The local mode: the database, as the key given or the local tenant's admin.
async fn local(args: &RunArgs, api_key: Option<&str>) -> Result<Vec<Injected>> {
    let (vault, principal) = open_local(&args.store, &args.policy, api_key, &args.tenant, "latchkey run").await?;
    let used = use_selected(&vault, &principal, args.project.as_deref(), args.environment.clone(), args.only.clone(), Mechanism::Run).await;
    vault.store().close().await;
    used
}

/// The local database and who acts on it: the key given, else the admin of
/// the local `tenant` (created on first use), as `latchkey mcp` does. The
/// caller closes the store when done. `agent` is the audit trail's user agent.
pub(crate) async fn open_local(
    store: &StoreArgs,
    policy: &PolicyArgs,
    api_key: Option<&str>,
    tenant: &str,
    agent: &str,
) -> Result<(Arc<Vault>, Principal)> {
    let vault = open_vault(store, policy).await?;
    let origin = Origin { front: Front::Cli, user_agent: Some(agent.into()), ..Default::default() };
    let session = vault.open_session(api_key, tenant, origin).await?;
    let principal = vault.session_caller(&session).await?;
    Ok((vault, principal))
}

/// Opens the selected secrets for a use (the project named by id or by
/// name), as variables: each name must be one a shell could set.
pub async fn use_selected(
    vault: &Vault,
    p: &Principal,
    project: Option<&str>,
    environment: Option<String>,
    only: Vec<String>,
    mechanism: Mechanism,
) -> Result<Vec<Injected>> {
    let project_id = match project.filter(|p| !p.is_empty()) {
        None => None,
        Some(wanted) => Some(project_id(vault, p, wanted).await?),
    };
    let selection = Selection { project_id, environment: environment.filter(|e| !e.is_empty()), only };
    let used = vault.use_secrets(p, &selection, mechanism).await?;
    let secrets: Vec<Injected> = used.into_iter().map(|u| Injected { name: u.meta.name, value: u.value }).collect();
    check_names(&secrets)?;
    Ok(secrets)
}

pub(crate) async fn project_id(vault: &Vault, p: &Principal, wanted: &str) -> Result<String> {
    let projects = vault.list_projects(p).await?.projects;
    projects
        .iter()
        .find(|x| x.id == wanted)
        .or_else(|| projects.iter().find(|x| x.name == wanted))
        .map(|x| x.id.clone())
        .ok_or_else(|| Error::InvalidRequest(format!("no project '{wanted}' (by id or name) visible to this key")))
}

/// A name becomes a variable name as it is; one a shell could not set is refused.
fn check_names(secrets: &[Injected]) -> Result<()> {
    for s in secrets {
        if !valid_env_name(&s.name) {
            return Err(Error::InvalidRequest(format!(
                "secret '{}' cannot be an environment variable name (letters, digits and _, not starting with a digit): \
                 rename it or leave it out with --only",
                s.name
            )));
        }
    }
    let mut names: Vec<&str> = secrets.iter().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(Error::InvalidRequest(format!(
            "more than one secret is named '{}' (in several environments or projects): pass --environment or --project",
            w[0]
        )));
    }
    Ok(())
}

pub fn valid_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b == b'_' || b.is_ascii_alphabetic()) && bytes.all(|b| b == b'_' || b.is_ascii_alphanumeric())
}

pub fn redactor_for(secrets: &[Injected]) -> Redactor {
    Redactor::new(secrets.iter().map(|s| (s.name.clone(), s.value.as_str().to_owned())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variable_names() {
        for ok in ["A", "_", "OPENAI_API_KEY", "a1", "_x_9"] {
            assert!(valid_env_name(ok), "{ok}");
        }
        for bad in ["", "1A", "A-B", "A B", "A=B", "é", "a.b"] {
            assert!(!valid_env_name(bad), "{bad}");
        }
    }
}
