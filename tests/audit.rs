//! A busy tenant's audit trail: every read appends an entry, so it runs to
//! hundreds of thousands of rows, yet each query does bounded work. A deep
//! offset is refused with a way forward, the total is exact up to 10,000 and
//! says "at least" past it, a search for a rare action walks the trail
//! window by window with a cursor, and a cursor walk neither skips nor
//! repeats entries while new ones arrive. On both databases, REST and MCP.
//!
//! Long trails are seeded with SQL straight into the test database, as
//! tools/bench seeds secrets: going through the API would take minutes.

mod common;

use common::{Backend, Server, unique};
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};
use sqlx::Connection;

/// Appends `n` entries to `tenant`'s trail, one millisecond apart and ending
/// a day ago (older than anything the server writes during the test), with
/// ids in time order. They are `secret.read`s, except that every `every`-th
/// (counting from the newest) is an `apikey.create`. Returns how many of those.
async fn seed(srv: &Server, tenant: &str, n: i64, every: i64) -> i64 {
    let first = chrono::Utc::now().timestamp_millis() - 86_400_000 - n;
    // i counts from the oldest, n - i from the newest (1 to n).
    let columns = "INSERT INTO audit_log (tenant_id, at, actor, front, action, resource_type, resource_id, outcome)";
    let values = "$1, $3 + i, 'seed', 'rest', \
                  CASE WHEN ($2 - i) % $4 = 0 THEN 'apikey.create' ELSE 'secret.read' END, \
                  CASE WHEN ($2 - i) % $4 = 0 THEN 'api_key' ELSE 'secret' END, 'seeded', 'success'";
    match &srv.database_url {
        None => {
            let url = format!("sqlite://{}", srv.data_dir.join(latchkey::store::sqlite::DB_FILE).display());
            let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
            let sql = format!(
                "{columns} WITH RECURSIVE c(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM c WHERE i < $2 - 1) SELECT {values} FROM c"
            );
            let q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(tenant).bind(n).bind(first).bind(every);
            q.execute(&mut db).await.unwrap();
        }
        Some(url) => {
            let mut db = sqlx::PgConnection::connect(url).await.unwrap();
            let sql = format!("{columns} SELECT {values} FROM generate_series(0::bigint, $2 - 1) AS i");
            let q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(tenant).bind(n).bind(first).bind(every);
            q.execute(&mut db).await.unwrap();
            // As after autovacuum: the planner knows the table's size.
            sqlx::query("ANALYZE audit_log").execute(&mut db).await.unwrap();
        }
    }
    n / every
}

fn code(v: &Value) -> &str {
    v["code"].as_str().unwrap_or_default()
}

fn ids(page: &Value) -> Vec<i64> {
    page["logs"].as_array().unwrap().iter().map(|e| e["id"].as_i64().unwrap()).collect()
}

/// Where each entry of a page stands in the trail's order (time, then id).
fn positions(page: &Value) -> Vec<(i64, i64)> {
    let at = |e: &Value| chrono::DateTime::parse_from_rfc3339(e["timestamp"].as_str().unwrap()).unwrap().timestamp_millis();
    page["logs"].as_array().unwrap().iter().map(|e| (at(e), e["id"].as_i64().unwrap())).collect()
}

/// Strictly newest first: sorted and without repeats.
fn newest_first(all: &[(i64, i64)]) -> bool {
    all.windows(2).all(|w| w[0] > w[1])
}

/// Follows `nextCursor` from the first page of `query` (at most `pages`
/// pages); returns every page.
async fn walk(srv: &Server, key: &str, query: &str, pages: usize) -> Vec<Value> {
    let (s, mut page) = srv.get(&format!("/api/v1/audit?{query}"), key).await;
    assert_eq!(s, 200, "{page}");
    let mut all = vec![];
    for _ in 0..pages {
        let next = page["nextCursor"].as_str().map(str::to_owned);
        assert_eq!(page["hasMore"], next.is_some(), "hasMore says whether there is a cursor: {page}");
        all.push(page);
        let Some(cursor) = next else { return all };
        let (s, p) = srv.get(&format!("/api/v1/audit?{query}&cursor={cursor}"), key).await;
        assert_eq!(s, 200, "{p}");
        page = p;
    }
    panic!("{query}: still more after {pages} pages");
}

async fn deep_offsets(backend: Backend) {
    let srv = Server::start(backend).await;
    let key = srv.signup(&unique("audit")).await;

    // Offsets up to 10,000 are served.
    let (s, page) = srv.get("/api/v1/audit?offset=10000", &key).await;
    assert_eq!((s, page["offset"].as_i64()), (200, Some(10000)), "{page}");

    // A deeper one is refused with the stable code and a way forward.
    let (s, body) = srv.get("/api/v1/audit?offset=10001&action=secret.read", &key).await;
    assert_eq!((s, code(&body)), (400, "INVALID_REQUEST"), "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("startDate") && message.contains("cursor"), "says how to go deeper: {message}");
    let (s, body) = srv.get("/api/v1/audit/logs?offset=2000000000", &key).await;
    assert_eq!((s, code(&body)), (400, "INVALID_REQUEST"), "the SDK path too: {body}");

    // A cursor is one the server issued, and replaces the offset.
    let (s, body) = srv.get("/api/v1/audit?cursor=not-a-cursor", &key).await;
    assert_eq!((s, code(&body)), (400, "INVALID_REQUEST"), "{body}");
    let (_, first) = srv.get("/api/v1/audit?limit=1", &key).await;
    let cursor = first["nextCursor"].as_str().expect("more than one entry, so a cursor").to_owned();
    let (s, body) = srv.get(&format!("/api/v1/audit?limit=1&offset=1&cursor={cursor}"), &key).await;
    assert_eq!((s, code(&body)), (400, "INVALID_REQUEST"), "{body}");

    // The agent's front says the same.
    let config = StreamableHttpClientTransportConfig::with_uri(srv.url("/mcp")).auth_header(key.clone());
    let mcp = ().serve(StreamableHttpClientTransport::from_config(config)).await.expect("MCP handshake");
    let args = json!({ "offset": 10001 }).as_object().unwrap().clone();
    let r = mcp.call_tool(CallToolRequestParams::new("query_audit").with_arguments(args)).await.unwrap();
    assert_eq!(r.is_error, Some(true));
    let text = &r.content[0].as_text().unwrap().text;
    assert_eq!(code(&serde_json::from_str(text).unwrap()), "INVALID_REQUEST", "{text}");
}

#[tokio::test]
async fn a_deep_offset_is_refused_with_a_way_forward_on_sqlite() {
    deep_offsets(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_deep_offset_is_refused_with_a_way_forward_on_postgres() {
    deep_offsets(Backend::Postgres).await;
}

async fn bounded_total(backend: Backend) {
    let srv = Server::start(backend).await;
    let tenant = unique("audit");
    let key = srv.signup(&tenant).await;
    // With the signup entry, 9,999 entries. Each query's own entry comes after its count.
    seed(&srv, &tenant, 9_998, i64::MAX).await;

    let (_, page) = srv.get("/api/v1/audit?limit=10", &key).await;
    assert_eq!((page["total"].as_i64(), page["totalIsLowerBound"].as_bool()), (Some(9_999), Some(false)), "exact: {page}");
    let (_, page) = srv.get("/api/v1/audit?limit=10", &key).await;
    assert_eq!((page["total"].as_i64(), page["totalIsLowerBound"].as_bool()), (Some(10_000), Some(false)), "exact: {page}");
    let (_, page) = srv.get("/api/v1/audit?limit=10", &key).await;
    assert_eq!((page["total"].as_i64(), page["totalIsLowerBound"].as_bool()), (Some(10_000), Some(true)), "at least: {page}");
    assert_eq!((page["hasMore"].as_bool(), ids(&page).len()), (Some(true), 10));

    // Filters count the same way.
    let (_, reads) = srv.get("/api/v1/audit?action=secret.read&limit=1", &key).await;
    assert_eq!((reads["total"].as_i64(), reads["totalIsLowerBound"].as_bool()), (Some(9_998), Some(false)), "{reads}");
    let (_, signups) = srv.get("/api/v1/audit?resourceType=tenant", &key).await;
    assert_eq!(
        (signups["total"].as_i64(), signups["totalIsLowerBound"].as_bool(), signups["hasMore"].as_bool()),
        (Some(1), Some(false), Some(false))
    );
    assert_eq!(signups["logs"][0]["action"], "tenant.signup");
}

#[tokio::test]
async fn the_total_is_exact_up_to_ten_thousand_and_a_lower_bound_past_it_on_sqlite() {
    bounded_total(Backend::Sqlite).await;
}

#[tokio::test]
async fn the_total_is_exact_up_to_ten_thousand_and_a_lower_bound_past_it_on_postgres() {
    bounded_total(Backend::Postgres).await;
}

async fn rare_action(backend: Backend) {
    let srv = Server::start(backend).await;
    let tenant = unique("audit");
    let key = srv.signup(&tenant).await;
    // 250,000 reads with one key creation in every 20,000 entries.
    let created = seed(&srv, &tenant, 250_000, 20_000).await;
    assert_eq!(created, 12);

    // The first page looks at the newest 100,000 entries only: it finds
    // some of the key creations, counts them as "at least", and says
    // there may be more.
    let (_, first) = srv.get("/api/v1/audit?action=apikey.create&limit=100", &key).await;
    let found = ids(&first).len() as i64;
    assert!((1..created).contains(&found), "some, not all: {first}");
    assert_eq!((first["total"].as_i64(), first["totalIsLowerBound"].as_bool()), (Some(found), Some(true)), "{first}");
    assert_eq!(first["hasMore"], true, "{first}");

    // Following the cursor finds every one exactly once, newest first.
    let pages = walk(&srv, &key, "action=apikey.create&limit=10", 20).await;
    let all: Vec<(i64, i64)> = pages.iter().flat_map(positions).collect();
    assert_eq!(all.len() as i64, created, "{pages:?}");
    assert!(newest_first(&all), "newest first, no repeats: {all:?}");
    assert!(pages.iter().any(|p| p["hasMore"] == true && ids(p).len() < 10), "a page ends where its scan did");

    // The agent's front walks the same way, here with pages that fill up
    // before their window ends.
    let config = StreamableHttpClientTransportConfig::with_uri(srv.url("/mcp")).auth_header(key.clone());
    let mcp = ().serve(StreamableHttpClientTransport::from_config(config)).await.expect("MCP handshake");
    let (mut by_mcp, mut args, mut done) = (vec![], json!({ "action": "apikey.create", "resourceType": "api_key", "limit": 4 }), false);
    for _ in 0..20 {
        let params = CallToolRequestParams::new("query_audit").with_arguments(args.as_object().unwrap().clone());
        let page = mcp.call_tool(params).await.unwrap().structured_content.expect("a page");
        assert!(ids(&page).len() <= 4);
        by_mcp.extend(positions(&page));
        let Some(cursor) = page["nextCursor"].as_str() else {
            done = true;
            break;
        };
        args["cursor"] = json!(cursor);
    }
    assert!(done);
    assert_eq!(by_mcp, all);
}

#[tokio::test]
async fn a_rare_action_in_a_long_trail_is_found_window_by_window_on_sqlite() {
    rare_action(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_rare_action_in_a_long_trail_is_found_window_by_window_on_postgres() {
    rare_action(Backend::Postgres).await;
}

async fn cursor_walk(backend: Backend) {
    let srv = Server::start(backend).await;
    let tenant = unique("audit");
    let key = srv.signup(&tenant).await;
    seed(&srv, &tenant, 250, i64::MAX).await;
    let (_, secret) = srv.post("/api/v1/secrets", &key, json!({ "name": "DB_PASSWORD", "value": "v" })).await;
    let read = format!("/api/v1/secrets/{}", secret["id"].as_str().unwrap());

    // An auditor pages back through the trail while the application keeps
    // reading (each read, and each page, adds an entry at the top).
    let (_, mut page) = srv.get("/api/v1/audit?limit=100", &key).await;
    let expected = page["total"].as_i64().unwrap();
    let mut seen = positions(&page);
    for _ in 0..10 {
        let Some(cursor) = page["nextCursor"].as_str().map(str::to_owned) else { break };
        for _ in 0..3 {
            assert_eq!(srv.get(&read, &key).await.0, 200);
        }
        page = srv.get(&format!("/api/v1/audit?limit=100&cursor={cursor}"), &key).await.1;
        assert!(ids(&page).len() <= 100);
        seen.extend(positions(&page));
    }
    assert_eq!(page["hasMore"], false, "the walk reached the signup: {page}");
    // What there was when the walk began (the seeded entries, the signup,
    // the secret's creation): nothing skipped or repeated.
    assert!(expected > 250, "{expected}");
    assert_eq!(seen.len() as i64, expected, "{seen:?}");
    assert!(newest_first(&seen), "newest first: {seen:?}");
}

#[tokio::test]
async fn a_cursor_walk_skips_and_repeats_nothing_while_entries_arrive_on_sqlite() {
    cursor_walk(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_cursor_walk_skips_and_repeats_nothing_while_entries_arrive_on_postgres() {
    cursor_walk(Backend::Postgres).await;
}

/// `usage.apiCallsThisMonth` is the month's audit entries, counted once per
/// process and then only from where the last count settled: however long the
/// month's trail, a count scans only its last minute or so. Entries older than
/// that which appear later (planted here behind the server's back) are not
/// scanned again, until a fresh process counts the whole month.
///
/// The counts start over when a month turns (UTC): a run that a month's end
/// crossed proves nothing and is run once more, which no month's end can
/// cross again.
async fn monthly_count(backend: Backend) {
    let month = || {
        use chrono::{Datelike, TimeZone};
        let now = chrono::Utc::now();
        chrono::Utc.with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0).unwrap().timestamp_millis()
    };
    for run in 1..=2 {
        let started_in = month();
        match tokio::spawn(monthly_count_once(backend)).await {
            Ok(()) => return,
            Err(e) if run == 1 && e.is_panic() && month() != started_in => continue,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("{e}"),
        }
    }
}

async fn monthly_count_once(backend: Backend) {
    // Planted entries must be of this month and over a minute older than the
    // server's last count, so a run in a month's first two minutes waits
    // until the month is two minutes old (a wait of the calendar, not of the
    // machine).
    let month_start = {
        use chrono::{Datelike, TimeZone};
        let now = chrono::Utc::now();
        chrono::Utc.with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0).unwrap().timestamp_millis()
    };
    let wait = month_start + 120_000 - chrono::Utc::now().timestamp_millis();
    if wait > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(wait as u64)).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let opts = || common::Opts { data_dir: Some(dir.path().to_path_buf()), ..common::Opts::new(backend) };
    let srv = Server::start_with(opts()).await;
    let tenant = unique("usage");
    let key = srv.signup(&tenant).await;
    let (_, made) = srv.post("/api/v1/secrets", &key, json!({ "name": "COUNTED", "value": "v" })).await;
    let path = format!("/api/v1/secrets/{}", made["id"].as_str().unwrap());
    let calls = async |srv: &Server| {
        let (s, plan) = srv.get("/api/v1/plan", &key).await;
        assert_eq!(s, 200, "{plan}");
        plan["usage"]["apiCallsThisMonth"].as_i64().unwrap()
    };
    let reads = async |srv: &Server, n: usize| {
        for _ in 0..n {
            assert_eq!(srv.get(&path, &key).await.0, 200);
        }
    };
    // Right after start one read may be on record twice (on PostgreSQL the
    // cache's first notice that its change feed is up makes a read served
    // from the cache look again in the database, and both reads happened),
    // so the counting starts after one.
    reads(&srv, 1).await;
    let first = calls(&srv).await;
    assert!(first >= 3, "the signup, the create and the read are this month's: {first}");
    reads(&srv, 5).await;
    let second = calls(&srv).await;
    assert_eq!(second - first, 5, "each read is one call");
    reads(&srv, 7).await;
    // The server settles what is over a minute older than its count, and it
    // counts after this moment (the same clock): entries planted 61 s before
    // it are settled, however long anything takes, and of this month.
    let before_count = chrono::Utc::now().timestamp_millis();
    let third = calls(&srv).await;
    assert_eq!(third - second, 7);

    // Old entries of this month (settled) planted now.
    let old = before_count - 61_000;
    assert!(old >= month_start, "planted in this month");
    let plant = "INSERT INTO audit_log (tenant_id, at, actor, front, action, resource_type, resource_id, outcome) \
                 SELECT $1, $2, 'planted', 'rest', 'secret.read', 'secret', 'planted', 'success' FROM secret_versions LIMIT 1";
    for _ in 0..40 {
        match &srv.database_url {
            None => {
                let url = format!("sqlite://{}", srv.data_dir.join(latchkey::store::sqlite::DB_FILE).display());
                let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
                sqlx::query(plant).bind(&tenant).bind(old).execute(&mut db).await.unwrap();
            }
            Some(url) => {
                let mut db = sqlx::PgConnection::connect(url).await.unwrap();
                sqlx::query(plant).bind(&tenant).bind(old).execute(&mut db).await.unwrap();
            }
        }
    }
    // One read, which another process's write makes look twice on SQLite
    // (as above: the cache is found stale and the read done again).
    reads(&srv, 1).await;
    let after = calls(&srv).await;
    assert!((1..=2).contains(&(after - third)), "the settled part is not scanned again: {third} → {after}");
    reads(&srv, 3).await;
    let counted = calls(&srv).await;
    assert_eq!(counted - after, 3);
    let database_url = srv.database_url.clone();
    assert_eq!(srv.stop(), Some(0));

    let srv = Server::start_with(common::Opts { database_url, ..opts() }).await;
    assert_eq!(calls(&srv).await, counted + 40, "a fresh process counts the whole month, the planted entries too");
}

#[tokio::test]
async fn the_monthly_count_scans_only_what_is_new_on_sqlite() {
    monthly_count(Backend::Sqlite).await;
}

#[tokio::test]
async fn the_monthly_count_scans_only_what_is_new_on_postgres() {
    monthly_count(Backend::Postgres).await;
}

/// The export's status, content type and body.
async fn export(srv: &Server, key: &str, query: &str) -> (u16, String, String) {
    let resp = srv.http.get(srv.url(&format!("/api/v1/audit/export?{query}"))).header("X-API-Key", key).send().await.unwrap();
    let status = resp.status().as_u16();
    let content_type = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    (status, content_type, resp.text().await.unwrap())
}

async fn exports(backend: Backend) {
    let srv = Server::start(backend).await;
    let tenant = unique("export");
    let key = srv.signup(&tenant).await;
    // Three of the export's pages, and a client that names itself with a
    // spreadsheet formula.
    seed(&srv, &tenant, 2_500, 7).await;
    let (_, made) = srv.post("/api/v1/secrets", &key, json!({ "name": "DB_URL", "value": "postgres://x" })).await;
    let formula = "=HYPERLINK(\"http://evil.example\",\"open\")";
    let read = srv.url(&format!("/api/v1/secrets/{}", made["secretId"].as_str().unwrap()));
    let resp = srv.http.get(read).header("X-API-Key", &key).header("user-agent", formula).send().await.unwrap();
    assert_eq!(resp.status(), 200);

    // JSON: the whole trail, as a cursor walk of the query API sees it,
    // with the walk's own entries and the export's on top.
    let walked: Vec<(i64, i64)> = walk(&srv, &key, "limit=1000", 10).await.iter().flat_map(positions).collect();
    assert!(walked.len() > 2_500);
    let (s, content_type, body) = export(&srv, &key, "").await;
    assert_eq!((s, content_type.as_str()), (200, "application/json"), "{body:.300}");
    let json: Value = serde_json::from_str(&body).expect("a complete JSON document");
    let exported = positions(&json);
    assert_eq!(json["count"].as_u64(), Some(exported.len() as u64));
    assert!(newest_first(&exported));
    assert!(exported.len() > walked.len(), "{} exported, {} walked", exported.len(), walked.len());
    let newer = exported.len() - walked.len();
    assert_eq!(exported[newer..], walked[..], "every entry once, in the walk's order");
    let actions: Vec<&str> = json["logs"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions[0], "audit.export", "its own entry, written before the first page");
    assert!(actions[1..newer].iter().all(|a| *a == "audit.query"), "{:?}", &actions[..newer]);
    let entry = |id: i64| json["logs"].as_array().unwrap().iter().find(|e| e["id"] == id).unwrap().clone();
    let read_entry = json["logs"].as_array().unwrap().iter().find(|e| e["action"] == "secret.read").unwrap();
    assert_eq!(read_entry["userAgent"], formula, "JSON keeps what the client sent");

    // CSV: the same entries, one more export on top; a formula stays text.
    let (s, content_type, body) = export(&srv, &key, "format=csv").await;
    assert_eq!((s, content_type.as_str()), (200, "text/csv; charset=utf-8"), "{body:.300}");
    let mut csv = csv::Reader::from_reader(body.as_bytes());
    let header: Vec<String> = csv.headers().unwrap().iter().map(str::to_owned).collect();
    assert_eq!(
        header,
        [
            "id",
            "timestamp",
            "action",
            "resourceType",
            "resourceId",
            "actor",
            "front",
            "outcome",
            "ipAddress",
            "userAgent",
            "detail",
            "client",
            "tool",
            "reason"
        ]
    );
    let rows: Vec<csv::StringRecord> = csv.records().map(Result::unwrap).collect();
    let csv_ids: Vec<i64> = rows.iter().map(|r| r[0].parse().unwrap()).collect();
    assert_eq!(&rows[0][2], "audit.export");
    assert_eq!(csv_ids[1..], exported.iter().map(|p| p.1).collect::<Vec<_>>()[..]);
    let read_row = rows.iter().find(|r| &r[2] == "secret.read" && &r[5] != "seed").unwrap();
    assert_eq!(&read_row[9], format!("'{formula}"));
    let same = entry(read_row[0].parse().unwrap());
    assert_eq!(serde_json::from_str::<Value>(&read_row[10]).unwrap(), same["detail"], "detail as JSON text");
    assert_eq!(&read_row[1], same["timestamp"].as_str().unwrap());
    assert_eq!(&read_row[8], "127.0.0.1");
    // The client is the User-Agent here (no MCP client), and as guarded.
    assert_eq!(&read_row[11], format!("'{formula}"));

    // Filters as for the query API. A rare action in a long trail: its
    // pages end at each scan window, most of them empty, and the export
    // reads on until the trail ends.
    let rare = unique("export-rare");
    let rare_key = srv.signup(&rare).await;
    let created = seed(&srv, &rare, 250_000, 20_000).await;
    let (s, _, body) = export(&srv, &rare_key, "action=apikey.create").await;
    assert_eq!(s, 200, "{body:.300}");
    let json: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["count"].as_i64(), Some(created), "{json}");
    assert!(newest_first(&positions(&json)));
    assert!(json["logs"].as_array().unwrap().iter().all(|e| e["action"] == "apikey.create" && e["actor"] == "seed"));
    let (_, _, body) = export(&srv, &rare_key, "format=csv&action=apikey.create&endDate=2000-01-01").await;
    assert_eq!(body.lines().count(), 1, "nothing that old, only the header: {body}");

    // Only a tenant-wide admin key exports; a bad format is refused.
    let (_, ro) = srv.post("/api/v1/api-keys", &key, json!({ "name": "reader", "permissions": "read" })).await;
    let (s, _, body) = export(&srv, ro["apiKey"].as_str().unwrap(), "").await;
    assert_eq!((s, code(&serde_json::from_str(&body).unwrap())), (403, "SCOPE_DENIED"), "{body}");
    let (s, _, body) = export(&srv, &key, "format=xml").await;
    assert_eq!((s, code(&serde_json::from_str(&body).unwrap())), (400, "INVALID_REQUEST"), "{body}");
    let (_, denied) = srv.get("/api/v1/audit?action=audit.export&limit=10", &key).await;
    assert!(denied["logs"].as_array().unwrap().iter().any(|e| e["outcome"] == "denied"), "the refusal is in the trail: {denied}");
}

#[tokio::test]
async fn the_trail_exports_whole_as_json_and_csv_on_sqlite() {
    exports(Backend::Sqlite).await;
}

#[tokio::test]
async fn the_trail_exports_whole_as_json_and_csv_on_postgres() {
    exports(Backend::Postgres).await;
}

/// An export that fails part-way ends as a broken transfer, never as a
/// shorter document that parses: here PostgreSQL goes away between two of
/// its pages.
#[tokio::test]
async fn an_export_cut_short_never_looks_whole() {
    let srv = Server::start(Backend::Postgres).await;
    let tenant = unique("export-cut");
    let key = srv.signup(&tenant).await;
    // ~60 MB of JSON: far more than the sockets between the two hold.
    seed(&srv, &tenant, 250_000, 20_000).await;
    let mut resp = srv.http.get(srv.url("/api/v1/audit/export")).header("X-API-Key", &key).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut received = resp.chunk().await.unwrap().expect("a first chunk").len();

    // The database ends the server's sessions and refuses new ones.
    let url = srv.database_url.clone().unwrap();
    let db = url.rsplit('/').next().unwrap().to_owned();
    let mut admin = sqlx::PgConnection::connect(common::pg_admin_url()).await.unwrap();
    let allow = |on: bool| format!("ALTER DATABASE \"{db}\" WITH ALLOW_CONNECTIONS {on}");
    sqlx::query(sqlx::AssertSqlSafe(allow(false))).execute(&mut admin).await.unwrap();
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()")
        .bind(&db)
        .execute(&mut admin)
        .await
        .unwrap();
    let mut tail = Vec::new();
    let ended = loop {
        match tokio::time::timeout(std::time::Duration::from_secs(30), resp.chunk()).await.expect("the export stalled") {
            Ok(Some(chunk)) => {
                received += chunk.len();
                tail = chunk.to_vec();
            }
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    sqlx::query(sqlx::AssertSqlSafe(allow(true))).execute(&mut admin).await.unwrap();
    assert!(ended.is_err(), "the transfer ended as if whole after {received} bytes");
    assert!(received < 250_000 * 200, "it stopped part-way: {received} bytes");
    assert!(!String::from_utf8_lossy(&tail).contains("],\"count\":"), "no end of the document");
}
