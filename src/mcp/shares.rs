//! Share links for people as tools: make one, list, revoke, extend. Opening
//! a link is for the person it was made for, never a tool: it counts a use.

use rmcp::handler::server::wrapper::Parameters;
use rmcp::{Json, tool, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;

use super::{Caller, LatchkeyMcp};
use crate::error::Error;
use crate::vault::shares::{CreateShare, ExtendShare, ListShares, RevokeShare, ShareCreated, ShareList, ShareView};

/// `revoke_share`: which link, and why.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RevokeShareParams {
    /// The link's id (from create_share or list_shares).
    pub share_id: String,
    /// Why (at most 500 characters), recorded with the link.
    pub reason: Option<String>,
}

/// `extend_share`: which link, and its new expiry and/or total of uses.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExtendShareParams {
    /// The link's id.
    pub share_id: String,
    /// The link then works until now + this many hours (1-720).
    #[schemars(range(min = 1, max = 720))]
    pub expiration_hours: Option<i64>,
    /// The new total of uses (1-1000), above the uses already taken.
    #[schemars(range(min = 1, max = 1000))]
    pub max_uses: Option<i64>,
}

#[tool_router(router = share_tools, vis = "pub(super)")]
impl LatchkeyMcp {
    /// Make a share link so a person without a key can see one secret's
    /// value: it works maxUses times (default 1) for expirationHours (default
    /// 24), optionally behind a password and allowedIPs. Answers the url
    /// (shown once): give it to the person, and never open it yourself,
    /// since opening counts a use and shows you the value. A gated secret
    /// answers APPROVAL_REQUIRED first, as get_secret does.
    #[tool(annotations(read_only_hint = false, destructive_hint = false, idempotent_hint = false, open_world_hint = false))]
    async fn create_share(&self, Parameters(req): Parameters<CreateShare>, caller: Caller) -> Result<Json<ShareCreated>, Error> {
        Ok(Json(self.vault.create_share(&self.principal(caller).await?, req).await?))
    }

    /// List share links with their status and use counters (never a token
    /// or value): active ones unless status says expired, exhausted, revoked or all.
    #[tool(annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false))]
    async fn list_shares(&self, Parameters(q): Parameters<ListShares>, caller: Caller) -> Result<Json<ShareList>, Error> {
        Ok(Json(self.vault.list_shares(&self.principal(caller).await?, q).await?))
    }

    /// Revoke a share link at once (its value is erased); ALREADY_REVOKED if it was.
    #[tool(annotations(read_only_hint = false, destructive_hint = true, idempotent_hint = false, open_world_hint = false))]
    async fn revoke_share(&self, Parameters(p): Parameters<RevokeShareParams>, caller: Caller) -> Result<Json<ShareView>, Error> {
        let req = RevokeShare { reason: p.reason };
        Ok(Json(self.vault.revoke_share(&self.principal(caller).await?, &p.share_id, req).await?))
    }

    /// Give a live share link more time (expirationHours from now, 1-720)
    /// and/or a new total of uses (maxUses, above those taken). A revoked,
    /// expired or used-up link cannot be extended: its value is gone; make a new one.
    #[tool(annotations(read_only_hint = false, destructive_hint = false, idempotent_hint = false, open_world_hint = false))]
    async fn extend_share(&self, Parameters(p): Parameters<ExtendShareParams>, caller: Caller) -> Result<Json<ShareView>, Error> {
        let change = ExtendShare { expiration_hours: p.expiration_hours, max_uses: p.max_uses };
        Ok(Json(self.vault.extend_share(&self.principal(caller).await?, &p.share_id, change).await?))
    }
}
