//! `wait_for_approval`: polls the store until the user decides, telling the
//! client it is still waiting (progress notifications, when the call asked
//! for them) and, on a client that supports URL elicitation, asking it to
//! open the approval page.

use std::time::Duration;

use rmcp::RoleServer;
use rmcp::model::{ElicitRequestParams, ProgressNotificationParam, Request, ServerRequest};
use rmcp::service::RequestContext;

use crate::error::Result;
use crate::vault::approvals::ApprovalView;
use crate::vault::{Principal, Vault};

/// How often the store is asked while waiting.
const POLL: Duration = Duration::from_millis(500);
/// How long an elicitation may stay unanswered; the wait goes on regardless.
const ELICIT_TIME: Duration = Duration::from_secs(300);

pub(super) async fn wait(
    vault: &Vault,
    p: &Principal,
    id: &str,
    timeout: Duration,
    ctx: &RequestContext<RoleServer>,
) -> Result<ApprovalView> {
    let start = tokio::time::Instant::now();
    let mut view = vault.poll_approval(p, id).await?;
    if view.status == "pending" {
        elicit(ctx, &view);
    }
    let progress = ctx.meta.get_progress_token();
    let mut tick = 0u32;
    while view.status == "pending" && start.elapsed() < timeout && !ctx.ct.is_cancelled() {
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = ctx.ct.cancelled() => break,
        }
        tick += 1;
        view = vault.poll_approval(p, id).await?;
        if let Some(token) = progress.clone()
            && tick.is_multiple_of(2)
        {
            let note = ProgressNotificationParam::new(token, start.elapsed().as_secs_f64())
                .with_total(timeout.as_secs_f64())
                .with_message(format!("waiting for the user to approve at {}", view.approval_url));
            // A client that went away is no reason to stop waiting.
            let _ = ctx.peer.notify_progress(note).await;
        }
    }
    // One audited read records what the wait found.
    vault.get_approval(p, id).await
}

/// Asks the client to show the approval page, if it said it can open URLs
/// for its user (URL-mode elicitation). Sent and left: the answer only says
/// whether the user agreed to open it, and the wait polls the store anyway.
fn elicit(ctx: &RequestContext<RoleServer>, view: &ApprovalView) {
    let url_mode = ctx.peer.peer_info().is_some_and(|info| info.capabilities.elicitation.as_ref().is_some_and(|e| e.url.is_some()));
    if !url_mode {
        return;
    }
    let params = ElicitRequestParams::UrlElicitationParams {
        meta: None,
        message: format!(
            "An agent asks to read the secret {} and needs your approval. Open this page to approve or deny.",
            view.secret_path.as_deref().unwrap_or("(a token request)")
        ),
        url: view.approval_url.clone(),
        elicitation_id: view.id.clone(),
    };
    let peer = ctx.peer.clone();
    tokio::spawn(async move {
        let _ = tokio::time::timeout(ELICIT_TIME, peer.send_request(ServerRequest::ElicitRequest(Request::new(params)))).await;
    });
}
