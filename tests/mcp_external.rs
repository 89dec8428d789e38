//! MCP clients nobody here wrote: the official Python MCP SDK (stdio and
//! streamable HTTP) and the MCP conformance suite's server scenarios.

mod common;

use std::process::Command;

use common::{Backend, Server, python};

fn run(cmd: &mut Command, what: &str, server_log: impl Fn() -> String) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{what} failed:\n{stdout}\n{stderr}\nserver log:\n{}", server_log());
    stdout
}

fn summary_ok(stdout: &str, at_least: u32) {
    let last = stdout.lines().last().unwrap_or_default();
    assert!(last.ends_with(" passed, 0 failed"), "unexpected summary: {last}");
    let n: u32 = last.split_whitespace().next().unwrap().parse().unwrap();
    assert!(n >= at_least, "only {n} checks ran");
}

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/mcp/python_mcp_client.py");

#[tokio::test]
async fn python_mcp_sdk_over_streamable_http() {
    let srv = Server::start(Backend::Sqlite).await;
    let base = srv.base.clone();
    let stdout = tokio::task::spawn_blocking(move || {
        run(Command::new(python()).arg(SCRIPT).arg("http").arg(base), "python MCP client (http)", String::new)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\nserver log:\n{}", srv.stderr()));
    summary_ok(&stdout, 20);
}

#[tokio::test]
async fn python_mcp_sdk_over_stdio() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let stdout = tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(python());
        cmd.arg(SCRIPT).arg("stdio").arg(common::bin()).arg(&path);
        cmd.env("LATCHKEY_MASTER_KEY", common::TEST_MASTER_KEY).env_remove("DATABASE_URL").env_remove("LATCHKEY_API_KEY");
        run(&mut cmd, "python MCP client (stdio)", String::new)
    })
    .await
    .unwrap();
    summary_ok(&stdout, 20);
}

#[tokio::test]
async fn conformance_server_scenarios() {
    let srv = Server::start(Backend::Sqlite).await;
    let url = srv.url("/mcp");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/mcp/conformance/run");
    let stdout =
        tokio::task::spawn_blocking(move || run(Command::new("bash").arg(script).arg(url), "MCP conformance", String::new)).await.unwrap();
    assert!(stdout.contains("passed"), "{stdout}");
}
