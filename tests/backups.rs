//! Tenant backups and restore (`/api/v1/backup…`) and the operator's
//! `latchkey backup create|restore FILE`, through the real server on both
//! databases.

mod common;

use common::{Backend, Opts, Server, TEST_MASTER_KEY, unique};
use serde_json::{Value, json};

/// Another master key (base64 of 32 bytes), for a second server.
const OTHER_MASTER_KEY: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

async fn create_secret(srv: &Server, key: &str, body: Value) -> String {
    let (s, b) = srv.post("/api/v1/secrets", key, body).await;
    assert_eq!(s, 201, "{b}");
    b["id"].as_str().unwrap().to_owned()
}

async fn new_version(srv: &Server, key: &str, id: &str, value: &str) {
    let (s, b) = srv.put(&format!("/api/v1/secrets/{id}"), key, json!({ "value": value })).await;
    assert_eq!(s, 200, "{b}");
}

async fn value(srv: &Server, key: &str, id: &str, version: Option<i64>) -> (u16, Value) {
    let path = match version {
        Some(v) => format!("/api/v1/secrets/{id}?version={v}"),
        None => format!("/api/v1/secrets/{id}"),
    };
    srv.get(&path, key).await
}

/// Every secret's every version, by `name@version` (values), plus metadata by name.
async fn everything(srv: &Server, key: &str) -> (Vec<(String, String)>, Vec<Value>) {
    let (s, list) = srv.get("/api/v1/secrets?limit=100", key).await;
    assert_eq!(s, 200, "{list}");
    let mut values = Vec::new();
    let mut metas = Vec::new();
    for m in list["secrets"].as_array().unwrap() {
        let id = m["id"].as_str().unwrap();
        let (s, cur) = value(srv, key, id, None).await;
        assert_eq!(s, 200, "{cur}");
        let current = cur["version"].as_i64().unwrap();
        for v in 1..=current {
            let (s, body) = value(srv, key, id, Some(v)).await;
            if s == 200 {
                values.push((format!("{}@{v}", m["name"].as_str().unwrap()), body["value"].as_str().unwrap().to_owned()));
            }
        }
        let mut meta = m.clone();
        for k in ["id", "secretId", "projectId", "updatedAt"] {
            meta.as_object_mut().unwrap().remove(k);
        }
        metas.push(meta);
    }
    values.sort();
    metas.sort_by_key(|m| m["name"].as_str().unwrap_or_default().to_owned());
    (values, metas)
}

async fn audit_actions(srv: &Server, key: &str) -> Vec<String> {
    let (s, b) = srv.get("/api/v1/audit/logs?limit=100", key).await;
    assert_eq!(s, 200, "{b}");
    b["logs"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap().to_owned()).collect()
}

fn code(b: &Value) -> &str {
    b["error"]["code"].as_str().or(b["code"].as_str()).unwrap_or_default()
}

async fn tenant_story(backend: Backend) {
    let srv = Server::start(backend).await;
    let tenant = unique("bk");
    let key = srv.signup(&tenant).await;

    // A project with secrets of several versions, and one outside any project.
    let (s, project) = srv.post("/api/v1/projects", &key, json!({ "name": "web", "description": "the site" })).await;
    assert_eq!(s, 201, "{project}");
    let project_id = project["id"].as_str().unwrap().to_owned();
    let stripe = create_secret(
        &srv,
        &key,
        json!({ "name": "STRIPE_KEY", "value": "sk_live_1", "projectId": project_id, "environment": "production",
                "secretType": "api-key", "tags": ["billing"], "description": "payments" }),
    )
    .await;
    new_version(&srv, &key, &stripe, "sk_live_2").await;
    new_version(&srv, &key, &stripe, "sk_live_3").await;
    let db = create_secret(&srv, &key, json!({ "name": "DB_URL", "value": "postgres://one" })).await;
    new_version(&srv, &key, &db, "postgres://two").await;
    let before = everything(&srv, &key).await;
    assert_eq!(before.0.len(), 5, "{:?}", before.0);

    // A named backup, listed newest first, with its counts.
    let (s, made) = srv.post("/api/v1/backup", &key, json!({ "name": "before-the-change" })).await;
    assert_eq!(s, 201, "{made}");
    assert_eq!(
        (made["name"].as_str(), made["secrets"].as_i64(), made["versions"].as_i64(), made["projects"].as_i64()),
        (Some("before-the-change"), Some(2), Some(5), Some(1)),
        "{made}"
    );
    assert_eq!(made["passphraseProtected"], json!(false));
    assert!(made["sizeBytes"].as_i64().unwrap() > 0);
    let backup_id = made["id"].as_str().unwrap().to_owned();
    assert!(!made.to_string().contains("sk_live"), "no value in the answer: {made}");
    let (s, list) = srv.get("/api/v1/backup", &key).await;
    assert_eq!(s, 200, "{list}");
    assert_eq!(list["backups"][0]["id"].as_str(), Some(backup_id.as_str()), "{list}");
    let (s, one) = srv.get(&format!("/api/v1/backup/{backup_id}"), &key).await;
    assert_eq!((s, one["name"].as_str()), (200, Some("before-the-change")), "{one}");

    // Change things: a new version, a deleted secret, a new secret, a new project.
    new_version(&srv, &key, &stripe, "sk_live_4").await;
    let (s, _) = value(&srv, &key, &stripe, None).await; // warms the cache with version 4
    assert_eq!(s, 200);
    let (s, b) = srv.delete(&format!("/api/v1/secrets/{db}?permanent=true"), &key).await;
    assert_eq!(s, 200, "{b}");
    create_secret(&srv, &key, json!({ "name": "LATER", "value": "later" })).await;

    // A read key may not touch backups; nor may a wrong passphrase restore anything.
    let (s, rk) = srv.post("/api/v1/api-keys", &key, json!({ "name": "reader", "permissions": "read" })).await;
    assert_eq!(s, 201, "{rk}");
    let read_key = rk["apiKey"].as_str().or(rk["key"].as_str()).unwrap().to_owned();
    for (m, path) in [
        ("GET", "/api/v1/backup".to_owned()),
        ("POST", "/api/v1/backup".to_owned()),
        ("POST", format!("/api/v1/backup/{backup_id}/restore")),
    ] {
        let (s, b) = srv.call(m, &path, Some(&read_key), Some(json!({}))).await;
        assert_eq!((s, code(&b)), (403, "SCOPE_DENIED"), "{m} {path}: {b}");
    }

    // Restore: every version as it was, the later secret gone, the cache no obstacle.
    let (s, r) = srv.post(&format!("/api/v1/backup/{backup_id}/restore"), &key, json!({})).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(
        (r["idsKept"].as_bool(), r["unlockedWith"].as_str(), r["versions"].as_i64()),
        (Some(true), Some("tenantKey"), Some(5)),
        "{r}"
    );
    let (s, cur) = value(&srv, &key, &stripe, None).await;
    assert_eq!((s, cur["value"].as_str(), cur["version"].as_i64()), (200, Some("sk_live_3"), Some(3)), "a read right after: {cur}");
    assert_eq!(everything(&srv, &key).await, before);
    let (_, projects) = srv.get("/api/v1/projects", &key).await;
    assert_eq!(projects.to_string().matches("\"web\"").count(), 1, "{projects}");
    let actions = audit_actions(&srv, &key).await;
    for a in ["backup.created", "backup.restored"] {
        assert!(actions.iter().any(|x| x == a), "{a} in {actions:?}");
    }

    // A passphrase archive, downloaded, restores into a fresh tenant on a
    // server with another master key; a wrong passphrase changes nothing.
    let (s, locked) = srv.post("/api/v1/backup", &key, json!({ "name": "portable", "passphrase": "correct horse battery" })).await;
    assert_eq!(s, 201, "{locked}");
    assert_eq!(locked["passphraseProtected"], json!(true));
    let locked_id = locked["id"].as_str().unwrap();
    let resp = srv.http.get(srv.url(&format!("/api/v1/backup/{locked_id}/download"))).header("X-API-Key", &key).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-type"], "application/octet-stream");
    assert!(resp.headers()["content-disposition"].to_str().unwrap().contains("filename="));
    let archive = resp.bytes().await.unwrap().to_vec();
    assert!(archive.starts_with(b"LKBACKUP"));
    assert!(!String::from_utf8_lossy(&archive).contains("sk_live"), "the archive is sealed");

    let other = Server::start_with(Opts::new(backend).env("LATCHKEY_MASTER_KEY", OTHER_MASTER_KEY)).await;
    let tenant_b = unique("bk-b");
    let key_b = other.signup(&tenant_b).await;
    create_secret(&other, &key_b, json!({ "name": "KEEP_UNLESS_RESTORED", "value": "b-only" })).await;
    let upload = |pass: Option<&str>| {
        let mut req = other
            .http
            .post(other.url("/api/v1/backup/restore"))
            .header("X-API-Key", &key_b)
            .header("content-type", "application/octet-stream")
            .body(archive.clone());
        if let Some(p) = pass {
            req = req.header("X-Backup-Passphrase", p);
        }
        req
    };
    for pass in [None, Some("wrong passphrase")] {
        let resp = upload(pass).send().await.unwrap();
        let status = resp.status().as_u16();
        let b: Value = resp.json().await.unwrap();
        assert_eq!((status, code(&b)), (403, "INVALID_PASSPHRASE"), "{b}");
        let (s, list) = other.get("/api/v1/secrets", &key_b).await;
        assert_eq!((s, list["secrets"].as_array().unwrap().len()), (200, 1), "nothing changed: {list}");
    }
    let resp = upload(Some("correct horse battery")).send().await.unwrap();
    let status = resp.status().as_u16();
    let r: Value = resp.json().await.unwrap();
    assert_eq!(status, 200, "{r}");
    assert_eq!((r["idsKept"].as_bool(), r["unlockedWith"].as_str()), (Some(false), Some("passphrase")), "{r}");
    assert_eq!(everything(&other, &key_b).await, before, "every version on the other server");

    // A wrong passphrase on a stored archive of another tenant's: same code.
    let (s, b) = srv.post(&format!("/api/v1/backup/{backup_id}/restore"), &read_key, json!({})).await;
    assert_eq!(s, 403, "{b}");

    // Delete, audited; then gone.
    let (s, b) = srv.delete(&format!("/api/v1/backup/{backup_id}"), &key).await;
    assert_eq!((s, b["deleted"].as_bool()), (200, Some(true)), "{b}");
    let (s, _) = srv.get(&format!("/api/v1/backup/{backup_id}"), &key).await;
    assert_eq!(s, 404);
    assert!(audit_actions(&srv, &key).await.iter().any(|a| a == "backup.deleted"));

    // A passphrase archive opens offline: with a critical secret in the
    // tenant, only an owner may make one; without a passphrase a key may.
    create_secret(&srv, &key, json!({ "name": "ROOT_TOKEN", "value": "gated", "accessTier": "critical" })).await;
    let (s, b) = srv.post("/api/v1/backup", &key, json!({ "passphrase": "correct horse battery" })).await;
    assert_eq!((s, code(&b)), (403, "OWNER_REQUIRED"), "{b}");
    let (s, b) = srv.post("/api/v1/backup", &key, json!({})).await;
    assert_eq!(s, 201, "{b}");
}

#[tokio::test]
async fn tenant_backups_on_sqlite() {
    tenant_story(Backend::Sqlite).await;
}

#[tokio::test]
async fn tenant_backups_on_postgres() {
    tenant_story(Backend::Postgres).await;
}

/// `latchkey backup create|restore` on the server's database, as the operator runs it.
fn operator(args: &[&str], srv_dir: &std::path::Path, database_url: Option<&str>) -> (bool, String) {
    let mut cmd = std::process::Command::new(common::bin());
    cmd.arg("backup").args(args).arg("--data-dir").arg(srv_dir);
    cmd.env_remove("DATABASE_URL").env("LATCHKEY_MASTER_KEY", TEST_MASTER_KEY).env("LATCHKEY_LOG", "warn");
    if let Some(url) = database_url {
        cmd.env("DATABASE_URL", url);
    }
    let out = cmd.output().expect("run latchkey backup");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

async fn operator_story(backend: Backend) {
    let srv = Server::start(backend).await;
    let tenant = unique("ops");
    let key = srv.signup(&tenant).await;
    let a = create_secret(&srv, &key, json!({ "name": "A", "value": "a1" })).await;
    new_version(&srv, &key, &a, "a2").await;
    create_secret(&srv, &key, json!({ "name": "B", "value": "b1", "environment": "production" })).await;
    let (s, _) = srv.post("/api/v1/backup", &key, json!({ "name": "inside" })).await;
    assert_eq!(s, 201);
    let before = everything(&srv, &key).await;

    // While the server serves (and writes: a read is an audited write).
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("server.backup");
    let file_arg = file.to_str().unwrap();
    let (ok, out) = operator(&["create", file_arg], &srv.data_dir, srv.database_url.as_deref());
    assert!(ok, "{out}");
    assert!(out.contains("master key is not in the backup"), "{out}");
    let (ok, out) = operator(&["create", file_arg], &srv.data_dir, srv.database_url.as_deref());
    assert!(!ok && out.contains("exists"), "an existing file is never overwritten: {out}");
    everything(&srv, &key).await;

    // Into a non-empty target: refused, nothing touched.
    let (ok, out) = operator(&["restore", file_arg], &srv.data_dir, srv.database_url.as_deref());
    assert!(!ok, "{out}");
    assert!(out.contains("empty"), "{out}");

    // Into a fresh data dir / database, then a server on it with the same key.
    let fresh_dir = tmp.path().join("fresh");
    let fresh_url = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some(common::fresh_pg_database().await),
    };
    let (ok, out) = operator(&["restore", file_arg], &fresh_dir, fresh_url.as_deref());
    assert!(ok, "{out}");
    let mut opts = Opts::new(backend);
    opts.data_dir = Some(fresh_dir.clone());
    opts.database_url = fresh_url.clone();
    let restored = Server::start_with(opts).await;
    assert_eq!(everything(&restored, &key).await, before, "every value, read back through the restored server");
    let (s, list) = restored.get("/api/v1/backup", &key).await;
    assert_eq!((s, list["count"].as_u64()), (200, Some(1)), "tenant backups travel with it: {list}");
    // New rows get new ids after the restored ones (sequences reset).
    create_secret(&restored, &key, json!({ "name": "AFTER", "value": "after" })).await;
    assert!(audit_actions(&restored, &key).await.iter().any(|a| a == "secret.create"));
    drop(restored);
    let (ok, out) = operator(&["restore", file_arg], &fresh_dir, fresh_url.as_deref());
    assert!(!ok && out.contains("empty"), "a second restore into it is refused: {out}");
}

#[tokio::test]
async fn operator_backup_on_sqlite() {
    operator_story(Backend::Sqlite).await;
}

#[tokio::test]
async fn operator_backup_on_postgres() {
    operator_story(Backend::Postgres).await;
}

/// SecretCarousel's Python SDK (`create_backup`, `list_backups`) and its CLI
/// (`sc backup --name X`, `sc backups`): the name is kept and listed.
#[tokio::test]
async fn sdk_and_sc_cli_backups() {
    let srv = Server::start(Backend::Sqlite).await;
    let tenant = unique("bk-sdk");
    let key = srv.signup(&tenant).await;
    create_secret(&srv, &key, json!({ "name": "X", "value": "x" })).await;
    let script = r#"
import json, sys
from secretcarousel import SecretCarouselClient
c = SecretCarouselClient(sys.argv[2], base_url=sys.argv[1])
made = c.create_backup(name="sdk-nightly")
listed = c.list_backups()
print(json.dumps({"made": made, "listed": listed}))
"#;
    let (base, k) = (srv.base.clone(), key.clone());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(common::python()).arg("-c").arg(script).arg(base).arg(k).output().unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let got: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(got["made"]["name"].as_str(), Some("sdk-nightly"), "{got}");
    assert_eq!(got["listed"]["backups"][0]["name"].as_str(), Some("sdk-nightly"), "{got}");

    // The sc CLI, in a project directory of its own with the tenant's key.
    let dir = tempfile::tempdir().unwrap();
    let (home, project) = (dir.path().join("home"), dir.path().join("project"));
    std::fs::create_dir_all(project.join(".sc")).unwrap();
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(project.join(".sc/config.json"), json!({ "apiKey": key, "tenantId": tenant, "baseUrl": srv.base }).to_string()).unwrap();
    let sc = |args: &[&str]| {
        let mut cmd = std::process::Command::new("timeout");
        cmd.arg("300").arg("bash").arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tools/sc-cli/sc")).args(args).current_dir(&project);
        cmd.env("HOME", &home).env("SC_BASE_URL", &srv.base).env("NO_COLOR", "1").env_remove("SC_API_KEY");
        let out = cmd.output().unwrap();
        (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    };
    let (ok, out) = sc(&["backup", "--name", "cli-weekly"]);
    assert!(ok, "{out}");
    let (ok, listing) = sc(&["backups"]);
    assert!(ok && listing.contains("cli-weekly") && listing.contains("sdk-nightly"), "{listing}");
    let (s, list) = srv.get("/api/v1/backup", &key).await;
    assert_eq!(s, 200);
    let names: Vec<&str> = list["backups"].as_array().unwrap().iter().map(|b| b["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["cli-weekly", "sdk-nightly"], "newest first: {list}");
}
