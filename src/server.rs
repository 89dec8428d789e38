//! Binds the HTTP fronts into one router and serves until shutdown.

use std::future::Future;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit};
use axum::http::header;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower_http::add_extension::AddExtension;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use crate::edge::{self, Allowed};
use crate::error::Error;
use crate::mcp;
use crate::rest::{self, AppState};
use crate::vault::Vault;

/// The whole HTTP surface; tests can drive it without a socket.
pub fn app(vault: Arc<Vault>, allowed: Allowed) -> Router {
    // Room for the largest value after JSON escaping, plus metadata.
    let body_limit = vault.config().max_value_bytes.saturating_mul(6).saturating_add(64 * 1024);
    let (routes, _) = rest::routes();
    let routes = routes.merge(crate::pages::routes());
    let mcp = mcp::http::Endpoint::new(vault.clone());
    let mcp = axum::routing::any(move |req: axum::extract::Request| mcp.clone().serve(req));
    routes
        .fallback(|| async { Error::NotFound("route") })
        .method_not_allowed_fallback(|| async { Error::MethodNotAllowed })
        .layer(axum::middleware::from_fn_with_state(vault.clone(), run_to_completion))
        .layer(axum::middleware::from_fn(rest::guard::leak_guard))
        // After the layer above: `/mcp` decides itself which calls need a task.
        .route("/mcp", mcp.clone())
        .route("/mcp/", mcp.clone())
        .route("/mcp/{*rest}", mcp)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(body_limit, read_body_first))
        // Before anything reads the request: is it addressed to this server?
        .layer(axum::middleware::from_fn_with_state(Arc::new(allowed), edge::guard))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        // Answers carry values, keys shown once and tokens: no cache between
        // the server and the client (a proxy, a browser's disk) may keep one.
        // It overrides rmcp's `no-cache` on event streams, which lets a cache
        // store what it then revalidates.
        .layer(SetResponseHeaderLayer::overriding(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store")))
        // A JSON error that echoes input must never be sniffed into HTML.
        .layer(SetResponseHeaderLayer::if_not_present(header::X_CONTENT_TYPE_OPTIONS, header::HeaderValue::from_static("nosniff")))
        // Outermost: the request's id exists before its span, and every answer is counted.
        .layer(axum::middleware::from_fn(crate::telemetry::http::observe))
        .with_state(AppState { vault })
}

/// The span of one request, as tower-http's default makes it, except that
/// it is at INFO, so warnings and errors logged while the request runs carry
/// its `request_id` (see `telemetry::http`, which sets the header before
/// this runs); that a credential in the path (a claim token,
/// `…/claim-tokens/ctk_…/claim`; a share's, `shr_…`) shows only its prefix;
/// and that the query is left out: a log must not hand out what the request
/// presented.
fn request_span<B>(req: &axum::http::Request<B>) -> tracing::Span {
    let id = req.headers().get(&crate::telemetry::http::X_REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("");
    tracing::info_span!("request", request_id = %id, method = %req.method(), path = %redact_path(req.uri().path()), version = ?req.version())
}

/// `path` with every segment that is a credential cut to its prefix.
pub fn redact_path(path: &str) -> std::borrow::Cow<'_, str> {
    const CREDENTIALS: [&str; 2] = [crate::vault::claims::CLAIM_TOKEN_PREFIX, "shr_"];
    let credential = |seg: &str| CREDENTIALS.into_iter().find(|p| seg.starts_with(p));
    if !path.split('/').any(|seg| credential(seg).is_some()) {
        return std::borrow::Cow::Borrowed(path);
    }
    let segments: Vec<String> = path.split('/').map(|seg| credential(seg).map_or_else(|| seg.to_owned(), |p| format!("{p}…"))).collect();
    std::borrow::Cow::Owned(segments.join("/"))
}

/// Reads the whole request body (up to `limit`) before routing. A handler
/// that answers without reading the body (401 before a JSON body, 404, 405)
/// would otherwise leave unread bytes on the connection, and hyper closes such
/// a connection after the response: a keep-alive client's next request then
/// meets a broken pipe. Oversized bodies answer 413 and close the connection.
async fn read_body_first(
    axum::extract::State(limit): axum::extract::State<usize>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let (parts, body) = req.into_parts();
    // A backup archive is the one body allowed past the usual limit.
    let limit = if parts.uri.path() == rest::backups::UPLOAD_PATH { limit.max(rest::backups::UPLOAD_LIMIT) } else { limit };
    let Ok(read) = tokio::time::timeout(BODY_TIME, read_at_most(body, limit)).await else {
        let why = format!("the request body did not arrive within {} s", BODY_TIME.as_secs());
        let mut resp = Error::RequestTimeout(why).into_response();
        resp.headers_mut().insert(header::CONNECTION, axum::http::HeaderValue::from_static("close"));
        return resp;
    };
    match read {
        Ok(bytes) => next.run(axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes))).await,
        Err(rest) => {
            if let Some(rest) = rest {
                discard(rest).await;
            }
            let mut resp = Error::PayloadTooLarge(format!("request bodies are limited to {limit} bytes")).into_response();
            resp.headers_mut().insert(header::CONNECTION, axum::http::HeaderValue::from_static("close"));
            resp
        }
    }
}

/// Runs every request but a plain read in a task of its own, so a client
/// that hangs up cannot cancel it half-way. hyper drops a request's future
/// when its connection closes, and a write whose `COMMIT` was already on its
/// way still lands: the steps after it (the cache dropping what the write
/// changed, above all) must run too, or this process would go on serving
/// what the write replaced. `/mcp` keeps the same rule itself
/// (`mcp::http::Endpoint::serve`): there the body, not the method, says
/// whether a call is a read.
async fn run_to_completion(
    axum::extract::State(vault): axum::extract::State<Arc<Vault>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if matches!(*req.method(), axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::OPTIONS) {
        return next.run(req).await;
    }
    match vault.requests().spawn(next.run(req)).await {
        Ok(resp) => resp,
        Err(e) => Error::internal(format_args!("request task: {e}")).into_response(),
    }
}

/// How much of an oversized body is read and dropped before its 413, and for
/// how long. Closing a socket with unread bytes makes the kernel send a reset,
/// and a client still writing its body then sees a broken pipe instead of the
/// answer; past these bounds the server stops paying for a client's upload.
const DISCARD_BYTES: u64 = 16 * 1024 * 1024;
const DISCARD_TIME: Duration = Duration::from_secs(5);

/// How long a client may take to send a request's header, and then its body.
/// Without them a client trickling bytes holds a connection, and the body
/// buffered so far, for as long as it likes: a few thousand such clients
/// exhaust the server's file handles and memory before any key is checked.
const HEADER_TIME: Duration = Duration::from_secs(10);
const BODY_TIME: Duration = Duration::from_secs(20);

/// The body if it fits in `limit`; otherwise the unread rest, unless the body
/// failed or announces more than is worth discarding.
async fn read_at_most(mut body: axum::body::Body, limit: usize) -> Result<axum::body::Bytes, Option<axum::body::Body>> {
    use http_body_util::BodyExt;
    if http_body::Body::size_hint(&body).lower() > DISCARD_BYTES {
        return Err(None);
    }
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(|_| None)?.into_data() else { continue };
        if buf.len() + data.len() > limit {
            return Err(Some(body));
        }
        buf.extend_from_slice(&data);
    }
    Ok(buf.into())
}

async fn discard(mut body: axum::body::Body) {
    use http_body_util::BodyExt;
    let drain = async {
        let mut read = 0u64;
        while let Some(Ok(frame)) = body.frame().await {
            read += frame.data_ref().map_or(0, |d| d.len() as u64);
            if read > DISCARD_BYTES {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DISCARD_TIME, drain).await;
}

/// Serves on `listener` until `shutdown` resolves, lets in-flight requests
/// finish, then closes the database.
///
/// HTTP/1.1 with Title-Case header names: SecretCarousel's Python SDK looks up
/// `Content-Type` case-sensitively, and existing clients must work unchanged.
///
/// At most `max_connections` client connections are open at once. Past that
/// the server stops accepting until one closes: the next clients wait in the
/// listen queue instead of the process running out of file handles, where
/// every client, the database's included, would fail.
pub async fn serve(
    listener: TcpListener,
    vault: Arc<Vault>,
    allowed: Allowed,
    max_connections: usize,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let store = vault.store().clone();
    let requests = vault.requests().clone();
    let sweeping = tokio_util::sync::CancellationToken::new();
    let sweeper = tokio::spawn(sweep_until(vault.clone(), sweeping.clone()));
    let rotations =
        tokio::spawn(crate::vault::rotation::scheduler::run_until(vault.clone(), vault.config().jobs_interval, sweeping.clone()));
    let retention = tokio::spawn(crate::vault::retention::run_until(vault.clone(), sweeping.clone()));
    let webhooks = tokio::spawn(crate::vault::webhooks::worker::run_until(vault.clone(), sweeping.clone()));
    let data_keys = tokio::spawn(crate::vault::data_keys::run_until(vault.clone(), sweeping.clone()));
    let router = app(vault, allowed);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections));
    let mut warned_full: Option<std::time::Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let slot = match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                if warned_full.is_none_or(|at| at.elapsed() > Duration::from_secs(60)) {
                    tracing::warn!(max_connections, "connection limit reached: new clients wait until a connection closes");
                    warned_full = Some(std::time::Instant::now());
                }
                tokio::select! {
                    slot = Arc::clone(&slots).acquire_owned() => slot.expect("the semaphore is never closed"),
                    _ = &mut shutdown => break,
                }
            }
        };
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let service = AddExtension::new(router.clone(), ConnectInfo(peer));
                let conn = hyper::server::conn::http1::Builder::new()
                    .title_case_headers(true)
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HEADER_TIME)
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "connection closed with an error");
                    }
                    drop(slot);
                });
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    sweeping.cancel();
    let _ = sweeper.await;
    let _ = rotations.await;
    let _ = retention.await;
    let _ = webhooks.await;
    let _ = data_keys.await;
    requests.close();
    let finished = async {
        graceful.shutdown().await;
        // Requests whose clients went away run on without a connection.
        requests.wait().await;
    };
    if tokio::time::timeout(Duration::from_secs(30), finished).await.is_err() {
        tracing::warn!("requests still running after 30 s; closing anyway");
    }
    store.close().await;
    Ok(())
}

/// Runs [`Vault::sweep`] every `jobs_interval` (`--jobs-interval-ms`) until `stop` is cancelled
/// (shutdown), never two at once; a sweep under way is cut short by it.
async fn sweep_until(vault: Arc<Vault>, stop: tokio_util::sync::CancellationToken) {
    let vault = &vault;
    crate::vault::jobs::every(vault.config().jobs_interval, &stop, move || async move {
        if let Err(e) = vault.sweep().await {
            tracing::warn!("sweep failed: {}", e.public_message_with_cause());
        }
    })
    .await
}

/// File handles kept back from client connections: the database's (SQLite's
/// files for nine connections, or PostgreSQL's sockets), the listener, logs.
const RESERVED_FILES: u64 = 256;

/// How many client connections `serve` keeps open at most: `requested`, or
/// what the open-file limit leaves room for. Raises the process's soft limit
/// to its hard limit first, as most servers do: the soft default (often 1024)
/// is a guard for interactive shells, not a server's budget.
pub fn connection_cap(requested: Option<u32>) -> usize {
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(e) => {
            tracing::warn!(error = %e, "could not read or raise the open-file limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
        }
    };
    let room = limit.saturating_sub(RESERVED_FILES).max(limit / 2).max(1);
    match requested {
        Some(n) if u64::from(n) > room => {
            tracing::warn!(
                requested = n,
                open_file_limit = limit,
                "--max-connections is above what the open-file limit allows; using {room}"
            );
            usize::try_from(room).unwrap_or(usize::MAX)
        }
        Some(n) => n as usize,
        None => usize::try_from(room.min(65_536)).unwrap_or(65_536),
    }
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is
/// called, not when the future is first polled: a signal that arrives between
/// the listening line and the first turn of the accept loop must not meet
/// the default action (an exit without a clean shutdown).
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let (term, int) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()));
    async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
            }
            _ => {
                tracing::warn!("could not install the SIGTERM/SIGINT handlers; stop the server with SIGKILL");
                std::future::pending::<()>().await;
            }
        }
        tracing::info!("shutting down: finishing in-flight requests");
    }
}

#[cfg(test)]
mod redaction {
    #[test]
    fn credentials_in_paths_are_cut_to_their_prefix() {
        assert_eq!(super::redact_path("/api/v1/claim-tokens/ctk_abcDEF-_123/claim"), "/api/v1/claim-tokens/ctk_…/claim");
        assert_eq!(super::redact_path("/s/shr_xyz"), "/s/shr_…");
        assert_eq!(super::redact_path("/api/v1/secrets/ctk"), "/api/v1/secrets/ctk");
    }
}
