//! PostgreSQL's audit batches: one autocommit statement per batch, which
//! also applies the liveness rule to the entries it makes durable.

use std::collections::HashMap;
use std::sync::LazyLock;

use sqlx::AssertSqlSafe;

use super::PgStore;
use super::columns::{audit_names, bind_audit_columns, bind_chain_columns, column, position_of, unnested};
use crate::error::Result;
use crate::store::chain::{self, Head};
use crate::store::liveness::credential_is_live;
use crate::store::sql::{AUDIT_INTO, Backend};
use crate::store::{Appended, AuditRow, Credential, Served, now_millis};

impl PgStore {
    /// One autocommit statement whatever the batch's size: the entries go as
    /// eleven column arrays, unnested in the select list. There the arrays
    /// are read in step, row by row; `UNNEST(a, b, …)` in `FROM` first copies
    /// each array into a tuplestore of its own, and that copying, with the
    /// materialized rows it fed, was a sixth of the backend's CPU per batch.
    /// Entries of one batch come from concurrent requests and have no order
    /// among themselves, so none is imposed.
    ///
    /// A success entry with a credential goes in only while that credential
    /// is live, as a write's entry does (see `store::liveness`), and that of
    /// a read answered from the cache only while the secret is still as the
    /// cache had it (see `Served`). Failures are recorded whatever the key's
    /// state. Here the cache learns of another replica's changes by notification, which a
    /// silently dead listener delays by seconds; the rows themselves, checked
    /// in the statement that makes the read durable, are never late. The
    /// statement answers the positions it refuses.
    ///
    /// The chain (see `store::chain`): the rows are linked in Rust from the
    /// heads this replica cached, and the statement writes them, and moves
    /// the heads on, only when it refuses none: a refused entry must take no
    /// position. Refused entries are then dropped and the rest linked and
    /// sent again (each round drops one or more, so this ends). When another
    /// replica moved a head, the chain's unique index fails the statement;
    /// the batch then runs in a transaction that locks the heads it appends
    /// to (`FOR UPDATE`, in chain order) and links from them.
    pub(super) async fn write_audit_batch(&self, entries: &[AuditRow]) -> Result<Appended> {
        let mut keep: Vec<usize> = (0..entries.len()).collect();
        let mut refused = Vec::new();
        let mut locked: Option<super::write_conn::WriteConn> = None;
        let mut cached = true;
        for _ in 0..entries.len() + 3 {
            if keep.is_empty() {
                break;
            }
            let mut rows: Vec<AuditRow> = keep.iter().map(|&i| entries[i].clone()).collect();
            let chains = chain::chains(&rows);
            let answer = match locked.as_mut() {
                None => {
                    let (mut heads, missing) = if cached { self.heads.get(&chains) } else { (HashMap::new(), chains.clone()) };
                    let mut held = self.audit.lock().await?;
                    let read = if missing.is_empty() { Ok(HashMap::new()) } else { read_heads(held.conn(), &missing, false).await };
                    let done = match read {
                        Ok(read) => {
                            heads.extend(read);
                            chain::link(&mut rows, &mut heads);
                            batch_query(&rows, &heads).fetch_all(held.conn()).await
                        }
                        Err(e) => Err(e),
                    };
                    // A position taken elsewhere leaves the connection sound: keep it.
                    let done = match done {
                        Err(e) if chain::position_taken(&e) => Ok(Err(e)),
                        other => other.map(Ok),
                    };
                    held.settle(done)?.map(|r| (r, heads))
                }
                Some(conn) => {
                    let mut tx = conn.begin().await?;
                    let mut heads = read_heads(&mut tx, &chains, true).await?;
                    // Chains new to the database have no row to lock: the
                    // unique index still lets only one first entry in.
                    chain::link(&mut rows, &mut heads);
                    let done = batch_query(&rows, &heads).fetch_all(&mut *tx).await;
                    match done {
                        Ok(r) if r.is_empty() => tx.commit().await.map(|_| (r, heads)),
                        // Refused entries: nothing was written; the next round drops them.
                        other => other.map(|r| (r, heads)),
                    }
                }
            };
            match answer {
                Ok((out, heads)) if out.is_empty() => {
                    self.heads.put(&heads);
                    refused.sort_unstable();
                    return Ok(Appended { changed: self.detect_change_elsewhere().await?, refused });
                }
                Ok((out, _)) => {
                    let mut drop = Vec::with_capacity(out.len());
                    for row in &out {
                        drop.push(crate::store::integrity::position(sqlx::Row::try_get::<i64, _>(row, 0)?, rows.len())?);
                    }
                    refused.extend(drop.iter().map(|&i| keep[i]));
                    let mut at = 0;
                    keep.retain(|_| {
                        at += 1;
                        !drop.contains(&(at - 1))
                    });
                }
                Err(e) if chain::position_taken(&e) => {
                    // Another replica appended: link again from the heads, locked.
                    self.heads.clear();
                    cached = false;
                    if locked.is_none() {
                        locked = Some(super::write_conn::WriteConn::acquire(&self.writer).await?);
                    }
                }
                Err(e) => {
                    self.heads.clear();
                    return Err(e.into());
                }
            }
        }
        if keep.is_empty() {
            refused.sort_unstable();
            return Ok(Appended { changed: self.detect_change_elsewhere().await?, refused });
        }
        Err(crate::error::Error::internal("the audit chain's heads kept moving"))
    }
}

/// The heads of `chains` (an empty chain has none), locked until the
/// transaction ends when `lock`.
pub(super) async fn read_heads(conn: &mut sqlx::PgConnection, chains: &[String], lock: bool) -> sqlx::Result<HashMap<String, Head>> {
    if chains.is_empty() {
        return Ok(HashMap::new());
    }
    let sql = if lock {
        "SELECT chain, seq, hash FROM audit_chain_heads WHERE chain = ANY($1) ORDER BY chain FOR UPDATE"
    } else {
        "SELECT chain, seq, hash FROM audit_chain_heads WHERE chain = ANY($1)"
    };
    let rows: Vec<(String, i64, Vec<u8>)> = sqlx::query_as(sql).bind(chains).fetch_all(conn).await?;
    Ok(rows.into_iter().map(|(c, seq, hash)| (c, Head { seq, hash })).collect())
}

/// The batch's statement for linked `rows`, and the heads they leave.
fn batch_query<'q>(rows: &'q [AuditRow], heads: &HashMap<String, Head>) -> super::columns::PgQuery<'q> {
    // Each distinct key and served version is checked once, however many
    // entries of the batch name it; the entries point at them by position.
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "WITH bad_keys AS MATERIALIZED (
                 SELECT i FROM UNNEST($12::bytea[], $13::text[], $14::text[]) WITH ORDINALITY AS k(h, p, s, i)
                 WHERE NOT {}
             ), stale AS MATERIALIZED (
                 SELECT i FROM UNNEST($15::text[], $16::bigint[], $17::bigint[]) WITH ORDINALITY AS v(id, cur, upd, i)
                 WHERE NOT EXISTS (SELECT 1 FROM secrets WHERE id = v.id AND current_version = v.cur AND updated_at = v.upd)
             ), refused AS MATERIALIZED (
                 SELECT n FROM (SELECT unnest($18::bigint[]) AS ki, unnest($19::bigint[]) AS vi,
                                       generate_series(1::bigint, cardinality($19::bigint[])) AS n) r
                 WHERE ki IN (SELECT i FROM bad_keys) OR vi IN (SELECT i FROM stale)
             ), written AS (
                 INSERT INTO {AUDIT_INTO}
                 SELECT {} FROM (SELECT {}, generate_series(1::bigint, cardinality($2::bigint[])) AS n) a
                 WHERE NOT EXISTS (SELECT 1 FROM refused)
             ), advanced AS (
                 INSERT INTO audit_chain_heads (chain, seq, hash)
                 SELECT * FROM UNNEST($26::text[], $27::bigint[], $28::bytea[]) WHERE NOT EXISTS (SELECT 1 FROM refused)
                 ON CONFLICT (chain) DO UPDATE SET seq = excluded.seq, hash = excluded.hash
             )
             SELECT n FROM refused",
            credential_is_live("k.h", "k.p", "k.s", "$20"),
            audit_names().join(", "),
            unnested(1, 21),
        )
    });
    // Failures and anonymous attempts are recorded whatever the key's state.
    let success = |a: &&AuditRow| a.outcome == "success";
    let mut keys: Vec<&Credential> = Vec::new();
    let mut served: Vec<&Served> = Vec::new();
    let mut key_at = Vec::with_capacity(rows.len());
    let mut served_at = Vec::with_capacity(rows.len());
    for a in rows {
        let key = a.credential.as_ref().filter(|_| success(&a));
        key_at.push(key.map(|k| position_of(&mut keys, k)));
        served_at.push(a.served.as_ref().filter(|_| success(&a)).map(|v| position_of(&mut served, v)));
    }
    let mut advanced: Vec<(&String, &Head)> = heads.iter().collect();
    advanced.sort_by_key(|(c, _)| *c);
    let q = bind_audit_columns(sqlx::query(AssertSqlSafe(SQL.as_str())), rows)
        .bind(column(&keys, |k| k.key_hash.clone()))
        .bind(column(&keys, |k| k.permission.clone()))
        .bind(column(&keys, |k| k.project_scope.clone()))
        .bind(column(&served, |v| v.secret_id.clone()))
        .bind(column(&served, |v| v.version))
        .bind(column(&served, |v| v.updated_at))
        .bind(key_at)
        .bind(served_at)
        // Judged now, as every write's key is (see `store::liveness`).
        .bind(now_millis());
    bind_chain_columns(q, rows)
        .bind(column(&advanced, |(c, _)| (*c).clone()))
        .bind(column(&advanced, |(_, h)| h.seq))
        .bind(column(&advanced, |(_, h)| h.hash.clone()))
}
