//! Using secrets without seeing them, on the user's own machine:
//! `latchkey run` (local database and `--url`) with a child that prints its
//! environment, a value split over two writes, encoded forms, exit codes,
//! signals and a terminal; and the stdio-only MCP tools `run_with_secrets`
//! and `write_env_file`, which HTTP neither lists nor runs. On SQLite and
//! PostgreSQL, through the real binary.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::mcp_client::{connect as http_mcp, tool};
use common::{Backend, Server, TEST_MASTER_KEY, bin, unique};
use rmcp::model::CallToolRequestParams;
use rmcp::service::RunningService;
use rmcp::transport::TokioChildProcess;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};

/// The environment a local `latchkey` command needs to open `srv`'s database as `key`.
fn local(cmd: &mut Command, srv: &Server, key: &str) {
    cmd.env("LATCHKEY_MASTER_KEY", TEST_MASTER_KEY)
        .env("LATCHKEY_API_KEY", key)
        .env("LATCHKEY_LOG", "error")
        .env_remove("LATCHKEY_URL")
        .env_remove("DATABASE_URL")
        .arg("--data-dir")
        .arg(&srv.data_dir);
    if let Some(url) = &srv.database_url {
        cmd.env("DATABASE_URL", url);
    }
}

/// `latchkey run <args…>` in local mode.
fn run_local(srv: &Server, key: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin());
    cmd.arg("run");
    local(&mut cmd, srv, key);
    cmd.args(args).stdin(Stdio::null());
    cmd
}

async fn output(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output().expect("run latchkey")).await.unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Every form of `value` a child might print.
fn forms(value: &str) -> Vec<String> {
    use base64::Engine;
    let hex: String = value.bytes().map(|b| format!("{b:02x}")).collect();
    vec![value.to_owned(), base64::engine::general_purpose::STANDARD.encode(value), hex.to_uppercase(), hex]
}

fn assert_clean(out: &str, value: &str) {
    for form in forms(value) {
        assert!(!out.contains(&form), "a form of the value leaked: {out}");
    }
}

async fn secret(srv: &Server, key: &str, body: Value) -> String {
    let (s, b) = srv.post("/api/v1/secrets", key, body).await;
    assert_eq!(s, 201, "{b}");
    b["id"].as_str().unwrap().to_owned()
}

/// The `secret.use` entries of the tenant's trail, newest first.
async fn uses(srv: &Server, key: &str) -> Vec<Value> {
    let (s, b) = srv.get("/api/v1/audit?action=secret.use&limit=200", key).await;
    assert_eq!(s, 200, "{b}");
    b["logs"].as_array().unwrap().clone()
}

async fn run_story(backend: Backend) {
    let srv = Server::start(backend).await;
    let key = srv.signup(&unique("run")).await;
    let (s, p) = srv.post("/api/v1/projects", &key, json!({ "name": "web" })).await;
    assert_eq!(s, 201, "{p}");
    let project = p["id"].as_str().unwrap().to_owned();
    let token = format!("tok_{}", uuid::Uuid::new_v4().simple());
    let split = format!("split_{}", uuid::Uuid::new_v4().simple());
    secret(&srv, &key, json!({ "name": "API_TOKEN", "value": token, "projectId": project })).await;
    secret(&srv, &key, json!({ "name": "SPLIT", "value": split, "projectId": project })).await;
    secret(&srv, &key, json!({ "name": "ELSEWHERE", "value": "not-in-web" })).await;

    // A child that prints its environment sees the value; what reaches us is the label.
    let out =
        output(run_local(&srv, &key, &["--project", "web", "--", "sh", "-c", "printenv API_TOKEN; printenv ELSEWHERE || echo none"])).await;
    assert_eq!((out.status.code(), text(&out.stdout)), (Some(0), "[latchkey:API_TOKEN]\nnone\n".into()), "{}", text(&out.stderr));

    // The project by id too; a value written in two halves with a pause
    // between them, and the encoded forms, on stdout and stderr.
    let script = r#"printf %s "$SPLIT" | head -c 9; sleep 0.2; printf %s "$SPLIT" | tail -c +10; echo
printf %s "$API_TOKEN" | base64
printf %s "$API_TOKEN" | od -An -tx1 | tr -d ' \n'; echo
printf 'err:%s\n' "$SPLIT" >&2"#;
    let out = output(run_local(&srv, &key, &["--project", &project, "--", "sh", "-c", script])).await;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(stdout, "[latchkey:SPLIT]\n[latchkey:API_TOKEN]\n[latchkey:API_TOKEN]\n", "{stderr}");
    assert_eq!(stderr, "err:[latchkey:SPLIT]\n");
    assert_clean(&stdout, &token);
    assert_clean(&stdout, &split);

    // --only picks names; one not found is named.
    let out =
        output(run_local(&srv, &key, &["--project", "web", "--only", "SPLIT", "--", "sh", "-c", "echo ${API_TOKEN:-unset} $SPLIT"])).await;
    assert_eq!(text(&out.stdout), "unset [latchkey:SPLIT]\n", "{}", text(&out.stderr));
    let out = output(run_local(&srv, &key, &["--only", "NOPE", "--", "true"])).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("NOPE"), "{}", text(&out.stderr));

    // The exit code is the child's; a signal's death is 128 + n.
    let out = output(run_local(
        &srv,
        &key,
        &["--project", "web", "--", "sh", "-c", "echo ${LATCHKEY_MASTER_KEY:-no-master-key} ${LATCHKEY_API_KEY:+has-key}"],
    ))
    .await;
    assert_eq!(text(&out.stdout), "no-master-key has-key\n", "{}", text(&out.stderr));
    let out = output(run_local(&srv, &key, &["--project", "web", "--only", "SPLIT", "--", "sh", "-c", "exit 7"])).await;
    assert_eq!(out.status.code(), Some(7));
    let out = output(run_local(&srv, &key, &["--project", "web", "--only", "SPLIT", "--", "sh", "-c", "kill -9 $$"])).await;
    assert_eq!(out.status.code(), Some(137));
    let out = output(run_local(&srv, &key, &["--project", "web", "--only", "SPLIT", "--", "no-such-command-here"])).await;
    assert_eq!(out.status.code(), Some(127), "{}", text(&out.stderr));

    // A name that cannot be a variable is refused, by name.
    secret(&srv, &key, json!({ "name": "bad-name", "value": "whatever-value" })).await;
    let out = output(run_local(&srv, &key, &["--", "true"])).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("'bad-name'"), "{}", text(&out.stderr));

    // Each injected secret's use is on the trail, mechanism run.
    let trail = uses(&srv, &key).await;
    let run_uses: Vec<&Value> = trail.iter().filter(|e| e["detail"]["mechanism"] == "run").collect();
    assert!(run_uses.iter().any(|e| e["detail"]["name"] == "API_TOKEN"), "{trail:?}");
    assert!(run_uses.iter().any(|e| e["detail"]["name"] == "SPLIT"), "{trail:?}");
    assert_clean(&json!(trail).to_string(), &token);

    // Over --url, what a read may show: the same injection and redaction.
    let mut cmd = Command::new(bin());
    cmd.args(["run", "--url", &srv.base, "--", "true"]).env_remove("LATCHKEY_API_KEY").env("LATCHKEY_LOG", "error");
    let out = output(cmd).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("UNAUTHORIZED") && text(&out.stderr).contains("LATCHKEY_API_KEY"), "{}", text(&out.stderr));
    let mut cmd = Command::new(bin());
    cmd.args(["run", "--url", &srv.base, "--project", "web", "--", "sh", "-c", "printenv API_TOKEN"])
        .env("LATCHKEY_API_KEY", &key)
        .env("LATCHKEY_LOG", "error")
        .env_remove("DATABASE_URL");
    let out = output(cmd).await;
    assert_eq!((out.status.code(), text(&out.stdout)), (Some(0), "[latchkey:API_TOKEN]\n".into()), "{}", text(&out.stderr));
}

#[tokio::test]
async fn run_injects_and_redacts_on_sqlite() {
    run_story(Backend::Sqlite).await;
}

#[tokio::test]
async fn run_injects_and_redacts_on_postgres() {
    run_story(Backend::Postgres).await;
}

/// SIGTERM sent to `latchkey run` reaches the child, whose exit is ours.
/// It also shows that output which cannot begin a value is not held back:
/// `ready` must arrive while the child is still running.
#[tokio::test]
async fn signals_are_forwarded() {
    use std::io::{BufRead, BufReader};
    let srv = Server::start(Backend::Sqlite).await;
    let key = srv.signup(&unique("signal")).await;
    secret(&srv, &key, json!({ "name": "S", "value": "forwarded-value" })).await;
    let script = r#"trap 'echo got-term; exit 5' TERM; echo ready; i=0; while [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done"#;
    let mut cmd = run_local(&srv, &key, &["--", "sh", "-c", script]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let pid = child.id();
    let stdout = child.stdout.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next().unwrap().unwrap();
        assert_eq!(first, "ready");
        Command::new("kill").arg("-TERM").arg(pid.to_string()).status().unwrap();
        let rest: Vec<String> = lines.map(Result::unwrap).collect();
        (rest, child.wait().unwrap())
    })
    .await
    .unwrap();
    assert_eq!(lines.0, ["got-term"]);
    assert_eq!(lines.1.code(), Some(5));
}

/// When our stdout is a terminal, the child gets one too, and what it
/// writes there is redacted (run under `script`, from Debian's essential
/// bsdutils package: never skipped).
#[tokio::test]
async fn a_terminal_child_is_redacted() {
    assert!(Command::new("script").arg("--version").output().is_ok(), "`script` (bsdutils) is needed for the terminal case");
    let srv = Server::start(Backend::Sqlite).await;
    let key = srv.signup(&unique("tty")).await;
    let value = format!("ttyval_{}", uuid::Uuid::new_v4().simple());
    secret(&srv, &key, json!({ "name": "TTY_SECRET", "value": value })).await;
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let inner = format!(
        "{} run --data-dir {} -- sh -c {}",
        quote(bin()),
        quote(srv.data_dir.to_str().unwrap()),
        quote("if [ -t 1 ]; then echo tty-yes; else echo tty-no; fi; printf %s \"$TTY_SECRET\"; sleep 0.1; echo; exit 3")
    );
    let mut cmd = Command::new("script");
    cmd.args(["-qec", &inner, "/dev/null"])
        .env("LATCHKEY_MASTER_KEY", TEST_MASTER_KEY)
        .env("LATCHKEY_API_KEY", &key)
        .env("LATCHKEY_LOG", "error")
        .env_remove("DATABASE_URL")
        .stdin(Stdio::null());
    let out = output(cmd).await;
    let seen = text(&out.stdout);
    assert!(seen.contains("tty-yes"), "the child sees a terminal: {seen:?} {}", text(&out.stderr));
    assert!(seen.contains("[latchkey:TTY_SECRET]"), "{seen:?}");
    assert_clean(&seen, &value);
    assert_eq!(out.status.code(), Some(3), "{seen:?}");
}

/// `use_only` secrets are what the local mode is for; over --url a server
/// answers no read of them, so they are refused there, by name.
async fn use_only_story(backend: Backend) {
    let srv = Server::start(backend).await;
    let key = srv.signup(&unique("useonly")).await;
    let value = format!("hidden_{}", uuid::Uuid::new_v4().simple());
    secret(&srv, &key, json!({ "name": "HIDDEN", "value": value, "exposure": "use_only" })).await;
    secret(&srv, &key, json!({ "name": "SHOWN", "value": "shown-value" })).await;
    let out = output(run_local(&srv, &key, &["--only", "HIDDEN", "--", "sh", "-c", "printenv HIDDEN"])).await;
    assert_eq!((out.status.code(), text(&out.stdout)), (Some(0), "[latchkey:HIDDEN]\n".into()), "{}", text(&out.stderr));

    let mut cmd = Command::new(bin());
    cmd.args(["run", "--url", &srv.base, "--", "sh", "-c", "printenv HIDDEN"])
        .env("LATCHKEY_API_KEY", &key)
        .env("LATCHKEY_LOG", "error")
        .env_remove("DATABASE_URL");
    let out = output(cmd).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("EXPOSURE_DENIED") && stderr.contains("HIDDEN") && !stderr.contains("SHOWN"), "{stderr}");
    assert!(out.stdout.is_empty(), "the command did not run");
    assert_clean(&stderr, &value);
    let trail = uses(&srv, &key).await;
    assert!(trail.iter().any(|e| e["detail"]["name"] == "HIDDEN" && e["detail"]["mechanism"] == "run"), "{trail:?}");
}

#[tokio::test]
async fn use_only_is_injected_locally_and_refused_over_url_on_sqlite() {
    use_only_story(Backend::Sqlite).await;
}

#[tokio::test]
async fn use_only_is_injected_locally_and_refused_over_url_on_postgres() {
    use_only_story(Backend::Postgres).await;
}

// ------------------------------------------------------------ MCP (stdio)

type Client = RunningService<RoleClient, ()>;

/// `latchkey mcp` over stdio on `srv`'s database as `key`, started in `cwd`.
async fn stdio_mcp(srv: &Server, key: &str, cwd: &Path, extra: &[&str]) -> Client {
    let mut cmd = Command::new(bin());
    cmd.arg("mcp");
    local(&mut cmd, srv, key);
    cmd.args(extra).current_dir(cwd);
    let cmd = tokio::process::Command::from(cmd);
    let (transport, _) = TokioChildProcess::builder(cmd).stderr(Stdio::null()).spawn().unwrap();
    ().serve(transport).await.expect("MCP handshake over stdio")
}

async fn names(c: &Client) -> Vec<String> {
    c.list_all_tools().await.unwrap().into_iter().map(|t| t.name.to_string()).collect()
}

/// The result's structured content, or its error's code and message.
async fn call(c: &Client, name: &str, args: Value) -> Result<Value, (String, String)> {
    let params = CallToolRequestParams::new(name.to_owned()).with_arguments(args.as_object().unwrap().clone());
    let r = c.call_tool(params).await.unwrap_or_else(|e| panic!("{name}: protocol error {e}"));
    if r.is_error == Some(true) {
        let text = r.content[0].as_text().expect("text").text.clone();
        let body: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{name}: {text}"));
        return Err((body["code"].as_str().unwrap().to_owned(), body["message"].as_str().unwrap_or_default().to_owned()));
    }
    Ok(r.structured_content.expect("structured content"))
}

async fn mcp_story(backend: Backend) {
    use std::os::unix::fs::PermissionsExt;
    let srv = Server::start(backend).await;
    let key = srv.signup(&unique("mcp-run")).await;
    let value = format!("mcpval_{}", uuid::Uuid::new_v4().simple());
    let quoted = "q\"u$ote\\d";
    secret(&srv, &key, json!({ "name": "TOKEN", "value": value })).await;
    secret(&srv, &key, json!({ "name": "QUOTED", "value": quoted })).await;
    let work = tempfile::tempdir().unwrap();
    let allowed = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let c = stdio_mcp(&srv, &key, work.path(), &["--env-file-dir", allowed.path().to_str().unwrap()]).await;
    let listed = names(&c).await;
    assert!(listed.iter().any(|n| n == "run_with_secrets") && listed.iter().any(|n| n == "write_env_file"), "{listed:?}");

    // Output comes back redacted, every form.
    let script = r#"printenv TOKEN; printf %s "$TOKEN" | base64; printf %s "$TOKEN" | od -An -tx1 | tr -d ' \n'; echo; echo oops "$TOKEN" >&2; exit 4"#;
    let r = call(&c, "run_with_secrets", json!({ "command": "sh", "args": ["-c", script], "secrets": ["TOKEN"] })).await.unwrap();
    assert_eq!(r["stdout"], "[latchkey:TOKEN]\n[latchkey:TOKEN]\n[latchkey:TOKEN]\n", "{r}");
    assert_eq!(r["stderr"], "oops [latchkey:TOKEN]\n");
    assert_eq!((r["exitCode"].as_i64(), r["timedOut"].as_bool()), (Some(4), Some(false)), "{r}");
    assert_eq!(r["injected"], json!(["TOKEN"]));
    assert_clean(&r.to_string(), &value);
    // The child does not inherit the keys to the vault.
    let r = call(
        &c,
        "run_with_secrets",
        json!({ "command": "sh", "args": ["-c", "echo ${LATCHKEY_API_KEY:-none} ${LATCHKEY_MASTER_KEY:-none}"], "secrets": ["TOKEN"] }),
    )
    .await
    .unwrap();
    assert_eq!(r["stdout"], "none none\n");

    // A secret filed under a project, by the project's name.
    let (_, p) = srv.post("/api/v1/projects", &key, json!({ "name": "api" })).await;
    let filed = format!("filed_{}", uuid::Uuid::new_v4().simple());
    secret(&srv, &key, json!({ "name": "FILED", "value": filed, "projectId": p["id"], "environment": "production" })).await;
    let r = call(
        &c,
        "run_with_secrets",
        json!({ "command": "printenv", "args": ["FILED"], "secrets": ["FILED"], "project": "api", "environment": "production" }),
    )
    .await
    .unwrap();
    assert_eq!(r["stdout"], "[latchkey:FILED]\n", "{r}");
    let e = call(&c, "run_with_secrets", json!({ "command": "printenv", "secrets": ["FILED"] })).await.unwrap_err();
    assert_eq!(e.0, "SECRET_NOT_FOUND", "not among the secrets without a project: {e:?}");

    // Cut with a note; a timeout kills it.
    let r = call(
        &c,
        "run_with_secrets",
        json!({ "command": "sh", "args": ["-c", "head -c 200000 /dev/zero | tr '\\0' x"], "secrets": ["TOKEN"] }),
    )
    .await
    .unwrap();
    let out = r["stdout"].as_str().unwrap();
    assert!(
        out.starts_with("xxxx") && out.contains("output cut at 65536 of 200000 bytes") && out.len() < 66_000,
        "{}",
        &out[out.len() - 80..]
    );
    let r = call(&c, "run_with_secrets", json!({ "command": "sleep", "args": ["30"], "secrets": ["TOKEN"], "timeoutSeconds": 1 }))
        .await
        .unwrap();
    assert_eq!((r["timedOut"].as_bool(), r["signal"].as_i64(), r["exitCode"].as_i64()), (Some(true), Some(9), None), "{r}");
    let e = call(&c, "run_with_secrets", json!({ "command": "true", "secrets": ["TOKEN"], "timeoutSeconds": 601 })).await.unwrap_err();
    assert_eq!(e.0, "INVALID_REQUEST");

    // A .env file: 0600, the keys answered, never a value; no overwrite unless asked.
    let w = call(&c, "write_env_file", json!({ "path": ".env" })).await.unwrap();
    let path = work.path().canonicalize().unwrap().join(".env");
    assert_eq!((w["path"].as_str(), w["count"].as_u64()), (path.to_str(), Some(2)), "{w}");
    assert_clean(&w.to_string(), &value);
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    let written = std::fs::read_to_string(&path).unwrap();
    // Read back exactly by the dotenv parser `latchkey env push` uses (quotes, `$`, backslash included).
    let back = latchkey::dotenv::parse(&written).expect("the file parses");
    assert!(
        back.contains(&("TOKEN".to_owned(), value.to_string())) && back.contains(&("QUOTED".to_owned(), quoted.to_owned())),
        "{written}"
    );
    let e = call(&c, "write_env_file", json!({ "path": ".env", "only": ["TOKEN"] })).await.unwrap_err();
    assert_eq!(e.0, "ALREADY_EXISTS", "{e:?}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), written, "untouched");
    let w = call(&c, "write_env_file", json!({ "path": ".env", "only": ["TOKEN"], "overwrite": true })).await.unwrap();
    assert_eq!(w["keys"], json!(["TOKEN"]));
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);

    // Nowhere else: not up, not through a link, not an absolute path outside;
    // an allowed directory yes.
    std::os::unix::fs::symlink(outside.path(), work.path().join("link")).unwrap();
    let escape = outside.path().join("x.env");
    for path in ["../x.env", "link/x.env", escape.to_str().unwrap()] {
        let e = call(&c, "write_env_file", json!({ "path": path })).await.unwrap_err();
        assert_eq!(e.0, "INVALID_REQUEST", "{path}: {e:?}");
    }
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0, "nothing written outside");
    let there = allowed.path().join("deploy.env");
    let w = call(&c, "write_env_file", json!({ "path": there.to_str().unwrap(), "only": ["TOKEN"] })).await.unwrap();
    assert_eq!(w["count"], 1);
    assert!(there.exists());
    c.cancel().await.ok();

    // Each use audited with its mechanism.
    let trail = uses(&srv, &key).await;
    for mechanism in ["run_with_secrets", "env_file"] {
        assert!(trail.iter().any(|e| e["detail"]["mechanism"] == mechanism && e["detail"]["name"] == "TOKEN"), "{mechanism}: {trail:?}");
    }
    assert_clean(&json!(trail).to_string(), &value);

    // Over HTTP neither is listed, and calling one says it is local only.
    let h = http_mcp(&srv, &key).await;
    let listed: Vec<String> = h.list_all_tools().await.unwrap().into_iter().map(|t| t.name.to_string()).collect();
    assert!(!listed.iter().any(|n| n == "run_with_secrets" || n == "write_env_file"), "{listed:?}");
    for (name, args) in
        [("run_with_secrets", json!({ "command": "true", "secrets": ["TOKEN"] })), ("write_env_file", json!({ "path": ".env" }))]
    {
        assert_eq!(tool(&h, name, args).await, Err("SCOPE_DENIED".to_owned()), "{name}");
    }
    h.cancel().await.ok();
}

#[tokio::test]
async fn mcp_local_tools_on_sqlite() {
    mcp_story(Backend::Sqlite).await;
}

#[tokio::test]
async fn mcp_local_tools_on_postgres() {
    mcp_story(Backend::Postgres).await;
}
