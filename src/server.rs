//! Binds the HTTP fronts into one router and serves until shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;

use crate::error::Error;
use crate::rest::{self, AppState};
use crate::vault::Vault;

/// The whole HTTP surface; tests can drive it without a socket.
pub fn app(vault: Arc<Vault>) -> Router {
    // Room for the largest value after JSON escaping, plus metadata.
    let body_limit = vault
        .config()
        .max_value_bytes
        .saturating_mul(6)
        .saturating_add(64 * 1024);
    let (routes, _) = rest::routes();
    routes
        .fallback(|| async { Error::NotFound("route") })
        .method_not_allowed_fallback(|| async {
            Error::InvalidRequest("method not allowed on this path".into())
        })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(TraceLayer::new_for_http())
        .with_state(AppState { vault })
}

/// Serves on `listener` until `shutdown` resolves, lets in-flight requests
/// finish, then closes the database.
pub async fn serve(
    listener: TcpListener,
    vault: Arc<Vault>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let store = vault.store().clone();
    let app = app(vault).into_make_service_with_connect_info::<SocketAddr>();
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    store.close().await;
    result
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down: finishing in-flight requests");
}
