//! Envelope encryption and credential hashing.
//!
//! ```text
//! master key (KEK, from env / passphrase / key file)
//!   └─ wraps ─ tenant data key (random, one per tenant, stored wrapped)
//!                └─ HKDF(salt per version) ─ version key ─ AES-256-GCM(value, AAD = tenant|secret|version)
//! ```
//! PBKDF2 appears in [`master::from_passphrase`], run once at start, and in
//! share-link passwords ([`pbkdf2`], checked on a bounded pool).

pub mod keyring;
pub mod keys;
pub mod master;
pub mod pbkdf2;
pub mod tokens;

pub use keyring::Keyring;
pub use keys::{DataKey, MasterKey, SecretAad, blob_generation};
