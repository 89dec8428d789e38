//! The MCP front: the vault as typed tools and resources (rmcp), over stdio
//! (`latchkey mcp`) and streamable HTTP (`/mcp` in `latchkey serve`).
//!
//! Like REST, it only resolves the caller and calls one vault function per
//! tool. Over HTTP the caller comes from the request's own credential, which
//! [`http::Endpoint`] resolves before rmcp sees the request; over stdio it is
//! the key in `LATCHKEY_API_KEY` or the local tenant's admin.

mod checks;
mod claims;
mod direct;
mod environments;
pub mod http;
mod lifecycle;
mod params;
mod proxy;
mod requests;
mod resources;
mod rotation;
mod run;
mod shares;
mod tools;
mod waiting;

use std::sync::Arc;

use axum::http::request::Parts;
use rmcp::RoleServer;
use rmcp::handler::server::common::FromContextPart;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::service::RequestContext;

use crate::error::{Error, Result};
use crate::vault::{Front, Origin, Principal, Session, Vault};

pub use run::Workdir;

/// What an MCP client may do without a key: the one place that decides it.
/// Listing and calling tools, listing and reading resources, and the HTTP
/// guard in front of them all ask here.
pub mod anonymous {
    use serde_json::Value;

    /// Tools an anonymous caller may see and call: agent self-signup.
    pub const TOOLS: &[&str] = &["signup"];

    /// Resources anyone may read: the documents for agents.
    pub const RESOURCES: &[&str] = &[super::resources::LLMS, super::resources::QUICKSTART];

    pub fn tool(name: &str) -> bool {
        TOOLS.contains(&name)
    }

    pub fn resource(uri: &str) -> bool {
        RESOURCES.contains(&uri)
    }

    /// Whether one JSON-RPC message may be sent without a credential: the
    /// protocol's own traffic, listings (which show only the above), and
    /// calls and reads of the above.
    /// Public for fuzzing (fuzz/fuzz_targets/mcp_http.rs).
    pub fn message(msg: &Value) -> bool {
        let method = msg.get("method").and_then(Value::as_str);
        let params = msg.get("params");
        match method {
            None => true, // a response from the client
            Some(m) if m.starts_with("notifications/") => true,
            Some(
                "initialize"
                | "ping"
                | "server/discover"
                | "tools/list"
                | "resources/list"
                | "resources/templates/list"
                | "logging/setLevel",
            ) => true,
            Some("tools/call") => params.and_then(|p| p.get("name")).and_then(Value::as_str).is_some_and(tool),
            Some("resources/read") => params.and_then(|p| p.get("uri")).and_then(Value::as_str).is_some_and(resource),
            Some(_) => false,
        }
    }
}

const INSTRUCTIONS: &str = "Latchkey is a secret vault. Store credentials with set_secret instead of \
writing them into files, prompts or code; fetch them with get_secret only at the moment you need the value, \
and never echo a value back to the user or into logs. list_secrets and the latchkey://secrets resources \
show metadata only. Every read is audited. Use expectedVersion when rotating to avoid overwriting \
someone else's change. A critical secret (and a sensitive one, if the tenant's policy says so) needs \
a human's approval: get_secret then answers approvalRequired with an approvalUrl; show that link to your \
user, call wait_for_approval, then get_secret again. Without an API key, call signup first and use the \
returned apiKey as 'Authorization: Bearer <apiKey>'.";

/// Who calls a tool, as a tool's argument. rmcp's `RequestContext` argument
/// is a clone of the whole context, the request's HTTP parts (headers,
/// extensions) among them, made for every call; a tool needs only this.
enum Caller {
    /// An HTTP request whose key `/mcp` checked (`http::Endpoint`); boxed,
    /// as a principal is several times the size of the other variants.
    Key(Box<Principal>),
    /// An HTTP request without a key.
    Anonymous(Origin),
    /// The local client of `latchkey mcp` (stdio), whose key the server holds.
    Local(Agent),
}

/// What the audit trail says of the agent behind a call: the MCP client's
/// `name/version` from `initialize`, and the tool called.
#[derive(Debug, Clone, Default)]
pub(crate) struct Agent {
    client: Option<String>,
    tool: Option<String>,
}

impl Agent {
    /// Over stdio the session's peer is the client that sent `initialize`.
    /// Over HTTP the server is stateless (`direct`): a call's peer is a
    /// stand-in, not the client, so the entry names the User-Agent instead
    /// (`Origin::audit`).
    fn of(ctx: &RequestContext<RoleServer>, tool: Option<&str>) -> Self {
        let stdio = ctx.extensions.get::<Parts>().is_none();
        let client = ctx.peer.peer_info().filter(|_| stdio).map(|i| format!("{}/{}", i.client_info.name, i.client_info.version));
        // Kept short: a client names itself, and the trail is no place for an essay.
        let client = client.map(|c| c.chars().take(200).collect());
        Agent { client, tool: tool.map(str::to_owned) }
    }

    /// `origin` with this agent's client and tool (each when known).
    fn apply(&self, origin: Origin) -> Origin {
        Origin { client: self.client.clone().or(origin.client), tool: self.tool.clone().or(origin.tool), ..origin }
    }
}

impl Caller {
    fn of(ctx: &RequestContext<RoleServer>, tool: Option<&str>) -> Self {
        let agent = Agent::of(ctx, tool);
        match ctx.extensions.get::<Parts>() {
            Some(parts) => match parts.extensions.get::<Principal>() {
                Some(principal) => {
                    let mut principal = principal.clone();
                    principal.origin = agent.apply(principal.origin);
                    Caller::Key(Box::new(principal))
                }
                None => Caller::Anonymous(agent.apply(crate::edge::origin_of(parts, Front::Mcp))),
            },
            None => Caller::Local(agent),
        }
    }

    fn origin(&self) -> Origin {
        match self {
            Caller::Key(principal) => principal.origin.clone(),
            Caller::Anonymous(origin) => origin.clone(),
            Caller::Local(agent) => agent.apply(Origin::new(Front::Mcp)),
        }
    }
}

impl FromContextPart<ToolCallContext<'_, LatchkeyMcp>> for Caller {
    fn from_context_part(ctx: &mut ToolCallContext<'_, LatchkeyMcp>) -> std::result::Result<Self, rmcp::ErrorData> {
        Ok(Caller::of(&ctx.request_context, Some(&ctx.name)))
    }
}

/// One MCP server instance: the vault plus, over stdio, the fixed caller.
#[derive(Clone)]
pub struct LatchkeyMcp {
    vault: Arc<Vault>,
    /// Set over stdio; over HTTP each request carries its own caller.
    local: Option<Arc<Session>>,
    /// Over stdio, where the local-only tools (`run.rs`) may work.
    workdir: Option<Arc<Workdir>>,
    /// Built once per process: over HTTP every request gets a fresh server,
    /// and building the router generates every tool's JSON schema.
    tool_router: Arc<ToolRouter<Self>>,
}

impl LatchkeyMcp {
    /// A server for HTTP requests: callers come from each request.
    pub fn for_http(vault: Arc<Vault>) -> Self {
        LatchkeyMcp { vault, local: None, workdir: None, tool_router: Self::shared_router() }
    }

    /// A server for one local client (stdio) and its session; the local-only
    /// tools (`run.rs`) work in `workdir`.
    pub fn for_session(vault: Arc<Vault>, session: Session, workdir: Workdir) -> Self {
        LatchkeyMcp { vault, local: Some(Arc::new(session)), workdir: Some(Arc::new(workdir)), tool_router: Self::shared_router() }
    }

    fn shared_router() -> Arc<ToolRouter<Self>> {
        static ROUTER: std::sync::OnceLock<Arc<ToolRouter<LatchkeyMcp>>> = std::sync::OnceLock::new();
        ROUTER.get_or_init(|| Arc::new(Self::all_tools())).clone()
    }

    /// Every tool: the core ones (`tools`) and each feature's own router.
    pub(crate) fn all_tools() -> ToolRouter<Self> {
        Self::tool_router()
            + Self::claim_tools()
            + Self::share_tools()
            + Self::proxy_tools()
            + Self::request_tools()
            + Self::check_tools()
            + Self::environment_tools()
            + Self::run_tools()
            + Self::lifecycle_tools()
            + Self::rotation_tools()
    }

    /// Whether this request has a caller (anonymous ones see less).
    fn has_caller(&self, ctx: &RequestContext<RoleServer>) -> bool {
        match ctx.extensions.get::<Parts>() {
            Some(parts) => parts.extensions.get::<Principal>().is_some(),
            None => self.local.is_some(),
        }
    }

    /// The caller, current as of this call: over HTTP the request's own,
    /// authenticated and charged by the vault as it arrived; over stdio the
    /// session's, checked and charged by the vault for each call.
    async fn principal(&self, caller: Caller) -> Result<Principal> {
        let need_key = || Error::Unauthorized("this tool needs an API key: call signup, then send Authorization: Bearer <apiKey>".into());
        match caller {
            Caller::Key(principal) => Ok(*principal),
            Caller::Anonymous(_) => Err(need_key()),
            Caller::Local(agent) => match &self.local {
                Some(session) => {
                    let mut p = self.vault.session_caller(session).await?;
                    p.origin = agent.apply(p.origin);
                    Ok(p)
                }
                None => Err(need_key()),
            },
        }
    }

    /// The values this call's request (HTTP) or session (stdio) opened that
    /// the client may not see: the leak guard redacts them from every answer.
    fn touched(&self, ctx: &RequestContext<RoleServer>) -> Option<crate::redact::Touched> {
        match ctx.extensions.get::<Parts>() {
            Some(parts) => parts.extensions.get::<Principal>().map(|p| p.touched.clone()),
            None => self.local.as_ref().map(|s| s.touched()),
        }
    }

    /// The full tool catalog with schemas, for `latchkey mcp --print-tools`.
    pub fn tool_catalog() -> serde_json::Value {
        let tools = Self::all_tools().list_all();
        serde_json::json!({ "tools": tools })
    }
}

/// Serves one local MCP client over stdin/stdout until it hangs up.
pub async fn serve_stdio(vault: Arc<Vault>, api_key: Option<&str>, tenant: &str, workdir: Workdir) -> Result<()> {
    use rmcp::ServiceExt;
    let origin = Origin { front: Front::Mcp, user_agent: Some("latchkey mcp (stdio)".into()), ..Default::default() };
    let session = vault.open_session(api_key, tenant, origin).await?;
    tracing::info!(tenant = ?session.tenant_id(), "serving MCP on stdio");
    let store = vault.store().clone();
    let running = LatchkeyMcp::for_session(vault, session, workdir)
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| Error::internal(format_args!("MCP handshake: {e}")))?;
    let reason = running.waiting().await;
    tracing::info!(?reason, "MCP client went away");
    store.close().await;
    Ok(())
}

/// The leak guard: every string of a tool result or resource with each
/// touched value (and its encoded forms) replaced by `[latchkey:NAME]`.
fn guard_json(redactor: &crate::redact::Redactor, value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(s) => {
            if let std::borrow::Cow::Owned(clean) = redactor.redact(s) {
                *s = clean;
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(|v| guard_json(redactor, v)),
        serde_json::Value::Object(map) => map.values_mut().for_each(|v| guard_json(redactor, v)),
        _ => {}
    }
}

/// Passes an answer through the guard (as JSON, string by string, so the
/// answer stays well-formed); unchanged when nothing was touched.
fn guarded<T: serde::Serialize + serde::de::DeserializeOwned>(touched: Option<&crate::redact::Touched>, answer: T) -> T {
    let Some(touched) = touched.filter(|t| !t.is_empty()) else { return answer };
    let redactor = touched.redactor();
    let Ok(mut json) = serde_json::to_value(&answer) else { return answer };
    guard_json(&redactor, &mut json);
    serde_json::from_value(json).unwrap_or(answer)
}

/// Domain failures reach the agent as a tool result with `isError: true`,
/// carrying the same code and message REST would send, so it can correct itself.
impl rmcp::handler::server::tool::IntoCallToolResult for Error {
    fn into_call_tool_result(self) -> std::result::Result<rmcp::model::CallToolResponse, rmcp::ErrorData> {
        let body = self.body();
        Ok(rmcp::model::CallToolResult::error(vec![rmcp::model::ContentBlock::text(body.to_string())]).into())
    }
}
