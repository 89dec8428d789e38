//! MCP over streamable HTTP at `/mcp`: rmcp's service behind Latchkey's own
//! guard, which resolves the caller's credential per request and answers 401
//! to anonymous calls of anything but what [`super::anonymous`] allows.
//! (`Host` and `Origin` were checked at the edge, as for every route.)
//!
//! The service runs stateless (no MCP sessions): every request stands alone
//! with its own credential, so no session can carry one tenant's identity into
//! another's request, and any replica can answer any request.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::Value;

use super::direct::{Direct, Taken};
use super::{LatchkeyMcp, anonymous};
use crate::edge::{credential, origin_of};
use crate::error::Error;
use crate::vault::{Front, Vault};

/// Largest MCP request body read while deciding whether an anonymous call is allowed.
const MAX_BODY: usize = 4 * 1024 * 1024;

/// rmcp's transport settings. Its own `Host`/`Origin` checks are off: the
/// server's edge guard (`edge::guard`) has applied the one rule every route
/// shares before a request gets here, and a second, different list would
/// refuse what the first allows (an IP literal of a server on all addresses).
fn rmcp_config() -> StreamableHttpServerConfig {
    StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .disable_allowed_hosts()
        .disable_allowed_origins()
        .with_max_request_body_bytes(MAX_BODY)
}

/// `/mcp`: Latchkey's guard in front of rmcp's service, and the direct path
/// between them (see `direct.rs`). One per process, behind an `Arc`, so
/// rmcp's service is not cloned for every request (its config holds the
/// allowed hosts and origins as strings).
pub struct Endpoint {
    vault: Arc<Vault>,
    /// Answers the common `tools/call` without rmcp's per-request service.
    direct: Direct,
    rmcp: StreamableHttpService<LatchkeyMcp, NeverSessionManager>,
}

impl Endpoint {
    pub fn new(vault: Arc<Vault>) -> Arc<Self> {
        let direct = Direct::new(LatchkeyMcp::for_http(vault.clone()));
        let for_rmcp = vault.clone();
        let rmcp = StreamableHttpService::new(move || Ok(LatchkeyMcp::for_http(for_rmcp.clone())), Default::default(), rmcp_config());
        Arc::new(Endpoint { vault, direct, rmcp })
    }

    /// The caller first (401 / 429), then the call.
    ///
    /// `/mcp` is outside `server::run_to_completion`, which runs every POST in
    /// a task of its own; its rule is kept here, where the body says what the
    /// call is. A read-only tool's call on the direct path runs in the
    /// connection's task, as a REST `GET` does; everything else (writes, and
    /// whatever rmcp answers) runs in a task no hang-up can cancel.
    pub async fn serve(self: Arc<Self>, req: Request) -> Response {
        let (mut parts, body) = req.into_parts();
        let origin = origin_of(&parts, Front::Mcp);
        let presented = match credential(&parts.headers) {
            Ok(presented) => presented,
            Err(e) => return self.vault.refuse_anonymous(&origin, e).await.into_response(),
        };
        if let Some(token) = presented {
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
            Ok(Value::Array(batch)) => batch.iter().all(anonymous::message),
            Ok(msg) => anonymous::message(&msg),
            Err(_) => true, // let rmcp answer the parse error
        };
        if !allowed {
            let needed = Error::Unauthorized(
                "this MCP call needs an API key: call the signup tool, then send Authorization: Bearer <apiKey>".into(),
            );
            return self.vault.refuse_anonymous(&origin, needed).await.into_response();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymous_calls() {
        let call = |name: &str| serde_json::json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": { "name": name } });
        assert!(anonymous::message(&call("signup")));
        assert!(!anonymous::message(&call("get_secret")));
        assert!(anonymous::message(&serde_json::json!({ "method": "resources/read", "params": { "uri": "latchkey://llms.txt" } })));
        assert!(!anonymous::message(&serde_json::json!({ "method": "resources/read", "params": { "uri": "latchkey://secrets" } })));
    }
}
