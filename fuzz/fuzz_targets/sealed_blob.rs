//! Sealed-blob parsing: a wrapped tenant key (`MasterKey::unwrap_data_key`),
//! a sealed secret version (`DataKey::open`, format 1 of generation 0 and
//! format 2 of a rotated key's generation 1) and the key-check value
//! (`MasterKey::verify_key_check`), as read back from a database an attacker
//! may have edited. Arbitrary bytes must give an integrity error, never a
//! panic and never a plaintext; a genuine blob with any bit flipped likewise.
#![no_main]

use std::sync::LazyLock;

use arbitrary::Arbitrary;
use latchkey::Error;
use latchkey::crypto::{DataKey, MasterKey, SecretAad};
use libfuzzer_sys::fuzz_target;

struct Keys {
    master: MasterKey,
    /// Generation 1, holding generation 0 beside it (a rotated tenant).
    data: DataKey,
    /// Generation 0's wrapping.
    wrapped: Vec<u8>,
    /// Sealed under generation 1 (format 2).
    sealed: Vec<u8>,
    /// Sealed under generation 0 (format 1).
    sealed_v1: Vec<u8>,
    key_check: Vec<u8>,
}

const TENANT: &str = "acme";
const AAD: SecretAad<'static> = SecretAad { tenant_id: TENANT, secret_id: "00000000-0000-4000-8000-000000000000", version: 1 };

static KEYS: LazyLock<Keys> = LazyLock::new(|| {
    let master = MasterKey::from_bytes([7; 32]);
    let (old, wrapped) = master.new_data_key(TENANT, 0);
    let sealed_v1 = old.seal(&AAD, b"hunter2");
    let (new, _) = master.new_data_key(TENANT, 1);
    let data = new.with_older(vec![old]);
    let sealed = data.seal(&AAD, b"hunter2");
    let key_check = master.key_check();
    Keys { master, data, wrapped, sealed, sealed_v1, key_check }
});

#[derive(Debug, Arbitrary)]
enum Input<'a> {
    /// Arbitrary bytes as each kind of blob.
    Raw { tenant: &'a str, blob: &'a [u8] },
    /// A genuine blob XORed with a non-zero mask (a tampered row).
    Tampered { which: u8, mask: &'a [u8] },
}

fn integrity<T>(r: latchkey::Result<T>, what: &str) {
    match r {
        Err(Error::Integrity) => {}
        Err(e) => panic!("{what}: expected an integrity error, got {e:?}"),
        Ok(_) => panic!("{what}: a forged blob opened"),
    }
}

fn xor(blob: &[u8], mask: &[u8]) -> Vec<u8> {
    let mut out = blob.to_vec();
    for (b, m) in out.iter_mut().zip(mask) {
        *b ^= m;
    }
    // Extra mask bytes lengthen the blob; a short mask leaves the tail alone.
    out.extend_from_slice(mask.get(blob.len()..).unwrap_or(&[]));
    out
}

fuzz_target!(|input: Input<'_>| {
    let k = &*KEYS;
    match input {
        Input::Raw { tenant, blob } => {
            integrity(k.master.unwrap_data_key(tenant, 0, blob), "unwrap_data_key");
            integrity(k.data.open(&SecretAad { tenant_id: tenant, ..AAD }, blob), "DataKey::open");
            assert!(!k.master.verify_key_check(blob), "key check accepted {blob:?}");
        }
        Input::Tampered { which, mask } => {
            if mask.iter().all(|&m| m == 0) {
                return;
            }
            match which % 4 {
                0 => integrity(k.master.unwrap_data_key(TENANT, 0, &xor(&k.wrapped, mask)), "tampered wrapped key"),
                1 => integrity(k.data.open(&AAD, &xor(&k.sealed, mask)), "tampered sealed value"),
                2 => integrity(k.data.open(&AAD, &xor(&k.sealed_v1, mask)), "tampered generation-0 value"),
                _ => assert!(!k.master.verify_key_check(&xor(&k.key_check, mask)), "tampered key check accepted"),
            }
        }
    }
});
