//! Claim tokens, as two agents use them: tenant A hands a secret to tenant B
//! by a `ctk_` token, from a value or from one of its secrets; B redeems it
//! once into its own vault; everyone else, a second redemption, an expired
//! and a revoked token fail with their codes; the pending ciphertext is gone
//! from the database once the claim ends; exactly one of many simultaneous
//! redemptions wins, also over two servers on one PostgreSQL; both tenants'
//! trails record every step, never the value or the token. On SQLite and
//! PostgreSQL, through the real server, over REST and MCP.

mod common;

use common::mcp_client::{connect as mcp_client, tool};
use common::{Backend, Opts, Server, unique};
use serde_json::{Value, json};

const CLAIMS: &str = "/api/v1/claim-tokens";

fn code(b: &Value) -> &str {
    b["code"].as_str().unwrap_or_default()
}

async fn secret(srv: &Server, key: &str, name: &str, value: &str) -> String {
    let (s, b) = srv.post("/api/v1/secrets", key, json!({ "name": name, "value": value })).await;
    assert_eq!(s, 201, "{b}");
    b["id"].as_str().unwrap().to_owned()
}

/// Makes a claim; answers (id, token).
async fn claim(srv: &Server, key: &str, body: Value) -> (String, String) {
    let (s, b) = srv.post(CLAIMS, key, body).await;
    assert_eq!(s, 201, "{b}");
    let token = b["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("ctk_"), "{b}");
    (b["id"].as_str().unwrap().to_owned(), token)
}

/// Redeems with no body at all, as the published SDK does.
async fn redeem(srv: &Server, key: &str, token: &str) -> (u16, Value) {
    srv.call("POST", &format!("{CLAIMS}/{token}/claim"), Some(key), None).await
}

async fn redeem_with(srv: &Server, key: &str, token: &str, body: Value) -> (u16, Value) {
    srv.post(&format!("{CLAIMS}/{token}/claim"), key, body).await
}

/// Whether the claim's pending ciphertext is gone from the database.
async fn erased(srv: &Server, id: &str) -> bool {
    srv.sql("UPDATE claim_tokens SET status = status WHERE id = $1 AND sealed IS NULL", &[id]).await == 1
}

async fn value_of(srv: &Server, key: &str, id: &str) -> String {
    let (s, b) = srv.get(&format!("/api/v1/secrets/{id}"), key).await;
    assert_eq!(s, 200, "{b}");
    b["value"].as_str().unwrap().to_owned()
}

/// The tenant's claim-token audit entries, newest first.
async fn claim_trail(srv: &Server, key: &str) -> Vec<Value> {
    let (s, b) = srv.get("/api/v1/audit?resourceType=claim_token&limit=200", key).await;
    assert_eq!(s, 200, "{b}");
    b["logs"].as_array().unwrap().clone()
}

async fn whole_trail(srv: &Server, key: &str) -> String {
    let (s, b) = srv.get("/api/v1/audit?limit=500", key).await;
    assert_eq!(s, 200, "{b}");
    b.to_string()
}

fn has(trail: &[Value], action: &str, outcome: &str, contract: &str) -> bool {
    trail.iter().any(|e| e["action"] == action && e["outcome"] == outcome && e["detail"]["contractId"] == contract)
}

async fn hand_over(backend: Backend) {
    let srv = Server::start(backend).await;
    let (ta, tb, tc) = (unique("claim-a"), unique("claim-b"), unique("claim-c"));
    let (a, b, c) = (srv.signup(&ta).await, srv.signup(&tb).await, srv.signup(&tc).await);
    let v0 = format!("handed-value-{}", unique("v"));
    let v1 = format!("stored-value-{}", unique("v"));
    let source = secret(&srv, &a, "db-pass", &v1).await;

    // From a value: B redeems it once and reads it.
    let (id0, t0) =
        claim(&srv, &a, json!({ "secretValue": v0, "secretName": "handed", "targetTenantId": tb, "contractId": "contract-0" })).await;
    let (s, body) = srv.get(&format!("{CLAIMS}/{id0}"), &a).await;
    assert_eq!((s, body["status"].as_str()), (200, Some("pending")), "{body}");
    assert!(!erased(&srv, &id0).await, "a pending claim keeps its sealed value");
    // A third tenant: as if there were no such token.
    let (s, body) = redeem(&srv, &c, &t0).await;
    assert_eq!((s, code(&body)), (404, "NOT_FOUND"), "{body}");
    let (s, unknown) = redeem(&srv, &c, "ctk_nosuchtoken").await;
    assert_eq!((s, unknown["message"].clone()), (404, body["message"].clone()), "{unknown}");
    let (s, body) = srv.get(&format!("{CLAIMS}/{id0}"), &c).await;
    assert_eq!((s, code(&body)), (404, "NOT_FOUND"), "{body}");
    let (s, got) = redeem(&srv, &b, &t0).await;
    assert_eq!(s, 200, "{got}");
    assert_eq!(
        (got["name"].as_str(), got["contractId"].as_str(), got["fromTenantId"].as_str()),
        (Some("handed"), Some("contract-0"), Some(ta.as_str()))
    );
    let sid = got["secretId"].as_str().unwrap().to_owned();
    assert_eq!(got["id"], got["secretId"]);
    assert_eq!(value_of(&srv, &b, &sid).await, v0);
    let (_, listed) = srv.get("/api/v1/secrets?search=handed", &b).await;
    assert_eq!(listed["secrets"][0]["id"].as_str(), Some(sid.as_str()), "found by name at once: {listed}");
    let (s, body) = redeem(&srv, &b, &t0).await;
    assert_eq!((s, code(&body)), (410, "CLAIM_ALREADY_REDEEMED"), "{body}");
    assert!(erased(&srv, &id0).await, "redemption erases the pending value");
    // The creator sees it claimed, without the target's secret id; the target sees which secret.
    let (_, seen_a) = srv.get(&format!("{CLAIMS}/{id0}"), &a).await;
    assert_eq!(seen_a["status"], "claimed");
    assert!(seen_a.get("redeemedSecretId").is_none(), "{seen_a}");
    let (_, seen_b) = srv.get(&format!("{CLAIMS}/{id0}"), &b).await;
    assert_eq!(seen_b["redeemedSecretId"].as_str(), Some(sid.as_str()), "{seen_b}");
    // A redeemed claim cannot be revoked.
    let (s, body) = srv.delete(&format!("{CLAIMS}/{id0}"), &a).await;
    assert_eq!((s, code(&body)), (409, "CONFLICT"), "{body}");

    // From a secret id, SecretCarousel's CLI shape (hours); the name is taken in B.
    secret(&srv, &b, "db-pass", "b's own").await;
    let (s, issued) =
        srv.post(CLAIMS, &a, json!({ "secretId": source, "targetTenantId": tb, "contractId": "contract-1", "expiresInHours": 2 })).await;
    assert_eq!(s, 201, "{issued}");
    let (id1, t1) = (issued["id"].as_str().unwrap().to_owned(), issued["token"].as_str().unwrap().to_owned());
    assert_eq!(issued["secretName"], "db-pass", "the source's name by default");
    let expires = chrono::DateTime::parse_from_rfc3339(issued["expiresAt"].as_str().unwrap()).unwrap();
    let hours = (expires.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_minutes();
    assert!((115..=120).contains(&hours), "two hours: {hours} minutes");
    let (s, body) = redeem_with(&srv, &b, &t1, json!({})).await;
    assert_eq!((s, code(&body)), (409, "ALREADY_EXISTS"), "{body}");
    let (_, still) = srv.get(&format!("{CLAIMS}/{id1}"), &b).await;
    assert_eq!(still["status"], "pending", "a taken name leaves the claim unredeemed: {still}");
    assert!(!erased(&srv, &id1).await);
    let (s, got) = redeem_with(&srv, &b, &t1, json!({ "name": "db-pass-from-a", "environment": "production" })).await;
    assert_eq!(s, 200, "{got}");
    assert_eq!((got["name"].as_str(), got["environment"].as_str()), (Some("db-pass-from-a"), Some("production")));
    assert_eq!(value_of(&srv, &b, got["secretId"].as_str().unwrap()).await, v1);
    assert!(erased(&srv, &id1).await);

    // Expired: 410, and noticing it erases the value.
    let (id2, t2) =
        claim(&srv, &a, json!({ "secretValue": v0, "secretName": "late", "targetTenantId": tb, "contractId": "contract-2" })).await;
    assert_eq!(srv.sql("UPDATE claim_tokens SET expires_at = 1000 WHERE id = $1", &[&id2]).await, 1);
    assert!(!erased(&srv, &id2).await);
    let (s, body) = redeem(&srv, &b, &t2).await;
    assert_eq!((s, code(&body)), (410, "CLAIM_EXPIRED"), "{body}");
    assert!(erased(&srv, &id2).await, "an expired claim's value is erased once noticed");
    let (_, seen) = srv.get(&format!("{CLAIMS}/{id2}"), &a).await;
    assert_eq!(seen["status"], "expired");

    // Revoked: by the creator only; 410 after.
    let (id3, t3) =
        claim(&srv, &a, json!({ "secretValue": v0, "secretName": "revoked", "targetTenantId": tb, "contractId": "contract-3" })).await;
    let (s, body) = srv.delete(&format!("{CLAIMS}/{id3}"), &b).await;
    assert_eq!((s, code(&body)), (403, "SCOPE_DENIED"), "{body}");
    let (s, body) = srv.delete(&format!("{CLAIMS}/{id3}"), &c).await;
    assert_eq!((s, code(&body)), (404, "NOT_FOUND"), "{body}");
    let (s, body) = srv.delete(&format!("{CLAIMS}/{id3}"), &a).await;
    assert_eq!((s, body["status"].as_str()), (200, Some("revoked")), "{body}");
    assert!(erased(&srv, &id3).await, "revocation erases the pending value");
    let (s, body) = srv.delete(&format!("{CLAIMS}/{id3}"), &a).await;
    assert_eq!((s, code(&body)), (409, "ALREADY_REVOKED"), "{body}");
    let (s, body) = redeem(&srv, &b, &t3).await;
    assert_eq!((s, code(&body)), (410, "CLAIM_REVOKED"), "{body}");

    // Listings: created by or targeted at the caller, never a value or token.
    let (s, list_a) = srv.get(CLAIMS, &a).await;
    assert_eq!((s, list_a["count"].as_u64()), (200, Some(4)), "{list_a}");
    let (_, list_b) = srv.get(&format!("{CLAIMS}?status=claimed"), &b).await;
    assert_eq!(list_b["count"], 2, "{list_b}");
    assert!(list_b["claimTokens"].as_array().unwrap().iter().all(|c| c["redeemedSecretId"].is_string()));
    let (_, list_c) = srv.get(CLAIMS, &c).await;
    assert_eq!(list_c["count"], 0, "{list_c}");
    let (s, body) = srv.get(&format!("{CLAIMS}?bogus=1"), &a).await;
    assert_eq!((s, code(&body)), (400, "INVALID_REQUEST"), "{body}");
    for listing in [&list_a, &list_b] {
        let text = listing.to_string();
        for never in [&v0, &v1, &t0, &t1, &t2, &t3] {
            assert!(!text.contains(never.as_str()), "a listing holds no value or token");
        }
    }

    // Both trails: creation, redemption and a failed attempt, with the contract id.
    let (trail_a, trail_b) = (claim_trail(&srv, &a).await, claim_trail(&srv, &b).await);
    for trail in [&trail_a, &trail_b] {
        assert!(has(trail, "claim.create", "success", "contract-0"), "{trail:?}");
        assert!(has(trail, "claim.redeem", "success", "contract-0"), "{trail:?}");
        assert!(has(trail, "claim.redeem", "rejected", "contract-0"), "the second redemption: {trail:?}");
        assert!(has(trail, "claim.redeem", "not_found", "contract-0"), "the third tenant's attempt: {trail:?}");
        assert!(has(trail, "claim.redeem", "rejected", "contract-1"), "the taken name: {trail:?}");
        assert!(has(trail, "claim.redeem", "rejected", "contract-2"), "the expired one: {trail:?}");
        assert!(has(trail, "claim.revoke", "success", "contract-3"), "{trail:?}");
        assert!(has(trail, "claim.redeem", "rejected", "contract-3"), "the revoked one: {trail:?}");
    }
    let trail_c = claim_trail(&srv, &c).await;
    assert!(trail_c.iter().any(|e| e["action"] == "claim.redeem" && e["outcome"] == "not_found"), "{trail_c:?}");
    assert!(trail_c.iter().all(|e| e["detail"].get("contractId").is_none()), "a stranger learns no contract: {trail_c:?}");
    for key in [&a, &b, &c] {
        let text = whole_trail(&srv, key).await;
        for never in [&v0, &v1, &t0, &t1, &t2, &t3] {
            assert!(!text.contains(never.as_str()), "an audit trail holds no value or token");
        }
    }
}

#[tokio::test]
async fn a_claim_hands_a_secret_to_another_tenant_once_on_sqlite() {
    hand_over(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_claim_hands_a_secret_to_another_tenant_once_on_postgres() {
    hand_over(Backend::Postgres).await;
}

/// Bad requests answer 400 (or 404 for a missing target) and make nothing.
#[tokio::test]
async fn bad_claims_are_refused() {
    let srv = Server::start(Backend::Sqlite).await;
    let (ta, tb) = (unique("bad-a"), unique("bad-b"));
    let (a, b) = (srv.signup(&ta).await, srv.signup(&tb).await);
    let ok = || json!({ "secretValue": "v", "targetTenantId": tb, "contractId": "c" });
    let with = |k: &str, v: Value| {
        let mut body = ok();
        body[k] = v;
        body
    };
    let mut neither = ok();
    neither.as_object_mut().unwrap().remove("secretValue");
    for (body, status) in [
        (with("secretId", json!("00000000-0000-0000-0000-000000000000")), 400),
        (neither, 400),
        (with("targetTenantId", json!("no-such-tenant-zz")), 404),
        (with("contractId", json!("")), 400),
        (with("contractId", json!("x".repeat(201))), 400),
        (with("expiresInMinutes", json!(1441)), 400),
        (with("expiresInMinutes", json!(0)), 400),
        (with("expiresInHours", json!(25)), 400),
        (with("secretName", json!("bad\u{1}name")), 400),
        (with("unknownField", json!(1)), 400),
    ] {
        let (s, r) = srv.post(CLAIMS, &a, body.clone()).await;
        assert_eq!(s, status, "{body}: {r}");
    }
    // A secret whose tier needs approval is read like any read: 403 until approved.
    let (s, gated) = srv.post("/api/v1/secrets", &a, json!({ "name": "CRIT", "value": "gated", "accessTier": "critical" })).await;
    assert_eq!(s, 201, "{gated}");
    let (s, body) = srv.post(CLAIMS, &a, json!({ "secretId": gated["id"], "targetTenantId": tb, "contractId": "c" })).await;
    assert_eq!((s, code(&body)), (403, "APPROVAL_REQUIRED"), "{body}");
    // A scoped token reaches secrets, not hand-offs.
    let (s, minted) = srv.post("/api/v1/tokens", &a, json!({ "scopes": ["secrets:read:nothing/*"] })).await;
    assert_eq!(s, 201, "{minted}");
    let (s, body) = srv.post(CLAIMS, minted["token"].as_str().unwrap(), ok()).await;
    assert_eq!((s, code(&body)), (403, "SCOPE_DENIED"), "{body}");
    let (_, list) = srv.get(CLAIMS, &a).await;
    assert_eq!(list["count"], 0, "{list}");
    // A claim without a name needs one at redemption.
    let (_, token) = claim(&srv, &a, ok()).await;
    let (s, body) = redeem(&srv, &b, &token).await;
    assert_eq!((s, code(&body)), (400, "INVALID_REQUEST"), "{body}");
    let (s, body) = redeem_with(&srv, &b, &token, json!({ "name": "named" , "extra": 1 })).await;
    assert_eq!((s, code(&body)), (400, "INVALID_REQUEST"), "{body}");
    // A read-only key of the target cannot redeem.
    let (s, ro) = srv.post("/api/v1/api-keys", &b, json!({ "name": "ro", "permissions": "read" })).await;
    assert_eq!(s, 201, "{ro}");
    let (s, body) = redeem_with(&srv, ro["apiKey"].as_str().or(ro["key"].as_str()).unwrap(), &token, json!({ "name": "named" })).await;
    assert_eq!((s, code(&body)), (403, "SCOPE_DENIED"), "{body}");
    let (s, body) = redeem_with(&srv, &b, &token, json!({ "name": "named" })).await;
    assert_eq!(s, 200, "{body}");
}

/// The `free` plan has no claim tokens.
#[tokio::test]
async fn the_free_plan_has_no_claim_tokens() {
    let srv = Server::start_with(Opts::new(Backend::Sqlite).env("LATCHKEY_DEFAULT_PLAN", "free")).await;
    let (ta, tb) = (unique("free-a"), unique("free-b"));
    let a = srv.signup(&ta).await;
    srv.signup(&tb).await;
    let (s, body) = srv.post(CLAIMS, &a, json!({ "secretValue": "v", "targetTenantId": tb, "contractId": "c" })).await;
    assert_eq!((s, code(&body)), (403, "PLAN_LIMIT_REACHED"), "{body}");
    assert!(body["message"].as_str().unwrap().contains("claim tokens"), "{body}");
}

/// Many redemptions of one token at once: exactly one wins.
async fn race(servers: &[&Server], key: &str, token: &str) {
    let mut tasks = Vec::new();
    for i in 0..100 {
        let srv = servers[i % servers.len()];
        let url = srv.url(&format!("{CLAIMS}/{token}/claim"));
        let http = srv.http.clone();
        let key = key.to_owned();
        tasks.push(tokio::spawn(async move {
            let resp = http.post(url).header("X-API-Key", key).send().await.expect("request");
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            (status, body)
        }));
    }
    let mut won = Vec::new();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        match status {
            200 => won.push(body),
            410 => assert_eq!(code(&body), "CLAIM_ALREADY_REDEEMED", "{body}"),
            _ => panic!("unexpected {status}: {body}"),
        }
    }
    assert_eq!(won.len(), 1, "exactly one redemption: {won:?}");
}

async fn one_of_a_hundred(backend: Backend) {
    let srv = Server::start(backend).await;
    let (ta, tb) = (unique("race-a"), unique("race-b"));
    let (a, b) = (srv.signup(&ta).await, srv.signup(&tb).await);
    let (id, token) =
        claim(&srv, &a, json!({ "secretValue": "raced", "secretName": "raced", "targetTenantId": tb, "contractId": "race" })).await;
    race(&[&srv], &b, &token).await;
    assert!(erased(&srv, &id).await);
    let (_, list) = srv.get("/api/v1/secrets?search=raced", &b).await;
    assert_eq!(list["secrets"].as_array().unwrap().len(), 1, "{list}");
}

#[tokio::test]
async fn one_of_a_hundred_simultaneous_redemptions_wins_on_sqlite() {
    one_of_a_hundred(Backend::Sqlite).await;
}

#[tokio::test]
async fn one_of_a_hundred_simultaneous_redemptions_wins_on_postgres() {
    one_of_a_hundred(Backend::Postgres).await;
}

/// Claims crossing between two tenants, redeemed at the same time in both
/// directions: each redemption writes into both tenants' audit chains, and
/// every one succeeds (their heads are locked in one order, so PostgreSQL
/// never has to abort one as a deadlock).
async fn crossing_redemptions(backend: Backend) {
    let srv = std::sync::Arc::new(Server::start(backend).await);
    let (ta, tb) = (unique("cross-a"), unique("cross-b"));
    let (a, b) = (srv.signup(&ta).await, srv.signup(&tb).await);
    let mut tokens = Vec::new();
    for i in 0..12 {
        let (_, to_b) = claim(
            &srv,
            &a,
            json!({ "secretValue": "x", "secretName": format!("from-a-{i}"), "targetTenantId": tb, "contractId": "cross" }),
        )
        .await;
        let (_, to_a) = claim(
            &srv,
            &b,
            json!({ "secretValue": "y", "secretName": format!("from-b-{i}"), "targetTenantId": ta, "contractId": "cross" }),
        )
        .await;
        tokens.push((b.clone(), to_b));
        tokens.push((a.clone(), to_a));
    }
    let tasks: Vec<_> = tokens
        .into_iter()
        .map(|(key, token)| {
            let srv = srv.clone();
            tokio::spawn(async move { redeem(&srv, &key, &token).await })
        })
        .collect();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, 200, "{body}");
    }
    for key in [&a, &b] {
        let (s, v) = srv.get("/api/v1/audit/verify", key).await;
        assert_eq!((s, &v["verified"]), (200, &json!(true)), "{v}");
    }
}

#[tokio::test]
async fn crossing_redemptions_all_succeed_on_sqlite() {
    crossing_redemptions(Backend::Sqlite).await;
}

#[tokio::test]
async fn crossing_redemptions_all_succeed_on_postgres() {
    crossing_redemptions(Backend::Postgres).await;
}

/// Two `latchkey serve` processes on one PostgreSQL: one redemption in all,
/// and the new secret is readable at once on the other process, by id and by name.
#[tokio::test]
async fn one_redemption_over_two_servers_on_one_postgres() {
    let one = Server::start(Backend::Postgres).await;
    let mut opts = Opts::new(Backend::Postgres);
    opts.database_url = one.database_url.clone();
    let two = Server::start_with(opts).await;
    let (ta, tb) = (unique("two-a"), unique("two-b"));
    let (a, b) = (one.signup(&ta).await, one.signup(&tb).await);
    // Warm both processes' caches with B's key.
    assert_eq!(two.get(CLAIMS, &b).await.0, 200);
    let (id, token) =
        claim(&one, &a, json!({ "secretValue": "over-two", "secretName": "over-two", "targetTenantId": tb, "contractId": "two" })).await;
    race(&[&one, &two], &b, &token).await;
    assert!(erased(&one, &id).await);
    let (_, seen) = one.get(&format!("{CLAIMS}/{id}"), &b).await;
    let sid = seen["redeemedSecretId"].as_str().unwrap().to_owned();
    for srv in [&one, &two] {
        assert_eq!(value_of(srv, &b, &sid).await, "over-two");
        let (_, list) = srv.get("/api/v1/secrets?search=over-two", &b).await;
        assert_eq!(list["secrets"][0]["id"].as_str(), Some(sid.as_str()), "{list}");
    }
}

/// The sweep erases the values of expired claims nobody asked about: it runs
/// when `latchkey serve` starts, and every minute after.
#[tokio::test]
async fn the_sweep_erases_expired_claims() {
    let srv = Server::start(Backend::Sqlite).await;
    let (ta, tb) = (unique("sweep-a"), unique("sweep-b"));
    let a = srv.signup(&ta).await;
    srv.signup(&tb).await;
    let (expired, _) = claim(&srv, &a, json!({ "secretValue": "v", "targetTenantId": tb, "contractId": "sweep" })).await;
    let (live, _) = claim(&srv, &a, json!({ "secretValue": "v", "targetTenantId": tb, "contractId": "sweep" })).await;
    assert_eq!(srv.sql("UPDATE claim_tokens SET expires_at = 1000 WHERE id = $1", &[&expired]).await, 1);
    assert!(!erased(&srv, &expired).await);
    let dir = srv.data_dir.clone();
    let mut opts = Opts::new(Backend::Sqlite);
    opts.data_dir = Some(dir);
    // Keep the first server's temporary directory alive while the second runs.
    let first = srv;
    let code = {
        let srv = Server::start_with(opts).await;
        let mut gone = false;
        for _ in 0..100 {
            if erased(&srv, &expired).await {
                gone = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(gone, "the sweep erased the expired claim's value");
        assert!(!erased(&srv, &live).await, "and left the live one");
        srv.stop()
    };
    assert_eq!(code, Some(0));
    drop(first);
}

async fn over_mcp(backend: Backend) {
    let srv = Server::start(backend).await;
    let (ta, tb) = (unique("mcp-a"), unique("mcp-b"));
    let (a, b) = (srv.signup(&ta).await, srv.signup(&tb).await);
    let source = secret(&srv, &a, "OPENAI_KEY", "sk-mcp-handed").await;
    let (ca, cb) = (mcp_client(&srv, &a).await, mcp_client(&srv, &b).await);
    let issued = tool(&ca, "create_claim_token", json!({ "secretId": source, "targetTenantId": tb, "contractId": "mcp-1" })).await.unwrap();
    let token = issued["token"].as_str().unwrap();
    assert!(token.starts_with("ctk_"));
    let got = tool(&cb, "redeem_claim_token", json!({ "token": token })).await.unwrap();
    assert_eq!(got["name"], "OPENAI_KEY", "{got}");
    assert!(got.get("value").is_none(), "redemption answers no value");
    let read = tool(&cb, "get_secret", json!({ "name": "OPENAI_KEY" })).await.unwrap();
    assert_eq!(read["value"], "sk-mcp-handed");
    assert_eq!(tool(&cb, "redeem_claim_token", json!({ "token": token })).await.unwrap_err(), "CLAIM_ALREADY_REDEEMED");
    let second = tool(
        &ca,
        "create_claim_token",
        json!({ "secretValue": "v2", "targetTenantId": tb, "contractId": "mcp-2", "secretName": "second" }),
    )
    .await
    .unwrap();
    let listed = tool(&cb, "list_claim_tokens", json!({ "status": "pending" })).await.unwrap();
    assert_eq!(listed["count"], 1, "{listed}");
    assert_eq!(tool(&cb, "revoke_claim_token", json!({ "id": second["id"] })).await.unwrap_err(), "SCOPE_DENIED");
    let revoked = tool(&ca, "revoke_claim_token", json!({ "id": second["id"] })).await.unwrap();
    assert_eq!(revoked["status"], "revoked");
    assert_eq!(tool(&cb, "redeem_claim_token", json!({ "token": second["token"], "name": "x" })).await.unwrap_err(), "CLAIM_REVOKED");
    assert_eq!(tool(&cb, "redeem_claim_token", json!({ "token": token, "nmae": "x" })).await.unwrap_err(), "INVALID_REQUEST");
    ca.cancel().await.ok();
    cb.cancel().await.ok();
}

#[tokio::test]
async fn claim_tools_over_mcp_on_sqlite() {
    over_mcp(Backend::Sqlite).await;
}

#[tokio::test]
async fn claim_tools_over_mcp_on_postgres() {
    over_mcp(Backend::Postgres).await;
}

/// A debug log shows the paths requests took, never a token in them.
#[tokio::test]
async fn a_debug_log_holds_no_claim_token() {
    let srv = Server::start_with(Opts::new(Backend::Sqlite).env("LATCHKEY_LOG", "debug")).await;
    let (ta, tb) = (unique("log-a"), unique("log-b"));
    let (a, b) = (srv.signup(&ta).await, srv.signup(&tb).await);
    let (_, token) =
        claim(&srv, &a, json!({ "secretValue": "logged?", "secretName": "LOGGED", "targetTenantId": tb, "contractId": "log" })).await;
    assert_eq!(redeem(&srv, &b, &token).await.0, 200);
    assert_eq!(redeem(&srv, &b, &token).await.0, 410);
    let log = srv.stderr();
    assert!(log.contains("claim-tokens/ctk_…/claim"), "the request is logged, its token cut: {}", &log[log.len().saturating_sub(2000)..]);
    assert!(!log.contains(&token[4..]), "the log holds the token");
    assert!(!log.contains("logged?"), "the log holds the value");
}

/// A claim lives 5 minutes unless asked otherwise, and never longer than
/// the operator's `--max-claim-minutes`.
#[tokio::test]
async fn lifetimes_default_to_five_minutes_within_the_operators_bound() {
    let srv = Server::start_with(Opts::new(Backend::Sqlite).arg("--max-claim-minutes").arg("120")).await;
    let (ta, tb) = (unique("ttl-a"), unique("ttl-b"));
    let a = srv.signup(&ta).await;
    srv.signup(&tb).await;
    let body = |extra: Value| {
        let mut b = json!({ "secretValue": "v", "targetTenantId": tb, "contractId": "ttl" });
        b.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        b
    };
    let minutes_left = |b: &Value| {
        let at = chrono::DateTime::parse_from_rfc3339(b["expiresAt"].as_str().unwrap()).unwrap();
        (at.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_seconds() as f64 / 60.0
    };
    let (s, made) = srv.post(CLAIMS, &a, body(json!({}))).await;
    assert_eq!(s, 201, "{made}");
    assert!((4.5..=5.0).contains(&minutes_left(&made)), "five minutes: {made}");
    let (s, made) = srv.post(CLAIMS, &a, body(json!({ "expiresInMinutes": 120 }))).await;
    assert_eq!(s, 201, "{made}");
    assert!((119.5..=120.0).contains(&minutes_left(&made)), "{made}");
    for extra in [json!({ "expiresInMinutes": 121 }), json!({ "expiresInHours": 3 }), json!({ "expiresInMinutes": 5, "expiresInHours": 1 })]
    {
        let (s, r) = srv.post(CLAIMS, &a, body(extra.clone())).await;
        assert_eq!((s, code(&r)), (400, "INVALID_REQUEST"), "{extra}: {r}");
    }
    let (s, r) = srv.post(CLAIMS, &a, body(json!({ "expiresInMinutes": 121 }))).await;
    assert!(s == 400 && r["message"].as_str().unwrap().contains("120 minutes"), "the bound is named: {r}");
}
