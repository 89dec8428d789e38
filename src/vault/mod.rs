//! The domain services. Both fronts call these and nothing else: each function
//! takes the caller's [`Principal`], enforces tenant isolation, permission and
//! project scope, and returns typed views that never contain a value unless the
//! function is an explicit, audited read.

pub mod approvals;
pub mod audit;
pub mod audit_verify;
mod audit_writer;
pub mod auth;
pub mod backups;
pub mod batch;
pub mod bindings;
pub mod checks;
pub mod claims;
mod cursor;
pub mod data_keys;
pub mod environments;
pub mod exposure;
mod gauges;
pub mod jobs;
pub mod keys;
pub mod lifecycle;
pub mod master_key;
pub mod names;
pub mod owners;
pub mod paths;
pub mod plans;
pub mod principal;
pub mod projects;
pub mod proxy;
pub mod requests;
pub mod retention;
pub mod rotation;
pub mod scopes;
pub mod secrets;
pub mod shares;
pub mod sweep;
pub mod tenants;
pub mod throttle;
pub mod tokens;
mod usage;
pub mod views;
pub mod webhooks;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::crypto::DataKey;
use crate::error::{Error, Result};
use crate::store::Store;
pub use auth::Session;
pub use principal::{CallerKind, Front, Origin, Permission, Principal};

/// Operator settings the services need.
#[derive(Debug, Clone)]
pub struct VaultConfig {
    pub max_value_bytes: usize,
    pub default_plan: String,
    pub signup_open: bool,
    /// Signups allowed per client IP per minute.
    pub signup_per_minute: u32,
    /// Failed authentications allowed per client address, and per presented
    /// key, per minute (see `auth::FailedAuth`).
    pub auth_failures_per_minute: u32,
    /// How long a pending approval request waits for a decision.
    pub approval_request_ttl: std::time::Duration,
    /// The longest a claim token may live, in minutes.
    pub max_claim_minutes: u32,
    /// Outbound requests may reach private and loopback addresses (`--allow-private-destinations`).
    pub allow_private_destinations: bool,
    /// Days a soft-deleted secret stays restorable before the sweep purges it.
    pub retention_days: u32,
    /// How often `latchkey serve` runs its background jobs (due rotations,
    /// the sweep: see `sweep`).
    pub jobs_interval: std::time::Duration,
    /// Audit entries older than this many days are pruned (`None`: kept for
    /// ever), archived first into `audit_archive_dir` when set (see `retention`).
    pub audit_retention_days: Option<u32>,
    pub audit_archive_dir: Option<std::path::PathBuf>,

    /// How often the webhook worker looks for due deliveries (see `webhooks::worker`).
    pub webhook_poll: std::time::Duration,
    /// A failed delivery's first retry delay; it doubles up to an hour.
    pub webhook_backoff: std::time::Duration,
    /// How often a replica looks for data-key rotations and works their
    /// pass (see `data_keys`).
    pub key_rotation_poll: std::time::Duration,
    /// Versions resealed per transaction by a rotation's pass.
    pub key_rotation_batch: i64,
}

impl Default for VaultConfig {
    fn default() -> Self {
        VaultConfig {
            max_value_bytes: 64 * 1024,
            default_plan: "free".into(),
            signup_open: true,
            signup_per_minute: 10,
            auth_failures_per_minute: 60,
            approval_request_ttl: approvals::DEFAULT_REQUEST_TTL,
            max_claim_minutes: 1440,
            allow_private_destinations: false,
            retention_days: lifecycle::DEFAULT_RETENTION_DAYS,
            jobs_interval: std::time::Duration::from_secs(30),
            audit_retention_days: None,
            audit_archive_dir: None,
            webhook_poll: std::time::Duration::from_secs(1),
            webhook_backoff: std::time::Duration::from_secs(30),
            key_rotation_poll: std::time::Duration::from_secs(1),
            key_rotation_batch: 500,
        }
    }
}

pub struct Vault {
    store: Arc<dyn Store>,
    audit: audit_writer::AuditWriter,
    master: crate::crypto::Keyring,
    config: VaultConfig,
    /// Unwrapped tenant keys, every generation (see `data_keys`). Unwrapping
    /// is cheap (one AES-GCM open) but the cache keeps it off the read path
    /// entirely.
    data_keys: RwLock<HashMap<String, Arc<DataKey>>>,
    /// Keyed by client address (see `throttle::client_key`).
    signup_limiter: throttle::Throttle,
    failed_auth: auth::FailedAuth,
    /// The password pool and unknown-token count of share links.
    share_guards: shares::Guards,
    /// One limiter per plan that has a request rate, keyed by tenant.
    request_limiters: HashMap<&'static str, throttle::Throttle>,
    /// Calls this month of tenants whose plan caps them, and each such
    /// plan's cap (looked up, not built, on every call).
    monthly_calls: usage::MonthlyCalls,
    monthly_caps: HashMap<&'static str, i64>,
    /// Requests running in tasks of their own (see `server::run_to_completion`);
    /// shutdown waits for them before it closes the store.
    requests: tokio_util::task::TaskTracker,
    /// How browsers reach this server: link bases and the passkey relying party.
    site: std::sync::OnceLock<owners::Site>,
}

const KEY_CHECK: &str = "key_check";

/// The audit chain's key (`store::chain`): random, kept in `meta` wrapped by
/// the master key, so a master-key rotation rewraps it and the chain made
/// before still verifies.
const CHAIN_KEY: &str = "audit_chain_key";

/// The vault's own keys kept wrapped in `meta` (name, purpose bound in).
pub(crate) const OWN_KEYS: [(&str, &[u8]); 1] = [(CHAIN_KEY, b"latchkey/audit-chain-key")];

impl Vault {
    /// Opens the vault over `store`, refusing a master key that does not match
    /// the one the data was written with.
    /// While an operator moves the vault to another master key, `master`
    /// holds both (see `crypto::keyring`) and either key's check is accepted.
    pub async fn open(store: Arc<dyn Store>, master: impl Into<crate::crypto::Keyring>, config: VaultConfig) -> Result<Self> {
        let master = master.into();
        plans::limits(&config.default_plan)?;
        let store: Arc<dyn Store> = crate::store::CachedStore::new(store);
        let stored = store.meta_init(KEY_CHECK, &master.key_check()).await?;
        if !master.accepts(&stored) {
            return Err(Error::Unauthorized(
                "the master key does not match this database (key-check failed); start with the key it was created with".into(),
            ));
        }
        // The chain's key: made once, kept wrapped (see `CHAIN_KEY`).
        let fresh = zeroize::Zeroizing::new(rand::random::<[u8; 32]>());
        let wrapped = store.meta_init(CHAIN_KEY, &master.wrap_key(OWN_KEYS[0].1, &fresh)).await?;
        crate::store::chain::set_key(master.unwrap_key(OWN_KEYS[0].1, &wrapped)?);
        let (mut request_limiters, mut monthly_caps) = (HashMap::new(), HashMap::new());
        for name in plans::PLAN_NAMES {
            let limits = plans::limits(name)?;
            if let Some(rpm) = limits.requests_per_minute {
                request_limiters.insert(name, throttle::Throttle::per_minute(u32::try_from(rpm).unwrap_or(u32::MAX)));
            }
            if let Some(calls) = limits.api_calls_per_month {
                monthly_caps.insert(name, calls);
            }
        }
        Ok(Vault {
            audit: audit_writer::AuditWriter::start(store.clone()),
            signup_limiter: throttle::Throttle::per_minute(config.signup_per_minute),
            failed_auth: auth::FailedAuth::new(config.auth_failures_per_minute),
            share_guards: shares::Guards::new(config.auth_failures_per_minute),
            store,
            master,
            config,
            data_keys: RwLock::new(HashMap::new()),
            request_limiters,
            monthly_calls: usage::MonthlyCalls::default(),
            monthly_caps,
            requests: tokio_util::task::TaskTracker::new(),
            site: std::sync::OnceLock::new(),
        })
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn requests(&self) -> &tokio_util::task::TaskTracker {
        &self.requests
    }

    /// Appends an audit entry that records no state change of its own (a
    /// read, a listing, a denied attempt); returns once it is committed, with
    /// the store's change epoch as of that commit, or `409`
    /// (`CHANGED_MEANWHILE`) when the database refused a success entry whose
    /// key or secret is no longer what the request relied on (PostgreSQL).
    pub(crate) async fn record(&self, row: crate::store::AuditRow) -> Result<u64> {
        self.audit.record(row).await
    }

    pub fn config(&self) -> &VaultConfig {
        &self.config
    }

    /// Records a failed attempt by an authenticated caller (denied, missing,
    /// rejected), then hands the error back, or 401 if the key turned out
    /// dead (see [`Vault::dead_key_first`]). Internal errors are not recorded:
    /// the store that would record them is usually what failed.
    async fn audit_failure(&self, p: &Principal, action: &str, resource_type: &str, resource_id: Option<&str>, err: Error) -> Error {
        let err = self.dead_key_first(p, err).await;
        if matches!(err, Error::Internal(_)) {
            return err;
        }
        let row = principal::WithDetail::detail(
            p.audit(action, resource_type, resource_id, err.audit_outcome()),
            serde_json::json!({ "code": err.code() }),
        );
        if let Err(e) = self.record(row).await {
            return e;
        }
        err
    }

    /// The caller's key came from the cache, and another process may have
    /// revoked or changed it a moment ago. A write by such a key is refused
    /// at its audit insert (409, see `store::KEY_CHANGED`), and one that fails
    /// earlier (a missing secret, a stale expected version, a plan limit)
    /// would tell a revoked key what 404, 409 or 403 tell a live one. So a
    /// failure looks at the key again, past the cache, and a dead key gets
    /// 401 whatever it asked. Failures are the rare path, so this costs the
    /// successful ones nothing. An integrity error stays what it is: it is
    /// the sign of a tampered database.
    pub(crate) async fn dead_key_first(&self, p: &Principal, err: Error) -> Error {
        if matches!(
            err,
            Error::Unauthorized(_)
                | Error::TokenExpired
                | Error::TokenRevoked
                | Error::TokenExhausted
                | Error::IpNotAllowed
                | Error::Internal(_)
                | Error::Integrity
        ) || !p.has_key()
        {
            return err;
        }
        match self.recheck(p).await {
            Err(e) => e,
            Ok(_) => err,
        }
    }

    /// Records a successful read (a list, a lookup) and returns once it is
    /// committed. If another process changed the database since the caller's
    /// key came from the cache, the key is looked up again first: a key
    /// revoked elsewhere gets 401 rather than the answer, and one whose
    /// permission or project scope changed meanwhile gets 409 (the answer was
    /// made under its old rights; sent again, the request is judged under the
    /// new ones). `read_secret` does the same and rereads the secret instead.
    pub(crate) async fn record_read(&self, p: &Principal, row: crate::store::AuditRow) -> Result<()> {
        let epoch = match self.record(row).await {
            Ok(epoch) => epoch,
            // Refused by the database (see `Appended::refused`): 401 if the key is dead.
            Err(e) => return Err(self.dead_key_first(p, e).await),
        };
        if epoch != p.seen_epoch && p.has_key() {
            // The same comparison a write makes inside its transaction.
            if self.recheck(p).await?.credential != p.credential {
                return Err(Error::Conflict("this API key's rights changed while the request ran; send it again".into()));
            }
        }
        Ok(())
    }
}

/// Wraps a service body so a failure is audited under the same action name.
macro_rules! audited {
    ($vault:expr, $p:expr, $action:expr, $rtype:expr, $rid:expr, $body:expr) => {{
        match $body {
            Ok(v) => Ok(v),
            Err(e) => Err($vault.audit_failure($p, $action, $rtype, $rid, e).await),
        }
    }};
}
pub(crate) use audited;
