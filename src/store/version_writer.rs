//! Group commit for new secret versions (rotations).
//!
//! Done one by one, a rotation is a transaction of six or seven statements
//! and a commit (an fsync). On SQLite every statement is also a hand-off to
//! the connection's thread, and there is one writer; on PostgreSQL every
//! statement is a round trip and a commit a WAL flush. So concurrent
//! [`Store::add_version`](super::Store::add_version) calls queue here, and one
//! task per process writes a whole queue in one transaction with a fixed
//! number of statements: read (and lock) the touched secrets, insert every
//! version, move every secret on, insert every audit entry, commit. Each
//! caller is answered only after that commit. If the combined transaction
//! fails, each write is tried again alone, so one bad write never fails its
//! neighbours. The backends supply the statements ([`BatchWrite`]); the
//! order of application ([`plan`]) is shared. PostgreSQL, where every
//! statement is a round trip, first tries the batch as one compare-and-set
//! statement planned on the rows its last batch left (see `postgres::version_batch`).

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};
use crate::store::sql::AUDIT_ROWS_PER_INSERT;
use crate::store::{AuditRow, Credential, SecretRow, VersionChange, VersionRow, WriteOutcome};

/// Most writes in one transaction; also the most rows of one statement.
pub const MAX_BATCH: usize = AUDIT_ROWS_PER_INSERT;

pub struct Job {
    pub tenant_id: String,
    pub id: String,
    pub expected_version: Option<i64>,
    /// The writing key as the request presented it; a job whose credential
    /// is no longer live by the time its batch holds the rows is refused
    /// (see `store::liveness`).
    pub actor: Credential,
    pub change: VersionChange,
    pub done: oneshot::Sender<Result<WriteOutcome>>,
}

/// What a backend does with one batch: in one transaction, read the rows of
/// [`ids`], [`plan`] the jobs on them, write the plan, commit. `Err` only when
/// the transaction as a whole failed (nothing of it committed); a job's own
/// failure is its entry in the answer.
#[async_trait]
pub trait BatchWrite: Send + Sync + 'static {
    async fn write_batch(&self, jobs: &[Job]) -> Result<Vec<Result<WriteOutcome>>>;
}

#[derive(Clone)]
pub struct VersionWriter {
    queue: mpsc::Sender<Job>,
}

impl VersionWriter {
    /// Starts the writer task; it ends when the store is dropped.
    pub fn start(backend: Arc<dyn BatchWrite>) -> Self {
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
                match backend.write_batch(&jobs).await {
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
                            let outcome = match backend.write_batch(std::slice::from_ref(&job)).await {
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

    pub async fn add(
        &self,
        tenant_id: &str,
        id: &str,
        expected_version: Option<i64>,
        actor: &Credential,
        change: VersionChange,
    ) -> Result<WriteOutcome> {
        let (done, answer) = oneshot::channel();
        let job = Job { tenant_id: tenant_id.to_owned(), id: id.to_owned(), expected_version, actor: actor.clone(), change, done };
        self.queue.send(job).await.map_err(|_| Error::internal("version writer stopped"))?;
        answer.await.map_err(|_| Error::internal("version writer stopped"))?
    }
}

/// The distinct credentials of a batch's writers.
pub fn credentials<'j>(jobs: &[&'j Job]) -> Vec<&'j Credential> {
    let mut keys: Vec<&Credential> = jobs.iter().map(|j| &j.actor).collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// The distinct secret ids of a batch, sorted (a stable lock order).
pub fn ids<'j>(jobs: &[&'j Job]) -> Vec<&'j str> {
    let mut ids: Vec<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// What a batch writes.
pub struct Plan {
    pub outcomes: Vec<Result<WriteOutcome>>,
    pub versions: Vec<VersionRow>,
    pub audits: Vec<AuditRow>,
    /// Each secret a version was added to, as the batch leaves it.
    pub touched: Vec<SecretRow>,
    /// `maxVersions`: (secret id, highest version to delete) for each touched
    /// secret that has a bound and versions beyond it. Empty unless some
    /// secret of the batch has `max_versions`, so the common batch pays nothing.
    pub prunes: Vec<(String, i64)>,
}

/// Applies the jobs in arrival order to `rows` (the batch's secrets as the
/// transaction found them), exactly as if they had committed one by one.
/// Jobs whose credential is in `changed` (a key revoked, expired,
/// regenerated or narrowed, as the transaction found the keys) are refused.
pub fn plan(jobs: &[&Job], rows: Vec<SecretRow>, changed: &[&Credential]) -> Plan {
    let mut current: HashMap<String, SecretRow> = rows.into_iter().map(|r| (r.id.clone(), r)).collect();
    let mut outcomes = Vec::with_capacity(jobs.len());
    let (mut versions, mut audits): (Vec<VersionRow>, Vec<AuditRow>) = (vec![], vec![]);
    for job in jobs {
        let outcome = match current.get(&job.id).filter(|r| r.tenant_id == job.tenant_id) {
            _ if changed.contains(&&job.actor) => Err(Error::Conflict(super::KEY_CHANGED.into())),
            None => Ok(WriteOutcome::Missing),
            // Soft-deleted: gone for writes as for reads.
            Some(row) if row.deleted_at.is_some() => Ok(WriteOutcome::Missing),
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
                    // Never backwards, even if the clock stepped back since
                    // the last change: `updatedAt` orders a secret's changes.
                    next.updated_at = version.created_at.max(row.updated_at + 1);
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
    let mut touched: Vec<SecretRow> = current.into_values().filter(|r| versions.iter().any(|v| v.secret_id == r.id)).collect();
    touched.sort_unstable_by(|a, b| a.id.cmp(&b.id));
    let prunes =
        touched.iter().filter_map(|r| Some((r.id.clone(), r.current_version - r.max_versions?))).filter(|(_, upto)| *upto >= 1).collect();
    Plan { outcomes, versions, audits, touched, prunes }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{AuditRow, Credential, SecretRow, VersionRow};

    fn job(id: &str, at: i64) -> (Job, oneshot::Receiver<Result<WriteOutcome>>) {
        let (done, answer) = oneshot::channel();
        let secret_id = id.to_owned();
        let change: VersionChange = Arc::new(move |row: &SecretRow| {
            let version = VersionRow {
                secret_id: secret_id.clone(),
                version: row.current_version + 1,
                sealed: vec![],
                created_at: at,
                created_by: "k".into(),
            };
            let audit = AuditRow {
                id: 0,
                tenant_id: Some(row.tenant_id.clone()),
                at,
                actor: "k".into(),
                front: "rest".into(),
                action: "secret.update".into(),
                resource_type: "secret".into(),
                resource_id: Some(row.id.clone()),
                outcome: "success".into(),
                ip: None,
                user_agent: None,
                detail: None,
                chain_seq: None,
                chain_hash: None,
                client: None,
                tool: None,
                reason: None,
                credential: None,
                served: None,
            };
            Ok((version, audit))
        });
        let actor = Credential { key_hash: vec![1], permission: "write".into(), project_scope: "[]".into() };
        (Job { tenant_id: "t".into(), id: id.into(), expected_version: None, actor, change, done }, answer)
    }

    #[test]
    fn updated_at_never_goes_backwards() {
        let row = SecretRow {
            id: "s".into(),
            tenant_id: "t".into(),
            project_id: None,
            environment: String::new(),
            name: "S".into(),
            secret_type: "custom".into(),
            description: None,
            tags: "[]".into(),
            current_version: 3,
            created_at: 1_000,
            updated_at: 5_000,
            access_tier: "standard".into(),
            exposure: "reveal".into(),
            bindings: "[]".into(),
            expires_at: None,
            deleted_at: None,
            max_versions: None,
            retiring_version: None,
            retiring_until: None,
        };
        // The second write's clock reads earlier than the row's last change.
        let (a, _a) = job("s", 4_000);
        let (b, _b) = job("s", 4_000);
        let plan = plan(&[&a, &b], vec![row], &[]);
        assert_eq!(plan.touched.len(), 1);
        assert_eq!((plan.touched[0].current_version, plan.touched[0].updated_at), (5, 5_002));
    }
}
