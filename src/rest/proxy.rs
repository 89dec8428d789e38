//! The secret proxy over REST (`POST /api/v1/secrets/{id}/proxy`): the
//! server makes the request with the secret's value in it (see `vault::proxy`).

use axum::Json;
use axum::extract::{Path, State};
use axum::routing::post;

use super::AppState;
use super::api::Table;
use super::extract::{Auth, Body, Query};
use super::openapi::Op;
use crate::error::Result;
use crate::vault::proxy::{ProxyRequest, ProxyResponse};
use crate::vault::secrets::SecretRef;
use crate::vault::views::NoParams;

const PROXY: &str = "Use a secret without seeing it: the server sends the request with the secret's value where the \
    secret's binding says (`Authorization: Bearer`, a named header, a query parameter, or basic auth) and answers the \
    upstream's `{status, headers, body, bodyEncoding, truncated, redirects}` with the value, and its base64, hex and \
    URL-encoded forms, replaced by `[latchkey:NAME]`. Works for every exposure (`reveal`, `masked`, `use_only`); \
    needs `read`; audited `secret.use` with mechanism `proxy`. The method and URL must fall under one of the \
    secret's `bindings` (403 DESTINATION_NOT_BOUND names them); a header the binding sets is refused (400); \
    hop-by-hop headers and Host are dropped; `Accept-Encoding` is always `identity`. Only http(s); connect timeout \
    5 s, total `timeoutSeconds` (1-30, default 30); the body is cut at 1 MiB (`truncated: true`); at most 5 \
    redirects are followed, within the same origin and binding only: a redirect elsewhere is answered as it came. \
    Private, loopback, link-local and similar addresses are refused after DNS resolution (403 DESTINATION_REFUSED) \
    unless the server runs with --allow-private-destinations. A body that is not UTF-8 comes back in base64 \
    (`bodyEncoding`). The upstream's own error statuses are answered in `status` (this call is 200); a failure to \
    reach it is 502 UPSTREAM_FAILED.";

async fn proxy(
    State(s): State<AppState>,
    Auth(p): Auth,
    _: Query<NoParams>,
    Path(id): Path<String>,
    Body(req): Body<ProxyRequest>,
) -> Result<Json<ProxyResponse>> {
    Ok(Json(s.vault.proxy(&p, SecretRef::Id(&id), req).await?))
}

pub(super) fn routes(t: Table) -> Table {
    t.add(
        post(proxy),
        Op::new(
            "post",
            "/api/v1/secrets/{id}/proxy",
            "secrets",
            "Send an HTTP request with the secret's value injected; the answer has it redacted",
        )
        .describe(PROXY)
        .query::<NoParams>()
        .body::<ProxyRequest>()
        .returns::<ProxyResponse>(200)
        .error(
            403,
            "DESTINATION_NOT_BOUND: no binding covers this method and URL (the message names the bindings); \
                 DESTINATION_REFUSED: the destination resolves to a private, loopback or link-local address; \
                 APPROVAL_REQUIRED: the secret's tier needs a human's approval (see the secret read); SCOPE_DENIED",
        )
        .error(404, "SECRET_NOT_FOUND")
        .error(502, "UPSTREAM_FAILED: the name did not resolve, the connection failed or timed out, or the exchange broke off")
        .invalid_request(
            "INVALID_REQUEST: malformed body, a method other than GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, a URL \
                 that is not http(s) or carries credentials, a bad header, a header or query parameter the binding sets, \
                 timeoutSeconds outside 1-30, or a query parameter (this route takes none)",
        ),
    )
}
