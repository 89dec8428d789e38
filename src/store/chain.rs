//! The audit trail's hash chain (issue 27): each chain (a tenant's entries;
//! `''` for entries without a tenant) numbers its entries 1, 2, 3 …
//! (`chain_seq`), and each entry carries `chain_hash`, an HMAC-SHA256 under a
//! random key kept in `meta` wrapped by the master key (so a master-key
//! rotation rewraps it and older links still verify) over a length-prefixed encoding of the
//! chain, the position, the previous entry's hash and every stored field.
//! Editing, deleting or reordering rows breaks the links; `audit_chain_heads`
//! holds each chain's last position and hash, so deleting the last entries
//! shows too.
//!
//! How appends stay a chain whoever writes (one process, a CLI next to a
//! server on SQLite, many replicas on PostgreSQL):
//! - The migration's unique index on `(COALESCE(tenant_id, ''), chain_seq)`
//!   lets only one entry take a position: a writer that links from a stale
//!   head fails instead of forking the chain, and nothing it wrote commits.
//! - Every append advances the head in the same transaction or statement as
//!   its rows, and an entry left out (a refused credential) is never linked:
//!   the batch is linked again without it (see the audit batches), so a
//!   refusal leaves no gap.
//! - Writes in a transaction read the head under lock (`lock_head`). The
//!   audited-read batches link from a head cached in the process ([`Heads`]),
//!   so the common case costs no extra round trip; when another process moved
//!   a head, the insert fails on the unique index and the batch is linked
//!   again from heads read under lock.
//!
//! The key is process-wide ([`set_key`], from `Vault::open`): one process
//! serves one vault.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::AuditRow;

/// The hash before a chain's first entry.
pub const GENESIS: [u8; 32] = [0; 32];

/// The HMAC keyed with the chain key, cloned for each entry: keying costs
/// two SHA-256 blocks, which every entry would pay again.
static KEYED: OnceLock<Hmac<Sha256>> = OnceLock::new();

/// Sets the chain key for this process (the first call wins: one process
/// serves one master key).
pub fn set_key(key: Zeroizing<[u8; 32]>) {
    let _ = KEYED.set(<Hmac<Sha256> as Mac>::new_from_slice(key.as_ref()).expect("HMAC takes any key length"));
}

fn keyed() -> Hmac<Sha256> {
    // A store used without a vault (its own unit tests) chains under zeros:
    // such rows do not verify under any real key.
    KEYED.get().cloned().unwrap_or_else(|| <Hmac<Sha256> as Mac>::new_from_slice(&GENESIS).expect("HMAC takes any key length"))
}

/// The chain an entry belongs to.
pub fn chain_of(a: &AuditRow) -> &str {
    a.tenant_id.as_deref().unwrap_or("")
}

/// A chain's last position and hash (position 0 and [`GENESIS`] when empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub seq: i64,
    pub hash: Vec<u8>,
}

impl Default for Head {
    fn default() -> Self {
        Head { seq: 0, hash: GENESIS.to_vec() }
    }
}

/// The keyed hash of entry `a` at position `seq` of `chain`, after `prev`.
/// Each field is written with its length (or a marker for NULL), so no two
/// different entries encode alike.
pub fn hash(chain: &str, seq: i64, prev: &[u8], a: &AuditRow) -> Vec<u8> {
    let mut mac = keyed();
    let mut text = |t: Option<&str>| match t {
        None => mac.update(&[0]),
        Some(t) => {
            mac.update(&[1]);
            mac.update(&(t.len() as u64).to_be_bytes());
            mac.update(t.as_bytes());
        }
    };
    text(Some("latchkey audit v1"));
    text(Some(chain));
    text(Some(itoa::Buffer::new().format(seq)));
    // On the stack for a hash's 32 bytes; a damaged head of another length
    // still hashes (and fails to verify).
    let mut buf = [0u8; 64];
    let prev_hex: std::borrow::Cow<'_, str> = if prev.len() <= 32 { hex_into(prev, &mut buf).into() } else { hex(prev).into() };
    text(Some(&prev_hex));
    text(Some(itoa::Buffer::new().format(a.at)));
    for field in [
        a.tenant_id.as_deref(),
        Some(a.actor.as_str()),
        Some(a.front.as_str()),
        Some(a.action.as_str()),
        Some(a.resource_type.as_str()),
        a.resource_id.as_deref(),
        Some(a.outcome.as_str()),
        a.ip.as_deref(),
        a.user_agent.as_deref(),
        a.detail.as_deref(),
        a.client.as_deref(),
        a.tool.as_deref(),
        a.reason.as_deref(),
    ] {
        text(field);
    }
    mac.finalize().into_bytes().to_vec()
}

/// Lowercase hex (also how SQLite's batches hand hashes over in JSON).
pub fn hex(bytes: &[u8]) -> String {
    let mut out = vec![0u8; bytes.len() * 2];
    hex_into(bytes, &mut out);
    String::from_utf8(out).expect("hex digits are ASCII")
}

/// Lowercase hex of `bytes` in `out` (twice as long), without allocating:
/// a link hashes its predecessor's hash as hex.
fn hex_into<'o>(bytes: &[u8], out: &'o mut [u8]) -> &'o str {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let out = &mut out[..bytes.len() * 2];
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = DIGITS[usize::from(b >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(b & 15)];
    }
    std::str::from_utf8(out).expect("hex digits are ASCII")
}

/// An entry's place in its chain: what `chain_seq` and `chain_hash` store.
pub type Link = (Option<i64>, Option<Vec<u8>>);

/// The position and hash of each of `rows`, in order, each after the head
/// of its chain in `heads` (missing: an empty chain); moves those heads on.
pub fn links(rows: &[AuditRow], heads: &mut HashMap<String, Head>) -> Vec<Link> {
    let mut out = Vec::with_capacity(rows.len());
    for a in rows {
        let chain = chain_of(a);
        if !heads.contains_key(chain) {
            heads.insert(chain.to_owned(), Head::default());
        }
        let head = heads.get_mut(chain).expect("inserted above");
        let seq = head.seq + 1;
        let h = hash(chain, seq, &head.hash, a);
        *head = Head { seq, hash: h.clone() };
        out.push((Some(seq), Some(h)));
    }
    out
}

/// [`links`] written into the rows.
pub fn link(rows: &mut [AuditRow], heads: &mut HashMap<String, Head>) {
    let linked = links(rows, heads);
    for (a, (seq, h)) in rows.iter_mut().zip(linked) {
        a.chain_seq = seq;
        a.chain_hash = h;
    }
}

/// The distinct chains of `rows`, sorted (heads are locked in this order).
pub fn chains(rows: &[AuditRow]) -> Vec<String> {
    let mut c: Vec<String> = rows.iter().map(|a| chain_of(a).to_owned()).collect();
    c.sort();
    c.dedup();
    c
}

/// The heads as this process last wrote or read them: a guess the unique
/// index checks, never trusted for correctness.
#[derive(Default)]
pub struct Heads(Mutex<HashMap<String, Head>>);

/// Most chains remembered; the cache starts over when full.
const REMEMBERED: usize = 4096;

impl Heads {
    /// The cached heads of `chains`, and the chains not cached.
    pub fn get(&self, chains: &[String]) -> (HashMap<String, Head>, Vec<String>) {
        let cache = self.0.lock().expect("not poisoned");
        let mut found = HashMap::new();
        let mut missing = Vec::new();
        for c in chains {
            match cache.get(c) {
                Some(h) => {
                    found.insert(c.clone(), h.clone());
                }
                None => missing.push(c.clone()),
            }
        }
        (found, missing)
    }

    /// Notes heads as committed.
    pub fn put(&self, heads: &HashMap<String, Head>) {
        let mut cache = self.0.lock().expect("not poisoned");
        if cache.len() + heads.len() > REMEMBERED {
            cache.clear();
        }
        cache.extend(heads.iter().map(|(k, v)| (k.clone(), v.clone())));
    }

    /// Forgets every head (another process wrote, or a write failed).
    pub fn clear(&self) {
        self.0.lock().expect("not poisoned").clear();
    }
}

/// Whether `e` is the unique index refusing a position another writer took.
pub fn position_taken(e: &sqlx::Error) -> bool {
    e.as_database_error().is_some_and(|d| d.message().contains("audit_chain_order"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_follow_each_chain() {
        let row = |t: Option<&str>| crate::vault::Origin::default().audit(t, "k", "secret.read", "secret", None, "success");
        let mut rows = vec![row(Some("a")), row(None), row(Some("a"))];
        let mut heads = HashMap::new();
        link(&mut rows, &mut heads);
        assert_eq!(rows.iter().map(|r| r.chain_seq.unwrap()).collect::<Vec<_>>(), [1, 1, 2]);
        assert_eq!(rows[2].chain_hash.as_deref().unwrap(), hash("a", 2, rows[0].chain_hash.as_ref().unwrap(), &rows[2]).as_slice());
        let mut edited = rows[2].clone();
        edited.actor = "other".into();
        assert_ne!(hash("a", 2, rows[0].chain_hash.as_ref().unwrap(), &edited), rows[2].chain_hash.clone().unwrap());
        assert_eq!(heads["a"].seq, 2);
    }

    #[test]
    fn hex_is_lowercase_and_a_long_head_still_hashes() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        let row = crate::vault::Origin::default().audit(Some("a"), "k", "secret.read", "secret", None, "success");
        // A damaged head longer than a hash takes the allocating path, and differs.
        assert_ne!(hash("a", 2, &[7; 40], &row), hash("a", 2, &[7; 32], &row));
    }
}
