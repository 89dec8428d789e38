//! The leak guard of REST (and of the pages): every answer of a request that
//! opened a value its caller may not see (a masked read, a use, a proxied
//! call, a check) passes one redactor holding those values, so none of them
//! can leave in an error message or an echoed upstream body.

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::Error;
use crate::redact::Touched;

/// Largest answer the guard buffers to redact; a larger one (none that opens
/// a value is: a proxied body is capped far below) is refused rather than
/// passed unread.
const MOST_GUARDED_BYTES: usize = 16 * 1024 * 1024;

/// Hands the request a fresh touched set (the `Auth` extractor gives it to the
/// principal), and redacts the answer when anything was put in it.
pub async fn leak_guard(mut req: Request, next: Next) -> Response {
    // Only the API opens values; the documents, pages and `/healthz` pass.
    if !req.uri().path().starts_with("/api/v1/") {
        return next.run(req).await;
    }
    let touched = Touched::default();
    req.extensions_mut().insert(touched.clone());
    let resp = next.run(req).await;
    if touched.is_empty() {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let bytes = match axum::body::to_bytes(body, MOST_GUARDED_BYTES).await {
        Ok(bytes) => bytes,
        Err(e) => return Error::internal(format_args!("answer too large to guard: {e}")).into_response(),
    };
    let redactor = touched.redactor();
    let clean = redactor.redact_bytes(&bytes).into_owned();
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    for value in parts.headers.values_mut() {
        if redactor.finds(value.as_bytes())
            && let Ok(v) = axum::http::HeaderValue::from_bytes(&redactor.redact_bytes(value.as_bytes()))
        {
            *value = v;
        }
    }
    Response::from_parts(parts, Body::from(clean))
}
