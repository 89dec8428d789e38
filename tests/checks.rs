//! Checks that use a value without answering it, on SQLite and PostgreSQL,
//! through the real server, over REST and MCP: `verify` answers match or no
//! match (also for a `use_only` secret), the eleventh verification of one
//! secret within a minute is 429 VERIFY_LIMITED with Retry-After;
//! `compare` answers `equal`, `different`, `only_in_from` and `only_in_to`
//! per name. Every use is audited with its mechanism, and no answer, audit
//! entry or log line holds a value.

mod common;

use common::mcp_client::{connect as mcp_client, tool};
use common::{Backend, Server, unique};
use serde_json::{Value, json};

fn code(b: &Value) -> &str {
    b["code"].as_str().unwrap_or_default()
}

async fn secret(srv: &Server, key: &str, body: Value) -> String {
    let (s, b) = srv.post("/api/v1/secrets", key, body).await;
    assert_eq!(s, 201, "{b}");
    b["id"].as_str().unwrap().to_owned()
}

fn canary(tag: &str) -> String {
    format!("{tag}-{}", uuid::Uuid::new_v4().simple())
}

async fn verify_story(backend: Backend) {
    let srv = Server::start(backend).await;
    let key = srv.signup(&unique("verify")).await;
    let value = canary("sk_live");
    let hidden = secret(&srv, &key, json!({ "name": "STRIPE_KEY", "value": value, "exposure": "use_only" })).await;
    let (s, read) = srv.get(&format!("/api/v1/secrets/{hidden}"), &key).await;
    assert_eq!((s, code(&read)), (403, "EXPOSURE_DENIED"), "{read}");

    // Match and no match, over REST and MCP; a use_only secret is verifiable.
    let path = format!("/api/v1/secrets/{hidden}/verify");
    let verify = |candidate: &str| srv.post(&path, &key, json!({ "candidate": candidate }));
    let (s, yes) = verify(&value).await;
    assert_eq!((s, &yes["match"]), (200, &json!(true)), "{yes}");
    assert_eq!(yes["secretId"], hidden.as_str());
    let (s, no) = verify(&format!("{value}x")).await;
    assert_eq!((s, &no["match"]), (200, &json!(false)), "{no}");
    let (s, no) = verify("").await;
    assert_eq!((s, &no["match"]), (200, &json!(false)), "{no}");
    let mcp = mcp_client(&srv, &key).await;
    let by_name = tool(&mcp, "verify_secret", json!({ "secret": "STRIPE_KEY", "candidate": value })).await.unwrap();
    assert_eq!(by_name["match"], true, "{by_name}");
    let by_id = tool(&mcp, "verify_secret", json!({ "secret": hidden, "candidate": "nope" })).await.unwrap();
    assert_eq!(by_id["match"], false, "{by_id}");
    for answer in [&yes, &no, &by_name, &by_id] {
        assert!(!answer.to_string().contains(&value), "a value in {answer}");
    }
    assert_eq!(tool(&mcp, "verify_secret", json!({ "secret": "MISSING", "candidate": "x" })).await.unwrap_err(), "SECRET_NOT_FOUND");
    let (s, b) = srv.post(&format!("/api/v1/secrets/{hidden}/verify"), &key, json!({ "candidate": "x", "value": "y" })).await;
    assert_eq!((s, code(&b)), (400, "INVALID_REQUEST"), "{b}");

    // Five so far on this secret, five more pass, the eleventh is limited
    // (named by id or by name alike), with Retry-After; another secret is not.
    for _ in 0..5 {
        assert_eq!(verify("guess").await.0, 200);
    }
    let (s, headers, b) =
        srv.call_full("POST", &format!("/api/v1/secrets/{hidden}/verify"), Some(&key), Some(json!({ "candidate": value }))).await;
    assert_eq!((s, code(&b)), (429, "VERIFY_LIMITED"), "{b}");
    let wait: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert!(!b.to_string().contains(&value));
    assert_eq!(tool(&mcp, "verify_secret", json!({ "secret": "STRIPE_KEY", "candidate": "x" })).await.unwrap_err(), "VERIFY_LIMITED");
    let other_value = canary("other");
    let other = secret(&srv, &key, json!({ "name": "OTHER", "value": other_value })).await;
    let (s, b) = srv.post(&format!("/api/v1/secrets/{other}/verify"), &key, json!({ "candidate": other_value })).await;
    assert_eq!((s, &b["match"]), (200, &json!(true)), "{b}");

    // Each verification that reached the value is a use, mechanism verify; no value in the trail or the log.
    let (s, audit) = srv.get("/api/v1/audit?limit=500&action=secret.use", &key).await;
    assert_eq!(s, 200, "{audit}");
    let uses: Vec<&Value> = audit["logs"].as_array().unwrap().iter().filter(|e| e["resourceId"] == hidden.as_str()).collect();
    assert_eq!(uses.len(), 10, "ten verifications reached the value: {audit}");
    assert!(uses.iter().all(|e| e["detail"]["mechanism"] == "verify" && e["outcome"] == "success"), "{audit}");
    let (_, all) = srv.get("/api/v1/audit?limit=500", &key).await;
    assert!(all.to_string().contains("VERIFY_LIMITED"), "the refusal is audited: {all}");
    assert!(!all.to_string().contains(&value) && !srv.stderr().contains(&value), "a value in the trail or log");
}

#[tokio::test]
async fn verify_answers_one_bit_ten_times_a_minute_on_sqlite() {
    verify_story(Backend::Sqlite).await;
}

#[tokio::test]
async fn verify_answers_one_bit_ten_times_a_minute_on_postgres() {
    verify_story(Backend::Postgres).await;
}

async fn compare_story(backend: Backend) {
    let srv = Server::start(backend).await;
    let key = srv.signup(&unique("compare")).await;
    let (s, project) = srv.post("/api/v1/projects", &key, json!({ "name": "shop" })).await;
    assert_eq!(s, 201, "{project}");
    let project = project["id"].as_str().unwrap().to_owned();
    let same = canary("same");
    let (stage_db, prod_db) = (canary("stage-db"), canary("prod-db"));
    let (only_stage, only_prod) = (canary("debug"), canary("cdn"));
    let put = |name: &str, env: &str, value: &str, exposure: &str| json!({ "name": name, "environment": env, "value": value, "projectId": project, "exposure": exposure });
    secret(&srv, &key, put("API_URL", "staging", &same, "reveal")).await;
    secret(&srv, &key, put("API_URL", "production", &same, "use_only")).await;
    secret(&srv, &key, put("DB_PASS", "staging", &stage_db, "masked")).await;
    secret(&srv, &key, put("DB_PASS", "production", &prod_db, "use_only")).await;
    secret(&srv, &key, put("DEBUG_TOKEN", "staging", &only_stage, "reveal")).await;
    secret(&srv, &key, put("CDN_KEY", "production", &only_prod, "use_only")).await;
    // Elsewhere: another project's and no project's secrets take no part.
    secret(&srv, &key, json!({ "name": "API_URL", "environment": "production", "value": canary("loose") })).await;

    let expected = json!([
        { "name": "API_URL", "state": "equal" },
        { "name": "CDN_KEY", "state": "only_in_to" },
        { "name": "DB_PASS", "state": "different" },
        { "name": "DEBUG_TOKEN", "state": "only_in_from" },
    ]);
    let (s, rest) = srv.get(&format!("/api/v1/secrets/compare?from=staging&to=production&projectId={project}"), &key).await;
    assert_eq!(s, 200, "{rest}");
    assert_eq!(rest["secrets"], expected, "{rest}");
    assert_eq!((rest["equal"].as_u64(), rest["different"].as_u64()), (Some(1), Some(1)), "{rest}");
    assert_eq!((rest["onlyInFrom"].as_u64(), rest["onlyInTo"].as_u64()), (Some(1), Some(1)), "{rest}");
    let mcp = mcp_client(&srv, &key).await;
    let over_mcp = tool(&mcp, "compare_environments", json!({ "project": project, "from": "staging", "to": "production" })).await.unwrap();
    assert_eq!(over_mcp["secrets"], expected, "{over_mcp}");
    let reversed = tool(&mcp, "compare_environments", json!({ "project": project, "from": "production", "to": "staging" })).await.unwrap();
    assert_eq!(reversed["secrets"][1], json!({ "name": "CDN_KEY", "state": "only_in_from" }), "{reversed}");
    for answer in [&rest, &over_mcp, &reversed] {
        for v in [&same, &stage_db, &prod_db, &only_stage, &only_prod] {
            assert!(!answer.to_string().contains(v.as_str()), "a value in {answer}");
        }
    }
    // Environments that hold nothing compare as empty; bad questions are 400.
    let (s, empty) = srv.get(&format!("/api/v1/secrets/compare?from=dev&to=qa&projectId={project}"), &key).await;
    assert_eq!((s, empty["secrets"].as_array().map(Vec::len)), (200, Some(0)), "{empty}");
    for bad in ["from=staging&to=staging", "from=staging", "from=staging&to=production&extra=1", "from=a%20b&to=production"] {
        let (s, b) = srv.get(&format!("/api/v1/secrets/compare?{bad}"), &key).await;
        assert_eq!((s, code(&b)), (400, "INVALID_REQUEST"), "{bad}: {b}");
    }

    // Every secret compared is a use with mechanism compare; no value anywhere.
    let (s, audit) = srv.get("/api/v1/audit?limit=500&action=secret.use", &key).await;
    assert_eq!(s, 200, "{audit}");
    let logs = audit["logs"].as_array().unwrap();
    assert!(!logs.is_empty() && logs.iter().all(|e| e["detail"]["mechanism"] == "compare"), "{audit}");
    // Six secrets, three compares: each secret used at least three times
    // (on PostgreSQL a use the cache answered may be recorded once more, as a read is).
    let mut per_secret = std::collections::HashMap::new();
    for e in logs {
        *per_secret.entry(e["resourceId"].as_str().unwrap().to_owned()).or_insert(0) += 1;
    }
    assert_eq!(per_secret.len(), 6, "{audit}");
    assert!(per_secret.values().all(|n| *n >= 3), "{per_secret:?}");
    let (_, all) = srv.get("/api/v1/audit?limit=500", &key).await;
    let log = srv.stderr();
    for v in [&same, &stage_db, &prod_db, &only_stage, &only_prod] {
        assert!(!all.to_string().contains(v.as_str()) && !log.contains(v.as_str()), "a value in the trail or log");
    }
}

#[tokio::test]
async fn compare_says_per_name_how_two_environments_differ_on_sqlite() {
    compare_story(Backend::Sqlite).await;
}

#[tokio::test]
async fn compare_says_per_name_how_two_environments_differ_on_postgres() {
    compare_story(Backend::Postgres).await;
}
