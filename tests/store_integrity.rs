//! Stored data that does not read back as what was written is an integrity
//! error (`INTEGRITY_ERROR`), never a default: not the epoch for a time, not
//! an empty list for a tag list. SQLite keeps whatever a column is given, so
//! a damaged row is easy to make there, from a connection of its own.

mod common;

use common::store_rows::{Fixture, entry};
use latchkey::Error;
use latchkey::store::{SecretFilter, SecretRow, Store, sqlite::SqliteStore};
use sqlx::Connection;

#[tokio::test]
async fn damaged_rows_are_integrity_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    let f = Fixture::make(&store, "damaged").await;
    let (t, s) = (f.tenant.as_str(), f.secret.as_str());

    // A tag list that does not parse is not "no tags": the write is refused whole.
    let audit = entry(t, &f.key.id, "secret.update", Some(&f.credential()));
    let change =
        |row: &SecretRow| Ok((SecretRow { tags: "{not a list".into(), description: Some("x".into()), ..row.clone() }, None, audit.clone()));
    let outcome = store.update_secret(t, s, None, &change).await;
    assert!(matches!(outcome, Err(Error::Integrity)), "{outcome:?}");
    assert_eq!(store.get_secret(t, s).await.unwrap().unwrap().description, None, "nothing of it was written");

    // A time that is not a time is not the epoch.
    let url = format!("sqlite://{}", dir.path().join(latchkey::store::sqlite::DB_FILE).display());
    let mut side = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("UPDATE secrets SET updated_at = 'yesterday' WHERE id = $1").bind(s).execute(&mut side).await.unwrap();
    assert!(matches!(store.get_secret(t, s).await, Err(Error::Integrity)));
    assert!(matches!(store.read_secret(t, s, None).await, Err(Error::Integrity)));
    let all = SecretFilter { limit: 10, ..Default::default() };
    assert!(matches!(store.list_secrets(t, &all).await, Err(Error::Integrity)));
    // The rest of the store still answers.
    assert_eq!(store.count_secrets(t).await.unwrap(), 1);
    store.close().await;
}
