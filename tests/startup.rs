//! Starting, unlocking and stopping: the master key's sources, refusing a wrong
//! key, and what ends up on disk.

mod common;

use common::{Backend, Opts, Server, TEST_MASTER_KEY, unique};
use serde_json::json;

#[tokio::test]
async fn first_start_creates_a_private_key_file_and_later_starts_reuse_it() {
    let dir = tempfile::tempdir().unwrap();
    let opts = || Opts { data_dir: Some(dir.path().to_path_buf()), ..Opts::new(Backend::Sqlite).without_env("LATCHKEY_MASTER_KEY") };
    let srv = Server::start_with(opts()).await;
    let key_file = dir.path().join("master.key");
    assert!(key_file.exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777, 0o600);
    }
    assert!(srv.stderr().contains("generated a master key file"), "warns about the generated key");
    let api = srv.signup(&unique("keyfile")).await;
    let (_, created) = srv.post("/api/v1/secrets", &api, json!({ "name": "A", "value": "kept across restarts" })).await;
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(srv.stop(), Some(0));

    let srv = Server::start_with(opts()).await;
    assert_eq!(srv.get(&format!("/api/v1/secrets/{id}"), &api).await.1["value"], "kept across restarts");
    assert!(!srv.stderr().contains("generated a master key file"));
    srv.stop();
}

async fn refuses_a_wrong_master_key(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start_with(Opts { data_dir: Some(dir.path().to_path_buf()), ..Opts::new(backend) }).await;
    let db = srv.database_url.clone();
    let api = srv.signup(&unique("wrongkey")).await;
    assert_eq!(srv.post("/api/v1/secrets", &api, json!({ "name": "A", "value": "v" })).await.0, 201);
    srv.stop();

    let other_key = "ZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmY=";
    let err = Server::try_start(Opts {
        data_dir: Some(dir.path().to_path_buf()),
        database_url: db,
        ..Opts::new(backend).env("LATCHKEY_MASTER_KEY", other_key)
    })
    .await
    .err()
    .expect("a wrong master key must not start");
    assert!(err.contains("key-check"), "clear message: {err}");
}

#[tokio::test]
async fn refuses_a_wrong_master_key_on_sqlite() {
    refuses_a_wrong_master_key(Backend::Sqlite).await;
}

#[tokio::test]
async fn refuses_a_wrong_master_key_on_postgres() {
    refuses_a_wrong_master_key(Backend::Postgres).await;
}

#[tokio::test]
async fn passphrase_unlocks_the_same_data_and_a_wrong_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let opts = |pass: &str| Opts {
        data_dir: Some(dir.path().to_path_buf()),
        ..Opts::new(Backend::Sqlite).without_env("LATCHKEY_MASTER_KEY").env("LATCHKEY_PASSPHRASE", pass)
    };
    let srv = Server::start_with(opts("correct horse battery staple")).await;
    let api = srv.signup(&unique("pass")).await;
    let (_, created) = srv.post("/api/v1/secrets", &api, json!({ "name": "P", "value": "behind a passphrase" })).await;
    let id = created["id"].as_str().unwrap().to_owned();
    srv.stop();
    assert!(!dir.path().join("master.key").exists(), "no key file when a passphrase is given");

    let srv = Server::start_with(opts("correct horse battery staple")).await;
    assert_eq!(srv.get(&format!("/api/v1/secrets/{id}"), &api).await.1["value"], "behind a passphrase");
    srv.stop();
    assert!(Server::try_start(opts("wrong horse")).await.is_err());
}

#[tokio::test]
async fn bad_configuration_is_refused_with_a_clear_message() {
    let err =
        Server::try_start(Opts { database_url: Some("mysql://localhost/x".into()), ..Opts::new(Backend::Sqlite) }).await.err().unwrap();
    assert!(err.contains("unsupported database URL scheme 'mysql'"), "{err}");
    let err = Server::try_start(Opts::new(Backend::Sqlite).env("LATCHKEY_MASTER_KEY", "c2hvcnQ=")).await.err().unwrap();
    assert!(err.contains("32 bytes"), "{err}");
    let err = Server::try_start(Opts::new(Backend::Sqlite).arg("--default-plan").arg("platinum")).await.err().unwrap();
    assert!(err.contains("unknown plan"), "{err}");
}

#[tokio::test]
async fn no_plaintext_value_anywhere_in_the_data_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let srv = Server::start_with(Opts { data_dir: Some(tmp.path().to_path_buf()), ..Opts::new(Backend::Sqlite) }).await;
    let api = srv.signup(&unique("canary")).await;
    let canary = format!("canary-{}", uuid::Uuid::new_v4().simple());
    for i in 0..3 {
        let (s, _) = srv
            .post(
                "/api/v1/secrets",
                &api,
                json!({ "name": format!("C{i}"), "value": format!("{canary}-{i}"), "description": "not the value" }),
            )
            .await;
        assert_eq!(s, 201);
    }
    let (_, list) = srv.get("/api/v1/secrets", &api).await;
    let id = list["secrets"][0]["id"].as_str().unwrap().to_owned();
    assert!(srv.get(&format!("/api/v1/secrets/{id}"), &api).await.1["value"].as_str().unwrap().starts_with(&canary));
    let dir = srv.data_dir.clone();
    let data = |dir: &std::path::Path| {
        let mut hits = vec![];
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            if bytes.windows(canary.len()).any(|w| w == canary.as_bytes()) {
                hits.push(path);
            }
        }
        hits
    };
    // While running (WAL, logs) and after a clean stop (checkpointed database).
    assert_eq!(data(&dir), Vec::<std::path::PathBuf>::new());
    assert_eq!(srv.stop(), Some(0));
    assert_eq!(data(&dir), Vec::<std::path::PathBuf>::new());
}

#[tokio::test]
async fn healthz_and_graceful_shutdown() {
    let srv = Server::start_with(Opts::new(Backend::Sqlite).env("LATCHKEY_MASTER_KEY", TEST_MASTER_KEY)).await;
    let resp = srv.http.get(srv.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(srv.stop(), Some(0));
}

/// A database from before migration 0002, whose versions checked their
/// secret row by row, is rebuilt at start: every version reads back as it
/// was, new versions go in batches under the rebuilt table, and deleting a
/// secret still takes its versions with it.
#[tokio::test]
async fn an_older_sqlite_database_keeps_every_version_through_the_upgrade() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let opts = || Opts { data_dir: Some(dir.path().to_path_buf()), ..Opts::new(Backend::Sqlite) };
    let srv = Server::start_with(opts()).await;
    let api = srv.signup(&unique("upgrade")).await;
    let mut ids = vec![];
    for name in ["DB_PASSWORD", "API_TOKEN"] {
        let (s, created) = srv.post("/api/v1/secrets", &api, json!({ "name": name, "value": format!("{name}-1") })).await;
        assert_eq!(s, 201, "{created}");
        let id = created["secretId"].as_str().unwrap().to_owned();
        for v in 2..=3 {
            assert_eq!(srv.put(&format!("/api/v1/secrets/{id}"), &api, json!({ "value": format!("{name}-{v}") })).await.0, 200);
        }
        ids.push((name, id));
    }
    assert_eq!(srv.stop(), Some(0));

    // The table as migration 0001 made it, and 0002 not yet applied.
    let url = format!("sqlite://{}", dir.path().join("latchkey.db").display());
    let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::raw_sql(
        "CREATE TABLE old_versions (
             secret_id  TEXT NOT NULL REFERENCES secrets(id) ON DELETE CASCADE,
             version    INTEGER NOT NULL,
             sealed     BLOB NOT NULL,
             created_at INTEGER NOT NULL,
             created_by TEXT NOT NULL,
             PRIMARY KEY (secret_id, version)
         );
         INSERT INTO old_versions SELECT * FROM secret_versions;
         DROP TABLE secret_versions;
         ALTER TABLE old_versions RENAME TO secret_versions;
         DELETE FROM _sqlx_migrations WHERE version = 2;",
    )
    .execute(&mut db)
    .await
    .unwrap();
    let schema = "SELECT sql FROM sqlite_master WHERE name = 'secret_versions'";
    let before: String = sqlx::query_scalar(schema).fetch_one(&mut db).await.unwrap();
    assert!(!before.contains("DEFERRED"), "{before}");
    db.close().await.unwrap();

    let srv = Server::start_with(opts()).await;
    for (name, id) in &ids {
        for v in 1..=3 {
            let (s, body) = srv.get(&format!("/api/v1/secrets/{id}?version={v}"), &api).await;
            assert_eq!((s, body["value"].as_str()), (200, Some(format!("{name}-{v}").as_str())), "{body}");
        }
    }
    // Concurrent rotations share a batch: one multi-row insert of versions.
    let puts = (0..16).map(|i| {
        let (srv, api, (name, id)) = (&srv, &api, &ids[i % 2]);
        async move { srv.put(&format!("/api/v1/secrets/{id}"), api, json!({ "value": format!("{name}-later-{i}") })).await }
    });
    for (s, body) in futures::future::join_all(puts).await {
        assert_eq!(s, 200, "{body}");
    }
    for (_, id) in &ids {
        let (_, versions) = srv.get(&format!("/api/v1/secrets/{id}/versions"), &api).await;
        assert_eq!(versions["versions"].as_array().unwrap().len(), 11, "{versions}");
    }
    let (doomed, kept) = (&ids[0].1, &ids[1].1);
    // A purge (a plain delete is restorable, and keeps its versions).
    assert_eq!(srv.delete(&format!("/api/v1/secrets/{doomed}?permanent=true"), &api).await.0, 200);
    assert_eq!(srv.stop(), Some(0));

    let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let after: String = sqlx::query_scalar(schema).fetch_one(&mut db).await.unwrap();
    assert!(after.contains("DEFERRABLE INITIALLY DEFERRED"), "{after}");
    let count = "SELECT COUNT(*) FROM secret_versions WHERE secret_id = ?";
    let left: i64 = sqlx::query_scalar(count).bind(doomed).fetch_one(&mut db).await.unwrap();
    let kept: i64 = sqlx::query_scalar(count).bind(kept).fetch_one(&mut db).await.unwrap();
    assert_eq!((left, kept), (0, 11));
}
