//! The secret-request page: where an owner gives an agent a value it asked
//! for without the agent ever seeing it (see `vault::requests`).
//!
//! `/requests/{id}` is the address agents show (it reads well in a chat);
//! it redirects to `/approvals/requests/{id}`, under the path the owner's
//! session cookie is scoped to, so sign-in, CSRF and passkeys are the
//! approval pages' own. `GET` shows what is asked (name, place, reason,
//! instructions, the link to get the value, who asked, the exposure the
//! secret gets) and, while pending, one form with a password field. `POST`
//! stores the value ([`Vault::fulfil_request`]) and redirects to the page
//! with `?done=fulfilled`: the value is in no URL, no later page and no
//! log. Not signed in: the sign-in page, with `next` back here.

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{Ctx, PageResult, form, form_caller, html, query, to_signin, urlencode};
use crate::error::Error;
use crate::rest::AppState;
use crate::store::Millis;
use crate::vault::requests::RequestPage;

pub fn routes() -> Router<AppState> {
    Router::new().route("/requests/{id}", get(short)).route("/approvals/requests/{id}", get(page).post(fulfil))
}

#[derive(Template)]
#[template(path = "request.html")]
struct RequestHtml<'a> {
    title: &'a str,
    csrf: &'a str,
    who: &'a str,
    notice: String,
    notice_tone: &'a str,
    id: String,
    name: String,
    place: String,
    reason: String,
    instructions: String,
    obtain_url: String,
    requester: String,
    exposure: String,
    exposure_note: &'static str,
    tier: String,
    state: &'static str,
    expires: String,
    secret: String,
    strong: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DoneQuery {
    done: Option<String>,
}

fn time(ms: Millis) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms).map(|t| t.format("%a %-d %b %Y, %H:%M UTC").to_string()).unwrap_or_default()
}

fn exposure_note(e: &str) -> &'static str {
    match e {
        "use_only" => "the agent can use it (run a command, call an API, verify it) but never read it",
        "masked" => "the agent sees a preview and a fingerprint, never the value",
        _ => "the agent may read the value",
    }
}

async fn short(Path(id): Path<String>) -> PageResult {
    Ok(Redirect::to(&format!("/approvals/requests/{}", urlencode(&id))).into_response())
}

async fn page(State(s): State<AppState>, ctx: Ctx, Path(id): Path<String>, uri: axum::http::Uri) -> PageResult {
    let q: DoneQuery = query(&uri)?;
    let here = format!("/approvals/requests/{}", urlencode(&id));
    let caller = match ctx.caller(&s.vault).await {
        Ok(c) => c,
        Err(Error::Unauthorized(_)) => return Ok(to_signin(&here)),
        Err(e) => return Err(e.into()),
    };
    let p = &caller.principal;
    let r: RequestPage = s.vault.request_page(p, &id).await?;
    let (notice, notice_tone) = match (q.done.as_deref(), r.state) {
        (Some("fulfilled"), "fulfilled") => ("Stored. The agent can now use the secret; it never sees the value.".to_owned(), "good"),
        _ => (String::new(), ""),
    };
    let row = &r.row;
    let place = match (&row.project_id, row.environment.as_str()) {
        (Some(p), "") => format!("project {p}"),
        (Some(p), e) => format!("project {p}, environment {e}"),
        (None, "") => "no project, no environment".to_owned(),
        (None, e) => format!("environment {e}"),
    };
    let page = RequestHtml {
        title: "Secret request",
        csrf: &caller.session.csrf,
        who: &caller.owner_name,
        notice,
        notice_tone,
        id: row.id.clone(),
        name: row.name.clone(),
        place,
        reason: row.reason.clone(),
        instructions: row.instructions.clone().unwrap_or_default(),
        obtain_url: row.obtain_url.clone().unwrap_or_default(),
        requester: r.requester.clone(),
        exposure: row.exposure.clone(),
        exposure_note: exposure_note(&row.exposure),
        tier: row.access_tier.clone(),
        state: r.state,
        expires: time(row.expires_at),
        secret: match (&r.secret_name, &row.secret_id) {
            (Some(n), Some(id)) => format!("{n} ({id})"),
            (None, Some(id)) => id.clone(),
            _ => String::new(),
        },
        strong: p.human.as_ref().is_some_and(|h| h.passkeys_enrolled),
    };
    Ok(html(&page))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FulfilForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    assertion: String,
    value: String,
}

async fn fulfil(State(s): State<AppState>, ctx: Ctx, Path(id): Path<String>, body: Bytes) -> PageResult {
    let f: FulfilForm = form(&body)?;
    let value = zeroize::Zeroizing::new(f.value);
    let caller = form_caller(&s.vault, &ctx, &f.csrf, Some(&format!("fulfil:{id}")), &f.assertion).await?;
    s.vault.fulfil_request(&caller.principal, &id, value).await?;
    Ok(Redirect::to(&format!("/approvals/requests/{}?done=fulfilled", urlencode(&id))).into_response())
}
