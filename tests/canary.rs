//! The canary sweep of issue 25: secrets in all three exposure modes, then
//! every read and every use through both fronts (REST, MCP over HTTP and
//! stdio, `latchkey run`), then a search of every answer, tool result and
//! log line for each canary raw, base64, hex and URL-encoded. The only
//! place a value may appear is an explicit read of a `reveal` secret; a
//! masked or use_only value appears nowhere.

mod common;

use std::path::Path;

use base64::Engine;
use common::mcp_client::{Client, call, connect as mcp_client};
use common::{Backend, Opts, Server, TEST_MASTER_KEY, unique};
use rmcp::ServiceExt;
use serde_json::{Value, json};

fn canary(tag: &str) -> String {
    format!("CNRY-{tag}-p@ss/w+rd:{}", uuid::Uuid::new_v4().simple())
}

/// Every form a value is searched in: raw, base64 (standard and URL-safe,
/// at each of the three alignments), hex in either case, URL-encoded.
fn forms(value: &str) -> Vec<String> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};
    let b = value.as_bytes();
    let mut out = vec![value.to_owned()];
    for k in 0..3 {
        let sub = &b[k..];
        let sub = &sub[..sub.len() - sub.len() % 3];
        out.push(STANDARD.encode(sub));
        out.push(URL_SAFE.encode(sub));
    }
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    out.push(hex.to_uppercase());
    out.push(hex);
    out.push(
        b.iter()
            .map(|&x| if x.is_ascii_alphanumeric() || b"-._~".contains(&x) { (x as char).to_string() } else { format!("%{x:02X}") })
            .collect(),
    );
    out
}

/// Everything the clients were answered, each marked with the one value it
/// may carry (an explicit read of a reveal secret), if any.
#[derive(Default)]
struct Seen(Vec<(String, String, Option<&'static str>)>);

impl Seen {
    fn add(&mut self, what: impl Into<String>, text: impl Into<String>) {
        self.0.push((what.into(), text.into(), None));
    }
    fn reveal(&mut self, what: impl Into<String>, text: impl Into<String>) {
        self.0.push((what.into(), text.into(), Some("REVEAL")));
    }
}

/// A loopback upstream for the proxy: answers with everything it received
/// (the credential included), raw and base64, and in a header.
async fn echo_server() -> String {
    use axum::extract::Request;
    async fn echo(req: Request) -> axum::response::Response {
        let (parts, body) = req.into_parts();
        let body = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
        let got = format!("{} {}\n{:?}\n{}", parts.method, parts.uri, parts.headers, String::from_utf8_lossy(&body));
        let auth = parts.headers.get("x-api-key").cloned().unwrap_or(axum::http::HeaderValue::from_static("none"));
        let out = format!("{got}\n{}", base64::engine::general_purpose::STANDARD.encode(&got));
        axum::response::Response::builder().header("x-echo-auth", auth).body(axum::body::Body::from(out)).unwrap()
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, axum::Router::new().fallback(echo)).await.ok() });
    base
}

async fn tool_text(c: &Client, name: &str, args: Value) -> String {
    serde_json::to_string(&call(c, name, args).await).unwrap()
}

/// `latchkey mcp` over stdio on the server's database, acting with `key`,
/// started in `cwd` (where write_env_file writes).
async fn stdio_client(srv: &Server, key: &str, cwd: &Path) -> Client {
    let mut cmd = tokio::process::Command::new(common::bin());
    cmd.args(["mcp", "--data-dir"]).arg(&srv.data_dir).current_dir(cwd);
    cmd.env("LATCHKEY_MASTER_KEY", TEST_MASTER_KEY).env("LATCHKEY_API_KEY", key).env("LATCHKEY_LOG", "debug").env_remove("DATABASE_URL");
    if let Some(url) = &srv.database_url {
        cmd.env("DATABASE_URL", url);
    }
    let (transport, _) =
        rmcp::transport::TokioChildProcess::builder(cmd).stderr(std::process::Stdio::null()).spawn().expect("spawn latchkey mcp");
    ().serve(transport).await.expect("stdio MCP handshake")
}

async fn sweep(backend: Backend) {
    let upstream = echo_server().await;
    let srv = Server::start_with(Opts::new(backend).arg("--allow-private-destinations").env("LATCHKEY_LOG", "debug")).await;
    let admin = srv.signup(&unique("canary")).await;
    let mut seen = Seen::default();
    let values = [("REVEAL", "reveal", canary("reveal")), ("MASKED", "masked", canary("masked")), ("HIDDEN", "use_only", canary("hidden"))];
    let staging_hidden = canary("staging");
    let bind = json!([{ "urlPrefix": format!("{upstream}/echo/"), "inject": { "type": "header", "name": "X-Api-Key" } }]);
    let mut ids = Vec::new();
    for (name, mode, value) in &values {
        let body = json!({ "name": name, "value": value, "exposure": mode, "environment": "production", "bindings": bind });
        let (s, meta) = srv.post("/api/v1/secrets", &admin, body).await;
        assert_eq!(s, 201, "{meta}");
        seen.add("create", meta.to_string());
        ids.push((*name, meta["id"].as_str().unwrap().to_owned()));
    }
    let body = json!({ "name": "HIDDEN", "value": staging_hidden, "exposure": "use_only", "environment": "staging" });
    assert_eq!(srv.post("/api/v1/secrets", &admin, body).await.0, 201);

    // REST: reads, hand-offs, uses.
    for (name, id) in &ids {
        for path in [format!("/api/v1/secrets/{id}"), format!("/api/v1/secrets/{id}?version=1")] {
            let (_, read) = srv.get(&path, &admin).await;
            if *name == "REVEAL" { seen.reveal(&path, read.to_string()) } else { seen.add(&path, read.to_string()) }
        }
        seen.add("versions", srv.get(&format!("/api/v1/secrets/{id}/versions"), &admin).await.1.to_string());
        seen.add("share", srv.post("/api/v1/shares", &admin, json!({ "secretId": id })).await.1.to_string());
        let (s, proxied) = srv
            .post(
                &format!("/api/v1/secrets/{id}/proxy"),
                &admin,
                json!({ "method": "POST", "url": format!("{upstream}/echo/x?q=1"), "body": "hi" }),
            )
            .await;
        assert_eq!(s, 200, "the proxy reached the echo server: {proxied}");
        assert!(proxied.to_string().contains(&format!("[latchkey:{name}]")), "the echoed credential is redacted: {proxied}");
        seen.add("proxy", proxied.to_string());
        let refused =
            srv.post(&format!("/api/v1/secrets/{id}/proxy"), &admin, json!({ "method": "GET", "url": "http://127.0.0.1:9/x" })).await;
        seen.add("proxy refused", refused.1.to_string());
        let value = &values.iter().find(|v| v.0 == *name).unwrap().2;
        let (s, verdict) = srv.post(&format!("/api/v1/secrets/{id}/verify"), &admin, json!({ "candidate": value })).await;
        assert_eq!((s, verdict["match"].as_bool()), (200, Some(true)), "{verdict}");
        seen.add("verify", verdict.to_string());
    }
    let (s, compared) = srv.get("/api/v1/secrets/compare?from=production&to=staging", &admin).await;
    assert_eq!(s, 200, "{compared}");
    seen.add("compare", compared.to_string());
    seen.add("list", srv.get("/api/v1/secrets?limit=100", &admin).await.1.to_string());

    // MCP over HTTP: the same reads and uses as tools, and the resources.
    let c = mcp_client(&srv, &admin).await;
    for (name, _) in &ids {
        let args = json!({ "name": name, "environment": "production" });
        let read = tool_text(&c, "get_secret", args.clone()).await;
        if *name == "REVEAL" {
            seen.reveal("get_secret", read)
        } else {
            seen.add("get_secret", read)
        }
        seen.add("list_secret_versions", tool_text(&c, "list_secret_versions", args).await);
        let proxied = tool_text(
            &c,
            "http_request_with_secret",
            json!({ "secret": name, "environment": "production", "method": "GET", "url": format!("{upstream}/echo/mcp") }),
        )
        .await;
        assert!(proxied.contains(&format!("[latchkey:{name}]")), "{proxied}");
        seen.add("http_request_with_secret", proxied);
        seen.add(
            "verify_secret",
            tool_text(&c, "verify_secret", json!({ "secret": name, "environment": "production", "candidate": "wrong" })).await,
        );
    }
    seen.add("compare_environments", tool_text(&c, "compare_environments", json!({ "from": "production", "to": "staging" })).await);
    for uri in ["latchkey://secrets", "latchkey://secrets/HIDDEN?environment=production", "latchkey://audit/recent"] {
        let read = c.read_resource(rmcp::model::ReadResourceRequestParams::new(uri)).await;
        seen.add(uri, format!("{read:?}"));
    }
    c.cancel().await.ok();

    // MCP over stdio: run a command with the secrets, write a .env file,
    // and the leak guard over a session.
    let cwd = tempfile::tempdir().unwrap();
    let s = stdio_client(&srv, &admin, cwd.path()).await;
    let ran = tool_text(
        &s,
        "run_with_secrets",
        json!({ "command": "sh", "args": ["-c", "printenv REVEAL MASKED HIDDEN; printf %s \"$HIDDEN\" | base64"], "secrets": ["REVEAL", "MASKED", "HIDDEN"], "environment": "production" }),
    )
    .await;
    assert!(ran.contains("[latchkey:HIDDEN]") && ran.contains("[latchkey:REVEAL]"), "the child's output is redacted: {ran}");
    seen.add("run_with_secrets", ran);
    let written = tool_text(&s, "write_env_file", json!({ "path": "canary.env", "environment": "production" })).await;
    seen.add("write_env_file", written);
    let file = std::fs::read_to_string(cwd.path().join("canary.env")).expect("the .env file was written");
    assert!(file.contains(&values[2].2), "the file holds the values: that is its point");
    seen.add("get_secret (stdio)", tool_text(&s, "get_secret", json!({ "name": "MASKED", "environment": "production" })).await);
    // The session opened MASKED: an answer echoing it is redacted.
    let echoed = tool_text(&s, "set_secret", json!({ "name": "NOTE", "value": "note-value", "description": values[1].2 })).await;
    assert!(echoed.contains("[latchkey:MASKED]"), "the leak guard redacts the session's touched values: {echoed}");
    seen.add("set_secret (stdio)", echoed);
    s.cancel().await.ok();

    // `latchkey run` on the same database: the child prints its environment.
    let mut run = std::process::Command::new(common::bin());
    run.args(["run", "--environment", "production", "--data-dir"]).arg(&srv.data_dir);
    run.args(["--", "sh", "-c", "printenv REVEAL MASKED HIDDEN; printf %s \"$MASKED\" | od -An -tx1 | tr -d ' \\n'"]);
    run.env("LATCHKEY_MASTER_KEY", TEST_MASTER_KEY).env("LATCHKEY_API_KEY", &admin).env("LATCHKEY_LOG", "warn").env_remove("DATABASE_URL");
    if let Some(url) = &srv.database_url {
        run.env("DATABASE_URL", url);
    }
    let out = run.output().expect("latchkey run");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "latchkey run: {stdout} {}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("[latchkey:HIDDEN]") && stdout.contains("[latchkey:MASKED]"), "{stdout}");
    seen.add("latchkey run stdout", stdout);
    seen.add("latchkey run stderr", String::from_utf8_lossy(&out.stderr).into_owned());

    // The audit trail and the server's log (at debug) hold no value either.
    seen.add("audit", srv.get("/api/v1/audit?limit=1000", &admin).await.1.to_string());
    seen.add("server log", srv.stderr());

    let mut hits = Vec::new();
    let mut explicit = 0;
    for (what, text, allowed) in &seen.0 {
        for (name, _, value) in
            values.iter().map(|(n, m, v)| (*n, *m, v.as_str())).chain([("STAGING", "use_only", staging_hidden.as_str())])
        {
            if forms(value).iter().any(|f| text.contains(f.as_str())) {
                if *allowed == Some(name) {
                    explicit += 1;
                } else {
                    hits.push(format!("{what}: {name}: {}", &text[..text.len().min(300)]));
                }
            }
        }
    }
    assert!(explicit > 0, "the explicit reads of the reveal secret were found: the search works");
    assert!(hits.is_empty(), "values leaked:\n{}", hits.join("\n"));
}

#[tokio::test]
async fn no_value_leaves_but_through_an_explicit_reveal_on_sqlite() {
    sweep(Backend::Sqlite).await;
}

#[tokio::test]
async fn no_value_leaves_but_through_an_explicit_reveal_on_postgres() {
    sweep(Backend::Postgres).await;
}
