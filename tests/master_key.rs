//! Moving a vault to another master key: an operator's story. Tenants made
//! under the old key, a replica restarted with both keys that keeps reading
//! while `latchkey rotate-master-key` rewraps every tenant key, then a server
//! with only the new key reads everything and one with only the old key is
//! refused. With a key file, the command makes the new key file itself.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use common::{Backend, Opts, Server, TEST_MASTER_KEY, bin};
use serde_json::{Value, json};

/// The key the vault moves to (base64 of 32 bytes).
const NEW_MASTER_KEY: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

fn on_same_data(srv_dir: &Path, url: &Option<String>, backend: Backend) -> Opts {
    let mut o = Opts::new(backend);
    o.data_dir = Some(srv_dir.to_path_buf());
    o.database_url = url.clone();
    o
}

/// Runs `latchkey rotate-master-key` on the data of `dir`/`url` with `env`.
fn rotate(dir: &Path, url: &Option<String>, env: &[(&str, &str)]) -> (bool, Value, String) {
    let mut cmd = Command::new(bin());
    cmd.arg("rotate-master-key").arg("--data-dir").arg(dir);
    for k in ["DATABASE_URL", "LATCHKEY_MASTER_KEY", "LATCHKEY_PASSPHRASE", "LATCHKEY_NEW_MASTER_KEY", "LATCHKEY_NEW_PASSPHRASE"] {
        cmd.env_remove(k);
    }
    cmd.env("LATCHKEY_LOG", "warn");
    if let Some(url) = url {
        cmd.env("DATABASE_URL", url);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run rotate-master-key");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.success(), serde_json::from_str(stdout.trim()).unwrap_or(Value::Null), String::from_utf8_lossy(&out.stderr).into_owned())
}

async fn store(srv: &Server, key: &str, name: &str, value: &str) -> String {
    let (s, b) = srv.post("/api/v1/secrets", key, json!({ "name": name, "value": value })).await;
    assert_eq!(s, 201, "{b}");
    b["secretId"].as_str().unwrap().to_owned()
}

async fn value(srv: &Server, key: &str, id: &str) -> (u16, Value) {
    let (s, b) = srv.get(&format!("/api/v1/secrets/{id}"), key).await;
    (s, b["value"].clone())
}

async fn rotation_while_reading(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let url = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some(common::fresh_pg_database().await),
    };
    // Before: two tenants (and one never read again until after the
    // rotation) under the old key only.
    let old = Server::start_with(on_same_data(dir.path(), &url, backend).arg("--key-rotation-poll-ms").arg("50")).await;
    let mut tenants = Vec::new();
    for t in ["mk-alpha", "mk-beta", "mk-cold"] {
        let key = old.signup(t).await;
        let id = store(&old, &key, "DB_PASSWORD", &format!("value-of-{t}")).await;
        tenants.push((t.to_owned(), key, id));
    }
    // One tenant rotated its data key: its retired generation is wrapped by
    // the master key too, and must move with the current one.
    let (s, b) = old.post("/api/v1/tenant/rotate-key", &tenants[0].1, json!(null)).await;
    assert_eq!(s, 202, "{b}");
    for _ in 0..600 {
        if old.get("/api/v1/tenant/key", &tenants[0].1).await.1["rotation"]["state"] == "done" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    old.stop();

    // Step 1: the replica restarts with both keys and keeps serving; a tenant
    // signed up now gets a data key wrapped by the new key already.
    let both = on_same_data(dir.path(), &url, backend).env("LATCHKEY_NEW_MASTER_KEY", NEW_MASTER_KEY);
    let srv = Arc::new(Server::start_with(both).await);
    let key = srv.signup("mk-gamma").await;
    let id = store(&srv, &key, "DB_PASSWORD", "value-of-mk-gamma").await;
    tenants.push(("mk-gamma".into(), key, id));

    // Reads of the warm tenants run throughout step 2.
    let stop = Arc::new(AtomicBool::new(false));
    let (reads, failures) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let warm: Vec<_> = tenants.iter().filter(|(t, ..)| t != "mk-cold").cloned().collect();
    let reader = {
        let (srv, stop, reads, failures) = (srv.clone(), stop.clone(), reads.clone(), failures.clone());
        tokio::spawn(async move {
            for _ in 0..100_000 {
                for (t, key, id) in &warm {
                    let (s, v) = value(&srv, key, id).await;
                    if s != 200 || v != json!(format!("value-of-{t}")) {
                        failures.fetch_add(1, Ordering::SeqCst);
                    }
                    reads.fetch_add(1, Ordering::SeqCst);
                }
                if stop.load(Ordering::SeqCst) {
                    break;
                }
            }
        })
    };

    // Step 2: the rewrap, in one transaction, while the reads go on.
    let (d, u) = (dir.path().to_path_buf(), url.clone());
    let (ok, out, err) = tokio::task::spawn_blocking(move || {
        rotate(&d, &u, &[("LATCHKEY_MASTER_KEY", TEST_MASTER_KEY), ("LATCHKEY_NEW_MASTER_KEY", NEW_MASTER_KEY)])
    })
    .await
    .unwrap();
    assert!(ok, "rotate-master-key failed: {err}");
    // Four data keys (mk-alpha's two generations, mk-beta's, mk-cold's); mk-gamma's was new already.
    assert_eq!(out, json!({ "rewrapped": 4, "already": 1 }), "{err}");
    // A few more reads after the commit, then stop.
    let after = reads.load(Ordering::SeqCst) + 30;
    for _ in 0..2000 {
        if reads.load(Ordering::SeqCst) >= after {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::SeqCst);
    reader.await.unwrap();
    assert!(reads.load(Ordering::SeqCst) >= after, "the reads stalled");
    assert_eq!(failures.load(Ordering::SeqCst), 0, "reads failed during the rotation");
    // The cold tenant's data key was first unwrapped after the rewrap: by the new key.
    let (t, key, id) = &tenants[2];
    assert_eq!(value(&srv, key, id).await, (200, json!(format!("value-of-{t}"))));
    // The rotation is in the trail, with what it did.
    assert_eq!(
        srv.sql("UPDATE audit_log SET outcome = outcome WHERE action = 'master_key.rotated' AND detail LIKE '%\"rewrapped\":4%'", &[])
            .await,
        1
    );
    Arc::try_unwrap(srv).ok().expect("reader done").stop();

    // Step 3: only the new key from now on; the old one alone is refused.
    let newest = on_same_data(dir.path(), &url, backend).env("LATCHKEY_MASTER_KEY", NEW_MASTER_KEY);
    let srv = Server::start_with(newest).await;
    for (t, key, id) in &tenants {
        assert_eq!(value(&srv, key, id).await, (200, json!(format!("value-of-{t}"))), "{t} under the new key");
    }
    srv.stop();
    let refused = Server::try_start(on_same_data(dir.path(), &url, backend)).await.err().expect("the old key must be refused");
    assert!(refused.contains("master key does not match"), "{refused}");
}

#[tokio::test]
async fn rotation_while_reading_on_sqlite() {
    rotation_while_reading(Backend::Sqlite).await;
}

#[tokio::test]
async fn rotation_while_reading_on_postgres() {
    rotation_while_reading(Backend::Postgres).await;
}

/// Without a new key the command refuses and changes nothing.
#[tokio::test]
async fn rotation_needs_a_new_key() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start_with(on_same_data(dir.path(), &None, Backend::Sqlite)).await;
    let key = srv.signup("mk-none").await;
    let id = store(&srv, &key, "TOKEN", "still-here").await;
    srv.stop();
    let (ok, _, err) = rotate(dir.path(), &None, &[("LATCHKEY_MASTER_KEY", TEST_MASTER_KEY)]);
    assert!(!ok);
    assert!(err.contains("LATCHKEY_NEW_MASTER_KEY"), "{err}");
    let srv = Server::start_with(on_same_data(dir.path(), &None, Backend::Sqlite)).await;
    assert_eq!(value(&srv, &key, &id).await, (200, json!("still-here")));
}

/// With the data dir's key file: the command writes the next key file,
/// rewraps, and renames it over `master.key`; a start between the two
/// (an interrupted run) opens with either key, and running again finishes.
#[tokio::test]
async fn key_file_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let file_mode = || on_same_data(dir.path(), &None, Backend::Sqlite).without_env("LATCHKEY_MASTER_KEY");
    let srv = Server::start_with(file_mode()).await;
    let key = srv.signup("mk-file").await;
    let id = store(&srv, &key, "TOKEN", "kept-by-file").await;
    srv.stop();
    let before = std::fs::read_to_string(dir.path().join("master.key")).unwrap();

    let (ok, out, err) = rotate(dir.path(), &None, &[]);
    assert!(ok, "{err}");
    assert_eq!(out["rewrapped"], 1, "{out}");
    let after = std::fs::read_to_string(dir.path().join("master.key")).unwrap();
    assert_ne!(before, after, "the key file must hold the new key");
    assert!(!dir.path().join("master.key.next").exists());
    let srv = Server::start_with(file_mode()).await;
    assert_eq!(value(&srv, &key, &id).await, (200, json!("kept-by-file")));
    srv.stop();

    // An interrupted rotation: the next key file written, nothing rewrapped yet.
    std::fs::write(dir.path().join("master.key.next"), format!("{NEW_MASTER_KEY}\n")).unwrap();
    let srv = Server::start_with(file_mode()).await;
    assert_eq!(value(&srv, &key, &id).await, (200, json!("kept-by-file")), "a start in between reads");
    srv.stop();
    let (ok, out, err) = rotate(dir.path(), &None, &[]);
    assert!(ok, "{err}");
    assert_eq!(out["rewrapped"], 1, "{out}");
    assert_eq!(std::fs::read_to_string(dir.path().join("master.key")).unwrap().trim(), NEW_MASTER_KEY);
    let srv = Server::start_with(file_mode()).await;
    assert_eq!(value(&srv, &key, &id).await, (200, json!("kept-by-file")));
}
