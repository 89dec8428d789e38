//! Secret requests, as an agent and its human use them: the agent asks for
//! a value it needs (REST and MCP), the owner opens the page, signs in and
//! pastes it; the agent's status poll then shows the secret's id and name,
//! never the value; the value is in the vault (checked by `verify`, the
//! secret being `use_only`), and in no later page, redirect, answer, audit
//! entry or log line. Fulfilled, cancelled and expired requests refuse
//! another value with their codes; an existing name gets a new version;
//! `obtainUrl` must be http(s). Over stdio, a client that declared URL-mode
//! elicitation is asked to open the page. On SQLite and PostgreSQL, through
//! the real server. (The browser story is `tests/request_page.rs`.)

mod common;

use common::mcp_client::{connect as mcp_client, tool};
use common::{Backend, Server, unique};
use serde_json::{Value, json};

const REQUESTS: &str = "/api/v1/secret-requests";

fn code(b: &Value) -> &str {
    b["code"].as_str().unwrap_or_default()
}

fn page_base(srv: &Server) -> String {
    srv.base.replace("127.0.0.1", "localhost")
}

fn web() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" content=\"").expect("a CSRF meta tag") + "name=\"csrf\" content=\"".len();
    html[at..].split('"').next().unwrap().to_owned()
}

/// A tenant, its agent's admin key, and a signed-in owner's session cookie
/// (the agent's signup hands its human the setup link).
async fn tenant_with_owner(srv: &Server) -> (String, String) {
    let (s, signup) = srv.call("POST", "/api/signup", None, Some(json!({ "tenantId": unique("req") }))).await;
    assert_eq!(s, 201, "{signup}");
    let key = signup["apiKey"].as_str().unwrap().to_owned();
    let setup = signup["ownerSetupUrl"].as_str().unwrap().to_owned();
    let resp = web().post(&setup).form(&[("name", "Ann")]).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let raw = resp.headers()["set-cookie"].to_str().unwrap().to_owned();
    let cookie = raw.split(';').next().unwrap().to_owned();
    (key, cookie)
}

/// GETs a page with the owner's cookie: (status, location, body).
async fn page(srv: &Server, cookie: &str, path: &str) -> (u16, String, String) {
    let resp = web().get(format!("{}{path}", page_base(srv))).header("cookie", cookie).send().await.unwrap();
    let status = resp.status().as_u16();
    let location = resp.headers().get("location").map(|l| l.to_str().unwrap().to_owned()).unwrap_or_default();
    (status, location, resp.text().await.unwrap())
}

/// The owner pastes `value` on the request's page: (status, location, body).
async fn fulfil(srv: &Server, cookie: &str, id: &str, value: &str) -> (u16, String, String) {
    let (s, _, html) = page(srv, cookie, &format!("/approvals/requests/{id}")).await;
    assert_eq!(s, 200, "{html}");
    let csrf = csrf_of(&html);
    let resp = web()
        .post(format!("{}/approvals/requests/{id}", page_base(srv)))
        .header("cookie", cookie)
        .form(&[("csrf", csrf.as_str()), ("assertion", ""), ("value", value)])
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let location = resp.headers().get("location").map(|l| l.to_str().unwrap().to_owned()).unwrap_or_default();
    (status, location, resp.text().await.unwrap())
}

async fn request(srv: &Server, key: &str, body: Value) -> Value {
    let (s, b) = srv.post(REQUESTS, key, body).await;
    assert_eq!(s, 201, "{b}");
    b
}

async fn story(backend: Backend) {
    let srv = Server::start(backend).await;
    let (agent, owner) = tenant_with_owner(&srv).await;
    let value = format!("sk_live_{}", uuid::Uuid::new_v4().simple());

    // The agent asks; the answer is the page's URL and a pending request.
    let made = request(
        &srv,
        &agent,
        json!({
            "name": "STRIPE_KEY", "reason": "charge the test customer", "environment": "production",
            "instructions": "Dashboard → Developers → API keys → reveal the secret key",
            "obtainUrl": "https://dashboard.stripe.com/apikeys",
        }),
    )
    .await;
    let id = made["id"].as_str().unwrap().to_owned();
    assert_eq!(made["status"], "pending", "{made}");
    assert_eq!(made["exposure"], "use_only", "the default: {made}");
    assert_eq!(made["requestUrl"], format!("{}/requests/{id}", page_base(&srv)), "{made}");
    assert!(made["secretId"].is_null(), "{made}");

    for bad in [
        json!({ "name": "X", "reason": "r", "obtainUrl": "javascript:alert(1)" }),
        json!({ "name": "X", "reason": "r", "obtainUrl": "data:text/html,hi" }),
        json!({ "name": "X", "reason": "r", "exposure": "loud" }),
        json!({ "name": "bad name", "reason": "r" }),
        json!({ "name": "X", "reason": "  " }),
        json!({ "name": "X", "reason": "r", "expiresInMinutes": 0 }),
        json!({ "name": "X", "reason": "r", "value": "no values here" }),
    ] {
        let (s, b) = srv.post(REQUESTS, &agent, bad.clone()).await;
        assert_eq!((s, code(&b)), (400, "INVALID_REQUEST"), "{bad}: {b}");
    }

    let (s, listed) = srv.get(&format!("{REQUESTS}?status=pending"), &agent).await;
    assert_eq!((s, listed["count"].as_u64()), (200, Some(1)), "{listed}");
    let (s, one) = srv.get(&format!("{REQUESTS}/{id}"), &agent).await;
    assert_eq!((s, one["status"].as_str()), (200, Some("pending")), "{one}");
    let (s, other) = srv.get(&format!("{REQUESTS}/{}", uuid::Uuid::new_v4()), &agent).await;
    assert_eq!((s, code(&other)), (404, "NOT_FOUND"), "{other}");

    // Not signed in: /requests/{id} leads to the sign-in page, which comes back here.
    let (s, location, _) = page(&srv, "", &format!("/requests/{id}")).await;
    assert_eq!((s, location.as_str()), (303, format!("/approvals/requests/{id}").as_str()));
    let (s, location, _) = page(&srv, "", &format!("/approvals/requests/{id}")).await;
    assert_eq!(s, 303);
    assert_eq!(location, format!("/approvals/signin?next=%2Fapprovals%2Frequests%2F{id}"));
    // An agent's key is no owner: it cannot fill the form (no session, no CSRF).
    let resp = web()
        .post(format!("{}/approvals/requests/{id}", page_base(&srv)))
        .bearer_auth(&agent)
        .form(&[("csrf", "x"), ("value", "planted")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    // The owner sees what is asked, and a password field.
    let (s, _, html) = page(&srv, &owner, &format!("/approvals/requests/{id}")).await;
    assert_eq!(s, 200, "{html}");
    for needle in ["STRIPE_KEY", "charge the test customer", "Developers → API keys", "https://dashboard.stripe.com/apikeys", "use_only"]
    {
        assert!(html.contains(needle), "{needle} on the page: {html}");
    }
    assert!(html.contains("type=\"password\" name=\"value\""), "{html}");
    // A stale form is refused, and stores nothing.
    let resp = web()
        .post(format!("{}/approvals/requests/{id}", page_base(&srv)))
        .header("cookie", &owner)
        .form(&[("csrf", "forged"), ("value", "planted")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);

    // The owner pastes the value: a redirect without it, a page without it.
    let (s, location, _) = fulfil(&srv, &owner, &id, &value).await;
    assert_eq!((s, location.as_str()), (303, format!("/approvals/requests/{id}?done=fulfilled").as_str()));
    let (s, _, html) = page(&srv, &owner, &location).await;
    assert_eq!(s, 200);
    assert!(html.contains("Stored.") && html.contains("fulfilled") && !html.contains("name=\"value\""), "{html}");
    assert!(!html.contains(&value), "the value on the page");

    // The agent's poll: fulfilled, with the secret's id and name, never the value.
    let (s, done) = srv.get(&format!("{REQUESTS}/{id}"), &agent).await;
    assert_eq!((s, done["status"].as_str()), (200, Some("fulfilled")), "{done}");
    let secret = done["secretId"].as_str().expect("secretId").to_owned();
    assert!(!done.to_string().contains(&value));
    assert!(html.contains(&secret), "the page names the secret");
    let (s, meta) = srv.get("/api/v1/secrets?environment=production", &agent).await;
    assert_eq!(s, 200, "{meta}");
    assert!(meta.to_string().contains(&secret) && meta.to_string().contains("STRIPE_KEY"), "{meta}");
    // use_only: no read answers it; verify says it is the value.
    let (s, read) = srv.get(&format!("/api/v1/secrets/{secret}"), &agent).await;
    assert_eq!((s, code(&read)), (403, "EXPOSURE_DENIED"), "{read}");
    let (s, v) = srv.post(&format!("/api/v1/secrets/{secret}/verify"), &agent, json!({ "candidate": value })).await;
    assert_eq!((s, &v["match"]), (200, &json!(true)), "{v}");

    // Once only: a second value, a cancel of a fulfilled request.
    let (s, _, html) = fulfil(&srv, &owner, &id, "second-value").await;
    assert_eq!(s, 409, "REQUEST_FULFILLED: {html}");
    assert!(html.contains("already fulfilled") && !html.contains("second-value"), "{html}");
    let (s, b) = srv.delete(&format!("{REQUESTS}/{id}"), &agent).await;
    assert_eq!((s, code(&b)), (409, "REQUEST_FULFILLED"), "{b}");

    // A request for a name that exists: a new version of that secret.
    let again = request(&srv, &agent, json!({ "name": "STRIPE_KEY", "reason": "rotated", "environment": "production" })).await;
    let again_id = again["id"].as_str().unwrap().to_owned();
    let rotated = format!("{value}-rotated");
    let (s, _, html) = fulfil(&srv, &owner, &again_id, &rotated).await;
    assert_eq!(s, 303, "{html}");
    let (_, done) = srv.get(&format!("{REQUESTS}/{again_id}"), &agent).await;
    assert_eq!(done["secretId"], secret.as_str(), "the same secret: {done}");
    let (s, versions) = srv.get(&format!("/api/v1/secrets/{secret}/versions"), &agent).await;
    assert_eq!(s, 200, "{versions}");
    assert_eq!(versions["currentVersion"], 2, "{versions}");

    // Cancelled: the page says so and takes nothing.
    let gone = request(&srv, &agent, json!({ "name": "CANCELLED_ONE", "reason": "not needed after all" })).await;
    let gone_id = gone["id"].as_str().unwrap();
    let (s, b) = srv.delete(&format!("{REQUESTS}/{gone_id}"), &agent).await;
    assert_eq!((s, b["status"].as_str()), (200, Some("cancelled")), "{b}");
    let (s, b) = srv.delete(&format!("{REQUESTS}/{gone_id}"), &agent).await;
    assert_eq!((s, code(&b)), (410, "REQUEST_CANCELLED"), "{b}");
    let (s, _, html) = page(&srv, &owner, &format!("/approvals/requests/{gone_id}")).await;
    assert!(s == 200 && html.contains("was cancelled") && !html.contains("name=\"value\""), "{html}");

    // Expired: past its time, it reads expired and takes nothing.
    let old = request(&srv, &agent, json!({ "name": "LATE_ONE", "reason": "too late", "expiresInMinutes": 5 })).await;
    let old_id = old["id"].as_str().unwrap().to_owned();
    assert_eq!(srv.sql("UPDATE secret_requests SET expires_at = 1 WHERE id = $1", &[&old_id]).await, 1);
    let (_, b) = srv.get(&format!("{REQUESTS}/{old_id}"), &agent).await;
    assert_eq!(b["status"], "expired", "{b}");
    let (s, _, html) = page(&srv, &owner, &format!("/approvals/requests/{old_id}")).await;
    assert!(s == 200 && html.contains("expired") && !html.contains("name=\"value\""), "{html}");
    let (s, b) = srv.delete(&format!("{REQUESTS}/{old_id}"), &agent).await;
    assert_eq!((s, code(&b)), (410, "REQUEST_EXPIRED"), "{b}");

    // The trail: asked, stored by the owner, fulfilled; never the value.
    let (s, audit) = srv.get("/api/v1/audit?limit=500", &agent).await;
    assert_eq!(s, 200, "{audit}");
    let logs = audit["logs"].as_array().unwrap();
    let has = |action: &str| logs.iter().any(|e| e["action"] == action && e["outcome"] == "success");
    assert!(has("request.create") && has("request.fulfil") && has("request.cancel") && has("secret.create"), "{audit}");
    let fulfilled = logs
        .iter()
        .find(|e| e["action"] == "request.fulfil" && e["resourceId"] == id.as_str() && e["outcome"] == "success")
        .expect("request.fulfil");
    assert_eq!(fulfilled["resourceType"], "secret_request");
    assert_eq!(fulfilled["detail"]["secretId"], secret.as_str(), "{fulfilled}");
    let text = audit.to_string();
    assert!(!text.contains(&value) && !text.contains("planted"), "a value in the trail");
    let log = srv.stderr();
    assert!(!log.contains(&value) && !log.contains("planted"), "a value in the log");
}

#[tokio::test]
async fn an_owner_fills_a_request_the_agent_never_sees_on_sqlite() {
    story(Backend::Sqlite).await;
}

#[tokio::test]
async fn an_owner_fills_a_request_the_agent_never_sees_on_postgres() {
    story(Backend::Postgres).await;
}

/// `request_secret` and `request_status` over MCP (HTTP): no elicitation
/// there (a stateless request has no session to ask on), so the answer says
/// `unsupported` and carries the URL to show.
async fn over_mcp(backend: Backend) {
    let srv = Server::start(backend).await;
    let (agent, owner) = tenant_with_owner(&srv).await;
    let mcp = mcp_client(&srv, &agent).await;
    let made = tool(&mcp, "request_secret", json!({ "name": "OPENAI_KEY", "reason": "summarise the tickets", "exposure": "masked" }))
        .await
        .expect("request_secret");
    assert_eq!(made["elicitation"], "unsupported", "{made}");
    assert_eq!(made["exposure"], "masked");
    let id = made["id"].as_str().unwrap().to_owned();
    assert!(made["requestUrl"].as_str().unwrap().ends_with(&format!("/requests/{id}")), "{made}");
    let status = tool(&mcp, "request_status", json!({ "id": id })).await.unwrap();
    assert_eq!(status["status"], "pending");
    let value = format!("sk-{}", uuid::Uuid::new_v4().simple());
    assert_eq!(fulfil(&srv, &owner, &id, &value).await.0, 303);
    let status = tool(&mcp, "request_status", json!({ "id": id })).await.unwrap();
    assert_eq!(status["status"], "fulfilled", "{status}");
    assert!(status["secretId"].is_string() && !status.to_string().contains(&value), "{status}");
    assert_eq!(tool(&mcp, "request_status", json!({ "id": "nope" })).await.unwrap_err(), "NOT_FOUND");
    assert_eq!(
        tool(&mcp, "request_secret", json!({ "name": "X", "reason": "r", "obtainUrl": "ftp://x" })).await.unwrap_err(),
        "INVALID_REQUEST"
    );
}

#[tokio::test]
async fn request_tools_over_mcp_on_sqlite() {
    over_mcp(Backend::Sqlite).await;
}

#[tokio::test]
async fn request_tools_over_mcp_on_postgres() {
    over_mcp(Backend::Postgres).await;
}

mod elicitation {
    //! `latchkey mcp` (stdio) with rmcp's client declaring URL-mode
    //! elicitation (protocol 2025-11-25): `request_secret` sends
    //! `elicitation/create` with the page's URL and reports the answer.

    use std::sync::{Arc, Mutex};

    use rmcp::model::{
        CallToolRequestParams, ClientCapabilities, ClientConfig, ElicitRequestParams, ElicitResult, ElicitationAction,
        ElicitationCapability, Implementation, ProtocolVersion, UrlElicitationCapability,
    };
    use rmcp::service::RequestContext;
    use rmcp::{ClientHandler, ErrorData, RoleClient, ServiceExt};
    use serde_json::json;

    #[derive(Clone, Default)]
    struct Opens {
        seen: Arc<Mutex<Vec<(String, String, String)>>>,
        url_mode: bool,
    }

    impl ClientHandler for Opens {
        fn get_info(&self) -> ClientConfig {
            let mut caps = ClientCapabilities::default();
            if self.url_mode {
                caps.elicitation = Some(ElicitationCapability::new().with_url(UrlElicitationCapability::new()));
            }
            ClientConfig::new(caps, Implementation::new("elicit-test", "1")).with_protocol_version(ProtocolVersion::V_2025_11_25)
        }

        async fn create_elicitation(&self, request: ElicitRequestParams, _: RequestContext<RoleClient>) -> Result<ElicitResult, ErrorData> {
            if let ElicitRequestParams::UrlElicitationParams { url, elicitation_id, message, .. } = request {
                self.seen.lock().unwrap().push((url, elicitation_id, message));
                return Ok(ElicitResult::new(ElicitationAction::Accept));
            }
            Ok(ElicitResult::new(ElicitationAction::Decline))
        }
    }

    async fn call(url_mode: bool) -> (serde_json::Value, Vec<(String, String, String)>) {
        let dir = tempfile::tempdir().unwrap();
        let cmd = tokio::process::Command::from(super::common::mcp_stdio(dir.path()));
        let transport = rmcp::transport::TokioChildProcess::new(cmd).expect("spawn latchkey mcp");
        let client = Opens { url_mode, ..Default::default() };
        let seen = client.seen.clone();
        let running = client.serve(transport).await.expect("MCP handshake");
        let args = json!({ "name": "GITHUB_TOKEN", "reason": "open the release PR" });
        let params = CallToolRequestParams::new("request_secret").with_arguments(args.as_object().unwrap().clone());
        let r = running.call_tool(params).await.expect("request_secret");
        assert_ne!(r.is_error, Some(true), "{r:?}");
        let out = r.structured_content.expect("structured");
        let _ = running.cancel().await;
        let seen = seen.lock().unwrap().clone();
        (out, seen)
    }

    #[tokio::test]
    async fn a_client_with_url_elicitation_is_asked_to_open_the_page() {
        let (made, seen) = call(true).await;
        assert_eq!(made["elicitation"], "accepted", "{made}");
        assert_eq!(seen.len(), 1, "{seen:?}");
        let (url, elicitation_id, message) = &seen[0];
        assert_eq!(url, made["requestUrl"].as_str().unwrap());
        assert_eq!(elicitation_id, made["id"].as_str().unwrap());
        assert!(message.contains("GITHUB_TOKEN") && message.contains("open the release PR"), "{message}");
    }

    #[tokio::test]
    async fn a_client_without_it_is_not_asked() {
        let (made, seen) = call(false).await;
        assert_eq!(made["elicitation"], "unsupported", "{made}");
        assert!(seen.is_empty());
    }
}
