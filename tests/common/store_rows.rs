//! Rows for tests that drive a `Store` directly (below the vault): a tenant
//! with one admin key and one secret, and the audit entries their writes take.

use latchkey::store::{ApiKeyRow, AuditRow, Credential, SecretRow, Store, TenantRow, VersionRow, now_millis};

/// An audit entry of `action` on a secret, by `actor` presenting `credential`.
pub fn entry(tenant_id: &str, actor: &str, action: &str, credential: Option<&Credential>) -> AuditRow {
    let origin = latchkey::vault::Origin::new(latchkey::vault::Front::Rest);
    let mut row = origin.audit(Some(tenant_id), actor, action, "secret", None, "success");
    row.credential = credential.cloned();
    row
}

/// A tenant with one admin key and one secret at version 1.
pub struct Fixture {
    pub tenant: String,
    pub key: ApiKeyRow,
    pub secret: String,
}

impl Fixture {
    pub fn credential(&self) -> Credential {
        Credential::of(&self.key)
    }

    /// Creates them in `store`, under fresh ids (tenant `NAME-…`).
    pub async fn make(store: &dyn Store, name: &str) -> Fixture {
        let now = now_millis();
        let tenant = format!("{name}-{}", uuid::Uuid::new_v4().simple());
        let t = TenantRow {
            id: tenant.clone(),
            email: None,
            agent: None,
            description: None,
            plan: "unlimited".into(),
            wrapped_key: vec![0; 8],
            created_at: now,
            local_only: false,
        };
        let key = ApiKeyRow {
            id: uuid::Uuid::new_v4().to_string(),
            tenant_id: tenant.clone(),
            name: "default".into(),
            prefix: "sc_".into(),
            key_hash: uuid::Uuid::new_v4().as_bytes().to_vec(),
            permission: "admin".into(),
            project_scope: "[]".into(),
            expires_at: None,
            revoked_at: None,
            created_at: now,
            updated_at: now,
            kind: "key".into(),
            scopes: None,
            max_uses: None,
            uses: 0,
            ip_allowlist: None,
            parent_key_id: None,
            reason: None,
            approval_id: None,
        };
        let f = Fixture { tenant, secret: uuid::Uuid::new_v4().to_string(), key };
        store.create_tenant(&t, &f.key, None, &entry(&f.tenant, &f.key.id, "tenant.signup", Some(&f.credential()))).await.unwrap();
        let s = SecretRow {
            id: f.secret.clone(),
            tenant_id: f.tenant.clone(),
            project_id: None,
            environment: String::new(),
            name: "S".into(),
            secret_type: "custom".into(),
            description: None,
            tags: "[]".into(),
            current_version: 1,
            created_at: now,
            updated_at: now,
            access_tier: "standard".into(),
            exposure: "reveal".into(),
            bindings: "[]".into(),
            expires_at: None,
            deleted_at: None,
            max_versions: None,
            retiring_version: None,
            retiring_until: None,
        };
        let v = VersionRow { secret_id: f.secret.clone(), version: 1, sealed: vec![1], created_at: now, created_by: f.key.id.clone() };
        let quota = |_: &str| Ok(None);
        store.create_secret(&s, &v, &quota, &entry(&f.tenant, &f.key.id, "secret.create", Some(&f.credential()))).await.unwrap();
        f
    }
}
