//! The child of `latchkey run`: spawned with the secrets in its environment,
//! its stdout and stderr each pumped through a streaming redactor by a thread
//! of its own (a read is written out, redacted, as soon as it arrives, less
//! the few bytes that may begin a value), its exit mirrored.
//!
//! - A stream whose destination is a terminal gets a pseudo-terminal, so the
//!   child sees a terminal (colours, line buffering, progress bars) and what
//!   it writes there is still redacted. Its stdin is ours, untouched.
//! - SIGTERM and SIGHUP are forwarded to the child, and SIGINT too unless our
//!   terminal delivers it to the child itself (we share its foreground
//!   process group, so a Ctrl-C reaches both: forwarded, it would arrive twice).
//! - The exit code is the child's; a child killed by signal n makes ours
//!   128 + n, as a shell reports it.
//! - The child does not inherit the master key or passphrase (they unlock
//!   every secret, and nothing would redact them); the rest of our
//!   environment, LATCHKEY_API_KEY included, it does.

use std::ffi::OsString;
use std::fs::File;
use std::io::{IsTerminal, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;

use rustix::process::{Pid, Signal};
use tokio::signal::unix::{SignalKind, signal};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::redact::Redactor;
use crate::redact::stream::StreamRedactor;

/// One read of the child's output, and the capacity asked for its pipes
/// (Linux's default is 64 KiB): fewer, larger reads and writes cost less per
/// byte, and a child that writes much waits less often for us.
const READ: usize = 1024 * 1024;

/// What the child never inherits from us.
const SCRUBBED: &[&str] = &["LATCHKEY_MASTER_KEY", "LATCHKEY_PASSPHRASE"];

/// Where one of the child's streams goes: our own descriptor, through a
/// pipe or a pseudo-terminal the child writes to.
struct Route {
    /// The child's end.
    child: Stdio,
    /// Our end of a pseudo-terminal (the master); `None` for a pipe, whose
    /// end comes from the spawned child.
    master: Option<File>,
}

impl Route {
    fn to(ours: BorrowedFd<'_>) -> Result<Route> {
        if !ours.is_terminal() {
            return Ok(Route { child: Stdio::piped(), master: None });
        }
        let (master, slave) = pty(ours).map_err(|e| Error::internal(format_args!("opening a pseudo-terminal: {e}")))?;
        Ok(Route { child: Stdio::from(slave), master: Some(File::from(master)) })
    }
}

/// A pseudo-terminal pair sized like `like`.
fn pty(like: BorrowedFd<'_>) -> std::io::Result<(OwnedFd, OwnedFd)> {
    use rustix::fs::{Mode, OFlags};
    use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
    grantpt(&master)?;
    unlockpt(&master)?;
    let name = ptsname(&master, Vec::new())?;
    let slave = rustix::fs::open(name.as_c_str(), OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC, Mode::empty())?;
    if let Ok(size) = rustix::termios::tcgetwinsize(like) {
        let _ = rustix::termios::tcsetwinsize(&slave, size);
    }
    // Output goes on to our terminal, which does its own processing (`\n`
    // to `\r\n`); done here too, it would be done twice.
    if let Ok(mut modes) = rustix::termios::tcgetattr(&slave) {
        modes.output_modes.remove(rustix::termios::OutputModes::OPOST);
        let _ = rustix::termios::tcsetattr(&slave, rustix::termios::OptionalActions::Now, &modes);
    }
    Ok((master, slave))
}

/// Runs `command` with `env` added to ours; answers our exit code.
pub async fn run(command: &[OsString], env: Vec<(String, Zeroizing<String>)>, redactor: Arc<Redactor>) -> Result<u8> {
    let Some((program, args)) = command.split_first() else {
        return Err(Error::InvalidRequest("no command given: latchkey run [OPTIONS] -- CMD ARGS...".into()));
    };
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let out_route = Route::to(stdout.as_fd())?;
    let err_route = Route::to(stderr.as_fd())?;
    let out_fd = stdout.as_fd().try_clone_to_owned().map_err(Error::internal)?;
    let err_fd = stderr.as_fd().try_clone_to_owned().map_err(Error::internal)?;
    // Before the child exists, so a signal sent right after it starts is
    // forwarded rather than ending us with the default action.
    let mut signals = Signals::new()?;

    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::inherit()).stdout(out_route.child).stderr(err_route.child);
    for name in SCRUBBED {
        cmd.env_remove(name);
    }
    for (name, value) in &env {
        cmd.env(name, value.as_str());
    }
    let spawned = cmd.spawn();
    // Our copies of the pseudo-terminals' child ends: closed, so that reads
    // end once the child and its own children have closed theirs.
    drop(cmd);
    drop(env);
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            let name = program.to_string_lossy();
            let (code, why) = match e.kind() {
                std::io::ErrorKind::NotFound => (127, "command not found".to_owned()),
                std::io::ErrorKind::PermissionDenied => (126, "permission denied".to_owned()),
                _ => (126, e.to_string()),
            };
            eprintln!("latchkey: {name}: {why}");
            return Ok(code);
        }
    };
    let pid = Pid::from_raw(child.id() as i32).ok_or_else(|| Error::internal("the child has no pid"))?;
    // Kept to pass on a change of our terminal's size.
    let masters: Vec<File> = [&out_route.master, &err_route.master].into_iter().filter_map(|m| m.as_ref()?.try_clone().ok()).collect();
    let out_src: Box<dyn Read + Send> = match out_route.master {
        Some(m) => Box::new(m),
        None => Box::new(widened(child.stdout.take().expect("piped"))),
    };
    let err_src: Box<dyn Read + Send> = match err_route.master {
        Some(m) => Box::new(m),
        None => Box::new(widened(child.stderr.take().expect("piped"))),
    };
    let pumps = [
        std::thread::spawn({
            let r = redactor.clone();
            move || pump(out_src, File::from(out_fd), r)
        }),
        std::thread::spawn(move || pump(err_src, File::from(err_fd), redactor)),
    ];
    let mut waiter = tokio::task::spawn_blocking(move || child.wait());
    let status: ExitStatus = loop {
        tokio::select! {
            done = &mut waiter => break done.map_err(Error::internal)?.map_err(Error::internal)?,
            sig = signals.next() => {
                if sig == Signal::WINCH {
                    resize(&masters);
                }
                if sig != Signal::INT || !terminal_delivers_sigint() {
                    let _ = rustix::process::kill_process(pid, sig);
                }
            }
        }
    };
    // The output is whole only once both streams have ended.
    tokio::task::spawn_blocking(move || {
        for p in pumps {
            let _ = p.join();
        }
    })
    .await
    .map_err(Error::internal)?;
    Ok(exit_code(status))
}

/// The pipe with room for a whole read, where the system allows it (an
/// unprivileged user may be held to /proc/sys/fs/pipe-max-size).
fn widened<P: AsFd>(pipe: P) -> P {
    let _ = rustix::pipe::fcntl_setpipe_size(&pipe, READ);
    pipe
}

/// What a shell would report for the child's end.
fn exit_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => (code & 0xff) as u8,
        (None, Some(sig)) => (128 + sig).clamp(0, 255) as u8,
        (None, None) => 1,
    }
}

/// Copies `from` to `to` through a streaming redactor until the child's end
/// closes (end of file, or EIO on a pseudo-terminal whose child is gone), or
/// until `to` refuses (a reader that went away): the child then meets a
/// closed pipe, as it would have without us.
fn pump(mut from: Box<dyn Read + Send>, mut to: File, redactor: Arc<Redactor>) -> std::io::Result<()> {
    let mut stream = StreamRedactor::new(redactor);
    let mut buf = vec![0u8; READ];
    let mut out = Vec::with_capacity(READ + 1024);
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::IO.raw_os_error()) => break,
            Err(e) => return Err(e),
        };
        out.clear();
        stream.push(&buf[..n], &mut out);
        if !out.is_empty() {
            to.write_all(&out)?;
        }
    }
    out.clear();
    stream.finish(&mut out);
    to.write_all(&out)
}

fn terminal_delivers_sigint() -> bool {
    let stdin = std::io::stdin();
    stdin.is_terminal() && rustix::termios::tcgetpgrp(stdin.as_fd()).is_ok_and(|fg| fg == rustix::process::getpgrp())
}

fn resize(masters: &[File]) {
    let Ok(size) = rustix::termios::tcgetwinsize(std::io::stdout().as_fd()) else { return };
    for m in masters {
        let _ = rustix::termios::tcsetwinsize(m, size);
    }
}

/// The signals `latchkey run` passes on to its child.
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    winch: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Result<Self> {
        let on = |kind| signal(kind).map_err(Error::internal);
        Ok(Signals {
            int: on(SignalKind::interrupt())?,
            term: on(SignalKind::terminate())?,
            hup: on(SignalKind::hangup())?,
            winch: on(SignalKind::window_change())?,
        })
    }

    async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.int.recv() => Signal::INT,
            _ = self.term.recv() => Signal::TERM,
            _ = self.hup.recv() => Signal::HUP,
            _ = self.winch.recv() => Signal::WINCH,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_what_a_shell_reports() {
        assert_eq!(exit_code(ExitStatus::from_raw(0)), 0);
        assert_eq!(exit_code(ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_code(ExitStatus::from_raw(9)), 137);
        assert_eq!(exit_code(ExitStatus::from_raw(15)), 143);
    }
}
