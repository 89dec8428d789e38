//! Rotation over REST (`/api/v1/rotation`): policies, manual rotation and
//! status (see `vault::rotation`). The SDK's paths are
//! `/api/v1/rotation/secrets/{id}/rotate` and `…/status`; SecretCarousel's
//! CLI rotates with `POST /api/v1/rotation/{id}/rotate-now`, where `{id}` is
//! a policy's id or a secret's.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post, put};

use super::AppState;
use super::api::{BAD_BODY, BAD_QUERY, NO_PARAMS, Table};
use super::extract::{Auth, Body, OptionalBody, Query};
use super::openapi::Op;
use crate::error::Result;
use crate::vault::rotation::{
    CreatePolicy, PolicyDeleted, PolicyList, PolicyView, RotateRequest, RotationResult, RotationStatus, UpdatePolicy,
};
use crate::vault::secrets::SecretRef;
use crate::vault::views::NoParams;

const POLICY: &str = "One policy per secret (409 CONFLICT for a second). `schedule` is a cron expression (5 fields, or 6 \
    with seconds first; UTC) or an interval (`30d`, `12h`, at least `1m`); a bad one answers 400 INVALID_REQUEST with the \
    parser's reason. `generator` `{length (8-256, default 32), alphabet (alphanumeric | hex | base64url | symbols | the \
    characters themselves), prefix}` makes scheduled values from the OS's CSPRNG; without one, values keep the shape of \
    the current one (an `sk_live_` prefix, its length and alphabet). `gracePeriod` (`0` default, up to `30d`) keeps the \
    replaced version readable by number that long. `alertDaysBefore` writes a `secret.rotation_due` audit entry that \
    many days before each due rotation. `nextRotationAt` sets the first due time. Needs `write` on the secret and an API \
    key (a scoped token gets 403 SCOPE_DENIED).";
const ROTATE: &str = "A new version now. Body (optional): `{newValue?, reason?, gracePeriod?}`, or the same under \
    `options` (SecretCarousel's SDK). Without `newValue` the secret's generator makes one (its policy's, else shaped like \
    the current value). The replaced version stays readable by number for the grace period (the request's, else the \
    policy's, else none), then answers 410 VERSION_RETIRED. Ends the secret's approved read grants and revokes the live \
    scoped tokens whose read scope covers its path. Audited `secret.rotated` (versions, trigger, reason; never the \
    value). The answer never holds the new value: read it like any other. A secret with a policy has its next \
    scheduled rotation moved to the schedule's next time from now. Needs `write`.";
const ROTATE_NOW: &str = "`{id}` is a rotation policy's id or a secret's id (SecretCarousel's `sc rotate ID`). Same as \
    POST /api/v1/rotation/secrets/{id}/rotate.";

async fn list(State(s): State<AppState>, Auth(p): Auth, _: Query<NoParams>) -> Result<Json<PolicyList>> {
    Ok(Json(s.vault.list_rotation_policies(&p).await?))
}

async fn create(
    State(s): State<AppState>,
    Auth(p): Auth,
    _: Query<NoParams>,
    Body(req): Body<CreatePolicy>,
) -> Result<(StatusCode, Json<PolicyView>)> {
    Ok((StatusCode::CREATED, Json(s.vault.create_rotation_policy(&p, req).await?)))
}

async fn update(
    State(s): State<AppState>,
    Auth(p): Auth,
    _: Query<NoParams>,
    Path(id): Path<String>,
    Body(req): Body<UpdatePolicy>,
) -> Result<Json<PolicyView>> {
    Ok(Json(s.vault.update_rotation_policy(&p, &id, req).await?))
}

async fn remove(State(s): State<AppState>, Auth(p): Auth, _: Query<NoParams>, Path(id): Path<String>) -> Result<Json<PolicyDeleted>> {
    Ok(Json(s.vault.delete_rotation_policy(&p, &id).await?))
}

async fn rotate_now(
    State(s): State<AppState>,
    Auth(p): Auth,
    _: Query<NoParams>,
    Path(id): Path<String>,
    OptionalBody(req): OptionalBody<RotateRequest>,
) -> Result<Json<RotationResult>> {
    Ok(Json(s.vault.rotate_now(&p, &id, req.options()?).await?))
}

async fn rotate(
    State(s): State<AppState>,
    Auth(p): Auth,
    _: Query<NoParams>,
    Path(id): Path<String>,
    OptionalBody(req): OptionalBody<RotateRequest>,
) -> Result<Json<RotationResult>> {
    Ok(Json(s.vault.rotate_secret(&p, SecretRef::Id(&id), req.options()?).await?))
}

async fn status(State(s): State<AppState>, Auth(p): Auth, _: Query<NoParams>, Path(id): Path<String>) -> Result<Json<RotationStatus>> {
    Ok(Json(s.vault.rotation_status(&p, SecretRef::Id(&id)).await?))
}

pub(super) fn routes(t: Table) -> Table {
    t.add(
        get(list),
        Op::new("get", "/api/v1/rotation", "rotation", "Your rotation policies")
            .query::<NoParams>()
            .returns::<PolicyList>(200)
            .invalid_request(NO_PARAMS),
    )
    .add(
        post(create),
        Op::new("post", "/api/v1/rotation", "rotation", "Give a secret a rotation schedule")
            .describe(POLICY)
            .query::<NoParams>()
            .body::<CreatePolicy>()
            .returns::<PolicyView>(201)
            .error(404, "SECRET_NOT_FOUND: no such secretId")
            .error(409, "CONFLICT: the secret has a policy already")
            .invalid_request("INVALID_REQUEST: malformed body, a bad schedule (with the parser's reason), generator, gracePeriod or alertDaysBefore, or a query parameter"),
    )
    .add(
        put(update),
        Op::new("put", "/api/v1/rotation/{id}", "rotation", "Change a rotation policy (the fields given)")
            .describe(POLICY)
            .query::<NoParams>()
            .body::<UpdatePolicy>()
            .returns::<PolicyView>(200)
            .error(404, "NOT_FOUND: no such policy")
            .invalid_request(BAD_BODY),
    )
    .add(
        delete(remove),
        Op::new("delete", "/api/v1/rotation/{id}", "rotation", "Remove a rotation policy (the secret stays as it is)")
            .query::<NoParams>()
            .returns::<PolicyDeleted>(200)
            .error(404, "NOT_FOUND: no such policy")
            .invalid_request(NO_PARAMS),
    )
    .add(
        post(rotate_now),
        Op::new("post", "/api/v1/rotation/{id}/rotate-now", "rotation", "Rotate now, by policy id or secret id")
            .describe(ROTATE_NOW)
            .query::<NoParams>()
            .optional_body::<RotateRequest>()
            .returns::<RotationResult>(200)
            .error(404, "SECRET_NOT_FOUND: no such policy or secret")
            .error(410, "SECRET_EXPIRED: the secret has expired")
            .invalid_request(BAD_BODY),
    )
    .add(
        post(rotate),
        Op::new("post", "/api/v1/rotation/secrets/{id}/rotate", "rotation", "Rotate a secret now (a new version; the old one retires after the grace period)")
            .describe(ROTATE)
            .query::<NoParams>()
            .optional_body::<RotateRequest>()
            .returns::<RotationResult>(200)
            .error(404, "SECRET_NOT_FOUND")
            .error(410, "SECRET_EXPIRED: the secret has expired")
            .invalid_request(BAD_BODY),
    )
    .add(
        get(status),
        Op::new("get", "/api/v1/rotation/secrets/{id}/status", "rotation", "A secret's rotation: policy, last and next rotation, current and retiring version")
            .query::<NoParams>()
            .returns::<RotationStatus>(200)
            .error(404, "SECRET_NOT_FOUND")
            .invalid_request(BAD_QUERY),
    )
}
