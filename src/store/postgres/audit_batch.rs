//! PostgreSQL's audit batches: one autocommit statement per batch, which
//! also applies the liveness rule to the entries it makes durable.

use std::sync::LazyLock;

use sqlx::AssertSqlSafe;

use super::PgStore;
use super::columns::{audit_names, bind_audit_columns, bind_chain_columns, column, position_of, unnested};
use crate::error::Result;
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
    /// statement answers the positions it left out.
    pub(super) async fn write_audit_batch(&self, entries: &[AuditRow]) -> Result<Appended> {
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
                     WHERE n NOT IN (SELECT n FROM refused)
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
        let mut key_at = Vec::with_capacity(entries.len());
        let mut served_at = Vec::with_capacity(entries.len());
        for a in entries {
            let key = a.credential.as_ref().filter(|_| success(&a));
            key_at.push(key.map(|k| position_of(&mut keys, k)));
            served_at.push(a.served.as_ref().filter(|_| success(&a)).map(|v| position_of(&mut served, v)));
        }
        let q = bind_audit_columns(sqlx::query(AssertSqlSafe(SQL.as_str())), entries)
            .bind(column(&keys, |k| k.key_hash.as_slice()))
            .bind(column(&keys, |k| k.permission.as_str()))
            .bind(column(&keys, |k| k.project_scope.as_str()))
            .bind(column(&served, |v| v.secret_id.as_str()))
            .bind(column(&served, |v| v.version))
            .bind(column(&served, |v| v.updated_at))
            .bind(key_at)
            .bind(served_at)
            // Judged now, as every write's key is (see `store::liveness`).
            .bind(now_millis());
        let q = bind_chain_columns(q, entries);
        let mut held = self.audit.lock().await?;
        let done = q.fetch_all(held.conn()).await;
        let refused = held
            .settle(done)?
            .iter()
            .map(|row| crate::store::integrity::position(sqlx::Row::try_get::<i64, _>(row, 0)?, entries.len()))
            .collect::<crate::error::Result<Vec<_>>>()?;
        Ok(Appended { changed: self.detect_change_elsewhere().await?, refused })
    }
}
