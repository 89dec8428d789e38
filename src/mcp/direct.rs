//! The hot path of `/mcp`: an authenticated `tools/call` from a client of a
//! protocol revision before 2026-07-28 (Claude Code and most clients today) is
//! handed straight to the server's handler, without the service rmcp builds
//! for every stateless HTTP request.
//!
//! That service is a serve loop, a handler task and a response task with their
//! channels and cancellation tokens, for one message. Measured on a `ping`, it
//! costs ~30 µs of server CPU per request, more than the whole audited read
//! behind `get_secret` (tools/BENCHMARKS.md).
//!
//! What stays rmcp's is everything that shapes the answer: the request is
//! parsed into rmcp's own message type and given to [`Service::handle_request`],
//! the entry point rmcp's serve loop calls, with the context that loop would
//! build (the request's meta and extensions, the HTTP parts among them, and a
//! peer that knows the protocol version from the header). The answer is
//! serialised the way rmcp's JSON response mode does. What this module decides
//! is only *which* requests may skip the per-request service, and it takes
//! only those where rmcp's transport checks are known to pass and its service
//! adds nothing: one request (no batch, no notification), `tools/call`, no
//! `_meta` (no progress token, no per-request protocol version), a known
//! pre-2026-07-28 `MCP-Protocol-Version` or none, plain `Accept` and
//! `Content-Type` headers, a well-formed `Host` and no `Origin`. Anything else
//! goes to rmcp unchanged. `tests/mcp.rs` sends each kind of call both ways and
//! asserts the answers are byte for byte the same.
//!
//! What a tool must not do, for this to hold: talk to the client through
//! `ctx.peer` (progress, logging, elicitation, sampling) or watch `ctx.ct`.
//! Here every request of one revision shares an idle peer whose messages go
//! nowhere, and the token is never cancelled; rmcp would switch the answer to
//! an event stream and cancel the token once answered. So only the tools in
//! [`DIRECT_TOOLS`] are answered here, a tool added to the server goes to
//! rmcp until someone lists it, and the tests below fail if a listed tool's
//! handler can reach the peer or the token (by its source, and by running
//! each with a peer whose messages are recorded and a cancelled token).
//!
//! What the module takes from rmcp was checked against one rmcp release; a
//! test pins it and says what to re-check when rmcp changes.

use std::collections::HashSet;
use std::sync::OnceLock;

use axum::body::Bytes;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rmcp::RoleServer;
use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientRequest, GetExtensions, GetMeta, Implementation, InitializeRequestParams,
    JsonRpcMessage, ProtocolVersion, ServerJsonRpcMessage,
};
use rmcp::service::{Peer, RequestContext, RunningService, Service, serve_directly_with_ct};
use tokio_util::sync::CancellationToken;

use super::LatchkeyMcp;

const JSON: &str = "application/json";
const EVENT_STREAM: &str = "text/event-stream";
const PROTOCOL_HEADER: HeaderName = HeaderName::from_static("mcp-protocol-version");

/// The tools whose calls this module may answer. A tool belongs here only if
/// its handler neither talks to the client (`Peer`, `RequestContext`) nor
/// watches the cancellation token: it takes only `Parameters` and a `Caller`.
/// `tests::listed_tools_cannot_reach_the_peer_or_the_token` reads each one's
/// source and `tests::listed_tools_send_nothing_and_ignore_cancellation` runs
/// each one, so a tool added here must get a row there too.
pub const DIRECT_TOOLS: &[&str] = &[
    "create_api_key",
    "create_project",
    "delete_project",
    "delete_secret",
    "get_project",
    "get_secret",
    "list_api_keys",
    "list_projects",
    "list_secret_versions",
    "list_secrets",
    "query_audit",
    "regenerate_api_key",
    "revoke_api_key",
    "set_secret",
    "signup",
    "update_api_key",
    "update_project",
    "update_secret_metadata",
    "whoami",
];

/// A peer reporting one protocol revision, and the idle service behind it.
type RevisionPeer = (ProtocolVersion, Peer<RoleServer>, RunningService<RoleServer, LatchkeyMcp>);

/// The handler and, per protocol revision it answers directly, a peer that
/// reports that revision, as the peer of a stateless request would.
pub struct Direct {
    server: LatchkeyMcp,
    peers: OnceLock<Vec<RevisionPeer>>,
    /// Tools annotated read-only: a call of one may run where its request
    /// arrived (see [`Call::read_only`]).
    read_only: HashSet<String>,
    /// Where the peers' messages go in the test that proves there are none.
    #[cfg(test)]
    outbox: Option<futures::channel::mpsc::UnboundedSender<ServerJsonRpcMessage>>,
}

/// What [`Direct::take`] made of a request. Made once per request and moved
/// straight on, so both variants stay unboxed.
#[allow(clippy::large_enum_variant)]
pub enum Taken {
    Call(Call),
    /// Not one this module takes: rmcp's, unchanged.
    Rmcp(Parts, Bytes),
}

/// A request this module answers, read and not yet run.
pub struct Call {
    request: rmcp::model::JsonRpcRequest<ClientRequest>,
    peer: Peer<RoleServer>,
    parts: Parts,
    read_only: bool,
}

impl Call {
    /// Whether the tool called says it changes nothing (`readOnlyHint`). Such a
    /// call is a plain read, like a REST `GET`: it may run in its connection's
    /// task, which hyper drops if the client hangs up (`server::run_to_completion`).
    /// Its audit entry is committed by the audit writer's own task either way.
    pub fn read_only(&self) -> bool {
        self.read_only
    }
}

impl Direct {
    pub fn new(server: LatchkeyMcp) -> Self {
        Direct {
            read_only: read_only_tools(&server.tool_router),
            server,
            peers: OnceLock::new(),
            #[cfg(test)]
            outbox: None,
        }
    }

    /// Whether the request's headers leave rmcp's transport nothing to check
    /// or add; the body decides the rest.
    pub fn headers_fit(headers: &HeaderMap) -> bool {
        let one = |name: HeaderName| {
            let mut all = headers.get_all(name).iter();
            match (all.next(), all.next()) {
                (Some(v), None) => v.to_str().ok(),
                _ => None,
            }
        };
        let accept_ok = one(header::ACCEPT).is_some_and(|a| {
            !a.contains([';', '"'])
                && a.split(',').any(|t| t.trim().eq_ignore_ascii_case(JSON))
                && a.split(',').any(|t| t.trim().eq_ignore_ascii_case(EVENT_STREAM))
        });
        let type_ok = one(header::CONTENT_TYPE).is_some_and(|t| t.split(';').next().unwrap_or(t).trim().eq_ignore_ascii_case(JSON));
        // A `Host` never carries userinfo; rmcp refuses `127.0.0.1:1@evil.com`, so it is rmcp's.
        let host_ok = one(header::HOST).is_some_and(|h| !h.contains('@') && axum::http::uri::Authority::try_from(h).is_ok());
        let version_ok = match headers.get_all(&PROTOCOL_HEADER).iter().count() {
            0 => true,
            1 => one(PROTOCOL_HEADER).is_some_and(|v| answered_version(v).is_some()),
            _ => false,
        };
        accept_ok && type_ok && host_ok && version_ok && !headers.contains_key(header::ORIGIN)
    }

    /// The call, if the request is one this module takes, or the request
    /// back for rmcp. `parts` must carry the authenticated caller.
    pub fn take(&self, parts: Parts, body: Bytes) -> Taken {
        let Some(request) = plain_call(&body).filter(|r| match &r.request {
            ClientRequest::CallToolRequest(call) => DIRECT_TOOLS.contains(&call.params.name.as_ref()),
            _ => false,
        }) else {
            return Taken::Rmcp(parts, body);
        };
        let version =
            parts.headers.get(&PROTOCOL_HEADER).and_then(|v| v.to_str().ok()).map_or(Some(ProtocolVersion::V_2025_03_26), answered_version);
        let Some(peer) = version.and_then(|v| self.peer(&v)) else {
            return Taken::Rmcp(parts, body);
        };
        let read_only = match &request.request {
            ClientRequest::CallToolRequest(call) => self.read_only.contains(call.params.name.as_ref()),
            _ => false,
        };
        Taken::Call(Call { request, peer, parts, read_only })
    }

    /// Runs the call through the handler and serialises its answer as rmcp's
    /// JSON response mode would.
    pub async fn answer(&self, call: Call) -> Response {
        self.answer_with(call, CancellationToken::new()).await
    }

    /// [`Direct::answer`] with the token the handler gets: one nobody
    /// cancels, or in tests one cancelled already.
    async fn answer_with(&self, call: Call, ct: CancellationToken) -> Response {
        let Call { mut request, peer, parts, .. } = call;
        let id = request.id.clone();
        let meta = std::mem::take(request.request.get_meta_mut());
        let mut extensions = std::mem::take(request.request.extensions_mut());
        extensions.insert(parts);
        let mut context = RequestContext::new(id.clone(), peer);
        context.ct = ct;
        context.meta = meta;
        context.extensions = extensions;
        let message: ServerJsonRpcMessage = match self.server.handle_request(request.request, context).await {
            Ok(result) => JsonRpcMessage::response(result, id),
            Err(error) => {
                // rmcp's serve loop logs this too, under the same target (so
                // `main.rs` filters both alike); the code, not the message,
                // which may quote the caller's arguments, and the id escaped.
                tracing::warn!(target: "rmcp::service", ?id, code = error.code.0, "response error");
                JsonRpcMessage::error(error, Some(id))
            }
        };
        match serde_json::to_vec(&message) {
            Ok(json) => ([(header::CONTENT_TYPE, JSON)], json).into_response(),
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("serialize json response: {e}")).into_response(),
        }
    }

    /// The peer for `version`. Each is a service that never receives a
    /// message: it exists so that handlers get a real peer, as in rmcp's own
    /// stateless path, where `context.protocol_version()` comes from the header.
    fn peer(&self, version: &ProtocolVersion) -> Option<Peer<RoleServer>> {
        let peers = self.peers.get_or_init(|| {
            answered_versions()
                .map(|v| {
                    let info = InitializeRequestParams::new(ClientCapabilities::default(), Implementation::default())
                        .with_protocol_version(v.clone());
                    let running = self.idle_service(info);
                    (v.clone(), running.peer().clone(), running)
                })
                .collect()
        });
        peers.iter().find(|(v, ..)| v == version).map(|(_, peer, _)| peer.clone())
    }

    /// A service that receives nothing and whose messages go nowhere (in a
    /// test, to the outbox).
    fn idle_service(&self, info: InitializeRequestParams) -> RunningService<RoleServer, LatchkeyMcp> {
        #[cfg(test)]
        if let Some(outbox) = &self.outbox {
            let recorded = (outbox.clone(), futures::stream::pending());
            return serve_directly_with_ct(self.server.clone(), recorded, Some(info), CancellationToken::new());
        }
        let silent = (futures::sink::drain(), futures::stream::pending());
        serve_directly_with_ct(self.server.clone(), silent, Some(info), CancellationToken::new())
    }
}

/// The request if `body` is a plain `tools/call`: exactly `jsonrpc`, `id`,
/// `method` and `params`, with `name` and `arguments` alone in `params`.
///
/// rmcp's own parse reads a message through several layers of untagged and
/// flattened types, each buffering the message once more; for a tool call of
/// a hundred bytes that cost more than the AES-GCM and the cache lookup of the
/// read it asks for (server CPU per `get_secret` ~78 → ~66 µs without it,
/// tools/BENCHMARKS.md). This reads the one shape that Claude Code and the
/// SDKs send, straight into the fields rmcp's parse would produce from it.
/// Anything else (another method, `_meta`, a field rmcp knows and this does
/// not, a repeated key, an id that is neither a string nor an integer) is
/// `None`, and the caller hands the body to rmcp.
fn plain_call(body: &[u8]) -> Option<rmcp::model::JsonRpcRequest<ClientRequest>> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Call {
        jsonrpc: Version,
        id: Id,
        method: ToolsCall,
        params: Params,
    }
    #[derive(serde::Deserialize)]
    enum Version {
        #[serde(rename = "2.0")]
        V2,
    }
    #[derive(serde::Deserialize)]
    enum ToolsCall {
        #[serde(rename = "tools/call")]
        Call,
    }
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Id {
        Number(i64),
        String(String),
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Params {
        name: String,
        arguments: Option<rmcp::model::JsonObject>,
    }
    let call: Call = serde_json::from_slice(body).ok()?;
    let (Version::V2, ToolsCall::Call) = (call.jsonrpc, call.method);
    let id = match call.id {
        Id::Number(n) => rmcp::model::NumberOrString::Number(n),
        Id::String(s) => rmcp::model::NumberOrString::String(s.into()),
    };
    let mut params = CallToolRequestParams::new(call.params.name);
    params.arguments = call.params.arguments;
    Some(rmcp::model::JsonRpcRequest::new(id, ClientRequest::CallToolRequest(rmcp::model::Request::new(params))))
}

/// The tools annotated read-only (`readOnlyHint`).
fn read_only_tools(router: &rmcp::handler::server::router::tool::ToolRouter<LatchkeyMcp>) -> HashSet<String> {
    router
        .list_all()
        .into_iter()
        .filter(|t| t.annotations.as_ref().and_then(|a| a.read_only_hint) == Some(true))
        .map(|t| t.name.into_owned())
        .collect()
}

/// The revisions answered here: every known one before 2026-07-28, whose
/// requests carry no lifecycle metadata and need no standard headers.
fn answered_versions() -> impl Iterator<Item = &'static ProtocolVersion> {
    ProtocolVersion::KNOWN_VERSIONS.iter().filter(|v| v.as_str() < ProtocolVersion::STANDARD_HEADERS.as_str())
}

fn answered_version(header: &str) -> Option<ProtocolVersion> {
    answered_versions().find(|v| v.as_str() == header).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::ClientJsonRpcMessage;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        h
    }

    /// What the short parse reads is what rmcp's parse reads, and what it
    /// does not take is left to rmcp.
    #[test]
    fn a_plain_call_parses_as_rmcp_parses_it() {
        let taken = [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_secret","arguments":{"id":"x"}}}"#,
            r#"{"params":{"arguments":{"id":"x","n":[1,2.5,-3,null,{"a":"\u00e9"}]},"name":"get_secret"},"method":"tools/call","id":"s-1","jsonrpc":"2.0"}"#,
            r#"{"jsonrpc":"2.0","id":-7,"method":"tools/call","params":{"name":"whoami"}}"#,
            r#"{"jsonrpc":"2.0","id":9223372036854775807,"method":"tools/call","params":{"name":"x","arguments":null}}"#,
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"get_secret","arguments":{"id":"a","id":"b"}}}"#,
            r#"{"jsonrpc":"2.0","id":"","method":"tools\/call","params":{"name":"get\u005fsecret","arguments":{}}}"#,
        ];
        for body in taken {
            let ours = plain_call(body.as_bytes()).unwrap_or_else(|| panic!("not taken: {body}"));
            let Ok(ClientJsonRpcMessage::Request(theirs)) = serde_json::from_str::<ClientJsonRpcMessage>(body) else {
                panic!("rmcp does not read it as a request: {body}")
            };
            assert!(theirs.request.get_meta().is_empty() && ours.request.get_meta().is_empty(), "{body}");
            assert_eq!(serde_json::to_value(&ours).unwrap(), serde_json::to_value(&theirs).unwrap(), "{body}");
        }
        let left = [
            r#"{"jsonrpc":"2.0","id":1.0,"method":"tools/call","params":{"name":"get_secret"}}"#,
            r#"{"jsonrpc":"2.0","id":9223372036854775808,"method":"tools/call","params":{"name":"get_secret"}}"#,
            r#"{"jsonrpc":"2.0","id":null,"method":"tools/call","params":{"name":"get_secret"}}"#,
            r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"get_secret"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"_meta":{"progressToken":1},"name":"get_secret"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_secret","requestState":"s"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_secret"},"extra":true}"#,
            r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"tools/call","params":{"name":"get_secret"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"b"}}"#,
            r#"{"jsonrpc":"1.0","id":1,"method":"tools/call","params":{"name":"get_secret"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"name":"get_secret"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#,
            r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_secret"}}]"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_secret"}} x"#,
        ];
        for body in left {
            assert!(plain_call(body.as_bytes()).is_none(), "taken: {body}");
        }
    }

    /// A read-only tool's call runs in its connection's task, which a client's
    /// hang-up drops half-way (`Call::read_only`): only tools that change
    /// nothing but the audit log may say they are read-only.
    #[test]
    fn only_reads_are_read_only() {
        let mut tools: Vec<String> = read_only_tools(&LatchkeyMcp::all_tools()).into_iter().collect();
        tools.sort();
        // The approval tools and a gated get_secret write approval rows too
        // (a lazy expiry, a request, a grant's use): those are no cache's,
        // and each is one transaction, whole or not at all, so a hang-up
        // half-way leaves nothing to repair (see `vault::approvals`).
        // list_claim_tokens may erase expired claims' values: one UPDATE.
        // list_shares erases the values of links found expired: one
        // idempotent UPDATE, which the sweep would make anyway.
        let reads = [
            "approval_status",
            "compare_environments",
            "get_project",
            "get_rotation_status",
            "get_secret",
            "list_api_keys",
            "list_claim_tokens",
            "list_expiring_secrets",
            "list_projects",
            "list_secret_versions",
            "list_secrets",
            "list_shares",
            "query_audit",
            "request_status",
            "validate_environment",
            "verify_secret",
            "wait_for_approval",
            "whoami",
        ];
        assert_eq!(tools, reads);
    }

    /// What to re-check when rmcp changes, before moving the pin below.
    const RECHECK: &str = "rmcp is not the release src/mcp/direct.rs was checked against. Re-read the new rmcp for what \
the direct path copies from it, then move the pin: (1) its stateless JSON response mode answers serde_json::to_vec(message) \
as application/json with status 200 for revisions before 2026-07-28 (transport/streamable_http_server/tower.rs: \
jsonrpc_message_response, jsonrpc_http_status); (2) a stateless request's peer reports the MCP-Protocol-Version header, \
2025-03-26 when absent (peer_info_for_stateless_request); (3) its transport checks (Accept, Content-Type, Host, Origin, \
the protocol header, body size) pass for every request Direct::headers_fit takes, and add nothing to the answer; \
(4) ClientJsonRpcMessage reads a plain tools/call as plain_call builds it; (5) the serve loop hands handle_request the \
context Direct::answer builds; (6) a bad argument still reads \"failed to deserialize parameters:\" (call_tool in \
src/mcp/tools.rs). Then run tests/mcp.rs tool_calls_answer_the_same_* on SQLite and PostgreSQL.";

    /// The rmcp release this module was checked against, and the parts of it
    /// the module names.
    #[test]
    fn rmcp_is_the_release_this_module_was_checked_against() {
        let lock = include_str!("../../Cargo.lock");
        let locked = lock.split("\n[[package]]\n").find(|p| p.starts_with("name = \"rmcp\"\n")).expect("rmcp in Cargo.lock");
        assert!(locked.contains("\nversion = \"3.11.0\"\n"), "{RECHECK}\n{locked}");
        let known: Vec<&str> = ProtocolVersion::KNOWN_VERSIONS.iter().map(ProtocolVersion::as_str).collect();
        assert_eq!(known, ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28"], "{RECHECK}");
        assert_eq!(ProtocolVersion::STANDARD_HEADERS.as_str(), "2026-07-28", "{RECHECK}");
        let answered: Vec<&str> = answered_versions().map(ProtocolVersion::as_str).collect();
        assert_eq!(answered, ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"], "{RECHECK}");
        // The bytes of an answer, as both paths write them.
        let result = rmcp::model::ServerResult::empty(());
        let answer: ServerJsonRpcMessage = JsonRpcMessage::response(result, rmcp::model::NumberOrString::Number(7));
        assert_eq!(serde_json::to_string(&answer).unwrap(), r#"{"jsonrpc":"2.0","id":7,"result":{}}"#, "{RECHECK}");
        let error = rmcp::ErrorData::invalid_params("tool not found", None);
        let failed: ServerJsonRpcMessage = JsonRpcMessage::error(error, Some(rmcp::model::NumberOrString::String("s".into())));
        assert_eq!(
            serde_json::to_string(&failed).unwrap(),
            r#"{"jsonrpc":"2.0","id":"s","error":{"code":-32602,"message":"tool not found"}}"#,
            "{RECHECK}"
        );
    }

    /// What may stand in a direct tool's parameter list: the tool's own
    /// arguments and the caller. rmcp hands a handler the peer or the token
    /// only through a parameter (`RequestContext`, `Peer`, `CancellationToken`,
    /// `Extensions`, ...), so this closes that door.
    fn allowed_parameter(param: &str) -> bool {
        let param = param.trim();
        param == "&self"
            || param == "caller: Caller"
            || (param.starts_with("Parameters(") && param.contains("): Parameters<") && param.ends_with('>'))
    }

    /// Names a direct tool's body must not use: the request's context, its
    /// peer and its token, by any of the names rmcp gives them.
    const FORBIDDEN_IN_BODY: &[&str] =
        &["ctx", "ct", "peer", "Peer", "RequestContext", "CancellationToken", "request_context", "ToolCallContext", "Extensions"];

    /// Why `tool`'s handler in `source` may not be on the direct path (none:
    /// empty). A handler not found is a reason too.
    fn direct_path_violations(source: &str, tool: &str) -> Vec<String> {
        let Some(start) = source.find(&format!("async fn {tool}(")) else {
            return vec![format!("no `async fn {tool}(` in src/mcp/tools.rs: check its handler by hand and teach this test where it is")];
        };
        let rest = &source[start..];
        let end = ["#[tool(", "#[tool_handler", "\n}\n"].iter().filter_map(|m| rest.find(m)).min().unwrap_or(rest.len());
        let item = &rest[..end];
        let open = item.find('(').expect("a parameter list");
        let mut depth = 0;
        let mut close = open;
        for (i, c) in item[open..].char_indices() {
            match c {
                '(' | '<' => depth += 1,
                ')' | '>' if depth > 0 => {
                    depth -= 1;
                    if depth == 0 && c == ')' {
                        close = open + i;
                        break;
                    }
                }
                _ => {}
            }
        }
        let mut problems = Vec::new();
        let (mut depth, mut from) = (0, open + 1);
        let params = &item[..close];
        let mut list = Vec::new();
        for (i, c) in params.char_indices().skip(open + 1) {
            match c {
                '(' | '<' => depth += 1,
                ')' | '>' => depth -= 1,
                ',' if depth == 0 => {
                    list.push(&params[from..i]);
                    from = i + 1;
                }
                _ => {}
            }
        }
        list.push(&params[from..]);
        for param in list.into_iter().filter(|p| !p.trim().is_empty()) {
            if !allowed_parameter(param) {
                problems.push(format!("{tool} takes `{}`", param.trim()));
            }
        }
        let body = &item[close..];
        for word in body.split(|c: char| !(c.is_alphanumeric() || c == '_')) {
            if FORBIDDEN_IN_BODY.contains(&word) {
                problems.push(format!("{tool} uses `{word}`"));
            }
        }
        problems
    }

    /// Every listed tool is a tool, and its handler can reach neither the
    /// peer nor the token.
    #[test]
    fn listed_tools_cannot_reach_the_peer_or_the_token() {
        let source = include_str!("tools.rs");
        let router = LatchkeyMcp::all_tools();
        let mut problems = Vec::new();
        for tool in DIRECT_TOOLS {
            if !router.has_route(tool) {
                problems.push(format!("{tool} is listed but is no tool"));
            }
            problems.extend(direct_path_violations(source, tool));
        }
        assert!(
            problems.is_empty(),
            "tools on the direct path must not talk to the client or watch cancellation (src/mcp/direct.rs): \
             take them off DIRECT_TOOLS, or drop the use: {problems:#?}"
        );
    }

    /// The check above catches what it is there for.
    #[test]
    fn the_source_check_catches_a_peer_or_a_token() {
        let tail = "\n    #[tool(annotations())]\n    async fn next(&self) {}\n}\n";
        let clean = "async fn t(&self, Parameters(mut p): Parameters<A<B, C>>, caller: Caller) -> Result<Json<X>, Error> {\n        Ok(Json(self.vault.x(&self.principal(caller).await?, p.change).await?))\n    }";
        assert_eq!(direct_path_violations(&format!("{clean}{tail}"), "t"), Vec::<String>::new());
        for bad in [
            "async fn t(&self, ctx: RequestContext<RoleServer>) -> R { ok() }",
            "async fn t(&self, Parameters(p): Parameters<A>, peer: Peer<RoleServer>) -> R { ok() }",
            "async fn t(&self, token: CancellationToken, caller: Caller) -> R { ok() }",
            "async fn t(&self, Extension(parts): Extension<Parts>) -> R { ok() }",
            "async fn t(&self, caller: Caller) -> R { self.vault.x(caller.ctx.peer.notify_progress(p)) }",
            "async fn t(&self, caller: Caller) -> R { tokio::select! { _ = self.ct.cancelled() => {} } }",
        ] {
            assert!(!direct_path_violations(&format!("{bad}{tail}"), "t").is_empty(), "not caught: {bad}");
        }
        assert!(!direct_path_violations(tail, "t").is_empty(), "a handler not found is a failure");
    }

    /// A vault on a fresh SQLite data dir, a `Direct` whose peers' messages
    /// are recorded, and the HTTP parts of a request authenticated with a
    /// new tenant's key.
    async fn recorded() -> (tempfile::TempDir, Direct, futures::channel::mpsc::UnboundedReceiver<ServerJsonRpcMessage>, Parts) {
        use crate::vault::{Front, Origin};
        let dir = tempfile::tempdir().unwrap();
        let store = crate::config::StoreArgs { data_dir: dir.path().to_path_buf(), database_url: None };
        let vault = crate::config::open_vault(&store, &crate::config::PolicyArgs::defaults()).await.unwrap();
        let tenant = format!("direct-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
        let signup = crate::vault::views::SignupRequest { tenant_id: tenant, email: None, agent: None, description: None };
        let key = vault.signup(signup, Origin::new(Front::Mcp)).await.unwrap().api_key;
        let principal = vault.authenticate(&key, Origin::new(Front::Mcp)).await.unwrap();
        let (mut parts, ()) = axum::http::Request::new(()).into_parts();
        parts.extensions.insert(principal);
        let (outbox, sent) = futures::channel::mpsc::unbounded();
        let mut direct = Direct::new(LatchkeyMcp::for_http(vault));
        direct.outbox = Some(outbox);
        (dir, direct, sent, parts)
    }

    /// Calls `tool` on the direct path with a cancelled token; the answer's
    /// `result`. Fails if the call reaches the client.
    async fn call_directly(
        direct: &Direct,
        sent: &mut futures::channel::mpsc::UnboundedReceiver<ServerJsonRpcMessage>,
        parts: &Parts,
        tool: &str,
        arguments: serde_json::Value,
    ) -> serde_json::Value {
        use futures::StreamExt;
        let body =
            serde_json::json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": { "name": tool, "arguments": arguments } });
        let Taken::Call(call) = direct.take(parts.clone(), Bytes::from(body.to_string())) else { panic!("{tool} is not taken") };
        let cancelled = CancellationToken::new();
        cancelled.cancel();
        let response = tokio::select! {
            biased;
            message = sent.next() => panic!("{tool} sent the client {message:?}: it cannot be on the direct path"),
            response = direct.answer_with(call, cancelled) => response,
        };
        assert_eq!(response.status(), StatusCode::OK, "{tool}");
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        let answer: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert!(sent.try_recv().is_err(), "{tool} sent the client a message: it cannot be on the direct path");
        answer["result"].clone()
    }

    /// Each listed tool, run through the direct path with a peer whose
    /// messages are recorded and a token cancelled before the call, does its
    /// work and sends nothing: one that talked to the client would be caught
    /// by the recorder, one that watched the token would stop short.
    #[tokio::test]
    async fn listed_tools_send_nothing_and_ignore_cancellation() {
        use serde_json::json;
        let (_dir, direct, mut sent, parts) = recorded().await;
        let mut ran = Vec::new();
        let mut run = async |tool: &'static str, arguments: serde_json::Value| {
            let result = call_directly(&direct, &mut sent, &parts, tool, arguments.clone()).await;
            assert_ne!(result["isError"], true, "{tool} {arguments}: {result}");
            ran.push(tool);
            result["structuredContent"].clone()
        };
        run("whoami", json!({})).await;
        let tenant = format!("direct-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
        run("signup", json!({ "tenantId": tenant })).await;
        run("set_secret", json!({ "name": "DIRECT", "value": "v" })).await;
        run("get_secret", json!({ "name": "DIRECT" })).await;
        run("list_secrets", json!({})).await;
        run("update_secret_metadata", json!({ "name": "DIRECT", "description": "d" })).await;
        run("list_secret_versions", json!({ "name": "DIRECT" })).await;
        run("delete_secret", json!({ "name": "DIRECT" })).await;
        let project = run("create_project", json!({ "name": "direct" })).await["id"].clone();
        run("list_projects", json!({})).await;
        run("get_project", json!({ "id": project })).await;
        run("update_project", json!({ "id": project, "name": "renamed" })).await;
        run("delete_project", json!({ "id": project })).await;
        let key = run("create_api_key", json!({ "name": "k", "permissions": "read" })).await["id"].clone();
        run("list_api_keys", json!({})).await;
        run("update_api_key", json!({ "id": key, "name": "k2" })).await;
        run("regenerate_api_key", json!({ "id": key })).await;
        run("revoke_api_key", json!({ "id": key })).await;
        run("query_audit", json!({})).await;
        ran.sort();
        assert_eq!(ran, DIRECT_TOOLS, "every listed tool runs here: give a new one a row");
    }

    /// A tool not listed goes to rmcp, whatever it is.
    #[tokio::test]
    async fn unlisted_tools_go_to_rmcp() {
        let (_dir, direct, _sent, parts) = recorded().await;
        for tool in ["no_such_tool", "get_secrets", "GET_SECRET"] {
            let body =
                serde_json::json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": { "name": tool, "arguments": {} } });
            assert!(matches!(direct.take(parts.clone(), Bytes::from(body.to_string())), Taken::Rmcp(..)), "{tool}");
        }
    }

    /// `call_tool` (src/mcp/tools.rs) turns rmcp's message for arguments that
    /// do not fit into INVALID_REQUEST by its prefix.
    #[tokio::test]
    async fn arguments_that_do_not_fit_are_invalid_request() {
        let (_dir, direct, mut sent, parts) = recorded().await;
        let result = call_directly(&direct, &mut sent, &parts, "get_secret", serde_json::json!({ "id": 5 })).await;
        let text = result["content"][0]["text"].as_str().unwrap_or_default();
        let body: serde_json::Value = serde_json::from_str(text).unwrap_or_else(|_| panic!("{RECHECK}\nnot our error body: {text}"));
        let code = body["code"].as_str().or(body["error"]["code"].as_str());
        assert_eq!((result["isError"].as_bool(), code), (Some(true), Some("INVALID_REQUEST")), "{RECHECK}\n{result}");
    }

    #[test]
    fn only_plain_headers_of_older_revisions_fit() {
        let base = [("host", "127.0.0.1:8200"), ("accept", "application/json, text/event-stream"), ("content-type", "application/json")];
        assert!(Direct::headers_fit(&headers(&base)));
        let with = |extra: (&'static str, &'static str)| {
            let mut all = base.to_vec();
            all.push(extra);
            Direct::headers_fit(&headers(&all))
        };
        assert!(with(("mcp-protocol-version", "2025-06-18")) && with(("mcp-protocol-version", "2025-11-25")));
        assert!(!with(("mcp-protocol-version", "2026-07-28")), "2026-07-28 requests negotiate per request: rmcp's");
        assert!(!with(("mcp-protocol-version", "1999-01-01")));
        assert!(!with(("origin", "http://localhost:3000")));
        let mut no_sse = base.to_vec();
        no_sse[1] = ("accept", "application/json");
        assert!(!Direct::headers_fit(&headers(&no_sse)));
        let mut weighted = base.to_vec();
        weighted[1] = ("accept", "application/json, text/event-stream;q=0");
        assert!(!Direct::headers_fit(&headers(&weighted)));
        for host in ["127.0.0.1 evil", "127.0.0.1:1@evil.com", "user@127.0.0.1"] {
            let mut bad_host = base.to_vec();
            bad_host[0] = ("host", host);
            assert!(!Direct::headers_fit(&headers(&bad_host)), "{host}");
        }
        let mut two_hosts = base.to_vec();
        two_hosts.push(("host", "evil.example"));
        assert!(!Direct::headers_fit(&headers(&two_hosts)), "two Hosts are rmcp's to refuse");
        assert!(!with(("origin", "http://localhost:1")), "any Origin, one or two, is rmcp's");
    }
}
