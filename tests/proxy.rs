//! The secret proxy, as an agent uses it: the server calls an API with a
//! credential the agent never sees. A loopback test server records what
//! arrived and echoes the credential back (raw and base64); the real `serve`
//! runs with `--allow-private-destinations` so it may reach that server.
//! Checked: the credential arrives in each inject mode; the answer has it
//! redacted; unbound URLs and methods are 403; a redirect to another origin
//! is answered, not followed; a same-origin one is followed; a timeout and a
//! closed port are 502 without the value; a long body is cut; a use_only
//! secret works through the proxy while its read is 403; every use is audited
//! with mechanism `proxy`. Without the flag, loopback targets (by address and
//! by `localhost`) are refused. On SQLite and PostgreSQL, over REST and MCP
//! (HTTP and stdio).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use common::mcp_client::{connect as mcp_client, tool};
use common::{Backend, Opts, Server, unique};
use serde_json::{Value, json};

const CAP: usize = 1024 * 1024;

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn code(b: &Value) -> &str {
    b["code"].as_str().unwrap_or_default()
}

/// One request as the upstream received it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    query: String,
    headers: HeaderMap,
}

/// A loopback HTTP server that records every request and answers by path.
#[derive(Clone)]
struct Upstream {
    base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

#[derive(Clone)]
struct UpstreamState {
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Where `/v1/away` redirects: another origin.
    elsewhere: String,
}

impl Upstream {
    async fn start(elsewhere: &str) -> Upstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let state = UpstreamState { seen: seen.clone(), elsewhere: elsewhere.to_owned() };
        let app = axum::Router::new().fallback(answer).with_state(state);
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Upstream { base, seen }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn last(&self) -> Seen {
        self.seen().last().cloned().expect("the upstream got a request")
    }
}

/// The credential a request carried, wherever it was put.
fn credential(headers: &HeaderMap, query: &str) -> Option<String> {
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
    if let Some(auth) = header("authorization") {
        if let Some(token) = auth.strip_prefix("Bearer ") {
            return Some(token.to_owned());
        }
        if let Some(pair) = auth.strip_prefix("Basic ") {
            let decoded = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(pair).ok()?).ok()?;
            return decoded.split_once(':').map(|(_, password)| password.to_owned());
        }
    }
    if let Some(key) = header("x-api-key") {
        return Some(key);
    }
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).ok()?;
    pairs.into_iter().find(|(k, _)| k == "key").map(|(_, v)| v)
}

async fn answer(State(s): State<UpstreamState>, method: Method, uri: Uri, headers: HeaderMap, _body: Bytes) -> Response {
    let query = uri.query().unwrap_or_default().to_owned();
    let cred = credential(&headers, &query).unwrap_or_default();
    s.seen.lock().unwrap().push(Seen { method: method.to_string(), path: uri.path().to_owned(), query, headers });
    match uri.path() {
        "/v1/big" => "a".repeat(2 * CAP).into_response(),
        // Cut at the cap six bytes into the credential.
        "/v1/cut" => format!("{}{cred}tail", "a".repeat(CAP - 6)).into_response(),
        "/v1/binary" => {
            let mut body = vec![0xff, 0x00];
            body.extend_from_slice(cred.as_bytes());
            body.into_response()
        }
        "/v1/slow" => {
            tokio::time::sleep(Duration::from_secs(20)).await;
            "late".into_response()
        }
        "/v1/away" => (StatusCode::FOUND, [("location", format!("{}/v1/echo", s.elsewhere))]).into_response(),
        "/v1/here" => (StatusCode::FOUND, [("location", "/v1/echo?from=here")]).into_response(),
        _ => (
            StatusCode::OK,
            [("x-echo", cred.clone()), ("x-echo-b64", b64(&cred))],
            format!("{{\"got\":\"{cred}\",\"b64\":\"{}\",\"path\":\"{}\"}}", b64(&cred), uri.path()),
        )
            .into_response(),
    }
}

fn binding(prefix: &str, methods: &[&str], inject: Value) -> Value {
    json!({ "urlPrefix": prefix, "methods": methods, "inject": inject })
}

async fn create(srv: &Server, key: &str, body: Value) -> String {
    let (s, b) = srv.post("/api/v1/secrets", key, body).await;
    assert_eq!(s, 201, "{b}");
    b["id"].as_str().unwrap().to_owned()
}

async fn proxy(srv: &Server, key: &str, id: &str, req: Value) -> (u16, Value) {
    srv.post(&format!("/api/v1/secrets/{id}/proxy"), key, req).await
}

/// A value that is its own URL encoding, so a query parameter carries it as is.
fn value(kind: &str) -> String {
    format!("{kind}_{}", uuid::Uuid::new_v4().simple())
}

/// Asserts the answer never holds the value, raw or base64, and that it
/// shows where it was instead.
fn redacted(answer: &Value, v: &str, name: &str) {
    let text = answer.to_string();
    assert!(!text.contains(v), "the value leaked: {text:.400}");
    assert!(!text.contains(&b64(v)), "the value's base64 leaked: {text:.400}");
    assert!(text.contains(&format!("[latchkey:{name}]")), "no label: {text:.400}");
}

async fn story(backend: Backend) {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://127.0.0.1:{}", l.local_addr().unwrap().port())
    };
    let other = Upstream::start("http://127.0.0.1:9").await;
    let up = Upstream::start(&other.base).await;
    let srv = Server::start_with(Opts::new(backend).arg("--allow-private-destinations")).await;
    let key = srv.signup(&unique("proxy")).await;
    let v1 = up.url("/v1/");
    let (vb, vh, vq, va) = (value("bearer"), value("header"), value("query"), value("basic"));
    let bearer = create(
        &srv,
        &key,
        json!({ "name": "BEARER_KEY", "value": vb, "exposure": "use_only",
                "bindings": [binding(&v1, &["GET", "POST"], json!({ "type": "bearer" }))] }),
    )
    .await;
    let header = create(
        &srv,
        &key,
        json!({ "name": "HEADER_KEY", "value": vh, "exposure": "masked",
                "bindings": [binding(&up.url("/v1/echo"), &[], json!({ "type": "header", "name": "X-Api-Key" }))] }),
    )
    .await;
    let query = create(
        &srv,
        &key,
        json!({ "name": "QUERY_KEY", "value": vq, "bindings": [
            binding(&v1, &["GET"], json!({ "type": "query", "name": "key" })),
            binding(&format!("{closed}/"), &[], json!({ "type": "query", "name": "key" })),
            binding("http://no-such-host.invalid/", &[], json!({ "type": "query", "name": "key" })),
        ] }),
    )
    .await;
    let basic = create(
        &srv,
        &key,
        json!({ "name": "BASIC_KEY", "value": va, "bindings": [binding(&v1, &[], json!({ "type": "basic", "username": "svc" }))] }),
    )
    .await;
    let unbound = create(&srv, &key, json!({ "name": "NO_BINDING", "value": value("none") })).await;

    // Each mode: the credential arrives where the binding says; the echo comes back redacted.
    let (s, got) = proxy(
        &srv,
        &key,
        &bearer,
        json!({ "method": "POST", "url": up.url("/v1/echo?x=1"), "body": "{\"a\":1}",
        "headers": { "Content-Type": "application/json", "X-Trace": "t1", "Host": "evil.test", "Connection": "close", "Accept-Encoding": "gzip" } }),
    )
    .await;
    assert_eq!(s, 200, "{got}");
    assert_eq!((got["status"].as_u64(), got["bodyEncoding"].as_str(), got["truncated"].as_bool()), (Some(200), Some("utf8"), Some(false)));
    assert_eq!(got["headers"]["x-echo"], "[latchkey:BEARER_KEY]");
    redacted(&got, &vb, "BEARER_KEY");
    let seen = up.last();
    assert_eq!((seen.method.as_str(), seen.path.as_str(), seen.query.as_str()), ("POST", "/v1/echo", "x=1"));
    assert_eq!(seen.headers["authorization"], format!("Bearer {vb}"));
    assert_eq!(seen.headers["x-trace"], "t1");
    assert_eq!(seen.headers["accept-encoding"], "identity", "no compressed answer hides an echo from the redactor");
    assert_eq!(seen.headers["host"], up.base.trim_start_matches("http://"), "the caller's Host is dropped");

    let (s, got) = proxy(&srv, &key, &header, json!({ "method": "GET", "url": up.url("/v1/echo") })).await;
    assert_eq!(s, 200, "{got}");
    redacted(&got, &vh, "HEADER_KEY");
    assert_eq!(up.last().headers["x-api-key"], vh.as_str());
    assert!(up.last().headers.get("authorization").is_none());

    let (s, got) = proxy(&srv, &key, &query, json!({ "method": "get", "url": up.url("/v1/echo?page=2") })).await;
    assert_eq!(s, 200, "{got}");
    redacted(&got, &vq, "QUERY_KEY");
    assert_eq!(up.last().query, format!("page=2&key={vq}"));

    let (s, got) = proxy(&srv, &key, &basic, json!({ "method": "PUT", "url": up.url("/v1/echo") })).await;
    assert_eq!(s, 200, "{got}");
    redacted(&got, &va, "BASIC_KEY");
    assert_eq!(up.last().headers["authorization"], format!("Basic {}", b64(&format!("svc:{va}"))));

    // Not bound: another path, another method, no bindings at all, another origin.
    let before = up.seen().len();
    for (id, req) in [
        (&bearer, json!({ "method": "GET", "url": up.url("/v2/echo") })),
        (&bearer, json!({ "method": "DELETE", "url": up.url("/v1/echo") })),
        (&header, json!({ "method": "GET", "url": up.url("/v1/echo-not") })),
        (&unbound, json!({ "method": "GET", "url": up.url("/v1/echo") })),
        (&bearer, json!({ "method": "GET", "url": other.url("/v1/echo") })),
    ] {
        let (s, body) = proxy(&srv, &key, id, req.clone()).await;
        assert_eq!((s, code(&body)), (403, "DESTINATION_NOT_BOUND"), "{req}: {body}");
    }
    let (_, body) = proxy(&srv, &key, &bearer, json!({ "method": "DELETE", "url": up.url("/v1/echo") })).await;
    let message = body["message"].as_str().unwrap();
    assert!(message.contains(&format!("GET|POST {v1}")), "names what is bound: {message}");
    assert!(!message.contains(&vb));
    assert_eq!(up.seen().len(), before, "nothing unbound reached the upstream");

    // The caller may not set what the binding sets.
    let (s, body) =
        proxy(&srv, &key, &bearer, json!({ "method": "GET", "url": up.url("/v1/echo"), "headers": { "authorization": "Bearer mine" } }))
            .await;
    assert_eq!((s, code(&body)), (400, "INVALID_REQUEST"), "{body}");
    let (s, body) = proxy(&srv, &key, &query, json!({ "method": "GET", "url": up.url("/v1/echo?key=mine") })).await;
    assert_eq!((s, code(&body)), (400, "INVALID_REQUEST"), "{body}");
    for bad in [
        json!({ "method": "TRACE", "url": up.url("/v1/echo") }),
        json!({ "method": "GET", "url": "file:///etc/passwd" }),
        json!({ "method": "GET" }),
        json!({ "method": "GET", "url": up.url("/v1/echo"), "timeoutSeconds": 31 }),
        json!({ "method": "GET", "url": up.url("/v1/echo"), "extra": 1 }),
    ] {
        let (s, body) = proxy(&srv, &key, &bearer, bad.clone()).await;
        assert_eq!((s, code(&body)), (400, "INVALID_REQUEST"), "{bad}: {body}");
    }
    assert_eq!(up.seen().len(), before);

    // A redirect to another origin is answered, not followed; a same-origin one is followed.
    let (s, got) = proxy(&srv, &key, &bearer, json!({ "method": "GET", "url": up.url("/v1/away") })).await;
    assert_eq!(s, 200, "{got}");
    assert_eq!((got["status"].as_u64(), got["redirects"].as_u64()), (Some(302), Some(0)), "{got}");
    assert_eq!(got["headers"]["location"], other.url("/v1/echo"));
    assert!(other.seen().is_empty(), "the other origin got nothing");
    let (s, got) = proxy(&srv, &key, &bearer, json!({ "method": "GET", "url": up.url("/v1/here") })).await;
    assert_eq!(s, 200, "{got}");
    assert_eq!((got["status"].as_u64(), got["redirects"].as_u64()), (Some(200), Some(1)), "{got}");
    let last = up.last();
    assert_eq!((last.path.as_str(), last.query.as_str()), ("/v1/echo", "from=here"));
    assert_eq!(last.headers["authorization"], format!("Bearer {vb}"), "same origin, same binding: the credential goes along");
    redacted(&got, &vb, "BEARER_KEY");

    // Failures: 502, and the message never holds the URL with the injected value.
    let (s, body) = proxy(&srv, &key, &query, json!({ "method": "GET", "url": up.url("/v1/slow"), "timeoutSeconds": 1 })).await;
    assert_eq!((s, code(&body)), (502, "UPSTREAM_FAILED"), "{body}");
    assert!(!body.to_string().contains(&vq), "{body}");
    let (s, body) = proxy(&srv, &key, &query, json!({ "method": "GET", "url": format!("{closed}/x") })).await;
    assert_eq!((s, code(&body)), (502, "UPSTREAM_FAILED"), "{body}");
    assert!(!body.to_string().contains(&vq), "{body}");
    let (s, body) = proxy(&srv, &key, &query, json!({ "method": "GET", "url": "http://no-such-host.invalid/x" })).await;
    assert_eq!((s, code(&body)), (502, "UPSTREAM_FAILED"), "{body}");
    assert!(body["message"].as_str().unwrap().contains("could not resolve no-such-host.invalid"), "{body}");

    // A long body is cut at the cap; one cut inside the value keeps none of it.
    let (s, got) = proxy(&srv, &key, &bearer, json!({ "method": "GET", "url": up.url("/v1/big") })).await;
    assert_eq!(s, 200);
    // (A little under the cap: the last bytes could have been the start of a value.)
    let len = got["body"].as_str().unwrap().len();
    assert_eq!(got["truncated"].as_bool(), Some(true));
    assert!((CAP - 200..=CAP).contains(&len), "{len}");
    let (s, got) = proxy(&srv, &key, &bearer, json!({ "method": "GET", "url": up.url("/v1/cut") })).await;
    assert_eq!((s, got["truncated"].as_bool()), (200, Some(true)));
    let body = got["body"].as_str().unwrap();
    assert!(body.len() < CAP && body.trim_end_matches('a').is_empty(), "the start of the value is dropped");

    // A binary body comes back in base64, redacted before encoding.
    let (s, got) = proxy(&srv, &key, &bearer, json!({ "method": "GET", "url": up.url("/v1/binary") })).await;
    assert_eq!((s, got["bodyEncoding"].as_str()), (200, Some("base64")), "{got}");
    let bytes = base64::engine::general_purpose::STANDARD.decode(got["body"].as_str().unwrap()).unwrap();
    assert_eq!(bytes, [&[0xffu8, 0x00][..], b"[latchkey:BEARER_KEY]"].concat());

    // use_only: no read, but the proxy works; masked: the read has no value.
    let (s, body) = srv.get(&format!("/api/v1/secrets/{bearer}"), &key).await;
    assert_eq!((s, code(&body)), (403, "EXPOSURE_DENIED"), "{body}");
    let (s, body) = srv.get(&format!("/api/v1/secrets/{header}"), &key).await;
    assert_eq!((s, body["value"].clone()), (200, Value::Null), "{body}");
    let (s, body) = proxy(&srv, &key, "00000000-0000-4000-8000-000000000000", json!({ "method": "GET", "url": up.url("/v1/echo") })).await;
    assert_eq!((s, code(&body)), (404, "SECRET_NOT_FOUND"), "{body}");

    // MCP over HTTP: by name and by id, the same redaction.
    let c = mcp_client(&srv, &key).await;
    let got =
        tool(&c, "http_request_with_secret", json!({ "secret": "HEADER_KEY", "method": "GET", "url": up.url("/v1/echo") })).await.unwrap();
    assert_eq!(got["status"], 200);
    redacted(&got, &vh, "HEADER_KEY");
    let got = tool(&c, "http_request_with_secret", json!({ "secret": bearer, "method": "GET", "url": up.url("/v1/echo") })).await.unwrap();
    redacted(&got, &vb, "BEARER_KEY");
    let err =
        tool(&c, "http_request_with_secret", json!({ "secret": "BEARER_KEY", "method": "GET", "url": up.url("/v3/") })).await.unwrap_err();
    assert_eq!(err, "DESTINATION_NOT_BOUND");
    let err = tool(&c, "http_request_with_secret", json!({ "secret": "BEARER_KEY", "method": "GET", "url": up.url("/v1/"), "sekret": 1 }))
        .await
        .unwrap_err();
    assert_eq!(err, "INVALID_REQUEST");
    c.cancel().await.ok();

    // Every use is audited with its mechanism; no trail holds a value.
    let (s, trail) = srv.get("/api/v1/audit?action=secret.use&limit=200", &key).await;
    assert_eq!(s, 200, "{trail}");
    let logs = trail["logs"].as_array().unwrap();
    let proxied = logs.iter().filter(|e| e["outcome"] == "success" && e["detail"]["mechanism"] == "proxy").count();
    assert!(proxied >= 14, "{proxied} proxy uses audited: {trail:.600}");
    assert!(logs.iter().any(|e| e["outcome"] == "denied" && e["detail"]["code"] == "DESTINATION_NOT_BOUND"), "refusals are audited too");
    let (_, all) = srv.get("/api/v1/audit?limit=500", &key).await;
    for v in [&vb, &vh, &vq, &va] {
        assert!(!all.to_string().contains(v.as_str()), "the trail holds a value");
    }
    assert!(!srv.stderr().contains(&vq), "the log holds a value");
}

#[tokio::test]
async fn proxy_story_on_sqlite() {
    story(Backend::Sqlite).await;
}

#[tokio::test]
async fn proxy_story_on_postgres() {
    story(Backend::Postgres).await;
}

/// Without `--allow-private-destinations`, a loopback destination is
/// refused, by address and by a name that resolves to it, after a binding
/// allowed it: nothing reaches the server.
async fn private_destinations_refused(backend: Backend) {
    let up = Upstream::start("http://127.0.0.1:9").await;
    let srv = Server::start_with(Opts::new(backend)).await;
    let key = srv.signup(&unique("strict")).await;
    let port = up.base.rsplit(':').next().unwrap().to_owned();
    let by_name = format!("http://localhost:{port}/v1/");
    let id = create(
        &srv,
        &key,
        json!({ "name": "LOOPBACK", "value": value("lo"), "bindings": [
            binding(&up.url("/v1/"), &[], json!({ "type": "bearer" })),
            binding(&by_name, &[], json!({ "type": "bearer" })),
            binding("http://[::ffff:127.0.0.1]/v1/", &[], json!({ "type": "bearer" })),
            binding("http://169.254.169.254/latest/", &[], json!({ "type": "bearer" })),
        ] }),
    )
    .await;
    for url in [
        up.url("/v1/echo"),
        format!("{by_name}echo"),
        "http://[::ffff:127.0.0.1]/v1/x".into(),
        "http://169.254.169.254/latest/meta-data".into(),
    ] {
        let (s, body) = proxy(&srv, &key, &id, json!({ "method": "GET", "url": url })).await;
        assert_eq!((s, code(&body)), (403, "DESTINATION_REFUSED"), "{url}: {body}");
        assert!(body["message"].as_str().unwrap().contains("--allow-private-destinations"), "{body}");
    }
    assert!(up.seen().is_empty(), "nothing reached the loopback server");
}

#[tokio::test]
async fn private_destinations_are_refused_by_default_on_sqlite() {
    private_destinations_refused(Backend::Sqlite).await;
}

#[tokio::test]
async fn private_destinations_are_refused_by_default_on_postgres() {
    private_destinations_refused(Backend::Postgres).await;
}

/// `latchkey mcp` (stdio) offers the tool too, under the same flag.
#[tokio::test]
async fn the_tool_works_over_stdio() {
    use rmcp::ServiceExt;
    let up = Upstream::start("http://127.0.0.1:9").await;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = common::mcp_stdio(dir.path());
    cmd.arg("--allow-private-destinations").env("LATCHKEY_LOG", "warn");
    let (transport, _) = rmcp::transport::TokioChildProcess::builder(tokio::process::Command::from(cmd))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let c = ().serve(transport).await.expect("stdio handshake");
    let v = value("stdio");
    let made = tool(&c, "set_secret", json!({ "name": "STDIO_KEY", "value": v })).await.unwrap();
    assert_eq!(made["created"], true, "{made}");
    let bindings = json!([binding(&up.url("/v1/"), &["GET"], json!({ "type": "header", "name": "X-Api-Key" }))]);
    tool(&c, "update_secret_metadata", json!({ "name": "STDIO_KEY", "bindings": bindings })).await.unwrap();
    tool(&c, "update_secret_metadata", json!({ "name": "STDIO_KEY", "exposure": "use_only" })).await.unwrap();
    assert_eq!(tool(&c, "get_secret", json!({ "name": "STDIO_KEY" })).await.unwrap_err(), "EXPOSURE_DENIED");
    let got =
        tool(&c, "http_request_with_secret", json!({ "secret": "STDIO_KEY", "method": "GET", "url": up.url("/v1/echo") })).await.unwrap();
    assert_eq!(got["status"], 200, "{got}");
    redacted(&got, &v, "STDIO_KEY");
    assert_eq!(up.last().headers["x-api-key"], v.as_str());
    c.cancel().await.ok();
}

/// Even at the most verbose log level, no line holds the injected value:
/// not the URL with it in the query, not the header, not the echo.
#[tokio::test]
async fn a_trace_log_holds_no_injected_value() {
    let up = Upstream::start("http://127.0.0.1:9").await;
    let srv = Server::start_with(Opts::new(Backend::Sqlite).arg("--allow-private-destinations").env("LATCHKEY_LOG", "trace")).await;
    let key = srv.signup(&unique("trace")).await;
    let (vq, vb) = (value("traced_q"), value("traced_b"));
    let q = create(
        &srv,
        &key,
        json!({ "name": "Q", "value": vq, "bindings": [binding(&up.url("/v1/"), &[], json!({ "type": "query", "name": "key" }))] }),
    )
    .await;
    let b =
        create(&srv, &key, json!({ "name": "B", "value": vb, "bindings": [binding(&up.url("/v1/"), &[], json!({ "type": "bearer" }))] }))
            .await;
    for (id, path) in [(&q, "/v1/echo"), (&q, "/v1/here"), (&b, "/v1/echo"), (&q, "/v1/slow")] {
        let (s, got) = proxy(&srv, &key, id, json!({ "method": "GET", "url": up.url(path), "timeoutSeconds": 1 })).await;
        assert!(s == 200 || s == 502, "{got}");
    }
    let bearer = format!("Bearer {vb}");
    assert!(up.seen().iter().any(|r| r.headers.get("authorization").is_some_and(|h| h == bearer.as_str())), "the bearer arrived");
    let log = srv.stderr();
    assert!(log.contains("/proxy"), "the requests were logged: {:.2000}", &log[log.len().saturating_sub(2000)..]);
    for v in [&vq, &vb] {
        assert!(!log.contains(v.as_str()) && !log.contains(&b64(v)), "the log holds a value");
    }
}
