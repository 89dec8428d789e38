//! [`Store`] for every [`Backend`]: the units of work, each a transaction
//! on the backend's write connection (or one read on its pool), in the
//! trait's order.

use async_trait::async_trait;
use sqlx::AssertSqlSafe;

use super::dialect::{Dialect, query};
use super::filters::{AuditWhere, bind_all, secret_list_query};
use super::{Backend, KEY_COLS, SECRET_COLS, approvals, writes};
use crate::error::{Error, Result};
use crate::store::*;

#[async_trait]
impl<B: Backend> Store for B {
    fn backend(&self) -> &'static str {
        B::NAME
    }

    fn owners(&self) -> &dyn crate::store::owners::OwnerStore {
        self
    }

    fn claims(&self) -> &dyn crate::store::claims::ClaimStore {
        self
    }

    fn shares(&self) -> &dyn crate::store::shares::ShareStore {
        self
    }

    fn requests(&self) -> &dyn crate::store::requests::RequestStore {
        self
    }

    fn lifecycle(&self) -> &dyn crate::store::lifecycle::LifecycleStore {
        self
    }

    fn rotations(&self) -> &dyn crate::store::rotation::RotationStore {
        self
    }

    fn audit_chain(&self) -> &dyn crate::store::audit_chain::AuditChainStore {
        self
    }

    fn environments(&self) -> &dyn crate::store::environments::EnvironmentStore {
        self
    }

    fn keyring(&self) -> &dyn crate::store::keyring::KeyringStore {
        self
    }

    fn trail(&self) -> &dyn crate::store::trail::TrailStore {
        self
    }

    fn pool_stats(&self) -> PoolStats {
        let pool = self.reader();
        PoolStats { open: pool.size(), idle: u32::try_from(pool.num_idle()).unwrap_or(u32::MAX) }
    }

    fn webhooks(&self) -> &dyn crate::store::webhooks::WebhookStore {
        self
    }

    fn backups(&self) -> &dyn crate::store::backups::BackupStore {
        self
    }

    async fn close(&self) {
        self.close_writer().await;
        self.reader().close().await;
    }

    async fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(query::<B::Db>("SELECT value FROM meta WHERE key = $1").bind(key).fetch_optional_scalar(self.reader()).await?)
    }

    async fn meta_init(&self, key: &str, value: &[u8]) -> Result<Vec<u8>> {
        let mut conn = self.write_conn().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        query::<B::Db>("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
            .bind(key)
            .bind(value)
            .execute(&mut *tx)
            .await?;
        let stored: Vec<u8> = query::<B::Db>("SELECT value FROM meta WHERE key = $1").bind(key).fetch_one_scalar(&mut *tx).await?;
        tx.commit().await?;
        Ok(stored)
    }

    async fn create_tenant(
        &self,
        t: &TenantRow,
        key: &ApiKeyRow,
        setup_link: Option<&crate::store::owners::LinkRow>,
        audit: &AuditRow,
    ) -> Result<()> {
        let mut conn = self.write_conn().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        query::<B::Db>(
            "INSERT INTO tenants (id, email, agent, description, plan, wrapped_key, created_at, local_only) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&t.id)
        .bind(&t.email)
        .bind(&t.agent)
        .bind(&t.description)
        .bind(&t.plan)
        .bind(&t.wrapped_key)
        .bind(t.created_at)
        .bind(t.local_only)
        .execute(&mut *tx)
        .await
        .map_err(|e| writes::constraint_error(e, || Error::AlreadyExists(format!("tenant '{}' is taken", t.id))))?;
        writes::insert_key(&mut tx, key).await?;
        if let Some(link) = setup_link {
            super::owners::insert_link(&mut tx, link).await?;
        }
        writes::insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_tenant(&self, id: &str) -> Result<Option<TenantRow>> {
        Ok(query::<B::Db>("SELECT id, email, agent, description, plan, wrapped_key, created_at, local_only FROM tenants WHERE id = $1")
            .bind(id)
            .fetch_optional(self.reader())
            .await?)
    }

    async fn set_tenant_plan(&self, id: &str, plan: &str, audit: &AuditRow) -> Result<bool> {
        let mut conn = self.write_conn().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        let n = query::<B::Db>("UPDATE tenants SET plan = $2 WHERE id = $1").bind(id).bind(plan).execute(&mut *tx).await?;
        if n == 0 {
            return Ok(false);
        }
        self.announce_change(&mut tx, id).await?;
        writes::insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn find_api_key(&self, key_hash: &[u8]) -> Result<Option<KeyWithPlan>> {
        // One indexed lookup per request: the key and its tenant's plan together.
        Ok(query::<B::Db>(
            "SELECT k.id, k.tenant_id, k.name, k.prefix, k.key_hash, k.permission, k.project_scope, k.expires_at, \
             k.revoked_at, k.created_at, k.updated_at, k.kind, k.scopes, k.max_uses, k.uses, k.ip_allowlist, \
             k.parent_key_id, k.reason, k.approval_id, t.plan FROM api_keys k JOIN tenants t ON t.id = k.tenant_id \
             WHERE k.key_hash = $1",
        )
        .bind(key_hash)
        .fetch_optional(self.reader())
        .await?)
    }

    async fn get_api_key(&self, tenant_id: &str, id: &str) -> Result<Option<ApiKeyRow>> {
        Ok(query::<B::Db>(AssertSqlSafe(format!("SELECT {KEY_COLS} FROM api_keys WHERE tenant_id = $1 AND id = $2")))
            .bind(tenant_id)
            .bind(id)
            .fetch_optional(self.reader())
            .await?)
    }

    async fn list_api_keys(&self, tenant_id: &str) -> Result<Vec<ApiKeyRow>> {
        Ok(query::<B::Db>(AssertSqlSafe(format!(
            "SELECT {KEY_COLS} FROM api_keys WHERE tenant_id = $1 AND kind = 'key' ORDER BY created_at, id"
        )))
        .bind(tenant_id)
        .fetch_all(self.reader())
        .await?)
    }

    async fn list_tokens(&self, tenant_id: &str, parent: Option<&str>) -> Result<Vec<ApiKeyRow>> {
        Ok(query::<B::Db>(AssertSqlSafe(format!(
            "SELECT {KEY_COLS} FROM api_keys WHERE tenant_id = $1 AND kind = 'token' \
             AND ($2 IS NULL OR parent_key_id = $2) ORDER BY created_at, id"
        )))
        .bind(tenant_id)
        .bind(parent.map(str::to_owned))
        .fetch_all(self.reader())
        .await?)
    }

    async fn use_token(&self, id: &str) -> Result<bool> {
        let mut conn = self.write_conn().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        let n = query::<B::Db>("UPDATE api_keys SET uses = uses + 1 WHERE id = $1 AND (max_uses IS NULL OR uses < max_uses)")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(n == 1)
    }

    async fn insert_api_key(&self, key: &ApiKeyRow, audit: &AuditRow) -> Result<()> {
        let mut conn = self.write_conn().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        writes::insert_key(&mut tx, key).await?;
        writes::insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn update_api_key(&self, k: &ApiKeyRow, seen_updated_at: Millis, audit: &AuditRow) -> Result<bool> {
        let mut conn = self.write_conn().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        // Key changes of one tenant take turns (PostgreSQL: the tenant's
        // row lock), so two revocations cannot each count the other's key.
        let _plan: String = query::<B::Db>(B::LOCK_TENANT).bind(&k.tenant_id).fetch_one_scalar(&mut *tx).await?;
        let roots_before = writes::count_root_keys(&mut tx, &k.tenant_id).await?;
        // First, while the actor's key is as it was: a key may revoke itself.
        writes::insert_audit(&mut tx, audit).await?;
        // A token never carries more than its key: when the key is revoked,
        // regenerated, narrowed, widened or given another expiry, its live
        // tokens are revoked with it (their rights were judged against the
        // key as it was). A rename leaves them be.
        let at = k.updated_at;
        query::<B::Db>(
            "UPDATE api_keys SET revoked_at = $3, updated_at = $3 \
             WHERE tenant_id = $1 AND parent_key_id = $2 AND kind = 'token' AND revoked_at IS NULL \
             AND EXISTS (SELECT 1 FROM api_keys p WHERE p.tenant_id = $1 AND p.id = $2 AND p.revoked_at IS NULL \
             AND p.updated_at = $4 AND ($5 IS NOT NULL OR p.key_hash <> $6 OR p.permission <> $7 \
             OR p.project_scope <> $8 OR COALESCE(p.expires_at, -1) <> COALESCE($9, -1)))",
        )
        .bind(&k.tenant_id)
        .bind(&k.id)
        .bind(at)
        .bind(seen_updated_at)
        .bind(k.revoked_at)
        .bind(&k.key_hash)
        .bind(&k.permission)
        .bind(&k.project_scope)
        .bind(k.expires_at)
        .execute(&mut *tx)
        .await?;
        let n = query::<B::Db>(
            "UPDATE api_keys SET name = $3, prefix = $4, key_hash = $5, permission = $6, project_scope = $7, \
             expires_at = $8, revoked_at = $9, updated_at = $10 WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL \
             AND updated_at = $11",
        )
        .bind(&k.tenant_id)
        .bind(&k.id)
        .bind(&k.name)
        .bind(&k.prefix)
        .bind(&k.key_hash)
        .bind(&k.permission)
        .bind(&k.project_scope)
        .bind(k.expires_at)
        .bind(k.revoked_at)
        .bind(k.updated_at)
        .bind(seen_updated_at)
        .execute(&mut *tx)
        .await?;
        if n == 0 {
            return Ok(false);
        }
        if roots_before > 0 && writes::count_root_keys(&mut tx, &k.tenant_id).await? == 0 {
            return Err(Error::Conflict(crate::store::LAST_ROOT_KEY.into()));
        }
        self.announce_change(&mut tx, &k.tenant_id).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn insert_project(&self, p: &ProjectRow, audit: &AuditRow) -> Result<()> {
        let mut conn = self.write_conn().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        query::<B::Db>(
            "INSERT INTO projects (id, tenant_id, name, description, tags, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&p.id)
        .bind(&p.tenant_id)
        .bind(&p.name)
        .bind(&p.description)
        .bind(&p.tags)
        .bind(p.created_at)
        .bind(p.updated_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| writes::constraint_error(e, || Error::AlreadyExists(format!("a project named '{}' exists", p.name))))?;
        super::environments::insert_defaults(&mut tx, &p.tenant_id, &p.id, p.created_at).await?;
        writes::insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_project(&self, tenant_id: &str, id: &str) -> Result<Option<ProjectRow>> {
        Ok(query::<B::Db>(
            "SELECT p.id, p.tenant_id, p.name, p.description, p.tags, p.created_at, p.updated_at, \
             (SELECT COUNT(*) FROM secrets s WHERE s.project_id = p.id AND s.deleted_at IS NULL) AS secret_count \
             FROM projects p WHERE p.tenant_id = $1 AND p.id = $2",
        )
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(self.reader())
        .await?)
    }

    async fn list_projects(&self, tenant_id: &str) -> Result<Vec<ProjectRow>> {
        Ok(query::<B::Db>(
            "SELECT p.id, p.tenant_id, p.name, p.description, p.tags, p.created_at, p.updated_at, \
             (SELECT COUNT(*) FROM secrets s WHERE s.project_id = p.id AND s.deleted_at IS NULL) AS secret_count \
             FROM projects p WHERE p.tenant_id = $1 ORDER BY p.name, p.id",
        )
        .bind(tenant_id)
        .fetch_all(self.reader())
        .await?)
    }

    async fn update_project(&self, p: &ProjectRow, audit: &AuditRow) -> Result<bool> {
        let mut conn = self.write_conn().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        let n =
            query::<B::Db>("UPDATE projects SET name = $3, description = $4, tags = $5, updated_at = $6 WHERE tenant_id = $1 AND id = $2")
                .bind(&p.tenant_id)
                .bind(&p.id)
                .bind(&p.name)
                .bind(&p.description)
                .bind(&p.tags)
                .bind(p.updated_at)
                .execute(&mut *tx)
                .await
                .map_err(|e| writes::constraint_error(e, || Error::AlreadyExists(format!("a project named '{}' exists", p.name))))?;
        if n == 0 {
            return Ok(false);
        }
        writes::insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn delete_project(&self, tenant_id: &str, id: &str, purge_deleted: bool, audit: &AuditRow) -> Result<bool> {
        let mut conn = self.write_conn().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        let remaining: i64 = query::<B::Db>("SELECT COUNT(*) FROM secrets WHERE tenant_id = $1 AND project_id = $2 AND deleted_at IS NULL")
            .bind(tenant_id)
            .bind(id)
            .fetch_one_scalar(&mut *tx)
            .await?;
        if remaining > 0 {
            return Err(Error::Conflict(format!("project still holds {remaining} secret(s); delete them first")));
        }
        // Its soft-deleted secrets go with it, erased (versions, tags), each
        // audited as a purge by the same caller: the project's deletion is
        // the decision to end what it held, and they could not be restored
        // into a project that no longer exists.
        let deleted: Vec<(String, String)> =
            query::<B::Db>("SELECT id, name FROM secrets WHERE tenant_id = $1 AND project_id = $2 AND deleted_at IS NOT NULL ORDER BY id")
                .bind(tenant_id)
                .bind(id)
                .fetch_all(&mut *tx)
                .await?;
        if !purge_deleted && !deleted.is_empty() {
            return Err(Error::Conflict(format!(
                "project still holds {} deleted secret(s), restorable until the retention ends: restore them, wait, or \
                 delete the project with an admin key (which erases them)",
                deleted.len()
            )));
        }
        for (secret_id, name) in &deleted {
            query::<B::Db>("DELETE FROM secrets WHERE tenant_id = $1 AND id = $2")
                .bind(tenant_id)
                .bind(secret_id)
                .execute(&mut *tx)
                .await?;
            writes::erase_secret_rows(&mut tx, secret_id).await?;
            let mut purged = audit.clone();
            purged.action = "secret.purged".into();
            purged.resource_type = "secret".into();
            purged.resource_id = Some(secret_id.clone());
            purged.detail = Some(serde_json::json!({ "name": name, "reason": "project deleted", "projectId": id }).to_string());
            writes::insert_audit(&mut tx, &purged).await?;
        }
        if !deleted.is_empty() {
            self.announce_change(&mut tx, tenant_id).await?;
        }
        let n = query::<B::Db>("DELETE FROM projects WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_id)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(|e| writes::constraint_error(e, || Error::Conflict("project is in use".into())))?;
        if n == 0 {
            return Ok(false);
        }
        writes::insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn create_secret(&self, s: &SecretRow, first: &VersionRow, max_secrets: QuotaOf<'_>, audit: &AuditRow) -> Result<()> {
        let mut conn = self.write_conn().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        writes::insert_secret(&mut tx, B::LOCK_TENANT, s, first, max_secrets).await?;
        writes::insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_secret(&self, tenant_id: &str, id: &str) -> Result<Option<SecretRow>> {
        Ok(query::<B::Db>(AssertSqlSafe(format!("SELECT {SECRET_COLS} FROM secrets WHERE tenant_id = $1 AND id = $2")))
            .bind(tenant_id)
            .bind(id)
            .fetch_optional(self.reader())
            .await?)
    }

    async fn find_secret(&self, tenant_id: &str, project_id: Option<&str>, environment: &str, name: &str) -> Result<Option<SecretRow>> {
        Ok(query::<B::Db>(AssertSqlSafe(format!(
            "SELECT {SECRET_COLS} FROM secrets WHERE tenant_id = $1 AND COALESCE(project_id, '') = $2 AND environment = $3 AND name = $4"
        )))
        .bind(tenant_id)
        .bind(project_id.unwrap_or(""))
        .bind(environment)
        .bind(name)
        .fetch_optional(self.reader())
        .await?)
    }

    async fn get_version(&self, secret_id: &str, version: i64) -> Result<Option<VersionRow>> {
        Ok(query::<B::Db>(
            "SELECT secret_id, version, sealed, created_at, created_by FROM secret_versions WHERE secret_id = $1 AND version = $2",
        )
        .bind(secret_id)
        .bind(version)
        .fetch_optional(self.reader())
        .await?)
    }

    async fn read_secret(&self, tenant_id: &str, id: &str, version: Option<i64>) -> Result<Option<(SecretRow, Option<VersionRow>)>> {
        let row: Option<SecretWithVersion> = query::<B::Db>(
            "SELECT s.id, s.tenant_id, s.project_id, s.environment, s.name, s.secret_type, s.description, s.tags, \
             s.current_version, s.created_at, s.updated_at, s.access_tier, s.exposure, s.bindings, s.expires_at, s.deleted_at, s.max_versions, s.retiring_version, s.retiring_until, v.version AS v_version, v.sealed AS v_sealed, \
             v.created_at AS v_created_at, v.created_by AS v_created_by \
             FROM secrets s LEFT JOIN secret_versions v ON v.secret_id = s.id AND v.version = COALESCE($3, s.current_version) \
             WHERE s.tenant_id = $1 AND s.id = $2",
        )
        .bind(tenant_id)
        .bind(id)
        .bind(version)
        .fetch_optional(self.reader())
        .await?;
        row.map(SecretWithVersion::split).transpose()
    }

    async fn update_secret(
        &self,
        tenant_id: &str,
        id: &str,
        expected_version: Option<i64>,
        change: SecretChange<'_>,
    ) -> Result<WriteOutcome> {
        let mut conn = self.write_conn().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        let current: Option<SecretRow> =
            query::<B::Db>(AssertSqlSafe(format!("SELECT {SECRET_COLS} FROM secrets WHERE tenant_id = $1 AND id = $2{}", B::FOR_UPDATE)))
                .bind(tenant_id)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(current) = current else { return Ok(WriteOutcome::Missing) };
        if expected_version.is_some_and(|e| e != current.current_version) {
            return Ok(WriteOutcome::Stale { current: current.current_version });
        }
        let (s, next, audit) = change(&current)?;
        let n = query::<B::Db>(
            "UPDATE secrets SET project_id = $3, environment = $4, name = $5, secret_type = $6, description = $7, tags = $8, \
             current_version = $9, updated_at = $10, access_tier = $12, exposure = $13, bindings = $14, \
             expires_at = $15, deleted_at = $16, max_versions = $17, retiring_version = $18, retiring_until = $19 WHERE tenant_id = $1 AND id = $2 AND current_version = $11",
        )
        .bind(&s.tenant_id)
        .bind(&s.id)
        .bind(&s.project_id)
        .bind(&s.environment)
        .bind(&s.name)
        .bind(&s.secret_type)
        .bind(&s.description)
        .bind(&s.tags)
        .bind(s.current_version)
        .bind(s.updated_at)
        .bind(current.current_version)
        .bind(&s.access_tier)
        .bind(&s.exposure)
        .bind(&s.bindings)
        .bind(s.expires_at)
        .bind(s.deleted_at)
        .bind(s.max_versions)
        .bind(s.retiring_version)
        .bind(s.retiring_until)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            writes::constraint_error(e, || {
                Error::AlreadyExists(format!("a secret named '{}' already exists in that project and environment", s.name))
            })
        })?;
        if n == 0 {
            // Only reachable if the row lock was not held; report it as a lost race.
            return Ok(WriteOutcome::Stale { current: current.current_version });
        }
        if s.tags != current.tags {
            writes::replace_tags(&mut tx, &s).await?;
        }
        if let Some(v) = &next {
            writes::insert_version(&mut tx, v).await?;
        }
        // `maxVersions`: a new version, or a new bound, prunes the oldest beyond it.
        if let Some(max) = s.max_versions
            && (next.is_some() || current.max_versions != s.max_versions)
        {
            writes::prune_versions(&mut tx, &s.id, s.current_version, max).await?;
        }
        self.announce_change(&mut tx, tenant_id).await?;
        writes::insert_audit(&mut tx, &audit).await?;
        tx.commit().await?;
        Ok(WriteOutcome::Written(Box::new(s)))
    }

    async fn add_version(
        &self,
        tenant_id: &str,
        id: &str,
        expected_version: Option<i64>,
        actor: &Credential,
        change: VersionChange,
    ) -> Result<WriteOutcome> {
        self.versions().add(tenant_id, id, expected_version, actor, change).await
    }

    async fn write_batch(&self, tenant_id: &str, batch: &[BatchWrite], max_secrets: QuotaOf<'_>, audit: &[AuditRow]) -> Result<()> {
        let mut conn = self.write_conn().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        for w in batch {
            match w {
                BatchWrite::Create { secret, first } => writes::insert_secret(&mut tx, B::LOCK_TENANT, secret, first, max_secrets).await?,
                BatchWrite::Version { secret_id, expected_version, version } => {
                    // One conditional UPDATE takes the row (PostgreSQL: its
                    // lock until commit) only at the version the plan read.
                    let n = query::<B::Db>(
                        "UPDATE secrets SET current_version = $3, updated_at = $4 \
                         WHERE tenant_id = $1 AND id = $2 AND current_version = $5 AND deleted_at IS NULL",
                    )
                    .bind(tenant_id)
                    .bind(secret_id)
                    .bind(version.version)
                    .bind(version.created_at)
                    .bind(*expected_version)
                    .execute(&mut *tx)
                    .await?;
                    if n == 0 {
                        let current: Option<i64> =
                            query::<B::Db>("SELECT current_version FROM secrets WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL")
                                .bind(tenant_id)
                                .bind(secret_id)
                                .fetch_optional_scalar(&mut *tx)
                                .await?;
                        return Err(match current {
                            Some(current) => Error::VersionConflict { expected: *expected_version, current },
                            None => Error::SecretNotFound,
                        });
                    }
                    writes::insert_version(&mut tx, version).await?;
                    // `maxVersions`, where the secret has one (NULL compares false: nothing goes).
                    query::<B::Db>(
                        "DELETE FROM secret_versions WHERE secret_id = $1 \
                         AND version <= $2 - (SELECT max_versions FROM secrets WHERE id = $1)",
                    )
                    .bind(secret_id)
                    .bind(version.version)
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        self.announce_change(&mut tx, tenant_id).await?;
        writes::insert_audits(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_versions(&self, secret_id: &str, before: Option<i64>, limit: i64) -> Result<Vec<VersionMeta>> {
        Ok(query::<B::Db>(
            "SELECT version, created_at, created_by FROM secret_versions \
             WHERE secret_id = $1 AND version < $2 ORDER BY version DESC LIMIT $3",
        )
        .bind(secret_id)
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(self.reader())
        .await?)
    }

    async fn list_secrets(&self, tenant_id: &str, filter: &SecretFilter) -> Result<Vec<SecretRow>> {
        let (sql, binds) = secret_list_query(tenant_id, filter);
        let q = query::<B::Db>(AssertSqlSafe(sql));
        Ok(bind_all(q, binds).fetch_all(self.reader()).await?)
    }

    async fn count_secrets(&self, tenant_id: &str) -> Result<i64> {
        Ok(query::<B::Db>("SELECT COUNT(*) FROM secrets WHERE tenant_id = $1 AND deleted_at IS NULL")
            .bind(tenant_id)
            .fetch_one_scalar(self.reader())
            .await?)
    }

    async fn list_protected_secrets(&self, tenant_id: &str) -> Result<Vec<SecretRow>> {
        Ok(query::<B::Db>(AssertSqlSafe(format!(
            "SELECT {SECRET_COLS} FROM secrets WHERE tenant_id = $1 AND access_tier <> 'standard' AND deleted_at IS NULL ORDER BY name, id"
        )))
        .bind(tenant_id)
        .fetch_all(self.reader())
        .await?)
    }

    async fn gate_sensitive(&self, tenant_id: &str) -> Result<bool> {
        approvals::gate_sensitive(self, tenant_id).await
    }

    async fn set_gate_sensitive(&self, tenant_id: &str, on: bool, audit: &AuditRow) -> Result<bool> {
        approvals::set_gate_sensitive(self, tenant_id, on, audit).await
    }

    async fn open_approval(
        &self,
        row: &ApprovalRow,
        now: Millis,
        requested: ApprovalAudit<'_>,
        expired: ApprovalAudit<'_>,
    ) -> Result<ApprovalRow> {
        approvals::open_approval(self, row, now, requested, expired).await
    }

    async fn use_grant(
        &self,
        tenant_id: &str,
        requester_id: &str,
        secret_id: &str,
        now: Millis,
        used: ApprovalAudit<'_>,
    ) -> Result<Option<ApprovalRow>> {
        approvals::use_grant(self, tenant_id, requester_id, secret_id, now, used).await
    }

    async fn get_approval(&self, tenant_id: Option<&str>, id: &str) -> Result<Option<ApprovalRow>> {
        approvals::get_approval(self, tenant_id, id).await
    }

    async fn list_approvals(
        &self,
        tenant_id: Option<&str>,
        requester_id: Option<&str>,
        status: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ApprovalRow>> {
        approvals::list_approvals(self, tenant_id, requester_id, status, limit).await
    }

    async fn decide_approval(&self, tenant_id: &str, id: &str, d: &Decision, audit: &AuditRow) -> Result<Option<ApprovalRow>> {
        approvals::decide_approval(self, tenant_id, id, d, audit).await
    }

    async fn expire_approvals(&self, tenant_id: &str, ids: &[String], now: Millis, expired: ApprovalAudit<'_>) -> Result<Vec<ApprovalRow>> {
        approvals::expire_approvals(self, tenant_id, ids, now, expired).await
    }

    async fn take_token_approval(
        &self,
        tenant_id: &str,
        id: &str,
        requester_id: &str,
        now: Millis,
        used: ApprovalAudit<'_>,
    ) -> Result<Option<ApprovalRow>> {
        approvals::take_token_approval(self, tenant_id, id, requester_id, now, used).await
    }

    async fn append_audit(&self, entries: &[AuditRow]) -> Result<crate::store::Appended> {
        self.write_audit(entries).await
    }

    // The statements of an audit query are sent unnamed
    // (`persistent(false)`), so PostgreSQL plans each for its actual
    // values. A cached generic plan guesses the selectivity of
    // `at >= $n` and may choose a scan of the whole table (of every
    // tenant), which is what the bounds are there to prevent.
    async fn query_audit(&self, tenant_id: &str, f: &AuditFilter) -> Result<AuditSlice> {
        let filtered = f.action.is_some() || f.resource_type.is_some() || f.actor.is_some() || f.front.is_some() || f.tool.is_some();
        let counted = f.count_limit > 0;
        let top_edge = if filtered && (counted || f.after.is_none()) {
            audit_scan_edge::<B::Db>(self.reader(), tenant_id, f, None).await?
        } else {
            None
        };
        let page_edge = match f.after {
            Some((at, _)) if filtered => audit_scan_edge::<B::Db>(self.reader(), tenant_id, f, Some(at)).await?,
            _ => top_edge,
        };

        let page = AuditWhere::range(tenant_id, f).after(f.after).since(page_edge).matching(f);
        let sql = format!(
            "SELECT id, tenant_id, at, actor, front, action, resource_type, resource_id, outcome, ip, user_agent, detail, client, tool, reason{} \
             ORDER BY at DESC, id DESC LIMIT {} OFFSET {}",
            page.sql,
            f.limit.max(1),
            f.offset.max(0)
        );
        let rows = bind_all(query::<B::Db>(AssertSqlSafe(sql)).persistent(false), page.binds).fetch_all(self.reader()).await?;

        // A short page from the top has seen every match of the window:
        // the count is known without scanning the window again (the
        // costly case, a filter that matches little, is always this one).
        let seen_all = f.after.is_none() && (rows.len() as i64) < f.limit && (f.offset == 0 || !rows.is_empty());
        let total = if seen_all || !counted {
            (f.offset + rows.len() as i64).min(f.count_limit)
        } else {
            let count = AuditWhere::range(tenant_id, f).since(top_edge).matching(f);
            let count_sql = format!("SELECT COUNT(*) FROM (SELECT 1{} LIMIT {}) t", count.sql, f.count_limit.max(1));
            bind_all(query::<B::Db>(AssertSqlSafe(count_sql)).persistent(false), count.binds).fetch_one_scalar(self.reader()).await?
        };
        Ok(AuditSlice { rows, unscanned_before: page_edge, total, total_partial: top_edge.is_some() })
    }

    async fn changed_elsewhere(&self) -> Result<bool> {
        self.detect_change_elsewhere().await
    }

    fn tracks_changes(&self) -> bool {
        self.can_detect_changes()
    }

    async fn count_audit_since(&self, tenant_id: &str, since: Millis, split: Millis) -> Result<(i64, i64)> {
        // Failed authentications are not calls the tenant made: they
        // are counted apart, through the partial index that holds
        // only them, and taken off. Both are index-only range scans.
        Ok(query::<B::Db>(
            "SELECT a.before - f.before, a.total - f.total FROM \
             (SELECT COUNT(*) FILTER (WHERE at < $3) AS before, COUNT(*) AS total FROM audit_log \
              WHERE tenant_id = $1 AND at >= $2) a, \
             (SELECT COUNT(*) FILTER (WHERE at < $3) AS before, COUNT(*) AS total FROM audit_log \
              WHERE tenant_id = $1 AND at >= $2 AND action = 'auth.failed') f",
        )
        .bind(tenant_id)
        .bind(since)
        .bind(split)
        .fetch_one(self.reader())
        .await?)
    }
}

/// Where a scan of `f.scan` entries of the range (after a cursor at
/// `below`), newest first, stops: the time of the last of them, or
/// `None` when the range holds fewer. The window is every entry at
/// that time or newer: `f.scan`, and any more of the same millisecond
/// (so a window is never empty). An index-only scan on both databases.
async fn audit_scan_edge<D: Dialect>(
    reader: &sqlx::Pool<D>,
    tenant_id: &str,
    f: &AuditFilter,
    below: Option<Millis>,
) -> Result<Option<Millis>> {
    let range = AuditWhere::range(tenant_id, f).until(below);
    let sql = format!("SELECT at{} ORDER BY at DESC LIMIT 1 OFFSET {}", range.sql, f.scan.max(1) - 1);
    bind_all(query::<D>(AssertSqlSafe(sql)).persistent(false), range.binds).fetch_optional_scalar(reader).await
}
