//! The SQLite side of `latchkey backup`: `VACUUM INTO` and a file copy.

use std::io::{Read, Write};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::ConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;

use super::{Summary, bar, io_error, private_file};
use crate::error::{Error, Result};
use crate::store::sqlite::DB_FILE;

const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

pub(super) async fn create(file: &Path, data_dir: &Path) -> Result<Summary> {
    let db = data_dir.join(DB_FILE);
    if !db.exists() {
        return Err(Error::InvalidRequest(format!("no database at {}", db.display())));
    }
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.set_message(format!("copying {} (VACUUM INTO, a consistent snapshot)", db.display()));
    spinner.enable_steady_tick(Duration::from_millis(120));
    let mut conn = SqliteConnectOptions::from_str("sqlite://")?.filename(&db).busy_timeout(Duration::from_secs(30)).connect().await?;
    // Written beside the target, then renamed: a failed copy leaves no file that looks whole.
    let tmp = file.with_extension("partial");
    let _ = std::fs::remove_file(&tmp);
    sqlx::query("VACUUM INTO $1").bind(tmp.to_string_lossy().into_owned()).execute(&mut conn).await?;
    sqlx::Connection::close(conn).await?;
    restrict(&tmp)?;
    std::fs::rename(&tmp, file).map_err(|e| io_error(file, e))?;
    spinner.finish_and_clear();
    let bytes = std::fs::metadata(file).map_err(|e| io_error(file, e))?.len();
    Ok(Summary { backend: "sqlite", bytes, rows: None })
}

pub(super) async fn restore(file: &Path, data_dir: &Path) -> Result<Summary> {
    let db = data_dir.join(DB_FILE);
    for existing in [db.clone(), data_dir.join(format!("{DB_FILE}-wal"))] {
        if existing.exists() {
            return Err(Error::InvalidRequest(format!(
                "{} exists: restore only into a data directory without a database (a new, empty one)",
                existing.display()
            )));
        }
    }
    let mut src = std::fs::File::open(file).map_err(|e| io_error(file, e))?;
    let len = src.metadata().map_err(|e| io_error(file, e))?.len();
    let mut magic = [0u8; 16];
    if src.read_exact(&mut magic).is_err() || &magic != SQLITE_MAGIC {
        return Err(Error::InvalidRequest(format!("{} is not a SQLite backup made by `latchkey backup create`", file.display())));
    }
    check_is_latchkey(file).await?;
    std::fs::create_dir_all(data_dir).map_err(|e| io_error(data_dir, e))?;
    let tmp = data_dir.join(format!("{DB_FILE}.partial"));
    let _ = std::fs::remove_file(&tmp);
    let mut out = private_file(&tmp).map_err(|e| io_error(&tmp, e))?;
    out.write_all(&magic).map_err(|e| io_error(&tmp, e))?;
    let progress = bar(len, "restoring");
    progress.inc(magic.len() as u64);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = src.read(&mut buf).map_err(|e| io_error(file, e))?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n]).map_err(|e| io_error(&tmp, e))?;
        progress.inc(n as u64);
    }
    out.sync_all().map_err(|e| io_error(&tmp, e))?;
    drop(out);
    std::fs::rename(&tmp, &db).map_err(|e| io_error(&db, e))?;
    progress.finish_and_clear();
    Ok(Summary { backend: "sqlite", bytes: len, rows: None })
}

/// The file is a Latchkey database: migrated, with its key check.
async fn check_is_latchkey(file: &Path) -> Result<()> {
    let mut conn = SqliteConnectOptions::from_str("sqlite://")?.filename(file).read_only(true).connect().await?;
    let found: Option<i64> =
        sqlx::query_scalar("SELECT COUNT(*) FROM meta WHERE key = 'key_check'").fetch_optional(&mut conn).await.ok().flatten();
    sqlx::Connection::close(conn).await.ok();
    match found {
        Some(1) => Ok(()),
        _ => Err(Error::InvalidRequest(format!("{} is a SQLite file but not a Latchkey database", file.display()))),
    }
}

fn restrict(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|e| io_error(path, e))?;
    }
    Ok(())
}
