//! The tamper-evident audit trail (issue 27), through the real server on both
//! databases: every entry, whatever wrote it (REST, MCP, a stdio session
//! next to the server, two servers on one PostgreSQL), lands in its tenant's
//! hash chain; `GET /api/v1/audit/verify` and `latchkey audit verify` find it
//! whole, and name the first broken entry after an edit, a deleted middle
//! row, two rows' contents swapped, and a deleted last row. Entries carry the
//! agent's client, tool and reason, and the trail filters on actor, front
//! and tool.

mod common;

use std::process::Stdio;

use common::{Backend, Opts, Server, TEST_MASTER_KEY, bin, unique};
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, ClientCapabilities, Implementation, InitializeRequestParams};
use rmcp::transport::TokioChildProcess;
use serde_json::{Value, json};
use sqlx::Connection;

/// One integer from the server's database.
async fn scalar(srv: &Server, sql: &str, tenant: &str) -> i64 {
    match &srv.database_url {
        None => {
            let url = format!("sqlite://{}", srv.data_dir.join("latchkey.db").display());
            let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned())).bind(tenant).fetch_one(&mut c).await.unwrap()
        }
        Some(url) => {
            let mut c = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned())).bind(tenant).fetch_one(&mut c).await.unwrap()
        }
    }
}

/// The id of the tenant's entry at chain position `seq`.
async fn id_at(srv: &Server, tenant: &str, seq: i64) -> i64 {
    scalar(srv, &format!("SELECT id FROM audit_log WHERE tenant_id = $1 AND chain_seq = {seq}"), tenant).await
}

async fn last_seq(srv: &Server, tenant: &str) -> i64 {
    scalar(srv, "SELECT MAX(chain_seq) FROM audit_log WHERE tenant_id = $1", tenant).await
}

async fn chained(srv: &Server, tenant: &str) -> i64 {
    scalar(srv, "SELECT COUNT(*) FROM audit_log WHERE tenant_id = $1 AND chain_seq IS NOT NULL", tenant).await
}

async fn verify(srv: &Server, key: &str, query: &str) -> Value {
    let (s, body) = srv.get(&format!("/api/v1/audit/verify{query}"), key).await;
    assert_eq!(s, 200, "{body}");
    body
}

/// Saves rows `ids` aside, runs `tamper`, then puts them back exactly.
async fn with_tampered<F: std::future::Future<Output = ()>>(srv: &Server, ids: &[i64], tamper: Vec<String>, check: F) {
    let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(", ");
    srv.sql(&format!("CREATE TABLE saved_rows AS SELECT * FROM audit_log WHERE id IN ({list})"), &[]).await;
    for sql in &tamper {
        srv.sql(sql, &[]).await;
    }
    check.await;
    srv.sql(&format!("DELETE FROM audit_log WHERE id IN ({list})"), &[]).await;
    srv.sql("INSERT INTO audit_log SELECT * FROM saved_rows", &[]).await;
    srv.sql("DROP TABLE saved_rows", &[]).await;
}

/// `latchkey audit verify` on the server's database: (exit code, report).
fn cli_verify(srv: &Server, tenant: &str, extra: &[&str]) -> (i32, Value) {
    let mut cmd = std::process::Command::new(bin());
    cmd.args(["audit", "verify", "--tenant", tenant, "--data-dir"]).arg(&srv.data_dir).args(extra);
    cmd.env("LATCHKEY_MASTER_KEY", TEST_MASTER_KEY).env("LATCHKEY_LOG", "error").env_remove("DATABASE_URL");
    if let Some(url) = &srv.database_url {
        cmd.env("DATABASE_URL", url);
    }
    let out = cmd.stderr(Stdio::null()).output().unwrap();
    (out.status.code().unwrap_or(-1), serde_json::from_slice(&out.stdout).unwrap_or(Value::Null))
}

async fn create(srv: &Server, key: &str, name: &str) -> String {
    let (s, b) = srv.post("/api/v1/secrets", key, json!({ "name": name, "value": format!("v-{name}") })).await;
    assert_eq!(s, 201, "{b}");
    b["id"].as_str().unwrap().to_owned()
}

async fn story(backend: Backend) {
    let srv = Server::start(backend).await;
    let tenant = unique("chain");
    let admin = srv.signup(&tenant).await;
    let mut ids = vec![];
    for n in ["A_KEY", "B_KEY", "C_KEY"] {
        ids.push(create(&srv, &admin, n).await);
    }
    for id in &ids {
        for _ in 0..3 {
            assert_eq!(srv.get(&format!("/api/v1/secrets/{id}"), &admin).await.0, 200);
        }
    }
    let (s, _) = srv.put(&format!("/api/v1/secrets/{}", ids[0]), &admin, json!({ "value": "v2" })).await;
    assert_eq!(s, 200);
    // Through MCP (HTTP): the tool named on each entry.
    let mcp = common::mcp_client::connect(&srv, &admin).await;
    common::mcp_client::tool(&mcp, "set_secret", json!({ "name": "D_KEY", "value": "d" })).await.unwrap();
    for _ in 0..2 {
        common::mcp_client::tool(&mcp, "get_secret", json!({ "name": "D_KEY" })).await.unwrap();
    }
    // A reason given for a read is recorded with it.
    let (s, _) = srv.get(&format!("/api/v1/secrets/{}?reason=deploy%20check", ids[1]), &admin).await;
    assert_eq!(s, 200);

    // Whole: every chained entry verified, positions without gaps (the
    // verify call's own entry is written after its walk).
    let report = verify(&srv, &admin, "").await;
    let total = chained(&srv, &tenant).await;
    assert_eq!(report["verified"], true, "{report}");
    assert_eq!(report["entries"], total - 1, "{report}");
    assert_eq!(last_seq(&srv, &tenant).await, total);
    assert!(total >= 16, "{total}");
    assert!(report.get("firstBroken").is_none(), "{report}");

    // Admin keys only.
    let (s, b) = srv.post("/api/v1/api-keys", &admin, json!({ "name": "reader", "permissions": "read" })).await;
    assert_eq!(s, 201, "{b}");
    let reader = b["apiKey"].as_str().unwrap().to_owned();
    let (s, b) = srv.get("/api/v1/audit/verify", &reader).await;
    assert_eq!((s, b["code"].as_str()), (403, Some("SCOPE_DENIED")), "{b}");
    let (s, b) = srv.get("/api/v1/audit/verify?since=1", &admin).await;
    assert_eq!((s, b["code"].as_str()), (400, Some("INVALID_REQUEST")), "{b}");

    // The agent fields and the filters.
    let (s, page) = srv.get("/api/v1/audit?tool=get_secret", &admin).await;
    assert_eq!(s, 200, "{page}");
    let logs = page["logs"].as_array().unwrap();
    assert_eq!(logs.len(), 2, "{page}");
    // rmcp's HTTP client sends no User-Agent: the client is then unknown.
    assert!(logs.iter().all(|e| e["tool"] == "get_secret" && e["front"] == "mcp" && e["client"] == e["userAgent"]), "{page}");
    let (_, page) = srv.get("/api/v1/audit?front=mcp&action=secret.create", &admin).await;
    assert!(page["logs"].as_array().unwrap().iter().all(|e| e["tool"] == "set_secret"), "{page}");
    assert_eq!(page["logs"].as_array().unwrap().len(), 1, "{page}");
    let (_, page) = srv.get("/api/v1/audit?front=rest&action=secret.read", &admin).await;
    let rest_reads = page["logs"].as_array().unwrap();
    // At least one entry per read: a read whose commit found the database
    // changed meanwhile (a PostgreSQL replica before its LISTEN is up) is
    // looked up again and recorded twice (see `Vault::open_value`).
    assert!(rest_reads.len() >= 10, "{page}");
    assert!(rest_reads.iter().all(|e| e["client"] == "latchkey-tests" && e["tool"].is_null()), "{page}");
    assert_eq!(rest_reads.iter().filter(|e| e["reason"] == "deploy check").count(), 1, "{page}");
    let actor = rest_reads[0]["actor"].as_str().unwrap().to_owned();
    let (_, page) = srv.get(&format!("/api/v1/audit?actor={actor}&limit=1000"), &admin).await;
    assert!(page["logs"].as_array().unwrap().iter().all(|e| e["actor"] == actor.as_str()), "{page}");
    let (_, page) = srv.get("/api/v1/audit?actor=nobody", &admin).await;
    assert_eq!(page["logs"].as_array().unwrap().len(), 0, "{page}");

    // Tampering, each undone before the next.
    // An edited field: that entry breaks.
    let edited = id_at(&srv, &tenant, 5).await;
    with_tampered(&srv, &[edited], vec![format!("UPDATE audit_log SET actor = 'someone-else' WHERE id = {edited}")], async {
        let r = verify(&srv, &admin, "").await;
        assert_eq!(
            (r["verified"].as_bool(), r["firstBroken"].as_i64(), r["reason"].as_str()),
            (Some(false), Some(edited), Some("hash")),
            "{r}"
        );
        assert_eq!(r["entries"], 4, "{r}");
        let (code, cli) = cli_verify(&srv, &tenant, &[]);
        assert_eq!((code, cli["firstBroken"].as_i64()), (1, Some(edited)), "{cli}");
    })
    .await;
    assert_eq!(verify(&srv, &admin, "").await["verified"], true);

    // Two rows' contents swapped (chain columns left in place): the earlier breaks.
    let first_of = |action: &'static str| {
        let (srv, tenant) = (&srv, &tenant);
        async move { scalar(srv, &format!("SELECT MIN(chain_seq) FROM audit_log WHERE tenant_id = $1 AND action = '{action}'"), tenant).await }
    };
    let (sa, sb) = (first_of("secret.create").await, first_of("secret.read").await);
    let (a, b) = (id_at(&srv, &tenant, sa).await, id_at(&srv, &tenant, sb).await);
    let earlier = if sa < sb { a } else { b };
    let swap = |x: i64, y: i64| {
        format!(
            "UPDATE audit_log SET action = (SELECT action FROM saved_rows WHERE id = {y}), resource_id = (SELECT resource_id FROM saved_rows WHERE id = {y}), \
             at = (SELECT at FROM saved_rows WHERE id = {y}) WHERE id = {x}"
        )
    };
    with_tampered(&srv, &[a, b], vec![swap(a, b), swap(b, a)], async {
        let r = verify(&srv, &admin, "").await;
        assert_eq!(
            (r["verified"].as_bool(), r["firstBroken"].as_i64(), r["reason"].as_str()),
            (Some(false), Some(earlier), Some("hash")),
            "{r}"
        );
    })
    .await;
    assert_eq!(verify(&srv, &admin, "").await["verified"], true);

    // A middle row deleted: the next entry breaks (its position).
    let (gone, next) = (id_at(&srv, &tenant, 6).await, id_at(&srv, &tenant, 7).await);
    with_tampered(&srv, &[gone], vec![format!("DELETE FROM audit_log WHERE id = {gone}")], async {
        let r = verify(&srv, &admin, "").await;
        assert_eq!(
            (r["verified"].as_bool(), r["firstBroken"].as_i64(), r["reason"].as_str()),
            (Some(false), Some(next), Some("position")),
            "{r}"
        );
    })
    .await;
    assert_eq!(verify(&srv, &admin, "").await["verified"], true);

    // The last row deleted: the head is beyond the end.
    let last = id_at(&srv, &tenant, last_seq(&srv, &tenant).await).await;
    with_tampered(&srv, &[last], vec![format!("DELETE FROM audit_log WHERE id = {last}")], async {
        let (code, cli) = cli_verify(&srv, &tenant, &[]);
        assert_eq!((code, cli["verified"].as_bool(), cli["truncated"].as_bool()), (1, Some(false), Some(true)), "{cli}");
    })
    .await;
    let (code, cli) = cli_verify(&srv, &tenant, &[]);
    assert_eq!((code, cli["verified"].as_bool()), (0, Some(true)), "{cli}");
    assert_eq!(cli["entries"], chained(&srv, &tenant).await, "{cli}");

    // Date bounds: from a middle entry on, linked from its predecessor.
    let mid_at = scalar(&srv, "SELECT at FROM audit_log WHERE tenant_id = $1 AND chain_seq = 10", &tenant).await;
    let start = chrono::DateTime::from_timestamp_millis(mid_at).unwrap().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let first = scalar(&srv, &format!("SELECT MIN(chain_seq) FROM audit_log WHERE tenant_id = $1 AND at >= {mid_at}"), &tenant).await;
    let r = verify(&srv, &admin, &format!("?startDate={}", start.replace('+', "%2B"))).await;
    let total = chained(&srv, &tenant).await;
    assert_eq!(r["verified"], true, "{r}");
    // From `first` to the end; the verify call's own entry comes after the walk.
    assert_eq!(r["entries"], total - (first - 1) - 1, "{r}");
    let r = verify(&srv, &admin, "?endDate=2001-01-01").await;
    assert_eq!((r["verified"].as_bool(), r["entries"].as_i64()), (Some(true), Some(0)), "{r}");
    // The predecessor of the start deleted: the first reported entry breaks.
    let pred = scalar(&srv, &format!("SELECT id FROM audit_log WHERE tenant_id = $1 AND chain_seq = (SELECT MIN(chain_seq) FROM audit_log WHERE tenant_id = $1 AND at >= {mid_at}) - 1"), &tenant).await;
    with_tampered(&srv, &[pred], vec![format!("DELETE FROM audit_log WHERE id = {pred}")], async {
        let r = verify(&srv, &admin, &format!("?startDate={}", start.replace('+', "%2B"))).await;
        assert_eq!((r["verified"].as_bool(), r["reason"].as_str()), (Some(false), Some("predecessor")), "{r}");
    })
    .await;
    assert_eq!(verify(&srv, &admin, "").await["verified"], true);
}

#[tokio::test]
async fn chain_story_on_sqlite() {
    story(Backend::Sqlite).await;
}

#[tokio::test]
async fn chain_story_on_postgres() {
    story(Backend::Postgres).await;
}

/// Reads through `srv`, `n` at a time, `rounds` times.
async fn reads(srv: &Server, key: &str, id: &str, rounds: usize) {
    for _ in 0..rounds {
        let path = format!("/api/v1/secrets/{id}");
        let calls = (0..4).map(|_| srv.get(&path, key));
        for (s, _) in futures::future::join_all(calls).await {
            assert_eq!(s, 200);
        }
    }
}

/// Two servers on one PostgreSQL append to the same tenant's chain at once:
/// neither forks nor gaps it.
#[tokio::test]
async fn two_servers_share_one_chain_on_postgres() {
    let one = Server::start(Backend::Postgres).await;
    let two = Server::start_with(Opts { database_url: one.database_url.clone(), ..Opts::new(Backend::Postgres) }).await;
    let tenant = unique("pair");
    let admin = one.signup(&tenant).await;
    let id = create(&one, &admin, "SHARED").await;
    let writes = async {
        for i in 0..5 {
            let (s, _) = two.put(&format!("/api/v1/secrets/{id}"), &admin, json!({ "value": format!("w{i}") })).await;
            assert_eq!(s, 200);
        }
    };
    tokio::join!(reads(&one, &admin, &id, 15), reads(&two, &admin, &id, 15), writes);
    let r = verify(&two, &admin, "").await;
    assert_eq!(r["verified"], true, "{r}");
    assert_eq!(r["entries"], chained(&one, &tenant).await - 1, "{r}");
    assert_eq!(last_seq(&one, &tenant).await, chained(&one, &tenant).await);
}

/// A stdio MCP session (`latchkey mcp`, another process) reads next to the
/// server on one SQLite file: one chain, and the session's entries name the
/// client from its `initialize` and the tool.
#[tokio::test]
async fn a_stdio_session_beside_the_server_on_sqlite() {
    let srv = Server::start(Backend::Sqlite).await;
    let tenant = unique("stdio");
    let admin = srv.signup(&tenant).await;
    let id = create(&srv, &admin, "LOCAL_KEY").await;
    let mut cmd = std::process::Command::new(bin());
    cmd.args(["mcp", "--data-dir"]).arg(&srv.data_dir);
    cmd.env("LATCHKEY_MASTER_KEY", TEST_MASTER_KEY).env("LATCHKEY_API_KEY", &admin).env("LATCHKEY_LOG", "error").env_remove("DATABASE_URL");
    let (transport, _) = TokioChildProcess::builder(tokio::process::Command::from(cmd)).stderr(Stdio::null()).spawn().unwrap();
    let info = InitializeRequestParams::new(ClientCapabilities::default(), Implementation::new("audit-agent", "9.1.0"));
    let client = info.serve(transport).await.expect("MCP handshake over stdio");
    let session = async {
        for _ in 0..20 {
            let args = json!({ "name": "LOCAL_KEY" });
            let r =
                client.call_tool(CallToolRequestParams::new("get_secret").with_arguments(args.as_object().unwrap().clone())).await.unwrap();
            assert_ne!(r.is_error, Some(true), "{r:?}");
        }
    };
    tokio::join!(session, reads(&srv, &admin, &id, 10));
    client.cancel().await.ok();
    let r = verify(&srv, &admin, "").await;
    assert_eq!(r["verified"], true, "{r}");
    assert_eq!(r["entries"], chained(&srv, &tenant).await - 1, "{r}");
    let (_, page) = srv.get("/api/v1/audit?tool=get_secret&limit=100", &admin).await;
    let logs = page["logs"].as_array().unwrap();
    // The 20 calls (and the session's own first read, if it makes one).
    assert!(logs.len() >= 20, "{page}");
    assert!(logs.iter().all(|e| e["client"] == "audit-agent/9.1.0"), "{page}");
}
