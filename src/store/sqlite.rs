//! The embedded default: one SQLite file in WAL mode. Writes go through a
//! single-connection pool with `BEGIN IMMEDIATE`, so writers queue in process
//! instead of meeting "database is locked", and another process on the same
//! file (`latchkey mcp` beside `latchkey serve`) waits on the busy timeout.

use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

#[path = "version_writer.rs"]
mod version_writer;

pub struct SqliteStore {
    writer: SqlitePool,
    versions: version_writer::VersionWriter,
    reader: SqlitePool,
    /// `PRAGMA data_version` as last seen on the writer connection. On that
    /// connection it moves only when another connection commits, and the
    /// reader connections are read-only: a move means another process wrote.
    data_version: AtomicI64,
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
        // The writer connection lives as long as the store: `data_version` is
        // only comparable on one connection.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            // Multi-row statements come in one size per row count.
            .connect_with(opts.clone().statement_cache_capacity(512))
            .await?;
        sqlx::migrate!("migrations/sqlite")
            .run(&writer)
            .await
            .map_err(|e| crate::error::Error::internal(format_args!("migrations: {e}")))?;
        let reader = SqlitePoolOptions::new().max_connections(8).connect_with(opts.read_only(true)).await?;
        Ok(SqliteStore {
            versions: version_writer::VersionWriter::start(writer.clone()),
            writer,
            reader,
            data_version: AtomicI64::new(i64::MIN),
        })
    }

    async fn detect_change_elsewhere(&self) -> crate::error::Result<bool> {
        let now: i64 = sqlx::query_scalar("PRAGMA data_version").fetch_one(&self.writer).await?;
        Ok(self.data_version.swap(now, Ordering::SeqCst) != now)
    }

    /// Each chunk is one autocommit statement, so a batch of reads' audit
    /// entries costs one round trip to the connection's thread; the statement
    /// also reads `data_version` while it holds the write lock, which answers
    /// [`Store::changed_elsewhere`](crate::store::Store::changed_elsewhere) for free.
    async fn write_audit(&self, entries: &[AuditRow]) -> crate::error::Result<bool> {
        let mut changed = false;
        for chunk in entries.chunks(AUDIT_ROWS_PER_INSERT) {
            let versions: Vec<i64> =
                audit_insert(chunk, true).try_map(|row: sqlx::sqlite::SqliteRow| row.try_get(0)).fetch_all(&self.writer).await?;
            for v in versions.into_iter().take(1) {
                changed |= self.data_version.swap(v, Ordering::SeqCst) != v;
            }
        }
        Ok(changed)
    }

    /// New versions go through the group-committing writer.
    async fn add_version_here(
        &self,
        tenant_id: &str,
        id: &str,
        expected_version: Option<i64>,
        change: super::VersionChange,
    ) -> crate::error::Result<super::WriteOutcome> {
        self.versions.add(tenant_id, id, expected_version, change).await
    }

    fn can_detect_changes(&self) -> bool {
        true
    }

    /// Other processes on the same file are noticed by `data_version`; there
    /// is nothing to announce.
    async fn announce_change(&self, _tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>, _tenant_id: &str) -> crate::error::Result<()> {
        Ok(())
    }

    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        self.writer.begin_with("BEGIN IMMEDIATE").await
    }
}

use super::AuditRow;
use super::sql::AUDIT_ROWS_PER_INSERT;
use sqlx::Row;

super::sql::sql_store!(
    SqliteStore,
    sqlx::Sqlite,
    "sqlite",
    "SELECT 1 WHERE $1 IS NOT NULL",
    // The single writer connection already serialises writes.
    ""
);
