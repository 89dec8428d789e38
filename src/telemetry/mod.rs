//! What an operator watches a running server by: Prometheus metrics on a
//! listener of their own (`--metrics-listen`), structured logs, and an id per
//! request.
//!
//! - [`logs`]: the subscriber (`LATCHKEY_LOG_FORMAT`, colour only on a terminal).
//! - [`http`]: the layer that gives every request its `x-request-id` and
//!   counts it by route template, method and status.
//! - [`listener`]: the second listener, which serves only `GET /metrics`.
//!
//! Metrics are off unless `--metrics-listen` installs the recorder: until
//! then every recording site is one atomic load and a branch. Labels are
//! route templates, tool names and fixed words, never a raw path (share and
//! claim tokens live in paths), a secret's name or a value.

pub mod http;
pub mod listener;
pub mod logs;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::error::{Error, Result};

/// Series names, in one place so the docs and the tests can name them.
pub mod names {
    pub const HTTP_REQUESTS: &str = "latchkey_http_requests_total";
    pub const HTTP_DURATION: &str = "latchkey_http_request_duration_seconds";
    pub const MCP_TOOL_CALLS: &str = "latchkey_mcp_tool_calls_total";
    pub const AUDIT_BATCH_SIZE: &str = "latchkey_audit_batch_entries";
    pub const AUDIT_BATCH_SECONDS: &str = "latchkey_audit_batch_commit_seconds";
    pub const CACHE_LOOKUPS: &str = "latchkey_cache_lookups_total";
    pub const POOL_CONNECTIONS: &str = "latchkey_db_pool_connections";
    pub const AUDIT_ROWS: &str = "latchkey_audit_trail_rows";
    pub const AUDIT_BYTES: &str = "latchkey_audit_trail_bytes";
    pub const DATABASE_BYTES: &str = "latchkey_database_bytes";
    pub const AUDIT_PRUNED: &str = "latchkey_audit_pruned_entries_total";
    pub const AUDIT_ARCHIVED: &str = "latchkey_audit_archived_entries_total";
    pub const AUDIT_PRUNE_RUNS: &str = "latchkey_audit_prune_runs_total";
    pub const WEBHOOK_QUEUE: &str = "latchkey_webhook_queue_depth";
}

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Whether metrics are being recorded (the recorder is installed).
#[inline]
pub fn enabled() -> bool {
    HANDLE.get().is_some()
}

/// Installs the process's Prometheus recorder (once; later calls answer the
/// same handle) and starts its upkeep, which keeps histogram buckets from
/// growing while nobody scrapes. Needs a Tokio runtime.
pub fn install() -> Result<PrometheusHandle> {
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    // Seconds for durations, from a fast cached read to a slow write; entries for batch sizes.
    let seconds = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
    let entries = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];
    let builder = PrometheusBuilder::new()
        .set_buckets(&seconds)
        .and_then(|b| b.set_buckets_for_metric(metrics_exporter_prometheus::Matcher::Full(names::AUDIT_BATCH_SIZE.into()), &entries))
        .map_err(Error::internal)?;
    let recorder = builder.build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(Error::internal)?;
    describe();
    let _ = HANDLE.set(handle.clone());
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(names::HTTP_REQUESTS, "HTTP requests by route template, method and status");
    describe_histogram!(names::HTTP_DURATION, metrics::Unit::Seconds, "HTTP request latency by route template");
    describe_counter!(names::MCP_TOOL_CALLS, "MCP tool calls by tool and outcome (success, error, protocol_error)");
    describe_histogram!(names::AUDIT_BATCH_SIZE, "Entries per audit group commit");
    describe_histogram!(names::AUDIT_BATCH_SECONDS, metrics::Unit::Seconds, "Time to write and commit one audit group commit");
    describe_counter!(names::CACHE_LOOKUPS, "Lookups in the key and secret cache by cache and result (hit, miss)");
    describe_gauge!(names::POOL_CONNECTIONS, "Database read pool connections by state (open, idle, in_use), sampled at scrape");
    describe_gauge!(names::AUDIT_ROWS, "Audit entries stored (estimate: max(id) - min(id) + 1), sampled at scrape");
    describe_gauge!(names::AUDIT_BYTES, "Bytes of the audit table and its indexes (PostgreSQL), sampled at scrape");
    describe_gauge!(names::DATABASE_BYTES, "Bytes of the database file in use (SQLite: page_count x page_size), sampled at scrape");
    describe_counter!(names::AUDIT_PRUNED, "Audit entries deleted by retention");
    describe_counter!(names::AUDIT_ARCHIVED, "Audit entries written to the archive dir before their deletion");
    describe_counter!(names::AUDIT_PRUNE_RUNS, "Retention runs by result (done, skipped: another replica held the lock, failed)");
}

/// Counts of the store's cache (see `store::cached`): plain atomics, counted
/// whether or not metrics are on, published at scrape.
pub struct CacheCounters {
    pub key_hits: AtomicU64,
    pub key_misses: AtomicU64,
    pub secret_hits: AtomicU64,
    pub secret_misses: AtomicU64,
}

pub static CACHE: CacheCounters = CacheCounters {
    key_hits: AtomicU64::new(0),
    key_misses: AtomicU64::new(0),
    secret_hits: AtomicU64::new(0),
    secret_misses: AtomicU64::new(0),
};

impl CacheCounters {
    #[inline]
    pub fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn publish(&self) {
        for (cache, result, n) in [
            ("keys", "hit", &self.key_hits),
            ("keys", "miss", &self.key_misses),
            ("secrets", "hit", &self.secret_hits),
            ("secrets", "miss", &self.secret_misses),
        ] {
            metrics::counter!(names::CACHE_LOOKUPS, "cache" => cache, "result" => result).absolute(n.load(Ordering::Relaxed));
        }
    }
}

/// One audit group commit (`Store::append_audit`): its size and how long it took.
#[inline]
pub fn audit_batch(entries: usize, took: Duration) {
    if enabled() {
        metrics::histogram!(names::AUDIT_BATCH_SIZE).record(entries as f64);
        metrics::histogram!(names::AUDIT_BATCH_SECONDS).record(took.as_secs_f64());
    }
}

/// One MCP tool call. `tool` must be a name the router knows (a caller's
/// unknown name is counted as `unknown`, so callers cannot make series).
pub fn mcp_call(tool: &str, known: bool, outcome: &'static str) {
    if enabled() {
        let tool = if known { tool.to_owned() } else { "unknown".to_owned() };
        metrics::counter!(names::MCP_TOOL_CALLS, "tool" => tool, "outcome" => outcome).increment(1);
    }
}

/// The text `GET /metrics` answers: the gauges sampled now (see
/// [`crate::Vault::metrics_sample`]), then everything recorded.
pub async fn render(vault: &crate::Vault) -> Result<String> {
    let handle = HANDLE.get().ok_or_else(|| Error::internal("metrics are not installed"))?;
    CACHE.publish();
    vault.metrics_sample().await?;
    Ok(handle.render())
}

/// The outcome label of an MCP tool call's answer.
pub fn outcome_of<E>(response: &std::result::Result<rmcp::model::CallToolResponse, E>) -> &'static str {
    match response {
        Ok(rmcp::model::CallToolResponse::Complete(r)) if r.is_error == Some(true) => "error",
        Ok(_) => "success",
        Err(_) => "protocol_error",
    }
}
