//! Webhooks over REST (`/api/v1/webhooks`): subscriptions, their recent
//! deliveries and a test event (see `vault::webhooks`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post, put};

use super::AppState;
use super::api::{BAD_BODY, NO_PARAMS, Table};
use super::extract::{Auth, Body, Query};
use super::openapi::Op;
use crate::error::Result;
use crate::vault::views::NoParams;
use crate::vault::webhooks::{CreateWebhook, TestQueued, UpdateWebhook, WebhookDeleted, WebhookDetail, WebhookList, WebhookView};

const WHO: &str = "Needs an admin API key (or an owner) with no project scope: a webhook receives every project's \
    events; other keys get 403 SCOPE_DENIED, scoped tokens too.";
const CREATE: &str = "`events`: any of secret.created, secret.updated, secret.deleted, secret.rotated, secret.shared, \
    secret.restored, secret.purged, secret.rotation_due, apikey.created, apikey.revoked, backup.created, \
    approval.requested, approval.decided, claim.created, claim.redeemed, tenant.key_rotated, or `*` for all (an unknown one is 400 naming \
    them). `url`: http or https; a private, loopback or link-local address is refused (400) unless the operator \
    passes --allow-private-destinations, and a name resolving to one is refused at each delivery. Without `secret`, \
    a `whsec_…` signing secret is made and answered once as `secret`; it is never shown again. At most 20 webhooks \
    per tenant (403 PLAN_LIMIT_REACHED). Each event is POSTed as `{id, type, createdAt, tenantId, data: \
    {resourceType, resourceId, actor, …}}` (never a value) with `Latchkey-Event`, `Latchkey-Delivery` and \
    `Latchkey-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, \"<t>.<body>\")>`; a 2xx answer delivers it, \
    anything else is retried with exponential backoff (30 s doubling, at most 1 h apart) until 24 h after the event.";

async fn list(State(s): State<AppState>, Auth(p): Auth, _: Query<NoParams>) -> Result<Json<WebhookList>> {
    Ok(Json(s.vault.list_webhooks(&p).await?))
}

async fn create(
    State(s): State<AppState>,
    Auth(p): Auth,
    _: Query<NoParams>,
    Body(req): Body<CreateWebhook>,
) -> Result<(StatusCode, Json<WebhookView>)> {
    Ok((StatusCode::CREATED, Json(s.vault.create_webhook(&p, req).await?)))
}

async fn show(State(s): State<AppState>, Auth(p): Auth, _: Query<NoParams>, Path(id): Path<String>) -> Result<Json<WebhookDetail>> {
    Ok(Json(s.vault.get_webhook(&p, &id).await?))
}

async fn update(
    State(s): State<AppState>,
    Auth(p): Auth,
    _: Query<NoParams>,
    Path(id): Path<String>,
    Body(req): Body<UpdateWebhook>,
) -> Result<Json<WebhookView>> {
    Ok(Json(s.vault.update_webhook(&p, &id, req).await?))
}

async fn remove(State(s): State<AppState>, Auth(p): Auth, _: Query<NoParams>, Path(id): Path<String>) -> Result<Json<WebhookDeleted>> {
    Ok(Json(s.vault.delete_webhook(&p, &id).await?))
}

async fn test(
    State(s): State<AppState>,
    Auth(p): Auth,
    _: Query<NoParams>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<TestQueued>)> {
    Ok((StatusCode::ACCEPTED, Json(s.vault.test_webhook(&p, &id).await?)))
}

pub(super) fn routes(t: Table) -> Table {
    t.add(
        get(list),
        Op::new("get", "/api/v1/webhooks", "webhooks", "Your webhooks (never their secrets)")
            .describe(WHO)
            .query::<NoParams>()
            .returns::<WebhookList>(200)
            .error(403, "SCOPE_DENIED: not an admin key without project scope")
            .invalid_request(NO_PARAMS),
    )
    .add(
        post(create),
        Op::new("post", "/api/v1/webhooks", "webhooks", "Subscribe a URL to events")
            .describe(CREATE)
            .query::<NoParams>()
            .body::<CreateWebhook>()
            .returns::<WebhookView>(201)
            .error(403, "SCOPE_DENIED: not an admin key without project scope; PLAN_LIMIT_REACHED: 20 webhooks already")
            .invalid_request("INVALID_REQUEST: malformed body, an unknown event (the message names the valid ones), a URL that is not http(s) or names a refused address, a secret outside 8-256 characters, or a query parameter"),
    )
    .add(
        get(show),
        Op::new("get", "/api/v1/webhooks/{id}", "webhooks", "A webhook and its latest deliveries (status, attempts, last status code, next attempt; no bodies)")
            .query::<NoParams>()
            .returns::<WebhookDetail>(200)
            .error(403, "SCOPE_DENIED")
            .error(404, "NOT_FOUND: no such webhook")
            .invalid_request(NO_PARAMS),
    )
    .add(
        put(update),
        Op::new("put", "/api/v1/webhooks/{id}", "webhooks", "Change a webhook (the fields given)")
            .describe("`enabled: false` cancels its pending deliveries. `secret` sets a signing secret of your own; `regenerateSecret: true` makes a new one, answered once as `secret`.")
            .query::<NoParams>()
            .body::<UpdateWebhook>()
            .returns::<WebhookView>(200)
            .error(403, "SCOPE_DENIED")
            .error(404, "NOT_FOUND: no such webhook")
            .invalid_request(BAD_BODY),
    )
    .add(
        delete(remove),
        Op::new("delete", "/api/v1/webhooks/{id}", "webhooks", "Delete a webhook and its deliveries")
            .query::<NoParams>()
            .returns::<WebhookDeleted>(200)
            .error(403, "SCOPE_DENIED")
            .error(404, "NOT_FOUND: no such webhook")
            .invalid_request(NO_PARAMS),
    )
    .add(
        post(test),
        Op::new("post", "/api/v1/webhooks/{id}/test", "webhooks", "Queue a webhook.test event for this webhook only")
            .query::<NoParams>()
            .returns::<TestQueued>(202)
            .error(403, "SCOPE_DENIED")
            .error(404, "NOT_FOUND: no such webhook")
            .error(409, "CONFLICT: the webhook is disabled")
            .invalid_request(NO_PARAMS),
    )
}
