//! Latchkey: a self-hosted, agent-native secret vault.
//!
//! # Layout
//!
//! ```text
//!  MCP clients (stdio / streamable HTTP)        REST clients, SDKs
//!               │           edge (Host/Origin, credential)   │
//!          mcp/ (rmcp tools, resources)        rest/ (axum routes, docs, OpenAPI)
//!               └──────────────┬─────────────────────┘
//!                              │ Principal + typed request
//!                       vault/ (domain services: callers, tenants, keys,
//!                              │  tokens, secrets, projects, audit, plans, approvals)
//!                    ┌─────────┴─────────┐
//!                 crypto/             store/ (sqlx: SQLite | PostgreSQL)
//! ```
//!
//! - [`config`]: command-line and environment settings, and opening a vault from them.
//! - [`server`]: binds the HTTP fronts and serves until shutdown.
//! - [`error`]: the one error type with stable codes.
//! - [`docs`]: the documents for agents that every front serves.
//! - [`pages`]: the pages for people (`/approvals`): owners sign in and decide.
//! - [`redact`]: replacing secret values (and their encoded forms) in output, also as a stream.
//! - [`run`]: `latchkey run`, a command with secrets in its environment and its output redacted.
//! - [`dump`]: `latchkey backup create | restore FILE`, the operator's backup of the whole server.
//! - [`envcli`]: `latchkey env pull | push | promote`, an environment as a `.env` file.
//! - [`edge`]: what every HTTP front checks and reads first: `Host`/`Origin`,
//!   the client's address, the credential.
//! - [`outbound`]: the one guarded HTTP client for requests Latchkey makes
//!   itself (the secret proxy): timeouts, a response cap, same-origin
//!   redirects, private destinations refused after resolution.
//! - [`telemetry`]: Prometheus metrics on their own listener, structured
//!   logs, request ids.

pub mod config;
pub mod crypto;
pub mod docs;
pub mod dotenv;
pub mod dump;
pub mod edge;
pub mod envcli;
pub mod error;
pub mod mcp;
pub mod outbound;
pub mod pages;
pub mod redact;
pub mod rest;
pub mod run;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod vault;

pub use error::{Error, Result};
pub use vault::Vault;
