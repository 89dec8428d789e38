//! Scoped tokens, as an agent and its human use them: a key mints a narrow,
//! short-lived token; the token reaches exactly the secrets its scopes cover,
//! on REST and MCP; it can never be wider than its key; and it stops when
//! revoked, expired, used up or used from the wrong address. On SQLite and
//! PostgreSQL, through the real server.

mod common;

use common::{Backend, Server, unique};
use rmcp::model::{CallToolRequestParams, CallToolResult, ReadResourceRequestParams};
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};

type Client = RunningService<RoleClient, ()>;

async fn mcp_client(srv: &Server, key: &str) -> Client {
    let config = StreamableHttpClientTransportConfig::with_uri(srv.url("/mcp")).auth_header(key);
    ().serve(StreamableHttpClientTransport::from_config(config)).await.expect("MCP handshake")
}

async fn tool(c: &Client, name: &str, args: Value) -> CallToolResult {
    let params = CallToolRequestParams::new(name.to_owned()).with_arguments(args.as_object().unwrap().clone());
    c.call_tool(params).await.unwrap_or_else(|e| panic!("{name}: protocol error {e}"))
}

/// A tool's structured answer, or its error code.
async fn tool_answer(c: &Client, name: &str, args: Value) -> Result<Value, String> {
    let r = tool(c, name, args).await;
    if r.is_error == Some(true) {
        let text = r.content[0].as_text().expect("text").text.clone();
        let body: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{name}: {text}"));
        Err(body["code"].as_str().unwrap().to_owned())
    } else {
        Ok(r.structured_content.expect("structured content"))
    }
}

async fn secret(srv: &Server, key: &str, environment: &str, name: &str, value: &str) -> String {
    let (s, b) = srv.post("/api/v1/secrets", key, json!({ "name": name, "value": value, "environment": environment })).await;
    assert_eq!(s, 201, "{b}");
    b["id"].as_str().unwrap().to_owned()
}

/// Mints a token; answers (status, body).
async fn mint(srv: &Server, key: &str, req: Value) -> (u16, Value) {
    srv.post("/api/v1/tokens", key, req).await
}

async fn minted(srv: &Server, key: &str, req: Value) -> (String, String) {
    let (s, b) = mint(srv, key, req).await;
    assert_eq!(s, 201, "{b}");
    (b["token"].as_str().unwrap().to_owned(), b["tokenId"].as_str().unwrap().to_owned())
}

fn code(b: &Value) -> &str {
    b["code"].as_str().unwrap_or_default()
}

async fn token_story(backend: Backend) {
    let srv = Server::start(backend).await;
    let admin = srv.signup(&unique("tok")).await;
    let gemini = secret(&srv, &admin, "production", "gemini/KEY", "gemini-prod-value").await;
    let gemini2 = secret(&srv, &admin, "production", "gemini/KEY2", "gemini-prod-2").await;
    let stripe = secret(&srv, &admin, "production", "stripe/KEY", "stripe-prod-value").await;
    let staging = secret(&srv, &admin, "staging", "gemini/KEY", "gemini-staging").await;

    // The agent's key mints a token that reads and lists Gemini's production keys.
    let (s, issued) = mint(
        &srv,
        &admin,
        json!({ "scopes": ["secrets:read:production/gemini/*", "secrets:list:production/gemini/*"], "ttl": "15m", "reason": "summarise" }),
    )
    .await;
    assert_eq!(s, 201, "{issued}");
    let token = issued["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("lkt_") && token.len() > 40, "{issued}");
    assert_eq!(issued["requiresApproval"], false);
    assert_eq!(issued["scopes"], json!(["secrets:read:production/gemini/*", "secrets:list:production/gemini/*"]));
    assert!(issued["expiresAt"].is_string() && issued["tokenId"].is_string(), "{issued}");

    // It reads gemini/KEY of production, by X-API-Key and by Bearer...
    let (s, b) = srv.get(&format!("/api/v1/secrets/{gemini}"), &token).await;
    assert_eq!((s, b["value"].as_str()), (200, Some("gemini-prod-value")), "{b}");
    let resp = srv.http.get(srv.url(&format!("/api/v1/secrets/{gemini}"))).bearer_auth(&token).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    // ...and nothing else: not Stripe's key, not staging's, and no writes.
    for other in [&stripe, &staging] {
        let (s, b) = srv.get(&format!("/api/v1/secrets/{other}"), &token).await;
        assert_eq!((s, code(&b)), (403, "SCOPE_DENIED"), "{b}");
        assert!(!b.to_string().contains("value\""), "{b}");
    }
    let (s, b) = srv.put(&format!("/api/v1/secrets/{gemini}"), &token, json!({ "value": "overwritten" })).await;
    assert_eq!((s, code(&b)), (403, "SCOPE_DENIED"), "{b}");
    let (s, b) = srv.post("/api/v1/secrets", &token, json!({ "name": "gemini/NEW", "value": "v", "environment": "production" })).await;
    assert_eq!((s, code(&b)), (403, "SCOPE_DENIED"), "{b}");
    let (s, b) = srv.delete(&format!("/api/v1/secrets/{gemini}"), &token).await;
    assert_eq!((s, code(&b)), (403, "SCOPE_DENIED"), "{b}");

    // Its list holds only what it covers, and pages correctly.
    let (s, b) = srv.get("/api/v1/secrets", &token).await;
    assert_eq!((s, b["count"].as_i64()), (200, Some(2)), "{b}");
    let mut ids: Vec<&str> = b["secrets"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    ids.sort();
    let mut want = vec![gemini.as_str(), gemini2.as_str()];
    want.sort();
    assert_eq!(ids, want);
    let (_, first) = srv.get("/api/v1/secrets?limit=1", &token).await;
    assert_eq!((first["count"].as_i64(), first["hasMore"].as_bool()), (Some(1), Some(true)), "{first}");
    let cursor = first["nextCursor"].as_str().unwrap();
    let (_, second) = srv.get(&format!("/api/v1/secrets?limit=1&cursor={cursor}"), &token).await;
    assert_eq!((second["count"].as_i64(), second["hasMore"].as_bool()), (Some(1), Some(false)), "{second}");
    assert_ne!(first["secrets"][0]["id"], second["secrets"][0]["id"]);

    // Off secrets, a token reaches nothing but who it is.
    for (method, path) in [("GET", "/api/v1/api-keys"), ("GET", "/api/v1/audit"), ("GET", "/api/v1/tokens")] {
        let (s, b) = srv.call(method, path, Some(&token), None).await;
        assert_eq!((s, code(&b)), (403, "SCOPE_DENIED"), "{method} {path}: {b}");
    }
    let (s, b) = mint(&srv, &token, json!({ "scopes": ["secrets:read:*"] })).await;
    assert_eq!((s, code(&b)), (403, "SCOPE_DENIED"), "a token cannot mint a token: {b}");
    let (s, b) = srv.post("/api/v1/projects", &token, json!({ "name": "p" })).await;
    assert_eq!((s, code(&b)), (403, "SCOPE_DENIED"), "{b}");
    let (s, b) = srv.get("/api/v1/plan", &token).await;
    assert_eq!(s, 200, "{b}");

    // The same over MCP (HTTP, Authorization: Bearer).
    let c = mcp_client(&srv, &token).await;
    let read = tool_answer(&c, "get_secret", json!({ "name": "gemini/KEY", "environment": "production" })).await.unwrap();
    assert_eq!(read["value"], "gemini-prod-value");
    assert_eq!(
        tool_answer(&c, "get_secret", json!({ "name": "stripe/KEY", "environment": "production" })).await.unwrap_err(),
        "SCOPE_DENIED"
    );
    assert_eq!(tool_answer(&c, "get_secret", json!({ "id": stripe })).await.unwrap_err(), "SCOPE_DENIED");
    assert_eq!(
        tool_answer(&c, "set_secret", json!({ "name": "gemini/KEY", "environment": "production", "value": "x" })).await.unwrap_err(),
        "SCOPE_DENIED"
    );
    let listed = tool_answer(&c, "list_secrets", json!({})).await.unwrap();
    assert_eq!(listed["count"], 2, "{listed}");
    assert!(!listed.to_string().contains("stripe"), "{listed}");
    let all = c.read_resource(ReadResourceRequestParams::new("latchkey://secrets")).await.unwrap();
    let text = format!("{:?}", all.contents);
    assert!(text.contains("gemini/KEY") && !text.contains("stripe"), "{text}");
    let mine = c.read_resource(ReadResourceRequestParams::new("latchkey://secrets/gemini/KEY?environment=production")).await;
    assert!(format!("{:?}", mine.unwrap().contents).contains("history"));
    let theirs = c.read_resource(ReadResourceRequestParams::new("latchkey://secrets/stripe/KEY?environment=production")).await;
    assert!(format!("{theirs:?}").contains("SCOPE_DENIED") || theirs.is_err(), "{theirs:?}");
    assert!(!format!("{theirs:?}").contains("history"), "{theirs:?}");
    c.cancel().await.ok();

    // A write token may rename within its scopes, never move a secret out of them.
    let (writer, _) = minted(&srv, &admin, json!({ "scopes": ["secrets:*:production/gemini/*"] })).await;
    let (s, b) = srv.put(&format!("/api/v1/secrets/{gemini2}"), &writer, json!({ "environment": "staging" })).await;
    assert_eq!((s, code(&b)), (403, "SCOPE_DENIED"), "{b}");
    let (s, b) = srv.put(&format!("/api/v1/secrets/{gemini2}"), &writer, json!({ "name": "gemini/KEY3" })).await;
    assert_eq!((s, b["name"].as_str()), (200, Some("gemini/KEY3")), "{b}");
    let (s, b) = srv.put(&format!("/api/v1/secrets/{gemini2}"), &writer, json!({ "value": "rotated" })).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = srv.put(&format!("/api/v1/secrets/{stripe}"), &writer, json!({ "value": "rotated" })).await;
    assert_eq!((s, code(&b)), (403, "SCOPE_DENIED"), "{b}");
    let (s, b) = srv.get(&format!("/api/v1/secrets/{stripe}"), &admin).await;
    assert_eq!((s, b["value"].as_str(), b["environment"].as_str()), (200, Some("stripe-prod-value"), Some("production")));

    // Tokens are not keys: the key list shows the admin key alone.
    let (s, keys) = srv.get("/api/v1/api-keys", &admin).await;
    assert_eq!((s, keys["count"].as_i64()), (200, Some(1)), "{keys}");
    assert!(!keys.to_string().contains("lkt_"), "{keys}");
    let (s, listed) = srv.get("/api/v1/tokens", &admin).await;
    assert_eq!((s, listed["count"].as_i64()), (200, Some(2)), "{listed}");
    assert!(!listed.to_string().contains(&token), "never the token itself");
    assert_eq!(listed["tokens"][0]["reason"], "summarise");
    // Nor can the key routes reach a token.
    let token_id = issued["tokenId"].as_str().unwrap();
    let (s, b) = srv.delete(&format!("/api/v1/api-keys/{token_id}"), &admin).await;
    assert_eq!((s, code(&b)), (404, "NOT_FOUND"), "{b}");
    let (s, b) = srv.post(&format!("/api/v1/api-keys/{token_id}/regenerate"), &admin, json!({})).await;
    assert_eq!((s, code(&b)), (404, "NOT_FOUND"), "{b}");
    assert_eq!(srv.get(&format!("/api/v1/secrets/{gemini}"), &token).await.0, 200);

    // The trail records the mint with its scopes.
    let (_, audit) = srv.get("/api/v1/audit?action=token.create", &admin).await;
    assert!(audit["total"].as_i64().unwrap() >= 2, "{audit}");
    assert!(audit.to_string().contains("production/gemini/*"), "{audit}");
}

#[tokio::test]
async fn a_token_reaches_exactly_its_scopes_on_sqlite() {
    token_story(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_token_reaches_exactly_its_scopes_on_postgres() {
    token_story(Backend::Postgres).await;
}

async fn never_wider_than_its_key(backend: Backend) {
    let srv = Server::start(backend).await;
    let admin = srv.signup(&unique("wide")).await;
    let key = |body: Value| {
        let srv = &srv;
        let admin = admin.clone();
        async move {
            let (s, b) = srv.post("/api/v1/api-keys", &admin, body).await;
            assert_eq!(s, 201, "{b}");
            b["apiKey"].as_str().unwrap().to_owned()
        }
    };
    let reader = key(json!({ "name": "reader", "permissions": "read" })).await;
    let (s, b) = mint(&srv, &reader, json!({ "scopes": ["secrets:read:*", "secrets:write:dev/*"] })).await;
    assert_eq!((s, code(&b)), (403, "SCOPE_DENIED"), "{b}");
    assert!(b["message"].as_str().unwrap().contains("secrets:write:dev/*"), "names what is too wide: {b}");
    let (s, _) = mint(&srv, &reader, json!({ "scopes": ["secrets:read:*"] })).await;
    assert_eq!(s, 201);

    // A project-scoped key: its tokens carry its scope, and ask for no other project.
    let (_, p1) = srv.post("/api/v1/projects", &admin, json!({ "name": "one" })).await;
    let (_, p2) = srv.post("/api/v1/projects", &admin, json!({ "name": "two" })).await;
    let (p1, p2) = (p1["id"].as_str().unwrap().to_owned(), p2["id"].as_str().unwrap().to_owned());
    let scoped = key(json!({ "name": "one-only", "permissions": "write", "projectScope": [p1] })).await;
    let (s, b) = mint(&srv, &scoped, json!({ "scopes": ["secrets:read:*"], "projectScope": [p2] })).await;
    assert_eq!((s, code(&b)), (403, "SCOPE_DENIED"), "{b}");
    let (scoped_token, _) = minted(&srv, &scoped, json!({ "scopes": ["secrets:read:*"] })).await;
    let (_, mine) = srv.get("/api/v1/tokens", &scoped).await;
    assert_eq!(mine["tokens"][0]["projectScope"], json!([p1]), "{mine}");
    let (s, _) = srv.post("/api/v1/secrets", &admin, json!({ "name": "IN_TWO", "value": "v", "projectId": p2 })).await;
    assert_eq!(s, 201);
    let (_, listed) = srv.get("/api/v1/secrets", &scoped_token).await;
    assert_eq!(listed["count"], 0, "{listed}");

    // A key that expires in an hour mints nothing that outlives it.
    let soon = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let brief = key(json!({ "name": "brief", "permissions": "read", "expiresAt": soon })).await;
    let (s, b) = mint(&srv, &brief, json!({ "scopes": ["secrets:read:*"], "ttl": "2h" })).await;
    assert_eq!((s, code(&b)), (403, "SCOPE_DENIED"), "{b}");
    let (s, _) = mint(&srv, &brief, json!({ "scopes": ["secrets:read:*"], "ttl": "30m" })).await;
    assert_eq!(s, 201);

    // Bad requests are 400 and store nothing.
    let (_, before) = srv.get("/api/v1/tokens", &admin).await;
    for bad in [
        json!({ "scopes": [] }),
        json!({ "scopes": ["secrets:read"] }),
        json!({ "scopes": ["keys:read:*"] }),
        json!({ "scopes": ["secrets:peek:*"] }),
        json!({ "scopes": ["secrets:read:*"], "ttl": "31d" }),
        json!({ "scopes": ["secrets:read:*"], "ttl": "soon" }),
        json!({ "scopes": ["secrets:read:*"], "ttl": 0 }),
        json!({ "scopes": ["secrets:read:*"], "maxUses": 0 }),
        json!({ "scopes": ["secrets:read:*"], "ipAllowlist": ["not-an-ip"] }),
        json!({ "scopes": ["secrets:read:*"], "ipAllowlist": [] }),
        json!({ "scopes": ["secrets:read:*"], "extra": 1 }),
    ] {
        let (s, b) = mint(&srv, &admin, bad.clone()).await;
        assert_eq!((s, code(&b)), (400, "INVALID_REQUEST"), "{bad}: {b}");
    }
    let (_, after) = srv.get("/api/v1/tokens", &admin).await;
    assert_eq!(before["count"], after["count"]);
}

#[tokio::test]
async fn a_token_is_never_wider_than_its_key_on_sqlite() {
    never_wider_than_its_key(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_token_is_never_wider_than_its_key_on_postgres() {
    never_wider_than_its_key(Backend::Postgres).await;
}

async fn tokens_stop(backend: Backend) {
    let srv = Server::start(backend).await;
    let admin = srv.signup(&unique("stop")).await;
    let id = secret(&srv, &admin, "dev", "KEY", "dev-value").await;
    let path = format!("/api/v1/secrets/{id}");
    let read_all = json!(["secrets:read:*"]);

    // maxUses = 3 under 50 concurrent requests: exactly 3 succeed.
    let (limited, _) = minted(&srv, &admin, json!({ "scopes": read_all, "maxUses": 3 })).await;
    let answers = futures::future::join_all((0..50).map(|_| srv.get(&path, &limited))).await;
    let ok = answers.iter().filter(|(s, _)| *s == 200).count();
    let exhausted = answers.iter().filter(|(s, b)| *s == 401 && code(b) == "TOKEN_EXHAUSTED").count();
    assert_eq!((ok, exhausted), (3, 47), "{answers:?}");
    let (_, listed) = srv.get("/api/v1/tokens", &admin).await;
    assert_eq!((listed["tokens"][0]["uses"].as_i64(), listed["tokens"][0]["maxUses"].as_i64()), (Some(3), Some(3)), "{listed}");

    // Revoked: the next request stops (a cached token too), and a second revoke is 409.
    let (revokable, rid) = minted(&srv, &admin, json!({ "scopes": read_all })).await;
    assert_eq!(srv.get(&path, &revokable).await.0, 200);
    let (s, b) = srv.post(&format!("/api/v1/tokens/{rid}/revoke"), &admin, json!({})).await;
    assert_eq!(s, 204, "{b}");
    let (s, b) = srv.get(&path, &revokable).await;
    assert_eq!((s, code(&b)), (401, "TOKEN_REVOKED"), "{b}");
    let (s, b) = srv.post(&format!("/api/v1/tokens/{rid}/revoke"), &admin, json!({})).await;
    assert_eq!((s, code(&b)), (409, "ALREADY_REVOKED"), "{b}");

    // The minting key revokes its own tokens; another non-admin key cannot see them.
    let make = |name: &'static str| {
        let (srv, admin) = (&srv, admin.clone());
        async move {
            let (_, b) = srv.post("/api/v1/api-keys", &admin, json!({ "name": name, "permissions": "write" })).await;
            b["apiKey"].as_str().unwrap().to_owned()
        }
    };
    let (agent, other) = (make("agent").await, make("other").await);
    let (_, tid) = minted(&srv, &agent, json!({ "scopes": read_all })).await;
    let (s, b) = srv.post(&format!("/api/v1/tokens/{tid}/revoke"), &other, json!({})).await;
    assert_eq!((s, code(&b)), (404, "NOT_FOUND"), "{b}");
    let (_, theirs) = srv.get("/api/v1/tokens", &other).await;
    assert_eq!(theirs["count"], 0);
    let (s, _) = srv.post(&format!("/api/v1/tokens/{tid}/revoke"), &agent, json!({})).await;
    assert_eq!(s, 204);

    // A key's tokens end with it: revoked (or regenerated, narrowed), its live tokens are revoked too;
    // a rename leaves them be.
    let (kept, _) = minted(&srv, &agent, json!({ "scopes": read_all })).await;
    let (_, keys) = srv.get("/api/v1/api-keys", &admin).await;
    let agent_id = keys["apiKeys"].as_array().unwrap().iter().find(|k| k["name"] == "agent").unwrap()["id"].as_str().unwrap().to_owned();
    let (s, _) = srv.put(&format!("/api/v1/api-keys/{agent_id}"), &admin, json!({ "name": "agent-renamed" })).await;
    assert_eq!(s, 200);
    assert_eq!(srv.get(&path, &kept).await.0, 200);
    let (s, _) = srv.put(&format!("/api/v1/api-keys/{agent_id}"), &admin, json!({ "permissions": "read" })).await;
    assert_eq!(s, 200);
    let (s, b) = srv.get(&path, &kept).await;
    assert_eq!((s, code(&b)), (401, "TOKEN_REVOKED"), "{b}");
    let (after, _) = minted(&srv, &agent, json!({ "scopes": read_all })).await;
    let (s, _) = srv.delete(&format!("/api/v1/api-keys/{agent_id}"), &admin).await;
    assert_eq!(s, 200);
    let (s, b) = srv.get(&path, &after).await;
    assert_eq!((s, code(&b)), (401, "TOKEN_REVOKED"), "{b}");
    let (_, trail) = srv.get("/api/v1/audit?action=token.revoke", &admin).await;
    assert!(trail["total"].as_i64().unwrap() >= 2, "{trail}");

    // Expired.
    let (brief, _) = minted(&srv, &admin, json!({ "scopes": read_all, "ttl": "1s" })).await;
    let mut last = (0, Value::Null);
    for _ in 0..40 {
        last = srv.get(&path, &brief).await;
        if last.0 == 401 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!((last.0, code(&last.1)), (401, "TOKEN_EXPIRED"), "{:?}", last.1);

    // Addresses: the client is 127.0.0.1.
    let (far, _) = minted(&srv, &admin, json!({ "scopes": read_all, "ipAllowlist": ["10.0.0.0/8"] })).await;
    let (s, b) = srv.get(&path, &far).await;
    assert_eq!((s, code(&b)), (401, "IP_NOT_ALLOWED"), "{b}");
    let (near, _) = minted(&srv, &admin, json!({ "scopes": read_all, "ipAllowlist": ["127.0.0.1/32", "::1"] })).await;
    assert_eq!(srv.get(&path, &near).await.0, 200);

    // Each refusal is on the record.
    let (_, failed) = srv.get("/api/v1/audit?action=auth.failed", &admin).await;
    let text = failed.to_string();
    for reason in ["exhausted", "revoked", "expired", "ip_not_allowed"] {
        assert!(text.contains(reason), "{reason}: {failed}");
    }
}

#[tokio::test]
async fn tokens_stop_when_used_up_revoked_expired_or_far_on_sqlite() {
    tokens_stop(Backend::Sqlite).await;
}

#[tokio::test]
async fn tokens_stop_when_used_up_revoked_expired_or_far_on_postgres() {
    tokens_stop(Backend::Postgres).await;
}

/// `latchkey mcp` given a token: each call is one use, with the token's scopes.
#[tokio::test]
async fn a_stdio_session_with_a_token_counts_each_call() {
    use std::io::{BufRead, BufReader, Write};
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start_with(common::Opts { data_dir: Some(dir.path().to_path_buf()), ..common::Opts::new(Backend::Sqlite) }).await;
    let admin = srv.signup(&unique("stdio-tok")).await;
    secret(&srv, &admin, "production", "gemini/KEY", "gemini-prod-value").await;
    secret(&srv, &admin, "production", "stripe/KEY", "stripe-prod-value").await;
    let (token, _) = minted(&srv, &admin, json!({ "scopes": ["secrets:read:production/gemini/*"], "maxUses": 2 })).await;
    assert_eq!(srv.stop(), Some(0));

    let mut child = common::mcp_stdio(dir.path()).env("LATCHKEY_API_KEY", &token).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let init = json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": { "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": { "name": "t", "version": "1" } } });
    let call = |id: i64, name: &str| {
        json!({ "jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": { "name": "get_secret", "arguments": { "name": name, "environment": "production" } } })
        .to_string()
    };
    let lines = [
        format!("{init}\n{}", json!({ "jsonrpc": "2.0", "method": "notifications/initialized" })),
        call(2, "gemini/KEY"),
        call(3, "stripe/KEY"),
        call(4, "gemini/KEY"),
    ];
    // One call at a time: a session runs concurrent calls concurrently.
    let answers = tokio::task::spawn_blocking(move || {
        let mut out = std::collections::BTreeMap::new();
        let mut reader = BufReader::new(stdout);
        for line in lines {
            writeln!(stdin, "{line}").unwrap();
            stdin.flush().unwrap();
            let mut answer = String::new();
            reader.read_line(&mut answer).unwrap();
            let v: Value = serde_json::from_str(&answer).unwrap();
            let id = v["id"].as_i64().unwrap();
            let answer = match v["result"]["isError"].as_bool() {
                Some(true) => {
                    let text = v["result"]["content"][0]["text"].as_str().unwrap();
                    serde_json::from_str::<Value>(text).unwrap()["code"].as_str().unwrap().to_owned()
                }
                _ => v["result"]["structuredContent"]["value"].as_str().unwrap_or("OK").to_owned(),
            };
            out.insert(id, answer);
        }
        drop(stdin);
        out
    });
    let answers = tokio::time::timeout(std::time::Duration::from_secs(60), answers).await.expect("answers").unwrap();
    let _ = tokio::task::spawn_blocking(move || child.wait()).await;
    assert_eq!(answers.get(&2).map(String::as_str), Some("gemini-prod-value"), "{answers:?}");
    assert_eq!(answers.get(&3).map(String::as_str), Some("SCOPE_DENIED"), "{answers:?}");
    assert_eq!(answers.get(&4).map(String::as_str), Some("TOKEN_EXHAUSTED"), "{answers:?}");
}

async fn lists_exactly_its_globs(backend: Backend) {
    let srv = Server::start(backend).await;
    let admin = srv.signup(&unique("globs")).await;
    for (env, name) in
        [("production", "svc/A_B"), ("production", "svc/AXB"), ("production", "SVC/A_B"), ("staging", "svc/A_B"), ("", "svc/A_B")]
    {
        secret(&srv, &admin, env, name, "v").await;
    }
    let listed = |globs: &[&str]| {
        let (srv, admin) = (&srv, admin.clone());
        let scopes: Vec<String> = globs.iter().map(|g| format!("secrets:list:{g}")).collect();
        async move {
            let (token, _) = minted(srv, &admin, json!({ "scopes": scopes })).await;
            let (s, b) = srv.get("/api/v1/secrets?limit=500", &token).await;
            assert_eq!(s, 200, "{b}");
            let mut paths: Vec<String> = b["secrets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    let env = s["environment"].as_str().unwrap_or_default();
                    let name = s["name"].as_str().unwrap();
                    if env.is_empty() { name.to_owned() } else { format!("{env}/{name}") }
                })
                .collect();
            paths.sort();
            paths
        }
    };
    // `_` is a plain character in a glob; case counts on both databases.
    assert_eq!(listed(&["production/svc/A_B"]).await, ["production/svc/A_B"]);
    assert_eq!(listed(&["production/svc/A?B"]).await, ["production/svc/AXB", "production/svc/A_B"]);
    assert_eq!(listed(&["*/svc/A_B"]).await, ["production/svc/A_B", "staging/svc/A_B"]);
    assert_eq!(listed(&["svc/*"]).await, ["svc/A_B"], "a secret with no environment has its bare name as its path");
    assert_eq!(listed(&["production/SVC/*", "staging/*"]).await, ["production/SVC/A_B", "staging/svc/A_B"]);
    assert_eq!(listed(&["*"]).await.len(), 5);
    // A read scope does not list.
    let (reader, _) = minted(&srv, &admin, json!({ "scopes": ["secrets:read:*"] })).await;
    let (_, b) = srv.get("/api/v1/secrets", &reader).await;
    assert_eq!(b["count"], 0, "{b}");
}

#[tokio::test]
async fn a_token_lists_exactly_its_globs_on_sqlite() {
    lists_exactly_its_globs(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_token_lists_exactly_its_globs_on_postgres() {
    lists_exactly_its_globs(Backend::Postgres).await;
}

/// A GET with an `X-Forwarded-For` header (no network beyond loopback: the
/// header only names addresses).
async fn get_forwarded(srv: &Server, path: &str, key: &str, forwarded: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .get(srv.url(path))
        .header("X-API-Key", key)
        .header("X-Forwarded-For", forwarded)
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// `ipAllowlist` judges the client's address: the socket peer, or what a
/// proxy the operator trusts (`--trusted-proxy`) forwarded; a forwarded
/// address from anyone else is ignored, so a client cannot pick its own.
#[tokio::test]
async fn a_token_allowlist_believes_only_trusted_proxies() {
    let behind = Server::start_with(common::Opts::new(Backend::Sqlite).arg("--trusted-proxy").arg("127.0.0.1/32")).await;
    let admin = behind.signup(&unique("proxy")).await;
    let id = secret(&behind, &admin, "production", "KEY", "v").await;
    let path = format!("/api/v1/secrets/{id}");
    let (office, _) = minted(&behind, &admin, json!({ "scopes": ["secrets:read:*"], "ipAllowlist": ["203.0.113.0/24"] })).await;
    assert_eq!(get_forwarded(&behind, &path, &office, "203.0.113.7").await.0, 200, "the proxy vouches for the office");
    let (s, b) = get_forwarded(&behind, &path, &office, "198.51.100.1").await;
    assert_eq!((s, code(&b)), (401, "IP_NOT_ALLOWED"), "{b}");
    // The rightmost hop is the one the trusted proxy saw; what the client wrote further left does not count.
    let (s, b) = get_forwarded(&behind, &path, &office, "203.0.113.7, 198.51.100.1").await;
    assert_eq!((s, code(&b)), (401, "IP_NOT_ALLOWED"), "{b}");
    let (s, b) = behind.get(&path, &office).await;
    assert_eq!((s, code(&b)), (401, "IP_NOT_ALLOWED"), "without the header the client is the proxy itself: {b}");

    let direct = Server::start(Backend::Sqlite).await;
    let admin = direct.signup(&unique("direct")).await;
    let id = secret(&direct, &admin, "production", "KEY", "v").await;
    let path = format!("/api/v1/secrets/{id}");
    let (office, _) = minted(&direct, &admin, json!({ "scopes": ["secrets:read:*"], "ipAllowlist": ["203.0.113.0/24"] })).await;
    let (s, b) = get_forwarded(&direct, &path, &office, "203.0.113.7").await;
    assert_eq!((s, code(&b)), (401, "IP_NOT_ALLOWED"), "no trusted proxy: the header is ignored: {b}");
}
