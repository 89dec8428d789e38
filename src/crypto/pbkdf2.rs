//! PBKDF2-HMAC-SHA256 with a 32-byte output, for human-chosen secrets: the
//! master passphrase (once at start) and share-link passwords (on a bounded
//! pool, see `vault::shares`). The `pbkdf2` crate does the work; this names
//! the one parameter set Latchkey uses.
//!
//! The crate's loop is generic, so it is compiled at this crate's
//! optimisation level: in the unoptimised build the tests run, 600,000
//! iterations take seconds rather than a fraction of one. That cost falls on
//! tests only; the release build is what users run.

/// The derived key of `password` under `salt` after `iterations` rounds.
pub fn pbkdf2_sha256(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut out = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password, salt, iterations, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7914, section 11: PBKDF2-HMAC-SHA-256 ("passwd", "salt", c = 1).
    #[test]
    fn rfc_7914_vector() {
        let got = pbkdf2_sha256(b"passwd", b"salt", 1);
        let got: String = got.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(got, "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc");
    }
}
