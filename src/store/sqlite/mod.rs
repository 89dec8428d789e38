//! The embedded default: one SQLite file in WAL mode. Writes go through one
//! owned connection with `BEGIN IMMEDIATE`, so writers queue in process
//! instead of meeting "database is locked", and another process on the same
//! file (`latchkey mcp` beside `latchkey serve`) waits on the busy timeout.
//!
//! - [`checkpointer`]: copies the WAL into the database file beside the writer.
//! - [`audit_batch`]: the audit writer's multi-row inserts.
//! - [`version_batch`]: the version writer's statements.

mod audit_batch;
mod checkpointer;
mod version_batch;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, Transaction};
use tokio::sync::{Mutex, OwnedMutexGuard};
use tokio_util::sync::CancellationToken;

use super::sql::Backend;
use super::version_writer::VersionWriter;
use super::{Appended, AuditRow};
use crate::error::Result;
use checkpointer::{WRITER_CHECKPOINT_PAGES, checkpoint_beside_the_writer};
use version_batch::SqliteBatch;

pub struct SqliteStore {
    writer: Writer,
    /// Group-commits new versions (see `version_writer`).
    versions: VersionWriter,
    reader: SqlitePool,
    /// `PRAGMA data_version` as last seen on the writer connection. On that
    /// connection it moves only when another connection commits, and the
    /// reader connections are read-only: a move means another process wrote.
    data_version: AtomicI64,
    /// Each audit chain's head as this process last wrote it (see `store::chain`).
    heads: Arc<super::chain::Heads>,
    /// Stops the checkpointer (see [`checkpoint_beside_the_writer`]) and
    /// waits for it to close its connection.
    checkpointer: std::sync::Mutex<Option<(CancellationToken, tokio::task::JoinHandle<()>)>>,
}

pub const DB_FILE: &str = "latchkey.db";

/// The one connection that writes. It is owned, not pooled: a pool pings a
/// connection each time it comes back (one more round trip to the
/// connection's thread after every write), and `data_version` is only
/// comparable on one connection. Writers queue on the lock, so they never
/// meet "database is locked" from each other. `None` once closed.
type Writer = Arc<Mutex<Option<sqlx::SqliteConnection>>>;

/// The writer, locked for one unit of work.
pub struct WriteConn(OwnedMutexGuard<Option<sqlx::SqliteConnection>>);

impl std::ops::Deref for WriteConn {
    type Target = sqlx::SqliteConnection;
    fn deref(&self) -> &sqlx::SqliteConnection {
        self.0.as_ref().expect("checked open when locked")
    }
}

impl std::ops::DerefMut for WriteConn {
    fn deref_mut(&mut self) -> &mut sqlx::SqliteConnection {
        self.0.as_mut().expect("checked open when locked")
    }
}

async fn lock_writer(writer: &Writer) -> Result<WriteConn> {
    let guard = Arc::clone(writer).lock_owned().await;
    if guard.is_none() {
        return Err(crate::error::Error::internal("the database is closed"));
    }
    Ok(WriteConn(guard))
}

impl SqliteStore {
    pub async fn open(data_dir: &Path) -> Result<Self> {
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
        // Multi-row statements come in one size per row count.
        let writer_opts = opts.clone().statement_cache_capacity(512).pragma("wal_autocheckpoint", WRITER_CHECKPOINT_PAGES.to_string());
        let mut writer = sqlx::ConnectOptions::connect(&writer_opts).await?;
        sqlx::migrate!("migrations/sqlite")
            .run(&mut writer)
            .await
            .map_err(|e| crate::error::Error::internal(format_args!("migrations: {e}")))?;
        // As of now: what other processes committed before is in the database
        // already, and the cache starts empty.
        let data_version: i64 = sqlx::query_scalar("PRAGMA data_version").fetch_one(&mut writer).await?;
        let writer: Writer = Arc::new(Mutex::new(Some(writer)));
        let stop = CancellationToken::new();
        let checkpointing = sqlx::ConnectOptions::connect(&opts).await?;
        let checkpointer = tokio::spawn(checkpoint_beside_the_writer(checkpointing, Arc::clone(&writer), stop.clone()));
        // sqlx pings a pooled connection before handing it out by default, one
        // more round trip to the connection's thread per query; a file has no
        // peer that could have gone away.
        let reader = SqlitePoolOptions::new().max_connections(8).test_before_acquire(false).connect_with(opts.read_only(true)).await?;
        let heads = Arc::new(super::chain::Heads::default());
        Ok(SqliteStore {
            versions: VersionWriter::start(Arc::new(SqliteBatch(Arc::clone(&writer)))),
            heads,
            writer,
            reader,
            data_version: AtomicI64::new(data_version),
            checkpointer: std::sync::Mutex::new(Some((stop, checkpointer))),
        })
    }
}

impl Backend for SqliteStore {
    type Db = Sqlite;
    type WriteConn = WriteConn;
    const NAME: &'static str = "sqlite";
    const LOCK_TENANT: &'static str = "SELECT plan FROM tenants WHERE id = $1";
    // The single writer connection already serialises writes.
    const FOR_UPDATE: &'static str = "";

    fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    fn versions(&self) -> &VersionWriter {
        &self.versions
    }

    async fn write_conn(&self) -> Result<WriteConn> {
        lock_writer(&self.writer).await
    }

    async fn begin_write(conn: &mut WriteConn) -> Result<Transaction<'_, Sqlite>> {
        Ok(sqlx::Connection::begin_with(&mut **conn, "BEGIN IMMEDIATE").await?)
    }

    /// Other processes on the same file are noticed by `data_version`; there
    /// is nothing to announce.
    async fn announce_change(&self, _tx: &mut Transaction<'_, Sqlite>, _tenant_id: &str) -> Result<()> {
        Ok(())
    }

    async fn write_audit(&self, entries: &[AuditRow]) -> Result<Appended> {
        self.write_audit_batch(entries).await
    }

    async fn detect_change_elsewhere(&self) -> Result<bool> {
        let now: i64 = sqlx::query_scalar("PRAGMA data_version").fetch_one(&mut *self.write_conn().await?).await?;
        Ok(self.data_version.swap(now, Ordering::SeqCst) != now)
    }

    fn can_detect_changes(&self) -> bool {
        true
    }

    async fn close_writer(&self) {
        let checkpointer = self.checkpointer.lock().expect("not poisoned").take();
        if let Some((stop, task)) = checkpointer {
            stop.cancel();
            let _ = task.await;
        }
        if let Some(conn) = self.writer.lock().await.take() {
            let _ = sqlx::Connection::close(conn).await;
        }
    }
}
