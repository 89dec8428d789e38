//! What every HTTP front (REST, MCP, the pages for people) reads and checks
//! at the edge, before any route runs: whether the request was addressed to
//! this server at all (`Host` and `Origin`, against DNS rebinding and
//! cross-site pages), where it came from, and which credential it carries.
//!
//! The fronts depend on this module; it depends on none of them.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::{Error, Result};
use crate::vault::{Front, Origin};

const LOOPBACK: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Which `Host` names and browser origins the server answers.
///
/// A DNS-rebinding page reaches a loopback server under a name its attacker
/// controls, so a request is served only when its `Host` is a name this
/// server was told it has: loopback, `--public-url`'s host, `--allowed-host`.
/// An IP literal cannot be rebound; one is accepted when it is the address
/// the server listens on, or any address when it listens on all of them.
/// A browser's `Origin` must be the request's own host (a page of this
/// server) or one of the named hosts: a page elsewhere cannot drive it.
#[derive(Debug, Clone)]
pub struct Allowed {
    /// Lower-case host names and addresses, without port or brackets.
    hosts: Vec<String>,
    /// Any IP literal is a host of this server (it listens on all addresses).
    any_address: bool,
    /// Proxies whose `X-Forwarded-For` is believed (`--trusted-proxy`).
    trusted_proxies: Vec<ipnet::IpNet>,
}

impl Allowed {
    /// Loopback, the public URL's host, the operator's extra names, and the
    /// address `listen` binds (if any).
    pub fn new(public_url: Option<&str>, extra_hosts: &[String], listen: Option<std::net::SocketAddr>) -> Result<Self> {
        let mut hosts: Vec<String> = LOOPBACK.map(String::from).to_vec();
        let mut add = |h: String| {
            if !hosts.contains(&h) {
                hosts.push(h);
            }
        };
        if let Some(url) = public_url {
            let host = origin_host(url.trim_end_matches('/'))
                .ok_or_else(|| Error::InvalidRequest(format!("--public-url '{url}' is not a URL like https://vault.example.com")))?;
            add(host);
        }
        for name in extra_hosts {
            let host = host_of(name)
                .filter(|h| !h.is_empty())
                .ok_or_else(|| Error::InvalidRequest(format!("--allowed-host '{name}' is not a host name (no scheme, path or '@')")))?;
            add(host);
        }
        let mut any_address = false;
        if let Some(addr) = listen {
            if addr.ip().is_unspecified() {
                any_address = true;
            } else {
                add(addr.ip().to_string());
            }
        }
        Ok(Allowed { hosts, any_address, trusted_proxies: Vec::new() })
    }

    /// Believes `X-Forwarded-For` from these proxies (addresses or CIDRs), and
    /// from no one else.
    pub fn trusting(mut self, proxies: &[String]) -> Result<Self> {
        for raw in proxies {
            let raw = raw.trim();
            let net = raw
                .parse::<ipnet::IpNet>()
                .or_else(|_| raw.parse::<IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| Error::InvalidRequest(format!("--trusted-proxy '{}' is not an address or CIDR", printable(raw))))?;
            self.trusted_proxies.push(net);
        }
        Ok(self)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|n| n.contains(&ip))
    }

    /// The client's address: the socket peer, unless the peer is a trusted
    /// proxy; then the `X-Forwarded-For` hops are read from the right, each
    /// trusted proxy passing the request on, and the first hop that is not
    /// one is the client. A hop that does not parse stops the walk there: the
    /// last address vouched for is used, never one a client could have
    /// written.
    pub fn client_addr(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let hops: Vec<&str> =
            headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).map(str::trim).collect();
        let mut client = peer;
        for hop in hops.iter().rev() {
            match hop.parse::<IpAddr>() {
                Ok(ip) => {
                    client = ip;
                    if !self.trusts(ip) {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        client
    }

    /// Loopback only: what a server on 127.0.0.1 with no options answers.
    pub fn loopback() -> Self {
        Allowed { hosts: LOOPBACK.map(String::from).to_vec(), any_address: false, trusted_proxies: Vec::new() }
    }

    /// The names and addresses accepted in `Host`, for the start-up log.
    pub fn describe(&self) -> String {
        let mut out = self.hosts.join(", ");
        if self.any_address {
            out.push_str(", and any IP address of this machine");
        }
        out
    }

    fn host_allowed(&self, host: &str) -> bool {
        self.hosts.iter().any(|h| h == host) || (self.any_address && host.parse::<IpAddr>().is_ok())
    }

    /// `Ok` when the request may be served. At most one `Host` and one
    /// `Origin`, each well formed: a second copy would let a check read one
    /// and a later reader the other.
    pub fn check(&self, headers: &HeaderMap) -> Result<()> {
        let host = match single(headers, header::HOST)? {
            // HTTP/1.0 clients send none; rebinding needs a name, so a browser always does.
            None => None,
            Some(raw) => {
                let host = host_of(raw).ok_or_else(|| refused_host(raw, "is not a valid Host"))?;
                if !self.host_allowed(&host) {
                    return Err(refused_host(raw, "is not a name this server answers to"));
                }
                Some(host)
            }
        };
        if let Some(raw) = single(headers, header::ORIGIN)? {
            let origin = origin_host(raw);
            let ok = origin.as_ref().is_some_and(|o| host.as_ref() == Some(o) || self.hosts.contains(o));
            if !ok {
                return Err(Error::ForbiddenOrigin(format!(
                    "Origin '{}' may not call this server: only its own pages and the hosts named by --public-url or \
                     --allowed-host may",
                    printable(raw)
                )));
            }
        }
        Ok(())
    }
}

/// The value of `name`, if present exactly once and readable as text.
fn single(headers: &HeaderMap, name: HeaderName) -> Result<Option<&str>> {
    let mut all = headers.get_all(&name).iter();
    match (all.next(), all.next()) {
        (None, _) => Ok(None),
        (Some(v), None) => v.to_str().map(Some).map_err(|_| Error::ForbiddenHost(format!("the {name} header is not readable text"))),
        (Some(_), Some(_)) => Err(Error::ForbiddenHost(format!("a request carries one {name} header, not several"))),
    }
}

fn refused_host(raw: &str, why: &str) -> Error {
    Error::ForbiddenHost(format!(
        "Host '{}' {why}; if clients reach this server by that name (a load balancer, a container), start it with \
         --allowed-host NAME (or --public-url)",
        printable(raw)
    ))
}

/// At most 100 characters of client text, control characters escaped, for an error message.
fn printable(raw: &str) -> String {
    raw.chars().take(100).flat_map(char::escape_debug).collect()
}

/// The host of a `Host` value (`name[:port]`, `[v6][:port]`): lower case,
/// without brackets, port or a trailing dot; `None` for anything else,
/// userinfo (`127.0.0.1:1@evil.com`) above all.
pub fn host_of(authority: &str) -> Option<String> {
    if authority.contains(['@', '/', '?', '#', ' ', '\\']) || authority.is_empty() {
        return None;
    }
    let parsed: axum::http::uri::Authority = authority.parse().ok()?;
    let host = parsed.host().trim_start_matches('[').trim_end_matches(']').trim_end_matches('.').to_ascii_lowercase();
    Some(host).filter(|h| !h.is_empty())
}

/// The host of an origin or URL `scheme://host[:port][/…]`, as [`host_of`].
pub fn origin_host(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
        return None;
    }
    host_of(rest.split(['/', '?', '#']).next()?)
}

/// Axum middleware: refuses a request addressed to another host or sent by
/// another site's page, before anything else reads it.
pub async fn guard(State(allowed): State<Arc<Allowed>>, mut req: Request, next: Next) -> Response {
    let checked = if is_page_without_origin(&req) {
        // The pages answer `Referrer-Policy: no-referrer`, under which a
        // browser sends `Origin: null` with their own forms and fetches.
        // They check a CSRF token of the session and a SameSite=Strict
        // cookie instead; the Host check still applies.
        let mut headers = req.headers().clone();
        headers.remove(header::ORIGIN);
        allowed.check(&headers)
    } else {
        allowed.check(req.headers())
    };
    match checked {
        Ok(()) => {
            if let Some(peer) = req.extensions().get::<ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip()) {
                let client = allowed.client_addr(peer, req.headers());
                req.extensions_mut().insert(ClientAddr(client));
            }
            next.run(req).await
        }
        Err(e) => {
            let mut resp = e.into_response();
            // Its body is never read: the connection cannot be reused.
            resp.headers_mut().insert(header::CONNECTION, header::HeaderValue::from_static("close"));
            resp
        }
    }
}

/// A request to the pages for people (`/approvals…`, the share page `/s/…`)
/// whose one `Origin` is `null`. The share page's form has no session to
/// forge: its token is in the URL, and whoever holds it may open the share.
fn is_page_without_origin(req: &Request) -> bool {
    let path = req.uri().path();
    let page = path == "/approvals" || path.starts_with("/approvals/") || path.starts_with("/s/");
    let mut origins = req.headers().get_all(header::ORIGIN).iter();
    page && matches!((origins.next(), origins.next()), (Some(o), None) if o.as_bytes() == b"null")
}

/// The client's address as [`guard`] judged it (see [`Allowed::client_addr`]).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub IpAddr);

/// Where a request came from: the client's address (the socket peer, or
/// what a trusted proxy forwarded) and the user agent.
pub fn origin_of(parts: &Parts, front: Front) -> Origin {
    let ip = match parts.extensions.get::<ClientAddr>() {
        Some(c) => Some(c.0.to_string()),
        None => parts.extensions.get::<ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip().to_string()),
    };
    let user_agent = parts.headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(|s| s.chars().take(256).collect());
    Origin { front, ip, user_agent, ..Default::default() }
}

/// The credential a request carries, in `X-API-Key` or `Authorization:
/// Bearer`, or `None` when it carries neither. Headers that are malformed
/// (not text, empty, repeated, another scheme) or that carry two different
/// credentials are refused rather than read past: a proxy or client that
/// mangles one must not have the other chosen silently in its place.
pub fn credential(headers: &HeaderMap) -> Result<Option<&str>> {
    let malformed = |what: &str| Error::Unauthorized(format!("malformed credential: {what}"));
    let key = match single_value(headers, "x-api-key").map_err(|_| malformed("more than one X-API-Key header"))? {
        None => None,
        Some(v) => {
            let v = v.to_str().map_err(|_| malformed("X-API-Key is not printable ASCII"))?.trim();
            if v.is_empty() {
                return Err(malformed("X-API-Key is empty"));
            }
            Some(v)
        }
    };
    let bearer = match single_value(headers, header::AUTHORIZATION.as_str()).map_err(|_| malformed("more than one Authorization header"))? {
        None => None,
        Some(v) => {
            let v = v.to_str().map_err(|_| malformed("Authorization is not printable ASCII"))?;
            match v.trim().split_once(' ') {
                Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => Some(token.trim()),
                _ => return Err(malformed("Authorization must be 'Bearer <API key>'")),
            }
        }
    };
    match (key, bearer) {
        (Some(k), Some(b)) if k != b => Err(malformed("X-API-Key and Authorization carry different credentials")),
        (Some(k), _) => Ok(Some(k)),
        (None, b) => Ok(b),
    }
}

fn single_value<'h>(headers: &'h HeaderMap, name: &str) -> std::result::Result<Option<&'h header::HeaderValue>, ()> {
    let mut all = headers.get_all(name).iter();
    match (all.next(), all.next()) {
        (v, None) => Ok(v),
        _ => Err(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_counts_only_from_trusted_proxies() {
        let allowed = Allowed::loopback().trusting(&["10.0.0.0/8".into(), "192.168.1.5".into()]).unwrap();
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", "1.1.1.1, 2.2.2.2".parse().unwrap());
        h.append("x-forwarded-for", "10.1.1.1".parse().unwrap());
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(allowed.client_addr(ip("8.8.8.8"), &h), ip("8.8.8.8"), "an untrusted peer is the client");
        assert_eq!(allowed.client_addr(ip("192.168.1.5"), &h), ip("2.2.2.2"), "trusted hops are walked past");
        let mut forged = HeaderMap::new();
        forged.append("x-forwarded-for", "1.1.1.1, bogus".parse().unwrap());
        assert_eq!(allowed.client_addr(ip("10.0.0.1"), &forged), ip("10.0.0.1"), "an unparsable hop stops the walk");
        assert_eq!(allowed.client_addr(ip("10.0.0.1"), &HeaderMap::new()), ip("10.0.0.1"));
        assert!(Allowed::loopback().trusting(&["nonsense".into()]).is_err());
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        h
    }

    #[test]
    fn hosts() {
        let a = Allowed::new(Some("https://vault.example.com"), &["lb.internal".into()], None).unwrap();
        let ok = |host: &str| a.check(&headers(&[("host", host)])).is_ok();
        assert!(ok("127.0.0.1:8200") && ok("localhost") && ok("[::1]:80") && ok("LOCALHOST.") && ok("vault.example.com"));
        assert!(ok("lb.internal:8200"));
        assert!(!ok("evil.example.com:8200") && !ok("vault.example.com.evil.io") && !ok("10.0.0.5"));
        assert!(!ok("127.0.0.1:1@evil.com") && !ok("evil.com@127.0.0.1") && !ok("127.0.0.1/x") && !ok(""));
        let two = headers(&[("host", "127.0.0.1"), ("host", "evil.com")]);
        assert_eq!(a.check(&two).unwrap_err().code(), "FORBIDDEN_HOST");
        assert!(a.check(&HeaderMap::new()).is_ok(), "no Host at all (HTTP/1.0)");

        let all = Allowed::new(None, &[], Some("0.0.0.0:8200".parse().unwrap())).unwrap();
        assert!(all.check(&headers(&[("host", "10.0.0.5:8200")])).is_ok() && all.check(&headers(&[("host", "[fe80::1]")])).is_ok());
        assert!(all.check(&headers(&[("host", "rebound.evil.com")])).is_err());
        let one = Allowed::new(None, &[], Some("10.0.0.5:8200".parse().unwrap())).unwrap();
        assert!(one.check(&headers(&[("host", "10.0.0.5:8200")])).is_ok() && one.check(&headers(&[("host", "10.0.0.6")])).is_err());
        assert!(Allowed::new(None, &["https://x".into()], None).is_err() && Allowed::new(Some("vault"), &[], None).is_err());
    }

    #[test]
    fn origins() {
        let a = Allowed::new(Some("https://vault.example.com"), &[], Some("0.0.0.0:8200".parse().unwrap())).unwrap();
        let ok = |host: &str, origin: &str| a.check(&headers(&[("host", host), ("origin", origin)])).is_ok();
        assert!(ok("127.0.0.1:8200", "http://localhost:3000") && ok("127.0.0.1:8200", "https://vault.example.com"));
        assert!(ok("10.0.0.5:8200", "http://10.0.0.5:8200"), "the server's own page");
        assert!(!ok("10.0.0.5:8200", "http://10.0.0.6:8200"), "another machine's page");
        assert!(!ok("127.0.0.1:8200", "https://evil.example.com") && !ok("127.0.0.1:8200", "https://vault.example.com.evil.io"));
        assert!(!ok("127.0.0.1:8200", "http://localhost:@evil.com") && !ok("127.0.0.1:8200", "http://127.0.0.1@evil.com"));
        assert!(!ok("127.0.0.1:8200", "null") && !ok("127.0.0.1:8200", "file://localhost"));
        let two = headers(&[("host", "127.0.0.1"), ("origin", "http://localhost"), ("origin", "https://evil.com")]);
        assert!(a.check(&two).is_err());
    }

    #[test]
    fn pages_take_a_null_origin_only_for_themselves() {
        let req = |path: &str, origin: &str| {
            Request::builder().uri(path).header("host", "localhost:8200").header("origin", origin).body(axum::body::Body::empty()).unwrap()
        };
        assert!(is_page_without_origin(&req("/approvals/abc/approve", "null")));
        assert!(is_page_without_origin(&req("/approvals", "null")));
        assert!(!is_page_without_origin(&req("/api/v1/secrets", "null")), "the API keeps refusing it");
        assert!(!is_page_without_origin(&req("/approvalsx", "null")));
        assert!(!is_page_without_origin(&req("/approvals", "https://evil.example")));
        assert!(is_page_without_origin(&req("/s/shr_abc", "null")), "the share page's own form");
        assert!(!is_page_without_origin(&req("/s/shr_abc", "https://evil.example")));
        assert!(!is_page_without_origin(&req("/s", "null")) && !is_page_without_origin(&req("/sx/shr_abc", "null")));
        assert!(!is_page_without_origin(&req("/api/v1/shares/access/shr_abc", "null")), "the public REST access keeps refusing it");
    }

    #[test]
    fn credentials() {
        let cred = |pairs: &[(&str, &str)]| credential(&headers(pairs)).map(|c| c.map(str::to_owned));
        assert_eq!(cred(&[]).unwrap(), None);
        assert_eq!(cred(&[("x-api-key", " sc_1 ")]).unwrap().as_deref(), Some("sc_1"));
        assert_eq!(cred(&[("authorization", "bearer sc_1")]).unwrap().as_deref(), Some("sc_1"));
        assert_eq!(cred(&[("x-api-key", "sc_1"), ("authorization", "Bearer sc_1")]).unwrap().as_deref(), Some("sc_1"));
        for bad in [
            vec![("x-api-key", "")],
            vec![("x-api-key", "  ")],
            vec![("x-api-key", "a"), ("x-api-key", "b")],
            vec![("x-api-key", "sc_1"), ("authorization", "Bearer sc_2")],
            vec![("authorization", "Basic dXNlcjpwdw==")],
            vec![("authorization", "Bearer ")],
            vec![("authorization", "Bearer a"), ("authorization", "Bearer a")],
        ] {
            assert!(cred(&bad).is_err(), "{bad:?}");
        }
        let mut h = HeaderMap::new();
        h.insert("x-api-key", header::HeaderValue::from_bytes(b"sc_\xff").unwrap());
        h.insert(header::AUTHORIZATION, "Bearer sc_1".parse().unwrap());
        assert!(credential(&h).is_err(), "a non-text X-API-Key does not fall back to Authorization");
    }
}
