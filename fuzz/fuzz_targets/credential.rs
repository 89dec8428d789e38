//! `latchkey::server::credential`: the API key in `X-API-Key` or
//! `Authorization: Bearer`, read from request headers with arbitrary bytes.
#![no_main]

use arbitrary::Arbitrary;
use http::{HeaderName, HeaderValue, Request};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    api_key: Option<&'a [u8]>,
    authorization: Vec<&'a [u8]>,
    /// Other headers, by arbitrary name, that must not be taken for a credential.
    other: Vec<(&'a [u8], &'a [u8])>,
}

fuzz_target!(|input: Input<'_>| {
    let mut req = Request::builder().uri("/api/whoami");
    for (name, value) in &input.other {
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            if n != "x-api-key" && n != http::header::AUTHORIZATION {
                req = req.header(n, v);
            }
        }
    }
    let mut has_key = false;
    if let Some(k) = input.api_key.and_then(|k| HeaderValue::from_bytes(k).ok()) {
        has_key = true;
        req = req.header("x-api-key", k);
    }
    for a in input.authorization.iter().filter_map(|a| HeaderValue::from_bytes(a).ok()) {
        req = req.header(http::header::AUTHORIZATION, a);
    }
    let Ok(req) = req.body(()) else { return };
    let (parts, ()) = req.into_parts();
    if let Some(token) = latchkey::server::credential(&parts) {
        assert_eq!(token, token.trim(), "credential is trimmed");
        if !has_key {
            // Without X-API-Key it can only come from a Bearer Authorization.
            let auth = parts.headers.get(http::header::AUTHORIZATION).expect("came from Authorization").to_str().unwrap();
            let (scheme, _) = auth.split_once(' ').expect("scheme and token");
            assert!(scheme.eq_ignore_ascii_case("bearer"), "{auth:?}");
        }
    } else {
        assert!(!has_key || parts.headers.get("x-api-key").unwrap().to_str().is_err());
    }
});
