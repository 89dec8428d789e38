//! Where the master key comes from: `LATCHKEY_MASTER_KEY`, a passphrase, or a
//! key file created in the data directory on first start.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use zeroize::Zeroizing;

use super::MasterKey;
use crate::error::{Error, Result};

/// OWASP's 2023 floor for PBKDF2-HMAC-SHA256; runs once per process start.
pub const PASSPHRASE_ITERATIONS: u32 = 600_000;
pub const KEY_FILE: &str = "master.key";

pub fn from_base64(text: &str) -> Result<MasterKey> {
    let bytes =
        Zeroizing::new(B64.decode(text.trim()).map_err(|_| Error::InvalidRequest("LATCHKEY_MASTER_KEY is not valid base64".into()))?);
    let arr: [u8; 32] =
        bytes.as_slice().try_into().map_err(|_| Error::InvalidRequest("LATCHKEY_MASTER_KEY must be base64 of exactly 32 bytes".into()))?;
    Ok(MasterKey::from_bytes(arr))
}

pub fn from_passphrase(passphrase: &str, salt: &[u8]) -> MasterKey {
    MasterKey::from_bytes(super::pbkdf2::pbkdf2_sha256(passphrase.as_bytes(), salt, PASSPHRASE_ITERATIONS))
}

/// Reads the data directory's key file, creating it (mode 0600) when absent.
/// Returns the key and whether it was just created.
pub fn from_key_file(data_dir: &Path) -> Result<(MasterKey, bool)> {
    let path = data_dir.join(KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok((from_base64(&text)?, false)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = MasterKey::generate();
            let text = Zeroizing::new(B64.encode(key.expose()));
            write_private(&path, text.as_bytes()).map_err(|e| Error::internal(format_args!("writing {}: {e}", path.display())))?;
            Ok((key, true))
        }
        Err(e) => Err(Error::internal(format_args!("reading {}: {e}", path.display()))),
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// The key file a master-key rotation writes first (see [`write_next_key_file`]).
pub const NEXT_KEY_FILE: &str = "master.key.next";

/// Reads the data directory's next key file, if a rotation left one.
pub fn read_next_key_file(data_dir: &Path) -> Result<Option<MasterKey>> {
    let path = data_dir.join(NEXT_KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(from_base64(&text)?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::internal(format_args!("reading {}: {e}", path.display()))),
    }
}

/// Writes `key` as the data directory's next key file (0600, synced with
/// its directory) BEFORE the database is rewrapped under it, so the key the
/// data depends on is on disk whenever the commit may have happened.
pub fn write_next_key_file(data_dir: &Path, key: &MasterKey) -> Result<()> {
    let path = data_dir.join(NEXT_KEY_FILE);
    let text = Zeroizing::new(B64.encode(key.expose()));
    write_private(&path, text.as_bytes()).map_err(|e| Error::internal(format_args!("writing {}: {e}", path.display())))?;
    sync_dir(data_dir)
}

/// After the rewrap committed: the next key file becomes the key file.
pub fn promote_next_key_file(data_dir: &Path) -> Result<()> {
    let (from, to) = (data_dir.join(NEXT_KEY_FILE), data_dir.join(KEY_FILE));
    std::fs::rename(&from, &to).map_err(|e| Error::internal(format_args!("renaming {} to {}: {e}", from.display(), to.display())))?;
    sync_dir(data_dir)
}

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| Error::internal(format_args!("syncing {}: {e}", dir.display())))
}
