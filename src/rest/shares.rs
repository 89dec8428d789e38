//! Share links for people (`vault::shares`): a key makes and manages them;
//! anyone holding a link's token opens it (`POST /api/v1/shares/access/{token}`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};

use super::AppState;
use super::api::{BAD_BODY, BAD_QUERY, NO_PARAMS, Table};
use super::extract::{Auth, Body, ClientOrigin, OptionalBody, Query};
use super::openapi::Op;
use crate::error::Result;
use crate::vault::shares::*;
use crate::vault::views::NoParams;

const SHARES: &str = "A share link hands one secret's value to a person without a key. Creating one reads the secret \
    (audited; needs read permission within the key's project scope) and seals its current value into the link: later \
    changes to the secret do not reach it, deleting the secret revokes it. expirationHours 1-720 (default 24), maxUses \
    1-1000 (default 1), password 8-200 characters (optional), allowedIPs addresses or CIDRs (at most 32; absent or \
    empty: any address). `token` and `url` (`{public base}/s/{token}`) are shown once; give the url to the person: \
    opening it counts a use. A secret whose accessTier needs approval answers 403 APPROVAL_REQUIRED with approvalId \
    and approvalUrl, as a read does: show approvalUrl to the user, and create the link once they approved. Scoped \
    tokens get 403 SCOPE_DENIED; a plan without share links 403 PLAN_LIMIT_REACHED.";
const ACCESS: &str = "Public: no key. Answers the value and counts one use (exactly maxUses accesses ever succeed). \
    Checked in this order: unknown token 404 NOT_FOUND; revoked 410 SHARE_REVOKED; expired 410 SHARE_EXPIRED; used up \
    410 SHARE_EXHAUSTED; client address outside allowedIPs 401 IP_NOT_ALLOWED (the socket peer, or X-Forwarded-For \
    from a --trusted-proxy); locked 429 SHARE_LOCKED with Retry-After; no password given 401 PASSWORD_REQUIRED; wrong \
    password 401 INVALID_PASSWORD (no use taken; the fifth wrong password in a row locks the link for 15 minutes; a \
    success, or the end of a lock, restarts the count). A client sending many unknown tokens gets 429 RATE_LIMITED. \
    The body is optional. Every access is audited in the owner's trail (share.access), never with the value, \
    token or password. Answered with Cache-Control: no-store.";
const MANAGE: &str = "Another tenant's link, or one outside the key's project scope, answers 404 NOT_FOUND; scoped \
    tokens get 403 SCOPE_DENIED.";

async fn create_share(
    State(s): State<AppState>,
    Auth(p): Auth,
    _: Query<NoParams>,
    Body(req): Body<CreateShare>,
) -> Result<(StatusCode, Json<ShareCreated>)> {
    Ok((StatusCode::CREATED, Json(s.vault.create_share(&p, req).await?)))
}

async fn list_shares(State(s): State<AppState>, Auth(p): Auth, Query(q): Query<ListShares>) -> Result<Json<ShareList>> {
    Ok(Json(s.vault.list_shares(&p, q).await?))
}

async fn get_share(State(s): State<AppState>, Auth(p): Auth, _: Query<NoParams>, Path(id): Path<String>) -> Result<Json<ShareView>> {
    Ok(Json(s.vault.get_share(&p, &id).await?))
}

async fn delete_share(State(s): State<AppState>, Auth(p): Auth, _: Query<NoParams>, Path(id): Path<String>) -> Result<Json<ShareView>> {
    Ok(Json(s.vault.revoke_share(&p, &id, RevokeShare::default()).await?))
}

async fn revoke_share(
    State(s): State<AppState>,
    Auth(p): Auth,
    _: Query<NoParams>,
    Path(id): Path<String>,
    OptionalBody(req): OptionalBody<RevokeShare>,
) -> Result<Json<ShareView>> {
    Ok(Json(s.vault.revoke_share(&p, &id, req).await?))
}

async fn extend_share(
    State(s): State<AppState>,
    Auth(p): Auth,
    _: Query<NoParams>,
    Path(id): Path<String>,
    Body(req): Body<ExtendShare>,
) -> Result<Json<ShareView>> {
    Ok(Json(s.vault.extend_share(&p, &id, req).await?))
}

async fn access_share(
    State(s): State<AppState>,
    ClientOrigin(origin): ClientOrigin,
    _: Query<NoParams>,
    Path(token): Path<String>,
    OptionalBody(req): OptionalBody<AccessShare>,
) -> Result<Response> {
    let shared = s.vault.access_share(&token, req.password, origin).await?;
    let mut resp = Json(shared).into_response();
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

pub(super) fn routes(t: Table) -> Table {
    t.add(
        post(create_share),
        Op::new("post", "/api/v1/shares", "shares", "Make a share link for a person to one secret's value (token and url shown once)")
            .describe(SHARES)
            .query::<NoParams>()
            .body::<CreateShare>()
            .returns::<ShareCreated>(201)
            .error(404, "SECRET_NOT_FOUND: no such secretId (or one beyond the key's projects)")
            .invalid_request("INVALID_REQUEST: malformed body, expirationHours, maxUses, password or an allowedIPs entry out of bounds, or a query parameter"),
    )
    .add(
        get(list_shares),
        Op::new("get", "/api/v1/shares", "shares", "List share links: active ones unless ?status=expired|exhausted|revoked|all (or ?includeRevoked=true)")
            .describe(MANAGE)
            .query::<ListShares>()
            .returns::<ShareList>(200)
            .invalid_request(BAD_QUERY),
    )
    .add(
        get(get_share),
        Op::new("get", "/api/v1/shares/{id}", "shares", "One share link: status, uses, maxUses, usesLeft, expiry (never its token or value)")
            .describe(MANAGE)
            .query::<NoParams>()
            .returns::<ShareView>(200)
            .invalid_request(NO_PARAMS),
    )
    .add(
        delete(delete_share),
        Op::new("delete", "/api/v1/shares/{id}", "shares", "Revoke a share link at once, erasing its value (409 ALREADY_REVOKED)")
            .describe(MANAGE)
            .query::<NoParams>()
            .returns::<ShareView>(200)
            .invalid_request(NO_PARAMS),
    )
    .add(
        post(revoke_share),
        Op::new("post", "/api/v1/shares/{id}/revoke", "shares", "Revoke a share link with an optional {reason} (409 ALREADY_REVOKED)")
            .describe(MANAGE)
            .query::<NoParams>()
            .optional_body::<RevokeShare>()
            .returns::<ShareView>(200)
            .invalid_request(BAD_BODY),
    )
    .add(
        post(extend_share),
        Op::new(
            "post",
            "/api/v1/shares/{id}/extend",
            "shares",
            "Extend a live share link: {expirationHours?: from now, maxUses?: the new total}; revoked, expired or used-up links answer 409",
        )
        .describe(MANAGE)
        .query::<NoParams>()
        .body::<ExtendShare>()
        .returns::<ShareView>(200)
        .invalid_request(BAD_BODY),
    )
    .add(
        post(access_share),
        Op::new("post", "/api/v1/shares/access/{token}", "shares", "Open a share link: the value, counting one use (public; body {password?} optional)")
            .describe(ACCESS)
            .public()
            .query::<NoParams>()
            .optional_body::<AccessShare>()
            .returns::<SharedSecret>(200)
            .invalid_request(BAD_BODY),
    )
}
