//! Environments, templates, promotion and `.env` over REST (see
//! `vault::environments` and `vault::batch`).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::api::{BAD_BODY, BAD_QUERY, NO_PARAMS, Table};
use super::extract::{Auth, Body, Query};
use super::openapi::Op;
use crate::error::{Error, Result};
use crate::vault::batch::{BatchPlan, ExportQuery, ImportRequest, PromoteRequest};
use crate::vault::environments::{
    CreateEnvironment, EnvironmentList, EnvironmentView, TemplateInput, TemplateValidation, TemplateView, ValidateQuery,
};
use crate::vault::views::{AccessTier, Deleted, NoParams, SecretType};

const ENVIRONMENTS: &str = "A project's secrets must name one of its environments (400 INVALID_REQUEST naming them \
    otherwise); every project starts with development, staging and production. Secrets without a project keep \
    free-form environments.";
const PROMOTE: &str = "Copies the secrets of `fromEnvironment` (or only `names`) into `toEnvironment` of the same \
    project (`projectId` absent: secrets without a project). Answers the plan by name: `created`, `updated` (value \
    differed, `overwrite: true`), `unchanged` (same value), `skipped` (value differed, `overwrite` false), and \
    `applied`. `dryRun: true` writes nothing. A real run writes everything in one transaction: a secret that changed \
    meanwhile fails it with 409 VERSION_CONFLICT and nothing is stored. Reading a source value is a use (audited, \
    mechanism `promote`; the approval gate applies), so masked and use_only secrets promote too; new secrets keep \
    their source's type, tier, exposure, tags, description and bindings. No value is ever answered.";
const EXPORT: &str = "The environment's secrets as dotenv text (text/plain), by name: `NAME='value'`, or \
    `NAME=\"value\"` with `\\\\ \\\" \\n \\r` escaped when the value holds a single quote, a carriage \
    return, two backslashes in a row or a trailing one, so that dotenv parsers read every value back exactly. Every value is an audited read; only `reveal` secrets \
    export: a masked or use_only one answers 403 EXPOSURE_DENIED naming it, and nothing is exported. A tier that \
    needs approval answers 403 APPROVAL_REQUIRED.";
const IMPORT: &str = "Dotenv text into one project and environment. JSON `{content, environment?, projectId?, \
    overwrite?, dryRun?, secretType?, accessTier?}` (`namespace` is taken for `environment`; `metadata` is ignored), \
    or the raw text with `Content-Type: text/plain` and the rest in the query string. Comments, blank lines, \
    `export `, unquoted values (trailing ` # comments`), 'single quotes' (literal) and \"double quotes\" (escapes \
    \\n \\t \\\" \\\\, multi-line) are read; a name given twice is an error. Any bad line answers 400 with `lines: \
    [{line, message}]` (never the text) and nothing is stored; otherwise everything is written in one transaction \
    and the answer is the plan (as promote's) plus `imported` (created and updated) and `importedCount`. Existing \
    secrets with another value are skipped unless `overwrite: true`.";
const TEMPLATE: &str = "The names every environment of the project must hold. POST takes one entry `{name, \
    description?, required?}`, a list of them, or `{entries: [...]}`, and answers the whole template; an existing \
    name gets the new description and `required` (default true; false lists a name without ever reporting it \
    missing). `GET …/template/validate?environment=` answers `{valid, missing: [{name, description}]}`.";

async fn list_envs(State(s): State<AppState>, Auth(p): Auth, _: Query<NoParams>, Path(id): Path<String>) -> Result<Json<EnvironmentList>> {
    Ok(Json(s.vault.list_environments(&p, &id).await?))
}

async fn create_env(
    State(s): State<AppState>,
    Auth(p): Auth,
    _: Query<NoParams>,
    Path(id): Path<String>,
    Body(req): Body<CreateEnvironment>,
) -> Result<(StatusCode, Json<EnvironmentView>)> {
    Ok((StatusCode::CREATED, Json(s.vault.create_environment(&p, &id, req).await?)))
}

async fn delete_env(
    State(s): State<AppState>,
    Auth(p): Auth,
    _: Query<NoParams>,
    Path((id, name)): Path<(String, String)>,
) -> Result<Json<Deleted>> {
    Ok(Json(s.vault.delete_environment(&p, &id, &name).await?))
}

async fn get_template(State(s): State<AppState>, Auth(p): Auth, _: Query<NoParams>, Path(id): Path<String>) -> Result<Json<TemplateView>> {
    Ok(Json(s.vault.get_template(&p, &id).await?))
}

async fn set_template(
    State(s): State<AppState>,
    Auth(p): Auth,
    _: Query<NoParams>,
    Path(id): Path<String>,
    Body(req): Body<TemplateInput>,
) -> Result<Json<TemplateView>> {
    Ok(Json(s.vault.set_template(&p, &id, req).await?))
}

async fn delete_template(
    State(s): State<AppState>,
    Auth(p): Auth,
    _: Query<NoParams>,
    Path((id, name)): Path<(String, String)>,
) -> Result<Json<Deleted>> {
    Ok(Json(s.vault.delete_template_entry(&p, &id, &name).await?))
}

async fn validate(
    State(s): State<AppState>,
    Auth(p): Auth,
    Query(q): Query<ValidateQuery>,
    Path(id): Path<String>,
) -> Result<Json<TemplateValidation>> {
    Ok(Json(s.vault.validate_template(&p, &id, &q.environment).await?))
}

async fn promote(State(s): State<AppState>, Auth(p): Auth, _: Query<NoParams>, Body(req): Body<PromoteRequest>) -> Result<Json<BatchPlan>> {
    Ok(Json(s.vault.promote(&p, &req).await?))
}

async fn export_env(State(s): State<AppState>, Auth(p): Auth, Query(q): Query<ExportQuery>) -> Result<Response> {
    let entries = s.vault.export_env(&p, &q).await?;
    let mut text = crate::dotenv::write(&entries);
    let mut resp = std::mem::take(&mut *text).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// `POST /api/v1/secrets/import` as JSON.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImportBody {
    /// The dotenv text.
    pub content: String,
    pub project_id: Option<String>,
    /// The environment (empty or absent: none).
    pub environment: Option<String>,
    /// AgentSecretStore's name for the place; taken as the environment.
    pub namespace: Option<String>,
    /// Give existing secrets with another value a new version (default false: skip them).
    #[serde(default)]
    pub overwrite: bool,
    /// Answer the plan and write nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// The type of the secrets it creates (default custom).
    #[serde(alias = "secret_type")]
    pub secret_type: Option<SecretType>,
    /// The tier of the secrets it creates (default standard).
    #[serde(alias = "access_tier")]
    pub access_tier: Option<AccessTier>,
    /// Accepted for AgentSecretStore's clients; not stored.
    #[schemars(skip)]
    #[allow(dead_code)]
    pub metadata: Option<serde_json::Value>,
}

/// `POST /api/v1/secrets/import` with a `text/plain` body: the rest here.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImportQuery {
    pub project_id: Option<String>,
    pub environment: Option<String>,
    pub overwrite: Option<bool>,
    pub dry_run: Option<bool>,
    pub secret_type: Option<SecretType>,
    pub access_tier: Option<AccessTier>,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Imported {
    #[serde(flatten)]
    pub plan: BatchPlan,
    /// Created and updated names (AgentSecretStore's answer).
    pub imported: Vec<String>,
    pub imported_count: usize,
}

async fn import(
    State(s): State<AppState>,
    Auth(p): Auth,
    Query(q): Query<ImportQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Imported>> {
    let json = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|t| t.contains("json"));
    let req = if json {
        if q.project_id.is_some()
            || q.environment.is_some()
            || q.overwrite.is_some()
            || q.dry_run.is_some()
            || q.secret_type.is_some()
            || q.access_tier.is_some()
        {
            return Err(Error::InvalidRequest("with a JSON body, give every field in the body, none in the query string".into()));
        }
        // Serde's messages can quote the input: this one never reaches the caller.
        let b: ImportBody = serde_json::from_slice(&body).map_err(|e| {
            Error::InvalidRequest(format!(
                "invalid JSON body (line {}, column {}): expected {{content, environment?, projectId?, overwrite?, dryRun?}}",
                e.line(),
                e.column()
            ))
        })?;
        if b.environment.is_some() && b.namespace.is_some() && b.environment != b.namespace {
            return Err(Error::InvalidRequest("environment and namespace name the same thing: give one".into()));
        }
        ImportRequest {
            project_id: b.project_id,
            environment: b.environment.or(b.namespace).unwrap_or_default(),
            text: b.content,
            overwrite: b.overwrite,
            dry_run: b.dry_run,
            secret_type: b.secret_type,
            access_tier: b.access_tier,
        }
    } else {
        let text = String::from_utf8(body.to_vec()).map_err(|_| Error::InvalidRequest("the dotenv text must be UTF-8".into()))?;
        ImportRequest {
            project_id: q.project_id,
            environment: q.environment.unwrap_or_default(),
            text,
            overwrite: q.overwrite.unwrap_or(false),
            dry_run: q.dry_run.unwrap_or(false),
            secret_type: q.secret_type,
            access_tier: q.access_tier,
        }
    };
    let plan = s.vault.import_env(&p, &req).await?;
    let imported: Vec<String> = plan.created.iter().chain(plan.updated.iter()).cloned().collect();
    Ok(Json(Imported { imported_count: imported.len(), imported, plan }))
}

pub(super) fn routes(t: Table) -> Table {
    t.add(
        get(list_envs),
        Op::new("get", "/api/v1/projects/{id}/environments", "projects", "A project's environments")
            .describe(ENVIRONMENTS)
            .query::<NoParams>()
            .returns::<EnvironmentList>(200)
            .invalid_request(NO_PARAMS),
    )
    .add(
        post(create_env),
        Op::new("post", "/api/v1/projects/{id}/environments", "projects", "Add an environment to a project")
            .describe(ENVIRONMENTS)
            .query::<NoParams>()
            .body::<CreateEnvironment>()
            .returns::<EnvironmentView>(201)
            .error(409, "ALREADY_EXISTS: the project has an environment of that name")
            .invalid_request("INVALID_REQUEST: a bad environment name (1-64 of A-Z a-z 0-9 _ - .), or a query parameter"),
    )
    .add(
        delete(delete_env),
        Op::new("delete", "/api/v1/projects/{id}/environments/{name}", "projects", "Remove an environment no secret uses")
            .query::<NoParams>()
            .returns::<Deleted>(200)
            .error(409, "CONFLICT: secrets of the project (soft-deleted ones included) still use it")
            .invalid_request(NO_PARAMS),
    )
    .add(
        get(get_template),
        Op::new("get", "/api/v1/projects/{id}/template", "projects", "The names every environment of the project must hold")
            .describe(TEMPLATE)
            .query::<NoParams>()
            .returns::<TemplateView>(200)
            .invalid_request(NO_PARAMS),
    )
    .add(
        post(set_template),
        Op::new("post", "/api/v1/projects/{id}/template", "projects", "Add names to the template (or change their description)")
            .describe(TEMPLATE)
            .query::<NoParams>()
            .body::<TemplateInput>()
            .returns::<TemplateView>(200)
            .invalid_request(BAD_BODY),
    )
    .add(
        delete(delete_template),
        Op::new("delete", "/api/v1/projects/{id}/template/{name}", "projects", "Remove a name from the template")
            .query::<NoParams>()
            .returns::<Deleted>(200)
            .invalid_request(NO_PARAMS),
    )
    .add(
        get(validate),
        Op::new("get", "/api/v1/projects/{id}/template/validate", "projects", "The template's required names an environment lacks")
            .describe(TEMPLATE)
            .query::<ValidateQuery>()
            .returns::<TemplateValidation>(200)
            .invalid_request("INVALID_REQUEST: environment missing or not one of the project's, or an unknown query parameter"),
    )
    .add(
        post(promote),
        Op::new(
            "post",
            "/api/v1/secrets/promote",
            "secrets",
            "Copy one environment's secrets into another (plan, or apply in one transaction)",
        )
        .describe(PROMOTE)
        .query::<NoParams>()
        .body::<PromoteRequest>()
        .returns::<BatchPlan>(200)
        .error(409, "VERSION_CONFLICT: a target secret changed meanwhile; nothing was stored")
        .invalid_request(BAD_BODY),
    )
    .add(
        get(export_env),
        Op::new("get", "/api/v1/secrets/export/env", "secrets", "An environment's secrets as dotenv text")
            .describe(EXPORT)
            .query::<ExportQuery>()
            .returns_text("text/plain")
            .invalid_request(BAD_QUERY),
    )
    .add(
        post(import),
        Op::new("post", "/api/v1/secrets/import", "secrets", "Dotenv text into an environment, in one transaction")
            .describe(IMPORT)
            .query::<ImportQuery>()
            .body::<ImportBody>()
            .returns::<Imported>(200)
            .error(409, "VERSION_CONFLICT: an existing secret changed meanwhile; nothing was stored")
            .invalid_request(
                "INVALID_REQUEST: a bad line (`lines` lists them by number), a bad field, or query parameters beside a JSON body",
            ),
    )
}
