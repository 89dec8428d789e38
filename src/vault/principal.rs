//! Who is calling: resolved once per request by a front, then handed to every
//! service function, which enforces tenant, permission and project scope itself.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::scopes::ScopeAction;
use crate::error::{Error, Result};
use crate::store::{AuditRow, now_millis};

/// What a key may do. Each level includes the ones below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    Read,
    Write,
    Admin,
}

impl Permission {
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Write => "write",
            Permission::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "read" => Ok(Permission::Read),
            "write" => Ok(Permission::Write),
            "admin" => Ok(Permission::Admin),
            _ => Err(Error::InvalidRequest("permissions must be one of read, write, admin".into())),
        }
    }
}

/// Which front a request came through, recorded in the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Front {
    #[default]
    Rest,
    Mcp,
    Cli,
    /// The pages for people (`/approvals`).
    Page,
    /// A background job of the server (scheduled rotations).
    Job,
}

impl Front {
    pub fn as_str(self) -> &'static str {
        match self {
            Front::Rest => "rest",
            Front::Mcp => "mcp",
            Front::Cli => "cli",
            Front::Page => "page",
            Front::Job => "job",
        }
    }
}

/// Where a request came from; known before the caller is.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub front: Front,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// The agent that acts, for every entry the request makes: the MCP
    /// client's `name/version` from `initialize`, else the `User-Agent`.
    pub client: Option<String>,
    /// The MCP tool being called, for the entries its call makes.
    pub tool: Option<String>,
    /// The reason the caller gave for this action, where it takes one.
    pub reason: Option<String>,
}

impl Origin {
    pub fn new(front: Front) -> Self {
        Origin { front, ..Default::default() }
    }

    /// This origin for one MCP tool call: its entries name the tool.
    pub fn with_tool(&self, tool: &str) -> Self {
        Origin { tool: Some(tool.to_owned()), ..self.clone() }
    }

    /// This origin with the reason a caller gave (kept to 500 characters:
    /// the trail records why, not an essay). An empty reason is none.
    pub fn with_reason(&self, reason: Option<&str>) -> Self {
        let reason = reason.map(str::trim).filter(|r| !r.is_empty()).map(|r| r.chars().take(500).collect());
        Origin { reason: reason.or_else(|| self.reason.clone()), ..self.clone() }
    }

    /// An audit row for an action taken before (or without) authentication.
    pub fn audit(
        &self,
        tenant_id: Option<&str>,
        actor: &str,
        action: &str,
        resource_type: &str,
        resource_id: Option<&str>,
        outcome: &str,
    ) -> AuditRow {
        AuditRow {
            id: 0,
            tenant_id: tenant_id.map(str::to_owned),
            at: now_millis(),
            actor: actor.to_owned(),
            front: self.front.as_str().to_owned(),
            action: action.to_owned(),
            resource_type: resource_type.to_owned(),
            resource_id: resource_id.map(str::to_owned),
            outcome: outcome.to_owned(),
            ip: self.ip.clone(),
            user_agent: self.user_agent.clone(),
            detail: None,
            chain_seq: None,
            chain_hash: None,
            client: self.client.clone().or_else(|| self.user_agent.clone()),
            tool: self.tool.clone(),
            reason: self.reason.clone(),
            credential: None,
            served: None,
        }
    }
}

/// What kind of caller a principal is. Each kind has one rule for "still
/// live" (`vault::auth`), and what a kind may do beyond its permission is
/// asked of the principal ([`Principal::is_owner`], [`Principal::require_owner`]),
/// never read off how it authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallerKind {
    /// An API key the request presented (REST, MCP over HTTP, or a
    /// `latchkey mcp` session given `LATCHKEY_API_KEY`).
    ApiKey,
    /// A `latchkey mcp` session without a key: the local tenant's own session
    /// key, held by the process and renewed when it expires.
    LocalSession,
    /// A scoped token: a short-lived credential an agent asked for with its
    /// key, narrower than that key (its `scopes`, uses and addresses).
    Token,
    /// A human owner of the tenant, signed in with an owner token or on the
    /// approval page (see [`Human`]).
    Owner,
    /// The operator at the server's terminal (`latchkey approvals …`), who
    /// holds the database itself; audited as the CLI.
    Operator,
}

/// What is known of a human caller: who, and how strongly they proved it.
#[derive(Debug, Clone, Default)]
pub struct Human {
    /// The owner's id; `None` for the operator.
    pub owner_id: Option<String>,
    /// The tenant has an owner with a passkey: strong actions then need
    /// [`Human::passkey_fresh`], since every other proof can be copied.
    pub passkeys_enrolled: bool,
    /// This request carries a fresh, user-verified passkey assertion.
    pub passkey_fresh: bool,
    /// How the human signed in, for the audit trail: `token`, `passkey`, `cli`.
    pub how: &'static str,
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    pub tenant_id: String,
    /// The key the caller acts with: the actor of its audit entries.
    pub key_id: String,
    pub kind: CallerKind,
    /// The key as it was when this principal was made (hash and rights as
    /// stored): a regeneration keeps the id and changes the hash.
    pub credential: crate::store::Credential,
    pub plan: String,
    pub permission: Permission,
    /// `None`: every project. `Some(ids)`: only secrets in these projects.
    pub project_scope: Option<Vec<String>>,
    pub origin: Origin,
    /// The store's change epoch before the key was looked up: a read served
    /// from the cache checks it did not move (see `store::CachedStore`).
    pub seen_epoch: u64,
    /// A scoped token's scopes; `None` for every other kind, whose reach is
    /// its permission and project scope alone.
    pub scopes: Option<std::sync::Arc<super::scopes::Scopes>>,
    /// Set for [`CallerKind::Owner`] and [`CallerKind::Operator`] only.
    pub human: Option<Human>,
    /// The non-`reveal` values this request (or stdio session) opened: the
    /// leak guard redacts them from everything it answers.
    pub touched: crate::redact::Touched,
}

impl Principal {
    /// Whether the caller is one of the tenant's human owners, who alone may
    /// decide approvals and loosen protections. No key is: an agent holding
    /// every key of its tenant is still not an owner, and neither is a local
    /// session, which any process of the user's can start.
    pub fn is_owner(&self) -> bool {
        match self.kind {
            CallerKind::ApiKey | CallerKind::LocalSession | CallerKind::Token => false,
            CallerKind::Owner | CallerKind::Operator => self.human.is_some(),
        }
    }

    /// Refuses anyone but an owner (403 `OWNER_REQUIRED`), and, for a
    /// `strong` action (deciding a critical approval, lowering a tier,
    /// changing the policy) once the tenant's owners have passkeys, an owner
    /// without a fresh passkey assertion (403 `PASSKEY_REQUIRED`). The
    /// operator at the terminal holds the database and needs neither.
    pub fn require_owner(&self, what: &str, strong: bool) -> Result<()> {
        let human = match (&self.human, self.is_owner()) {
            (Some(h), true) => h,
            _ => {
                return Err(Error::OwnerRequired(format!(
                    "only a human owner of this tenant can {what}; API keys and tokens cannot (an owner signs in on the approval page)"
                )));
            }
        };
        if strong && self.kind == CallerKind::Owner && human.passkeys_enrolled && !human.passkey_fresh {
            return Err(Error::PasskeyRequired(format!(
                "to {what}, confirm with your passkey on the approval page: this tenant's owners have passkeys"
            )));
        }
        Ok(())
    }

    pub fn require(&self, needed: Permission) -> Result<()> {
        if self.permission >= needed {
            Ok(())
        } else {
            Err(Error::ScopeDenied(format!(
                "this key has '{}' permission; the action needs '{}'",
                self.permission.as_str(),
                needed.as_str()
            )))
        }
    }

    /// Whether a secret in `project_id` lies within this key's project scope.
    pub fn covers(&self, project_id: Option<&str>) -> bool {
        match (&self.project_scope, project_id) {
            (None, _) => true,
            (Some(scope), Some(p)) => scope.iter().any(|s| s == p),
            (Some(_), None) => false,
        }
    }

    pub fn require_project(&self, project_id: Option<&str>) -> Result<()> {
        if self.covers(project_id) {
            Ok(())
        } else {
            Err(Error::ScopeDenied("this key's project scope does not cover that project".into()))
        }
    }

    /// Refuses a scoped token (403 `SCOPE_DENIED`): it reaches the secrets
    /// its scopes cover and nothing else (keys, tokens, audit, projects' changes).
    pub fn require_key(&self, what: &str) -> Result<()> {
        if self.kind == CallerKind::Token {
            return Err(Error::ScopeDenied(format!("a scoped token cannot {what}; only the secrets its scopes cover")));
        }
        Ok(())
    }

    /// Whether this caller may do `action` to the secret at `project_id`,
    /// `environment`, `name`: its project scope and, for a token, its scopes
    /// (matched against the secret's path, `scopes::path`). The one check
    /// every path to a secret makes.
    pub fn allows_secret(&self, action: ScopeAction, project_id: Option<&str>, environment: &str, name: &str) -> bool {
        self.covers(project_id) && self.scopes.as_ref().is_none_or(|s| s.allows(action, &super::scopes::path(environment, name)))
    }

    /// [`Principal::allows_secret`] for a secret's place, as an error:
    /// 403 `SCOPE_DENIED` naming the path a token's scopes do not cover.
    pub fn require_path(&self, action: ScopeAction, project_id: Option<&str>, environment: &str, name: &str) -> Result<()> {
        self.require_project(project_id)?;
        if let Some(scopes) = &self.scopes {
            let path = super::scopes::path(environment, name);
            if !scopes.allows(action, &path) {
                return Err(Error::ScopeDenied(format!(
                    "this token's scopes do not allow '{}' on '{}'",
                    action.as_str(),
                    path.escape_debug()
                )));
            }
        }
        Ok(())
    }

    /// [`Principal::require_path`] for a stored secret.
    pub fn require_secret(&self, action: ScopeAction, row: &crate::store::SecretRow) -> Result<()> {
        self.require_path(action, row.project_id.as_deref(), &row.environment, &row.name)
    }

    /// Whether the caller acts with an `api_keys` row (a key, a local
    /// session's key, a token), whose liveness its writes are checked
    /// against; owners and the operator do not.
    pub fn has_key(&self) -> bool {
        matches!(self.kind, CallerKind::ApiKey | CallerKind::LocalSession | CallerKind::Token)
    }

    /// The operator at the server's terminal, acting on `tenant_id`
    /// (`latchkey approvals …`): audited as the CLI, actor `operator`.
    pub fn operator(tenant_id: &str) -> Self {
        Principal {
            tenant_id: tenant_id.to_owned(),
            key_id: "operator".into(),
            kind: CallerKind::Operator,
            credential: crate::store::Credential::default(),
            plan: String::new(),
            permission: Permission::Admin,
            project_scope: None,
            origin: Origin::new(Front::Cli),
            seen_epoch: 0,
            scopes: None,
            human: Some(Human { owner_id: None, passkeys_enrolled: false, passkey_fresh: false, how: "cli" }),
            touched: Default::default(),
        }
    }

    /// This caller, with the reason it gave for the action at hand: every
    /// entry the action makes records it. Borrowed as is when none was given
    /// (reads take this path, and pay no copy).
    pub fn with_reason(&self, reason: Option<&str>) -> std::borrow::Cow<'_, Principal> {
        match reason.map(str::trim).filter(|r| !r.is_empty()) {
            None => std::borrow::Cow::Borrowed(self),
            Some(r) => {
                let mut p = self.clone();
                p.origin = p.origin.with_reason(Some(r));
                std::borrow::Cow::Owned(p)
            }
        }
    }

    pub fn audit(&self, action: &str, resource_type: &str, resource_id: Option<&str>, outcome: &str) -> AuditRow {
        let mut row = self.origin.audit(Some(&self.tenant_id), &self.key_id, action, resource_type, resource_id, outcome);
        // Owners and the operator are no `api_keys` row: the liveness check
        // of a credential would refuse their entries.
        if self.has_key() {
            row.credential = Some(self.credential.clone());
        }
        row
    }
}

/// Adds non-secret context to an audit row.
pub trait WithDetail {
    fn detail(self, detail: serde_json::Value) -> Self;
}

impl WithDetail for AuditRow {
    fn detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = Some(detail.to_string());
        self
    }
}
