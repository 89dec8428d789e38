//! The edge guard's parsers: `host_of`, `origin_host`, `Allowed::check` over
//! arbitrary `Host` / `Origin` header bytes (the DNS-rebinding and cross-site
//! check every route passes), `Allowed::new` over an arbitrary public URL and
//! extra host, and `mcp::anonymous::message` over any JSON-RPC message (or
//! batch) a client can send.
#![no_main]

use arbitrary::Arbitrary;
use http::{HeaderMap, HeaderValue, header};
use latchkey::edge::{Allowed, host_of, origin_host};
use latchkey::mcp::anonymous;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
enum Input<'a> {
    Host(&'a str),
    Url(&'a str),
    Headers { public_url: Option<&'a str>, extra: Option<&'a str>, hosts: Vec<&'a [u8]>, origins: Vec<&'a [u8]> },
    JsonRpc(&'a [u8]),
}

const LOOPBACK: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

fuzz_target!(|input: Input<'_>| match input {
    Input::Host(h) => {
        if let Some(s) = host_of(h) {
            assert!(!s.is_empty() && !s.contains('@') && h.to_ascii_lowercase().contains(s.trim_end_matches('.')), "{h:?} -> {s:?}");
        }
    }
    Input::Url(u) => {
        if let Some(h) = origin_host(u) {
            assert!(!h.is_empty() && !h.contains('@'), "{u:?} -> {h:?}");
        }
    }
    Input::Headers { public_url, extra, hosts, origins } => {
        let extra: Vec<String> = extra.map(String::from).into_iter().collect();
        let Ok(allowed) = Allowed::new(public_url, &extra, None) else { return };
        let mut headers = HeaderMap::new();
        for v in hosts.iter().filter_map(|h| HeaderValue::from_bytes(h).ok()) {
            headers.append(header::HOST, v);
        }
        for v in origins.iter().filter_map(|o| HeaderValue::from_bytes(o).ok()) {
            headers.append(header::ORIGIN, v);
        }
        let passed = allowed.check(&headers).is_ok();
        if passed {
            assert!(headers.get_all(header::HOST).iter().count() <= 1 && headers.get_all(header::ORIGIN).iter().count() <= 1);
        }
        // With no public URL or extra host only loopback passes.
        if passed && public_url.is_none() && extra.is_empty() {
            if let Some(h) = headers.get(header::HOST) {
                let h = host_of(h.to_str().expect("checked as text")).expect("checked as a host");
                assert!(LOOPBACK.contains(&h.as_str()), "Host {h:?} accepted");
            }
            if let Some(o) = headers.get(header::ORIGIN) {
                let o = origin_host(o.to_str().expect("checked as text")).expect("checked as an origin");
                assert!(LOOPBACK.contains(&o.as_str()), "Origin {o:?} accepted");
            }
        }
    }
    Input::JsonRpc(bytes) => match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(serde_json::Value::Array(batch)) => {
            let _ = batch.iter().all(anonymous::message);
        }
        Ok(msg) => {
            let _ = anonymous::message(&msg);
        }
        Err(_) => {}
    },
});
