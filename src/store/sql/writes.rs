//! The steps a write transaction is made of, shared by every write: its
//! audit entry (checked by the liveness rule), new versions, tags, keys; and
//! what a constraint violation means to the caller.

use sqlx::{AssertSqlSafe, Transaction};

use super::dialect::{Dialect, Stmt, query};
use super::{KEY_COLS, SECRET_COLS};
use crate::error::{Error, Result};
use crate::store::{ApiKeyRow, AuditRow, KEY_CHANGED, SecretRow, VersionRow, now_millis};

/// Turns a constraint violation into the domain error it means.
pub(super) fn constraint_error(e: sqlx::Error, on_unique: impl FnOnce() -> Error) -> Error {
    if let Some(db) = e.as_database_error() {
        if db.is_unique_violation() {
            return on_unique();
        }
        if db.is_foreign_key_violation() {
            return Error::Conflict("the referenced resource changed concurrently; retry".into());
        }
    }
    Error::from(e)
}

/// The audit entry of a write, inside its transaction; refuses (and so
/// rolls back the write) when the entry's credential is no longer live
/// (see `store::liveness`): revoked, expired, regenerated, narrowed or gone.
///
/// The entry is linked to its chain (see `store::chain`) from the head read
/// under lock in this transaction, and the head moves on with it: a write
/// transaction appends in the order its lock on the head gives it.
pub(super) async fn insert_audit<D: Dialect>(tx: &mut Transaction<'_, D>, a: &AuditRow) -> Result<()> {
    use crate::store::liveness::{guarded_audit_sql, plain_audit_sql};
    let chain = crate::store::chain::chain_of(a).to_owned();
    let head = lock_head(tx, &chain).await?;
    let mut linked = a.clone();
    let mut heads = std::collections::HashMap::from([(chain.clone(), head)]);
    crate::store::chain::link(std::slice::from_mut(&mut linked), &mut heads);
    let a = &linked;
    let n = match &a.credential {
        // Expiry is judged now, inside the transaction, not at the entry's
        // time (taken before waiting for the writer).
        Some(c) => bind_audit(query::<D>(AssertSqlSafe(guarded_audit_sql(D::PARAMS))), std::slice::from_ref(a))
            .bind(c.key_hash.as_slice())
            .bind(c.permission.as_str())
            .bind(c.project_scope.as_str())
            .bind(now_millis()),
        None => bind_audit(query::<D>(AssertSqlSafe(plain_audit_sql(D::PARAMS))), std::slice::from_ref(a)),
    }
    .execute(&mut **tx)
    .await?;
    if n == 0 {
        return Err(Error::Conflict(KEY_CHANGED.into()));
    }
    query::<D>("UPDATE audit_chain_heads SET seq = $1, hash = $2 WHERE chain = $3")
        .bind(a.chain_seq)
        .bind(a.chain_hash.clone())
        .bind(chain)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Several audit entries of one transaction, in order. Their chains' heads
/// are locked first, in sorted order: a claim's entries go to two tenants'
/// chains, and two transactions locking the same two heads in opposite
/// orders would deadlock on PostgreSQL (the audit batches lock theirs sorted too).
pub(super) async fn insert_audits<D: Dialect>(tx: &mut Transaction<'_, D>, rows: &[AuditRow]) -> Result<()> {
    let chains = crate::store::chain::chains(rows);
    if chains.len() > 1 {
        for chain in &chains {
            lock_head(tx, chain).await?;
        }
    }
    for a in rows {
        insert_audit(tx, a).await?;
    }
    Ok(())
}

/// The head of `chain`, locked until the transaction ends: the upsert takes
/// the row lock on PostgreSQL (SQLite's write transaction holds the whole
/// database), and makes the row of a chain's first entry, so two first
/// entries queue on it as any others do.
pub(in crate::store) async fn lock_head<D: Dialect>(tx: &mut Transaction<'_, D>, chain: &str) -> Result<crate::store::chain::Head> {
    let (seq, hash): (i64, Vec<u8>) = query::<D>(
        "INSERT INTO audit_chain_heads (chain, seq, hash) VALUES ($1, 0, $2) \
         ON CONFLICT (chain) DO UPDATE SET seq = audit_chain_heads.seq RETURNING seq, hash",
    )
    .bind(chain)
    .bind(crate::store::chain::GENESIS.as_slice())
    .fetch_one::<(i64, Vec<u8>)>(&mut **tx)
    .await?;
    Ok(crate::store::chain::Head { seq, hash })
}

/// Binds `chunk` as the parameters of an audit insert, after whatever
/// `q` already binds.
pub(in crate::store) fn bind_audit<'q, D: Dialect>(q: Stmt<'q, D>, chunk: &'q [AuditRow]) -> Stmt<'q, D> {
    bind_linked(q, chunk.iter().map(|a| (a, &a.chain_seq, &a.chain_hash)))
}

/// [`bind_audit`] with each row's chain position and hash given beside it
/// (an audit batch links without copying its rows).
pub(in crate::store) fn bind_linked<'q, D: Dialect>(
    mut q: Stmt<'q, D>,
    rows: impl IntoIterator<Item = (&'q AuditRow, &'q Option<i64>, &'q Option<Vec<u8>>)>,
) -> Stmt<'q, D> {
    for (a, chain_seq, chain_hash) in rows {
        q = q
            .bind(&a.tenant_id)
            .bind(a.at)
            .bind(&a.actor)
            .bind(&a.front)
            .bind(&a.action)
            .bind(&a.resource_type)
            .bind(&a.resource_id)
            .bind(&a.outcome)
            .bind(&a.ip)
            .bind(&a.user_agent)
            .bind(&a.detail)
            .bind(chain_seq)
            .bind(chain_hash)
            .bind(&a.client)
            .bind(&a.tool)
            .bind(&a.reason);
    }
    q
}

/// Live keys that can do everything, for as long as the tenant lasts:
/// admin, no project scope, no expiry. Losing the last one would lock
/// the tenant out of its own secrets for good.
pub(super) async fn count_root_keys<D: Dialect>(tx: &mut Transaction<'_, D>, tenant_id: &str) -> Result<i64> {
    query::<D>(
        "SELECT COUNT(*) FROM api_keys WHERE tenant_id = $1 AND revoked_at IS NULL AND expires_at IS NULL \
         AND permission = 'admin' AND project_scope = '[]' AND kind = 'key'",
    )
    .bind(tenant_id)
    .fetch_one_scalar(&mut **tx)
    .await
}

pub(super) async fn insert_version<D: Dialect>(tx: &mut Transaction<'_, D>, v: &VersionRow) -> Result<()> {
    query::<D>("INSERT INTO secret_versions (secret_id, version, sealed, created_at, created_by) VALUES ($1, $2, $3, $4, $5)")
        .bind(&v.secret_id)
        .bind(v.version)
        .bind(&v.sealed)
        .bind(v.created_at)
        .bind(&v.created_by)
        .execute(&mut **tx)
        .await
        .map_err(|e| constraint_error(e, || Error::VersionConflict { expected: v.version - 1, current: v.version }))?;
    Ok(())
}

pub(super) async fn replace_tags<D: Dialect>(tx: &mut Transaction<'_, D>, s: &SecretRow) -> Result<()> {
    query::<D>("DELETE FROM secret_tags WHERE secret_id = $1").bind(&s.id).execute(&mut **tx).await?;
    let tags: Vec<String> = serde_json::from_str(&s.tags).map_err(|_| crate::store::integrity::unreadable("secrets", "tags", &s.id))?;
    for tag in tags {
        query::<D>("INSERT INTO secret_tags (secret_id, tenant_id, tag) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
            .bind(&s.id)
            .bind(&s.tenant_id)
            .bind(tag)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

pub(super) async fn insert_key<D: Dialect>(tx: &mut Transaction<'_, D>, k: &ApiKeyRow) -> Result<()> {
    query::<D>(AssertSqlSafe(format!(
        "INSERT INTO api_keys ({KEY_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)"
    )))
    .bind(&k.id)
    .bind(&k.tenant_id)
    .bind(&k.name)
    .bind(&k.prefix)
    .bind(&k.key_hash)
    .bind(&k.permission)
    .bind(&k.project_scope)
    .bind(k.expires_at)
    .bind(k.revoked_at)
    .bind(k.created_at)
    .bind(k.updated_at)
    .bind(&k.kind)
    .bind(&k.scopes)
    .bind(k.max_uses)
    .bind(k.uses)
    .bind(&k.ip_allowlist)
    .bind(&k.parent_key_id)
    .bind(&k.reason)
    .bind(&k.approval_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Refuses one more live secret beyond the tenant's plan quota:
/// `max_secrets` is asked for the plan as the transaction reads it (under
/// the tenant's lock, `lock_tenant`, when the plan has a quota). Soft-deleted
/// secrets do not count. Shared by creations and restorations.
pub(super) async fn check_quota<D: Dialect>(
    tx: &mut Transaction<'_, D>,
    lock_tenant: &'static str,
    tenant_id: &str,
    max_secrets: crate::store::QuotaOf<'_>,
) -> Result<()> {
    // The plan as the database has it now, not as a cached key carried it.
    let plan: Option<String> =
        query::<D>("SELECT plan FROM tenants WHERE id = $1").bind(tenant_id).fetch_optional_scalar(&mut **tx).await?;
    let mut quota = max_secrets(&plan.ok_or(Error::NotFound("tenant"))?)?;
    if quota.is_some() {
        // A limited plan counts one creation at a time: under the
        // tenant's lock, and by the plan as it is under the lock.
        // Unlimited tenants create in parallel.
        let plan: String = query::<D>(lock_tenant).bind(tenant_id).fetch_one_scalar(&mut **tx).await?;
        quota = max_secrets(&plan)?;
    }
    if let Some(max) = quota {
        let count: i64 = query::<D>("SELECT COUNT(*) FROM secrets WHERE tenant_id = $1 AND deleted_at IS NULL")
            .bind(tenant_id)
            .fetch_one_scalar(&mut **tx)
            .await?;
        if count >= max {
            return Err(Error::PlanLimitReached(format!("your plan allows {max} secrets; delete one or upgrade the plan")));
        }
    }
    Ok(())
}

/// A new secret with its first version, under the tenant's plan quota:
/// `max_secrets` is asked for the plan as the transaction reads it (under
/// the tenant's lock, `lock_tenant`, when the plan has a quota). Shared by
/// `Store::create_secret` and a claim's redemption.
pub(super) async fn insert_secret<D: Dialect>(
    tx: &mut Transaction<'_, D>,
    lock_tenant: &'static str,
    s: &SecretRow,
    first: &VersionRow,
    max_secrets: crate::store::QuotaOf<'_>,
) -> Result<()> {
    check_quota(tx, lock_tenant, &s.tenant_id, max_secrets).await?;
    insert_secret_row(tx, s, || {
        Error::AlreadyExists(format!("a secret named '{}' already exists in this project and environment", s.name))
    })
    .await?;
    insert_version(tx, first).await
}

/// A secret's row and its tags, as they are (no quota, no version): a new
/// secret's, or a restored backup's. `on_unique` says what a taken id or
/// name means to the caller.
pub(super) async fn insert_secret_row<D: Dialect>(
    tx: &mut Transaction<'_, D>,
    s: &SecretRow,
    on_unique: impl FnOnce() -> Error,
) -> Result<()> {
    query::<D>(AssertSqlSafe(format!(
        "INSERT INTO secrets ({SECRET_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)"
    )))
    .bind(&s.id)
    .bind(&s.tenant_id)
    .bind(&s.project_id)
    .bind(&s.environment)
    .bind(&s.name)
    .bind(&s.secret_type)
    .bind(&s.description)
    .bind(&s.tags)
    .bind(s.current_version)
    .bind(s.created_at)
    .bind(s.updated_at)
    .bind(&s.access_tier)
    .bind(&s.exposure)
    .bind(&s.bindings)
    .bind(s.expires_at)
    .bind(s.deleted_at)
    .bind(s.max_versions)
    .bind(s.retiring_version)
    .bind(s.retiring_until)
    .execute(&mut **tx)
    .await
    .map_err(|e| constraint_error(e, on_unique))?;
    replace_tags(tx, s).await
}

/// Erases what a purged secret leaves once its `secrets` row is gone (that
/// row first: see `LifecycleStore::purge`): every version, ciphertext
/// included, and its tags.
pub(super) async fn erase_secret_rows<D: Dialect>(tx: &mut Transaction<'_, D>, secret_id: &str) -> Result<()> {
    query::<D>("DELETE FROM secret_versions WHERE secret_id = $1").bind(secret_id).execute(&mut **tx).await?;
    query::<D>("DELETE FROM secret_tags WHERE secret_id = $1").bind(secret_id).execute(&mut **tx).await?;
    Ok(())
}

/// Deletes a secret's versions older than the newest `max_versions` (those
/// numbered `current - max_versions` and below): what a write under
/// `maxVersions` does in its own transaction.
pub(super) async fn prune_versions<D: Dialect>(
    tx: &mut Transaction<'_, D>,
    secret_id: &str,
    current: i64,
    max_versions: i64,
) -> Result<()> {
    query::<D>("DELETE FROM secret_versions WHERE secret_id = $1 AND version <= $2")
        .bind(secret_id)
        .bind(current - max_versions)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
