//! High-entropy credentials with a readable prefix. Only their SHA-256 is stored.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// 32 random bytes: 256 bits of entropy, so a plain hash is enough (no KDF).
pub fn generate(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

pub fn hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

pub fn hashes_match(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// What list output shows of a key: its readable prefix and six more characters
/// (36 bits: enough to tell keys apart, far too few to guess the rest).
pub fn display_prefix(token: &str, prefix: &str) -> String {
    let end = (prefix.len() + 6).min(token.len());
    format!("{}…", &token[..end])
}
