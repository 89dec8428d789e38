//! Audit retention (`--audit-retention-days`, `--audit-archive-dir`): a
//! background job that prunes entries older than the retention, one chain
//! (tenant) at a time in chain order and in bounded batches, so the chain
//! stays verifiable from the checkpoint each batch leaves (see
//! `store::trail`). Once across replicas: PostgreSQL by an advisory lock per
//! batch, SQLite by its one write lock; a batch sees only rows no other
//! batch deleted.
//!
//! With an archive dir, each batch's rows are first appended, as one gzip
//! member of JSON lines, to `DIR/<tenant>/<YYYY-MM-DD>.jsonl.gz` (UTC day of
//! the entry; entries of no tenant under `_none`), and the file and its
//! directory are synced before the rows are deleted. A crash (or a shutdown,
//! which drops a turn under way) between the two leaves the rows in place and
//! the next run archives them again: an archive may hold an entry twice (same
//! `id`), never lose one.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::Vault;
use crate::error::{Error, Result};
use crate::store::trail::{Pruned, StoredEntry};
use crate::telemetry::names;

/// Most entries deleted in one transaction.
pub const BATCH: i64 = 5000;

/// Most batches one run takes per chain, so a large backlog is worked off
/// over several runs and a run ends in bounded time.
const BATCHES_PER_CHAIN: usize = 200;

/// What one run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RetentionRun {
    pub pruned: u64,
    pub archived: u64,
    /// Another replica held the pruning lock; this run left the rest to it.
    pub busy: bool,
}

impl Vault {
    /// Prunes every chain's entries older than the retention (archiving them
    /// first when an archive dir is set); nothing when no retention is set.
    pub async fn prune_audit(&self, stop: &CancellationToken) -> Result<RetentionRun> {
        let mut run = RetentionRun::default();
        let Some(days) = self.config.audit_retention_days else { return Ok(run) };
        let before = crate::store::now_millis() - i64::from(days) * 86_400_000;
        let dir = self.config.audit_archive_dir.clone().map(Arc::new);
        let archive = |rows: Vec<StoredEntry>| -> futures::future::BoxFuture<'static, Result<()>> {
            let dir = dir.clone();
            Box::pin(async move {
                let Some(dir) = dir else { return Ok(()) };
                tokio::task::spawn_blocking(move || write_archive(&dir, &rows)).await.map_err(Error::internal)?
            })
        };
        'chains: for chain in self.store.trail().chains().await? {
            for _ in 0..BATCHES_PER_CHAIN {
                if stop.is_cancelled() {
                    break 'chains;
                }
                let archived = if dir.is_some() { Some(&archive as crate::store::trail::Archive<'_>) } else { None };
                match self.store.trail().prune_chain(&chain, before, BATCH, archived).await? {
                    Pruned::Busy => {
                        run.busy = true;
                        break 'chains;
                    }
                    Pruned::Deleted(0) => break,
                    Pruned::Deleted(n) => {
                        run.pruned += n;
                        metrics::counter!(names::AUDIT_PRUNED).increment(n);
                        if dir.is_some() {
                            run.archived += n;
                            metrics::counter!(names::AUDIT_ARCHIVED).increment(n);
                        }
                    }
                }
            }
        }
        if run.pruned > 0 {
            tracing::info!(pruned = run.pruned, archived = run.archived, retention_days = days, "audit retention pruned old entries");
        }
        Ok(run)
    }
}

/// Runs [`Vault::prune_audit`] every `jobs_interval` (and once at start)
/// until `stop` is cancelled; does nothing when no retention is set.
pub async fn run_until(vault: Arc<Vault>, stop: CancellationToken) {
    if vault.config().audit_retention_days.is_none() {
        if vault.config().audit_archive_dir.is_some() {
            tracing::warn!("--audit-archive-dir is set without --audit-retention-days: nothing is pruned or archived");
        }
        return;
    }
    let (vault, stop) = (&vault, &stop);
    super::jobs::every(vault.config().jobs_interval, stop, move || async move {
        let result = match vault.prune_audit(stop).await {
            Ok(run) if run.busy => "skipped",
            Ok(_) => "done",
            Err(e) => {
                tracing::warn!("audit retention failed: {}", e.public_message_with_cause());
                "failed"
            }
        };
        metrics::counter!(names::AUDIT_PRUNE_RUNS, "result" => result).increment(1);
    })
    .await
}

/// The archive's folder of a chain: the tenant id (a slug, see
/// `names::tenant_id`), `_none` for entries of no tenant, and a hex name
/// for anything else a damaged database might hold.
fn chain_dir(tenant: Option<&str>) -> String {
    match tenant {
        None => "_none".into(),
        Some(t) if !t.is_empty() && t.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') && !t.starts_with('-') => {
            t.to_owned()
        }
        Some(t) => format!("_x{}", t.bytes().map(|b| format!("{b:02x}")).collect::<String>()),
    }
}

/// Appends `rows` to their files (one gzip member per file and batch),
/// syncing each file and the directories that changed.
fn write_archive(dir: &Path, rows: &[StoredEntry]) -> Result<()> {
    let io = |what: &str, path: &Path, e: std::io::Error| Error::internal(format_args!("audit archive: {what} {}: {e}", path.display()));
    let mut files: BTreeMap<PathBuf, Vec<&StoredEntry>> = BTreeMap::new();
    for row in rows {
        let day =
            chrono::DateTime::from_timestamp_millis(row.at).map_or_else(|| "invalid-date".into(), |t| t.format("%Y-%m-%d").to_string());
        files.entry(dir.join(chain_dir(row.tenant_id.as_deref())).join(format!("{day}.jsonl.gz"))).or_default().push(row);
    }
    for (path, rows) in files {
        let folder = path.parent().expect("a file in a folder");
        if !folder.exists() {
            std::fs::create_dir_all(folder).map_err(|e| io("creating", folder, e))?;
            sync_dir(dir)?;
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        for row in rows {
            serde_json::to_writer(&mut gz, row).map_err(Error::internal)?;
            gz.write_all(b"\n").map_err(|e| io("compressing for", &path, e))?;
        }
        let member = gz.finish().map_err(|e| io("compressing for", &path, e))?;
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(|e| io("opening", &path, e))?;
        file.write_all(&member).map_err(|e| io("writing", &path, e))?;
        file.sync_all().map_err(|e| io("syncing", &path, e))?;
        sync_dir(folder)?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::internal(format_args!("audit archive: syncing {}: {e}", dir.display())))
}

#[cfg(test)]
mod tests {
    #[test]
    fn archive_folders_are_tenant_slugs_or_escaped() {
        assert_eq!(super::chain_dir(Some("acme-1")), "acme-1");
        assert_eq!(super::chain_dir(None), "_none");
        assert_eq!(super::chain_dir(Some("../x")), "_x2e2e2f78");
    }
}
