//! Route handlers: extract, call one vault function, render. Every handler
//! reads its query string, if only as [`NoParams`], so that no route ignores
//! a parameter it does not know.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::AppState;
use super::extract::{Auth, Body, ClientOrigin, Query};
use crate::error::Result;
use crate::vault::secrets::SecretRef;
use crate::vault::tokens::{TokenIssued, TokenList, TokenRequest};
use crate::vault::views::*;
use crate::vault::{plans, plans::PlanLimits};

type Created<T> = (StatusCode, Json<T>);

pub async fn healthz() -> &'static str {
    "ok"
}

pub async fn signup(
    State(s): State<AppState>,
    ClientOrigin(o): ClientOrigin,
    _: Query<NoParams>,
    Body(req): Body<SignupRequest>,
) -> Result<Created<SignupResponse>> {
    Ok((StatusCode::CREATED, Json(s.vault.signup(req, o).await?)))
}

pub async fn signup_limits(_: Query<NoParams>) -> Result<Json<Vec<PlanLimits>>> {
    Ok(Json(plans::PLAN_NAMES.iter().map(|p| plans::limits(p)).collect::<Result<_>>()?))
}

pub async fn plan(State(s): State<AppState>, Auth(p): Auth, _: Query<NoParams>) -> Result<Json<WhoAmI>> {
    Ok(Json(s.vault.whoami(&p).await?))
}

pub async fn create_secret(
    State(s): State<AppState>,
    Auth(p): Auth,
    _: Query<NoParams>,
    Body(req): Body<CreateSecret>,
) -> Result<Created<SecretMeta>> {
    Ok((StatusCode::CREATED, Json(s.vault.create_secret(&p, req).await?)))
}

pub async fn list_secrets(State(s): State<AppState>, Auth(p): Auth, Query(q): Query<ListSecrets>) -> Result<Json<SecretPage>> {
    Ok(Json(s.vault.list_secrets(&p, q).await?))
}

pub async fn get_secret(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    Query(q): Query<ReadVersion>,
) -> Result<Json<SecretValue>> {
    Ok(Json(s.vault.read_secret(&p, SecretRef::Id(&id), &q).await?))
}

pub async fn update_secret(
    State(s): State<AppState>,
    Auth(p): Auth,
    _: Query<NoParams>,
    Path(id): Path<String>,
    Body(req): Body<EditSecret>,
) -> Result<Json<SecretMeta>> {
    Ok(Json(s.vault.update_secret(&p, SecretRef::Id(&id), req).await?))
}

pub async fn delete_secret(
    State(s): State<AppState>,
    Auth(p): Auth,
    Query(q): Query<crate::vault::lifecycle::DeleteParams>,
    Path(id): Path<String>,
) -> Result<Json<crate::vault::lifecycle::DeleteResult>> {
    Ok(Json(s.vault.delete_secret_with(&p, SecretRef::Id(&id), q).await?))
}

pub async fn secret_versions(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    Query(page): Query<VersionPage>,
) -> Result<Json<VersionList>> {
    Ok(Json(s.vault.secret_versions(&p, SecretRef::Id(&id), page).await?))
}

pub async fn create_project(
    State(s): State<AppState>,
    Auth(p): Auth,
    _: Query<NoParams>,
    Body(req): Body<CreateProject>,
) -> Result<Created<ProjectView>> {
    Ok((StatusCode::CREATED, Json(s.vault.create_project(&p, req).await?)))
}

pub async fn list_projects(State(s): State<AppState>, Auth(p): Auth, _: Query<NoParams>) -> Result<Json<ProjectList>> {
    Ok(Json(s.vault.list_projects(&p).await?))
}

pub async fn get_project(
    State(s): State<AppState>,
    Auth(p): Auth,
    _: Query<NoParams>,
    Path(id): Path<String>,
) -> Result<Json<ProjectView>> {
    Ok(Json(s.vault.get_project(&p, &id).await?))
}

pub async fn update_project(
    State(s): State<AppState>,
    Auth(p): Auth,
    _: Query<NoParams>,
    Path(id): Path<String>,
    Body(req): Body<UpdateProject>,
) -> Result<Json<ProjectView>> {
    Ok(Json(s.vault.update_project(&p, &id, req).await?))
}

pub async fn delete_project(State(s): State<AppState>, Auth(p): Auth, _: Query<NoParams>, Path(id): Path<String>) -> Result<Json<Deleted>> {
    Ok(Json(s.vault.delete_project(&p, &id).await?))
}

pub async fn create_api_key(
    State(s): State<AppState>,
    Auth(p): Auth,
    _: Query<NoParams>,
    Body(req): Body<CreateApiKey>,
) -> Result<Created<IssuedApiKey>> {
    Ok((StatusCode::CREATED, Json(s.vault.create_api_key(&p, req).await?)))
}

pub async fn list_api_keys(State(s): State<AppState>, Auth(p): Auth, _: Query<NoParams>) -> Result<Json<ApiKeyList>> {
    Ok(Json(s.vault.list_api_keys(&p).await?))
}

pub async fn update_api_key(
    State(s): State<AppState>,
    Auth(p): Auth,
    _: Query<NoParams>,
    Path(id): Path<String>,
    Body(req): Body<UpdateApiKey>,
) -> Result<Json<ApiKeyView>> {
    Ok(Json(s.vault.update_api_key(&p, &id, req).await?))
}

pub async fn revoke_api_key(
    State(s): State<AppState>,
    Auth(p): Auth,
    _: Query<NoParams>,
    Path(id): Path<String>,
) -> Result<Json<ApiKeyView>> {
    Ok(Json(s.vault.revoke_api_key(&p, &id).await?))
}

pub async fn regenerate_api_key(
    State(s): State<AppState>,
    Auth(p): Auth,
    _: Query<NoParams>,
    Path(id): Path<String>,
) -> Result<Json<IssuedApiKey>> {
    Ok(Json(s.vault.regenerate_api_key(&p, &id).await?))
}

pub async fn create_token(
    State(s): State<AppState>,
    Auth(p): Auth,
    _: Query<NoParams>,
    Body(req): Body<TokenRequest>,
) -> Result<Created<TokenIssued>> {
    let issued = s.vault.create_token(&p, req).await?;
    // 202: nothing issued yet; an owner must approve, then the key redeems.
    let status = if issued.requires_approval { StatusCode::ACCEPTED } else { StatusCode::CREATED };
    Ok((status, Json(issued)))
}

pub async fn redeem_approval(
    State(s): State<AppState>,
    Auth(p): Auth,
    _: Query<NoParams>,
    Path(id): Path<String>,
) -> Result<Created<TokenIssued>> {
    Ok((StatusCode::CREATED, Json(s.vault.redeem_token_approval(&p, &id).await?)))
}

pub async fn list_tokens(State(s): State<AppState>, Auth(p): Auth, _: Query<NoParams>) -> Result<Json<TokenList>> {
    Ok(Json(s.vault.list_tokens(&p).await?))
}

pub async fn revoke_token(State(s): State<AppState>, Auth(p): Auth, _: Query<NoParams>, Path(id): Path<String>) -> Result<StatusCode> {
    s.vault.revoke_token(&p, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn audit(State(s): State<AppState>, Auth(p): Auth, Query(q): Query<AuditQuery>) -> Result<Json<AuditPage>> {
    Ok(Json(s.vault.query_audit(&p, q).await?))
}

pub async fn export_audit(State(s): State<AppState>, Auth(p): Auth, Query(q): Query<AuditExportQuery>) -> Result<axum::response::Response> {
    let format = q.format.unwrap_or_default();
    let pages = s.vault.export_audit(&p, q).await?;
    Ok(super::export::response(format, pages, &p.tenant_id))
}

// ---------------------------------------------------------------- approvals, policy

use crate::vault::approvals::{ApprovalView, ApproveRequest, DenyRequest, ListApprovals, PolicyView, UpdatePolicy};

pub async fn get_policy(State(s): State<AppState>, Auth(p): Auth, _: Query<NoParams>) -> Result<Json<PolicyView>> {
    Ok(Json(s.vault.get_policy(&p).await?))
}

pub async fn set_policy(
    State(s): State<AppState>,
    Auth(p): Auth,
    _: Query<NoParams>,
    Body(req): Body<UpdatePolicy>,
) -> Result<Json<PolicyView>> {
    Ok(Json(s.vault.set_policy(&p, req).await?))
}

pub async fn list_approvals(State(s): State<AppState>, Auth(p): Auth, Query(q): Query<ListApprovals>) -> Result<Json<ApprovalList>> {
    let approvals = s.vault.list_approvals(&p, q.status.as_deref()).await?;
    Ok(Json(ApprovalList { count: approvals.len(), approvals }))
}

pub async fn get_approval(
    State(s): State<AppState>,
    Auth(p): Auth,
    _: Query<NoParams>,
    Path(id): Path<String>,
) -> Result<Json<ApprovalView>> {
    Ok(Json(s.vault.get_approval(&p, &id).await?))
}

pub async fn approve(
    State(s): State<AppState>,
    Auth(p): Auth,
    _: Query<NoParams>,
    Path(id): Path<String>,
    Body(req): Body<ApproveRequest>,
) -> Result<Json<ApprovalView>> {
    Ok(Json(s.vault.approve(&p, &id, req).await?))
}

pub async fn deny(
    State(s): State<AppState>,
    Auth(p): Auth,
    _: Query<NoParams>,
    Path(id): Path<String>,
    Body(req): Body<DenyRequest>,
) -> Result<Json<ApprovalView>> {
    Ok(Json(s.vault.deny(&p, &id, &req.reason).await?))
}

/// `GET /api/v1/approvals`.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct ApprovalList {
    pub approvals: Vec<ApprovalView>,
    pub count: usize,
}
