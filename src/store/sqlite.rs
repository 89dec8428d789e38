//! The embedded default: one SQLite file in WAL mode. Writes go through one
//! owned connection with `BEGIN IMMEDIATE`, so writers queue in process
//! instead of meeting "database is locked", and another process on the same
//! file (`latchkey mcp` beside `latchkey serve`) waits on the busy timeout.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use tokio::sync::{Mutex, OwnedMutexGuard};
use tokio_util::sync::CancellationToken;

pub struct SqliteStore {
    writer: Writer,
    /// Group-commits new versions (see `version_writer.rs`).
    versions: VersionWriter,
    reader: SqlitePool,
    /// `PRAGMA data_version` as last seen on the writer connection. On that
    /// connection it moves only when another connection commits, and the
    /// reader connections are read-only: a move means another process wrote.
    data_version: AtomicI64,
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
struct WriteConn(OwnedMutexGuard<Option<sqlx::SqliteConnection>>);

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

async fn lock_writer(writer: &Writer) -> crate::error::Result<WriteConn> {
    let guard = Arc::clone(writer).lock_owned().await;
    if guard.is_none() {
        return Err(crate::error::Error::internal("the database is closed"));
    }
    Ok(WriteConn(guard))
}

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
        Ok(SqliteStore {
            versions: VersionWriter::start(Arc::new(SqliteBatch(Arc::clone(&writer)))),
            writer,
            reader,
            data_version: AtomicI64::new(data_version),
            checkpointer: std::sync::Mutex::new(Some((stop, checkpointer))),
        })
    }

    async fn detect_change_elsewhere(&self) -> crate::error::Result<bool> {
        let now: i64 = sqlx::query_scalar("PRAGMA data_version").fetch_one(&mut *self.write_conn().await?).await?;
        Ok(self.data_version.swap(now, Ordering::SeqCst) != now)
    }

    /// Each chunk is one autocommit statement, so a batch of reads' audit
    /// entries costs one round trip to the connection's thread. The same call
    /// then reads `data_version`, which answers
    /// [`Store::changed_elsewhere`](crate::store::Store::changed_elsewhere) for
    /// free: read after the commit, it has seen every other process's commit
    /// that came before the entries did.
    ///
    /// No entry is refused here: a key changed by another process moves
    /// `data_version`, which this same call reads, and the reader then looks
    /// its key up again (`Vault::record_read`).
    async fn write_audit(&self, entries: &[AuditRow]) -> crate::error::Result<super::Appended> {
        let mut changed = false;
        let mut conn = self.write_conn().await?;
        for chunk in entries.chunks(AUDIT_ROWS_PER_INSERT) {
            let rows: Vec<i64> = bind_audit(sqlx::query(AssertSqlSafe(audit_batch_sql(chunk.len()))), chunk)
                .try_map(|row: sqlx::sqlite::SqliteRow| row.try_get(0))
                .fetch_all(&mut *conn)
                .await?;
            let Some(&v) = rows.last() else { return Err(crate::error::Error::internal("no data_version after an audit insert")) };
            changed |= self.data_version.swap(v, Ordering::SeqCst) != v;
        }
        Ok(super::Appended { changed, refused: Vec::new() })
    }

    fn can_detect_changes(&self) -> bool {
        true
    }

    /// Other processes on the same file are noticed by `data_version`; there
    /// is nothing to announce.
    async fn announce_change(&self, _tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>, _tenant_id: &str) -> crate::error::Result<()> {
        Ok(())
    }

    async fn write_conn(&self) -> crate::error::Result<WriteConn> {
        lock_writer(&self.writer).await
    }

    async fn begin_write(conn: &mut sqlx::SqliteConnection) -> Result<sqlx::Transaction<'_, sqlx::Sqlite>, sqlx::Error> {
        sqlx::Connection::begin_with(conn, "BEGIN IMMEDIATE").await
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

/// How often the WAL is copied into the database file beside the writer.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// WAL pages at which the writer checkpoints inside its own commit, as SQLite
/// does by default at 1,000: a backstop, reached only if the checkpointer
/// stops or falls far behind.
const WRITER_CHECKPOINT_PAGES: u32 = 10_000;

/// Copies the WAL into the database file beside the writer instead of inside
/// its commits. SQLite checkpoints in the connection that commits, inside the
/// commit that takes the WAL past 1,000 pages: every write queued behind it
/// waits while it copies the pages and syncs the database file (the read p99
/// at ~13k req/s was 4.0-4.2 ms against a p90 of 1.5 ms), and at the write
/// peak it copies the same hot pages again every ~25 ms. Here a connection of
/// its own copies every `CHECKPOINT_EVERY` while the writer goes on; then,
/// holding the writer, it copies the few pages committed meanwhile, so the
/// next write starts the WAL over (SQLite reuses a WAL only once all of it is
/// in the database file, and a checkpoint beside a busy writer never catches
/// up alone).
async fn checkpoint_beside_the_writer(mut conn: sqlx::SqliteConnection, writer: Writer, stop: CancellationToken) {
    let mut settled = -1;
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        if let Err(e) = checkpoint_once(&mut conn, &writer, &mut settled).await {
            tracing::warn!(error = %e.public_message_with_cause(), "WAL checkpoint failed; the writer's own checkpoint remains");
        }
    }
    let _ = sqlx::Connection::close(conn).await;
}

/// One round: the bulk on the checkpointer's connection, then the rest on the
/// writer's. `settled` is the WAL's length as the last round left it, all of
/// it copied; while the WAL still has that length, nothing was written since.
async fn checkpoint_once(conn: &mut sqlx::SqliteConnection, writer: &Writer, settled: &mut i64) -> crate::error::Result<()> {
    let (_, wal, _) = checkpoint_passive(conn).await?;
    // -1: another connection is checkpointing (the writer's backstop, another process).
    if wal <= 0 || wal == *settled {
        return Ok(());
    }
    let mut conn = lock_writer(writer).await?;
    let (_, wal, copied) = checkpoint_passive(&mut conn).await?;
    *settled = if copied == wal { wal } else { -1 };
    Ok(())
}

/// `PRAGMA wal_checkpoint(PASSIVE)`: (busy, pages in the WAL, pages of it
/// now in the database file). The WAL's length is the one the checkpoint
/// worked on; writers may have added more meanwhile.
async fn checkpoint_passive(conn: &mut sqlx::SqliteConnection) -> crate::error::Result<(i64, i64, i64)> {
    Ok(sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(&mut *conn).await?)
}

use super::AuditRow;
use super::liveness::credential_is_live;
use super::sql::{AUDIT_INTO, AUDIT_ROWS_PER_INSERT, Params};
use super::version_writer::{self, BatchWrite, Job, MAX_BATCH, VersionWriter};
use sqlx::Row;

/// Lower-case hex, for handing key hashes to SQLite inside a JSON array.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SQLite's statements for a batch of new versions, one text per row count
/// (the writer's statement cache holds them all).
struct SqliteBatch(Writer);

#[async_trait::async_trait]
impl BatchWrite for SqliteBatch {
    /// Two calls to the connection's thread: `BEGIN IMMEDIATE` with the read
    /// of the touched secrets, then the writes with `COMMIT`. Every call is a
    /// hand-off to that thread and back to a runtime worker, and the writer is
    /// the one queue all writes wait in, so the batch does not pay for the
    /// two calls a `sqlx::Transaction` adds. Any failure rolls back before
    /// the writer lock is released; the batch runs in the version writer's
    /// own task, which no client's disconnect can cancel half-way.
    async fn write_batch(&self, jobs: &[Job]) -> crate::error::Result<Vec<crate::error::Result<super::WriteOutcome>>> {
        let mut conn = lock_writer(&self.0).await?;
        let result = write_locked(&mut conn, jobs).await;
        if result.is_err() {
            // Also when SQLite already ended the transaction itself: then this
            // fails harmlessly ("no transaction is active").
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
        }
        result
    }
}

async fn write_locked(
    conn: &mut sqlx::SqliteConnection,
    jobs: &[Job],
) -> crate::error::Result<Vec<crate::error::Result<super::WriteOutcome>>> {
    let jobs: Vec<&Job> = jobs.iter().collect();
    let ids = version_writer::ids(&jobs);
    let credentials = version_writer::credentials(&jobs);
    let presented: Vec<[String; 3]> =
        credentials.iter().map(|c| [hex(&c.key_hash), c.permission.clone(), c.project_scope.clone()]).collect();
    let presented = serde_json::to_string(&presented).map_err(crate::error::Error::internal)?;
    let mut q = sqlx::query(AssertSqlSafe(batch_sql(Shape::Select, ids.len()))).bind(presented).bind(super::now_millis());
    for id in &ids {
        q = q.bind(*id);
    }
    // One call, two statements: the positions of the credentials that no
    // longer name their key as it was (one column), then the secrets.
    let (mut changed, mut rows) = (Vec::new(), Vec::new());
    for row in q.fetch_all(&mut *conn).await? {
        match row.len() {
            // `json_each` keys count from 0.
            1 => changed.push(credentials[super::integrity::position(row.try_get::<i64, _>(0)? + 1, credentials.len())?]),
            _ => rows.push(sqlx::FromRow::from_row(&row)?),
        }
    }
    let plan = version_writer::plan(&jobs, rows, &changed);
    if plan.versions.is_empty() {
        sqlx::query("COMMIT").execute(&mut *conn).await?;
        return Ok(plan.outcomes);
    }
    // Parameters are anonymous, so each statement takes the next ones in order.
    let sql = format!(
        "{}; {}; {}; COMMIT",
        batch_sql(Shape::Versions, plan.versions.len()),
        batch_sql(Shape::Advance, plan.touched.len()),
        batch_sql(Shape::Audit, plan.audits.len())
    );
    let mut q = sqlx::query(AssertSqlSafe(sql));
    for v in &plan.versions {
        q = q.bind(&v.secret_id).bind(v.version).bind(&v.sealed).bind(v.created_at).bind(&v.created_by);
    }
    for r in &plan.touched {
        q = q.bind(&r.id).bind(r.current_version).bind(r.updated_at);
    }
    bind_audit(q, &plan.audits).execute(&mut *conn).await?;
    Ok(plan.outcomes)
}

/// `INSERT INTO audit_log … VALUES (…), (…)` for `rows` rows (at most
/// `AUDIT_ROWS_PER_INSERT`), built once per size, then a second statement in
/// the same call that reads SQLite's `data_version` right after the insert
/// commits: one result row, where `RETURNING` would send one per inserted row
/// (see `SqliteStore::write_audit`). The `PRAGMA` itself, not the
/// `pragma_data_version()` table, which prepares that `PRAGMA` anew on every
/// run.
fn audit_batch_sql(rows: usize) -> &'static str {
    static SQL: [OnceLock<String>; AUDIT_ROWS_PER_INSERT] = [const { OnceLock::new() }; AUDIT_ROWS_PER_INSERT];
    assert!((1..=AUDIT_ROWS_PER_INSERT).contains(&rows), "audit insert of {rows} rows");
    SQL[rows - 1].get_or_init(|| format!("INSERT INTO {AUDIT_INTO} VALUES {}; PRAGMA data_version", Params::Anonymous.values(rows, 11)))
}

#[derive(Clone, Copy)]
enum Shape {
    /// Opens the transaction and reads which of the batch's credentials no
    /// longer name their key as it was (a JSON array of [hex hash,
    /// permission, scope], then the time; the answer is their positions),
    /// then the secrets it touches.
    Select,
    /// One row per new version.
    Versions,
    /// Each touched secret's new current version and time.
    Advance,
    /// One audit row per new version.
    Audit,
}

/// The statement of `shape` for `n` rows, built once per size.
///
/// None of the writes may need a statement journal. Inside a transaction,
/// SQLite copies every page a statement changes into one (spilling to a temp
/// file past 64 KiB) whenever the statement writes several rows and could
/// abort half-way: a multi-row INSERT under a NOT NULL, UNIQUE or immediate
/// foreign key constraint can. That copy was a tenth of the writer thread's
/// time. So the multi-row writes say OR FAIL: a violation stops the statement
/// without undoing its earlier rows, which is safe here because a batch that
/// fails is rolled back whole. A version's foreign key is checked at commit
/// (migration 0002), which asks for no journal either; before, each version
/// went in a statement of its own, and each statement's result crossed to
/// the runtime and back (writes +6 %, -1 to -2 µs of CPU each, when they
/// became one statement).
fn batch_sql(shape: Shape, n: usize) -> &'static str {
    static SQL: [[OnceLock<String>; MAX_BATCH]; 4] = [const { [const { OnceLock::new() }; MAX_BATCH] }; 4];
    assert!((1..=MAX_BATCH).contains(&n), "batch of {n}");
    SQL[shape as usize][n - 1].get_or_init(|| {
        let list = |width: usize| Params::Anonymous.values(n, width);
        match shape {
            Shape::Select => format!(
                "BEGIN IMMEDIATE; SELECT key FROM json_each(?) WHERE NOT {}; \
                 SELECT {SECRET_COLS} FROM secrets WHERE id IN ({})",
                credential_is_live("unhex(value ->> 0)", "value ->> 1", "value ->> 2", "?"),
                Params::Anonymous.list(1, n)
            ),
            Shape::Versions => {
                format!("INSERT OR FAIL INTO secret_versions (secret_id, version, sealed, created_at, created_by) VALUES {}", list(5))
            }
            Shape::Audit => format!("INSERT OR FAIL INTO {AUDIT_INTO} VALUES {}", list(11)),
            Shape::Advance => format!(
                "UPDATE OR FAIL secrets SET current_version = v.column2, updated_at = v.column3 FROM (VALUES {}) AS v WHERE secrets.id = v.column1",
                list(3)
            ),
        }
    })
}

super::sql::sql_store!(
    SqliteStore,
    sqlx::Sqlite,
    "sqlite",
    super::sql::Params::Anonymous,
    "SELECT plan FROM tenants WHERE id = $1",
    // The single writer connection already serialises writes.
    ""
);
