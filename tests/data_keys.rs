//! A tenant rotates its data key while agents keep reading and writing: a
//! new generation seals every value from the rotation on, a background pass
//! seals every old version again, reads never fail, and a crash mid-pass
//! resumes where the last batch ended. On PostgreSQL a second replica that
//! has not heard of the rotation reads and writes throughout.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::{Backend, Opts, Server};
use serde_json::{Value, json};
use sqlx::Connection;

fn opts(backend: Backend, dir: &std::path::Path, url: &Option<String>, poll_ms: &str, batch: &str) -> Opts {
    let mut o = Opts::new(backend).arg("--key-rotation-poll-ms").arg(poll_ms).arg("--key-rotation-batch").arg(batch);
    o.data_dir = Some(dir.to_path_buf());
    o.database_url = url.clone();
    o
}

async fn database(backend: Backend) -> Option<String> {
    match backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some(common::fresh_pg_database().await),
    }
}

/// The generation (from the blob's header) of every version of `tenant`,
/// read straight from the database.
async fn generations(srv: &Server, tenant: &str) -> Vec<u32> {
    let sql = "SELECT v.sealed FROM secret_versions v JOIN secrets s ON s.id = v.secret_id WHERE s.tenant_id = $1";
    let blobs: Vec<Vec<u8>> = match &srv.database_url {
        None => {
            let url = format!("sqlite://{}", srv.data_dir.join("latchkey.db").display());
            let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
            sqlx::query_scalar(sql).bind(tenant).fetch_all(&mut c).await.unwrap()
        }
        Some(url) => {
            let mut c = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::query_scalar(sql).bind(tenant).fetch_all(&mut c).await.unwrap()
        }
    };
    blobs
        .iter()
        .map(|b| match b[0] {
            1 => 0,
            2 => u32::from_be_bytes(b[1..5].try_into().unwrap()),
            other => panic!("unknown blob format {other}"),
        })
        .collect()
}

/// Stores `n` secrets with three versions each; returns (id, [v1, v2, v3]).
async fn secrets(srv: &Server, key: &str, n: usize) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for i in 0..n {
        let values: Vec<String> = (1..=3).map(|v| format!("value-{i}-v{v}")).collect();
        let (s, b) = srv.post("/api/v1/secrets", key, json!({ "name": format!("KEY_{i}"), "value": values[0] })).await;
        assert_eq!(s, 201, "{b}");
        let id = b["secretId"].as_str().unwrap().to_owned();
        for v in &values[1..] {
            let (s, b) = srv.put(&format!("/api/v1/secrets/{id}"), key, json!({ "value": v })).await;
            assert_eq!(s, 200, "{b}");
        }
        out.push((id, values));
    }
    out
}

/// Every version of every secret reads back as written.
async fn all_read_back(srv: &Server, key: &str, secrets: &[(String, Vec<String>)]) {
    for (id, values) in secrets {
        for (i, want) in values.iter().enumerate() {
            let (s, b) = srv.get(&format!("/api/v1/secrets/{id}?version={}", i + 1), key).await;
            assert_eq!((s, b["value"].as_str()), (200, Some(want.as_str())), "{id} v{}: {b}", i + 1);
        }
    }
}

/// Polls `GET /api/v1/tenant/key` (bounded) until `done(state)`.
async fn wait_for(srv: &Server, key: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..600 {
        let (s, b) = srv.get("/api/v1/tenant/key", key).await;
        assert_eq!(s, 200, "{b}");
        if done(&b) {
            return b;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("waited 30 s for {what}; stderr: {}", srv.stderr());
}

/// Readers of every secret's every version until `stop`: (reads, failures).
fn readers(
    srv: Arc<Server>,
    key: String,
    secrets: Arc<Vec<(String, Vec<String>)>>,
    stop: Arc<AtomicBool>,
) -> (tokio::task::JoinHandle<()>, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let (reads, failures) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (r, f) = (reads.clone(), failures.clone());
    let task = tokio::spawn(async move {
        while !stop.load(Ordering::SeqCst) {
            for (id, values) in secrets.iter() {
                for (i, want) in values.iter().enumerate() {
                    let (s, b) = srv.get(&format!("/api/v1/secrets/{id}?version={}", i + 1), &key).await;
                    r.fetch_add(1, Ordering::SeqCst);
                    if s != 200 || b["value"].as_str() != Some(want.as_str()) {
                        eprintln!("read failed: {s} {b}");
                        f.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        }
    });
    (task, reads, failures)
}

async fn rotation_while_reading(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let url = database(backend).await;
    let srv = Arc::new(Server::start_with(opts(backend, dir.path(), &url, "50", "7")).await);
    let admin = srv.signup("dk-alpha").await;
    let stored = Arc::new(secrets(&srv, &admin, 12).await);
    assert!(generations(&srv, "dk-alpha").await.iter().all(|&g| g == 0));

    // Only owners and unscoped admin keys may rotate or look.
    let (_, b) = srv.post("/api/v1/api-keys", &admin, json!({ "name": "writer", "permissions": "write" })).await;
    let writer = b["apiKey"].as_str().unwrap().to_owned();
    for (method, path) in [("POST", "/api/v1/tenant/rotate-key"), ("GET", "/api/v1/tenant/key")] {
        let (s, b) = srv.call(method, path, Some(&writer), None).await;
        assert_eq!((s, b["code"].as_str()), (403, Some("SCOPE_DENIED")), "{method} {path}: {b}");
    }
    let (s, b) = srv.get("/api/v1/tenant/key", &admin).await;
    assert_eq!((s, &b["generation"], &b["rotation"]), (200, &json!(0), &Value::Null), "{b}");
    // A backup made now wraps its archive key under generation 0.
    let (s, b) = srv.post("/api/v1/backup", &admin, json!({ "name": "before-rotation" })).await;
    assert_eq!(s, 201, "{b}");
    let backup = b["id"].as_str().unwrap().to_owned();

    // A second replica on PostgreSQL, which caches generation 0 now.
    let replica = match backend {
        Backend::Postgres => {
            let r = Arc::new(Server::start_with(opts(backend, dir.path(), &url, "50", "7")).await);
            let (s, _) = r.get(&format!("/api/v1/secrets/{}", stored[0].0), &admin).await;
            assert_eq!(s, 200);
            Some(r)
        }
        Backend::Sqlite => None,
    };

    let stop = Arc::new(AtomicBool::new(false));
    let (task, reads, failures) = readers(srv.clone(), admin.clone(), stored.clone(), stop.clone());
    let other = replica.clone().map(|r| readers(r, admin.clone(), stored.clone(), stop.clone()));

    let (s, b) = srv.post("/api/v1/tenant/rotate-key", &admin, json!(null)).await;
    assert_eq!(s, 202, "{b}");
    assert_eq!((&b["generation"], &b["retiredGenerations"], &b["rotation"]["state"]), (&json!(1), &json!([0]), &json!("running")));
    let (s, b) = srv.post("/api/v1/tenant/rotate-key", &admin, json!(null)).await;
    assert_eq!((s, b["code"].as_str()), (409, Some("CONFLICT")), "one rotation at a time: {b}");

    // A value written now is sealed under the new generation at once.
    let (s, b) = srv.post("/api/v1/secrets", &admin, json!({ "name": "NEW_ONE", "value": "fresh" })).await;
    assert_eq!(s, 201, "{b}");
    let fresh = b["secretId"].as_str().unwrap().to_owned();
    // And one written through the replica lands under whichever generation it
    // holds; either way the pass leaves none under generation 0.
    if let Some(r) = &replica {
        let (s, b) = r.put(&format!("/api/v1/secrets/{fresh}"), &admin, json!({ "value": "fresh-2" })).await;
        assert_eq!(s, 200, "{b}");
    }

    let done = wait_for(&srv, &admin, "the pass", |b| b["rotation"]["state"] == "done").await;
    assert!(done["rotation"]["finishedAt"].is_string(), "{done}");
    assert!(done["rotation"]["resealed"].as_i64().unwrap() >= 36, "every old version resealed: {done}");
    assert_eq!(done["rotation"]["versions"], json!(36 + 1 + i64::from(replica.is_some())), "{done}");
    // Readers go on across the end of the pass, then stop.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    task.await.unwrap();
    assert!(reads.load(Ordering::SeqCst) >= 36, "the readers ran");
    assert_eq!(failures.load(Ordering::SeqCst), 0, "no read failed during the rotation");
    if let Some((task, reads, failures)) = other {
        task.await.unwrap();
        assert!(reads.load(Ordering::SeqCst) >= 36);
        assert_eq!(failures.load(Ordering::SeqCst), 0, "no read failed on the replica that had generation 0 cached");
    }
    assert!(generations(&srv, "dk-alpha").await.iter().all(|&g| g == 1), "every version is under generation 1");

    // A second rotation: generation 2; both earlier ones kept.
    let (s, b) = srv.post("/api/v1/tenant/rotate-key", &admin, json!(null)).await;
    assert_eq!((s, &b["generation"], &b["retiredGenerations"]), (202, &json!(2), &json!([0, 1])), "{b}");
    wait_for(&srv, &admin, "the second pass", |b| b["rotation"]["state"] == "done" && b["generation"] == 2).await;
    assert!(generations(&srv, "dk-alpha").await.iter().all(|&g| g == 2));
    all_read_back(&srv, &admin, &stored).await;
    // The backup from before both rotations still restores (its key opens
    // with the retired generation 0), and its versions come back under 2.
    let (s, b) = srv.post(&format!("/api/v1/backup/{backup}/restore"), &admin, json!(null)).await;
    assert_eq!(s, 200, "{b}");
    all_read_back(&srv, &admin, &stored).await;
    assert!(generations(&srv, "dk-alpha").await.iter().all(|&g| g == 2));

    // The trail: who rotated (and who was refused), and each pass's end.
    let (_, b) = srv.get("/api/v1/audit?action=tenant.key_rotated", &admin).await;
    let outcomes: Vec<&str> = b["logs"].as_array().unwrap().iter().rev().map(|e| e["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["denied", "success", "rejected", "success"], "{b}");
    let (_, b) = srv.get("/api/v1/audit?action=tenant.key_resealed", &admin).await;
    assert_eq!(b["logs"].as_array().unwrap().iter().filter(|e| e["action"] == "tenant.key_resealed").count(), 2, "{b}");

    // A restart reads every generation's keys from the database.
    drop(replica);
    let srv = Arc::into_inner(srv).unwrap();
    srv.stop();
    let srv = Server::start_with(opts(backend, dir.path(), &url, "50", "7")).await;
    all_read_back(&srv, &admin, &stored).await;
    let (s, b) = srv.get(&format!("/api/v1/secrets/{fresh}"), &admin).await;
    assert_eq!(s, 404, "the restore replaced the secrets with the backup's, which had no NEW_ONE: {b}");
}

#[tokio::test]
async fn rotation_while_reading_on_sqlite() {
    rotation_while_reading(Backend::Sqlite).await;
}

#[tokio::test]
async fn rotation_while_reading_on_postgres() {
    rotation_while_reading(Backend::Postgres).await;
}

/// The server is killed (SIGKILL) while the pass is half done; the next one
/// takes the pass over once the lease lapses and finishes it, each version
/// resealed exactly once.
async fn a_crash_mid_pass_resumes(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let url = database(backend).await;
    // One version per batch, twenty batches a turn, a turn every 100 ms.
    let srv = Server::start_with(opts(backend, dir.path(), &url, "100", "1")).await;
    let admin = srv.signup("dk-crash").await;
    let stored = secrets(&srv, &admin, 60).await;
    let (s, b) = srv.post("/api/v1/tenant/rotate-key", &admin, json!(null)).await;
    assert_eq!(s, 202, "{b}");
    let midway = wait_for(&srv, &admin, "the pass to start", |b| b["rotation"]["resealed"].as_i64().unwrap_or(0) >= 10).await;
    drop(srv); // SIGKILL
    assert_eq!(midway["rotation"]["state"], "running", "the pass was still going: {midway}");

    let srv = Server::start_with(opts(backend, dir.path(), &url, "100", "1")).await;
    let gens = generations(&srv, "dk-crash").await;
    assert!(gens.contains(&0) && gens.contains(&1), "half done when killed: {gens:?}");
    // Reads work before the pass resumes (both generations open).
    all_read_back(&srv, &admin, &stored[..5]).await;
    let done = wait_for(&srv, &admin, "the resumed pass", |b| b["rotation"]["state"] == "done").await;
    assert_eq!(done["rotation"]["resealed"], json!(180), "each version resealed once: {done}");
    assert!(generations(&srv, "dk-crash").await.iter().all(|&g| g == 1));
    all_read_back(&srv, &admin, &stored).await;
}

#[tokio::test]
async fn a_crash_mid_pass_resumes_on_sqlite() {
    a_crash_mid_pass_resumes(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_crash_mid_pass_resumes_on_postgres() {
    a_crash_mid_pass_resumes(Backend::Postgres).await;
}
