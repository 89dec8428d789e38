//! Key types and the two sealing operations: wrapping a tenant key under the
//! master key, and sealing a secret version under a tenant key.

use std::collections::HashMap;
use std::io::Write;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hkdf::Hkdf;
use rand::RngCore;
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::{Error, Result};

/// Format byte in front of every sealed blob, so the layout can evolve.
const FORMAT_V1: u8 = 1;
/// Format byte of a blob sealed under a tenant's data key of generation 1 or
/// later (`POST /api/v1/tenant/rotate-key`): the generation follows as four
/// big-endian bytes, so a read picks the key that sealed it without trying
/// each. Generation 0 keeps [`FORMAT_V1`]: what was sealed before rotations
/// existed reads as it always did.
const FORMAT_V2: u8 = 2;
const NONCE_LEN: usize = 12;
const SALT_LEN: usize = 16;
const KEY_CHECK_PLAINTEXT: &[u8] = b"latchkey key check v1";

/// The key-encryption key. Never stored in the database.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MasterKey([u8; 32]);

/// A tenant's data keys, unwrapped in memory only: the current generation,
/// which seals everything new, and the earlier ones a rotation retired, kept
/// to open what they sealed until (and after) it is sealed again.
pub struct DataKey {
    current: Generation,
    older: Vec<Generation>,
}

/// One generation of a tenant's data key.
#[derive(ZeroizeOnDrop)]
struct Generation {
    key: [u8; 32],
    #[zeroize(skip)]
    number: u32,
    /// The ciphers of versions read lately, by salt: each version's key is
    /// derived (HKDF) and expanded (AES key schedule) once, not on every read
    /// of it, which cost ~0.9 µs of a ~25 µs audited read. Key material like
    /// the data key itself, kept no longer: the ciphers zeroize their round
    /// keys when dropped.
    #[zeroize(skip)]
    opened: std::sync::RwLock<HashMap<[u8; SALT_LEN], Aes256Gcm>>,
}

/// Most ciphers a tenant's data key keeps (~0.5 KiB each); past it, it
/// starts over.
const OPENED_PER_TENANT: usize = 64;

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}
impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

/// What a secret version's ciphertext is bound to: moving it to another row
/// (other tenant, secret or version) makes decryption fail.
pub struct SecretAad<'a> {
    pub tenant_id: &'a str,
    pub secret_id: &'a str,
    pub version: i64,
}

impl SecretAad<'_> {
    fn bytes(&self) -> Vec<u8> {
        // Sized up front: one allocation, where `format!` grew its string.
        let mut out = Vec::with_capacity(41 + self.tenant_id.len() + self.secret_id.len());
        write!(out, "latchkey/secret/v1|{}|{}|{}", self.tenant_id, self.secret_id, self.version).expect("writing to a Vec");
        out
    }
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b
}

fn seal_with(key: &[u8; 32], aad: &[u8], plaintext: &[u8], head: &[u8]) -> Vec<u8> {
    seal_with_nonce(key, &random(), aad, plaintext, head)
}

/// `head` (the format byte and what the format puts before the nonce) |
/// nonce | ciphertext+tag.
fn seal_with_nonce(key: &[u8; 32], nonce: &[u8; NONCE_LEN], aad: &[u8], plaintext: &[u8], head: &[u8]) -> Vec<u8> {
    let cipher = Aes256Gcm::new_from_slice(key).expect("32-byte key");
    let ct = cipher
        .encrypt(Nonce::from_slice(nonce), Payload { msg: plaintext, aad })
        .expect("AES-GCM encryption does not fail for in-memory buffers");
    let mut out = Vec::with_capacity(head.len() + NONCE_LEN + ct.len());
    out.extend_from_slice(head);
    out.extend_from_slice(nonce);
    out.extend_from_slice(&ct);
    out
}

fn open_with(key: &[u8; 32], aad: &[u8], nonce_and_ct: &[u8]) -> Result<Vec<u8>> {
    open_with_cipher(&Aes256Gcm::new_from_slice(key).expect("32-byte key"), aad, nonce_and_ct)
}

fn open_with_cipher(cipher: &Aes256Gcm, aad: &[u8], nonce_and_ct: &[u8]) -> Result<Vec<u8>> {
    if nonce_and_ct.len() < NONCE_LEN + 16 {
        return Err(Error::Integrity);
    }
    let (nonce, ct) = nonce_and_ct.split_at(NONCE_LEN);
    cipher.decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad }).map_err(|_| Error::Integrity)
}

fn split_format(blob: &[u8]) -> Result<&[u8]> {
    match blob.split_first() {
        Some((&FORMAT_V1, rest)) => Ok(rest),
        _ => Err(Error::Integrity),
    }
}

/// The data-key generation a blob was sealed under, and what follows its
/// header. Generation 0 is only ever written as [`FORMAT_V1`].
fn split_generation(blob: &[u8]) -> Result<(u32, &[u8])> {
    match blob.split_first() {
        Some((&FORMAT_V1, rest)) => Ok((0, rest)),
        Some((&FORMAT_V2, rest)) if rest.len() >= 4 => {
            let (number, rest) = rest.split_at(4);
            match u32::from_be_bytes(number.try_into().expect("split at 4")) {
                0 => Err(Error::Integrity),
                n => Ok((n, rest)),
            }
        }
        _ => Err(Error::Integrity),
    }
}

/// The generation of the data key that sealed `blob` (a secret version, a
/// wrapped key), or `None` for what is no such blob.
pub fn blob_generation(blob: &[u8]) -> Option<u32> {
    split_generation(blob).ok().map(|(n, _)| n)
}

/// The header a blob sealed under generation `number` starts with.
fn generation_head(number: u32) -> Vec<u8> {
    match number {
        0 => vec![FORMAT_V1],
        n => {
            let mut head = Vec::with_capacity(5);
            head.push(FORMAT_V2);
            head.extend_from_slice(&n.to_be_bytes());
            head
        }
    }
}

impl MasterKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        MasterKey(bytes)
    }

    pub fn generate() -> Self {
        MasterKey(random())
    }

    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    /// Wraps a fresh data key of `generation` for `tenant_id` (0 at signup,
    /// one more at each rotation); returns the key and its wrapped form.
    pub fn new_data_key(&self, tenant_id: &str, generation: u32) -> (DataKey, Vec<u8>) {
        let key = DataKey::new(generation, random());
        let wrapped = self.wrap_data_key(tenant_id, &key);
        (key, wrapped)
    }

    /// Wraps an existing data key's current generation (a master-key
    /// rotation moving it).
    pub fn wrap_data_key(&self, tenant_id: &str, key: &DataKey) -> Vec<u8> {
        seal_with(&self.0, &tenant_aad(tenant_id, key.current.number), &key.current.key, &[FORMAT_V1])
    }

    pub fn unwrap_data_key(&self, tenant_id: &str, generation: u32, wrapped: &[u8]) -> Result<DataKey> {
        let mut plain = open_with(&self.0, &tenant_aad(tenant_id, generation), split_format(wrapped)?)?;
        let key: [u8; 32] = plain.as_slice().try_into().map_err(|_| Error::Integrity)?;
        plain.zeroize();
        Ok(DataKey::new(generation, key))
    }

    /// Wraps a key of the vault's own (not a tenant's: the audit chain's),
    /// bound to `purpose`, to be stored beside the data.
    pub fn wrap_key(&self, purpose: &[u8], key: &[u8; 32]) -> Vec<u8> {
        seal_with(&self.0, purpose, key, &[FORMAT_V1])
    }

    pub fn unwrap_key(&self, purpose: &[u8], wrapped: &[u8]) -> Result<zeroize::Zeroizing<[u8; 32]>> {
        let plain = zeroize::Zeroizing::new(open_with(&self.0, purpose, split_format(wrapped)?)?);
        let key: [u8; 32] = plain.as_slice().try_into().map_err(|_| Error::Integrity)?;
        Ok(zeroize::Zeroizing::new(key))
    }

    /// A value stored beside the data so a start with the wrong key is refused.
    pub fn key_check(&self) -> Vec<u8> {
        seal_with(&self.0, b"latchkey/key-check", KEY_CHECK_PLAINTEXT, &[FORMAT_V1])
    }

    pub fn verify_key_check(&self, stored: &[u8]) -> bool {
        split_format(stored).and_then(|rest| open_with(&self.0, b"latchkey/key-check", rest)).is_ok_and(|p| p == KEY_CHECK_PLAINTEXT)
    }
}

/// A fresh version key and its salt (see [`DataKey::sealer`]).
#[derive(ZeroizeOnDrop)]
pub struct VersionSealer {
    key: [u8; 32],
    /// The generation's header and the salt.
    #[zeroize(skip)]
    head: Vec<u8>,
    /// The nonce drawn ahead, for the first seal only: a batch that failed is
    /// retried, and a key must never see one nonce twice.
    #[zeroize(skip)]
    nonce: std::sync::Mutex<Option<[u8; NONCE_LEN]>>,
}

impl VersionSealer {
    pub fn seal(&self, aad: &SecretAad<'_>, value: &[u8]) -> Vec<u8> {
        let ahead = self.nonce.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        seal_with_nonce(&self.key, &ahead.unwrap_or_else(random), &aad.bytes(), value, &self.head)
    }
}

/// What a data key's wrapping is bound to: its tenant and, from generation 1
/// on, its generation, so one generation's wrapping cannot pass for another's.
fn tenant_aad(tenant_id: &str, generation: u32) -> Vec<u8> {
    match generation {
        0 => format!("latchkey/tenant-key/v1|{tenant_id}").into_bytes(),
        n => format!("latchkey/tenant-key/v1|{tenant_id}|{n}").into_bytes(),
    }
}

impl Generation {
    fn version_key(&self, salt: &[u8]) -> [u8; 32] {
        let hk = Hkdf::<Sha256>::new(Some(salt), &self.key);
        let mut okm = [0u8; 32];
        hk.expand(b"latchkey secret version key v1", &mut okm).expect("32 bytes is a valid HKDF length");
        okm
    }

    /// What follows the header of a version this generation sealed:
    /// `salt | nonce | ciphertext+tag`.
    fn open_version(&self, aad: &SecretAad<'_>, rest: &[u8]) -> Result<Vec<u8>> {
        if rest.len() < SALT_LEN {
            return Err(Error::Integrity);
        }
        let (salt, nonce_and_ct) = rest.split_at(SALT_LEN);
        let salt: [u8; SALT_LEN] = salt.try_into().expect("split at SALT_LEN");
        if let Some(cipher) = self.opened.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(&salt) {
            return open_with_cipher(cipher, &aad.bytes(), nonce_and_ct);
        }
        let mut key = self.version_key(&salt);
        let cipher = Aes256Gcm::new_from_slice(&key).expect("32-byte key");
        key.zeroize();
        let out = open_with_cipher(&cipher, &aad.bytes(), nonce_and_ct);
        // Only a cipher that opened its version is kept: a blob with a forged
        // salt must not evict the ones in use.
        if out.is_ok() {
            let mut opened = self.opened.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            if opened.len() >= OPENED_PER_TENANT {
                opened.clear();
            }
            opened.insert(salt, cipher);
        }
        out
    }

    /// The key that wraps other keys for this tenant (a backup's archive
    /// key): derived, so the data key itself never encrypts anything but
    /// through HKDF.
    fn wrapping_key(&self) -> zeroize::Zeroizing<[u8; 32]> {
        let hk = Hkdf::<Sha256>::new(None, &self.key);
        let mut okm = zeroize::Zeroizing::new([0u8; 32]);
        hk.expand(b"latchkey key wrapping v1", okm.as_mut()).expect("32 bytes is a valid HKDF length");
        okm
    }
}

impl DataKey {
    fn new(number: u32, key: [u8; 32]) -> Self {
        DataKey { current: Generation { key, number, opened: Default::default() }, older: Vec::new() }
    }

    /// This key with `older` generations beside it, to open what they sealed.
    pub fn with_older(mut self, older: Vec<DataKey>) -> Self {
        for k in older {
            let DataKey { current, older } = k;
            self.older.push(current);
            self.older.extend(older);
        }
        self
    }

    /// The generation everything new is sealed under.
    pub fn generation(&self) -> u32 {
        self.current.number
    }

    /// Whether this key holds the generation that sealed `blob` (a replica
    /// that has not heard of a rotation yet does not).
    pub fn opens(&self, blob: &[u8]) -> bool {
        blob_generation(blob).is_some_and(|n| self.find(n).is_some())
    }

    fn find(&self, number: u32) -> Option<&Generation> {
        if self.current.number == number {
            return Some(&self.current);
        }
        self.older.iter().find(|g| g.number == number)
    }

    fn split<'b>(&self, blob: &'b [u8]) -> Result<(&Generation, &'b [u8])> {
        let (number, rest) = split_generation(blob)?;
        Ok((self.find(number).ok_or(Error::Integrity)?, rest))
    }

    /// A short keyed fingerprint of a value (`fp_` and 16 hex digits): equal
    /// values of one tenant have equal fingerprints, and without the tenant's
    /// key a fingerprint does not let anyone test guesses offline, as a plain
    /// hash of a short password would. Keyed by the current generation, so a
    /// data-key rotation changes every fingerprint: one leaked with the old
    /// key tells nothing about the new ones.
    pub fn fingerprint(&self, value: &[u8]) -> String {
        use hmac::Mac;
        let hk = Hkdf::<Sha256>::new(None, &self.current.key);
        let mut okm = zeroize::Zeroizing::new([0u8; 32]);
        hk.expand(b"latchkey value fingerprint v1", okm.as_mut()).expect("32 bytes is a valid HKDF length");
        let mut mac = <hmac::Hmac<Sha256> as Mac>::new_from_slice(okm.as_ref()).expect("HMAC takes any key length");
        mac.update(value);
        let tag = mac.finalize().into_bytes();
        let hex: String = tag[..8].iter().map(|b| format!("{b:02x}")).collect();
        format!("fp_{hex}")
    }

    /// Seals one secret version under the current generation:
    /// `format [| generation] | salt | nonce | ciphertext+tag`.
    pub fn seal(&self, aad: &SecretAad<'_>, value: &[u8]) -> Vec<u8> {
        self.sealer().seal(aad, value)
    }

    /// Everything a version's sealing needs except its AAD, drawn and derived
    /// now: a rotation learns its version number only inside the write, and
    /// the write should spend its time on the database, not on key derivation
    /// and the OS's random number generator.
    pub fn sealer(&self) -> VersionSealer {
        let salt = random::<SALT_LEN>();
        let mut head = generation_head(self.current.number);
        head.extend_from_slice(&salt);
        VersionSealer { key: self.current.version_key(&salt), head, nonce: std::sync::Mutex::new(Some(random())) }
    }

    /// Opens a version sealed under any generation this key holds.
    pub fn open(&self, aad: &SecretAad<'_>, sealed: &[u8]) -> Result<Vec<u8>> {
        let (generation, rest) = self.split(sealed)?;
        generation.open_version(aad, rest)
    }

    /// Wraps `key` for this tenant under the current generation, bound to `aad`.
    pub fn wrap_key(&self, aad: &[u8], key: &[u8; 32]) -> Vec<u8> {
        seal_with(&self.current.wrapping_key(), aad, key, &generation_head(self.current.number))
    }

    /// Unwraps what [`DataKey::wrap_key`] wrapped, under any generation this
    /// key holds; `Integrity` when another tenant's key (or another server's)
    /// wrapped it, or `aad` differs.
    pub fn unwrap_key(&self, aad: &[u8], wrapped: &[u8]) -> Result<zeroize::Zeroizing<[u8; 32]>> {
        let (generation, rest) = self.split(wrapped)?;
        let plain = zeroize::Zeroizing::new(open_with(&generation.wrapping_key(), aad, rest)?);
        let key: [u8; 32] = plain.as_slice().try_into().map_err(|_| Error::Integrity)?;
        Ok(zeroize::Zeroizing::new(key))
    }
}

/// A fresh random 256-bit key (a backup's archive key).
pub fn random_key() -> zeroize::Zeroizing<[u8; 32]> {
    zeroize::Zeroizing::new(random())
}

/// Seals `plaintext` under a standalone key: `format | nonce | ciphertext+tag`.
/// For blobs that are no secret version (a backup's body, a wrapped key).
pub fn seal_with_key(key: &[u8; 32], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    seal_with(key, aad, plaintext, &[FORMAT_V1])
}

/// Opens what [`seal_with_key`] sealed; `Integrity` on any mismatch.
pub fn open_with_key(key: &[u8; 32], aad: &[u8], sealed: &[u8]) -> Result<zeroize::Zeroizing<Vec<u8>>> {
    open_with(key, aad, split_format(sealed)?).map(zeroize::Zeroizing::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ciphertext_moved_to_another_row_fails() {
        let mk = MasterKey::generate();
        let (dk, wrapped) = mk.new_data_key("acme", 0);
        let aad = SecretAad { tenant_id: "acme", secret_id: "s1", version: 1 };
        let sealed = dk.seal(&aad, b"hunter2");
        assert_eq!(dk.open(&aad, &sealed).unwrap(), b"hunter2");
        for other in [
            SecretAad { tenant_id: "other", secret_id: "s1", version: 1 },
            SecretAad { tenant_id: "acme", secret_id: "s2", version: 1 },
            SecretAad { tenant_id: "acme", secret_id: "s1", version: 2 },
        ] {
            assert!(matches!(dk.open(&other, &sealed), Err(Error::Integrity)));
        }
        assert!(mk.unwrap_data_key("other", 0, &wrapped).is_err());
        let dk2 = mk.unwrap_data_key("acme", 0, &wrapped).unwrap();
        assert_eq!(dk2.open(&aad, &sealed).unwrap(), b"hunter2");
    }

    /// The ciphers a data key keeps change nothing it answers, stay bounded,
    /// and a blob with a forged salt is refused without taking a place.
    #[test]
    fn kept_ciphers_answer_as_fresh_ones() {
        let mk = MasterKey::generate();
        let (dk, wrapped) = mk.new_data_key("t", 0);
        let aad = |v: usize| SecretAad { tenant_id: "t", secret_id: "s", version: v as i64 };
        let n = OPENED_PER_TENANT + 10;
        let blobs: Vec<Vec<u8>> = (1..=n).map(|v| dk.seal(&aad(v), format!("value {v}").as_bytes())).collect();
        let fresh = mk.unwrap_data_key("t", 0, &wrapped).unwrap();
        for _ in 0..2 {
            for (i, blob) in blobs.iter().enumerate() {
                let want = format!("value {}", i + 1).into_bytes();
                assert_eq!(dk.open(&aad(i + 1), blob).unwrap(), want);
                assert_eq!(fresh.open(&aad(i + 1), blob).unwrap(), want);
                assert!(matches!(dk.open(&aad(i + 2), blob), Err(Error::Integrity)), "a kept cipher still checks the AAD");
            }
        }
        let kept = || dk.current.opened.read().unwrap().len();
        assert!((1..=OPENED_PER_TENANT).contains(&kept()));
        let before = kept();
        let mut forged = blobs[n - 1].clone();
        forged[1] ^= 1;
        assert!(matches!(dk.open(&aad(n), &forged), Err(Error::Integrity)));
        assert_eq!(kept(), before);
    }

    #[test]
    fn the_aad_is_the_v1_text() {
        let aad = SecretAad { tenant_id: "acme", secret_id: "s1", version: -3 };
        assert_eq!(aad.bytes(), b"latchkey/secret/v1|acme|s1|-3");
    }

    #[test]
    fn same_value_never_seals_the_same_way() {
        let (dk, _) = MasterKey::generate().new_data_key("t", 0);
        let aad = SecretAad { tenant_id: "t", secret_id: "s", version: 1 };
        assert_ne!(dk.seal(&aad, b"v"), dk.seal(&aad, b"v"));
    }

    #[test]
    fn a_sealer_used_twice_never_repeats_its_nonce() {
        let (dk, _) = MasterKey::generate().new_data_key("t", 0);
        let sealer = dk.sealer();
        let (first, again) =
            (SecretAad { tenant_id: "t", secret_id: "s", version: 2 }, SecretAad { tenant_id: "t", secret_id: "s", version: 3 });
        let (a, b) = (sealer.seal(&first, b"v"), sealer.seal(&again, b"v"));
        let nonce = |blob: &[u8]| blob[1 + SALT_LEN..1 + SALT_LEN + NONCE_LEN].to_vec();
        assert_eq!(a[..1 + SALT_LEN], b[..1 + SALT_LEN], "one sealer, one salt");
        assert_ne!(nonce(&a), nonce(&b));
        assert_eq!(dk.open(&first, &a).unwrap(), b"v");
        assert_eq!(dk.open(&again, &b).unwrap(), b"v");
    }

    /// After a rotation, what generation 0 sealed (the V1 layout) and what
    /// generation 2 seals both open with the key that holds both; a key
    /// without the old generation refuses the old blob, and a wrapping made
    /// for one generation does not unwrap as another.
    #[test]
    fn generations_open_what_they_sealed() {
        let mk = MasterKey::generate();
        let (g0, w0) = mk.new_data_key("t", 0);
        let (g2, w2) = mk.new_data_key("t", 2);
        let aad = SecretAad { tenant_id: "t", secret_id: "s", version: 1 };
        let old = g0.seal(&aad, b"old");
        assert_eq!((old[0], blob_generation(&old)), (FORMAT_V1, Some(0)));
        let wrapped_old = g0.wrap_key(b"k", &[7; 32]);
        let both = g2.with_older(vec![mk.unwrap_data_key("t", 0, &w0).unwrap()]);
        let new = both.seal(&aad, b"new");
        assert_eq!((new[0], blob_generation(&new), both.generation()), (FORMAT_V2, Some(2), 2));
        assert_eq!(both.open(&aad, &old).unwrap(), b"old");
        assert_eq!(both.open(&aad, &new).unwrap(), b"new");
        assert!(both.opens(&old) && both.opens(&new));
        assert_eq!(*both.unwrap_key(b"k", &wrapped_old).unwrap(), [7; 32]);
        assert_eq!(*both.unwrap_key(b"k", &both.wrap_key(b"k", &[9; 32])).unwrap(), [9; 32]);
        let only_new = mk.unwrap_data_key("t", 2, &w2).unwrap();
        assert!(!only_new.opens(&old));
        assert!(matches!(only_new.open(&aad, &old), Err(Error::Integrity)));
        assert_eq!(only_new.open(&aad, &new).unwrap(), b"new");
        assert!(mk.unwrap_data_key("t", 1, &w2).is_err(), "a wrapping is bound to its generation");
        assert!(mk.unwrap_data_key("t", 0, &w2).is_err());
        let mut zero_as_v2 = vec![FORMAT_V2, 0, 0, 0, 0];
        zero_as_v2.extend_from_slice(&old[1..]);
        assert!(matches!(both.open(&aad, &zero_as_v2), Err(Error::Integrity)), "generation 0 is only ever V1");
        assert_ne!(g0.fingerprint(b"v"), both.fingerprint(b"v"), "a rotation changes fingerprints");
    }

    #[test]
    fn key_check_rejects_another_key() {
        let a = MasterKey::generate();
        let check = a.key_check();
        assert!(a.verify_key_check(&check));
        assert!(!MasterKey::generate().verify_key_check(&check));
    }
}
