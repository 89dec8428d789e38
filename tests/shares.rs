//! Share links for people, as an agent and the person it hands a secret to
//! use them: the agent's key makes a link; the person opens it (REST, no
//! key) and gets the value exactly as many times as the link allows, behind
//! its password and address allowlist; the agent lists, revokes and extends
//! its links, on REST and MCP. On SQLite and PostgreSQL, through the real server.

mod common;

use common::mcp_client::{connect as mcp_client, tool};
use common::{Backend, Opts, Server, unique};
use serde_json::{Value, json};

fn code(b: &Value) -> &str {
    b["code"].as_str().unwrap_or_default()
}

async fn secret(srv: &Server, key: &str, name: &str, value: &str) -> String {
    let (s, b) = srv.post("/api/v1/secrets", key, json!({ "name": name, "value": value })).await;
    assert_eq!(s, 201, "{b}");
    b["id"].as_str().unwrap().to_owned()
}

/// Makes a link; answers (status, body).
async fn share(srv: &Server, key: &str, req: Value) -> (u16, Value) {
    srv.post("/api/v1/shares", key, req).await
}

/// Makes a link that must succeed; answers (id, token).
async fn shared(srv: &Server, key: &str, req: Value) -> (String, String) {
    let (s, b) = share(srv, key, req).await;
    assert_eq!(s, 201, "{b}");
    (b["id"].as_str().unwrap().to_owned(), b["token"].as_str().unwrap().to_owned())
}

/// Opens a link as a person would: no key; `body` `None` sends no body at all.
async fn access(srv: &Server, token: &str, body: Option<Value>) -> (u16, reqwest::header::HeaderMap, Value) {
    srv.call_full("POST", &format!("/api/v1/shares/access/{token}"), None, body).await
}

/// Opens a link with an `X-Forwarded-For` header.
async fn access_forwarded(srv: &Server, token: &str, forwarded: &str) -> (u16, Value) {
    let resp = srv
        .http
        .post(srv.url(&format!("/api/v1/shares/access/{token}")))
        .header("X-Forwarded-For", forwarded)
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn view(srv: &Server, key: &str, id: &str) -> Value {
    let (s, b) = srv.get(&format!("/api/v1/shares/{id}"), key).await;
    assert_eq!(s, 200, "{b}");
    b
}

/// Whether the link's ciphertext is still in the database.
async fn sealed_present(srv: &Server, id: &str) -> bool {
    srv.sql("UPDATE shares SET id = id WHERE id = $1 AND sealed IS NOT NULL", &[id]).await == 1
}

/// Every entry of the tenant's trail, newest first.
async fn trail(srv: &Server, key: &str) -> Vec<Value> {
    let (s, page) = srv.get("/api/v1/audit?limit=1000", key).await;
    assert_eq!(s, 200, "{page}");
    page["logs"].as_array().unwrap().clone()
}

async fn create_and_access(backend: Backend) {
    let srv = Server::start(backend).await;
    let admin = srv.signup(&unique("share")).await;
    let id = secret(&srv, &admin, "DB_PASSWORD", "s3cret-value-for-a-person").await;

    let (s, created) = share(&srv, &admin, json!({ "secretId": id, "expirationHours": 2, "maxUses": 2 })).await;
    assert_eq!(s, 201, "{created}");
    let token = created["token"].as_str().unwrap();
    let share_id = created["id"].as_str().unwrap();
    assert!(token.starts_with("shr_") && token.len() > 40, "{created}");
    let port = srv.base.rsplit(':').next().unwrap();
    assert_eq!(created["url"].as_str().unwrap(), format!("http://localhost:{port}/s/{token}"), "{created}");
    assert_eq!(created["maxUses"], 2);
    assert!(created["expiresAt"].is_string(), "{created}");
    assert!(!created.to_string().contains("s3cret"), "no value in the answer: {created}");

    // The secret changes afterwards: the link keeps the value it was made with.
    let (s, b) = srv.put(&format!("/api/v1/secrets/{id}"), &admin, json!({ "value": "rotated" })).await;
    assert_eq!(s, 200, "{b}");

    // The person opens it without a key and without a body.
    let (s, headers, b) = access(&srv, token, None).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["value"], "s3cret-value-for-a-person");
    assert_eq!((b["name"].as_str(), b["shareId"].as_str(), b["usesLeft"].as_i64()), (Some("DB_PASSWORD"), Some(share_id), Some(1)));
    assert_eq!(headers.get("cache-control").and_then(|v| v.to_str().ok()), Some("no-store"));
    let v = view(&srv, &admin, share_id).await;
    assert_eq!((v["uses"].as_i64(), v["usesLeft"].as_i64(), v["status"].as_str()), (Some(1), Some(1), Some("active")), "{v}");
    assert!(v["lastAccessedAt"].is_string() && v.get("token").is_none() && v.get("value").is_none(), "{v}");

    // An empty JSON body works too; the last use erases the value.
    let (s, _, b) = access(&srv, token, Some(json!({}))).await;
    assert_eq!((s, b["usesLeft"].as_i64()), (200, Some(0)), "{b}");
    assert!(!sealed_present(&srv, share_id).await, "the ciphertext is erased with the last use");
    let (s, _, b) = access(&srv, token, None).await;
    assert_eq!((s, code(&b)), (410, "SHARE_EXHAUSTED"), "{b}");
    assert_eq!(view(&srv, &admin, share_id).await["status"], "exhausted");

    // Unknown and malformed tokens: 404.
    for bad in ["shr_doesnotexist", "nothing-like-a-token"] {
        let (s, _, b) = access(&srv, bad, None).await;
        assert_eq!((s, code(&b)), (404, "NOT_FOUND"), "{b}");
    }

    // Creating read the secret (audited); each access is audited in the tenant's trail.
    let logs = trail(&srv, &admin).await;
    let reads: Vec<&Value> = logs.iter().filter(|e| e["action"] == "secret.read" && e["resourceId"] == id.as_str()).collect();
    // (PostgreSQL may record a second entry: a read retried after another change, see `read_secret`.)
    assert!(!reads.is_empty(), "{logs:?}");
    let accesses: Vec<&Value> = logs.iter().filter(|e| e["action"] == "share.access").collect();
    let outcomes: Vec<&str> = accesses.iter().map(|e| e["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["rejected", "success", "success"], "{accesses:?}");
    assert!(accesses.iter().all(|e| e["resourceId"] == share_id && e["ipAddress"] == "127.0.0.1"), "{accesses:?}");
    assert_eq!(logs.iter().filter(|e| e["action"] == "share.create" && e["outcome"] == "success").count(), 1);
}

#[tokio::test]
async fn a_person_opens_a_link_until_its_uses_run_out_on_sqlite() {
    create_and_access(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_person_opens_a_link_until_its_uses_run_out_on_postgres() {
    create_and_access(Backend::Postgres).await;
}

/// 50 people open a `maxUses = 3` link at once: exactly 3 get the value.
async fn exactly_max_uses_under_concurrency(backend: Backend) {
    let srv = Server::start(backend).await;
    let admin = srv.signup(&unique("race")).await;
    let id = secret(&srv, &admin, "RACE", "race-value").await;
    let (share_id, token) = shared(&srv, &admin, json!({ "secretId": id, "maxUses": 3 })).await;
    let attempts = (0..50).map(|_| access(&srv, &token, None));
    let answers = futures::future::join_all(attempts).await;
    let ok: Vec<&Value> = answers.iter().filter(|(s, _, _)| *s == 200).map(|(_, _, b)| b).collect();
    assert_eq!(ok.len(), 3, "{answers:?}");
    assert!(ok.iter().all(|b| b["value"] == "race-value"), "{ok:?}");
    let mut left: Vec<i64> = ok.iter().map(|b| b["usesLeft"].as_i64().unwrap()).collect();
    left.sort();
    assert_eq!(left, [0, 1, 2]);
    for (s, _, b) in answers.iter().filter(|(s, _, _)| *s != 200) {
        assert_eq!((*s, code(b)), (410, "SHARE_EXHAUSTED"), "{b}");
    }
    assert!(!sealed_present(&srv, &share_id).await, "the last use erased the ciphertext");
    let v = view(&srv, &admin, &share_id).await;
    assert_eq!((v["uses"].as_i64(), v["status"].as_str()), (Some(3), Some("exhausted")), "{v}");
    let logs = trail(&srv, &admin).await;
    let count = |outcome: &str| logs.iter().filter(|e| e["action"] == "share.access" && e["outcome"] == outcome).count();
    assert_eq!((count("success"), count("rejected")), (3, 47), "every access is audited");
}

#[tokio::test]
async fn fifty_simultaneous_accesses_of_a_three_use_link_give_three_values_on_sqlite() {
    exactly_max_uses_under_concurrency(Backend::Sqlite).await;
}

#[tokio::test]
async fn fifty_simultaneous_accesses_of_a_three_use_link_give_three_values_on_postgres() {
    exactly_max_uses_under_concurrency(Backend::Postgres).await;
}

/// Passwords, lockout and the address allowlist (the client is 127.0.0.1);
/// nothing secret ever reaches the audit trail.
async fn passwords_lockout_and_addresses(backend: Backend) {
    let srv = Server::start(backend).await;
    let admin = srv.signup(&unique("pw")).await;
    let value = format!("pw-canary-{}", uuid::Uuid::new_v4().simple());
    let id = secret(&srv, &admin, "LOCKED", &value).await;
    let password = "correct horse battery";

    for bad in [json!("short"), json!("x".repeat(201))] {
        let (s, b) = share(&srv, &admin, json!({ "secretId": id, "password": bad })).await;
        assert_eq!((s, code(&b)), (400, "INVALID_REQUEST"), "{b}");
    }
    let (share_id, token) = shared(&srv, &admin, json!({ "secretId": id, "maxUses": 5, "password": password })).await;
    assert_eq!(view(&srv, &admin, &share_id).await["hasPassword"], true);

    // Missing: 401, and not a failure. Wrong: 401, no use taken.
    for body in [None, Some(json!({})), Some(json!({ "password": "" }))] {
        let (s, _, b) = access(&srv, &token, body).await;
        assert_eq!((s, code(&b)), (401, "PASSWORD_REQUIRED"), "{b}");
    }
    let (s, _, b) = access(&srv, &token, Some(json!({ "password": "wrong guess 1" }))).await;
    assert_eq!((s, code(&b)), (401, "INVALID_PASSWORD"), "{b}");
    let v = view(&srv, &admin, &share_id).await;
    assert_eq!((v["uses"].as_i64(), v["lockedUntil"].is_null()), (Some(0), true), "{v}");

    // The right one works and resets the count of wrong ones.
    let started = std::time::Instant::now();
    let (s, _, b) = access(&srv, &token, Some(json!({ "password": password }))).await;
    assert_eq!((s, b["value"].as_str()), (200, Some(value.as_str())), "{b}");
    eprintln!("one right password took {:?}", started.elapsed());
    for n in 1..=4 {
        let (s, _, b) = access(&srv, &token, Some(json!({ "password": format!("wrong {n}") }))).await;
        assert_eq!((s, code(&b)), (401, "INVALID_PASSWORD"), "attempt {n}: {b}");
    }
    let (s, _, b) = access(&srv, &token, Some(json!({ "password": password }))).await;
    assert_eq!(s, 200, "four wrong after a success do not lock: {b}");

    // Five wrong in a row lock it: 429 with Retry-After, even for the right password.
    for n in 1..=5 {
        let (s, _, b) = access(&srv, &token, Some(json!({ "password": format!("wrong again {n}") }))).await;
        assert_eq!((s, code(&b)), (401, "INVALID_PASSWORD"), "attempt {n}: {b}");
    }
    let (s, headers, b) = access(&srv, &token, Some(json!({ "password": password }))).await;
    assert_eq!((s, code(&b)), (429, "SHARE_LOCKED"), "{b}");
    let retry: u64 = headers.get("retry-after").unwrap().to_str().unwrap().parse().unwrap();
    assert!((800..=900).contains(&retry), "about 15 minutes: {retry}");
    let v = view(&srv, &admin, &share_id).await;
    assert_eq!((v["uses"].as_i64(), v["lockedUntil"].is_string()), (Some(2), true), "{v}");

    // Once the lock ends (moved into the past here), the right password works again.
    assert_eq!(srv.sql("UPDATE shares SET locked_until = 1 WHERE id = $1", &[&share_id]).await, 1);
    let (s, _, b) = access(&srv, &token, Some(json!({ "password": password }))).await;
    assert_eq!((s, b["usesLeft"].as_i64()), (200, Some(2)), "{b}");

    // Address allowlists: the client here is 127.0.0.1.
    let (_, inside) = shared(&srv, &admin, json!({ "secretId": id, "allowedIPs": ["10.0.0.0/8", "127.0.0.1"] })).await;
    let (s, _, b) = access(&srv, &inside, None).await;
    assert_eq!((s, b["value"].as_str()), (200, Some(value.as_str())), "{b}");
    let (outside_id, outside) = shared(&srv, &admin, json!({ "secretId": id, "allowedIps": ["203.0.113.0/24"] })).await;
    let (s, _, b) = access(&srv, &outside, None).await;
    assert_eq!((s, code(&b)), (401, "IP_NOT_ALLOWED"), "{b}");
    let v = view(&srv, &admin, &outside_id).await;
    assert_eq!((v["uses"].as_i64(), &v["allowedIPs"]), (Some(0), &json!(["203.0.113.0/24"])), "{v}");
    let (s, b) = share(&srv, &admin, json!({ "secretId": id, "allowedIPs": ["not-an-address"] })).await;
    assert_eq!((s, code(&b)), (400, "INVALID_REQUEST"), "{b}");
    assert!(b["message"].as_str().unwrap().contains("allowedIPs"), "{b}");

    // The trail has every access and never the value, a token or a password.
    let logs = trail(&srv, &admin).await;
    let text = serde_json::to_string(&logs).unwrap();
    for never in [value.as_str(), password, token.as_str(), inside.as_str(), outside.as_str(), "wrong again"] {
        assert!(!text.contains(never), "the audit trail holds {never}");
    }
    let codes: Vec<&str> = logs.iter().filter(|e| e["action"] == "share.access").filter_map(|e| e["detail"]["code"].as_str()).collect();
    for c in ["PASSWORD_REQUIRED", "INVALID_PASSWORD", "SHARE_LOCKED", "IP_NOT_ALLOWED"] {
        assert!(codes.contains(&c), "{c} is audited: {codes:?}");
    }
}

#[tokio::test]
async fn passwords_lock_out_guessers_and_allowlists_judge_the_client_on_sqlite() {
    passwords_lockout_and_addresses(Backend::Sqlite).await;
}

#[tokio::test]
async fn passwords_lock_out_guessers_and_allowlists_judge_the_client_on_postgres() {
    passwords_lockout_and_addresses(Backend::Postgres).await;
}

/// Listing, revoking, extending, expiry, the secret's deletion, tenant
/// isolation, input bounds, scoped tokens and gated secrets.
async fn managing_links(backend: Backend) {
    let srv = Server::start(backend).await;
    let admin = srv.signup(&unique("manage")).await;
    let other = srv.signup(&unique("other")).await;
    let id = secret(&srv, &admin, "MANAGED", "managed-value").await;

    // Bounds: nothing is made from a bad request.
    for bad in [
        json!({ "secretId": id, "expirationHours": 0 }),
        json!({ "secretId": id, "expirationHours": 721 }),
        json!({ "secretId": id, "maxUses": 0 }),
        json!({ "secretId": id, "maxUses": 1001 }),
        json!({ "secretId": id, "allowedIPs": vec!["10.0.0.1"; 33] }),
        json!({ "secretId": id, "surprise": true }),
    ] {
        let (s, b) = share(&srv, &admin, bad.clone()).await;
        assert_eq!((s, code(&b)), (400, "INVALID_REQUEST"), "{bad}: {b}");
    }
    let (s, b) = share(&srv, &admin, json!({ "secretId": "00000000-0000-0000-0000-000000000000" })).await;
    assert_eq!((s, code(&b)), (404, "SECRET_NOT_FOUND"), "{b}");
    let (s, b) = share(&srv, &other, json!({ "secretId": id })).await;
    assert_eq!((s, code(&b)), (404, "SECRET_NOT_FOUND"), "another tenant's secret: {b}");
    let (s, b) = srv.get("/api/v1/shares?status=all", &admin).await;
    assert_eq!((s, b["count"].as_i64()), (200, Some(0)), "{b}");

    // Defaults: 24 hours, one use.
    let (s, created) = share(&srv, &admin, json!({ "secretId": id })).await;
    assert_eq!((s, created["maxUses"].as_i64()), (201, Some(1)), "{created}");
    let expires: chrono::DateTime<chrono::Utc> = created["expiresAt"].as_str().unwrap().parse().unwrap();
    let hours = (expires - chrono::Utc::now()).num_minutes();
    assert!((23 * 60..=24 * 60).contains(&hours), "{created}");
    let active = created["id"].as_str().unwrap().to_owned();

    // Another tenant sees none of it.
    for (method, path) in [
        ("GET", format!("/api/v1/shares/{active}")),
        ("DELETE", format!("/api/v1/shares/{active}")),
        ("POST", format!("/api/v1/shares/{active}/revoke")),
    ] {
        let (s, b) = srv.call(method, &path, Some(&other), None).await;
        assert_eq!((s, code(&b)), (404, "NOT_FOUND"), "{method} {path}: {b}");
    }
    let (s, b) = srv.post(&format!("/api/v1/shares/{active}/extend"), &other, json!({ "maxUses": 5 })).await;
    assert_eq!((s, code(&b)), (404, "NOT_FOUND"), "{b}");
    let (_, b) = srv.get("/api/v1/shares?status=all", &other).await;
    assert_eq!(b["count"], 0, "{b}");

    // Revoke by POST with a reason (the SecretCarousel CLI), and by DELETE.
    let (rid, rtoken) = shared(&srv, &admin, json!({ "secretId": id, "maxUses": 3 })).await;
    let (s, b) = srv.post(&format!("/api/v1/shares/{rid}/revoke"), &admin, json!({ "reason": "sent to the wrong person" })).await;
    assert_eq!((s, b["status"].as_str(), b["revokeReason"].as_str()), (200, Some("revoked"), Some("sent to the wrong person")), "{b}");
    assert!(!sealed_present(&srv, &rid).await, "revoking erases the value");
    let (s, _, b) = access(&srv, &rtoken, None).await;
    assert_eq!((s, code(&b)), (410, "SHARE_REVOKED"), "{b}");
    let (s, b) = srv.call("POST", &format!("/api/v1/shares/{rid}/revoke"), Some(&admin), None).await;
    assert_eq!((s, code(&b)), (409, "ALREADY_REVOKED"), "{b}");
    let (did, dtoken) = shared(&srv, &admin, json!({ "secretId": id })).await;
    let (s, b) = srv.delete(&format!("/api/v1/shares/{did}"), &admin).await;
    assert_eq!((s, b["status"].as_str()), (200, Some("revoked")), "{b}");
    let (s, _, b) = access(&srv, &dtoken, None).await;
    assert_eq!((s, code(&b)), (410, "SHARE_REVOKED"), "{b}");
    let (s, b) = srv.delete(&format!("/api/v1/shares/{did}"), &admin).await;
    assert_eq!((s, code(&b)), (409, "ALREADY_REVOKED"), "{b}");
    let logs = trail(&srv, &admin).await;
    assert!(
        logs.iter().any(|e| e["action"] == "share.revoke" && e["detail"]["reason"] == "sent to the wrong person"),
        "the reason is audited"
    );

    // Extend: more time (from now) and more uses; at least one of them.
    let (xid, xtoken) = shared(&srv, &admin, json!({ "secretId": id, "expirationHours": 1, "maxUses": 1 })).await;
    let (s, b) = srv.post(&format!("/api/v1/shares/{xid}/extend"), &admin, json!({})).await;
    assert_eq!((s, code(&b)), (400, "INVALID_REQUEST"), "{b}");
    let (s, b) = srv.post(&format!("/api/v1/shares/{xid}/extend"), &admin, json!({ "expirationHours": 721 })).await;
    assert_eq!((s, code(&b)), (400, "INVALID_REQUEST"), "{b}");
    let (s, b) = srv.post(&format!("/api/v1/shares/{xid}/extend"), &admin, json!({ "expirationHours": 48, "maxUses": 2 })).await;
    assert_eq!((s, b["maxUses"].as_i64(), b["usesLeft"].as_i64()), (200, Some(2), Some(2)), "{b}");
    let expires: chrono::DateTime<chrono::Utc> = b["expiresAt"].as_str().unwrap().parse().unwrap();
    assert!((expires - chrono::Utc::now()).num_hours() >= 47, "{b}");
    assert_eq!(access(&srv, &xtoken, None).await.0, 200);
    let (s, b) = srv.post(&format!("/api/v1/shares/{xid}/extend"), &admin, json!({ "maxUses": 1 })).await;
    assert_eq!((s, code(&b)), (400, "INVALID_REQUEST"), "not below the uses taken: {b}");
    assert_eq!(access(&srv, &xtoken, None).await.0, 200);
    // Used up: the value is gone, so no uses come back.
    let (s, b) = srv.post(&format!("/api/v1/shares/{xid}/extend"), &admin, json!({ "maxUses": 5 })).await;
    assert_eq!((s, code(&b)), (409, "CONFLICT"), "{b}");
    assert!(b["message"].as_str().unwrap().contains("erased"), "{b}");
    let (s, b) = srv.post(&format!("/api/v1/shares/{rid}/extend"), &admin, json!({ "expirationHours": 5 })).await;
    assert_eq!((s, code(&b)), (409, "CONFLICT"), "revoked: {b}");

    // Expiry (moved into the past here): 410, and the value is erased once noticed.
    let (eid, etoken) = shared(&srv, &admin, json!({ "secretId": id, "maxUses": 2 })).await;
    assert_eq!(srv.sql("UPDATE shares SET expires_at = 1 WHERE id = $1", &[&eid]).await, 1);
    let (s, _, b) = access(&srv, &etoken, None).await;
    assert_eq!((s, code(&b)), (410, "SHARE_EXPIRED"), "{b}");
    assert!(!sealed_present(&srv, &eid).await, "an expired link's value is erased when noticed");
    let (s, b) = srv.post(&format!("/api/v1/shares/{eid}/extend"), &admin, json!({ "expirationHours": 5 })).await;
    assert_eq!((s, code(&b)), (409, "CONFLICT"), "expired: {b}");

    // Listing: active by default, by status, and everything with includeRevoked.
    let list = |q: &'static str| {
        let (srv, admin) = (&srv, admin.clone());
        async move {
            let (s, b) = srv.get(&format!("/api/v1/shares{q}"), &admin).await;
            assert_eq!(s, 200, "{q}: {b}");
            assert_eq!(b["count"].as_u64().unwrap() as usize, b["shares"].as_array().unwrap().len());
            let mut ids: Vec<String> = b["shares"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_owned()).collect();
            ids.sort();
            ids
        }
    };
    let sorted = |mut v: Vec<&String>| {
        v.sort();
        v.into_iter().cloned().collect::<Vec<String>>()
    };
    assert_eq!(list("").await, std::slice::from_ref(&active));
    assert_eq!(list("?status=active").await, std::slice::from_ref(&active));
    assert_eq!(list("?status=revoked").await, sorted(vec![&rid, &did]));
    assert_eq!(list("?status=exhausted").await, std::slice::from_ref(&xid));
    assert_eq!(list("?status=expired").await, std::slice::from_ref(&eid));
    let all = sorted(vec![&active, &rid, &did, &xid, &eid]);
    assert_eq!(list("?status=all").await, all);
    assert_eq!(list("?includeRevoked=true").await, all);
    assert_eq!(list("?includeRevoked=false").await, std::slice::from_ref(&active));
    for bad in ["?status=gone", "?limit=5"] {
        let (s, b) = srv.get(&format!("/api/v1/shares{bad}"), &admin).await;
        assert_eq!((s, code(&b)), (400, "INVALID_REQUEST"), "{bad}: {b}");
    }

    // Deleting the secret revokes its links and erases their values.
    let (s, b) = srv.delete(&format!("/api/v1/secrets/{id}"), &admin).await;
    assert_eq!(s, 200, "{b}");
    let v = view(&srv, &admin, &active).await;
    assert_eq!((v["status"].as_str(), v["revokeReason"].as_str()), (Some("revoked"), Some("the secret was deleted")), "{v}");
    assert!(!sealed_present(&srv, &active).await);
    let (s, _, b) = access(&srv, created["token"].as_str().unwrap(), None).await;
    assert_eq!((s, code(&b)), (410, "SHARE_REVOKED"), "{b}");
    assert_eq!(list("").await.len(), 0);
    assert_eq!(srv.sql("UPDATE shares SET id = id WHERE sealed IS NOT NULL", &[]).await, 0, "no value is left anywhere");

    // A scoped token makes and manages no links; a gated secret needs an approval first.
    let id = secret(&srv, &admin, "AGAIN", "again").await;
    let (s, b) = srv.post("/api/v1/tokens", &admin, json!({ "scopes": ["secrets:read:*"] })).await;
    assert_eq!(s, 201, "{b}");
    let token = b["token"].as_str().unwrap();
    let (s, b) = share(&srv, token, json!({ "secretId": id })).await;
    assert_eq!((s, code(&b)), (403, "SCOPE_DENIED"), "{b}");
    let (s, b) = srv.get("/api/v1/shares", token).await;
    assert_eq!((s, code(&b)), (403, "SCOPE_DENIED"), "{b}");
    let (s, b) = srv.post("/api/v1/secrets", &admin, json!({ "name": "CROWN", "value": "jewels", "accessTier": "critical" })).await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = share(&srv, &admin, json!({ "secretId": b["id"] })).await;
    assert_eq!((s, code(&b)), (403, "APPROVAL_REQUIRED"), "{b}");
    assert!(b["approvalUrl"].is_string(), "{b}");
    assert_eq!(list("?status=all").await.len(), 5, "nothing was made");
}

#[tokio::test]
async fn links_are_listed_revoked_extended_and_end_with_their_secret_on_sqlite() {
    managing_links(Backend::Sqlite).await;
}

#[tokio::test]
async fn links_are_listed_revoked_extended_and_end_with_their_secret_on_postgres() {
    managing_links(Backend::Postgres).await;
}

/// Share links follow the plan table: `free` has none, and a tenant moved
/// to `free` stops serving the links it made.
#[tokio::test]
async fn the_free_plan_has_no_share_links() {
    let srv = Server::start_with(Opts::new(Backend::Sqlite).arg("--default-plan").arg("free")).await;
    let free = srv.signup(&unique("free")).await;
    let id = secret(&srv, &free, "FREE", "free-value").await;
    let (s, b) = share(&srv, &free, json!({ "secretId": id })).await;
    assert_eq!((s, code(&b)), (403, "PLAN_LIMIT_REACHED"), "{b}");
    assert!(b["message"].as_str().unwrap().contains("share links"), "{b}");

    let srv = Server::start(Backend::Sqlite).await;
    let tenant = unique("downgraded");
    let key = srv.signup(&tenant).await;
    let id = secret(&srv, &key, "PAID", "paid-value").await;
    let (_, token) = shared(&srv, &key, json!({ "secretId": id, "maxUses": 2 })).await;
    assert_eq!(access(&srv, &token, None).await.0, 200);
    assert_eq!(srv.sql("UPDATE tenants SET plan = 'free' WHERE id = $1", &[&tenant]).await, 1);
    let (s, _, b) = access(&srv, &token, None).await;
    assert_eq!((s, code(&b)), (403, "PLAN_LIMIT_REACHED"), "{b}");
}

/// `allowedIPs` judges the socket peer, or the `X-Forwarded-For` of a proxy
/// the operator trusts (`--trusted-proxy`); anyone else's header is ignored.
#[tokio::test]
async fn a_link_allowlist_believes_only_trusted_proxies() {
    let behind = Server::start_with(Opts::new(Backend::Sqlite).arg("--trusted-proxy").arg("127.0.0.1/32")).await;
    let admin = behind.signup(&unique("proxy")).await;
    let id = secret(&behind, &admin, "OFFICE", "office-value").await;
    let (_, office) = shared(&behind, &admin, json!({ "secretId": id, "maxUses": 10, "allowedIPs": ["203.0.113.0/24"] })).await;
    let (s, b) = access_forwarded(&behind, &office, "203.0.113.7").await;
    assert_eq!((s, b["value"].as_str()), (200, Some("office-value")), "the proxy vouches for the office: {b}");
    let (s, b) = access_forwarded(&behind, &office, "198.51.100.1").await;
    assert_eq!((s, code(&b)), (401, "IP_NOT_ALLOWED"), "{b}");
    let (s, _, b) = access(&behind, &office, None).await;
    assert_eq!((s, code(&b)), (401, "IP_NOT_ALLOWED"), "without the header the client is the proxy itself: {b}");

    let direct = Server::start(Backend::Sqlite).await;
    let admin = direct.signup(&unique("direct")).await;
    let id = secret(&direct, &admin, "OFFICE", "office-value").await;
    let (_, office) = shared(&direct, &admin, json!({ "secretId": id, "allowedIPs": ["203.0.113.0/24"] })).await;
    let (s, b) = access_forwarded(&direct, &office, "203.0.113.7").await;
    assert_eq!((s, code(&b)), (401, "IP_NOT_ALLOWED"), "no trusted proxy: the header is ignored: {b}");
    let (_, mine) = shared(&direct, &admin, json!({ "secretId": id, "allowedIPs": ["127.0.0.0/8"] })).await;
    let (s, b) = access_forwarded(&direct, &mine, "203.0.113.7").await;
    assert_eq!(s, 200, "the socket peer counts: {b}");
}

/// Unknown tokens are counted per client address like failed
/// authentications (`--auth-failures-per-minute`); a real link still opens.
#[tokio::test]
async fn guessing_tokens_is_throttled_per_client() {
    let srv = Server::start_with(Opts::new(Backend::Sqlite).env("LATCHKEY_AUTH_FAILURES_PER_MINUTE", "3")).await;
    let admin = srv.signup(&unique("guess")).await;
    let id = secret(&srv, &admin, "GUESSED", "guessed-value").await;
    let (_, token) = shared(&srv, &admin, json!({ "secretId": id })).await;
    // Opening the page of a link that does not exist counts like an access:
    // one allowance per client, whichever door the guesses come through.
    let (s, _, _) = srv.call_full("GET", "/s/shr_guess0", None, None).await;
    assert_eq!(s, 404, "the page of an unknown link");
    for n in 1..3 {
        let (s, _, b) = access(&srv, &format!("shr_guess{n}"), None).await;
        assert_eq!((s, code(&b)), (404, "NOT_FOUND"), "{b}");
    }
    let (s, headers, b) = access(&srv, "shr_guess4", None).await;
    assert_eq!((s, code(&b)), (429, "RATE_LIMITED"), "{b}");
    assert!(headers.get("retry-after").is_some());
    let (s, _, _) = srv.call_full("GET", "/s/shr_guess5", None, None).await;
    assert_eq!(s, 429, "the page of an unknown link, past the allowance");
    let (s, _, _) = srv.call_full("GET", &format!("/s/{token}"), None, None).await;
    assert_eq!(s, 200, "a real link's page is never held back");
    let (s, _, b) = access(&srv, &token, None).await;
    assert_eq!((s, b["value"].as_str()), (200, Some("guessed-value")), "{b}");
}

async fn mcp_tools(backend: Backend) {
    let srv = Server::start(backend).await;
    let admin = srv.signup(&unique("mcp-share")).await;
    let id = secret(&srv, &admin, "FOR_A_PERSON", "mcp-shared-value").await;
    let c = mcp_client(&srv, &admin).await;

    let created = tool(&c, "create_share", json!({ "secretId": id, "maxUses": 2, "expirationHours": 3 })).await.unwrap();
    let share_id = created["id"].as_str().unwrap().to_owned();
    let token = created["token"].as_str().unwrap().to_owned();
    assert!(created["url"].as_str().unwrap().ends_with(&format!("/s/{token}")), "{created}");
    assert!(!created.to_string().contains("mcp-shared-value"), "{created}");
    assert_eq!(tool(&c, "create_share", json!({ "secretId": id, "maxUses": 0 })).await, Err("INVALID_REQUEST".into()));

    let listed = tool(&c, "list_shares", json!({})).await.unwrap();
    assert_eq!((listed["count"].as_i64(), listed["shares"][0]["id"].as_str()), (Some(1), Some(share_id.as_str())), "{listed}");

    let extended = tool(&c, "extend_share", json!({ "shareId": share_id, "maxUses": 4 })).await.unwrap();
    assert_eq!(extended["maxUses"], 4, "{extended}");
    assert_eq!(tool(&c, "extend_share", json!({ "shareId": share_id })).await, Err("INVALID_REQUEST".into()));
    assert_eq!(tool(&c, "extend_share", json!({ "shareId": share_id, "hours": 2 })).await.map(|_| ()).unwrap_err(), "INVALID_REQUEST");

    // The person opens it (REST, no key) between the agent's calls.
    let (s, _, b) = access(&srv, &token, None).await;
    assert_eq!((s, b["usesLeft"].as_i64()), (200, Some(3)), "{b}");

    let revoked = tool(&c, "revoke_share", json!({ "shareId": share_id, "reason": "done" })).await.unwrap();
    assert_eq!((revoked["status"].as_str(), revoked["revokeReason"].as_str()), (Some("revoked"), Some("done")), "{revoked}");
    assert_eq!(tool(&c, "revoke_share", json!({ "shareId": share_id })).await, Err("ALREADY_REVOKED".into()));
    let listed = tool(&c, "list_shares", json!({ "status": "revoked" })).await.unwrap();
    assert_eq!(listed["count"], 1, "{listed}");
    assert_eq!(tool(&c, "list_shares", json!({})).await.unwrap()["count"], 0);
    let (s, _, b) = access(&srv, &token, None).await;
    assert_eq!((s, code(&b)), (410, "SHARE_REVOKED"), "{b}");
    c.cancel().await.ok();
}

#[tokio::test]
async fn an_agent_makes_and_manages_links_over_mcp_on_sqlite() {
    mcp_tools(Backend::Sqlite).await;
}

#[tokio::test]
async fn an_agent_makes_and_manages_links_over_mcp_on_postgres() {
    mcp_tools(Backend::Postgres).await;
}
