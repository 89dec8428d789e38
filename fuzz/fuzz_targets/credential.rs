//! `latchkey::edge::credential`: the API key in `X-API-Key` or
//! `Authorization: Bearer`, read from request headers with arbitrary bytes.
#![no_main]

use arbitrary::Arbitrary;
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    api_keys: Vec<&'a [u8]>,
    authorization: Vec<&'a [u8]>,
    /// Other headers, by arbitrary name, that must not be taken for a credential.
    other: Vec<(&'a [u8], &'a [u8])>,
}

fuzz_target!(|input: Input<'_>| {
    let mut headers = HeaderMap::new();
    for (name, value) in &input.other {
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            if n != "x-api-key" && n != http::header::AUTHORIZATION {
                headers.append(n, v);
            }
        }
    }
    for k in input.api_keys.iter().filter_map(|k| HeaderValue::from_bytes(k).ok()) {
        headers.append("x-api-key", k);
    }
    for a in input.authorization.iter().filter_map(|a| HeaderValue::from_bytes(a).ok()) {
        headers.append(http::header::AUTHORIZATION, a);
    }
    let keys: Vec<&HeaderValue> = headers.get_all("x-api-key").iter().collect();
    let auths: Vec<&HeaderValue> = headers.get_all(http::header::AUTHORIZATION).iter().collect();
    match latchkey::edge::credential(&headers) {
        Ok(Some(token)) => {
            assert!(!token.is_empty() && token == token.trim(), "{token:?}");
            assert!(keys.len() <= 1 && auths.len() <= 1, "a repeated credential header is refused");
            // Whatever carried it, every credential header present says the same.
            if let Some(k) = keys.first() {
                assert_eq!(k.to_str().unwrap().trim(), token);
            }
            if let Some(a) = auths.first() {
                let (scheme, t) = a.to_str().unwrap().trim().split_once(' ').expect("scheme and token");
                assert!(scheme.eq_ignore_ascii_case("bearer") && t.trim() == token, "{a:?}");
            }
        }
        Ok(None) => assert!(keys.is_empty() && auths.is_empty(), "a credential header was present but not read"),
        Err(_) => assert!(!keys.is_empty() || !auths.is_empty(), "refused without a credential header"),
    }
});
