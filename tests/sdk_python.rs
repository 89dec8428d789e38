//! SecretCarousel's published Python SDK, unchanged, against the real server:
//! existing clients work by changing their base URL.

mod common;

use common::{Backend, Server, python};

async fn python_sdk_story(backend: Backend) {
    let srv = Server::start(backend).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/sdk/python_sdk_story.py");
    let base = srv.base.clone();
    let out = tokio::task::spawn_blocking(move || std::process::Command::new(python()).arg(script).arg(base).output().expect("run python"))
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "SDK story failed:\n{stdout}\n{stderr}\nserver log:\n{}", srv.stderr());
    let summary = stdout.lines().last().unwrap_or_default();
    assert!(summary.ends_with(" passed, 0 failed"), "unexpected summary: {summary}");
    assert!(summary.split_whitespace().next().unwrap().parse::<u32>().unwrap() >= 20, "{summary}");
}

#[tokio::test]
async fn python_sdk_on_sqlite() {
    python_sdk_story(Backend::Sqlite).await;
}

#[tokio::test]
async fn python_sdk_on_postgres() {
    python_sdk_story(Backend::Postgres).await;
}
