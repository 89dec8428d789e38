//! PostgreSQL, for many stateless replicas on one database. Quota checks lock
//! the tenant row so replicas cannot race past a plan limit. A replica tells
//! the others about changes that caches depend on with `NOTIFY`, sent inside
//! the transaction so it is delivered only if the change commits.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};

/// The channel replicas announce cache-relevant changes on.
const CHANNEL: &str = "latchkey_changes";

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
    /// Group-commits this replica's new versions (see `version_writer.rs`).
    versions: VersionWriter,
}

impl PgStore {
    pub async fn open(url: &str) -> crate::error::Result<Self> {
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
        let instance = uuid::Uuid::new_v4().to_string();
        let store = PgStore {
            versions: VersionWriter::start(Arc::new(PgBatch { pool: pool.clone(), instance: instance.clone() })),
            writer: pool.clone(),
            reader: pool,
            instance,
            changed: Arc::new(AtomicBool::new(true)),
            listening: Arc::new(AtomicBool::new(false)),
        };
        store.spawn_listener();
        Ok(store)
    }

    /// Keeps one `LISTEN` connection open for the life of the process,
    /// reconnecting after a loss; any gap counts as a change.
    fn spawn_listener(&self) {
        let (pool, instance, changed, listening) =
            (self.reader.clone(), self.instance.clone(), self.changed.clone(), self.listening.clone());
        tokio::spawn(async move {
            while !pool.is_closed() {
                if let Ok(mut listener) = PgListener::connect_with(&pool).await
                    && listener.listen(CHANNEL).await.is_ok()
                {
                    changed.store(true, Ordering::SeqCst);
                    listening.store(true, Ordering::SeqCst);
                    while let Ok(Some(n)) = listener.try_recv().await {
                        if n.payload() != instance {
                            changed.store(true, Ordering::SeqCst);
                        }
                    }
                    listening.store(false, Ordering::SeqCst);
                    changed.store(true, Ordering::SeqCst);
                    tracing::warn!("lost the PostgreSQL LISTEN connection; caching is off until it is back");
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
    }

    async fn write_conn(&self) -> Result<WriteConn, sqlx::Error> {
        Ok(WriteConn { conn: self.writer.acquire().await?, beginning: false })
    }

    async fn begin_write(c: &mut WriteConn) -> Result<sqlx::Transaction<'_, sqlx::Postgres>, sqlx::Error> {
        c.beginning = true;
        let tx = sqlx::Connection::begin(&mut *c.conn).await?;
        c.beginning = false;
        Ok(tx)
    }

    async fn close_writer(&self) {
        self.writer.close().await;
    }

    async fn detect_change_elsewhere(&self) -> crate::error::Result<bool> {
        let changed = self.changed.swap(false, Ordering::SeqCst);
        Ok(changed || !self.listening.load(Ordering::SeqCst))
    }

    fn can_detect_changes(&self) -> bool {
        self.listening.load(Ordering::SeqCst)
    }

    /// One autocommit statement whatever the batch's size: the entries go as
    /// eleven column arrays (`UNNEST`), as in the rotation batch.
    async fn write_audit(&self, entries: &[super::AuditRow]) -> crate::error::Result<bool> {
        static SQL: LazyLock<String> =
            LazyLock::new(|| format!("INSERT INTO {} SELECT * FROM {}", super::sql::AUDIT_INTO, audit_columns(1)));
        bind_audit_columns(sqlx::query(AssertSqlSafe(SQL.as_str())), entries).execute(&self.writer).await?;
        self.detect_change_elsewhere().await
    }

    async fn announce_change(&self, tx: &mut sqlx::Transaction<'_, sqlx::Postgres>, _tenant_id: &str) -> crate::error::Result<()> {
        announce(tx, &self.instance).await
    }
}

/// A pooled connection a write transaction is opened on. sqlx 0.9 counts a
/// transaction as open only once `BEGIN` has been answered, so a request
/// dropped while waiting for that answer (its client went away) leaves the
/// session inside a transaction nothing rolls back, and the pool hands it on:
/// the next autocommit statement there (an audit batch, a rotation) would
/// never commit, though its caller was answered. Such a connection is closed
/// instead of returned, which ends the transaction on the server.
/// (launchbadge/sqlx#4393; the fix is not released yet.)
pub struct WriteConn {
    conn: sqlx::pool::PoolConnection<sqlx::Postgres>,
    beginning: bool,
}

impl Drop for WriteConn {
    fn drop(&mut self) {
        if self.beginning {
            self.conn.close_on_drop();
        }
    }
}

/// Tells the other replicas, once `tx` commits, that cached keys or secrets changed.
async fn announce(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>, instance: &str) -> crate::error::Result<()> {
    sqlx::query("SELECT pg_notify($1, $2)").bind(CHANNEL).bind(instance).execute(&mut **tx).await?;
    Ok(())
}

/// PostgreSQL's statements for a batch of new versions: whole columns bound
/// as arrays (`UNNEST`), so one statement text serves every batch size. The
/// rows are locked in id order, so batches of different replicas cannot
/// deadlock on each other.
struct PgBatch {
    pool: PgPool,
    instance: String,
}

#[async_trait::async_trait]
impl BatchWrite for PgBatch {
    async fn write_batch(&self, jobs: &[Job]) -> crate::error::Result<Vec<crate::error::Result<super::WriteOutcome>>> {
        let mut tx = self.pool.begin().await?;
        let ids: Vec<String> = version_writer::ids(jobs).into_iter().map(str::to_owned).collect();
        let rows: Vec<super::SecretRow> = sqlx::query_as(
            "SELECT id, tenant_id, project_id, environment, name, secret_type, description, tags, current_version, created_at, \
             updated_at FROM secrets WHERE id = ANY($1) ORDER BY id FOR UPDATE",
        )
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await?;
        let plan = version_writer::plan(jobs, rows);
        if plan.versions.is_empty() {
            return Ok(plan.outcomes);
        }
        // The new versions, the advance of each secret, the audit entries and
        // the announcement are one statement (data-modifying CTEs): one round
        // trip to the database instead of four.
        let (v, t) = (&plan.versions, &plan.touched);
        static SQL: LazyLock<String> = LazyLock::new(|| {
            format!(
                "WITH new_versions AS (
                 INSERT INTO secret_versions (secret_id, version, sealed, created_at, created_by)
                 SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bytea[], $4::bigint[], $5::text[])
             ), advanced AS (
                 UPDATE secrets AS s SET current_version = v.ver, updated_at = v.at
                 FROM UNNEST($6::text[], $7::bigint[], $8::bigint[]) AS v(id, ver, at) WHERE s.id = v.id
             ), audited AS (
                 INSERT INTO {} SELECT * FROM {}
             )
             SELECT pg_notify($20, $21)",
                super::sql::AUDIT_INTO,
                audit_columns(9)
            )
        });
        let q = sqlx::query(AssertSqlSafe(SQL.as_str()))
            .bind(column(v, |v| v.secret_id.as_str()))
            .bind(column(v, |v| v.version))
            .bind(column(v, |v| v.sealed.as_slice()))
            .bind(column(v, |v| v.created_at))
            .bind(column(v, |v| v.created_by.as_str()))
            .bind(column(t, |r| r.id.as_str()))
            .bind(column(t, |r| r.current_version))
            .bind(column(t, |r| r.updated_at));
        bind_audit_columns(q, &plan.audits).bind(CHANNEL).bind(&self.instance).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(plan.outcomes)
    }
}

use super::version_writer::{self, BatchWrite, Job, VersionWriter};

type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

fn column<'r, T, U>(rows: &'r [T], f: impl Fn(&'r T) -> U) -> Vec<U> {
    rows.iter().map(f).collect()
}

/// `UNNEST($first::text[], …)`: the audit columns of [`bind_audit_columns`]
/// as rows, in `AUDIT_INTO`'s order.
fn audit_columns(first: usize) -> String {
    let types = ["text", "bigint", "text", "text", "text", "text", "text", "text", "text", "text", "text"];
    let cols: Vec<String> = types.iter().enumerate().map(|(i, t)| format!("${}::{t}[]", first + i)).collect();
    format!("UNNEST({})", cols.join(", "))
}

/// Binds audit rows as eleven column arrays, after whatever `q` binds.
fn bind_audit_columns<'q>(q: PgQuery<'q>, a: &'q [super::AuditRow]) -> PgQuery<'q> {
    q.bind(column(a, |a| a.tenant_id.as_deref()))
        .bind(column(a, |a| a.at))
        .bind(column(a, |a| a.actor.as_str()))
        .bind(column(a, |a| a.front.as_str()))
        .bind(column(a, |a| a.action.as_str()))
        .bind(column(a, |a| a.resource_type.as_str()))
        .bind(column(a, |a| a.resource_id.as_deref()))
        .bind(column(a, |a| a.outcome.as_str()))
        .bind(column(a, |a| a.ip.as_deref()))
        .bind(column(a, |a| a.user_agent.as_deref()))
        .bind(column(a, |a| a.detail.as_deref()))
}

super::sql::sql_store!(
    PgStore,
    sqlx::Postgres,
    "postgres",
    super::sql::Params::Numbered,
    "SELECT id FROM tenants WHERE id = $1 FOR UPDATE",
    " FOR UPDATE"
);
