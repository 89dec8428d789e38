//! The share page (`/s/{token}`), for the person a share link was sent to,
//! through the real server on SQLite and PostgreSQL. The browser story runs
//! Debian's chromium through `tools/browser/share.mjs` (playwright-core): a
//! share with two uses and a password is opened, a wrong password costs
//! nothing, two reveals show the value (copied to the clipboard), and the
//! third open says the link is used up. The other states (a preview fetch,
//! revoked, expired, locked, an address not allowed, a stray query) are
//! checked over plain HTTP, as a browser without JavaScript would send them.

mod common;

use common::{Backend, Server, unique};
use serde_json::{Value, json};

/// The page's origin as people open it (`localhost`, a secure context for the clipboard).
fn page_base(srv: &Server) -> String {
    srv.base.replace("127.0.0.1", "localhost")
}

/// The share's link, moved onto the test server's page origin.
fn link_on(srv: &Server, url: &str, token: &str) -> String {
    assert!(url.ends_with(&format!("/s/{token}")), "{url}");
    format!("{}/s/{token}", page_base(srv))
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

fn assert_page_headers(what: &str, h: &reqwest::header::HeaderMap) {
    let get = |k: &str| h.get(k).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let csp = get("content-security-policy");
    assert!(
        csp.contains("default-src 'none'")
            && csp.contains("script-src 'self'")
            && csp.contains("frame-ancestors 'none'")
            && !csp.contains("unsafe"),
        "{what}: {csp}"
    );
    assert_eq!(get("cache-control"), "no-store", "{what}");
    assert_eq!(get("referrer-policy"), "no-referrer", "{what}");
    assert_eq!(get("x-frame-options"), "DENY", "{what}");
    assert!(get("content-type").starts_with("text/html"), "{what}");
}

/// A tenant with a secret holding a fresh canary value: (admin key, secret id, value).
async fn tenant_with_secret(srv: &Server) -> (String, String, String) {
    let key = srv.signup(&unique("acme")).await;
    let value = format!("sk_live_{}", uuid::Uuid::new_v4().simple());
    let (s, b) = srv.post("/api/v1/secrets", &key, json!({ "name": "STRIPE_KEY", "environment": "production", "value": value })).await;
    assert_eq!(s, 201, "{b}");
    (key, b["secretId"].as_str().or(b["id"].as_str()).unwrap().to_owned(), value)
}

/// Creates a share over REST: (id, token, url).
async fn share(srv: &Server, key: &str, body: Value) -> (String, String, String) {
    let (s, b) = srv.post("/api/v1/shares", key, body).await;
    assert_eq!(s, 201, "{b}");
    let field = |k: &str| b[k].as_str().unwrap_or_else(|| panic!("{k} in {b}")).to_owned();
    (field("id"), field("token"), field("url"))
}

async fn uses(srv: &Server, key: &str, id: &str) -> i64 {
    let (s, b) = srv.get(&format!("/api/v1/shares/{id}"), key).await;
    assert_eq!(s, 200, "{b}");
    b["uses"].as_i64().unwrap_or_else(|| panic!("uses in {b}"))
}

async fn share_page_in_chromium(backend: Backend) {
    let srv = Server::start(backend).await;
    let (key, secret, value) = tenant_with_secret(&srv).await;
    let password = "correct horse battery";
    let (id, token, url) =
        share(&srv, &key, json!({ "secretId": secret, "expirationHours": 24, "maxUses": 2, "password": password })).await;
    let link = link_on(&srv, &url, &token);

    let shots = common::screenshots(backend);
    let config = json!({
        "base": page_base(&srv), "url": link, "shareId": id, "apiKey": key, "password": password, "value": value, "shots": shots,
    });
    let seen = common::browser_story("share.mjs", &config);

    // Every page: strict CSP, no-store, no-referrer, DENY, noindex.
    for (name, p) in seen["pages"].as_object().expect("pages seen") {
        let csp = p["csp"].as_str().unwrap_or("");
        assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'") && !csp.contains("unsafe"), "{name}: {csp}");
        assert_eq!(p["cacheControl"], "no-store", "{name}: {p}");
        assert_eq!(p["referrerPolicy"], "no-referrer", "{name}: {p}");
        assert_eq!(p["frame"], "DENY", "{name}: {p}");
        assert_eq!(p["robots"], "noindex, nofollow", "{name}: {p}");
        assert_ne!(p["htmlHasValue"], true, "{name}: the value in the HTML");
    }
    assert_eq!(seen["pages"].as_object().unwrap().len(), 6, "{seen}");
    assert!(seen["pageErrors"].is_null(), "script errors: {seen}");
    // Chromium sends `Origin: null` with the page's own form (no-referrer): the edge lets it through for /s/ only.
    assert_eq!(seen["formOrigin"], "null", "{seen}");

    // The landing: the secret's name, expiry, views left, a password field and one button; no value.
    assert_eq!(seen["pages"]["landing"]["status"], 200);
    assert_eq!(seen["landing"]["name"], "STRIPE_KEY", "{seen}");
    assert!(seen["landing"]["expires"].as_str().unwrap().starts_with("in 24 hours"), "{seen}");
    assert_eq!(seen["landing"]["usesLeft"], "2 views");
    assert_eq!(seen["landing"]["passwordField"], true);
    assert_eq!(seen["landing"]["button"], "Reveal");
    assert_eq!(seen["landing"]["domHasValue"], false);
    assert_eq!(seen["usesAtStart"]["uses"], 0, "{seen}");
    assert_eq!(seen["usesAfterLanding"]["uses"], 0, "opening the link counts nothing: {seen}");

    // A wrong password: the form again, with the error, and no use counted.
    assert_eq!(seen["pages"]["wrongPassword"]["status"], 401, "{seen}");
    assert!(seen["wrongPassword"]["error"].as_str().unwrap().contains("password is not right"), "{seen}");
    assert_eq!(seen["wrongPassword"]["passwordField"], true);
    assert_eq!(seen["usesAfterWrong"]["uses"], 0, "a wrong password costs no use: {seen}");

    // The right one: the value once, read-only, copied; one use.
    assert_eq!(seen["pages"]["firstReveal"]["status"], 200, "{seen}");
    assert_eq!(seen["firstReveal"]["value"], value.as_str());
    assert_eq!(seen["firstReveal"]["readOnly"], true);
    assert_eq!(seen["firstReveal"]["copyVisible"], true);
    assert!(seen["firstReveal"]["usesLine"].as_str().unwrap().contains("1 more time"), "{seen}");
    assert_eq!(seen["copy"]["copied"], "1", "{seen}");
    assert_eq!(seen["copy"]["button"], "Copied");
    assert_eq!(seen["copy"]["clipboard"], value.as_str(), "{seen}");
    assert_eq!(seen["doubleClickPosts"], 1, "a double click sends the form once: {seen}");
    assert_eq!(seen["usesAfterFirst"]["uses"], 1, "{seen}");

    // The second reveal is the last, and says so; the third open is used up.
    assert_eq!(seen["secondLandingUsesLeft"], "1 view");
    assert_eq!(seen["secondReveal"]["value"], value.as_str());
    assert!(seen["secondReveal"]["usesLine"].as_str().unwrap().contains("last view"), "{seen}");
    assert_eq!(seen["usesAfterSecond"]["uses"], 2, "{seen}");
    assert_eq!(seen["pages"]["usedUp"]["status"], 410, "{seen}");
    assert_eq!(seen["usedUp"]["state"], "used");
    assert_eq!(seen["usedUp"]["hasForm"], false);
    assert_eq!(seen["pages"]["notFound"]["status"], 404, "{seen}");
    assert_eq!(seen["notFound"]["state"], "missing");

    // The trail: two accesses from the page and the failed one; never the value.
    let (s, audit) = srv.get("/api/v1/audit?limit=200", &key).await;
    assert_eq!(s, 200, "{audit}");
    let text = audit.to_string();
    assert!(!text.contains(&value) && !text.contains(&token) && !text.contains(password), "{text}");
    let entries = audit["entries"].as_array().or(audit["logs"].as_array()).expect("audit entries");
    let accesses: Vec<&Value> = entries.iter().filter(|e| e["action"] == "share.access").collect();
    assert!(accesses.len() >= 3, "two reveals and a wrong password: {accesses:?}");
}

#[tokio::test]
async fn share_page_in_chromium_sqlite() {
    share_page_in_chromium(Backend::Sqlite).await;
}

#[tokio::test]
async fn share_page_in_chromium_postgres() {
    share_page_in_chromium(Backend::Postgres).await;
}

async fn share_page_states(backend: Backend) {
    let srv = Server::start(backend).await;
    let (key, secret, value) = tenant_with_secret(&srv).await;
    let web = client();

    // Chat apps fetch a link for its preview, sometimes twice: nothing is counted or shown.
    let (id, token, url) = share(&srv, &key, json!({ "secretId": secret, "expirationHours": 2, "maxUses": 1 })).await;
    let link = link_on(&srv, &url, &token);
    for agent in ["Slackbot-LinkExpanding 1.0", "WhatsApp/2.23", "Mozilla/5.0"] {
        let resp = web.get(&link).header("user-agent", agent).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_page_headers("landing", resp.headers());
        let html = resp.text().await.unwrap();
        assert!(html.contains("STRIPE_KEY") && html.contains("Reveal") && !html.contains(&value), "{html}");
        assert!(!html.contains("type=\"password\""), "no password, no field: {html}");
    }
    let head = web.head(&link).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(uses(&srv, &key, &id).await, 0, "GET and HEAD count nothing");
    // A stray query is refused, like everywhere; nothing counted.
    let resp = web.get(format!("{link}?utm_source=chat")).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    assert_page_headers("query", resp.headers());

    // Another site's page cannot post the form; the page's own form (Origin: null under no-referrer) can.
    let resp = web.post(&link).header("origin", "https://evil.example").form(&[("password", "")]).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(uses(&srv, &key, &id).await, 0);
    let resp =
        web.post(&link).header("origin", "null").body("").header("content-type", "application/x-www-form-urlencoded").send().await.unwrap();
    assert_eq!(resp.status(), 200, "a form without a password field, without JavaScript");
    assert_page_headers("reveal", resp.headers());
    let html = resp.text().await.unwrap();
    assert!(html.contains(&value) && html.contains("last view"), "{html}");
    assert_eq!(uses(&srv, &key, &id).await, 1);
    let resp = web.post(&link).form(&[("password", "")]).send().await.unwrap();
    assert_eq!(resp.status(), 410);
    let html = resp.text().await.unwrap();
    assert!(html.contains("used up") && !html.contains(&value), "{html}");

    // Unknown form fields are refused; nothing counted.
    let (id2, token2, url2) = share(&srv, &key, json!({ "secretId": secret, "expirationHours": 2, "maxUses": 3 })).await;
    let link2 = link_on(&srv, &url2, &token2);
    let resp = web.post(&link2).form(&[("password", ""), ("extra", "x")]).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    assert_page_headers("bad form", resp.headers());
    assert_eq!(uses(&srv, &key, &id2).await, 0);

    // Revoked: the creator withdrew it.
    let (s, b) = srv.delete(&format!("/api/v1/shares/{id2}"), &key).await;
    assert!(s == 200 || s == 204, "{s} {b}");
    let resp = web.get(&link2).send().await.unwrap();
    assert_eq!(resp.status(), 410);
    assert_page_headers("revoked", resp.headers());
    assert!(resp.text().await.unwrap().contains("turned off"));
    let resp = web.post(&link2).form(&[("password", "")]).send().await.unwrap();
    assert_eq!(resp.status(), 410);
    assert!(resp.text().await.unwrap().contains("turned off"));

    // Expired.
    let (id3, token3, url3) = share(&srv, &key, json!({ "secretId": secret, "expirationHours": 1, "maxUses": 3 })).await;
    let link3 = link_on(&srv, &url3, &token3);
    assert_eq!(srv.sql("UPDATE shares SET expires_at = 1000 WHERE id = $1", &[&id3]).await, 1);
    let resp = web.get(&link3).send().await.unwrap();
    assert_eq!(resp.status(), 410);
    assert_page_headers("expired", resp.headers());
    assert!(resp.text().await.unwrap().contains("has expired"));

    // Not from an allowed address: the landing shows, the reveal says why not.
    let (id4, token4, url4) =
        share(&srv, &key, json!({ "secretId": secret, "expirationHours": 1, "maxUses": 3, "allowedIPs": ["203.0.113.0/24"] })).await;
    let link4 = link_on(&srv, &url4, &token4);
    assert_eq!(web.get(&link4).send().await.unwrap().status(), 200);
    let resp = web.post(&link4).form(&[("password", "")]).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_page_headers("ip", resp.headers());
    let html = resp.text().await.unwrap();
    assert!(html.contains("cannot be opened from here") && !html.contains(&value), "{html}");
    assert_eq!(uses(&srv, &key, &id4).await, 0);

    // A password: none sent asks for it; five wrong ones lock the link, with when to retry.
    let (id5, token5, url5) =
        share(&srv, &key, json!({ "secretId": secret, "expirationHours": 1, "maxUses": 3, "password": "s3cret-pass" })).await;
    let link5 = link_on(&srv, &url5, &token5);
    let resp = web.post(&link5).form(&[("password", "")]).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let html = resp.text().await.unwrap();
    assert!(html.contains("protected by a password") && html.contains("type=\"password\""), "{html}");
    let mut last = (0, String::new());
    for _ in 0..6 {
        let resp = web.post(&link5).form(&[("password", "guess")]).send().await.unwrap();
        let status = resp.status().as_u16();
        let retry = resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let html = resp.text().await.unwrap();
        last = (status, format!("{retry} {html}"));
        if status == 429 {
            break;
        }
        assert_eq!(status, 401, "{html}");
    }
    assert_eq!(last.0, 429, "locked after wrong passwords: {}", last.1);
    assert!(last.1.contains("Too many wrong passwords") && last.1.contains("Try again in"), "{}", last.1);
    let retry: u64 = last.1.split(' ').next().unwrap().parse().expect("Retry-After seconds");
    assert!(retry > 0 && retry <= 15 * 60, "{retry}");
    let resp = web.get(&link5).send().await.unwrap();
    assert_eq!(resp.status(), 429, "the landing says it is locked too");
    assert!(resp.headers().get("retry-after").is_some());
    let resp = web.post(&link5).form(&[("password", "s3cret-pass")]).send().await.unwrap();
    assert_eq!(resp.status(), 429, "even the right password waits");
    assert!(!resp.text().await.unwrap().contains(&value));
    assert_eq!(uses(&srv, &key, &id5).await, 0);

    // Unknown and malformed tokens: the same page.
    for path in ["/s/shr_nothing", "/s/not-a-token", &format!("/s/{}", "x".repeat(500))] {
        let resp = web.get(format!("{}{path}", page_base(&srv))).send().await.unwrap();
        assert_eq!(resp.status(), 404, "{path}");
        assert_page_headers("missing", resp.headers());
        assert!(resp.text().await.unwrap().contains("This link does not work"));
    }
    // The script and the sheet are served from the page's own origin.
    for (path, kind) in [("/static/share.js", "javascript"), ("/static/share.css", "css")] {
        let resp = web.get(format!("{}{path}", page_base(&srv))).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        assert!(resp.headers()["content-type"].to_str().unwrap().contains(kind));
    }
}

#[tokio::test]
async fn share_page_states_sqlite() {
    share_page_states(Backend::Sqlite).await;
}

#[tokio::test]
async fn share_page_states_postgres() {
    share_page_states(Backend::Postgres).await;
}
