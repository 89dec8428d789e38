//! `latchkey::crypto::master::from_base64`: `LATCHKEY_MASTER_KEY` and the
//! key file's text. Only base64 of exactly 32 bytes (surrounding whitespace
//! trimmed) is a key; anything else is an error, never a panic.
#![no_main]

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use latchkey::crypto::master::from_base64;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let decoded = STANDARD.decode(text.trim()).ok();
    match from_base64(text) {
        Ok(key) => assert_eq!(Some(key.expose().as_slice()), decoded.as_deref()),
        Err(_) => assert!(decoded.is_none_or(|d| d.len() != 32)),
    }
});
