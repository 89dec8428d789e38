//! Checks over REST that use a value without answering it (see
//! `vault::checks`): `POST /api/v1/secrets/{id}/verify` and
//! `GET /api/v1/secrets/compare`.

use axum::Json;
use axum::extract::{Path, State};
use axum::routing::{get, post};

use super::AppState;
use super::api::{BAD_BODY, BAD_QUERY, Table};
use super::extract::{Auth, Body, Query};
use super::openapi::Op;
use crate::error::Result;
use crate::vault::checks::{CompareQuery, CompareResult, VerifyCandidate, VerifyResult};
use crate::vault::secrets::SecretRef;
use crate::vault::views::NoParams;

const VERIFY: &str = "Answers `{match}`: whether `candidate` equals the secret's current value, compared in constant \
    time; never the value. Works on every exposure (`use_only` included) and is audited as a use (`secret.use`, \
    mechanism `verify`). Each secret allows 10 verifications a minute per server process, counted before anything \
    is decrypted: past that, 429 VERIFY_LIMITED with Retry-After.";
const COMPARE: &str = "Per secret name in either environment of the project (`projectId`, or secrets under no \
    project): `equal`, `different`, `only_in_from` or `only_in_to`, sorted by name, with counts; never a value. \
    Works on every exposure; each secret compared is audited as a use (mechanism `compare`). The approval gate does \
    not apply: only equality is revealed.";

async fn verify(
    State(s): State<AppState>,
    Auth(p): Auth,
    _: Query<NoParams>,
    Path(id): Path<String>,
    Body(req): Body<VerifyCandidate>,
) -> Result<Json<VerifyResult>> {
    Ok(Json(s.vault.verify_secret(&p, SecretRef::Id(&id), &req.candidate).await?))
}

async fn compare(State(s): State<AppState>, Auth(p): Auth, Query(q): Query<CompareQuery>) -> Result<Json<CompareResult>> {
    Ok(Json(s.vault.compare_environments(&p, q).await?))
}

pub(super) fn routes(t: Table) -> Table {
    t.add(
        post(verify),
        Op::new(
            "post",
            "/api/v1/secrets/{id}/verify",
            "secrets",
            "Check a candidate against a secret's value (match or not; never the value)",
        )
        .describe(VERIFY)
        .query::<NoParams>()
        .body::<VerifyCandidate>()
        .returns::<VerifyResult>(200)
        .error(404, "SECRET_NOT_FOUND")
        .error(429, "VERIFY_LIMITED: 10 verifications a minute per secret; see Retry-After")
        .invalid_request(BAD_BODY),
    )
    .add(
        get(compare),
        Op::new(
            "get",
            "/api/v1/secrets/compare",
            "secrets",
            "Compare two environments' secrets per name (equal, different, only in one; never values)",
        )
        .describe(COMPARE)
        .query::<CompareQuery>()
        .returns::<CompareResult>(200)
        .invalid_request(BAD_QUERY),
    )
}
