//! Secrets and their versions: the heart of the vault.

use super::principal::WithDetail;
use super::scopes::ScopeAction;
use super::views::*;
use super::{Permission, Principal, Vault, audited, names, plans};
use crate::crypto::SecretAad;
use crate::error::{Error, Result};
use std::sync::Arc;

use super::exposure::{Exposure, Masked, Purpose, preview};
use crate::store::{SecretFilter, SecretRow, Served, VersionChange, VersionRow, WriteOutcome, now_millis};
use zeroize::Zeroizing;

/// A value opened by a read or a use, with what the caller may learn of it.
pub(super) struct Opened {
    pub(super) meta: SecretMeta,
    pub(super) value: Zeroizing<String>,
    pub(super) version: i64,
}

/// How often an update without `expectedVersion` retries after losing a race.
const UNCONDITIONAL_RETRIES: usize = 8;

/// The largest page of a secret listing: SecretCarousel's `sc env pull` and
/// `sc env promote` ask for 500 at once. Deeper listings follow `nextCursor`.
pub const MAX_LIST_PAGE: i64 = 500;

/// How a caller names the secret it wants.
pub enum SecretRef<'a> {
    Id(&'a str),
    Name { name: &'a str, project_id: Option<&'a str>, environment: Option<&'a str> },
}

impl<'a> SecretRef<'a> {
    /// One argument that holds an id or a name (the use tools' `secret`): an
    /// id when it looks like one and no place is given, else a name there.
    pub fn id_or_name(secret: &'a str, project_id: Option<&'a str>, environment: Option<&'a str>) -> Self {
        if names::is_id(secret) && project_id.is_none() && environment.is_none() {
            SecretRef::Id(secret)
        } else {
            SecretRef::Name { name: secret, project_id, environment }
        }
    }

    pub fn id(&self) -> Option<&str> {
        match self {
            SecretRef::Id(id) => Some(id),
            SecretRef::Name { .. } => None,
        }
    }
}

fn encode_cursor(s: &SecretRow) -> String {
    super::cursor::encode(&(&s.name, &s.id))
}

/// Public for fuzzing (fuzz/fuzz_targets/cursor.rs).
pub fn decode_cursor(c: &str) -> Result<(String, String)> {
    super::cursor::decode(c)
}

impl Vault {
    pub(super) fn check_value(&self, value: &str) -> Result<()> {
        if value.len() > self.config.max_value_bytes {
            return Err(Error::PayloadTooLarge(format!("secret values are limited to {} bytes", self.config.max_value_bytes)));
        }
        Ok(())
    }

    /// Finds a secret the caller may see. Another tenant's secret, a malformed
    /// id and a missing one all answer the same `SECRET_NOT_FOUND`.
    /// A token's scopes must allow `action` on it (403 `SCOPE_DENIED`).
    pub(super) async fn visible_secret(&self, p: &Principal, r: &SecretRef<'_>, action: ScopeAction) -> Result<SecretRow> {
        let row = match r {
            SecretRef::Id(id) if names::is_id(id) => self.store.get_secret(&p.tenant_id, id).await?,
            SecretRef::Id(_) => None,
            SecretRef::Name { name, project_id, environment } => {
                let env = names::environment(*environment)?;
                self.store.find_secret(&p.tenant_id, *project_id, &env, name).await?
            }
        };
        let row = row.ok_or(Error::SecretNotFound)?;
        super::lifecycle::check_not_deleted(&row)?;
        p.require_secret(action, &row)?;
        super::lifecycle::check_visible(&row, action)?;
        Ok(row)
    }

    pub(super) async fn check_project(&self, p: &Principal, project_id: Option<&str>) -> Result<()> {
        p.require_project(project_id)?;
        if let Some(id) = project_id
            && (!names::is_id(id) || self.store.get_project(&p.tenant_id, id).await?.is_none())
        {
            return Err(Error::InvalidRequest(format!("projectId '{id}' is not a project of this tenant")));
        }
        Ok(())
    }

    pub async fn create_secret(&self, p: &Principal, req: CreateSecret) -> Result<SecretMeta> {
        audited!(self, p, "secret.create", "secret", None, self.create_secret_inner(p, req).await)
    }

    async fn create_secret_inner(&self, p: &Principal, req: CreateSecret) -> Result<SecretMeta> {
        p.require(Permission::Write)?;
        let name = names::secret_name(&req.name)?;
        let environment = names::environment(req.environment.as_deref())?;
        let tags = names::tags(&req.tags)?;
        let description = req.description.map(|d| names::text("description", &d, 1024)).transpose()?;
        self.check_value(&req.value)?;
        let bindings = super::bindings::validate(req.bindings.unwrap_or_default())?;
        let project_id = req.project_id.filter(|p| !p.is_empty());
        let now = now_millis();
        let expires_at = super::lifecycle::expiry(req.expires_at.map(Some), req.expires_in.as_deref(), now)?.flatten();
        let max_versions = super::lifecycle::max_versions(req.max_versions)?;
        p.require_path(ScopeAction::Write, project_id.as_deref(), &environment, &name)?;
        self.check_project(p, project_id.as_deref()).await?;
        self.check_environment(&p.tenant_id, project_id.as_deref(), &environment).await?;

        let row = SecretRow {
            id: uuid::Uuid::new_v4().to_string(),
            tenant_id: p.tenant_id.clone(),
            project_id,
            environment,
            name,
            secret_type: req.secret_type.unwrap_or(SecretType::Custom).as_str().to_owned(),
            description,
            tags: serde_json::to_string(&tags).expect("serialisable"),
            current_version: 1,
            created_at: now,
            updated_at: now,
            access_tier: req.access_tier.unwrap_or(AccessTier::Standard).as_str().to_owned(),
            exposure: req.exposure.unwrap_or_default().as_str().to_owned(),
            bindings: serde_json::to_string(&bindings).expect("serialisable"),
            expires_at,
            deleted_at: None,
            max_versions,
            retiring_version: None,
            retiring_until: None,
        };
        let key = self.data_key(&p.tenant_id).await?;
        let first = VersionRow {
            secret_id: row.id.clone(),
            version: 1,
            sealed: key.seal(&SecretAad { tenant_id: &p.tenant_id, secret_id: &row.id, version: 1 }, req.value.as_bytes()),
            created_at: now,
            created_by: p.key_id.clone(),
        };
        let audit = p.audit("secret.create", "secret", Some(&row.id), "success").detail(serde_json::json!({
            "name": row.name, "version": 1, "environment": row.environment, "projectId": row.project_id, "accessTier": row.access_tier,
            "exposure": row.exposure, "bindings": bindings.len(),
        }));
        if let Err(e) = self.store.create_secret(&row, &first, &|plan| Ok(plans::limits(plan)?.max_secrets), &audit).await {
            return Err(self.name_taken(&p.tenant_id, row.project_id.as_deref(), &row.environment, &row.name, e).await);
        }
        SecretMeta::try_from(&row)
    }

    /// The explicit read: decrypts one version and records the read before
    /// returning the value. A `masked` secret answers a preview instead of
    /// the value; a `use_only` one answers 403 `EXPOSURE_DENIED`.
    pub async fn read_secret(&self, p: &Principal, r: SecretRef<'_>, read: &ReadVersion) -> Result<SecretValue> {
        let p = &*p.with_reason(read.reason.as_deref());
        let rid = r.id();
        audited!(self, p, "secret.read", "secret", rid, self.read_secret_inner(p, &r, read, Purpose::Read).await)
    }

    /// A read whose value leaves the caller's hands (a share link, a claim
    /// token): only a `reveal` secret's (else 403 `EXPOSURE_DENIED`), since
    /// whoever receives it sees it. Audited as a read.
    pub(super) async fn read_to_hand_off(
        &self,
        p: &Principal,
        r: SecretRef<'_>,
        read: &ReadVersion,
    ) -> Result<(SecretMeta, Zeroizing<String>)> {
        let rid = r.id();
        let opened = audited!(self, p, "secret.read", "secret", rid, self.open_checked(p, &r, read, Purpose::HandOff).await)?;
        Ok((opened.meta, opened.value))
    }

    async fn read_secret_inner(&self, p: &Principal, r: &SecretRef<'_>, read: &ReadVersion, purpose: Purpose) -> Result<SecretValue> {
        let mut opened = self.open_checked(p, r, read, purpose).await?;
        let version = opened.version;
        Ok(match opened.meta.exposure {
            // Moved, not copied: the answer holds the only plaintext.
            Exposure::Reveal => {
                SecretValue { meta: opened.meta, value: Some(std::mem::take(&mut *opened.value)), masked: None, value_version: version }
            }
            _ => {
                let masked = Masked {
                    preview: preview(&opened.value),
                    length: opened.value.chars().count(),
                    fingerprint: self.fingerprint(&p.tenant_id, &opened.value).await?,
                };
                SecretValue { meta: opened.meta, value: None, masked: Some(masked), value_version: version }
            }
        })
    }

    /// Checks the request and opens the value: the work of a read or a use.
    async fn open_checked(&self, p: &Principal, r: &SecretRef<'_>, read: &ReadVersion, purpose: Purpose) -> Result<Opened> {
        let reason = read.reason.as_deref().map(|r| names::text("reason", r.trim(), 500)).transpose()?.filter(|r| !r.is_empty());
        self.open_value(p, r, read.version, reason.as_deref(), purpose).await
    }

    /// Decrypts one version and records why before handing it back.
    pub(super) async fn open_value(
        &self,
        p: &Principal,
        r: &SecretRef<'_>,
        version: Option<i64>,
        reason: Option<&str>,
        purpose: Purpose,
    ) -> Result<Opened> {
        p.require(Permission::Read)?;
        // A grant is used once per request, not once per try; a try that
        // took none (its row may have been stale) is judged again.
        let mut passed_gate = false;
        match self.read_once(p, r, version, reason, purpose, false, &mut passed_gate).await {
            Ok((opened, committed_epoch)) if committed_epoch == p.seen_epoch => return Ok(opened),
            Ok(_) => {}
            // The database refused the read's audit entry: the key or the
            // secret changed on another replica, and this one's cache has not
            // heard yet.
            Err(Error::Conflict(why)) if why == crate::store::CHANGED_MEANWHILE => {}
            Err(e) => return Err(e),
        }
        // The key and the row may have come from the cache, and another process
        // changed the database meanwhile: look both up again in the database.
        // A first audit entry that went in stays (that read happened); the answer is the fresh one.
        let p = self.recheck(p).await?;
        p.require(Permission::Read)?;
        Ok(self.read_once(&p, r, version, reason, purpose, true, &mut passed_gate).await?.0)
    }

    #[allow(clippy::too_many_arguments)]
    async fn read_once(
        &self,
        p: &Principal,
        r: &SecretRef<'_>,
        version: Option<i64>,
        reason: Option<&str>,
        purpose: Purpose,
        uncached: bool,
        passed_gate: &mut bool,
    ) -> Result<(Opened, u64)> {
        let (row, v, from_cache) = match r {
            // The common case in one query: the secret joined with the wanted version.
            SecretRef::Id(id) if names::is_id(id) => {
                let (found, from_cache) = if uncached {
                    (self.store.read_secret_uncached(&p.tenant_id, id, version).await?, false)
                } else {
                    self.store.read_secret_cached(&p.tenant_id, id, version).await?
                };
                let (row, v) = found.ok_or(Error::SecretNotFound)?;
                (row, v, from_cache)
            }
            SecretRef::Id(_) => return Err(Error::SecretNotFound),
            SecretRef::Name { .. } => {
                let row = self.visible_secret(p, r, ScopeAction::Read).await?;
                let v = self.store.get_version(&row.id, version.unwrap_or(row.current_version)).await?;
                (row, v, false)
            }
        };
        // Deleted or expired: judged on the row just read, no query of its own.
        super::lifecycle::check_not_deleted(&row)?;
        p.require_secret(ScopeAction::Read, &row)?;
        super::lifecycle::check_not_expired(&row, now_millis())?;
        let v = v.ok_or(Error::NotFound("version"))?;
        self.check_retired(&row, v.version).await?;
        // Before the gate: no human is asked to approve a read that cannot answer.
        let exposure = Exposure::of_row(&row)?;
        purpose.allowed(exposure, &row.name)?;
        // A standard secret (the row says so) costs nothing more here.
        if purpose.gated() && !*passed_gate && self.gate(p, &row, reason).await? == super::approvals::Gate::Granted {
            *passed_gate = true;
        }
        let key = self.key_for(&p.tenant_id, &v.sealed).await?;
        let plain = key.open(&SecretAad { tenant_id: &p.tenant_id, secret_id: &row.id, version: v.version }, &v.sealed)?;
        let value = Zeroizing::new(String::from_utf8(plain).map_err(|_| Error::Integrity)?);
        let mut audit = match purpose {
            Purpose::Use(m) => p
                .audit("secret.use", "secret", Some(&row.id), "success")
                .detail(serde_json::json!({ "name": row.name, "version": v.version, "mechanism": m.as_str() })),
            Purpose::Read | Purpose::HandOff if exposure != Exposure::Reveal => p
                .audit("secret.read", "secret", Some(&row.id), "success")
                .detail(serde_json::json!({ "name": row.name, "version": v.version, "exposure": exposure.as_str() })),
            Purpose::Read | Purpose::HandOff => p
                .audit("secret.read", "secret", Some(&row.id), "success")
                .detail(serde_json::json!({ "name": row.name, "version": v.version })),
        };
        // Only an answer from the cache can be stale for want of a notification;
        // one read from the database was current when read, and a change
        // committed since then must not turn the read into an error.
        if from_cache {
            audit.served = Some(Served { secret_id: row.id.clone(), version: v.version, updated_at: row.updated_at });
        }
        // Read before the audit entry: a row that does not parse records only the failure.
        let meta = SecretMeta::try_from(&row)?;
        let epoch = self.record(audit).await?;
        // The leak guard keeps every value the caller must not see out of
        // whatever else this request or session answers.
        if exposure != Exposure::Reveal {
            p.touched.add(&row.name, &value);
        }
        Ok((Opened { meta, value, version: v.version }, epoch))
    }

    /// Changes a secret: a new value (the next version), its metadata, or
    /// its name or environment. MCP's metadata tool passes an [`UpdateSecret`].
    pub async fn update_secret(&self, p: &Principal, r: SecretRef<'_>, req: impl Into<EditSecret>) -> Result<SecretMeta> {
        let rid = r.id();
        audited!(self, p, "secret.update", "secret", rid, self.update_secret_inner(p, &r, req.into()).await)
    }

    async fn update_secret_inner(&self, p: &Principal, r: &SecretRef<'_>, mut req: EditSecret) -> Result<SecretMeta> {
        p.require(Permission::Write)?;
        let metadata = req.description.is_some()
            || req.tags.is_some()
            || req.secret_type.is_some()
            || req.name.is_some()
            || req.environment.is_some()
            || req.access_tier.is_some()
            || req.exposure.is_some()
            || req.bindings.is_some()
            || req.expires_at.is_some()
            || req.expires_in.is_some()
            || req.max_versions.is_some();
        if req.value.is_none() && !metadata {
            return Err(Error::InvalidRequest(
                "nothing to update: give value, name, environment, description, tags, secretType, accessTier, exposure, bindings, \
                 expiresAt, expiresIn or maxVersions"
                    .into(),
            ));
        }
        let expiry = super::lifecycle::expiry(req.expires_at, req.expires_in.as_deref(), now_millis())?;
        let max_versions = req.max_versions.map(super::lifecycle::max_versions).transpose()?;
        if let Some(v) = &req.value {
            self.check_value(v)?;
        }
        // The version writer checks the writer's key at commit; an owner
        // (or the operator) has none, and takes the one-transaction path.
        if !metadata
            && p.has_key()
            && let Some(value) = req.value.take()
        {
            return self.add_version(p, r, req.expected_version, value).await;
        }
        // Validated as on create, before anything is read or written.
        let name = req.name.as_deref().map(names::secret_name).transpose()?;
        let environment = req.environment.as_deref().map(|e| names::environment(Some(e))).transpose()?;
        let description = req.description.as_deref().map(|d| names::text("description", d, 1024)).transpose()?;
        let tags = req.tags.as_deref().map(names::tags).transpose()?;
        let bindings = req.bindings.take().map(super::bindings::validate).transpose()?;
        let row = self.visible_secret(p, r, ScopeAction::Write).await?;
        if let Some(e) = &environment {
            self.check_environment(&p.tenant_id, row.project_id.as_deref(), e).await?;
        }
        // A damaged row is refused before it is written over, not after.
        SecretMeta::try_from(&row)?;
        let key = self.data_key(&p.tenant_id).await?;

        // Runs inside the store's write transaction, on the row as it is there.
        let change = |current: &SecretRow| {
            super::lifecycle::check_not_deleted(current)?;
            // On the row as it is inside the write: a move needs both places.
            p.require_secret(ScopeAction::Write, current)?;
            let now = now_millis();
            let mut next = current.clone();
            // Strictly later, even within one millisecond: a cached answer is
            // judged current by its version and `updated_at` (see `Served`).
            next.updated_at = now.max(current.updated_at + 1);
            if let Some(d) = &description {
                next.description = Some(d.clone()).filter(|d| !d.is_empty());
            }
            if let Some(t) = &tags {
                next.tags = serde_json::to_string(t).expect("serialisable");
            }
            if let Some(t) = req.secret_type {
                next.secret_type = t.as_str().to_owned();
            }
            if let Some(n) = &name {
                next.name = n.clone();
            }
            if let Some(e) = &environment {
                next.environment = e.clone();
            }
            if let Some(at) = expiry {
                next.expires_at = at;
            }
            if let Some(m) = max_versions {
                next.max_versions = m;
            }
            if let Some(tier) = req.access_tier {
                // Judged on the row as it is inside the write: a lowering
                // that raced a raise is still a lowering.
                if tier < AccessTier::of_row(current)? {
                    p.require_owner("lower a secret's access tier", true)?;
                }
                next.access_tier = tier.as_str().to_owned();
            }
            let exposure = Exposure::of_row(current)?;
            if let Some(wanted) = req.exposure {
                if wanted < exposure {
                    p.require_owner("loosen a secret's exposure", true)?;
                }
                next.exposure = wanted.as_str().to_owned();
            }
            if let Some(b) = &bindings {
                // A new destination for a value the caller may not see is a
                // way to send it anywhere: judged on the row inside the write.
                let before = super::bindings::of_row(&current.bindings, &current.id)?;
                if Exposure::of_row(&next)? != Exposure::Reveal && !super::bindings::narrows(&before, b) {
                    p.require_owner("add a proxy binding to a masked or use_only secret", true)?;
                }
                next.bindings = serde_json::to_string(b).expect("serialisable");
            }
            let version = req.value.as_ref().map(|value| {
                next.current_version = current.current_version + 1;
                VersionRow {
                    secret_id: next.id.clone(),
                    version: next.current_version,
                    sealed: key
                        .seal(&SecretAad { tenant_id: &p.tenant_id, secret_id: &next.id, version: next.current_version }, value.as_bytes()),
                    created_at: now,
                    created_by: p.key_id.clone(),
                }
            });
            let mut detail = serde_json::json!({
                "name": next.name,
                "version": next.current_version,
                "newVersion": version.is_some(),
            });
            // A rename or move names both places, so the trail can follow
            // the secret: "name" alone would lose where it came from.
            if next.access_tier != current.access_tier {
                detail["accessTier"] = serde_json::json!({ "from": current.access_tier, "to": next.access_tier });
            }
            if next.exposure != current.exposure {
                detail["exposure"] = serde_json::json!({ "from": current.exposure, "to": next.exposure });
            }
            if next.bindings != current.bindings {
                detail["bindingsChanged"] = serde_json::json!(true);
            }
            if next.name != current.name || next.environment != current.environment {
                detail["moved"] = serde_json::json!({
                    "from": { "name": current.name, "environment": current.environment },
                    "to": { "name": next.name, "environment": next.environment },
                });
            }
            p.require_secret(ScopeAction::Write, &next)?;
            let audit = p.audit("secret.update", "secret", Some(&next.id), "success").detail(detail);
            Ok((next, version, audit))
        };
        let written = match self.store.update_secret(&p.tenant_id, &row.id, req.expected_version, &change).await {
            Ok(w) => w,
            Err(e) => {
                let env = environment.as_deref().unwrap_or(&row.environment);
                return Err(self.name_taken(&p.tenant_id, row.project_id.as_deref(), env, name.as_deref().unwrap_or(&row.name), e).await);
            }
        };
        match written {
            WriteOutcome::Written(row) => SecretMeta::try_from(row.as_ref()),
            WriteOutcome::Missing => Err(Error::SecretNotFound),
            WriteOutcome::Stale { current } => Err(Error::VersionConflict { expected: req.expected_version.unwrap_or(current), current }),
        }
    }

    /// A new value and nothing else (a rotation): the store may commit it
    /// together with concurrent ones.
    async fn add_version(&self, p: &Principal, r: &SecretRef<'_>, expected_version: Option<i64>, value: String) -> Result<SecretMeta> {
        // By id, the write itself finds the secret (tenant included) and the
        // closure below checks the key's project scope on the row it reads
        // under the lock: a rotation costs no read before it.
        let id = match r {
            SecretRef::Id(id) if names::is_id(id) => (*id).to_owned(),
            _ => self.visible_secret(p, r, ScopeAction::Write).await?.id,
        };
        let sealer = self.data_key(&p.tenant_id).await?.sealer();
        let author = p.clone();
        let change: VersionChange = Arc::new(move |current: &SecretRow| {
            super::lifecycle::check_not_deleted(current)?;
            author.require_secret(ScopeAction::Write, current)?;
            let version = current.current_version + 1;
            let aad = SecretAad { tenant_id: &author.tenant_id, secret_id: &current.id, version };
            let sealed = VersionRow {
                secret_id: current.id.clone(),
                version,
                sealed: sealer.seal(&aad, value.as_bytes()),
                created_at: now_millis(),
                created_by: author.key_id.clone(),
            };
            let audit = author
                .audit("secret.update", "secret", Some(&current.id), "success")
                .detail(serde_json::json!({ "name": current.name, "version": version, "newVersion": true }));
            Ok((sealed, audit))
        });
        match self.store.add_version(&p.tenant_id, &id, expected_version, &p.credential, change).await? {
            WriteOutcome::Written(row) => SecretMeta::try_from(row.as_ref()),
            WriteOutcome::Missing => Err(Error::SecretNotFound),
            WriteOutcome::Stale { current } => Err(Error::VersionConflict { expected: expected_version.unwrap_or(current), current }),
        }
    }

    /// A soft delete (MCP's `delete_secret`; REST's DELETE without
    /// parameters): restorable until the operator's retention passes.
    pub async fn delete_secret(&self, p: &Principal, r: SecretRef<'_>) -> Result<Deleted> {
        let done = self.delete_secret_with(p, r, Default::default()).await?;
        Ok(Deleted { id: done.id, deleted: done.deleted, restorable_until: done.restorable_until })
    }

    pub async fn list_secrets(&self, p: &Principal, q: ListSecrets) -> Result<SecretPage> {
        audited!(self, p, "secret.list", "secret", None, self.list_secrets_inner(p, q).await)
    }

    async fn list_secrets_inner(&self, p: &Principal, q: ListSecrets) -> Result<SecretPage> {
        p.require(Permission::Read)?;
        let limit = q.limit.unwrap_or(50);
        if !(1..=MAX_LIST_PAGE).contains(&limit) {
            return Err(Error::InvalidRequest(format!("limit must be between 1 and {MAX_LIST_PAGE}")));
        }
        let search = match (q.search.filter(|s| !s.is_empty()), q.q.filter(|s| !s.is_empty())) {
            (Some(a), Some(b)) if a != b => {
                return Err(Error::InvalidRequest("search and q are the same filter: give one, or both alike".into()));
            }
            (a, b) => a.or(b),
        };
        let mut filter = SecretFilter {
            secret_type: q.secret_type.map(|t| t.as_str().to_owned()),
            environment: q.environment.filter(|e| !e.is_empty()),
            project_id: q.project_id.filter(|e| !e.is_empty()),
            // Stored tags are trimmed (names::tags), so the filter is too.
            tag: q.tag.map(|t| t.trim().to_owned()).filter(|e| !e.is_empty()),
            search,
            project_scope: p.project_scope.clone(),
            path_globs: None,
            after: q.cursor.as_deref().filter(|c| !c.is_empty()).map(decode_cursor).transpose()?,
            limit: limit + 1,
            deleted: q.deleted.unwrap_or(false),
            hide_expired_at: Some(now_millis()).filter(|_| !q.include_expired.unwrap_or(false)),
            expiring_before: q.expiring_within_days.map(|d| now_millis() + d * 86_400_000),
            path_prefix: q.prefix.filter(|p| !p.is_empty()),
        };
        let mut rows = match &p.scopes {
            None => self.store.list_secrets(&p.tenant_id, &filter).await?,
            // A token lists only the paths its scopes let it list: pages of
            // the tenant's listing, filtered, until one more than `limit` is
            // found or the listing ends. The cursor stays the last row
            // answered: rows skipped before it are ones the token cannot see.
            Some(scopes) => {
                filter.limit = MAX_LIST_PAGE + 1;
                filter.path_globs = Some(scopes.globs_for(ScopeAction::List));
                let mut found = Vec::new();
                loop {
                    let batch = self.store.list_secrets(&p.tenant_id, &filter).await?;
                    let more = batch.len() as i64 == filter.limit;
                    filter.after = batch.last().map(|s| (s.name.clone(), s.id.clone()));
                    found.extend(
                        batch.into_iter().filter(|s| p.allows_secret(ScopeAction::List, s.project_id.as_deref(), &s.environment, &s.name)),
                    );
                    if found.len() as i64 > limit || !more {
                        break found;
                    }
                }
            }
        };
        let has_more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        let next_cursor = if has_more { rows.last().map(encode_cursor) } else { None };
        let secrets = rows.iter().map(|r| self.meta_of(r)).collect::<Result<Vec<_>>>()?;
        self.record_read(p, p.audit("secret.list", "secret", None, "success").detail(serde_json::json!({ "count": rows.len() }))).await?;
        Ok(SecretPage { count: secrets.len(), secrets, has_more, next_cursor })
    }

    pub async fn secret_versions(&self, p: &Principal, r: SecretRef<'_>, page: VersionPage) -> Result<VersionList> {
        let rid = r.id();
        audited!(self, p, "secret.versions", "secret", rid, self.secret_versions_inner(p, &r, page).await)
    }

    /// A page of the history, newest first: a secret rotated every minute has
    /// half a million versions a year, more than any one answer should carry.
    async fn secret_versions_inner(&self, p: &Principal, r: &SecretRef<'_>, page: VersionPage) -> Result<VersionList> {
        p.require(Permission::Read)?;
        let limit = page.limit.unwrap_or(100);
        if !(1..=1000).contains(&limit) {
            return Err(Error::InvalidRequest("limit must be between 1 and 1000".into()));
        }
        // The cursor is the last version a page returned; the next starts below it.
        let before = page.cursor.as_deref().filter(|c| !c.is_empty()).map(super::cursor::decode::<i64>).transpose()?;
        let row = self.visible_secret(p, r, ScopeAction::Read).await?;
        let mut versions = self.store.list_versions(&row.id, before, limit + 1).await?;
        let has_more = versions.len() as i64 > limit;
        versions.truncate(limit as usize);
        let infos = versions.iter().map(|v| VersionInfo::new(&row.id, v, row.current_version)).collect::<Result<_>>()?;
        self.record_read(p, p.audit("secret.versions", "secret", Some(&row.id), "success")).await?;
        Ok(VersionList {
            next_cursor: versions.last().filter(|_| has_more).map(|v| super::cursor::encode(&v.version)),
            has_more,
            versions: infos,
            secret_id: row.id,
            name: row.name,
            current_version: row.current_version,
        })
    }

    /// Creates the secret, or writes a new version of the one with this name in
    /// the same project and environment. Racing creators resolve to one create
    /// and one new version, never a duplicate.
    pub async fn set_secret(&self, p: &Principal, req: SetSecret) -> Result<SetSecretResult> {
        for _ in 0..UNCONDITIONAL_RETRIES {
            let name_ref =
                SecretRef::Name { name: &req.name, project_id: req.project_id.as_deref(), environment: req.environment.as_deref() };
            let existing = match self.metadata_of(p, &name_ref, ScopeAction::Write).await {
                Ok(meta) => Some(meta),
                Err(Error::SecretNotFound) => None,
                Err(e) => return Err(self.audit_failure(p, "secret.create", "secret", None, e).await),
            };
            match existing {
                None => {
                    if let Some(expected) = req.expected_version.filter(|v| *v != 0) {
                        let e = Error::VersionConflict { expected, current: 0 };
                        return Err(self.audit_failure(p, "secret.create", "secret", None, e).await);
                    }
                    let create = CreateSecret {
                        name: req.name.clone(),
                        value: req.value.clone(),
                        secret_type: req.secret_type,
                        tags: req.tags.clone().unwrap_or_default(),
                        project_id: req.project_id.clone(),
                        environment: req.environment.clone(),
                        description: req.description.clone(),
                        access_tier: req.access_tier,
                        exposure: req.exposure,
                        bindings: None,
                        expires_at: None,
                        expires_in: None,
                        max_versions: None,
                    };
                    match self.create_secret(p, create).await {
                        Ok(secret) => {
                            return Ok(SetSecretResult { created: true, secret });
                        }
                        // Someone created it between our look and our insert: update instead.
                        Err(Error::AlreadyExists(_)) if req.expected_version.is_none() => continue,
                        Err(e) => return Err(e),
                    }
                }
                Some(meta) => {
                    if req.expected_version == Some(0) {
                        let e = Error::VersionConflict { expected: 0, current: meta.version };
                        return Err(self.audit_failure(p, "secret.update", "secret", Some(&meta.id), e).await);
                    }
                    let update = UpdateSecret {
                        value: Some(req.value.clone()),
                        description: req.description.clone(),
                        tags: req.tags.clone(),
                        secret_type: req.secret_type,
                        access_tier: req.access_tier,
                        exposure: req.exposure,
                        bindings: None,
                        expected_version: req.expected_version,
                    };
                    match self.update_secret(p, SecretRef::Id(&meta.id), update).await {
                        Ok(secret) => return Ok(SetSecretResult { created: false, secret }),
                        // Deleted between our look and our write: create it instead,
                        // as if the delete had come first.
                        Err(Error::SecretNotFound) if req.expected_version.is_none() => continue,
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Err(Error::Conflict("the secret is being created and deleted too often to apply this change; retry".into()))
    }

    /// A secret's metadata and newest versions, never its value (MCP's
    /// `latchkey://secrets/{name}`): one read, audited as the history is,
    /// a denied or missing one included, like any other read.
    pub async fn secret_overview(&self, p: &Principal, r: SecretRef<'_>) -> Result<(SecretMeta, VersionList)> {
        let rid = r.id();
        audited!(
            self,
            p,
            "secret.versions",
            "secret",
            rid,
            async {
                let meta = self.metadata_of(p, &r, ScopeAction::Read).await?;
                Ok((meta, self.secret_versions_inner(p, &r, VersionPage::default()).await?))
            }
            .await
        )
    }

    async fn metadata_of(&self, p: &Principal, r: &SecretRef<'_>, action: ScopeAction) -> Result<SecretMeta> {
        p.require(Permission::Read)?;
        SecretMeta::try_from(&self.visible_secret(p, r, action).await?)
    }
}
