//! Owners: the tenant's humans, who alone decide approvals and loosen
//! protections. An owner is made by the operator (`latchkey owner add`), by
//! another owner, or by opening the setup link a signup answered; signs in
//! with a one-time link or an owner token (`lko_…`); holds a page session
//! (12 h) with a CSRF token; and may register passkeys. Once the tenant has a
//! passkey, strong actions need a fresh, user-verified assertion made for
//! that action (see [`Vault::finish_assertion`]).
//!
//! REST accepts an owner token as an Owner principal (`how: "token"`); MCP
//! never does.

use std::sync::Arc;

use webauthn_rs::prelude::{Passkey, PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential, RegisterPublicKeyCredential};
use webauthn_rs::{Webauthn, WebauthnBuilder};

use super::principal::{Human, Origin, WithDetail};
use super::{CallerKind, Front, Permission, Principal, Vault, names};
use crate::crypto::tokens;
use crate::error::{Error, Result};
use crate::store::owners::{LinkRow, OwnerRow, PasskeyRow, SessionRow};
use crate::store::{Millis, now_millis};

/// The readable prefix of owner tokens.
pub const OWNER_TOKEN_PREFIX: &str = "lko_";
const LINK_LIFE: Millis = 24 * 3600 * 1000;
const SESSION_LIFE: Millis = 12 * 3600 * 1000;
/// How old a ceremony (and so an assertion's challenge) may be when it is finished.
const CEREMONY_LIFE: Millis = 2 * 60 * 1000;
/// The purpose of the assertion that lets an owner add a passkey once the tenant has one.
pub const REGISTER_PURPOSE: &str = "passkey.register";

/// How this server is reached from a browser: the base of the links it hands
/// out, and the WebAuthn relying party (none when the base's host is an IP
/// literal, which browsers refuse as an RP id).
pub struct Site {
    pub base: String,
    pub secure: bool,
    webauthn: Option<Arc<Webauthn>>,
}

impl Site {
    /// `public_url` if set, else `http://localhost:PORT` for a loopback
    /// listener (so passkeys work: `localhost` is a valid RP id), else the
    /// listening address.
    pub fn new(public_url: Option<&str>, listen: Option<std::net::SocketAddr>) -> Result<Site> {
        let base = match (public_url, listen) {
            (Some(u), _) => u.trim_end_matches('/').to_owned(),
            (None, Some(a)) if a.ip().is_loopback() || a.ip().is_unspecified() => format!("http://localhost:{}", a.port()),
            (None, Some(a)) => format!("http://{a}"),
            (None, None) => "http://localhost:8200".to_owned(),
        };
        let url = webauthn_rs::prelude::Url::parse(&base)
            .map_err(|e| Error::InvalidRequest(format!("the public URL '{base}' is not a URL: {e}")))?;
        let webauthn = match url.domain() {
            Some(domain) => {
                let built = WebauthnBuilder::new(domain, &url).and_then(|b| b.rp_name("Latchkey").build());
                match built {
                    Ok(w) => Some(Arc::new(w)),
                    Err(e) => {
                        tracing::warn!(error = %e, base = %base, "passkeys are off: this URL cannot be a WebAuthn relying party");
                        None
                    }
                }
            }
            None => {
                tracing::warn!(base = %base, "passkeys are off: browsers refuse an IP address as the relying party; set --public-url");
                None
            }
        };
        Ok(Site { secure: url.scheme() == "https", base, webauthn })
    }

    fn webauthn(&self) -> Result<&Webauthn> {
        self.webauthn
            .as_deref()
            .ok_or_else(|| Error::Conflict("passkeys need a host name: start the server with --public-url https://NAME".into()))
    }
}

/// A new owner's credentials, shown once.
#[derive(Debug)]
pub struct NewOwner {
    pub owner_id: String,
    pub name: String,
    pub token: String,
    pub signin_url: String,
}

/// A page session just opened: the cookie's value (shown once to the browser).
#[derive(Debug)]
pub struct NewSession {
    pub cookie: String,
    pub owner_id: String,
    /// The owner's token, when the session came with a new owner (a setup link).
    pub owner_token: Option<String>,
}

/// A signed-in page caller: the principal and the session behind it.
#[derive(Debug, Clone)]
pub struct PageCaller {
    pub principal: Principal,
    pub session: SessionRow,
    pub owner_name: String,
}

/// An owner as the page lists it.
#[derive(Debug, Clone)]
pub struct OwnerView {
    pub id: String,
    pub name: String,
    pub created_at: Millis,
    pub passkeys: Vec<String>,
}

fn owner_name(name: &str) -> Result<String> {
    let name = names::text("name", name.trim(), 100)?;
    if name.is_empty() {
        return Err(Error::InvalidRequest("name must not be empty".into()));
    }
    Ok(name)
}

pub(super) fn new_link(tenant_id: &str, owner_id: Option<&str>, purpose: &str) -> (LinkRow, String) {
    let token = tokens::generate("");
    let now = now_millis();
    let row = LinkRow {
        hash: tokens::hash(&token),
        tenant_id: tenant_id.to_owned(),
        owner_id: owner_id.map(str::to_owned),
        purpose: purpose.to_owned(),
        created_at: now,
        expires_at: now + LINK_LIFE,
        used_at: None,
    };
    (row, token)
}

fn new_session(owner: &OwnerRow) -> (SessionRow, String) {
    let cookie = tokens::generate("");
    let now = now_millis();
    let row = SessionRow {
        id_hash: tokens::hash(&cookie),
        owner_id: owner.id.clone(),
        tenant_id: owner.tenant_id.clone(),
        csrf: tokens::generate(""),
        created_at: now,
        expires_at: now + SESSION_LIFE,
    };
    (row, cookie)
}

/// The setup link a signup answers (`ownerSetupUrl`): single use, 24 h;
/// the first person to open it names themselves and becomes an owner.
pub(super) fn setup_url(base: &str, token: &str) -> String {
    format!("{base}/approvals/setup/{token}")
}

fn webauthn_error(e: impl std::fmt::Display) -> Error {
    Error::InvalidRequest(format!("the passkey ceremony failed: {e}"))
}

impl Vault {
    /// Sets how browsers reach this server (see [`Site::new`]); `serve` calls it once.
    pub fn set_site(&self, site: Site) {
        let _ = self.site.set(site);
    }

    /// See [`Vault::set_site`]; outside `serve` (the stdio MCP server, the
    /// CLI): `LATCHKEY_PUBLIC_URL`, else `http://localhost:8200`.
    pub fn site(&self) -> &Site {
        self.site.get_or_init(|| {
            let env = std::env::var("LATCHKEY_PUBLIC_URL").ok().filter(|u| !u.is_empty());
            Site::new(env.as_deref(), None).unwrap_or_else(|_| Site::new(None, None).expect("the default base parses"))
        })
    }

    /// The base URL of links handed out (`{base}/approvals/…`).
    pub fn public_base(&self) -> &str {
        &self.site().base
    }

    fn owner_principal(&self, owner: &OwnerRow, plan: String, passkeys_enrolled: bool, how: &'static str, origin: Origin) -> Principal {
        Principal {
            tenant_id: owner.tenant_id.clone(),
            key_id: owner.id.clone(),
            kind: CallerKind::Owner,
            credential: crate::store::Credential::default(),
            plan,
            permission: Permission::Admin,
            project_scope: None,
            origin,
            seen_epoch: self.store.change_epoch(),
            scopes: None,
            human: Some(Human { owner_id: Some(owner.id.clone()), passkeys_enrolled, passkey_fresh: false, how }),
            touched: Default::default(),
        }
    }

    async fn make_owner(&self, tenant_id: &str, name: &str, created_by: &str, actor: AuditBy<'_>) -> Result<NewOwner> {
        let name = owner_name(name)?;
        self.store.get_tenant(tenant_id).await?.ok_or(Error::NotFound("tenant"))?;
        let token = tokens::generate(OWNER_TOKEN_PREFIX);
        let owner = OwnerRow {
            id: uuid::Uuid::new_v4().to_string(),
            tenant_id: tenant_id.to_owned(),
            name: name.clone(),
            token_hash: tokens::hash(&token),
            created_at: now_millis(),
            created_by: created_by.to_owned(),
            revoked_at: None,
        };
        let (link, link_token) = new_link(tenant_id, Some(&owner.id), "signin");
        let audit = actor
            .row(tenant_id, "owner.created", "owner", Some(&owner.id))
            .detail(serde_json::json!({ "name": name, "createdBy": created_by }));
        self.store.owners().insert_owner(&owner, Some(&link), &audit).await?;
        Ok(NewOwner { owner_id: owner.id, name, token, signin_url: format!("{}/approvals/signin/{link_token}", self.public_base()) })
    }

    /// Operator action (CLI): a new owner of `tenant_id`, with a one-time
    /// sign-in link (24 h) and an owner token, both shown once.
    pub async fn add_owner_as_operator(&self, tenant_id: &str, name: &str) -> Result<NewOwner> {
        let origin = Origin::new(Front::Cli);
        self.make_owner(tenant_id, name, "operator", AuditBy::Origin(&origin, "operator")).await
    }

    /// An owner adds another owner.
    pub async fn add_owner(&self, p: &Principal, name: &str) -> Result<NewOwner> {
        p.require_owner("add an owner", false)?;
        self.make_owner(&p.tenant_id, name, &p.key_id, AuditBy::Principal(p)).await
    }

    /// An owner token presented over REST: an Owner principal (`how: "token"`).
    pub async fn authenticate_owner(&self, token: &str, origin: Origin) -> Result<Principal> {
        let hash = tokens::hash(token);
        let found = self.store.owners().find_owner_by_token(&hash).await?.filter(|o| tokens::hashes_match(&o.token_hash, &hash));
        let Some(owner) = found else {
            let failure = super::auth::Failure { tenant_id: None, actor: "unknown-owner", reason: "unknown", presented: Some(&hash) };
            return Err(self.refuse(&origin, failure, Error::Unauthorized("invalid owner token".into())).await);
        };
        let tenant = self.store.get_tenant(&owner.tenant_id).await?.ok_or(Error::NotFound("tenant"))?;
        // Charged to the plan like every authenticated call (see `Vault::authenticate`).
        self.admit(&owner.tenant_id, &tenant.plan).await?;
        let enrolled = self.store.owners().tenant_has_passkey(&owner.tenant_id).await?;
        Ok(self.owner_principal(&owner, tenant.plan, enrolled, "token", origin))
    }

    /// The page's sign-in with a pasted owner token: a new session.
    pub async fn sign_in_with_token(&self, token: &str, origin: Origin) -> Result<NewSession> {
        let p = self.authenticate_owner(token.trim(), origin).await?;
        let owner = self.store.owners().get_owner(&p.tenant_id, &p.key_id).await?.ok_or(Error::NotFound("owner"))?;
        let (session, cookie) = new_session(&owner);
        let audit = p.audit("owner.signed_in", "owner", Some(&owner.id), "success").detail(serde_json::json!({ "how": "token" }));
        self.store.owners().insert_session(&session, &audit).await?;
        Ok(NewSession { cookie, owner_id: owner.id, owner_token: None })
    }

    /// Uses a one-time link: a `signin` link opens a session for its owner; a
    /// `setup` link (given `name`) first makes its opener an owner. The link
    /// is consumed in the same transaction, by one conditional UPDATE.
    pub async fn sign_in_with_link(&self, link_token: &str, purpose: &str, name: Option<&str>, origin: Origin) -> Result<NewSession> {
        let name = match (purpose, name) {
            ("setup", Some(n)) => Some(owner_name(n)?),
            ("setup", None) => return Err(Error::InvalidRequest("name: say who you are".into())),
            _ => None,
        };
        let dead = || Error::Unauthorized("this link is unknown, used or expired; ask an owner or the operator for a new one".into());
        let new_token = tokens::generate(OWNER_TOKEN_PREFIX);
        let made = std::sync::Mutex::new(None);
        let then = |link: &LinkRow| -> Result<(Option<OwnerRow>, SessionRow, crate::store::AuditRow)> {
            let now = now_millis();
            let (owner_id, created) = match (&link.purpose[..], &link.owner_id, &name) {
                ("setup", None, Some(name)) if purpose == "setup" => {
                    let owner = OwnerRow {
                        id: uuid::Uuid::new_v4().to_string(),
                        tenant_id: link.tenant_id.clone(),
                        name: name.clone(),
                        token_hash: tokens::hash(&new_token),
                        created_at: now,
                        created_by: "signup".into(),
                        revoked_at: None,
                    };
                    (owner.id.clone(), Some(owner))
                }
                ("signin", Some(id), None) if purpose == "signin" => (id.clone(), None),
                // Rolled back: the link stays as it was.
                _ => return Err(dead()),
            };
            let cookie = tokens::generate("");
            let session = SessionRow {
                id_hash: tokens::hash(&cookie),
                owner_id: owner_id.clone(),
                tenant_id: link.tenant_id.clone(),
                csrf: tokens::generate(""),
                created_at: now,
                expires_at: now + SESSION_LIFE,
            };
            let (action, detail) = match &created {
                Some(o) => ("owner.created", serde_json::json!({ "how": "setup link", "name": o.name, "createdBy": "signup" })),
                None => ("owner.signed_in", serde_json::json!({ "how": "link" })),
            };
            let audit = origin.audit(Some(&link.tenant_id), &owner_id, action, "owner", Some(&owner_id), "success").detail(detail);
            *made.lock().expect("not poisoned") = Some((owner_id, cookie, created.is_some()));
            Ok((created, session, audit))
        };
        if self.store.owners().use_link(&tokens::hash(link_token), now_millis(), &then).await?.is_none() {
            return Err(dead());
        }
        let (owner_id, cookie, created) =
            made.into_inner().expect("not poisoned").ok_or_else(|| Error::internal("a link used without a session"))?;
        Ok(NewSession { cookie, owner_id, owner_token: created.then_some(new_token) })
    }

    /// The caller behind a page session cookie, or 401.
    pub async fn page_caller(&self, cookie: &str, origin: Origin) -> Result<PageCaller> {
        let owners = self.store.owners();
        let session = owners
            .find_session(&tokens::hash(cookie), now_millis())
            .await?
            .ok_or_else(|| Error::Unauthorized("not signed in, or the session expired".into()))?;
        let owner = owners.get_owner(&session.tenant_id, &session.owner_id).await?.ok_or(Error::NotFound("owner"))?;
        let tenant = self.store.get_tenant(&owner.tenant_id).await?.ok_or(Error::NotFound("tenant"))?;
        let enrolled = owners.tenant_has_passkey(&owner.tenant_id).await?;
        let principal = self.owner_principal(&owner, tenant.plan, enrolled, "session", origin);
        Ok(PageCaller { principal, session, owner_name: owner.name })
    }

    pub async fn sign_out(&self, caller: &PageCaller) -> Result<()> {
        let audit = caller.principal.audit("owner.signed_out", "owner", Some(&caller.principal.key_id), "success");
        self.store.owners().delete_session(&caller.session.id_hash, &audit).await
    }

    /// The tenant's owners and their passkeys' names.
    pub async fn list_owners(&self, p: &Principal) -> Result<Vec<OwnerView>> {
        p.require_owner("list owners", false)?;
        let owners = self.store.owners();
        let (all, keys) = tokio::try_join!(owners.list_owners(&p.tenant_id), owners.list_passkeys(&p.tenant_id, None))?;
        Ok(all
            .into_iter()
            .filter(|o| o.revoked_at.is_none())
            .map(|o| OwnerView {
                passkeys: keys.iter().filter(|k| k.owner_id == o.id).map(|k| k.name.clone()).collect(),
                id: o.id,
                name: o.name,
                created_at: o.created_at,
            })
            .collect())
    }

    /// Begins registering a passkey for the signed-in owner: the options
    /// for `navigator.credentials.create`. Once the tenant has a passkey,
    /// `caller` must carry a fresh assertion (see [`Vault::finish_assertion`]):
    /// otherwise whoever copied a cookie or token could enroll their own.
    pub async fn start_passkey_registration(&self, caller: &PageCaller) -> Result<serde_json::Value> {
        caller.principal.require_owner("register a passkey", true)?;
        let webauthn = self.site().webauthn()?;
        let mine = self.store.owners().list_passkeys(&caller.principal.tenant_id, Some(&caller.principal.key_id)).await?;
        let exclude = mine.iter().filter_map(|k| serde_json::from_str::<Passkey>(&k.passkey).ok()).map(|k| k.cred_id().clone()).collect();
        let user = uuid::Uuid::parse_str(&caller.principal.key_id).map_err(Error::internal)?;
        let (options, state) =
            webauthn.start_passkey_registration(user, &caller.owner_name, &caller.owner_name, Some(exclude)).map_err(webauthn_error)?;
        let state = serde_json::to_string(&state).map_err(Error::internal)?;
        self.store.owners().begin_ceremony(&caller.session.id_hash, &state, "register", now_millis()).await?;
        serde_json::to_value(options).map_err(Error::internal)
    }

    /// Finishes a registration begun by [`Vault::start_passkey_registration`].
    pub async fn finish_passkey_registration(&self, caller: &PageCaller, credential: serde_json::Value, name: &str) -> Result<()> {
        let p = &caller.principal;
        let name = if name.trim().is_empty() { "passkey".to_owned() } else { owner_name(name)? };
        let webauthn = self.site().webauthn()?;
        let credential: RegisterPublicKeyCredential =
            serde_json::from_value(credential).map_err(|e| Error::InvalidRequest(format!("credential: {e}")))?;
        let state = self
            .store
            .owners()
            .take_ceremony(&caller.session.id_hash, "register", now_millis() - CEREMONY_LIFE)
            .await?
            .ok_or_else(|| Error::Conflict("no registration under way, or it is older than 2 minutes: start again".into()))?;
        let state: PasskeyRegistration = serde_json::from_str(&state).map_err(Error::internal)?;
        let passkey = webauthn.finish_passkey_registration(&credential, &state).map_err(webauthn_error)?;
        let credential_id = serde_json::to_value(passkey.cred_id()).map_err(Error::internal)?.as_str().unwrap_or_default().to_owned();
        let row = PasskeyRow {
            credential_id: credential_id.clone(),
            owner_id: p.key_id.clone(),
            tenant_id: p.tenant_id.clone(),
            passkey: serde_json::to_string(&passkey).map_err(Error::internal)?,
            name: name.clone(),
            created_at: now_millis(),
            last_used_at: None,
        };
        let audit = p.audit("passkey.registered", "owner", Some(&p.key_id), "success").detail(serde_json::json!({ "name": name }));
        self.store.owners().insert_passkey(&row, &audit).await
    }

    /// Begins an assertion for one named action (`purpose`, e.g.
    /// `approve:ID`): the options for `navigator.credentials.get`, with the
    /// signed-in owner's passkeys. The challenge is bound to the session and
    /// the purpose, usable once, for 2 minutes.
    pub async fn start_assertion(&self, caller: &PageCaller, purpose: &str) -> Result<serde_json::Value> {
        let webauthn = self.site().webauthn()?;
        if purpose.is_empty() || purpose.len() > 200 {
            return Err(Error::InvalidRequest("purpose: name the action the assertion is for".into()));
        }
        let mine = self.store.owners().list_passkeys(&caller.principal.tenant_id, assertion_owner(caller, purpose)).await?;
        let keys: Vec<Passkey> = mine.iter().filter_map(|k| serde_json::from_str(&k.passkey).ok()).collect();
        if keys.is_empty() {
            return Err(Error::Conflict("you have no passkey yet: register one first".into()));
        }
        let (options, state) = webauthn.start_passkey_authentication(&keys).map_err(webauthn_error)?;
        let state = serde_json::to_string(&state).map_err(Error::internal)?;
        self.store.owners().begin_ceremony(&caller.session.id_hash, &state, purpose, now_millis()).await?;
        serde_json::to_value(options).map_err(Error::internal)
    }

    /// Verifies an assertion made for `purpose` (begun by
    /// [`Vault::start_assertion`] in this session, at most 2 minutes ago,
    /// user-verified) and answers the caller with a fresh passkey:
    /// `how: "passkey"`. The ceremony is taken by one conditional UPDATE, so
    /// an assertion serves one action.
    pub async fn finish_assertion(&self, caller: &PageCaller, purpose: &str, assertion: &str) -> Result<PageCaller> {
        let webauthn = self.site().webauthn()?;
        let credential: PublicKeyCredential =
            serde_json::from_str(assertion).map_err(|e| Error::InvalidRequest(format!("assertion: {e}")))?;
        let owners = self.store.owners();
        let state = owners.take_ceremony(&caller.session.id_hash, purpose, now_millis() - CEREMONY_LIFE).await?.ok_or_else(|| {
            Error::PasskeyRequired("the passkey confirmation is missing, used or older than 2 minutes: confirm again".into())
        })?;
        let state: PasskeyAuthentication = serde_json::from_str(&state).map_err(Error::internal)?;
        let result = webauthn
            .finish_passkey_authentication(&credential, &state)
            .map_err(|e| Error::PasskeyRequired(format!("the passkey confirmation did not verify: {e}")))?;
        if !result.user_verified() {
            return Err(Error::PasskeyRequired("the passkey did not verify the user (PIN or biometrics)".into()));
        }
        let mine = owners.list_passkeys(&caller.principal.tenant_id, assertion_owner(caller, purpose)).await?;
        for row in mine {
            if let Ok(mut key) = serde_json::from_str::<Passkey>(&row.passkey)
                && key.cred_id() == result.cred_id()
            {
                key.update_credential(&result);
                let json = serde_json::to_string(&key).map_err(Error::internal)?;
                owners.touch_passkey(&row.credential_id, &json, now_millis()).await?;
            }
        }
        let mut fresh = caller.clone();
        if let Some(h) = fresh.principal.human.as_mut() {
            h.passkey_fresh = true;
            h.how = "passkey";
        }
        Ok(fresh)
    }
}

/// Whose passkeys may confirm `purpose`: the caller's own; for enrolling a
/// passkey, any of the tenant's (an owner without one yet has another owner,
/// at their side, confirm with theirs).
fn assertion_owner<'a>(caller: &'a PageCaller, purpose: &str) -> Option<&'a str> {
    (purpose != REGISTER_PURPOSE).then_some(caller.principal.key_id.as_str())
}

/// Who an owner's audit entry is by: a principal, or the operator's origin.
enum AuditBy<'a> {
    Principal(&'a Principal),
    Origin(&'a Origin, &'a str),
}

impl AuditBy<'_> {
    fn row(&self, tenant_id: &str, action: &str, rtype: &str, rid: Option<&str>) -> crate::store::AuditRow {
        match self {
            AuditBy::Principal(p) => p.audit(action, rtype, rid, "success"),
            AuditBy::Origin(o, actor) => o.audit(Some(tenant_id), actor, action, rtype, rid, "success"),
        }
    }
}
