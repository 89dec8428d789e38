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
    // Pinned, not just "passed": a scenario that silently stops running (or
    // stops checking anything) must fail here. The CLI version is pinned by
    // tools/mcp/conformance/package-lock.json; when it changes, so do these.
    const SCENARIOS: usize = 32;
    let listed = conformance_expected_failures();
    assert_eq!(listed.len(), 26, "expected-failures.txt changed: update this test with it: {listed:?}");
    let expected_pass = SCENARIOS - listed.len();
    let totals = format!(
        "{SCENARIOS} scenarios; {} expected failures (expected-failures.txt); 0 listed but passing; {expected_pass} expected to pass",
        listed.len()
    );
    assert!(stdout.lines().any(|l| l.ends_with(&totals)), "want a line ending `{totals}`:\n{stdout}");
    assert_eq!(stdout.lines().last(), Some(format!("{expected_pass} passed, 0 failed").as_str()), "{stdout}");
    assert_eq!(stdout.lines().filter(|l| l.starts_with("ok ")).count(), expected_pass, "{stdout}");
}

/// Scenario names listed in tools/mcp/conformance/expected-failures.txt.
fn conformance_expected_failures() -> Vec<String> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tools/mcp/conformance/expected-failures.txt")).unwrap();
    text.lines().map(|l| l.split('#').next().unwrap().trim().to_owned()).filter(|n| !n.is_empty()).collect()
}
