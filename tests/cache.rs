//! The server keeps keys and current secret versions in memory. These tests
//! change the database behind its back — from a second process on the same
//! SQLite file, or from a second replica on the same PostgreSQL database —
//! and check that nothing stale is ever served: a rotated value, a revoked
//! key, a deleted secret; and that a write whose client hangs up half-way
//! leaves nothing stale either.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::time::Duration;

use common::pg_proxy::{PgProxy, upstream_of};
use common::{Backend, Opts, Server, unique};
use serde_json::{Value, json};

/// One `latchkey mcp` session on `dir`, as the holder of `key`.
struct Stdio {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
    next: usize,
}

impl Stdio {
    fn start(dir: &Path, key: &str) -> Stdio {
        Self::spawn(common::mcp_stdio(dir).env("LATCHKEY_API_KEY", key))
    }

    /// A session without a key: it acts as the local tenant's admin.
    fn start_local(dir: &Path) -> Stdio {
        Self::spawn(&mut common::mcp_stdio(dir))
    }

    fn spawn(command: &mut std::process::Command) -> Stdio {
        let mut child = command.env("LATCHKEY_LOG", "warn").spawn().unwrap();
        let stdin = child.stdin.take();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut session = Stdio { child, stdin, lines, next: 0 };
        let client = json!({ "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": { "name": "cache-test", "version": "1" } });
        session.request("initialize", client);
        let stdin = session.stdin.as_mut().expect("session open");
        writeln!(stdin, "{}", json!({ "jsonrpc": "2.0", "method": "notifications/initialized" })).unwrap();
        session
    }

    fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next;
        self.next += 1;
        let stdin = self.stdin.as_mut().expect("session open");
        writeln!(stdin, "{}", json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params })).unwrap();
        for line in self.lines.by_ref() {
            let v: Value = serde_json::from_str(&line.unwrap()).unwrap();
            if v["id"] == id {
                return v;
            }
        }
        panic!("stdout closed before answer {id}");
    }

    /// The tool's result, errors included.
    fn call(&mut self, name: &str, args: Value) -> Value {
        self.request("tools/call", json!({ "name": name, "arguments": args }))["result"].clone()
    }

    /// Sends `n` calls of one tool before reading any answer, so the session
    /// runs them concurrently; their results, errors included, in order.
    fn burst(&mut self, name: &str, args: Value, n: usize) -> Vec<Value> {
        let first = self.next;
        let stdin = self.stdin.as_mut().expect("session open");
        for id in first..first + n {
            let call = json!({ "jsonrpc": "2.0", "id": id, "method": "tools/call", "params": { "name": name, "arguments": args } });
            writeln!(stdin, "{call}").unwrap();
        }
        stdin.flush().unwrap();
        self.next += n;
        let mut results = vec![Value::Null; n];
        let mut left = n;
        for line in self.lines.by_ref() {
            let v: Value = serde_json::from_str(&line.unwrap()).unwrap();
            if let Some(i) = v["id"].as_u64().map(|id| id as usize).filter(|id| (first..first + n).contains(id)) {
                assert!(v.get("error").is_none(), "call {i}: {v}");
                results[i - first] = v["result"].clone();
                left -= 1;
                if left == 0 {
                    return results;
                }
            }
        }
        panic!("stdout closed with {left} answers missing");
    }

    /// Closes stdin and waits for the process to end on its own.
    fn finish(mut self) -> bool {
        self.stdin.take();
        self.child.wait().unwrap().success()
    }
}

/// Runs `latchkey mcp` on `dir` as the holder of `key`, calls each tool in
/// turn and returns the structured results (a tool error panics).
fn stdio_calls(dir: &Path, key: &str, calls: &[(&str, Value)]) -> Vec<Value> {
    let mut session = Stdio::start(dir, key);
    let mut out = vec![];
    for (name, args) in calls {
        let result = session.call(name, args.clone());
        assert_ne!(result["isError"], true, "{name}: {result}");
        out.push(result["structuredContent"].clone());
    }
    assert!(session.finish());
    out
}

/// A data dir of its own for `latchkey mcp` sessions, and the URL of its
/// SQLite file (for changes made behind the sessions' back).
fn local_data_dir() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join(latchkey::store::sqlite::DB_FILE).display());
    (dir, url)
}

/// Warms the server's cache: the key and the secret's current version.
async fn warm(srv: &Server, id: &str, keys: &[&str], value: &str) {
    for key in keys {
        for _ in 0..3 {
            let (s, body) = srv.get(&format!("/api/v1/secrets/{id}"), key).await;
            assert_eq!((s, body["value"].as_str()), (200, Some(value)), "{body}");
        }
    }
}

/// Reads the secret from `srv` as `key` until it has `value`, for at most
/// `tries` × 50 ms; the answer that had it.
async fn serves_eventually(srv: &Server, id: &str, key: &str, value: &str, tries: usize) -> Option<Value> {
    for _ in 0..tries {
        let (_, body) = srv.get(&format!("/api/v1/secrets/{id}"), key).await;
        if body["value"] == value {
            return Some(body);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// Two replicas on a fresh PostgreSQL database: A reaches it through a
/// [`PgProxy`] (so a test can break A's sessions), B directly. Returns once
/// A's listener has subscribed.
async fn replicas_behind_a_proxy() -> (PgProxy, Server, Server) {
    let direct = common::fresh_pg_database().await;
    let proxy = PgProxy::start(upstream_of(&direct)).await;
    let a = Server::start_with(Opts { database_url: Some(proxy.url_for(&direct)), ..Opts::new(Backend::Postgres) }).await;
    let b = Server::start_with(Opts { database_url: Some(direct), ..Opts::new(Backend::Postgres) }).await;
    for _ in 0..100 {
        if proxy.listeners() > 0 {
            return (proxy, a, b);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("replica A never sent LISTEN");
}

/// A second process on the same SQLite file rotates a secret, revokes a key
/// and deletes a secret; the very next request to `serve` sees each change.
#[tokio::test]
async fn sqlite_changes_by_another_process_are_seen_at_once() {
    let srv = Server::start(Backend::Sqlite).await;
    let admin = srv.signup(&unique("cache")).await;
    let (_, s) = srv.post("/api/v1/secrets", &admin, json!({ "name": "DB_PASSWORD", "value": "first" })).await;
    let id = s["secretId"].as_str().unwrap().to_owned();
    let (_, other) = srv.post("/api/v1/secrets", &admin, json!({ "name": "OLD_TOKEN", "value": "soon-gone" })).await;
    let other_id = other["secretId"].as_str().unwrap().to_owned();
    let (_, reader) = srv.post("/api/v1/api-keys", &admin, json!({ "name": "ci", "permissions": "read" })).await;
    let (reader_key, reader_id) = (reader["apiKey"].as_str().unwrap().to_owned(), reader["id"].as_str().unwrap().to_owned());
    warm(&srv, &id, &[&admin, &reader_key], "first").await;
    warm(&srv, &other_id, &[&admin], "soon-gone").await;

    // Rotation by another process: the next read answers the new value.
    stdio_calls(&srv.data_dir, &admin, &[("set_secret", json!({ "name": "DB_PASSWORD", "value": "second" }))]);
    let (s, body) = srv.get(&format!("/api/v1/secrets/{id}"), &admin).await;
    assert_eq!((s, body["value"].as_str(), body["version"].as_i64()), (200, Some("second"), Some(2)), "{body}");

    // Revocation and deletion by another process: the next requests fail.
    warm(&srv, &id, &[&reader_key], "second").await;
    stdio_calls(&srv.data_dir, &admin, &[("revoke_api_key", json!({ "id": reader_id })), ("delete_secret", json!({ "id": other_id }))]);
    let (s, body) = srv.get(&format!("/api/v1/secrets/{id}"), &reader_key).await;
    assert_eq!((s, body["code"].as_str()), (401, Some("UNAUTHORIZED")), "{body}");
    let (s, body) = srv.get(&format!("/api/v1/secrets/{other_id}"), &admin).await;
    assert_eq!((s, body["code"].as_str()), (404, Some("SECRET_NOT_FOUND")), "{body}");
    let (s, _) = srv.get("/api/v1/secrets", &reader_key).await;
    assert_eq!(s, 401, "a revoked key is refused everywhere, not only on reads");

    // The audit trail names the front of each change.
    let (_, audit) = srv.get("/api/v1/audit?action=secret.update", &admin).await;
    assert_eq!(audit["logs"][0]["front"], "mcp", "{audit}");
}

/// Changes in this process reach the cache before the change is acknowledged.
#[tokio::test]
async fn changes_in_this_process_are_seen_at_once() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let srv = Server::start(backend).await;
        let admin = srv.signup(&unique("cache-local")).await;
        let (_, s) = srv.post("/api/v1/secrets", &admin, json!({ "name": "API_KEY", "value": "v1", "tags": ["a"] })).await;
        let id = s["secretId"].as_str().unwrap().to_owned();
        let (_, k) = srv.post("/api/v1/api-keys", &admin, json!({ "name": "agent", "permissions": "read" })).await;
        let (key, key_id) = (k["apiKey"].as_str().unwrap().to_owned(), k["id"].as_str().unwrap().to_owned());
        for round in 2..6 {
            warm(&srv, &id, &[&admin, &key], &format!("v{}", round - 1)).await;
            let (s, _) = srv.put(&format!("/api/v1/secrets/{id}"), &admin, json!({ "value": format!("v{round}") })).await;
            assert_eq!(s, 200);
            let (_, body) = srv.get(&format!("/api/v1/secrets/{id}"), &key).await;
            assert_eq!(
                (body["value"].as_str(), body["version"].as_i64()),
                (Some(format!("v{round}").as_str()), Some(round)),
                "{backend:?}"
            );
        }
        // Metadata changes too.
        srv.put(&format!("/api/v1/secrets/{id}"), &admin, json!({ "tags": ["b"] })).await;
        let (_, body) = srv.get(&format!("/api/v1/secrets/{id}"), &key).await;
        assert_eq!(body["tags"], json!(["b"]), "{backend:?}: {body}");
        // A key narrowed to a project it does not cover loses the secret at once.
        let (_, p) = srv.post("/api/v1/projects", &admin, json!({ "name": "elsewhere" })).await;
        let (s, _) = srv.put(&format!("/api/v1/api-keys/{key_id}"), &admin, json!({ "projectScope": [p["projectId"]] })).await;
        assert_eq!(s, 200);
        let (s, body) = srv.get(&format!("/api/v1/secrets/{id}"), &key).await;
        assert_eq!((s, body["code"].as_str()), (403, Some("SCOPE_DENIED")), "{backend:?}: {body}");
        let (s, _) = srv.delete(&format!("/api/v1/api-keys/{key_id}"), &admin).await;
        assert!(s == 200 || s == 204, "{s}");
        let (s, _) = srv.get(&format!("/api/v1/secrets/{id}"), &key).await;
        assert_eq!(s, 401, "{backend:?}");
        let (s, _) = srv.delete(&format!("/api/v1/secrets/{id}"), &admin).await;
        assert!(s == 200 || s == 204, "{s}");
        let (s, _) = srv.get(&format!("/api/v1/secrets/{id}"), &admin).await;
        assert_eq!(s, 404, "{backend:?}");
    }
}

/// Two replicas on one PostgreSQL database: what one changes, the other
/// stops serving from its cache as soon as PostgreSQL delivers the
/// notification. The wait is bounded; without invalidation it would never end.
#[tokio::test]
async fn postgres_replicas_invalidate_each_other() {
    let a = Server::start(Backend::Postgres).await;
    let b = Server::start_with(Opts { database_url: a.database_url.clone(), ..Opts::new(Backend::Postgres) }).await;
    let admin = a.signup(&unique("replicas")).await;
    let (_, s) = a.post("/api/v1/secrets", &admin, json!({ "name": "SHARED", "value": "one" })).await;
    let id = s["secretId"].as_str().unwrap().to_owned();
    let (_, k) = a.post("/api/v1/api-keys", &admin, json!({ "name": "r", "permissions": "read" })).await;
    let (key, key_id) = (k["apiKey"].as_str().unwrap().to_owned(), k["id"].as_str().unwrap().to_owned());
    warm(&a, &id, &[&admin, &key], "one").await;
    warm(&b, &id, &[&admin, &key], "one").await;

    let (s, _) = b.put(&format!("/api/v1/secrets/{id}"), &admin, json!({ "value": "two" })).await;
    assert_eq!(s, 200);
    let seen = serves_eventually(&a, &id, &key, "two", 100).await;
    assert_eq!(seen.expect("replica A kept serving the old value")["version"], 2);

    let (s, _) = b.delete(&format!("/api/v1/api-keys/{key_id}"), &admin).await;
    assert!(s == 200 || s == 204, "{s}");
    let mut refused = false;
    for _ in 0..100 {
        if a.get(&format!("/api/v1/secrets/{id}"), &key).await.0 == 401 {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(refused, "replica A kept accepting a key revoked on replica B");
}

/// Replica A's `LISTEN` connection dies without a word (its packets stop
/// both ways, no error, no end: a database host gone in a failover, a NAT
/// that forgot the connection). Replica B then rotates a secret and revokes
/// a key. A must answer the new value and refuse the key (each value read
/// checks both in the statement that makes it durable), and must still shut
/// down. The probe that notices the dead listener within a few seconds is
/// what keeps A's cache from turning every read into a refused one and a
/// second lookup; `a_replica_listens_again_after_every_silent_death` checks
/// that it listens again.
#[tokio::test]
async fn a_replica_whose_listener_died_silently_stops_trusting_its_cache() {
    let (proxy, a, b) = replicas_behind_a_proxy().await;
    let admin = a.signup(&unique("silent")).await;
    let (_, s) = a.post("/api/v1/secrets", &admin, json!({ "name": "SHARED", "value": "one" })).await;
    let id = s["secretId"].as_str().unwrap().to_owned();
    let (_, k) = a.post("/api/v1/api-keys", &admin, json!({ "name": "r", "permissions": "read" })).await;
    let (key, key_id) = (k["apiKey"].as_str().unwrap().to_owned(), k["id"].as_str().unwrap().to_owned());
    warm(&a, &id, &[&admin, &key], "one").await;

    assert!(proxy.freeze_listeners() >= 1, "no listener to freeze");
    assert_eq!(b.put(&format!("/api/v1/secrets/{id}"), &admin, json!({ "value": "two" })).await.0, 200);
    let (s, _) = b.delete(&format!("/api/v1/api-keys/{key_id}"), &admin).await;
    assert!(s == 200 || s == 204, "{s}");
    let seen = serves_eventually(&a, &id, &admin, "two", 300).await;
    assert_eq!(seen.expect("replica A kept serving the old value after its listener died")["version"], 2);
    assert_eq!(a.get(&format!("/api/v1/secrets/{id}"), &key).await.0, 401, "replica A accepted a key revoked on B");
    // The dead session is still open: A shuts down all the same (the
    // proxy keeps running on this thread while `stop` waits on another).
    let code = tokio::task::spawn_blocking(move || a.stop()).await.unwrap();
    assert_eq!(code, Some(0), "replica A did not shut down within 10 s after its listener died");
}

/// Replica A's `LISTEN` connection dies silently again and again. Each dead
/// session stays open (sqlx's `UNLISTEN` waits on it until TCP gives up, a
/// quarter of an hour on a real network, for ever behind this proxy), and A
/// must still find a connection to listen on after every one of them, or it
/// would stop caching for good after a few failovers. The last one dies while
/// A waits for the answer to its `LISTEN`.
#[tokio::test]
async fn a_replica_listens_again_after_every_silent_death() {
    let (proxy, a, _b) = replicas_behind_a_proxy().await;
    // Waits up to `secs` for a `LISTEN` session beyond the first `seen`.
    let listens_again = async |seen: usize, secs: u64| {
        for _ in 0..secs * 20 {
            if proxy.listeners() > seen {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    };
    for death in 1..=5 {
        let before = proxy.listeners();
        assert!(proxy.freeze_listeners() >= 1, "death {death}: no listener to freeze");
        assert!(listens_again(before, 10).await, "death {death}: replica A did not listen again within 10 s");
    }
    proxy.freeze_at_listen(true);
    let before = proxy.listeners();
    proxy.freeze_listeners();
    assert!(listens_again(before, 10).await, "replica A did not try to listen again within 10 s");
    proxy.freeze_at_listen(false);
    let stuck = proxy.listeners();
    assert!(listens_again(stuck, 15).await, "replica A waits for ever on a LISTEN that never got its answer");
    let code = tokio::task::spawn_blocking(move || a.stop()).await.unwrap();
    assert_eq!(code, Some(0), "replica A did not shut down within 10 s beside six dead sessions");
}

/// Replica A's `LISTEN` session is closed (a pooler restart,
/// `pg_terminate_backend`, a slow failover) and getting it back takes longer
/// than the heartbeat's second. Replica B rotates a secret in that gap, so
/// its notification reaches nobody: A must count the gap itself as a change.
#[tokio::test]
async fn a_replica_whose_listener_reconnects_slowly_misses_nothing() {
    let (proxy, a, b) = replicas_behind_a_proxy().await;
    let admin = a.signup(&unique("slow-listen")).await;
    let (_, s) = a.post("/api/v1/secrets", &admin, json!({ "name": "SHARED", "value": "one" })).await;
    let id = s["secretId"].as_str().unwrap().to_owned();
    warm(&a, &id, &[&admin], "one").await;

    proxy.delay_listen(Duration::from_millis(1500));
    proxy.close_listeners();
    assert_eq!(b.put(&format!("/api/v1/secrets/{id}"), &admin, json!({ "value": "two" })).await.0, 200);
    let seen = serves_eventually(&a, &id, &admin, "two", 200).await;
    assert_eq!(seen.expect("replica A kept serving the old value after its listener came back")["version"], 2);
}

/// Writes by a key that another process revoked (or regenerated) a moment ago, sent before
/// the cache can have noticed: each is refused inside its own transaction
/// (the rotation in its batch, the rest at their audit entry), and nothing
/// of them is written. Rotations by a live key run beside them, most likely
/// in the same batches, and all land. `replica_a` serves them; `revoke`
/// revokes the key elsewhere and returns at once.
async fn writes_by_a_key_revoked_elsewhere(replica_a: &Server, check: &Server, admin: &str, rounds: usize, revoke: impl AsyncFnMut(&str)) {
    const EACH: usize = 4;
    let mut revoke = revoke;
    let (_, s) = replica_a.post("/api/v1/secrets", admin, json!({ "name": "ROTATED", "value": "v1" })).await;
    let id = s["secretId"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/secrets/{id}");
    let missing = format!("/api/v1/secrets/{}", uuid::Uuid::new_v4());
    let missing_project = format!("/api/v1/projects/{}", uuid::Uuid::new_v4());
    for round in 0..rounds {
        let (_, k) = replica_a.post("/api/v1/api-keys", admin, json!({ "name": format!("w{round}"), "permissions": "write" })).await;
        let (key, key_id) = (k["apiKey"].as_str().unwrap().to_owned(), k["id"].as_str().unwrap().to_owned());
        let (_, current) = replica_a.get(&path, &key).await;
        warm(replica_a, &id, &[&key], current["value"].as_str().unwrap()).await;
        revoke(&key_id).await;
        let dead = || replica_a.put(&path, &key, json!({ "value": "by a revoked key" }));
        let live = |i: usize| replica_a.put(&path, admin, json!({ "value": format!("admin-{round}-{i}") }));
        let (d0, d1, d2, d3, l0, l1, l2, l3, created, project, missing_secret, stale, taken, no_project, no_secret) = tokio::join!(
            dead(),
            dead(),
            dead(),
            dead(),
            live(0),
            live(1),
            live(2),
            live(3),
            replica_a.post("/api/v1/secrets", &key, json!({ "name": format!("PLANTED_{round}"), "value": "x" })),
            replica_a.post("/api/v1/projects", &key, json!({ "name": format!("planted-{round}") })),
            replica_a.put(&missing, &key, json!({ "value": "x" })),
            replica_a.put(&path, &key, json!({ "value": "x", "expectedVersion": 0 })),
            replica_a.post("/api/v1/secrets", &key, json!({ "name": "ROTATED", "value": "x" })),
            replica_a.delete(&missing_project, &key),
            replica_a.get(&missing, &key),
        );
        let (dead, live) = ([d0, d1, d2, d3], [l0, l1, l2, l3]);
        let refused = dead.into_iter().map(|r| ("rotation", r)).chain([
            ("new secret", created),
            ("new project", project),
            // These would fail anyway (404, 409); a revoked key learns only that it is revoked.
            ("rotation of a missing secret", missing_secret),
            ("rotation from a stale version", stale),
            ("new secret under a taken name", taken),
            ("deletion of a missing project", no_project),
            ("read of a missing secret", no_secret),
        ]);
        for (what, (status, body)) in refused {
            assert_eq!((status, body["code"].as_str()), (401, Some("UNAUTHORIZED")), "round {round}: {what} by a revoked key: {body}");
        }
        for (status, body) in live {
            assert_eq!(status, 200, "round {round}: a rotation by a live key beside them: {body}");
        }
    }
    let (_, now) = check.get(&path, admin).await;
    let last = now["version"].as_i64().unwrap();
    assert_eq!(last, 1 + (EACH * rounds) as i64, "{now}");
    for version in 2..=last {
        let (_, v) = check.get(&format!("{path}?version={version}"), admin).await;
        assert!(v["value"].as_str().unwrap().starts_with("admin-"), "version {version}: {v}");
    }
    let (_, listed) = check.get("/api/v1/secrets", admin).await;
    assert_eq!(listed["secrets"].as_array().unwrap().len(), 1, "{listed}");
    let (_, projects) = check.get("/api/v1/projects", admin).await;
    assert!(!projects.to_string().contains("planted"), "{projects}");
}

/// SQLite: a `latchkey mcp` session revokes the key while `serve` has it cached.
#[tokio::test]
async fn a_key_revoked_by_another_process_writes_nothing_on_sqlite() {
    let srv = Server::start(Backend::Sqlite).await;
    let admin = srv.signup(&unique("dead-writes")).await;
    let mut session = Stdio::start(&srv.data_dir, &admin);
    writes_by_a_key_revoked_elsewhere(&srv, &srv, &admin, 5, async |key_id: &str| {
        let r = session.call("revoke_api_key", json!({ "id": key_id }));
        assert_ne!(r["isError"], true, "{r}");
    })
    .await;
    assert!(session.finish());
}

/// PostgreSQL: replica B revokes the key while replica A's listener has
/// silently died, so A cannot hear of it (it would find out at the next
/// heartbeat, a second later). One round: by the next, the heartbeat has
/// found the frozen listener and emptied A's cache, so a second round would
/// be refused before it reaches a write.
#[tokio::test]
async fn a_key_revoked_by_another_replica_writes_nothing_on_postgres() {
    let (proxy, a, b) = replicas_behind_a_proxy().await;
    let admin = a.signup(&unique("dead-writes")).await;
    writes_by_a_key_revoked_elsewhere(&a, &b, &admin, 1, async |key_id: &str| {
        assert!(proxy.freeze_listeners() > 0, "replica A has no listener to freeze");
        let (s, body) = b.delete(&format!("/api/v1/api-keys/{key_id}"), &admin).await;
        assert_eq!(s, 200, "{body}");
    })
    .await;
}

/// PostgreSQL: keys revoked or regenerated on replica B while every
/// notification to replica A is lost, so A's cache still holds them as they
/// were (its listener goes on answering: nothing tells A otherwise). Every kind
/// of read on A (a value, a list, a version history, MCP `get_secret`) by such
/// a key gets 401, never an answer: a read's audit entry goes in only while the
/// key's row still says what the request presented. Each case runs alone, with
/// its key freshly cached on A: the first refused entry empties A's cache, and
/// a request after that would be judged from the database whatever the guard did.
#[tokio::test]
async fn a_key_revoked_on_another_replica_reads_nothing_on_postgres() {
    let (proxy, a, b) = replicas_behind_a_proxy().await;
    let admin = a.signup(&unique("dead-reads")).await;
    let (_, s) = a.post("/api/v1/secrets", &admin, json!({ "name": "READ_ME", "value": "v1" })).await;
    let id = s["secretId"].as_str().unwrap().to_owned();
    let (path, versions) = (format!("/api/v1/secrets/{id}"), format!("/api/v1/secrets/{id}/versions"));
    let get = json!({ "name": "get_secret", "arguments": { "id": id } });
    proxy.mute_notifications();

    let mut failures = vec![];
    for (round, what) in ["read", "list", "versions", "MCP get_secret"].into_iter().enumerate() {
        for change in ["revoked", "regenerated"] {
            let (_, k) = a.post("/api/v1/api-keys", &admin, json!({ "name": format!("{change}-{round}"), "permissions": "read" })).await;
            let (key, key_id) = (k["apiKey"].as_str().unwrap(), k["id"].as_str().unwrap());
            warm(&a, &id, &[key, &admin], "v1").await;
            let (s, body) = match change {
                "revoked" => b.delete(&format!("/api/v1/api-keys/{key_id}"), &admin).await,
                _ => b.post(&format!("/api/v1/api-keys/{key_id}/regenerate"), &admin, json!({})).await,
            };
            assert_eq!(s, 200, "{body}");
            let answer = match what {
                "read" => a.get(&path, key).await,
                "list" => a.get("/api/v1/secrets", key).await,
                "versions" => a.get(&versions, key).await,
                _ => {
                    let m = mcp_http(&a, key, "tools/call", get.clone()).await;
                    let dead = m["result"]["structuredContent"]["value"].is_null() && m.to_string().contains("UNAUTHORIZED");
                    if !dead {
                        failures.push(format!("{what} by a {change} key: {m}"));
                    }
                    continue;
                }
            };
            if (answer.0, answer.1["code"].as_str()) != (401, Some("UNAUTHORIZED")) {
                failures.push(format!("{what} by a {change} key: {} {}", answer.0, answer.1));
            }
        }
    }
    assert!(failures.is_empty(), "answered under a dead key: {failures:#?}");
    let (s, body) = a.get(&path, &admin).await;
    assert_eq!((s, body["value"].as_str()), (200, Some("v1")), "the admin's read: {body}");
}

/// PostgreSQL: replica B rotates a secret, deletes one, or changes one's
/// description and tags, while every notification to replica A is lost, so
/// A's cache still holds the secret as it was. A's first read of it by id,
/// over REST or MCP, answers the new value, 404, or the new metadata: the
/// audit entry of an answer from the cache goes in only while the secret is
/// still at the version and `updated_at` the cache had. (Reads by name or of
/// a version by number never come from the cache.) Each case runs alone, as
/// above.
#[tokio::test]
async fn a_value_changed_on_another_replica_is_never_served_stale_on_postgres() {
    let (proxy, a, b) = replicas_behind_a_proxy().await;
    let admin = a.signup(&unique("stale-values")).await;
    let (_, k) = a.post("/api/v1/api-keys", &admin, json!({ "name": "reader", "permissions": "read" })).await;
    let reader = k["apiKey"].as_str().unwrap().to_owned();
    proxy.mute_notifications();

    let mut failures = vec![];
    for (round, change) in ["rotated", "deleted", "described"].into_iter().enumerate() {
        for over in ["REST", "MCP"] {
            let name = format!("CASE_{round}_{over}");
            let (_, s) = a.post("/api/v1/secrets", &admin, json!({ "name": name, "value": "one", "description": "as created" })).await;
            let id = s["secretId"].as_str().unwrap().to_owned();
            let path = format!("/api/v1/secrets/{id}");
            warm(&a, &id, &[&reader], "one").await;
            let (s, body) = match change {
                "rotated" => b.put(&path, &admin, json!({ "value": "two" })).await,
                "deleted" => b.delete(&path, &admin).await,
                _ => b.put(&path, &admin, json!({ "description": "changed on B", "tags": ["from-b"] })).await,
            };
            assert!(s == 200 || s == 204, "{change} on B: {s} {body}");
            let seen = match over {
                "REST" => a.get(&path, &reader).await,
                _ => {
                    let m = mcp_http(&a, &reader, "tools/call", json!({ "name": "get_secret", "arguments": { "id": id } })).await;
                    match m["result"]["isError"] == true {
                        false => (200, m["result"]["structuredContent"].clone()),
                        true if m.to_string().contains("SECRET_NOT_FOUND") => (404, json!({ "code": "SECRET_NOT_FOUND" })),
                        true => (500, m),
                    }
                }
            };
            let expected = match change {
                "rotated" => seen.0 == 200 && seen.1["value"] == "two" && seen.1["version"] == 2,
                "deleted" => seen.0 == 404 && seen.1["code"] == "SECRET_NOT_FOUND",
                _ => {
                    seen.0 == 200
                        && seen.1["value"] == "one"
                        && seen.1["description"] == "changed on B"
                        && seen.1["tags"] == json!(["from-b"])
                }
            };
            if !expected {
                failures.push(format!("{change} on B, read on A over {over}: {} {}", seen.0, seen.1));
            }
        }
    }
    assert!(failures.is_empty(), "stale answers: {failures:#?}");
}

/// PostgreSQL: the operator moves a tenant to a smaller plan while every
/// notification to replica A is lost, so A's cache still holds the tenant's
/// key with the old plan. A's next secret creations meet the new plan's
/// quota all the same: the quota is taken from the plan the creating
/// transaction reads, not from the cached key.
#[tokio::test]
async fn a_plan_changed_elsewhere_limits_a_replica_at_once_on_postgres() {
    let (proxy, a, b) = replicas_behind_a_proxy().await;
    let tenant = unique("plan-elsewhere");
    let admin = a.signup(&tenant).await;
    for i in 0..3 {
        let (s, body) = a.post("/api/v1/secrets", &admin, json!({ "name": format!("S{i}"), "value": "v" })).await;
        assert_eq!(s, 201, "{body}");
    }
    assert_eq!(a.get("/api/v1/plan", &admin).await.1["plan"], "unlimited");
    proxy.mute_notifications();
    let out = std::process::Command::new(common::bin())
        .args(["tenant", "set-plan", &tenant, "free"])
        .env("DATABASE_URL", b.database_url.as_deref().unwrap())
        .env("LATCHKEY_MASTER_KEY", common::TEST_MASTER_KEY)
        .output()
        .unwrap();
    assert!(out.status.success(), "set-plan: {}", String::from_utf8_lossy(&out.stderr));

    let mut created = 3;
    let refusal = loop {
        let (s, body) = a.post("/api/v1/secrets", &admin, json!({ "name": format!("S{created}"), "value": "v" })).await;
        if s != 201 || created == 8 {
            break (s, body);
        }
        created += 1;
    };
    assert_eq!(
        (created, refusal.0, refusal.1["code"].as_str()),
        (5, 403, Some("PLAN_LIMIT_REACHED")),
        "the free plan allows 5 secrets: {}",
        refusal.1
    );
}

/// SQLite: another process regenerates the key (new key material, the same
/// id) while `serve` has the old token cached: the old token writes nothing.
#[tokio::test]
async fn a_key_regenerated_by_another_process_writes_nothing_on_sqlite() {
    use sqlx::Connection;
    let srv = Server::start(Backend::Sqlite).await;
    let admin = srv.signup(&unique("regen-writes")).await;
    let url = format!("sqlite://{}", srv.data_dir.join("latchkey.db").display());
    let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
    writes_by_a_key_revoked_elsewhere(&srv, &srv, &admin, 5, async |key_id: &str| {
        // What a regeneration does to the row.
        let q = sqlx::query("UPDATE api_keys SET key_hash = randomblob(32), updated_at = updated_at + 1 WHERE id = ?");
        assert_eq!(q.bind(key_id).execute(&mut db).await.unwrap().rows_affected(), 1);
    })
    .await;
}

/// PostgreSQL: replica B regenerates the key while replica A's listener has
/// silently died: the old token, still in A's cache, writes nothing on A.
#[tokio::test]
async fn a_key_regenerated_on_another_replica_writes_nothing_on_postgres() {
    let (proxy, a, b) = replicas_behind_a_proxy().await;
    let admin = a.signup(&unique("regen-writes")).await;
    writes_by_a_key_revoked_elsewhere(&a, &b, &admin, 1, async |key_id: &str| {
        assert!(proxy.freeze_listeners() > 0, "replica A has no listener to freeze");
        let (s, body) = b.post(&format!("/api/v1/api-keys/{key_id}/regenerate"), &admin, json!({})).await;
        assert_eq!(s, 200, "{body}");
    })
    .await;
}

/// PostgreSQL: replica B narrows a write key to read while replica A's
/// listener has silently died, so A still holds the key's old rights in its
/// cache. A rotation and a new secret by that key on A write nothing: the
/// compare-and-set, the locked path and the single write's audit insert each
/// compare the key's rights as the request presented them.
#[tokio::test]
async fn a_key_narrowed_on_another_replica_writes_nothing_on_postgres() {
    let (proxy, a, b) = replicas_behind_a_proxy().await;
    let admin = a.signup(&unique("narrowed")).await;
    let (_, s) = a.post("/api/v1/secrets", &admin, json!({ "name": "KEPT", "value": "v1" })).await;
    let id = s["secretId"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/secrets/{id}");
    let (_, k) = a.post("/api/v1/api-keys", &admin, json!({ "name": "writer", "permissions": "write" })).await;
    let (key, key_id) = (k["apiKey"].as_str().unwrap().to_owned(), k["id"].as_str().unwrap().to_owned());
    warm(&a, &id, &[&key], "v1").await;
    assert!(proxy.freeze_listeners() > 0, "replica A has no listener to freeze");
    let (s, body) = b.put(&format!("/api/v1/api-keys/{key_id}"), &admin, json!({ "permissions": "read" })).await;
    assert_eq!(s, 200, "{body}");
    let (rotated, created) = tokio::join!(
        a.put(&path, &key, json!({ "value": "by a narrowed key" })),
        a.post("/api/v1/secrets", &key, json!({ "name": "NARROWED", "value": "x" })),
    );
    for (what, (s, body)) in [("rotation", rotated), ("new secret", created)] {
        assert!(s == 403 || s == 409, "{what} by a key narrowed on B: {s} {body}");
    }
    let (_, now) = b.get(&path, &admin).await;
    assert_eq!((now["version"].as_i64(), now["value"].as_str()), (Some(1), Some("v1")), "{now}");
    let (_, listed) = b.get("/api/v1/secrets", &admin).await;
    assert!(!listed.to_string().contains("NARROWED"), "{listed}");
}

/// A `latchkey mcp` session started with `LATCHKEY_API_KEY` stops when that
/// key is regenerated: the old token stops working at once, also for a
/// session that checked it when it began.
#[tokio::test]
async fn a_stdio_session_stops_when_its_key_is_regenerated() {
    let srv = Server::start(Backend::Sqlite).await;
    let admin = srv.signup(&unique("regen-stdio")).await;
    let (_, k) = srv.post("/api/v1/api-keys", &admin, json!({ "name": "agent", "permissions": "write" })).await;
    let (key, key_id) = (k["apiKey"].as_str().unwrap().to_owned(), k["id"].as_str().unwrap().to_owned());
    let mut session = Stdio::start(&srv.data_dir, &key);
    let me = session.call("whoami", json!({}));
    assert_ne!(me["isError"], true, "{me}");
    let (s, body) = srv.post(&format!("/api/v1/api-keys/{key_id}/regenerate"), &admin, json!({})).await;
    assert_eq!(s, 200, "{body}");
    let set = session.call("set_secret", json!({ "name": "AFTER_REGENERATION", "value": "x" }));
    assert_eq!(set["isError"], true, "the old token still wrote: {set}");
    assert!(set.to_string().contains("UNAUTHORIZED"), "{set}");
    assert!(session.finish());
    let (_, listed) = srv.get("/api/v1/secrets", &admin).await;
    assert!(!listed.to_string().contains("AFTER_REGENERATION"), "{listed}");
}

/// One MCP request over HTTP as `key`; the JSON-RPC answer.
async fn mcp_http(srv: &Server, key: &str, method: &str, params: Value) -> Value {
    let body = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
    let req = srv.http.post(srv.url("/mcp")).header("accept", "application/json, text/event-stream").header("x-api-key", key);
    let resp = req.header("mcp-protocol-version", "2025-06-18").json(&body).send().await.unwrap();
    resp.json().await.unwrap()
}

/// SQLite: a key that another process revoked a moment ago, still in
/// `serve`'s cache, gets 401 from every kind of request, not only from reads
/// of values and from writes: lists, version histories, the audit trail, and
/// requests that would have failed anyway. Each request is the first by its
/// key after the revocation (later ones find the cache already emptied), and
/// the revocation is a plain UPDATE on an open connection, so the request
/// usually comes before the 100 ms poll notices it (when the poll is first,
/// authentication answers the same 401: such a round proves less, but it
/// cannot fail wrongly). A key whose rights were
/// narrowed instead is never answered under its old ones, and writes nothing
/// under them.
#[tokio::test]
async fn a_key_revoked_by_another_process_learns_nothing_on_sqlite() {
    use sqlx::Connection;
    let srv = Server::start(Backend::Sqlite).await;
    let admin = srv.signup(&unique("dead-reads")).await;
    let url = format!("sqlite://{}", srv.data_dir.join("latchkey.db").display());
    let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let (_, s) = srv.post("/api/v1/secrets", &admin, json!({ "name": "LISTED", "value": "v" })).await;
    let id = s["secretId"].as_str().unwrap().to_owned();
    let versions = format!("/api/v1/secrets/{id}/versions");
    let rest = ["/api/v1/secrets", "/api/v1/projects", "/api/v1/api-keys", "/api/v1/audit", versions.as_str()];
    let conflict = json!({ "name": "set_secret", "arguments": { "name": "LISTED", "value": "x", "expectedVersion": 0 } });
    let missing = json!({ "uri": "latchkey://secrets/NOT_THERE" });
    let cached_agent = async |round: usize| {
        let (_, k) = srv.post("/api/v1/api-keys", &admin, json!({ "name": format!("agent-{round}"), "permissions": "admin" })).await;
        let (agent, agent_id) = (k["apiKey"].as_str().unwrap().to_owned(), k["id"].as_str().unwrap().to_owned());
        assert_eq!(srv.get("/api/v1/api-keys", &agent).await.0, 200, "the key is cached");
        (agent, agent_id)
    };
    for round in 0..rest.len() + 2 {
        let (agent, agent_id) = cached_agent(round).await;
        sqlx::query("UPDATE api_keys SET revoked_at = 1 WHERE id = ?").bind(&agent_id).execute(&mut db).await.unwrap();
        let answer = match rest.get(round) {
            Some(path) => {
                let (s, body) = srv.get(path, &agent).await;
                assert_eq!((s, body["code"].as_str()), (401, Some("UNAUTHORIZED")), "{path}: {body}");
                continue;
            }
            None if round == rest.len() => mcp_http(&srv, &agent, "tools/call", conflict.clone()).await,
            None => mcp_http(&srv, &agent, "resources/read", missing.clone()).await,
        };
        assert!(answer.to_string().contains("UNAUTHORIZED"), "round {round}: {answer}");
    }
    let path = format!("/api/v1/secrets/{id}");
    for round in 0..6 {
        let (agent, agent_id) = cached_agent(100 + round).await;
        sqlx::query("UPDATE api_keys SET permission = 'read' WHERE id = ?").bind(&agent_id).execute(&mut db).await.unwrap();
        let (what, (s, body)) = match round % 3 {
            0 => ("listed the API keys", srv.get("/api/v1/api-keys", &agent).await),
            1 => ("rotated a secret", srv.put(&path, &agent, json!({ "value": "by a narrowed key" })).await),
            _ => (
                "created a secret",
                srv.post("/api/v1/secrets", &agent, json!({ "name": format!("NARROWED_{round}"), "value": "x" })).await,
            ),
        };
        assert!(s == 403 || s == 409, "round {round}: a key narrowed to read {what}: {s} {body}");
    }
    let (_, now) = srv.get(&path, &admin).await;
    assert_eq!((now["version"].as_i64(), now["value"].as_str()), (Some(1), Some("v")), "{now}");
}

/// A failure by a key revoked elsewhere turns into 401, except one: a value
/// that fails to decrypt because its ciphertext was moved between rows is
/// the sign of a tampered database, and it answers `INTEGRITY_ERROR` to every
/// key, a dead one included, rather than passing for a revocation. (Each
/// read is the first by its key after the revocation, as above.)
#[tokio::test]
async fn a_tampered_value_is_an_integrity_error_even_for_a_key_revoked_elsewhere() {
    use sqlx::Connection;
    let srv = Server::start(Backend::Sqlite).await;
    let admin = srv.signup(&unique("tampered")).await;
    let url = format!("sqlite://{}", srv.data_dir.join("latchkey.db").display());
    let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let (_, a) = srv.post("/api/v1/secrets", &admin, json!({ "name": "MOVED_INTO", "value": "a-value" })).await;
    let (_, b) = srv.post("/api/v1/secrets", &admin, json!({ "name": "MOVED_FROM", "value": "b-value" })).await;
    let path = format!("/api/v1/secrets/{}", a["secretId"].as_str().unwrap());
    sqlx::query("UPDATE secret_versions SET sealed = (SELECT sealed FROM secret_versions WHERE secret_id = ?) WHERE secret_id = ?")
        .bind(b["secretId"].as_str().unwrap())
        .bind(a["secretId"].as_str().unwrap())
        .execute(&mut db)
        .await
        .unwrap();
    let (s, body) = srv.get(&path, &admin).await;
    assert_eq!((s, body["code"].as_str()), (500, Some("INTEGRITY_ERROR")), "a live key: {body}");

    // The server's 100 ms poll may notice the revocation before the read
    // does; the key is then turned away at authentication (`auth.failed`),
    // which says nothing here, and the round is played again.
    let mut judged = 0;
    for round in 0..20 {
        let (_, k) = srv.post("/api/v1/api-keys", &admin, json!({ "name": format!("reader-{round}"), "permissions": "read" })).await;
        let (reader, reader_id) = (k["apiKey"].as_str().unwrap(), k["id"].as_str().unwrap());
        assert_eq!(srv.get("/api/v1/secrets", reader).await.0, 200, "the key is cached");
        sqlx::query("UPDATE api_keys SET revoked_at = 1 WHERE id = ?").bind(reader_id).execute(&mut db).await.unwrap();
        let (s, body) = srv.get(&path, reader).await;
        let last: String = sqlx::query_scalar("SELECT action FROM audit_log WHERE actor = ? ORDER BY id DESC LIMIT 1")
            .bind(reader_id)
            .fetch_one(&mut db)
            .await
            .unwrap();
        if last == "auth.failed" {
            continue;
        }
        assert_eq!((s, body["code"].as_str()), (500, Some("INTEGRITY_ERROR")), "round {round}, a dead key ({last}): {body}");
        let (s, body) = srv.get(&path, reader).await;
        assert_eq!((s, body["code"].as_str()), (401, Some("UNAUTHORIZED")), "round {round}, its next request: {body}");
        judged += 1;
        if judged == 3 {
            break;
        }
    }
    assert_eq!(judged, 3, "the poll noticed every revocation first");
    let (s, body) = srv.get(&format!("/api/v1/secrets/{}", b["secretId"].as_str().unwrap()), &admin).await;
    assert_eq!((s, body["value"].as_str()), (200, Some("b-value")), "the untouched secret: {body}");
}

/// Rotations whose clients hang up at every moment of the request: hyper
/// drops a request when its connection closes, and a rotation that reached
/// its commit still lands. Whatever the moment, the next read serves the
/// version the database has, not the one the cache held before. Over MCP the
/// rotation is a plain `set_secret` call, which the direct path answers
/// (`src/mcp/direct.rs`).
async fn hung_up_rotations(backend: Backend, over_mcp: bool) {
    use tokio::io::AsyncWriteExt;
    let srv = Server::start(backend).await;
    let key = srv.signup(&unique("hangup")).await;
    let (_, created) = srv.post("/api/v1/secrets", &key, json!({ "name": "HUNG_UP", "value": "v1" })).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let addr = srv.base.trim_start_matches("http://").to_owned();
    let path = format!("/api/v1/secrets/{id}");
    for attempt in 0..150u64 {
        assert_eq!(srv.get(&path, &key).await.0, 200, "warm the cache");
        let (head, body) = if over_mcp {
            let call = json!({ "jsonrpc": "2.0", "id": attempt, "method": "tools/call",
                "params": { "name": "set_secret", "arguments": { "name": "HUNG_UP", "value": format!("r{attempt}") } } });
            let head = format!(
                "POST /mcp HTTP/1.1\r\nAuthorization: Bearer {key}\r\nAccept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2025-06-18"
            );
            (head, call.to_string())
        } else {
            (format!("PUT {path} HTTP/1.1\r\nX-API-Key: {key}"), json!({ "value": format!("r{attempt}") }).to_string())
        };
        let request = format!("{head}\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
        conn.write_all(request.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_micros((attempt * 11) % 1500)).await;
        drop(conn);
        tokio::time::sleep(Duration::from_millis(30)).await;
        // The hung-up rotation may still be on its way; a stale cache shows as
        // a read older than what the database already had before it.
        let (_, versions) = srv.get(&format!("{path}/versions"), &key).await;
        let in_database = versions["currentVersion"].as_i64().unwrap();
        let (_, served) = srv.get(&path, &key).await;
        let served_version = served["version"].as_i64().unwrap();
        assert!(
            served_version >= in_database,
            "{backend:?}, attempt {attempt}: the database was at {in_database} before this read: {served}"
        );
    }
    let (_, versions) = srv.get(&format!("{path}/versions"), &key).await;
    assert!(versions["currentVersion"].as_i64().unwrap() > 1, "some hung-up rotations landed: {versions}");
}

#[tokio::test]
async fn rotations_whose_clients_hang_up_leave_nothing_stale_on_sqlite() {
    hung_up_rotations(Backend::Sqlite, false).await;
}

#[tokio::test]
async fn rotations_whose_clients_hang_up_leave_nothing_stale_on_postgres() {
    hung_up_rotations(Backend::Postgres, false).await;
}

#[tokio::test]
async fn mcp_rotations_whose_clients_hang_up_leave_nothing_stale_on_sqlite() {
    hung_up_rotations(Backend::Sqlite, true).await;
}

#[tokio::test]
async fn mcp_rotations_whose_clients_hang_up_leave_nothing_stale_on_postgres() {
    hung_up_rotations(Backend::Postgres, true).await;
}

/// `latchkey mcp` holds one key for its whole session. When `serve` revokes
/// that key, the session's next calls are refused, writes and key minting
/// included, not only reads.
#[tokio::test]
async fn a_stdio_session_loses_a_key_revoked_elsewhere() {
    let srv = Server::start(Backend::Sqlite).await;
    let admin = srv.signup(&unique("stdio-revoke")).await;
    let (_, created) = srv.post("/api/v1/api-keys", &admin, json!({ "name": "agent", "permissions": "admin" })).await;
    let (agent, agent_id) = (created["apiKey"].as_str().unwrap().to_owned(), created["id"].as_str().unwrap().to_owned());

    let mut session = Stdio::start(&srv.data_dir, &agent);
    let before = session.call("set_secret", json!({ "name": "BEFORE", "value": "ok" }));
    assert_ne!(before["isError"], true, "{before}");

    let (s, body) = srv.delete(&format!("/api/v1/api-keys/{agent_id}"), &admin).await;
    assert_eq!(s, 200, "{body}");
    for (name, args) in [
        ("set_secret", json!({ "name": "PLANTED", "value": "by a revoked key" })),
        ("create_api_key", json!({ "name": "persist", "permissions": "admin" })),
        ("list_secrets", json!({})),
    ] {
        let result = session.call(name, args);
        let text = result["content"][0]["text"].as_str().unwrap_or_default();
        assert!(result["isError"] == true && text.contains("UNAUTHORIZED"), "{name} with a revoked key: {result}");
    }
    session.finish();
    let (_, listed) = srv.get("/api/v1/secrets", &admin).await;
    let names: Vec<&str> = listed["secrets"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["BEFORE"], "nothing written after the revocation");
    let (_, keys) = srv.get("/api/v1/api-keys", &admin).await;
    assert!(!keys.to_string().contains("persist"), "no key minted after the revocation: {keys}");
}

/// The operator moves a tenant to a smaller plan while an agent's
/// `latchkey mcp` session runs: the session's next calls act under the new
/// plan (its limits shown by whoami, its secret quota enforced), not the one
/// it started with.
#[tokio::test]
async fn a_stdio_session_follows_a_plan_change_made_elsewhere() {
    let srv = Server::start(Backend::Sqlite).await;
    let tenant = unique("stdio-plan");
    let admin = srv.signup(&tenant).await;
    let mut session = Stdio::start(&srv.data_dir, &admin);
    assert_eq!(session.call("whoami", json!({}))["structuredContent"]["plan"], "unlimited");
    for i in 0..3 {
        let r = session.call("set_secret", json!({ "name": format!("S{i}"), "value": "v" }));
        assert_ne!(r["isError"], true, "{r}");
    }

    let out = std::process::Command::new(common::bin())
        .args(["tenant", "set-plan", &tenant, "free"])
        .env("LATCHKEY_DATA_DIR", &srv.data_dir)
        .env("LATCHKEY_MASTER_KEY", common::TEST_MASTER_KEY)
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert!(out.status.success(), "set-plan: {}", String::from_utf8_lossy(&out.stderr));

    let who = session.call("whoami", json!({}));
    assert_eq!(
        (&who["structuredContent"]["plan"], &who["structuredContent"]["limits"]["maxSecrets"]),
        (&json!("free"), &json!(5)),
        "{who}"
    );
    let mut refused = None;
    for i in 3..7 {
        let r = session.call("set_secret", json!({ "name": format!("S{i}"), "value": "v" }));
        if r["isError"] == true {
            refused = Some((i, r));
            break;
        }
    }
    let (at, r) = refused.expect("the free plan's quota of 5 secrets was not enforced");
    assert_eq!(at, 5, "{r}");
    assert!(r["content"][0]["text"].as_str().unwrap_or_default().contains("PLAN_LIMIT_REACHED"), "{r}");
    assert!(session.finish());
}

/// A local `latchkey mcp` session (no API key) acts with the local tenant's
/// own key. Someone sets that key to expire: once it has, the session goes on
/// with a new local key, as a new session would start with one. Someone
/// revokes the key: the session stops (that is how an admin stops it), and a
/// new session starts with a new key.
#[tokio::test]
async fn a_local_session_renews_an_expired_key_and_stops_on_a_revoked_one() {
    use sqlx::Connection;
    let (dir, url) = local_data_dir();
    let key_of = |me: &Value| me["structuredContent"]["keyId"].as_str().unwrap().to_owned();
    let mut session = Stdio::start_local(dir.path());
    let first = key_of(&session.call("whoami", json!({})));
    let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("UPDATE api_keys SET expires_at = 1 WHERE id = ?").bind(&first).execute(&mut db).await.unwrap();

    let me = session.call("whoami", json!({}));
    assert_ne!(me["isError"], true, "the session stopped when its local key expired: {me}");
    let second = key_of(&me);
    assert_ne!(second, first, "{me}");
    let set = session.call("set_secret", json!({ "name": "AFTER_RENEWAL", "value": "v" }));
    assert_ne!(set["isError"], true, "{set}");

    sqlx::query("UPDATE api_keys SET revoked_at = 1 WHERE id = ?").bind(&second).execute(&mut db).await.unwrap();
    db.close().await.unwrap();
    let refused = session.call("whoami", json!({}));
    assert_eq!(refused["isError"], true, "the session went on with a revoked key: {refused}");
    assert!(refused.to_string().contains("UNAUTHORIZED"), "{refused}");
    assert!(session.finish());

    let mut next = Stdio::start_local(dir.path());
    let me = next.call("whoami", json!({}));
    assert_ne!(me["isError"], true, "{me}");
    assert!(![first.as_str(), second.as_str()].contains(&key_of(&me).as_str()), "{me}");
    assert!(next.finish());
}

/// Calls that find the local key expired at the same time renew it once:
/// every call goes on with the same new key, and the tenant gains one key,
/// not one per call.
#[tokio::test]
async fn concurrent_calls_renew_an_expired_local_key_once() {
    use sqlx::Connection;
    let (dir, url) = local_data_dir();
    let mut session = Stdio::start_local(dir.path());
    let me = session.call("whoami", json!({}));
    let (first, tenant) = (me["structuredContent"]["keyId"].as_str().unwrap().to_owned(), me["structuredContent"]["tenantId"].clone());
    let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let keys = "SELECT COUNT(*) FROM api_keys WHERE tenant_id = ?";
    let before: i64 = sqlx::query_scalar(keys).bind(tenant.as_str()).fetch_one(&mut db).await.unwrap();
    let mut current = first.clone();
    for round in 0..3 {
        let expired = current.clone();
        sqlx::query("UPDATE api_keys SET expires_at = 1 WHERE id = ?").bind(&expired).execute(&mut db).await.unwrap();
        let results = session.burst("whoami", json!({}), 8);
        let mut seen = std::collections::BTreeSet::new();
        for r in &results {
            assert_ne!(r["isError"], true, "round {round}: {r}");
            seen.insert(r["structuredContent"]["keyId"].as_str().unwrap().to_owned());
        }
        assert_eq!(seen.len(), 1, "round {round}: the calls went on with different keys: {seen:?}");
        assert!(!seen.contains(&expired) && !seen.contains(&first), "round {round}: {seen:?}");
        current = seen.into_iter().next().unwrap();
        let now: i64 = sqlx::query_scalar(keys).bind(tenant.as_str()).fetch_one(&mut db).await.unwrap();
        assert_eq!(now, before + round + 1, "round {round}: eight calls made {} keys", now - before - round);
    }
    db.close().await.unwrap();
    assert!(session.finish());
}

/// The local session acts with the rights its key row has: a local key
/// someone narrowed to read stays narrowed in the next session.
#[tokio::test]
async fn a_local_session_has_the_rights_of_its_key_row() {
    use sqlx::Connection;
    let (dir, url) = local_data_dir();
    let mut session = Stdio::start_local(dir.path());
    let set = session.call("set_secret", json!({ "name": "BEFORE", "value": "v" }));
    assert_ne!(set["isError"], true, "{set}");
    let key = session.call("whoami", json!({}))["structuredContent"]["keyId"].as_str().unwrap().to_owned();
    assert!(session.finish());

    let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("UPDATE api_keys SET permission = 'read' WHERE id = ?").bind(&key).execute(&mut db).await.unwrap();
    db.close().await.unwrap();

    let mut next = Stdio::start_local(dir.path());
    let me = next.call("whoami", json!({}));
    assert_eq!(me["structuredContent"]["keyId"].as_str(), Some(key.as_str()), "{me}");
    let read = next.call("list_secrets", json!({}));
    assert!(read.to_string().contains("BEFORE"), "{read}");
    let refused = next.call("set_secret", json!({ "name": "AFTER", "value": "v" }));
    assert_eq!(refused["isError"], true, "a local key narrowed to read still wrote: {refused}");
    assert!(refused.to_string().contains("SCOPE_DENIED"), "{refused}");
    assert!(next.finish());
}

/// Another process revokes a key that `serve` has cached; before `serve`
/// notices, that key tries to mint a new admin key and to change keys. Key
/// changes are decided on the database's word: each is refused.
#[tokio::test]
async fn a_key_revoked_elsewhere_cannot_mint_keys_from_the_cache() {
    let srv = Server::start(Backend::Sqlite).await;
    let admin = srv.signup(&unique("mint")).await;
    for round in 0..5 {
        let (_, created) = srv.post("/api/v1/api-keys", &admin, json!({ "name": format!("agent-{round}"), "permissions": "admin" })).await;
        let (agent, agent_id) = (created["apiKey"].as_str().unwrap().to_owned(), created["id"].as_str().unwrap().to_owned());
        assert_eq!(srv.get("/api/v1/api-keys", &agent).await.0, 200, "the key is cached");
        stdio_calls(&srv.data_dir, &admin, &[("revoke_api_key", json!({ "id": agent_id }))]);
        let (s, body) = srv.post("/api/v1/api-keys", &agent, json!({ "name": "persist", "permissions": "admin" })).await;
        assert_eq!(s, 401, "round {round}: a revoked key minted a key: {body}");
    }
    let (_, keys) = srv.get("/api/v1/api-keys", &admin).await;
    assert!(!keys.to_string().contains("persist"), "{keys}");
}

/// Each read is one entry from the first request on: a fresh SQLite server
/// knows the database's `data_version` from the start, so its first audit
/// batch does not mistake the start for another process's write (which
/// would empty the cache and make the read look again, on record twice).
#[tokio::test]
async fn the_first_reads_after_start_are_recorded_once_on_sqlite() {
    let srv = Server::start(Backend::Sqlite).await;
    let key = srv.signup(&unique("fresh")).await;
    let (_, made) = srv.post("/api/v1/secrets", &key, json!({ "name": "FIRST", "value": "v" })).await;
    let path = format!("/api/v1/secrets/{}", made["id"].as_str().unwrap());
    for _ in 0..3 {
        assert_eq!(srv.get(&path, &key).await.0, 200);
    }
    let (_, trail) = srv.get("/api/v1/audit?action=secret.read", &key).await;
    assert_eq!(trail["total"], 3, "{trail}");
}
