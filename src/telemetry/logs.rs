//! The process's log subscriber: lines on stderr, filtered by `LATCHKEY_LOG`,
//! as text or (`LATCHKEY_LOG_FORMAT=json`) one JSON object per line.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

impl Format {
    /// `LATCHKEY_LOG_FORMAT`: `json`, or `text` (the default; anything else
    /// is reported once the subscriber is up, and text is used).
    fn from_env() -> (Self, Option<String>) {
        match std::env::var("LATCHKEY_LOG_FORMAT").ok().as_deref().map(str::trim) {
            None | Some("" | "text") => (Format::Text, None),
            Some("json") => (Format::Json, None),
            Some(other) => (Format::Text, Some(other.chars().take(32).collect())),
        }
    }
}

/// `LATCHKEY_LOG` (default `info`), except that rmcp never logs below `error`:
/// at debug it prints whole tool calls and results, secret values included;
/// at info it writes lines for every stateless HTTP request; and at warn it
/// prints the caller's JSON-RPC id with Display (`%id` in rmcp 3.11's
/// "response error" and "rejected peer request"), so an id holding a newline
/// would forge a log line. Its error lines print only transport faults.
fn filter() -> EnvFilter {
    let filter = EnvFilter::try_from_env("LATCHKEY_LOG").unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    filter.add_directive("rmcp=error".parse().expect("a valid directive"))
}

/// Installs the subscriber. Colour codes only when stderr is a terminal and
/// `NO_COLOR` is unset: a log file or a collector must not get escapes. JSON
/// lines carry the current span's fields (the request's id, method, path).
pub fn init() {
    let (format, unknown) = Format::from_env();
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt().with_env_filter(filter()).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        Format::Text => builder.init(),
        Format::Json => builder.json().with_current_span(true).with_span_list(false).init(),
    }
    if let Some(unknown) = unknown {
        tracing::warn!(value = %unknown.escape_debug(), "LATCHKEY_LOG_FORMAT is neither text nor json; writing text");
    }
}
