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
//! an event stream and cancel the token once answered. No Latchkey tool does
//! either; one that needs to must be left out of [`Direct::answer`].

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
        Direct { read_only: read_only_tools(&server.tool_router), server, peers: OnceLock::new() }
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
        let host_ok = one(header::HOST).is_some_and(|h| axum::http::uri::Authority::try_from(h).is_ok());
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
        let Some(request) = plain_call(&body) else {
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
        let Call { mut request, peer, parts, .. } = call;
        let id = request.id.clone();
        let meta = std::mem::take(request.request.get_meta_mut());
        let mut extensions = std::mem::take(request.request.extensions_mut());
        extensions.insert(parts);
        let mut context = RequestContext::new(id.clone(), peer);
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
                    let silent = (futures::sink::drain(), futures::stream::pending());
                    let running = serve_directly_with_ct(self.server.clone(), silent, Some(info), CancellationToken::new());
                    (v.clone(), running.peer().clone(), running)
                })
                .collect()
        });
        peers.iter().find(|(v, ..)| v == version).map(|(_, peer, _)| peer.clone())
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
        let mut tools: Vec<String> = read_only_tools(&LatchkeyMcp::tool_router()).into_iter().collect();
        tools.sort();
        let reads = [
            "get_project",
            "get_secret",
            "list_api_keys",
            "list_projects",
            "list_secret_versions",
            "list_secrets",
            "query_audit",
            "whoami",
        ];
        assert_eq!(tools, reads);
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
        let mut bad_host = base.to_vec();
        bad_host[0] = ("host", "127.0.0.1 evil");
        assert!(!Direct::headers_fit(&headers(&bad_host)));
    }
}
