//! What `latchkey env` prints and writes: the plan table, pulled secrets as
//! JSON, the private `--output` file, and the progress line of a long push.

use std::io::{IsTerminal, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::vault::batch::BatchPlan;

/// A push of at least this many secrets shows progress (on a terminal).
const PROGRESS_FROM: usize = 20;

/// `(environment)` for messages: the empty one is the secrets without one.
pub(super) fn place(environment: &str) -> String {
    if environment.is_empty() { "the secrets without an environment".into() } else { environment.to_owned() }
}

/// The entries as one JSON object, names in the order given (the vault's,
/// by name), pretty-printed.
pub(super) fn json<V: AsRef<str>>(entries: &[(String, V)]) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::from("{"));
    for (i, (name, value)) in entries.iter().enumerate() {
        out.push_str(if i == 0 { "\n  " } else { ",\n  " });
        // Strings always serialize; the JSON of a value is itself secret.
        out.push_str(&serde_json::to_string(name).unwrap_or_default());
        out.push_str(": ");
        out.push_str(&Zeroizing::new(serde_json::to_string(value.as_ref()).unwrap_or_default()));
    }
    out.push_str(if entries.is_empty() { "}\n" } else { "\n}\n" });
    out
}

/// Refuses an existing `path` without `force`, and a directory always.
pub(super) fn check_writable(path: &Path, force: bool) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Err(Error::InvalidRequest(format!("{} is a directory", path.display()))),
        Ok(_) if !force => Err(Error::AlreadyExists(format!("{} exists: pass --force to replace it", path.display()))),
        _ => Ok(()),
    }
}

/// Writes `bytes` to `path` with mode 0600. Without `force` the file must
/// not exist (created exclusively, so a file appearing meanwhile is not
/// replaced either); with it, a new file is written beside it and renamed
/// over it, so the old one is replaced whole and a reader never sees half.
pub(super) fn write_private(path: &Path, bytes: &[u8], force: bool) -> Result<()> {
    let fail = |e: std::io::Error| Error::InvalidRequest(format!("cannot write {}: {e}", path.display()));
    check_writable(path, force)?;
    if !force {
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Error::AlreadyExists(format!("{} exists: pass --force to replace it", path.display()))
            } else {
                fail(e)
            }
        })?;
        return file.write_all(bytes).and_then(|_| file.sync_all()).map_err(|e| {
            let _ = std::fs::remove_file(path);
            fail(e)
        });
    }
    let name = path.file_name().ok_or_else(|| Error::InvalidRequest(format!("{} names no file", path.display())))?;
    let tmp = path.with_file_name(format!(".{}.latchkey-{}.tmp", name.to_string_lossy(), std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|_| f.sync_all()))
        .and_then(|_| std::fs::rename(&tmp, path));
    written.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        fail(e)
    })
}

/// Writes to stdout; a closed pipe (`| head`) is not an error.
pub(super) fn to_stdout(bytes: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|_| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Error::internal(e)),
        _ => Ok(()),
    }
}

/// The plan, one line per name (`create`, `update`, `unchanged`, `skip`; in
/// the past tense once applied), then a summary and what to do next.
pub(super) fn print_plan(plan: &BatchPlan, environment: &str, overwrite_flag: &str, to_apply: &str) -> Result<()> {
    let (create, update, skip) = if plan.applied { ("created", "updated", "skipped") } else { ("create", "update", "skip") };
    let mut rows: Vec<(&str, &str)> = Vec::new();
    rows.extend(plan.created.iter().map(|n| (create, n.as_str())));
    rows.extend(plan.updated.iter().map(|n| (update, n.as_str())));
    rows.extend(plan.unchanged.iter().map(|n| ("unchanged", n.as_str())));
    rows.extend(plan.skipped.iter().map(|n| (skip, n.as_str())));
    rows.sort_by(|a, b| a.1.cmp(b.1));
    let mut text = format!("{:<10} NAME\n", "ACTION");
    for (action, name) in &rows {
        text.push_str(&format!("{action:<10} {name}\n"));
    }
    let verb = if plan.applied { "" } else { "to " };
    text.push_str(&format!(
        "{}: {} {verb}{create}, {} {verb}{update}, {} unchanged, {} {verb}{skip}\n",
        place(environment),
        plan.created.len(),
        plan.updated.len(),
        plan.unchanged.len(),
        plan.skipped.len()
    ));
    if !plan.skipped.is_empty() {
        text.push_str(&format!("{skip}: they exist with another value; {overwrite_flag} gives them the new one\n"));
    }
    if !plan.applied {
        text.push_str(&format!("dry run: nothing was written; {to_apply} to write it\n"));
    }
    to_stdout(text.as_bytes())
}

/// A spinner on stderr while a push of many secrets is stored, when stderr
/// is a terminal. The vault stores them in one transaction, so there is no
/// per-secret progress to show: it says how many and how long so far.
pub(super) struct Progress(Option<indicatif::ProgressBar>);

impl Progress {
    pub(super) fn start(count: usize, message: &str) -> Progress {
        if count < PROGRESS_FROM || !std::io::stderr().is_terminal() {
            return Progress(None);
        }
        let bar = indicatif::ProgressBar::new_spinner();
        if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {msg} (one transaction) {elapsed}") {
            bar.set_style(style);
        }
        bar.set_message(message.to_owned());
        bar.enable_steady_tick(Duration::from_millis(100));
        Progress(Some(bar))
    }

    pub(super) fn finish(self) {
        if let Some(bar) = self.0 {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn json_keeps_order_and_escapes() {
        let entries = vec![("B".to_owned(), "say \"hi\"\nbye"), ("A".to_owned(), "grüße \\ 🔑")];
        let text = json(&entries);
        assert_eq!(text.as_str(), "{\n  \"B\": \"say \\\"hi\\\"\\nbye\",\n  \"A\": \"grüße \\\\ 🔑\"\n}\n");
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["B"], "say \"hi\"\nbye");
        assert_eq!(json::<&str>(&[]).as_str(), "{}\n");
    }

    #[test]
    fn private_file_is_0600_and_not_replaced_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        write_private(&path, b"A='1'\n", false).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let err = write_private(&path, b"B='2'\n", false).unwrap_err();
        assert_eq!(err.code(), "ALREADY_EXISTS");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "A='1'\n");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&path, b"B='2'\n", true).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "B='2'\n");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left");
        assert!(check_writable(dir.path(), true).is_err(), "a directory is never replaced");
    }
}
