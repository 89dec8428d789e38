//! Metrics and logs through the real server: `/metrics` on its own listener
//! only, series after some requests with no credential, secret name or value
//! in a label, request ids echoed or generated, JSON logs without colour
//! codes when stderr is a file.

mod common;

use common::{Backend, Opts, Server, unique};
use serde_json::{Value, json};

/// A free loopback port for the metrics listener (the public one reports
/// its own; this one is chosen by the test).
fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

async fn scrape(srv: &Server, addr: &str) -> String {
    let resp = srv.http.get(format!("http://{addr}/metrics")).send().await.expect("scrape");
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    resp.text().await.unwrap()
}

/// The value of the first series line that starts with `prefix` and holds every one of `labels`.
fn sample(text: &str, prefix: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && l.starts_with(prefix) && labels.iter().all(|w| l.contains(w)))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

async fn story(backend: Backend) {
    let addr = free_addr();
    let srv = Server::start_with(Opts::new(backend).arg("--metrics-listen").arg(&addr).env("LATCHKEY_LOG", "info")).await;
    let admin = srv.signup(&unique("metrics")).await;

    // Some traffic: a secret, reads of it (a cache miss then hits), a share opened by its token, a 404, an MCP tool call.
    let (s, b) = srv.post("/api/v1/secrets", &admin, json!({ "name": "STRIPE_KEY", "value": "sk-metric-value-1234" })).await;
    assert_eq!(s, 201, "{b}");
    let id = b["id"].as_str().unwrap().to_owned();
    for _ in 0..3 {
        let (s, b) = srv.get(&format!("/api/v1/secrets/{id}"), &admin).await;
        assert_eq!(s, 200, "{b}");
    }
    let (s, share) = srv.post("/api/v1/shares", &admin, json!({ "secretId": id, "expirationHours": 1, "maxUses": 1 })).await;
    assert_eq!(s, 201, "{share}");
    let token = share["token"].as_str().unwrap().to_owned();
    let (s, _) = srv.call("POST", &format!("/api/v1/shares/access/{token}"), None, None).await;
    assert_eq!(s, 200);
    let (s, _) = srv.get("/api/v1/nowhere/at-all", &admin).await;
    assert_eq!(s, 404);
    let mcp = common::mcp_client::connect(&srv, &admin).await;
    common::mcp_client::tool(&mcp, "list_secrets", json!({})).await.expect("list_secrets");
    let unknown = rmcp::model::CallToolRequestParams::new("no_such_tool_x9").with_arguments(serde_json::Map::new());
    assert!(mcp.call_tool(unknown).await.is_err(), "an unknown tool is a protocol error");
    mcp.cancel().await.ok();

    let text = scrape(&srv, &addr).await;
    let route = "route=\"/api/v1/secrets/{id}\"";
    let reads = sample(&text, "latchkey_http_requests_total", &[route, "method=\"GET\"", "status=\"200\""]);
    assert!(reads.is_some_and(|n| n >= 3.0), "reads by route template:\n{text}");
    assert!(sample(&text, "latchkey_http_requests_total", &["route=\"unmatched\"", "status=\"404\""]).is_some(), "{text}");
    assert!(sample(&text, "latchkey_http_request_duration_seconds_bucket", &[route]).is_some(), "latency histogram:\n{text}");
    assert!(sample(&text, "latchkey_mcp_tool_calls_total", &["tool=\"list_secrets\"", "outcome=\"success\""]).is_some(), "{text}");
    assert!(sample(&text, "latchkey_mcp_tool_calls_total", &["tool=\"unknown\""]).is_some(), "an unknown tool is not a label:\n{text}");
    assert!(sample(&text, "latchkey_audit_batch_entries_count", &[]).is_some_and(|n| n >= 1.0), "{text}");
    assert!(sample(&text, "latchkey_audit_batch_commit_seconds_bucket", &[]).is_some(), "{text}");
    assert!(sample(&text, "latchkey_cache_lookups_total", &["cache=\"secrets\"", "result=\"hit\""]).is_some(), "{text}");
    assert!(sample(&text, "latchkey_db_pool_connections", &["state=\"open\""]).is_some(), "{text}");
    assert_eq!(sample(&text, "latchkey_webhook_queue_depth", &[]), Some(0.0), "no webhooks, no queue:\n{text}");
    let rows = sample(&text, "latchkey_audit_trail_rows", &[]).expect("trail rows");
    assert!(rows >= 5.0, "{text}");
    let bytes = match backend {
        Backend::Sqlite => sample(&text, "latchkey_database_bytes", &[]),
        Backend::Postgres => sample(&text, "latchkey_audit_trail_bytes", &[]),
    };
    assert!(bytes.is_some_and(|b| b > 0.0), "{text}");
    // No credential, secret name or value in any label: routes are templates.
    for leak in [token.as_str(), &token[..12], "sk-metric-value", "STRIPE_KEY", &admin, "nowhere", "no_such_tool"] {
        assert!(!text.contains(leak), "{leak} in the metrics:\n{text}");
    }

    // The public listener has no /metrics; the metrics listener has nothing else.
    let (s, _) = srv.call("GET", "/metrics", None, None).await;
    assert_eq!(s, 404);
    let other = srv.http.get(format!("http://{addr}/api/v1/secrets")).send().await.unwrap();
    assert_eq!(other.status().as_u16(), 404);
    // And it refuses a Host that is not its own (DNS rebinding).
    let rebound = srv.http.get(format!("http://{addr}/metrics")).header("Host", "evil.example").send().await.unwrap();
    assert!(rebound.status().is_client_error(), "{}", rebound.status());

    // Request ids: a valid one is echoed; a bad or missing one is replaced by a fresh uuid.
    let echoed = srv.http.get(srv.url("/healthz")).header("x-request-id", "trace-42.abc").send().await.unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "trace-42.abc");
    for bad in [None, Some("has space"), Some(&"x".repeat(200)[..])] {
        let mut req = srv.http.get(srv.url("/healthz"));
        if let Some(bad) = bad {
            req = req.header("x-request-id", bad);
        }
        let resp = req.send().await.unwrap();
        let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert!(uuid::Uuid::parse_str(&id).is_ok() && Some(id.as_str()) != bad, "{id}");
    }
    // An error body names the id too.
    let resp = srv
        .http
        .get(srv.url("/api/v1/secrets/missing-one"))
        .header("X-API-Key", &admin)
        .header("x-request-id", "err-7")
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_client_error() && resp.headers()["x-request-id"] == "err-7");
    let body: Value = resp.json().await.unwrap();
    assert!(body["code"].is_string() && body["requestId"] == "err-7", "{body}");

    // Text logs to a file: no colour codes.
    assert!(!srv.stderr().contains('\u{1b}'), "ANSI escapes in a log file:\n{}", srv.stderr());
}

#[tokio::test]
async fn metrics_on_sqlite() {
    story(Backend::Sqlite).await;
}

#[tokio::test]
async fn metrics_on_postgres() {
    story(Backend::Postgres).await;
}

/// `LATCHKEY_LOG_FORMAT=json`: every stderr line is one JSON object, with no
/// escape codes, and a request's lines carry its request id.
#[tokio::test]
async fn json_logs() {
    let srv =
        Server::start_with(Opts::new(Backend::Sqlite).env("LATCHKEY_LOG_FORMAT", "json").env("LATCHKEY_LOG", "info,tower_http=debug"))
            .await;
    srv.signup(&unique("logs")).await;
    let resp = srv.http.get(srv.url("/healthz")).header("x-request-id", "json-log-1").send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let text = srv.stderr();
    assert!(!text.contains('\u{1b}'), "{text}");
    let lines: Vec<Value> =
        text.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    assert!(lines.iter().any(|l| l["fields"]["message"] == "latchkey listening"), "{text}");
    assert!(lines.iter().all(|l| l["level"].is_string() && l["timestamp"].is_string()), "{text}");
    // tower-http's lines about the request sit in its span, which names the id.
    assert!(lines.iter().any(|l| l["span"]["request_id"] == "json-log-1"), "{text}");
}

/// Without `--metrics-listen` nothing listens for metrics and the public listener has none.
#[tokio::test]
async fn metrics_are_off_by_default() {
    let srv = Server::start(Backend::Sqlite).await;
    let (s, b) = srv.call("GET", "/metrics", None, None).await;
    assert_eq!((s, b["code"].as_str()), (404, Some("NOT_FOUND")), "{b}");
}
