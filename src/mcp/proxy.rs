//! `http_request_with_secret`: the secret proxy as a tool, so an agent calls
//! an API with a credential it never sees (see `vault::proxy`).

use std::collections::BTreeMap;

use rmcp::handler::server::wrapper::Parameters;
use rmcp::{Json, tool, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;

use super::{Caller, LatchkeyMcp};
use crate::error::Error;
use crate::vault::proxy::{ProxyRequest, ProxyResponse};
use crate::vault::secrets::SecretRef;

/// `http_request_with_secret`: which secret, and the request to make with it.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProxyParams {
    /// The secret's name (e.g. `STRIPE_SECRET_KEY`) or id.
    pub secret: String,
    /// The project the named secret is filed under, if any.
    pub project_id: Option<String>,
    /// The environment of the named secret, if any.
    pub environment: Option<String>,
    /// `GET`, `HEAD`, `POST`, `PUT`, `PATCH`, `DELETE` or `OPTIONS`.
    pub method: String,
    /// The full `http(s)://` URL; one of the secret's bindings must cover it.
    pub url: String,
    /// Headers to send (name → value); never the one the secret goes in (the server sets it).
    pub headers: Option<BTreeMap<String, String>>,
    /// A text body (at most 1 MiB).
    pub body: Option<String>,
    /// Give up after this many seconds (1-30; default 30).
    #[schemars(range(min = 1, max = 30))]
    pub timeout_seconds: Option<u64>,
}

#[tool_router(router = proxy_tools, vis = "pub(super)")]
impl LatchkeyMcp {
    /// Call an HTTP API with a stored credential without ever seeing it: the
    /// server sends your request with the secret's value where the secret's
    /// binding says (Authorization: Bearer, a header, a query parameter or
    /// basic auth) and answers {status, headers, body, bodyEncoding,
    /// truncated} with the value replaced by [latchkey:NAME]. Use it for
    /// masked and use_only secrets (and any other) instead of get_secret.
    /// Only URLs and methods the secret is bound to are allowed
    /// (DESTINATION_NOT_BOUND lists them); do not send the header the value
    /// goes in. Bodies over 1 MiB are cut; redirects to another origin are
    /// not followed (you get the 3xx). UPSTREAM_FAILED: the API could not be
    /// reached or timed out.
    #[tool(annotations(read_only_hint = false, destructive_hint = true, idempotent_hint = false, open_world_hint = true))]
    async fn http_request_with_secret(&self, Parameters(p): Parameters<ProxyParams>, caller: Caller) -> Result<Json<ProxyResponse>, Error> {
        let principal = self.principal(caller).await?;
        let target = SecretRef::id_or_name(&p.secret, p.project_id.as_deref(), p.environment.as_deref());
        let req = ProxyRequest { method: p.method, url: p.url, headers: p.headers, body: p.body, timeout_seconds: p.timeout_seconds };
        Ok(Json(self.vault.proxy(&principal, target, req).await?))
    }
}
