//! Rotation, through the real server on SQLite and PostgreSQL: policies
//! (CRUD, a bad cron answers 400 with the parser's reason, one per secret),
//! manual rotation with and without a value (generated values match the
//! generator, or the current value's shape), the SDK's body shapes, the grace
//! period (the old version readable by number, then 410 VERSION_RETIRED),
//! tokens and grants ended by a rotation, the scheduler (a due rotation runs
//! once with two servers on one PostgreSQL; one due while the server was
//! down runs after it starts; the alert is written once), and the clients
//! that call it: SecretCarousel's Python SDK, its `sc rotate ID`, and MCP.

mod common;

use std::time::Duration;

use common::mcp_client::{connect as mcp_client, tool};
use common::{Backend, Opts, Server, python, unique};
use serde_json::{Value, json};

const POLICIES: &str = "/api/v1/rotation";

fn code(b: &Value) -> &str {
    b["code"].as_str().unwrap_or_default()
}

async fn secret(srv: &Server, key: &str, body: Value) -> String {
    let (s, b) = srv.post("/api/v1/secrets", key, body).await;
    assert_eq!(s, 201, "{b}");
    b["id"].as_str().unwrap().to_owned()
}

async fn read(srv: &Server, key: &str, id: &str) -> Value {
    let (s, b) = srv.get(&format!("/api/v1/secrets/{id}"), key).await;
    assert_eq!(s, 200, "{b}");
    b
}

async fn rotate(srv: &Server, key: &str, id: &str, body: Option<Value>) -> Value {
    let (s, b) = srv.call("POST", &format!("/api/v1/rotation/secrets/{id}/rotate"), Some(key), body).await;
    assert_eq!(s, 200, "{b}");
    assert!(b.get("value").is_none() && b.get("newValue").is_none(), "a rotation answers no value: {b}");
    b
}

/// The tenant's audit entries with this action and outcome `success`.
async fn entries(srv: &Server, key: &str, action: &str) -> Vec<Value> {
    let (s, b) = srv.get(&format!("/api/v1/audit?action={action}&limit=500"), key).await;
    assert_eq!(s, 200, "{b}");
    b["logs"].as_array().unwrap().iter().filter(|e| e["outcome"] == "success").cloned().collect()
}

async fn whole_trail(srv: &Server, key: &str) -> String {
    let (s, b) = srv.get("/api/v1/audit?limit=500", key).await;
    assert_eq!(s, 200, "{b}");
    b.to_string()
}

fn in_ms(ms: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::milliseconds(ms)).to_rfc3339()
}

async fn policies_and_manual_rotation(backend: Backend) {
    let srv = Server::start(backend).await;
    let key = srv.signup(&unique("rot")).await;
    let original = format!("sk_live_{}", unique("abc").replace('-', ""));
    let id = secret(&srv, &key, json!({ "name": "stripe", "value": original })).await;

    // Policies: a bad cron is 400 with the parser's reason; one per secret.
    let (s, b) = srv.post(POLICIES, &key, json!({ "secretId": id, "schedule": "61 * * * *" })).await;
    assert_eq!((s, code(&b)), (400, "INVALID_REQUEST"), "{b}");
    assert!(b["message"].as_str().unwrap().contains("cron"), "{b}");
    let (s, b) = srv.post(POLICIES, &key, json!({ "secretId": id, "schedule": "30x" })).await;
    assert_eq!((s, code(&b)), (400, "INVALID_REQUEST"), "{b}");
    let (s, b) = srv.post(POLICIES, &key, json!({ "secretId": id, "schedule": "30d", "generator": { "length": 7 } })).await;
    assert_eq!((s, code(&b)), (400, "INVALID_REQUEST"), "{b}");
    let generator = json!({ "length": 40, "alphabet": "hex", "prefix": "tok_" });
    let (s, policy) = srv
        .post(
            POLICIES,
            &key,
            json!({ "secretId": id, "schedule": "30d", "gracePeriod": "1h", "generator": generator, "alertEmail": "x@y.z" }),
        )
        .await;
    assert_eq!(s, 201, "{policy}");
    assert_eq!((policy["scheduleType"].as_str(), policy["gracePeriod"].as_str()), (Some("interval"), Some("1h")), "{policy}");
    let pid = policy["id"].as_str().unwrap().to_owned();
    let (s, b) = srv.post(POLICIES, &key, json!({ "secretId": id, "schedule": "12h" })).await;
    assert_eq!((s, code(&b)), (409, "CONFLICT"), "{b}");
    let (s, b) = srv.put(&format!("{POLICIES}/{pid}"), &key, json!({ "schedule": "0 3 * * MON" })).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["scheduleType"], "cron", "{b}");
    let (s, b) = srv.put(&format!("{POLICIES}/{pid}"), &key, json!({ "schedule": "0 25 * * *" })).await;
    assert_eq!((s, code(&b)), (400, "INVALID_REQUEST"), "{b}");
    let (s, list) = srv.get(POLICIES, &key).await;
    assert_eq!((s, list["count"].as_u64()), (200, Some(1)), "{list}");
    assert_eq!(list["policies"][0]["secretId"], id.as_str());
    let other = srv.signup(&unique("rot-other")).await;
    let (_, theirs) = srv.get(POLICIES, &other).await;
    assert_eq!(theirs["count"], 0, "another tenant sees none: {theirs}");
    let (s, b) = srv.put(&format!("{POLICIES}/{pid}"), &other, json!({ "schedule": "1d" })).await;
    assert_eq!(s, 404, "{b}");

    // With a value, at the top level: the old version stays readable for the policy's grace.
    let r = rotate(&srv, &key, &id, Some(json!({ "newValue": "given-value-2", "reason": "leaked in a log" }))).await;
    assert_eq!((r["version"].as_i64(), r["previousVersion"].as_i64(), r["generated"].as_bool()), (Some(2), Some(1), Some(false)), "{r}");
    assert_eq!(r["retiringVersion"], 1, "{r}");
    assert_eq!(read(&srv, &key, &id).await["value"], "given-value-2");
    let (s, old) = srv.get(&format!("/api/v1/secrets/{id}?version=1"), &key).await;
    assert_eq!((s, old["value"].as_str()), (200, Some(original.as_str())), "{old}");
    let meta = read(&srv, &key, &id).await;
    assert_eq!((meta["version"].as_i64(), meta["retiringVersion"].as_i64()), (Some(2), Some(1)), "{meta}");
    assert!(meta["graceEndsAt"].is_string(), "{meta}");

    // Without one: the policy's generator makes it; the previous grace ends.
    let r = rotate(&srv, &key, &id, None).await;
    assert_eq!((r["version"].as_i64(), r["generated"].as_bool()), (Some(3), Some(true)), "{r}");
    let value = read(&srv, &key, &id).await["value"].as_str().unwrap().to_owned();
    assert!(value.starts_with("tok_") && value.len() == 44, "{value}");
    assert!(value[4..].chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()), "{value}");
    let (s, b) = srv.get(&format!("/api/v1/secrets/{id}?version=1"), &key).await;
    assert_eq!((s, code(&b)), (410, "VERSION_RETIRED"), "{b}");
    let (s, _) = srv.get(&format!("/api/v1/secrets/{id}?version=2"), &key).await;
    assert_eq!(s, 200, "the version just replaced is in its grace");

    // The SDK's shape, {"options": {...}}, with no grace: retired at once.
    let r = rotate(&srv, &key, &id, Some(json!({ "options": { "newValue": "given-value-4", "gracePeriod": "0" } }))).await;
    assert_eq!((r["version"].as_i64(), r["retiringVersion"].clone()), (Some(4), Value::Null), "{r}");
    for v in [2, 3] {
        let (s, b) = srv.get(&format!("/api/v1/secrets/{id}?version={v}"), &key).await;
        assert_eq!((s, code(&b)), (410, "VERSION_RETIRED"), "version {v}: {b}");
    }
    let (s, b) =
        srv.post(&format!("/api/v1/rotation/secrets/{id}/rotate"), &key, json!({ "newValue": "a", "options": { "newValue": "b" } })).await;
    assert_eq!((s, code(&b)), (400, "INVALID_REQUEST"), "{b}");
    let (s, b) = srv.post(&format!("/api/v1/rotation/secrets/{id}/rotate"), &key, json!({ "gracePeriod": "31d" })).await;
    assert_eq!((s, code(&b)), (400, "INVALID_REQUEST"), "{b}");

    // rotate-now by policy id; status says what happened.
    let (s, r) = srv.post(&format!("{POLICIES}/{pid}/rotate-now"), &key, json!({})).await;
    assert_eq!((s, r["version"].as_i64(), r["policyId"].as_str()), (200, Some(5), Some(pid.as_str())), "{r}");
    let (s, st) = srv.get(&format!("/api/v1/rotation/secrets/{id}/status"), &key).await;
    assert_eq!(s, 200, "{st}");
    assert_eq!((st["currentVersion"].as_i64(), st["policy"]["id"].as_str()), (Some(5), Some(pid.as_str())), "{st}");
    assert!(st["lastRotatedAt"].is_string() && st["nextRotationAt"].is_string() && st["due"] == false, "{st}");

    // A secret without a policy: rotate-now by secret id (SecretCarousel's
    // CLI) generates a value shaped like the current one.
    let plain_value = "sk_test_0123456789abcdefABCDEF";
    let plain = secret(&srv, &key, json!({ "name": "plain", "value": plain_value })).await;
    let (s, r) = srv.call("POST", &format!("{POLICIES}/{plain}/rotate-now"), Some(&key), None).await;
    assert_eq!((s, r["version"].as_i64(), r["policyId"].clone()), (200, Some(2), Value::Null), "{r}");
    let v = read(&srv, &key, &plain).await["value"].as_str().unwrap().to_owned();
    assert!(v.starts_with("sk_test_") && v.len() == plain_value.len() && v != plain_value, "{v}");
    assert!(v[8..].chars().all(|c| c.is_ascii_alphanumeric()), "{v}");
    let (s, b) = srv.post(&format!("{POLICIES}/{}/rotate-now", uuid_like()), &key, json!({})).await;
    assert_eq!((s, code(&b)), (404, "SECRET_NOT_FOUND"), "{b}");
    let (s, b) = srv.post(&format!("/api/v1/rotation/secrets/{plain}/rotate"), &other, json!({})).await;
    assert_eq!((s, code(&b)), (404, "SECRET_NOT_FOUND"), "another tenant's secret: {b}");

    // A masked secret rotates too, and its answer holds no value either.
    let masked = secret(&srv, &key, json!({ "name": "masked", "value": "masked-value-1", "exposure": "masked" })).await;
    rotate(&srv, &key, &masked, Some(json!({ "newValue": "masked-value-2" }))).await;

    // A read-only key cannot rotate.
    let (s, ro) = srv.post("/api/v1/api-keys", &key, json!({ "name": "ro", "permissions": "read" })).await;
    assert_eq!(s, 201, "{ro}");
    let ro = ro["apiKey"].as_str().or(ro["key"].as_str()).unwrap().to_owned();
    let (s, b) = srv.post(&format!("/api/v1/rotation/secrets/{plain}/rotate"), &ro, json!({})).await;
    assert_eq!((s, code(&b)), (403, "SCOPE_DENIED"), "{b}");

    // The trail: one secret.rotated per rotation, versions and trigger; never a value.
    let rotated = entries(&srv, &key, "secret.rotated").await;
    assert_eq!(rotated.len(), 6, "{rotated:?}");
    let first = rotated.iter().find(|e| e["detail"]["version"]["to"] == 2 && e["resourceId"] == id.as_str()).unwrap();
    assert_eq!(first["detail"]["version"]["from"], 1);
    assert_eq!((first["detail"]["trigger"].as_str(), first["detail"]["reason"].as_str()), (Some("manual"), Some("leaked in a log")));
    let trail = whole_trail(&srv, &key).await;
    for v in [original.as_str(), "given-value-2", "given-value-4", value.as_str(), v.as_str(), "masked-value-2"] {
        assert!(!trail.contains(v), "the trail holds a value");
    }
    assert_eq!(entries(&srv, &key, "rotation.policy_created").await.len(), 1);
    assert_eq!(entries(&srv, &key, "rotation.policy_updated").await.len(), 1);

    let (s, b) = srv.delete(&format!("{POLICIES}/{pid}"), &key).await;
    assert_eq!((s, b["deleted"].as_bool()), (200, Some(true)), "{b}");
    let (s, b) = srv.delete(&format!("{POLICIES}/{pid}"), &key).await;
    assert_eq!((s, code(&b)), (404, "NOT_FOUND"), "{b}");
    assert_eq!(entries(&srv, &key, "rotation.policy_deleted").await.len(), 1);
}

fn uuid_like() -> String {
    "00000000-0000-4000-8000-000000000000".into()
}

#[tokio::test]
async fn policies_and_manual_rotation_on_sqlite() {
    policies_and_manual_rotation(Backend::Sqlite).await;
}

#[tokio::test]
async fn policies_and_manual_rotation_on_postgres() {
    policies_and_manual_rotation(Backend::Postgres).await;
}

/// A rotation revokes the live tokens whose read scope covers the secret,
/// and only those, and ends its approved read grants.
async fn rotation_revokes_tokens(backend: Backend) {
    let srv = Server::start(backend).await;
    let key = srv.signup(&unique("rot-tok")).await;
    let id = secret(&srv, &key, json!({ "name": "db", "value": "prod-db-1", "environment": "production" })).await;
    let staging = secret(&srv, &key, json!({ "name": "db", "value": "staging-db-1", "environment": "staging" })).await;
    let mint = |scopes: Value| {
        let srv = &srv;
        let key = key.clone();
        async move {
            let (s, b) = srv.post("/api/v1/tokens", &key, json!({ "scopes": scopes, "ttl": "15m" })).await;
            assert_eq!(s, 201, "{b}");
            (b["token"].as_str().unwrap().to_owned(), b["tokenId"].as_str().unwrap().to_owned())
        }
    };
    let (prod_reader, prod_id) = mint(json!(["secrets:read:production/*"])).await;
    let (all_star, _) = mint(json!(["secrets:*:*"])).await;
    let (staging_reader, _) = mint(json!(["secrets:read:staging/*"])).await;
    assert_eq!(read(&srv, &prod_reader, &id).await["value"], "prod-db-1");

    let r = rotate(&srv, &key, &id, Some(json!({ "newValue": "prod-db-2" }))).await;
    assert_eq!(r["tokensRevoked"], 2, "{r}");
    for t in [&prod_reader, &all_star] {
        let (s, b) = srv.get(&format!("/api/v1/secrets/{id}"), t).await;
        assert_eq!((s, code(&b)), (401, "TOKEN_REVOKED"), "{b}");
    }
    assert_eq!(read(&srv, &staging_reader, &staging).await["value"], "staging-db-1", "a token for other paths lives on");
    let revoked = entries(&srv, &key, "token.revoke").await;
    assert!(revoked.iter().any(|e| e["resourceId"] == prod_id.as_str() && e["detail"]["reason"] == "secret rotated"), "{revoked:?}");
    let rotated = entries(&srv, &key, "secret.rotated").await;
    assert_eq!(rotated[0]["detail"]["tokensRevoked"].as_array().map(Vec::len), Some(2), "{rotated:?}");

    // An approved read grant was for the old value: the rotation ends it.
    let critical = secret(&srv, &key, json!({ "name": "root", "value": "critical-1", "accessTier": "critical" })).await;
    let (s, agent) = srv.post("/api/v1/api-keys", &key, json!({ "name": "agent", "permissions": "read" })).await;
    assert_eq!(s, 201, "{agent}");
    let agent = agent["apiKey"].as_str().or(agent["key"].as_str()).unwrap().to_owned();
    let (s, b) = srv.get(&format!("/api/v1/secrets/{critical}"), &agent).await;
    assert_eq!((s, code(&b)), (403, "APPROVAL_REQUIRED"), "{b}");
    operator(&srv, &["approvals", "approve", b["approvalId"].as_str().unwrap(), "--uses", "5"]).await;
    assert_eq!(read(&srv, &agent, &critical).await["value"], "critical-1");
    let r = rotate(&srv, &key, &critical, Some(json!({ "newValue": "critical-2" }))).await;
    assert_eq!(r["grantsEnded"], 1, "{r}");
    let (s, b) = srv.get(&format!("/api/v1/secrets/{critical}"), &agent).await;
    assert_eq!((s, code(&b)), (403, "APPROVAL_REQUIRED"), "the new value needs a new approval: {b}");
}

/// `latchkey ARGS` as the operator runs it on the server's database.
async fn operator(srv: &Server, args: &[&str]) {
    let mut cmd = std::process::Command::new(common::bin());
    cmd.args(args).arg("--data-dir").arg(&srv.data_dir);
    cmd.env("LATCHKEY_MASTER_KEY", common::TEST_MASTER_KEY).env("LATCHKEY_LOG", "warn").env_remove("DATABASE_URL");
    if let Some(url) = &srv.database_url {
        cmd.env("DATABASE_URL", url);
    }
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("run latchkey")).await.unwrap();
    assert!(out.status.success(), "latchkey {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test]
async fn rotation_revokes_tokens_on_sqlite() {
    rotation_revokes_tokens(Backend::Sqlite).await;
}

#[tokio::test]
async fn rotation_revokes_tokens_on_postgres() {
    rotation_revokes_tokens(Backend::Postgres).await;
}

/// Polls (bounded) until the secret is at `version`; answers whether it got there.
async fn reaches_version(srv: &Server, key: &str, id: &str, version: i64) -> bool {
    for _ in 0..150 {
        let (s, b) = srv.get(&format!("/api/v1/rotation/secrets/{id}/status"), key).await;
        assert_eq!(s, 200, "{b}");
        if b["currentVersion"].as_i64() == Some(version) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

fn fast_jobs(opts: Opts) -> Opts {
    opts.arg("--jobs-interval-ms").arg("100")
}

/// A due rotation runs once with two servers on one PostgreSQL, each
/// running the scheduler every 100 ms.
#[tokio::test]
async fn scheduled_rotation_runs_once_across_two_servers() {
    let one = Server::start_with(fast_jobs(Opts::new(Backend::Postgres))).await;
    let mut opts = fast_jobs(Opts::new(Backend::Postgres));
    opts.database_url = one.database_url.clone();
    let two = Server::start_with(opts).await;
    let key = one.signup(&unique("rot-sched")).await;
    let mut ids = Vec::new();
    for n in 0..4 {
        let id =
            secret(&one, &key, json!({ "name": format!("sched-{n}"), "value": format!("sk_live_{}", unique("v").replace('-', "")) })).await;
        let (s, b) = one
            .post(POLICIES, &key, json!({ "secretId": id, "schedule": "30d", "nextRotationAt": in_ms(1500), "alertDaysBefore": 1 }))
            .await;
        assert_eq!(s, 201, "{b}");
        ids.push(id);
    }
    for id in &ids {
        assert!(
            reaches_version(&two, &key, id, 2).await,
            "the scheduled rotation of {id} did not run:\n{}\n{}",
            one.stderr(),
            two.stderr()
        );
    }
    // Many more runs of both schedulers: nothing more happens.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let rotated = entries(&one, &key, "secret.rotated").await;
    assert_eq!(rotated.len(), ids.len(), "each due rotation ran exactly once: {rotated:?}");
    assert!(rotated.iter().all(|e| e["detail"]["trigger"] == "schedule" && e["actor"] == "scheduler"), "{rotated:?}");
    let alerts = entries(&one, &key, "secret.rotation_due").await;
    assert_eq!(alerts.len(), ids.len(), "one alert per due time: {alerts:?}");
    for id in &ids {
        let (_, versions) = one.get(&format!("/api/v1/secrets/{id}/versions"), &key).await;
        assert_eq!(versions["versions"].as_array().map(Vec::len), Some(2), "{versions}");
        let (_, st) = two.get(&format!("/api/v1/rotation/secrets/{id}/status"), &key).await;
        assert_eq!((st["currentVersion"].as_i64(), st["due"].as_bool()), (Some(2), Some(false)), "{st}");
        let value = read(&one, &key, id).await["value"].as_str().unwrap().to_owned();
        assert!(value.starts_with("sk_live_"), "generated like the old value: {value}");
    }
}

/// A rotation that falls due while the server is down runs once it starts.
async fn due_during_restart(backend: Backend) {
    let data = tempfile::tempdir().unwrap();
    let mut opts = fast_jobs(Opts::new(backend));
    opts.data_dir = Some(data.path().to_path_buf());
    let srv = Server::start_with(opts).await;
    let database_url = srv.database_url.clone();
    let key = srv.signup(&unique("rot-restart")).await;
    let id = secret(&srv, &key, json!({ "name": "restart", "value": "before-the-restart" })).await;
    let (s, b) = srv.post(POLICIES, &key, json!({ "secretId": id, "schedule": "0 0 1 1 *", "nextRotationAt": in_ms(2500) })).await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(srv.stop(), Some(0));
    // Past the due time with no server running.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let mut opts = Opts::new(backend);
    opts.data_dir = Some(data.path().to_path_buf());
    opts.database_url = database_url;
    let srv = Server::start_with(opts).await;
    assert!(reaches_version(&srv, &key, &id, 2).await, "the overdue rotation did not run at start:\n{}", srv.stderr());
    assert_ne!(read(&srv, &key, &id).await["value"], "before-the-restart");
    let (_, st) = srv.get(&format!("/api/v1/rotation/secrets/{id}/status"), &key).await;
    assert!(st["nextRotationAt"].as_str().unwrap().contains("-01-01T00:00:00"), "the next due time is the schedule's: {st}");
    assert_eq!(entries(&srv, &key, "secret.rotated").await.len(), 1);
}

#[tokio::test]
async fn due_during_restart_on_sqlite() {
    due_during_restart(Backend::Sqlite).await;
}

#[tokio::test]
async fn due_during_restart_on_postgres() {
    due_during_restart(Backend::Postgres).await;
}

/// SecretCarousel's Python SDK: `rotate_secret` with and without options,
/// `get_rotation_status`.
async fn python_sdk_rotation(backend: Backend) {
    let srv = Server::start(backend).await;
    let key = srv.signup(&unique("rot-sdk")).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/sdk/python_sdk_rotation.py");
    let base = srv.base.clone();
    let k = key.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python()).arg(script).arg(base).arg(k).output().expect("run python")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "SDK rotation story failed:\n{stdout}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        srv.stderr()
    );
    assert!(stdout.lines().last().unwrap_or_default().ends_with(" passed, 0 failed"), "{stdout}");
    assert_eq!(entries(&srv, &key, "secret.rotated").await.len(), 2);
}

#[tokio::test]
async fn python_sdk_rotation_on_sqlite() {
    python_sdk_rotation(Backend::Sqlite).await;
}

#[tokio::test]
async fn python_sdk_rotation_on_postgres() {
    python_sdk_rotation(Backend::Postgres).await;
}

/// SecretCarousel's CLI: `sc rotate ID` sends `POST /api/v1/rotation/ID/rotate-now {}`
/// with a secret id.
#[tokio::test]
async fn sc_rotate_rotates_by_secret_id() {
    let srv = Server::start(Backend::Sqlite).await;
    let key = srv.signup(&unique("rot-sc")).await;
    let id = secret(&srv, &key, json!({ "name": "cli", "value": "ghp_0123456789abcdefghijABCDEFGHIJ" })).await;
    let sc = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/sc-cli/sc");
    let home = tempfile::tempdir().unwrap();
    let (base, id2, key2) = (srv.base.clone(), id.clone(), key.clone());
    let home_path = home.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("timeout")
            .args(["600", "bash", sc, "rotate", &id2])
            .current_dir(&home_path)
            .env("HOME", &home_path)
            .env("XDG_CONFIG_HOME", home_path.join(".config"))
            .env("SC_BASE_URL", &base)
            .env("SC_API_KEY", &key2)
            .env("NO_COLOR", "1")
            .output()
            .expect("run sc")
    })
    .await
    .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "sc rotate failed:\n{text}\n{}", srv.stderr());
    let (_, st) = srv.get(&format!("/api/v1/rotation/secrets/{id}/status"), &key).await;
    assert_eq!(st["currentVersion"], 2, "{st}\n{text}");
    let value = read(&srv, &key, &id).await["value"].as_str().unwrap().to_owned();
    assert!(value.starts_with("ghp_") && value.len() == 34, "generated like the old value: {value}");
    assert_eq!(entries(&srv, &key, "secret.rotated").await.len(), 1);
}

/// MCP: set_rotation_policy, rotate_secret, get_rotation_status.
async fn mcp_rotation(backend: Backend) {
    let srv = Server::start(backend).await;
    let key = srv.signup(&unique("rot-mcp")).await;
    let id = secret(&srv, &key, json!({ "name": "mcp-secret", "value": "xoxb-0123456789abcdef", "environment": "production" })).await;
    let c = mcp_client(&srv, &key).await;
    let policy = tool(
        &c,
        "set_rotation_policy",
        json!({ "secret": "mcp-secret", "environment": "production", "schedule": "7d", "gracePeriod": "2h" }),
    )
    .await
    .unwrap();
    assert_eq!((policy["secretId"].as_str(), policy["gracePeriod"].as_str()), (Some(id.as_str()), Some("2h")), "{policy}");
    let again = tool(&c, "set_rotation_policy", json!({ "secret": id, "schedule": "0 4 * * *" })).await.unwrap();
    assert_eq!((again["id"].clone(), again["scheduleType"].as_str()), (policy["id"].clone(), Some("cron")), "{again}");
    assert_eq!(tool(&c, "set_rotation_policy", json!({ "secret": id, "schedule": "* * *" })).await.unwrap_err(), "INVALID_REQUEST");
    let r = tool(&c, "rotate_secret", json!({ "secret": id, "reason": "mcp" })).await.unwrap();
    assert_eq!((r["version"].as_i64(), r["retiringVersion"].as_i64()), (Some(2), Some(1)), "{r}");
    assert!(!r.to_string().contains("xoxb-"), "no value in the answer: {r}");
    let st = tool(&c, "get_rotation_status", json!({ "secret": id })).await.unwrap();
    assert_eq!((st["currentVersion"].as_i64(), st["retiringVersion"].as_i64()), (Some(2), Some(1)), "{st}");
    assert_eq!(tool(&c, "rotate_secret", json!({ "secret": "nope" })).await.unwrap_err(), "SECRET_NOT_FOUND");
    let value = read(&srv, &key, &id).await["value"].as_str().unwrap().to_owned();
    assert!(value.starts_with("xoxb-") && value.len() == "xoxb-0123456789abcdef".len(), "{value}");
    c.cancel().await.ok();
}

#[tokio::test]
async fn mcp_rotation_on_sqlite() {
    mcp_rotation(Backend::Sqlite).await;
}

#[tokio::test]
async fn mcp_rotation_on_postgres() {
    mcp_rotation(Backend::Postgres).await;
}
