//! Secret-request tools: ask a human for a value you must not see, and poll
//! until it is stored (see `vault::requests`).
//!
//! When the client declared URL-mode elicitation in `initialize` (MCP
//! 2025-11-25, `capabilities.elicitation.url`), `request_secret` also asks
//! it, by `elicitation/create` in URL mode, to offer its user the request's
//! page: the value then goes from the person to the vault in a browser and
//! never through the chat, as the MCP elicitation guidance asks for
//! sensitive input. The tool waits a moment for the client's answer and
//! reports it; it never waits for the person (the elicitation stays open in
//! the background, bounded, and `request_status` tells when the value
//! arrived). Over HTTP `/mcp` serves each request statelessly, with no
//! session to send a request back on, so only a `latchkey mcp` (stdio)
//! client is asked.

use std::time::Duration;

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{ElicitRequestParams, ElicitationAction};
use rmcp::service::RequestContext;
use rmcp::{Json, RoleServer, tool, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Caller, LatchkeyMcp};
use crate::error::Error;
use crate::vault::requests::{CreateRequest, RequestView};

/// How long the tool waits for the client's answer to the elicitation
/// before answering anyway (a client that shows a prompt answers at once;
/// one that waits for the person answers later, in the background).
const ELICIT_WAIT: Duration = Duration::from_secs(2);
/// How long the elicitation stays open in the background.
const ELICIT_OPEN: Duration = Duration::from_secs(600);

/// `request_status`: which request.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestIdParams {
    /// The request's id (from request_secret).
    pub id: String,
}

/// What `request_secret` answers: the request, and whether the client was
/// asked to open the page.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestMade {
    #[serde(flatten)]
    pub request: RequestView,
    /// `accepted`, `declined` or `cancelled` (the client's answer to the
    /// URL elicitation), `sent` (no answer yet), or `unsupported` (the client
    /// did not declare URL-mode elicitation: show requestUrl to your user yourself).
    pub elicitation: String,
}

/// Asks the client to open `url`, when it said it can; the answer, as a word.
async fn elicit(ctx: &RequestContext<RoleServer>, request: &RequestView) -> String {
    let url_mode = ctx.peer.peer_info().and_then(|info| info.capabilities.elicitation.as_ref().map(|e| e.url.is_some())).unwrap_or(false);
    if !url_mode {
        return "unsupported".into();
    }
    let params = ElicitRequestParams::UrlElicitationParams {
        meta: None,
        message: format!(
            "An agent asks for the secret '{}': {}. Open this page, sign in as an owner and paste the value there; it goes \
             straight into Latchkey and the agent never sees it.",
            request.name, request.reason
        ),
        url: request.request_url.clone(),
        elicitation_id: request.id.clone(),
    };
    let peer = ctx.peer.clone();
    let (tx, rx) = tokio::sync::oneshot::channel();
    // In a task of its own: the tool answers after ELICIT_WAIT whatever the
    // client does; the elicitation itself stays open up to ELICIT_OPEN.
    tokio::spawn(async move {
        let answer = peer.create_elicitation_with_timeout(params, Some(ELICIT_OPEN)).await;
        let _ = tx.send(answer);
    });
    match tokio::time::timeout(ELICIT_WAIT, rx).await {
        Ok(Ok(Ok(result))) => match result.action {
            ElicitationAction::Accept => "accepted",
            ElicitationAction::Decline => "declined",
            _ => "cancelled",
        }
        .into(),
        Ok(Ok(Err(e))) => {
            tracing::debug!(error = %e, "URL elicitation failed");
            "unsupported".into()
        }
        _ => "sent".into(),
    }
}

#[tool_router(router = request_tools, vis = "pub(super)")]
impl LatchkeyMcp {
    /// Ask a human for a secret you need but must never see (an API key, a
    /// password): creates a request whose page (requestUrl) an owner of the
    /// tenant opens to paste the value, which goes straight into the vault
    /// as the secret `name` (exposure `use_only` unless you ask otherwise:
    /// you use it through run, proxy or verify tools, never read it). Show
    /// requestUrl to your user (a client that supports URL elicitation is
    /// asked to open it: see `elicitation`), never ask them to paste the
    /// value into the chat. Then poll request_status: once `fulfilled` it
    /// carries secretId.
    #[tool(annotations(read_only_hint = false, destructive_hint = false, idempotent_hint = false, open_world_hint = false))]
    async fn request_secret(
        &self,
        Parameters(req): Parameters<CreateRequest>,
        caller: Caller,
        ctx: RequestContext<RoleServer>,
    ) -> Result<Json<RequestMade>, Error> {
        let request = self.vault.create_request(&self.principal(caller).await?, req).await?;
        let elicitation = elicit(&ctx, &request).await;
        Ok(Json(RequestMade { request, elicitation }))
    }

    /// A secret request's status: `pending`, `fulfilled` (with secretId: the
    /// secret now holds the value; use it by that id), `cancelled` or
    /// `expired`. Never the value.
    #[tool(annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false))]
    async fn request_status(&self, Parameters(p): Parameters<RequestIdParams>, caller: Caller) -> Result<Json<RequestView>, Error> {
        Ok(Json(self.vault.request_status(&self.principal(caller).await?, &p.id).await?))
    }
}
