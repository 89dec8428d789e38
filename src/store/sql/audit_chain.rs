//! [`AuditChainStore`] for every [`Backend`]. Positions are read through the
//! chain's unique index (`audit_chain_order`, on `COALESCE(tenant_id, '')`).

use async_trait::async_trait;
use sqlx::AssertSqlSafe;

use super::Backend;
use super::dialect::query;
use crate::error::Result;
use crate::store::AuditRow;
use crate::store::audit_chain::{AuditChainStore, Checkpoint};
use crate::store::chain::Head;

const COLS: &str = "id, tenant_id, at, actor, front, action, resource_type, resource_id, outcome, ip, user_agent, detail, \
     chain_seq, chain_hash, client, tool, reason";

#[async_trait]
impl<B: Backend> AuditChainStore for B {
    async fn head(&self, chain: &str) -> Result<Option<Head>> {
        let row: Option<(i64, Vec<u8>)> =
            query::<B::Db>("SELECT seq, hash FROM audit_chain_heads WHERE chain = $1").bind(chain).fetch_optional(self.reader()).await?;
        Ok(row.map(|(seq, hash)| Head { seq, hash }))
    }

    async fn checkpoint(&self, chain: &str) -> Result<Option<Checkpoint>> {
        query::<B::Db>("SELECT seq, hash, pruned_before, pruned_entries FROM audit_checkpoints WHERE chain = $1")
            .bind(chain)
            .fetch_optional(self.reader())
            .await
    }

    async fn page(&self, chain: &str, after: i64, limit: i64) -> Result<Vec<AuditRow>> {
        query::<B::Db>(AssertSqlSafe(format!(
            "SELECT {COLS} FROM audit_log WHERE COALESCE(tenant_id, '') = $1 AND chain_seq IS NOT NULL AND chain_seq > $2 \
             ORDER BY COALESCE(tenant_id, ''), chain_seq LIMIT $3"
        )))
        .bind(chain)
        .bind(after)
        .bind(limit)
        .fetch_all(self.reader())
        .await
    }

    async fn first_since(&self, chain: &str, at: i64) -> Result<Option<i64>> {
        // Through the (tenant, time) index.
        let sql = if chain.is_empty() {
            "SELECT MIN(chain_seq) FROM audit_log WHERE tenant_id IS NULL AND $1 = '' AND at >= $2"
        } else {
            "SELECT MIN(chain_seq) FROM audit_log WHERE tenant_id = $1 AND at >= $2"
        };
        query::<B::Db>(sql).bind(chain).bind(at).fetch_one_scalar::<Option<i64>>(self.reader()).await
    }

    async fn entry(&self, chain: &str, seq: i64) -> Result<Option<AuditRow>> {
        query::<B::Db>(AssertSqlSafe(format!(
            "SELECT {COLS} FROM audit_log WHERE COALESCE(tenant_id, '') = $1 AND chain_seq IS NOT NULL AND chain_seq = $2"
        )))
        .bind(chain)
        .bind(seq)
        .fetch_optional(self.reader())
        .await
    }

    async fn unchained(&self, chain: &str) -> Result<i64> {
        let sql = if chain.is_empty() {
            "SELECT COUNT(*) FROM audit_log WHERE tenant_id IS NULL AND $1 = '' AND chain_seq IS NULL"
        } else {
            "SELECT COUNT(*) FROM audit_log WHERE tenant_id = $1 AND chain_seq IS NULL"
        };
        query::<B::Db>(sql).bind(chain).fetch_one_scalar(self.reader()).await
    }
}
