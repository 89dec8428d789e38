//! Claim-token tools: hand a credential to another agent's tenant without
//! pasting it anywhere (see `vault::claims`).

use rmcp::handler::server::wrapper::Parameters;
use rmcp::{Json, tool, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;

use super::{Caller, LatchkeyMcp};
use crate::error::Error;
use crate::vault::claims::{ClaimIssued, ClaimList, ClaimRedeemed, ClaimView, CreateClaim, ListClaims, RedeemClaim};

/// `redeem_claim_token`: the token you were given, and where the secret goes.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedeemClaimParams {
    /// The `ctk_…` token another agent passed you.
    pub token: String,
    /// The new secret's name in your vault (default: the name the claim carries).
    pub name: Option<String>,
    /// A project of yours to file it under.
    pub project_id: Option<String>,
    /// An environment such as `production`.
    pub environment: Option<String>,
}

/// `revoke_claim_token`: which claim.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimIdParams {
    /// The claim's id (from create_claim_token or list_claim_tokens), not the token.
    pub id: String,
}

#[tool_router(router = claim_tools, vis = "pub(super)")]
impl LatchkeyMcp {
    /// Hand a credential to another agent's tenant without pasting it into a
    /// chat, prompt or file: makes a one-time claim token (`ctk_…`, shown
    /// once) that only targetTenantId can redeem, within expiresInMinutes
    /// (default 5). Give secretId to hand over one of your stored secrets
    /// (the value never enters your context; the read is audited and a gated
    /// secret needs approval first), or secretValue. Pass the token to the
    /// other agent out of band (the channel you were told to use), never the
    /// value. contractId is your reference for the hand-off, recorded in both
    /// tenants' audit trails.
    #[tool(annotations(read_only_hint = false, destructive_hint = false, idempotent_hint = false, open_world_hint = false))]
    async fn create_claim_token(&self, Parameters(req): Parameters<CreateClaim>, caller: Caller) -> Result<Json<ClaimIssued>, Error> {
        Ok(Json(self.vault.create_claim(&self.principal(caller).await?, req).await?))
    }

    /// Redeem a claim token another agent passed you: stores the credential
    /// as a new secret in your vault (answers its secretId, never the value;
    /// read it with get_secret when you need it). Works once; a name already
    /// taken answers ALREADY_EXISTS and the token stays valid, so retry with
    /// another name. CLAIM_EXPIRED, CLAIM_REVOKED or CLAIM_ALREADY_REDEEMED
    /// mean ask the sender for a new token.
    #[tool(annotations(read_only_hint = false, destructive_hint = false, idempotent_hint = false, open_world_hint = false))]
    async fn redeem_claim_token(&self, Parameters(p): Parameters<RedeemClaimParams>, caller: Caller) -> Result<Json<ClaimRedeemed>, Error> {
        let req = RedeemClaim { name: p.name, project_id: p.project_id, environment: p.environment };
        Ok(Json(self.vault.redeem_claim(&self.principal(caller).await?, &p.token, req).await?))
    }

    /// Claim tokens your tenant made or is the target of, newest first, with
    /// their status (pending, claimed, expired, revoked) and contractId;
    /// never a value or a token. Filter with status.
    #[tool(annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false))]
    async fn list_claim_tokens(&self, Parameters(q): Parameters<ListClaims>, caller: Caller) -> Result<Json<ClaimList>, Error> {
        Ok(Json(self.vault.list_claims(&self.principal(caller).await?, q).await?))
    }

    /// Revoke a claim token you made that nobody redeemed yet (by its id):
    /// the pending value is erased and the token stops working. Use it when
    /// the token may have leaked or the hand-off is off.
    #[tool(annotations(read_only_hint = false, destructive_hint = true, idempotent_hint = true, open_world_hint = false))]
    async fn revoke_claim_token(&self, Parameters(p): Parameters<ClaimIdParams>, caller: Caller) -> Result<Json<ClaimView>, Error> {
        Ok(Json(self.vault.revoke_claim(&self.principal(caller).await?, &p.id).await?))
    }
}
