//! Webhooks, through the real server on SQLite and PostgreSQL, delivering to
//! a receiver in the test on loopback (so the servers run with
//! `--allow-private-destinations`): the signing secret answered once and
//! never again; events of a secret's life arrive signed (checked here with
//! HMAC-SHA256) and without its value; a receiver that answers 500 gets the
//! delivery again later; a delivery pending when the server is killed goes
//! out after it restarts; two servers on one PostgreSQL deliver each event
//! once; the test event; a private URL refused without the flag; a webhook
//! turned off or deleted takes its deliveries with it; a read-only key and
//! another tenant get nothing.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use common::{Backend, Opts, Server, unique};
use hmac::Mac;
use serde_json::{Value, json};

const HOOKS: &str = "/api/v1/webhooks";

fn code(b: &Value) -> &str {
    b["code"].as_str().unwrap_or_default()
}

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Got {
    path: String,
    event: String,
    delivery: String,
    signature: String,
    body: String,
    /// What the receiver answered.
    answered: u16,
}

impl Got {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

#[derive(Clone, Default)]
struct Inbox {
    got: Arc<Mutex<Vec<Got>>>,
    /// Requests still to answer 500 (negative: every one).
    failing: Arc<AtomicI64>,
}

/// A webhook receiver on 127.0.0.1: records every POST, answers 500 while
/// `failing` says so, else 200.
struct Receiver {
    addr: SocketAddr,
    inbox: Inbox,
}

async fn receive(State(inbox): State<Inbox>, Path(name): Path<String>, headers: HeaderMap, body: String) -> StatusCode {
    let left = inbox.failing.load(Ordering::SeqCst);
    let status = if left != 0 {
        if left > 0 {
            inbox.failing.fetch_sub(1, Ordering::SeqCst);
        }
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    };
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert_eq!(h("content-type"), "application/json");
    inbox.got.lock().unwrap().push(Got {
        path: name,
        event: h("latchkey-event"),
        delivery: h("latchkey-delivery"),
        signature: h("latchkey-signature"),
        body,
        answered: status.as_u16(),
    });
    status
}

impl Receiver {
    async fn start() -> Receiver {
        let inbox = Inbox::default();
        let app = axum::Router::new().route("/hook/{name}", axum::routing::post(receive)).with_state(inbox.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { addr, inbox }
    }

    fn url(&self, name: &str) -> String {
        format!("http://{}/hook/{name}", self.addr)
    }

    fn fail(&self, n: i64) {
        self.inbox.failing.store(n, Ordering::SeqCst);
    }

    fn got(&self) -> Vec<Got> {
        self.inbox.got.lock().unwrap().clone()
    }

    /// Waits (bounded) until what was received satisfies `done`.
    async fn wait(&self, what: &str, srv: &Server, done: impl Fn(&[Got]) -> bool) -> Vec<Got> {
        for _ in 0..600 {
            let got = self.got();
            if done(&got) {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{what}: not received; got {:#?}\nserver log:\n{}", self.got(), srv.stderr());
    }
}

/// Checks a `Latchkey-Signature` as a receiver should: the HMAC-SHA256 of
/// `"{t}.{body}"` under the secret, and `t` within five minutes of now.
fn verify(secret: &str, got: &Got) {
    let parts: HashMap<&str, &str> = got.signature.split(',').filter_map(|kv| kv.split_once('=')).collect();
    let t: i64 = parts["t"].parse().unwrap();
    assert!((chrono::Utc::now().timestamp() - t).abs() <= 300, "timestamp outside the tolerance: {}", got.signature);
    let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{}", got.body).as_bytes());
    let expected: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(parts["v1"], expected, "bad signature on {got:?}");
}

fn opts(backend: Backend) -> Opts {
    Opts::new(backend).arg("--allow-private-destinations").env("LATCHKEY_WEBHOOK_POLL_MS", "50").env("LATCHKEY_WEBHOOK_BACKOFF_MS", "200")
}

async fn create_hook(srv: &Server, key: &str, body: Value) -> Value {
    let (s, b) = srv.post(HOOKS, key, body).await;
    assert_eq!(s, 201, "{b}");
    b
}

async fn deliveries(srv: &Server, key: &str, hook: &str) -> Vec<Value> {
    let (s, b) = srv.get(&format!("{HOOKS}/{hook}"), key).await;
    assert_eq!(s, 200, "{b}");
    b["deliveries"].as_array().unwrap().clone()
}

async fn story(backend: Backend) {
    let rx = Receiver::start().await;
    let srv = Server::start_with(opts(backend)).await;
    let key = srv.signup(&unique("hooks")).await;

    // Refusals: unknown events (naming the valid ones), a URL that is not http(s), a bad secret.
    let (s, b) = srv.post(HOOKS, &key, json!({ "url": rx.url("a"), "events": ["secret.read"] })).await;
    assert_eq!((s, code(&b)), (400, "INVALID_REQUEST"), "{b}");
    assert!(b["message"].as_str().unwrap().contains("secret.created") && b["message"].as_str().unwrap().contains("claim.redeemed"), "{b}");
    let (s, b) = srv.post(HOOKS, &key, json!({ "url": "ftp://example.com/x", "events": ["*"] })).await;
    assert_eq!((s, code(&b)), (400, "INVALID_REQUEST"), "{b}");
    let (s, b) = srv.post(HOOKS, &key, json!({ "url": rx.url("a"), "events": ["*"], "secret": "short" })).await;
    assert_eq!((s, code(&b)), (400, "INVALID_REQUEST"), "{b}");

    // The secret is answered once, and never again.
    let hook = create_hook(
        &srv,
        &key,
        json!({ "url": rx.url("a"), "events": ["secret.created", "secret.updated", "secret.deleted"], "description": "ci" }),
    )
    .await;
    let id = hook["id"].as_str().unwrap().to_owned();
    let secret = hook["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_") && secret.len() > 40, "{hook}");
    let (s, list) = srv.get(HOOKS, &key).await;
    assert_eq!((s, list["count"].as_u64()), (200, Some(1)), "{list}");
    let (_, one) = srv.get(&format!("{HOOKS}/{id}"), &key).await;
    for shown in [list.to_string(), one.to_string()] {
        assert!(!shown.contains(&secret) && !shown.contains("\"secret\""), "the secret is not shown again: {shown}");
    }
    assert_eq!(one["events"], json!(["secret.created", "secret.updated", "secret.deleted"]), "{one}");

    // A read-only key, a project-less admin of another tenant: nothing.
    let (_, ro) = srv.post("/api/v1/api-keys", &key, json!({ "name": "reader", "permissions": "read" })).await;
    let ro = ro["apiKey"].as_str().unwrap().to_owned();
    for (m, path) in [("GET", HOOKS.to_owned()), ("GET", format!("{HOOKS}/{id}")), ("POST", format!("{HOOKS}/{id}/test"))] {
        let (s, b) = srv.call(m, &path, Some(&ro), None).await;
        assert_eq!((s, code(&b)), (403, "SCOPE_DENIED"), "{m} {path}: {b}");
    }
    let (s, b) = srv.post(HOOKS, &ro, json!({ "url": rx.url("x"), "events": ["*"] })).await;
    assert_eq!((s, code(&b)), (403, "SCOPE_DENIED"), "{b}");
    let other = srv.signup(&unique("hooks-other")).await;
    let (s, _) = srv.get(&format!("{HOOKS}/{id}"), &other).await;
    assert_eq!(s, 404, "another tenant's webhook is as missing as none");
    assert_eq!(srv.get(HOOKS, &other).await.1["count"], 0);

    // A secret's life: three events, signed, none holding a value.
    let (v1, v2) = (format!("first-{}", unique("value")), format!("second-{}", unique("value")));
    let (s, created) = srv.post("/api/v1/secrets", &key, json!({ "name": "db-password", "value": v1 })).await;
    assert_eq!(s, 201, "{created}");
    let sid = created["id"].as_str().unwrap().to_owned();
    let (s, b) = srv.get(&format!("/api/v1/secrets/{sid}"), &key).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = srv.put(&format!("/api/v1/secrets/{sid}"), &key, json!({ "value": v2 })).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = srv.delete(&format!("/api/v1/secrets/{sid}"), &key).await;
    assert_eq!(s, 200, "{b}");
    let got = rx.wait("three events", &srv, |g| g.len() >= 3).await;
    let events: Vec<&str> = got.iter().map(|g| g.event.as_str()).collect();
    assert_eq!(events.len(), 3, "{got:#?}");
    for e in ["secret.created", "secret.updated", "secret.deleted"] {
        assert!(events.contains(&e), "{e} missing: {events:?}");
    }
    for g in &got {
        verify(&secret, g);
        assert!(!g.body.contains(&v1) && !g.body.contains(&v2), "a payload holds a value: {}", g.body);
        let p = g.json();
        assert_eq!(p["type"], g.event);
        assert!(p["id"].as_str().unwrap().starts_with("evt_"), "{p}");
        assert!(g.delivery.starts_with("whd_"), "{g:?}");
        assert!(p["tenantId"].is_string() && p["createdAt"].is_string(), "{p}");
        assert_eq!((p["data"]["resourceType"].as_str(), p["data"]["resourceId"].as_str()), (Some("secret"), Some(sid.as_str())), "{p}");
        assert_eq!(p["data"]["name"], "db-password", "{p}");
    }
    assert!(got.iter().all(|g| g.path == "a"), "{got:#?}");
    let shown = deliveries(&srv, &key, &id).await;
    assert_eq!(shown.len(), 3, "{shown:?}");
    assert!(shown.iter().all(|d| d["status"] == "delivered" && d["attempts"] == 1 && d["lastStatusCode"] == 200), "{shown:?}");
    assert!(shown.iter().all(|d| d.get("body").is_none() && d["nextAttemptAt"].is_null()), "{shown:?}");

    // A receiver that fails twice gets the delivery a third time.
    rx.fail(2);
    let (s, b) = srv.post("/api/v1/secrets", &key, json!({ "name": "retried", "value": unique("v") })).await;
    assert_eq!(s, 201, "{b}");
    let got = rx
        .wait("the retried delivery", &srv, |g| {
            g.iter().any(|x| x.event == "secret.created" && x.answered == 200 && x.body.contains("retried"))
        })
        .await;
    let tries: Vec<&Got> = got.iter().filter(|x| x.body.contains("\"retried\"")).collect();
    assert_eq!(tries.iter().map(|x| x.answered).collect::<Vec<_>>(), [500, 500, 200], "{tries:#?}");
    assert!(tries.iter().all(|x| x.delivery == tries[0].delivery && x.json()["id"] == tries[0].json()["id"]), "one delivery, tried thrice");
    let shown = deliveries(&srv, &key, &id).await;
    let d = shown.iter().find(|d| d["id"] == tries[0].delivery.as_str()).unwrap();
    assert_eq!(
        (d["status"].as_str(), d["attempts"].as_i64(), d["lastStatusCode"].as_i64()),
        (Some("delivered"), Some(3), Some(200)),
        "{d}"
    );

    // The test event, for this webhook only; a new secret signs what follows.
    let (s, t) = srv.call("POST", &format!("{HOOKS}/{id}/test"), Some(&key), None).await;
    assert_eq!(s, 202, "{t}");
    let delivery = t["deliveryId"].as_str().unwrap().to_owned();
    let got = rx.wait("the test event", &srv, |g| g.iter().any(|x| x.delivery == delivery)).await;
    let test = got.iter().find(|x| x.delivery == delivery).unwrap();
    assert_eq!(test.event, "webhook.test");
    verify(&secret, test);
    let (s, b) = srv.put(&format!("{HOOKS}/{id}"), &key, json!({ "regenerateSecret": true, "events": ["*"] })).await;
    assert_eq!(s, 200, "{b}");
    let secret2 = b["secret"].as_str().unwrap().to_owned();
    assert_ne!(secret2, secret);
    let (s, b) = srv.post("/api/v1/api-keys", &key, json!({ "name": "deployer", "permissions": "write" })).await;
    assert_eq!(s, 201, "{b}");
    let got = rx.wait("apikey.created", &srv, |g| g.iter().any(|x| x.event == "apikey.created")).await;
    let made = got.iter().find(|x| x.event == "apikey.created").unwrap();
    verify(&secret2, made);
    assert!(!made.body.contains(b["apiKey"].as_str().unwrap()), "no key in a payload: {}", made.body);

    // Turned off: no test; deleted: gone with its deliveries.
    let (s, b) = srv.put(&format!("{HOOKS}/{id}"), &key, json!({ "enabled": false })).await;
    assert_eq!((s, b["enabled"].as_bool()), (200, Some(false)), "{b}");
    let (s, b) = srv.call("POST", &format!("{HOOKS}/{id}/test"), Some(&key), None).await;
    assert_eq!((s, code(&b)), (409, "CONFLICT"), "{b}");
    let (s, b) = srv.delete(&format!("{HOOKS}/{id}"), &key).await;
    assert_eq!((s, b["deleted"].as_bool()), (200, Some(true)), "{b}");
    assert_eq!(srv.get(&format!("{HOOKS}/{id}"), &key).await.0, 404);
    assert_eq!(srv.sql("DELETE FROM webhook_deliveries WHERE webhook_id = $1", &[&id]).await, 0, "its deliveries went with it");

    // The audit trail says what happened, never the secret.
    let (_, trail) = srv.get("/api/v1/audit?resourceType=webhook&limit=100", &key).await;
    let trail = trail.to_string();
    for action in ["webhook.create", "webhook.update", "webhook.test", "webhook.delete"] {
        assert!(trail.contains(action), "{action} not audited: {trail}");
    }
    assert!(!trail.contains(&secret) && !trail.contains(&secret2) && !trail.contains("/hook/a"), "{trail}");
    assert!(!srv.stderr().contains("webhook"), "the worker logged a failure:\n{}", srv.stderr());
}

#[tokio::test]
async fn story_on_sqlite() {
    story(Backend::Sqlite).await;
}

#[tokio::test]
async fn story_on_postgres() {
    story(Backend::Postgres).await;
}

/// A delivery still pending when the server is killed goes out once it is back.
async fn survives_a_restart(backend: Backend) {
    let rx = Receiver::start().await;
    rx.fail(-1);
    let data = tempfile::tempdir().unwrap();
    // A long first backoff: the kill lands between two attempts.
    let mut o = opts(backend).env("LATCHKEY_WEBHOOK_BACKOFF_MS", "2000");
    o.data_dir = Some(data.path().to_path_buf());
    let srv = Server::start_with(o).await;
    let database_url = srv.database_url.clone();
    let key = srv.signup(&unique("hooks-restart")).await;
    let hook = create_hook(&srv, &key, json!({ "url": rx.url("r"), "events": ["secret.created"] })).await;
    let id = hook["id"].as_str().unwrap().to_owned();
    let (s, b) = srv.post("/api/v1/secrets", &key, json!({ "name": "restart", "value": unique("v") })).await;
    assert_eq!(s, 201, "{b}");
    rx.wait("a first, failed attempt", &srv, |g| !g.is_empty()).await;
    let mut recorded = false;
    for _ in 0..200 {
        let d = deliveries(&srv, &key, &id).await;
        if d.first().is_some_and(|d| d["lastStatusCode"] == 500 && d["status"] == "pending") {
            recorded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(recorded, "the failed attempt was not recorded: {:?}", deliveries(&srv, &key, &id).await);
    drop(srv); // SIGKILL
    rx.fail(0);
    let mut o = opts(backend);
    o.data_dir = Some(data.path().to_path_buf());
    o.database_url = database_url;
    let srv = Server::start_with(o).await;
    let got = rx.wait("the delivery after the restart", &srv, |g| g.iter().any(|x| x.answered == 200)).await;
    assert!(got.iter().all(|x| x.delivery == got[0].delivery), "{got:#?}");
    let d = deliveries(&srv, &key, &id).await;
    assert_eq!((d.len(), d[0]["status"].as_str()), (1, Some("delivered")), "{d:?}");
    assert!(d[0]["attempts"].as_i64().unwrap() >= 2, "{d:?}");
}

#[tokio::test]
async fn survives_a_restart_on_sqlite() {
    survives_a_restart(Backend::Sqlite).await;
}

#[tokio::test]
async fn survives_a_restart_on_postgres() {
    survives_a_restart(Backend::Postgres).await;
}

/// Two servers on one PostgreSQL, both running the worker: each event goes once.
#[tokio::test]
async fn two_servers_deliver_each_event_once() {
    let rx = Receiver::start().await;
    let one = Server::start_with(opts(Backend::Postgres).env("LATCHKEY_WEBHOOK_POLL_MS", "20")).await;
    let mut o = opts(Backend::Postgres).env("LATCHKEY_WEBHOOK_POLL_MS", "20");
    o.database_url = one.database_url.clone();
    let two = Server::start_with(o).await;
    let key = one.signup(&unique("hooks-two")).await;
    create_hook(&one, &key, json!({ "url": rx.url("x"), "events": ["*"] })).await;
    const N: usize = 24;
    for n in 0..N {
        let srv = if n % 2 == 0 { &one } else { &two };
        let (s, b) = srv.post("/api/v1/secrets", &key, json!({ "name": format!("s{n}"), "value": unique("v") })).await;
        assert_eq!(s, 201, "{b}");
    }
    rx.wait("every event", &one, |g| g.len() >= N).await;
    // Many more turns of both workers: nothing more arrives.
    let (s, t) = one
        .call("POST", &format!("{HOOKS}/{}/test", one.get(HOOKS, &key).await.1["webhooks"][0]["id"].as_str().unwrap()), Some(&key), None)
        .await;
    assert_eq!(s, 202, "{t}");
    let got = rx.wait("the test event after them", &one, |g| g.iter().any(|x| x.event == "webhook.test")).await;
    let mut seen = HashMap::new();
    for g in got.iter().filter(|g| g.event == "secret.created") {
        *seen.entry(g.json()["id"].as_str().unwrap().to_owned()).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), N, "{seen:?}");
    assert!(seen.values().all(|&n| n == 1), "an event went twice: {seen:?}");
    assert_eq!(got.len(), N + 1, "{got:#?}");
}

/// Without `--allow-private-destinations`, a loopback URL is refused at
/// creation (400), and a name that resolves to one at each delivery.
async fn private_destinations_refused(backend: Backend) {
    let rx = Receiver::start().await;
    let srv =
        Server::start_with(Opts::new(backend).env("LATCHKEY_WEBHOOK_POLL_MS", "50").env("LATCHKEY_WEBHOOK_BACKOFF_MS", "100000")).await;
    let key = srv.signup(&unique("hooks-private")).await;
    for url in [rx.url("p"), "http://10.1.2.3/hook".to_owned(), "http://[::1]:9/".to_owned()] {
        let (s, b) = srv.post(HOOKS, &key, json!({ "url": url, "events": ["*"] })).await;
        assert_eq!((s, code(&b)), (400, "INVALID_REQUEST"), "{url}: {b}");
        assert!(b["message"].as_str().unwrap().contains("--allow-private-destinations"), "{b}");
    }
    let by_name = format!("http://localhost:{}/hook/p", rx.addr.port());
    let hook = create_hook(&srv, &key, json!({ "url": by_name, "events": ["*"] })).await;
    let id = hook["id"].as_str().unwrap();
    let (s, _) = srv.call("POST", &format!("{HOOKS}/{id}/test"), Some(&key), None).await;
    assert_eq!(s, 202);
    let mut refused = None;
    for _ in 0..400 {
        let d = deliveries(&srv, &key, id).await;
        if d.first().is_some_and(|d| d["attempts"].as_i64() >= Some(1) && d["lastError"].is_string()) {
            refused = Some(d[0].clone());
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let d = refused.unwrap_or_else(|| panic!("no attempt recorded:\n{}", srv.stderr()));
    assert!(d["lastError"].as_str().unwrap().contains("refused"), "{d}");
    assert_eq!((d["status"].as_str(), d["lastStatusCode"].as_i64()), (Some("pending"), None), "{d}");
    assert!(rx.got().is_empty(), "nothing reached the loopback receiver");
}

#[tokio::test]
async fn private_destinations_refused_on_sqlite() {
    private_destinations_refused(Backend::Sqlite).await;
}

#[tokio::test]
async fn private_destinations_refused_on_postgres() {
    private_destinations_refused(Backend::Postgres).await;
}
