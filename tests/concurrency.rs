//! Concurrent writers: check-and-set admits exactly one winner, racing creates
//! make exactly one secret, and contention never reaches a client as a 5xx.

mod common;

use common::{Backend, Server, unique};
use serde_json::json;

async fn check_and_set(backend: Backend) {
    let srv = std::sync::Arc::new(Server::start(backend).await);
    let key = srv.signup(&unique("cas")).await;
    let (_, created) = srv.post("/api/v1/secrets", &key, json!({ "name": "COUNTER", "value": "v1" })).await;
    let id = created["id"].as_str().unwrap().to_owned();

    // 64 updates that all believe the secret is at version 1.
    let mut tasks = Vec::new();
    for i in 0..64 {
        let (srv, key, id) = (srv.clone(), key.clone(), id.clone());
        tasks.push(tokio::spawn(async move {
            srv.put(&format!("/api/v1/secrets/{id}"), &key, json!({ "value": format!("writer-{i}"), "expectedVersion": 1 })).await
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap().0);
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 409).count(), 63, "{statuses:?}");
    let (_, got) = srv.get(&format!("/api/v1/secrets/{id}"), &key).await;
    assert_eq!(got["version"], 2);
    assert!(got["value"].as_str().unwrap().starts_with("writer-"));

    // Unconditional updates all land, each as its own version.
    let mut tasks = Vec::new();
    for i in 0..32 {
        let (srv, key, id) = (srv.clone(), key.clone(), id.clone());
        tasks.push(tokio::spawn(
            async move { srv.put(&format!("/api/v1/secrets/{id}"), &key, json!({ "value": format!("u-{i}") })).await.0 },
        ));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let (_, versions) = srv.get(&format!("/api/v1/secrets/{id}/versions"), &key).await;
    assert_eq!(versions["currentVersion"], 34);
    assert_eq!(versions["versions"].as_array().unwrap().len(), 34);

    // 32 racing creates of one name: one secret, the rest 409.
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (srv, key) = (srv.clone(), key.clone());
        tasks.push(tokio::spawn(async move { srv.post("/api/v1/secrets", &key, json!({ "name": "RACE", "value": "x" })).await.0 }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 201 || *s == 409), "{statuses:?}");
}

#[tokio::test]
async fn check_and_set_on_sqlite() {
    check_and_set(Backend::Sqlite).await;
}

#[tokio::test]
async fn check_and_set_on_postgres() {
    check_and_set(Backend::Postgres).await;
}
