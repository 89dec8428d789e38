//! Settings shared by `serve` and `mcp`, and turning them into an open [`Vault`].

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, ValueEnum};

use crate::crypto::{MasterKey, master};
use crate::error::{Error, Result};
use crate::store::{Store, postgres::PgStore, sqlite::SqliteStore};
use crate::vault::{Vault, VaultConfig};

/// Where the data lives and how it is unlocked.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Directory for the embedded SQLite database and the generated key file.
    #[arg(long, env = "LATCHKEY_DATA_DIR", default_value = "./latchkey-data")]
    pub data_dir: PathBuf,

    /// `postgres://…` to use PostgreSQL; absent means SQLite in the data dir.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SignupMode {
    Open,
    Closed,
}

/// Operator policy for the vault's services.
#[derive(Debug, Clone, Args)]
pub struct PolicyArgs {
    /// Whether anyone who reaches the server may sign up.
    #[arg(long, env = "LATCHKEY_SIGNUP", value_enum, default_value = "open")]
    pub signup: SignupMode,

    /// Plan given to self-signup tenants: free, pro or unlimited.
    #[arg(long, env = "LATCHKEY_DEFAULT_PLAN", default_value = "free")]
    pub default_plan: String,

    /// Largest secret value accepted, in bytes.
    #[arg(long, env = "LATCHKEY_MAX_VALUE_BYTES", default_value_t = 64 * 1024)]
    pub max_value_bytes: usize,

    /// Signups allowed per client IP (an IPv6 client: per /64) per minute.
    #[arg(long, env = "LATCHKEY_SIGNUP_PER_MINUTE", default_value_t = 10)]
    pub signup_per_minute: u32,

    /// Failed authentications allowed per client IP, and per presented key,
    /// per minute; past that they answer 429 until the minute is over.
    #[arg(long, env = "LATCHKEY_AUTH_FAILURES_PER_MINUTE", default_value_t = 60)]
    pub auth_failures_per_minute: u32,

    /// How long a pending approval request waits for an owner's decision
    /// before it expires (e.g. 1h, 30m, 90s).
    #[arg(long, env = "LATCHKEY_APPROVAL_REQUEST_TTL", default_value = "1h", value_parser = parse_ttl_arg)]
    pub approval_request_ttl: std::time::Duration,

    /// The longest a claim token may live, in minutes (a request for more is
    /// refused with 400).
    #[arg(long, env = "LATCHKEY_MAX_CLAIM_MINUTES", default_value_t = 1440, value_parser = clap::value_parser!(u32).range(1..=525_600))]
    pub max_claim_minutes: u32,

    /// Let outbound requests (the secret proxy, webhooks) reach private,
    /// loopback and link-local addresses. Off by default: a bound URL whose
    /// name resolves to 127.0.0.1 or 10.x would otherwise reach this host's
    /// or this network's internal services.
    #[arg(long, env = "LATCHKEY_ALLOW_PRIVATE_DESTINATIONS", value_parser = clap::builder::BoolishValueParser::new())]
    pub allow_private_destinations: bool,

    /// Days a deleted secret stays restorable (`POST /api/v1/secrets/{id}/restore`)
    /// before the background sweep erases it for good.
    #[arg(long, env = "LATCHKEY_RETENTION_DAYS", default_value_t = crate::vault::lifecycle::DEFAULT_RETENTION_DAYS, value_parser = clap::value_parser!(u32).range(0..=3650))]
    pub retention_days: u32,

    /// How often the server runs its background jobs (due rotations and
    /// their alerts, the purge of deleted secrets past retention, the
    /// erasure of ended claims' and shares' values), in milliseconds; they
    /// also run once at start.
    #[arg(long, env = "LATCHKEY_JOBS_INTERVAL_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(50..=86_400_000))]
    pub jobs_interval_ms: u64,

    /// Days audit entries are kept; older ones are pruned by a background
    /// job (in bounded batches, once across replicas), the chain staying
    /// verifiable from a checkpoint. Default: keep everything.
    #[arg(long, env = "LATCHKEY_AUDIT_RETENTION_DAYS", value_parser = clap::value_parser!(u32).range(1..=36_500))]
    pub audit_retention_days: Option<u32>,

    /// With --audit-retention-days: write pruned entries here first, as
    /// gzip'd JSON lines, one file per tenant and UTC day
    /// (DIR/<tenant>/<YYYY-MM-DD>.jsonl.gz), synced before the rows go.
    #[arg(long, env = "LATCHKEY_AUDIT_ARCHIVE_DIR", value_name = "DIR")]
    pub audit_archive_dir: Option<PathBuf>,

    /// How often the webhook worker looks for due deliveries, in milliseconds
    /// (an idle look is one indexed read).
    #[arg(long, env = "LATCHKEY_WEBHOOK_POLL_MS", default_value_t = 1_000, hide = true, value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    pub webhook_poll_ms: u64,

    /// The first retry delay of a failed webhook delivery, in milliseconds;
    /// it doubles with each attempt up to an hour (tests shorten it).
    #[arg(long, env = "LATCHKEY_WEBHOOK_BACKOFF_MS", default_value_t = 30_000, hide = true, value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    pub webhook_backoff_ms: u64,

    /// How often a replica looks for tenants' data-key rotations (started
    /// here or elsewhere) and works their resealing pass, in milliseconds. The
    /// pass starts three polls after a rotation, and a replica that died
    /// holding one is replaced after thirty.
    #[arg(long, env = "LATCHKEY_KEY_ROTATION_POLL_MS", default_value_t = 1_000, hide = true, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub key_rotation_poll_ms: u64,

    /// Versions a data-key rotation's pass reseals per transaction.
    #[arg(long, env = "LATCHKEY_KEY_ROTATION_BATCH", default_value_t = 500, hide = true, value_parser = clap::value_parser!(i64).range(1..=10_000))]
    pub key_rotation_batch: i64,
}

fn parse_ttl_arg(raw: &str) -> std::result::Result<std::time::Duration, String> {
    crate::vault::approvals::parse_ttl(raw).map_err(|e| e.to_string())
}

impl PolicyArgs {
    /// The defaults, for commands that take no policy flags.
    pub fn defaults() -> Self {
        PolicyArgs {
            signup: SignupMode::Open,
            default_plan: "free".into(),
            max_value_bytes: 64 * 1024,
            signup_per_minute: 10,
            auth_failures_per_minute: 60,
            approval_request_ttl: crate::vault::approvals::DEFAULT_REQUEST_TTL,
            max_claim_minutes: 1440,
            allow_private_destinations: false,
            retention_days: crate::vault::lifecycle::DEFAULT_RETENTION_DAYS,
            jobs_interval_ms: 30_000,
            audit_retention_days: None,
            audit_archive_dir: None,
            webhook_poll_ms: 1_000,
            webhook_backoff_ms: 30_000,
            key_rotation_poll_ms: 1_000,
            key_rotation_batch: 500,
        }
    }

    pub fn vault_config(&self) -> VaultConfig {
        VaultConfig {
            max_value_bytes: self.max_value_bytes,
            default_plan: self.default_plan.clone(),
            signup_open: self.signup == SignupMode::Open,
            signup_per_minute: self.signup_per_minute,
            auth_failures_per_minute: self.auth_failures_per_minute,
            approval_request_ttl: self.approval_request_ttl,
            max_claim_minutes: self.max_claim_minutes,
            allow_private_destinations: self.allow_private_destinations,
            retention_days: self.retention_days,
            jobs_interval: std::time::Duration::from_millis(self.jobs_interval_ms),
            audit_retention_days: self.audit_retention_days,
            audit_archive_dir: self.audit_archive_dir.clone(),
            webhook_poll: std::time::Duration::from_millis(self.webhook_poll_ms),
            webhook_backoff: std::time::Duration::from_millis(self.webhook_backoff_ms),
            key_rotation_poll: std::time::Duration::from_millis(self.key_rotation_poll_ms),
            key_rotation_batch: self.key_rotation_batch,
        }
    }
}

/// Opens the database the arguments name and applies its migrations.
pub async fn open_store(args: &StoreArgs) -> Result<Arc<dyn Store>> {
    match args.database_url.as_deref().filter(|u| !u.is_empty()) {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => Ok(Arc::new(PgStore::open(url).await?)),
        Some(url) => {
            let scheme = url.split_once(':').map_or(url, |(s, _)| s);
            Err(Error::InvalidRequest(format!(
                "unsupported database URL scheme '{scheme}': use postgres://… or leave DATABASE_URL unset for embedded SQLite"
            )))
        }
        None => {
            private_data_dir(&args.data_dir, true)?;
            Ok(Arc::new(SqliteStore::open(&args.data_dir).await?))
        }
    }
}

/// Makes the data dir readable by this user only: created 0700, and the
/// database's files 0600 (SQLite gives its write-ahead log and shared-memory
/// files the database file's mode, so the database file is made first). An
/// existing directory's mode is the operator's choice (it may be a home
/// directory); a loose one is reported, and only Latchkey's own files in it
/// are tightened.
fn private_data_dir(dir: &std::path::Path, sqlite: bool) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    let io = |what: &str, e: std::io::Error| Error::internal(format_args!("{what} {}: {e}", dir.display()));
    if !dir.exists() {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| io("creating data dir", e))?;
    } else if std::fs::metadata(dir).map_err(|e| io("reading data dir", e))?.permissions().mode() & 0o077 != 0 {
        tracing::warn!(dir = %dir.display(), "the data dir can be read by other users; consider chmod 700");
    }
    if sqlite {
        let db = dir.join(crate::store::sqlite::DB_FILE);
        let mut create = std::fs::OpenOptions::new();
        create.write(true).create(true).truncate(false).mode(0o600);
        create.open(&db).map_err(|e| io("creating database in", e))?;
    }
    for name in [crate::store::sqlite::DB_FILE, "latchkey.db-wal", "latchkey.db-shm", master::KEY_FILE] {
        let path = dir.join(name);
        if let Ok(meta) = std::fs::metadata(&path)
            && meta.permissions().mode() & 0o077 != 0
        {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(|e| io("restricting files in", e))?;
        }
    }
    Ok(())
}

/// Finds the master key: `LATCHKEY_MASTER_KEY`, else `LATCHKEY_PASSPHRASE`
/// (salt kept in the database), else the data dir's key file, created on first start.
pub async fn master_key(args: &StoreArgs, store: &dyn Store) -> Result<MasterKey> {
    if let Ok(b64) = std::env::var("LATCHKEY_MASTER_KEY") {
        return master::from_base64(&b64);
    }
    if let Ok(pass) = std::env::var("LATCHKEY_PASSPHRASE") {
        if pass.is_empty() {
            return Err(Error::InvalidRequest("LATCHKEY_PASSPHRASE is empty".into()));
        }
        let fresh: [u8; 16] = rand::random();
        let salt = store.meta_init("passphrase_salt", &fresh).await?;
        return tokio::task::spawn_blocking(move || master::from_passphrase(&pass, &salt)).await.map_err(Error::internal);
    }
    private_data_dir(&args.data_dir, false)?;
    let (key, created) = master::from_key_file(&args.data_dir)?;
    if created {
        tracing::warn!(
            path = %args.data_dir.join(master::KEY_FILE).display(),
            "no LATCHKEY_MASTER_KEY or LATCHKEY_PASSPHRASE: generated a master key file; back it up, and prefer an env key in production"
        );
    }
    Ok(key)
}

/// The key a master-key rotation moves to, when one is under way:
/// `LATCHKEY_NEW_MASTER_KEY`, else `LATCHKEY_NEW_PASSPHRASE` (the same stored
/// salt), else the data dir's `master.key.next` that an interrupted rotation
/// left (key-file mode only).
pub async fn next_master_key(args: &StoreArgs, store: &dyn Store) -> Result<Option<MasterKey>> {
    if let Ok(b64) = std::env::var("LATCHKEY_NEW_MASTER_KEY") {
        return master::from_base64(&b64)
            .map(Some)
            .map_err(|_| Error::InvalidRequest("LATCHKEY_NEW_MASTER_KEY must be base64 of exactly 32 bytes".into()));
    }
    if let Ok(pass) = std::env::var("LATCHKEY_NEW_PASSPHRASE") {
        if pass.is_empty() {
            return Err(Error::InvalidRequest("LATCHKEY_NEW_PASSPHRASE is empty".into()));
        }
        let fresh: [u8; 16] = rand::random();
        let salt = store.meta_init("passphrase_salt", &fresh).await?;
        return tokio::task::spawn_blocking(move || master::from_passphrase(&pass, &salt)).await.map(Some).map_err(Error::internal);
    }
    if key_file_mode() {
        return master::read_next_key_file(&args.data_dir);
    }
    Ok(None)
}

/// Whether the master key comes from the data dir's key file.
fn key_file_mode() -> bool {
    std::env::var_os("LATCHKEY_MASTER_KEY").is_none() && std::env::var_os("LATCHKEY_PASSPHRASE").is_none()
}

/// Opens the store, finds the master key (and the next one during a
/// rotation) and checks it against the data.
pub async fn open_vault(store_args: &StoreArgs, policy: &PolicyArgs) -> Result<Arc<Vault>> {
    let store = open_store(store_args).await?;
    let key = master_key(store_args, store.as_ref()).await?;
    let next = next_master_key(store_args, store.as_ref()).await?;
    Ok(Arc::new(Vault::open(store, crate::crypto::Keyring::new(key, next), policy.vault_config()).await?))
}

/// `latchkey rotate-master-key`: rewraps every tenant's data key under the
/// new master key in one transaction. With a key file, the new key (given,
/// or made here) is written as `master.key.next` before the rewrap and
/// renamed over `master.key` after it; an interrupted run is finished by
/// running it again, and a start in between opens with either key.
pub async fn rotate_master_key(args: &StoreArgs, progress: &(dyn Fn(usize) + Sync)) -> Result<crate::vault::master_key::Rotated> {
    let store = open_store(args).await?;
    let key = master_key(args, store.as_ref()).await?;
    let file_mode = key_file_mode();
    let next = match (next_master_key(args, store.as_ref()).await?, file_mode) {
        (Some(next), _) => next,
        (None, true) => MasterKey::generate(),
        (None, false) => {
            return Err(Error::InvalidRequest(
                "no new master key: set LATCHKEY_NEW_MASTER_KEY (or LATCHKEY_NEW_PASSPHRASE) beside the current one".into(),
            ));
        }
    };
    if file_mode {
        match master::read_next_key_file(&args.data_dir)? {
            Some(on_disk) if on_disk.expose() != next.expose() => {
                return Err(Error::Conflict(format!(
                    "{} holds another key (an earlier rotation's): finish that one first, without LATCHKEY_NEW_MASTER_KEY",
                    args.data_dir.join(master::NEXT_KEY_FILE).display()
                )));
            }
            Some(_) => {}
            None => master::write_next_key_file(&args.data_dir, &next)?,
        }
    }
    let vault = Vault::open(store, crate::crypto::Keyring::new(key, Some(next)), PolicyArgs::defaults().vault_config()).await?;
    let rotated = vault.rotate_master_key(progress).await;
    vault.store().close().await;
    let rotated = rotated?;
    if file_mode {
        master::promote_next_key_file(&args.data_dir)?;
    }
    Ok(rotated)
}
