//! The one guarded HTTP client for every request Latchkey makes itself (the
//! secret proxy; webhooks later), so each gets the same limits:
//!
//! - `http` and `https` only; TLS by rustls with the webpki roots; no proxy
//!   from the environment (a proxy would resolve names itself);
//! - connect timeout [`CONNECT_TIMEOUT`], and one deadline for the whole
//!   exchange, redirects and body included ([`TOTAL_TIMEOUT`] at most);
//! - the body read as a stream up to [`RESPONSE_CAP`], then cut (`truncated`);
//! - redirects followed only within the same origin (scheme, host, port), at
//!   most [`MAX_REDIRECTS`], and only where the caller's `follow` agrees; any
//!   other 3xx is answered as it came, never followed, so a credential sent to
//!   one origin never reaches another;
//! - private, loopback, link-local, unique-local, CGNAT, multicast,
//!   unspecified and documentation addresses (and IPv4-in-IPv6 forms of them)
//!   refused after resolution, the connection pinned to the checked address
//!   ([`resolve`]), unless the operator passed `--allow-private-destinations`.
//!
//! Failures are the vault's errors: 403 `DESTINATION_REFUSED`, 502
//! `UPSTREAM_FAILED`. Their messages name the origin at most, never a path
//! or a query (which may carry an injected credential).

mod address;
mod resolve;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub use address::refused;
pub use reqwest::header::HeaderMap;
pub use reqwest::{Method, Url};

use crate::error::{Error, Result};

/// How long establishing a connection (TCP and TLS) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a whole exchange may take, redirects and body included.
pub const TOTAL_TIMEOUT: Duration = Duration::from_secs(30);
/// The most of a response body that is read; the rest is dropped.
pub const RESPONSE_CAP: usize = 1024 * 1024;
/// The most same-origin redirects followed in one exchange.
pub const MAX_REDIRECTS: usize = 5;

/// One request to send.
#[derive(Debug)]
pub struct Request {
    pub method: Method,
    pub url: Url,
    pub headers: HeaderMap,
    pub body: Option<Vec<u8>>,
    /// The deadline of the whole exchange (capped at [`TOTAL_TIMEOUT`]).
    pub timeout: Duration,
}

/// What came back from the last hop.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    /// At most [`RESPONSE_CAP`] bytes.
    pub body: Vec<u8>,
    /// The body was longer than [`RESPONSE_CAP`] and was cut there.
    pub truncated: bool,
    /// The URL that answered (after the redirects followed).
    pub url: Url,
    /// How many redirects were followed.
    pub redirects: usize,
}

/// The guarded client. Cheap to clone; [`Outbound::shared`] gives one per policy.
#[derive(Clone)]
pub struct Outbound {
    client: reqwest::Client,
    allow_private: bool,
}

impl Outbound {
    pub fn new(allow_private: bool) -> Result<Self> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(TOTAL_TIMEOUT)
            .dns_resolver(Arc::new(resolve::Guarded { allow_private }))
            .user_agent(concat!("latchkey/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::internal(format_args!("building the outbound client: {e}")))?;
        Ok(Outbound { client, allow_private })
    }

    /// The process's client for this policy, built once (its connection
    /// pool is shared by every request).
    pub fn shared(allow_private: bool) -> Result<Outbound> {
        static STRICT: OnceLock<Outbound> = OnceLock::new();
        static OPEN: OnceLock<Outbound> = OnceLock::new();
        let slot = if allow_private { &OPEN } else { &STRICT };
        if let Some(c) = slot.get() {
            return Ok(c.clone());
        }
        let built = Outbound::new(allow_private)?;
        Ok(slot.get_or_init(|| built).clone())
    }

    /// Whether `url` may be asked at all: its scheme, and its host when that
    /// is an IP address (names are checked once resolved).
    pub fn check_url(&self, url: &Url) -> Result<()> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Error::InvalidRequest(format!("only http and https URLs can be requested, not {}:", url.scheme())));
        }
        let Some(host) = url.host_str().filter(|h| !h.is_empty()) else {
            return Err(Error::InvalidRequest("the URL has no host".into()));
        };
        let literal = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        if let Ok(ip) = literal.parse::<std::net::IpAddr>()
            && !self.allow_private
            && let Some(why) = refused(ip)
        {
            return Err(refusal(&format!("{ip} is a {why} address")));
        }
        Ok(())
    }

    /// Sends `req`, following same-origin redirects that `follow` accepts
    /// (it sees the method and URL of the next hop), and reads the body up to the cap.
    pub async fn send(&self, req: Request, follow: impl Fn(&Method, &Url) -> bool) -> Result<Response> {
        let limit = req.timeout.min(TOTAL_TIMEOUT);
        match tokio::time::timeout(limit, self.exchange(req, follow)).await {
            Ok(answer) => answer,
            Err(_) => Err(Error::UpstreamFailed(format!("the upstream did not answer within {} s", limit.as_secs_f64()))),
        }
    }

    async fn exchange(&self, mut req: Request, follow: impl Fn(&Method, &Url) -> bool) -> Result<Response> {
        let mut redirects = 0;
        loop {
            self.check_url(&req.url)?;
            let mut out = self.client.request(req.method.clone(), req.url.clone()).headers(req.headers.clone());
            if let Some(body) = &req.body {
                out = out.body(body.clone());
            }
            let mut resp = out.send().await.map_err(|e| failure(e, &req.url))?;
            let status = resp.status().as_u16();
            if redirects < MAX_REDIRECTS
                && let Some(next) = redirect_target(status, resp.headers(), &req.url)
            {
                let method = redirected_method(status, &req.method);
                if follow(&method, &next) {
                    if method != req.method {
                        // A 303 (or a POST's 301/302) turns into a GET without a body.
                        req.body = None;
                        req.headers.remove(reqwest::header::CONTENT_TYPE);
                        req.headers.remove(reqwest::header::CONTENT_LENGTH);
                    }
                    (req.method, req.url) = (method, next);
                    redirects += 1;
                    continue;
                }
            }
            let headers = std::mem::take(resp.headers_mut());
            let mut body = Vec::new();
            let mut truncated = false;
            while let Some(chunk) = resp.chunk().await.map_err(|e| failure(e, &req.url))? {
                let room = RESPONSE_CAP - body.len();
                if chunk.len() > room {
                    body.extend_from_slice(&chunk[..room]);
                    truncated = true;
                    break;
                }
                body.extend_from_slice(&chunk);
            }
            return Ok(Response { status, headers, body, truncated, url: req.url, redirects });
        }
    }
}

/// Where a redirect points, when it is one that may be followed: a 301,
/// 302, 303, 307 or 308 whose `Location` is a URL of the same origin.
fn redirect_target(status: u16, headers: &HeaderMap, from: &Url) -> Option<Url> {
    if !matches!(status, 301 | 302 | 303 | 307 | 308) {
        return None;
    }
    let location = headers.get(reqwest::header::LOCATION)?.to_str().ok()?;
    let next = from.join(location).ok()?;
    (next.origin() == from.origin()).then_some(next)
}

/// The method of the next hop, as browsers do it: 303 asks with GET (HEAD
/// stays HEAD), so does a POST answered 301 or 302; 307 and 308 keep it.
fn redirected_method(status: u16, method: &Method) -> Method {
    match status {
        303 if *method != Method::HEAD => Method::GET,
        301 | 302 if *method == Method::POST => Method::GET,
        _ => method.clone(),
    }
}

fn refusal(what: &str) -> Error {
    Error::DestinationRefused(format!(
        "{what}: requests to private, loopback and link-local destinations are refused unless the operator \
         starts Latchkey with --allow-private-destinations"
    ))
}

fn origin_of(url: &Url) -> String {
    url.origin().ascii_serialization()
}

/// A failed exchange as the vault's error: the resolver's refusal stays a
/// refusal; anything else is the upstream's failure, described by its
/// innermost cause and the origin only.
fn failure(e: reqwest::Error, url: &Url) -> Error {
    let e = e.without_url();
    let mut cause: &dyn std::error::Error = &e;
    let mut innermost = e.to_string();
    while let Some(next) = cause.source() {
        if let Some(r) = next.downcast_ref::<resolve::Refusal>() {
            return refusal(&r.to_string());
        }
        if let Some(u) = next.downcast_ref::<resolve::Unresolved>() {
            return Error::UpstreamFailed(u.to_string());
        }
        innermost = next.to_string();
        cause = next;
    }
    let origin = origin_of(url);
    Error::UpstreamFailed(if e.is_timeout() {
        format!("{origin} did not answer in time")
    } else if e.is_connect() {
        format!("could not connect to {origin}: {innermost}")
    } else {
        format!("the exchange with {origin} failed: {innermost}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn only_same_origin_redirects_are_followable() {
        let from = url("https://api.example.com/v1/a");
        let mut h = HeaderMap::new();
        let mut to = |loc: &str, status: u16| {
            h.insert(reqwest::header::LOCATION, loc.parse().unwrap());
            redirect_target(status, &h, &from).map(|u| u.to_string())
        };
        assert_eq!(to("/v1/b?x=1", 302).as_deref(), Some("https://api.example.com/v1/b?x=1"));
        assert_eq!(to("https://api.example.com:443/v1/c", 307).as_deref(), Some("https://api.example.com/v1/c"));
        assert_eq!(to("http://api.example.com/v1/b", 301), None, "another scheme");
        assert_eq!(to("https://api.example.com:8443/v1/b", 301), None, "another port");
        assert_eq!(to("https://evil.example.com/v1/b", 308), None, "another host");
        assert_eq!(to("//evil.example.com/", 302), None, "scheme-relative to another host");
        assert_eq!(to("/v1/b", 304), None, "not a redirect");
        assert_eq!(to("/v1/b", 300), None);
    }

    #[test]
    fn redirects_change_the_method_as_browsers_do() {
        assert_eq!(redirected_method(303, &Method::POST), Method::GET);
        assert_eq!(redirected_method(303, &Method::HEAD), Method::HEAD);
        assert_eq!(redirected_method(302, &Method::POST), Method::GET);
        assert_eq!(redirected_method(301, &Method::PUT), Method::PUT);
        assert_eq!(redirected_method(307, &Method::POST), Method::POST);
        assert_eq!(redirected_method(308, &Method::DELETE), Method::DELETE);
    }

    #[test]
    fn urls_are_checked_for_scheme_and_literal_addresses() {
        let strict = Outbound::new(false).unwrap();
        let open = Outbound::new(true).unwrap();
        assert!(strict.check_url(&url("https://api.example.com/")).is_ok());
        assert!(strict.check_url(&url("http://93.184.216.34/")).is_ok());
        for bad in [
            "http://127.0.0.1:8080/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://169.254.169.254/latest",
            "http://0.0.0.0/",
            "http://10.1.2.3/",
        ] {
            let err = strict.check_url(&url(bad)).unwrap_err();
            assert_eq!(err.code(), "DESTINATION_REFUSED", "{bad}");
            assert!(open.check_url(&url(bad)).is_ok(), "{bad}");
        }
        // The URL parser normalises the shorthand forms first.
        assert_eq!(strict.check_url(&url("http://2130706433/")).unwrap_err().code(), "DESTINATION_REFUSED");
        assert_eq!(strict.check_url(&url("http://0x7f.1/")).unwrap_err().code(), "DESTINATION_REFUSED");
        for bad in ["ftp://example.com/", "file:///etc/passwd", "data:text/plain,x"] {
            assert_eq!(strict.check_url(&url(bad)).unwrap_err().code(), "INVALID_REQUEST", "{bad}");
        }
    }

    #[tokio::test]
    async fn a_name_resolving_to_loopback_is_refused_after_resolution() {
        let strict = Outbound::new(false).unwrap();
        let req = Request {
            method: Method::GET,
            url: url("http://localhost:9/"),
            headers: HeaderMap::new(),
            body: None,
            timeout: Duration::from_secs(5),
        };
        let err = strict.send(req, |_, _| true).await.unwrap_err();
        assert_eq!(err.code(), "DESTINATION_REFUSED", "{err}");
        assert!(err.to_string().starts_with("localhost resolves to "), "{err}");
    }
}
