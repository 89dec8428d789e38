//! Concurrent writers: check-and-set admits exactly one winner, racing creates
//! make exactly one secret, contention never reaches a client as a 5xx,
//! clients that give up mid-write break nothing, a batch the database
//! refuses changes nothing, replicas that rotate the same secret in turn
//! never write on what they saw of it before, connections PostgreSQL cuts
//! are replaced, a rotation whose commit answer is lost is never written
//! twice, secrets deleted mid-rotation leave no versions behind, and
//! SQLite's WAL stays small under steady writes.

mod common;

use common::pg_proxy::{PgProxy, upstream_of};
use common::{Backend, Opts, Server, unique};
use serde_json::json;

async fn check_and_set(backend: Backend) {
    let srv = std::sync::Arc::new(Server::start(backend).await);
    let key = srv.signup(&unique("cas")).await;
    let (_, created) = srv.post("/api/v1/secrets", &key, json!({ "name": "COUNTER", "value": "v1" })).await;
    let id = created["id"].as_str().unwrap().to_owned();

    // 64 updates that all believe the secret is at version 1.
    let mut tasks = Vec::new();
    for i in 0..64 {
        let (srv, key, id) = (srv.clone(), key.clone(), id.clone());
        tasks.push(tokio::spawn(async move {
            srv.put(&format!("/api/v1/secrets/{id}"), &key, json!({ "value": format!("writer-{i}"), "expectedVersion": 1 })).await
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap().0);
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 409).count(), 63, "{statuses:?}");
    let (_, got) = srv.get(&format!("/api/v1/secrets/{id}"), &key).await;
    assert_eq!(got["version"], 2);
    assert!(got["value"].as_str().unwrap().starts_with("writer-"));

    // Unconditional updates all land, each as its own version.
    let mut tasks = Vec::new();
    for i in 0..32 {
        let (srv, key, id) = (srv.clone(), key.clone(), id.clone());
        tasks.push(tokio::spawn(
            async move { srv.put(&format!("/api/v1/secrets/{id}"), &key, json!({ "value": format!("u-{i}") })).await.0 },
        ));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let (_, versions) = srv.get(&format!("/api/v1/secrets/{id}/versions"), &key).await;
    assert_eq!(versions["currentVersion"], 34);
    assert_eq!(versions["versions"].as_array().unwrap().len(), 34);
    assert_eq!((versions["hasMore"].as_bool(), versions["nextCursor"].is_null()), (Some(false), true));

    // The history in pages of 10, newest first: 34..25, 24..15, 14..5, 4..1.
    let (mut seen, mut cursor, mut pages) = (Vec::new(), String::new(), 0);
    loop {
        let (s, page) = srv.get(&format!("/api/v1/secrets/{id}/versions?limit=10&cursor={cursor}"), &key).await;
        assert_eq!(s, 200, "{page}");
        pages += 1;
        seen.extend(page["versions"].as_array().unwrap().iter().map(|v| v["version"].as_i64().unwrap()));
        match page["nextCursor"].as_str() {
            Some(next) if pages < 10 => cursor = next.to_owned(),
            _ => {
                assert_eq!(page["hasMore"], false, "{page}");
                break;
            }
        }
    }
    assert_eq!((pages, seen), (4, (1..=34).rev().collect::<Vec<i64>>()));
    for bad in ["limit=0", "limit=1001", "cursor=not-ours", "cursor=WyJhIiwiYiJd", "limit=ten"] {
        let (s, body) = srv.get(&format!("/api/v1/secrets/{id}/versions?{bad}"), &key).await;
        assert_eq!((s, body["code"].as_str()), (400, Some("INVALID_REQUEST")), "{bad}: {body}");
    }

    // 32 racing creates of one name: one secret, the rest 409.
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (srv, key) = (srv.clone(), key.clone());
        tasks.push(tokio::spawn(async move { srv.post("/api/v1/secrets", &key, json!({ "name": "RACE", "value": "x" })).await.0 }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 201 || *s == 409), "{statuses:?}");
}

#[tokio::test]
async fn check_and_set_on_sqlite() {
    check_and_set(Backend::Sqlite).await;
}

#[tokio::test]
async fn check_and_set_on_postgres() {
    check_and_set(Backend::Postgres).await;
}

/// Rotations race over several secrets of two tenants (SQLite commits them
/// in shared transactions): each acknowledged write is exactly one version
/// holding exactly its value, another tenant's id is a 404 even in a shared
/// batch, and a stale expected version is a 409 that writes nothing.
async fn concurrent_rotations(backend: Backend) {
    let srv = std::sync::Arc::new(Server::start(backend).await);
    let owner = srv.signup(&unique("rot")).await;
    let intruder = srv.signup(&unique("rot-other")).await;
    let mut ids = Vec::new();
    for n in 0..4 {
        let (_, s) = srv.post("/api/v1/secrets", &owner, json!({ "name": format!("S{n}"), "value": "v0" })).await;
        ids.push(s["id"].as_str().unwrap().to_owned());
    }
    let mut tasks = Vec::new();
    for i in 0..96usize {
        let (srv, id) = (srv.clone(), ids[i % 4].clone());
        let key = if i % 8 == 7 { intruder.clone() } else { owner.clone() };
        // Every sixth write claims the secret is still at its first version.
        let body = if i % 6 == 5 { json!({ "value": format!("w{i}"), "expectedVersion": 1 }) } else { json!({ "value": format!("w{i}") }) };
        tasks.push(tokio::spawn(async move { (i, srv.put(&format!("/api/v1/secrets/{id}"), &key, body).await) }));
    }
    let mut written: Vec<Vec<(i64, String)>> = vec![vec![]; 4];
    for t in tasks {
        let (i, (status, body)) = t.await.unwrap();
        match status {
            200 => written[i % 4].push((body["version"].as_i64().unwrap(), format!("w{i}"))),
            404 => assert_eq!(i % 8, 7, "only the other tenant's writes are 404: {body}"),
            409 => assert_eq!((i % 6, body["code"].as_str()), (5, Some("VERSION_CONFLICT")), "{body}"),
            s => panic!("write {i}: {s} {body}"),
        }
    }
    for (n, id) in ids.iter().enumerate() {
        let mut got = written[n].clone();
        got.sort();
        let versions: Vec<i64> = got.iter().map(|(v, _)| *v).collect();
        assert_eq!(versions, (2..2 + got.len() as i64).collect::<Vec<_>>(), "versions of S{n} are contiguous and unique");
        for (version, value) in &got {
            let (_, body) = srv.get(&format!("/api/v1/secrets/{id}?version={version}"), &owner).await;
            assert_eq!(body["value"].as_str(), Some(value.as_str()), "S{n} v{version}");
        }
        let (_, current) = srv.get(&format!("/api/v1/secrets/{id}"), &owner).await;
        assert_eq!(current["version"].as_i64(), Some(1 + got.len() as i64));
    }
    let (_, audit) = srv.get("/api/v1/audit?action=secret.update&limit=1000", &owner).await;
    let updates = audit["logs"].as_array().unwrap().iter().filter(|e| e["outcome"] == "success").count();
    assert_eq!(updates, written.iter().map(Vec::len).sum::<usize>(), "one audit entry per acknowledged write");
}

/// Secrets deleted while their rotations stream in take every version with
/// them, also one that a batch committed while the delete waited for it:
/// PostgreSQL's versions have no foreign key to cascade from (migration
/// 0003), so `delete_secret` must delete the secret's row, which every
/// version write holds until it commits, before its versions. Each write
/// answers 200 before the delete and 404 after it, nothing else.
async fn deleted_mid_rotation(backend: Backend) {
    use sqlx::Connection;
    let srv = std::sync::Arc::new(Server::start(backend).await);
    let key = srv.signup(&unique("del")).await;
    let mut ids = Vec::new();
    for n in 0..8 {
        let (_, s) = srv.post("/api/v1/secrets", &key, json!({ "name": format!("D{n}"), "value": "v0" })).await;
        ids.push(s["id"].as_str().unwrap().to_owned());
    }
    let mut tasks = Vec::new();
    for (n, id) in ids.iter().enumerate() {
        for w in 0..6 {
            let (srv, key, id) = (srv.clone(), key.clone(), id.clone());
            tasks.push(tokio::spawn(async move {
                for r in 0..400 {
                    let (status, body) = srv.put(&format!("/api/v1/secrets/{id}"), &key, json!({ "value": format!("{w}-{r}") })).await;
                    match status {
                        200 => {}
                        404 => return,
                        s => panic!("write to a secret being deleted: {s} {body}"),
                    }
                }
                panic!("the secret was never deleted");
            }));
        }
        let (srv, key, id) = (srv.clone(), key.clone(), id.clone());
        tasks.push(tokio::spawn(async move {
            // Into the stream of writes, at a different moment for each secret.
            tokio::time::sleep(std::time::Duration::from_millis(30 + 7 * n as u64)).await;
            let (status, body) = srv.delete(&format!("/api/v1/secrets/{id}"), &key).await;
            assert_eq!(status, 200, "{body}");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let left = "SELECT COUNT(*) FROM secret_versions v WHERE NOT EXISTS (SELECT 1 FROM secrets s WHERE s.id = v.secret_id)";
    let left: i64 = match &srv.database_url {
        None => {
            let url = format!("sqlite://{}", srv.data_dir.join(latchkey::store::sqlite::DB_FILE).display());
            sqlx::query_scalar(left).fetch_one(&mut sqlx::SqliteConnection::connect(&url).await.unwrap()).await.unwrap()
        }
        Some(url) => sqlx::query_scalar(left).fetch_one(&mut sqlx::PgConnection::connect(url).await.unwrap()).await.unwrap(),
    };
    assert_eq!(left, 0, "versions outlived their deleted secret");
    for id in &ids {
        let (status, _) = srv.get(&format!("/api/v1/secrets/{id}/versions"), &key).await;
        assert_eq!(status, 404);
    }
}

#[tokio::test]
async fn deleted_mid_rotation_on_sqlite() {
    deleted_mid_rotation(Backend::Sqlite).await;
}

#[tokio::test]
async fn deleted_mid_rotation_on_postgres() {
    deleted_mid_rotation(Backend::Postgres).await;
}

/// SQLite's WAL is copied into the database file beside the writer
/// (`store/sqlite.rs`, `checkpoint_beside_the_writer`) and started over once
/// all of it is there. Under a steady stream of large rotations the WAL file
/// stays far below the writer's own backstop of 10,000 pages (40 MiB): a
/// checkpointer that stopped, or one that never let the WAL start over,
/// leaves it at that size or beyond (the file is reused, never shrunk).
#[tokio::test]
async fn the_wal_stays_small_under_steady_writes_on_sqlite() {
    let srv = std::sync::Arc::new(Server::start(Backend::Sqlite).await);
    let key = srv.signup(&unique("wal")).await;
    let mut ids = Vec::new();
    for n in 0..4 {
        let (_, s) = srv.post("/api/v1/secrets", &key, json!({ "name": format!("W{n}"), "value": "v0" })).await;
        ids.push(s["id"].as_str().unwrap().to_owned());
    }
    // 1,000 versions of 40 KiB each: ~11 WAL pages apiece, ~44 MiB of WAL in
    // all, and ~4 MiB between two rounds of the checkpointer.
    let rounds = 250;
    let mut tasks = Vec::new();
    for (w, id) in ids.iter().cloned().enumerate() {
        let (srv, key) = (srv.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            for r in 0..rounds {
                let value = format!("{w:02}-{r:03}-{}", "x".repeat(40 * 1024));
                let (status, body) = srv.put(&format!("/api/v1/secrets/{id}"), &key, json!({ "value": value })).await;
                assert_eq!(status, 200, "{body}");
                // A steady stream, not a burst: at most ~800 writes/s in all.
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let wal = std::fs::metadata(srv.data_dir.join("latchkey.db-wal")).expect("the WAL file").len();
    assert!(wal < 24 << 20, "the WAL grew to {} MiB", wal >> 20);
    for id in &ids {
        let (_, current) = srv.get(&format!("/api/v1/secrets/{id}"), &key).await;
        assert_eq!(current["version"].as_i64(), Some(1 + rounds as i64));
    }
}

#[tokio::test]
async fn concurrent_rotations_on_sqlite() {
    concurrent_rotations(Backend::Sqlite).await;
}

#[tokio::test]
async fn concurrent_rotations_on_postgres() {
    concurrent_rotations(Backend::Postgres).await;
}

/// Clients that give up mid-write (the server drops their handlers, inside
/// transactions or not) leave the single SQLite writer, and the pool on
/// PostgreSQL, usable: later writes land, every secret that exists reads
/// back whole, and no PostgreSQL session is left inside a transaction (where
/// the next autocommit write on that connection would never commit).
async fn abandoned_writes(backend: Backend) {
    let srv = std::sync::Arc::new(Server::start(backend).await);
    let key = srv.signup(&unique("gone")).await;
    let (_, created) = srv.post("/api/v1/secrets", &key, json!({ "name": "TARGET", "value": "v1" })).await;
    let id = created["id"].as_str().unwrap().to_owned();
    // Clients giving up after 1 to 4 ms leave the server at every step of a write.
    let impatient: Vec<reqwest::Client> =
        (1..=4).map(|ms| reqwest::Client::builder().no_proxy().timeout(std::time::Duration::from_millis(ms)).build().unwrap()).collect();
    // In waves, so each request reaches the database instead of queueing.
    let mut abandoned = 0;
    for wave in 0..12 {
        let mut tasks = Vec::new();
        for n in 0..48 {
            let i = wave * 48 + n;
            let (srv, key, id, http) = (srv.clone(), key.clone(), id.clone(), impatient[i % 4].clone());
            tasks.push(tokio::spawn(async move {
                let req = match i % 3 {
                    0 => http.post(srv.url("/api/v1/secrets")).json(&json!({ "name": format!("N{i}"), "value": "x" })),
                    1 => http.put(srv.url(&format!("/api/v1/secrets/{id}"))).json(&json!({ "description": format!("d{i}") })),
                    _ => http.put(srv.url(&format!("/api/v1/secrets/{id}"))).json(&json!({ "value": format!("w{i}") })),
                };
                req.header("X-API-Key", key).send().await.is_err()
            }));
        }
        for t in tasks {
            abandoned += usize::from(t.await.unwrap());
        }
    }
    assert!(abandoned > 0, "the client should have given up on some requests");
    if let Some(url) = &srv.database_url {
        use sqlx::Connection;
        let mut db = sqlx::PgConnection::connect(url).await.unwrap();
        const LEFT_OPEN: &str = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                                 AND state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()";
        let mut open = -1;
        // Handlers the server is still running may hold a transaction for a moment.
        for _ in 0..50 {
            open = sqlx::query_scalar::<_, i64>(LEFT_OPEN).fetch_one(&mut db).await.unwrap();
            if open == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert_eq!(open, 0, "sessions left inside a transaction");
    }

    let (s, after) = srv.put(&format!("/api/v1/secrets/{id}"), &key, json!({ "value": "after", "description": "after" })).await;
    assert_eq!(s, 200, "{after}");
    let (s, rotated) = srv.put(&format!("/api/v1/secrets/{id}"), &key, json!({ "value": "last" })).await;
    assert_eq!(s, 200, "{rotated}");
    let (_, got) = srv.get(&format!("/api/v1/secrets/{id}"), &key).await;
    assert_eq!((got["value"].as_str(), got["version"].as_i64()), (Some("last"), rotated["version"].as_i64()));
    let (s, created) = srv.post("/api/v1/secrets", &key, json!({ "name": "AFTER", "value": "y" })).await;
    assert_eq!(s, 201, "{created}");
    let (_, page) = srv.get("/api/v1/secrets?limit=200", &key).await;
    for secret in page["secrets"].as_array().unwrap() {
        let (s, body) = srv.get(&format!("/api/v1/secrets/{}", secret["id"].as_str().unwrap()), &key).await;
        assert_eq!(s, 200, "{body}");
        let expected = match secret["name"].as_str().unwrap() {
            "TARGET" => "last",
            "AFTER" => "y",
            _ => "x",
        };
        assert_eq!(body["value"].as_str(), Some(expected), "{body}");
    }
}

#[tokio::test]
async fn abandoned_writes_on_sqlite() {
    abandoned_writes(Backend::Sqlite).await;
}

#[tokio::test]
async fn abandoned_writes_on_postgres() {
    abandoned_writes(Backend::Postgres).await;
}

/// A rotation the database refuses is rolled back whole, its caller gets an
/// error, and the writer goes on: a version row planted behind the server's
/// back makes the next rotation of that secret collide with it.
async fn refused_batch(backend: Backend) {
    let srv = Server::start(backend).await;
    let key = srv.signup(&unique("refused")).await;
    let mut ids = Vec::new();
    for (name, value) in [("PLANTED", "p1"), ("OTHER", "o1")] {
        let (s, created) = srv.post("/api/v1/secrets", &key, json!({ "name": name, "value": value })).await;
        assert_eq!(s, 201, "{created}");
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    let (planted, other) = (&ids[0], &ids[1]);
    plant_version_2(&srv, planted).await;

    let (s, body) = srv.put(&format!("/api/v1/secrets/{planted}"), &key, json!({ "value": "p2" })).await;
    assert!(s >= 500, "a colliding version must fail: {s} {body}");
    let (_, got) = srv.get(&format!("/api/v1/secrets/{planted}"), &key).await;
    assert_eq!((got["value"].as_str(), got["version"].as_i64()), (Some("p1"), Some(1)), "{got}");
    let (_, audit) = srv.get("/api/v1/audit?limit=100", &key).await;
    let claimed = audit["logs"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["action"] == "secret.update" && e["outcome"] == "success" && e["resourceId"] == planted.as_str());
    assert!(!claimed, "the audit trail claims the refused rotation: {audit}");

    // The writer is not left inside the failed transaction: a rotation, a
    // metadata change and a create all land.
    let (s, body) = srv.put(&format!("/api/v1/secrets/{other}"), &key, json!({ "value": "o2" })).await;
    assert_eq!(s, 200, "{body}");
    let (s, body) = srv.put(&format!("/api/v1/secrets/{other}"), &key, json!({ "description": "still writable" })).await;
    assert_eq!(s, 200, "{body}");
    let (s, body) = srv.post("/api/v1/secrets", &key, json!({ "name": "AFTER", "value": "a" })).await;
    assert_eq!(s, 201, "{body}");
    let (_, got) = srv.get(&format!("/api/v1/secrets/{other}"), &key).await;
    assert_eq!((got["value"].as_str(), got["version"].as_i64()), (Some("o2"), Some(2)), "{got}");
}

/// Copies version 1 of `id` as version 2, straight into the server's database.
async fn plant_version_2(srv: &Server, id: &str) {
    const PLANT: &str = "INSERT INTO secret_versions (secret_id, version, sealed, created_at, created_by) \
                         SELECT secret_id, 2, sealed, created_at, created_by FROM secret_versions WHERE secret_id = $1 AND version = 1";
    use sqlx::Connection;
    let planted = match &srv.database_url {
        Some(url) => {
            let mut db = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::query(PLANT).bind(id).execute(&mut db).await.unwrap().rows_affected()
        }
        None => {
            let url = format!("sqlite://{}", srv.data_dir.join("latchkey.db").display());
            let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
            sqlx::query(PLANT).bind(id).execute(&mut db).await.unwrap().rows_affected()
        }
    };
    assert_eq!(planted, 1);
}

#[tokio::test]
async fn refused_batch_on_sqlite() {
    refused_batch(Backend::Sqlite).await;
}

#[tokio::test]
async fn refused_batch_on_postgres() {
    refused_batch(Backend::Postgres).await;
}

/// Two replicas on one PostgreSQL database rotate the same secret in turn.
/// A replica plans a rotation on the secret as its own last write left it
/// and lets the database compare and set; every write here follows one by
/// the other replica, so each must notice it is behind and redo the write
/// on the secret as it is: an expected version that is current succeeds, a
/// stale one is a 409 naming the real version, no version is lost or doubled,
/// the answer carries metadata changed elsewhere, and a secret deleted
/// elsewhere is a 404.
#[tokio::test]
async fn replicas_rotating_in_turn_on_postgres() {
    let a = Server::start(Backend::Postgres).await;
    let b = Server::start_with(Opts { database_url: a.database_url.clone(), ..Opts::new(Backend::Postgres) }).await;
    let key = a.signup(&unique("turns")).await;
    let (s, created) = a.post("/api/v1/secrets", &key, json!({ "name": "TURNS", "value": "v1" })).await;
    assert_eq!(s, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/secrets/{id}");
    async fn put_value(srv: &Server, path: &str, key: &str, value: &str, expected: Option<i64>) -> (u16, serde_json::Value) {
        let body = match expected {
            Some(e) => json!({ "value": value, "expectedVersion": e }),
            None => json!({ "value": value }),
        };
        srv.put(path, key, body).await
    }

    let mut acknowledged = Vec::new();
    for round in 0..3 {
        let v = 2 + 3 * round;
        // A writes, B writes behind A's back, then A writes with the version B left.
        let (s, body) = put_value(&a, &path, &key, &format!("a{v}"), None).await;
        assert_eq!((s, body["version"].as_i64()), (200, Some(v)), "{body}");
        let (s, body) = put_value(&b, &path, &key, &format!("b{}", v + 1), Some(v)).await;
        assert_eq!((s, body["version"].as_i64()), (200, Some(v + 1)), "{body}");
        let (s, body) = put_value(&a, &path, &key, &format!("a{}", v + 2), Some(v + 1)).await;
        assert_eq!((s, body["version"].as_i64()), (200, Some(v + 2)), "A must see B's version {}: {body}", v + 1);
        let (s, body) = put_value(&a, &path, &key, "stale", Some(v + 1)).await;
        assert_eq!((s, body["code"].as_str()), (409, Some("VERSION_CONFLICT")), "{body}");
        let names_current = body["message"].as_str().is_some_and(|m| m.contains(&format!("at version {}", v + 2)));
        assert!(names_current, "the conflict must name version {}: {body}", v + 2);
        acknowledged.extend([format!("a{v}"), format!("b{}", v + 1), format!("a{}", v + 2)]);
    }
    // B writes twice without a version; A, last at version 10, writes on 12.
    for value in ["b11", "b12"] {
        let (s, body) = put_value(&b, &path, &key, value, None).await;
        assert_eq!(s, 200, "{body}");
        acknowledged.push(value.to_owned());
    }
    let (s, body) = b.put(&path, &key, json!({ "description": "set on B" })).await;
    assert_eq!(s, 200, "{body}");
    let (s, body) = put_value(&a, &path, &key, "a13", None).await;
    assert_eq!((s, body["version"].as_i64(), body["description"].as_str()), (200, Some(13), Some("set on B")), "{body}");
    acknowledged.push("a13".to_owned());

    for (n, value) in acknowledged.iter().enumerate() {
        let version = n + 2;
        let (_, got) = b.get(&format!("{path}?version={version}"), &key).await;
        assert_eq!(got["value"].as_str(), Some(value.as_str()), "version {version}: {got}");
    }
    let (_, current) = a.get(&path, &key).await;
    assert_eq!((current["value"].as_str(), current["version"].as_i64()), (Some("a13"), Some(13)), "{current}");
    let (_, audit) = a.get("/api/v1/audit?action=secret.update&limit=1000", &key).await;
    let rotations =
        audit["logs"].as_array().unwrap().iter().filter(|e| e["outcome"] == "success" && e["detail"]["newVersion"] == true).count();
    assert_eq!(rotations, acknowledged.len(), "one audit entry per acknowledged rotation: {audit}");

    let (s, body) = b.delete(&path, &key).await;
    assert!(s == 200 || s == 204, "{s} {body}");
    let (s, body) = put_value(&a, &path, &key, "after delete", None).await;
    assert_eq!((s, body["code"].as_str()), (404, Some("SECRET_NOT_FOUND")), "{body}");
}

/// PostgreSQL ends every connection of the server (a restart, a failover, an
/// operator's `pg_terminate_backend`). The writers keep their connections
/// between batches, so the next read or rotation may fail once; after that
/// both work again, and each acknowledged rotation is exactly one version.
#[tokio::test]
async fn connections_cut_by_postgres() {
    use sqlx::Connection;
    let srv = Server::start(Backend::Postgres).await;
    let key = srv.signup(&unique("cut")).await;
    let (_, created) = srv.post("/api/v1/secrets", &key, json!({ "name": "CUT", "value": "v1" })).await;
    let path = format!("/api/v1/secrets/{}", created["id"].as_str().unwrap());
    assert_eq!(srv.get(&path, &key).await.0, 200);
    let (s, body) = srv.put(&path, &key, json!({ "value": "v2" })).await;
    assert_eq!(s, 200, "{body}");

    let mut db = sqlx::PgConnection::connect(srv.database_url.as_ref().unwrap()).await.unwrap();
    let cut: Vec<bool> = sqlx::query_scalar(
        // Client backends only: an autovacuum worker on this database would be
        // a superuser's process, which this role may not terminate.
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() \
         AND backend_type = 'client backend' AND usename = current_user",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    assert!(cut.len() >= 2, "the server held {} connections", cut.len());

    let (mut failures, mut written, mut last) = (0, 2, String::from("v2"));
    let mut both_ok = false;
    for n in 0..40 {
        let value = format!("after-{n}");
        let (write, _) = srv.put(&path, &key, json!({ "value": value })).await;
        if write == 200 {
            written += 1;
            last = value;
        }
        let (read, body) = srv.get(&path, &key).await;
        if read == 200 {
            assert_eq!((body["value"].as_str(), body["version"].as_i64()), (Some(last.as_str()), Some(written)), "{body}");
        }
        failures += usize::from(write != 200) + usize::from(read != 200);
        if write == 200 && read == 200 {
            both_ok = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(both_ok, "reads and rotations did not recover ({failures} failures)");
    // Each dead connection fails at most the one request that meets it: the
    // audit writer's, the version writer's, and the pooled ones that a write
    // or an audit chain's locked retry (its heads moved) takes.
    assert!(failures <= 6, "{failures} failed requests after the cut");
}

/// A rotation batch that takes the locked path (its secret moved behind the
/// replica's back) sends `COMMIT`, and the answer is lost. The transaction
/// may have committed, so its jobs must not run again: each rotation is
/// written at most once, and every one acknowledged is there exactly once.
#[tokio::test]
async fn a_commit_whose_answer_is_lost_is_never_written_twice() {
    use sqlx::Connection;
    let direct = common::fresh_pg_database().await;
    let cutter = PgProxy::start(upstream_of(&direct)).await;
    let proxied = cutter.url_for(&direct);
    let srv = std::sync::Arc::new(Server::start_with(Opts { database_url: Some(proxied), ..Opts::new(Backend::Postgres) }).await);
    let key = srv.signup(&unique("lost")).await;
    let mut ids = Vec::new();
    for name in ["LOCKED", "MOVED"] {
        let (s, created) = srv.post("/api/v1/secrets", &key, json!({ "name": name, "value": "v1" })).await;
        assert_eq!(s, 201, "{created}");
        let id = created["id"].as_str().unwrap().to_owned();
        // One rotation each, so the server remembers both at version 2.
        assert_eq!(srv.put(&format!("/api/v1/secrets/{id}"), &key, json!({ "value": "v2" })).await.0, 200);
        ids.push(id);
    }
    let (locked, moved) = (ids[0].clone(), ids[1].clone());

    // "Another replica" holds a lock on LOCKED and moves MOVED to version 3.
    let mut db = sqlx::PgConnection::connect(&direct).await.unwrap();
    let mut other = db.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM secrets WHERE id = $1 FOR UPDATE").bind(&locked).execute(&mut *other).await.unwrap();
    sqlx::query(
        "INSERT INTO secret_versions SELECT secret_id, 3, sealed, created_at, created_by FROM secret_versions WHERE secret_id = $1 AND version = 2",
    )
    .bind(&moved)
    .execute(&mut *other)
    .await
    .unwrap();
    sqlx::query("UPDATE secrets SET current_version = 3 WHERE id = $1").bind(&moved).execute(&mut *other).await.unwrap();

    let put = |id: String, value: &'static str| {
        let (srv, key) = (srv.clone(), key.clone());
        tokio::spawn(async move { (value, srv.put(&format!("/api/v1/secrets/{id}"), &key, json!({ "value": value })).await) })
    };
    // The version writer's batch for LOCKED waits on the lock ...
    let first = put(locked.clone(), "locked-v3");
    assert!(lock_waits(&mut other).await, "the rotation of LOCKED never waited on the lock");
    // ... so two rotations of MOVED queue behind it as one batch, which
    // finds MOVED moved and takes the locked path.
    let rotations = [put(moved.clone(), "moved-a"), put(moved.clone(), "moved-b")];
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    cutter.cut_next_commit();
    other.commit().await.unwrap();

    assert_eq!(first.await.unwrap().1.0, 200);
    let mut acknowledged = Vec::new();
    for rotation in rotations {
        let (value, (status, body)) = rotation.await.unwrap();
        if status == 200 {
            acknowledged.push((value, body["version"].as_i64().unwrap()));
        } else {
            assert_eq!((status, body["code"].as_str()), (500, Some("INTERNAL_ERROR")), "{body}");
        }
    }
    // The server answered as soon as its session broke; wait until the cut
    // session is over and PostgreSQL has finished with it.
    for _ in 0..200 {
        if cutter.cuts() > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(cutter.cuts(), 1, "the batch of MOVED never sent its COMMIT");
    let mut settled = false;
    for _ in 0..200 {
        let busy: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() \
             AND state IN ('active', 'idle in transaction')",
        )
        .fetch_one(&mut db)
        .await
        .unwrap();
        if busy == 0 {
            settled = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(settled, "PostgreSQL still runs the cut session");

    let current: i64 =
        sqlx::query_scalar("SELECT current_version FROM secrets WHERE id = $1").bind(&moved).fetch_one(&mut db).await.unwrap();
    assert!(current - 3 <= 2, "two rotations wrote {} versions", current - 3);
    let mut written = Vec::new();
    for version in 4..=current {
        let (_, got) = srv.get(&format!("/api/v1/secrets/{moved}?version={version}"), &key).await;
        written.push(got["value"].as_str().unwrap().to_owned());
    }
    let mut distinct = written.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), written.len(), "a rotation was written twice: {written:?}");
    for (value, version) in acknowledged {
        assert_eq!(written.get((version - 4) as usize).map(String::as_str), Some(value), "acknowledged {value} at {version}: {written:?}");
    }
    // The server no longer trusts what it remembered of MOVED and goes on.
    let (s, body) = srv.put(&format!("/api/v1/secrets/{moved}"), &key, json!({ "value": "after", "expectedVersion": current })).await;
    assert_eq!((s, body["version"].as_i64()), (200, Some(current + 1)), "{body}");
}

/// A key change (a rename) that read the key just before another replica's
/// change of it committed must not write back what that change did: the
/// rename waits on the other change's row lock, then finds the key changed
/// and answers 409. Here the other change is a revocation, then a
/// regeneration; either way the old token must stay dead.
#[tokio::test]
async fn a_key_change_cannot_undo_a_concurrent_one() {
    use sqlx::Connection;
    let srv = std::sync::Arc::new(Server::start(Backend::Postgres).await);
    let admin = srv.signup(&unique("undo")).await;
    let mut db = sqlx::PgConnection::connect(srv.database_url.as_deref().unwrap()).await.unwrap();
    for (what, change) in [
        ("revocation", "UPDATE api_keys SET revoked_at = 1, updated_at = updated_at + 1 WHERE id = $1"),
        ("regeneration", "UPDATE api_keys SET key_hash = decode('78', 'hex') || key_hash, updated_at = updated_at + 1 WHERE id = $1"),
    ] {
        let (_, k) = srv.post("/api/v1/api-keys", &admin, json!({ "name": what, "permissions": "read" })).await;
        let (key, key_id) = (k["apiKey"].as_str().unwrap().to_owned(), k["id"].as_str().unwrap().to_owned());
        assert_eq!(srv.get("/api/v1/secrets", &key).await.0, 200);

        // "Another replica" changes the key and has not committed yet.
        let mut other = db.begin().await.unwrap();
        sqlx::query(change).bind(&key_id).execute(&mut *other).await.unwrap();
        let (s, admin, path) = (srv.clone(), admin.clone(), format!("/api/v1/api-keys/{key_id}"));
        let rename = tokio::spawn(async move { s.put(&path, &admin, json!({ "name": "renamed" })).await });
        assert!(lock_waits(&mut other).await, "{what}: the rename never waited on the other change's lock");
        other.commit().await.unwrap();

        let (s, body) = rename.await.unwrap();
        assert_eq!((s, body["code"].as_str()), (409, Some("CONFLICT")), "{what}: {body}");
        let mut refused = false;
        for _ in 0..100 {
            if srv.get("/api/v1/secrets", &key).await.0 == 401 {
                refused = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(refused, "{what}: the rename brought the old key back");
    }
}

/// Whether a session of the current database comes to wait on a lock,
/// within 5 s. PostgreSQL keeps one snapshot of the activity view per
/// transaction, so each look takes a fresh one.
async fn lock_waits(conn: &mut sqlx::PgConnection) -> bool {
    for _ in 0..100 {
        sqlx::query("SELECT pg_stat_clear_snapshot()").execute(&mut *conn).await.unwrap();
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()")
                .fetch_one(&mut *conn)
                .await
                .unwrap();
        if n > 0 {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}
