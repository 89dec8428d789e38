//! Human approval gates, told as the user's story on SQLite and PostgreSQL:
//! an agent's key reads a critical secret → a pending request it is told to
//! show its user → the operator approves at the terminal → the agent reads
//! once → the next read asks again. Denials, expiry of requests and grants,
//! API keys trying owner actions, racing decisions, the sensitive tier under
//! the policy, and MCP's approval result and wait.

mod common;

use std::process::Command;
use std::time::Duration;

use common::mcp_client::{call, connect as mcp_client};
use common::{Backend, Opts, Server, TEST_MASTER_KEY, unique};
use serde_json::{Value, json};

/// `latchkey <args> --data-dir … ` on the server's database, as the operator
/// at its terminal runs it: (succeeded, stdout, stderr).
fn cli_command(srv: &Server, args: &[&str]) -> Command {
    let mut cmd = Command::new(common::bin());
    cmd.args(args).arg("--data-dir").arg(&srv.data_dir);
    cmd.env("LATCHKEY_MASTER_KEY", TEST_MASTER_KEY).env("LATCHKEY_LOG", "warn").env_remove("DATABASE_URL");
    if let Some(url) = &srv.database_url {
        cmd.env("DATABASE_URL", url);
    }
    cmd
}

async fn cli(srv: &Server, args: &[&str]) -> (bool, String, String) {
    let mut cmd = cli_command(srv, args);
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("run latchkey")).await.unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

async fn cli_ok(srv: &Server, args: &[&str]) -> Value {
    let (ok, stdout, stderr) = cli(srv, args).await;
    assert!(ok, "latchkey {args:?} failed: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|_| panic!("latchkey {args:?} printed no JSON: {stdout}"))
}

/// A read that must be refused for want of approval: its request's id.
async fn refused(srv: &Server, key: &str, id: &str) -> String {
    let (s, body) = srv.get(&format!("/api/v1/secrets/{id}"), key).await;
    assert_eq!((s, body["code"].as_str()), (403, Some("APPROVAL_REQUIRED")), "{body}");
    assert!(body.get("value").is_none());
    let approval = body["approvalId"].as_str().unwrap().to_owned();
    // Named `localhost` (a loopback listener): browsers need a host name for passkeys.
    assert_eq!(body["approvalUrl"], format!("{}/approvals/{approval}", srv.base.replace("127.0.0.1", "localhost")), "{body}");
    approval
}

async fn create(srv: &Server, key: &str, name: &str, value: &str, tier: &str) -> String {
    let (s, body) = srv.post("/api/v1/secrets", key, json!({ "name": name, "value": value, "accessTier": tier })).await;
    assert_eq!(s, 201, "{body}");
    assert_eq!(body["accessTier"], tier);
    body["id"].as_str().unwrap().to_owned()
}

async fn agent_key(srv: &Server, admin: &str, name: &str, permission: &str) -> String {
    let (s, body) = srv.post("/api/v1/api-keys", admin, json!({ "name": name, "permissions": permission })).await;
    assert_eq!(s, 201, "{body}");
    body["apiKey"].as_str().unwrap().to_owned()
}

async fn actions(srv: &Server, admin: &str) -> Vec<Value> {
    let (s, page) = srv.get("/api/v1/audit?limit=1000", admin).await;
    assert_eq!(s, 200, "{page}");
    page["logs"].as_array().unwrap().clone()
}

async fn story(backend: Backend) {
    let srv = Server::start(backend).await;
    let tenant = unique("gate");
    let admin = srv.signup(&tenant).await;
    let agent = agent_key(&srv, &admin, "deploy-bot", "write").await;
    let db = create(&srv, &agent, "PROD_DB_PASSWORD", "hunter2", "critical").await;
    let plain = create(&srv, &agent, "PUBLIC_FLAG", "on", "standard").await;

    // A standard secret reads as ever; a critical one asks for approval, and
    // asking again reuses the same pending request.
    assert_eq!(srv.get(&format!("/api/v1/secrets/{plain}"), &agent).await.1["value"], "on");
    let first = refused(&srv, &agent, &db).await;
    assert_eq!(refused(&srv, &agent, &db).await, first, "a second read reuses the pending request");
    let (s, list) = srv.get("/api/v1/approvals?status=pending", &agent).await;
    assert_eq!(s, 200, "{list}");
    assert_eq!(list["count"], 1);
    let pending = &list["approvals"][0];
    assert_eq!((pending["id"].as_str(), pending["status"].as_str()), (Some(first.as_str()), Some("pending")));
    assert_eq!((pending["secretName"].as_str(), pending["accessTier"].as_str()), (Some("PROD_DB_PASSWORD"), Some("critical")));
    assert_eq!(pending["requesterName"], "deploy-bot");
    assert_eq!(pending["ip"], "127.0.0.1");

    // Another key sees neither the request nor a way to decide it.
    let other = agent_key(&srv, &admin, "other-bot", "read").await;
    assert_eq!(srv.get(&format!("/api/v1/approvals/{first}"), &other).await.0, 404);
    assert_eq!(srv.get("/api/v1/approvals", &other).await.1["count"], 0);

    // Keys are never owners: not the agent's, not the admin's.
    for key in [&agent, &admin] {
        let (s, e) = srv.post(&format!("/api/v1/approvals/{first}/approve"), key, json!({})).await;
        assert_eq!((s, e["code"].as_str()), (403, Some("OWNER_REQUIRED")), "{e}");
        let (s, e) = srv.post(&format!("/api/v1/approvals/{first}/deny"), key, json!({ "reason": "no" })).await;
        assert_eq!((s, e["code"].as_str()), (403, Some("OWNER_REQUIRED")), "{e}");
        let (s, e) = srv.put(&format!("/api/v1/secrets/{db}"), key, json!({ "accessTier": "standard" })).await;
        assert_eq!((s, e["code"].as_str()), (403, Some("OWNER_REQUIRED")), "{e}");
        let (s, e) = srv.put("/api/v1/policy", key, json!({ "approvalRequired": { "sensitive": true } })).await;
        assert_eq!((s, e["code"].as_str()), (403, Some("OWNER_REQUIRED")), "{e}");
    }
    // Nothing changed.
    assert_eq!(srv.get(&format!("/api/v1/approvals/{first}"), &agent).await.1["status"], "pending");
    let (_, secrets) = srv.get("/api/v1/secrets", &admin).await;
    let tier = |name: &str| secrets["secrets"].as_array().unwrap().iter().find(|s| s["name"] == name).unwrap()["accessTier"].clone();
    assert_eq!(tier("PROD_DB_PASSWORD"), "critical");
    let (s, policy) = srv.get("/api/v1/policy", &agent).await;
    assert_eq!(s, 200, "{policy}");
    assert_eq!(policy["approvalRequired"], json!({ "standard": false, "sensitive": false, "critical": true }));
    let (s, e) = srv.put("/api/v1/policy", &admin, json!({ "approvalRequired": { "critical": false } })).await;
    assert_eq!((s, e["code"].as_str()), (400, Some("INVALID_REQUEST")), "critical always needs approval: {e}");

    // The operator approves at the terminal: one read within 15 minutes.
    let approved = cli_ok(&srv, &["approvals", "approve", &first]).await;
    assert_eq!((approved["status"].as_str(), approved["grantUsesLeft"].as_i64()), (Some("approved"), Some(1)));
    assert_eq!((approved["decidedBy"].as_str(), approved["decidedHow"].as_str()), (Some("operator"), Some("cli")));
    let (s, read) = srv.get(&format!("/api/v1/secrets/{db}"), &agent).await;
    assert_eq!((s, read["value"].as_str()), (200, Some("hunter2")), "{read}");
    // The grant is the agent's alone, and used up: the next read asks again.
    let (s, e) = srv.get(&format!("/api/v1/secrets/{db}"), &other).await;
    assert_eq!((s, e["code"].as_str()), (403, Some("APPROVAL_REQUIRED")));
    let second = refused(&srv, &agent, &db).await;
    assert_ne!(second, first, "a used grant opens a new request");
    assert_eq!(srv.get(&format!("/api/v1/approvals/{first}"), &agent).await.1["status"], "used");

    // Deny, with a reason (none is refused); the read stays refused.
    let (ok, _, err) = cli(&srv, &["approvals", "deny", &second, "--reason", "  "]).await;
    assert!(!ok && err.contains("reason"), "{err}");
    let denied = cli_ok(&srv, &["approvals", "deny", &second, "--reason", "not during the freeze"]).await;
    assert_eq!((denied["status"].as_str(), denied["denyReason"].as_str()), (Some("denied"), Some("not during the freeze")));
    let (ok, _, err) = cli(&srv, &["approvals", "approve", &second]).await;
    assert!(!ok && err.contains("already denied"), "a decided request stays decided: {err}");
    let third = refused(&srv, &agent, &db).await;
    assert!(third != first && third != second);
    let listed = cli_ok(&srv, &["approvals", "list", "--tenant", &tenant, "--status", "pending"]).await;
    // The operator sees every pending request of the tenant: the agent's and the other key's.
    let mut names: Vec<&str> = listed.as_array().unwrap().iter().map(|a| a["requesterName"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["deploy-bot", "other-bot"]);
    assert!(listed.as_array().unwrap().iter().any(|a| a["id"] == third.as_str()));

    // A grant of several reads serves exactly that many.
    cli_ok(&srv, &["approvals", "approve", &third, "--uses", "2", "--ttl", "10m"]).await;
    for _ in 0..2 {
        assert_eq!(srv.get(&format!("/api/v1/secrets/{db}"), &agent).await.1["value"], "hunter2");
    }
    refused(&srv, &agent, &db).await;

    // Any writer may raise a tier; sensitive is gated only once the policy says so.
    let (s, raised) = srv.put(&format!("/api/v1/secrets/{plain}"), &agent, json!({ "accessTier": "sensitive" })).await;
    assert_eq!((s, raised["accessTier"].as_str()), (200, Some("sensitive")), "{raised}");
    assert_eq!(srv.get(&format!("/api/v1/secrets/{plain}"), &agent).await.1["value"], "on");
    let policy = cli_ok(&srv, &["policy", "set", "--tenant", &tenant, "--sensitive", "on"]).await;
    assert_eq!(policy["approvalRequired"]["sensitive"], true);
    assert_eq!(srv.get("/api/v1/policy", &agent).await.1["approvalRequired"]["sensitive"], true);
    refused(&srv, &agent, &plain).await;

    // The trail: who asked, who decided and how, each use.
    let log = actions(&srv, &admin).await;
    let count = |action: &str| log.iter().filter(|e| e["action"] == action && e["outcome"] == "success").count();
    assert_eq!(count("approval.requested"), 6, "the other key's read asked too");
    assert_eq!(count("approval.approved"), 2);
    assert_eq!(count("approval.denied"), 1);
    assert_eq!(count("approval.used"), 3);
    assert_eq!(count("policy.update"), 1, "{:#?}", log.iter().filter(|e| e["action"] == "policy.update").collect::<Vec<_>>());
    let decided = log.iter().find(|e| e["action"] == "approval.denied" && e["outcome"] == "success").unwrap();
    assert_eq!((decided["actor"].as_str(), decided["front"].as_str()), (Some("operator"), Some("cli")));
    assert_eq!(decided["detail"]["how"], "cli");
    let refusals = log.iter().filter(|e| e["action"] == "approval.approved" && e["outcome"] == "denied").count();
    assert_eq!(refusals, 2, "both keys' attempts to approve are recorded");
    assert!(!log.iter().any(|e| e.to_string().contains("hunter2")));
}

#[tokio::test]
async fn approval_story_on_sqlite() {
    story(Backend::Sqlite).await;
}

#[tokio::test]
async fn approval_story_on_postgres() {
    story(Backend::Postgres).await;
}

/// Pending requests lapse (here after 2 s), and so do grants.
async fn expiry(backend: Backend) {
    let srv = Server::start_with(Opts::new(backend).env("LATCHKEY_APPROVAL_REQUEST_TTL", "2s")).await;
    let admin = srv.signup(&unique("expiry")).await;
    let db = create(&srv, &admin, "VAULT_TOKEN", "s3cret", "critical").await;
    let first = refused(&srv, &admin, &db).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (s, lapsed) = srv.get(&format!("/api/v1/approvals/{first}"), &admin).await;
    assert_eq!((s, lapsed["status"].as_str()), (200, Some("expired")), "{lapsed}");
    let (ok, _, err) = cli(&srv, &["approvals", "approve", &first]).await;
    assert!(!ok && err.contains("already expired"), "{err}");
    let second = refused(&srv, &admin, &db).await;
    assert_ne!(second, first);

    // A grant of one second is gone after it.
    cli_ok(&srv, &["approvals", "approve", &second, "--ttl", "1s", "--uses", "5"]).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let third = refused(&srv, &admin, &db).await;
    assert_ne!(third, second);
    let log = actions(&srv, &admin).await;
    assert!(log.iter().any(|e| e["action"] == "approval.expired" && e["resourceId"] == first.as_str()));
}

#[tokio::test]
async fn request_and_grant_expiry_on_sqlite() {
    expiry(Backend::Sqlite).await;
}

#[tokio::test]
async fn request_and_grant_expiry_on_postgres() {
    expiry(Backend::Postgres).await;
}

/// Twelve operators approve and deny one request at once: exactly one wins.
async fn racing(backend: Backend) {
    let srv = Server::start(backend).await;
    let admin = srv.signup(&unique("race")).await;
    let db = create(&srv, &admin, "ROOT_CA_KEY", "pem", "critical").await;
    let id = refused(&srv, &admin, &db).await;
    let mut children = Vec::new();
    for i in 0..12 {
        let args: Vec<String> = if i % 2 == 0 {
            vec!["approvals".into(), "approve".into(), id.clone()]
        } else {
            vec!["approvals".into(), "deny".into(), id.clone(), "--reason".into(), format!("operator {i} says no")]
        };
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        children.push(cli_command(&srv, &args).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap());
    }
    let outcomes: Vec<std::process::Output> =
        tokio::task::spawn_blocking(move || children.into_iter().map(|c| c.wait_with_output().unwrap()).collect()).await.unwrap();
    let winners: Vec<&std::process::Output> = outcomes.iter().filter(|o| o.status.success()).collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly one decision: {:?}",
        outcomes.iter().map(|o| String::from_utf8_lossy(&o.stderr)).collect::<Vec<_>>()
    );
    let won: Value = serde_json::from_slice(&winners[0].stdout).unwrap();
    let (_, now) = srv.get(&format!("/api/v1/approvals/{id}"), &admin).await;
    assert_eq!(now["status"], won["status"]);
    for lost in outcomes.iter().filter(|o| !o.status.success()) {
        let err = String::from_utf8_lossy(&lost.stderr);
        assert!(err.contains(&format!("already {}", won["status"].as_str().unwrap())), "the loser is told the state: {err}");
    }
    let log = actions(&srv, &admin).await;
    let decisions = log
        .iter()
        .filter(|e| (e["action"] == "approval.approved" || e["action"] == "approval.denied") && e["outcome"] == "success")
        .count();
    assert_eq!(decisions, 1);
}

#[tokio::test]
async fn racing_decisions_on_sqlite() {
    racing(Backend::Sqlite).await;
}

#[tokio::test]
async fn racing_decisions_on_postgres() {
    racing(Backend::Postgres).await;
}

/// MCP: get_secret answers the approval to show, not an error; the agent
/// follows it with approval_status and wait_for_approval; no tool lowers a tier.
async fn mcp(backend: Backend) {
    let srv = Server::start(backend).await;
    let key = srv.signup(&unique("mcp-gate")).await;
    let c = mcp_client(&srv, &key).await;
    let set = call(&c, "set_secret", json!({ "name": "SIGNING_KEY", "value": "k-123", "accessTier": "critical" })).await;
    assert_ne!(set.is_error, Some(true), "{:?}", set.content);

    let r = call(&c, "get_secret", json!({ "name": "SIGNING_KEY" })).await;
    assert_eq!(r.is_error, Some(false), "an approval is a result, not an error: {:?}", r.content);
    let got = r.structured_content.unwrap();
    assert_eq!(got["approvalRequired"], true, "{got}");
    assert!(got.get("value").is_none(), "{got}");
    let id = got["approvalId"].as_str().unwrap().to_owned();
    let url = got["approvalUrl"].as_str().unwrap().to_owned();
    assert_eq!(url, format!("{}/approvals/{id}", srv.base.replace("127.0.0.1", "localhost")));
    let text = &r.content[0].as_text().unwrap().text;
    assert!(text.contains(&url) && text.contains("user"), "{text}");

    let status = call(&c, "approval_status", json!({ "approvalId": id })).await;
    assert_eq!(status.structured_content.unwrap()["status"], "pending");

    let lower = call(&c, "update_secret_metadata", json!({ "name": "SIGNING_KEY", "accessTier": "standard" })).await;
    assert_eq!(lower.is_error, Some(true));
    assert!(lower.content[0].as_text().unwrap().text.contains("OWNER_REQUIRED"));
    let bad = call(&c, "wait_for_approval", json!({ "approvalId": id, "timeoutSeconds": 301 })).await;
    assert_eq!(bad.is_error, Some(true));

    // The wait returns once the operator approves.
    let waiting = {
        let c2 = mcp_client(&srv, &key).await;
        let id = id.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let r = call(&c2, "wait_for_approval", json!({ "approvalId": id, "timeoutSeconds": 60 })).await;
            (r, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    cli_ok(&srv, &["approvals", "approve", &id]).await;
    let (r, took) = waiting.await.unwrap();
    assert_ne!(r.is_error, Some(true), "{:?}", r.content);
    assert_eq!(r.structured_content.unwrap()["status"], "approved");
    assert!(took < Duration::from_secs(30), "returned on the decision, not the timeout: {took:?}");

    let r = call(&c, "get_secret", json!({ "name": "SIGNING_KEY" })).await;
    assert_eq!(r.structured_content.unwrap()["value"], "k-123");
    let again = call(&c, "get_secret", json!({ "name": "SIGNING_KEY" })).await.structured_content.unwrap();
    assert_eq!(again["approvalRequired"], true);
    assert_ne!(again["approvalId"], id.as_str());
}

#[tokio::test]
async fn mcp_approval_on_sqlite() {
    mcp(Backend::Sqlite).await;
}

#[tokio::test]
async fn mcp_approval_on_postgres() {
    mcp(Backend::Postgres).await;
}

/// Twenty reads at once of a critical secret: one pending request between
/// them; then a grant of three uses serves exactly three of twenty.
async fn grant_uses(backend: Backend) {
    let srv = Server::start(backend).await;
    let admin = srv.signup(&unique("uses")).await;
    let db = create(&srv, &admin, "HSM_PIN", "0000", "critical").await;
    let path = format!("/api/v1/secrets/{db}");
    let reads = || futures::future::join_all((0..20).map(|_| srv.get(&path, &admin)));
    let first: Vec<(u16, Value)> = reads().await;
    let ids: std::collections::HashSet<&str> = first
        .iter()
        .map(|(s, b)| {
            assert_eq!((*s, b["code"].as_str()), (403, Some("APPROVAL_REQUIRED")), "{b}");
            b["approvalId"].as_str().unwrap()
        })
        .collect();
    assert_eq!(ids.len(), 1, "concurrent first reads share one request");
    let id = ids.into_iter().next().unwrap().to_owned();
    cli_ok(&srv, &["approvals", "approve", &id, "--uses", "3"]).await;
    let second = reads().await;
    let served = second.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!(served, 3, "{second:?}");
    assert!(second.iter().all(|(s, b)| *s == 200 || b["code"] == "APPROVAL_REQUIRED"), "{second:?}");
    assert_eq!(srv.get(&format!("/api/v1/approvals/{id}"), &admin).await.1["status"], "used");
}

#[tokio::test]
async fn grant_uses_under_concurrency_on_sqlite() {
    grant_uses(Backend::Sqlite).await;
}

#[tokio::test]
async fn grant_uses_under_concurrency_on_postgres() {
    grant_uses(Backend::Postgres).await;
}

/// Over `latchkey mcp` (stdio), a client that declares URL elicitation is
/// asked to open the approval page, and a wait with a progress token hears
/// progress until the operator approves.
#[tokio::test]
async fn mcp_stdio_wait_sends_progress_and_a_url_elicitation() {
    use std::io::{BufRead, BufReader, Write};
    let dir = tempfile::tempdir().unwrap();
    let mut child = common::mcp_stdio(dir.path()).env("LATCHKEY_PUBLIC_URL", "https://vault.example.test").spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(serde_json::from_str(&line).expect("JSON-RPC on stdout")).is_err() {
                break;
            }
        }
    });
    let mut send = |m: Value| {
        writeln!(stdin, "{m}").unwrap();
        stdin.flush().unwrap();
    };
    // Everything up to the answer to `id`, that answer last.
    async fn until(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Value>, id: i64) -> Vec<Value> {
        let mut seen = Vec::new();
        loop {
            let v = tokio::time::timeout(Duration::from_secs(60), rx.recv()).await.expect("an answer within 60 s").expect("stdout open");
            let done = v["id"] == id && v.get("method").is_none();
            seen.push(v);
            if done {
                return seen;
            }
        }
    }
    let tool = |id: i64, name: &str, args: Value| json!({ "jsonrpc": "2.0", "id": id, "method": "tools/call", "params": { "name": name, "arguments": args } });
    send(json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": { "protocolVersion": "2025-11-25",
        "capabilities": { "elicitation": { "url": {} } }, "clientInfo": { "name": "raw", "version": "1" } } }));
    until(&mut rx, 1).await;
    send(json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }));
    send(tool(2, "set_secret", json!({ "name": "STDIO_CRITICAL", "value": "v", "accessTier": "critical" })));
    until(&mut rx, 2).await;
    send(tool(3, "get_secret", json!({ "name": "STDIO_CRITICAL" })));
    let got = until(&mut rx, 3).await.pop().unwrap();
    let result = &got["result"]["structuredContent"];
    assert_eq!(result["approvalRequired"], true, "{got}");
    let id = result["approvalId"].as_str().unwrap().to_owned();
    assert_eq!(result["approvalUrl"], format!("https://vault.example.test/approvals/{id}"));

    let mut approve = Command::new(common::bin());
    approve
        .args(["approvals", "approve", &id, "--data-dir"])
        .arg(dir.path())
        .env("LATCHKEY_MASTER_KEY", TEST_MASTER_KEY)
        .env_remove("DATABASE_URL");
    let approver = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(2500));
        approve.output().unwrap()
    });
    send(json!({ "jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {
        "_meta": { "progressToken": "wait-1" }, "name": "wait_for_approval", "arguments": { "approvalId": id, "timeoutSeconds": 60 } } }));
    let seen = until(&mut rx, 4).await;
    let out = approver.join().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let answer = seen.last().unwrap();
    assert_eq!(answer["result"]["structuredContent"]["status"], "approved", "{answer}");
    let elicitation = seen.iter().find(|m| m["method"] == "elicitation/create").expect("a URL elicitation");
    assert_eq!(elicitation["params"]["mode"], "url", "{elicitation}");
    assert_eq!(elicitation["params"]["url"], format!("https://vault.example.test/approvals/{id}"));
    let progress: Vec<&Value> = seen.iter().filter(|m| m["method"] == "notifications/progress").collect();
    assert!(!progress.is_empty(), "progress while waiting: {seen:?}");
    assert!(progress.iter().all(|p| p["params"]["progressToken"] == "wait-1"));
    child.kill().ok();
    child.wait().ok();
}

/// A tier raised by another process (a second server on the same SQLite
/// file, another PostgreSQL replica) gates the very next read of a server
/// that had the secret cached as standard.
async fn raised_elsewhere(backend: Backend) {
    let a = Server::start(backend).await;
    let b =
        Server::start_with(Opts { data_dir: Some(a.data_dir.clone()), database_url: a.database_url.clone(), ..Opts::new(backend) }).await;
    let admin = a.signup(&unique("raised")).await;
    let id = create(&a, &admin, "CACHED", "warm", "standard").await;
    for _ in 0..3 {
        assert_eq!(a.get(&format!("/api/v1/secrets/{id}"), &admin).await.1["value"], "warm");
    }
    let (s, body) = b.put(&format!("/api/v1/secrets/{id}"), &admin, json!({ "accessTier": "critical" })).await;
    assert_eq!(s, 200, "{body}");
    refused(&a, &admin, &id).await;
}

#[tokio::test]
async fn a_tier_raised_elsewhere_gates_at_once_on_sqlite() {
    raised_elsewhere(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_tier_raised_elsewhere_gates_at_once_on_postgres() {
    raised_elsewhere(Backend::Postgres).await;
}

/// A token whose scopes reach a critical secret waits for an owner: the
/// request answers 202 with the approval to show the user; once approved,
/// the key that asked fetches the token exactly once, and that token reads
/// the secrets the approval covered. Over REST and MCP.
async fn token_approval(backend: Backend) {
    let srv = Server::start(backend).await;
    let admin = srv.signup(&unique("tokgate")).await;
    let agent = agent_key(&srv, &admin, "deploy-bot", "read").await;
    let (s, b) = srv
        .post(
            "/api/v1/secrets",
            &admin,
            json!({ "name": "db/PASSWORD", "environment": "production", "value": "hunter2", "accessTier": "critical" }),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let db = b["id"].as_str().unwrap().to_owned();
    let (s, b) =
        srv.post("/api/v1/secrets", &admin, json!({ "name": "db/HOST", "environment": "production", "value": "db.internal" })).await;
    assert_eq!(s, 201, "{b}");
    let host = b["id"].as_str().unwrap().to_owned();

    // A read says why it needs the value; the owner sees the reason.
    let (s, b) = srv.get(&format!("/api/v1/secrets/{db}?reason=apply%20the%20schema%20migration"), &agent).await;
    assert_eq!((s, b["code"].as_str()), (403, Some("APPROVAL_REQUIRED")), "{b}");
    let (_, view) = srv.get(&format!("/api/v1/approvals/{}", b["approvalId"].as_str().unwrap()), &agent).await;
    assert_eq!(view["reason"], "apply the schema migration", "{view}");
    let (s, b) = srv.get(&format!("/api/v1/secrets/{db}?reason={}", "x".repeat(501)), &agent).await;
    assert_eq!((s, b["code"].as_str()), (400, Some("INVALID_REQUEST")), "{b}");

    // A scope that misses the critical secret is issued at once.
    let (s, b) = srv.post("/api/v1/tokens", &agent, json!({ "scopes": ["secrets:read:production/db/HOST"] })).await;
    assert_eq!((s, b["requiresApproval"].as_bool()), (201, Some(false)), "{b}");

    // One that reaches it waits: no token, an approval to show the user.
    let asked = json!({ "scopes": ["secrets:read:production/db/*"], "ttl": "1h", "reason": "run the migration" });
    let (s, b) = srv.post("/api/v1/tokens", &agent, asked.clone()).await;
    assert_eq!((s, b["requiresApproval"].as_bool()), (202, Some(true)), "{b}");
    assert!(b["token"].is_null(), "{b}");
    let approval = b["approvalId"].as_str().unwrap().to_owned();
    assert_eq!(b["approvalUrl"], format!("{}/approvals/{approval}", srv.base.replace("127.0.0.1", "localhost")));
    let (_, view) = srv.get(&format!("/api/v1/approvals/{approval}"), &agent).await;
    assert_eq!((view["kind"].as_str(), view["reason"].as_str()), (Some("token"), Some("run the migration")), "{view}");
    assert_eq!(view["scopes"], json!(["secrets:read:production/db/*"]));

    // Nothing to redeem before an owner decides; another key cannot redeem it.
    let (s, e) = srv.post(&format!("/api/v1/approvals/{approval}/redeem"), &agent, json!({})).await;
    assert_eq!((s, e["code"].as_str()), (409, Some("CONFLICT")), "{e}");
    let (s, _) = srv.post(&format!("/api/v1/approvals/{approval}/redeem"), &admin, json!({})).await;
    assert_eq!(s, 404, "another key's approval looks like none");
    let (s, e) = srv.post(&format!("/api/v1/approvals/{approval}/approve"), &admin, json!({})).await;
    assert_eq!((s, e["code"].as_str()), (403, Some("OWNER_REQUIRED")), "{e}");

    cli_ok(&srv, &["approvals", "approve", &approval, "--ttl", "10m"]).await;
    let (s, issued) = srv.post(&format!("/api/v1/approvals/{approval}/redeem"), &agent, json!({})).await;
    assert_eq!(s, 201, "{issued}");
    let token = issued["token"].as_str().unwrap().to_owned();
    let expires = chrono::DateTime::parse_from_rfc3339(issued["expiresAt"].as_str().unwrap()).unwrap();
    assert!(expires < chrono::Utc::now() + chrono::Duration::minutes(11), "the approval's ttl caps the token: {issued}");
    let (s, e) = srv.post(&format!("/api/v1/approvals/{approval}/redeem"), &agent, json!({})).await;
    assert_eq!((s, e["code"].as_str()), (409, Some("CONFLICT")), "fetched once: {e}");

    // The token reads what the approval covered, more than once, and no more.
    for _ in 0..2 {
        let (s, b) = srv.get(&format!("/api/v1/secrets/{db}"), &token).await;
        assert_eq!((s, b["value"].as_str()), (200, Some("hunter2")), "{b}");
    }
    assert_eq!(srv.get(&format!("/api/v1/secrets/{host}"), &token).await.1["value"], "db.internal");
    // A critical secret made after the approval is not covered by it.
    let (s, b) = srv
        .post(
            "/api/v1/secrets",
            &admin,
            json!({ "name": "db/ROOT", "environment": "production", "value": "r00t", "accessTier": "critical" }),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = srv.get(&format!("/api/v1/secrets/{}", b["id"].as_str().unwrap()), &token).await;
    assert_eq!((s, b["code"].as_str()), (403, Some("APPROVAL_REQUIRED")), "{b}");

    // Over MCP: get_secret takes a reason too.
    let c = mcp_client(&srv, &agent).await;
    let r = call(&c, "get_secret", json!({ "name": "db/ROOT", "environment": "production", "reason": "rotate the root login" })).await;
    let answer = r.structured_content.clone().expect("structured");
    assert_eq!(answer["approvalRequired"], true, "{answer}");
    let (_, view) = srv.get(&format!("/api/v1/approvals/{}", answer["approvalId"].as_str().unwrap()), &agent).await;
    assert_eq!(view["reason"], "rotate the root login", "{view}");

    // Over MCP: the same token request answers the approval, not an error.
    let r = call(&c, "request_token", asked).await;
    assert_ne!(r.is_error, Some(true), "{r:?}");
    let answer = r.structured_content.clone().expect("structured");
    assert_eq!(answer["requiresApproval"], true, "{answer}");
    let again = answer["approvalId"].as_str().unwrap().to_owned();
    assert!(r.content[0].as_text().unwrap().text.contains(answer["approvalUrl"].as_str().unwrap()));
    cli_ok(&srv, &["approvals", "approve", &again]).await;
    let r = call(&c, "request_token", json!({ "approvalId": again })).await;
    assert_ne!(r.is_error, Some(true), "{r:?}");
    let token = r.structured_content.expect("structured")["token"].as_str().unwrap().to_owned();
    assert_eq!(srv.get(&format!("/api/v1/secrets/{db}"), &token).await.1["value"], "hunter2");
    let r = call(&c, "request_token", json!({ "approvalId": again, "reason": "x" })).await;
    assert_eq!(r.is_error, Some(true), "approvalId goes alone");
    c.cancel().await.ok();

    // Every step is on the record.
    let trail = actions(&srv, &admin).await;
    let count = |a: &str| trail.iter().filter(|e| e["action"] == a).count();
    assert!(count("approval.requested") >= 2 && count("approval.approved") >= 2 && count("approval.used") >= 2, "{trail:?}");
}

#[tokio::test]
async fn a_token_that_reaches_a_critical_secret_waits_for_approval_on_sqlite() {
    token_approval(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_token_that_reaches_a_critical_secret_waits_for_approval_on_postgres() {
    token_approval(Backend::Postgres).await;
}
