//! A secret's life after its creation, through the real server on SQLite and
//! PostgreSQL, over REST and MCP: expiry (410 SECRET_EXPIRED, lists hiding
//! expired secrets, the expiring listing); soft delete, the name it keeps
//! (409 SECRET_EXISTS), restore and the restorable listing; purge by an admin
//! and by the sweep after retention, with the ciphertext gone from the
//! database; one version deleted; maxVersions pruning; PATCH without a new
//! version; the path routes and `?prefix=`; the quota, and a project whose
//! only secrets are deleted ones (deleted with it, they purged).

mod common;

use common::mcp_client::{connect as mcp_client, tool};
use common::{Backend, Opts, Server, unique};
use serde_json::{Value, json};

fn code(b: &Value) -> &str {
    b["code"].as_str().unwrap_or_default()
}

async fn create(srv: &Server, key: &str, body: Value) -> String {
    let (s, b) = srv.post("/api/v1/secrets", key, body).await;
    assert_eq!(s, 201, "{b}");
    b["id"].as_str().unwrap().to_owned()
}

async fn patch(srv: &Server, path: &str, key: &str, body: Value) -> (u16, Value) {
    srv.call("PATCH", path, Some(key), Some(body)).await
}

/// The names a listing answers.
async fn names(srv: &Server, key: &str, query: &str) -> Vec<String> {
    let (s, b) = srv.get(&format!("/api/v1/secrets{query}"), key).await;
    assert_eq!(s, 200, "{query}: {b}");
    b["secrets"].as_array().unwrap().iter().map(|x| x["name"].as_str().unwrap().to_owned()).collect()
}

/// Rows of the secret's versions still in the database (an UPDATE that
/// changes nothing counts them, on either database).
async fn stored_versions(srv: &Server, id: &str) -> u64 {
    srv.sql("UPDATE secret_versions SET version = version WHERE secret_id = $1", &[id]).await
}

async fn stored_rows(srv: &Server, id: &str) -> u64 {
    srv.sql("UPDATE secrets SET name = name WHERE id = $1", &[id]).await
}

async fn audit_actions(srv: &Server, key: &str) -> Vec<(String, String, Value)> {
    let (s, b) = srv.get("/api/v1/audit?limit=500", key).await;
    assert_eq!(s, 200, "{b}");
    b["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["action"].as_str().unwrap().to_owned(), e["outcome"].as_str().unwrap().to_owned(), e["detail"].clone()))
        .collect()
}

fn audited(trail: &[(String, String, Value)], action: &str, name: &str) -> bool {
    trail.iter().any(|(a, o, d)| a == action && o == "success" && d["name"] == name)
}

async fn key_with(srv: &Server, admin: &str, permission: &str) -> String {
    let (s, b) = srv.post("/api/v1/api-keys", admin, json!({ "name": permission, "permissions": permission })).await;
    assert_eq!(s, 201, "{b}");
    b["apiKey"].as_str().unwrap().to_owned()
}

async fn expiry(srv: &Server, admin: &str) {
    // One parser for expiresIn; bad, both, or past: 400.
    for bad in [
        json!({ "name": "BAD", "value": "v", "expiresIn": "5x" }),
        json!({ "name": "BAD", "value": "v", "expiresIn": "0d" }),
        json!({ "name": "BAD", "value": "v", "expiresIn": "24h", "expiresAt": "2999-01-01T00:00:00Z" }),
        json!({ "name": "BAD", "value": "v", "expiresAt": "2001-01-01T00:00:00Z" }),
        json!({ "name": "BAD", "value": "v", "maxVersions": 0 }),
        json!({ "name": "BAD", "value": "v", "maxVersions": 101 }),
    ] {
        let (s, b) = srv.post("/api/v1/secrets", admin, bad.clone()).await;
        assert_eq!((s, code(&b)), (400, "INVALID_REQUEST"), "{bad}: {b}");
    }
    let later = create(srv, admin, json!({ "name": "LATER", "value": "later-value", "expiresIn": "30m" })).await;
    let (_, meta) = srv.get(&format!("/api/v1/secrets/{later}"), admin).await;
    assert!(meta["expiresAt"].is_string(), "{meta}");
    let never = create(srv, admin, json!({ "name": "NEVER", "value": "n" })).await;
    let (_, meta) = srv.get(&format!("/api/v1/secrets/{never}"), admin).await;
    assert!(meta.get("expiresAt").is_none(), "{meta}");

    // Expiring two seconds from now: read until it answers 410 (bounded).
    let soon_at = (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
    let soon = create(srv, admin, json!({ "name": "SOON", "value": "soon-value", "expiresAt": soon_at })).await;
    let mut expired = None;
    for _ in 0..100 {
        let (s, b) = srv.get(&format!("/api/v1/secrets/{soon}"), admin).await;
        if s == 410 {
            expired = Some(b);
            break;
        }
        assert_eq!(s, 200, "{b}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let b = expired.expect("the secret expires");
    assert_eq!(code(&b), "SECRET_EXPIRED", "{b}");
    assert!(b["message"].as_str().unwrap().contains("expired at"), "names when: {b}");
    assert!(!b.to_string().contains("soon-value"));
    // Versions, reads by name and MCP's get_secret too.
    let (s, b) = srv.get(&format!("/api/v1/secrets/{soon}/versions"), admin).await;
    assert_eq!((s, code(&b)), (410, "SECRET_EXPIRED"), "{b}");
    let mcp = mcp_client(srv, admin).await;
    assert_eq!(tool(&mcp, "get_secret", json!({ "name": "SOON" })).await.unwrap_err(), "SECRET_EXPIRED");
    let (s, b) = srv.get("/api/v1/secrets/path/SOON", admin).await;
    assert_eq!((s, code(&b)), (410, "SECRET_EXPIRED"), "{b}");
    // Nor can it be handed off: a share link, a claim token.
    let (s, b) = srv.post("/api/v1/shares", admin, json!({ "secretId": soon })).await;
    assert_eq!((s, code(&b)), (410, "SECRET_EXPIRED"), "{b}");
    // Hidden from lists unless asked.
    let listed = names(srv, admin, "").await;
    assert!(listed.contains(&"LATER".to_owned()) && !listed.contains(&"SOON".to_owned()), "{listed:?}");
    assert!(names(srv, admin, "?includeExpired=true").await.contains(&"SOON".to_owned()));
    // Expiring within a day: LATER, not NEVER; SOON only with includeExpired.
    let within = names(srv, admin, "/expiring?days=1").await;
    assert_eq!(within, vec!["LATER".to_owned()], "{within:?}");
    let within = names(srv, admin, "/expiring?days=1&includeExpired=true").await;
    assert_eq!(within, vec!["LATER".to_owned(), "SOON".to_owned()], "{within:?}");
    assert_eq!(names(srv, admin, "/expiring").await, vec!["LATER".to_owned()], "7 days by default");
    for bad in ["?days=0", "?days=366", "?bogus=1"] {
        let (s, b) = srv.get(&format!("/api/v1/secrets/expiring{bad}"), admin).await;
        assert_eq!((s, code(&b)), (400, "INVALID_REQUEST"), "{bad}: {b}");
    }
    let exp = tool(&mcp, "list_expiring_secrets", json!({ "days": 1 })).await.unwrap();
    assert_eq!(exp["count"], 1, "{exp}");
    assert_eq!(exp["secrets"][0]["name"], "LATER");
    // An expired secret can be given a new life: PUT expiresAt null clears it.
    let (s, b) = srv.put(&format!("/api/v1/secrets/{soon}"), admin, json!({ "expiresAt": null })).await;
    assert_eq!(s, 200, "{b}");
    assert!(b.get("expiresAt").is_none(), "{b}");
    let (s, b) = srv.get(&format!("/api/v1/secrets/{soon}"), admin).await;
    assert_eq!((s, b["value"].as_str()), (200, Some("soon-value")), "{b}");
    // PATCH sets one without a new version.
    let (s, b) = patch(srv, &format!("/api/v1/secrets/{never}"), admin, json!({ "expiresIn": "90d", "description": "d" })).await;
    assert_eq!((s, b["version"].as_i64(), b["description"].as_str()), (200, Some(1), Some("d")), "{b}");
    assert!(b["expiresAt"].is_string(), "{b}");
    let (s, b) = patch(srv, &format!("/api/v1/secrets/{never}"), admin, json!({ "value": "x" })).await;
    assert_eq!((s, code(&b)), (400, "INVALID_REQUEST"), "{b}");
    assert!(b["message"].as_str().unwrap().contains("PUT"), "{b}");
    let (s, b) = patch(srv, &format!("/api/v1/secrets/{never}"), admin, json!({ "expiresAt": null, "expiresIn": "1d" })).await;
    assert_eq!((s, code(&b)), (400, "INVALID_REQUEST"), "{b}");
    let (_, b) = srv.get(&format!("/api/v1/secrets/{never}"), admin).await;
    assert_eq!((b["version"].as_i64(), b["value"].as_str()), (Some(1), Some("n")), "PATCH kept the version: {b}");
    mcp.cancel().await.ok();
}

async fn deletion(srv: &Server, admin: &str, tenant: &str) {
    let writer = key_with(srv, admin, "write").await;
    let reader = key_with(srv, admin, "read").await;
    let doomed = create(srv, &writer, json!({ "name": "DOOMED", "value": "doomed-value", "tags": ["t"] })).await;
    let (s, share) = srv.post("/api/v1/shares", &writer, json!({ "secretId": doomed })).await;
    let shared = s == 201;
    let (s, b) = srv.delete(&format!("/api/v1/secrets/{doomed}"), &writer).await;
    assert_eq!((s, b["deleted"].as_bool()), (200, Some(true)), "{b}");
    assert!(b["restorableUntil"].is_string(), "{b}");
    // Gone for reads, uses and lists; the ciphertext is still there.
    let (s, b) = srv.get(&format!("/api/v1/secrets/{doomed}"), &writer).await;
    assert_eq!((s, code(&b)), (404, "SECRET_NOT_FOUND"), "{b}");
    let (s, b) = srv.get(&format!("/api/v1/secrets/{doomed}/versions"), &writer).await;
    assert_eq!((s, code(&b)), (404, "SECRET_NOT_FOUND"), "{b}");
    assert!(!names(srv, &writer, "?includeExpired=true").await.contains(&"DOOMED".to_owned()));
    assert_eq!(stored_versions(srv, &doomed).await, 1);
    let (s, b) =
        srv.post("/api/v1/claim-tokens", &writer, json!({ "secretId": doomed, "targetTenantId": tenant, "contractId": "c" })).await;
    assert_eq!(s, 404, "no claim of a deleted secret: {b}");
    if shared {
        let (s, b) = srv.get(&format!("/api/v1/shares/{}", share["id"].as_str().unwrap()), &writer).await;
        assert!(s != 200 || b["status"] != "active", "its share links end with it: {b}");
    }
    // The restorable listing.
    let (s, b) = srv.get("/api/v1/secrets?deleted=true", &reader).await;
    assert_eq!((s, b["count"].as_u64()), (200, Some(1)), "{b}");
    assert_eq!(b["secrets"][0]["id"].as_str(), Some(doomed.as_str()));
    assert!(b["secrets"][0]["deletedAt"].is_string() && b["secrets"][0]["restorableUntil"].is_string(), "{b}");
    // The name stays reserved: creating or renaming onto it names the deleted one.
    let (s, b) = srv.post("/api/v1/secrets", &writer, json!({ "name": "DOOMED", "value": "other" })).await;
    assert_eq!((s, code(&b), b["deletedSecretId"].as_str()), (409, "SECRET_EXISTS", Some(doomed.as_str())), "{b}");
    let other = create(srv, &writer, json!({ "name": "OTHER", "value": "o" })).await;
    let (s, b) = srv.put(&format!("/api/v1/secrets/{other}"), &writer, json!({ "name": "DOOMED" })).await;
    assert_eq!((s, code(&b), b["deletedSecretId"].as_str()), (409, "SECRET_EXISTS", Some(doomed.as_str())), "{b}");
    let (s, b) = srv.put("/api/v1/secrets/path/DOOMED", &writer, json!({ "value": "p" })).await;
    assert_eq!((s, code(&b)), (409, "SECRET_EXISTS"), "{b}");
    // Restore: write permission; then it reads again; a live one is not restorable.
    let (s, b) = srv.post(&format!("/api/v1/secrets/{doomed}/restore"), &reader, json!({})).await;
    assert_eq!(s, 403, "{b}");
    let (s, b) = srv.call("POST", &format!("/api/v1/secrets/{doomed}/restore"), Some(&writer), None).await;
    assert_eq!((s, b["name"].as_str()), (200, Some("DOOMED")), "{b}");
    let (s, b) = srv.get(&format!("/api/v1/secrets/{doomed}"), &reader).await;
    assert_eq!((s, b["value"].as_str(), b["tags"][0].as_str()), (200, Some("doomed-value"), Some("t")), "{b}");
    let (s, b) = srv.call("POST", &format!("/api/v1/secrets/{doomed}/restore"), Some(&writer), None).await;
    assert_eq!((s, code(&b)), (404, "SECRET_NOT_FOUND"), "{b}");
    assert_eq!(names(srv, &reader, "?deleted=true").await.len(), 0);
    // MCP: delete_secret is a soft delete too, restore_secret brings it back.
    let mcp = mcp_client(srv, &writer).await;
    tool(&mcp, "delete_secret", json!({ "id": doomed })).await.unwrap();
    assert_eq!(tool(&mcp, "get_secret", json!({ "name": "DOOMED" })).await.unwrap_err(), "SECRET_NOT_FOUND");
    let back = tool(&mcp, "restore_secret", json!({ "secret": doomed })).await.unwrap();
    assert_eq!(back["id"].as_str(), Some(doomed.as_str()), "{back}");
    assert_eq!(tool(&mcp, "restore_secret", json!({ "secret": "DOOMED" })).await.unwrap_err(), "SECRET_NOT_FOUND");
    mcp.cancel().await.ok();

    // Purge: admin keys only, live or deleted; everything of it gone.
    let (s, b) = srv.delete(&format!("/api/v1/secrets/{doomed}?permanent=true"), &writer).await;
    assert_eq!(s, 403, "{b}");
    let (s, b) = srv.delete(&format!("/api/v1/secrets/{doomed}?permanent=true&version=1"), admin).await;
    assert_eq!((s, code(&b)), (400, "INVALID_REQUEST"), "{b}");
    let (s, b) = srv.delete(&format!("/api/v1/secrets/{doomed}?permanent=true"), admin).await;
    assert_eq!((s, b["purged"].as_bool()), (200, Some(true)), "{b}");
    assert_eq!((stored_versions(srv, &doomed).await, stored_rows(srv, &doomed).await), (0, 0), "the ciphertext is gone");
    let (s, _) = srv.call("POST", &format!("/api/v1/secrets/{doomed}/restore"), Some(&writer), None).await;
    assert_eq!(s, 404, "a purged secret is not restorable");
    create(srv, &writer, json!({ "name": "DOOMED", "value": "fresh" })).await;
    // A deleted one purged by an admin.
    let (s, _) = srv.delete(&format!("/api/v1/secrets/{other}"), &writer).await;
    assert_eq!(s, 200);
    let (s, b) = srv.delete(&format!("/api/v1/secrets/{other}?permanent=true"), admin).await;
    assert_eq!((s, b["purged"].as_bool()), (200, Some(true)), "{b}");
    assert_eq!(stored_versions(srv, &other).await, 0);

    // The sweep purges what was deleted longer than the retention ago.
    let aged = create(srv, &writer, json!({ "name": "AGED", "value": "aged-value" })).await;
    let (s, _) = srv.delete(&format!("/api/v1/secrets/{aged}"), &writer).await;
    assert_eq!(s, 200);
    assert_eq!(srv.sql("UPDATE secrets SET deleted_at = 1000 WHERE id = $1", &[&aged]).await, 1);
    let mut gone = false;
    for _ in 0..200 {
        if stored_rows(srv, &aged).await == 0 {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(gone, "the sweep purged the aged deletion");
    assert_eq!(stored_versions(srv, &aged).await, 0, "its ciphertext with it");

    let trail = audit_actions(srv, admin).await;
    for (action, name) in [
        ("secret.deleted", "DOOMED"),
        ("secret.restored", "DOOMED"),
        ("secret.purged", "DOOMED"),
        ("secret.purged", "OTHER"),
        ("secret.purged", "AGED"),
    ] {
        assert!(audited(&trail, action, name), "{action} {name}: {trail:?}");
    }
    let text = format!("{trail:?}");
    for never in ["doomed-value", "aged-value"] {
        assert!(!text.contains(never), "no value in the trail");
    }
}

async fn versions(srv: &Server, admin: &str) {
    let id = create(srv, admin, json!({ "name": "VERSIONED", "value": "v1" })).await;
    for v in ["v2", "v3"] {
        let (s, b) = srv.put(&format!("/api/v1/secrets/{id}"), admin, json!({ "value": v })).await;
        assert_eq!(s, 200, "{b}");
    }
    let (s, b) = srv.delete(&format!("/api/v1/secrets/{id}?version=3"), admin).await;
    assert_eq!((s, code(&b)), (400, "INVALID_REQUEST"), "the current one: {b}");
    let (s, b) = srv.delete(&format!("/api/v1/secrets/{id}?version=9"), admin).await;
    assert_eq!(s, 404, "{b}");
    let (s, b) = srv.delete(&format!("/api/v1/secrets/{id}?version=1"), admin).await;
    assert_eq!((s, b["version"].as_i64()), (200, Some(1)), "{b}");
    let (s, _) = srv.get(&format!("/api/v1/secrets/{id}?version=1"), admin).await;
    assert_eq!(s, 404);
    let (s, b) = srv.get(&format!("/api/v1/secrets/{id}?version=2"), admin).await;
    assert_eq!((s, b["value"].as_str()), (200, Some("v2")), "{b}");
    assert!(audited(&audit_actions(srv, admin).await, "secret.version_deleted", "VERSIONED"));

    // maxVersions: each new version (the hot path, by value alone) prunes the oldest beyond it.
    let id = create(srv, admin, json!({ "name": "BOUNDED", "value": "b1", "maxVersions": 2 })).await;
    for v in ["b2", "b3", "b4"] {
        let (s, b) = srv.put(&format!("/api/v1/secrets/{id}"), admin, json!({ "value": v })).await;
        assert_eq!(s, 200, "{b}");
    }
    let kept = |b: &Value| b["versions"].as_array().unwrap().iter().map(|v| v["version"].as_i64().unwrap()).collect::<Vec<_>>();
    let (_, b) = srv.get(&format!("/api/v1/secrets/{id}/versions"), admin).await;
    assert_eq!(kept(&b), vec![4, 3], "{b}");
    assert_eq!(stored_versions(srv, &id).await, 2);
    // A lower bound by PATCH prunes at once, without a new version.
    let (s, b) = patch(srv, &format!("/api/v1/secrets/{id}"), admin, json!({ "maxVersions": 1 })).await;
    assert_eq!((s, b["version"].as_i64(), b["maxVersions"].as_i64()), (200, Some(4), Some(1)), "{b}");
    let (_, b) = srv.get(&format!("/api/v1/secrets/{id}/versions"), admin).await;
    assert_eq!(kept(&b), vec![4], "{b}");
    let (s, b) = patch(srv, &format!("/api/v1/secrets/{id}"), admin, json!({ "maxVersions": 101 })).await;
    assert_eq!((s, code(&b)), (400, "INVALID_REQUEST"), "{b}");
    // A bound lifted (null) keeps every version from then on.
    let (s, b) = patch(srv, &format!("/api/v1/secrets/{id}"), admin, json!({ "maxVersions": null })).await;
    assert!(s == 200 && b.get("maxVersions").is_none(), "{b}");
    let (s, _) = srv.put(&format!("/api/v1/secrets/{id}"), admin, json!({ "value": "b5" })).await;
    assert_eq!(s, 200);
    assert_eq!(stored_versions(srv, &id).await, 2);
}

async fn paths(srv: &Server, admin: &str) {
    let (s, b) = srv.put("/api/v1/secrets/path/production/stripe/key", admin, json!({ "value": "sk-1", "tags": ["pay"] })).await;
    assert_eq!((s, b["created"].as_bool()), (201, Some(true)), "{b}");
    assert_eq!((b["secret"]["environment"].as_str(), b["secret"]["name"].as_str()), (Some("production"), Some("stripe/key")), "{b}");
    let (s, b) = srv.put("/api/v1/secrets/path/production/stripe/key", admin, json!({ "value": "sk-2" })).await;
    assert_eq!((s, b["created"].as_bool(), b["secret"]["version"].as_i64()), (200, Some(false), Some(2)), "{b}");
    let (s, b) = srv.get("/api/v1/secrets/path/production/stripe/key", admin).await;
    assert_eq!((s, b["value"].as_str()), (200, Some("sk-2")), "{b}");
    let (s, b) = srv.get("/api/v1/secrets/path/production/stripe/key?version=1", admin).await;
    assert_eq!((s, b["value"].as_str()), (200, Some("sk-1")), "{b}");
    // A bare name: no environment. A name with a slash and no environment is found by the second reading.
    let (s, b) = srv.put("/api/v1/secrets/path/PATH_BARE", admin, json!({ "value": "bare" })).await;
    assert_eq!((s, b["secret"].get("environment").map(|e| e.is_null())), (201, Some(true)), "{b}");
    create(srv, admin, json!({ "name": "team/token", "value": "slashed" })).await;
    let (s, b) = srv.get("/api/v1/secrets/path/team/token", admin).await;
    assert_eq!((s, b["value"].as_str()), (200, Some("slashed")), "{b}");
    // In a project.
    let (s, project) = srv.post("/api/v1/projects", admin, json!({ "name": unique("paths") })).await;
    assert_eq!(s, 201, "{project}");
    let pid = project["id"].as_str().unwrap();
    let (s, b) = srv.put(&format!("/api/v1/secrets/path/staging/DB?projectId={pid}"), admin, json!({ "value": "in-project" })).await;
    assert_eq!((s, b["secret"]["projectId"].as_str()), (201, Some(pid)), "{b}");
    let (s, _) = srv.get("/api/v1/secrets/path/staging/DB", admin).await;
    assert_eq!(s, 404, "without projectId, the secret outside any project");
    let (s, b) = srv.get(&format!("/api/v1/secrets/path/staging/DB?projectId={pid}"), admin).await;
    assert_eq!((s, b["value"].as_str()), (200, Some("in-project")), "{b}");
    // ?prefix= filters by path, exactly.
    assert_eq!(names(srv, admin, "?prefix=production/").await, vec!["stripe/key".to_owned()]);
    assert_eq!(names(srv, admin, "?prefix=production/stripe").await, vec!["stripe/key".to_owned()]);
    assert_eq!(names(srv, admin, "?prefix=PRODUCTION/").await.len(), 0, "case counts");
    assert_eq!(names(srv, admin, "?prefix=team/").await, vec!["team/token".to_owned()]);
    // DELETE by path: a soft delete.
    let (s, b) = srv.delete("/api/v1/secrets/path/production/stripe/key", admin).await;
    assert_eq!(s, 200, "{b}");
    assert!(b["restorableUntil"].is_string(), "{b}");
    let (s, b) = srv.get("/api/v1/secrets/path/production/stripe/key", admin).await;
    assert_eq!((s, code(&b)), (404, "SECRET_NOT_FOUND"), "{b}");
    let (s, b) = srv.get("/api/v1/secrets/path/production/stripe/key?bogus=1", admin).await;
    assert_eq!((s, code(&b)), (400, "INVALID_REQUEST"), "{b}");

    // A project holding only deleted secrets is deleted with them, purged.
    let (s, b) = srv.get(&format!("/api/v1/secrets/path/staging/DB?projectId={pid}"), admin).await;
    assert_eq!(s, 200, "{b}");
    let db = b["id"].as_str().unwrap().to_owned();
    let (s, _) = srv.delete(&format!("/api/v1/secrets/path/staging/DB?projectId={pid}"), admin).await;
    assert_eq!(s, 200);
    let (_, p) = srv.get(&format!("/api/v1/projects/{pid}"), admin).await;
    assert_eq!(p["secretCount"], 0, "deleted secrets are not counted: {p}");
    let live = create(srv, admin, json!({ "name": "LIVE", "value": "l", "projectId": pid })).await;
    let (s, b) = srv.delete(&format!("/api/v1/projects/{pid}"), admin).await;
    assert_eq!((s, code(&b)), (409, "CONFLICT"), "a live secret still blocks it: {b}");
    let (s, _) = srv.delete(&format!("/api/v1/secrets/{live}"), admin).await;
    assert_eq!(s, 200);
    // Only an admin's deletion erases what is still restorable.
    let writer = key_with(srv, admin, "write").await;
    let (s, b) = srv.delete(&format!("/api/v1/projects/{pid}"), &writer).await;
    assert_eq!((s, code(&b)), (409, "CONFLICT"), "a write key cannot end the retention: {b}");
    assert_eq!(stored_rows(srv, &db).await, 1, "still restorable");
    let (s, b) = srv.delete(&format!("/api/v1/projects/{pid}"), admin).await;
    assert_eq!(s, 200, "{b}");
    for id in [&db, &live] {
        assert_eq!((stored_rows(srv, id).await, stored_versions(srv, id).await), (0, 0), "purged with the project");
    }
    assert!(audited(&audit_actions(srv, admin).await, "secret.purged", "LIVE"));
}

/// Deleted secrets do not count toward the plan's quota; a restore does.
async fn quota(backend: Backend) {
    let srv = Server::start_with(Opts::new(backend).env("LATCHKEY_DEFAULT_PLAN", "free")).await;
    let key = srv.signup(&unique("quota")).await;
    let mut ids = vec![];
    for i in 0..5 {
        ids.push(create(&srv, &key, json!({ "name": format!("Q{i}"), "value": "v" })).await);
    }
    let (s, b) = srv.post("/api/v1/secrets", &key, json!({ "name": "Q5", "value": "v" })).await;
    assert_eq!((s, code(&b)), (403, "PLAN_LIMIT_REACHED"), "{b}");
    let (s, _) = srv.delete(&format!("/api/v1/secrets/{}", ids[0]), &key).await;
    assert_eq!(s, 200);
    let (_, plan) = srv.get("/api/v1/plan", &key).await;
    assert_eq!(plan["usage"]["secrets"], 4, "{plan}");
    create(&srv, &key, json!({ "name": "Q5", "value": "v" })).await;
    let (s, b) = srv.call("POST", &format!("/api/v1/secrets/{}/restore", ids[0]), Some(&key), None).await;
    assert_eq!((s, code(&b)), (403, "PLAN_LIMIT_REACHED"), "{b}");
}

async fn story(backend: Backend) {
    let srv = Server::start_with(Opts::new(backend).arg("--jobs-interval-ms").arg("100")).await;
    let tenant = unique("life");
    let admin = srv.signup(&tenant).await;
    expiry(&srv, &admin).await;
    let other_tenant = unique("life-b");
    srv.signup(&other_tenant).await;
    deletion(&srv, &admin, &other_tenant).await;
    versions(&srv, &admin).await;
    paths(&srv, &admin).await;
    quota(backend).await;
}

#[tokio::test]
async fn lifecycle_on_sqlite() {
    story(Backend::Sqlite).await;
}

#[tokio::test]
async fn lifecycle_on_postgres() {
    story(Backend::Postgres).await;
}
