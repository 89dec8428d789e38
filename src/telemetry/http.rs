//! The outermost layer of the public router: an id for every request, and
//! its count and latency by route template.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::Response;

use super::{enabled, names};

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest incoming id kept; a longer one is replaced.
const MAX_ID_LEN: usize = 128;

/// Error bodies larger than this are passed on without a `requestId`.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// An incoming `x-request-id` is kept when it is 1..=128 characters of
/// `[A-Za-z0-9._:-]` (what proxies and tracing systems send: uuids, hex,
/// ULIDs); anything else could forge log lines or carry a credential, and is
/// replaced by a fresh uuid v4.
pub fn valid_id(raw: &[u8]) -> bool {
    (1..=MAX_ID_LEN).contains(&raw.len()) && raw.iter().all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

fn request_id(req: &Request) -> HeaderValue {
    match req.headers().get(&X_REQUEST_ID) {
        Some(v) if valid_id(v.as_bytes()) => v.clone(),
        // A uuid v4 from the thread's CSPRNG: `Uuid::new_v4` asks the kernel
        // for every one, a system call on every request.
        _ => {
            let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
            let id = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
            HeaderValue::from_bytes(id.hyphenated().encode_lower(&mut text).as_bytes()).expect("a uuid is a valid header value")
        }
    }
}

/// Sets the request's id (the caller's when valid, else a new one) on the
/// request, where the trace span reads it (`server::request_span`), and on
/// the response; adds it to JSON error bodies as `requestId`; counts the
/// request when metrics are on.
pub async fn observe(mut req: Request, next: Next) -> Response {
    let id = request_id(&req);
    req.headers_mut().insert(X_REQUEST_ID.clone(), id.clone());
    let timing = enabled().then(|| {
        let route = req.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
        (Instant::now(), method_label(req.method()), route)
    });
    let mut resp = next.run(req).await;
    if let Some((started, method, route)) = timing {
        let took = started.elapsed().as_secs_f64();
        let status = resp.status().as_u16().to_string();
        metrics::histogram!(names::HTTP_DURATION, "route" => route.clone()).record(took);
        metrics::counter!(names::HTTP_REQUESTS, "route" => route, "method" => method, "status" => status).increment(1);
    }
    if resp.status().is_client_error() || resp.status().is_server_error() {
        resp = with_request_id(resp, &id).await;
    }
    resp.headers_mut().insert(X_REQUEST_ID.clone(), id);
    resp
}

/// A fixed label per method, so a made-up method cannot make a series.
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// A JSON error body (`{"error", "message", "code", …}`) with `requestId`
/// added, so a client's bug report names the log lines. Other answers
/// (pages, event streams, large bodies) pass unchanged.
async fn with_request_id(resp: Response, id: &HeaderValue) -> Response {
    use http_body_util::BodyExt;
    let json = resp.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let small = http_body::Body::size_hint(resp.body()).upper().is_some_and(|n| n as usize <= MAX_ERROR_BODY);
    let (Ok(id), true, true) = (id.to_str(), json, small) else { return resp };
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = body.collect().await.map(|b| b.to_bytes()) else {
        return Response::from_parts(parts, axum::body::Body::empty());
    };
    let bytes = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(serde_json::Value::Object(mut obj)) if obj.contains_key("code") => {
            obj.insert("requestId".into(), id.into());
            parts.headers.remove(header::CONTENT_LENGTH);
            serde_json::to_vec(&obj).map_or(bytes, Into::into)
        }
        _ => bytes,
    };
    Response::from_parts(parts, axum::body::Body::from(bytes))
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_short_plain_ids_are_kept() {
        assert!(super::valid_id(b"0b6f6f1c-6c3e-4d7a-9a51-3b3f7f0e2a11"));
        assert!(super::valid_id(b"abc.DEF_1:2"));
        assert!(!super::valid_id(b""));
        assert!(!super::valid_id(b"a b"));
        assert!(!super::valid_id(b"line\nforged"));
        assert!(!super::valid_id("é".as_bytes()));
        assert!(!super::valid_id(&[b'a'; 129]));
    }
}
