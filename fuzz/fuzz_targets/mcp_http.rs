//! The `/mcp` guard's parsers: `strip_port`, `origin_host`, `Allowed::host_ok`
//! / `origin_ok` over arbitrary `Host` / `Origin` header bytes (DNS-rebinding
//! check), `Allowed::new` over an arbitrary public URL, and `anonymous_ok` over
//! any JSON-RPC message (or batch) a client can send.
#![no_main]

use arbitrary::Arbitrary;
use http::{HeaderMap, HeaderValue, header};
use latchkey::mcp::http::{Allowed, anonymous_ok, origin_host, strip_port};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
enum Input<'a> {
    Host(&'a str),
    Url(&'a str),
    Headers { public_url: Option<&'a str>, host: Option<&'a [u8]>, origin: Option<&'a [u8]> },
    JsonRpc(&'a [u8]),
}

const LOOPBACK: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

fuzz_target!(|input: Input<'_>| match input {
    Input::Host(h) => {
        let s = strip_port(h);
        assert!(h.contains(s), "{h:?} -> {s:?}");
    }
    Input::Url(u) => {
        if let Some(h) = origin_host(u) {
            assert!(!h.is_empty() && u.contains(&h), "{u:?} -> {h:?}");
        }
    }
    Input::Headers { public_url, host, origin } => {
        let allowed = Allowed::new(public_url);
        let mut headers = HeaderMap::new();
        if let Some(v) = host.and_then(|h| HeaderValue::from_bytes(h).ok()) {
            headers.insert(header::HOST, v);
        }
        if let Some(v) = origin.and_then(|o| HeaderValue::from_bytes(o).ok()) {
            headers.insert(header::ORIGIN, v);
        }
        let host_ok = allowed.host_ok(&headers);
        let origin_ok = allowed.origin_ok(&headers);
        // With no public URL only loopback (or no header, or a non-text one) passes.
        if public_url.is_none() {
            if host_ok && let Some(Ok(h)) = headers.get(header::HOST).map(|h| h.to_str()) {
                assert!(LOOPBACK.contains(&strip_port(h)), "Host {h:?} accepted");
            }
            if origin_ok && let Some(Ok(o)) = headers.get(header::ORIGIN).map(|o| o.to_str()) {
                assert!(origin_host(o).is_some_and(|h| LOOPBACK.contains(&h.as_str())), "Origin {o:?} accepted");
            }
        }
    }
    Input::JsonRpc(bytes) => match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(serde_json::Value::Array(batch)) => {
            let _ = batch.iter().all(anonymous_ok);
        }
        Ok(msg) => {
            let _ = anonymous_ok(&msg);
        }
        Err(_) => {}
    },
});
