//! The approval page and its owners, told as the owner's story through the
//! real server and CLI, on SQLite and PostgreSQL: the operator adds an owner
//! (`latchkey owner add`), an agent's signup hands its human a setup link,
//! owners sign in by link or token, and the page guards itself (CSRF,
//! cookie flags, strict headers). The browser story runs Debian's chromium
//! through `tools/browser` (playwright-core, a virtual authenticator): a
//! passkey is registered, an agent's read of a critical secret waits for an
//! approval made with that passkey, reads once, and is pending again.

mod common;

use common::{Backend, Server, unique};
use serde_json::json;

/// The page's origin: browsers need a host name for passkeys, so the server's
/// links name `localhost`, not the loopback address it listens on.
fn page_base(srv: &Server) -> String {
    srv.base.replace("127.0.0.1", "localhost")
}

fn owner_add(srv: &Server, tenant: &str, name: &str) -> (String, String) {
    common::owner_add(srv, tenant, name, &page_base(srv))
}

/// A browser-like client: no redirects followed, cookies handled by hand.
fn browser() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

fn cookie_of(resp: &reqwest::Response) -> Option<(String, String)> {
    let raw = resp.headers().get("set-cookie")?.to_str().ok()?.to_owned();
    let value = raw.split(';').next()?.strip_prefix("lk_session=")?.to_owned();
    Some((value, raw))
}

fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" content=\"").expect("a CSRF meta tag") + "name=\"csrf\" content=\"".len();
    html[at..].split('"').next().unwrap().to_owned()
}

fn assert_page_headers(resp: &reqwest::Response) {
    let h = resp.headers();
    let csp = h.get("content-security-policy").and_then(|v| v.to_str().ok()).unwrap_or("");
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(h.get("cache-control").unwrap(), "no-store");
    assert_eq!(h.get("referrer-policy").unwrap(), "no-referrer");
    assert_eq!(h.get("x-frame-options").unwrap(), "DENY");
}

async fn owners_and_sessions(backend: Backend) {
    let srv = Server::start(backend).await;
    let base = page_base(&srv);
    let web = browser();
    let tenant = unique("acme");
    let (s, signup) = srv.call("POST", "/api/signup", None, Some(json!({ "tenantId": tenant }))).await;
    assert_eq!(s, 201, "{signup}");
    let admin = signup["apiKey"].as_str().unwrap().to_owned();

    // The agent hands its human the setup link; the first to open it names
    // themselves and becomes owner. A GET never spends it.
    let setup = signup["ownerSetupUrl"].as_str().expect("ownerSetupUrl").to_owned();
    assert!(setup.starts_with(&format!("{base}/approvals/setup/")), "{setup}");
    let resp = web.get(&setup).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_page_headers(&resp);
    assert!(resp.text().await.unwrap().contains("Become owner"));
    let resp = web.post(&setup).form(&[("name", "Dana")]).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let (dana_cookie, raw) = cookie_of(&resp).expect("a session cookie");
    assert!(raw.contains("HttpOnly") && raw.contains("SameSite=Strict") && !raw.contains("Secure"), "{raw}");
    let html = resp.text().await.unwrap();
    let dana_token = html.split("id=\"owner-token\">").nth(1).unwrap().split('<').next().unwrap().to_owned();
    assert!(dana_token.starts_with("lko_"), "{dana_token}");
    let resp = web.post(&setup).form(&[("name", "Eve")]).send().await.unwrap();
    assert_eq!(resp.status(), 401, "the setup link works once");

    // An owner token is a string an agent could copy: it reads a critical
    // secret only through an approval, like anyone (before a passkey exists,
    // the token alone can approve it: the page says so).
    let (s, b) = srv.post("/api/v1/secrets", &admin, json!({ "name": "ROOT_PW", "value": "r00t", "accessTier": "critical" })).await;
    assert_eq!(s, 201, "{b}");
    let root = format!("/api/v1/secrets/{}", b["id"].as_str().unwrap());
    let owner_get = |path: String| web.get(format!("{}{path}", srv.base)).bearer_auth(&dana_token).send();
    let resp = owner_get(root.clone()).await.unwrap();
    assert_eq!(resp.status(), 403);
    let refused: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(refused["code"], "APPROVAL_REQUIRED", "{refused}");
    let approve = web
        .post(format!("{}/api/v1/approvals/{}/approve", srv.base, refused["approvalId"].as_str().unwrap()))
        .bearer_auth(&dana_token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(approve.status(), 200);
    let read: serde_json::Value = owner_get(root.clone()).await.unwrap().json().await.unwrap();
    assert_eq!(read["value"], "r00t", "{read}");
    assert_eq!(owner_get(root).await.unwrap().status(), 403, "one read, then ask again");

    // The operator adds an owner; the link signs in once.
    let (link, token) = owner_add(&srv, &tenant, "Ann");
    assert!(link.starts_with(&format!("{base}/approvals/signin/")) && token.starts_with("lko_"), "{link} {token}");
    assert_eq!(web.get(&link).send().await.unwrap().status(), 200);
    let resp = web.post(&link).send().await.unwrap();
    assert_eq!(resp.status(), 303);
    let (cookie, _) = cookie_of(&resp).expect("a session cookie");
    assert_eq!(web.post(&link).send().await.unwrap().status(), 401, "the sign-in link works once");

    // Signed in: the page says plainly that no passkey protects approvals yet.
    let page = |path: &str, c: &str| web.get(format!("{base}{path}")).header("cookie", format!("lk_session={c}"));
    let resp = page("/approvals", &cookie).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_page_headers(&resp);
    let html = resp.text().await.unwrap();
    assert!(html.contains("protected by the owner token alone"), "{html}");
    assert!(html.contains("Dana") && html.contains("Ann"));
    let csrf = csrf_of(&html);
    // Not signed in: the approval URL an agent hands out asks to sign in, then returns there.
    let resp = web.get(format!("{base}/approvals/some-request")).send().await.unwrap();
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()["location"], "/approvals/signin?next=%2Fapprovals%2Fsome-request");

    // Forms need the session's CSRF token.
    let add = |c: &str, form: Vec<(&'static str, String)>| {
        web.post(format!("{base}/approvals/owners")).header("cookie", format!("lk_session={c}")).form(&form).send()
    };
    assert_eq!(add(&cookie, vec![("name", "Mallory".into())]).await.unwrap().status(), 403);
    assert_eq!(add(&cookie, vec![("name", "Mallory".into()), ("csrf", "forged".into())]).await.unwrap().status(), 403);
    assert_eq!(
        add(&dana_cookie, vec![("name", "Mallory".into()), ("csrf", csrf.clone())]).await.unwrap().status(),
        403,
        "another session's token"
    );
    let resp = add(&cookie, vec![("name", "Bob".into()), ("csrf", csrf.clone())]).await.unwrap();
    assert_eq!(resp.status(), 200);
    let html = resp.text().await.unwrap();
    assert!(html.contains("Owner added") && html.contains("/approvals/signin/") && html.contains("lko_"), "{html}");

    // Sign in with the pasted token; an API key is not an owner token.
    let resp =
        web.post(format!("{base}/approvals/signin")).form(&[("token", token.as_str()), ("next", "/approvals/x")]).send().await.unwrap();
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()["location"], "/approvals/x");
    let resp = web
        .post(format!("{base}/approvals/signin"))
        .form(&[("token", token.as_str()), ("next", "https://evil.example/")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["location"], "/approvals", "never sent elsewhere after signing in");
    let resp = web.post(format!("{base}/approvals/signin")).form(&[("token", admin.as_str())]).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert!(cookie_of(&resp).is_none());

    // Sign out ends the session.
    let resp = web
        .post(format!("{base}/approvals/signout"))
        .header("cookie", format!("lk_session={cookie}"))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    assert_eq!(page("/approvals", &cookie).send().await.unwrap().status(), 303, "signed out");

    // REST takes the owner token as an owner; MCP never does.
    let resp = srv.http.get(srv.url("/api/v1/plan")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(resp.status(), 200, "an owner token over REST");
    let resp = srv
        .http
        .post(srv.url("/mcp"))
        .bearer_auth(&token)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({ "jsonrpc": "2.0", "id": 1, "method": "ping" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "MCP refuses owner tokens");

    // A link is spent once even when many tabs race for it.
    let (racy, _) = owner_add(&srv, &tenant, "Carol");
    let tries = (0..20).map(|_| web.post(&racy).send());
    let statuses: Vec<u16> = futures::future::join_all(tries).await.into_iter().map(|r| r.unwrap().status().as_u16()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 303).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 303 || *s == 401), "{statuses:?}");

    // Every step is in the audit trail.
    let (s, audit) = srv.get("/api/v1/audit?limit=100", &admin).await;
    assert_eq!(s, 200, "{audit}");
    let actions: Vec<&str> =
        audit["entries"].as_array().or(audit["logs"].as_array()).unwrap().iter().filter_map(|e| e["action"].as_str()).collect();
    for a in ["owner.created", "owner.signed_in", "owner.signed_out"] {
        assert!(actions.contains(&a), "{a} in {actions:?}");
    }
    assert_eq!(actions.iter().filter(|a| **a == "owner.created").count(), 4, "Dana, Ann, Bob, Carol: {actions:?}");
}

#[tokio::test]
async fn owners_and_sessions_sqlite() {
    owners_and_sessions(Backend::Sqlite).await;
}

#[tokio::test]
async fn owners_and_sessions_postgres() {
    owners_and_sessions(Backend::Postgres).await;
}

/// The whole approval story in headless Chromium.
async fn approval_page_in_chromium(backend: Backend) {
    let srv = Server::start(backend).await;
    let tenant = unique("acme");
    let agent = srv.signup(&tenant).await;
    let canary = format!("sk_live_{}", uuid::Uuid::new_v4().simple());
    let (s, created) = srv
        .post(
            "/api/v1/secrets",
            &agent,
            json!({ "name": "STRIPE_KEY", "environment": "production", "value": canary, "accessTier": "critical" }),
        )
        .await;
    assert_eq!(s, 201, "{created}");
    let secret = created["secretId"].as_str().unwrap().to_owned();
    // A secret the agent may use but not read, for the owner to loosen on the page.
    let hidden = json!({ "name": "DEPLOY_TOKEN", "value": "deploy-token-value-0123456789", "exposure": "use_only" });
    let (s, created) = srv.post("/api/v1/secrets", &agent, hidden).await;
    assert_eq!(s, 201, "{created}");
    let hidden = created["secretId"].as_str().unwrap().to_owned();
    let (link, owner_token) = owner_add(&srv, &tenant, "Ann");

    let shots = common::screenshots(backend);
    let config = json!({
        "base": page_base(&srv), "signinUrl": link, "ownerToken": owner_token, "apiKey": agent, "secretId": secret,
        "hiddenId": hidden, "shots": shots,
    });
    let seen = common::browser_story("approvals.mjs", &config);

    // The page and its cookie.
    let csp = seen["headers"]["csp"].as_str().unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'") && !csp.contains("unsafe"), "{csp}");
    assert_eq!(seen["headers"]["cacheControl"], "no-store");
    assert_eq!(seen["headers"]["referrerPolicy"], "no-referrer");
    assert_eq!(seen["cookie"], json!({ "httpOnly": true, "sameSite": "Strict", "secure": false, "path": "/approvals" }));
    assert_eq!(seen["noPasskeyWarning"], true);
    assert_eq!(seen["linkReuseStatus"], 401);
    assert_eq!(seen["csrfMissingStatus"], 403);
    // The owner loosened use_only to reveal on the page: the agent's read now answers the value.
    assert_eq!(seen["hiddenBefore"], json!({ "status": 403, "code": "EXPOSURE_DENIED" }), "{seen}");
    assert_eq!(seen["hiddenAfter"]["status"], 200, "{seen}");
    assert_eq!(seen["hiddenAfter"]["value"], "deploy-token-value-0123456789");
    // The passkey, on Chromium's virtual authenticator.
    assert_eq!(seen["passkeyRegistered"], true, "{seen}");
    assert_eq!(seen["authenticatorCredentials"], 1);

    // Agent reads → pending → approved with the passkey → one read → pending again.
    assert_eq!(seen["firstRead"]["status"], 403, "{seen}");
    assert_eq!(seen["firstRead"]["code"], "APPROVAL_REQUIRED");
    assert!(seen["firstRead"]["value"].is_null());
    assert_eq!(seen["approvedRead"]["status"], 200, "{seen}");
    assert_eq!(seen["approvedRead"]["value"], canary.as_str());
    assert_eq!(seen["nextRead"]["status"], 403, "{seen}");
    assert_eq!(seen["nextRead"]["code"], "APPROVAL_REQUIRED");
    assert_ne!(seen["nextRead"]["approvalId"], seen["firstRead"]["approvalId"]);
    // Denied with a reason; the owner token alone cannot approve a critical read any more.
    assert!(seen["deniedPage"].as_str().unwrap_or("").contains("not during the freeze"), "{seen}");
    assert_eq!(seen["afterDenyRead"]["status"], 403, "{seen}");
    assert_eq!(seen["ownerTokenApprove"], json!({ "status": 403, "code": "PASSKEY_REQUIRED" }), "{seen}");
    assert_eq!(seen["ownerTokenPolicy"], json!({ "status": 403, "code": "PASSKEY_REQUIRED" }), "{seen}");
    // With the passkey, on the page: the policy gates sensitive secrets, and the secret drops to standard.
    assert_eq!(seen["policySensitive"], true, "{seen}");
    assert_eq!(seen["afterLoweringRead"]["status"], 200, "a standard secret reads without approval: {seen}");
    assert_eq!(seen["afterLoweringRead"]["value"], canary.as_str());

    // The trail says who decided and how.
    let (s, audit) = srv.get("/api/v1/audit?limit=200", &agent).await;
    assert_eq!(s, 200, "{audit}");
    let text = audit.to_string();
    assert!(text.contains("passkey.registered") && text.contains("owner.signed_in"), "{text}");
    assert!(text.contains("\"passkey\""), "a decision made with the passkey: {text}");
    assert!(!text.contains(&canary));
}

#[tokio::test]
async fn approval_page_in_chromium_sqlite() {
    approval_page_in_chromium(Backend::Sqlite).await;
}

#[tokio::test]
async fn approval_page_in_chromium_postgres() {
    approval_page_in_chromium(Backend::Postgres).await;
}
