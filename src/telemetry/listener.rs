//! The metrics listener (`--metrics-listen ADDR`): a second HTTP listener
//! that serves only `GET /metrics`, so the public one never shows it and an
//! operator can bind it where only the scraper reaches.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;

use crate::edge::{self, Allowed};
use crate::error::Error;
use crate::vault::Vault;

/// `GET /metrics`; anything else 404 (405 for another method). The Host
/// check of the public listener applies, so a DNS-rebinding page cannot read it.
pub fn router(vault: Arc<Vault>, allowed: Allowed) -> Router {
    Router::new()
        .route("/metrics", axum::routing::get(scrape))
        .fallback(|| async { Error::NotFound("route") })
        .method_not_allowed_fallback(|| async { Error::MethodNotAllowed })
        .layer(axum::middleware::from_fn_with_state(Arc::new(allowed), edge::guard))
        .with_state(vault)
}

async fn scrape(State(vault): State<Arc<Vault>>) -> Response {
    match super::render(&vault).await {
        Ok(text) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.public_message()).into_response(),
    }
}

/// Installs the recorder and serves `/metrics` on `listener` until `stop` is
/// cancelled.
pub async fn serve(listener: TcpListener, vault: Arc<Vault>, stop: tokio_util::sync::CancellationToken) -> std::io::Result<()> {
    super::install().map_err(std::io::Error::other)?;
    let addr = listener.local_addr()?;
    let allowed = Allowed::new(None, &[], Some(addr)).map_err(std::io::Error::other)?;
    let app = router(vault, allowed).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app).with_graceful_shutdown(async move { stop.cancelled().await }).await
}
