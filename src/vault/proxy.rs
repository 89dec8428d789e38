//! The secret proxy: the server makes an HTTP request with a secret's value
//! in it, so an agent uses a credential without ever holding it.
//!
//! A request goes only where one of the secret's `bindings` allows (URL
//! prefix and method; else 403 `DESTINATION_NOT_BOUND` naming what is
//! bound), with the value where that binding says (bearer, a named header, a
//! query parameter, basic auth). It is sent by the guarded client
//! (`outbound`: timeouts, a response cap, same-origin redirects only, private
//! destinations refused). The answer, and any error message, has the value
//! and its encoded forms replaced by `[latchkey:NAME]`, whatever the
//! secret's exposure: an upstream that echoes the credential does not hand
//! it to the agent. The use is audited `secret.use` with mechanism `proxy`.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::bindings::{Binding, Inject};
use super::exposure::Mechanism;
use super::scopes::ScopeAction;
use super::secrets::SecretRef;
use super::{Permission, Principal, Vault, audited};
use crate::error::{Error, Result};
use crate::outbound::{self, HeaderMap, Method, Outbound, Url};
use crate::redact::Redactor;

/// Methods the proxy sends.
const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
/// Most headers a caller may send.
const MAX_HEADERS: usize = 64;
/// Largest request body the proxy forwards.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Headers that belong to one connection, not to the request (RFC 9110
/// 7.6.1), and those the client sets itself: dropped from what the caller
/// sends and from what the upstream answers.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
];

/// A request the server makes with the secret's value in it.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProxyRequest {
    /// `GET`, `HEAD`, `POST`, `PUT`, `PATCH`, `DELETE` or `OPTIONS`; one the binding allows.
    pub method: String,
    /// The full `http(s)://` URL; it must fall under one of the secret's bindings' `urlPrefix`.
    pub url: String,
    /// Headers to send (name → value). The header the value goes in (e.g.
    /// `Authorization`) is refused: the server sets it. Hop-by-hop headers,
    /// `Host` and `Content-Length` are dropped; `Accept-Encoding` is always
    /// `identity`, so the answer can be checked for the value.
    #[serde(default)]
    pub headers: Option<BTreeMap<String, String>>,
    /// A text body (at most 1 MiB).
    #[serde(default)]
    pub body: Option<String>,
    /// Give up after this many seconds (1-30; default 30).
    #[serde(default)]
    #[schemars(range(min = 1, max = 30))]
    pub timeout_seconds: Option<u64>,
}

/// How `body` is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BodyEncoding {
    /// The body is text.
    Utf8,
    /// The body was not UTF-8 text: its bytes in standard base64.
    Base64,
}

/// What the upstream answered, with the value and its encoded forms replaced by `[latchkey:NAME]`.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProxyResponse {
    /// The upstream's status (a redirect to another origin is answered as it came, not followed).
    pub status: u16,
    /// The upstream's headers, lower-case names; repeated ones joined with `, `.
    pub headers: BTreeMap<String, String>,
    pub body: String,
    pub body_encoding: BodyEncoding,
    /// The body was longer than 1 MiB and was cut there.
    pub truncated: bool,
    /// Same-origin redirects the server followed (at most 5).
    pub redirects: usize,
}

/// A caller's request, checked: nothing in it depends on the value yet.
#[derive(Debug)]
struct Checked {
    method: Method,
    url: Url,
    headers: HeaderMap,
    body: Option<Vec<u8>>,
    timeout: Duration,
}

impl Vault {
    /// Sends `req` with the value of the secret `r` injected as its binding
    /// says, and answers the upstream's reply with the value redacted.
    pub async fn proxy(&self, p: &Principal, r: SecretRef<'_>, req: ProxyRequest) -> Result<ProxyResponse> {
        let rid = r.id().map(str::to_owned);
        // What needs no value is refused before the value is opened (and
        // before any approval is asked for), audited as a failed use.
        let checked = audited!(self, p, "secret.use", "secret", rid.as_deref(), self.proxy_precheck(p, &r, &req).await)?;
        let used = self.use_secret(p, r, Mechanism::Proxy).await?;
        let redactor = Redactor::new([(used.meta.name.clone(), used.value.to_string())]);
        // The bindings as of the use (the first look may have been cached).
        let Some(binding) = bound(&used.meta.bindings, checked.method.as_str(), checked.url.as_str()) else {
            return Err(not_bound(&used.meta.name, &used.meta.bindings, &checked));
        };
        let binding = binding.clone();
        let request = inject(checked, &binding, &used.value)?;
        let client = Outbound::shared(self.config.allow_private_destinations)?;
        let answer = client
            .send(request, |method, url| binding.matches(method.as_str(), url.as_str()))
            .await
            .map_err(|e| redacted_error(e, &redactor))?;
        Ok(answer_of(answer, &redactor))
    }

    /// Checks the request and that a binding covers it, on the secret as
    /// the caller may see it, without opening the value.
    async fn proxy_precheck(&self, p: &Principal, r: &SecretRef<'_>, req: &ProxyRequest) -> Result<Checked> {
        p.require(Permission::Read)?;
        let row = self.visible_secret(p, r, ScopeAction::Read).await?;
        let checked = check(req)?;
        let bindings = super::bindings::of_row(&row.bindings, &row.id)?;
        match bound(&bindings, checked.method.as_str(), checked.url.as_str()) {
            Some(b) => collisions(&checked, b)?,
            None => return Err(not_bound(&row.name, &bindings, &checked)),
        }
        Ok(checked)
    }
}

fn bound<'b>(bindings: &'b [Binding], method: &str, url: &str) -> Option<&'b Binding> {
    bindings.iter().find(|b| b.matches(method, url))
}

/// 403 naming what is bound (prefixes and methods; never a value).
fn not_bound(name: &str, bindings: &[Binding], req: &Checked) -> Error {
    let asked = format!("{} {}{}", req.method, req.url.origin().ascii_serialization(), req.url.path());
    if bindings.is_empty() {
        return Error::DestinationNotBound(format!(
            "'{name}' has no bindings, so the proxy sends it nowhere ({asked} asked); a writer adds one with \
             bindings: [{{urlPrefix, methods, inject}}]"
        ));
    }
    let list: Vec<String> = bindings
        .iter()
        .map(|b| {
            let methods = if b.methods.is_empty() { "any method".to_owned() } else { b.methods.join("|") };
            format!("{methods} {}", b.url_prefix)
        })
        .collect();
    Error::DestinationNotBound(format!("'{name}' is not bound to {asked}; it is bound to: {}", list.join("; ")))
}

/// Parses and limits the caller's request; drops the headers that are not its to set.
fn check(req: &ProxyRequest) -> Result<Checked> {
    let upper = req.method.to_ascii_uppercase();
    if !METHODS.contains(&upper.as_str()) {
        return Err(Error::InvalidRequest(format!("method must be one of {}", METHODS.join(", "))));
    }
    let method = Method::from_bytes(upper.as_bytes()).map_err(|_| Error::InvalidRequest("method is not a method".into()))?;
    if req.url.len() > 8192 {
        return Err(Error::InvalidRequest("url is limited to 8192 characters".into()));
    }
    let url = Url::parse(&req.url).map_err(|e| Error::InvalidRequest(format!("url is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Error::InvalidRequest("url must be an http or https URL".into()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Error::InvalidRequest("url must not carry credentials: the binding says where the value goes".into()));
    }
    let given = req.headers.as_ref().map_or(0, BTreeMap::len);
    if given > MAX_HEADERS {
        return Err(Error::InvalidRequest(format!("at most {MAX_HEADERS} headers")));
    }
    let mut headers = HeaderMap::new();
    for (name, value) in req.headers.iter().flatten() {
        let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| Error::InvalidRequest(format!("'{name}' is not a header name")))?;
        if HOP_BY_HOP.contains(&name.as_str()) || name == reqwest::header::ACCEPT_ENCODING {
            continue;
        }
        let value = reqwest::header::HeaderValue::from_str(value)
            .map_err(|_| Error::InvalidRequest(format!("the value of header '{name}' holds characters a header cannot carry")))?;
        headers.insert(name, value);
    }
    // Compressed bodies would hide an echoed value from the redactor.
    headers.insert(reqwest::header::ACCEPT_ENCODING, reqwest::header::HeaderValue::from_static("identity"));
    let body = req.body.as_ref().map(|b| b.as_bytes().to_vec());
    if body.as_ref().is_some_and(|b| b.len() > MAX_BODY_BYTES) {
        return Err(Error::PayloadTooLarge(format!("the body sent through the proxy is limited to {MAX_BODY_BYTES} bytes")));
    }
    let seconds = req.timeout_seconds.unwrap_or(outbound::TOTAL_TIMEOUT.as_secs());
    if !(1..=outbound::TOTAL_TIMEOUT.as_secs()).contains(&seconds) {
        return Err(Error::InvalidRequest(format!("timeoutSeconds must be 1-{}", outbound::TOTAL_TIMEOUT.as_secs())));
    }
    Ok(Checked { method, url, headers, body, timeout: Duration::from_secs(seconds) })
}

/// A caller may not set what the binding sets: the value goes in exactly one place.
fn collisions(req: &Checked, b: &Binding) -> Result<()> {
    let header = match &b.inject {
        Inject::Bearer | Inject::Basic { .. } => Some("authorization"),
        Inject::Header { name } => Some(name.as_str()),
        Inject::Query { name } => {
            if req.url.query_pairs().any(|(k, _)| k == name.as_str()) {
                return Err(Error::InvalidRequest(format!(
                    "the URL already has a '{name}' query parameter: the server puts the secret there; leave it out"
                )));
            }
            None
        }
    };
    if let Some(h) = header
        && req.headers.keys().any(|k| k.as_str().eq_ignore_ascii_case(h))
    {
        return Err(Error::InvalidRequest(format!("do not send a '{h}' header: the server puts the secret there")));
    }
    Ok(())
}

/// The request with the value where the binding says, its header marked sensitive.
fn inject(req: Checked, b: &Binding, value: &str) -> Result<outbound::Request> {
    let Checked { method, mut url, mut headers, body, timeout } = req;
    let unfit = || Error::InvalidRequest("the secret's value holds characters an HTTP header cannot carry".into());
    let mut set = |name: reqwest::header::HeaderName, v: String| -> Result<()> {
        let mut v = reqwest::header::HeaderValue::from_str(&v).map_err(|_| unfit())?;
        v.set_sensitive(true);
        headers.insert(name, v);
        Ok(())
    };
    match &b.inject {
        Inject::Bearer => set(reqwest::header::AUTHORIZATION, format!("Bearer {value}"))?,
        Inject::Basic { username } => {
            let pair = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{value}"));
            set(reqwest::header::AUTHORIZATION, format!("Basic {pair}"))?
        }
        Inject::Header { name } => {
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|_| unfit())?;
            set(name, value.to_owned())?
        }
        Inject::Query { name } => {
            url.query_pairs_mut().append_pair(name, value);
        }
    }
    Ok(outbound::Request { method, url, headers, body, timeout })
}

/// An outbound failure with anything that looks like the value replaced.
fn redacted_error(e: Error, r: &Redactor) -> Error {
    let clean = |m: String| r.redact(&m).into_owned();
    match e {
        Error::UpstreamFailed(m) => Error::UpstreamFailed(clean(m)),
        Error::DestinationRefused(m) => Error::DestinationRefused(clean(m)),
        Error::InvalidRequest(m) => Error::InvalidRequest(clean(m)),
        Error::Internal(m) => Error::Internal(clean(m)),
        other => other,
    }
}

/// The reply as the caller sees it: hop-by-hop headers gone, the value redacted.
fn answer_of(resp: outbound::Response, r: &Redactor) -> ProxyResponse {
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in &resp.headers {
        if HOP_BY_HOP.contains(&name.as_str()) {
            continue;
        }
        let value = r.redact(&String::from_utf8_lossy(value.as_bytes())).into_owned();
        headers.entry(name.as_str().to_owned()).and_modify(|v| *v = format!("{v}, {value}")).or_insert(value);
    }
    let mut raw = resp.body;
    if resp.truncated {
        raw = without_partial_tail(raw, r);
    }
    let clean = r.redact_bytes(&raw).into_owned();
    let (body, body_encoding) = text_or_base64(clean, resp.truncated);
    ProxyResponse { status: resp.status, headers, body, body_encoding, truncated: resp.truncated, redirects: resp.redirects }
}

/// A body cut at the cap may end in the first bytes of a value, which no
/// pattern matches whole: drop the tail a pattern could have started in,
/// except what a whole match covers.
fn without_partial_tail(mut raw: Vec<u8>, r: &Redactor) -> Vec<u8> {
    if r.is_empty() {
        return raw;
    }
    let tail = raw.len().saturating_sub(r.longest().saturating_sub(1));
    let last_match_end = r.find_iter(&raw).last().map_or(0, |m| m.end());
    raw.truncate(tail.max(last_match_end));
    raw
}

/// UTF-8 text as it is (a cut body may end inside a character: that
/// character is dropped); anything else in base64.
fn text_or_base64(bytes: Vec<u8>, cut: bool) -> (String, BodyEncoding) {
    match String::from_utf8(bytes) {
        Ok(text) => (text, BodyEncoding::Utf8),
        Err(e) if cut && e.utf8_error().error_len().is_none() => {
            let valid = e.utf8_error().valid_up_to();
            let mut bytes = e.into_bytes();
            bytes.truncate(valid);
            (String::from_utf8(bytes).expect("valid up to here"), BodyEncoding::Utf8)
        }
        Err(e) => (base64::engine::general_purpose::STANDARD.encode(e.into_bytes()), BodyEncoding::Base64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, url: &str, headers: &[(&str, &str)]) -> ProxyRequest {
        ProxyRequest {
            method: method.into(),
            url: url.into(),
            headers: Some(headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            body: None,
            timeout_seconds: None,
        }
    }

    fn binding(inject: Inject) -> Binding {
        Binding { url_prefix: "https://api.example.com/v1/".into(), methods: vec![], inject }
    }

    #[test]
    fn hop_by_hop_and_host_headers_are_dropped_and_encoding_forced() {
        let c = check(&req(
            "post",
            "https://api.example.com/v1/x",
            &[("Host", "evil"), ("Connection", "close"), ("Accept-Encoding", "gzip"), ("X-Trace", "1")],
        ))
        .unwrap();
        assert_eq!(c.method, Method::POST);
        assert!(c.headers.get("host").is_none() && c.headers.get("connection").is_none());
        assert_eq!(c.headers["accept-encoding"], "identity");
        assert_eq!(c.headers["x-trace"], "1");
        for bad in [
            req("CONNECT", "https://a/", &[]),
            req("GET", "ftp://a/", &[]),
            req("GET", "https://u:p@a/", &[]),
            req("GET", "https://a/", &[("bad name", "v")]),
        ] {
            assert_eq!(check(&bad).unwrap_err().code(), "INVALID_REQUEST", "{bad:?}");
        }
    }

    #[test]
    fn the_caller_may_not_set_what_the_binding_sets() {
        let with_auth = check(&req("GET", "https://api.example.com/v1/x", &[("authorization", "Bearer mine")])).unwrap();
        assert!(collisions(&with_auth, &binding(Inject::Bearer)).is_err());
        assert!(collisions(&with_auth, &binding(Inject::Basic { username: "u".into() })).is_err());
        assert!(collisions(&with_auth, &binding(Inject::Header { name: "X-Api-Key".into() })).is_ok());
        let with_key = check(&req("GET", "https://api.example.com/v1/x", &[("x-api-key", "mine")])).unwrap();
        assert!(collisions(&with_key, &binding(Inject::Header { name: "X-Api-Key".into() })).is_err());
        let with_query = check(&req("GET", "https://api.example.com/v1/x?key=mine", &[])).unwrap();
        assert!(collisions(&with_query, &binding(Inject::Query { name: "key".into() })).is_err());
        assert!(collisions(&with_query, &binding(Inject::Query { name: "token".into() })).is_ok());
    }

    #[test]
    fn the_value_goes_where_the_binding_says() {
        let c = || check(&req("GET", "https://api.example.com/v1/x?a=1", &[])).unwrap();
        let r = inject(c(), &binding(Inject::Bearer), "s3cret").unwrap();
        assert_eq!(r.headers["authorization"], "Bearer s3cret");
        assert!(r.headers["authorization"].is_sensitive());
        let r = inject(c(), &binding(Inject::Basic { username: "me".into() }), "s3cret").unwrap();
        assert_eq!(r.headers["authorization"], "Basic bWU6czNjcmV0");
        let r = inject(c(), &binding(Inject::Header { name: "X-Api-Key".into() }), "s3cret").unwrap();
        assert_eq!(r.headers["x-api-key"], "s3cret");
        let r = inject(c(), &binding(Inject::Query { name: "key".into() }), "s e&cret").unwrap();
        assert_eq!(r.url.query(), Some("a=1&key=s+e%26cret"));
        assert_eq!(inject(c(), &binding(Inject::Bearer), "line\nbreak").unwrap_err().code(), "INVALID_REQUEST");
    }

    #[test]
    fn a_cut_body_keeps_no_start_of_a_value() {
        let r = Redactor::new([("K".to_owned(), "abcdefghij".to_owned())]);
        let body = b"xx abcdefghij yy abcde".to_vec();
        let kept = without_partial_tail(body, &r);
        assert!(!kept.ends_with(b"abcde"), "{:?}", String::from_utf8_lossy(&kept));
        assert_eq!(r.redact_bytes(&kept).as_ref(), b"xx [latchkey:K]".as_slice());
        let (text, enc) = text_or_base64("héllo".as_bytes()[..2].to_vec(), true);
        assert_eq!((text.as_str(), enc), ("h", BodyEncoding::Utf8));
        let (text, enc) = text_or_base64(vec![0xff, 0x00], false);
        assert_eq!((text.as_str(), enc), ("/wA=", BodyEncoding::Base64));
    }
}
