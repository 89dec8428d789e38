//! `latchkey env pull | push | promote`, the CLI for people at a terminal,
//! through the real binary: against a server (`--url` with
//! `LATCHKEY_API_KEY`) and against the database directly (local mode, as the
//! same key), on SQLite and PostgreSQL. Every outcome is checked through the
//! REST API, not only by what the CLI prints.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{Backend, Server, TEST_MASTER_KEY, bin, unique};
use serde_json::{Value, json};

/// How the CLI reaches the vault.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    /// The server's database opened directly (no `--url`).
    Local,
    /// The running server over REST.
    Url,
}

/// A `.env` file with the awkward cases: comments, `export`, both quotes,
/// escapes, `#` and `=` inside values, a multi-line value, unicode, an empty
/// value, spaces kept inside quotes.
const AWKWARD: &str = r#"# the app's settings
export PLAIN=hello
SPACED="  padded  "
QUOTES="she said \"hi\" and 'bye'"
HASH='value # not a comment'
EQUALS=a=b=c
MULTI="line one
line two"
UNICODE='grüße 🔑 ñ'
BACKSLASH="C:\\dir\\new"
EMPTY=
TRAILING=kept # a comment
"#;

/// What [`AWKWARD`] holds, by name.
fn awkward() -> BTreeMap<String, String> {
    [
        ("PLAIN", "hello"),
        ("SPACED", "  padded  "),
        ("QUOTES", "she said \"hi\" and 'bye'"),
        ("HASH", "value # not a comment"),
        ("EQUALS", "a=b=c"),
        ("MULTI", "line one\nline two"),
        ("UNICODE", "grüße 🔑 ñ"),
        ("BACKSLASH", "C:\\dir\\new"),
        ("EMPTY", ""),
        ("TRAILING", "kept"),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_owned(), v.to_owned()))
    .collect()
}

struct Cli<'a> {
    srv: &'a Server,
    key: String,
    mode: Mode,
    dir: tempfile::TempDir,
}

impl Cli<'_> {
    /// `latchkey env ARGS…` as this user, with `stdin` as its input.
    async fn env(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = Command::new(bin());
        cmd.arg("env").args(args).current_dir(self.dir.path());
        cmd.env("LATCHKEY_API_KEY", &self.key).env("LATCHKEY_LOG", "error").env_remove("LATCHKEY_URL").env_remove("DATABASE_URL");
        match self.mode {
            Mode::Url => {
                cmd.arg("--url").arg(&self.srv.base);
            }
            Mode::Local => {
                cmd.env("LATCHKEY_MASTER_KEY", TEST_MASTER_KEY).arg("--data-dir").arg(&self.srv.data_dir);
                if let Some(url) = &self.srv.database_url {
                    cmd.env("DATABASE_URL", url);
                }
            }
        }
        let input = stdin.map(str::to_owned);
        cmd.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() }).stdout(Stdio::piped()).stderr(Stdio::piped());
        tokio::task::spawn_blocking(move || {
            let mut child = cmd.spawn().expect("run latchkey env");
            if let Some(text) = input {
                use std::io::Write;
                child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
            }
            child.wait_with_output().unwrap()
        })
        .await
        .unwrap()
    }

    /// Must succeed; answers stdout.
    async fn ok(&self, args: &[&str]) -> String {
        let out = self.env(args, None).await;
        assert!(
            out.status.success(),
            "latchkey env {} ({:?}) failed:\n{}{}",
            args.join(" "),
            self.mode,
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// Must fail; answers stderr.
    async fn fails(&self, args: &[&str]) -> String {
        let out = self.env(args, None).await;
        assert!(!out.status.success(), "latchkey env {} ({:?}) should fail:\n{}", args.join(" "), self.mode, text(&out.stdout));
        text(&out.stderr)
    }

    fn file(&self, name: &str, content: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        path.to_string_lossy().into_owned()
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The values stored in one project environment, read through REST.
async fn stored(srv: &Server, key: &str, project: &str, environment: &str) -> BTreeMap<String, String> {
    let (s, page) = srv.get(&format!("/api/v1/secrets?projectId={project}&environment={environment}&limit=500"), key).await;
    assert_eq!(s, 200, "{page}");
    let mut out = BTreeMap::new();
    for meta in page["secrets"].as_array().unwrap() {
        let (s, read) = srv.get(&format!("/api/v1/secrets/{}", meta["id"].as_str().unwrap()), key).await;
        assert_eq!(s, 200, "{read}");
        out.insert(read["name"].as_str().unwrap().to_owned(), read["value"].as_str().unwrap().to_owned());
    }
    out
}

/// The plan table's rows, `(action, name)`.
fn plan_rows(out: &str) -> Vec<(String, String)> {
    out.lines()
        .skip_while(|l| !l.starts_with("ACTION"))
        .skip(1)
        .map_while(|l| l.split_once(' ').map(|(a, n)| (a.to_owned(), n.trim().to_owned())))
        .filter(|(a, _)| ["create", "update", "unchanged", "skip", "created", "updated", "skipped"].contains(&a.as_str()))
        .collect()
}

fn rows_of(out: &str, action: &str) -> Vec<String> {
    plan_rows(out).into_iter().filter(|(a, _)| a == action).map(|(_, n)| n).collect()
}

async fn audit_count(srv: &Server, key: &str, action: &str) -> usize {
    let (s, audit) = srv.get(&format!("/api/v1/audit?action={action}&limit=100"), key).await;
    assert_eq!(s, 200, "{audit}");
    audit["logs"].as_array().unwrap().iter().filter(|e| e["outcome"] == "success").count()
}

async fn story(backend: Backend, mode: Mode) {
    let srv = Server::start(backend).await;
    let key = srv.signup(&unique("env-cli")).await;
    let (s, project) = srv.post("/api/v1/projects", &key, json!({ "name": "web" })).await;
    assert_eq!(s, 201, "{project}");
    let pid = project["id"].as_str().unwrap().to_owned();
    let cli = Cli { srv: &srv, key: key.clone(), mode, dir: tempfile::tempdir().unwrap() };
    let want = awkward();

    // push: every line stored, in one go; the project named by name.
    let file = cli.file("staging.env", AWKWARD);
    let out = cli.ok(&["push", &file, "--project", "web", "--environment", "staging"]).await;
    let mut created = rows_of(&out, "created");
    created.sort();
    assert_eq!(created, want.keys().cloned().collect::<Vec<_>>(), "{out}");
    for value in want.values().filter(|v| v.len() > 3) {
        assert!(!out.contains(value.as_str()), "the plan never shows a value: {out}");
    }
    assert_eq!(stored(&srv, &key, &pid, "staging").await, want);
    assert_eq!(audit_count(&srv, &key, "secrets.imported").await, 1);

    // pull (dotenv) gives back exactly what was pushed, and pushing it again changes nothing.
    let pulled = cli.ok(&["pull", "--project", &pid, "--environment", "staging"]).await;
    let parsed: BTreeMap<String, String> = latchkey::dotenv::parse(&pulled).expect("pull writes parseable .env").into_iter().collect();
    assert_eq!(parsed, want, "{pulled}");
    let again = cli.file("again.env", &pulled);
    let out = cli.ok(&["push", &again, "--project", "web", "--environment", "staging", "--dry-run"]).await;
    assert_eq!(rows_of(&out, "unchanged").len(), want.len(), "{out}");
    assert!(out.contains("dry run"), "{out}");

    // pull --format json: one object, the same values.
    let json_out = cli.ok(&["pull", "--project", "web", "--environment", "staging", "--format", "json"]).await;
    let object: BTreeMap<String, String> = serde_json::from_str(&json_out).unwrap_or_else(|e| panic!("{e}: {json_out}"));
    assert_eq!(object, want);

    // pull --output: a 0600 file, never replaced without --force.
    let out_path = cli.dir.path().join("pulled.env");
    let target = out_path.to_string_lossy().into_owned();
    cli.ok(&["pull", "--project", "web", "--environment", "staging", "--output", &target]).await;
    let mode_bits = std::fs::metadata(&out_path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode_bits, 0o600);
    assert_eq!(std::fs::read_to_string(&out_path).unwrap(), pulled);
    std::fs::write(&out_path, "KEEP=me\n").unwrap();
    let err = cli.fails(&["pull", "--project", "web", "--environment", "staging", "--output", &target]).await;
    assert!(err.contains("--force"), "{err}");
    assert_eq!(std::fs::read_to_string(&out_path).unwrap(), "KEEP=me\n", "left as it was");
    std::fs::set_permissions(&out_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    cli.ok(&["pull", "--project", "web", "--environment", "staging", "--output", &target, "--force"]).await;
    assert_eq!(std::fs::read_to_string(&out_path).unwrap(), pulled);
    assert_eq!(std::fs::metadata(&out_path).unwrap().permissions().mode() & 0o777, 0o600, "replaced by a private file");

    // promote: a dry run by default, then --apply; a name production has is skipped until --overwrite.
    let (s, body) = srv
        .post("/api/v1/secrets", &key, json!({ "name": "PLAIN", "value": "prod-only", "projectId": pid, "environment": "production" }))
        .await;
    assert_eq!(s, 201, "{body}");
    let out = cli.ok(&["promote", "--project", "web", "--from", "staging", "--to", "production"]).await;
    assert_eq!(rows_of(&out, "skip"), ["PLAIN"], "{out}");
    assert_eq!(rows_of(&out, "create").len(), want.len() - 1, "{out}");
    assert!(out.contains("dry run") && out.contains("--apply"), "{out}");
    let production = stored(&srv, &key, &pid, "production").await;
    assert_eq!(production.keys().collect::<Vec<_>>(), ["PLAIN"], "a dry run writes nothing");

    let out = cli.ok(&["promote", "--project", "web", "--from", "staging", "--to", "production", "--apply"]).await;
    assert_eq!(rows_of(&out, "skipped"), ["PLAIN"], "{out}");
    assert_eq!(rows_of(&out, "created").len(), want.len() - 1, "{out}");
    let mut expect = want.clone();
    expect.insert("PLAIN".into(), "prod-only".into());
    assert_eq!(stored(&srv, &key, &pid, "production").await, expect);

    let out = cli
        .ok(&["promote", "--project", "web", "--from", "staging", "--to", "production", "--only", "PLAIN", "--overwrite", "--apply"])
        .await;
    assert_eq!(plan_rows(&out), [("updated".to_owned(), "PLAIN".to_owned())], "{out}");
    assert_eq!(stored(&srv, &key, &pid, "production").await, want);
    assert_eq!(stored(&srv, &key, &pid, "staging").await, want, "promotion copies");
    assert!(audit_count(&srv, &key, "secrets.promoted").await >= 2);

    // A bad file: non-zero exit naming the lines, and nothing stored (not even its good lines).
    let bad = cli.file("bad.env", "GOOD=1\nthis is not a line\nALSO_GOOD=2\nUNCLOSED=\"oops\n");
    let out = cli.env(&["push", &bad, "--project", "web", "--environment", "development"], None).await;
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("line 2"), "names the bad line: {err}");
    assert!(!err.contains("oops"), "never echoes the text: {err}");
    assert!(stored(&srv, &key, &pid, "development").await.is_empty(), "nothing stored");

    // A .env from standard input.
    let out = cli.env(&["push", "-", "--project", "web", "--environment", "development"], Some("FROM_STDIN='yes'\n")).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(stored(&srv, &key, &pid, "development").await, BTreeMap::from([("FROM_STDIN".to_owned(), "yes".to_owned())]));

    // A masked secret cannot be pulled: the whole pull fails naming it, and no file is written.
    let (s, body) = srv
        .post(
            "/api/v1/secrets",
            &key,
            json!({ "name": "HIDDEN", "value": "h1dden-value", "projectId": pid, "environment": "development", "exposure": "masked" }),
        )
        .await;
    assert_eq!(s, 201, "{body}");
    let never = cli.dir.path().join("never.env");
    let err = cli.fails(&["pull", "--project", "web", "--environment", "development", "--output", never.to_str().unwrap()]).await;
    assert!(err.contains("EXPOSURE_DENIED") && err.contains("HIDDEN") && !err.contains("h1dden-value"), "{err}");
    assert!(!never.exists(), "no file for a failed pull");

    // An unknown project is an error, and nothing is read.
    let err = cli.fails(&["pull", "--project", "no-such-project", "--environment", "staging"]).await;
    assert!(err.contains("no-such-project"), "{err}");
}

/// `--url` needs a key; a refused key is an error, not an empty pull.
async fn url_needs_a_key(backend: Backend) {
    let srv = Server::start(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let run = |key: Option<&str>| {
        let mut cmd = Command::new(bin());
        cmd.args(["env", "pull", "--url", &srv.base]).current_dir(dir.path()).env_remove("LATCHKEY_URL").env("LATCHKEY_LOG", "error");
        match key {
            Some(k) => cmd.env("LATCHKEY_API_KEY", k),
            None => cmd.env_remove("LATCHKEY_API_KEY"),
        };
        cmd.output().unwrap()
    };
    let out = run(None);
    assert!(!out.status.success() && text(&out.stderr).contains("LATCHKEY_API_KEY"), "{}", text(&out.stderr));
    let out = run(Some("lk_not_a_real_key"));
    assert!(!out.status.success() && text(&out.stderr).contains("UNAUTHORIZED"), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty());
}

/// Without a key, local mode acts for the local tenant, as `latchkey run` does.
async fn local_tenant_without_a_key(backend: Backend) {
    let srv = Server::start(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let mut cmd = Command::new(bin());
        cmd.arg("env").args(args).current_dir(dir.path()).arg("--data-dir").arg(&srv.data_dir);
        cmd.env("LATCHKEY_MASTER_KEY", TEST_MASTER_KEY)
            .env("LATCHKEY_LOG", "error")
            .env_remove("LATCHKEY_URL")
            .env_remove("LATCHKEY_API_KEY");
        match &srv.database_url {
            Some(url) => cmd.env("DATABASE_URL", url),
            None => cmd.env_remove("DATABASE_URL"),
        };
        cmd.output().unwrap()
    };
    let file = dir.path().join("local.env");
    std::fs::write(&file, "LOCAL_ONE=1\nLOCAL_TWO='two words'\n").unwrap();
    let out = run(&["push", file.to_str().unwrap(), "--environment", "dev"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = run(&["pull", "--environment", "dev", "--format", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got, json!({ "LOCAL_ONE": "1", "LOCAL_TWO": "two words" }));
    assert!(Path::new(&srv.data_dir).exists());
}

async fn local_mode(backend: Backend) {
    story(backend, Mode::Local).await
}

async fn url_mode(backend: Backend) {
    story(backend, Mode::Url).await
}

macro_rules! on_both_databases {
    ($($story:ident),* $(,)?) => {
        mod sqlite {
            use super::*;
            $( #[tokio::test] async fn $story() { super::$story(Backend::Sqlite).await } )*
        }
        mod postgres {
            use super::*;
            $( #[tokio::test] async fn $story() { super::$story(Backend::Postgres).await } )*
        }
    };
}

on_both_databases!(local_mode, url_mode, url_needs_a_key, local_tenant_without_a_key);
