//! Test harness: starts the real `latchkey` binary on a free loopback port,
//! against a fresh SQLite data dir or a fresh PostgreSQL database, and talks to
//! it over HTTP like any client would.
#![allow(dead_code)]

pub mod mcp_client;
pub mod pg_proxy;
pub mod sc;
pub mod store_rows;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;
use sqlx::Connection;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The fixed master key the tests use unless they say otherwise (base64 of 32 bytes).
pub const TEST_MASTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

pub struct Opts {
    pub backend: Backend,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Reuse a data dir / database (restart tests).
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
}

impl Opts {
    pub fn new(backend: Backend) -> Self {
        Opts {
            backend,
            args: vec![],
            // Defaults through env so a test's own flag overrides them.
            env: vec![
                ("LATCHKEY_MASTER_KEY".into(), TEST_MASTER_KEY.into()),
                ("LATCHKEY_SIGNUP_PER_MINUTE".into(), "10000".into()),
                // Tests send many bad credentials on purpose; the throttle has tests of its own.
                ("LATCHKEY_AUTH_FAILURES_PER_MINUTE".into(), "1000000".into()),
                ("LATCHKEY_DEFAULT_PLAN".into(), "unlimited".into()),
            ],
            data_dir: None,
            database_url: None,
        }
    }
    pub fn arg(mut self, a: &str) -> Self {
        self.args.push(a.into());
        self
    }
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.retain(|(key, _)| key != k);
        self.env.push((k.into(), v.into()));
        self
    }
    pub fn without_env(mut self, k: &str) -> Self {
        self.env.retain(|(key, _)| key != k);
        self
    }
}

pub struct Server {
    child: Child,
    pub base: String,
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    _tmp: Option<tempfile::TempDir>,
    pub http: reqwest::Client,
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_latchkey")
}

/// The URL of a PostgreSQL server for tests: `LATCHKEY_TEST_DATABASE_URL`, or
/// one `tools/pg-up` starts (installing PostgreSQL if the machine lacks it).
pub fn pg_admin_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(u) = std::env::var("LATCHKEY_TEST_DATABASE_URL") {
            return u;
        }
        let out = Command::new("bash")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/pg-up"))
            .stderr(Stdio::inherit())
            .output()
            .expect("run tools/pg-up");
        assert!(out.status.success(), "tools/pg-up failed");
        String::from_utf8(out.stdout).unwrap().trim().lines().last().expect("a URL").to_owned()
    })
}

/// A Python with the external clients installed: `LATCHKEY_TEST_PYTHON`, or
/// the virtualenv `tools/py-venv` makes.
pub fn python() -> &'static str {
    static PY: OnceLock<String> = OnceLock::new();
    PY.get_or_init(|| std::env::var("LATCHKEY_TEST_PYTHON").unwrap_or_else(|_| tool_output("py-venv")))
}

fn tool_output(tool: &str) -> String {
    let out = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tools").join(tool))
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("run tools/{tool}: {e}"));
    assert!(out.status.success(), "tools/{tool} failed");
    String::from_utf8(out.stdout).unwrap().trim().lines().last().expect("one line of output").to_owned()
}

/// A new, empty database on the test PostgreSQL server, named
/// `lk_test_<unix seconds>_<uuid>`. Tests do not drop their databases (a test
/// may start a second server on one after the first has stopped), so the
/// first call in each test binary drops those older than `STALE_AFTER`,
/// which no test run still uses.
pub async fn fresh_pg_database() -> String {
    const STALE_AFTER: Duration = Duration::from_secs(6 * 3600);
    static SWEPT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let admin = pg_admin_url();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let name = format!("lk_test_{now}_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(admin).await.expect("connect to test PostgreSQL");
    if !SWEPT.swap(true, std::sync::atomic::Ordering::SeqCst) {
        let names: Vec<String> = sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'lk\\_test\\_%'")
            .fetch_all(&mut conn)
            .await
            .unwrap_or_default();
        for old in names {
            // Names from before the timestamp count as stale too.
            let born = old.strip_prefix("lk_test_").and_then(|rest| rest.split('_').next()?.parse::<u64>().ok()).unwrap_or(0);
            if now.saturating_sub(born) > STALE_AFTER.as_secs() {
                // Fails harmlessly if something still holds it open.
                let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{old}\""))).execute(&mut conn).await;
            }
        }
    }
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await.expect("create database");
    conn.close().await.ok();
    let (base, _) = admin.rsplit_once('/').expect("URL with a database");
    format!("{base}/{name}")
}

impl Server {
    pub async fn start(backend: Backend) -> Server {
        Self::start_with(Opts::new(backend)).await
    }

    pub async fn start_with(opts: Opts) -> Server {
        Self::try_start(opts).await.unwrap_or_else(|e| panic!("server did not start: {e}"))
    }

    /// Starts the server; `Err` carries its stderr when it exits instead.
    #[allow(clippy::zombie_processes)] // the error path waits; `Drop` reaps the rest
    pub async fn try_start(opts: Opts) -> Result<Server, String> {
        let (tmp, data_dir) = match &opts.data_dir {
            Some(d) => (None, d.clone()),
            None => {
                let t = tempfile::tempdir().unwrap();
                let p = t.path().to_path_buf();
                (Some(t), p)
            }
        };
        let database_url = match (opts.backend, &opts.database_url) {
            (Backend::Postgres, None) => Some(fresh_pg_database().await),
            (_, url) => url.clone(),
        };
        let mut cmd = Command::new(bin());
        cmd.arg("serve").arg("--listen").arg("127.0.0.1:0").arg("--data-dir").arg(&data_dir).args(&opts.args);
        cmd.env_remove("DATABASE_URL").env_remove("LATCHKEY_MASTER_KEY").env_remove("LATCHKEY_PASSPHRASE");
        cmd.env("LATCHKEY_LOG", "warn");
        if let Some(url) = &database_url {
            cmd.env("DATABASE_URL", url);
        }
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let stderr_path = data_dir.join("stderr.log");
        std::fs::create_dir_all(&data_dir).unwrap();
        cmd.stdout(Stdio::piped()).stderr(std::fs::File::create(&stderr_path).unwrap());
        let mut child = cmd.spawn().expect("spawn latchkey");
        let stdout = child.stdout.take().unwrap();
        let line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).map(|_| line)
        });
        let line = tokio::time::timeout(Duration::from_secs(60), line)
            .await
            .map_err(|_| "no listening line within 60 s".to_string())?
            .unwrap()
            .unwrap();
        let Some(base) = line.trim().strip_prefix("latchkey listening on ").map(str::to_owned) else {
            let _ = child.wait();
            return Err(std::fs::read_to_string(&stderr_path).unwrap_or_default());
        };
        let http = reqwest::Client::builder()
            .no_proxy()
            .user_agent("latchkey-tests")
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        Ok(Server { child, base, data_dir, database_url, _tmp: tmp, http })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a request; returns status and JSON body (`Value::Null` when not JSON).
    pub async fn call(&self, method: &str, path: &str, key: Option<&str>, body: Option<Value>) -> (u16, Value) {
        let (status, _, body) = self.call_full(method, path, key, body).await;
        (status, body)
    }

    pub async fn call_full(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut req = self.http.request(method.parse().unwrap(), self.url(path));
        if let Some(k) = key {
            req = req.header("X-API-Key", k);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        (status, headers, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str, key: &str) -> (u16, Value) {
        self.call("GET", path, Some(key), None).await
    }
    pub async fn post(&self, path: &str, key: &str, body: Value) -> (u16, Value) {
        self.call("POST", path, Some(key), Some(body)).await
    }
    pub async fn put(&self, path: &str, key: &str, body: Value) -> (u16, Value) {
        self.call("PUT", path, Some(key), Some(body)).await
    }
    pub async fn delete(&self, path: &str, key: &str) -> (u16, Value) {
        self.call("DELETE", path, Some(key), None).await
    }

    /// Signs up `tenant` and returns its admin key.
    pub async fn signup(&self, tenant: &str) -> String {
        let (status, body) = self.call("POST", "/api/signup", None, Some(serde_json::json!({ "tenantId": tenant }))).await;
        assert_eq!(status, 201, "signup {tenant}: {body}");
        body["apiKey"].as_str().unwrap().to_owned()
    }

    /// SIGTERM, then wait (bounded) for a clean exit; returns the exit code.
    pub fn stop(mut self) -> Option<i32> {
        Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status().unwrap();
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child.kill().ok();
        self.child.wait().ok();
        None
    }

    /// Runs one statement on the server's database from outside, as a
    /// hand-edited or damaged database would look to it; `$1`, `$2`... bind
    /// `args` as text. Returns the rows affected.
    pub async fn sql(&self, sql: &str, args: &[&str]) -> u64 {
        macro_rules! run {
            ($conn:expr) => {{
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()));
                for a in args {
                    q = q.bind(a.to_string());
                }
                q.execute(&mut $conn).await.expect("statement").rows_affected()
            }};
        }
        match &self.database_url {
            None => {
                let url = format!("sqlite://{}", self.data_dir.join("latchkey.db").display());
                let mut conn = sqlx::SqliteConnection::connect(&url).await.expect("open SQLite");
                run!(conn)
            }
            Some(url) => {
                let mut conn = sqlx::PgConnection::connect(url).await.expect("connect PostgreSQL");
                run!(conn)
            }
        }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("stderr.log")).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `latchkey mcp` on the SQLite data dir `dir` with the test master key, no
/// API key and no database URL, stdin and stdout piped for JSON-RPC, stderr
/// dropped. Callers add what their story needs and spawn it.
pub fn mcp_stdio(dir: &Path) -> Command {
    let mut cmd = Command::new(bin());
    cmd.args(["mcp", "--data-dir"])
        .arg(dir)
        .env("LATCHKEY_MASTER_KEY", TEST_MASTER_KEY)
        .env_remove("LATCHKEY_API_KEY")
        .env_remove("DATABASE_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    cmd
}

/// `latchkey owner add` on the server's database, as the operator runs it:
/// (sign-in link, owner token). `base`: the URL the links name.
pub fn owner_add(srv: &Server, tenant: &str, name: &str, base: &str) -> (String, String) {
    let mut cmd = Command::new(bin());
    cmd.args(["owner", "add", "--tenant", tenant, "--name", name, "--public-url", base, "--data-dir"])
        .arg(&srv.data_dir)
        .env_remove("DATABASE_URL")
        .env("LATCHKEY_MASTER_KEY", TEST_MASTER_KEY)
        .env("LATCHKEY_LOG", "warn");
    if let Some(url) = &srv.database_url {
        cmd.env("DATABASE_URL", url);
    }
    let out = cmd.output().expect("run latchkey owner add");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "owner add: {text} {}", String::from_utf8_lossy(&out.stderr));
    let after = |label: &str| text.lines().find_map(|l| l.split_once(label).map(|(_, v)| v.trim().to_owned())).expect(label);
    (after("(one use, 24 h):"), after("(shown once):"))
}

/// Where a browser story saves its screenshots: target/screenshots/{sqlite|postgres}.
pub fn screenshots(backend: Backend) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots").join(format!("{backend:?}").to_lowercase())
}

/// Runs a story of `tools/browser/` (`script`) in Debian's chromium through
/// `tools/browser/run`, with `config` as its input; answers the JSON object
/// its last line printed (what it saw).
pub fn browser_story(script: &str, config: &Value) -> Value {
    let out = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/browser/run"))
        .arg(script)
        .env("LK_BROWSER", config.to_string())
        .output()
        .expect("run tools/browser/run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "browser story {script} failed:\n{stdout}\n{stderr}");
    serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"))
}

/// A tenant id no other test (or earlier run on a shared database) uses.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", &uuid::Uuid::new_v4().simple().to_string()[..10])
}
