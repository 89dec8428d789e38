//! Background erasure: values whose hand-off has ended are erased even when
//! nothing asks for them again. `latchkey serve` runs [`Vault::sweep`]
//! every minute.

use super::Vault;
use crate::error::Result;
use crate::store::now_millis;

impl Vault {
    /// Erases the ciphertexts of share links that expired, were used up
    /// or were revoked (one UPDATE).
    pub async fn sweep(&self) -> Result<()> {
        self.store.shares().erase_ended_shares(None, now_millis()).await?;
        Ok(())
    }
}
