//! Bad input gets a clear error with a stable code, and changes nothing.

mod common;

use common::{Backend, Opts, Server, unique};
use serde_json::{Value, json};

async fn count(srv: &Server, key: &str) -> i64 {
    srv.get("/api/v1/secrets", key).await.1["count"].as_i64().unwrap()
}

async fn raw(srv: &Server, method: &str, path: &str, key: &str, content_type: Option<&str>, body: &str) -> (u16, Value) {
    let mut req = srv.http.request(method.parse().unwrap(), srv.url(path)).header("X-API-Key", key).body(body.to_owned());
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn malformed_requests_are_rejected_and_change_nothing() {
    let srv = Server::start_with(Opts::new(Backend::Sqlite).arg("--max-value-bytes").arg("1024")).await;
    let key = srv.signup(&unique("errors")).await;
    let (_, ok) = srv.post("/api/v1/secrets", &key, json!({ "name": "KEEP", "value": "original" })).await;
    let id = ok["id"].as_str().unwrap().to_owned();

    let code = |v: &Value| v["code"].as_str().unwrap_or_default().to_owned();
    let cases: Vec<(&str, Option<&str>, &str, u16, &str)> = vec![
        ("malformed JSON", Some("application/json"), "{\"name\": ", 400, "INVALID_REQUEST"),
        ("missing value", Some("application/json"), r#"{"name":"X"}"#, 400, "INVALID_REQUEST"),
        ("bad enum", Some("application/json"), r#"{"name":"X","value":"v","secretType":"bogus"}"#, 400, "INVALID_REQUEST"),
        ("unknown field", Some("application/json"), r#"{"name":"X","value":"v","valeu":"typo"}"#, 400, "INVALID_REQUEST"),
        ("bad name", Some("application/json"), r#"{"name":"has space","value":"v"}"#, 400, "INVALID_REQUEST"),
        ("bad environment", Some("application/json"), r#"{"name":"X","value":"v","environment":"prod/eu"}"#, 400, "INVALID_REQUEST"),
        (
            "unknown project",
            Some("application/json"),
            r#"{"name":"X","value":"v","projectId":"00000000-0000-0000-0000-000000000000"}"#,
            400,
            "INVALID_REQUEST",
        ),
        ("not JSON content type", Some("text/plain"), r#"{"name":"X","value":"v"}"#, 400, "INVALID_REQUEST"),
        ("wrong JSON type", Some("application/json"), r#"{"name":"X","value":42}"#, 400, "INVALID_REQUEST"),
        ("duplicate name", Some("application/json"), r#"{"name":"KEEP","value":"v"}"#, 409, "ALREADY_EXISTS"),
    ];
    for (what, ct, body, status, want) in cases {
        let (s, b) = raw(&srv, "POST", "/api/v1/secrets", &key, ct, body).await;
        assert_eq!((s, code(&b).as_str()), (status, want), "{what}: {b}");
        assert!(!b["message"].as_str().unwrap().is_empty());
    }
    let big = "x".repeat(1025);
    let (s, b) = srv.post("/api/v1/secrets", &key, json!({ "name": "BIG", "value": big })).await;
    assert_eq!((s, code(&b).as_str()), (413, "PAYLOAD_TOO_LARGE"));
    let (s, b) = srv.put(&format!("/api/v1/secrets/{id}"), &key, json!({ "value": big })).await;
    assert_eq!((s, code(&b).as_str()), (413, "PAYLOAD_TOO_LARGE"));
    let huge = "y".repeat(2 * 1024 * 1024);
    let (s, b) = srv.post("/api/v1/secrets", &key, json!({ "name": "HUGE", "value": huge })).await;
    assert_eq!((s, code(&b).as_str()), (413, "PAYLOAD_TOO_LARGE"), "body limit answers in the error shape");
    let (s, b) = srv.put(&format!("/api/v1/secrets/{id}"), &key, json!({})).await;
    assert_eq!((s, code(&b).as_str()), (400, "INVALID_REQUEST"), "empty update");

    assert_eq!(count(&srv, &key).await, 1, "nothing was created");
    let (_, got) = srv.get(&format!("/api/v1/secrets/{id}"), &key).await;
    assert_eq!((got["value"].as_str(), got["version"].as_i64()), (Some("original"), Some(1)), "nothing was changed");

    // Unknown ids and routes answer 404 in the same shape.
    let (s, b) = srv.get("/api/v1/secrets/not-a-uuid", &key).await;
    assert_eq!((s, code(&b).as_str()), (404, "SECRET_NOT_FOUND"));
    let (s, headers, b) = srv.call_full("GET", "/api/v1/nothing-here", Some(&key), None).await;
    assert_eq!((s, code(&b).as_str()), (404, "NOT_FOUND"));
    assert_eq!(headers["cache-control"], "no-store", "errors too");
    let (s, b) = srv.call("GET", "/api/v1/secrets", Some("sc_free_not-a-key"), None).await;
    assert_eq!((s, code(&b).as_str()), (401, "UNAUTHORIZED"));
    let resp = srv.http.get(srv.url("/api/v1/secrets")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert!(resp.headers().contains_key("www-authenticate"));
    let resp = srv.http.get(srv.url("/api/v1/secrets")).bearer_auth(&key).send().await.unwrap();
    assert_eq!(resp.status(), 200, "Authorization: Bearer works too");
}

/// A client that sends a whole oversized body before reading reads the 413,
/// not a reset: the server reads and drops the excess before it closes.
#[tokio::test]
async fn an_oversized_upload_is_answered_not_reset() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let srv = Server::start_with(Opts::new(Backend::Sqlite).arg("--max-value-bytes").arg("1024")).await;
    let key = srv.signup(&unique("upload")).await;
    let addr = srv.base.trim_start_matches("http://").to_owned();
    let body = format!(r#"{{"name":"HUGE","value":"{}"}}"#, "z".repeat(4 * 1024 * 1024));
    for round in 0..3 {
        let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let head = format!(
            "POST /api/v1/secrets HTTP/1.1\r\nHost: {addr}\r\nX-API-Key: {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        conn.write_all(head.as_bytes()).await.unwrap();
        conn.write_all(body.as_bytes()).await.unwrap_or_else(|e| panic!("round {round}: the upload was cut: {e}"));
        let mut answer = Vec::new();
        let read = tokio::time::timeout(std::time::Duration::from_secs(10), conn.read_to_end(&mut answer)).await;
        read.expect("the server closes after answering").unwrap_or_else(|e| panic!("round {round}: {e}"));
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 413"), "round {round}: {answer}");
        assert!(answer.contains("PAYLOAD_TOO_LARGE"), "round {round}: {answer}");
    }
    assert_eq!(count(&srv, &key).await, 0, "nothing was created");
}

#[tokio::test]
async fn signup_rules() {
    let srv = Server::start_with(Opts::new(Backend::Sqlite).arg("--signup-per-minute").arg("3")).await;
    let tenant = unique("dup");
    let (s, headers, b) = srv.call_full("POST", "/api/signup", None, Some(json!({ "tenantId": tenant }))).await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(headers["cache-control"], "no-store", "the key is shown once; no cache may keep it");
    let (s, b) = srv.call("POST", "/api/signup", None, Some(json!({ "tenantId": tenant }))).await;
    assert_eq!((s, b["code"].as_str()), (409, Some("ALREADY_EXISTS")));
    let (s, b) = srv.call("POST", "/api/signup", None, Some(json!({ "tenantId": "Not A Slug" }))).await;
    assert_eq!((s, b["code"].as_str()), (400, Some("INVALID_REQUEST")));
    // The limiter has now seen three attempts from 127.0.0.1.
    let (s, headers, b) = srv.call_full("POST", "/api/signup", None, Some(json!({ "tenantId": unique("late") }))).await;
    assert_eq!((s, b["code"].as_str()), (429, Some("RATE_LIMITED")), "{b}");
    assert!(headers.get("retry-after").unwrap().to_str().unwrap().parse::<u64>().unwrap() >= 1);

    let closed = Server::start_with(Opts::new(Backend::Sqlite).arg("--signup").arg("closed")).await;
    let (s, b) = closed.call("POST", "/api/signup", None, Some(json!({ "tenantId": unique("closed") }))).await;
    assert_eq!((s, b["code"].as_str()), (403, Some("SIGNUP_CLOSED")));
}

/// An address that is not one is refused, and the tenant is not created: the
/// same id signs up right after with a real address.
#[tokio::test]
async fn signup_email_must_be_an_address() {
    let srv = Server::start(Backend::Sqlite).await;
    let tenant = unique("mail");
    for bad in ["not-an-address", "a@localhost", "<ops@co.dev>", "ops@co.dev, boss@co.dev"] {
        let (s, b) = srv.call("POST", "/api/signup", None, Some(json!({ "tenantId": tenant, "email": bad }))).await;
        assert_eq!((s, b["code"].as_str()), (400, Some("INVALID_REQUEST")), "{bad}: {b}");
        assert!(b["message"].as_str().unwrap().contains("email"), "{b}");
    }
    let (s, b) = srv.call("POST", "/api/signup", None, Some(json!({ "tenantId": tenant, "email": " ops@co.dev " }))).await;
    assert_eq!(s, 201, "{b}");
}

#[tokio::test]
async fn free_plan_quota_is_enforced() {
    let srv = Server::start_with(Opts::new(Backend::Sqlite).arg("--default-plan").arg("free")).await;
    let key = srv.signup(&unique("free")).await;
    assert!(key.starts_with("sc_free_"));
    let (_, plan) = srv.get("/api/v1/plan", &key).await;
    assert_eq!(plan["limits"]["maxSecrets"], 5);
    for i in 0..5 {
        assert_eq!(srv.post("/api/v1/secrets", &key, json!({ "name": format!("S{i}"), "value": "v" })).await.0, 201);
    }
    let (s, b) = srv.post("/api/v1/secrets", &key, json!({ "name": "S5", "value": "v" })).await;
    assert_eq!((s, b["code"].as_str()), (403, Some("PLAN_LIMIT_REACHED")));
    assert_eq!(count(&srv, &key).await, 5);
    let (_, plan) = srv.get("/api/v1/plan", &key).await;
    assert_eq!(plan["usage"]["secrets"], 5);
    assert!(plan["usage"]["apiCallsThisMonth"].as_i64().unwrap() >= 7);
}

/// Twenty agents of one free-plan tenant create secrets at once on
/// PostgreSQL: exactly the quota's five go in, every other one gets 403
/// (creations under a limited plan count one at a time, under the tenant's lock).
#[tokio::test]
async fn free_plan_quota_holds_under_concurrent_creates_on_postgres() {
    let srv = std::sync::Arc::new(Server::start_with(Opts::new(Backend::Postgres).arg("--default-plan").arg("free")).await);
    let key = srv.signup(&unique("free-race")).await;
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let (srv, key) = (srv.clone(), key.clone());
            tokio::spawn(async move { srv.post("/api/v1/secrets", &key, json!({ "name": format!("RACE_{i}"), "value": "v" })).await })
        })
        .collect();
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    let created = answers.iter().filter(|(s, _)| *s == 201).count();
    for (s, b) in answers.iter().filter(|(s, _)| *s != 201) {
        assert_eq!((*s, b["code"].as_str()), (403, Some("PLAN_LIMIT_REACHED")), "{b}");
    }
    assert_eq!((created, count(&srv, &key).await), (5, 5));
}

/// Clients that trickle bytes do not hold the server: one sending its header a
/// line a second, one sending nothing at all, and one sending a signup body a
/// byte a second are all cut off (the last with 408 REQUEST_TIMEOUT) long
/// before they would have finished, while other clients are served
/// throughout. Each client gives up on its own after 40 s.
#[tokio::test]
async fn slow_clients_are_cut_off() {
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let srv = Server::start(Backend::Sqlite).await;
    let addr = srv.base.trim_start_matches("http://").to_owned();
    const STEPS: usize = 40;

    // Writes `first`, then `step` once a second; the answer read when the server closes, or None if it never did.
    let trickle = async |first: String, step: &'static [u8]| -> Option<String> {
        let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
        conn.write_all(first.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        for _ in 0..STEPS {
            let mut buf = [0u8; 4096];
            match tokio::time::timeout(Duration::from_secs(1), conn.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return Some(String::from_utf8_lossy(&answer).into_owned()),
                Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
                Err(_) if step.is_empty() => {}
                Err(_) => {
                    if conn.write_all(step).await.is_err() {
                        return Some(String::from_utf8_lossy(&answer).into_owned());
                    }
                }
            }
        }
        None
    };
    let header = trickle(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n"), b"X-Slow: 1\r\n");
    let idle = trickle(String::new(), b"");
    let body = trickle(
        format!("POST /api/signup HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{"),
        b" ",
    );
    let others = async {
        for _ in 0..10 {
            let (s, _) = srv.call("GET", "/healthz", None, None).await;
            assert_eq!(s, 200, "another client during the trickle");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    };
    let (header, idle, body, ()) = tokio::join!(header, idle, body, others);
    assert!(header.is_some(), "a header sent a line a second was never cut off");
    assert!(idle.is_some(), "a connection that sends nothing was never closed");
    let body = body.expect("a body sent a byte a second was never cut off");
    assert!(body.starts_with("HTTP/1.1 408") && body.contains("REQUEST_TIMEOUT"), "{body}");
}

/// With `--max-connections 3`, three idle connections hold every slot: a
/// fourth client is not served (it waits in the listen queue, the server
/// keeps its file handles) until one of them goes away, and then it is.
///
/// No sleep decides it: the listen queue is first come, first served, so the
/// three are taken before the fourth whenever the server gets to them. The
/// one thing a slow machine can change is that the server cuts an idle
/// connection off (10 s without a header) before the fourth's wait is over,
/// and then serving the fourth is right: such a round is seen (the idle
/// connection reads as closed) and run again. Each wait gives up on its own.
#[tokio::test]
async fn connections_past_the_limit_wait_for_a_free_one() {
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let srv = Server::start_with(Opts::new(Backend::Sqlite).arg("--max-connections").arg("3")).await;
    let addr = srv.base.trim_start_matches("http://").to_owned();
    let mut rounds = 0;
    let (mut idle, mut fourth) = loop {
        rounds += 1;
        let mut idle = Vec::new();
        for _ in 0..3 {
            idle.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
        }
        let mut fourth = tokio::net::TcpStream::connect(&addr).await.unwrap();
        fourth.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let early = tokio::time::timeout(Duration::from_millis(1500), fourth.read(&mut buf)).await;
        // An idle connection the server has closed reads 0 bytes at once; an open one would block.
        let mut one = [0u8; 1];
        let cut = idle.iter().any(|c| matches!(c.try_read(&mut one), Ok(0)));
        match early {
            Err(_) if !cut => break (idle, fourth),
            _ if cut && rounds < 3 => continue, // the server cut an idle one off first: too slow a round to judge
            _ => panic!("a fourth connection was served while three held every slot: {early:?} (round {rounds})"),
        }
    };
    drop(idle.remove(0));
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(30), fourth.read(&mut buf)).await.expect("served once a slot was free").unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// A tenant cannot lock itself out of its own secrets: the last admin key with
/// no project scope and no expiry cannot be revoked, narrowed, demoted or
/// given an expiry (409, nothing changes); once another such key exists it
/// can. Two such keys revoking each other at once leave one standing.
async fn the_last_root_key_stays(backend: Backend) {
    let srv = Server::start(backend).await;
    let root = srv.signup(&unique("root")).await;
    let (_, listed) = srv.get("/api/v1/api-keys", &root).await;
    let root_id = listed["apiKeys"][0]["id"].as_str().unwrap().to_owned();
    let (_, project) = srv.post("/api/v1/projects", &root, json!({ "name": "p" })).await;
    let path = format!("/api/v1/api-keys/{root_id}");
    for change in
        [json!({ "permissions": "write" }), json!({ "projectScope": [project["id"]] }), json!({ "expiresAt": "2999-01-01T00:00:00Z" })]
    {
        let (s, body) = srv.put(&path, &root, change.clone()).await;
        assert_eq!((s, body["code"].as_str()), (409, Some("CONFLICT")), "{change}: {body}");
    }
    let (s, body) = srv.delete(&path, &root).await;
    assert_eq!((s, body["code"].as_str()), (409, Some("CONFLICT")), "{body}");
    let (s, me) = srv.get("/api/v1/api-keys", &root).await;
    assert_eq!(s, 200, "the root key still works: {me}");
    assert_eq!((me["apiKeys"][0]["permissions"].as_str(), me["apiKeys"][0]["expiresAt"].as_str()), (Some("admin"), None), "{me}");

    // Other keys come and go freely; with a second root key the first may go.
    let (_, reader) = srv.post("/api/v1/api-keys", &root, json!({ "name": "reader", "permissions": "read" })).await;
    let (s, _) = srv.delete(&format!("/api/v1/api-keys/{}", reader["id"].as_str().unwrap()), &root).await;
    assert_eq!(s, 200);
    let (_, second) = srv.post("/api/v1/api-keys", &root, json!({ "name": "second", "permissions": "admin" })).await;
    let (second, second_id) = (second["apiKey"].as_str().unwrap().to_owned(), second["id"].as_str().unwrap().to_owned());
    let (s, body) = srv.delete(&path, &second).await;
    assert_eq!(s, 200, "{body}");
    let (s, _) = srv.delete(&format!("/api/v1/api-keys/{second_id}"), &second).await;
    assert_eq!(s, 409, "now the second is the last");

    // Two root keys revoking each other at the same moment: one stands.
    for round in 0..10 {
        let (_, third) = srv.post("/api/v1/api-keys", &second, json!({ "name": format!("third{round}"), "permissions": "admin" })).await;
        let (third, third_id) = (third["apiKey"].as_str().unwrap().to_owned(), third["id"].as_str().unwrap().to_owned());
        let (third_path, second_path) = (format!("/api/v1/api-keys/{third_id}"), format!("/api/v1/api-keys/{second_id}"));
        let (a, b) = tokio::join!(srv.delete(&third_path, &second), srv.delete(&second_path, &third));
        let mut standing = 0;
        for k in [&second, &third] {
            standing += (srv.get("/api/v1/api-keys", k).await.0 == 200) as usize;
        }
        assert_eq!(standing, 1, "round {round}: {a:?} {b:?}");
        if srv.get("/api/v1/api-keys", &second).await.0 != 200 {
            // The third one won; carry on with it as the survivor.
            let (_, listed) = srv.get("/api/v1/api-keys", &third).await;
            assert!(listed["apiKeys"].as_array().unwrap().iter().any(|k| k["id"] == third_id.as_str()));
            return;
        }
    }
}

#[tokio::test]
async fn the_last_root_key_stays_on_sqlite() {
    the_last_root_key_stays(Backend::Sqlite).await;
}

#[tokio::test]
async fn the_last_root_key_stays_on_postgres() {
    the_last_root_key_stays(Backend::Postgres).await;
}

/// An expiry can be set and taken away again (`null`), which an absent field
/// does not do; a key's name must not be empty, on creation or rename.
#[tokio::test]
async fn a_key_expiry_can_be_cleared_and_a_key_name_is_required() {
    let srv = Server::start(Backend::Sqlite).await;
    let root = srv.signup(&unique("expiry")).await;
    let (_, k) = srv.post("/api/v1/api-keys", &root, json!({ "name": "ci", "permissions": "read" })).await;
    let path = format!("/api/v1/api-keys/{}", k["id"].as_str().unwrap());
    let (s, set) = srv.put(&path, &root, json!({ "expiresAt": "2999-01-01T00:00:00Z" })).await;
    assert_eq!((s, set["expiresAt"].is_string()), (200, true), "{set}");
    let (s, kept) = srv.put(&path, &root, json!({ "name": "ci-renamed" })).await;
    assert_eq!((s, kept["expiresAt"].is_string()), (200, true), "an absent expiresAt leaves it: {kept}");
    let (s, cleared) = srv.put(&path, &root, json!({ "expiresAt": null })).await;
    assert_eq!((s, cleared["expiresAt"].clone()), (200, Value::Null), "null clears it: {cleared}");
    for (method, p, body) in
        [("POST", "/api/v1/api-keys", json!({ "name": " ", "permissions": "read" })), ("PUT", path.as_str(), json!({ "name": "" }))]
    {
        let (s, body) = srv.call(method, p, Some(&root), Some(body)).await;
        assert_eq!((s, body["code"].as_str()), (400, Some("INVALID_REQUEST")), "{body}");
    }
    let (_, listed) = srv.get("/api/v1/api-keys", &root).await;
    assert_eq!(listed["count"], 2, "the refused creation made no key: {listed}");
}

/// A key confined to a project may work in it but not end it: deleting a
/// project is the tenant's business, like creating one.
#[tokio::test]
async fn a_project_scoped_key_cannot_delete_its_project() {
    let srv = Server::start(Backend::Sqlite).await;
    let root = srv.signup(&unique("projdel")).await;
    let (_, project) = srv.post("/api/v1/projects", &root, json!({ "name": "alpha" })).await;
    let pid = project["id"].as_str().unwrap().to_owned();
    let (_, k) = srv.post("/api/v1/api-keys", &root, json!({ "name": "w", "permissions": "write", "projectScope": [pid] })).await;
    let scoped = k["apiKey"].as_str().unwrap().to_owned();
    let (s, body) = srv.delete(&format!("/api/v1/projects/{pid}"), &scoped).await;
    assert_eq!((s, body["code"].as_str()), (403, Some("SCOPE_DENIED")), "{body}");
    let (s, _) = srv.get(&format!("/api/v1/projects/{pid}"), &root).await;
    assert_eq!(s, 200, "the project is still there");
    let (s, _) = srv.delete(&format!("/api/v1/projects/{pid}"), &root).await;
    assert_eq!(s, 200, "an unscoped key may delete it");
}

/// The list filters as asked: a tag filter is trimmed as stored tags are,
/// and a filter the list does not know is refused, not ignored (which listed
/// everything, as if every secret matched).
#[tokio::test]
async fn the_secret_list_filters_as_asked() {
    let srv = Server::start(Backend::Sqlite).await;
    let root = srv.signup(&unique("filters")).await;
    srv.post("/api/v1/secrets", &root, json!({ "name": "TAGGED", "value": "v", "tags": [" Space "] })).await;
    let (_, found) = srv.get("/api/v1/secrets?tag=%20Space%20", &root).await;
    assert_eq!(found["count"], 1, "{found}");
    for query in ["category=database", "secret_type=api-key", "tags=x"] {
        let (s, body) = srv.get(&format!("/api/v1/secrets?{query}"), &root).await;
        assert_eq!((s, body["code"].as_str()), (400, Some("INVALID_REQUEST")), "{query}: {body}");
    }
}

/// Search finds text as it was written, accents and all, on both backends
/// (SQLite's LOWER folds ASCII letters only; it used to miss "Ärger" even
/// when searched for as "Ärger"), and ASCII letters in any case.
async fn search_finds_what_was_written(backend: Backend) {
    let srv = Server::start(backend).await;
    let key = srv.signup(&unique("search")).await;
    srv.post("/api/v1/secrets", &key, json!({ "name": "ACCENTED", "value": "v", "description": "Ärger Café", "tags": ["Über"] })).await;
    srv.post("/api/v1/secrets", &key, json!({ "name": "plain", "value": "v", "description": "nothing here" })).await;
    for term in ["Ärger", "Café", "café", "CAF", "Über", "accented", "rger"] {
        let (s, found) = srv.get(&format!("/api/v1/secrets?search={}", urlencode(term)), &key).await;
        assert_eq!((s, found["count"].as_i64()), (200, Some(1)), "{term}: {found}");
        assert_eq!(found["secrets"][0]["name"], "ACCENTED", "{term}");
    }
    let (_, none) = srv.get("/api/v1/secrets?search=%25", &key).await;
    assert_eq!(none["count"], 0, "a % matches itself, not everything: {none}");
}

fn urlencode(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

#[tokio::test]
async fn search_finds_what_was_written_on_sqlite() {
    search_finds_what_was_written(Backend::Sqlite).await;
}

#[tokio::test]
async fn search_finds_what_was_written_on_postgres() {
    search_finds_what_was_written(Backend::Postgres).await;
}

/// A free tenant's month holds 10,000 authenticated calls (its plan says so,
/// and `GET /api/v1/plan` counts them): the calls past that answer 403
/// PLAN_LIMIT_REACHED and change nothing. The month so far is put in the
/// audit log directly, as 9,997 entries.
#[tokio::test]
async fn a_free_tenant_stops_at_its_monthly_calls() {
    use sqlx::Connection;
    let srv = Server::start_with(Opts::new(Backend::Sqlite).env("LATCHKEY_DEFAULT_PLAN", "free")).await;
    let tenant = unique("monthly");
    let key = srv.signup(&tenant).await;
    let other = srv.signup(&unique("monthly-other")).await;
    let url = format!("sqlite://{}", srv.data_dir.join("latchkey.db").display());
    let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let so_far: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE tenant_id = ?").bind(&tenant).fetch_one(&mut db).await.unwrap();
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) \
         INSERT INTO audit_log (tenant_id, at, actor, front, action, resource_type, resource_id, outcome, ip, user_agent, detail) \
         SELECT ?, CAST(strftime('%s','now') AS INTEGER) * 1000, 'seed', 'rest', 'secret.list', 'secret', NULL, 'success', NULL, NULL, NULL FROM n",
    )
    .bind(9_997 - so_far)
    .bind(&tenant)
    .execute(&mut db)
    .await
    .unwrap();
    for call in 1..=3 {
        let (s, body) = srv.post("/api/v1/secrets", &key, json!({ "name": format!("S{call}"), "value": "v" })).await;
        assert_eq!(s, 201, "call {call} of the last three: {body}");
    }
    let (s, body) = srv.post("/api/v1/secrets", &key, json!({ "name": "S4", "value": "v" })).await;
    assert_eq!((s, body["code"].as_str()), (403, Some("PLAN_LIMIT_REACHED")), "{body}");
    let (s, _) = srv.get("/api/v1/secrets", &key).await;
    assert_eq!(s, 403, "reads too");
    let made: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM secrets WHERE tenant_id = ?").bind(&tenant).fetch_one(&mut db).await.unwrap();
    assert_eq!(made, 3, "the refused call changed nothing");
    let (s, _) = srv.get("/api/v1/secrets", &other).await;
    assert_eq!(s, 200, "another free tenant is not affected");
}
