//! [`KeyringStore`] for every [`Backend`]: the master-key rotation's reads and its one transaction.

use async_trait::async_trait;

use super::dialect::query;
use super::{Backend, writes};
use crate::error::{Error, Result};
use crate::store::AuditRow;
use crate::store::keyring::*;

#[async_trait]
impl<B: Backend> KeyringStore for B {
    async fn wrapped_keys(&self, after: Option<&str>, limit: i64) -> Result<Vec<(String, Vec<u8>)>> {
        let rows: Vec<(String, Vec<u8>)> = query::<B::Db>("SELECT id, wrapped_key FROM tenants WHERE id > $1 ORDER BY id LIMIT $2")
            .bind(after.unwrap_or(""))
            .bind(limit)
            .fetch_all(self.reader())
            .await?;
        Ok(rows)
    }

    async fn rewrap_all(&self, rewraps: &[Rewrap], meta: &[MetaRewrap], key_check: &[u8], audit: &AuditRow) -> Result<()> {
        let mut conn = self.write_conn().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        for r in rewraps {
            let n = query::<B::Db>("UPDATE tenants SET wrapped_key = $3 WHERE id = $1 AND wrapped_key = $2")
                .bind(&r.tenant_id)
                .bind(&r.old)
                .bind(&r.new)
                .execute(&mut *tx)
                .await?;
            if n == 0 {
                return Err(Error::Conflict(format!(
                    "tenant '{}' changed while the master key was being rotated; nothing was changed, run it again",
                    r.tenant_id
                )));
            }
        }
        for m in meta {
            let n = query::<B::Db>("UPDATE meta SET value = $3 WHERE key = $1 AND value = $2")
                .bind(m.key)
                .bind(&m.old)
                .bind(&m.new)
                .execute(&mut *tx)
                .await?;
            if n == 0 {
                return Err(Error::Conflict(format!("'{}' changed while the master key was being rotated; run it again", m.key)));
            }
        }
        query::<B::Db>("UPDATE meta SET value = $1 WHERE key = 'key_check'").bind(key_check).execute(&mut *tx).await?;
        writes::insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }
}
