//! Audit retention through the real server, on both databases: entries
//! older than `--audit-retention-days` are pruned by the background job in
//! chain order, archived first with `--audit-archive-dir`, the chain's
//! checkpoint advanced; two servers on one PostgreSQL prune each entry once.
//!
//! Old entries are made by moving `at` back in the database directly: the
//! first entries of a tenant's chain (their stored hashes no longer match,
//! which does not matter once they are pruned), and entries written as
//! before the chain existed (no `chain_seq`) inserted in bulk.

mod common;

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use common::{Backend, Opts, Server, unique};
use serde_json::{Value, json};
use sqlx::{Connection, Row};

const DAY_MS: i64 = 86_400_000;

/// Runs a query on the server's database and answers its rows' first
/// column as i64 (`as_i64`) or hex bytes, as text.
async fn rows(srv: &Server, sql: &str, tenant: &str) -> Vec<Vec<String>> {
    macro_rules! run {
        ($conn:expr) => {{
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())).bind(tenant.to_owned()).fetch_all(&mut $conn).await.expect(sql);
            rows.iter()
                .map(|r| {
                    (0..r.len())
                        .map(|i| {
                            r.try_get::<i64, _>(i)
                                .map(|v| v.to_string())
                                .or_else(|_| r.try_get::<Vec<u8>, _>(i).map(|b| b.iter().map(|x| format!("{x:02x}")).collect()))
                                .or_else(|_| r.try_get::<String, _>(i))
                                .unwrap_or_default()
                        })
                        .collect()
                })
                .collect()
        }};
    }
    match &srv.database_url {
        None => {
            let url = format!("sqlite://{}", srv.data_dir.join("latchkey.db").display());
            let mut conn = sqlx::SqliteConnection::connect(&url).await.expect("open SQLite");
            run!(conn)
        }
        Some(url) => {
            let mut conn = sqlx::PgConnection::connect(url).await.expect("connect PostgreSQL");
            run!(conn)
        }
    }
}

async fn count(srv: &Server, sql: &str, tenant: &str) -> i64 {
    rows(srv, sql, tenant).await[0][0].parse().unwrap()
}

/// A tenant with a secret read a few times: its chain has a dozen entries.
async fn tenant_with_trail(srv: &Server) -> (String, String) {
    let tenant = unique("ret");
    let admin = srv.signup(&tenant).await;
    let (s, b) = srv.post("/api/v1/secrets", &admin, json!({ "name": "DB_URL", "value": "postgres://x" })).await;
    assert_eq!(s, 201, "{b}");
    let id = b["id"].as_str().unwrap().to_owned();
    for _ in 0..10 {
        assert_eq!(srv.get(&format!("/api/v1/secrets/{id}"), &admin).await.0, 200);
    }
    (tenant, admin)
}

/// Moves the first `n` entries of the tenant's chain 40 days back; answers
/// their (seq, hash) last one.
async fn age_chain_head(srv: &Server, tenant: &str, n: i64) -> (String, String) {
    // Read first: the retention job (every 100 ms) may prune them as soon as they are old.
    let last = rows(srv, &format!("SELECT chain_seq, chain_hash FROM audit_log WHERE tenant_id = $1 AND chain_seq = {n}"), tenant).await;
    let old = format!("UPDATE audit_log SET at = at - {} WHERE tenant_id = $1 AND chain_seq IS NOT NULL AND chain_seq <= {n}", 40 * DAY_MS);
    srv.sql(&old, &[tenant]).await;
    (last[0][0].clone(), last[0][1].clone())
}

/// Inserts `n` entries of the tenant as written before the chain existed, 40..41 days old.
async fn insert_legacy(srv: &Server, tenant: &str, n: i64) {
    let at = format!("(CAST(strftime('%s','now') AS INTEGER) * 1000 - {} - k * 1000)", 40 * DAY_MS);
    let cols = "tenant_id, at, actor, front, action, resource_type, outcome";
    let sql = match srv.database_url {
        None => format!(
            "INSERT INTO audit_log ({cols}) WITH RECURSIVE s(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM s WHERE k < {n}) \
             SELECT $1, {at}, 'old-key', 'rest', 'secret.read', 'secret', 'success' FROM s"
        ),
        Some(_) => format!(
            "INSERT INTO audit_log ({cols}) SELECT $1, (EXTRACT(EPOCH FROM now()) * 1000)::BIGINT - {} - k * 1000, \
             'old-key', 'rest', 'secret.read', 'secret', 'success' FROM generate_series(1, {n}) AS k",
            40 * DAY_MS
        ),
    };
    srv.sql(&sql, &[tenant]).await;
}

/// Waits (bounded) until the tenant has no entry older than 30 days.
async fn pruned(srv: &Server, tenant: &str) {
    let cutoff = format!("SELECT COUNT(*) FROM audit_log WHERE tenant_id = $1 AND at < {}", now_ms() - 30 * DAY_MS);
    for _ in 0..600 {
        if count(srv, &cutoff, tenant).await == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("old entries of {tenant} were not pruned");
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// Every JSON line of every archive file under `dir` (gzip members concatenated).
fn archived(dir: &Path) -> Vec<Value> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for file in entries {
        let path = file.unwrap().path();
        assert!(path.to_string_lossy().ends_with(".jsonl.gz"), "{}", path.display());
        let mut text = String::new();
        flate2::read::MultiGzDecoder::new(std::fs::File::open(&path).unwrap()).read_to_string(&mut text).unwrap();
        out.extend(text.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()));
    }
    out
}

fn retention(backend: Backend, archive: Option<&Path>) -> Opts {
    let mut opts = Opts::new(backend).arg("--audit-retention-days").arg("30").arg("--jobs-interval-ms").arg("100");
    if let Some(dir) = archive {
        opts = opts.arg("--audit-archive-dir").arg(dir.to_str().unwrap());
    }
    opts
}

/// Without an archive dir: old entries go, the rest stay, the checkpoint
/// names the last pruned entry, and `verify` still answers verified.
async fn prune_only(backend: Backend) {
    let srv = Server::start_with(retention(backend, None)).await;
    let (tenant, admin) = tenant_with_trail(&srv).await;
    let before = count(&srv, "SELECT COUNT(*) FROM audit_log WHERE tenant_id = $1", &tenant).await;
    let (seq, hash) = age_chain_head(&srv, &tenant, 5).await;
    pruned(&srv, &tenant).await;
    assert_eq!(count(&srv, "SELECT COUNT(*) FROM audit_log WHERE tenant_id = $1", &tenant).await, before - 5);
    assert_eq!(count(&srv, "SELECT MIN(chain_seq) FROM audit_log WHERE tenant_id = $1", &tenant).await, 6);
    let cp = rows(&srv, "SELECT seq, hash, pruned_entries FROM audit_checkpoints WHERE chain = $1", &tenant).await;
    assert_eq!(cp, vec![vec![seq, hash, "5".to_owned()]]);
    verified(&srv, &admin).await;
}

/// `GET /api/v1/audit/verify` answers verified across the cut.
async fn verified(srv: &Server, admin: &str) {
    let (s, b) = srv.get("/api/v1/audit/verify", admin).await;
    assert_eq!((s, b["verified"].as_bool()), (200, Some(true)), "{b}");
}

/// With an archive dir: the pruned entries, legacy and chained, are in the
/// tenant's files, every column included, each once.
async fn prune_and_archive(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start_with(retention(backend, Some(dir.path()))).await;
    let (tenant, admin) = tenant_with_trail(&srv).await;
    let ids: Vec<String> = rows(&srv, "SELECT id FROM audit_log WHERE tenant_id = $1 AND chain_seq <= 4 ORDER BY chain_seq", &tenant)
        .await
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    insert_legacy(&srv, &tenant, 7).await;
    age_chain_head(&srv, &tenant, 4).await;
    pruned(&srv, &tenant).await;
    let lines = archived(&dir.path().join(&tenant));
    assert_eq!(lines.len(), 11, "{lines:?}");
    let chained: Vec<&Value> = lines.iter().filter(|l| !l["chainSeq"].is_null()).collect();
    assert_eq!(chained.iter().map(|l| l["id"].to_string()).collect::<Vec<_>>(), ids);
    for l in &chained {
        assert_eq!(l["chainHash"].as_str().map(str::len), Some(64), "{l}");
        assert_eq!(l["tenantId"], tenant.as_str());
        for col in ["at", "actor", "front", "action", "resourceType", "outcome", "client", "tool", "reason", "detail", "ip", "userAgent"] {
            assert!(l.get(col).is_some(), "{col} missing in {l}");
        }
    }
    assert_eq!(lines.iter().filter(|l| l["actor"] == "old-key").count(), 7);
    verified(&srv, &admin).await;
}

#[tokio::test]
async fn retention_on_sqlite() {
    prune_only(Backend::Sqlite).await;
    prune_and_archive(Backend::Sqlite).await;
}

#[tokio::test]
async fn retention_on_postgres() {
    prune_only(Backend::Postgres).await;
    prune_and_archive(Backend::Postgres).await;
}

/// Two servers on one PostgreSQL with one archive dir, and more old entries
/// than one batch: every entry is pruned and archived exactly once.
#[tokio::test]
async fn two_servers_prune_once() {
    let dir = tempfile::tempdir().unwrap();
    let first = Server::start_with(Opts::new(Backend::Postgres)).await;
    let tenant = unique("ret2");
    first.signup(&tenant).await;
    insert_legacy(&first, &tenant, 12_000).await;
    let url = first.database_url.clone().unwrap();
    drop(first);
    let mut a = retention(Backend::Postgres, Some(dir.path()));
    a.database_url = Some(url.clone());
    let mut b = retention(Backend::Postgres, Some(dir.path()));
    b.database_url = Some(url);
    let (a, b) = tokio::join!(Server::start_with(a), Server::start_with(b));
    pruned(&a, &tenant).await;
    let lines = archived(&dir.path().join(&tenant));
    let mut ids: Vec<String> = lines.iter().map(|l| l["id"].to_string()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!((lines.len(), ids.len()), (12_000, 12_000), "each pruned entry archived once");
    drop(b);
}
