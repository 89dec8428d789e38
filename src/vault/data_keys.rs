//! The tenants' data keys as a vault holds them, and their rotation
//! (`POST /api/v1/tenant/rotate-key`).
//!
//! A rotation makes a new generation of the tenant's data key current in one
//! transaction: from its commit every new value, in this process at once, is
//! sealed under it. The old generation is kept (wrapped by the master key,
//! like the current one): every blob names the generation that sealed it, so
//! reads open old and new alike throughout. A background pass then seals the
//! tenant's versions again under the new generation, in bounded batches, each
//! committing its rows with the pass's cursor under a lease: a crash resumes
//! after the last batch, and two replicas never work one tenant.
//!
//! Other replicas learn of a rotation within `--key-rotation-poll-ms` (their
//! worker looks for new ones) or at once when they meet a blob of a
//! generation they do not hold. The pass starts only after three polls, when
//! every replica seals under the new generation, so one pass leaves no
//! version behind; a value sealed under an old generation later (a replica
//! that missed the polls) still opens, and the next rotation reseals it.
//!
//! Retired generations stay: the claims, share links, webhook signing
//! secrets and backups sealed under them keep opening, as AWS KMS and Vault's
//! transit engine keep old key versions.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::principal::{Permission, Principal, WithDetail};
use super::views::time;
use super::{Vault, audited};
use crate::crypto::{DataKey, SecretAad, blob_generation};
use crate::error::{Error, Result};
use crate::store::keyring::{DONE, KeyRotationRow, Reseal};
use crate::store::{Millis, now_millis};

/// Batches one worker turn takes (one turn per tick): at the defaults, 10 000
/// versions a second, with the writer free between batches.
const BATCHES_PER_TURN: usize = 20;
/// Who the entry that ends a pass names.
pub const RESEALER: &str = "key-rotation";
/// How far back a replica looks for rotations it may not have heard of (more
/// than any clock skew between replicas).
const LOOK_BACK_MS: Millis = 10 * 60_000;

/// A tenant's data key, as `GET /api/v1/tenant/key` shows it (never the key).
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataKeyView {
    /// The generation that seals everything new: 0 until the first rotation.
    pub generation: i64,
    /// Earlier generations, kept to open what they sealed.
    pub retired_generations: Vec<i64>,
    /// The latest rotation, if there was one.
    pub rotation: Option<KeyRotationView>,
}

/// A data-key rotation and its background pass.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyRotationView {
    /// The generation the tenant moved to.
    pub generation: i64,
    /// `running` while versions are being sealed again; `done` once every
    /// version is under the new generation.
    pub state: String,
    pub started_at: DateTime<Utc>,
    /// The key (or owner) that started it.
    pub started_by: String,
    pub finished_at: Option<DateTime<Utc>>,
    /// Versions sealed again under the new generation so far.
    pub resealed: i64,
    /// Versions the tenant has now, every secret and version together.
    pub versions: i64,
}

/// A stored generation number as the key functions take it; a row holding
/// none (negative, too large) is a damaged one.
pub(crate) fn generation(n: i64) -> Result<u32> {
    u32::try_from(n).map_err(|_| Error::Integrity)
}

impl Vault {
    /// The tenant's data key as cached: what sealing uses. A replica that has
    /// not heard of a rotation yet seals under the generation before it,
    /// which stays readable (see the module's doc).
    pub(crate) async fn data_key(&self, tenant_id: &str) -> Result<Arc<DataKey>> {
        if let Some(k) = self.data_keys.read().expect("lock").get(tenant_id) {
            return Ok(k.clone());
        }
        self.fresh_data_key(tenant_id).await
    }

    /// The tenant's data key as cached if it holds the generation that
    /// sealed `blob`, else read again: what opening a stored blob uses. The
    /// check is one byte (and four for a rotated tenant) of the blob.
    pub(crate) async fn key_for(&self, tenant_id: &str, blob: &[u8]) -> Result<Arc<DataKey>> {
        let key = self.data_key(tenant_id).await?;
        if key.opens(blob) || blob_generation(blob).is_none() {
            return Ok(key);
        }
        self.fresh_data_key(tenant_id).await
    }

    /// The tenant's data key read from the database now, every generation,
    /// and cached.
    pub(crate) async fn fresh_data_key(&self, tenant_id: &str) -> Result<Arc<DataKey>> {
        let keys = self.store.keyring().tenant_keys(tenant_id).await?.ok_or_else(|| Error::internal("tenant row vanished"))?;
        let mut older = Vec::with_capacity(keys.older.len());
        for (n, wrapped) in &keys.older {
            older.push(self.master.unwrap_data_key(tenant_id, generation(*n)?, wrapped)?);
        }
        let key = Arc::new(self.master.unwrap_data_key(tenant_id, generation(keys.generation)?, &keys.current)?.with_older(older));
        self.data_keys.write().expect("lock").insert(tenant_id.to_owned(), key.clone());
        Ok(key)
    }

    /// `POST /api/v1/tenant/rotate-key` (admin keys with no project scope,
    /// and owners): a new generation seals everything from now on; the pass
    /// reseals the versions in the background. 409 while one is running.
    pub async fn rotate_data_key(&self, p: &Principal) -> Result<DataKeyView> {
        audited!(self, p, "tenant.key_rotated", "tenant", Some(&p.tenant_id), self.rotate_data_key_inner(p).await)
    }

    async fn rotate_data_key_inner(&self, p: &Principal) -> Result<DataKeyView> {
        self.key_caller(p)?;
        let keys = self.store.keyring().tenant_keys(&p.tenant_id).await?.ok_or_else(|| Error::internal("tenant row vanished"))?;
        let next = keys.generation + 1;
        let (_, wrapped) = self.master.new_data_key(&p.tenant_id, generation(next)?);
        let audit = p
            .audit("tenant.key_rotated", "tenant", Some(&p.tenant_id), "success")
            .detail(serde_json::json!({ "from": keys.generation, "generation": next }));
        self.store.keyring().start_key_rotation(&p.tenant_id, keys.generation, &wrapped, &p.key_id, &audit).await?;
        self.fresh_data_key(&p.tenant_id).await?;
        self.data_key_view(&p.tenant_id).await
    }

    /// `GET /api/v1/tenant/key`: the generation and the latest rotation's progress.
    pub async fn data_key_state(&self, p: &Principal) -> Result<DataKeyView> {
        audited!(self, p, "tenant.key_viewed", "tenant", Some(&p.tenant_id), {
            match self.key_caller(p) {
                Ok(()) => self.data_key_view(&p.tenant_id).await,
                Err(e) => Err(e),
            }
        })
    }

    fn key_caller(&self, p: &Principal) -> Result<()> {
        if p.is_owner() {
            return Ok(());
        }
        p.require(Permission::Admin)?;
        p.require_key("manage the tenant's data key")?;
        if p.project_scope.is_some() {
            return Err(Error::ScopeDenied("the data key covers every project: use an admin key with no project scope".into()));
        }
        Ok(())
    }

    async fn data_key_view(&self, tenant_id: &str) -> Result<DataKeyView> {
        let keys = self.store.keyring().tenant_keys(tenant_id).await?.ok_or_else(|| Error::internal("tenant row vanished"))?;
        let rotation = match self.store.keyring().key_rotation(tenant_id).await? {
            None => None,
            Some(r) => Some(KeyRotationView {
                generation: r.generation,
                started_at: time(r.started_at, "key_rotations", &r.tenant_id, "started_at")?,
                finished_at: r.finished_at.map(|at| time(at, "key_rotations", &r.tenant_id, "finished_at")).transpose()?,
                state: r.state,
                started_by: r.started_by,
                resealed: r.resealed,
                versions: self.store.keyring().count_versions(tenant_id).await?,
            }),
        };
        Ok(DataKeyView { generation: keys.generation, retired_generations: keys.older.iter().map(|(n, _)| *n).collect(), rotation })
    }

    /// Drops the cached keys of tenants rotated (by any replica) since
    /// `since` to a generation this process does not seal under yet.
    async fn forget_rotated_keys(&self, since: Millis) -> Result<()> {
        for (tenant_id, generation) in self.store.keyring().key_rotations_since(since).await? {
            let mut keys = self.data_keys.write().expect("lock");
            if keys.get(&tenant_id).is_some_and(|k| i64::from(k.generation()) < generation) {
                keys.remove(&tenant_id);
            }
        }
        Ok(())
    }

    /// One turn of the pass: takes a running rotation whose grace has passed
    /// and whose lease is free (or ours), and reseals up to
    /// [`BATCHES_PER_TURN`] batches of its versions. Returns whether it did
    /// any work.
    pub async fn reseal_turn(&self, instance: &str, stop: &CancellationToken) -> Result<bool> {
        let poll = millis(self.config.key_rotation_poll);
        let (grace, lease) = (3 * poll, 30 * poll);
        let now = now_millis();
        let Some(mut row) = self.store.keyring().lease_key_rotation(instance, now, now + lease, now - grace).await? else {
            return Ok(false);
        };
        let key = self.fresh_data_key(&row.tenant_id).await?;
        if i64::from(key.generation()) != row.generation {
            return Err(Error::internal("a running rotation's generation is not the tenant's"));
        }
        for _ in 0..BATCHES_PER_TURN {
            if stop.is_cancelled() {
                break;
            }
            if !self.reseal_batch(&mut row, &key, instance, grace, lease).await? || row.state == DONE {
                break;
            }
        }
        Ok(true)
    }

    /// One batch; `false` when the lease was lost.
    async fn reseal_batch(&self, row: &mut KeyRotationRow, key: &DataKey, instance: &str, grace: Millis, lease: Millis) -> Result<bool> {
        let now = now_millis();
        if row.pass_started_at.is_none() {
            row.passes += 1;
            row.pass_started_at = Some(now);
            row.cursor_secret = None;
            row.cursor_version = None;
        }
        let limit = self.config.key_rotation_batch;
        let after = row.cursor_secret.as_deref().zip(row.cursor_version);
        let versions = self.store.keyring().versions_after(&row.tenant_id, after, limit).await?;
        let mut reseals = Vec::new();
        for v in &versions {
            if blob_generation(&v.sealed) == Some(key.generation()) {
                continue;
            }
            let aad = SecretAad { tenant_id: &row.tenant_id, secret_id: &v.secret_id, version: v.version };
            match key.open(&aad, &v.sealed) {
                Ok(plain) => {
                    let plain = zeroize::Zeroizing::new(plain);
                    reseals.push(Reseal {
                        secret_id: v.secret_id.clone(),
                        version: v.version,
                        old: v.sealed.clone(),
                        new: key.seal(&aad, &plain),
                    });
                }
                // Left as it is: an integrity failure is the sign of a
                // tampered row, and resealing cannot mend it.
                Err(e) => {
                    tracing::error!(tenant = %row.tenant_id, secret = %v.secret_id, version = v.version, "cannot reseal a version: {e}")
                }
            }
        }
        if let Some(last) = versions.last() {
            row.cursor_secret = Some(last.secret_id.clone());
            row.cursor_version = Some(last.version);
        }
        row.leased_until = now + lease;
        if (versions.len() as i64) < limit {
            // The pass is over. It is the last if it began once every replica
            // sealed under the new generation; else another one follows.
            if row.pass_started_at.is_some_and(|at| at >= row.started_at + grace) {
                row.state = DONE.into();
                row.finished_at = Some(now);
                row.leased_until = 0;
            } else {
                row.pass_started_at = None;
            }
        }
        let saved = self.store.keyring().save_key_rotation(row, instance, &reseals).await?;
        if saved && row.state == DONE {
            let audit = super::Origin::new(super::Front::Job)
                .audit(Some(&row.tenant_id), RESEALER, "tenant.key_resealed", "tenant", Some(&row.tenant_id), "success")
                .detail(serde_json::json!({ "generation": row.generation, "passes": row.passes }));
            self.record(audit).await?;
            tracing::info!(tenant = %row.tenant_id, generation = row.generation, "data-key rotation finished: every version is sealed under the new key");
        }
        Ok(saved)
    }
}

fn millis(d: Duration) -> Millis {
    Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX)
}

/// Every `--key-rotation-poll-ms`: forgets cached keys that a rotation
/// elsewhere replaced, and works the pass of running rotations, until `stop`.
pub async fn run_until(vault: Arc<Vault>, stop: CancellationToken) {
    let instance = uuid::Uuid::new_v4().to_string();
    let (vault, stop, instance) = (&vault, &stop, instance.as_str());
    super::jobs::every(vault.config().key_rotation_poll, stop, move || async move {
        if let Err(e) = vault.forget_rotated_keys(now_millis() - LOOK_BACK_MS).await {
            tracing::warn!("looking for data-key rotations failed: {}", e.public_message_with_cause());
        }
        if let Err(e) = vault.reseal_turn(instance, stop).await {
            tracing::warn!("resealing versions under a new data key failed: {}", e.public_message_with_cause());
        }
    })
    .await
}
