//! PostgreSQL, for many stateless replicas on one database. Quota checks lock
//! the tenant row so replicas cannot race past a plan limit. A replica tells
//! the others about changes that caches depend on with `NOTIFY`, sent inside
//! the transaction so it is delivered only if the change commits.
//!
//! - [`listener`]: the `LISTEN` connection that hears other replicas.
//! - [`held`]: a connection one batch writer keeps between uses.
//! - [`write_conn`]: the pooled connection of a write transaction, and the
//!   driver workaround it carries.
//! - [`columns`]: rows bound as whole columns (arrays) for batch statements.
//! - [`audit_batch`]: the audit writer's one statement per batch.
//! - [`version_batch`]: the version writer's statements.

mod audit_batch;
mod columns;
mod held;
mod listener;
mod version_batch;
mod write_conn;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};

use super::sql::Backend;
use super::version_writer::VersionWriter;
use super::{Appended, AuditRow};
use crate::error::Result;
use held::Held;
use version_batch::PgBatch;
pub use write_conn::WriteConn;

/// The channel replicas announce cache-relevant changes on.
pub(super) const CHANNEL: &str = "latchkey_changes";

pub struct PgStore {
    writer: PgPool,
    /// The same pool: PostgreSQL needs no separate read path.
    reader: PgPool,
    /// This process, so it can ignore its own announcements.
    instance: String,
    /// Set by the listener when another replica announced a change.
    changed: Arc<AtomicBool>,
    /// Whether the listener is subscribed right now. While it is not, every
    /// check reports a change, which keeps the cache above empty.
    listening: Arc<AtomicBool>,
    /// Group-commits this replica's new versions (see `version_writer`).
    versions: VersionWriter,
    /// The audit writer's connection, and the version writer's batches.
    audit: Held,
    batch: Arc<PgBatch>,
    /// Each audit chain's head as this replica last wrote it (see `store::chain`).
    heads: Arc<super::chain::Heads>,
}

impl PgStore {
    pub async fn open(url: &str) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            // sqlx pings every connection it hands out by default: one more
            // round trip to the database per statement under load. A connection
            // that sat idle may have been dropped by the server or a proxy, so
            // those are still checked.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for > Duration::from_secs(10) {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            .connect(url)
            .await?;
        sqlx::migrate!("migrations/postgres")
            .run(&pool)
            .await
            .map_err(|e| crate::error::Error::internal(format_args!("migrations: {e}")))?;
        let heads = Arc::new(super::chain::Heads::default());
        let instance = uuid::Uuid::new_v4().to_string();
        let batch = Arc::new(PgBatch {
            pool: pool.clone(),
            held: Held::new(pool.clone()),
            instance: instance.clone(),
            last: Default::default(),
            heads: heads.clone(),
        });
        let store = PgStore {
            versions: VersionWriter::start(batch.clone()),
            batch,
            audit: Held::new(pool.clone()),
            writer: pool.clone(),
            reader: pool,
            instance,
            changed: Arc::new(AtomicBool::new(true)),
            listening: Arc::new(AtomicBool::new(false)),
            heads,
        };
        listener::spawn(store.reader.clone(), store.instance.clone(), store.changed.clone(), store.listening.clone());
        Ok(store)
    }
}

impl Backend for PgStore {
    type Db = Postgres;
    type WriteConn = WriteConn;
    const NAME: &'static str = "postgres";
    // NO KEY: the foreign-key checks of new keys and projects need not wait.
    const LOCK_TENANT: &'static str = "SELECT plan FROM tenants WHERE id = $1 FOR NO KEY UPDATE";
    const FOR_UPDATE: &'static str = " FOR UPDATE";

    fn reader(&self) -> &PgPool {
        &self.reader
    }

    fn versions(&self) -> &VersionWriter {
        &self.versions
    }

    async fn write_conn(&self) -> Result<WriteConn> {
        Ok(WriteConn::acquire(&self.writer).await?)
    }

    async fn begin_write(c: &mut WriteConn) -> Result<Transaction<'_, Postgres>> {
        Ok(c.begin().await?)
    }

    async fn announce_change(&self, tx: &mut Transaction<'_, Postgres>, _tenant_id: &str) -> Result<()> {
        announce(tx, &self.instance).await
    }

    async fn write_audit(&self, entries: &[AuditRow]) -> Result<Appended> {
        self.write_audit_batch(entries).await
    }

    /// Closing marks the pool closed first, so the writers cannot take
    /// another connection while theirs are given back.
    async fn close_writer(&self) {
        tokio::join!(self.writer.close(), self.audit.release(), self.batch.held.release());
    }

    async fn detect_change_elsewhere(&self) -> Result<bool> {
        let changed = self.changed.swap(false, Ordering::SeqCst);
        Ok(changed || !self.listening.load(Ordering::SeqCst))
    }

    fn can_detect_changes(&self) -> bool {
        self.listening.load(Ordering::SeqCst)
    }
}

/// Tells the other replicas, once `tx` commits, that cached keys or secrets changed.
pub(super) async fn announce(tx: &mut Transaction<'_, Postgres>, instance: &str) -> Result<()> {
    sqlx::query("SELECT pg_notify($1, $2)").bind(CHANNEL).bind(instance).execute(&mut **tx).await?;
    Ok(())
}

/// Whether PostgreSQL answered `e` as the failure of a statement, which it
/// then rolled back. A FATAL or PANIC ends the session instead, and may come
/// after a commit; anything else (a connection cut, a timeout) may have come
/// after the commit too.
pub(super) fn refused(e: &sqlx::Error) -> bool {
    use sqlx::postgres::{PgDatabaseError, PgSeverity};
    match e {
        sqlx::Error::Database(d) => {
            d.try_downcast_ref::<PgDatabaseError>().is_none_or(|pg| !matches!(pg.severity(), PgSeverity::Fatal | PgSeverity::Panic))
        }
        _ => false,
    }
}
