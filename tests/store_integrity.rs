//! Stored data that does not read back as what was written is an integrity
//! error (`INTEGRITY_ERROR`), never a default: not the epoch for a time, not
//! an empty list for a tag list. SQLite keeps whatever a column is given, so
//! a damaged row is easy to make there, from a connection of its own.

use latchkey::Error;
use latchkey::store::{
    ApiKeyRow, AuditRow, Credential, SecretFilter, SecretRow, Store, TenantRow, VersionRow, now_millis, sqlite::SqliteStore,
};
use sqlx::Connection;

fn entry(tenant_id: &str, key: &ApiKeyRow, action: &str) -> AuditRow {
    AuditRow {
        id: 0,
        tenant_id: Some(tenant_id.to_owned()),
        at: now_millis(),
        actor: key.id.clone(),
        front: "rest".into(),
        action: action.into(),
        resource_type: "secret".into(),
        resource_id: None,
        outcome: "success".into(),
        ip: None,
        user_agent: None,
        detail: None,
        credential: Some(Credential::of(key)),
        served: None,
    }
}

#[tokio::test]
async fn damaged_rows_are_integrity_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    let now = now_millis();
    let tenant = TenantRow {
        id: "t".into(),
        email: None,
        agent: None,
        description: None,
        plan: "unlimited".into(),
        wrapped_key: vec![0; 8],
        created_at: now,
        local_only: false,
    };
    let key = ApiKeyRow {
        id: "k".into(),
        tenant_id: "t".into(),
        name: "default".into(),
        prefix: "sc_".into(),
        key_hash: vec![7; 32],
        permission: "admin".into(),
        project_scope: "[]".into(),
        expires_at: None,
        revoked_at: None,
        created_at: now,
        updated_at: now,
    };
    store.create_tenant(&tenant, &key, &entry("t", &key, "tenant.signup")).await.unwrap();
    let secret = SecretRow {
        id: "s".into(),
        tenant_id: "t".into(),
        project_id: None,
        environment: String::new(),
        name: "S".into(),
        secret_type: "custom".into(),
        description: None,
        tags: "[\"a\"]".into(),
        current_version: 1,
        created_at: now,
        updated_at: now,
    };
    let first = VersionRow { secret_id: "s".into(), version: 1, sealed: vec![1], created_at: now, created_by: "k".into() };
    store.create_secret(&secret, &first, &|_| Ok(None), &entry("t", &key, "secret.create")).await.unwrap();

    // A tag list that does not parse is not "no tags": the write is refused whole.
    let audit = entry("t", &key, "secret.update");
    let change =
        |row: &SecretRow| Ok((SecretRow { tags: "{not a list".into(), description: Some("x".into()), ..row.clone() }, None, audit.clone()));
    let outcome = store.update_secret("t", "s", None, &change).await;
    assert!(matches!(outcome, Err(Error::Integrity)), "{outcome:?}");
    assert_eq!(store.get_secret("t", "s").await.unwrap().unwrap().description, None, "nothing of it was written");

    // A time that is not a time is not the epoch.
    let url = format!("sqlite://{}", dir.path().join(latchkey::store::sqlite::DB_FILE).display());
    let mut side = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("UPDATE secrets SET updated_at = 'yesterday' WHERE id = 's'").execute(&mut side).await.unwrap();
    assert!(matches!(store.get_secret("t", "s").await, Err(Error::Integrity)));
    assert!(matches!(store.read_secret("t", "s", None).await, Err(Error::Integrity)));
    let all = SecretFilter { limit: 10, ..Default::default() };
    assert!(matches!(store.list_secrets("t", &all).await, Err(Error::Integrity)));
    // The rest of the store still answers.
    assert_eq!(store.count_secrets("t").await.unwrap(), 1);
    store.close().await;
}
