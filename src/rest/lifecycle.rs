//! A secret's life over REST (see `vault::lifecycle` and `vault::paths`):
//! metadata changes without a version (`PATCH`), restore, the expiring
//! listing, and the path routes. `DELETE /api/v1/secrets/{id}` and its
//! parameters stay with the other id routes (`rest::api`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, patch, post, put};

use super::AppState;
use super::api::{BAD_BODY, BAD_QUERY, NO_PARAMS, Table};
use super::extract::{Auth, Body, Query};
use super::openapi::Op;
use crate::error::{Error, Result};
use crate::vault::lifecycle::{DeleteResult, ExpiringQuery, PatchSecret};
use crate::vault::paths::{PathDelete, PathRead, PathWrite, PathWriteQuery};
use crate::vault::secrets::SecretRef;
use crate::vault::views::*;

const PATHS: &str = "The path is `{environment}/{name}`, or the bare name of a secret without an environment (as \
    token scopes match it); `projectId` selects the project. It is read as (environment = first segment, name = the \
    rest) when such a live secret exists, else as (no environment, name = the whole path). PUT creates the secret at \
    the first reading when neither exists (201), else writes its next version (200).";
const EXPIRING: &str = "Secrets whose expiresAt falls within the next `days` (1-365, default 7), not yet expired; \
    `includeExpired=true` adds those already expired. Same page shape and cursor as the listing.";
const PATCH: &str = "Changes metadata only (description, tags, secretType, accessTier, exposure, bindings, \
    expiresAt/expiresIn, maxVersions): the version stays. Same rules as PUT for lowering a tier or loosening an \
    exposure (403 OWNER_REQUIRED). A `value` is 400: send it with PUT. A lower maxVersions deletes the oldest \
    versions beyond it at once.";
const RESTORE: &str = "Brings back a secret deleted less than the retention (30 days unless the operator says \
    otherwise) ago; it counts toward the plan's secrets again (403 PLAN_LIMIT_REACHED when full). 404 when the \
    secret is not deleted, or already purged.";

const PATHS_READ: &str = concat!(
    "The path is `{environment}/{name}`, or the bare name of a secret without an environment (as token scopes match \
     it); `projectId` selects the project. It is read as (environment = first segment, name = the rest) when such a \
     live secret exists, else as (no environment, name = the whole path). ",
    "A secret whose accessTier needs approval answers 403 APPROVAL_REQUIRED as GET /api/v1/secrets/{id} does."
);

type Created<T> = (StatusCode, Json<T>);

async fn patch_secret(
    State(s): State<AppState>,
    Auth(p): Auth,
    _: Query<NoParams>,
    Path(id): Path<String>,
    Body(req): Body<PatchSecret>,
) -> Result<Json<SecretMeta>> {
    if req.value.is_some() {
        return Err(Error::InvalidRequest("PATCH changes metadata only: send a new value with PUT /api/v1/secrets/{id}".into()));
    }
    Ok(Json(s.vault.update_secret(&p, SecretRef::Id(&id), req).await?))
}

async fn restore(State(s): State<AppState>, Auth(p): Auth, _: Query<NoParams>, Path(id): Path<String>) -> Result<Json<SecretMeta>> {
    Ok(Json(s.vault.restore_secret(&p, SecretRef::Id(&id)).await?))
}

async fn expiring(State(s): State<AppState>, Auth(p): Auth, Query(q): Query<ExpiringQuery>) -> Result<Json<SecretPage>> {
    Ok(Json(s.vault.list_expiring(&p, q).await?))
}

async fn read_path(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(path): Path<String>,
    Query(q): Query<PathRead>,
) -> Result<Json<SecretValue>> {
    Ok(Json(s.vault.read_path(&p, &path, q).await?))
}

async fn write_path(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(path): Path<String>,
    Query(q): Query<PathWriteQuery>,
    Body(w): Body<PathWrite>,
) -> Result<Created<SetSecretResult>> {
    let done = s.vault.write_path(&p, &path, q.project_id, w).await?;
    let status = if done.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(done)))
}

async fn delete_path(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(path): Path<String>,
    Query(q): Query<PathDelete>,
) -> Result<Json<DeleteResult>> {
    Ok(Json(s.vault.delete_path(&p, &path, q).await?))
}

pub(super) fn routes(t: Table) -> Table {
    t.add(
        get(expiring),
        Op::new("get", "/api/v1/secrets/expiring", "secrets", "Secrets expiring within N days (metadata only)")
            .describe(EXPIRING)
            .query::<ExpiringQuery>()
            .returns::<SecretPage>(200)
            .invalid_request(BAD_QUERY),
    )
    .add(
        patch(patch_secret),
        Op::new("patch", "/api/v1/secrets/{id}", "secrets", "Change a secret's metadata without a new version")
            .describe(PATCH)
            .query::<NoParams>()
            .body::<PatchSecret>()
            .returns::<SecretMeta>(200)
            .invalid_request("INVALID_REQUEST: a `value` (use PUT), a bad field, both expiresAt and expiresIn, an expiry not in the future, maxVersions outside 1-100, or a query parameter"),
    )
    .add(
        post(restore),
        Op::new("post", "/api/v1/secrets/{id}/restore", "secrets", "Restore a soft-deleted secret (write permission)")
            .describe(RESTORE)
            .query::<NoParams>()
            .returns::<SecretMeta>(200)
            .error(404, "SECRET_NOT_FOUND: no such deleted secret (never deleted, or purged)")
            .invalid_request(NO_PARAMS),
    )
    .add(
        get(read_path),
        Op::new("get", "/api/v1/secrets/path/{*path}", "secrets", "Read a secret by path (audited), like GET /api/v1/secrets/{id}")
            .describe(PATHS_READ)
            .query::<PathRead>()
            .returns::<SecretValue>(200)
            .error(410, "SECRET_EXPIRED: the secret passed its expiresAt (the message says when)")
            .invalid_request(BAD_QUERY),
    )
    .add(
        put(write_path),
        Op::new("put", "/api/v1/secrets/path/{*path}", "secrets", "Create a secret at a path, or write its next version")
            .describe(PATHS)
            .query::<PathWriteQuery>()
            .body::<PathWrite>()
            .returns::<SetSecretResult>(201)
            .also_returns(200)
            .error(409, "SECRET_EXISTS: a deleted secret holds the name (restore or purge it); VERSION_CONFLICT")
            .invalid_request(BAD_BODY),
    )
    .add(
        delete(delete_path),
        Op::new("delete", "/api/v1/secrets/path/{*path}", "secrets", "Delete the secret at a path (as DELETE /api/v1/secrets/{id})")
            .describe(PATHS)
            .query::<PathDelete>()
            .returns::<DeleteResult>(200)
            .invalid_request(BAD_QUERY),
    )
}
