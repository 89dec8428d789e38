//! Claim tokens over REST (`/api/v1/claim-tokens`): one tenant hands a
//! secret to another (see `vault::claims`).
//!
//! One path parameter name serves the whole prefix, as the router requires:
//! `{id}` is the claim's id on `GET`/`DELETE /{id}`, and the `ctk_…` token
//! itself on `POST /{id}/claim`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};

use super::AppState;
use super::api::{BAD_BODY, BAD_QUERY, NO_PARAMS, Table};
use super::extract::{Auth, Body, OptionalBody, Query};
use super::openapi::Op;
use crate::error::Result;
use crate::vault::claims::{ClaimIssued, ClaimList, ClaimRedeemed, ClaimView, CreateClaim, ListClaims, RedeemClaim};
use crate::vault::views::NoParams;

const CLAIMS: &str = "Hand a secret to another tenant without pasting it: the creator gets a `ctk_` token once (pass it \
    to the other agent out of band); the target tenant redeems it once into its own vault. Give `secretValue`, or \
    `secretId` of one of your secrets (read and audited as a read; a tier that needs approval answers 403 \
    APPROVAL_REQUIRED). `expiresInMinutes` (default 5) or `expiresInHours`, up to the server's bound (1440 minutes \
    unless configured). 404 NOT_FOUND when the target tenant does not exist; 403 PLAN_LIMIT_REACHED on a plan \
    without claim tokens; 403 SCOPE_DENIED for a scoped token or a read-only key. Both tenants' audit trails record \
    the creation with the contractId.";
const REDEEM: &str = "The path holds the `ctk_` token. Body optional: `{name?, projectId?, environment?}`; the name \
    defaults to the claim's secretName (400 when neither names one). Needs `write` and a project scope that covers \
    the destination. Exactly one redemption succeeds; the rest answer 410 CLAIM_ALREADY_REDEEMED. 410 CLAIM_EXPIRED, \
    410 CLAIM_REVOKED. Any tenant but the target gets 404 NOT_FOUND, as for no token at all. A name already taken \
    answers 409 ALREADY_EXISTS and the token stays unredeemed (send another name). Every attempt is audited in \
    both tenants' trails.";
const REVOKE: &str = "The creator only: the target gets 403 SCOPE_DENIED, anyone else 404. Answers 200 with the claim \
    (status `revoked`); a redeemed claim answers 409 CONFLICT, a revoked one 409 ALREADY_REVOKED. The pending value \
    is erased.";

type Created<T> = (StatusCode, Json<T>);

async fn create(
    State(s): State<AppState>,
    Auth(p): Auth,
    _: Query<NoParams>,
    Body(req): Body<CreateClaim>,
) -> Result<Created<ClaimIssued>> {
    Ok((StatusCode::CREATED, Json(s.vault.create_claim(&p, req).await?)))
}

async fn list(State(s): State<AppState>, Auth(p): Auth, Query(q): Query<ListClaims>) -> Result<Json<ClaimList>> {
    Ok(Json(s.vault.list_claims(&p, q).await?))
}

async fn get_one(State(s): State<AppState>, Auth(p): Auth, _: Query<NoParams>, Path(id): Path<String>) -> Result<Json<ClaimView>> {
    Ok(Json(s.vault.get_claim(&p, &id).await?))
}

async fn revoke(State(s): State<AppState>, Auth(p): Auth, _: Query<NoParams>, Path(id): Path<String>) -> Result<Json<ClaimView>> {
    Ok(Json(s.vault.revoke_claim(&p, &id).await?))
}

async fn redeem(
    State(s): State<AppState>,
    Auth(p): Auth,
    _: Query<NoParams>,
    Path(token): Path<String>,
    OptionalBody(req): OptionalBody<RedeemClaim>,
) -> Result<Json<ClaimRedeemed>> {
    Ok(Json(s.vault.redeem_claim(&p, &token, req).await?))
}

pub(super) fn routes(t: Table) -> Table {
    t.add(
        post(create),
        Op::new("post", "/api/v1/claim-tokens", "claim-tokens", "Make a one-time claim token that hands a secret to another tenant (token shown once)")
            .describe(CLAIMS)
            .query::<NoParams>()
            .body::<CreateClaim>()
            .returns::<ClaimIssued>(201)
            .error(404, "NOT_FOUND: no such target tenant; SECRET_NOT_FOUND: no such secretId")
            .invalid_request("INVALID_REQUEST: malformed body, both or neither of secretValue and secretId, a bad name, contractId or lifetime, or a query parameter"),
    )
    .add(
        get(list),
        Op::new("get", "/api/v1/claim-tokens", "claim-tokens", "Claim tokens your tenant made or is the target of (status, never a value or token)")
            .query::<ListClaims>()
            .returns::<ClaimList>(200)
            .invalid_request(BAD_QUERY),
    )
    .add(
        get(get_one),
        Op::new("get", "/api/v1/claim-tokens/{id}", "claim-tokens", "One claim token your tenant made or is the target of")
            .query::<NoParams>()
            .returns::<ClaimView>(200)
            .invalid_request(NO_PARAMS),
    )
    .add(
        axum::routing::delete(revoke),
        Op::new("delete", "/api/v1/claim-tokens/{id}", "claim-tokens", "Revoke a claim token nobody redeemed yet (its creator only)")
            .describe(REVOKE)
            .query::<NoParams>()
            .returns::<ClaimView>(200)
            .invalid_request(NO_PARAMS),
    )
    .add(
        post(redeem),
        Op::new("post", "/api/v1/claim-tokens/{id}/claim", "claim-tokens", "Redeem a claim token ({id} is the ctk_ token) into your vault, once")
            .describe(REDEEM)
            .query::<NoParams>()
            .optional_body::<RedeemClaim>()
            .returns::<ClaimRedeemed>(200)
            .error(410, "CLAIM_ALREADY_REDEEMED, CLAIM_EXPIRED or CLAIM_REVOKED")
            .invalid_request(BAD_BODY),
    )
}
