//! [`TrailStore`] for every [`Backend`]: the audit trail's size, and
//! retention's pruning in chain order with the chain's checkpoint.

use async_trait::async_trait;
use sqlx::AssertSqlSafe;

use super::Backend;
use super::dialect::query;
use crate::error::{Error, Result};
use crate::store::Millis;
use crate::store::trail::*;

const ENTRY_COLS: &str = "id, tenant_id, at, actor, front, action, resource_type, resource_id, outcome, ip, user_agent, detail, \
     chain_seq, chain_hash, client, tool, reason";

/// The key of PostgreSQL's transaction-scoped advisory lock that makes a
/// pruning step run on one replica at a time ("lk-audit-prune").
const PRUNE_LOCK: i64 = 0x6c6b_2d61_7564_6974;

/// The entries of `chain` (`$1`): a tenant's, or those of no tenant, as
/// the index `(tenant_id, at)` finds them.
fn of_chain(chain: &str) -> &'static str {
    if chain.is_empty() { "tenant_id IS NULL AND $1 = ''" } else { "tenant_id = $1" }
}

/// The chained entries of `chain` (`$1`), as the index `audit_chain_order` finds them.
const IN_CHAIN: &str = "COALESCE(tenant_id, '') = $1 AND chain_seq IS NOT NULL";

#[async_trait]
impl<B: Backend> TrailStore for B {
    async fn trail_size(&self) -> Result<TrailSize> {
        // One MIN and one MAX each in a subquery of its own: SQLite reads a
        // lone min() or max() from the index's end, two together by a scan.
        let rows: i64 = query::<B::Db>("SELECT COALESCE((SELECT MAX(id) FROM audit_log) - (SELECT MIN(id) FROM audit_log) + 1, 0)")
            .fetch_one_scalar(self.reader())
            .await?;
        let mut size = TrailSize { rows, ..TrailSize::default() };
        if B::NAME == "postgres" {
            size.table_bytes =
                Some(query::<B::Db>("SELECT pg_total_relation_size('audit_log')::BIGINT").fetch_one_scalar(self.reader()).await?);
        } else {
            size.database_bytes = Some(
                query::<B::Db>(
                    "SELECT (p.page_count - f.freelist_count) * s.page_size FROM pragma_page_count() p, pragma_freelist_count() f, pragma_page_size() s",
                )
                .fetch_one_scalar(self.reader())
                .await?,
            );
        }
        Ok(size)
    }

    async fn chains(&self) -> Result<Vec<String>> {
        let mut chains: Vec<String> =
            query::<B::Db>("SELECT id FROM tenants UNION SELECT chain FROM audit_chain_heads WHERE chain <> '' ORDER BY 1")
                .fetch_all::<(String,)>(self.reader())
                .await?
                .into_iter()
                .map(|(id,)| id)
                .collect();
        chains.push(String::new());
        Ok(chains)
    }

    async fn prune_chain(&self, chain: &str, before: Millis, limit: i64, archive: Option<Archive<'_>>) -> Result<Pruned> {
        let mut conn = self.write_conn().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        // SQLite: `BEGIN IMMEDIATE` already holds the database's one write lock.
        if B::NAME == "postgres" {
            let mine: bool = query::<B::Db>("SELECT pg_try_advisory_xact_lock($1)").bind(PRUNE_LOCK).fetch_one_scalar(&mut *tx).await?;
            if !mine {
                return Ok(Pruned::Busy);
            }
        }
        let cond = of_chain(chain);
        // Entries from before the chain existed go first, oldest first.
        let legacy: Vec<StoredEntry> = query::<B::Db>(AssertSqlSafe(format!(
            "SELECT {ENTRY_COLS} FROM audit_log WHERE {cond} AND chain_seq IS NULL AND at < $2 ORDER BY at, id LIMIT $3"
        )))
        .bind(chain)
        .bind(before)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        if let Some(last) = legacy.last() {
            let (last_at, last_id, n) = (last.at, last.id, legacy.len() as u64);
            if let Some(archive) = archive {
                archive(legacy).await?;
            }
            let deleted = query::<B::Db>(AssertSqlSafe(format!(
                "DELETE FROM audit_log WHERE {cond} AND chain_seq IS NULL AND (at < $2 OR (at = $2 AND id <= $3))"
            )))
            .bind(chain)
            .bind(last_at)
            .bind(last_id)
            .execute(&mut *tx)
            .await?;
            if deleted != n {
                return Err(Error::internal(format_args!("audit pruning: selected {n} entries, deleting {deleted}")));
            }
            tx.commit().await?;
            return Ok(Pruned::Deleted(n));
        }
        // Then the chain's oldest entries, up to the first that is not old enough.
        let mut head: Vec<StoredEntry> =
            query::<B::Db>(AssertSqlSafe(format!("SELECT {ENTRY_COLS} FROM audit_log WHERE {IN_CHAIN} ORDER BY chain_seq LIMIT $2")))
                .bind(chain)
                .bind(limit)
                .fetch_all(&mut *tx)
                .await?;
        let old = head.iter().take_while(|e| e.at < before).count();
        head.truncate(old);
        let Some(last) = head.last() else { return Ok(Pruned::Deleted(0)) };
        let seq = last.chain_seq.expect("selected with a chain_seq");
        let hash = last.chain_hash.clone().ok_or(Error::Integrity)?;
        let pruned_before = head.iter().map(|e| e.at).max().unwrap_or(before).saturating_add(1);
        let n = head.len() as u64;
        if let Some(archive) = archive {
            archive(head).await?;
        }
        let deleted = query::<B::Db>(AssertSqlSafe(format!("DELETE FROM audit_log WHERE {IN_CHAIN} AND chain_seq <= $2")))
            .bind(chain)
            .bind(seq)
            .execute(&mut *tx)
            .await?;
        if deleted != n {
            return Err(Error::internal(format_args!("audit pruning: selected {n} chained entries, deleting {deleted}")));
        }
        query::<B::Db>(
            "INSERT INTO audit_checkpoints (chain, seq, hash, pruned_before, pruned_entries, updated_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (chain) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, \
             pruned_before = CASE WHEN excluded.pruned_before > audit_checkpoints.pruned_before THEN excluded.pruned_before ELSE audit_checkpoints.pruned_before END, \
             pruned_entries = audit_checkpoints.pruned_entries + excluded.pruned_entries, updated_at = excluded.updated_at",
        )
        .bind(chain)
        .bind(seq)
        .bind(hash)
        .bind(pruned_before)
        .bind(n as i64)
        .bind(crate::store::now_millis())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Pruned::Deleted(n))
    }
}
