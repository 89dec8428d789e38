//! MCP over streamable HTTP at `/mcp`: rmcp's service behind Latchkey's own
//! guard, which checks `Host`/`Origin` (DNS rebinding), resolves the caller's
//! credential per request, and answers 401 to anonymous calls of anything but
//! signup and the public resources.
//!
//! The service runs stateless (no MCP sessions): every request stands alone
//! with its own credential, so no session can carry one tenant's identity into
//! another's request, and any replica can answer any request.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, Method, header};
use axum::response::{IntoResponse, Response};
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::Value;

use super::direct::{Direct, Taken};
use super::{ANONYMOUS_TOOLS, LatchkeyMcp, resources};
use crate::error::Error;
use crate::server::{credential, origin_of};
use crate::vault::{Front, Vault};

/// Largest MCP request body read while deciding whether an anonymous call is allowed.
const MAX_BODY: usize = 4 * 1024 * 1024;

/// Which hosts and browser origins may talk to `/mcp`.
#[derive(Debug, Clone)]
pub struct Allowed {
    /// Host names (no port) accepted in `Host` and `Origin`.
    hosts: Vec<String>,
    /// Full origins (`scheme://host[:port]`) accepted in `Origin` besides loopback.
    origins: Vec<String>,
}

impl Allowed {
    /// Loopback, plus the host of the operator's public URL when one is configured.
    pub fn new(public_url: Option<&str>) -> Self {
        let mut hosts = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
        let mut origins = Vec::new();
        if let Some(url) = public_url {
            let url = url.trim_end_matches('/');
            if let Some(host) = origin_host(url) {
                hosts.push(host);
                origins.push(url.to_owned());
            }
        }
        Allowed { hosts, origins }
    }

    /// Public for fuzzing (fuzz/fuzz_targets/mcp_http.rs).
    pub fn host_ok(&self, headers: &HeaderMap) -> bool {
        let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
            return true;
        };
        self.hosts.iter().any(|h| *h == strip_port(host))
    }

    /// Public for fuzzing (fuzz/fuzz_targets/mcp_http.rs).
    pub fn origin_ok(&self, headers: &HeaderMap) -> bool {
        let Some(origin) = headers.get(header::ORIGIN).and_then(|h| h.to_str().ok()) else {
            return true;
        };
        let loopback = ["localhost", "127.0.0.1", "::1"];
        self.origins.iter().any(|o| o == origin) || origin_host(origin).is_some_and(|h| loopback.contains(&h.as_str()))
    }

    fn rmcp_config(&self) -> StreamableHttpServerConfig {
        let mut origins: Vec<String> = ["http://localhost:*", "http://127.0.0.1:*", "http://[::1]:*"].map(String::from).to_vec();
        origins.extend(self.origins.iter().cloned());
        StreamableHttpServerConfig::default()
            .with_legacy_session_mode(false)
            .with_json_response(true)
            .with_allowed_hosts(self.hosts.clone())
            .with_allowed_origins(origins)
            .with_max_request_body_bytes(MAX_BODY)
    }
}

/// Public for fuzzing (fuzz/fuzz_targets/mcp_http.rs).
pub fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

/// The host of `scheme://host[:port][/…]`.
/// Public for fuzzing (fuzz/fuzz_targets/mcp_http.rs).
pub fn origin_host(url: &str) -> Option<String> {
    let (_, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    // An origin never carries userinfo; `http://localhost:@evil.com` is not loopback.
    if authority.contains('@') {
        return None;
    }
    Some(strip_port(authority).to_owned()).filter(|h| !h.is_empty())
}

/// `/mcp`: Latchkey's guard in front of rmcp's service, and the direct path
/// between them (see `direct.rs`). One per process, behind an `Arc`, so
/// rmcp's service is not cloned for every request (its config holds the
/// allowed hosts and origins as strings).
pub struct Endpoint {
    vault: Arc<Vault>,
    allowed: Allowed,
    /// Answers the common `tools/call` without rmcp's per-request service.
    direct: Direct,
    rmcp: StreamableHttpService<LatchkeyMcp, NeverSessionManager>,
}

impl Endpoint {
    pub fn new(vault: Arc<Vault>, allowed: Allowed) -> Arc<Self> {
        let direct = Direct::new(LatchkeyMcp::for_http(vault.clone()));
        let for_rmcp = vault.clone();
        let config = allowed.rmcp_config();
        let rmcp = StreamableHttpService::new(move || Ok(LatchkeyMcp::for_http(for_rmcp.clone())), Default::default(), config);
        Arc::new(Endpoint { vault, allowed, direct, rmcp })
    }

    /// Host/Origin first (403), then the caller (401 / 429), then the call.
    ///
    /// `/mcp` is outside `server::run_to_completion`, which runs every POST in
    /// a task of its own; its rule is kept here, where the body says what the
    /// call is. A read-only tool's call on the direct path runs in the
    /// connection's task, as a REST `GET` does; everything else (writes, and
    /// whatever rmcp answers) runs in a task no hang-up can cancel.
    pub async fn serve(self: Arc<Self>, req: Request) -> Response {
        if !self.allowed.host_ok(req.headers()) {
            return forbidden("this Host");
        }
        if !self.allowed.origin_ok(req.headers()) {
            return forbidden("this Origin");
        }
        let (mut parts, body) = req.into_parts();
        let origin = origin_of(&parts, Front::Mcp);
        if let Some(token) = credential(&parts).filter(|t| !t.is_empty()) {
            let principal = match self.vault.authenticate(token, origin).await {
                Ok(principal) => principal,
                Err(e) => return e.into_response(),
            };
            parts.extensions.insert(principal);
            // The body is in memory already (server::read_body_first), so its size is known.
            let fits = http_body::Body::size_hint(&body).exact().is_some_and(|n| n <= MAX_BODY as u64);
            if parts.method != Method::POST || !fits || !Direct::headers_fit(&parts.headers) {
                return self.to_rmcp(Request::from_parts(parts, body)).await;
            }
            let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
                return Error::internal("an MCP request body in memory could not be read").into_response();
            };
            return match self.direct.take(parts, bytes) {
                Taken::Call(call) if call.read_only() => self.direct.answer(call).await,
                Taken::Call(call) => self.in_task(|this| async move { this.direct.answer(call).await }).await,
                Taken::Rmcp(parts, bytes) => self.to_rmcp(Request::from_parts(parts, Body::from(bytes))).await,
            };
        }
        if parts.method != Method::POST {
            return self.to_rmcp(Request::from_parts(parts, body)).await;
        }
        let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
            Ok(b) => b,
            Err(_) => {
                return Error::PayloadTooLarge("MCP request body is too large".into()).into_response();
            }
        };
        let allowed = match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Array(batch)) => batch.iter().all(anonymous_ok),
            Ok(msg) => anonymous_ok(&msg),
            Err(_) => true, // let rmcp answer the parse error
        };
        if !allowed {
            let row = origin.audit(None, "anonymous", "auth.failed", "mcp", None, "denied");
            if let Err(e) = self.vault.record(row).await {
                return e.into_response();
            }
            return Error::Unauthorized(
                "this MCP call needs an API key: call the signup tool, then send Authorization: Bearer <apiKey>".into(),
            )
            .into_response();
        }
        self.to_rmcp(Request::from_parts(parts, Body::from(bytes))).await
    }

    async fn to_rmcp(self: Arc<Self>, req: Request) -> Response {
        self.in_task(|this| async move { this.rmcp.handle(req).await.into_response() }).await
    }

    /// Runs `work` in a task of its own (see `server::run_to_completion`).
    async fn in_task<F, Fut>(self: Arc<Self>, work: F) -> Response
    where
        F: FnOnce(Arc<Self>) -> Fut,
        Fut: std::future::Future<Output = Response> + Send + 'static,
    {
        let requests = self.vault.requests().clone();
        match requests.spawn(work(self)).await {
            Ok(resp) => resp,
            Err(e) => Error::internal(format_args!("request task: {e}")).into_response(),
        }
    }
}

/// Whether one JSON-RPC message may be sent without a credential.
/// Public for fuzzing (fuzz/fuzz_targets/mcp_http.rs).
pub fn anonymous_ok(msg: &Value) -> bool {
    let method = msg.get("method").and_then(Value::as_str);
    let params = msg.get("params");
    match method {
        None => true, // a response from the client
        Some(m) if m.starts_with("notifications/") => true,
        Some(
            "initialize" | "ping" | "server/discover" | "tools/list" | "resources/list" | "resources/templates/list" | "logging/setLevel",
        ) => true,
        Some("tools/call") => params.and_then(|p| p.get("name")).and_then(Value::as_str).is_some_and(|n| ANONYMOUS_TOOLS.contains(&n)),
        Some("resources/read") => params.and_then(|p| p.get("uri")).and_then(Value::as_str).is_some_and(|u| resources::PUBLIC.contains(&u)),
        Some(_) => false,
    }
}

fn forbidden(what: &str) -> Response {
    let body = crate::error::error_body("FORBIDDEN_ORIGIN", &format!("{what} is not allowed to reach /mcp"));
    (axum::http::StatusCode::FORBIDDEN, axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_origins() {
        let a = Allowed::new(Some("https://vault.example.com"));
        let h = |host: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::HOST, host.parse().unwrap());
            m
        };
        assert!(a.host_ok(&h("127.0.0.1:8200")) && a.host_ok(&h("localhost")) && a.host_ok(&h("[::1]:80")));
        assert!(a.host_ok(&h("vault.example.com")));
        assert!(!a.host_ok(&h("evil.example.com:8200")));
        let o = |origin: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::ORIGIN, origin.parse().unwrap());
            m
        };
        assert!(a.origin_ok(&o("http://localhost:3000")) && a.origin_ok(&o("https://vault.example.com")));
        assert!(!a.origin_ok(&o("https://evil.example.com")) && !a.origin_ok(&o("https://vault.example.com.evil.io")));
        assert!(!a.origin_ok(&o("http://localhost:@evil.com")) && !a.origin_ok(&o("http://127.0.0.1@evil.com")));
    }

    #[test]
    fn anonymous_calls() {
        let call = |name: &str| serde_json::json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": { "name": name } });
        assert!(anonymous_ok(&call("signup")));
        assert!(!anonymous_ok(&call("get_secret")));
        assert!(anonymous_ok(&serde_json::json!({ "method": "resources/read", "params": { "uri": "latchkey://llms.txt" } })));
        assert!(!anonymous_ok(&serde_json::json!({ "method": "resources/read", "params": { "uri": "latchkey://secrets" } })));
    }
}
