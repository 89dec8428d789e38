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

/// How long the `LISTEN` connection may sit silent before it is probed, and
/// how long the probe may take. Together they bound how long a replica whose
/// listener died silently goes on trusting its cache.
const HEARTBEAT: Duration = Duration::from_secs(1);
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long connecting and subscribing may take before the listener tries
/// again: a connection can die silently before `LISTEN` is answered, too.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(5);

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
    /// The audit writer's connection, and the version writer's batches.
    audit: Held,
    batch: Arc<PgBatch>,
}

/// A connection that one task keeps between uses, for the audit and version
/// writers' batch statements. sqlx checks every connection that comes back to
/// the pool with a round trip (a `Sync`), and these writers use theirs back
/// to back: kept, a batch costs one round trip, on one warm backend.
///
/// It runs with `plan_cache_mode = force_generic_plan`. Those statements bind
/// whole columns as arrays, and PostgreSQL's default keeps planning them
/// anew for every batch (a plan for 40 rows looks cheaper than the generic
/// one, which cannot know the length): the planner was a quarter of the audit
/// backend's CPU. The setting must not reach the pool, whose audit queries
/// are planned for their actual values on purpose (`query_audit`), so the
/// connection is detached from the pool: it is closed, never given back,
/// when it fails or sits idle long enough for a server or proxy to have
/// dropped it, and the next batch opens another.
struct Held {
    pool: PgPool,
    slot: tokio::sync::Mutex<HeldSlot>,
}

/// The kept connection and when it last succeeded.
type HeldSlot = Option<(sqlx::PgConnection, std::time::Instant)>;

/// How long a held connection may idle before it is replaced.
const HELD_IDLE: Duration = Duration::from_secs(10);

impl Held {
    fn new(pool: PgPool) -> Self {
        Held { pool, slot: Default::default() }
    }

    /// The held connection, opened if there is none.
    async fn lock(&self) -> Result<HeldConn<'_>, sqlx::Error> {
        let mut slot = self.slot.lock().await;
        if slot.as_ref().is_some_and(|(_, used)| used.elapsed() > HELD_IDLE) {
            *slot = None;
        }
        if slot.is_none() {
            // Taken through the pool for its limits and timeouts; detached,
            // the pool may open another in its place.
            let mut conn = self.pool.acquire().await?.detach();
            sqlx::query("SET plan_cache_mode = force_generic_plan").execute(&mut conn).await?;
            *slot = Some((conn, std::time::Instant::now()));
        }
        Ok(HeldConn { slot, ok: false })
    }

    /// Closes the connection.
    async fn release(&self) {
        if let Some((conn, _)) = self.slot.lock().await.take() {
            let _ = sqlx::Connection::close(conn).await;
        }
    }
}

/// The held connection, locked for one use. Unless [`HeldConn::settle`]
/// reports a success, it is closed when this is dropped.
struct HeldConn<'a> {
    slot: tokio::sync::MutexGuard<'a, HeldSlot>,
    ok: bool,
}

impl HeldConn<'_> {
    fn conn(&mut self) -> &mut sqlx::PgConnection {
        &mut self.slot.as_mut().expect("filled when locked").0
    }

    /// Keeps the connection after a success; closes it after a failure.
    fn settle<T, E>(mut self, result: Result<T, E>) -> Result<T, E> {
        if result.is_ok() {
            self.slot.as_mut().expect("filled when locked").1 = std::time::Instant::now();
            self.ok = true;
        }
        result
    }
}

impl Drop for HeldConn<'_> {
    fn drop(&mut self) {
        if !self.ok {
            *self.slot = None;
        }
    }
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
        let batch =
            Arc::new(PgBatch { pool: pool.clone(), held: Held::new(pool.clone()), instance: instance.clone(), last: Default::default() });
        let store = PgStore {
            versions: VersionWriter::start(batch.clone()),
            batch,
            audit: Held::new(pool.clone()),
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
    ///
    /// A listener only reads, and a connection that died without a word (the
    /// database host gone in a failover, a NAT or proxy that forgot it) never
    /// fails a read: without a probe it would wait for notifications that can
    /// no longer come while the cache went on serving. So an idle listener
    /// asks the server something every [`HEARTBEAT`], and a connection that
    /// does not answer within [`HEARTBEAT_TIMEOUT`] counts as lost.
    ///
    /// Each listening session gets a one-connection pool of its own. Dropping
    /// a `PgListener` sends `UNLISTEN *` on its connection in a task with no
    /// timeout; on a connection that died silently that task holds the
    /// connection until TCP gives up (about a quarter of an hour). In the
    /// shared pool it would take one of the writers' connections and keep
    /// closing the pool, and so shutdown, waiting; in a pool shared by all
    /// listening sessions a few silent deaths in a row would leave no
    /// connection to listen on. A pool of its own is simply left to that task.
    fn spawn_listener(&self) {
        let (pool, instance, changed, listening) =
            (self.reader.clone(), self.instance.clone(), self.changed.clone(), self.listening.clone());
        tokio::spawn(async move {
            // Whether the last attempt to listen failed: said once per outage.
            let mut failing = false;
            while !pool.is_closed() {
                let own = PgPoolOptions::new()
                    .max_connections(1)
                    .max_lifetime(None)
                    .idle_timeout(None)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_lazy_with((*pool.connect_options()).clone());
                let subscribed = async {
                    let mut listener = PgListener::connect_with(&own).await?;
                    listener.listen(CHANNEL).await?;
                    Ok::<_, sqlx::Error>(listener)
                };
                let subscribed = tokio::time::timeout(SUBSCRIBE_TIMEOUT, subscribed).await.unwrap_or_else(|_| {
                    Err(sqlx::Error::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, "LISTEN was not answered in time")))
                });
                match subscribed {
                    Err(e) => {
                        if !std::mem::replace(&mut failing, true) {
                            tracing::warn!(error = %e, "cannot LISTEN on PostgreSQL; caching stays off until it can");
                        }
                    }
                    Ok(mut listener) => {
                        failing = false;
                        // A lost connection ends `try_recv` at once. By default sqlx
                        // would reconnect inside it, and a heartbeat firing during
                        // that reconnect would drop it half-way and let the probe
                        // reconnect silently: the gap's notifications lost unnoticed.
                        listener.eager_reconnect(false);
                        changed.store(true, Ordering::SeqCst);
                        listening.store(true, Ordering::SeqCst);
                        loop {
                            // Reading a notification is cancel-safe: one half read
                            // when the heartbeat fires stays in the buffer.
                            tokio::select! {
                                n = listener.try_recv() => match n {
                                    Ok(Some(n)) if n.payload() != instance => changed.store(true, Ordering::SeqCst),
                                    Ok(Some(_)) => {}
                                    _ => break,
                                },
                                () = tokio::time::sleep(HEARTBEAT) => {
                                    let probe = sqlx::query("SELECT 1").execute(&mut listener);
                                    if !matches!(tokio::time::timeout(HEARTBEAT_TIMEOUT, probe).await, Ok(Ok(_))) {
                                        break;
                                    }
                                }
                            }
                        }
                        listening.store(false, Ordering::SeqCst);
                        changed.store(true, Ordering::SeqCst);
                        tracing::warn!("lost the PostgreSQL LISTEN connection; caching is off until it is back");
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
    }

    async fn write_conn(&self) -> Result<WriteConn, sqlx::Error> {
        WriteConn::acquire(&self.writer).await
    }

    async fn begin_write(c: &mut WriteConn) -> Result<sqlx::Transaction<'_, sqlx::Postgres>, sqlx::Error> {
        c.beginning = true;
        let tx = sqlx::Connection::begin(&mut *c.conn).await?;
        c.beginning = false;
        Ok(tx)
    }

    /// Closing marks the pool closed first, so the writers cannot take
    /// another connection while theirs are given back.
    async fn close_writer(&self) {
        tokio::join!(self.writer.close(), self.audit.release(), self.batch.held.release());
    }

    async fn detect_change_elsewhere(&self) -> crate::error::Result<bool> {
        let changed = self.changed.swap(false, Ordering::SeqCst);
        Ok(changed || !self.listening.load(Ordering::SeqCst))
    }

    fn can_detect_changes(&self) -> bool {
        self.listening.load(Ordering::SeqCst)
    }

    /// One autocommit statement whatever the batch's size: the entries go as
    /// eleven column arrays, unnested in the select list. There the arrays
    /// are read in step, row by row; `UNNEST(a, b, …)` in `FROM` first copies
    /// each array into a tuplestore of its own, and that copying, with the
    /// materialized rows it fed, was a sixth of the backend's CPU per batch.
    /// Entries of one batch come from concurrent requests and have no order
    /// among themselves, so none is imposed.
    ///
    /// A success entry goes in only while its key's row still says what the
    /// request presented, as a write's entry does (`guarded_audit_sql`), and
    /// that of a read answered from the cache only while the secret is still
    /// as the cache had it (see `Served`). Here the
    /// cache learns of another replica's changes by notification, which a
    /// silently dead listener delays by seconds; the rows themselves, checked
    /// in the statement that makes the read durable, are never late. The
    /// statement answers the positions it left out.
    async fn write_audit(&self, entries: &[super::AuditRow]) -> crate::error::Result<super::Appended> {
        // Each distinct key and served version is checked once, however many
        // entries of the batch name it; the entries point at them by position.
        static SQL: LazyLock<String> = LazyLock::new(|| {
            format!(
                "WITH bad_keys AS MATERIALIZED (
                     SELECT i FROM UNNEST($12::bytea[], $13::text[], $14::text[]) WITH ORDINALITY AS k(h, p, s, i)
                     WHERE NOT {}
                 ), stale AS MATERIALIZED (
                     SELECT i FROM UNNEST($15::text[], $16::bigint[], $17::bigint[]) WITH ORDINALITY AS v(id, cur, upd, i)
                     WHERE NOT EXISTS (SELECT 1 FROM secrets WHERE id = v.id AND current_version = v.cur AND updated_at = v.upd)
                 ), refused AS MATERIALIZED (
                     SELECT n FROM (SELECT unnest($18::bigint[]) AS ki, unnest($19::bigint[]) AS vi,
                                           generate_series(1::bigint, cardinality($19::bigint[])) AS n) r
                     WHERE ki IN (SELECT i FROM bad_keys) OR vi IN (SELECT i FROM stale)
                 ), written AS (
                     INSERT INTO {AUDIT_INTO}
                     SELECT {} FROM (SELECT {}, generate_series(1::bigint, cardinality($2::bigint[])) AS n) a
                     WHERE n NOT IN (SELECT n FROM refused)
                 )
                 SELECT n FROM refused",
                credential_is_live("k.h", "k.p", "k.s", "$20"),
                audit_names().join(", "),
                unnested(1),
            )
        });
        // Failures and anonymous attempts are recorded whatever the key's state.
        let success = |a: &&super::AuditRow| a.outcome == "success";
        let mut keys: Vec<&super::Credential> = Vec::new();
        let mut served: Vec<&super::Served> = Vec::new();
        let mut key_at = Vec::with_capacity(entries.len());
        let mut served_at = Vec::with_capacity(entries.len());
        for a in entries {
            let key = a.credential.as_ref().filter(|_| success(&a));
            key_at.push(key.map(|k| position_of(&mut keys, k)));
            served_at.push(a.served.as_ref().filter(|_| success(&a)).map(|v| position_of(&mut served, v)));
        }
        let q = bind_audit_columns(sqlx::query(AssertSqlSafe(SQL.as_str())), entries)
            .bind(column(&keys, |k| k.key_hash.as_slice()))
            .bind(column(&keys, |k| k.permission.as_str()))
            .bind(column(&keys, |k| k.project_scope.as_str()))
            .bind(column(&served, |v| v.secret_id.as_str()))
            .bind(column(&served, |v| v.version))
            .bind(column(&served, |v| v.updated_at))
            .bind(key_at)
            .bind(served_at)
            // Judged now, as every write's key is (see `store::liveness`).
            .bind(super::now_millis());
        let mut held = self.audit.lock().await?;
        let done = q.fetch_all(held.conn()).await;
        let refused = held
            .settle(done)?
            .iter()
            .map(|row| super::integrity::position(sqlx::Row::try_get::<i64, _>(row, 0)?, entries.len()))
            .collect::<crate::error::Result<Vec<_>>>()?;
        Ok(super::Appended { changed: self.detect_change_elsewhere().await?, refused })
    }

    async fn announce_change(&self, tx: &mut sqlx::Transaction<'_, sqlx::Postgres>, _tenant_id: &str) -> crate::error::Result<()> {
        announce(tx, &self.instance).await
    }
}

/// Whether PostgreSQL answered `e` as the failure of a statement, which it
/// then rolled back. A FATAL or PANIC ends the session instead, and may come
/// after a commit; anything else (a connection cut, a timeout) may have come
/// after the commit too.
fn refused(e: &sqlx::Error) -> bool {
    use sqlx::postgres::{PgDatabaseError, PgSeverity};
    match e {
        sqlx::Error::Database(d) => {
            d.try_downcast_ref::<PgDatabaseError>().is_none_or(|pg| !matches!(pg.severity(), PgSeverity::Fatal | PgSeverity::Panic))
        }
        _ => false,
    }
}

/// The answer to a rotation whose statement may have committed although its
/// answer was lost: running it again could write it twice.
fn outcome_unknown(cause: &str) -> crate::error::Error {
    crate::error::Error::Internal(format!("rotation outcome unknown: {cause}"))
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

impl WriteConn {
    async fn acquire(pool: &PgPool) -> Result<Self, sqlx::Error> {
        Ok(WriteConn { conn: pool.acquire().await?, beginning: false })
    }
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
/// as arrays (`UNNEST`), so one statement text serves every batch size.
struct PgBatch {
    pool: PgPool,
    /// For the unlocked batches; a locked one takes a connection of its own.
    held: Held,
    instance: String,
    /// Each secret as this replica's last batch left it, so the next batch on
    /// it needs no read first. Only a guess: the write compares and sets.
    last: std::sync::Mutex<HashMap<String, super::SecretRow>>,
}

/// Most secrets [`PgBatch::last`] remembers; it starts over when full.
const REMEMBERED: usize = 4096;

#[async_trait::async_trait]
impl BatchWrite for PgBatch {
    /// Each round trip to the database costs a rotation batch more than the
    /// database's own work, and a transaction that locks first takes four
    /// (`BEGIN`, the locking read, the writes, `COMMIT`). So a batch first
    /// goes without one: plan on the secrets as last written here (reading
    /// only those not remembered) and write in one autocommit statement that
    /// compares and sets each secret. Only the jobs of a secret that moved
    /// meanwhile (another replica wrote it) take the locked path.
    async fn write_batch(&self, jobs: &[Job]) -> crate::error::Result<Vec<crate::error::Result<super::WriteOutcome>>> {
        let all: Vec<&Job> = jobs.iter().collect();
        // A failed statement wrote nothing: the locked path takes every job.
        let mut outcomes = self.write_unlocked(&all).await.unwrap_or_else(|_| all.iter().map(|_| None).collect());
        let rest: Vec<&Job> = all.iter().zip(&outcomes).filter(|(_, o)| o.is_none()).map(|(j, _)| *j).collect();
        if rest.is_empty() {
            return Ok(outcomes.into_iter().flatten().collect());
        }
        let locked = match self.write_locked(&rest).await {
            Ok(locked) => locked,
            // Nothing of this batch committed: the version writer retries each job alone.
            Err(e) if rest.len() == jobs.len() => return Err(e),
            // Some jobs committed above and must not run again: the rest go alone.
            Err(_) => {
                let mut one_by_one = Vec::with_capacity(rest.len());
                for job in &rest {
                    one_by_one.push(match self.write_locked(std::slice::from_ref(job)).await {
                        Ok(mut one) => one.pop().expect("one outcome"),
                        Err(e) => Err(e),
                    });
                }
                one_by_one
            }
        };
        let mut locked = locked.into_iter();
        for slot in outcomes.iter_mut().filter(|o| o.is_none()) {
            *slot = locked.next();
        }
        Ok(outcomes.into_iter().map(|o| o.expect("every job answered")).collect())
    }
}

impl PgBatch {
    /// Plans on the remembered rows, reading the others without a lock, and
    /// writes every secret that still has the version, name and project the
    /// plan saw (what it depends on) in one statement, which commits on its
    /// own. `None` for the jobs of a secret that moved (nothing of it was
    /// written), and for jobs on a remembered secret the batch does not
    /// write (stale, refused): no write confirmed the row they were judged
    /// on. Jobs on secrets just read and not written (missing, stale,
    /// refused) are answered from the read.
    async fn write_unlocked(&self, jobs: &[&Job]) -> crate::error::Result<Vec<Option<crate::error::Result<super::WriteOutcome>>>> {
        static READ: LazyLock<String> = LazyLock::new(|| format!("SELECT {SECRET_COLS} FROM secrets WHERE id = ANY($1)"));
        static WRITE: LazyLock<String> = LazyLock::new(|| {
            format!(
                "WITH advanced AS (
                 UPDATE secrets AS s SET current_version = v.ver, updated_at = v.at
                 FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::text[], $6::text[]) AS v(id, seen, ver, at, name, project)
                 WHERE s.id = v.id AND s.current_version = v.seen AND s.name = v.name AND s.project_id IS NOT DISTINCT FROM v.project
                   AND NOT EXISTS (SELECT 1 FROM UNNEST($26::bytea[], $28::text[], $29::text[]) AS w(h, p, s)
                                   WHERE NOT {})
                 RETURNING s.*
             ), new_versions AS (
                 INSERT INTO secret_versions (secret_id, version, sealed, created_at, created_by)
                 SELECT * FROM (SELECT unnest($7::text[]) AS id, unnest($8::bigint[]) AS version, unnest($9::bytea[]) AS sealed,
                                       unnest($10::bigint[]) AS created_at, unnest($11::text[]) AS created_by) n
                 WHERE n.id IN (SELECT id FROM advanced)
             ), audited AS (
                 INSERT INTO {AUDIT_INTO} SELECT {} FROM (SELECT {}, unnest($23::text[]) AS id) a
                 WHERE a.id IN (SELECT id FROM advanced)
             )
             SELECT {SECRET_COLS}, (SELECT pg_notify($24, $25)) AS announced FROM advanced",
                credential_is_live("w.h", "w.p", "w.s", "$27"),
                audit_names().join(", "),
                unnested(12),
            )
        });
        let (mut rows, mut unknown) = (Vec::new(), Vec::new());
        {
            let last = self.last.lock().expect("not poisoned");
            for id in version_writer::ids(jobs) {
                match last.get(id) {
                    Some(row) => rows.push(row.clone()),
                    None => unknown.push(id),
                }
            }
        }
        let remembered: std::collections::HashSet<String> = rows.iter().map(|r| r.id.clone()).collect();
        if !unknown.is_empty() {
            let q = sqlx::query_as::<_, super::SecretRow>(AssertSqlSafe(READ.as_str())).bind(&unknown);
            let mut held = self.held.lock().await?;
            let read = q.fetch_all(held.conn()).await;
            rows.extend(held.settle(read)?);
        }
        let seen: HashMap<String, super::SecretRow> = rows.iter().map(|r| (r.id.clone(), r.clone())).collect();
        let plan = version_writer::plan(jobs, rows, &[]);
        let unconfirmed = |job: &Job| remembered.contains(&job.id) && !plan.touched.iter().any(|r| r.id == job.id);
        if plan.versions.is_empty() {
            return Ok(jobs.iter().zip(plan.outcomes).map(|(job, o)| Some(o).filter(|_| !unconfirmed(job))).collect());
        }
        let (v, t, a) = (&plan.versions, &plan.touched, &plan.audits);
        let was = |r: &super::SecretRow| &seen[&r.id];
        let q = sqlx::query(AssertSqlSafe(WRITE.as_str()))
            .bind(column(t, |r| r.id.as_str()))
            .bind(column(t, |r| was(r).current_version))
            .bind(column(t, |r| r.current_version))
            .bind(column(t, |r| r.updated_at))
            .bind(column(t, |r| was(r).name.as_str()))
            .bind(column(t, |r| was(r).project_id.as_deref()))
            .bind(column(v, |v| v.secret_id.as_str()))
            .bind(column(v, |v| v.version))
            .bind(column(v, |v| v.sealed.as_slice()))
            .bind(column(v, |v| v.created_at))
            .bind(column(v, |v| v.created_by.as_str()));
        // Audit entry i belongs to version i (see `plan`).
        // A key among the batch's writers that is no longer as its request
        // presented it fails every compare-and-set: the jobs take the locked
        // path, which refuses that key's alone.
        let credentials = version_writer::credentials(jobs);
        let q = bind_audit_columns(q, a)
            .bind(column(v, |v| v.secret_id.as_str()))
            .bind(CHANNEL)
            .bind(&self.instance)
            .bind(column(&credentials, |c| c.key_hash.as_slice()))
            .bind(super::now_millis())
            .bind(column(&credentials, |c| c.permission.as_str()))
            .bind(column(&credentials, |c| c.project_scope.as_str()));
        let written: std::collections::HashSet<&str> = t.iter().map(|r| r.id.as_str()).collect();
        let mut held = self.held.lock().await?;
        let done = q.fetch_all(held.conn()).await;
        let advanced = match held.settle(done) {
            Ok(rows) => rows.iter().map(sqlx::FromRow::from_row).collect::<Result<Vec<super::SecretRow>, _>>(),
            // Refused by the database, or never sent: nothing was written.
            Err(e) if refused(&e) || matches!(e, sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed) => return Err(e.into()),
            Err(e) => Err(e),
        };
        let advanced = match advanced {
            Ok(advanced) => advanced,
            // The statement may have committed: running these jobs again could
            // write them twice, so their callers learn it failed.
            Err(e) => {
                self.remember(&[], t.iter().map(|r| r.id.as_str()));
                let e = crate::error::Error::from(e).public_message_with_cause();
                return Ok(jobs
                    .iter()
                    .zip(plan.outcomes)
                    .map(|(job, outcome)| match written.contains(job.id.as_str()) {
                        true => Some(Err(outcome_unknown(&e))),
                        false => Some(outcome).filter(|_| !unconfirmed(job)),
                    })
                    .collect());
            }
        };
        self.remember(&advanced, t.iter().map(|r| r.id.as_str()));
        let advanced: HashMap<&str, &super::SecretRow> = advanced.iter().map(|r| (r.id.as_str(), r)).collect();
        let unconfirmed: Vec<bool> = jobs.iter().map(|j| unconfirmed(j)).collect();
        Ok(jobs
            .iter()
            .zip(plan.outcomes)
            .zip(unconfirmed)
            .map(|((job, outcome), unconfirmed)| {
                if !written.contains(job.id.as_str()) {
                    return Some(outcome).filter(|_| !unconfirmed);
                }
                let now = advanced.get(job.id.as_str())?;
                Some(outcome.map(|o| match o {
                    // The row as the database has it, at this job's version.
                    super::WriteOutcome::Written(mine) => super::WriteOutcome::Written(Box::new(super::SecretRow {
                        current_version: mine.current_version,
                        updated_at: mine.updated_at,
                        ..(*now).clone()
                    })),
                    other => other,
                }))
            })
            .collect())
    }

    /// The transaction that locks the secrets (in id order, so batches of
    /// different replicas cannot deadlock on each other) before it plans.
    async fn write_locked(&self, jobs: &[&Job]) -> crate::error::Result<Vec<crate::error::Result<super::WriteOutcome>>> {
        static READ: LazyLock<String> =
            LazyLock::new(|| format!("SELECT {SECRET_COLS} FROM secrets WHERE id = ANY($1) ORDER BY id FOR UPDATE"));
        // The new versions, the advance of each secret, the audit entries and
        // the announcement are one statement (data-modifying CTEs).
        static WRITE: LazyLock<String> = LazyLock::new(|| {
            format!(
                "WITH new_versions AS (
                 INSERT INTO secret_versions (secret_id, version, sealed, created_at, created_by)
                 SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bytea[], $4::bigint[], $5::text[])
             ), advanced AS (
                 UPDATE secrets AS s SET current_version = v.ver, updated_at = v.at
                 FROM UNNEST($6::text[], $7::bigint[], $8::bigint[]) AS v(id, ver, at) WHERE s.id = v.id
             ), audited AS (
                 INSERT INTO {AUDIT_INTO} SELECT * FROM UNNEST({})
             )
             SELECT pg_notify($20, $21)",
                audit_params(9).join(", ")
            )
        });
        let mut conn = WriteConn::acquire(&self.pool).await?;
        let mut tx = PgStore::begin_write(&mut conn).await?;
        // The 1-based positions of the credentials that no longer name their key as it was.
        static CHANGED: LazyLock<String> = LazyLock::new(|| {
            format!(
                "SELECT w.i FROM UNNEST($1::bytea[], $3::text[], $4::text[]) WITH ORDINALITY AS w(h, p, s, i) \
                 WHERE NOT {}",
                credential_is_live("w.h", "w.p", "w.s", "$2")
            )
        });
        let credentials = version_writer::credentials(jobs);
        let rows: Vec<super::SecretRow> =
            sqlx::query_as(AssertSqlSafe(READ.as_str())).bind(version_writer::ids(jobs)).fetch_all(&mut *tx).await?;
        let changed: Vec<i64> = sqlx::query_scalar(AssertSqlSafe(CHANGED.as_str()))
            .bind(column(&credentials, |c| c.key_hash.as_slice()))
            .bind(super::now_millis())
            .bind(column(&credentials, |c| c.permission.as_str()))
            .bind(column(&credentials, |c| c.project_scope.as_str()))
            .fetch_all(&mut *tx)
            .await?;
        let changed: Vec<&super::Credential> = changed
            .iter()
            .map(|&i| Ok(credentials[super::integrity::position(i, credentials.len())?]))
            .collect::<crate::error::Result<_>>()?;
        let plan = version_writer::plan(jobs, rows, &changed);
        if plan.versions.is_empty() {
            return Ok(plan.outcomes);
        }
        let (v, t) = (&plan.versions, &plan.touched);
        let q = sqlx::query(AssertSqlSafe(WRITE.as_str()))
            .bind(column(v, |v| v.secret_id.as_str()))
            .bind(column(v, |v| v.version))
            .bind(column(v, |v| v.sealed.as_slice()))
            .bind(column(v, |v| v.created_at))
            .bind(column(v, |v| v.created_by.as_str()))
            .bind(column(t, |r| r.id.as_str()))
            .bind(column(t, |r| r.current_version))
            .bind(column(t, |r| r.updated_at));
        bind_audit_columns(q, &plan.audits).bind(CHANNEL).bind(&self.instance).execute(&mut *tx).await?;
        if let Err(e) = tx.commit().await {
            if refused(&e) {
                return Err(e.into());
            }
            // COMMIT was sent and its answer lost: the transaction may have
            // committed, and the version writer runs a failed batch's jobs
            // again, which could write them twice. So the jobs that would
            // have written learn that the outcome is unknown.
            self.remember(&[], t.iter().map(|r| r.id.as_str()));
            let e = crate::error::Error::from(e).public_message_with_cause();
            return Ok(plan
                .outcomes
                .into_iter()
                .map(|outcome| match outcome {
                    Ok(super::WriteOutcome::Written(_)) => Err(outcome_unknown(&e)),
                    other => other,
                })
                .collect());
        }
        self.remember(t, std::iter::empty());
        Ok(plan.outcomes)
    }

    /// Notes `rows` as written, and forgets the `tried` secrets that are not
    /// among them (their compare-and-set failed).
    fn remember<'a>(&self, rows: &[super::SecretRow], tried: impl Iterator<Item = &'a str>) {
        let mut last = self.last.lock().expect("not poisoned");
        for id in tried {
            last.remove(id);
        }
        if last.len() + rows.len() > REMEMBERED {
            last.clear();
        }
        for row in rows {
            last.insert(row.id.clone(), row.clone());
        }
    }
}

use std::collections::HashMap;

use super::liveness::credential_is_live;
use super::sql::AUDIT_INTO;
use super::version_writer::{self, BatchWrite, Job, VersionWriter};

type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

fn column<'r, T, U>(rows: &'r [T], f: impl Fn(&'r T) -> U) -> Vec<U> {
    rows.iter().map(f).collect()
}

/// `item`'s 1-based position in `seen`, added at the end if new (batches are
/// small and mostly repeat one key and one secret, so a scan beats a map).
fn position_of<T: PartialEq>(seen: &mut Vec<T>, item: T) -> i64 {
    let at = seen.iter().position(|s| *s == item).unwrap_or_else(|| {
        seen.push(item);
        seen.len() - 1
    });
    at as i64 + 1
}

/// The audit columns of [`bind_audit_columns`] as typed array parameters
/// from `$first`, in `AUDIT_INTO`'s order.
fn audit_params(first: usize) -> Vec<String> {
    let types = ["text", "bigint", "text", "text", "text", "text", "text", "text", "text", "text", "text"];
    types.iter().enumerate().map(|(i, t)| format!("${}::{t}[]", first + i)).collect()
}

/// The columns of [`audit_params`] unnested in a select list, in step, each
/// named as in [`audit_names`]. In the select list the arrays are read row
/// by row; in `FROM`, PostgreSQL first copies each into a tuplestore.
fn unnested(first: usize) -> String {
    audit_params(first).iter().zip(audit_names()).map(|(p, c)| format!("unnest({p}) AS {c}")).collect::<Vec<_>>().join(", ")
}

/// Names for the columns of [`audit_params`] where a query must name them.
fn audit_names() -> Vec<String> {
    (1..=11).map(|i| format!("c{i}")).collect()
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
    // NO KEY: the foreign-key checks of new keys and projects need not wait.
    "SELECT plan FROM tenants WHERE id = $1 FOR NO KEY UPDATE",
    " FOR UPDATE"
);
