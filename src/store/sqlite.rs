//! The embedded default: one SQLite file in WAL mode. Writes go through a
//! single-connection pool with `BEGIN IMMEDIATE`, so writers queue in process
//! instead of meeting "database is locked", and another process on the same
//! file (`latchkey mcp` beside `latchkey serve`) waits on the busy timeout.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
}

pub const DB_FILE: &str = "latchkey.db";

impl SqliteStore {
    pub async fn open(data_dir: &Path) -> crate::error::Result<Self> {
        let path = data_dir.join(DB_FILE);
        let opts = SqliteConnectOptions::from_str("sqlite://")
            .map_err(crate::error::Error::from)?
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit is on disk before it is acknowledged, even across power loss.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let writer = SqlitePoolOptions::new().max_connections(1).connect_with(opts.clone()).await?;
        sqlx::migrate!("migrations/sqlite")
            .run(&writer)
            .await
            .map_err(|e| crate::error::Error::internal(format_args!("migrations: {e}")))?;
        let reader = SqlitePoolOptions::new().max_connections(8).connect_with(opts.read_only(true)).await?;
        Ok(SqliteStore { writer, reader })
    }

    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        self.writer.begin_with("BEGIN IMMEDIATE").await
    }
}

super::sql::sql_store!(
    SqliteStore,
    sqlx::Sqlite,
    "sqlite",
    "SELECT 1 WHERE $1 IS NOT NULL",
    // The single writer connection already serialises writes.
    ""
);
