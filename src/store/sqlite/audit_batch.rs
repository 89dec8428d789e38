//! SQLite's audit batches: multi-row inserts with anonymous parameters,
//! linked to their chains (see `store::chain`), and `data_version` read in
//! the same call.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::sync::atomic::Ordering;

use sqlx::{AssertSqlSafe, Row, Sqlite};

use super::{SqliteStore, WriteConn, lock_writer};
use crate::error::Result;
use crate::store::chain::{self, Head};
use crate::store::sql::dialect::query;
use crate::store::sql::{AUDIT_INTO, AUDIT_ROWS_PER_INSERT, AUDIT_WIDTH, Params, bind_linked};
use crate::store::{Appended, AuditRow};

/// Tries of a batch whose heads another process moved (the last reads them
/// inside the transaction, under SQLite's write lock, and cannot miss).
const TRIES: usize = 3;

impl SqliteStore {
    /// A batch is one transaction, and one call to the connection's thread
    /// when it fits one insert (`BEGIN IMMEDIATE`, the rows, the heads'
    /// advance, `COMMIT`, then `data_version`). The rows are linked from the
    /// heads this process cached: right unless another process (a CLI next
    /// to the server) appended meanwhile, and then the chain's unique index
    /// refuses the insert, the transaction rolls back and the batch is linked
    /// again from the heads in the database. The same call reads
    /// `data_version`, which answers
    /// [`Store::changed_elsewhere`](crate::store::Store::changed_elsewhere) for
    /// free: read after the commit, it has seen every other process's commit
    /// that came before the entries did.
    ///
    /// No entry is refused here: a key changed by another process moves
    /// `data_version`, which this same call reads, and the reader then looks
    /// its key up again (`Vault::record_read`; see `store::liveness`).
    pub(super) async fn write_audit_batch(&self, entries: &[AuditRow]) -> Result<Appended> {
        let mut conn = lock_writer(&self.writer).await?;
        let chains = chain::chains(entries);
        for attempt in 1..=TRIES {
            let locked = attempt == TRIES;
            if locked {
                sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
            }
            let (mut heads, missing) = if attempt == 1 { self.heads.get(&chains) } else { (HashMap::new(), chains.clone()) };
            let read = read_heads(&mut conn, &missing).await;
            let read = match read {
                Ok(read) => read,
                Err(e) => {
                    rollback(&mut conn, locked).await;
                    return Err(e);
                }
            };
            heads.extend(read);
            let links = chain::links(entries, &mut heads);
            match insert_linked(&mut conn, entries, &links, &heads, !locked).await {
                Ok(v) => {
                    let changed = self.data_version.swap(v, Ordering::SeqCst) != v;
                    if changed {
                        // Another process wrote: any cached head may be behind.
                        self.heads.clear();
                    }
                    self.heads.put(&heads);
                    return Ok(Appended { changed, refused: Vec::new() });
                }
                Err(e) => {
                    rollback(&mut conn, true).await;
                    self.heads.clear();
                    if !chain::position_taken(&e) || locked {
                        return Err(e.into());
                    }
                }
            }
        }
        unreachable!("the last try returns")
    }
}

async fn rollback(conn: &mut WriteConn, open: bool) {
    if open {
        // Also when SQLite already ended the transaction: then this fails harmlessly.
        let _ = sqlx::query("ROLLBACK").execute(&mut **conn).await;
    }
}

/// The heads of `chains` as the database has them (an empty chain has none).
pub(super) async fn read_heads(conn: &mut sqlx::SqliteConnection, chains: &[String]) -> Result<HashMap<String, Head>> {
    if chains.is_empty() {
        return Ok(HashMap::new());
    }
    let list = serde_json::to_string(chains).map_err(crate::error::Error::internal)?;
    let rows: Vec<(String, i64, Vec<u8>)> =
        sqlx::query_as("SELECT chain, seq, hash FROM audit_chain_heads WHERE chain IN (SELECT value FROM json_each(?))")
            .bind(list)
            .fetch_all(&mut *conn)
            .await?;
    Ok(rows.into_iter().map(|(c, seq, hash)| (c, Head { seq, hash })).collect())
}

/// The advance of `heads`, as one JSON parameter of [`HEADS_SQL`].
pub(super) fn heads_json(heads: &HashMap<String, Head>) -> Result<String> {
    let list: Vec<(&str, i64, String)> = heads.iter().map(|(c, h)| (c.as_str(), h.seq, chain::hex(&h.hash))).collect();
    serde_json::to_string(&list).map_err(crate::error::Error::internal)
}

/// Moves each head of a JSON array of [chain, seq, hex hash] to its new place.
pub(super) const HEADS_SQL: &str = "INSERT INTO audit_chain_heads (chain, seq, hash) \
     SELECT value ->> 0, value ->> 1, unhex(value ->> 2) FROM json_each(?) WHERE true \
     ON CONFLICT (chain) DO UPDATE SET seq = excluded.seq, hash = excluded.hash";

/// Inserts the linked rows in chunks and moves the heads on, in one
/// transaction (`begin`: opened by the first chunk's call; else already
/// open), and answers `data_version` after the commit. On an error the
/// transaction is still open: the caller rolls it back.
async fn insert_linked(
    conn: &mut WriteConn,
    rows: &[AuditRow],
    links: &[chain::Link],
    heads: &HashMap<String, Head>,
    begin: bool,
) -> sqlx::Result<i64> {
    let json = heads_json(heads).map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
    let chunks: Vec<&[AuditRow]> = rows.chunks(AUDIT_ROWS_PER_INSERT).collect();
    let mut version = None;
    for (i, (chunk, linked)) in chunks.iter().zip(links.chunks(AUDIT_ROWS_PER_INSERT)).enumerate() {
        let last = i + 1 == chunks.len();
        let sql = query::<Sqlite>(AssertSqlSafe(audit_batch_sql(chunk.len(), begin && i == 0, last)));
        let q = bind_linked(sql, chunk.iter().zip(linked).map(|(a, (seq, hash))| (a, seq, hash))).into_inner();
        let q = if last { q.bind(json.as_str()) } else { q };
        let got: Vec<i64> = q.try_map(|row: sqlx::sqlite::SqliteRow| row.try_get(0)).fetch_all(&mut **conn).await?;
        version = got.last().copied();
    }
    version.ok_or_else(|| sqlx::Error::Protocol("no data_version after an audit insert".into()))
}

/// `INSERT OR FAIL INTO audit_log … VALUES (…), (…)` for `rows` rows (at
/// most `AUDIT_ROWS_PER_INSERT`), built once per shape: after `BEGIN
/// IMMEDIATE` when `first`; when `last`, followed by the heads' advance
/// ([`HEADS_SQL`]), `COMMIT`, and a read of SQLite's `data_version` right
/// after the commit: one result row, where `RETURNING` would send one per
/// inserted row. The `PRAGMA` itself, not the `pragma_data_version()` table,
/// which prepares that `PRAGMA` anew on every run. `OR FAIL`: a failure
/// rolls the whole transaction back, so the statement needs no journal of
/// its own (see `version_batch::batch_sql`).
fn audit_batch_sql(rows: usize, first: bool, last: bool) -> &'static str {
    static SQL: [[OnceLock<String>; AUDIT_ROWS_PER_INSERT]; 4] = [const { [const { OnceLock::new() }; AUDIT_ROWS_PER_INSERT] }; 4];
    assert!((1..=AUDIT_ROWS_PER_INSERT).contains(&rows), "audit insert of {rows} rows");
    SQL[usize::from(first) * 2 + usize::from(last)][rows - 1].get_or_init(|| {
        format!(
            "{}INSERT OR FAIL INTO {AUDIT_INTO} VALUES {}{}",
            if first { "BEGIN IMMEDIATE; " } else { "" },
            Params::Anonymous.values(rows, AUDIT_WIDTH),
            if last { format!("; {HEADS_SQL}; COMMIT; PRAGMA data_version") } else { String::new() }
        )
    })
}
