//! The pages for people: `/approvals`, where a tenant's owners sign in (a
//! one-time link or their owner token), see pending requests and decide them,
//! register passkeys, add owners, and change the policy and tiers; and
//! `/s/{token}` (`share`), where the person a share link was sent to reveals
//! the secret; and `/requests/{id}` (`requests`), where an owner supplies a
//! value an agent asked for.
//! Server-rendered (askama templates in `templates/`), plain forms that work
//! without JavaScript; the one script (`static/approvals.js`) runs only the
//! WebAuthn ceremonies. Handlers call the same vault functions as REST.
//!
//! Every answer carries a strict `Content-Security-Policy`, `no-store`,
//! `no-referrer` and `DENY` framing; the session cookie is `HttpOnly`,
//! `SameSite=Strict`, `Secure` over https; every form and script call carries
//! the session's CSRF token, checked here. Not in the OpenAPI document: these
//! are pages, not API.

mod bridge;
mod requests;
mod share;

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::crypto::tokens;
use crate::edge::origin_of;
use crate::error::{Error, Result};
use crate::rest::AppState;
use crate::vault::owners::{NewSession, PageCaller};
use crate::vault::{Front, Origin, Vault};

const COOKIE: &str = "lk_session";
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; \
frame-ancestors 'none'; base-uri 'none'; connect-src 'self'";

/// One approval request as the page shows it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Item {
    pub id: String,
    pub status: String,
    pub tier: String,
    /// The secret's path, or a token request's scopes.
    pub what: String,
    pub requester: String,
    pub secret_name: String,
    pub secret_path: String,
    pub reason: String,
    pub ip: String,
    pub age: String,
    pub outcome: String,
    pub pending: bool,
    /// Deciding it needs a passkey confirmation (critical, passkeys enrolled).
    pub strong: bool,
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/approvals", get(dashboard))
        .route("/approvals/", get(dashboard))
        .route("/approvals/signin", get(signin_page).post(signin_with_token))
        .route("/approvals/signin/{token}", get(signin_link_page).post(signin_with_link))
        .route("/approvals/setup/{token}", get(setup_page).post(setup_with_link))
        .route("/approvals/signout", post(signout))
        .route("/approvals/owners", post(add_owner))
        .route("/approvals/policy", post(set_policy))
        .route("/approvals/tier", post(set_tier))
        .route("/approvals/exposure", post(set_exposure))
        .route("/approvals/webauthn/assert", post(start_assertion))
        .route("/approvals/passkeys/start", post(start_registration))
        .route("/approvals/passkeys/finish", post(finish_registration))
        .route("/approvals/{id}", get(one))
        .route("/approvals/{id}/approve", post(approve))
        .route("/approvals/{id}/deny", post(deny))
        .route("/static/approvals.js", get(script))
        .route("/static/approvals.css", get(style))
        .merge(share::routes())
        .merge(requests::routes())
        .layer(SetResponseHeaderLayer::overriding(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP)))
        .layer(SetResponseHeaderLayer::overriding(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")))
        .layer(SetResponseHeaderLayer::overriding(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
}

/// What every page request brings: where it came from and its session cookie.
struct Ctx {
    origin: Origin,
    cookie: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for Ctx {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> std::result::Result<Self, Self::Rejection> {
        Ok(Ctx { origin: origin_of(parts, Front::Page), cookie: session_cookie(&parts.headers) })
    }
}

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_owned())
        .filter(|v| !v.is_empty() && v.len() < 200)
}

impl Ctx {
    async fn caller(&self, vault: &Vault) -> Result<PageCaller> {
        match &self.cookie {
            Some(c) => vault.page_caller(c, self.origin.clone()).await,
            None => Err(Error::Unauthorized("not signed in".into())),
        }
    }
}

/// A page's failure, rendered as a page with the error's status.
struct PageError(Error);

impl From<Error> for PageError {
    fn from(e: Error) -> Self {
        PageError(e)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        // An internal cause was logged where it was made (`Error::internal`).
        let e = self.0;
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let page = Message { title: "Not done", tone: "notice bad", message: e.to_string(), next: "/approvals".into(), csrf: "", who: "" };
        (status, html(&page)).into_response()
    }
}

type PageResult = std::result::Result<Response, PageError>;

fn html(t: &impl Template) -> Response {
    match t.render() {
        Ok(body) => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

fn set_cookie(vault: &Vault, value: &str, max_age: i64) -> HeaderValue {
    let secure = if vault.site().secure { "; Secure" } else { "" };
    let v = format!("{COOKIE}={value}; Path=/approvals; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}");
    HeaderValue::from_str(&v).expect("cookie text is ASCII")
}

/// Where to go after signing in: only a path of these pages, never elsewhere.
fn safe_next(next: &str) -> String {
    let ok = next.starts_with("/approvals") && !next.contains("//") && !next.contains('\\') && next.is_ascii();
    if ok { next.to_owned() } else { "/approvals".to_owned() }
}

fn signed_in(vault: &Vault, session: NewSession, next: &str) -> Response {
    let mut resp = Redirect::to(&safe_next(next)).into_response();
    resp.headers_mut().insert(header::SET_COOKIE, set_cookie(vault, &session.cookie, 12 * 3600));
    resp
}

fn form<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T> {
    serde_urlencoded::from_bytes(body).map_err(|e| Error::InvalidRequest(format!("form: {e}")))
}

fn check_csrf(caller: &PageCaller, sent: &str) -> Result<()> {
    if !sent.is_empty() && tokens::hashes_match(sent.as_bytes(), caller.session.csrf.as_bytes()) {
        Ok(())
    } else {
        Err(Error::ScopeDenied("this form is stale or was not sent by this page (CSRF check failed): reload and try again".into()))
    }
}

/// The caller of a form POST: signed in, with the session's CSRF token; and,
/// when the form carries an assertion made for `purpose`, with a fresh passkey.
async fn form_caller(vault: &Vault, ctx: &Ctx, csrf: &str, purpose: Option<&str>, assertion: &str) -> Result<PageCaller> {
    let caller = ctx.caller(vault).await?;
    check_csrf(&caller, csrf)?;
    match purpose {
        Some(purpose) if !assertion.is_empty() => vault.finish_assertion(&caller, purpose, assertion).await,
        _ => Ok(caller),
    }
}

#[derive(Template)]
#[template(path = "message.html")]
struct Message<'a> {
    title: &'a str,
    tone: &'a str,
    message: String,
    next: String,
    csrf: &'a str,
    who: &'a str,
}

#[derive(Template)]
#[template(path = "signin.html")]
struct SignIn<'a> {
    title: &'a str,
    next: String,
    csrf: &'a str,
    who: &'a str,
}

#[derive(Template)]
#[template(path = "link.html")]
struct LinkPage<'a> {
    title: &'a str,
    setup: bool,
    tenant: String,
    action: String,
    csrf: &'a str,
    who: &'a str,
}

#[derive(Template)]
#[template(path = "created.html")]
struct Created<'a> {
    title: &'a str,
    message: String,
    link: String,
    token: String,
    csrf: &'a str,
    who: &'a str,
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct Dashboard<'a> {
    title: &'a str,
    csrf: &'a str,
    who: &'a str,
    notice: String,
    notice_tone: &'a str,
    passkeys_enrolled: bool,
    pending: Vec<Item>,
    decided: Vec<Item>,
    my_passkeys: Vec<String>,
    owners: Vec<String>,
    gate_sensitive: bool,
    gated_secrets: Vec<(String, String)>,
    hidden_secrets: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "approval.html")]
struct One<'a> {
    title: &'a str,
    csrf: &'a str,
    who: &'a str,
    notice: String,
    notice_tone: &'a str,
    a: Item,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NoticeQuery {
    done: Option<String>,
}

fn notice(q: &NoticeQuery) -> (String, &'static str) {
    match q.done.as_deref() {
        Some("approved") => ("Approved.".into(), "good"),
        Some("denied") => ("Denied.".into(), "good"),
        Some("policy") => ("Policy saved.".into(), "good"),
        Some("tier") => ("Tier changed.".into(), "good"),
        Some("exposure") => ("Exposure changed.".into(), "good"),
        _ => (String::new(), ""),
    }
}

fn query<T: serde::de::DeserializeOwned + Default>(uri: &axum::http::Uri) -> Result<T> {
    match uri.query() {
        None => Ok(T::default()),
        Some(q) => serde_urlencoded::from_str(q).map_err(|e| Error::InvalidRequest(format!("query: {e}"))),
    }
}

fn to_signin(next: &str) -> Response {
    let q = serde_urlencoded::to_string([("next", next)]).unwrap_or_default();
    Redirect::to(&format!("/approvals/signin?{q}")).into_response()
}

async fn dashboard(State(s): State<AppState>, ctx: Ctx, uri: axum::http::Uri) -> PageResult {
    let q: NoticeQuery = query(&uri)?;
    let caller = match ctx.caller(&s.vault).await {
        Ok(c) => c,
        Err(Error::Unauthorized(_)) => return Ok(to_signin("/approvals")),
        Err(e) => return Err(e.into()),
    };
    let p = &caller.principal;
    let vault = &s.vault;
    let owners = vault.list_owners(p).await?;
    let names = owners.iter().map(|o| (o.id.clone(), o.name.clone())).collect();
    let all = bridge::items(vault, p, None, &names).await?;
    let (pending, decided): (Vec<Item>, Vec<Item>) = all.into_iter().partition(|a| a.pending);
    let me = owners.iter().find(|o| o.id == p.key_id);
    let (notice, notice_tone) = notice(&q);
    let (gated_secrets, hidden_secrets) = bridge::protected_secrets(vault, p).await?;
    let page = Dashboard {
        title: "Approvals",
        csrf: &caller.session.csrf,
        who: &caller.owner_name,
        notice,
        notice_tone,
        passkeys_enrolled: p.human.as_ref().is_some_and(|h| h.passkeys_enrolled),
        pending,
        decided: decided.into_iter().take(25).collect(),
        my_passkeys: me.map(|o| o.passkeys.clone()).unwrap_or_default(),
        owners: owners
            .iter()
            .map(|o| format!("{} ({} passkey{})", o.name, o.passkeys.len(), if o.passkeys.len() == 1 { "" } else { "s" }))
            .collect(),
        gate_sensitive: bridge::gate_sensitive(vault, p).await?,
        gated_secrets,
        hidden_secrets,
    };
    Ok(html(&page))
}

async fn one(State(s): State<AppState>, ctx: Ctx, Path(id): Path<String>, uri: axum::http::Uri) -> PageResult {
    let q: NoticeQuery = query(&uri)?;
    let caller = match ctx.caller(&s.vault).await {
        Ok(c) => c,
        Err(Error::Unauthorized(_)) => return Ok(to_signin(&format!("/approvals/{}", urlencode(&id)))),
        Err(e) => return Err(e.into()),
    };
    let a = bridge::item_of(&s.vault, &caller.principal, &id).await?;
    let (notice, notice_tone) = notice(&q);
    Ok(html(&One { title: "Request", csrf: &caller.session.csrf, who: &caller.owner_name, notice, notice_tone, a }))
}

fn urlencode(s: &str) -> String {
    s.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect()
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NextQuery {
    next: Option<String>,
}

async fn signin_page(State(s): State<AppState>, ctx: Ctx, uri: axum::http::Uri) -> PageResult {
    let q: NextQuery = query(&uri)?;
    let next = safe_next(q.next.as_deref().unwrap_or(""));
    if ctx.caller(&s.vault).await.is_ok() {
        return Ok(Redirect::to(&next).into_response());
    }
    Ok(html(&SignIn { title: "Sign in", next, csrf: "", who: "" }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenForm {
    token: String,
    #[serde(default)]
    next: String,
}

async fn signin_with_token(State(s): State<AppState>, ctx: Ctx, body: Bytes) -> PageResult {
    let f: TokenForm = form(&body)?;
    if !f.token.trim().starts_with(crate::vault::owners::OWNER_TOKEN_PREFIX) {
        return Err(Error::Unauthorized("that is not an owner token (they begin with lko_); API keys cannot sign in here".into()).into());
    }
    let session = s.vault.sign_in_with_token(&f.token, ctx.origin).await?;
    Ok(signed_in(&s.vault, session, &f.next))
}

async fn signin_link_page(Path(_token): Path<String>, uri: axum::http::Uri) -> PageResult {
    // A GET never uses the link: previews and prefetches must not spend it.
    let action = uri.path().to_owned();
    Ok(html(&LinkPage { title: "Sign in", setup: false, tenant: String::new(), action, csrf: "", who: "" }))
}

async fn signin_with_link(State(s): State<AppState>, ctx: Ctx, Path(token): Path<String>) -> PageResult {
    let session = s.vault.sign_in_with_link(&token, "signin", None, ctx.origin).await?;
    Ok(signed_in(&s.vault, session, "/approvals"))
}

async fn setup_page(Path(_token): Path<String>, uri: axum::http::Uri) -> PageResult {
    let action = uri.path().to_owned();
    Ok(html(&LinkPage { title: "Become owner", setup: true, tenant: "this tenant".into(), action, csrf: "", who: "" }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NameForm {
    name: String,
}

async fn setup_with_link(State(s): State<AppState>, ctx: Ctx, Path(token): Path<String>, body: Bytes) -> PageResult {
    let f: NameForm = form(&body)?;
    let session = s.vault.sign_in_with_link(&token, "setup", Some(&f.name), ctx.origin).await?;
    let cookie = set_cookie(&s.vault, &session.cookie, 12 * 3600);
    let page = Created {
        title: "You are an owner",
        message: format!("Welcome, {}. You are now an owner of this tenant and signed in on this browser.", f.name.trim()),
        link: String::new(),
        token: session.owner_token.unwrap_or_default(),
        csrf: "",
        who: "",
    };
    let mut resp = html(&page);
    resp.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(resp)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn signout(State(s): State<AppState>, ctx: Ctx, body: Bytes) -> PageResult {
    let f: CsrfForm = form(&body)?;
    let caller = form_caller(&s.vault, &ctx, &f.csrf, None, "").await?;
    s.vault.sign_out(&caller).await?;
    let mut resp = Redirect::to("/approvals/signin").into_response();
    resp.headers_mut().insert(header::SET_COOKIE, set_cookie(&s.vault, "", 0));
    Ok(resp)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OwnerForm {
    #[serde(default)]
    csrf: String,
    name: String,
}

async fn add_owner(State(s): State<AppState>, ctx: Ctx, body: Bytes) -> PageResult {
    let f: OwnerForm = form(&body)?;
    let caller = form_caller(&s.vault, &ctx, &f.csrf, None, "").await?;
    let owner = s.vault.add_owner(&caller.principal, &f.name).await?;
    let page = Created {
        title: "Owner added",
        message: format!("Give {} the sign-in link (it works once, for 24 hours) or the token, by a channel no agent reads.", owner.name),
        link: owner.signin_url,
        token: owner.token,
        csrf: &caller.session.csrf,
        who: &caller.owner_name,
    };
    Ok(html(&page))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApproveForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    assertion: String,
    #[serde(default)]
    ttl: String,
    uses: Option<u32>,
}

async fn approve(State(s): State<AppState>, ctx: Ctx, Path(id): Path<String>, body: Bytes) -> PageResult {
    let f: ApproveForm = form(&body)?;
    let caller = form_caller(&s.vault, &ctx, &f.csrf, Some(&format!("approve:{id}")), &f.assertion).await?;
    let ttl = if f.ttl.is_empty() { "15m" } else { &f.ttl };
    bridge::approve(&s.vault, &caller.principal, &id, ttl, f.uses.unwrap_or(1)).await?;
    Ok(Redirect::to(&format!("/approvals/{}?done=approved", urlencode(&id))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DenyForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    assertion: String,
    reason: String,
}

async fn deny(State(s): State<AppState>, ctx: Ctx, Path(id): Path<String>, body: Bytes) -> PageResult {
    let f: DenyForm = form(&body)?;
    let caller = form_caller(&s.vault, &ctx, &f.csrf, Some(&format!("deny:{id}")), &f.assertion).await?;
    bridge::deny(&s.vault, &caller.principal, &id, &f.reason).await?;
    Ok(Redirect::to(&format!("/approvals/{}?done=denied", urlencode(&id))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    assertion: String,
    sensitive: Option<String>,
}

async fn set_policy(State(s): State<AppState>, ctx: Ctx, body: Bytes) -> PageResult {
    let f: PolicyForm = form(&body)?;
    let caller = form_caller(&s.vault, &ctx, &f.csrf, Some("policy"), &f.assertion).await?;
    bridge::set_gate_sensitive(&s.vault, &caller.principal, f.sensitive.is_some()).await?;
    Ok(Redirect::to("/approvals?done=policy").into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TierForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    assertion: String,
    secret: String,
    tier: String,
}

async fn set_tier(State(s): State<AppState>, ctx: Ctx, body: Bytes) -> PageResult {
    let f: TierForm = form(&body)?;
    let caller = form_caller(&s.vault, &ctx, &f.csrf, Some("tier"), &f.assertion).await?;
    bridge::set_tier(&s.vault, &caller.principal, &f.secret, &f.tier).await?;
    Ok(Redirect::to("/approvals?done=tier").into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExposureForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    assertion: String,
    secret: String,
    exposure: String,
}

/// Loosening a secret's exposure: an owner's action, confirmed with a passkey
/// once the tenant has one, like lowering a tier.
async fn set_exposure(State(s): State<AppState>, ctx: Ctx, body: Bytes) -> PageResult {
    let f: ExposureForm = form(&body)?;
    let caller = form_caller(&s.vault, &ctx, &f.csrf, Some("exposure"), &f.assertion).await?;
    bridge::set_exposure(&s.vault, &caller.principal, &f.secret, &f.exposure).await?;
    Ok(Redirect::to("/approvals?done=exposure").into_response())
}

/// The JSON calls of the script answer in the API's error shape.
async fn script_caller(vault: &Vault, ctx: &Ctx, headers: &HeaderMap) -> Result<PageCaller> {
    let caller = ctx.caller(vault).await?;
    let sent = headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).unwrap_or("");
    check_csrf(&caller, sent)?;
    Ok(caller)
}

fn json_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| Error::InvalidRequest(format!("invalid JSON body: {e}")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AssertStart {
    purpose: String,
}

async fn start_assertion(State(s): State<AppState>, ctx: Ctx, headers: HeaderMap, body: Bytes) -> Result<Response> {
    let caller = script_caller(&s.vault, &ctx, &headers).await?;
    let req: AssertStart = json_body(&body)?;
    Ok(axum::Json(s.vault.start_assertion(&caller, &req.purpose).await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterStart {
    assertion: Option<String>,
}

async fn start_registration(State(s): State<AppState>, ctx: Ctx, headers: HeaderMap, body: Bytes) -> Result<Response> {
    let mut caller = script_caller(&s.vault, &ctx, &headers).await?;
    let req: RegisterStart = json_body(&body)?;
    if let Some(a) = req.assertion.filter(|a| !a.is_empty()) {
        caller = s.vault.finish_assertion(&caller, crate::vault::owners::REGISTER_PURPOSE, &a).await?;
    }
    Ok(axum::Json(s.vault.start_passkey_registration(&caller).await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterFinish {
    credential: serde_json::Value,
    #[serde(default)]
    name: String,
}

async fn finish_registration(State(s): State<AppState>, ctx: Ctx, headers: HeaderMap, body: Bytes) -> Result<Response> {
    let caller = script_caller(&s.vault, &ctx, &headers).await?;
    let req: RegisterFinish = json_body(&body)?;
    s.vault.finish_passkey_registration(&caller, req.credential, &req.name).await?;
    Ok(axum::Json(serde_json::json!({ "registered": true })).into_response())
}

async fn script() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], include_str!("../../static/approvals.js")).into_response()
}

async fn style() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], include_str!("../../static/approvals.css")).into_response()
}
