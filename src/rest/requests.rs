//! Secret requests over REST (`/api/v1/secret-requests`): an agent asks a
//! human owner for a value it needs and never sees (see `vault::requests`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};

use super::AppState;
use super::api::{BAD_QUERY, NO_PARAMS, Table};
use super::extract::{Auth, Body, Query};
use super::openapi::Op;
use crate::error::Result;
use crate::vault::requests::{CreateRequest, ListRequests, RequestList, RequestView};
use crate::vault::views::NoParams;

const CREATE: &str = "Ask a human for a value you need without ever seeing it: answers the request with `requestUrl`, \
    the page (`/requests/{id}`) where an owner of the tenant signs in and pastes the value; show it to your user. The \
    value goes straight into the vault as the secret `name` in `projectId`/`environment` (a new version when that name \
    exists there, keeping its exposure and tier; otherwise a new secret with `exposure` (default `use_only`) and \
    `accessTier`). Poll `GET /api/v1/secret-requests/{id}`: once `status` is `fulfilled` it carries `secretId`, never \
    the value. A request lives `expiresInMinutes` (default 1440). `obtainUrl` must be http or https. 403 SCOPE_DENIED \
    when your key's reach does not cover the place.";
const CANCEL: &str = "Cancels a pending request: its page then says so and takes no value. 409 REQUEST_FULFILLED, 410 \
    REQUEST_CANCELLED or REQUEST_EXPIRED when it already ended.";

type Created<T> = (StatusCode, Json<T>);

async fn create(
    State(s): State<AppState>,
    Auth(p): Auth,
    _: Query<NoParams>,
    Body(req): Body<CreateRequest>,
) -> Result<Created<RequestView>> {
    Ok((StatusCode::CREATED, Json(s.vault.create_request(&p, req).await?)))
}

async fn list(State(s): State<AppState>, Auth(p): Auth, Query(q): Query<ListRequests>) -> Result<Json<RequestList>> {
    Ok(Json(s.vault.list_requests(&p, q).await?))
}

async fn get_one(State(s): State<AppState>, Auth(p): Auth, _: Query<NoParams>, Path(id): Path<String>) -> Result<Json<RequestView>> {
    Ok(Json(s.vault.request_status(&p, &id).await?))
}

async fn cancel(State(s): State<AppState>, Auth(p): Auth, _: Query<NoParams>, Path(id): Path<String>) -> Result<Json<RequestView>> {
    Ok(Json(s.vault.cancel_request(&p, &id).await?))
}

pub(super) fn routes(t: Table) -> Table {
    t.add(
        post(create),
        Op::new("post", "/api/v1/secret-requests", "secret-requests", "Ask a human owner for a secret's value on a page (you never see it)")
            .describe(CREATE)
            .query::<NoParams>()
            .body::<CreateRequest>()
            .returns::<RequestView>(201)
            .invalid_request("INVALID_REQUEST: malformed body, a bad name, environment, reason, exposure, obtainUrl or lifetime, a projectId not of this tenant, or a query parameter"),
    )
    .add(
        get(list),
        Op::new("get", "/api/v1/secret-requests", "secret-requests", "Your tenant's secret requests, newest first (never a value)")
            .query::<ListRequests>()
            .returns::<RequestList>(200)
            .invalid_request(BAD_QUERY),
    )
    .add(
        get(get_one),
        Op::new("get", "/api/v1/secret-requests/{id}", "secret-requests", "A secret request's status; once fulfilled, its secretId (never the value)")
            .query::<NoParams>()
            .returns::<RequestView>(200)
            .error(404, "NOT_FOUND: no such request in your reach")
            .invalid_request(NO_PARAMS),
    )
    .add(
        delete(cancel),
        Op::new("delete", "/api/v1/secret-requests/{id}", "secret-requests", "Cancel a pending secret request")
            .describe(CANCEL)
            .query::<NoParams>()
            .returns::<RequestView>(200)
            .error(404, "NOT_FOUND: no such request in your reach")
            .error(409, "REQUEST_FULFILLED")
            .error(410, "REQUEST_CANCELLED or REQUEST_EXPIRED")
            .invalid_request(NO_PARAMS),
    )
}
