//! The secret-request page (`/requests/{id}`) in Debian's chromium, through
//! `tools/browser/request.mjs` (playwright-core), on SQLite and PostgreSQL:
//! an agent asks for a value; its human opens the link, is sent to sign in
//! and back, sees what is asked and by whom, pastes the value into a
//! password field and stores it. The agent's `request_status` (MCP) then
//! shows `fulfilled` with the secret's id; the stored value is the pasted
//! one (`verify`, the secret being `use_only`); and the value is in no page
//! the browser got, no URL it visited, no answer and no audit entry.

mod common;

use common::mcp_client::{connect as mcp_client, tool};
use common::{Backend, Server, unique};
use serde_json::json;

fn page_base(srv: &Server) -> String {
    srv.base.replace("127.0.0.1", "localhost")
}

/// A tenant: the agent's key and its human's owner token (by the setup link the signup handed out).
async fn tenant(srv: &Server) -> (String, String) {
    let (s, signup) = srv.call("POST", "/api/signup", None, Some(json!({ "tenantId": unique("reqpage") }))).await;
    assert_eq!(s, 201, "{signup}");
    let web = reqwest::Client::builder().no_proxy().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let resp = web.post(signup["ownerSetupUrl"].as_str().unwrap()).form(&[("name", "Ann")]).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let html = resp.text().await.unwrap();
    let token = html.split("id=\"owner-token\">").nth(1).unwrap().split('<').next().unwrap().to_owned();
    assert!(token.starts_with("lko_"), "{token}");
    (signup["apiKey"].as_str().unwrap().to_owned(), token)
}

async fn request_page_in_chromium(backend: Backend) {
    let srv = Server::start(backend).await;
    let (agent, owner_token) = tenant(&srv).await;
    let value = format!("ghp_{}", uuid::Uuid::new_v4().simple());
    let (s, made) = srv
        .post(
            "/api/v1/secret-requests",
            &agent,
            json!({
                "name": "GITHUB_TOKEN", "reason": "open the release pull request", "environment": "ci",
                "instructions": "Settings → Developer settings → Fine-grained tokens, repo contents: write",
                "obtainUrl": "https://github.com/settings/personal-access-tokens/new",
            }),
        )
        .await;
    assert_eq!(s, 201, "{made}");
    let id = made["id"].as_str().unwrap().to_owned();
    let url = made["requestUrl"].as_str().unwrap().to_owned();
    assert_eq!(url, format!("{}/requests/{id}", page_base(&srv)));

    let shots = common::screenshots(backend);
    let config = json!({ "base": page_base(&srv), "url": url, "ownerToken": owner_token, "value": value, "shots": shots });
    let seen = common::browser_story("request.mjs", &config);

    for (name, p) in seen["pages"].as_object().expect("pages seen") {
        let csp = p["csp"].as_str().unwrap_or("");
        assert!(csp.contains("default-src 'none'") && csp.contains("form-action 'self'") && !csp.contains("unsafe"), "{name}: {csp}");
        assert_eq!(p["cacheControl"], "no-store", "{name}: {p}");
        assert_eq!(p["referrerPolicy"], "no-referrer", "{name}: {p}");
        assert_eq!(p["frame"], "DENY", "{name}: {p}");
        assert_eq!(p["htmlHasValue"], false, "{name}: the value in the HTML");
        assert_eq!(p["status"], 200, "{name}: {p}");
    }
    assert!(seen["pageErrors"].is_null(), "script errors: {seen}");

    // Not signed in: the sign-in page, with the way back.
    assert!(seen["signinUrl"].as_str().unwrap().contains("/approvals/signin?next="), "{seen}");
    assert_eq!(seen["signinNext"], format!("/approvals/requests/{id}"));

    // What the owner sees before pasting.
    let r = &seen["request"];
    assert_eq!(r["url"], format!("{}/approvals/requests/{id}", page_base(&srv)), "{seen}");
    assert_eq!(r["name"], "GITHUB_TOKEN");
    assert_eq!(r["state"], "pending");
    assert_eq!(r["reason"], "open the release pull request");
    assert!(r["instructions"].as_str().unwrap().contains("Fine-grained tokens"), "{r}");
    assert_eq!(r["obtainHref"], "https://github.com/settings/personal-access-tokens/new");
    assert_eq!(r["obtainRel"], "noopener noreferrer");
    assert!(!r["requester"].as_str().unwrap().is_empty(), "{r}");
    assert_eq!(r["inputType"], "password");
    assert_eq!(seen["typedHidden"], true);

    // After storing: fulfilled, the secret named, no form, no value anywhere the browser went.
    let f = &seen["fulfilled"];
    assert_eq!(f["url"], format!("{}/approvals/requests/{id}?done=fulfilled", page_base(&srv)), "{seen}");
    assert_eq!(f["state"], "fulfilled");
    assert!(f["notice"].as_str().unwrap().contains("Stored"), "{f}");
    assert_eq!(f["hasForm"], false);
    assert_eq!(f["domHasValue"], false);
    assert_eq!(seen["reopened"], json!({ "state": "fulfilled", "hasForm": false }));
    assert_eq!(seen["urlsHaveValue"], false, "{seen}");

    // The agent polls over MCP: fulfilled, the secret's id, never the value.
    let mcp = mcp_client(&srv, &agent).await;
    let status = tool(&mcp, "request_status", json!({ "id": id })).await.expect("request_status");
    assert_eq!(status["status"], "fulfilled", "{status}");
    let secret = status["secretId"].as_str().expect("secretId").to_owned();
    assert!(f["secret"].as_str().unwrap().contains(&secret), "the page names the secret: {f}");
    assert!(!status.to_string().contains(&value));
    // The stored value is the pasted one: use_only, so checked, never read.
    let (s, read) = srv.get(&format!("/api/v1/secrets/{secret}"), &agent).await;
    assert_eq!((s, read["code"].as_str()), (403, Some("EXPOSURE_DENIED")), "{read}");
    let same = tool(&mcp, "verify_secret", json!({ "secret": secret, "candidate": value })).await.expect("verify_secret");
    assert_eq!(same["match"], true, "{same}");
    let other = tool(&mcp, "verify_secret", json!({ "secret": secret, "candidate": "ghp_not_it" })).await.unwrap();
    assert_eq!(other["match"], false, "{other}");

    let (s, audit) = srv.get("/api/v1/audit?limit=500", &agent).await;
    assert_eq!(s, 200);
    let text = audit.to_string();
    assert!(text.contains("request.fulfil") && text.contains("owner.signed_in"), "{text}");
    assert!(!text.contains(&value), "the value in the trail");
    assert!(!srv.stderr().contains(&value), "the value in the log");
}

#[tokio::test]
async fn request_page_in_chromium_sqlite() {
    request_page_in_chromium(Backend::Sqlite).await;
}

#[tokio::test]
async fn request_page_in_chromium_postgres() {
    request_page_in_chromium(Backend::Postgres).await;
}
