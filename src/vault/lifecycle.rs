//! A secret's life after its creation: expiry, soft delete and restore, the
//! purge (at once by an admin, or by the sweep once the operator's retention
//! passed), deletion of one old version, and metadata changes that write no
//! version (`PATCH`).
//!
//! Visibility is decided here, once, on the row a read already holds (no
//! query of its own): a soft-deleted secret is gone (404) for everything but
//! the restorable listing, restore and purge; an expired one answers 410
//! `SECRET_EXPIRED` to reads and uses and is left out of listings unless asked.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};

use super::principal::WithDetail;
use super::scopes::ScopeAction;
use super::secrets::SecretRef;
use super::views::*;
use super::{Permission, Principal, Vault, audited, plans};
use crate::error::{Error, Result};
use crate::store::lifecycle::VersionDeleted;
use crate::store::{Millis, SecretRow, now_millis};

/// How long a soft-deleted secret stays restorable unless the operator says
/// otherwise (`--retention-days`).
pub const DEFAULT_RETENTION_DAYS: u32 = 30;
/// Secrets the sweep purges per batch; it goes on while batches come back full.
const PURGE_BATCH: i64 = 100;
/// Batches one sweep purges at most: the rest waits for the next sweep.
const PURGE_BATCHES: usize = 50;
const MINUTE: i64 = 60_000;
const DAY: i64 = 24 * 60 * MINUTE;
/// The farthest an expiry may lie (100 years).
const MAX_EXPIRY: i64 = 36_500 * DAY;

/// `expiresAt: null` (clear) apart from an absent `expiresAt` (keep).
pub fn double_option<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> std::result::Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// `90d`, `24h`, `30m`: a whole, positive number of days, hours or minutes,
/// in milliseconds. Public for the tests (and any caller with the same syntax).
pub fn parse_expires_in(raw: &str) -> Result<i64> {
    let bad = || Error::InvalidRequest(format!("expiresIn '{raw}' is not a duration: use a number and d, h or m, e.g. 90d, 24h, 30m"));
    let raw = raw.trim();
    // The unit is the last character, whatever its width in bytes.
    let (digits, unit) = raw.split_at(raw.char_indices().last().map_or(0, |(i, _)| i));
    let n: i64 = if digits.bytes().all(|b| b.is_ascii_digit()) { digits.parse().map_err(|_| bad())? } else { return Err(bad()) };
    let unit = match unit {
        "d" => DAY,
        "h" => 60 * MINUTE,
        "m" => MINUTE,
        _ => return Err(bad()),
    };
    match n.checked_mul(unit) {
        Some(ms) if ms > 0 && ms <= MAX_EXPIRY => Ok(ms),
        _ => Err(Error::InvalidRequest(format!("expiresIn '{raw}' must be more than nothing and at most 36500d"))),
    }
}

/// The expiry a create or an update asks for: `None` to leave it as it is,
/// `Some(None)` to clear it (`expiresAt: null`), `Some(Some(t))` to set it.
/// Both fields at once, a bad duration, or a time not in the future is 400.
pub(super) fn expiry(expires_at: Option<Option<DateTime<Utc>>>, expires_in: Option<&str>, now: Millis) -> Result<Option<Option<Millis>>> {
    match (expires_at, expires_in) {
        (Some(_), Some(_)) => Err(Error::InvalidRequest("give expiresAt or expiresIn, not both".into())),
        (None, Some(d)) => Ok(Some(Some(now + parse_expires_in(d)?))),
        (Some(Some(at)), None) => {
            let at = at.timestamp_millis();
            if at <= now {
                return Err(Error::InvalidRequest(format!("expiresAt {} is not in the future", when(at))));
            }
            if at - now > MAX_EXPIRY {
                return Err(Error::InvalidRequest("expiresAt is more than 100 years away".into()));
            }
            Ok(Some(Some(at)))
        }
        (Some(None), None) => Ok(Some(None)),
        (None, None) => Ok(None),
    }
}

/// `maxVersions`: 1 to 100.
pub(super) fn max_versions(n: Option<i64>) -> Result<Option<i64>> {
    match n {
        Some(n) if !(1..=100).contains(&n) => Err(Error::InvalidRequest(format!("maxVersions must be between 1 and 100 (got {n})"))),
        n => Ok(n),
    }
}

fn when(ms: Millis) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms).map_or_else(|| ms.to_string(), |t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// A soft-deleted secret is not there (404), for every caller and action.
pub(super) fn check_not_deleted(row: &SecretRow) -> Result<()> {
    if row.deleted_at.is_some() { Err(Error::SecretNotFound) } else { Ok(()) }
}

/// An expired secret answers reads and uses with 410, naming when it expired.
pub(super) fn check_not_expired(row: &SecretRow, now: Millis) -> Result<()> {
    match row.expires_at {
        Some(at) if at <= now => Err(Error::SecretExpired(format!(
            "secret '{}' expired at {}; a writer can give it a new expiresAt (or null) or a new value",
            row.name,
            when(at)
        ))),
        _ => Ok(()),
    }
}

/// What a read or write may see of a row found by id or name: a deleted one
/// is gone; an expired one is gone for reads (410), not for writes, deletes
/// or listings (a writer may extend it, or delete it).
pub(super) fn check_visible(row: &SecretRow, action: ScopeAction) -> Result<()> {
    check_not_deleted(row)?;
    if action == ScopeAction::Read {
        check_not_expired(row, now_millis())?;
    }
    Ok(())
}

/// `DELETE /api/v1/secrets/{id}`'s parameters.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeleteParams {
    /// Erase the secret now, with every version, instead of a soft delete (admin keys only; also
    /// purges a soft-deleted one).
    pub permanent: Option<bool>,
    /// Delete only this version (never the current one: 400).
    pub version: Option<i64>,
}

/// What a delete did.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeleteResult {
    pub id: String,
    pub deleted: bool,
    /// A soft delete: until when `POST /api/v1/secrets/{id}/restore` brings it back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restorable_until: Option<DateTime<Utc>>,
    /// True when the secret (or, with `version`, that version) is erased for good.
    pub purged: bool,
    /// The version deleted, with `version`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
}

/// `PATCH /api/v1/secrets/{id}`: metadata only, never a new version.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PatchSecret {
    pub description: Option<String>,
    pub tags: Option<Vec<String>>,
    pub secret_type: Option<SecretType>,
    /// Raise freely; lowering is an owner's action (403 OWNER_REQUIRED).
    pub access_tier: Option<AccessTier>,
    /// Tighten freely; loosening is an owner's action (403 OWNER_REQUIRED).
    pub exposure: Option<super::exposure::Exposure>,
    pub bindings: Option<Vec<super::bindings::Binding>>,
    /// RFC 3339; `null` clears the expiry.
    #[serde(default, deserialize_with = "double_option")]
    pub expires_at: Option<Option<DateTime<Utc>>>,
    /// `90d`, `24h`, `30m` from now (not with expiresAt).
    pub expires_in: Option<String>,
    /// Keep at most this many versions (1-100); `null` keeps all.
    #[serde(default, deserialize_with = "double_option")]
    pub max_versions: Option<Option<i64>>,
    /// Apply only if the secret is still at this version (else 409 VERSION_CONFLICT).
    pub expected_version: Option<i64>,
    /// Refused (400): a value is a new version, sent with PUT.
    #[schemars(skip)]
    pub value: Option<serde_json::Value>,
}

impl From<PatchSecret> for EditSecret {
    fn from(p: PatchSecret) -> Self {
        EditSecret {
            description: p.description,
            tags: p.tags,
            secret_type: p.secret_type,
            access_tier: p.access_tier,
            exposure: p.exposure,
            bindings: p.bindings,
            expires_at: p.expires_at,
            expires_in: p.expires_in,
            max_versions: p.max_versions,
            expected_version: p.expected_version,
            ..Default::default()
        }
    }
}

/// `GET /api/v1/secrets/expiring`.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExpiringQuery {
    /// Secrets expiring within this many days from now, 1-365 (default 7).
    #[schemars(range(min = 1, max = 365))]
    pub days: Option<i64>,
    pub project_id: Option<String>,
    pub environment: Option<String>,
    /// Also those already expired (left out by default).
    pub include_expired: Option<bool>,
    /// Page size, 1-500 (default 50).
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

impl Vault {
    /// The operator's retention, in milliseconds.
    fn retention(&self) -> i64 {
        i64::from(self.config.retention_days) * DAY
    }

    /// When a secret deleted at `deleted_at` stops being restorable.
    pub(super) fn restorable_until(&self, deleted_at: Millis) -> Millis {
        deleted_at + self.retention()
    }

    /// A secret's metadata, with when a deleted one stops being restorable.
    pub(super) fn meta_of(&self, row: &SecretRow) -> Result<SecretMeta> {
        let mut meta = SecretMeta::try_from(row)?;
        if let Some(d) = row.deleted_at {
            meta.restorable_until = super::views::opt_time(Some(self.restorable_until(d)), "secrets", &row.id, "deleted_at")?;
        }
        Ok(meta)
    }

    /// A create or rename refused for its name: when a soft-deleted secret
    /// holds it, 409 `SECRET_EXISTS` naming that one, else the error as it was.
    pub(super) async fn name_taken(&self, tenant_id: &str, project_id: Option<&str>, environment: &str, name: &str, e: Error) -> Error {
        if !matches!(e, Error::AlreadyExists(_)) {
            return e;
        }
        match self.store.find_secret(tenant_id, project_id, environment, name).await {
            Ok(Some(row)) if row.deleted_at.is_some() => Error::SecretExists { name: row.name, deleted_secret_id: row.id },
            _ => e,
        }
    }

    /// `DELETE /api/v1/secrets/{id}` with its parameters: a soft delete, a
    /// purge (`permanent=true`, admin) or one version (`version=N`).
    pub async fn delete_secret_with(&self, p: &Principal, r: SecretRef<'_>, q: DeleteParams) -> Result<DeleteResult> {
        let rid = r.id();
        match (q.permanent.unwrap_or(false), q.version) {
            (true, Some(_)) => {
                let e = Error::InvalidRequest("give permanent or version, not both".into());
                Err(self.audit_failure(p, "secret.deleted", "secret", rid, e).await)
            }
            (true, None) => audited!(self, p, "secret.purged", "secret", rid, self.purge_inner(p, &r).await),
            (false, Some(v)) => audited!(self, p, "secret.version_deleted", "secret", rid, self.delete_version_inner(p, &r, v).await),
            (false, None) => audited!(self, p, "secret.deleted", "secret", rid, self.soft_delete_inner(p, &r).await),
        }
    }

    async fn soft_delete_inner(&self, p: &Principal, r: &SecretRef<'_>) -> Result<DeleteResult> {
        p.require(Permission::Write)?;
        let row = self.visible_secret(p, r, ScopeAction::Delete).await?;
        let now = now_millis();
        let until = self.restorable_until(now);
        let audit = p
            .audit("secret.deleted", "secret", Some(&row.id), "success")
            .detail(serde_json::json!({ "name": row.name, "restorableUntil": when(until) }));
        match self.store.lifecycle().soft_delete(&p.tenant_id, &row.id, now, &audit).await? {
            Some(_) => Ok(DeleteResult {
                id: row.id,
                deleted: true,
                restorable_until: DateTime::from_timestamp_millis(until),
                purged: false,
                version: None,
            }),
            None => Err(Error::SecretNotFound),
        }
    }

    /// Finds a secret by id or name, deleted or not (restore and purge only).
    async fn any_secret(&self, p: &Principal, r: &SecretRef<'_>, action: ScopeAction) -> Result<SecretRow> {
        let row = match r {
            SecretRef::Id(id) if super::names::is_id(id) => self.store.get_secret(&p.tenant_id, id).await?,
            SecretRef::Id(_) => None,
            SecretRef::Name { name, project_id, environment } => {
                let env = super::names::environment(*environment)?;
                self.store.find_secret(&p.tenant_id, *project_id, &env, name).await?
            }
        };
        let row = row.ok_or(Error::SecretNotFound)?;
        p.require_secret(action, &row)?;
        Ok(row)
    }

    async fn purge_inner(&self, p: &Principal, r: &SecretRef<'_>) -> Result<DeleteResult> {
        p.require(Permission::Admin)?;
        let row = self.any_secret(p, r, ScopeAction::Delete).await?;
        let audit = p
            .audit("secret.purged", "secret", Some(&row.id), "success")
            .detail(serde_json::json!({ "name": row.name, "wasDeleted": row.deleted_at.is_some() }));
        if self.store.lifecycle().purge(&p.tenant_id, &row.id, None, &audit).await? {
            Ok(DeleteResult { id: row.id, deleted: true, restorable_until: None, purged: true, version: None })
        } else {
            Err(Error::SecretNotFound)
        }
    }

    async fn delete_version_inner(&self, p: &Principal, r: &SecretRef<'_>, version: i64) -> Result<DeleteResult> {
        p.require(Permission::Write)?;
        let row = self.visible_secret(p, r, ScopeAction::Delete).await?;
        if version == row.current_version {
            return Err(Error::InvalidRequest(format!(
                "version {version} is the current version of '{}': write a new value first, or delete the secret",
                row.name
            )));
        }
        let audit = p
            .audit("secret.version_deleted", "secret", Some(&row.id), "success")
            .detail(serde_json::json!({ "name": row.name, "version": version }));
        match self.store.lifecycle().delete_version(&p.tenant_id, &row.id, version, &audit).await? {
            VersionDeleted::Deleted => {
                Ok(DeleteResult { id: row.id, deleted: true, restorable_until: None, purged: true, version: Some(version) })
            }
            VersionDeleted::Current => Err(Error::InvalidRequest(format!("version {version} became the current version meanwhile"))),
            VersionDeleted::Missing => Err(Error::NotFound("version")),
        }
    }

    /// `POST /api/v1/secrets/{id}/restore`: brings a soft-deleted secret back
    /// (write permission; counts toward the plan's quota again).
    pub async fn restore_secret(&self, p: &Principal, r: SecretRef<'_>) -> Result<SecretMeta> {
        let rid = r.id();
        audited!(self, p, "secret.restored", "secret", rid, self.restore_inner(p, &r).await)
    }

    async fn restore_inner(&self, p: &Principal, r: &SecretRef<'_>) -> Result<SecretMeta> {
        p.require(Permission::Write)?;
        // A live secret of that name shadows a deleted one by name; by id, a
        // live one is simply not deleted.
        let row = self.any_secret(p, r, ScopeAction::Write).await?;
        if row.deleted_at.is_none() {
            return Err(Error::SecretNotFound);
        }
        let audit = p.audit("secret.restored", "secret", Some(&row.id), "success").detail(serde_json::json!({ "name": row.name }));
        let restored = self
            .store
            .lifecycle()
            .restore(&p.tenant_id, &row.id, now_millis(), &|plan| Ok(plans::limits(plan)?.max_secrets), &audit)
            .await?
            .ok_or(Error::SecretNotFound)?;
        self.meta_of(&restored)
    }

    /// `GET /api/v1/secrets/expiring?days=N`: secrets whose expiry falls
    /// within the next N days (default 7), soonest-named first; those already
    /// expired only with `includeExpired=true`.
    pub async fn list_expiring(&self, p: &Principal, q: ExpiringQuery) -> Result<SecretPage> {
        let days = q.days.unwrap_or(7);
        if !(1..=365).contains(&days) {
            let e = Error::InvalidRequest(format!("days must be between 1 and 365 (got {days})"));
            return Err(self.audit_failure(p, "secret.list", "secret", None, e).await);
        }
        let list = ListSecrets {
            project_id: q.project_id,
            environment: q.environment,
            include_expired: q.include_expired,
            limit: q.limit,
            cursor: q.cursor,
            expiring_within_days: Some(days),
            ..Default::default()
        };
        self.list_secrets(p, list).await
    }

    /// The sweep's purge: secrets deleted longer ago than the retention, in
    /// bounded batches. Each is one conditional DELETE (see
    /// `LifecycleStore::purge`), so replicas sweeping together purge (and
    /// record) each secret once.
    pub(super) async fn purge_expired_deletions(&self) -> Result<usize> {
        let cutoff = now_millis() - self.retention();
        let mut purged = 0;
        for _ in 0..PURGE_BATCHES {
            let batch = self.store.lifecycle().purgeable(cutoff, PURGE_BATCH).await?;
            for row in &batch {
                let mut audit = super::Origin::new(super::Front::Job).audit(
                    Some(&row.tenant_id),
                    "system:retention",
                    "secret.purged",
                    "secret",
                    Some(&row.id),
                    "success",
                );
                audit.front = "system".into();
                audit.detail = Some(serde_json::json!({ "name": row.name, "reason": "retention" }).to_string());
                if self.store.lifecycle().purge(&row.tenant_id, &row.id, Some(cutoff), &audit).await? {
                    purged += 1;
                }
            }
            if (batch.len() as i64) < PURGE_BATCH {
                break;
            }
        }
        Ok(purged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_bad_ones_are_400_never_a_panic() {
        assert_eq!(parse_expires_in("90d").unwrap(), 90 * DAY);
        assert_eq!(parse_expires_in(" 30m ").unwrap(), 30 * MINUTE);
        // A multi-byte last character once split a character in two (a panic, answered 500).
        for bad in [",ó", "ó", "5ó", "", "d", "-1d", "0d", "1w", "🙂"] {
            assert!(matches!(parse_expires_in(bad), Err(Error::InvalidRequest(_))), "{bad}");
        }
    }
}
