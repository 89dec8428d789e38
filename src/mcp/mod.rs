//! The MCP front: the vault as typed tools and resources (rmcp), over stdio
//! (`latchkey mcp`) and streamable HTTP (`/mcp` in `latchkey serve`).
//!
//! Like REST, it only resolves the caller and calls one vault function per
//! tool. Over HTTP the caller comes from the request's own credential, which
//! [`http::Endpoint`] resolves before rmcp sees the request; over stdio it is
//! the key in `LATCHKEY_API_KEY` or the local tenant's admin.

mod direct;
pub mod http;
mod params;
mod resources;
mod tools;

use std::sync::Arc;

use axum::http::request::Parts;
use rmcp::RoleServer;
use rmcp::handler::server::common::FromContextPart;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::service::RequestContext;

use crate::error::{Error, Result};
use crate::vault::{Front, Origin, Principal, Vault};

/// Tools an anonymous HTTP caller may see and call: agent self-signup.
const ANONYMOUS_TOOLS: &[&str] = &["signup"];

const INSTRUCTIONS: &str = "Latchkey is a secret vault. Store credentials with set_secret instead of \
writing them into files, prompts or code; fetch them with get_secret only at the moment you need the value, \
and never echo a value back to the user or into logs. list_secrets and the latchkey://secrets resources \
show metadata only. Every read is audited. Use expectedVersion when rotating to avoid overwriting \
someone else's change. Without an API key, call signup first and use the returned apiKey as \
'Authorization: Bearer <apiKey>'.";

/// Who calls a tool, as a tool's argument. rmcp's `RequestContext` argument
/// is a clone of the whole context, the request's HTTP parts (headers,
/// extensions) among them, made for every call; a tool needs only this.
enum Caller {
    /// An HTTP request whose key `/mcp` checked (`http::Endpoint`).
    Key(Principal),
    /// An HTTP request without a key.
    Anonymous(Origin),
    /// The local client of `latchkey mcp` (stdio), whose key the server holds.
    Local,
}

impl Caller {
    fn of(ctx: &RequestContext<RoleServer>) -> Self {
        match ctx.extensions.get::<Parts>() {
            Some(parts) => match parts.extensions.get::<Principal>() {
                Some(principal) => Caller::Key(principal.clone()),
                None => Caller::Anonymous(crate::server::origin_of(parts, Front::Mcp)),
            },
            None => Caller::Local,
        }
    }

    fn origin(&self) -> Origin {
        match self {
            Caller::Key(principal) => principal.origin.clone(),
            Caller::Anonymous(origin) => origin.clone(),
            Caller::Local => Origin::new(Front::Mcp),
        }
    }
}

impl FromContextPart<ToolCallContext<'_, LatchkeyMcp>> for Caller {
    fn from_context_part(ctx: &mut ToolCallContext<'_, LatchkeyMcp>) -> std::result::Result<Self, rmcp::ErrorData> {
        Ok(Caller::of(&ctx.request_context))
    }
}

/// One MCP server instance: the vault plus, over stdio, the fixed caller.
#[derive(Clone)]
pub struct LatchkeyMcp {
    vault: Arc<Vault>,
    /// Set over stdio; over HTTP each request carries its own caller.
    local: Option<Arc<Local>>,
    /// Built once per process: over HTTP every request gets a fresh server,
    /// and building the router generates every tool's JSON schema.
    tool_router: Arc<ToolRouter<Self>>,
}

impl LatchkeyMcp {
    /// A server for HTTP requests: callers come from each request.
    pub fn for_http(vault: Arc<Vault>) -> Self {
        LatchkeyMcp { vault, local: None, tool_router: Self::shared_router() }
    }

    /// A server for one local client (stdio) acting as `principal`; `renewable`
    /// when that is the local tenant's own key rather than one the user gave.
    pub fn for_principal(vault: Arc<Vault>, principal: Principal, renewable: bool) -> Self {
        let local = Local { principal: std::sync::Mutex::new(principal), renewable, renewing: Default::default() };
        LatchkeyMcp { vault, local: Some(Arc::new(local)), tool_router: Self::shared_router() }
    }

    fn shared_router() -> Arc<ToolRouter<Self>> {
        static ROUTER: std::sync::OnceLock<Arc<ToolRouter<LatchkeyMcp>>> = std::sync::OnceLock::new();
        ROUTER.get_or_init(|| Arc::new(Self::tool_router())).clone()
    }

    /// Whether this request has a caller (anonymous ones see less).
    fn has_caller(&self, ctx: &RequestContext<RoleServer>) -> bool {
        match ctx.extensions.get::<Parts>() {
            Some(parts) => parts.extensions.get::<Principal>().is_some(),
            None => self.local.is_some(),
        }
    }

    /// The caller, current as of this call. Over HTTP every request was just
    /// authenticated; over stdio the key was checked when the session began,
    /// and may have been revoked or have expired since, so it is looked up
    /// again, past the cache, and the call is charged to its tenant's plan
    /// as an HTTP request is when it authenticates.
    async fn principal(&self, caller: Caller) -> Result<Principal> {
        let need_key = || Error::Unauthorized("this tool needs an API key: call signup, then send Authorization: Bearer <apiKey>".into());
        match caller {
            Caller::Key(principal) => Ok(principal),
            Caller::Anonymous(_) => Err(need_key()),
            Caller::Local => match &self.local {
                Some(local) => {
                    let principal = local.current(&self.vault).await?;
                    self.vault.admit(&principal.tenant_id, &principal.plan).await?;
                    Ok(principal)
                }
                None => Err(need_key()),
            },
        }
    }

    /// The full tool catalog with schemas, for `latchkey mcp --print-tools`.
    pub fn tool_catalog() -> serde_json::Value {
        let tools = Self::tool_router().list_all();
        serde_json::json!({ "tools": tools })
    }
}

/// The caller of a stdio session.
struct Local {
    principal: std::sync::Mutex<Principal>,
    /// The session acts with the local tenant's own key (no `LATCHKEY_API_KEY`).
    renewable: bool,
    /// Held while renewing: calls run concurrently, and one new key is enough.
    renewing: tokio::sync::Mutex<()>,
}

impl Local {
    /// The caller as of now, checked in the database. A local key that
    /// expired mid-session is replaced as a new session would replace it; a
    /// key the user gave, or a local key someone revoked, is not: revoking the
    /// key a session acts with is how an admin stops that session.
    async fn current(&self, vault: &Vault) -> Result<Principal> {
        let seen = self.principal.lock().expect("not poisoned").clone();
        match vault.recheck(&seen).await {
            Err(Error::Unauthorized(_)) if self.renewable => {
                let _one = self.renewing.lock().await;
                let latest = self.principal.lock().expect("not poisoned").clone();
                if (&latest.key_id, &latest.credential) != (&seen.key_id, &seen.credential) {
                    // Another call renewed it meanwhile.
                    return vault.recheck(&latest).await;
                }
                let renewed = vault.renew_local_principal(&seen).await?;
                *self.principal.lock().expect("not poisoned") = renewed.clone();
                Ok(renewed)
            }
            checked => checked,
        }
    }
}

/// Serves one local MCP client over stdin/stdout until it hangs up.
pub async fn serve_stdio(vault: Arc<Vault>, api_key: Option<&str>, tenant: &str) -> Result<()> {
    use rmcp::ServiceExt;
    let origin = Origin { front: Front::Mcp, ip: None, user_agent: Some("latchkey mcp (stdio)".into()) };
    let principal = match api_key {
        Some(key) => vault.authenticate(key, origin).await?,
        None => vault.local_principal(&crate::vault::names::tenant_id(tenant)?, origin).await?,
    };
    let renewable = api_key.is_none();
    tracing::info!(tenant = %principal.tenant_id, "serving MCP on stdio");
    let store = vault.store().clone();
    let running = LatchkeyMcp::for_principal(vault, principal, renewable)
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| Error::internal(format_args!("MCP handshake: {e}")))?;
    let reason = running.waiting().await;
    tracing::info!(?reason, "MCP client went away");
    store.close().await;
    Ok(())
}

/// Domain failures reach the agent as a tool result with `isError: true`,
/// carrying the same code and message REST would send, so it can correct itself.
impl rmcp::handler::server::tool::IntoCallToolResult for Error {
    fn into_call_tool_result(self) -> std::result::Result<rmcp::model::CallToolResponse, rmcp::ErrorData> {
        let body = self.body();
        Ok(rmcp::model::CallToolResult::error(vec![rmcp::model::ContentBlock::text(body.to_string())]).into())
    }
}
