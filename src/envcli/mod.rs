//! `latchkey env pull | push | promote`: a project environment's secrets as a
//! `.env` file, for people at a terminal (the `doppler secrets download` /
//! `secr pull` habit).
//!
//! ```text
//!  pull     export_env ─▶ dotenv text or JSON ─▶ stdout, or FILE (0600, --force to replace)
//!  push     FILE ─▶ dotenv::parse (bad lines: exit 1, nothing sent) ─▶ import_env (one transaction)
//!  promote  promote (dry run unless --apply) ─▶ the plan table
//! ```
//!
//! Each goes to a server over REST (`--url` / `LATCHKEY_URL`, with
//! `LATCHKEY_API_KEY`) or, without a URL, to the local database as `latchkey
//! run` and `latchkey mcp` open it ([`target`]). Either way the vault does
//! the work (the same calls the REST routes make), so both modes answer the
//! same plan and are audited alike. Values stay in `Zeroizing` buffers and
//! are never printed except by `pull`, whose output they are.

mod output;
mod target;

use std::io::{IsTerminal, Read};
use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use zeroize::Zeroizing;

use crate::config::{PolicyArgs, StoreArgs};
use crate::error::{Error, Result};
use target::Target;

/// `latchkey env …`
#[derive(Debug, Args)]
pub struct EnvArgs {
    #[command(subcommand)]
    pub command: EnvCommand,
}

#[derive(Debug, Subcommand)]
pub enum EnvCommand {
    /// Print an environment's secrets as a .env file (or JSON), or write them
    /// to --output FILE (mode 0600). Only `reveal` secrets can be pulled.
    Pull(PullArgs),
    /// Store every NAME=value of a .env FILE (`-` for stdin) in one
    /// environment, in one transaction: a bad line stores nothing.
    Push(PushArgs),
    /// Copy one environment's secrets into another of the same project, in
    /// one transaction. Prints the plan; writes only with --apply.
    Promote(PromoteArgs),
}

/// Where the secrets are: a server, or the local database.
#[derive(Debug, Args)]
pub struct Connection {
    /// A Latchkey server (e.g. http://127.0.0.1:8200), with LATCHKEY_API_KEY.
    /// Without it the local database is opened, as `latchkey mcp` does.
    #[arg(long, env = "LATCHKEY_URL")]
    pub url: Option<String>,
    /// The local tenant to act for when LATCHKEY_API_KEY is not set (local mode).
    #[arg(long, env = "LATCHKEY_TENANT", default_value = crate::vault::tenants::LOCAL_TENANT)]
    pub tenant: String,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub policy: PolicyArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// `NAME='value'` lines that dotenv parsers read back exactly.
    Dotenv,
    /// One JSON object, names to values, in name order.
    Json,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// The project, by id or name (default: the secrets filed under none).
    #[arg(long)]
    pub project: Option<String>,
    /// The environment, e.g. production (default: the secrets without one).
    #[arg(long)]
    pub environment: Option<String>,
    #[arg(long, value_enum, default_value = "dotenv")]
    pub format: Format,
    /// Write to this file (created with mode 0600) instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Replace --output FILE when it exists.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub conn: Connection,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// The .env file to store (`-`: standard input).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The project, by id or name (default: the secrets filed under none).
    #[arg(long)]
    pub project: Option<String>,
    /// The environment, e.g. staging (default: the secrets without one).
    #[arg(long)]
    pub environment: Option<String>,
    /// Give secrets that already exist with another value the file's value
    /// (a new version). Without it they are skipped and listed.
    #[arg(long)]
    pub overwrite: bool,
    /// Print the plan and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub conn: Connection,
}

#[derive(Debug, Args)]
pub struct PromoteArgs {
    /// The environment to copy from.
    #[arg(long, value_name = "ENVIRONMENT")]
    pub from: String,
    /// The environment to copy into.
    #[arg(long, value_name = "ENVIRONMENT")]
    pub to: String,
    /// The project, by id or name (default: the secrets filed under none).
    #[arg(long)]
    pub project: Option<String>,
    /// Only these secrets, by name (repeatable, or comma-separated).
    #[arg(long, value_name = "NAME", num_args = 1.., value_delimiter = ',')]
    pub only: Vec<String>,
    /// Give secrets the target already has with another value the source's
    /// value (a new version). Without it they are skipped and listed.
    #[arg(long)]
    pub overwrite: bool,
    /// Write the plan. Without it, a dry run: the plan is printed, nothing written.
    #[arg(long)]
    pub apply: bool,
    #[command(flatten)]
    pub conn: Connection,
}

/// Runs the command and prints its failure; answers the exit status.
pub async fn main(args: EnvArgs) -> std::process::ExitCode {
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("latchkey env: {}: {}", e.code(), e.public_message_with_cause());
            if let Error::InvalidLines(lines) = &e {
                for l in lines {
                    eprintln!("  line {}: {}", l.line, l.message);
                }
            }
            std::process::ExitCode::FAILURE
        }
    }
}

pub async fn run(args: EnvArgs) -> Result<()> {
    match args.command {
        EnvCommand::Pull(a) => pull(a).await,
        EnvCommand::Push(a) => push(a).await,
        EnvCommand::Promote(a) => promote(a).await,
    }
}

/// The API key of `LATCHKEY_API_KEY`, if set.
fn api_key() -> Option<Zeroizing<String>> {
    std::env::var("LATCHKEY_API_KEY").ok().filter(|k| !k.is_empty()).map(Zeroizing::new)
}

async fn pull(a: PullArgs) -> Result<()> {
    // Refused before any secret is read, so a pull never reads values in vain.
    if let Some(path) = &a.output {
        output::check_writable(path, a.force)?;
    }
    let key = api_key();
    let target = Target::open(&a.conn, key.as_deref().map(String::as_str), "latchkey env pull").await?;
    let entries = target.export(a.project.as_deref(), a.environment.as_deref().unwrap_or("")).await;
    target.close().await;
    let entries = entries?;
    let text = match a.format {
        Format::Dotenv => crate::dotenv::write(&entries),
        Format::Json => output::json(&entries),
    };
    match &a.output {
        Some(path) => {
            output::write_private(path, text.as_bytes(), a.force)?;
            eprintln!("{} secret(s) written to {}", entries.len(), path.display());
            Ok(())
        }
        None => output::to_stdout(text.as_bytes()),
    }
}

async fn push(a: PushArgs) -> Result<()> {
    let text = read_input(&a.file)?;
    // Parsed here first: a bad file is reported by line and nothing is sent.
    let count = crate::dotenv::parse(&text).map_err(Error::InvalidLines)?.len();
    let key = api_key();
    let target = Target::open(&a.conn, key.as_deref().map(String::as_str), "latchkey env push").await?;
    let environment = a.environment.clone().unwrap_or_default();
    let progress = output::Progress::start(count, &format!("pushing {count} secret(s) to {}", output::place(&environment)));
    let plan = target.import(a.project.as_deref(), &environment, text, a.overwrite, a.dry_run).await;
    progress.finish();
    target.close().await;
    output::print_plan(&plan?, &environment, "--overwrite", "run again without --dry-run")
}

async fn promote(a: PromoteArgs) -> Result<()> {
    let key = api_key();
    let target = Target::open(&a.conn, key.as_deref().map(String::as_str), "latchkey env promote").await?;
    let only = (!a.only.is_empty()).then(|| a.only.clone());
    let plan = target.promote(a.project.as_deref(), &a.from, &a.to, only, a.overwrite, !a.apply).await;
    target.close().await;
    output::print_plan(&plan?, &a.to, "--overwrite", "run again with --apply")
}

/// The file's text (`-`: standard input), at most [`MAX_FILE`] bytes.
fn read_input(path: &std::path::Path) -> Result<Zeroizing<String>> {
    let mut bytes = Zeroizing::new(Vec::new());
    let read = if path.as_os_str() == "-" {
        if std::io::stdin().is_terminal() {
            return Err(Error::InvalidRequest("reading a .env file from standard input, but it is a terminal".into()));
        }
        std::io::stdin().take(MAX_FILE + 1).read_to_end(&mut bytes)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(MAX_FILE + 1).read_to_end(&mut bytes))
    };
    read.map_err(|e| Error::InvalidRequest(format!("cannot read {}: {e}", path.display())))?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(Error::PayloadTooLarge(format!("{} is larger than {MAX_FILE} bytes", path.display())));
    }
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        Error::InvalidRequest(format!("{} is not UTF-8 text (first bad byte at offset {})", path.display(), e.valid_up_to()))
    })?;
    Ok(Zeroizing::new(text.to_owned()))
}

/// The largest .env file read (a dotenv import is one request body).
const MAX_FILE: u64 = 16 * 1024 * 1024;
