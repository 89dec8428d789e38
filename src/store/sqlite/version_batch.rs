//! SQLite's statements for a batch of new versions (see `version_writer`).

use std::sync::OnceLock;

use sqlx::{AssertSqlSafe, Row, Sqlite};

use super::{Writer, lock_writer};
use crate::store::chain::hex;
use crate::store::liveness::credential_is_live;
use crate::store::sql::dialect::query;
use crate::store::sql::{AUDIT_INTO, AUDIT_WIDTH, Params, SECRET_COLS, bind_audit};
use crate::store::version_writer::{self, BatchWrite, Job, MAX_BATCH};
use crate::store::{WriteOutcome, now_millis};

/// SQLite's statements for a batch of new versions, one text per row count
/// (the writer's statement cache holds them all).
pub(super) struct SqliteBatch(pub(super) Writer);

#[async_trait::async_trait]
impl BatchWrite for SqliteBatch {
    /// Two calls to the connection's thread: `BEGIN IMMEDIATE` with the read
    /// of the touched secrets, then the writes with `COMMIT`. Every call is a
    /// hand-off to that thread and back to a runtime worker, and the writer is
    /// the one queue all writes wait in, so the batch does not pay for the
    /// two calls a `sqlx::Transaction` adds. Any failure rolls back before
    /// the writer lock is released; the batch runs in the version writer's
    /// own task, which no client's disconnect can cancel half-way.
    async fn write_batch(&self, jobs: &[Job]) -> crate::error::Result<Vec<crate::error::Result<WriteOutcome>>> {
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

async fn write_locked(conn: &mut sqlx::SqliteConnection, jobs: &[Job]) -> crate::error::Result<Vec<crate::error::Result<WriteOutcome>>> {
    let jobs: Vec<&Job> = jobs.iter().collect();
    let ids = version_writer::ids(&jobs);
    let credentials = version_writer::credentials(&jobs);
    let presented: Vec<[String; 3]> =
        credentials.iter().map(|c| [hex(&c.key_hash), c.permission.clone(), c.project_scope.clone()]).collect();
    let presented = serde_json::to_string(&presented).map_err(crate::error::Error::internal)?;
    let mut q = sqlx::query(AssertSqlSafe(batch_sql(Shape::Select, ids.len()))).bind(presented).bind(now_millis());
    for id in &ids {
        q = q.bind(*id);
    }
    // One call, two statements: the positions of the credentials that no
    // longer name their key as it was (one column), then the secrets.
    let (mut changed, mut rows) = (Vec::new(), Vec::new());
    for row in q.fetch_all(&mut *conn).await? {
        match row.len() {
            // `json_each` keys count from 0.
            1 => changed.push(credentials[crate::store::integrity::position(row.try_get::<i64, _>(0)? + 1, credentials.len())?]),
            _ => rows.push(sqlx::FromRow::from_row(&row)?),
        }
    }
    let mut plan = version_writer::plan(&jobs, rows, &changed);
    if plan.versions.is_empty() {
        sqlx::query("COMMIT").execute(&mut *conn).await?;
        return Ok(plan.outcomes);
    }
    // The audit entries link from the heads as this transaction, holding
    // SQLite's write lock, reads them (see `store::chain`).
    let mut heads = super::audit_batch::read_heads(&mut *conn, &crate::store::chain::chains(&plan.audits)).await?;
    crate::store::chain::link(&mut plan.audits, &mut heads);
    let heads = super::audit_batch::heads_json(&heads)?;
    // Parameters are anonymous, so each statement takes the next ones in order.
    // `maxVersions` prunes, only for the secrets that have one.
    let prune = "DELETE FROM secret_versions WHERE secret_id = ? AND version <= ?; ".repeat(plan.prunes.len());
    let sql = format!(
        "{}; {}; {}; {}; {prune}COMMIT",
        batch_sql(Shape::Versions, plan.versions.len()),
        batch_sql(Shape::Advance, plan.touched.len()),
        batch_sql(Shape::Audit, plan.audits.len()),
        super::audit_batch::HEADS_SQL
    );
    let mut q = query::<Sqlite>(AssertSqlSafe(sql));
    for v in &plan.versions {
        q = q.bind(&v.secret_id).bind(v.version).bind(&v.sealed).bind(v.created_at).bind(&v.created_by);
    }
    for r in &plan.touched {
        q = q.bind(&r.id).bind(r.current_version).bind(r.updated_at);
    }
    let mut q = bind_audit(q, &plan.audits).bind(heads);
    for (id, upto) in &plan.prunes {
        q = q.bind(id).bind(*upto);
    }
    q.execute(&mut *conn).await?;
    Ok(plan.outcomes)
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
            Shape::Audit => format!("INSERT OR FAIL INTO {AUDIT_INTO} VALUES {}", list(AUDIT_WIDTH)),
            Shape::Advance => format!(
                "UPDATE OR FAIL secrets SET current_version = v.column2, updated_at = v.column3 FROM (VALUES {}) AS v WHERE secrets.id = v.column1",
                list(3)
            ),
        }
    })
}
