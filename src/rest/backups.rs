//! Tenant backups over REST (`/api/v1/backup`, see `vault::backups`). The
//! SecretCarousel SDK's `create_backup` and `list_backups`, and its CLI's
//! `sc backup [--name X]` and `sc backups`, use the first two routes.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};

use super::AppState;
use super::api::{BAD_BODY, BAD_QUERY, NO_PARAMS, Table};
use super::extract::{Auth, OptionalBody, Query};
use super::openapi::Op;
use crate::error::{Error, Result};
use crate::vault::backups::{
    BackupDeleted, BackupList, BackupView, CreateBackup, ListBackups, PASSPHRASE_HEADER, RestoreBackup, RestoreResult,
};
use crate::vault::views::NoParams;

/// The upload restore's path: its body is an archive, allowed up to
/// [`UPLOAD_LIMIT`] (see `server::read_body_first`).
pub const UPLOAD_PATH: &str = "/api/v1/backup/restore";
/// The largest archive an upload restore accepts.
pub const UPLOAD_LIMIT: usize = 64 << 20;

macro_rules! admin {
    () => {
        "Admin keys (and owners) with no project scope only: read and write keys and scoped tokens get 403 \
    SCOPE_DENIED, listing included."
    };
}
macro_rules! create {
    () => {
        "Body (optional): `{name?, passphrase?}`. An encrypted archive of the tenant's secrets (every \
    version with its metadata: type, tags, description, environment, project, exposure, tier, bindings, expiry, max \
    versions, times; soft-deleted ones too), projects with their environments and templates, rotation policies and the \
    approval policy; never API keys, owners, plans or the audit trail. Sealed (AES-256-GCM) with a fresh key wrapped by \
    the tenant's key and, with `passphrase` (8 to 1024 characters), also by a PBKDF2-SHA256 key (600000 rounds), so it \
    restores on another server. A tenant with secrets behind an approval tier or a restricted exposure needs an owner \
    for a passphrase archive (403 OWNER_REQUIRED). At most 20 backups per tenant (409 CONFLICT past that). Audited \
    `backup.created`."
    };
}
macro_rules! restore {
    () => {
        "Replaces ALL the tenant's secrets, projects (environments, templates) and rotation policies with \
    the archive's, in one transaction, every version re-sealed for this tenant: ids are kept when the archive is this \
    tenant's, fresh otherwise. The tenant's share links end and its pending and approved read grants expire; the approval \
    policy only tightens. Opened with the tenant's key, else `passphrase` (403 INVALID_PASSPHRASE when missing or wrong, \
    nothing changed). More live secrets than the plan allows: 403 PLAN_LIMIT_REACHED, nothing changed. Audited \
    `backup.restored`."
    };
}
macro_rules! upload {
    () => {
        "The body is an archive (`GET /api/v1/backup/{id}/download`, from this server or another), sent as \
    `application/octet-stream`, up to 64 MiB; its passphrase goes in the `X-Backup-Passphrase` header (needed unless this \
    tenant's key opens it). Otherwise as POST /api/v1/backup/{id}/restore."
    };
}

async fn create(
    State(s): State<AppState>,
    Auth(p): Auth,
    _: Query<NoParams>,
    OptionalBody(req): OptionalBody<CreateBackup>,
) -> Result<(StatusCode, Json<BackupView>)> {
    Ok((StatusCode::CREATED, Json(s.vault.create_backup(&p, req).await?)))
}

async fn list(State(s): State<AppState>, Auth(p): Auth, Query(q): Query<ListBackups>) -> Result<Json<BackupList>> {
    Ok(Json(s.vault.list_backups(&p, q).await?))
}

async fn show(State(s): State<AppState>, Auth(p): Auth, _: Query<NoParams>, Path(id): Path<String>) -> Result<Json<BackupView>> {
    Ok(Json(s.vault.get_backup(&p, &id).await?))
}

async fn download(State(s): State<AppState>, Auth(p): Auth, _: Query<NoParams>, Path(id): Path<String>) -> Result<Response> {
    let d = s.vault.download_backup(&p, &id).await?;
    let mut resp = d.bytes.into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    // Tenant ids are slugs and the rest is digits: nothing needs quoting.
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{}\"", d.filename)) {
        resp.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

async fn remove(State(s): State<AppState>, Auth(p): Auth, _: Query<NoParams>, Path(id): Path<String>) -> Result<Json<BackupDeleted>> {
    Ok(Json(s.vault.delete_backup(&p, &id).await?))
}

async fn restore(
    State(s): State<AppState>,
    Auth(p): Auth,
    _: Query<NoParams>,
    Path(id): Path<String>,
    OptionalBody(req): OptionalBody<RestoreBackup>,
) -> Result<Json<RestoreResult>> {
    Ok(Json(s.vault.restore_backup(&p, &id, req).await?))
}

async fn upload(
    State(s): State<AppState>,
    Auth(p): Auth,
    _: Query<NoParams>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<RestoreResult>> {
    let passphrase = match headers.get(PASSPHRASE_HEADER) {
        None => None,
        Some(v) => {
            Some(v.to_str().map_err(|_| Error::InvalidRequest(format!("{PASSPHRASE_HEADER} must be visible ASCII text")))?.to_owned())
        }
    };
    Ok(Json(s.vault.restore_uploaded(&p, &body, passphrase).await?))
}

pub(super) fn routes(t: Table) -> Table {
    t.add(
        post(create),
        Op::new("post", "/api/v1/backup", "backups", "Make an encrypted backup of the tenant")
            .describe(concat!(create!(), " ", admin!()))
            .query::<NoParams>()
            .optional_body::<CreateBackup>()
            .returns::<BackupView>(201)
            .error(403, "SCOPE_DENIED: not an admin key with no project scope; OWNER_REQUIRED: a passphrase archive of protected secrets")
            .error(409, "CONFLICT: the tenant keeps 20 backups already")
            .invalid_request(BAD_BODY),
    )
    .add(
        get(list),
        Op::new("get", "/api/v1/backup", "backups", "The tenant's backups, newest first (never their content)")
            .describe(concat!("`limit`, `offset` and `page` are accepted and ignored: the list is whole. ", admin!()))
            .query::<ListBackups>()
            .returns::<BackupList>(200)
            .error(403, "SCOPE_DENIED")
            .invalid_request(BAD_QUERY),
    )
    .add(
        get(show),
        Op::new("get", "/api/v1/backup/{id}", "backups", "One backup's listing")
            .describe(admin!())
            .query::<NoParams>()
            .returns::<BackupView>(200)
            .error(403, "SCOPE_DENIED")
            .error(404, "NOT_FOUND: no such backup")
            .invalid_request(NO_PARAMS),
    )
    .add(
        delete(remove),
        Op::new("delete", "/api/v1/backup/{id}", "backups", "Delete a backup")
            .describe(concat!("Audited `backup.deleted`. ", admin!()))
            .query::<NoParams>()
            .returns::<BackupDeleted>(200)
            .error(403, "SCOPE_DENIED")
            .error(404, "NOT_FOUND: no such backup")
            .invalid_request(NO_PARAMS),
    )
    .add(
        get(download),
        Op::new("get", "/api/v1/backup/{id}/download", "backups", "The archive's bytes, to keep elsewhere or restore on another server")
            .describe(concat!("`application/octet-stream` with a filename. Audited `backup.downloaded`. ", admin!()))
            .query::<NoParams>()
            .returns_text("application/octet-stream")
            .error(403, "SCOPE_DENIED")
            .error(404, "NOT_FOUND: no such backup")
            .invalid_request(NO_PARAMS),
    )
    .add(
        post(restore),
        Op::new("post", "/api/v1/backup/{id}/restore", "backups", "Replace the tenant's secrets with a stored backup's")
            .describe(concat!("Body (optional): `{passphrase?}`. ", restore!(), " ", admin!()))
            .query::<NoParams>()
            .optional_body::<RestoreBackup>()
            .returns::<RestoreResult>(200)
            .error(403, "INVALID_PASSPHRASE, PLAN_LIMIT_REACHED or SCOPE_DENIED; nothing changed")
            .error(404, "NOT_FOUND: no such backup")
            .invalid_request(BAD_BODY),
    )
    .add(
        post(upload).layer(DefaultBodyLimit::max(UPLOAD_LIMIT)),
        Op::new("post", UPLOAD_PATH, "backups", "Restore from an uploaded archive (made here or on another server)")
            .describe(concat!(upload!(), " ", restore!(), " ", admin!()))
            .query::<NoParams>()
            .returns::<RestoreResult>(200)
            .error(403, "INVALID_PASSPHRASE, PLAN_LIMIT_REACHED or SCOPE_DENIED; nothing changed")
            .error(413, "PAYLOAD_TOO_LARGE: above 64 MiB")
            .invalid_request("INVALID_REQUEST: not a readable backup archive, or a query parameter"),
    )
}
