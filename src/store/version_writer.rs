//! Group commit for new secret versions on SQLite.
//!
//! Every statement on a sqlx SQLite connection is a hand-off to the
//! connection's thread, and SQLite has one writer: a write done statement by
//! statement, with its own `BEGIN` and `COMMIT` (and fsync), costs about a
//! millisecond of that single writer whatever the CPU. So concurrent
//! [`Store::add_version`](super::Store::add_version) calls queue here, and one
//! task writes a whole queue in one transaction with a fixed number of
//! statements: read the touched secrets, insert every version, move every
//! secret on, insert every audit entry, commit. Each caller is answered only
//! after that commit. If the combined transaction fails, each write is tried
//! again alone, so one bad write never fails its neighbours.

use std::collections::HashMap;
use std::sync::OnceLock;

use sqlx::AssertSqlSafe;
use sqlx::sqlite::SqlitePool;
use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};
use crate::store::sql::AUDIT_ROWS_PER_INSERT;
use crate::store::{AuditRow, SecretRow, VersionChange, VersionRow, WriteOutcome};

/// Most writes in one transaction; also the most rows of one statement.
const MAX_BATCH: usize = AUDIT_ROWS_PER_INSERT;

pub struct Job {
    pub tenant_id: String,
    pub id: String,
    pub expected_version: Option<i64>,
    pub change: VersionChange,
    pub done: oneshot::Sender<Result<WriteOutcome>>,
}

#[derive(Clone)]
pub struct VersionWriter {
    queue: mpsc::Sender<Job>,
}

impl VersionWriter {
    /// Starts the writer task on `pool` (the store's single writer
    /// connection); it ends when the store is dropped.
    pub fn start(pool: SqlitePool) -> Self {
        let (queue, mut rx) = mpsc::channel::<Job>(4 * MAX_BATCH);
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut jobs = vec![first];
                while jobs.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(job) => jobs.push(job),
                        Err(_) => break,
                    }
                }
                match write_batch(&pool, &jobs).await {
                    Ok(outcomes) => {
                        for (job, outcome) in jobs.into_iter().zip(outcomes) {
                            let _ = job.done.send(outcome);
                        }
                    }
                    Err(e) if jobs.len() == 1 => {
                        let _ = jobs.pop().expect("one job").done.send(Err(e));
                    }
                    Err(_) => {
                        for job in jobs {
                            let outcome = match write_batch(&pool, std::slice::from_ref(&job)).await {
                                Ok(mut one) => one.pop().expect("one outcome"),
                                Err(e) => Err(e),
                            };
                            let _ = job.done.send(outcome);
                        }
                    }
                }
            }
        });
        VersionWriter { queue }
    }

    pub async fn add(&self, tenant_id: &str, id: &str, expected_version: Option<i64>, change: VersionChange) -> Result<WriteOutcome> {
        let (done, answer) = oneshot::channel();
        let job = Job { tenant_id: tenant_id.to_owned(), id: id.to_owned(), expected_version, change, done };
        self.queue.send(job).await.map_err(|_| Error::internal("version writer stopped"))?;
        answer.await.map_err(|_| Error::internal("version writer stopped"))?
    }
}

/// Writes `jobs` in one transaction. `Err` only when the transaction as a
/// whole failed (nothing of it committed); a job's own failure is its entry
/// in the answer.
async fn write_batch(pool: &SqlitePool, jobs: &[Job]) -> Result<Vec<Result<WriteOutcome>>> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let mut ids: Vec<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut q = sqlx::query_as::<_, SecretRow>(AssertSqlSafe(sql(Shape::Select, ids.len())));
    for id in &ids {
        q = q.bind(*id);
    }
    let mut current: HashMap<String, SecretRow> = q.fetch_all(&mut *tx).await?.into_iter().map(|r| (r.id.clone(), r)).collect();

    // Apply the jobs in arrival order to the rows as the batch leaves them,
    // exactly as if they had committed one by one.
    let mut outcomes = Vec::with_capacity(jobs.len());
    let (mut versions, mut audits): (Vec<VersionRow>, Vec<AuditRow>) = (vec![], vec![]);
    for job in jobs {
        let outcome = match current.get(&job.id).filter(|r| r.tenant_id == job.tenant_id) {
            None => Ok(WriteOutcome::Missing),
            Some(row) if job.expected_version.is_some_and(|e| e != row.current_version) => {
                Ok(WriteOutcome::Stale { current: row.current_version })
            }
            Some(row) => match (job.change)(row) {
                Ok((version, _)) if version.version != row.current_version + 1 => {
                    Err(Error::internal(format_args!("a new version must be {} (got {})", row.current_version + 1, version.version)))
                }
                Ok((version, audit)) => {
                    let mut next = row.clone();
                    next.current_version = version.version;
                    next.updated_at = version.created_at;
                    versions.push(version);
                    audits.push(audit);
                    current.insert(next.id.clone(), next.clone());
                    Ok(WriteOutcome::Written(Box::new(next)))
                }
                Err(e) => Err(e),
            },
        };
        outcomes.push(outcome);
    }
    if versions.is_empty() {
        return Ok(outcomes);
    }

    let mut q = sqlx::query(AssertSqlSafe(sql(Shape::Versions, versions.len())));
    for v in &versions {
        q = q.bind(&v.secret_id).bind(v.version).bind(&v.sealed).bind(v.created_at).bind(&v.created_by);
    }
    q.execute(&mut *tx)
        .await
        .map_err(|e| crate::store::sql::constraint_error(e, || Error::Conflict("a version was written concurrently".into())))?;

    let touched: Vec<&SecretRow> =
        ids.iter().filter_map(|id| current.get(*id)).filter(|r| versions.iter().any(|v| v.secret_id == r.id)).collect();
    let mut q = sqlx::query(AssertSqlSafe(sql(Shape::Advance, touched.len())));
    for r in &touched {
        q = q.bind(&r.id).bind(r.current_version).bind(r.updated_at);
    }
    q.execute(&mut *tx).await?;

    super::audit_insert(&audits, false).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(outcomes)
}

#[derive(Clone, Copy)]
enum Shape {
    /// The secrets a batch touches.
    Select,
    /// One row per new version.
    Versions,
    /// Each touched secret's new current version and time.
    Advance,
}

/// The statement of `shape` for `n` rows, built once per size.
fn sql(shape: Shape, n: usize) -> &'static str {
    static SQL: [[OnceLock<String>; MAX_BATCH]; 3] = [const { [const { OnceLock::new() }; MAX_BATCH] }; 3];
    assert!((1..=MAX_BATCH).contains(&n), "batch of {n}");
    SQL[shape as usize][n - 1].get_or_init(|| {
        let tuple = |i: usize, width: usize| {
            let params: Vec<String> = (1..=width).map(|k| format!("${}", i * width + k)).collect();
            format!("({})", params.join(", "))
        };
        let list = |width: usize| (0..n).map(|i| tuple(i, width)).collect::<Vec<_>>().join(", ");
        match shape {
            Shape::Select => format!(
                "SELECT id, tenant_id, project_id, environment, name, secret_type, description, tags, current_version, created_at, \
                 updated_at FROM secrets WHERE id IN ({})",
                (1..=n).map(|k| format!("${k}")).collect::<Vec<_>>().join(", ")
            ),
            Shape::Versions => {
                format!("INSERT INTO secret_versions (secret_id, version, sealed, created_at, created_by) VALUES {}", list(5))
            }
            Shape::Advance => format!(
                "UPDATE secrets SET current_version = v.column2, updated_at = v.column3 FROM (VALUES {}) AS v WHERE secrets.id = v.column1",
                list(3)
            ),
        }
    })
}
