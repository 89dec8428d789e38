//! PBKDF2-HMAC-SHA256 with a 32-byte output (one block, RFC 8018), for
//! share-link passwords: the same bytes as the `pbkdf2` crate's
//! `pbkdf2_hmac::<Sha256>` (a test holds them to it), computed on SHA-256's
//! compression function directly. The HMAC pads are hashed once, and each
//! iteration is then exactly two compressions of one fixed-layout block.
//!
//! Why not the crate: its loop is generic, so it is compiled into this
//! crate, at this crate's optimisation level; in the unoptimised build the
//! tests run, 600,000 iterations took 4 s there and take about 0.5 s here.

use sha2::digest::consts::U64;
use sha2::digest::generic_array::GenericArray;

type Block = GenericArray<u8, U64>;

/// SHA-256's initial state (FIPS 180-4, 5.3.3).
const IV: [u32; 8] = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

/// Writes `words` big-endian into the first 32 bytes of `block`.
fn put(block: &mut Block, words: &[u32; 8]) {
    for (chunk, w) in block.chunks_exact_mut(4).zip(words) {
        chunk.copy_from_slice(&w.to_be_bytes());
    }
}

/// The first (and only) block of the derived key: `iterations` ≥ 1.
pub fn pbkdf2_sha256(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    // U1 = HMAC(password, salt || INT(1)): any length of salt, once, the usual way.
    let mut first = [0u8; 32];
    ::pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password, salt, 1, &mut first);

    // The HMAC key as one block (hashed first when longer than a block).
    let mut key = [0u8; 64];
    if password.len() > 64 {
        use sha2::Digest;
        key[..32].copy_from_slice(&sha2::Sha256::digest(password));
    } else {
        key[..password.len()].copy_from_slice(password);
    }
    let pad = |byte: u8| {
        let mut block = Block::default();
        for (b, k) in block.iter_mut().zip(key.iter()) {
            *b = k ^ byte;
        }
        let mut state = IV;
        sha2::compress256(&mut state, std::slice::from_ref(&block));
        state
    };
    let (inner, outer) = (pad(0x36), pad(0x5c));
    key.iter_mut().for_each(|b| *b = 0);

    // After a pad block, both hashes of an iteration take one 32-byte
    // message: then 0x80, zeros, and the bit length (64 + 32) * 8 = 768.
    let mut block = Block::default();
    block[32] = 0x80;
    block[62] = 0x03;
    let mut u = [0u32; 8];
    for (w, chunk) in u.iter_mut().zip(first.chunks_exact(4)) {
        *w = u32::from_be_bytes(chunk.try_into().expect("4 bytes"));
    }
    let mut t = u;
    for _ in 1..iterations {
        put(&mut block, &u);
        let mut s = inner;
        sha2::compress256(&mut s, std::slice::from_ref(&block));
        put(&mut block, &s);
        u = outer;
        sha2::compress256(&mut u, std::slice::from_ref(&block));
        for (a, b) in t.iter_mut().zip(u.iter()) {
            *a ^= b;
        }
    }
    let mut out = [0u8; 32];
    for (chunk, w) in out.chunks_exact_mut(4).zip(t.iter()) {
        chunk.copy_from_slice(&w.to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_pbkdf2_crate() {
        for password in [&b""[..], b"pw", b"correct horse battery staple", &[0x61; 64], &[0x62; 65], &[0x63; 200]] {
            for salt in [&b""[..], b"salt", &[7u8; 16], &[9u8; 100]] {
                for n in [1, 2, 3, 1000] {
                    let mut want = [0u8; 32];
                    ::pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password, salt, n, &mut want);
                    assert_eq!(pbkdf2_sha256(password, salt, n), want, "{} bytes, salt {} bytes, {n}", password.len(), salt.len());
                }
            }
        }
    }

    #[test]
    fn rfc_7914_vector() {
        // RFC 7914, 11: PBKDF2-HMAC-SHA256 (P="passwd", S="salt", c=1), first 32 bytes.
        let want = "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc";
        let got: String = pbkdf2_sha256(b"passwd", b"salt", 1).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(got, want);
    }
}
