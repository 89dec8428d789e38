//! The tenant's data key over REST (`vault::data_keys`): its rotation and
//! the state of the pass that reseals the versions.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};

use super::AppState;
use super::api::{NO_PARAMS, Table};
use super::extract::{Auth, Query};
use super::openapi::Op;
use crate::error::Result;
use crate::vault::data_keys::DataKeyView;
use crate::vault::views::NoParams;

macro_rules! who {
    () => {
        "Owners, and admin keys with no project scope: read and write keys and scoped tokens get 403 SCOPE_DENIED."
    };
}

async fn rotate(State(s): State<AppState>, Auth(p): Auth, _: Query<NoParams>) -> Result<(StatusCode, Json<DataKeyView>)> {
    Ok((StatusCode::ACCEPTED, Json(s.vault.rotate_data_key(&p).await?)))
}

async fn show(State(s): State<AppState>, Auth(p): Auth, _: Query<NoParams>) -> Result<Json<DataKeyView>> {
    Ok(Json(s.vault.data_key_state(&p).await?))
}

pub(super) fn routes(t: Table) -> Table {
    t.add(
        post(rotate),
        Op::new("post", "/api/v1/tenant/rotate-key", "tenant", "Rotate the tenant's data key")
            .describe(concat!(
                "No body. A new generation of the tenant's data key seals every value from now on; every version is then \
                 sealed again under it in the background, in batches (`rotation.state` goes from `running` to `done`; \
                 `GET /api/v1/tenant/key` shows the progress). Reads keep working throughout: earlier generations stay, \
                 wrapped by the master key, to open what they sealed (claims, share links, webhook secrets and backups \
                 made before). Value fingerprints change with the key. Audited `tenant.key_rotated`, and \
                 `tenant.key_resealed` when the pass ends. ",
                who!()
            ))
            .query::<NoParams>()
            .returns::<DataKeyView>(202)
            .error(403, "SCOPE_DENIED")
            .error(409, "CONFLICT: a rotation of this tenant is still running")
            .invalid_request(NO_PARAMS),
    )
    .add(
        get(show),
        Op::new("get", "/api/v1/tenant/key", "tenant", "The tenant's data-key generation and the latest rotation's progress")
            .describe(who!())
            .query::<NoParams>()
            .returns::<DataKeyView>(200)
            .error(403, "SCOPE_DENIED")
            .invalid_request(NO_PARAMS),
    )
}
