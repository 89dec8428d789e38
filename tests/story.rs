//! The user's story, told the same way on SQLite and on PostgreSQL:
//! signup → project → store → read → list → rotate → scoped keys → audit → clean up.

mod common;

use common::{Backend, Server, unique};
use serde_json::{Value, json};

async fn story(backend: Backend) {
    let srv = Server::start(backend).await;
    let tenant = unique("acme");
    let key = srv.signup(&tenant).await;
    assert!(key.starts_with("sc_"), "{key}");

    // Whoami: the signup key is an admin key on the operator's default plan.
    let (s, me) = srv.get("/api/v1/plan", &key).await;
    assert_eq!(s, 200, "{me}");
    assert_eq!(me["tenantId"], tenant.as_str());
    assert_eq!(me["permissions"], "admin");

    // A project to file secrets under.
    let (s, proj) = srv.post("/api/v1/projects", &key, json!({ "name": "payments", "tags": ["team-a"] })).await;
    assert_eq!(s, 201, "{proj}");
    let project = proj["id"].as_str().unwrap().to_owned();
    let (s, other_proj) = srv.post("/api/v1/projects", &key, json!({ "name": "infra" })).await;
    assert_eq!(s, 201);
    let other_project = other_proj["id"].as_str().unwrap().to_owned();
    let (s, dup) = srv.post("/api/v1/projects", &key, json!({ "name": "payments" })).await;
    assert_eq!((s, dup["code"].as_str()), (409, Some("ALREADY_EXISTS")));

    // Store: the answer carries an id, never the value.
    let canary = format!("sk_live_{}", uuid::Uuid::new_v4().simple());
    let (s, created) = srv
        .post(
            "/api/v1/secrets",
            &key,
            json!({ "name": "STRIPE_SECRET_KEY", "value": canary, "secretType": "api-key", "tags": ["stripe", "billing"],
                    "projectId": project, "environment": "production", "description": "live Stripe key" }),
        )
        .await;
    assert_eq!(s, 201, "{created}");
    assert!(created.get("value").is_none());
    assert!(!created.to_string().contains(&canary));
    let id = created["secretId"].as_str().unwrap().to_owned();
    assert_eq!(created["version"], 1);

    // The same name may exist in another environment, but not twice in one.
    let body = |env: &str| json!({ "name": "STRIPE_SECRET_KEY", "value": "x", "projectId": project, "environment": env });
    assert_eq!(srv.post("/api/v1/secrets", &key, body("staging")).await.0, 201);
    let (s, e) = srv.post("/api/v1/secrets", &key, body("production")).await;
    assert_eq!((s, e["code"].as_str()), (409, Some("ALREADY_EXISTS")));
    for (name, ty) in [("DB_PASSWORD", "database-credentials"), ("TLS_CERT", "certificate"), ("GH_TOKEN", "oauth-token")] {
        let (s, b) = srv
            .post(
                "/api/v1/secrets",
                &key,
                json!({ "name": name, "value": format!("{name}-value"), "secretType": ty, "projectId": other_project }),
            )
            .await;
        assert_eq!(s, 201, "{b}");
    }

    // Read: value and metadata, which no cache on the way may keep.
    let (s, headers, got) = srv.call_full("GET", &format!("/api/v1/secrets/{id}"), Some(&key), None).await;
    assert_eq!(s, 200, "{got}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(got["value"], canary.as_str());
    assert_eq!(got["name"], "STRIPE_SECRET_KEY");
    assert_eq!(got["environment"], "production");

    // List: metadata only, filters, search, cursor pagination.
    let (s, all) = srv.get("/api/v1/secrets", &key).await;
    assert_eq!(s, 200);
    assert_eq!(all["count"], 5);
    assert!(!all.to_string().contains(&canary), "list must never carry values");
    assert!(all["secrets"].as_array().unwrap().iter().all(|s| s.get("value").is_none()));
    let names = |v: &Value| v["secrets"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap().to_owned()).collect::<Vec<_>>();
    assert_eq!(names(&srv.get("/api/v1/secrets?secretType=certificate", &key).await.1), ["TLS_CERT"]);
    assert_eq!(srv.get("/api/v1/secrets?environment=staging", &key).await.1["count"], 1);
    assert_eq!(srv.get(&format!("/api/v1/secrets?projectId={other_project}"), &key).await.1["count"], 3);
    assert_eq!(srv.get("/api/v1/secrets?tag=billing", &key).await.1["count"], 1);
    assert_eq!(srv.get("/api/v1/secrets?search=stripe", &key).await.1["count"], 2, "search matches names case-insensitively");
    assert_eq!(names(&srv.get("/api/v1/secrets?search=live%20stripe", &key).await.1), ["STRIPE_SECRET_KEY"], "search matches descriptions");
    assert_eq!(srv.get("/api/v1/secrets?search=%25", &key).await.1["count"], 0, "LIKE wildcards match literally");
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let path = match &cursor {
            Some(c) => format!("/api/v1/secrets?limit=2&cursor={c}"),
            None => "/api/v1/secrets?limit=2".into(),
        };
        let (s, page) = srv.get(&path, &key).await;
        assert_eq!(s, 200, "{page}");
        seen.extend(names(&page));
        if page["hasMore"] == false {
            assert!(page["nextCursor"].is_null());
            break;
        }
        cursor = Some(page["nextCursor"].as_str().unwrap().to_owned());
    }
    assert_eq!(seen.len(), 5, "every secret exactly once across pages: {seen:?}");
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted);
    assert_eq!(srv.get("/api/v1/secrets?cursor=garbage", &key).await.0, 400);
    assert_eq!(srv.get("/api/v1/secrets?limit=501", &key).await.0, 400);

    // Rotate: a new value is a new version; a stale expectedVersion is refused.
    let (s, v2) = srv.put(&format!("/api/v1/secrets/{id}"), &key, json!({ "value": "rotated-2", "expectedVersion": 1 })).await;
    assert_eq!((s, v2["version"].as_i64()), (200, Some(2)), "{v2}");
    let (s, stale) = srv.put(&format!("/api/v1/secrets/{id}"), &key, json!({ "value": "lost", "expectedVersion": 1 })).await;
    assert_eq!((s, stale["code"].as_str()), (409, Some("VERSION_CONFLICT")));
    let (s, meta_only) = srv.put(&format!("/api/v1/secrets/{id}"), &key, json!({ "description": "rotated", "tags": ["stripe"] })).await;
    assert_eq!((s, meta_only["version"].as_i64()), (200, Some(2)), "metadata alone makes no version");
    assert_eq!(srv.get(&format!("/api/v1/secrets/{id}"), &key).await.1["value"], "rotated-2");
    let (s, old) = srv.get(&format!("/api/v1/secrets/{id}?version=1"), &key).await;
    assert_eq!((s, old["value"].as_str(), old["valueVersion"].as_i64()), (200, Some(canary.as_str()), Some(1)));
    assert_eq!(srv.get(&format!("/api/v1/secrets/{id}?version=9"), &key).await.0, 404);
    let (s, versions) = srv.get(&format!("/api/v1/secrets/{id}/versions"), &key).await;
    assert_eq!(s, 200);
    let vs = versions["versions"].as_array().unwrap();
    assert_eq!(vs.len(), 2);
    assert!(!versions.to_string().contains("rotated-2") && !versions.to_string().contains(&canary));

    // Keys: a read-only key reads but cannot write; a project-scoped key sees only its project.
    let (s, ro) = srv.post("/api/v1/api-keys", &key, json!({ "name": "reader", "permissions": "read" })).await;
    assert_eq!(s, 201, "{ro}");
    let ro_key = ro["apiKey"].as_str().unwrap().to_owned();
    let ro_id = ro["id"].as_str().unwrap().to_owned();
    assert_eq!(srv.get(&format!("/api/v1/secrets/{id}"), &ro_key).await.0, 200);
    let (s, denied) = srv.post("/api/v1/secrets", &ro_key, json!({ "name": "NOPE", "value": "x" })).await;
    assert_eq!((s, denied["code"].as_str()), (403, Some("SCOPE_DENIED")));
    assert_eq!(srv.get("/api/v1/api-keys", &ro_key).await.0, 403);
    assert_eq!(srv.post("/api/v1/api-keys", &ro_key, json!({ "name": "escalate", "permissions": "admin" })).await.0, 403);

    let (s, scoped) = srv
        .post("/api/v1/api-keys", &key, json!({ "name": "infra-writer", "permissions": "write", "projectScope": [other_project] }))
        .await;
    assert_eq!(s, 201, "{scoped}");
    let scoped_key = scoped["apiKey"].as_str().unwrap().to_owned();
    assert_eq!(srv.get("/api/v1/secrets", &scoped_key).await.1["count"], 3);
    let (s, e) = srv.get(&format!("/api/v1/secrets/{id}"), &scoped_key).await;
    assert_eq!((s, e["code"].as_str()), (403, Some("SCOPE_DENIED")));
    assert_eq!(srv.post("/api/v1/secrets", &scoped_key, json!({ "name": "OUT", "value": "x", "projectId": project })).await.0, 403);
    let (s, inside) = srv.post("/api/v1/secrets", &scoped_key, json!({ "name": "IN", "value": "x", "projectId": other_project })).await;
    assert_eq!(s, 201);
    // A rotation is checked against the scope on the row it writes.
    let (s, e) = srv.put(&format!("/api/v1/secrets/{id}"), &scoped_key, json!({ "value": "not yours" })).await;
    assert_eq!((s, e["code"].as_str()), (403, Some("SCOPE_DENIED")));
    assert_eq!(srv.get(&format!("/api/v1/secrets/{id}"), &key).await.1["value"], "rotated-2", "a denied rotation changes nothing");
    let inside_id = inside["secretId"].as_str().unwrap();
    let (s, rotated) = srv.put(&format!("/api/v1/secrets/{inside_id}"), &scoped_key, json!({ "value": "y" })).await;
    assert_eq!((s, rotated["version"].as_i64()), (200, Some(2)), "{rotated}");

    // Listing keys never shows them; revoked and regenerated keys stop working.
    let (s, keys) = srv.get("/api/v1/api-keys", &key).await;
    assert_eq!(s, 200);
    assert_eq!(keys["count"], 3);
    for k in [&key, &ro_key, &scoped_key] {
        assert!(!keys.to_string().contains(k.as_str()), "key list leaks a key");
    }
    let (s, _) = srv.put(&format!("/api/v1/api-keys/{ro_id}"), &key, json!({ "name": "reader-renamed" })).await;
    assert_eq!(s, 200);
    let (s, regen) = srv.post(&format!("/api/v1/api-keys/{ro_id}/regenerate"), &key, json!({})).await;
    assert_eq!(s, 200, "{regen}");
    let new_ro = regen["apiKey"].as_str().unwrap().to_owned();
    assert_eq!(srv.get("/api/v1/secrets", &ro_key).await.0, 401, "old key dies on regenerate");
    assert_eq!(srv.get("/api/v1/secrets", &new_ro).await.0, 200);
    assert_eq!(srv.delete(&format!("/api/v1/api-keys/{ro_id}"), &key).await.0, 200);
    let (s, e) = srv.get("/api/v1/secrets", &new_ro).await;
    assert_eq!((s, e["code"].as_str()), (401, Some("UNAUTHORIZED")));
    // A key works until its expiry, then stops by time alone (the server has
    // it cached; nothing in the database changes). The server shares this
    // clock, so an answer received before the expiry was decided before it:
    // it must be 200. A machine too slow to answer within the margin gets a
    // key with a longer one, and the first request sent after the expiry must
    // be 401, however slow the machine.
    let mut margin = chrono::Duration::seconds(1);
    let (exp_key, expiry) = loop {
        let expiry = chrono::Utc::now() + margin;
        let (s, exp) =
            srv.post("/api/v1/api-keys", &key, json!({ "name": "short", "permissions": "read", "expiresAt": expiry.to_rfc3339() })).await;
        assert!(margin < chrono::Duration::seconds(60), "no answer within a minute of a key's creation");
        if s == 400 && chrono::Utc::now() >= expiry {
            margin = margin * 4; // the expiry had passed when the server saw it: refused, rightly
            continue;
        }
        assert_eq!(s, 201, "{exp}");
        let exp_key = exp["apiKey"].as_str().unwrap().to_owned();
        let s = srv.get("/api/v1/secrets", &exp_key).await.0;
        if chrono::Utc::now() < expiry {
            assert_eq!(s, 200, "a key before its expiry");
            break (exp_key, expiry);
        }
        margin = margin * 4;
    };
    if let Ok(left) = (expiry - chrono::Utc::now() + chrono::Duration::milliseconds(5)).to_std() {
        tokio::time::sleep(left).await;
    }
    assert_eq!(srv.get("/api/v1/secrets", &exp_key).await.0, 401, "expired key");
    // An admin key may regenerate and then revoke itself (every write checks
    // its own key inside the transaction, before the change).
    let (_, me) = srv.post("/api/v1/api-keys", &key, json!({ "name": "retiring", "permissions": "admin" })).await;
    let (me_key, me_id) = (me["apiKey"].as_str().unwrap().to_owned(), me["id"].as_str().unwrap().to_owned());
    let (s, regen) = srv.post(&format!("/api/v1/api-keys/{me_id}/regenerate"), &me_key, json!({})).await;
    assert_eq!(s, 200, "{regen}");
    let me_key = regen["apiKey"].as_str().unwrap().to_owned();
    let (s, gone) = srv.delete(&format!("/api/v1/api-keys/{me_id}"), &me_key).await;
    assert_eq!(s, 200, "a key revoking itself: {gone}");
    assert_eq!(srv.get("/api/v1/secrets", &me_key).await.0, 401, "a key that revoked itself");

    // Another tenant sees nothing of ours, and every answer is a plain 404.
    let intruder = srv.signup(&unique("intruder")).await;
    for (method, path) in [
        ("GET", format!("/api/v1/secrets/{id}")),
        ("PUT", format!("/api/v1/secrets/{id}")),
        ("DELETE", format!("/api/v1/secrets/{id}")),
        ("GET", format!("/api/v1/secrets/{id}/versions")),
        ("GET", format!("/api/v1/projects/{project}")),
        ("DELETE", format!("/api/v1/projects/{project}")),
        ("PUT", format!("/api/v1/api-keys/{ro_id}")),
        ("DELETE", format!("/api/v1/api-keys/{ro_id}")),
    ] {
        let body =
            (method == "PUT").then(|| if path.contains("api-keys") { json!({ "name": "pwned" }) } else { json!({ "value": "pwned" }) });
        let (s, b) = srv.call(method, &path, Some(&intruder), body).await;
        assert_eq!(s, 404, "{method} {path}: {b}");
    }
    assert_eq!(srv.get("/api/v1/secrets", &intruder).await.1["count"], 0);
    assert_eq!(srv.get(&format!("/api/v1/secrets/{id}"), &key).await.1["value"], "rotated-2", "intruder changed nothing");

    // Projects: counts, and no deleting while secrets remain.
    let (s, projects) = srv.get("/api/v1/projects", &key).await;
    assert_eq!(s, 200);
    let pay = projects["projects"].as_array().unwrap().iter().find(|p| p["id"] == project.as_str()).unwrap().clone();
    assert_eq!(pay["secretCount"], 2);
    let (s, e) = srv.delete(&format!("/api/v1/projects/{project}"), &key).await;
    assert_eq!((s, e["code"].as_str()), (409, Some("CONFLICT")));

    // Delete, then the audit trail tells what happened, without values.
    assert_eq!(srv.delete(&format!("/api/v1/secrets/{id}"), &key).await.0, 200);
    assert_eq!(srv.get(&format!("/api/v1/secrets/{id}"), &key).await.0, 404);
    let (s, audit) = srv.get("/api/v1/audit/logs?limit=1000", &key).await;
    assert_eq!(s, 200, "{audit}");
    let text = audit.to_string();
    assert!(!text.contains(&canary) && !text.contains("rotated-2"), "audit must not carry values");
    let actions: Vec<&str> = audit["logs"].as_array().unwrap().iter().map(|l| l["action"].as_str().unwrap()).collect();
    for a in [
        "tenant.signup",
        "project.create",
        "secret.create",
        "secret.read",
        "secret.update",
        "secret.deleted",
        "apikey.create",
        "apikey.revoke",
        "apikey.regenerate",
        "auth.failed",
    ] {
        assert!(actions.contains(&a), "audit lacks {a}: {actions:?}");
    }
    let outcomes: Vec<(&str, &str)> =
        audit["logs"].as_array().unwrap().iter().map(|l| (l["action"].as_str().unwrap(), l["outcome"].as_str().unwrap())).collect();
    assert!(outcomes.contains(&("secret.create", "denied")), "denied attempts are audited");
    assert!(outcomes.contains(&("secret.update", "rejected")), "stale writes are audited");
    let entry = &audit["logs"][0];
    for field in ["timestamp", "actor", "ipAddress", "userAgent", "resourceType"] {
        assert!(!entry[field].is_null(), "audit entry lacks {field}: {entry}");
    }
    let (_, reads) = srv.get("/api/v1/audit?action=secret.read", &key).await;
    assert!(reads["logs"].as_array().unwrap().iter().all(|l| l["action"] == "secret.read"));
    assert!(reads["total"].as_i64().unwrap() >= 4);
    let (_, paged) = srv.get("/api/v1/audit?limit=2&offset=1", &key).await;
    assert_eq!(paged["logs"].as_array().unwrap().len(), 2);
    let (_, future) = srv.get("/api/v1/audit?startDate=2999-01-01", &key).await;
    assert_eq!(future["total"], 0);
    assert_eq!(srv.get("/api/v1/audit?startDate=yesterday", &key).await.0, 400);
    // There is no way to change the trail.
    assert!(matches!(srv.delete("/api/v1/audit", &key).await.0, 400 | 404 | 405));
    assert!(srv.intruder_cannot_read_audit(&intruder, &canary).await);

    // Emptied project can go.
    let (_, staging) = srv.get(&format!("/api/v1/secrets?projectId={project}"), &key).await;
    for s in staging["secrets"].as_array().unwrap() {
        assert_eq!(srv.delete(&format!("/api/v1/secrets/{}", s["id"].as_str().unwrap()), &key).await.0, 200);
    }
    assert_eq!(srv.delete(&format!("/api/v1/projects/{project}"), &key).await.0, 200);
    assert_eq!(srv.get(&format!("/api/v1/projects/{project}"), &key).await.0, 404);

    assert_eq!(srv.stop(), Some(0), "graceful shutdown exits 0");
}

trait AuditPeek {
    async fn intruder_cannot_read_audit(&self, intruder: &str, canary: &str) -> bool;
}

impl AuditPeek for Server {
    /// The intruder's own audit trail holds only its own doings.
    async fn intruder_cannot_read_audit(&self, intruder: &str, canary: &str) -> bool {
        let (s, audit) = self.get("/api/v1/audit?limit=1000", intruder).await;
        s == 200
            && !audit.to_string().contains(canary)
            && audit["logs"].as_array().unwrap().iter().all(|l| l["action"] != "secret.create" || l["outcome"] != "success")
    }
}

#[tokio::test]
async fn story_on_sqlite() {
    story(Backend::Sqlite).await;
}

#[tokio::test]
async fn story_on_postgres() {
    story(Backend::Postgres).await;
}
