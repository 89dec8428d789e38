//! Drives SecretCarousel's own CLI (`sc`, npm `secretcarousel` 2.20.0, pinned
//! in tools/sc-cli) as a user does: in a project directory of their own (the
//! CLI keeps its key in `.sc/config.json`) with a private `HOME`, so no
//! configuration of this machine's user is read or written.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

use super::Server;

const SC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/sc-cli/sc");

/// Installs the CLI once per test binary, with the caller's own environment
/// (its npm configuration), before any run with a private `HOME`.
pub fn install() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let out = Command::new("timeout").args(["600", "bash", SC, "--version"]).output().expect("run tools/sc-cli/sc");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "installing the sc CLI failed:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(text.trim(), "2.20.0", "the pinned CLI version");
    });
}

/// What one `sc` command did, colours stripped.
pub struct Run {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Standard output, then standard error.
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// One user of the CLI, talking to the server at `base`.
pub struct User {
    _dir: tempfile::TempDir,
    home: PathBuf,
    pub project: PathBuf,
    base: String,
}

impl User {
    pub fn new(base: &str) -> User {
        install();
        let dir = tempfile::tempdir().unwrap();
        let (home, project) = (dir.path().join("home"), dir.path().join("project"));
        std::fs::create_dir_all(&home).unwrap();
        std::fs::create_dir_all(&project).unwrap();
        User { _dir: dir, home, project, base: base.to_owned() }
    }

    pub async fn sc(&self, args: &[&str]) -> Run {
        let mut cmd = Command::new("timeout");
        cmd.arg("300").arg("bash").arg(SC).args(args).current_dir(&self.project);
        cmd.env("HOME", &self.home).env("XDG_CONFIG_HOME", self.home.join(".config")).env("SC_BASE_URL", &self.base);
        cmd.env("NO_COLOR", "1").env_remove("SC_API_KEY").env_remove("SECRETCAROUSEL_API_KEY").env_remove("SECRETCAROUSEL_BASE_URL");
        let out = tokio::task::spawn_blocking(move || cmd.output().expect("run sc")).await.unwrap();
        Run {
            ok: out.status.success(),
            stdout: strip_ansi(&String::from_utf8_lossy(&out.stdout)),
            stderr: strip_ansi(&String::from_utf8_lossy(&out.stderr)),
        }
    }

    /// `sc ARGS` must succeed, and print no object it failed to format.
    pub async fn run_ok(&self, args: &[&str]) -> Run {
        let run = self.sc(args).await;
        assert!(run.ok, "sc {} failed:\n{}", args.join(" "), run.all());
        assert!(!run.all().contains("[object Object]"), "sc {}:\n{}", args.join(" "), run.all());
        run
    }

    /// [`User::run_ok`]; returns all it printed.
    pub async fn ok(&self, args: &[&str]) -> String {
        self.run_ok(args).await.all()
    }

    /// `sc ARGS` must fail; returns all it printed.
    pub async fn fails(&self, args: &[&str]) -> String {
        let run = self.sc(args).await;
        assert!(!run.ok, "sc {} should have failed:\n{}", args.join(" "), run.all());
        run.all()
    }

    /// `sc signup TENANT` in the project directory; returns the key it saved.
    pub async fn signup(&self, tenant: &str) -> String {
        let out = self.ok(&["signup", tenant]).await;
        let config: Value = serde_json::from_str(&std::fs::read_to_string(self.project.join(".sc/config.json")).unwrap()).unwrap();
        let key = config["apiKey"].as_str().unwrap_or_else(|| panic!("no key saved: {config}\n{out}")).to_owned();
        assert!(out.contains(&key), "signup shows the key once: {out}");
        key
    }

    /// `sc secret NAME VALUE [ARGS]`; returns the new secret's id as printed.
    pub async fn create(&self, name: &str, value: &str, args: &[&str]) -> String {
        let mut all = vec!["secret", name, value];
        all.extend_from_slice(args);
        let out = self.ok(&all).await;
        let id = out.lines().find_map(|l| l.trim().strip_prefix("ID:")).unwrap_or_else(|| panic!("no ID in:\n{out}"));
        id.trim().to_owned()
    }
}

pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A secret as the REST API reads it (value included).
pub async fn value_of(srv: &Server, key: &str, id: &str) -> Value {
    let (s, body) = srv.get(&format!("/api/v1/secrets/{id}"), key).await;
    assert_eq!(s, 200, "{body}");
    body
}
