//! The tenant backup archive, format 1:
//!
//! ```text
//! "LKBACKUP" | format (1 byte) | header length (u32, big-endian) | header (JSON) | body
//! ```
//!
//! The header says what the archive holds (ids, name, time, counts) and how
//! to open it: the archive key wrapped by the tenant's data key (HKDF-derived
//! wrapping key, AAD `latchkey/backup-key/v1|{backupId}|{tenantId}`) and,
//! when a passphrase was given, by a PBKDF2-HMAC-SHA256 key (salt and
//! iterations in the header, AAD `…|{backupId}|passphrase`). The body is one
//! AES-256-GCM blob under the archive key whose AAD is everything before it,
//! so a header edited by hand (a count, the tenant, a wrapped key) makes the
//! body fail to open. The body's plaintext is JSON ([`Body`]): values as
//! base64, zeroized when dropped.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use crate::crypto::DataKey;
use crate::crypto::keys::{open_with_key, random_key, seal_with_key};
use crate::error::{Error, Result};
use crate::store::Millis;

const MAGIC: &[u8; 8] = b"LKBACKUP";
const FORMAT: u8 = 1;
/// PBKDF2 rounds for a backup passphrase: OWASP's 2023 floor, as for the master passphrase.
pub const PASSPHRASE_ITERATIONS: u32 = crate::crypto::master::PASSPHRASE_ITERATIONS;
/// The largest header a reader accepts (a header is a few hundred bytes).
const MAX_HEADER: usize = 64 * 1024;

/// What the archive holds and how it opens; bound to the body as AAD.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Header {
    pub format: u8,
    pub backup_id: String,
    pub name: String,
    pub tenant_id: String,
    pub created_at: Millis,
    pub secrets: i64,
    pub versions: i64,
    pub projects: i64,
    /// The archive key wrapped for the tenant (base64).
    pub tenant_wrapped: String,
    pub passphrase: Option<PassphraseWrap>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PassphraseWrap {
    /// `pbkdf2-sha256`.
    pub kdf: String,
    pub iterations: u32,
    pub salt: String,
    pub wrapped: String,
}

/// The sealed content: the tenant's data, values included.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Body {
    pub secrets: Vec<Secret>,
    pub projects: Vec<Project>,
    pub environments: Vec<Environment>,
    pub templates: Vec<Template>,
    pub rotation_policies: Vec<Policy>,
    pub retirements: Vec<Retirement>,
    pub settings: Settings,
}

/// What "settings" covers: the tenant's approval policy. Plans, keys,
/// owners and the audit trail are never in an archive.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    pub gate_sensitive: bool,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Secret {
    pub id: String,
    pub project_id: Option<String>,
    pub environment: String,
    pub name: String,
    pub secret_type: String,
    pub description: Option<String>,
    /// JSON array, as stored.
    pub tags: String,
    pub current_version: i64,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub access_tier: String,
    pub exposure: String,
    /// JSON array, as stored.
    pub bindings: String,
    pub expires_at: Option<Millis>,
    pub deleted_at: Option<Millis>,
    pub max_versions: Option<i64>,
    pub retiring_version: Option<i64>,
    pub retiring_until: Option<Millis>,
    pub versions: Vec<Version>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Version {
    pub version: i64,
    /// The value, base64.
    pub value: String,
    pub created_at: Millis,
    pub created_by: String,
}

impl Drop for Version {
    fn drop(&mut self) {
        self.value.zeroize();
    }
}

impl std::fmt::Debug for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Version").field("version", &self.version).finish_non_exhaustive()
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Project {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub tags: String,
    pub created_at: Millis,
    pub updated_at: Millis,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Environment {
    pub project_id: String,
    pub name: String,
    pub created_at: Millis,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Template {
    pub project_id: String,
    pub name: String,
    pub description: Option<String>,
    pub required: bool,
    pub created_at: Millis,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    pub id: String,
    pub secret_id: String,
    pub schedule: String,
    pub alert_days_before: Option<i64>,
    pub generator: Option<String>,
    pub grace_period_ms: i64,
    pub next_run_at: Millis,
    pub alerted_for: Option<Millis>,
    pub last_rotated_at: Option<Millis>,
    pub created_by: String,
    pub created_at: Millis,
    pub updated_at: Millis,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Retirement {
    pub secret_id: String,
    pub version: i64,
    pub rotated_at: Millis,
    pub retired_at: Millis,
}

pub fn encode_value(value: &[u8]) -> String {
    B64.encode(value)
}

pub fn decode_value(text: &str) -> Result<Zeroizing<Vec<u8>>> {
    B64.decode(text).map(Zeroizing::new).map_err(|_| not_an_archive("a value is not base64"))
}

fn not_an_archive(why: &str) -> Error {
    Error::InvalidRequest(format!("this is not a readable Latchkey backup archive ({why})"))
}

fn tenant_aad(backup_id: &str, tenant_id: &str) -> Vec<u8> {
    format!("latchkey/backup-key/v1|{backup_id}|{tenant_id}").into_bytes()
}

fn passphrase_aad(backup_id: &str) -> Vec<u8> {
    format!("latchkey/backup-key/v1|{backup_id}|passphrase").into_bytes()
}

fn body_aad(prefix: &[u8]) -> Vec<u8> {
    let mut aad = b"latchkey/backup/v1|".to_vec();
    aad.extend_from_slice(prefix);
    aad
}

/// The key a passphrase gives under `salt`: slow on purpose, so run it off
/// the async threads.
fn passphrase_key(passphrase: &str, salt: &[u8], iterations: u32) -> Zeroizing<[u8; 32]> {
    Zeroizing::new(crate::crypto::pbkdf2::pbkdf2_sha256(passphrase.as_bytes(), salt, iterations))
}

/// Seals `body` into an archive for `header`'s tenant (counts and ids as
/// the caller filled them; the wrapped keys are filled here).
pub fn seal(mut header: Header, body: &Body, data_key: &DataKey, passphrase: Option<&str>) -> Result<Vec<u8>> {
    let key = random_key();
    header.format = FORMAT;
    header.tenant_wrapped = B64.encode(data_key.wrap_key(&tenant_aad(&header.backup_id, &header.tenant_id), &key));
    header.passphrase = passphrase.map(|pass| {
        let salt: [u8; 16] = *random_key().first_chunk().expect("32 bytes");
        let pkey = passphrase_key(pass, &salt, PASSPHRASE_ITERATIONS);
        PassphraseWrap {
            kdf: "pbkdf2-sha256".into(),
            iterations: PASSPHRASE_ITERATIONS,
            salt: B64.encode(salt),
            wrapped: B64.encode(seal_with_key(&pkey, &passphrase_aad(&header.backup_id), key.as_ref())),
        }
    });
    let header_json = serde_json::to_vec(&header).map_err(Error::internal)?;
    let mut out = Vec::with_capacity(13 + header_json.len());
    out.extend_from_slice(MAGIC);
    out.push(FORMAT);
    out.extend_from_slice(&u32::try_from(header_json.len()).map_err(Error::internal)?.to_be_bytes());
    out.extend_from_slice(&header_json);
    let plain = Zeroizing::new(serde_json::to_vec(body).map_err(Error::internal)?);
    let sealed = seal_with_key(&key, &body_aad(&out), &plain);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// The header of an archive, read without opening it, and where the body starts.
pub fn read_header(archive: &[u8]) -> Result<(Header, usize)> {
    let rest = archive.strip_prefix(MAGIC.as_slice()).ok_or_else(|| not_an_archive("no LKBACKUP magic"))?;
    let (&format, rest) = rest.split_first().ok_or_else(|| not_an_archive("cut short"))?;
    if format != FORMAT {
        return Err(Error::InvalidRequest(format!("backup archive format {format} is not one this server reads (it reads {FORMAT})")));
    }
    let len = rest.first_chunk::<4>().map(|b| u32::from_be_bytes(*b) as usize).ok_or_else(|| not_an_archive("cut short"))?;
    if len > MAX_HEADER || rest.len() < 4 + len {
        return Err(not_an_archive("bad header length"));
    }
    let header: Header = serde_json::from_slice(&rest[4..4 + len]).map_err(|_| not_an_archive("the header does not parse"))?;
    if header.format != FORMAT {
        return Err(not_an_archive("the header's format differs"));
    }
    Ok((header, MAGIC.len() + 1 + 4 + len))
}

/// How an archive is to be opened.
pub enum Unlock<'a> {
    /// The tenant's data key (an archive this tenant made on this server).
    Tenant {
        tenant_id: &'a str,
        key: &'a DataKey,
    },
    Passphrase(&'a str),
}

/// Whether the tenant's key opens the archive's key.
pub fn tenant_opens(header: &Header, tenant_id: &str, key: &DataKey) -> bool {
    header.tenant_id == tenant_id
        && B64.decode(&header.tenant_wrapped).ok().is_some_and(|w| key.unwrap_key(&tenant_aad(&header.backup_id, tenant_id), &w).is_ok())
}

/// Opens an archive's body. A wrong passphrase (or a key that is not the
/// archive's) is `None`; a damaged archive is an error.
pub fn open(archive: &[u8], unlock: Unlock<'_>) -> Result<Option<(Header, Body)>> {
    let (header, start) = read_header(archive)?;
    let key = match unlock {
        Unlock::Tenant { tenant_id, key } => {
            if header.tenant_id != tenant_id {
                return Ok(None);
            }
            let wrapped = B64.decode(&header.tenant_wrapped).map_err(|_| not_an_archive("bad wrapped key"))?;
            match key.unwrap_key(&tenant_aad(&header.backup_id, tenant_id), &wrapped) {
                Ok(k) => k,
                Err(_) => return Ok(None),
            }
        }
        Unlock::Passphrase(pass) => {
            let Some(w) = &header.passphrase else { return Ok(None) };
            if w.kdf != "pbkdf2-sha256" || !(PASSPHRASE_ITERATIONS..=10_000_000).contains(&w.iterations) {
                return Err(not_an_archive("unknown key derivation"));
            }
            let salt = B64.decode(&w.salt).map_err(|_| not_an_archive("bad salt"))?;
            let wrapped = B64.decode(&w.wrapped).map_err(|_| not_an_archive("bad wrapped key"))?;
            let pkey = passphrase_key(pass, &salt, w.iterations);
            match open_with_key(&pkey, &passphrase_aad(&header.backup_id), &wrapped) {
                Ok(plain) => {
                    let k: [u8; 32] = plain.as_slice().try_into().map_err(|_| not_an_archive("bad wrapped key"))?;
                    Zeroizing::new(k)
                }
                Err(_) => return Ok(None),
            }
        }
    };
    let plain = open_with_key(&key, &body_aad(&archive[..start]), &archive[start..])
        .map_err(|_| not_an_archive("its body fails its integrity check: damaged or edited"))?;
    let body: Body = serde_json::from_slice(&plain).map_err(|_| not_an_archive("the body does not parse"))?;
    Ok(Some((header, body)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKey;

    fn header() -> Header {
        Header {
            format: FORMAT,
            backup_id: "b1".into(),
            name: "n".into(),
            tenant_id: "acme".into(),
            created_at: 1,
            secrets: 0,
            versions: 0,
            projects: 0,
            tenant_wrapped: String::new(),
            passphrase: None,
        }
    }

    #[test]
    fn opens_with_its_tenant_key_only_and_refuses_an_edited_header() {
        let mk = MasterKey::generate();
        let (dk, _) = mk.new_data_key("acme", 0);
        let (other, _) = mk.new_data_key("acme", 0);
        let archive = seal(header(), &Body::default(), &dk, None).unwrap();
        assert!(open(&archive, Unlock::Tenant { tenant_id: "acme", key: &dk }).unwrap().is_some());
        assert!(open(&archive, Unlock::Tenant { tenant_id: "acme", key: &other }).unwrap().is_none());
        assert!(open(&archive, Unlock::Passphrase("x")).unwrap().is_none());
        let (_, start) = read_header(&archive).unwrap();
        let text = String::from_utf8(archive[13..start].to_vec()).unwrap().replace("\"name\":\"n\"", "\"name\":\"m\"");
        let mut edited = archive[..9].to_vec();
        edited.extend_from_slice(&(text.len() as u32).to_be_bytes());
        edited.extend_from_slice(text.as_bytes());
        edited.extend_from_slice(&archive[start..]);
        assert!(open(&edited, Unlock::Tenant { tenant_id: "acme", key: &dk }).is_err());
    }
}
