//! The share page: `/s/{token}`, for the person a share link was sent to.
//!
//! `GET` shows what is shared (the secret's name, when the link expires, how
//! many views are left) and one button, "Reveal", with a password field when
//! the share has one. It never reveals the value and never counts a use: chat
//! apps and mail scanners fetch links for previews. `POST` (the form) calls
//! [`Vault::access_share`] with `Front::Page`, which counts one use, and shows
//! the value once in a read-only field with a copy button
//! (`static/share.js`, the page's one script; everything but the copy works
//! without it). Every other outcome (unknown, expired, used up, revoked,
//! locked, wrong password, address not allowed) is a page that says so in
//! plain words, with the error's status.
//!
//! The headers of [`super::routes`] apply: strict CSP, `no-referrer` (the
//! token is in the URL), `DENY` framing, and the server's `no-store`.

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use tower_http::set_header::SetResponseHeaderLayer;

use super::{Ctx, form, html, query};
use crate::error::Error;
use crate::rest::AppState;
use crate::vault::shares::{ShareLanding, ShareState, SharedSecret};

/// Longer than any token this server makes; a longer path is not looked up.
const MAX_TOKEN: usize = 200;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/s/{token}", get(landing).post(reveal))
        .route("/static/share.js", get(script))
        .route("/static/share.css", get(style))
        // A link with a token in it is nothing for a search engine.
        .layer(SetResponseHeaderLayer::overriding(
            header::HeaderName::from_static("x-robots-tag"),
            HeaderValue::from_static("noindex, nofollow"),
        ))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NoQuery {}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RevealForm {
    #[serde(default)]
    password: String,
}

#[derive(Template)]
#[template(path = "share.html")]
struct Landing {
    title: &'static str,
    name: String,
    expires: String,
    uses: String,
    needs_password: bool,
    error: String,
    action: String,
}

#[derive(Template)]
#[template(path = "share_revealed.html")]
struct Revealed {
    title: &'static str,
    name: String,
    value: String,
    rows: usize,
    uses_line: String,
    last: bool,
}

#[derive(Template)]
#[template(path = "share_state.html")]
struct StatePage {
    title: &'static str,
    kind: &'static str,
    heading: &'static str,
    message: String,
}

/// `2026-12-07T14:05:00Z` as "in 23 hours (Mon 7 Dec 2026, 14:05 UTC)".
fn when(rfc3339: &str) -> String {
    let Ok(t) = DateTime::parse_from_rfc3339(rfc3339) else { return rfc3339.to_owned() };
    let t = t.with_timezone(&Utc);
    format!("{} ({})", from_now(t), t.format("%a %-d %b %Y, %H:%M UTC"))
}

/// `2026-12-07T14:05:00Z` as "Mon 7 Dec 2026, 14:05 UTC".
fn at(rfc3339: &str) -> String {
    match DateTime::parse_from_rfc3339(rfc3339) {
        Ok(t) => t.with_timezone(&Utc).format("%a %-d %b %Y, %H:%M UTC").to_string(),
        Err(_) => rfc3339.to_owned(),
    }
}

fn from_now(t: DateTime<Utc>) -> String {
    let secs = (t - Utc::now()).num_seconds();
    let plural = |n: i64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    match secs {
        ..=0 => "now".into(),
        1..=89 => "in about a minute".into(),
        90..=5399 => format!("in {}", plural((secs + 30) / 60, "minute")),
        5400..=172_799 => format!("in {}", plural((secs + 1800) / 3600, "hour")),
        _ => format!("in {}", plural((secs + 43_200) / 86_400, "day")),
    }
}

/// The field's height in rows where the browser cannot size it to its
/// content: long lines wrap at about 34 characters (a phone's width).
fn rows(value: &str) -> usize {
    value.lines().map(|l| l.chars().count().div_ceil(34).max(1)).sum::<usize>().clamp(1, 16)
}

fn views_left(uses_left: Option<i64>) -> String {
    match uses_left {
        None => "No limit".into(),
        Some(1) => "1 view".into(),
        Some(n) => format!("{} views", n.max(0)),
    }
}

fn landing_page(l: ShareLanding, action: String, error: String) -> Response {
    let page = Landing {
        title: "A secret was shared with you",
        name: l.secret_name,
        expires: when(&l.expires_at),
        uses: views_left(l.uses_left),
        needs_password: l.needs_password,
        error,
        action,
    };
    html(&page)
}

fn revealed_page(s: SharedSecret) -> Response {
    let (uses_line, last) = match s.uses_left {
        Some(n) if n <= 0 => ("That was the last view: this link is now used up and will not open again.".to_owned(), true),
        Some(1) => (format!("This link can be opened 1 more time, until {}.", at(&s.expires_at)), false),
        Some(n) => (format!("This link can be opened {n} more times, until {}.", at(&s.expires_at)), false),
        None => (format!("This link can be opened again until {}.", at(&s.expires_at)), false),
    };
    let page = Revealed { title: "Shared secret", name: s.name, rows: rows(&s.value), value: s.value, uses_line, last };
    html(&page)
}

/// The page for a share that cannot be opened now, or for any failure.
fn state_page(e: &Error) -> Response {
    let (kind, heading, message): (&str, &str, String) = match e {
        Error::NotFound(_) => (
            "missing",
            "This link does not work",
            "There is no shared secret at this address. Check that you opened the whole link; \
             if you did, ask the person who sent it for a new one."
                .into(),
        ),
        Error::ShareExpired => (
            "expired",
            "This link has expired",
            "The secret shared here is no longer available. Ask the person who sent it to share it again.".into(),
        ),
        Error::ShareExhausted => (
            "used",
            "This link has been used up",
            "It has already been opened as many times as it allowed, so the secret is gone from it. \
             Ask the person who sent it for a new link. If you did not open it yourself, tell them: someone else may have."
                .into(),
        ),
        Error::ShareRevoked => (
            "revoked",
            "This link was turned off",
            "The person who shared this secret has withdrawn it. Ask them if you still need it.".into(),
        ),
        Error::ShareLocked { retry_after } => {
            let at = Utc::now() + chrono::Duration::seconds(retry_after.as_secs().max(1) as i64);
            (
                "locked",
                "Too many wrong passwords",
                format!(
                    "To protect the secret, this link is locked for now. Try again {} (after {}).",
                    from_now(at),
                    at.format("%H:%M UTC")
                ),
            )
        }
        Error::IpNotAllowed => (
            "blocked",
            "This link cannot be opened from here",
            "The person who shared it allowed it to be opened only from certain networks, and yours is not one of them. \
             Ask them to allow your network, or open the link from the network they expect."
                .into(),
        ),
        Error::PlanLimitReached(_) => (
            "blocked",
            "This link is not available",
            "The account that shared this secret cannot use share links at the moment. Ask the person who sent it.".into(),
        ),
        Error::InvalidRequest(_) | Error::PayloadTooLarge(_) => (
            "error",
            "Something is wrong with this request",
            "The page could not read what was sent. Open the link again and use its button.".into(),
        ),
        Error::RateLimited { retry_after } => (
            "error",
            "Too many attempts",
            format!(
                "Too many links were tried from your network. Wait {} seconds, then open the link again.",
                retry_after.as_secs().max(1)
            ),
        ),
        // An internal cause was logged where it was made (`Error::internal`).
        _ => ("error", "Something went wrong", "The secret could not be shown just now. Please try again in a moment.".into()),
    };
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (status, html(&StatePage { title: heading, kind, heading, message })).into_response();
    if let Error::ShareLocked { retry_after } | Error::RateLimited { retry_after } = e
        && let Ok(v) = HeaderValue::from_str(&retry_after.as_secs().max(1).to_string())
    {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

fn state_error(state: &ShareState) -> Option<Error> {
    match state {
        ShareState::Active => None,
        ShareState::Expired => Some(Error::ShareExpired),
        ShareState::Exhausted => Some(Error::ShareExhausted),
        ShareState::Revoked => Some(Error::ShareRevoked),
        ShareState::Locked { retry_after_secs } => {
            Some(Error::ShareLocked { retry_after: std::time::Duration::from_secs(*retry_after_secs) })
        }
    }
}

fn plausible(token: &str) -> bool {
    !token.is_empty() && token.len() <= MAX_TOKEN && token.is_ascii()
}

/// What the link shows before anything is revealed. Counts nothing.
async fn landing(State(s): State<AppState>, ctx: Ctx, Path(token): Path<String>, uri: axum::http::Uri) -> Response {
    if let Err(e) = query::<NoQuery>(&uri) {
        return state_page(&e);
    }
    if !plausible(&token) {
        return state_page(&Error::NotFound("share"));
    }
    match s.vault.share_landing(&token, &ctx.origin).await {
        Ok(l) => match state_error(&l.state) {
            None => landing_page(l, uri.path().to_owned(), String::new()),
            Some(e) => state_page(&e),
        },
        Err(e) => state_page(&e),
    }
}

/// The "Reveal" form: one counted access, the value shown once.
async fn reveal(State(s): State<AppState>, ctx: Ctx, Path(token): Path<String>, uri: axum::http::Uri, body: Bytes) -> Response {
    if let Err(e) = query::<NoQuery>(&uri) {
        return state_page(&e);
    }
    if !plausible(&token) {
        return state_page(&Error::NotFound("share"));
    }
    let f: RevealForm = match form(&body) {
        Ok(f) => f,
        Err(e) => return state_page(&e),
    };
    let password = Some(f.password).filter(|p| !p.is_empty());
    match s.vault.access_share(&token, password, ctx.origin.clone()).await {
        Ok(secret) => revealed_page(secret),
        Err(e @ (Error::InvalidPassword | Error::PasswordRequired)) => {
            let error = if matches!(e, Error::InvalidPassword) {
                "That password is not right. Nothing was used up: try again."
            } else {
                "This secret is protected by a password. Enter the password you were given."
            };
            // The share as it is now: a wrong guess may have locked it.
            match s.vault.share_landing(&token, &ctx.origin).await {
                Ok(l) => match state_error(&l.state) {
                    None => {
                        let mut resp = landing_page(l, uri.path().to_owned(), error.into());
                        *resp.status_mut() = StatusCode::UNAUTHORIZED;
                        resp
                    }
                    Some(now) => state_page(&now),
                },
                Err(other) => state_page(&other),
            }
        }
        Err(e) => state_page(&e),
    }
}

async fn script() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], include_str!("../../static/share.js")).into_response()
}

async fn style() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], include_str!("../../static/share.css")).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_plainly() {
        let later = |secs: i64| from_now(Utc::now() + chrono::Duration::seconds(secs));
        assert_eq!(later(-5), "now");
        assert_eq!(later(30), "in about a minute");
        assert_eq!(later(14 * 60 + 10), "in 14 minutes");
        assert_eq!(later(24 * 3600 - 20), "in 24 hours");
        assert_eq!(later(3 * 86_400 + 100), "in 3 days");
        assert!(when("2026-12-07T14:05:00Z").ends_with("(Mon 7 Dec 2026, 14:05 UTC)"), "{}", when("2026-12-07T14:05:00Z"));
        assert_eq!(when("not a time"), "not a time");
        assert_eq!(at("2026-12-07T14:05:00+01:00"), "Mon 7 Dec 2026, 13:05 UTC");
        assert_eq!((rows("short"), rows(&"x".repeat(40)), rows("a\nb\nc"), rows(&"x\n".repeat(100))), (1, 2, 3, 16));
        assert_eq!(views_left(None), "No limit");
        assert_eq!(views_left(Some(1)), "1 view");
        assert_eq!(views_left(Some(3)), "3 views");
    }

    #[test]
    fn no_value_before_the_reveal() {
        let l = ShareLanding {
            state: ShareState::Active,
            needs_password: true,
            secret_name: "DB_<b>".into(),
            expires_at: "2026-12-07T14:05:00Z".into(),
            uses_left: Some(2),
        };
        let page = Landing {
            title: "t",
            name: l.secret_name,
            expires: when(&l.expires_at),
            uses: views_left(l.uses_left),
            needs_password: true,
            error: String::new(),
            action: "/s/shr_x".into(),
        }
        .render()
        .unwrap();
        assert!(page.contains("DB_&#60;b&#62;") || page.contains("DB_&lt;b&gt;"), "escaped: {page}");
        assert!(page.contains("type=\"password\"") && page.contains("Reveal"));
    }
}
