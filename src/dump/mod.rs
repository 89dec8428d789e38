//! `latchkey backup create FILE` and `latchkey backup restore FILE`: the
//! operator's backup of the whole server, every tenant at once.
//!
//! - SQLite ([`sqlite`]): `VACUUM INTO` on its own connection, a consistent
//!   copy of the database while servers keep writing (WAL readers never
//!   block writers); the file is a plain SQLite database. A restore copies
//!   it into a data directory that holds no database yet.
//! - PostgreSQL ([`postgres`]): every table (but sqlx's migration ledger)
//!   read in ONE `REPEATABLE READ, READ ONLY` transaction as JSON lines
//!   (`row_to_json`), parents before children; a restore runs the
//!   migrations into an EMPTY database, checks they end where the archive's
//!   did, inserts every table with `json_populate_recordset` in one
//!   transaction (user triggers off meanwhile), and resets the sequences.
//!
//! Neither holds the master key: the operator keeps it
//! (`LATCHKEY_MASTER_KEY`, the passphrase, or the data directory's
//! `master.key`), and a restored server starts only with the same one.

mod postgres;
mod sqlite;

use std::path::Path;

use crate::config::StoreArgs;
use crate::error::Result;

/// What a backup or restore did, for the operator's terminal.
#[derive(Debug)]
pub struct Summary {
    pub backend: &'static str,
    pub bytes: u64,
    /// Rows per table (PostgreSQL), or `None` (SQLite copies pages, not rows).
    pub rows: Option<u64>,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} backup, {} bytes", self.backend, self.bytes)?;
        if let Some(rows) = self.rows {
            write!(f, ", {rows} rows")?;
        }
        Ok(())
    }
}

/// The reminder every backup and restore prints.
pub const MASTER_KEY_NOTE: &str = "the master key is not in the backup: keep it (LATCHKEY_MASTER_KEY, the passphrase, or the \
    data directory's master.key) and start the restored server with the same one";

pub async fn create(file: &Path, store: &StoreArgs) -> Result<Summary> {
    refuse_existing(file)?;
    match &store.database_url {
        Some(url) => postgres::create(file, url).await,
        None => sqlite::create(file, &store.data_dir).await,
    }
}

pub async fn restore(file: &Path, store: &StoreArgs) -> Result<Summary> {
    match &store.database_url {
        Some(url) => postgres::restore(file, url).await,
        None => sqlite::restore(file, &store.data_dir).await,
    }
}

fn refuse_existing(file: &Path) -> Result<()> {
    if file.exists() {
        return Err(crate::error::Error::InvalidRequest(format!("{} exists: name a new file", file.display())));
    }
    Ok(())
}

/// A progress bar on stderr (hidden when stderr is not a terminal).
fn bar(len: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {elapsed}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_owned());
    bar
}

/// Creates `path` for writing, readable by its owner only: it holds wrapped
/// keys, key hashes and ciphertexts.
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)
}

fn io_error(path: &Path, e: impl std::fmt::Display) -> crate::error::Error {
    crate::error::Error::InvalidRequest(format!("{}: {e}", path.display()))
}
