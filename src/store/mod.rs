//! Persistence. One [`Store`] trait, one implementation per database, each with
//! its own migrations. Methods are units of work: a method that changes state
//! takes the audit entry that records it and commits both in one transaction,
//! so an action without its audit row can never be acknowledged.
//!
//! # Layout
//!
//! - [`sql`]: the SQL, written once in the dialect both databases accept,
//!   as generic functions; `Store` itself is implemented there, for every
//!   `sql::Backend`.
//! - [`sqlite`], [`postgres`]: each database's store: its connections and
//!   how it hears of other processes, and its own statements for the two
//!   batch writers (audit entries, new versions).
//! - [`version_writer`]: the group commit of new versions, shared.
//! - [`cached`]: the cache in front of a store for the hot reads.
//! - [`owners`]: owners, their links, sessions and passkeys (a trait of its own).
//! - [`claims`]: claim tokens, one tenant's hand-off of a secret to another (a trait of its own).
//! - [`shares`]: share links for people (a trait of its own).
//! - [`requests`]: secret requests, a value an agent asks a human for (a trait of its own).
//! - [`lifecycle`]: soft delete, restore, purge and version deletion (a trait of its own).
//! - [`rotation`]: rotation policies and rotations (a trait of its own).
//! - [`trail`]: the audit trail's size and retention's pruning (a trait of its own).
//! - [`webhooks`]: webhooks and their delivery queue (a trait of its own).
//! - [`backups`]: tenant backups, their snapshot and restore (a trait of its own).
//! - [`keyring`]: tenants' wrapped data keys, for a master-key rotation (a trait of its own).
//! - [`audit_chain`], [`chain`]: the audit trail's hash chain and its reading back for verify.
//! - [`liveness`]: the one rule for "is this credential still live".
//! - [`integrity`]: stored data that does not parse is an error, never a default.

pub mod audit_chain;
pub mod backups;
mod cached;
pub mod chain;
pub mod claims;
pub mod environments;
mod integrity;
pub mod keyring;
pub mod lifecycle;
mod liveness;
pub mod owners;
pub mod postgres;
pub mod requests;
pub mod rotation;
pub mod shares;
mod sql;
pub mod sqlite;
pub mod trail;
mod version_writer;
pub mod webhooks;

use async_trait::async_trait;

use crate::error::Result;
pub use cached::CachedStore;

/// Milliseconds since the Unix epoch: the only time format the store knows.
pub type Millis = i64;

pub fn now_millis() -> Millis {
    chrono::Utc::now().timestamp_millis()
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TenantRow {
    pub id: String,
    pub email: Option<String>,
    pub agent: Option<String>,
    pub description: Option<String>,
    pub plan: String,
    pub wrapped_key: Vec<u8>,
    pub created_at: Millis,
    /// Made by `latchkey mcp` for its local session, never by signup: the
    /// only kind of tenant a keyless session adopts.
    pub local_only: bool,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ApiKeyRow {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub prefix: String,
    pub key_hash: Vec<u8>,
    pub permission: String,
    /// JSON array of project ids; empty means every project.
    pub project_scope: String,
    pub expires_at: Option<Millis>,
    pub revoked_at: Option<Millis>,
    pub created_at: Millis,
    pub updated_at: Millis,
    /// `key`, or `token` for a scoped token (`vault::tokens`); tokens are
    /// left out of every listing and count of keys.
    pub kind: String,
    /// A token's scopes: JSON array of scope strings.
    pub scopes: Option<String>,
    /// A token's limit of authenticated requests; `None`: no limit.
    pub max_uses: Option<i64>,
    /// Uses a token made: every request when it has `max_uses` (and every
    /// call of a `latchkey mcp` session).
    pub uses: i64,
    /// A token's allowed client addresses: JSON array of addresses and CIDRs.
    pub ip_allowlist: Option<String>,
    /// The key that minted a token.
    pub parent_key_id: Option<String>,
    /// Why a token was asked for, as its asker said.
    pub reason: Option<String>,
    /// The approval a token was issued under, if one was needed.
    pub approval_id: Option<String>,
}

impl ApiKeyRow {
    pub fn is_token(&self) -> bool {
        self.kind == KIND_TOKEN
    }
}

/// `api_keys.kind` of a scoped token.
pub const KIND_TOKEN: &str = "token";
/// `api_keys.kind` of an API key.
pub const KIND_KEY: &str = "key";

/// An API key with its tenant's plan: what authentication needs, in one read.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct KeyWithPlan {
    #[sqlx(flatten)]
    pub key: ApiKeyRow,
    pub plan: String,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ProjectRow {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub description: Option<String>,
    /// JSON array of strings.
    pub tags: String,
    pub created_at: Millis,
    pub updated_at: Millis,
    /// Filled by reads; ignored by writes.
    #[sqlx(default)]
    pub secret_count: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SecretRow {
    pub id: String,
    pub tenant_id: String,
    pub project_id: Option<String>,
    /// Empty when the secret belongs to no environment.
    pub environment: String,
    pub name: String,
    pub secret_type: String,
    pub description: Option<String>,
    /// JSON array of strings (the searchable copy lives in `secret_tags`).
    pub tags: String,
    pub current_version: i64,
    pub created_at: Millis,
    pub updated_at: Millis,
    /// `standard`, `sensitive` or `critical`: whether reading the value
    /// needs a human's approval (see `vault::approvals`).
    pub access_tier: String,
    /// `reveal`, `masked` or `use_only`: what a read of the value answers
    /// (see `vault::exposure`).
    pub exposure: String,
    /// JSON array of the proxy's allowed destinations (see `vault::bindings`).
    pub bindings: String,
    /// When reads start answering 410 SECRET_EXPIRED (lists hide it).
    pub expires_at: Option<Millis>,
    /// Set by a soft delete: the secret is gone for every read and list but
    /// restorable (and its name reserved) until the purge job erases it.
    pub deleted_at: Option<Millis>,
    /// How many versions are kept; each write prunes the oldest beyond it.
    pub max_versions: Option<i64>,
    /// After a rotation with a grace period: the previous version, still
    /// readable by number until [`SecretRow::retiring_until`].
    pub retiring_version: Option<i64>,
    pub retiring_until: Option<Millis>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct VersionRow {
    pub secret_id: String,
    pub version: i64,
    pub sealed: Vec<u8>,
    pub created_at: Millis,
    pub created_by: String,
}

/// A secret row joined with one of its versions (see [`Store::read_secret`]).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct SecretWithVersion {
    #[sqlx(flatten)]
    pub secret: SecretRow,
    pub v_version: Option<i64>,
    pub v_sealed: Option<Vec<u8>>,
    pub v_created_at: Option<Millis>,
    pub v_created_by: Option<String>,
}

impl SecretWithVersion {
    /// The secret and its version; `None` when the join found no version.
    /// A version row with a column missing cannot be (every column is NOT
    /// NULL): it is an integrity error, not a missing version.
    pub(crate) fn split(self) -> Result<(SecretRow, Option<VersionRow>)> {
        let version = match (self.v_version, self.v_sealed, self.v_created_at, self.v_created_by) {
            (Some(version), Some(sealed), Some(created_at), Some(created_by)) => {
                Some(VersionRow { secret_id: self.secret.id.clone(), version, sealed, created_at, created_by })
            }
            (None, None, None, None) => None,
            _ => return Err(integrity::unreadable("secret_versions", "*", &self.secret.id)),
        };
        Ok((self.secret, version))
    }
}

/// A request for a human's approval (see `vault::approvals`), with what is
/// known of its secret at the time of reading.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ApprovalRow {
    pub id: String,
    pub tenant_id: String,
    /// `read` (one secret's value) or `token` (a scoped token covering gated secrets).
    pub kind: String,
    /// The key (or token) that asked: only it may use the grant.
    pub requester_id: String,
    pub requester_name: String,
    pub secret_id: Option<String>,
    /// A token approval's request, JSON, as the token service stored it.
    pub token_request: Option<String>,
    /// A token approval's gated secrets: JSON array of ids.
    pub gated_secret_ids: Option<String>,
    pub reason: Option<String>,
    pub ip: Option<String>,
    /// `pending`, `approved`, `denied`, `expired` or `used`.
    pub status: String,
    pub created_at: Millis,
    /// When a pending request lapses (noticed lazily, see `Store::expire_approvals`).
    pub expires_at: Millis,
    pub decided_at: Option<Millis>,
    pub decided_by: Option<String>,
    pub decided_how: Option<String>,
    pub deny_reason: Option<String>,
    pub grant_expires_at: Option<Millis>,
    pub grant_uses_left: Option<i64>,
    /// The secret as it is now (joined by reads; `None` once deleted).
    #[sqlx(default)]
    pub secret_name: Option<String>,
    #[sqlx(default)]
    pub secret_environment: Option<String>,
    #[sqlx(default)]
    pub secret_tier: Option<String>,
}

/// A human's decision on a pending approval (see [`Store::decide_approval`]).
#[derive(Debug, Clone)]
pub struct Decision {
    /// `approved` or `denied`.
    pub status: &'static str,
    pub decided_at: Millis,
    pub decided_by: String,
    pub decided_how: String,
    pub deny_reason: Option<String>,
    pub grant_expires_at: Option<Millis>,
    pub grant_uses_left: Option<i64>,
}

/// The audit entry of an approval's change, made from the row the change
/// wrote (its id is known only then).
pub type ApprovalAudit<'a> = &'a (dyn Fn(&ApprovalRow) -> AuditRow + Send + Sync);

/// Version history without ciphertext.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct VersionMeta {
    pub version: i64,
    pub created_at: Millis,
    pub created_by: String,
}

/// One audit record. Never carries a secret value.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuditRow {
    #[sqlx(default)]
    pub id: i64,
    pub tenant_id: Option<String>,
    pub at: Millis,
    pub actor: String,
    pub front: String,
    pub action: String,
    pub resource_type: String,
    pub resource_id: Option<String>,
    pub outcome: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// JSON object with non-secret context (names, versions, reasons).
    pub detail: Option<String>,
    /// The entry's position in its chain (see `store::chain`); `None` for
    /// entries written before chaining, and until the store appends it.
    #[sqlx(default)]
    pub chain_seq: Option<i64>,
    /// HMAC over the entry and its predecessor's hash (see `store::chain`).
    #[sqlx(default)]
    pub chain_hash: Option<Vec<u8>>,
    /// The agent that acted: the MCP client's name/version from
    /// `initialize`, else the request's `User-Agent`.
    #[sqlx(default)]
    pub client: Option<String>,
    /// The MCP tool whose call made the entry.
    #[sqlx(default)]
    pub tool: Option<String>,
    /// The reason the caller gave, where the action takes one.
    #[sqlx(default)]
    pub reason: Option<String>,
    /// The acting key as the request presented it; `None` for actions that
    /// are no key's (the operator's CLI, anonymous and failed attempts). An
    /// entry with one goes in only while that credential is live (see
    /// `store::liveness`). Not stored.
    #[sqlx(skip)]
    pub credential: Option<Credential>,
    /// The secret version a read served, as the cache had it; the entry of a
    /// value read goes in only while that is still true (PostgreSQL's audit
    /// batch). Not stored.
    #[sqlx(skip)]
    pub served: Option<Served>,
}

/// A plan's secret quota by the plan's name (`None`: no limit).
pub type QuotaOf<'a> = &'a (dyn Fn(&str) -> Result<Option<i64>> + Send + Sync);

/// What a read answered from the cache: a secret as its current version and
/// metadata (the value and everything said beside it). Every change to a
/// secret moves its version or its `updated_at`, so the pair names the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    pub secret_id: String,
    pub version: i64,
    pub updated_at: Millis,
}

/// An API key as a request presented it: its hash and the rights its row
/// gave it then (as stored). A write by a cached key goes in only while the
/// row still says exactly this: not revoked, not regenerated, not narrowed.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Credential {
    pub key_hash: Vec<u8>,
    pub permission: String,
    pub project_scope: String,
}

impl Credential {
    pub fn of(key: &ApiKeyRow) -> Self {
        Credential { key_hash: key.key_hash.clone(), permission: key.permission.clone(), project_scope: key.project_scope.clone() }
    }
}

/// A connection pool's state at one moment (see [`Store::pool_stats`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct PoolStats {
    /// Connections open, idle among them.
    pub open: u32,
    pub idle: u32,
}

/// What one audit batch did.
#[derive(Debug, Default)]
pub struct Appended {
    /// Another process changed the database (see [`Store::changed_elsewhere`]).
    pub changed: bool,
    /// Positions of success entries left out because their credential is no
    /// longer live (see `store::liveness`), or the secret version a read
    /// served is no longer there as served (PostgreSQL only). The requests
    /// they acknowledge must fail; the other entries went in.
    pub refused: Vec<usize>,
}

/// Refusal of a key change that would leave a tenant without a live admin key
/// with no project scope and no expiry (see `Store::update_api_key`).
pub const LAST_ROOT_KEY: &str = "this is the tenant's last admin key with no project scope and no expiry: \
create another such key before revoking, narrowing or expiring this one";

/// Why a write by a key was refused inside its transaction: its credential
/// is no longer live (see `store::liveness`). The vault answers 401 instead
/// when the key turns out dead (`Vault::dead_key_first`).
pub const KEY_CHANGED: &str = "this API key changed while the request ran; send it again";

/// Why the audit writer refused a read's entry (`Appended::refused`).
pub const CHANGED_MEANWHILE: &str = "this API key or the secret changed while the request ran; send it again";

/// Why a request by a key that is revoked, regenerated or expired is refused.
pub const DEAD_KEY: &str = "this API key was revoked, regenerated or has expired";

#[derive(Debug, Clone, Default)]
pub struct SecretFilter {
    pub secret_type: Option<String>,
    pub environment: Option<String>,
    pub project_id: Option<String>,
    pub tag: Option<String>,
    pub search: Option<String>,
    /// When set, only secrets in these projects are visible (project-scoped keys).
    pub project_scope: Option<Vec<String>>,
    /// When set, only secrets whose path (`vault::scopes::path`) one of these
    /// globs may match: a token's listing. A prefilter, never narrower than the
    /// globs (SQLite's LIKE ignores ASCII case); the vault applies them exactly.
    pub path_globs: Option<Vec<String>>,
    /// Keyset cursor: the (name, id) of the last row of the previous page.
    pub after: Option<(String, String)>,
    pub limit: i64,
    /// `false` (the default): live secrets only; `true`: soft-deleted ones
    /// only (the restorable listing).
    pub deleted: bool,
    /// Leaves out secrets expired at this time (`expires_at <= t`).
    pub hide_expired_at: Option<Millis>,
    /// Only secrets with an expiry no later than this time.
    pub expiring_before: Option<Millis>,
    /// Only secrets whose path (`vault::scopes::path`) starts with this,
    /// exactly (case included).
    pub path_prefix: Option<String>,
}

/// One audit query, with the bounds on its work (see [`Store::query_audit`]).
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub action: Option<String>,
    pub resource_type: Option<String>,
    /// The acting key's id; like `action`, checked row by row in the scan.
    pub actor: Option<String>,
    pub front: Option<String>,
    /// An MCP tool's name.
    pub tool: Option<String>,
    pub start: Option<Millis>,
    pub end: Option<Millis>,
    /// Keyset cursor: the `(at, id)` of the last entry already seen; the page
    /// starts after it (newest first).
    pub after: Option<(Millis, i64)>,
    pub limit: i64,
    pub offset: i64,
    /// Entries of the tenant's range (newest first, after the cursor) that a
    /// query filtered by action or resource type examines for its page, and
    /// from the top for its count: neither filter has an index, and another
    /// index on the table every read appends to would cost every read.
    pub scan: i64,
    /// The count stops after this many matching entries; 0: no count
    /// (`total` is 0).
    pub count_limit: i64,
}

/// What an audit query found within its bounds.
#[derive(Debug, Default)]
pub struct AuditSlice {
    /// Matching entries, newest first: at most `limit` after skipping `offset`.
    pub rows: Vec<AuditRow>,
    /// The page's scan stopped at its bound: entries older than this time
    /// were not examined (they all are when `None`).
    pub unscanned_before: Option<Millis>,
    /// Matching entries from the top of the range (cursor and offset aside),
    /// counted up to `count_limit`.
    pub total: i64,
    /// The count's scan stopped at its bound, so `total` leaves out older entries.
    pub total_partial: bool,
}

/// See [`Store::add_version`]: given the secret as it is inside the write,
/// the next version (sealed for `current_version + 1`) and its audit entry.
/// Shared (`Arc`), because a batch that fails is tried again job by job.
pub type VersionChange = std::sync::Arc<dyn Fn(&SecretRow) -> Result<(VersionRow, AuditRow)> + Send + Sync>;

/// See [`Store::update_secret`]: given the secret as it is inside the write,
/// the new row, the new version if the value changes, and the audit entry.
pub type SecretChange<'a> = &'a (dyn Fn(&SecretRow) -> Result<(SecretRow, Option<VersionRow>, AuditRow)> + Send + Sync);

/// One write of a batch (see [`Store::write_batch`]).
#[derive(Debug)]
pub enum BatchWrite {
    /// A new secret and its first version.
    Create { secret: Box<SecretRow>, first: VersionRow },
    /// The next version of a secret that must still be at `expected_version`
    /// (sealed for `expected_version + 1`).
    Version { secret_id: String, expected_version: i64, version: VersionRow },
}

/// What a conditional secret write found.
#[derive(Debug)]
pub enum WriteOutcome {
    Written(Box<SecretRow>),
    /// The secret moved on since the caller's base version.
    Stale {
        current: i64,
    },
    Missing,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Which database this is, for logs and `whoami`.
    fn backend(&self) -> &'static str;

    /// Closes the pool, waiting for in-flight transactions.
    async fn close(&self);

    /// Owners, their links, sessions and passkeys (see [`owners`]).
    fn owners(&self) -> &dyn owners::OwnerStore;

    /// Claim tokens (see [`claims`]).
    fn claims(&self) -> &dyn claims::ClaimStore;
    /// Share links for people (see [`shares`]).
    fn shares(&self) -> &dyn shares::ShareStore;
    /// Secret requests (see [`requests`]).
    fn requests(&self) -> &dyn requests::RequestStore;
    /// Soft delete, restore, purge, version deletion (see [`lifecycle`]).
    fn lifecycle(&self) -> &dyn lifecycle::LifecycleStore;
    /// Rotation policies and rotations (see [`rotation`]).
    fn rotations(&self) -> &dyn rotation::RotationStore;
    /// Project environments and templates (see [`environments`]).
    fn environments(&self) -> &dyn environments::EnvironmentStore;
    /// Tenants' wrapped data keys, for a master-key rotation (see [`keyring`]).
    fn keyring(&self) -> &dyn keyring::KeyringStore;
    /// The audit trail's size and retention's pruning (see [`trail`]).
    fn trail(&self) -> &dyn trail::TrailStore;
    /// The read pool's connections right now, for `/metrics`.
    fn pool_stats(&self) -> PoolStats {
        PoolStats::default()
    }
    /// The audit chain, read back for `verify` (see [`audit_chain`]).
    fn audit_chain(&self) -> &dyn audit_chain::AuditChainStore;

    /// Webhooks and their delivery queue (see [`webhooks`]).
    fn webhooks(&self) -> &dyn webhooks::WebhookStore;

    /// Tenant backups: archives, snapshots, restore (see [`backups`]).
    fn backups(&self) -> &dyn backups::BackupStore;

    async fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>>;
    /// Stores `value` unless `key` exists; returns whatever is stored afterwards,
    /// so concurrent first starts agree on one value.
    async fn meta_init(&self, key: &str, value: &[u8]) -> Result<Vec<u8>>;

    // Tenants and keys.
    /// A new tenant with its first key and, from a signup, the one-time
    /// link that makes its first owner (see `owners`).
    async fn create_tenant(
        &self,
        tenant: &TenantRow,
        key: &ApiKeyRow,
        setup_link: Option<&owners::LinkRow>,
        audit: &AuditRow,
    ) -> Result<()>;
    async fn get_tenant(&self, id: &str) -> Result<Option<TenantRow>>;
    async fn set_tenant_plan(&self, id: &str, plan: &str, audit: &AuditRow) -> Result<bool>;
    async fn find_api_key(&self, key_hash: &[u8]) -> Result<Option<KeyWithPlan>>;
    async fn get_api_key(&self, tenant_id: &str, id: &str) -> Result<Option<ApiKeyRow>>;
    /// The tenant's API keys, never its tokens.
    async fn list_api_keys(&self, tenant_id: &str) -> Result<Vec<ApiKeyRow>>;
    /// The tenant's scoped tokens, oldest first; only those `parent` minted when given.
    async fn list_tokens(&self, tenant_id: &str, parent: Option<&str>) -> Result<Vec<ApiKeyRow>>;
    /// Counts one use of a token, past any cache, in one conditional
    /// update: false when its `max_uses` are used up (or it is gone).
    /// Under any concurrency exactly `max_uses` calls answer true.
    async fn use_token(&self, id: &str) -> Result<bool>;
    async fn insert_api_key(&self, key: &ApiKeyRow, audit: &AuditRow) -> Result<()>;
    /// Rewrites a key's mutable fields (name, hash, prefix, permission, scope,
    /// expiry, revocation), if the key is not revoked and is as it was read:
    /// its `updated_at` is still `seen_updated_at`. Returns false otherwise
    /// (or when the key is not the tenant's): a change read before another
    /// one committed must not write back what that one changed, such as a
    /// revocation, a regenerated hash or a cut permission.
    /// A change to anything but the name also revokes the key's live tokens.
    async fn update_api_key(&self, key: &ApiKeyRow, seen_updated_at: Millis, audit: &AuditRow) -> Result<bool>;

    // Projects.
    async fn insert_project(&self, project: &ProjectRow, audit: &AuditRow) -> Result<()>;
    async fn get_project(&self, tenant_id: &str, id: &str) -> Result<Option<ProjectRow>>;
    async fn list_projects(&self, tenant_id: &str) -> Result<Vec<ProjectRow>>;
    async fn update_project(&self, project: &ProjectRow, audit: &AuditRow) -> Result<bool>;
    /// Deletes an empty project. `Err(Conflict)` while secrets remain; `Ok(false)` when missing.
    /// With `purge_deleted`, the project's soft-deleted secrets are erased
    /// with it (each audited); without, they make it a 409 as live ones do.
    async fn delete_project(&self, tenant_id: &str, id: &str, purge_deleted: bool, audit: &AuditRow) -> Result<bool>;

    // Secrets.
    /// Inserts a secret with its first version. `max_secrets` gives a plan's
    /// quota; it is asked for the tenant's plan as the transaction reads it, so a
    /// plan changed on another replica applies even where a cached key still
    /// carries the old one.
    async fn create_secret(&self, secret: &SecretRow, first: &VersionRow, max_secrets: QuotaOf<'_>, audit: &AuditRow) -> Result<()>;
    async fn get_secret(&self, tenant_id: &str, id: &str) -> Result<Option<SecretRow>>;
    async fn find_secret(&self, tenant_id: &str, project_id: Option<&str>, environment: &str, name: &str) -> Result<Option<SecretRow>>;
    async fn get_version(&self, secret_id: &str, version: i64) -> Result<Option<VersionRow>>;
    /// A secret with one version (`None`: the current one) in a single query;
    /// the version is `None` when the secret has no such version.
    async fn read_secret(&self, tenant_id: &str, id: &str, version: Option<i64>) -> Result<Option<(SecretRow, Option<VersionRow>)>>;
    /// Changes a secret inside one write transaction that holds its row
    /// (PostgreSQL: `FOR UPDATE`; SQLite: the one writer). `Missing` when the
    /// tenant has no such secret; `Stale` when `expected_version` is given
    /// and the secret is at another version. Otherwise `change` sees the
    /// current row and returns the new row, the new version (if any) and the
    /// audit entry; sealing happens there, so the version number bound into
    /// the ciphertext is the one that commits. The write is refused (409
    /// `KEY_CHANGED`, nothing written) when the entry's credential is not live.
    async fn update_secret(
        &self,
        tenant_id: &str,
        id: &str,
        expected_version: Option<i64>,
        change: SecretChange<'_>,
    ) -> Result<WriteOutcome>;
    /// A new value and nothing else: the hot write. Same contract as
    /// [`Store::update_secret`], except that `change` returns only the new
    /// version (numbered `current_version + 1`) and the audit entry. Both
    /// stores commit concurrent calls together (see `version_writer`),
    /// acknowledging each only after the shared commit. `actor` is the
    /// writing key as the request presented it, checked inside the write
    /// like every write's (see `store::liveness`).
    async fn add_version(
        &self,
        tenant_id: &str,
        id: &str,
        expected_version: Option<i64>,
        actor: &Credential,
        change: VersionChange,
    ) -> Result<WriteOutcome>;
    /// Many creates and new versions in ONE transaction with their audit
    /// entries (an import, a promotion): all or nothing. Each create counts
    /// against the plan's quota as [`Store::create_secret`]'s does; each new
    /// version goes in only while its secret is still at `expected_version`
    /// and not deleted (else `VersionConflict`, or `SecretNotFound`, and
    /// nothing is stored).
    async fn write_batch(&self, tenant_id: &str, writes: &[BatchWrite], max_secrets: QuotaOf<'_>, audit: &[AuditRow]) -> Result<()>;
    /// Up to `limit` versions below `before` (all when `None`), newest first.
    async fn list_versions(&self, secret_id: &str, before: Option<i64>, limit: i64) -> Result<Vec<VersionMeta>>;
    async fn list_secrets(&self, tenant_id: &str, filter: &SecretFilter) -> Result<Vec<SecretRow>>;
    async fn count_secrets(&self, tenant_id: &str) -> Result<i64>;

    // Approvals and the tenant's approval policy.
    /// Whether the tenant's policy gates `sensitive` secrets too.
    /// The tenant's secrets above the standard tier: those a token's scopes
    /// may cover that need an owner's approval first.
    async fn list_protected_secrets(&self, tenant_id: &str) -> Result<Vec<SecretRow>>;
    async fn gate_sensitive(&self, tenant_id: &str) -> Result<bool>;
    async fn set_gate_sensitive(&self, tenant_id: &str, on: bool, audit: &AuditRow) -> Result<bool>;
    /// Opens `row` (status `pending`), or answers the pending request it
    /// duplicates: for a `read`, the requester's pending request for the
    /// same secret (a unique index keeps it to one; one that lapsed is
    /// expired first, audited by `expired`); for a `token`, the requester's
    /// pending request with the same `token_request`. `requested` audits a
    /// new row, in the same transaction.
    async fn open_approval(
        &self,
        row: &ApprovalRow,
        now: Millis,
        requested: ApprovalAudit<'_>,
        expired: ApprovalAudit<'_>,
    ) -> Result<ApprovalRow>;
    /// Takes one use of a live read grant of `requester_id` for the secret:
    /// ONE conditional UPDATE (uses left, not lapsed, approved), which marks
    /// the grant `used` when it takes the last use. `None`: no live grant.
    async fn use_grant(
        &self,
        tenant_id: &str,
        requester_id: &str,
        secret_id: &str,
        now: Millis,
        used: ApprovalAudit<'_>,
    ) -> Result<Option<ApprovalRow>>;
    /// `tenant_id` `None`: whichever tenant's it is (the operator's CLI).
    async fn get_approval(&self, tenant_id: Option<&str>, id: &str) -> Result<Option<ApprovalRow>>;
    /// Newest first, at most `limit`; `requester_id` narrows to one
    /// requester's; `tenant_id` `None`: every tenant's (the operator's CLI).
    async fn list_approvals(
        &self,
        tenant_id: Option<&str>,
        requester_id: Option<&str>,
        status: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ApprovalRow>>;
    /// Decides a request that is still pending and not lapsed (one
    /// conditional UPDATE); `None` when it is not, and nothing changed.
    async fn decide_approval(&self, tenant_id: &str, id: &str, d: &Decision, audit: &AuditRow) -> Result<Option<ApprovalRow>>;
    /// Marks those of `ids` that are pending and lapsed at `now` as
    /// `expired`, each audited by `expired`; answers the rows it changed.
    async fn expire_approvals(&self, tenant_id: &str, ids: &[String], now: Millis, expired: ApprovalAudit<'_>) -> Result<Vec<ApprovalRow>>;
    /// Marks an approved, unlapsed `token` approval of `requester_id` as
    /// `used` (one conditional UPDATE); `None` when it is not such a one.
    async fn take_token_approval(
        &self,
        tenant_id: &str,
        id: &str,
        requester_id: &str,
        now: Millis,
        used: ApprovalAudit<'_>,
    ) -> Result<Option<ApprovalRow>>;

    // Audit.
    /// Appends entries (the audit writer batches concurrent ones), except
    /// those it refuses (see [`Appended::refused`]), and answers
    /// [`Store::changed_elsewhere`] as of a moment after the entries' first
    /// statement began, without a round trip of its own where it can.
    async fn append_audit(&self, entries: &[AuditRow]) -> Result<Appended>;
    /// A page of the tenant's audit trail and a bounded count of what
    /// matches: the work is bounded by `filter.scan`, `count_limit`, `offset`
    /// and `limit`, never by the size of the trail.
    async fn query_audit(&self, tenant_id: &str, filter: &AuditFilter) -> Result<AuditSlice>;
    /// The tenant's entries from `since` on: (those before `split`, all of
    /// them). An index-only range scan of `(tenant_id, at)`.
    async fn count_audit_since(&self, tenant_id: &str, since: Millis, split: Millis) -> Result<(i64, i64)>;

    // Changes made by other processes.
    /// Whether another process (a second `latchkey` on the same SQLite file,
    /// another replica on PostgreSQL) may have committed a change to keys,
    /// plans or secrets since the previous call. A store that cannot tell
    /// answers `true` every time, which turns the cache above it off.
    async fn changed_elsewhere(&self) -> Result<bool>;
    /// How many changes by other processes the cache above this store has
    /// noticed so far. A read served from the cache is current when this did
    /// not move between the start of the request and the commit of its audit
    /// entry (whose write answers [`Store::changed_elsewhere`], see
    /// [`Store::append_audit`]).
    fn change_epoch(&self) -> u64 {
        0
    }
    /// Whether [`Store::changed_elsewhere`] can be trusted right now; a cache
    /// above a store that cannot tell stays empty.
    fn tracks_changes(&self) -> bool;
    /// [`Store::read_secret`], and whether the answer came from a cache (and so
    /// may be stale, see [`Served`]) rather than from the database as of this call.
    async fn read_secret_cached(
        &self,
        tenant_id: &str,
        id: &str,
        version: Option<i64>,
    ) -> Result<(Option<(SecretRow, Option<VersionRow>)>, bool)> {
        Ok((self.read_secret(tenant_id, id, version).await?, false))
    }
    /// [`Store::read_secret`], past any cache: the answer is the database's
    /// as of this call.
    async fn read_secret_uncached(
        &self,
        tenant_id: &str,
        id: &str,
        version: Option<i64>,
    ) -> Result<Option<(SecretRow, Option<VersionRow>)>> {
        self.read_secret(tenant_id, id, version).await
    }
}
