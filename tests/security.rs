//! Attacks on the running server, run as an attacker would run them: taking
//! over the local session's tenant, DNS rebinding, locking a tenant out with a
//! dead key, and credential headers that disagree.

mod common;

use std::io::Read;
use std::process::Stdio;

use common::{Backend, Opts, Server, unique};
use serde_json::{Value, json};

/// Runs `latchkey mcp` on the server's database for tenant `tenant`,
/// initialises it and stores a secret; returns (exit status, stdout, stderr).
fn local_session(srv: &Server, tenant: &str) -> (bool, String, String) {
    let mut cmd = common::mcp_stdio(&srv.data_dir);
    cmd.args(["--tenant", tenant]).stderr(Stdio::piped());
    if let Some(url) = &srv.database_url {
        cmd.env("DATABASE_URL", url);
    }
    let mut child = cmd.spawn().unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        let init = json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": { "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": { "name": "t", "version": "1" } } });
        let set = json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": { "name": "set_secret", "arguments": { "name": "LOCAL_ONLY", "value": "for-the-local-user" } } });
        // A closed pipe (the session refused to start) is what the test looks for.
        let _ = writeln!(stdin, "{init}\n{}\n{set}", json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }));
        let _ = stdin.flush();
        // Give the session time to answer before stdin closes: read until the set's answer.
        let mut out = String::new();
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        loop {
            let mut line = String::new();
            match std::io::BufRead::read_line(&mut stdout, &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    out.push_str(&line);
                    if line.contains("\"id\":2") {
                        break;
                    }
                }
            }
        }
        drop(stdin);
        let status = child.wait().unwrap();
        let mut err = String::new();
        child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        (status.success(), out, err)
    }
}

async fn the_local_tenant_cannot_be_taken_by_signup(backend: Backend) {
    let srv = Server::start(backend).await;
    // The attack: sign up as the local session's tenant before (or after) it exists.
    let (s, body) = srv.call("POST", "/api/signup", None, Some(json!({ "tenantId": "local" }))).await;
    assert_eq!((s, body["code"].as_str()), (400, Some("INVALID_REQUEST")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("reserved"), "{body}");

    // Under any other name the user picks for a local session: the stranger's
    // tenant exists first, and the session refuses to act in it.
    let chosen = unique("my-laptop");
    let stranger = srv.signup(&chosen).await;
    let (ok, out, err) = local_session(&srv, &chosen);
    assert!(!ok, "the session must not start in a signed-up tenant: {out}");
    assert!(err.contains("not created by `latchkey mcp`"), "{err}");
    let (_, listed) = srv.get("/api/v1/secrets", &stranger).await;
    assert_eq!(listed["secrets"].as_array().map(Vec::len), Some(0), "nothing reached the stranger: {listed}");
    let (_, keys) = srv.get("/api/v1/api-keys", &stranger).await;
    assert_eq!(keys["count"], 1, "no session key was added to the stranger's tenant: {keys}");

    // The local session itself works, and its tenant stays out of signup's reach.
    let (ok, out, err) = local_session(&srv, "local");
    assert!(ok && out.contains("\"created\":true"), "{out} {err}");
    let (s, _) = srv.call("POST", "/api/signup", None, Some(json!({ "tenantId": "local" }))).await;
    assert_eq!(s, 400);
    let local = unique("own-local");
    let (ok, out, _) = local_session(&srv, &local);
    assert!(ok && out.contains("\"created\":true"), "{out}");
    let (s, body) = srv.call("POST", "/api/signup", None, Some(json!({ "tenantId": local }))).await;
    assert_eq!((s, body["code"].as_str()), (409, Some("ALREADY_EXISTS")), "signup cannot claim a local tenant: {body}");
}

#[tokio::test]
async fn the_local_tenant_cannot_be_taken_by_signup_on_sqlite() {
    the_local_tenant_cannot_be_taken_by_signup(Backend::Sqlite).await;
}

#[tokio::test]
async fn the_local_tenant_cannot_be_taken_by_signup_on_postgres() {
    the_local_tenant_cannot_be_taken_by_signup(Backend::Postgres).await;
}

async fn send(srv: &Server, method: &str, path: &str, headers: &[(&str, &str)], body: Option<Value>) -> (u16, Value) {
    let mut req = srv.http.request(method.parse().unwrap(), srv.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, serde_json::from_str(&resp.text().await.unwrap()).unwrap_or(Value::Null))
}

/// A DNS-rebinding page reaches a loopback server under the attacker's own
/// name; a cross-site page sends its own Origin. Every route refuses both
/// before it reads anything, and what a refused request asked for never happens.
#[tokio::test]
async fn every_route_checks_host_and_origin() {
    let srv = Server::start_with(Opts::new(Backend::Sqlite).arg("--allowed-host").arg("vault.internal")).await;
    let key = srv.signup(&unique("rebind")).await;
    let tenant = unique("rebound");
    for (headers, code) in [
        (vec![("host", "attacker.example:8200")], "FORBIDDEN_HOST"),
        (vec![("host", "127.0.0.1:1@attacker.example")], "FORBIDDEN_HOST"),
        (vec![("origin", "http://attacker.example")], "FORBIDDEN_ORIGIN"),
        (vec![("origin", "null")], "FORBIDDEN_ORIGIN"),
        (vec![("origin", "http://localhost:3000"), ("origin", "http://attacker.example")], "FORBIDDEN_HOST"),
    ] {
        let (s, body) = send(&srv, "POST", "/api/signup", &headers, Some(json!({ "tenantId": tenant }))).await;
        assert_eq!((s, body["code"].as_str()), (403, Some(code)), "{headers:?}: {body}");
        let with_key: Vec<(&str, &str)> = headers.iter().copied().chain([("x-api-key", key.as_str())]).collect();
        for path in ["/api/v1/secrets", "/api/v1/plan", "/llms.txt", "/healthz", "/api/openapi.json"] {
            let (s, body) = send(&srv, "GET", path, &with_key, None).await;
            assert_eq!((s, body["code"].as_str()), (403, Some(code)), "{path} {headers:?}: {body}");
        }
        let (s, _) = send(&srv, "POST", "/mcp", &with_key, Some(json!({ "jsonrpc": "2.0", "id": 1, "method": "ping" }))).await;
        assert_eq!(s, 403, "/mcp {headers:?}");
    }
    let (s, body) = send(&srv, "GET", "/healthz", &[("host", "attacker.example")], None).await;
    assert!(s == 403 && body["message"].as_str().unwrap().contains("--allowed-host"), "the refusal names the option: {body}");
    // Nothing a refused request asked for happened.
    let (s, _) = srv.call("POST", "/api/signup", None, Some(json!({ "tenantId": tenant }))).await;
    assert_eq!(s, 201, "the refused signups created nothing");

    // The server's own names and pages are served.
    for headers in [
        vec![("host", "vault.internal:8200")],
        vec![("host", "VAULT.INTERNAL")],
        vec![("origin", "http://localhost:5173")],
        vec![("host", "vault.internal"), ("origin", "https://vault.internal")],
    ] {
        let with_key: Vec<(&str, &str)> = headers.iter().copied().chain([("x-api-key", key.as_str())]).collect();
        let (s, body) = send(&srv, "GET", "/api/v1/plan", &with_key, None).await;
        assert_eq!(s, 200, "{headers:?}: {body}");
    }
}

/// A key that is revoked or expired, sent again and again, neither bills its
/// tenant nor grows the trail by a row per request, and is throttled.
async fn a_dead_key_cannot_lock_its_tenant_out(backend: Backend) {
    let srv =
        Server::start_with(Opts::new(backend).env("LATCHKEY_DEFAULT_PLAN", "free").env("LATCHKEY_AUTH_FAILURES_PER_MINUTE", "20")).await;
    let admin = srv.signup(&unique("dead-key")).await;
    let (_, made) = srv.post("/api/v1/api-keys", &admin, json!({ "name": "leaked", "permissions": "read" })).await;
    let (dead, dead_id) = (made["apiKey"].as_str().unwrap().to_owned(), made["id"].as_str().unwrap().to_owned());
    let (s, _) = srv.delete(&format!("/api/v1/api-keys/{dead_id}"), &admin).await;
    assert_eq!(s, 200);
    let (_, before) = srv.get("/api/v1/plan", &admin).await;
    let calls_before = before["usage"]["apiCallsThisMonth"].as_i64().unwrap();

    let mut codes = std::collections::BTreeMap::<String, usize>::new();
    for _ in 0..60 {
        let (s, body) = srv.get("/api/v1/secrets", &dead).await;
        *codes.entry(format!("{s} {}", body["code"].as_str().unwrap_or("?"))).or_default() += 1;
    }
    assert_eq!(codes.get("401 UNAUTHORIZED"), Some(&20), "20 failures a minute are answered: {codes:?}");
    assert_eq!(codes.get("429 RATE_LIMITED"), Some(&40), "then the key is throttled: {codes:?}");

    // The tenant is not billed for any of it; its own calls still go through.
    let (s, after) = srv.get("/api/v1/plan", &admin).await;
    assert_eq!(s, 200, "{after}");
    let calls_after = after["usage"]["apiCallsThisMonth"].as_i64().unwrap();
    assert_eq!(calls_after, calls_before, "sixty refused requests billed nothing: {before} {after}");
    // The trail has the failure once (sampled), not sixty times.
    let (_, trail) = srv.get("/api/v1/audit?action=auth.failed", &admin).await;
    let failures = trail["logs"].as_array().unwrap();
    assert_eq!(failures.len(), 1, "{trail}");
    assert_eq!((failures[0]["resourceId"].as_str(), failures[0]["detail"]["reason"].as_str()), (Some(dead_id.as_str()), Some("revoked")));

    // Another client's live key is not held back by the dead one.
    let (s, _) = srv.get("/api/v1/secrets", &admin).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn a_dead_key_cannot_lock_its_tenant_out_on_sqlite() {
    a_dead_key_cannot_lock_its_tenant_out(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_dead_key_cannot_lock_its_tenant_out_on_postgres() {
    a_dead_key_cannot_lock_its_tenant_out(Backend::Postgres).await;
}

/// Credential headers that are malformed or disagree are refused, on REST
/// and MCP alike, never read past to the other header.
#[tokio::test]
async fn credential_headers_must_agree() {
    let srv = Server::start(Backend::Sqlite).await;
    let key = srv.signup(&unique("creds")).await;
    let other = srv.signup(&unique("creds-other")).await;
    let bearer = format!("Bearer {key}");
    let ping = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": { "name": "whoami", "arguments": {} } });
    let mcp = [("accept", "application/json, text/event-stream")];
    for headers in [
        vec![("x-api-key", ""), ("authorization", bearer.as_str())],
        vec![("x-api-key", other.as_str()), ("authorization", bearer.as_str())],
        vec![("authorization", "Basic dXNlcjpwYXNz")],
        vec![("authorization", bearer.as_str()), ("authorization", bearer.as_str())],
    ] {
        let (s, body) = send(&srv, "GET", "/api/v1/plan", &headers, None).await;
        assert_eq!((s, body["code"].as_str()), (401, Some("UNAUTHORIZED")), "{headers:?}: {body}");
        assert!(body["message"].as_str().unwrap().starts_with("malformed credential"), "{body}");
        let with: Vec<(&str, &str)> = headers.iter().copied().chain(mcp).collect();
        let (s, body) = send(&srv, "POST", "/mcp", &with, Some(ping.clone())).await;
        assert_eq!(s, 401, "MCP {headers:?}: {body}");
    }
    // A key that is not text does not fall back to Authorization either.
    let resp = srv
        .http
        .get(srv.url("/api/v1/plan"))
        .header("x-api-key", reqwest::header::HeaderValue::from_bytes(b"sc_\xff\xfe").unwrap())
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    // The same key in both is fine.
    let (s, _) = send(&srv, "GET", "/api/v1/plan", &[("x-api-key", key.as_str()), ("authorization", bearer.as_str())], None).await;
    assert_eq!(s, 200);
}

/// The data dir and the files in it can be read by their owner only.
#[tokio::test]
async fn the_data_dir_is_private() {
    use std::io::BufRead;
    use std::os::unix::fs::PermissionsExt;
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("data");
    // Started by hand: the harness makes its data dir itself.
    let mut child = std::process::Command::new(common::bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&dir)
        .env_remove("DATABASE_URL")
        .env_remove("LATCHKEY_MASTER_KEY")
        .env_remove("LATCHKEY_PASSPHRASE")
        .env("LATCHKEY_DEFAULT_PLAN", "unlimited")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line).map(|_| line)
    });
    let line = tokio::time::timeout(std::time::Duration::from_secs(60), line).await.expect("started").unwrap().unwrap();
    let base = line.trim().strip_prefix("latchkey listening on ").expect("listening line").to_owned();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let signup: Value =
        http.post(format!("{base}/api/signup")).json(&json!({ "tenantId": unique("private") })).send().await.unwrap().json().await.unwrap();
    let key = signup["apiKey"].as_str().unwrap();
    let made = http.post(format!("{base}/api/v1/secrets")).header("x-api-key", key).json(&json!({ "name": "X", "value": "y" })).send();
    assert_eq!(made.await.unwrap().status().as_u16(), 201);

    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    let mut seen = vec![];
    for name in ["latchkey.db", "latchkey.db-wal", "latchkey.db-shm", "master.key"] {
        let path = dir.join(name);
        if path.exists() {
            assert_eq!(mode(&path), 0o600, "{name}");
            seen.push(name);
        }
    }
    assert!(seen.contains(&"latchkey.db") && seen.contains(&"master.key") && seen.contains(&"latchkey.db-wal"), "{seen:?}");
    let _ = child.kill();
    let _ = child.wait();
}

/// A database from before tenants were marked local: the upgrade marks the
/// ones `latchkey mcp` made (by their signup entry), and only those, so a
/// tenant a stranger signed up for stays out of a local session's reach.
#[tokio::test]
async fn the_upgrade_marks_only_the_tenants_latchkey_mcp_made() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let opts = || Opts { data_dir: Some(dir.path().to_path_buf()), ..Opts::new(Backend::Sqlite) };
    let srv = Server::start_with(opts()).await;
    let signed_up = unique("signed-up");
    srv.signup(&signed_up).await;
    let made_locally = unique("made-locally");
    let (ok, out, err) = local_session(&srv, &made_locally);
    assert!(ok, "{out} {err}");
    assert_eq!(srv.stop(), Some(0));

    // The schema as it was before migration 0003.
    let url = format!("sqlite://{}", dir.path().join("latchkey.db").display());
    let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::raw_sql(
        "DROP INDEX audit_auth_failures; ALTER TABLE tenants DROP COLUMN local_only; DELETE FROM _sqlx_migrations WHERE version = 3;",
    )
    .execute(&mut db)
    .await
    .unwrap();
    db.close().await.unwrap();

    let srv = Server::start_with(opts()).await;
    let (ok, out, err) = local_session(&srv, &made_locally);
    assert!(ok && out.contains("\"created\":false"), "the local tenant is still the session's: {out} {err}");
    let (ok, _, err) = local_session(&srv, &signed_up);
    assert!(!ok && err.contains("not created by `latchkey mcp`"), "{err}");
}

/// A read that is refused leaves the same trace whichever way it was asked:
/// through `get_secret` or through the `latchkey://secrets/{name}` resource.
#[tokio::test]
async fn a_denied_read_through_a_resource_is_on_the_record() {
    let srv = Server::start(Backend::Sqlite).await;
    let admin = srv.signup(&unique("resource-audit")).await;
    let (_, open) = srv.post("/api/v1/projects", &admin, json!({ "name": "open" })).await;
    let (_, closed) = srv.post("/api/v1/projects", &admin, json!({ "name": "closed" })).await;
    let closed_id = closed["id"].as_str().unwrap();
    let (s, _) = srv.post("/api/v1/secrets", &admin, json!({ "name": "HIDDEN", "value": "v", "projectId": closed_id })).await;
    assert_eq!(s, 201);
    let (_, made) =
        srv.post("/api/v1/api-keys", &admin, json!({ "name": "narrow", "permissions": "read", "projectScope": [open["id"]] })).await;
    let narrow = format!("Bearer {}", made["apiKey"].as_str().unwrap());
    let headers = [("authorization", narrow.as_str()), ("accept", "application/json, text/event-stream")];

    let count = || async {
        let (_, trail) = srv.get("/api/v1/audit?resourceType=secret", &admin).await;
        trail["logs"].as_array().unwrap().iter().filter(|e| e["outcome"] != "success").count()
    };
    let before = count().await;
    let uri = format!("latchkey://secrets/HIDDEN?projectId={closed_id}");
    let read = json!({ "jsonrpc": "2.0", "id": 1, "method": "resources/read", "params": { "uri": uri } });
    let (_, body) = send(&srv, "POST", "/mcp", &headers, Some(read)).await;
    assert!(body.get("error").is_some(), "refused: {body}");
    assert_eq!(count().await, before + 1, "the resource's refusal is audited");
    let get = json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": { "name": "get_secret", "arguments": { "name": "HIDDEN", "projectId": closed_id } } });
    let (_, body) = send(&srv, "POST", "/mcp", &headers, Some(get)).await;
    assert_eq!(body["result"]["isError"], true, "{body}");
    assert_eq!(count().await, before + 2, "as get_secret's is");
}
