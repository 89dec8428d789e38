//! The SQL behind [`Store`](super::Store), written once and instantiated for
//! each backend by [`sql_store!`]. Both SQLite and PostgreSQL accept this
//! dialect; the backends differ in pools, `BEGIN` and row locking only.

use crate::error::Error;

/// A bound parameter of a query whose shape depends on the filters given.
#[derive(Clone)]
pub(super) enum Bind {
    Text(String),
    Int(i64),
}

/// A `LIKE … ESCAPE '\'` pattern matching `text` anywhere, with `%`, `_` and
/// `\` escaped, after `lower`.
pub(super) fn like_contains(text: &str, lower: impl Fn(&str) -> String) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('%');
    for c in lower(text).chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

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

/// Builds the WHERE clause and binds of a secret listing.
pub(super) fn secret_list_query(tenant_id: &str, f: &super::SecretFilter) -> (String, Vec<Bind>) {
    let mut sql = String::from(
        "SELECT s.id, s.tenant_id, s.project_id, s.environment, s.name, s.secret_type, s.description, \
         s.tags, s.current_version, s.created_at, s.updated_at FROM secrets s WHERE s.tenant_id = $1",
    );
    let mut binds = vec![Bind::Text(tenant_id.to_owned())];
    let mut push = |sql: &mut String, clause: &str, value: String| {
        binds.push(Bind::Text(value));
        sql.push_str(&clause.replace("$?", &format!("${}", binds.len())));
    };
    if let Some(v) = &f.secret_type {
        push(&mut sql, " AND s.secret_type = $?", v.clone());
    }
    if let Some(v) = &f.environment {
        push(&mut sql, " AND s.environment = $?", v.clone());
    }
    if let Some(v) = &f.project_id {
        push(&mut sql, " AND s.project_id = $?", v.clone());
    }
    if let Some(v) = &f.tag {
        push(&mut sql, " AND EXISTS (SELECT 1 FROM secret_tags t WHERE t.secret_id = s.id AND t.tag = $?)", v.clone());
    }
    if let Some(v) = &f.search {
        // Two patterns: PostgreSQL's LOWER folds every letter, SQLite's only
        // ASCII ones. Fully lowered, the term matches PostgreSQL's folding and
        // any text already in lower case; lowered in ASCII only, it matches
        // SQLite's folding, so text found as written on one backend is on both.
        sql.push_str(" AND (1 = 0");
        for pattern in [like_contains(v, str::to_lowercase), like_contains(v, str::to_ascii_lowercase)] {
            push(
                &mut sql,
                " OR LOWER(s.name) LIKE $? ESCAPE '\\' OR LOWER(COALESCE(s.description, '')) LIKE $? ESCAPE '\\' \
                 OR EXISTS (SELECT 1 FROM secret_tags t WHERE t.secret_id = s.id AND LOWER(t.tag) LIKE $? ESCAPE '\\')",
                pattern,
            );
        }
        sql.push(')');
    }
    if let Some(scope) = &f.project_scope {
        if scope.is_empty() {
            sql.push_str(" AND 1 = 0");
        } else {
            sql.push_str(" AND s.project_id IN (");
            for (i, p) in scope.iter().enumerate() {
                binds.push(Bind::Text(p.clone()));
                sql.push_str(&format!("{}${}", if i > 0 { ", " } else { "" }, binds.len()));
            }
            sql.push(')');
        }
    }
    if let Some((name, id)) = &f.after {
        binds.push(Bind::Text(name.clone()));
        binds.push(Bind::Text(id.clone()));
        sql.push_str(&format!(" AND (s.name, s.id) > (${}, ${})", binds.len() - 1, binds.len()));
    }
    sql.push_str(&format!(" ORDER BY s.name, s.id LIMIT {}", f.limit.clamp(1, 1000)));
    (sql, binds)
}

/// The WHERE clause of an audit query and its binds, a condition at a time.
/// Only the tenant and times are in an index (`audit_by_tenant_time`); the
/// action and resource type are checked row by row.
pub(super) struct AuditWhere {
    pub sql: String,
    pub binds: Vec<Bind>,
}

impl AuditWhere {
    /// The tenant's entries within the query's dates.
    pub(super) fn range(tenant_id: &str, f: &super::AuditFilter) -> Self {
        let mut w = AuditWhere { sql: String::from(" FROM audit_log WHERE tenant_id = $1"), binds: vec![Bind::Text(tenant_id.to_owned())] };
        if let Some(v) = f.start {
            w.add(" AND at >= $?", Bind::Int(v));
        }
        if let Some(v) = f.end {
            w.add(" AND at <= $?", Bind::Int(v));
        }
        w
    }

    /// Entries after the cursor `(at, id)` in newest-first order. Spelled so
    /// that `at <= …` is an index range on both databases (PostgreSQL's index
    /// does not hold `id`).
    pub(super) fn after(mut self, cursor: Option<(i64, i64)>) -> Self {
        if let Some((at, id)) = cursor {
            self = self.until(Some(at));
            self.add(" AND (at < $?", Bind::Int(at));
            self.add(" OR id < $?)", Bind::Int(id));
        }
        self
    }

    /// Entries no newer than `at`.
    pub(super) fn until(mut self, at: Option<i64>) -> Self {
        if let Some(at) = at {
            self.add(" AND at <= $?", Bind::Int(at));
        }
        self
    }

    /// Entries no older than `at`: the window a bounded scan examines.
    pub(super) fn since(mut self, at: Option<i64>) -> Self {
        if let Some(at) = at {
            self.add(" AND at >= $?", Bind::Int(at));
        }
        self
    }

    /// The action and resource type filters.
    pub(super) fn matching(mut self, f: &super::AuditFilter) -> Self {
        if let Some(v) = &f.action {
            self.add(" AND action = $?", Bind::Text(v.clone()));
        }
        if let Some(v) = &f.resource_type {
            self.add(" AND resource_type = $?", Bind::Text(v.clone()));
        }
        self
    }

    fn add(&mut self, clause: &str, b: Bind) {
        self.binds.push(b);
        self.sql.push_str(&clause.replace("$?", &format!("${}", self.binds.len())));
    }
}

/// How a statement writes its parameters. SQLite resolves a numbered
/// parameter (`$7`) by searching the statement's list of names on every bind,
/// so binding n of them costs n²: a 64-row audit insert spent more time in
/// that search than in the insert. Anonymous `?` bind in order at no cost.
/// PostgreSQL only knows `$n`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Params {
    Numbered,
    Anonymous,
}

impl Params {
    /// The parameters `first..first + n`, comma-separated.
    pub(super) fn list(self, first: usize, n: usize) -> String {
        let one = |k: usize| match self {
            Params::Numbered => format!("${k}"),
            Params::Anonymous => "?".to_owned(),
        };
        (first..first + n).map(one).collect::<Vec<_>>().join(", ")
    }

    /// `($1, …, $width), ($width+1, …), …` for `rows` rows: the VALUES list of
    /// a multi-row statement.
    pub(super) fn values(self, rows: usize, width: usize) -> String {
        (0..rows).map(|r| format!("({})", self.list(r * width + 1, width))).collect::<Vec<_>>().join(", ")
    }
}

/// Most rows in one audit `INSERT` (11 parameters each, far below either
/// database's limit); a larger batch takes several statements.
pub(super) const AUDIT_ROWS_PER_INSERT: usize = 64;

/// Every column of `secrets`, in [`SecretRow`](super::SecretRow)'s order.
pub(super) const SECRET_COLS: &str =
    "id, tenant_id, project_id, environment, name, secret_type, description, tags, current_version, created_at, updated_at";

/// The audit table and the columns every audit insert fills, in bind order
/// (see `bind_audit`).
pub(super) const AUDIT_INTO: &str =
    "audit_log (tenant_id, at, actor, front, action, resource_type, resource_id, outcome, ip, user_agent, detail)";

macro_rules! bind_all {
    ($q:expr, $binds:expr) => {{
        let mut q = $q;
        for b in $binds {
            q = match b {
                $crate::store::sql::Bind::Text(s) => q.bind(s),
                $crate::store::sql::Bind::Int(i) => q.bind(i),
            };
        }
        q
    }};
}
pub(super) use bind_all;

/// Implements [`Store`](super::Store) for `$store`, which must have a `reader`
/// pool of `$db`, a `versions` writer (see `version_writer.rs`), a
/// `write_conn()` that hands out the connection writes go through,
/// `begin_write(&mut conn)` that opens a write transaction on it, and
/// `close_writer()`.
/// `$lock_tenant` reads a tenant's plan and serialises quota checks per tenant;
/// `$for_update` is appended to a SELECT that must lock the row it reads.
macro_rules! sql_store {
    ($store:ty, $db:ty, $backend:literal, $params:expr, $lock_tenant:literal, $for_update:literal) => {
        use async_trait::async_trait;
        use sqlx::{AssertSqlSafe, Transaction};

        use $crate::error::{Error, Result};
        use $crate::store::sql::{bind_all, constraint_error};
        use $crate::store::*;

        use $crate::store::sql::SECRET_COLS;
        const KEY_COLS: &str = "id, tenant_id, name, prefix, key_hash, permission, project_scope, expires_at, \
                                revoked_at, created_at, updated_at";

        /// The audit entry of a write, inside its transaction; refuses (and so
        /// rolls back the write) when the entry's credential is no longer live
        /// (see `store::liveness`): revoked, expired, regenerated, narrowed or gone.
        async fn insert_audit(tx: &mut Transaction<'_, $db>, a: &AuditRow) -> Result<()> {
            use $crate::store::liveness::{guarded_audit_sql, plain_audit_sql};
            let n = match &a.credential {
                // Expiry is judged now, inside the transaction, not at the entry's
                // time (taken before waiting for the writer).
                Some(c) => bind_audit(sqlx::query(AssertSqlSafe(guarded_audit_sql($params))), std::slice::from_ref(a))
                    .bind(c.key_hash.as_slice())
                    .bind(c.permission.as_str())
                    .bind(c.project_scope.as_str())
                    .bind(now_millis()),
                None => bind_audit(sqlx::query(AssertSqlSafe(plain_audit_sql($params))), std::slice::from_ref(a)),
            }
            .execute(&mut **tx)
            .await?
            .rows_affected();
            if n == 0 {
                return Err(Error::Conflict($crate::store::KEY_CHANGED.into()));
            }
            Ok(())
        }

        /// Binds `chunk` as the parameters of an audit insert, after whatever
        /// `q` already binds.
        fn bind_audit<'q>(
            mut q: sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments>,
            chunk: &'q [AuditRow],
        ) -> sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments> {
            for a in chunk {
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
                    .bind(&a.detail);
            }
            q
        }

        /// Live keys that can do everything, for as long as the tenant lasts:
        /// admin, no project scope, no expiry. Losing the last one would lock
        /// the tenant out of its own secrets for good.
        async fn count_root_keys(tx: &mut Transaction<'_, $db>, tenant_id: &str) -> Result<i64> {
            Ok(sqlx::query_scalar(
                "SELECT COUNT(*) FROM api_keys WHERE tenant_id = $1 AND revoked_at IS NULL AND expires_at IS NULL \
                 AND permission = 'admin' AND project_scope = '[]'",
            )
            .bind(tenant_id)
            .fetch_one(&mut **tx)
            .await?)
        }

        async fn insert_version(tx: &mut Transaction<'_, $db>, v: &VersionRow) -> Result<()> {
            sqlx::query("INSERT INTO secret_versions (secret_id, version, sealed, created_at, created_by) VALUES ($1, $2, $3, $4, $5)")
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

        async fn replace_tags(tx: &mut Transaction<'_, $db>, s: &SecretRow) -> Result<()> {
            sqlx::query("DELETE FROM secret_tags WHERE secret_id = $1").bind(&s.id).execute(&mut **tx).await?;
            let tags: Vec<String> = serde_json::from_str(&s.tags).map_err(|_| $crate::store::integrity::unreadable("secrets", "tags", &s.id))?;
            for tag in tags {
                sqlx::query("INSERT INTO secret_tags (secret_id, tenant_id, tag) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                    .bind(&s.id)
                    .bind(&s.tenant_id)
                    .bind(tag)
                    .execute(&mut **tx)
                    .await?;
            }
            Ok(())
        }

        #[async_trait]
        impl Store for $store {
            fn backend(&self) -> &'static str {
                $backend
            }

            async fn close(&self) {
                self.close_writer().await;
                self.reader.close().await;
            }

            async fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>> {
                Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = $1").bind(key).fetch_optional(&self.reader).await?)
            }

            async fn meta_init(&self, key: &str, value: &[u8]) -> Result<Vec<u8>> {
                let mut conn = self.write_conn().await?;
                let mut tx = Self::begin_write(&mut conn).await?;
                sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
                    .bind(key)
                    .bind(value)
                    .execute(&mut *tx)
                    .await?;
                let stored: Vec<u8> = sqlx::query_scalar("SELECT value FROM meta WHERE key = $1").bind(key).fetch_one(&mut *tx).await?;
                tx.commit().await?;
                Ok(stored)
            }

            async fn create_tenant(&self, t: &TenantRow, key: &ApiKeyRow, audit: &AuditRow) -> Result<()> {
                let mut conn = self.write_conn().await?;
                let mut tx = Self::begin_write(&mut conn).await?;
                sqlx::query(
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
                    .map_err(|e| constraint_error(e, || Error::AlreadyExists(format!("tenant '{}' is taken", t.id))))?;
                insert_key(&mut tx, key).await?;
                insert_audit(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn get_tenant(&self, id: &str) -> Result<Option<TenantRow>> {
                Ok(sqlx::query_as("SELECT id, email, agent, description, plan, wrapped_key, created_at, local_only FROM tenants WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.reader)
                    .await?)
            }

            async fn set_tenant_plan(&self, id: &str, plan: &str, audit: &AuditRow) -> Result<bool> {
                let mut conn = self.write_conn().await?;
                let mut tx = Self::begin_write(&mut conn).await?;
                let n = sqlx::query("UPDATE tenants SET plan = $2 WHERE id = $1").bind(id).bind(plan).execute(&mut *tx).await?.rows_affected();
                if n == 0 {
                    return Ok(false);
                }
                self.announce_change(&mut tx, id).await?;
                insert_audit(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn find_api_key(&self, key_hash: &[u8]) -> Result<Option<KeyWithPlan>> {
                // One indexed lookup per request: the key and its tenant's plan together.
                Ok(sqlx::query_as(
                    "SELECT k.id, k.tenant_id, k.name, k.prefix, k.key_hash, k.permission, k.project_scope, k.expires_at, \
                     k.revoked_at, k.created_at, k.updated_at, t.plan FROM api_keys k JOIN tenants t ON t.id = k.tenant_id \
                     WHERE k.key_hash = $1",
                )
                .bind(key_hash)
                .fetch_optional(&self.reader)
                .await?)
            }

            async fn get_api_key(&self, tenant_id: &str, id: &str) -> Result<Option<ApiKeyRow>> {
                Ok(sqlx::query_as(AssertSqlSafe(format!("SELECT {KEY_COLS} FROM api_keys WHERE tenant_id = $1 AND id = $2")))
                    .bind(tenant_id)
                    .bind(id)
                    .fetch_optional(&self.reader)
                    .await?)
            }

            async fn list_api_keys(&self, tenant_id: &str) -> Result<Vec<ApiKeyRow>> {
                Ok(sqlx::query_as(AssertSqlSafe(format!("SELECT {KEY_COLS} FROM api_keys WHERE tenant_id = $1 ORDER BY created_at, id")))
                    .bind(tenant_id)
                    .fetch_all(&self.reader)
                    .await?)
            }

            async fn insert_api_key(&self, key: &ApiKeyRow, audit: &AuditRow) -> Result<()> {
                let mut conn = self.write_conn().await?;
                let mut tx = Self::begin_write(&mut conn).await?;
                insert_key(&mut tx, key).await?;
                insert_audit(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn update_api_key(&self, k: &ApiKeyRow, seen_updated_at: Millis, audit: &AuditRow) -> Result<bool> {
                let mut conn = self.write_conn().await?;
                let mut tx = Self::begin_write(&mut conn).await?;
                // Key changes of one tenant take turns (PostgreSQL: the tenant's
                // row lock), so two revocations cannot each count the other's key.
                let _plan: String = sqlx::query_scalar($lock_tenant).bind(&k.tenant_id).fetch_one(&mut *tx).await?;
                let roots_before = count_root_keys(&mut tx, &k.tenant_id).await?;
                // First, while the actor's key is as it was: a key may revoke itself.
                insert_audit(&mut tx, audit).await?;
                let n = sqlx::query(
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
                .await?
                .rows_affected();
                if n == 0 {
                    return Ok(false);
                }
                if roots_before > 0 && count_root_keys(&mut tx, &k.tenant_id).await? == 0 {
                    return Err(Error::Conflict($crate::store::LAST_ROOT_KEY.into()));
                }
                self.announce_change(&mut tx, &k.tenant_id).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn insert_project(&self, p: &ProjectRow, audit: &AuditRow) -> Result<()> {
                let mut conn = self.write_conn().await?;
                let mut tx = Self::begin_write(&mut conn).await?;
                sqlx::query("INSERT INTO projects (id, tenant_id, name, description, tags, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
                    .bind(&p.id)
                    .bind(&p.tenant_id)
                    .bind(&p.name)
                    .bind(&p.description)
                    .bind(&p.tags)
                    .bind(p.created_at)
                    .bind(p.updated_at)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| constraint_error(e, || Error::AlreadyExists(format!("a project named '{}' exists", p.name))))?;
                insert_audit(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn get_project(&self, tenant_id: &str, id: &str) -> Result<Option<ProjectRow>> {
                Ok(sqlx::query_as(
                    "SELECT p.id, p.tenant_id, p.name, p.description, p.tags, p.created_at, p.updated_at, \
                     (SELECT COUNT(*) FROM secrets s WHERE s.project_id = p.id) AS secret_count \
                     FROM projects p WHERE p.tenant_id = $1 AND p.id = $2",
                )
                .bind(tenant_id)
                .bind(id)
                .fetch_optional(&self.reader)
                .await?)
            }

            async fn list_projects(&self, tenant_id: &str) -> Result<Vec<ProjectRow>> {
                Ok(sqlx::query_as(
                    "SELECT p.id, p.tenant_id, p.name, p.description, p.tags, p.created_at, p.updated_at, \
                     (SELECT COUNT(*) FROM secrets s WHERE s.project_id = p.id) AS secret_count \
                     FROM projects p WHERE p.tenant_id = $1 ORDER BY p.name, p.id",
                )
                .bind(tenant_id)
                .fetch_all(&self.reader)
                .await?)
            }

            async fn update_project(&self, p: &ProjectRow, audit: &AuditRow) -> Result<bool> {
                let mut conn = self.write_conn().await?;
                let mut tx = Self::begin_write(&mut conn).await?;
                let n = sqlx::query("UPDATE projects SET name = $3, description = $4, tags = $5, updated_at = $6 WHERE tenant_id = $1 AND id = $2")
                    .bind(&p.tenant_id)
                    .bind(&p.id)
                    .bind(&p.name)
                    .bind(&p.description)
                    .bind(&p.tags)
                    .bind(p.updated_at)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| constraint_error(e, || Error::AlreadyExists(format!("a project named '{}' exists", p.name))))?
                    .rows_affected();
                if n == 0 {
                    return Ok(false);
                }
                insert_audit(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn delete_project(&self, tenant_id: &str, id: &str, audit: &AuditRow) -> Result<bool> {
                let mut conn = self.write_conn().await?;
                let mut tx = Self::begin_write(&mut conn).await?;
                let remaining: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM secrets WHERE tenant_id = $1 AND project_id = $2")
                    .bind(tenant_id)
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await?;
                if remaining > 0 {
                    return Err(Error::Conflict(format!("project still holds {remaining} secret(s); delete them first")));
                }
                let n = sqlx::query("DELETE FROM projects WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant_id)
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| constraint_error(e, || Error::Conflict("project is in use".into())))?
                    .rows_affected();
                if n == 0 {
                    return Ok(false);
                }
                insert_audit(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn create_secret(&self, s: &SecretRow, first: &VersionRow, max_secrets: QuotaOf<'_>, audit: &AuditRow) -> Result<()> {
                let mut conn = self.write_conn().await?;
                let mut tx = Self::begin_write(&mut conn).await?;
                // The plan as the database has it now, not as a cached key carried it.
                let plan: Option<String> = sqlx::query_scalar("SELECT plan FROM tenants WHERE id = $1").bind(&s.tenant_id).fetch_optional(&mut *tx).await?;
                let mut quota = max_secrets(&plan.ok_or(Error::NotFound("tenant"))?)?;
                if quota.is_some() {
                    // A limited plan counts one creation at a time: under the
                    // tenant's lock, and by the plan as it is under the lock.
                    // Unlimited tenants create in parallel.
                    let plan: String = sqlx::query_scalar($lock_tenant).bind(&s.tenant_id).fetch_one(&mut *tx).await?;
                    quota = max_secrets(&plan)?;
                }
                if let Some(max) = quota {
                    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM secrets WHERE tenant_id = $1").bind(&s.tenant_id).fetch_one(&mut *tx).await?;
                    if count >= max {
                        return Err(Error::PlanLimitReached(format!("your plan allows {max} secrets; delete one or upgrade the plan")));
                    }
                }
                sqlx::query(AssertSqlSafe(format!("INSERT INTO secrets ({SECRET_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)")))
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
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| {
                        constraint_error(e, || {
                            Error::AlreadyExists(format!("a secret named '{}' already exists in this project and environment", s.name))
                        })
                    })?;
                replace_tags(&mut tx, s).await?;
                insert_version(&mut tx, first).await?;
                insert_audit(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn get_secret(&self, tenant_id: &str, id: &str) -> Result<Option<SecretRow>> {
                Ok(sqlx::query_as(AssertSqlSafe(format!("SELECT {SECRET_COLS} FROM secrets WHERE tenant_id = $1 AND id = $2")))
                    .bind(tenant_id)
                    .bind(id)
                    .fetch_optional(&self.reader)
                    .await?)
            }

            async fn find_secret(&self, tenant_id: &str, project_id: Option<&str>, environment: &str, name: &str) -> Result<Option<SecretRow>> {
                Ok(sqlx::query_as(AssertSqlSafe(format!(
                    "SELECT {SECRET_COLS} FROM secrets WHERE tenant_id = $1 AND COALESCE(project_id, '') = $2 AND environment = $3 AND name = $4"
                )))
                .bind(tenant_id)
                .bind(project_id.unwrap_or(""))
                .bind(environment)
                .bind(name)
                .fetch_optional(&self.reader)
                .await?)
            }

            async fn get_version(&self, secret_id: &str, version: i64) -> Result<Option<VersionRow>> {
                Ok(sqlx::query_as("SELECT secret_id, version, sealed, created_at, created_by FROM secret_versions WHERE secret_id = $1 AND version = $2")
                    .bind(secret_id)
                    .bind(version)
                    .fetch_optional(&self.reader)
                    .await?)
            }

            async fn read_secret(&self, tenant_id: &str, id: &str, version: Option<i64>) -> Result<Option<(SecretRow, Option<VersionRow>)>> {
                let row: Option<SecretWithVersion> = sqlx::query_as(
                    "SELECT s.id, s.tenant_id, s.project_id, s.environment, s.name, s.secret_type, s.description, s.tags, \
                     s.current_version, s.created_at, s.updated_at, v.version AS v_version, v.sealed AS v_sealed, \
                     v.created_at AS v_created_at, v.created_by AS v_created_by \
                     FROM secrets s LEFT JOIN secret_versions v ON v.secret_id = s.id AND v.version = COALESCE($3, s.current_version) \
                     WHERE s.tenant_id = $1 AND s.id = $2",
                )
                .bind(tenant_id)
                .bind(id)
                .bind(version)
                .fetch_optional(&self.reader)
                .await?;
                row.map(SecretWithVersion::split).transpose()
            }

            async fn update_secret(&self, tenant_id: &str, id: &str, expected_version: Option<i64>, change: SecretChange<'_>) -> Result<WriteOutcome> {
                let mut conn = self.write_conn().await?;
                let mut tx = Self::begin_write(&mut conn).await?;
                let current: Option<SecretRow> =
                    sqlx::query_as(AssertSqlSafe(format!("SELECT {SECRET_COLS} FROM secrets WHERE tenant_id = $1 AND id = $2{}", $for_update)))
                        .bind(tenant_id)
                        .bind(id)
                        .fetch_optional(&mut *tx)
                        .await?;
                let Some(current) = current else { return Ok(WriteOutcome::Missing) };
                if expected_version.is_some_and(|e| e != current.current_version) {
                    return Ok(WriteOutcome::Stale { current: current.current_version });
                }
                let (s, next, audit) = change(&current)?;
                let n = sqlx::query(
                    "UPDATE secrets SET project_id = $3, environment = $4, name = $5, secret_type = $6, description = $7, tags = $8, \
                     current_version = $9, updated_at = $10 WHERE tenant_id = $1 AND id = $2 AND current_version = $11",
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
                .execute(&mut *tx)
                .await
                .map_err(|e| {
                    constraint_error(e, || Error::AlreadyExists(format!("a secret named '{}' already exists in that project and environment", s.name)))
                })?
                .rows_affected();
                if n == 0 {
                    // Only reachable if the row lock was not held; report it as a lost race.
                    return Ok(WriteOutcome::Stale { current: current.current_version });
                }
                if s.tags != current.tags {
                    replace_tags(&mut tx, &s).await?;
                }
                if let Some(v) = &next {
                    insert_version(&mut tx, v).await?;
                }
                self.announce_change(&mut tx, tenant_id).await?;
                insert_audit(&mut tx, &audit).await?;
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
                self.versions.add(tenant_id, id, expected_version, actor, change).await
            }

            async fn delete_secret(&self, tenant_id: &str, id: &str, audit: &AuditRow) -> Result<bool> {
                let mut conn = self.write_conn().await?;
                let mut tx = Self::begin_write(&mut conn).await?;
                // The secret's row first. Every write of a version holds that row
                // until it commits, so on PostgreSQL this waits for a version
                // batch in flight, and the deletes below, each a statement with
                // a snapshot of its own, see what that batch wrote. PostgreSQL's
                // versions have no foreign key to cascade from (migration 0003):
                // deleted the other way round, they could outlive their secret.
                let n = sqlx::query("DELETE FROM secrets WHERE tenant_id = $1 AND id = $2").bind(tenant_id).bind(id).execute(&mut *tx).await?.rows_affected();
                if n == 0 {
                    return Ok(false);
                }
                sqlx::query("DELETE FROM secret_versions WHERE secret_id = $1").bind(id).execute(&mut *tx).await?;
                sqlx::query("DELETE FROM secret_tags WHERE secret_id = $1").bind(id).execute(&mut *tx).await?;
                self.announce_change(&mut tx, tenant_id).await?;
                insert_audit(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn list_versions(&self, secret_id: &str, before: Option<i64>, limit: i64) -> Result<Vec<VersionMeta>> {
                Ok(sqlx::query_as(
                    "SELECT version, created_at, created_by FROM secret_versions \
                     WHERE secret_id = $1 AND version < $2 ORDER BY version DESC LIMIT $3",
                )
                .bind(secret_id)
                .bind(before.unwrap_or(i64::MAX))
                .bind(limit)
                .fetch_all(&self.reader)
                .await?)
            }

            async fn list_secrets(&self, tenant_id: &str, filter: &SecretFilter) -> Result<Vec<SecretRow>> {
                let (sql, binds) = $crate::store::sql::secret_list_query(tenant_id, filter);
                let q = sqlx::query_as::<_, SecretRow>(AssertSqlSafe(sql));
                Ok(bind_all!(q, binds).fetch_all(&self.reader).await?)
            }

            async fn count_secrets(&self, tenant_id: &str) -> Result<i64> {
                Ok(sqlx::query_scalar("SELECT COUNT(*) FROM secrets WHERE tenant_id = $1").bind(tenant_id).fetch_one(&self.reader).await?)
            }

            async fn append_audit(&self, entries: &[AuditRow]) -> Result<$crate::store::Appended> {
                self.write_audit(entries).await
            }

            // The statements of an audit query are sent unnamed
            // (`persistent(false)`), so PostgreSQL plans each for its actual
            // values. A cached generic plan guesses the selectivity of
            // `at >= $n` and may choose a scan of the whole table (of every
            // tenant), which is what the bounds are there to prevent.
            async fn query_audit(&self, tenant_id: &str, f: &AuditFilter) -> Result<AuditSlice> {
                use $crate::store::sql::AuditWhere;
                let filtered = f.action.is_some() || f.resource_type.is_some();
                let counted = f.count_limit > 0;
                let top_edge =
                    if filtered && (counted || f.after.is_none()) { audit_scan_edge(&self.reader, tenant_id, f, None).await? } else { None };
                let page_edge = match f.after {
                    Some((at, _)) if filtered => audit_scan_edge(&self.reader, tenant_id, f, Some(at)).await?,
                    _ => top_edge,
                };

                let page = AuditWhere::range(tenant_id, f).after(f.after).since(page_edge).matching(f);
                let sql = format!(
                    "SELECT id, tenant_id, at, actor, front, action, resource_type, resource_id, outcome, ip, user_agent, detail{} \
                     ORDER BY at DESC, id DESC LIMIT {} OFFSET {}",
                    page.sql,
                    f.limit.max(1),
                    f.offset.max(0)
                );
                let rows = bind_all!(sqlx::query_as::<_, AuditRow>(AssertSqlSafe(sql)).persistent(false), page.binds)
                    .fetch_all(&self.reader)
                    .await?;

                // A short page from the top has seen every match of the window:
                // the count is known without scanning the window again (the
                // costly case, a filter that matches little, is always this one).
                let seen_all = f.after.is_none() && (rows.len() as i64) < f.limit && (f.offset == 0 || !rows.is_empty());
                let total = if seen_all || !counted {
                    (f.offset + rows.len() as i64).min(f.count_limit)
                } else {
                    let count = AuditWhere::range(tenant_id, f).since(top_edge).matching(f);
                    let count_sql = format!("SELECT COUNT(*) FROM (SELECT 1{} LIMIT {}) t", count.sql, f.count_limit.max(1));
                    bind_all!(sqlx::query_scalar(AssertSqlSafe(count_sql)).persistent(false), count.binds).fetch_one(&self.reader).await?
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
                Ok(sqlx::query_as(
                    "SELECT a.before - f.before, a.total - f.total FROM \
                     (SELECT COUNT(*) FILTER (WHERE at < $3) AS before, COUNT(*) AS total FROM audit_log \
                      WHERE tenant_id = $1 AND at >= $2) a, \
                     (SELECT COUNT(*) FILTER (WHERE at < $3) AS before, COUNT(*) AS total FROM audit_log \
                      WHERE tenant_id = $1 AND at >= $2 AND action = 'auth.failed') f",
                )
                    .bind(tenant_id)
                    .bind(since)
                    .bind(split)
                    .fetch_one(&self.reader)
                    .await?)
            }
        }

        /// Where a scan of `f.scan` entries of the range (after a cursor at
        /// `below`), newest first, stops: the time of the last of them, or
        /// `None` when the range holds fewer. The window is every entry at
        /// that time or newer: `f.scan`, and any more of the same millisecond
        /// (so a window is never empty). An index-only scan on both databases.
        async fn audit_scan_edge(reader: &sqlx::Pool<$db>, tenant_id: &str, f: &AuditFilter, below: Option<Millis>) -> Result<Option<Millis>> {
            let range = $crate::store::sql::AuditWhere::range(tenant_id, f).until(below);
            let sql = format!("SELECT at{} ORDER BY at DESC LIMIT 1 OFFSET {}", range.sql, f.scan.max(1) - 1);
            Ok(bind_all!(sqlx::query_scalar(AssertSqlSafe(sql)).persistent(false), range.binds).fetch_optional(reader).await?)
        }

        async fn insert_key(tx: &mut Transaction<'_, $db>, k: &ApiKeyRow) -> Result<()> {
            sqlx::query(AssertSqlSafe(format!("INSERT INTO api_keys ({KEY_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)")))
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
                .execute(&mut **tx)
                .await?;
            Ok(())
        }
    };
}
pub(super) use sql_store;
