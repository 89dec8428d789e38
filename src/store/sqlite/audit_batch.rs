//! SQLite's audit batches: multi-row inserts with anonymous parameters, and
//! `data_version` read in the same call.

use std::sync::OnceLock;
use std::sync::atomic::Ordering;

use sqlx::{AssertSqlSafe, Row, Sqlite};

use super::{SqliteStore, lock_writer};
use crate::error::Result;
use crate::store::sql::dialect::query;
use crate::store::sql::{AUDIT_INTO, AUDIT_ROWS_PER_INSERT, AUDIT_WIDTH, Params, bind_audit};
use crate::store::{Appended, AuditRow};

impl SqliteStore {
    /// Each chunk is one autocommit statement, so a batch of reads' audit
    /// entries costs one round trip to the connection's thread. The same call
    /// then reads `data_version`, which answers
    /// [`Store::changed_elsewhere`](crate::store::Store::changed_elsewhere) for
    /// free: read after the commit, it has seen every other process's commit
    /// that came before the entries did.
    ///
    /// No entry is refused here: a key changed by another process moves
    /// `data_version`, which this same call reads, and the reader then looks
    /// its key up again (`Vault::record_read`; see `store::liveness`).
    pub(super) async fn write_audit_batch(&self, entries: &[AuditRow]) -> Result<Appended> {
        let mut changed = false;
        let mut conn = lock_writer(&self.writer).await?;
        for chunk in entries.chunks(AUDIT_ROWS_PER_INSERT) {
            let rows: Vec<i64> = bind_audit(query::<Sqlite>(AssertSqlSafe(audit_batch_sql(chunk.len()))), chunk)
                .into_inner()
                .try_map(|row: sqlx::sqlite::SqliteRow| row.try_get(0))
                .fetch_all(&mut *conn)
                .await?;
            let Some(&v) = rows.last() else { return Err(crate::error::Error::internal("no data_version after an audit insert")) };
            changed |= self.data_version.swap(v, Ordering::SeqCst) != v;
        }
        Ok(Appended { changed, refused: Vec::new() })
    }
}

/// `INSERT INTO audit_log … VALUES (…), (…)` for `rows` rows (at most
/// `AUDIT_ROWS_PER_INSERT`), built once per size, then a second statement in
/// the same call that reads SQLite's `data_version` right after the insert
/// commits: one result row, where `RETURNING` would send one per inserted row
/// (see `SqliteStore::write_audit_batch`). The `PRAGMA` itself, not the
/// `pragma_data_version()` table, which prepares that `PRAGMA` anew on every
/// run.
fn audit_batch_sql(rows: usize) -> &'static str {
    static SQL: [OnceLock<String>; AUDIT_ROWS_PER_INSERT] = [const { OnceLock::new() }; AUDIT_ROWS_PER_INSERT];
    assert!((1..=AUDIT_ROWS_PER_INSERT).contains(&rows), "audit insert of {rows} rows");
    SQL[rows - 1]
        .get_or_init(|| format!("INSERT INTO {AUDIT_INTO} VALUES {}; PRAGMA data_version", Params::Anonymous.values(rows, AUDIT_WIDTH)))
}
