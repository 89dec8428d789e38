//! The single-use state of owners, below the vault, on SQLite and
//! PostgreSQL: a one-time link is spent once (also by racing callers) and
//! never once expired; a WebAuthn ceremony is taken once, only for the
//! purpose it began for, and only within its time.

mod common;

use std::sync::Arc;

use common::Backend;
use common::store_rows::{Fixture, entry};
use latchkey::store::owners::{LinkRow, OwnerRow, SessionRow};
use latchkey::store::{Store, now_millis, postgres::PgStore, sqlite::SqliteStore};

async fn open(backend: Backend) -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = match backend {
        Backend::Sqlite => Arc::new(SqliteStore::open(dir.path()).await.unwrap()),
        Backend::Postgres => Arc::new(PgStore::open(&common::fresh_pg_database().await).await.unwrap()),
    };
    (store, dir)
}

fn owner(tenant: &str) -> OwnerRow {
    OwnerRow {
        id: uuid::Uuid::new_v4().to_string(),
        tenant_id: tenant.into(),
        name: "Ann".into(),
        token_hash: uuid::Uuid::new_v4().as_bytes().to_vec(),
        created_at: now_millis(),
        created_by: "operator".into(),
        revoked_at: None,
    }
}

fn link(tenant: &str, owner_id: &str, expires_at: i64) -> LinkRow {
    LinkRow {
        hash: uuid::Uuid::new_v4().as_bytes().to_vec(),
        tenant_id: tenant.into(),
        owner_id: Some(owner_id.into()),
        purpose: "signin".into(),
        created_at: now_millis(),
        expires_at,
        used_at: None,
    }
}

fn session(o: &OwnerRow) -> SessionRow {
    SessionRow {
        id_hash: uuid::Uuid::new_v4().as_bytes().to_vec(),
        owner_id: o.id.clone(),
        tenant_id: o.tenant_id.clone(),
        csrf: "csrf".into(),
        created_at: now_millis(),
        expires_at: now_millis() + 60_000,
    }
}

async fn single_use(backend: Backend) {
    let (store, _dir) = open(backend).await;
    let f = Fixture::make(store.as_ref(), "owners").await;
    let ann = owner(&f.tenant);
    let live = link(&f.tenant, &ann.id, now_millis() + 60_000);
    store.owners().insert_owner(&ann, Some(&live), &entry(&f.tenant, "operator", "owner.created", None)).await.unwrap();

    // Twenty callers race for the link: one session comes of it.
    let tries = (0..20).map(|_| {
        let (store, hash, ann) = (store.clone(), live.hash.clone(), ann.clone());
        tokio::spawn(async move {
            let then = |_: &LinkRow| Ok((None, session(&ann), entry(&ann.tenant_id, &ann.id, "owner.signed_in", None)));
            store.owners().use_link(&hash, now_millis(), &then).await.unwrap().is_some()
        })
    });
    let won = futures::future::join_all(tries).await.into_iter().filter(|r| *r.as_ref().unwrap()).count();
    assert_eq!(won, 1);

    // An expired link is never used; a failing `then` leaves a link unspent.
    let expired = link(&f.tenant, &ann.id, now_millis() - 1);
    store.owners().insert_link(&expired, &entry(&f.tenant, "operator", "owner.link", None)).await.unwrap();
    let then = |_: &LinkRow| Ok((None, session(&ann), entry(&f.tenant, &ann.id, "owner.signed_in", None)));
    assert!(store.owners().use_link(&expired.hash, now_millis(), &then).await.unwrap().is_none());
    let fresh = link(&f.tenant, &ann.id, now_millis() + 60_000);
    store.owners().insert_link(&fresh, &entry(&f.tenant, "operator", "owner.link", None)).await.unwrap();
    let refuse = |_: &LinkRow| Err(latchkey::Error::Unauthorized("no".into()));
    assert!(store.owners().use_link(&fresh.hash, now_millis(), &refuse).await.is_err());
    assert!(store.owners().use_link(&fresh.hash, now_millis(), &then).await.unwrap().is_some(), "rolled back, so still usable");

    // Ceremonies: once, for their purpose, within their time.
    let s = session(&ann);
    store.owners().insert_session(&s, &entry(&f.tenant, &ann.id, "owner.signed_in", None)).await.unwrap();
    let owners = store.owners();
    let now = now_millis();
    assert!(owners.begin_ceremony(&s.id_hash, "state-1", "approve:a", now).await.unwrap());
    assert_eq!(owners.take_ceremony(&s.id_hash, "approve:b", now - 1).await.unwrap(), None, "another purpose");
    assert_eq!(owners.take_ceremony(&s.id_hash, "approve:a", now - 1).await.unwrap().as_deref(), Some("state-1"));
    assert_eq!(owners.take_ceremony(&s.id_hash, "approve:a", now - 1).await.unwrap(), None, "taken once");
    assert!(owners.begin_ceremony(&s.id_hash, "state-2", "policy", now - 180_000).await.unwrap());
    assert_eq!(owners.take_ceremony(&s.id_hash, "policy", now - 120_000).await.unwrap(), None, "older than its time");
    assert!(owners.find_session(&s.id_hash, now).await.unwrap().is_some());
    assert!(owners.find_session(&s.id_hash, now + 120_000).await.unwrap().is_none(), "expired");
}

#[tokio::test]
async fn links_and_ceremonies_are_single_use_on_sqlite() {
    single_use(Backend::Sqlite).await;
}

#[tokio::test]
async fn links_and_ceremonies_are_single_use_on_postgres() {
    single_use(Backend::Postgres).await;
}
