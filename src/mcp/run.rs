//! Tools that use secrets on the user's own machine without answering them:
//! `run_with_secrets` (a command with secrets in its environment, its output
//! redacted) and `write_env_file` (a `.env` file, mode 0600). Both exist only
//! for `latchkey mcp` over stdio, where the server runs as the user, in the
//! user's working directory.
//!
//! Over HTTP they are neither listed nor callable: [`LOCAL_ONLY`] is the one
//! list, `list_tools` leaves its tools out and `call_tool` answers
//! SCOPE_DENIED ("local only") for them before routing, both when the server
//! has no local session (`LatchkeyMcp::local` is `None`, i.e. every HTTP
//! server). The tools also refuse any caller but [`Caller::Local`] themselves,
//! so neither check alone holds the line. A remote server must not run
//! commands or write files on its own host for a key holder.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rmcp::handler::server::wrapper::Parameters;
use rmcp::{Json, tool, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;
use zeroize::Zeroizing;

use super::{Caller, LatchkeyMcp};
use crate::error::{Error, Result};
use crate::redact::Redactor;
use crate::redact::stream::StreamRedactor;
use crate::run::{Injected, redactor_for, use_selected};
use crate::vault::exposure::Mechanism;

/// The tools offered only by `latchkey mcp` (stdio).
pub(super) const LOCAL_ONLY: &[&str] = &["run_with_secrets", "write_env_file"];

/// What an HTTP caller is told when it names one of [`LOCAL_ONLY`].
pub(super) fn local_only(tool: &str) -> Error {
    Error::ScopeDenied(format!("{tool} is local only: it is offered by `latchkey mcp` (stdio) on the user's machine, never over HTTP"))
}

/// Output kept per stream; the rest is counted and cut with a note.
const OUTPUT_CAP: usize = 64 * 1024;
const DEFAULT_TIMEOUT: u64 = 60;
const MAX_TIMEOUT: u64 = 600;
/// How long output is still read after the command ended (its own children
/// may hold the pipes open).
const DRAIN: Duration = Duration::from_secs(2);
/// What a child never inherits from the server: the keys to the vault itself.
const SCRUBBED: &[&str] = &["LATCHKEY_MASTER_KEY", "LATCHKEY_PASSPHRASE", "LATCHKEY_API_KEY", "DATABASE_URL"];

/// Where the local tools may work: the directory `latchkey mcp` started in,
/// and the directories its user allowed `.env` files in (`--env-file-dir`).
#[derive(Debug, Clone)]
pub struct Workdir {
    start: PathBuf,
    env_file_dirs: Vec<PathBuf>,
}

impl Workdir {
    /// The current directory and `env_file_dirs`, resolved now (so a later
    /// symlink swap or `cd` changes nothing).
    pub fn here(env_file_dirs: &[PathBuf]) -> Result<Self> {
        let start = std::env::current_dir().and_then(|d| d.canonicalize()).map_err(Error::internal)?;
        let mut dirs = Vec::new();
        for d in env_file_dirs {
            let real = d.canonicalize().map_err(|e| Error::InvalidRequest(format!("--env-file-dir {}: {e}", d.display())))?;
            if !d.is_absolute() || !real.is_dir() {
                return Err(Error::InvalidRequest(format!("--env-file-dir {}: must be an existing absolute directory", d.display())));
            }
            dirs.push(real);
        }
        Ok(Workdir { start, env_file_dirs: dirs })
    }
}

/// `run_with_secrets`: what to run, with which secrets.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunParams {
    /// The program, e.g. `npm` (looked up in PATH; no shell: use `sh` with `-c` for one).
    pub command: String,
    /// Its arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Names of the secrets to put in its environment, each as a variable of that name.
    pub secrets: Vec<String>,
    /// The project they are filed under, by id or name (default: none).
    pub project: Option<String>,
    /// Their environment, e.g. `production` (default: none).
    pub environment: Option<String>,
    /// Working directory (relative to the server's); default the server's.
    pub cwd: Option<String>,
    /// Seconds before the command is killed, 1-600 (default 60).
    #[schemars(range(min = 1, max = 600))]
    pub timeout_seconds: Option<u64>,
}

/// What the command did, its output redacted.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunResult {
    /// The exit code; absent when a signal ended it.
    pub exit_code: Option<i32>,
    /// The signal that ended it, if one did.
    pub signal: Option<i32>,
    /// Its stdout, every injected value (raw, base64, hex, URL-encoded) replaced
    /// by `[latchkey:NAME]`; cut at 64 KiB with a note.
    pub stdout: String,
    /// Its stderr, redacted and cut alike.
    pub stderr: String,
    /// Whether it ran out of time and was killed.
    pub timed_out: bool,
    /// The variables it was given (names only).
    pub injected: Vec<String>,
}

/// `write_env_file`: where, and which secrets.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvFileParams {
    /// The file, e.g. `.env`: relative to the server's working directory and
    /// inside it, or absolute inside a directory the user allowed with
    /// `latchkey mcp --env-file-dir`.
    pub path: String,
    /// The project whose secrets to write, by id or name.
    pub project: Option<String>,
    /// Only secrets of this environment.
    pub environment: Option<String>,
    /// Only these secrets, by name.
    #[serde(default)]
    pub only: Vec<String>,
    /// Replace the file if it exists (default false: an existing file is refused).
    #[serde(default)]
    pub overwrite: bool,
}

/// The file written; never a value.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvFileWritten {
    /// The absolute path written.
    pub path: String,
    /// The variables it holds, in file order.
    pub keys: Vec<String>,
    pub count: usize,
}

#[tool_router(router = run_tools, vis = "pub(super)")]
impl LatchkeyMcp {
    /// Run a command on the user's machine with secrets as environment
    /// variables, without the values entering your context: answers the exit
    /// code and the output with every injected value (and its base64, hex and
    /// URL-encoded forms) replaced by `[latchkey:NAME]`. Works for secrets
    /// whose exposure is masked or use_only too. No shell: pass `sh` and
    /// `["-c", "…"]` for one. Each use is audited (mechanism
    /// run_with_secrets). Local `latchkey mcp` only.
    #[tool(annotations(read_only_hint = false, destructive_hint = true, idempotent_hint = false, open_world_hint = true))]
    async fn run_with_secrets(&self, Parameters(p): Parameters<RunParams>, caller: Caller) -> Result<Json<RunResult>, Error> {
        let workdir = self.workdir_for(&caller, "run_with_secrets")?;
        let timeout = p.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT);
        if !(1..=MAX_TIMEOUT).contains(&timeout) {
            return Err(Error::InvalidRequest(format!("timeoutSeconds must be between 1 and {MAX_TIMEOUT}")));
        }
        if p.secrets.is_empty() {
            return Err(Error::InvalidRequest("name at least one secret in secrets (or run the command without this tool)".into()));
        }
        let cwd = match p.cwd.as_deref() {
            None => workdir.start.clone(),
            Some(dir) => workdir.start.join(dir),
        };
        if !cwd.is_dir() {
            return Err(Error::InvalidRequest(format!("cwd {} is not a directory", cwd.display())));
        }
        let principal = self.principal(caller).await?;
        let secrets =
            use_selected(&self.vault, &principal, p.project.as_deref(), p.environment.clone(), p.secrets.clone(), Mechanism::RunTool)
                .await?;
        let redactor = Arc::new(redactor_for(&secrets));
        Ok(Json(run_captured(&p.command, &p.args, &cwd, secrets, redactor, Duration::from_secs(timeout)).await?))
    }

    /// Write secrets into a `.env` file (`NAME="value"` lines, mode 0600) for a
    /// tool that reads one, without the values entering your context: answers
    /// the path and the variable names, never a value. The path must be inside
    /// the directory the server started in (or inside one the user allowed);
    /// an existing file is refused unless overwrite is true. Remember to keep
    /// the file out of version control. Each use is audited (mechanism
    /// env_file). Local `latchkey mcp` only.
    #[tool(annotations(read_only_hint = false, destructive_hint = true, idempotent_hint = false, open_world_hint = false))]
    async fn write_env_file(&self, Parameters(p): Parameters<EnvFileParams>, caller: Caller) -> Result<Json<EnvFileWritten>, Error> {
        let workdir = self.workdir_for(&caller, "write_env_file")?;
        let target = env_file_target(&workdir, &p.path)?;
        if !p.overwrite && std::fs::symlink_metadata(&target).is_ok() {
            return Err(exists(&target));
        }
        let principal = self.principal(caller).await?;
        let secrets =
            use_selected(&self.vault, &principal, p.project.as_deref(), p.environment.clone(), p.only.clone(), Mechanism::EnvFile).await?;
        let text = dotenv(&secrets);
        write_private(&target, text.as_bytes(), p.overwrite)?;
        let keys: Vec<String> = secrets.iter().map(|s| s.name.clone()).collect();
        Ok(Json(EnvFileWritten { path: target.display().to_string(), count: keys.len(), keys }))
    }
}

impl LatchkeyMcp {
    /// The local session's working directory, or the local-only refusal.
    fn workdir_for(&self, caller: &Caller, tool: &str) -> Result<Arc<Workdir>> {
        match (caller, &self.local, &self.workdir) {
            (Caller::Local(_), Some(_), Some(workdir)) => Ok(workdir.clone()),
            _ => Err(local_only(tool)),
        }
    }
}

/// Runs the command to its end or its timeout, capturing both streams redacted.
async fn run_captured(
    command: &str,
    args: &[String],
    cwd: &Path,
    secrets: Vec<Injected>,
    redactor: Arc<Redactor>,
    timeout: Duration,
) -> Result<RunResult> {
    use std::os::unix::process::ExitStatusExt;
    let mut cmd = tokio::process::Command::new(command);
    cmd.args(args)
        .current_dir(cwd)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        // Its own process group, so a timeout ends what it started too.
        .process_group(0)
        .kill_on_drop(true);
    for name in SCRUBBED {
        cmd.env_remove(name);
    }
    for s in &secrets {
        cmd.env(&s.name, s.value.as_str());
    }
    let injected = secrets.iter().map(|s| s.name.clone()).collect();
    let mut child = cmd.spawn().map_err(|e| Error::InvalidRequest(format!("cannot run {command}: {e}")))?;
    drop(cmd);
    drop(secrets);
    let stop = CancellationToken::new();
    let out = tokio::spawn(capture(child.stdout.take().expect("piped"), redactor.clone(), stop.clone()));
    let err = tokio::spawn(capture(child.stderr.take().expect("piped"), redactor, stop.clone()));
    let (status, timed_out) = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(status) => (status.map_err(Error::internal)?, false),
        Err(_) => {
            if let Some(pid) = child.id().and_then(|id| rustix::process::Pid::from_raw(id as i32)) {
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
            }
            let _ = child.start_kill();
            (child.wait().await.map_err(Error::internal)?, true)
        }
    };
    let grace = tokio::spawn({
        let stop = stop.clone();
        async move {
            tokio::time::sleep(DRAIN).await;
            stop.cancel();
        }
    });
    let (stdout, stderr) = tokio::join!(out, err);
    grace.abort();
    let (stdout, stderr) = (stdout.map_err(Error::internal)?, stderr.map_err(Error::internal)?);
    Ok(RunResult { exit_code: status.code(), signal: status.signal(), stdout, stderr, timed_out, injected })
}

/// Reads a stream to its end (or until `stop`), redacted as a whole would be
/// (`StreamRedactor` emits exactly `Redactor::redact_bytes` of everything
/// read, so the cut below never splits a value that redaction would have
/// caught), keeping the first [`OUTPUT_CAP`] bytes.
async fn capture(mut from: impl tokio::io::AsyncRead + Unpin, redactor: Arc<Redactor>, stop: CancellationToken) -> String {
    let mut stream = StreamRedactor::new(redactor);
    let (mut kept, mut total) = (Vec::new(), 0usize);
    let mut keep = |bytes: &[u8]| {
        total += bytes.len();
        let room = OUTPUT_CAP.saturating_sub(kept.len());
        kept.extend_from_slice(&bytes[..bytes.len().min(room)]);
    };
    let mut buf = vec![0u8; 16 * 1024];
    let mut out = Vec::new();
    loop {
        let n = tokio::select! {
            read = from.read(&mut buf) => match read { Ok(0) | Err(_) => break, Ok(n) => n },
            _ = stop.cancelled() => break,
        };
        out.clear();
        stream.push(&buf[..n], &mut out);
        keep(&out);
    }
    out.clear();
    stream.finish(&mut out);
    keep(&out);
    let mut text = String::from_utf8_lossy(&kept).into_owned();
    if total > OUTPUT_CAP {
        text.push_str(&format!("\n[latchkey: output cut at {OUTPUT_CAP} of {total} bytes]"));
    }
    text
}

/// Where `path` may be written: its parent directory resolved (symlinks
/// followed) must be the server's starting directory or inside it, or inside
/// a directory the user allowed; the file itself must be a plain name
/// (no `..`, not a symlink).
fn env_file_target(workdir: &Workdir, path: &str) -> Result<PathBuf> {
    let given = Path::new(path);
    let refuse = |why: &str| Error::InvalidRequest(format!("cannot write {path}: {why}"));
    let Some(Component::Normal(file)) = given.components().next_back() else {
        return Err(refuse("name a file"));
    };
    let joined = if given.is_absolute() { given.to_path_buf() } else { workdir.start.join(given) };
    let parent = joined.parent().ok_or_else(|| refuse("name a file"))?;
    let real_parent = parent.canonicalize().map_err(|e| refuse(&format!("its directory: {e}")))?;
    let inside_start = real_parent.starts_with(&workdir.start);
    let inside_allowed = given.is_absolute() && workdir.env_file_dirs.iter().any(|d| real_parent.starts_with(d));
    if !(inside_start || inside_allowed) {
        return Err(refuse(
            "it is outside the directory latchkey mcp started in (and any --env-file-dir): pick a path inside it, \
             or ask the user to allow the directory with --env-file-dir",
        ));
    }
    let target = real_parent.join(file);
    if std::fs::symlink_metadata(&target).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(refuse("it is a symbolic link"));
    }
    Ok(target)
}

fn exists(target: &Path) -> Error {
    Error::AlreadyExists(format!("{} exists: pass overwrite: true to replace it", target.display()))
}

/// The dotenv text `latchkey env pull` and the export write (`crate::dotenv`:
/// quoted so that dotenv readers take every value back exactly), under a
/// warning line.
fn dotenv(secrets: &[Injected]) -> Zeroizing<String> {
    let pairs: Vec<(&str, &str)> = secrets.iter().map(|s| (s.name.as_str(), s.value.as_str())).collect();
    let mut text = Zeroizing::new(String::from("# Written by latchkey (write_env_file). Keep it out of version control.\n"));
    text.push_str(&crate::dotenv::write(&pairs));
    text
}

/// Writes `bytes` to `target` with mode 0600, never visible half-written or
/// with a looser mode: a new file (0600, `create_new`) in the same directory,
/// then renamed over the target (`overwrite`) or linked to it, which fails if
/// the target appeared meanwhile.
fn write_private(target: &Path, bytes: &[u8], overwrite: bool) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = target.parent().ok_or_else(|| Error::InvalidRequest("name a file".into()))?;
    let temp = dir.join(format!(".latchkey-env-{}.tmp", uuid::Uuid::new_v4().simple()));
    let io = |e: std::io::Error| Error::InvalidRequest(format!("cannot write {}: {e}", target.display()));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        if overwrite { std::fs::rename(&temp, target) } else { std::fs::hard_link(&temp, target) }
    })();
    let _ = std::fs::remove_file(&temp);
    match result {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(exists(target)),
        Err(e) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn injected(name: &str, value: &str) -> Injected {
        Injected { name: name.into(), value: Zeroizing::new(value.into()) }
    }

    #[test]
    fn dotenv_reads_back_exactly() {
        let values = [("A", "plain"), ("B", "q\"u\\o$te\nline"), ("C", "it's ${HOME} # not a comment")];
        let text = dotenv(&values.map(|(n, v)| injected(n, v)));
        assert!(text.starts_with("# Written by latchkey"), "{}", text.as_str());
        let back = crate::dotenv::parse(&text).expect("parses");
        assert_eq!(back.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect::<Vec<_>>(), values);
    }

    #[test]
    fn paths_stay_inside() {
        let dir = tempfile::tempdir().unwrap();
        let start = dir.path().canonicalize().unwrap();
        std::fs::create_dir(start.join("sub")).unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), start.join("link")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("x"), start.join("dangling")).unwrap();
        let w = Workdir { start: start.clone(), env_file_dirs: vec![] };
        assert_eq!(env_file_target(&w, ".env").unwrap(), start.join(".env"));
        assert_eq!(env_file_target(&w, "sub/.env").unwrap(), start.join("sub/.env"));
        assert_eq!(env_file_target(&w, start.join("sub/../.env").to_str().unwrap()).unwrap(), start.join(".env"));
        for bad in ["../.env", "sub/../../.env", "link/.env", "dangling", "/etc/latchkey.env", "sub/..", "", "."] {
            assert!(env_file_target(&w, bad).is_err(), "{bad}");
        }
        let allowed = Workdir { start: start.clone(), env_file_dirs: vec![outside.path().canonicalize().unwrap()] };
        let abs = outside.path().join(".env");
        assert!(env_file_target(&allowed, abs.to_str().unwrap()).is_ok());
        assert!(env_file_target(&allowed, "link/.env").is_err(), "a relative path escaping by a link stays refused");
    }

    #[test]
    fn written_0600_and_not_over_an_existing_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join(".env");
        write_private(&target, b"A=\"1\"\n", false).unwrap();
        assert_eq!(std::fs::metadata(&target).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(matches!(write_private(&target, b"B", false), Err(Error::AlreadyExists(_))));
        assert_eq!(std::fs::read(&target).unwrap(), b"A=\"1\"\n");
        write_private(&target, b"B=\"2\"\n", true).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"B=\"2\"\n");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left");
    }
}
