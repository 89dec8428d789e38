//! API keys: issue, list, change, revoke, regenerate. A key can only hand out
//! what it has itself: never a higher permission, never a wider project scope.
//! And it can only see and manage keys that reach no further than itself.

use super::principal::WithDetail;
use super::views::*;
use super::{Permission, Principal, Vault, audited, names, plans};
use crate::crypto::tokens;
use crate::error::{Error, Result};
use crate::store::{ApiKeyRow, now_millis};

/// A fresh key for `tenant_id` on `plan`: its row (hash and display prefix
/// only) and the plaintext, which the caller shows once and forgets.
pub(super) fn new_key(
    tenant_id: &str,
    plan: &str,
    name: String,
    permission: Permission,
    scope: &[String],
    expires_at: Option<i64>,
) -> (ApiKeyRow, String) {
    let token = tokens::generate(plans::key_prefix(plan));
    let now = now_millis();
    let row = ApiKeyRow {
        id: uuid::Uuid::new_v4().to_string(),
        tenant_id: tenant_id.to_owned(),
        name,
        prefix: tokens::display_prefix(&token, plans::key_prefix(plan)),
        key_hash: tokens::hash(&token),
        permission: permission.as_str().into(),
        project_scope: serde_json::to_string(scope).expect("serialisable"),
        expires_at,
        revoked_at: None,
        created_at: now,
        updated_at: now,
        kind: crate::store::KIND_KEY.into(),
        scopes: None,
        max_uses: None,
        uses: 0,
        ip_allowlist: None,
        parent_key_id: None,
        reason: None,
        approval_id: None,
    };
    (row, token)
}

/// Whether `p` may see and manage the key `row`. A key without a project scope
/// manages every key of its tenant; a project-scoped admin only keys scoped
/// within its own projects, or it could regenerate the tenant's unscoped key
/// and take its place. Keys beyond its reach are not there for it (404).
pub(super) fn within_reach(p: &Principal, row: &ApiKeyRow) -> Result<bool> {
    let Some(own) = &p.project_scope else { return Ok(true) };
    // Unreadable, it would read as no scope at all: every project.
    let theirs = super::views::json_list(&row.project_scope, "api_keys", &row.id, "project_scope")?;
    Ok(!theirs.is_empty() && theirs.iter().all(|id| own.contains(id)))
}

impl Vault {
    async fn visible_key(&self, p: &Principal, id: &str) -> Result<ApiKeyRow> {
        p.require_key("manage API keys")?;
        let row = if names::is_id(id) { self.store.get_api_key(&p.tenant_id, id).await? } else { None };
        match row {
            // A token is not a key here: `vault::tokens` manages tokens.
            Some(row) if !row.is_token() && within_reach(p, &row)? => Ok(row),
            _ => Err(Error::NotFound("api key")),
        }
    }

    /// Checks that `scope` names projects of this tenant inside the caller's own scope.
    pub(super) async fn grantable_scope(&self, p: &Principal, scope: &[String]) -> Result<Vec<String>> {
        let mut out: Vec<String> = Vec::new();
        for id in scope {
            if !names::is_id(id) || self.store.get_project(&p.tenant_id, id).await?.is_none() {
                return Err(Error::InvalidRequest(format!("projectScope: '{id}' is not a project of this tenant")));
            }
            if !out.contains(id) {
                out.push(id.clone());
            }
        }
        match &p.project_scope {
            Some(own) if out.is_empty() || out.iter().any(|id| !own.contains(id)) => {
                Err(Error::ScopeDenied("a project-scoped key can only issue keys within its own projects".into()))
            }
            _ => Ok(out),
        }
    }

    fn grantable_permission(p: &Principal, wanted: Permission) -> Result<()> {
        if wanted > p.permission {
            return Err(Error::ScopeDenied(format!("a '{}' key cannot grant '{}'", p.permission.as_str(), wanted.as_str())));
        }
        Ok(())
    }

    fn future(t: Option<chrono::DateTime<chrono::Utc>>) -> Result<Option<i64>> {
        match t.map(|t| t.timestamp_millis()) {
            Some(ms) if ms <= now_millis() => Err(Error::InvalidRequest("expiresAt must be in the future".into())),
            other => Ok(other),
        }
    }

    pub async fn create_api_key(&self, p: &Principal, req: CreateApiKey) -> Result<IssuedApiKey> {
        audited!(
            self,
            p,
            "apikey.create",
            "api_key",
            None,
            async {
                p.require_key("issue API keys")?;
                let p = &self.recheck(p).await?;
                p.require(Permission::Admin)?;
                Self::grantable_permission(p, req.permissions)?;
                let name = names::label("key name", &req.name, 128)?;
                let scope = self.grantable_scope(p, &req.project_scope).await?;
                let (row, token) = new_key(&p.tenant_id, &p.plan, name, req.permissions, &scope, Self::future(req.expires_at)?);
                let audit = p
                    .audit("apikey.create", "api_key", Some(&row.id), "success")
                    .detail(serde_json::json!({ "name": row.name, "permissions": row.permission, "projectScope": scope }));
                self.store.insert_api_key(&row, &audit).await?;
                Ok(IssuedApiKey { api_key: token, key: ApiKeyView::read(&row)? })
            }
            .await
        )
    }

    pub async fn list_api_keys(&self, p: &Principal) -> Result<ApiKeyList> {
        audited!(
            self,
            p,
            "apikey.list",
            "api_key",
            None,
            async {
                p.require_key("list API keys")?;
                p.require(Permission::Admin)?;
                let rows = self.store.list_api_keys(&p.tenant_id).await?;
                self.record_read(p, p.audit("apikey.list", "api_key", None, "success")).await?;
                let mut api_keys = Vec::with_capacity(rows.len());
                for row in &rows {
                    if within_reach(p, row)? {
                        api_keys.push(ApiKeyView::read(row)?);
                    }
                }
                Ok(ApiKeyList { count: api_keys.len(), api_keys })
            }
            .await
        )
    }

    pub async fn update_api_key(&self, p: &Principal, id: &str, req: UpdateApiKey) -> Result<ApiKeyView> {
        audited!(
            self,
            p,
            "apikey.update",
            "api_key",
            Some(id),
            async {
                let p = &self.recheck(p).await?;
                p.require(Permission::Admin)?;
                let mut row = self.visible_key(p, id).await?;
                let seen = row.updated_at;
                if row.revoked_at.is_some() {
                    return Err(Error::Conflict("this key is revoked".into()));
                }
                if let Some(n) = &req.name {
                    row.name = names::label("key name", n, 128)?;
                }
                if let Some(perm) = req.permissions {
                    Self::grantable_permission(p, perm)?;
                    row.permission = perm.as_str().into();
                }
                if let Some(scope) = &req.project_scope {
                    row.project_scope = serde_json::to_string(&self.grantable_scope(p, scope).await?).expect("serialisable");
                }
                if let Some(expires_at) = req.expires_at {
                    row.expires_at = Self::future(expires_at)?;
                }
                row.updated_at = next_update(seen);
                let audit = p
                    .audit("apikey.update", "api_key", Some(&row.id), "success")
                    .detail(serde_json::json!({ "name": row.name, "permissions": row.permission }));
                if !self.store.update_api_key(&row, seen, &audit).await? {
                    return Err(changed_meanwhile());
                }
                ApiKeyView::read(&row)
            }
            .await
        )
    }

    pub async fn revoke_api_key(&self, p: &Principal, id: &str) -> Result<ApiKeyView> {
        audited!(
            self,
            p,
            "apikey.revoke",
            "api_key",
            Some(id),
            async {
                let p = &self.recheck(p).await?;
                p.require(Permission::Admin)?;
                let mut row = self.visible_key(p, id).await?;
                let seen = row.updated_at;
                if row.revoked_at.is_some() {
                    return Err(Error::Conflict("this key is already revoked".into()));
                }
                let now = now_millis();
                row.revoked_at = Some(now);
                row.updated_at = next_update(seen);
                let audit = p.audit("apikey.revoke", "api_key", Some(&row.id), "success").detail(serde_json::json!({ "name": row.name }));
                if !self.store.update_api_key(&row, seen, &audit).await? {
                    return Err(changed_meanwhile());
                }
                ApiKeyView::read(&row)
            }
            .await
        )
    }

    /// Replaces a key's secret part; the old key stops working at once.
    pub async fn regenerate_api_key(&self, p: &Principal, id: &str) -> Result<IssuedApiKey> {
        audited!(
            self,
            p,
            "apikey.regenerate",
            "api_key",
            Some(id),
            async {
                let p = &self.recheck(p).await?;
                p.require(Permission::Admin)?;
                let mut row = self.visible_key(p, id).await?;
                let seen = row.updated_at;
                if row.revoked_at.is_some() {
                    return Err(Error::Conflict("this key is revoked; create a new one".into()));
                }
                let token = tokens::generate(plans::key_prefix(&p.plan));
                row.key_hash = tokens::hash(&token);
                row.prefix = tokens::display_prefix(&token, plans::key_prefix(&p.plan));
                row.updated_at = next_update(seen);
                let audit =
                    p.audit("apikey.regenerate", "api_key", Some(&row.id), "success").detail(serde_json::json!({ "name": row.name }));
                if !self.store.update_api_key(&row, seen, &audit).await? {
                    return Err(changed_meanwhile());
                }
                Ok(IssuedApiKey { api_key: token, key: ApiKeyView::read(&row)? })
            }
            .await
        )
    }
}

/// A key's new `updated_at`: now, and always later than the one read, since
/// it is what the next change compares against.
fn next_update(seen: crate::store::Millis) -> crate::store::Millis {
    now_millis().max(seen + 1)
}

fn changed_meanwhile() -> Error {
    Error::Conflict("this key was changed meanwhile (revoked, regenerated or updated); read it again".into())
}
