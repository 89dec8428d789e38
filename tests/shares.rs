//! Share links for people, as an agent and the person it hands a secret to
//! use them: the agent's key makes a link; the person opens it (REST, no
//! key) and gets the value exactly as many times as the link allows, behind
//! its password and address allowlist; the agent lists, revokes and extends
//! its links, on REST and MCP. On SQLite and PostgreSQL, through the real server.

mod common;

use common::{Backend, Opts, Server, unique};
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};

fn code(b: &Value) -> &str {
    b["code"].as_str().unwrap_or_default()
}

async fn secret(srv: &Server, key: &str, name: &str, value: &str) -> String {
    let (s, b) = srv.post("/api/v1/secrets", key, json!({ "name": name, "value": value })).await;
    assert_eq!(s, 201, "{b}");
    b["id"].as_str().unwrap().to_owned()
}

/// Makes a link; answers (status, body).
async fn share(srv: &Server, key: &str, req: Value) -> (u16, Value) {
    srv.post("/api/v1/shares", key, req).await
}

/// Makes a link that must succeed; answers (id, token).
async fn shared(srv: &Server, key: &str, req: Value) -> (String, String) {
    let (s, b) = share(srv, key, req).await;
    assert_eq!(s, 201, "{b}");
    (b["id"].as_str().unwrap().to_owned(), b["token"].as_str().unwrap().to_owned())
}

/// Opens a link as a person would: no key; `body` `None` sends no body at all.
async fn access(srv: &Server, token: &str, body: Option<Value>) -> (u16, reqwest::header::HeaderMap, Value) {
    srv.call_full("POST", &format!("/api/v1/shares/access/{token}"), None, body).await
}

/// Opens a link with an `X-Forwarded-For` header.
async fn access_forwarded(srv: &Server, token: &str, forwarded: &str) -> (u16, Value) {
    let resp = srv
        .http
        .post(srv.url(&format!("/api/v1/shares/access/{token}")))
        .header("X-Forwarded-For", forwarded)
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn view(srv: &Server, key: &str, id: &str) -> Value {
    let (s, b) = srv.get(&format!("/api/v1/shares/{id}"), key).await;
    assert_eq!(s, 200, "{b}");
    b
}

/// Whether the link's ciphertext is still in the database.
async fn sealed_present(srv: &Server, id: &str) -> bool {
    srv.sql("UPDATE shares SET id = id WHERE id = $1 AND sealed IS NOT NULL", &[id]).await == 1
}

/// Every entry of the tenant's trail, newest first.
async fn trail(srv: &Server, key: &str) -> Vec<Value> {
    let (s, page) = srv.get("/api/v1/audit?limit=1000", key).await;
    assert_eq!(s, 200, "{page}");
    page["logs"].as_array().unwrap().clone()
}

async fn create_and_access(backend: Backend) {
    let srv = Server::start(backend).await;
    let admin = srv.signup(&unique("share")).await;
    let id = secret(&srv, &admin, "DB_PASSWORD", "s3cret-value-for-a-person").await;

    let (s, created) = share(&srv, &admin, json!({ "secretId": id, "expirationHours": 2, "maxUses": 2 })).await;
    assert_eq!(s, 201, "{created}");
    let token = created["token"].as_str().unwrap();
    let share_id = created["id"].as_str().unwrap();
    assert!(token.starts_with("shr_") && token.len() > 40, "{created}");
    let port = srv.base.rsplit(':').next().unwrap();
    assert_eq!(created["url"].as_str().unwrap(), format!("http://localhost:{port}/s/{token}"), "{created}");
    assert_eq!(created["maxUses"], 2);
    assert!(created["expiresAt"].is_string(), "{created}");
    assert!(!created.to_string().contains("s3cret"), "no value in the answer: {created}");

    // The secret changes afterwards: the link keeps the value it was made with.
    let (s, b) = srv.put(&format!("/api/v1/secrets/{id}"), &admin, json!({ "value": "rotated" })).await;
    assert_eq!(s, 200, "{b}");

    // The person opens it without a key and without a body.
    let (s, headers, b) = access(&srv, token, None).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["value"], "s3cret-value-for-a-person");
    assert_eq!((b["name"].as_str(), b["shareId"].as_str(), b["usesLeft"].as_i64()), (Some("DB_PASSWORD"), Some(share_id), Some(1)));
    assert_eq!(headers.get("cache-control").and_then(|v| v.to_str().ok()), Some("no-store"));
    let v = view(&srv, &admin, share_id).await;
    assert_eq!((v["uses"].as_i64(), v["usesLeft"].as_i64(), v["status"].as_str()), (Some(1), Some(1), Some("active")), "{v}");
    assert!(v["lastAccessedAt"].is_string() && v.get("token").is_none() && v.get("value").is_none(), "{v}");

    // An empty JSON body works too; the last use erases the value.
    let (s, _, b) = access(&srv, token, Some(json!({}))).await;
    assert_eq!((s, b["usesLeft"].as_i64()), (200, Some(0)), "{b}");
    assert!(!sealed_present(&srv, share_id).await, "the ciphertext is erased with the last use");
    let (s, _, b) = access(&srv, token, None).await;
    assert_eq!((s, code(&b)), (410, "SHARE_EXHAUSTED"), "{b}");
    assert_eq!(view(&srv, &admin, share_id).await["status"], "exhausted");

    // Unknown and malformed tokens: 404.
    for bad in ["shr_doesnotexist", "nothing-like-a-token"] {
        let (s, _, b) = access(&srv, bad, None).await;
        assert_eq!((s, code(&b)), (404, "NOT_FOUND"), "{b}");
    }

    // Creating read the secret (audited); each access is audited in the tenant's trail.
    let logs = trail(&srv, &admin).await;
    let reads: Vec<&Value> = logs.iter().filter(|e| e["action"] == "secret.read" && e["resourceId"] == id.as_str()).collect();
    // (PostgreSQL may record a second entry: a read retried after another change, see `read_secret`.)
    assert!(!reads.is_empty(), "{logs:?}");
    let accesses: Vec<&Value> = logs.iter().filter(|e| e["action"] == "share.access").collect();
    let outcomes: Vec<&str> = accesses.iter().map(|e| e["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["rejected", "success", "success"], "{accesses:?}");
    assert!(accesses.iter().all(|e| e["resourceId"] == share_id && e["ipAddress"] == "127.0.0.1"), "{accesses:?}");
    assert_eq!(logs.iter().filter(|e| e["action"] == "share.create" && e["outcome"] == "success").count(), 1);
}

#[tokio::test]
async fn a_person_opens_a_link_until_its_uses_run_out_on_sqlite() {
    create_and_access(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_person_opens_a_link_until_its_uses_run_out_on_postgres() {
    create_and_access(Backend::Postgres).await;
}
