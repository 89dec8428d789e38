//! The PostgreSQL side of `latchkey backup`: JSON lines per table, read in
//! one repeatable-read snapshot, restored into an empty database.
//!
//! The file: a header line `{"latchkeyDump":1,"backend":"postgres",
//! "migration":N,"tables":[{"name","rows"}…]}`, then per table (parents
//! before children) a line `{"table":NAME,"rows":N}` followed by N lines,
//! each one row as `row_to_json` gives it (bytea as `\x…` hex).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use super::{Summary, bar, io_error, private_file};
use crate::error::{Error, Result};

const MIGRATIONS_TABLE: &str = "_sqlx_migrations";
/// Rows per `INSERT … json_populate_recordset` on restore.
const ROWS_PER_INSERT: usize = 500;

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Header {
    latchkey_dump: u32,
    backend: String,
    migration: i64,
    tables: Vec<TableCount>,
}

#[derive(Serialize, Deserialize)]
struct TableCount {
    name: String,
    rows: u64,
}

#[derive(Serialize, Deserialize)]
struct Section {
    table: String,
    rows: u64,
}

fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

async fn connect(url: &str) -> Result<PgConnection> {
    let opts: PgConnectOptions = url.parse().map_err(|e| Error::InvalidRequest(format!("bad database URL: {e}")))?;
    Ok(PgConnection::connect_with(&opts).await?)
}

/// The schema's tables (but the migration ledger), parents before children.
async fn tables_in_order(conn: &mut PgConnection) -> Result<Vec<String>> {
    let names: Vec<String> =
        sqlx::query_scalar("SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename")
            .fetch_all(&mut *conn)
            .await?;
    let names: Vec<String> = names.into_iter().filter(|n| n != MIGRATIONS_TABLE).collect();
    let edges: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.relname::text, p.relname::text FROM pg_constraint k \
         JOIN pg_class c ON c.oid = k.conrelid JOIN pg_class p ON p.oid = k.confrelid \
         WHERE k.contype = 'f' AND k.connamespace = current_schema()::regnamespace",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut parents: BTreeMap<&str, BTreeSet<&str>> = names.iter().map(|n| (n.as_str(), BTreeSet::new())).collect();
    for (child, parent) in &edges {
        if child != parent
            && let Some(set) = parents.get_mut(child.as_str())
        {
            set.insert(parent.as_str());
        }
    }
    let mut order: Vec<String> = Vec::with_capacity(names.len());
    while order.len() < names.len() {
        let before = order.len();
        for n in &names {
            if !order.contains(n) && parents[n.as_str()].iter().all(|p| order.iter().any(|o| o == p) || !parents.contains_key(p)) {
                order.push(n.clone());
            }
        }
        if order.len() == before {
            return Err(Error::internal("foreign keys form a cycle"));
        }
    }
    Ok(order)
}

pub(super) async fn create(file: &Path, url: &str) -> Result<Summary> {
    let mut conn = connect(url).await?;
    let mut tx = conn.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY").execute(&mut *tx).await?;
    let migration: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT COALESCE(MAX(version), 0) FROM {MIGRATIONS_TABLE}")))
        .fetch_one(&mut *tx)
        .await
        .map_err(|_| Error::InvalidRequest("that database holds no Latchkey schema".into()))?;
    let order = tables_in_order(&mut tx).await?;
    let mut tables = Vec::with_capacity(order.len());
    for name in &order {
        let rows: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT COUNT(*) FROM {}", ident(name)))).fetch_one(&mut *tx).await?;
        tables.push(TableCount { name: name.clone(), rows: rows as u64 });
    }
    let total: u64 = tables.iter().map(|t| t.rows).sum();
    let tmp = file.with_extension("partial");
    let _ = std::fs::remove_file(&tmp);
    let mut out = BufWriter::new(private_file(&tmp).map_err(|e| io_error(&tmp, e))?);
    let header = Header { latchkey_dump: 1, backend: "postgres".into(), migration, tables };
    let line = |out: &mut BufWriter<std::fs::File>, text: &str| -> Result<()> {
        out.write_all(text.as_bytes()).and_then(|()| out.write_all(b"\n")).map_err(|e| io_error(&tmp, e))
    };
    line(&mut out, &serde_json::to_string(&header).map_err(Error::internal)?)?;
    let progress = bar(total, "backing up rows");
    for t in &header.tables {
        line(&mut out, &serde_json::to_string(&Section { table: t.name.clone(), rows: t.rows }).map_err(Error::internal)?)?;
        let sql = format!("SELECT row_to_json(t)::text FROM {} t", ident(&t.name));
        let mut rows = sqlx::query_scalar::<_, String>(AssertSqlSafe(sql)).fetch(&mut *tx);
        let mut n = 0u64;
        while let Some(row) = rows.try_next().await? {
            line(&mut out, &row)?;
            n += 1;
            progress.inc(1);
        }
        if n != t.rows {
            return Err(Error::internal(format_args!("{}: counted {} rows, read {n}", t.name, t.rows)));
        }
    }
    tx.commit().await?;
    let file_out = out.into_inner().map_err(|e| io_error(&tmp, e.error()))?;
    file_out.sync_all().map_err(|e| io_error(&tmp, e))?;
    drop(file_out);
    std::fs::rename(&tmp, file).map_err(|e| io_error(file, e))?;
    progress.finish_and_clear();
    let bytes = std::fs::metadata(file).map_err(|e| io_error(file, e))?.len();
    Ok(Summary { backend: "postgres", bytes, rows: Some(total) })
}

pub(super) async fn restore(file: &Path, url: &str) -> Result<Summary> {
    let reader = std::fs::File::open(file).map_err(|e| io_error(file, e))?;
    let bytes = reader.metadata().map_err(|e| io_error(file, e))?.len();
    let mut lines = BufReader::new(reader).lines();
    let mut next = || -> Result<String> {
        lines.next().ok_or_else(|| Error::InvalidRequest(format!("{} ends early", file.display())))?.map_err(|e| io_error(file, e))
    };
    let header: Header = serde_json::from_str(&next()?)
        .map_err(|_| Error::InvalidRequest(format!("{} is not a PostgreSQL backup made by `latchkey backup create`", file.display())))?;
    if header.latchkey_dump != 1 || header.backend != "postgres" {
        return Err(Error::InvalidRequest(format!("{} is not a PostgreSQL backup of format 1", file.display())));
    }
    let mut conn = connect(url).await?;
    let existing: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM pg_tables WHERE schemaname = current_schema()").fetch_one(&mut conn).await?;
    if existing > 0 {
        return Err(Error::InvalidRequest(
            "the target database is not empty: restore only into a new, empty database (CREATE DATABASE …)".into(),
        ));
    }
    conn.close().await.ok();
    let pool: PgPool = PgPoolOptions::new().max_connections(1).connect(url).await?;
    sqlx::migrate!("migrations/postgres").run(&pool).await.map_err(|e| Error::internal(format_args!("migrations: {e}")))?;
    let migrated: i64 =
        sqlx::query_scalar(AssertSqlSafe(format!("SELECT COALESCE(MAX(version), 0) FROM {MIGRATIONS_TABLE}"))).fetch_one(&pool).await?;
    if migrated != header.migration {
        return Err(Error::InvalidRequest(format!(
            "the backup's schema is at migration {}, this latchkey's at {migrated}: restore with the version that made it, then upgrade",
            header.migration
        )));
    }
    let total: u64 = header.tables.iter().map(|t| t.rows).sum();
    let progress = bar(total, "restoring rows");
    let mut tx = pool.begin().await?;
    let tables = tables_in_order(&mut tx).await?;
    // Rows a migration itself wrote would come twice.
    for t in &tables {
        sqlx::query(AssertSqlSafe(format!("DELETE FROM {}", ident(t)))).execute(&mut *tx).await?;
    }
    for _ in &header.tables {
        let section: Section =
            serde_json::from_str(&next()?).map_err(|_| Error::InvalidRequest(format!("{}: a bad section line", file.display())))?;
        if !tables.contains(&section.table) {
            return Err(Error::InvalidRequest(format!("the backup's table {} is not in this schema", section.table)));
        }
        let t = ident(&section.table);
        // Triggers (webhooks' enqueue on audit rows, say) ran when the rows were first written.
        sqlx::query(AssertSqlSafe(format!("ALTER TABLE {t} DISABLE TRIGGER USER"))).execute(&mut *tx).await?;
        let mut batch: Vec<String> = Vec::with_capacity(ROWS_PER_INSERT);
        for i in 0..section.rows {
            batch.push(next()?);
            if batch.len() == ROWS_PER_INSERT || i + 1 == section.rows {
                let json = format!("[{}]", batch.join(","));
                sqlx::query(AssertSqlSafe(format!("INSERT INTO {t} SELECT * FROM json_populate_recordset(NULL::{t}, $1::json)")))
                    .bind(json)
                    .execute(&mut *tx)
                    .await?;
                progress.inc(batch.len() as u64);
                batch.clear();
            }
        }
        sqlx::query(AssertSqlSafe(format!("ALTER TABLE {t} ENABLE TRIGGER USER"))).execute(&mut *tx).await?;
    }
    // Serial columns go on after the highest restored value.
    let serials: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT c.relname::text, a.attname::text, pg_get_serial_sequence(quote_ident(c.relname), a.attname)::text \
         FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid \
         WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped \
         AND pg_get_serial_sequence(quote_ident(c.relname), a.attname) IS NOT NULL",
    )
    .fetch_all(&mut *tx)
    .await?;
    for (table, column, sequence) in serials {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT setval($1, COALESCE((SELECT MAX({}) FROM {}), 0) + 1, false)",
            ident(&column),
            ident(&table)
        )))
        .bind(sequence)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    pool.close().await;
    progress.finish_and_clear();
    Ok(Summary { backend: "postgres", bytes, rows: Some(total) })
}
