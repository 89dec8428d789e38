//! Tenant backups: a self-contained, encrypted archive of a tenant's
//! secrets (every version, with their metadata), projects (environments,
//! templates), rotation policies and approval policy, made on demand and
//! kept in the database (so every replica serves it), and the restore that
//! replaces the tenant's secrets with an archive's in one transaction.
//!
//! An archive (see [`archive`]) opens with the tenant's data key on the
//! server that made it, and, when made with a passphrase, anywhere (a fresh
//! tenant on another server, under another master key). API keys, owners,
//! plans and the audit trail are never in one.
//!
//! Rules:
//! - Admin keys (and owners) only, with no project scope (a backup covers
//!   every project); scoped tokens and read or write keys get 403.
//! - A passphrase makes every value of the archive readable offline to
//!   whoever holds both, so when the tenant has secrets behind an approval
//!   tier or an exposure other than `reveal`, only an owner may make one
//!   (403 `OWNER_REQUIRED`): an agent's admin key must not read through a
//!   backup what it may not read through the API.
//! - A restore re-seals every version for the restoring tenant (the AAD
//!   names tenant, secret and version). Into the tenant that made the
//!   archive, ids are kept, so links to them (rotation policies, tokens'
//!   paths, bookmarks) go on working; into another tenant every secret,
//!   project and policy gets a fresh id (ids are unique server-wide).
//! - What pointed at the replaced secrets: share links end (values erased),
//!   pending and approved read grants expire, rotation policies become the
//!   archive's; claims, requests and tokens are untouched. The approval
//!   policy only ever tightens (a restore never turns `gate_sensitive` off).

pub mod archive;

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::principal::WithDetail;
use super::views::time;
use super::{Permission, Principal, Vault, audited, plans};
use crate::crypto::SecretAad;
use crate::error::{Error, Result};
use crate::store::backups::{BackupRow, MAX_BACKUPS_PER_TENANT, RetirementRow, TenantData};
use crate::store::environments::{EnvironmentRow, TemplateRow};
use crate::store::rotation::PolicyRow;
use crate::store::{ProjectRow, SecretRow, VersionRow, now_millis};
use archive::{Body, Header, Unlock};

/// Longest backup name, in characters.
const MAX_NAME: usize = 200;
/// Shortest and longest passphrase, in characters.
const PASSPHRASE_LEN: std::ops::RangeInclusive<usize> = 8..=1024;
/// The header an upload restore takes its passphrase from.
pub const PASSPHRASE_HEADER: &str = "x-backup-passphrase";

/// `POST /api/v1/backup`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateBackup {
    /// A name for the listing (default `backup-<time>`); at most 200 characters.
    pub name: Option<String>,
    /// Also wrap the archive's key with this passphrase (PBKDF2-SHA256,
    /// 600000 rounds), so the archive restores on another server. 8 to 1024
    /// characters. Never stored.
    pub passphrase: Option<String>,
    /// Accepted for SecretCarousel's clients and ignored.
    pub description: Option<String>,
}

/// `POST /api/v1/backup/{id}/restore`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RestoreBackup {
    /// Needed only when the tenant's key does not open the archive.
    pub passphrase: Option<String>,
}

/// `GET /api/v1/backup` query: SecretCarousel's SDK may pass these; the
/// listing is short (at most 20) and always whole.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListBackups {
    pub limit: Option<u32>,
    pub offset: Option<u32>,
    pub page: Option<u32>,
}

/// A stored backup (never its content).
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupView {
    pub id: String,
    /// Same as `id` (SecretCarousel's clients read this).
    pub backup_id: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
    /// Secrets in the archive (soft-deleted ones included).
    pub secrets: i64,
    /// Versions, all secrets together.
    pub versions: i64,
    pub projects: i64,
    /// The archive's size in bytes.
    pub size_bytes: i64,
    /// Whether a passphrase also opens it (so it restores on another server).
    pub passphrase_protected: bool,
    /// Always `completed`: a backup is made before the answer.
    pub status: &'static str,
}

impl TryFrom<&BackupRow> for BackupView {
    type Error = Error;
    fn try_from(r: &BackupRow) -> Result<Self> {
        Ok(BackupView {
            id: r.id.clone(),
            backup_id: r.id.clone(),
            name: r.name.clone(),
            created_at: time(r.created_at, "backups", &r.id, "created_at")?,
            secrets: r.secrets,
            versions: r.versions,
            projects: r.projects,
            size_bytes: r.size_bytes,
            passphrase_protected: r.passphrase_protected,
            status: "completed",
        })
    }
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupList {
    /// Newest first.
    pub backups: Vec<BackupView>,
    pub count: usize,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupDeleted {
    pub id: String,
    pub deleted: bool,
}

/// What a restore put back.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreResult {
    pub restored: bool,
    /// The archive's backup id and name.
    pub backup_id: String,
    pub name: String,
    pub secrets: i64,
    pub versions: i64,
    pub projects: i64,
    /// Whether secrets kept their ids (a restore into the tenant that made the archive).
    pub ids_kept: bool,
    /// What opened the archive: `tenantKey` or `passphrase`.
    pub unlocked_with: &'static str,
}

/// An archive to download.
pub struct Download {
    pub filename: String,
    pub bytes: Vec<u8>,
}

impl Vault {
    fn backup_caller(&self, p: &Principal) -> Result<()> {
        p.require(Permission::Admin)?;
        p.require_key("manage backups")?;
        if p.project_scope.is_some() {
            return Err(Error::ScopeDenied("a backup covers every project: use an admin key with no project scope".into()));
        }
        Ok(())
    }

    /// `POST /api/v1/backup`: reads the tenant in one snapshot, opens every
    /// version, seals the archive, stores it (at most 20 per tenant).
    pub async fn create_backup(&self, p: &Principal, req: CreateBackup) -> Result<BackupView> {
        audited!(self, p, "backup.created", "backup", None, self.create_backup_inner(p, req).await)
    }

    async fn create_backup_inner(&self, p: &Principal, req: CreateBackup) -> Result<BackupView> {
        self.backup_caller(p)?;
        let now = now_millis();
        let name = match req.name.as_deref().map(str::trim) {
            None | Some("") => format!("backup-{}", Utc::now().format("%Y-%m-%dT%H:%M:%SZ")),
            Some(n) if n.chars().count() > MAX_NAME || n.chars().any(char::is_control) => {
                return Err(Error::InvalidRequest(format!("name must be at most {MAX_NAME} characters, without control characters")));
            }
            Some(n) => n.to_owned(),
        };
        let passphrase = req.passphrase.map(Zeroizing::new);
        if passphrase.as_ref().is_some_and(|pass| !PASSPHRASE_LEN.contains(&pass.chars().count())) {
            return Err(Error::InvalidRequest("passphrase must be 8 to 1024 characters".into()));
        }
        let data = self.store.backups().snapshot(&p.tenant_id).await?;
        if passphrase.is_some() && !p.is_owner() && data.secrets.iter().any(|s| s.access_tier != "standard" || s.exposure != "reveal") {
            return Err(Error::OwnerRequired(
                "this tenant has secrets behind an approval tier or a restricted exposure, and a passphrase archive opens offline: \
                 only an owner can make one (a backup without a passphrase is fine)"
                    .into(),
            ));
        }
        let key = self.fresh_data_key(&p.tenant_id).await?;
        let body = body_of(&p.tenant_id, &data, &key)?;
        let id = uuid::Uuid::new_v4().to_string();
        let header = Header {
            format: 1,
            backup_id: id.clone(),
            name: name.clone(),
            tenant_id: p.tenant_id.clone(),
            created_at: now,
            secrets: data.secrets.len() as i64,
            versions: data.versions.len() as i64,
            projects: data.projects.len() as i64,
            tenant_wrapped: String::new(),
            passphrase: None,
        };
        let (secrets, versions, projects) = (header.secrets, header.versions, header.projects);
        let bytes = tokio::task::spawn_blocking(move || archive::seal(header, &body, &key, passphrase.as_deref().map(String::as_str)))
            .await
            .map_err(Error::internal)??;
        let row = BackupRow {
            id: id.clone(),
            tenant_id: p.tenant_id.clone(),
            name,
            created_at: now,
            created_by: p.key_id.clone(),
            secrets,
            versions,
            projects,
            size_bytes: bytes.len() as i64,
            passphrase_protected: bytes_has_passphrase(&bytes),
            archive: bytes,
        };
        let audit = p.audit("backup.created", "backup", Some(&id), "success").detail(serde_json::json!({
            "name": row.name, "secrets": secrets, "versions": versions, "projects": projects,
            "passphraseProtected": row.passphrase_protected,
        }));
        self.store.backups().insert_backup(&row, MAX_BACKUPS_PER_TENANT, &audit).await?;
        BackupView::try_from(&row)
    }

    /// `GET /api/v1/backup`: newest first.
    pub async fn list_backups(&self, p: &Principal, _q: ListBackups) -> Result<BackupList> {
        audited!(
            self,
            p,
            "backup.list",
            "backup",
            None,
            async {
                self.backup_caller(p)?;
                let rows = self.store.backups().list_backups(&p.tenant_id).await?;
                let backups = rows.iter().map(BackupView::try_from).collect::<Result<Vec<_>>>()?;
                Ok(BackupList { count: backups.len(), backups })
            }
            .await
        )
    }

    pub async fn get_backup(&self, p: &Principal, id: &str) -> Result<BackupView> {
        audited!(
            self,
            p,
            "backup.read",
            "backup",
            Some(id),
            async {
                self.backup_caller(p)?;
                let row = self.store.backups().get_backup(&p.tenant_id, id, false).await?.ok_or(Error::NotFound("backup"))?;
                BackupView::try_from(&row)
            }
            .await
        )
    }

    /// `GET /api/v1/backup/{id}/download`: the archive's bytes, audited
    /// (`backup.downloaded`).
    pub async fn download_backup(&self, p: &Principal, id: &str) -> Result<Download> {
        audited!(
            self,
            p,
            "backup.downloaded",
            "backup",
            Some(id),
            async {
                self.backup_caller(p)?;
                let row = self.store.backups().get_backup(&p.tenant_id, id, true).await?.ok_or(Error::NotFound("backup"))?;
                self.record_read(
                    p,
                    p.audit("backup.downloaded", "backup", Some(id), "success").detail(serde_json::json!({ "name": row.name })),
                )
                .await?;
                let stamp = chrono::DateTime::<Utc>::from_timestamp_millis(row.created_at).unwrap_or_default().format("%Y%m%d-%H%M%S");
                Ok(Download { filename: format!("latchkey-backup-{}-{stamp}.lkb", p.tenant_id), bytes: row.archive })
            }
            .await
        )
    }

    pub async fn delete_backup(&self, p: &Principal, id: &str) -> Result<BackupDeleted> {
        audited!(
            self,
            p,
            "backup.deleted",
            "backup",
            Some(id),
            async {
                self.backup_caller(p)?;
                let row = self.store.backups().get_backup(&p.tenant_id, id, false).await?.ok_or(Error::NotFound("backup"))?;
                let audit = p.audit("backup.deleted", "backup", Some(id), "success").detail(serde_json::json!({ "name": row.name }));
                if !self.store.backups().delete_backup(&p.tenant_id, id, &audit).await? {
                    return Err(Error::NotFound("backup"));
                }
                Ok(BackupDeleted { id: id.to_owned(), deleted: true })
            }
            .await
        )
    }

    /// `POST /api/v1/backup/{id}/restore`: a stored archive of this tenant.
    pub async fn restore_backup(&self, p: &Principal, id: &str, req: RestoreBackup) -> Result<RestoreResult> {
        audited!(
            self,
            p,
            "backup.restored",
            "backup",
            Some(id),
            async {
                self.backup_caller(p)?;
                let row = self.store.backups().get_backup(&p.tenant_id, id, true).await?.ok_or(Error::NotFound("backup"))?;
                self.restore_archive(p, &row.archive, req.passphrase.map(Zeroizing::new), "stored").await
            }
            .await
        )
    }

    /// `POST /api/v1/backup/restore`: an archive sent as the body (one
    /// downloaded here or from another server).
    pub async fn restore_uploaded(&self, p: &Principal, bytes: &[u8], passphrase: Option<String>) -> Result<RestoreResult> {
        audited!(
            self,
            p,
            "backup.restored",
            "backup",
            None,
            async {
                self.backup_caller(p)?;
                self.restore_archive(p, bytes, passphrase.map(Zeroizing::new), "upload").await
            }
            .await
        )
    }

    async fn restore_archive(
        &self,
        p: &Principal,
        bytes: &[u8],
        passphrase: Option<Zeroizing<String>>,
        source: &str,
    ) -> Result<RestoreResult> {
        // Read afresh: the archive may be wrapped by a generation newer than the cached key.
        let key = self.fresh_data_key(&p.tenant_id).await?;
        let (header, _) = archive::read_header(bytes)?;
        let (opened, unlocked_with) = if archive::tenant_opens(&header, &p.tenant_id, &key) {
            (archive::open(bytes, Unlock::Tenant { tenant_id: &p.tenant_id, key: &key })?, "tenantKey")
        } else {
            let Some(pass) = passphrase else {
                return Err(Error::InvalidPassphrase(
                    "this tenant's key does not open the archive (another tenant's or another server's): send its passphrase".into(),
                ));
            };
            let archive_bytes = bytes.to_vec();
            let opened = tokio::task::spawn_blocking(move || archive::open(&archive_bytes, Unlock::Passphrase(&pass)))
                .await
                .map_err(Error::internal)??;
            (opened, "passphrase")
        };
        let Some((header, body)) = opened else {
            return Err(Error::InvalidPassphrase("wrong passphrase for this archive (or it has none); nothing was changed".into()));
        };
        let keep_ids = header.tenant_id == p.tenant_id;
        let mut data = data_of(&p.tenant_id, &body, keep_ids, &key)?;
        // The approval policy only tightens through a restore.
        data.gate_sensitive |= self.store.gate_sensitive(&p.tenant_id).await?;
        let audit = p.audit("backup.restored", "backup", Some(&header.backup_id), "success").detail(serde_json::json!({
            "name": header.name, "source": source, "unlockedWith": unlocked_with,
            "secrets": data.secrets.len(), "versions": data.versions.len(), "projects": data.projects.len(),
            "fromTenant": header.tenant_id, "idsKept": keep_ids,
        }));
        self.store.backups().restore(&p.tenant_id, &data, &|plan| Ok(plans::limits(plan)?.max_secrets), now_millis(), &audit).await?;
        Ok(RestoreResult {
            restored: true,
            backup_id: header.backup_id,
            name: header.name,
            secrets: data.secrets.len() as i64,
            versions: data.versions.len() as i64,
            projects: data.projects.len() as i64,
            ids_kept: keep_ids,
            unlocked_with,
        })
    }
}

/// Whether an archive this server just sealed carries a passphrase wrap.
fn bytes_has_passphrase(bytes: &[u8]) -> bool {
    archive::read_header(bytes).is_ok_and(|(h, _)| h.passphrase.is_some())
}

/// The archive body of a snapshot: every version opened with the tenant's key.
fn body_of(tenant_id: &str, d: &TenantData, key: &crate::crypto::DataKey) -> Result<Body> {
    let mut versions: HashMap<&str, Vec<archive::Version>> = HashMap::new();
    for v in &d.versions {
        let value = Zeroizing::new(key.open(&SecretAad { tenant_id, secret_id: &v.secret_id, version: v.version }, &v.sealed)?);
        versions.entry(v.secret_id.as_str()).or_default().push(archive::Version {
            version: v.version,
            value: archive::encode_value(&value),
            created_at: v.created_at,
            created_by: v.created_by.clone(),
        });
    }
    let secrets = d
        .secrets
        .iter()
        .map(|s| archive::Secret {
            id: s.id.clone(),
            project_id: s.project_id.clone(),
            environment: s.environment.clone(),
            name: s.name.clone(),
            secret_type: s.secret_type.clone(),
            description: s.description.clone(),
            tags: s.tags.clone(),
            current_version: s.current_version,
            created_at: s.created_at,
            updated_at: s.updated_at,
            access_tier: s.access_tier.clone(),
            exposure: s.exposure.clone(),
            bindings: s.bindings.clone(),
            expires_at: s.expires_at,
            deleted_at: s.deleted_at,
            max_versions: s.max_versions,
            retiring_version: s.retiring_version,
            retiring_until: s.retiring_until,
            versions: versions.remove(s.id.as_str()).unwrap_or_default(),
        })
        .collect();
    Ok(Body {
        secrets,
        projects: d
            .projects
            .iter()
            .map(|p| archive::Project {
                id: p.id.clone(),
                name: p.name.clone(),
                description: p.description.clone(),
                tags: p.tags.clone(),
                created_at: p.created_at,
                updated_at: p.updated_at,
            })
            .collect(),
        environments: d
            .environments
            .iter()
            .map(|e| archive::Environment { project_id: e.project_id.clone(), name: e.name.clone(), created_at: e.created_at })
            .collect(),
        templates: d
            .templates
            .iter()
            .map(|t| archive::Template {
                project_id: t.project_id.clone(),
                name: t.name.clone(),
                description: t.description.clone(),
                required: t.required,
                created_at: t.created_at,
            })
            .collect(),
        rotation_policies: d
            .policies
            .iter()
            .map(|r| archive::Policy {
                id: r.id.clone(),
                secret_id: r.secret_id.clone(),
                schedule: r.schedule.clone(),
                alert_days_before: r.alert_days_before,
                generator: r.generator.clone(),
                grace_period_ms: r.grace_period_ms,
                next_run_at: r.next_run_at,
                alerted_for: r.alerted_for,
                last_rotated_at: r.last_rotated_at,
                created_by: r.created_by.clone(),
                created_at: r.created_at,
                updated_at: r.updated_at,
            })
            .collect(),
        retirements: d
            .retirements
            .iter()
            .map(|r| archive::Retirement {
                secret_id: r.secret_id.clone(),
                version: r.version,
                rotated_at: r.rotated_at,
                retired_at: r.retired_at,
            })
            .collect(),
        settings: archive::Settings { gate_sensitive: d.gate_sensitive },
    })
}

/// The rows a restore writes for `tenant_id`: ids kept or fresh, every
/// version sealed under the tenant's key for its (possibly new) secret id.
fn data_of(tenant_id: &str, b: &Body, keep_ids: bool, key: &crate::crypto::DataKey) -> Result<TenantData> {
    let mut ids: HashMap<String, String> = HashMap::new();
    let mut id_of = |old: &str| -> String {
        if keep_ids {
            return old.to_owned();
        }
        ids.entry(old.to_owned()).or_insert_with(|| uuid::Uuid::new_v4().to_string()).clone()
    };
    let mut d = TenantData { gate_sensitive: b.settings.gate_sensitive, ..Default::default() };
    for p in &b.projects {
        d.projects.push(ProjectRow {
            id: id_of(&p.id),
            tenant_id: tenant_id.to_owned(),
            name: p.name.clone(),
            description: p.description.clone(),
            tags: p.tags.clone(),
            created_at: p.created_at,
            updated_at: p.updated_at,
            secret_count: 0,
        });
    }
    for e in &b.environments {
        d.environments.push(EnvironmentRow {
            tenant_id: tenant_id.to_owned(),
            project_id: id_of(&e.project_id),
            name: e.name.clone(),
            created_at: e.created_at,
        });
    }
    for t in &b.templates {
        d.templates.push(TemplateRow {
            tenant_id: tenant_id.to_owned(),
            project_id: id_of(&t.project_id),
            name: t.name.clone(),
            description: t.description.clone(),
            required: t.required,
            created_at: t.created_at,
        });
    }
    for s in &b.secrets {
        let id = id_of(&s.id);
        for v in &s.versions {
            let value = archive::decode_value(&v.value)?;
            d.versions.push(VersionRow {
                secret_id: id.clone(),
                version: v.version,
                sealed: key.seal(&SecretAad { tenant_id, secret_id: &id, version: v.version }, &value),
                created_at: v.created_at,
                created_by: v.created_by.clone(),
            });
        }
        d.secrets.push(SecretRow {
            id,
            tenant_id: tenant_id.to_owned(),
            project_id: s.project_id.as_deref().map(&mut id_of),
            environment: s.environment.clone(),
            name: s.name.clone(),
            secret_type: s.secret_type.clone(),
            description: s.description.clone(),
            tags: s.tags.clone(),
            current_version: s.current_version,
            created_at: s.created_at,
            updated_at: s.updated_at,
            access_tier: s.access_tier.clone(),
            exposure: s.exposure.clone(),
            bindings: s.bindings.clone(),
            expires_at: s.expires_at,
            deleted_at: s.deleted_at,
            max_versions: s.max_versions,
            retiring_version: s.retiring_version,
            retiring_until: s.retiring_until,
        });
    }
    for r in &b.retirements {
        d.retirements.push(RetirementRow {
            secret_id: id_of(&r.secret_id),
            version: r.version,
            rotated_at: r.rotated_at,
            retired_at: r.retired_at,
        });
    }
    for r in &b.rotation_policies {
        d.policies.push(PolicyRow {
            id: id_of(&r.id),
            tenant_id: tenant_id.to_owned(),
            secret_id: id_of(&r.secret_id),
            schedule: r.schedule.clone(),
            alert_days_before: r.alert_days_before,
            generator: r.generator.clone(),
            grace_period_ms: r.grace_period_ms,
            next_run_at: r.next_run_at,
            alerted_for: r.alerted_for,
            last_rotated_at: r.last_rotated_at,
            created_by: r.created_by.clone(),
            created_at: r.created_at,
            updated_at: r.updated_at,
        });
    }
    Ok(d)
}
