//! A cache in front of a [`Store`] for the two reads on every hot request:
//! the API key behind a credential, and the current version of a secret.
//! With it an audited read costs no query of its own, only its share of an
//! audit group commit.
//!
//! Coherence, which a vault cannot trade away:
//! - Every write of this process goes through this type. What the write
//!   touches leaves the cache before the write starts, no read puts it back
//!   until the write has returned, and then it is dropped once more; a fill
//!   that raced with a drop is discarded (the generation moved). If a
//!   request may already have been served the entry, the epoch moves when
//!   the write starts, so a read that took it from the cache and commits its
//!   audit entry after that looks again in the database.
//! - Changes by other processes are noticed through
//!   [`Store::changed_elsewhere`]: SQLite's `data_version` on the writer
//!   connection, PostgreSQL's `LISTEN`. Each notice empties the cache and,
//!   if anything was served from it since the last notice, advances
//!   [`Store::change_epoch`]. Every audit batch answers the question as part
//!   of its own write, so a read whose epoch did not move until its audit
//!   commit was current; the vault repeats a read whose epoch moved, from the
//!   database.
//!   A poller asks at least every [`POLL`] for everything else. While a store
//!   cannot tell (PostgreSQL's `LISTEN` connection is down), nothing is cached.
//! - The cache holds ciphertext and key hashes, never a plaintext value or
//!   an API key, within a fixed byte budget.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;

use super::*;
use crate::error::Result;
use crate::telemetry::{CACHE, CacheCounters};

/// The longest a change by another process goes unnoticed while idle.
pub const POLL: Duration = Duration::from_millis(100);

/// Bytes of cached rows (mostly ciphertext) before the cache starts over.
const BUDGET: usize = 8 << 20;

pub struct CachedStore {
    inner: Arc<dyn Store>,
    state: RwLock<State>,
    epoch: AtomicU64,
    /// Set by `close`, so the poller stops before the pools do.
    closed: AtomicBool,
    /// Taken while a change check runs and its answer is applied: a check
    /// that found a change has moved the epoch before any other check can
    /// answer "no change" and let a read compare an epoch that is about to move.
    noticing: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct State {
    /// Moves on every drop; a fill carries the value it started with.
    generation: u64,
    keys: HashMap<Vec<u8>, KeyWithPlan>,
    secrets: HashMap<(String, String), (SecretRow, VersionRow)>,
    bytes: usize,
    /// Whether anything was cached since the last change by another process.
    /// Only then can a request have been served something that change made
    /// stale, and only then does the epoch move.
    filled: bool,
    /// Writes of this process in flight, per secret and per tenant's keys:
    /// nothing they touch is filled meanwhile. Kept through `clear`.
    writing_secrets: HashMap<(String, String), usize>,
    writing_keys: HashMap<String, usize>,
    /// Restores in flight: every secret of these tenants is being written.
    writing_tenants: HashMap<String, usize>,
}

impl State {
    fn clear(&mut self) {
        self.generation += 1;
        self.keys.clear();
        self.secrets.clear();
        self.bytes = 0;
    }

    fn make_room(&mut self, size: usize) -> bool {
        if size > BUDGET / 64 {
            return false;
        }
        if self.bytes + size > BUDGET {
            let generation = self.generation;
            self.clear();
            // A full cache is not a change: fills in flight stay valid.
            self.generation = generation;
        }
        self.bytes += size;
        self.filled = true;
        true
    }
}

/// What a write of this process touches.
enum Touch {
    Secret {
        tenant_id: String,
        id: String,
    },
    KeysOf {
        tenant_id: String,
    },
    /// Every secret of the tenant (a restore from a backup).
    SecretsOf {
        tenant_id: String,
    },
}

/// A write in flight (see [`CachedStore::writing`]); dropping it, when the
/// write returns, drops the touched entries once more and lets fills back in.
struct Writing<'a> {
    cache: &'a CachedStore,
    touch: Touch,
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        let mut st = self.cache.state.write().expect("cache lock");
        st.generation += 1;
        fn done<K: std::hash::Hash + Eq>(writing: &mut HashMap<K, usize>, key: K) {
            if let std::collections::hash_map::Entry::Occupied(mut n) = writing.entry(key) {
                *n.get_mut() -= 1;
                if *n.get() == 0 {
                    n.remove();
                }
            }
        }
        match &self.touch {
            Touch::Secret { tenant_id, id } => {
                let key = (tenant_id.clone(), id.clone());
                st.secrets.remove(&key);
                done(&mut st.writing_secrets, key);
            }
            Touch::KeysOf { tenant_id } => {
                st.keys.retain(|_, k| k.key.tenant_id != *tenant_id);
                done(&mut st.writing_keys, tenant_id.clone());
            }
            Touch::SecretsOf { tenant_id } => {
                st.secrets.retain(|(t, _), _| t != tenant_id);
                done(&mut st.writing_tenants, tenant_id.clone());
            }
        }
    }
}

fn secret_size(s: &SecretRow, v: &VersionRow) -> usize {
    256 + s.id.len() + s.name.len() + s.tags.len() + s.description.as_ref().map_or(0, String::len) + v.sealed.len()
}

impl CachedStore {
    /// Wraps `inner` and starts the poller that notices other processes'
    /// changes while no audit batch asks. The poller ends when the store is
    /// dropped.
    pub fn new(inner: Arc<dyn Store>) -> Arc<Self> {
        let store = Arc::new(CachedStore {
            inner,
            state: RwLock::new(State::default()),
            epoch: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            noticing: tokio::sync::Mutex::new(()),
        });
        let weak = Arc::downgrade(&store);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(POLL).await;
                let Some(store) = weak.upgrade().filter(|s| !s.closed.load(Ordering::SeqCst)) else { break };
                if let Err(e) = store.changed_elsewhere().await {
                    tracing::debug!("change check failed: {}", e.public_message_with_cause());
                }
            }
        });
        store
    }

    fn generation(&self) -> u64 {
        self.state.read().expect("cache lock").generation
    }

    /// Another process changed something: drop all, then advance the epoch
    /// (in this order, so an unchanged epoch always means a current cache).
    fn forget_everything(&self) {
        let mut st = self.state.write().expect("cache lock");
        let served_from_cache = st.filled;
        st.clear();
        st.filled = false;
        drop(st);
        if served_from_cache {
            self.epoch.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Marks a write of this process as started (see the module's doc); the
    /// write ends when the answer is dropped.
    fn writing(&self, touch: Touch) -> Writing<'_> {
        let mut st = self.state.write().expect("cache lock");
        st.generation += 1;
        let maybe_served = match &touch {
            Touch::Secret { tenant_id, id } => {
                let key = (tenant_id.clone(), id.clone());
                *st.writing_secrets.entry(key.clone()).or_default() += 1;
                st.secrets.remove(&key).is_some()
            }
            Touch::KeysOf { tenant_id } => {
                *st.writing_keys.entry(tenant_id.clone()).or_default() += 1;
                let before = st.keys.len();
                st.keys.retain(|_, k| k.key.tenant_id != *tenant_id);
                st.keys.len() != before
            }
            Touch::SecretsOf { tenant_id } => {
                *st.writing_tenants.entry(tenant_id.clone()).or_default() += 1;
                let before = st.secrets.len();
                st.secrets.retain(|(t, _), _| t != tenant_id);
                st.secrets.len() != before
            }
        };
        drop(st);
        if maybe_served {
            self.epoch.fetch_add(1, Ordering::SeqCst);
        }
        Writing { cache: self, touch }
    }

    fn secret_write(&self, tenant_id: &str, id: &str) -> Writing<'_> {
        self.writing(Touch::Secret { tenant_id: tenant_id.to_owned(), id: id.to_owned() })
    }

    fn keys_write(&self, tenant_id: &str) -> Writing<'_> {
        self.writing(Touch::KeysOf { tenant_id: tenant_id.to_owned() })
    }
}

#[async_trait]
impl Store for CachedStore {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    // Nothing of an owner is cached.
    fn owners(&self) -> &dyn super::owners::OwnerStore {
        self.inner.owners()
    }

    // Nothing of a claim is cached, and a redemption only adds a secret,
    // which the cache holds no answer for yet (see `claims`).
    fn claims(&self) -> &dyn super::claims::ClaimStore {
        self.inner.claims()
    }

    // Nor is a share link: each is read where it is used.
    fn shares(&self) -> &dyn super::shares::ShareStore {
        self.inner.shares()
    }

    // Nor is a secret request; its secret is written through the vault.
    fn requests(&self) -> &dyn super::requests::RequestStore {
        self.inner.requests()
    }

    // Each is a write of a secret the cache may hold (see below).
    fn lifecycle(&self) -> &dyn super::lifecycle::LifecycleStore {
        self
    }

    // A policy is not cached; a rotation writes a secret and revokes
    // tokens, and goes through the wrapper below like every such write.
    fn rotations(&self) -> &dyn super::rotation::RotationStore {
        self
    }

    // Nor a project's environments and template.
    fn environments(&self) -> &dyn super::environments::EnvironmentStore {
        self.inner.environments()
    }

    fn keyring(&self) -> &dyn super::keyring::KeyringStore {
        self.inner.keyring()
    }

    // Nor the audit trail, which no cached read answers from.
    fn trail(&self) -> &dyn super::trail::TrailStore {
        self.inner.trail()
    }

    fn pool_stats(&self) -> PoolStats {
        self.inner.pool_stats()
    }

    // The chain is never cached: verify reads what the database holds.
    fn audit_chain(&self) -> &dyn super::audit_chain::AuditChainStore {
        self.inner.audit_chain()
    }

    // Nor a webhook or a delivery; events are enqueued by the database
    // itself, with the audit entries of the writes that pass through here.
    fn webhooks(&self) -> &dyn super::webhooks::WebhookStore {
        self.inner.webhooks()
    }

    // A restore rewrites every secret of a tenant (see below).
    fn backups(&self) -> &dyn super::backups::BackupStore {
        self
    }

    async fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.inner.close().await
    }

    async fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.inner.meta_get(key).await
    }

    async fn meta_init(&self, key: &str, value: &[u8]) -> Result<Vec<u8>> {
        self.inner.meta_init(key, value).await
    }

    async fn create_tenant(
        &self,
        tenant: &TenantRow,
        key: &ApiKeyRow,
        setup_link: Option<&super::owners::LinkRow>,
        audit: &AuditRow,
    ) -> Result<()> {
        self.inner.create_tenant(tenant, key, setup_link, audit).await
    }

    async fn get_tenant(&self, id: &str) -> Result<Option<TenantRow>> {
        self.inner.get_tenant(id).await
    }

    async fn set_tenant_plan(&self, id: &str, plan: &str, audit: &AuditRow) -> Result<bool> {
        let _writing = self.keys_write(id);
        self.inner.set_tenant_plan(id, plan, audit).await
    }

    async fn find_api_key(&self, key_hash: &[u8]) -> Result<Option<KeyWithPlan>> {
        if !self.inner.tracks_changes() {
            return self.inner.find_api_key(key_hash).await;
        }
        if let Some(k) = self.state.read().expect("cache lock").keys.get(key_hash) {
            CacheCounters::count(&CACHE.key_hits);
            return Ok(Some(k.clone()));
        }
        CacheCounters::count(&CACHE.key_misses);
        let generation = self.generation();
        let found = self.inner.find_api_key(key_hash).await?;
        if let Some(k) = &found {
            let mut st = self.state.write().expect("cache lock");
            if st.generation == generation
                && !st.writing_keys.contains_key(&k.key.tenant_id)
                && st.make_room(
                    256 + k.key.project_scope.len()
                        + k.key.scopes.as_ref().map_or(0, String::len)
                        + k.key.ip_allowlist.as_ref().map_or(0, String::len),
                )
            {
                st.keys.insert(key_hash.to_vec(), k.clone());
            }
        }
        Ok(found)
    }

    async fn get_api_key(&self, tenant_id: &str, id: &str) -> Result<Option<ApiKeyRow>> {
        self.inner.get_api_key(tenant_id, id).await
    }

    async fn list_api_keys(&self, tenant_id: &str) -> Result<Vec<ApiKeyRow>> {
        self.inner.list_api_keys(tenant_id).await
    }

    async fn list_tokens(&self, tenant_id: &str, parent: Option<&str>) -> Result<Vec<ApiKeyRow>> {
        self.inner.list_tokens(tenant_id, parent).await
    }

    /// Never cached: the count is the database's, whatever the cache holds.
    async fn use_token(&self, id: &str) -> Result<bool> {
        self.inner.use_token(id).await
    }

    async fn insert_api_key(&self, key: &ApiKeyRow, audit: &AuditRow) -> Result<()> {
        self.inner.insert_api_key(key, audit).await
    }

    async fn update_api_key(&self, key: &ApiKeyRow, seen_updated_at: Millis, audit: &AuditRow) -> Result<bool> {
        let _writing = self.keys_write(&key.tenant_id);
        self.inner.update_api_key(key, seen_updated_at, audit).await
    }

    async fn insert_project(&self, project: &ProjectRow, audit: &AuditRow) -> Result<()> {
        self.inner.insert_project(project, audit).await
    }

    async fn get_project(&self, tenant_id: &str, id: &str) -> Result<Option<ProjectRow>> {
        self.inner.get_project(tenant_id, id).await
    }

    async fn list_projects(&self, tenant_id: &str) -> Result<Vec<ProjectRow>> {
        self.inner.list_projects(tenant_id).await
    }

    async fn update_project(&self, project: &ProjectRow, audit: &AuditRow) -> Result<bool> {
        self.inner.update_project(project, audit).await
    }

    async fn delete_project(&self, tenant_id: &str, id: &str, purge_deleted: bool, audit: &AuditRow) -> Result<bool> {
        self.inner.delete_project(tenant_id, id, purge_deleted, audit).await
    }

    async fn create_secret(&self, secret: &SecretRow, first: &VersionRow, max_secrets: QuotaOf<'_>, audit: &AuditRow) -> Result<()> {
        self.inner.create_secret(secret, first, max_secrets, audit).await
    }

    async fn get_secret(&self, tenant_id: &str, id: &str) -> Result<Option<SecretRow>> {
        self.inner.get_secret(tenant_id, id).await
    }

    async fn find_secret(&self, tenant_id: &str, project_id: Option<&str>, environment: &str, name: &str) -> Result<Option<SecretRow>> {
        self.inner.find_secret(tenant_id, project_id, environment, name).await
    }

    async fn get_version(&self, secret_id: &str, version: i64) -> Result<Option<VersionRow>> {
        self.inner.get_version(secret_id, version).await
    }

    async fn read_secret(&self, tenant_id: &str, id: &str, version: Option<i64>) -> Result<Option<(SecretRow, Option<VersionRow>)>> {
        Ok(self.read_secret_cached(tenant_id, id, version).await?.0)
    }

    async fn read_secret_cached(
        &self,
        tenant_id: &str,
        id: &str,
        version: Option<i64>,
    ) -> Result<(Option<(SecretRow, Option<VersionRow>)>, bool)> {
        if version.is_some() || !self.inner.tracks_changes() {
            return Ok((self.inner.read_secret(tenant_id, id, version).await?, false));
        }
        let key = (tenant_id.to_owned(), id.to_owned());
        if let Some((s, v)) = self.state.read().expect("cache lock").secrets.get(&key) {
            CacheCounters::count(&CACHE.secret_hits);
            return Ok((Some((s.clone(), Some(v.clone()))), true));
        }
        CacheCounters::count(&CACHE.secret_misses);
        let generation = self.generation();
        let found = self.inner.read_secret(tenant_id, id, None).await?;
        if let Some((s, Some(v))) = &found {
            let mut st = self.state.write().expect("cache lock");
            if st.generation == generation
                && !st.writing_secrets.contains_key(&key)
                && !st.writing_tenants.contains_key(tenant_id)
                && st.make_room(secret_size(s, v))
            {
                st.secrets.insert(key, (s.clone(), v.clone()));
            }
        }
        Ok((found, false))
    }

    async fn read_secret_uncached(
        &self,
        tenant_id: &str,
        id: &str,
        version: Option<i64>,
    ) -> Result<Option<(SecretRow, Option<VersionRow>)>> {
        self.inner.read_secret(tenant_id, id, version).await
    }

    async fn update_secret(
        &self,
        tenant_id: &str,
        id: &str,
        expected_version: Option<i64>,
        change: SecretChange<'_>,
    ) -> Result<WriteOutcome> {
        let _writing = self.secret_write(tenant_id, id);
        self.inner.update_secret(tenant_id, id, expected_version, change).await
    }

    async fn add_version(
        &self,
        tenant_id: &str,
        id: &str,
        expected_version: Option<i64>,
        actor: &Credential,
        change: VersionChange,
    ) -> Result<WriteOutcome> {
        let _writing = self.secret_write(tenant_id, id);
        self.inner.add_version(tenant_id, id, expected_version, actor, change).await
    }

    async fn write_batch(&self, tenant_id: &str, batch: &[BatchWrite], max_secrets: QuotaOf<'_>, audit: &[AuditRow]) -> Result<()> {
        // Every secret that gets a new version is being written until the
        // batch ends; new ones are in no cache yet.
        let _writing: Vec<_> = batch
            .iter()
            .filter_map(|w| match w {
                BatchWrite::Version { secret_id, .. } => Some(self.secret_write(tenant_id, secret_id)),
                BatchWrite::Create { .. } => None,
            })
            .collect();
        self.inner.write_batch(tenant_id, batch, max_secrets, audit).await
    }

    async fn list_versions(&self, secret_id: &str, before: Option<i64>, limit: i64) -> Result<Vec<VersionMeta>> {
        self.inner.list_versions(secret_id, before, limit).await
    }

    async fn list_secrets(&self, tenant_id: &str, filter: &SecretFilter) -> Result<Vec<SecretRow>> {
        self.inner.list_secrets(tenant_id, filter).await
    }

    async fn count_secrets(&self, tenant_id: &str) -> Result<i64> {
        self.inner.count_secrets(tenant_id).await
    }

    /// Notes what the store saw of other processes while writing, so the
    /// epoch a read sees after its audit commit covers every change committed
    /// before that commit.
    // Approvals are never cached: each is read where it is decided or used.
    async fn list_protected_secrets(&self, tenant_id: &str) -> Result<Vec<SecretRow>> {
        self.inner.list_protected_secrets(tenant_id).await
    }

    async fn gate_sensitive(&self, tenant_id: &str) -> Result<bool> {
        self.inner.gate_sensitive(tenant_id).await
    }

    async fn set_gate_sensitive(&self, tenant_id: &str, on: bool, audit: &AuditRow) -> Result<bool> {
        self.inner.set_gate_sensitive(tenant_id, on, audit).await
    }

    async fn open_approval(
        &self,
        row: &ApprovalRow,
        now: Millis,
        requested: ApprovalAudit<'_>,
        expired: ApprovalAudit<'_>,
    ) -> Result<ApprovalRow> {
        self.inner.open_approval(row, now, requested, expired).await
    }

    async fn use_grant(
        &self,
        tenant_id: &str,
        requester_id: &str,
        secret_id: &str,
        now: Millis,
        used: ApprovalAudit<'_>,
    ) -> Result<Option<ApprovalRow>> {
        self.inner.use_grant(tenant_id, requester_id, secret_id, now, used).await
    }

    async fn get_approval(&self, tenant_id: Option<&str>, id: &str) -> Result<Option<ApprovalRow>> {
        self.inner.get_approval(tenant_id, id).await
    }

    async fn list_approvals(
        &self,
        tenant_id: Option<&str>,
        requester_id: Option<&str>,
        status: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ApprovalRow>> {
        self.inner.list_approvals(tenant_id, requester_id, status, limit).await
    }

    async fn decide_approval(&self, tenant_id: &str, id: &str, d: &Decision, audit: &AuditRow) -> Result<Option<ApprovalRow>> {
        self.inner.decide_approval(tenant_id, id, d, audit).await
    }

    async fn expire_approvals(&self, tenant_id: &str, ids: &[String], now: Millis, expired: ApprovalAudit<'_>) -> Result<Vec<ApprovalRow>> {
        self.inner.expire_approvals(tenant_id, ids, now, expired).await
    }

    async fn take_token_approval(
        &self,
        tenant_id: &str,
        id: &str,
        requester_id: &str,
        now: Millis,
        used: ApprovalAudit<'_>,
    ) -> Result<Option<ApprovalRow>> {
        self.inner.take_token_approval(tenant_id, id, requester_id, now, used).await
    }

    async fn append_audit(&self, entries: &[AuditRow]) -> Result<Appended> {
        let _noticing = self.noticing.lock().await;
        let started = std::time::Instant::now();
        let appended = self.inner.append_audit(entries).await?;
        // Here rather than in each database's batch writer: one place, both backends.
        crate::telemetry::audit_batch(entries.len(), started.elapsed());
        // A refused entry means the database holds a key or secret change
        // this cache was not told of (a notification not delivered yet, or lost).
        if appended.changed || !appended.refused.is_empty() {
            self.forget_everything();
        }
        Ok(appended)
    }

    async fn query_audit(&self, tenant_id: &str, filter: &AuditFilter) -> Result<AuditSlice> {
        self.inner.query_audit(tenant_id, filter).await
    }

    async fn count_audit_since(&self, tenant_id: &str, since: Millis, split: Millis) -> Result<(i64, i64)> {
        self.inner.count_audit_since(tenant_id, since, split).await
    }

    async fn changed_elsewhere(&self) -> Result<bool> {
        let _noticing = self.noticing.lock().await;
        let changed = self.inner.changed_elsewhere().await?;
        if changed {
            self.forget_everything();
        }
        Ok(changed)
    }

    fn change_epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    fn tracks_changes(&self) -> bool {
        self.inner.tracks_changes()
    }
}

/// A secret's end of life, each a write of that secret: what the cache held
/// of it is dropped first, as for `update_secret`.
#[async_trait]
impl super::lifecycle::LifecycleStore for CachedStore {
    async fn soft_delete(&self, tenant_id: &str, id: &str, now: Millis, audit: &AuditRow) -> Result<Option<SecretRow>> {
        let _writing = self.secret_write(tenant_id, id);
        self.inner.lifecycle().soft_delete(tenant_id, id, now, audit).await
    }

    async fn restore(
        &self,
        tenant_id: &str,
        id: &str,
        now: Millis,
        max_secrets: QuotaOf<'_>,
        audit: &AuditRow,
    ) -> Result<Option<SecretRow>> {
        let _writing = self.secret_write(tenant_id, id);
        self.inner.lifecycle().restore(tenant_id, id, now, max_secrets, audit).await
    }

    async fn purge(&self, tenant_id: &str, id: &str, deleted_before: Option<Millis>, audit: &AuditRow) -> Result<bool> {
        let _writing = self.secret_write(tenant_id, id);
        self.inner.lifecycle().purge(tenant_id, id, deleted_before, audit).await
    }

    async fn purgeable(&self, cutoff: Millis, limit: i64) -> Result<Vec<SecretRow>> {
        self.inner.lifecycle().purgeable(cutoff, limit).await
    }

    async fn delete_version(&self, tenant_id: &str, id: &str, version: i64, audit: &AuditRow) -> Result<super::lifecycle::VersionDeleted> {
        let _writing = self.secret_write(tenant_id, id);
        self.inner.lifecycle().delete_version(tenant_id, id, version, audit).await
    }
}

/// Rotation through the cache: a rotation touches its secret and the
/// tenant's keys (the tokens it revokes); the rest passes through.
#[async_trait]
impl super::rotation::RotationStore for CachedStore {
    async fn insert_policy(&self, row: &super::rotation::PolicyRow, audit: &AuditRow) -> Result<()> {
        self.inner.rotations().insert_policy(row, audit).await
    }
    async fn get_policy(&self, tenant_id: &str, id: &str) -> Result<Option<super::rotation::PolicyRow>> {
        self.inner.rotations().get_policy(tenant_id, id).await
    }
    async fn policy_for_secret(&self, tenant_id: &str, secret_id: &str) -> Result<Option<super::rotation::PolicyRow>> {
        self.inner.rotations().policy_for_secret(tenant_id, secret_id).await
    }
    async fn list_policies(&self, tenant_id: &str, limit: i64) -> Result<Vec<super::rotation::PolicyRow>> {
        self.inner.rotations().list_policies(tenant_id, limit).await
    }
    async fn update_policy(&self, row: &super::rotation::PolicyRow, audit: &AuditRow) -> Result<bool> {
        self.inner.rotations().update_policy(row, audit).await
    }
    async fn delete_policy(&self, tenant_id: &str, id: &str, audit: &AuditRow) -> Result<bool> {
        self.inner.rotations().delete_policy(tenant_id, id, audit).await
    }
    async fn due_policies(&self, now: Millis, limit: i64) -> Result<Vec<super::rotation::PolicyRow>> {
        self.inner.rotations().due_policies(now, limit).await
    }
    async fn alerts_due(&self, now: Millis, limit: i64) -> Result<Vec<super::rotation::PolicyRow>> {
        self.inner.rotations().alerts_due(now, limit).await
    }
    async fn mark_alerted(&self, id: &str, next_run_at: Millis, audit: &AuditRow) -> Result<bool> {
        self.inner.rotations().mark_alerted(id, next_run_at, audit).await
    }
    async fn rotate(
        &self,
        tenant_id: &str,
        id: &str,
        advance: Option<&super::rotation::Advance>,
        now: Millis,
        change: super::rotation::RotateChange<'_>,
    ) -> Result<super::rotation::RotateOutcome> {
        let _secret = self.secret_write(tenant_id, id);
        let _keys = self.keys_write(tenant_id);
        self.inner.rotations().rotate(tenant_id, id, advance, now, change).await
    }
    async fn retired_at(&self, secret_id: &str, version: i64) -> Result<Option<Millis>> {
        self.inner.rotations().retired_at(secret_id, version).await
    }
    async fn last_rotated_at(&self, secret_id: &str) -> Result<Option<Millis>> {
        self.inner.rotations().last_rotated_at(secret_id).await
    }
}

/// Backups through the cache: a restore is a write of every secret of its
/// tenant, so what the cache held of them is dropped first (and again when
/// it returns), as for `update_secret`; the rest passes through.
#[async_trait]
impl super::backups::BackupStore for CachedStore {
    async fn snapshot(&self, tenant_id: &str) -> Result<super::backups::TenantData> {
        self.inner.backups().snapshot(tenant_id).await
    }
    async fn insert_backup(&self, row: &super::backups::BackupRow, max: i64, audit: &AuditRow) -> Result<()> {
        self.inner.backups().insert_backup(row, max, audit).await
    }
    async fn list_backups(&self, tenant_id: &str) -> Result<Vec<super::backups::BackupRow>> {
        self.inner.backups().list_backups(tenant_id).await
    }
    async fn get_backup(&self, tenant_id: &str, id: &str, archive: bool) -> Result<Option<super::backups::BackupRow>> {
        self.inner.backups().get_backup(tenant_id, id, archive).await
    }
    async fn delete_backup(&self, tenant_id: &str, id: &str, audit: &AuditRow) -> Result<bool> {
        self.inner.backups().delete_backup(tenant_id, id, audit).await
    }
    async fn restore(
        &self,
        tenant_id: &str,
        data: &super::backups::TenantData,
        max_secrets: QuotaOf<'_>,
        now: Millis,
        audit: &AuditRow,
    ) -> Result<()> {
        let _writing = self.writing(Touch::SecretsOf { tenant_id: tenant_id.to_owned() });
        self.inner.backups().restore(tenant_id, data, max_secrets, now, audit).await
    }
}
