//! `GET /api/v1/audit/verify`: the tenant's audit chain, verified (see
//! `vault::audit_verify`).

use axum::Json;
use axum::extract::State;
use axum::routing::get;

use super::AppState;
use super::api::Table;
use super::extract::{Auth, Query};
use super::openapi::Op;
use crate::error::Result;
use crate::vault::audit_verify::{VerifyQuery, VerifyReport};

const VERIFY: &str = "Walks the tenant's tamper-evident audit chain in chain order (1000 entries per query), from \
    retention's checkpoint when entries were pruned. Each entry carries an HMAC (under a key derived from the master \
    key) over its content and the previous entry's hash. Answers `{verified, entries, firstBroken?, reason?, \
    truncated?, checkpoint?, unchained, head}`: `firstBroken` is the id (as GET /api/v1/audit shows it) of the first \
    entry that does not link (`reason` `position`: an entry before it is missing or moved; `hash`: it was changed; \
    `predecessor`: the entry before startDate is missing); `truncated` when entries are missing from the end. \
    `startDate` picks the first entry reported (still linked from its predecessor), `endDate` the last. Entries written \
    before the chain existed count as `unchained`. Admin keys only (tenant-wide).";

async fn verify(State(s): State<AppState>, Auth(p): Auth, Query(q): Query<VerifyQuery>) -> Result<Json<VerifyReport>> {
    Ok(Json(s.vault.verify_audit(&p, q).await?))
}

pub(super) fn routes(t: Table) -> Table {
    t.add(
        get(verify),
        Op::new("get", "/api/v1/audit/verify", "audit", "Verify the audit trail's hash chain")
            .describe(VERIFY)
            .query::<VerifyQuery>()
            .returns::<VerifyReport>(200)
            .error(403, "SCOPE_DENIED: not a tenant-wide admin key")
            .invalid_request("INVALID_REQUEST: a bad date, or a parameter it does not take"),
    )
}
