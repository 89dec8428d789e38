//! PostgreSQL's statements for a batch of new versions (see `version_writer`).

use std::collections::HashMap;
use std::sync::LazyLock;

use sqlx::AssertSqlSafe;
use sqlx::postgres::PgPool;

use super::columns::{audit_names, audit_params, bind_audit_columns, bind_chain_columns, column, unnested};
use super::held::Held;
use super::write_conn::WriteConn;
use super::{CHANNEL, refused};
use crate::store::liveness::credential_is_live;
use crate::store::sql::{AUDIT_INTO, SECRET_COLS};
use crate::store::version_writer::{self, BatchWrite, Job};
use crate::store::{Credential, SecretRow, WriteOutcome, now_millis};

/// PostgreSQL's statements for a batch of new versions: whole columns bound
/// as arrays (`UNNEST`), so one statement text serves every batch size.
pub(super) struct PgBatch {
    pub(super) pool: PgPool,
    /// For the unlocked batches; a locked one takes a connection of its own.
    pub(super) held: Held,
    pub(super) instance: String,
    /// Each secret as this replica's last batch left it, so the next batch on
    /// it needs no read first. Only a guess: the write compares and sets.
    pub(super) last: std::sync::Mutex<HashMap<String, SecretRow>>,
    /// The audit chains' heads this replica cached (see `store::chain`).
    pub(super) heads: std::sync::Arc<crate::store::chain::Heads>,
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
    async fn write_batch(&self, jobs: &[Job]) -> crate::error::Result<Vec<crate::error::Result<WriteOutcome>>> {
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
    async fn write_unlocked(&self, jobs: &[&Job]) -> crate::error::Result<Vec<Option<crate::error::Result<WriteOutcome>>>> {
        static READ: LazyLock<String> = LazyLock::new(|| format!("SELECT {SECRET_COLS} FROM secrets WHERE id = ANY($1)"));
        static WRITE: LazyLock<String> = LazyLock::new(|| {
            format!(
                "WITH advanced AS (
                 UPDATE secrets AS s SET current_version = v.ver, updated_at = v.at
                 FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::text[], $6::text[]) AS v(id, seen, ver, at, name, project)
                 WHERE s.id = v.id AND s.current_version = v.seen AND s.name = v.name AND s.project_id IS NOT DISTINCT FROM v.project
                   AND s.deleted_at IS NULL AND s.max_versions IS NULL
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
             ), heads AS (
                 INSERT INTO audit_chain_heads (chain, seq, hash) SELECT * FROM UNNEST($35::text[], $36::bigint[], $37::bytea[])
                 WHERE (SELECT count(*) FROM advanced) = cardinality($1::text[])
                 ON CONFLICT (chain) DO UPDATE SET seq = excluded.seq, hash = excluded.hash
             )
             SELECT {SECRET_COLS}, (SELECT pg_notify($24, $25)) AS announced,
                    -- The entries were linked for every secret: when some but
                    -- not all advanced, the statement fails (an unknown
                    -- setting) and writes nothing, and the locked path takes
                    -- the batch. When none advanced, nothing was written
                    -- (the heads move only with all).
                    CASE WHEN (SELECT count(*) FROM advanced) <> cardinality($1::text[])
                         THEN current_setting('latchkey.partial_batch') END AS whole
             FROM advanced",
                credential_is_live("w.h", "w.p", "w.s", "$27"),
                audit_names().join(", "),
                unnested(12, 30),
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
            let q = sqlx::query_as::<_, SecretRow>(AssertSqlSafe(READ.as_str())).bind(&unknown);
            let mut held = self.held.lock().await?;
            let read = q.fetch_all(held.conn()).await;
            rows.extend(held.settle(read)?);
        }
        let seen: HashMap<String, SecretRow> = rows.iter().map(|r| (r.id.clone(), r.clone())).collect();
        let plan = version_writer::plan(jobs, rows, &[]);
        // A secret with `maxVersions` prunes in the locked path's transaction.
        if !plan.prunes.is_empty() {
            return Ok(jobs.iter().map(|_| None).collect());
        }
        let unconfirmed = |job: &Job| remembered.contains(&job.id) && !plan.touched.iter().any(|r| r.id == job.id);
        if plan.versions.is_empty() {
            return Ok(jobs.iter().zip(plan.outcomes).map(|(job, o)| Some(o).filter(|_| !unconfirmed(job))).collect());
        }
        // Linked from the cached heads: a stale one fails on the chain's
        // unique index, and the locked path takes the batch.
        let mut heads = self.cached_heads(&plan.audits).await?;
        let mut audits = plan.audits.clone();
        crate::store::chain::link(&mut audits, &mut heads);
        let advance = Advance::of(&heads);
        let (v, t, a) = (&plan.versions, &plan.touched, &audits);
        let was = |r: &SecretRow| &seen[&r.id];
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
            .bind(now_millis())
            .bind(column(&credentials, |c| c.permission.as_str()))
            .bind(column(&credentials, |c| c.project_scope.as_str()));
        let q = bind_chain_columns(q, a).bind(advance.chains).bind(advance.seqs).bind(advance.hashes);
        let written: std::collections::HashSet<&str> = t.iter().map(|r| r.id.as_str()).collect();
        let mut held = self.held.lock().await?;
        let done = q.fetch_all(held.conn()).await;
        let advanced = match held.settle(done) {
            Ok(rows) => rows.iter().map(sqlx::FromRow::from_row).collect::<Result<Vec<SecretRow>, _>>(),
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
        if advanced.len() == t.len() {
            self.heads.put(&heads);
        } else {
            self.heads.clear();
        }
        let advanced: HashMap<&str, &SecretRow> = advanced.iter().map(|r| (r.id.as_str(), r)).collect();
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
                    WriteOutcome::Written(mine) => WriteOutcome::Written(Box::new(SecretRow {
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
    async fn write_locked(&self, jobs: &[&Job]) -> crate::error::Result<Vec<crate::error::Result<WriteOutcome>>> {
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
             ), heads AS (
                 INSERT INTO audit_chain_heads (chain, seq, hash) SELECT * FROM UNNEST($27::text[], $28::bigint[], $29::bytea[])
                 ON CONFLICT (chain) DO UPDATE SET seq = excluded.seq, hash = excluded.hash
             )
             SELECT pg_notify($20, $21)",
                audit_params(9, 22).join(", ")
            )
        });
        let mut conn = WriteConn::acquire(&self.pool).await?;
        let mut tx = conn.begin().await?;
        // The 1-based positions of the credentials that no longer name their key as it was.
        static CHANGED: LazyLock<String> = LazyLock::new(|| {
            format!(
                "SELECT w.i FROM UNNEST($1::bytea[], $3::text[], $4::text[]) WITH ORDINALITY AS w(h, p, s, i) \
                 WHERE NOT {}",
                credential_is_live("w.h", "w.p", "w.s", "$2")
            )
        });
        let credentials = version_writer::credentials(jobs);
        let rows: Vec<SecretRow> = sqlx::query_as(AssertSqlSafe(READ.as_str())).bind(version_writer::ids(jobs)).fetch_all(&mut *tx).await?;
        let changed: Vec<i64> = sqlx::query_scalar(AssertSqlSafe(CHANGED.as_str()))
            .bind(column(&credentials, |c| c.key_hash.as_slice()))
            .bind(now_millis())
            .bind(column(&credentials, |c| c.permission.as_str()))
            .bind(column(&credentials, |c| c.project_scope.as_str()))
            .fetch_all(&mut *tx)
            .await?;
        let changed: Vec<&Credential> = changed
            .iter()
            .map(|&i| Ok(credentials[crate::store::integrity::position(i, credentials.len())?]))
            .collect::<crate::error::Result<_>>()?;
        let mut plan = version_writer::plan(jobs, rows, &changed);
        if plan.versions.is_empty() {
            return Ok(plan.outcomes);
        }
        // Linked from the heads, locked in this transaction (see `store::chain`).
        let mut heads = super::audit_batch::read_heads(&mut tx, &crate::store::chain::chains(&plan.audits), true).await?;
        crate::store::chain::link(&mut plan.audits, &mut heads);
        let advance = Advance::of(&heads);
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
        let q = bind_audit_columns(q, &plan.audits).bind(CHANNEL).bind(&self.instance);
        bind_chain_columns(q, &plan.audits).bind(advance.chains).bind(advance.seqs).bind(advance.hashes).execute(&mut *tx).await?;
        if !plan.prunes.is_empty() {
            sqlx::query(
                "DELETE FROM secret_versions sv USING UNNEST($1::text[], $2::bigint[]) AS p(id, upto) \
                 WHERE sv.secret_id = p.id AND sv.version <= p.upto",
            )
            .bind(column(&plan.prunes, |p| p.0.as_str()))
            .bind(column(&plan.prunes, |p| p.1))
            .execute(&mut *tx)
            .await?;
        }
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
                    Ok(WriteOutcome::Written(_)) => Err(outcome_unknown(&e)),
                    other => other,
                })
                .collect());
        }
        self.remember(t, std::iter::empty());
        self.heads.put(&heads);
        Ok(plan.outcomes)
    }

    /// The heads of the chains `audits` append to, as cached, else as the
    /// database has them (unlocked: a guess the unique index checks).
    async fn cached_heads(&self, audits: &[crate::store::AuditRow]) -> crate::error::Result<HashMap<String, crate::store::chain::Head>> {
        let (mut heads, missing) = self.heads.get(&crate::store::chain::chains(audits));
        if !missing.is_empty() {
            let mut held = self.held.lock().await?;
            let read = super::audit_batch::read_heads(held.conn(), &missing, false).await;
            heads.extend(held.settle(read)?);
        }
        Ok(heads)
    }

    /// Notes `rows` as written, and forgets the `tried` secrets that are not
    /// among them (their compare-and-set failed).
    fn remember<'a>(&self, rows: &[SecretRow], tried: impl Iterator<Item = &'a str>) {
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

/// The heads a batch leaves, as three column arrays.
struct Advance {
    chains: Vec<String>,
    seqs: Vec<i64>,
    hashes: Vec<Vec<u8>>,
}

impl Advance {
    fn of(heads: &HashMap<String, crate::store::chain::Head>) -> Self {
        let mut list: Vec<_> = heads.iter().collect();
        list.sort_by_key(|(c, _)| *c);
        Advance {
            chains: list.iter().map(|(c, _)| (*c).clone()).collect(),
            seqs: list.iter().map(|(_, h)| h.seq).collect(),
            hashes: list.iter().map(|(_, h)| h.hash.clone()).collect(),
        }
    }
}

/// The answer to a rotation whose statement may have committed although its
/// answer was lost: running it again could write it twice.
fn outcome_unknown(cause: &str) -> crate::error::Error {
    crate::error::Error::Internal(format!("rotation outcome unknown: {cause}"))
}
