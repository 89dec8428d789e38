//! Background erasure: what has ended keeps no ciphertext. A pending claim's
//! value is erased by the statement that ends it (redeemed, revoked) or the
//! first time its expiry is noticed, a share link's by the access that uses
//! it up or the revocation; this sweep, which `latchkey serve` runs with its
//! other background jobs (`--jobs-interval-ms`), erases the rest: values of expired claims and share links
//! nobody asked about since, and secrets soft-deleted longer ago than the
//! operator's retention (`--retention-days`), every version with them.

use super::Vault;
use crate::error::Result;
use crate::store::now_millis;

impl Vault {
    /// Erases the ciphertexts that outlived what they were kept for: one
    /// UPDATE per kind (expired claim tokens; share links expired, used up
    /// or revoked).
    pub async fn sweep(&self) -> Result<()> {
        let now = now_millis();
        let claims = self.store.claims().erase_expired_claims(now).await?;
        if claims > 0 {
            tracing::debug!(claims, "swept expired claim values");
        }
        self.store.shares().erase_ended_shares(None, now).await?;
        let purged = self.purge_expired_deletions().await?;
        if purged > 0 {
            tracing::info!(purged, "purged secrets deleted longer ago than the retention");
        }
        Ok(())
    }
}
