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
    let _ = TEST_MASTER_KEY;
}

#[tokio::test]
async fn tenant_backups_on_sqlite() {
    tenant_story(Backend::Sqlite).await;
}

#[tokio::test]
async fn tenant_backups_on_postgres() {
    tenant_story(Backend::Postgres).await;
}
