//! One rule for "is this credential still live" (see `store::liveness`), the
//! same on every path that makes a keyed action durable: a single write, a
//! batch of new versions, an audit batch; on SQLite and on PostgreSQL. Each
//! case first shows the paths accepting the live key, then changes the key
//! row from another connection (as another process or replica would, behind
//! the store's back) and checks that every path now refuses it and writes
//! nothing, while an entry with no credential (the operator's) still goes in.

mod common;

use std::sync::Arc;

use common::Backend;
use common::store_rows::{Fixture, entry};
use latchkey::Error;
use latchkey::store::{
    KEY_CHANGED, SecretRow, Store, VersionChange, VersionRow, WriteOutcome, now_millis, postgres::PgStore, sqlite::SqliteStore,
};
use sqlx::Connection;

/// A connection of its own to the store's database.
enum Side {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl Side {
    /// Runs `sql` with the key's id as `$1`.
    async fn change_key(&mut self, sql: &str, key_id: &str) {
        let n = match self {
            Side::Sqlite(c) => sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())).bind(key_id).execute(c).await.unwrap().rows_affected(),
            Side::Postgres(c) => sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())).bind(key_id).execute(c).await.unwrap().rows_affected(),
        };
        assert_eq!(n, 1, "{sql}");
    }
}

struct Opened {
    store: Arc<dyn Store>,
    side: Side,
    _dir: tempfile::TempDir,
}

async fn open(backend: Backend) -> Opened {
    let dir = tempfile::tempdir().unwrap();
    match backend {
        Backend::Sqlite => {
            let store = Arc::new(SqliteStore::open(dir.path()).await.unwrap());
            let url = format!("sqlite://{}", dir.path().join(latchkey::store::sqlite::DB_FILE).display());
            let side = Side::Sqlite(sqlx::SqliteConnection::connect(&url).await.unwrap());
            Opened { store, side, _dir: dir }
        }
        Backend::Postgres => {
            let url = common::fresh_pg_database().await;
            let store = Arc::new(PgStore::open(&url).await.unwrap());
            let side = Side::Postgres(sqlx::PgConnection::connect(&url).await.unwrap());
            Opened { store, side, _dir: dir }
        }
    }
}

impl Fixture {
    /// A metadata change through `update_secret` (a single write).
    async fn single_write(&self, store: &dyn Store) -> latchkey::Result<WriteOutcome> {
        let audit = entry(&self.tenant, &self.key.id, "secret.update", Some(&self.credential()));
        let change = move |row: &SecretRow| {
            let mut next = row.clone();
            next.description = Some(format!("changed at {}", now_millis()));
            next.updated_at = row.updated_at + 1;
            Ok((next, None, audit.clone()))
        };
        store.update_secret(&self.tenant, &self.secret, None, &change).await
    }

    /// A new version through `add_version` (the version batch).
    async fn batch_write(&self, store: &dyn Store) -> latchkey::Result<WriteOutcome> {
        let (tenant, actor, credential) = (self.tenant.clone(), self.key.id.clone(), self.credential());
        let change: VersionChange = Arc::new(move |row: &SecretRow| {
            let version = VersionRow {
                secret_id: row.id.clone(),
                version: row.current_version + 1,
                sealed: vec![2],
                created_at: now_millis(),
                created_by: actor.clone(),
            };
            Ok((version, entry(&tenant, &actor, "secret.update", Some(&credential))))
        });
        store.add_version(&self.tenant, &self.secret, None, &self.credential(), change).await
    }

    async fn version(&self, store: &dyn Store) -> i64 {
        store.get_secret(&self.tenant, &self.secret).await.unwrap().unwrap().current_version
    }
}

fn written(outcome: latchkey::Result<WriteOutcome>, path: &str) {
    assert!(matches!(outcome, Ok(WriteOutcome::Written(_))), "{path} by a live key: {outcome:?}");
}

fn refused(outcome: latchkey::Result<WriteOutcome>, path: &str, case: &str) {
    match outcome {
        Err(Error::Conflict(m)) if m == KEY_CHANGED => {}
        other => panic!("{path} by a {case} key must be refused with KEY_CHANGED, got {other:?}"),
    }
}

/// Every path, for a key changed in one way (`sql` on its row).
async fn every_path_agrees(backend: Backend, case: &str, sql: &str) {
    let Opened { store, mut side, _dir } = open(backend).await;
    let store = store.as_ref();
    let f = Fixture::make(store, case).await;

    // Live: every path takes the key.
    written(f.single_write(store).await, "a single write");
    written(f.batch_write(store).await, "a version batch");
    written(f.batch_write(store).await, "a second version batch");
    let read = entry(&f.tenant, &f.key.id, "secret.read", Some(&f.credential()));
    let appended = store.append_audit(std::slice::from_ref(&read)).await.unwrap();
    assert!(appended.refused.is_empty(), "an audit batch by a live key");
    if backend == Backend::Sqlite {
        assert!(!appended.changed, "nothing changed the database behind the store yet");
    }
    let before = f.version(store).await;
    assert_eq!(before, 3);

    side.change_key(sql, &f.key.id).await;

    refused(f.single_write(store).await, "a single write", case);
    refused(f.batch_write(store).await, "a version batch", case);
    // A batch of jobs by the dead key and by nobody else, from scratch too.
    let (a, b) = tokio::join!(f.batch_write(store), f.batch_write(store));
    refused(a, "a concurrent version batch", case);
    refused(b, "a concurrent version batch", case);
    let audit = entry(&f.tenant, &f.key.id, "secret.deleted", Some(&f.credential()));
    let deleted = store.lifecycle().soft_delete(&f.tenant, &f.secret, latchkey::store::now_millis(), &audit).await;
    assert!(matches!(&deleted, Err(Error::Conflict(m)) if m == KEY_CHANGED), "a delete by a {case} key: {deleted:?}");
    assert_eq!(f.version(store).await, before, "nothing of a refused write is left");

    let appended = store.append_audit(std::slice::from_ref(&read)).await.unwrap();
    match backend {
        // Refused in the statement that would make the read durable.
        Backend::Postgres => assert_eq!(appended.refused, vec![0], "an audit batch by a {case} key"),
        // Not checked in SQLite's statement: the same call reports the
        // change, and the vault looks the key up again before answering.
        Backend::Sqlite => assert!(appended.changed || appended.refused == vec![0], "an audit batch by a {case} key"),
    }

    // No credential, nothing to check: the operator's change goes in.
    let operator = entry(&f.tenant, "operator", "tenant.plan", None);
    assert!(store.set_tenant_plan(&f.tenant, "pro", &operator).await.unwrap());
    store.close().await;
}

const DELETED: &str = "DELETE FROM api_keys WHERE id = $1";
const REVOKED: &str = "UPDATE api_keys SET revoked_at = 1 WHERE id = $1";
const EXPIRED: &str = "UPDATE api_keys SET expires_at = 1 WHERE id = $1";
const NARROWED: &str = "UPDATE api_keys SET permission = 'read' WHERE id = $1";
const REGENERATED: &str = "UPDATE api_keys SET key_hash = key_hash || key_hash WHERE id = $1";

#[tokio::test]
async fn sqlite_every_path_refuses_a_dead_key() {
    for (case, sql) in
        [("deleted", DELETED), ("revoked", REVOKED), ("expired", EXPIRED), ("narrowed", NARROWED), ("regenerated", REGENERATED)]
    {
        every_path_agrees(Backend::Sqlite, case, sql).await;
    }
}

#[tokio::test]
async fn postgres_every_path_refuses_a_dead_key() {
    for (case, sql) in
        [("deleted", DELETED), ("revoked", REVOKED), ("expired", EXPIRED), ("narrowed", NARROWED), ("regenerated", REGENERATED)]
    {
        every_path_agrees(Backend::Postgres, case, sql).await;
    }
}
