//! Tenants: self-signup, the operator's plan changes, and `whoami`.

use super::principal::{Origin, WithDetail};
use super::views::{Quickstart, SignupRequest, SignupResponse, Usage, WhoAmI};
use super::{CallerKind, Permission, Principal, Vault, names, plans};
use crate::error::{Error, Result};
use crate::store::{ApiKeyRow, TenantRow, now_millis};

/// The default tenant of `latchkey mcp`'s local session (`--tenant`), which
/// signup refuses to create.
pub const LOCAL_TENANT: &str = "local";

impl Vault {
    /// Creates a tenant on the operator's default plan with one admin key.
    /// Rate-limited per client IP; closed when the operator says so.
    pub async fn signup(&self, req: SignupRequest, origin: Origin) -> Result<SignupResponse> {
        if !self.config.signup_open {
            return Err(Error::SignupClosed);
        }
        if let Some(ip) = &origin.ip
            && let Err(wait) = self.signup_limiter.check(&super::throttle::client_key(ip))
        {
            return Err(Error::RateLimited { retry_after: wait.max(std::time::Duration::from_secs(1)) });
        }
        if names::tenant_id(&req.tenant_id)? == LOCAL_TENANT {
            return Err(Error::InvalidRequest(format!(
                "tenantId '{LOCAL_TENANT}' is reserved for the local session of `latchkey mcp`; choose another"
            )));
        }
        let (tenant, issued, setup) = self.create_tenant(req, &self.config.default_plan, "signup", origin).await?;
        Ok(SignupResponse {
            owner_setup_url: super::owners::setup_url(self.public_base(), &setup.unwrap_or_default()),
            api_key: issued,
            tenant_id: tenant.id,
            limits: plans::limits(&tenant.plan)?,
            plan: tenant.plan,
            quickstart: Quickstart {
                docs: "/llms.txt".into(),
                steps: "/api/quickstart".into(),
                auth_header: "X-API-Key: <apiKey>  (or Authorization: Bearer <apiKey>)".into(),
            },
        })
    }

    /// Creates a tenant and returns it with its first admin key (plaintext,
    /// once) and, from a signup, the owner setup link's token.
    async fn create_tenant(
        &self,
        req: SignupRequest,
        plan: &str,
        action_by: &str,
        origin: Origin,
    ) -> Result<(TenantRow, String, Option<String>)> {
        let id = names::tenant_id(&req.tenant_id)?;
        let limits = plans::limits(plan)?;
        let bounded = |what: &str, v: Option<String>| v.map(|v| names::text(what, &v, 512)).transpose();
        let now = now_millis();
        let (_, wrapped) = self.master.new_data_key(&id, 0);
        let tenant = TenantRow {
            email: req.email.as_deref().map(names::email).transpose()?.flatten(),
            agent: bounded("agent", req.agent)?,
            description: bounded("description", req.description)?,
            id,
            plan: limits.plan.to_owned(),
            wrapped_key: wrapped,
            created_at: now,
            local_only: action_by == "local",
        };
        let (key, token) = super::keys::new_key(&tenant.id, plan, "default".into(), Permission::Admin, &[], None);
        // A signup's human becomes owner through a one-time link; a local session has no owners.
        let setup = (action_by == "signup").then(|| super::owners::new_link(&tenant.id, None, "setup"));
        let mut audit = origin
            .audit(Some(&tenant.id), &key.id, "tenant.signup", "tenant", Some(&tenant.id), "success")
            .detail(serde_json::json!({ "plan": tenant.plan, "via": action_by, "agent": tenant.agent, "ownerSetupLink": setup.is_some() }));
        audit.credential = Some(crate::store::Credential::of(&key));
        self.store.create_tenant(&tenant, &key, setup.as_ref().map(|(link, _)| link), &audit).await?;
        Ok((tenant, token, setup.map(|(_, t)| t)))
    }

    /// The principal of a local, single-user front (`latchkey mcp` over stdio
    /// without an API key): the tenant's admin, created with its tenant on
    /// first use. Its key exists so the audit trail names an actor; the key's
    /// plaintext is never kept. Only a tenant made this way is adopted.
    pub(super) async fn local_principal(&self, tenant_id: &str, origin: Origin) -> Result<Principal> {
        const LOCAL_KEY: &str = "local-stdio";
        let seen_epoch = self.store.change_epoch();
        if self.store.get_tenant(tenant_id).await?.is_none() {
            let req = SignupRequest { tenant_id: tenant_id.to_owned(), email: None, agent: Some("latchkey mcp".into()), description: None };
            match self.create_tenant(req, "unlimited", "local", origin.clone()).await {
                Ok(_) | Err(Error::AlreadyExists(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let tenant = self.store.get_tenant(tenant_id).await?.ok_or(Error::NotFound("tenant"))?;
        if !tenant.local_only {
            // Made by a signup: adopting it would hand what the local user
            // stores to whoever signed up under this name.
            return Err(Error::Conflict(format!(
                "tenant '{tenant_id}' was not created by `latchkey mcp` (it was signed up for); a local session will \
                 not act in it: choose another --tenant, or set LATCHKEY_API_KEY to one of its keys"
            )));
        }
        let keys = self.store.list_api_keys(tenant_id).await?;
        let now = now_millis();
        let usable = |k: &ApiKeyRow| k.name == LOCAL_KEY && super::auth::dead_reason(k, now).is_none();
        let key = match keys.into_iter().find(usable) {
            Some(k) => k,
            None => {
                let (row, _plaintext_never_kept) =
                    super::keys::new_key(tenant_id, &tenant.plan, LOCAL_KEY.into(), Permission::Admin, &[], None);
                let mut audit = origin
                    .audit(Some(tenant_id), &row.id, "apikey.create", "api_key", Some(&row.id), "success")
                    .detail(serde_json::json!({ "name": LOCAL_KEY }));
                audit.credential = Some(crate::store::Credential::of(&row));
                self.store.insert_api_key(&row, &audit).await?;
                row
            }
        };
        // As the key row says: someone may have narrowed a key of that name.
        super::auth::principal_of(key, tenant.plan, CallerKind::LocalSession, origin, seen_epoch)
    }

    /// A local front's principal again after its key stopped working
    /// mid-session: if the key expired, the one a new session would get. A
    /// revoked key is not replaced.
    pub(super) async fn renew_local_principal(&self, p: &Principal) -> Result<Principal> {
        match self.store.get_api_key(&p.tenant_id, &p.key_id).await? {
            Some(key) if key.revoked_at.is_none() => {
                let fresh = self.local_principal(&p.tenant_id, p.origin.clone()).await?;
                Ok(Principal { touched: p.touched.clone(), ..fresh })
            }
            _ => Err(Error::Unauthorized("this session's key was revoked; a new session gets a new one".into())),
        }
    }

    /// Operator action (CLI): move a tenant to another plan.
    pub async fn set_plan(&self, tenant_id: &str, plan: &str) -> Result<()> {
        let limits = plans::limits(plan)?;
        let audit = Origin::new(super::Front::Cli)
            .audit(Some(tenant_id), "operator", "tenant.plan", "tenant", Some(tenant_id), "success")
            .detail(serde_json::json!({ "plan": limits.plan }));
        if self.store.set_tenant_plan(tenant_id, limits.plan, &audit).await? { Ok(()) } else { Err(Error::NotFound("tenant")) }
    }

    /// Read past the cache: the answer is about the key itself, so it must
    /// be the key as it is now (and a key revoked elsewhere gets 401).
    pub async fn whoami(&self, p: &Principal) -> Result<WhoAmI> {
        let p = &self.recheck(p).await?;
        Ok(WhoAmI {
            tenant_id: p.tenant_id.clone(),
            plan: p.plan.clone(),
            limits: plans::limits(&p.plan)?,
            usage: Usage {
                secrets: self.store.count_secrets(&p.tenant_id).await?,
                api_calls_this_month: self.monthly_calls.current(&*self.store, &p.tenant_id).await?,
            },
            key_id: p.key_id.clone(),
            permissions: p.permission,
            project_scope: p.project_scope.clone(),
        })
    }
}
