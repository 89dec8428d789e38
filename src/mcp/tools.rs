//! The tools. Each resolves the caller, calls one vault function and returns
//! its typed view as structured output.

use rmcp::handler::server::tool::{IntoCallToolResult, ToolCallContext};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CacheScope, CallToolRequestParams, CallToolResponse, CallToolResult, ListToolsResult, PaginatedRequestParams, ResultType,
    ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, Json, RoleServer, ServerHandler, tool, tool_handler, tool_router};

use super::params::*;
use super::{Caller, INSTRUCTIONS, LatchkeyMcp, anonymous};
use crate::error::Error;
use crate::vault::approvals::ApprovalView;
use crate::vault::views::*;

#[tool_router(vis = "pub(super)")]
impl LatchkeyMcp {
    /// Create a new tenant (vault) and get its first admin API key. Needs no key:
    /// this is how an agent without credentials starts. The returned apiKey is
    /// shown once; send it as `Authorization: Bearer <apiKey>` from then on.
    #[tool(annotations(read_only_hint = false, destructive_hint = false, idempotent_hint = false, open_world_hint = false))]
    async fn signup(&self, Parameters(req): Parameters<SignupRequest>, caller: Caller) -> Result<Json<SignupResponse>, Error> {
        Ok(Json(self.vault.signup(req, caller.origin()).await?))
    }

    /// Who am I: the tenant, plan, limits and usage, and what the current key may do.
    #[tool(annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false))]
    async fn whoami(&self, caller: Caller) -> Result<Json<WhoAmI>, Error> {
        Ok(Json(self.vault.whoami(&self.principal(caller).await?).await?))
    }

    /// List secrets: names, types, tags, versions; never values. Filter by
    /// secretType, environment, projectId, tag or search (substring of name,
    /// description or tag); page with limit and the returned nextCursor.
    #[tool(annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false))]
    async fn list_secrets(&self, Parameters(q): Parameters<ListSecrets>, caller: Caller) -> Result<Json<SecretPage>, Error> {
        Ok(Json(self.vault.list_secrets(&self.principal(caller).await?, q).await?))
    }

    /// Read one secret's value, by id or by name (+ projectId / environment).
    /// Use it only when you need the value; the read is audited. Do not repeat
    /// the value to the user or write it into files or logs. A secret whose
    /// access tier needs a human's approval answers `approvalRequired: true`
    /// with approvalId and approvalUrl instead (no value): show the URL to your
    /// user, call wait_for_approval, then get_secret again.
    #[tool(
        annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false),
        output_schema = rmcp::handler::server::common::schema_for_output::<SecretRead>()
    )]
    async fn get_secret(&self, Parameters(p): Parameters<GetSecretParams>, caller: Caller) -> Result<CallToolResult, Error> {
        let read = match self.vault.read_secret(&self.principal(caller).await?, p.target.as_ref()?, &p.read).await {
            Ok(value) => SecretRead { secret: Some(value), approval_required: None, approval_id: None, approval_url: None },
            Err(Error::ApprovalRequired { approval_id, approval_url }) => {
                let text = format!(
                    "Approval required: this secret needs a human's approval. Show this link to your user and ask them to \
                     approve: {approval_url} (then call wait_for_approval with approvalId {approval_id}, and get_secret again)."
                );
                let read = SecretRead {
                    secret: None,
                    approval_required: Some(true),
                    approval_id: Some(approval_id),
                    approval_url: Some(approval_url),
                };
                let mut result = CallToolResult::structured(serde_json::to_value(read).map_err(Error::internal)?);
                result.content = vec![rmcp::model::ContentBlock::text(text)];
                return Ok(result);
            }
            Err(e) => return Err(e),
        };
        Ok(CallToolResult::structured(serde_json::to_value(read).map_err(Error::internal)?))
    }

    /// Ask for a scoped token, narrower than your own key, to hand to a
    /// sub-agent or a script (shown once). When a scope reaches a secret whose
    /// tier needs a human's approval, answers `requiresApproval: true` with
    /// approvalId and approvalUrl instead: show the URL to your user, call
    /// wait_for_approval, then request_token with that approvalId alone to
    /// fetch the token (once).
    #[tool(
        annotations(read_only_hint = false, destructive_hint = false, idempotent_hint = false, open_world_hint = false),
        output_schema = rmcp::handler::server::common::schema_for_output::<crate::vault::tokens::TokenIssued>()
    )]
    async fn request_token(&self, Parameters(p): Parameters<RequestTokenParams>, caller: Caller) -> Result<CallToolResult, Error> {
        let principal = self.principal(caller).await?;
        let issued = match p.into_request()? {
            Ok(approval_id) => self.vault.redeem_token_approval(&principal, &approval_id).await?,
            Err(request) => self.vault.create_token(&principal, request).await?,
        };
        let mut result = CallToolResult::structured(serde_json::to_value(&issued).map_err(Error::internal)?);
        if let (true, Some(id), Some(url)) = (issued.requires_approval, &issued.approval_id, &issued.approval_url) {
            result.content = vec![rmcp::model::ContentBlock::text(format!(
                "Approval required: these scopes reach secrets that need a human's approval. Show this link to your user and \
                 ask them to approve: {url} (then call wait_for_approval with approvalId {id}, and request_token with that \
                 approvalId alone to fetch the token)."
            ))];
        }
        Ok(result)
    }

    /// The state of an approval request get_secret opened: pending,
    /// approved (with grantUsesLeft and grantExpiresAt), denied (denyReason),
    /// expired or used. Approving is for the user, on the approval page; no
    /// tool can approve, deny, lower a tier or change the policy.
    #[tool(annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false))]
    async fn approval_status(&self, Parameters(p): Parameters<ApprovalParams>, caller: Caller) -> Result<Json<ApprovalView>, Error> {
        Ok(Json(self.vault.get_approval(&self.principal(caller).await?, &p.approval_id).await?))
    }

    /// Wait until the user decides an approval request (at most
    /// timeoutSeconds, default 120, up to 300), then answer its state; still
    /// `pending` when the time ran out (call it again). Sends progress
    /// notifications while waiting if the call has a progressToken, and asks
    /// a client that supports URL elicitation to open the approval page.
    #[tool(annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false))]
    async fn wait_for_approval(
        &self,
        Parameters(p): Parameters<WaitParams>,
        ctx: RequestContext<RoleServer>,
        caller: Caller,
    ) -> Result<Json<ApprovalView>, Error> {
        let timeout = p.timeout_seconds.unwrap_or(120);
        if !(1..=300).contains(&timeout) {
            return Err(Error::InvalidRequest("timeoutSeconds must be between 1 and 300".into()));
        }
        let principal = self.principal(caller).await?;
        Ok(Json(super::waiting::wait(&self.vault, &principal, &p.approval_id, std::time::Duration::from_secs(timeout), &ctx).await?))
    }

    /// Store a secret: creates it, or adds a new version when a secret with this
    /// name exists in the same project and environment. Pass expectedVersion to
    /// write only if nobody changed it since you read it (0 = must be new).
    /// accessTier may be raised, never lowered (OWNER_REQUIRED). Returns
    /// metadata, never the value.
    #[tool(annotations(read_only_hint = false, destructive_hint = false, idempotent_hint = false, open_world_hint = false))]
    async fn set_secret(&self, Parameters(req): Parameters<SetSecret>, caller: Caller) -> Result<Json<SetSecretResult>, Error> {
        Ok(Json(self.vault.set_secret(&self.principal(caller).await?, req).await?))
    }

    /// Change a secret's description, tags or type without touching its value
    /// (no new version). It may raise accessTier (to sensitive or critical);
    /// lowering a tier is for a human owner on the approval page and always
    /// fails here with OWNER_REQUIRED: no MCP caller is an owner.
    #[tool(annotations(read_only_hint = false, destructive_hint = false, idempotent_hint = true, open_world_hint = false))]
    async fn update_secret_metadata(
        &self,
        Parameters(mut p): Parameters<UpdateMetadataParams>,
        caller: Caller,
    ) -> Result<Json<SecretMeta>, Error> {
        let change = p.change()?;
        Ok(Json(self.vault.update_secret(&self.principal(caller).await?, p.target.as_ref()?, change).await?))
    }

    /// Delete a secret: it is gone for reads and lists at once, but
    /// restore_secret brings it back (with its versions) within the server's
    /// retention, 30 days by default; meanwhile its name stays taken.
    #[tool(annotations(read_only_hint = false, destructive_hint = true, idempotent_hint = false, open_world_hint = false))]
    async fn delete_secret(&self, Parameters(t): Parameters<SecretTarget>, caller: Caller) -> Result<Json<Deleted>, Error> {
        Ok(Json(self.vault.delete_secret(&self.principal(caller).await?, t.as_ref()?).await?))
    }

    /// A secret's version history, newest first: numbers, times and writers;
    /// never values. Page with limit and the returned nextCursor.
    #[tool(annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false))]
    async fn list_secret_versions(&self, Parameters(p): Parameters<VersionsParams>, caller: Caller) -> Result<Json<VersionList>, Error> {
        Ok(Json(self.vault.secret_versions(&self.principal(caller).await?, p.target.as_ref()?, p.page).await?))
    }

    /// List projects with how many secrets each holds.
    #[tool(annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false))]
    async fn list_projects(&self, caller: Caller) -> Result<Json<ProjectList>, Error> {
        Ok(Json(self.vault.list_projects(&self.principal(caller).await?).await?))
    }

    /// One project: name, description, tags and how many secrets it holds.
    #[tool(annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false))]
    async fn get_project(&self, Parameters(p): Parameters<IdParams>, caller: Caller) -> Result<Json<ProjectView>, Error> {
        Ok(Json(self.vault.get_project(&self.principal(caller).await?, &p.id).await?))
    }

    /// Create a project to group secrets (names are unique per tenant).
    #[tool(annotations(read_only_hint = false, destructive_hint = false, idempotent_hint = false, open_world_hint = false))]
    async fn create_project(&self, Parameters(req): Parameters<CreateProject>, caller: Caller) -> Result<Json<ProjectView>, Error> {
        Ok(Json(self.vault.create_project(&self.principal(caller).await?, req).await?))
    }

    /// Rename a project or change its description or tags; absent fields stay
    /// as they are. Its secrets and their ids do not change.
    #[tool(annotations(read_only_hint = false, destructive_hint = false, idempotent_hint = true, open_world_hint = false))]
    async fn update_project(&self, Parameters(p): Parameters<UpdateProjectParams>, caller: Caller) -> Result<Json<ProjectView>, Error> {
        Ok(Json(self.vault.update_project(&self.principal(caller).await?, &p.id, p.change).await?))
    }

    /// Delete an empty project (fails with CONFLICT while it holds secrets).
    #[tool(annotations(read_only_hint = false, destructive_hint = true, idempotent_hint = false, open_world_hint = false))]
    async fn delete_project(&self, Parameters(p): Parameters<IdParams>, caller: Caller) -> Result<Json<Deleted>, Error> {
        Ok(Json(self.vault.delete_project(&self.principal(caller).await?, &p.id).await?))
    }

    /// Issue an API key, e.g. a read-only key for a script or a key limited to
    /// one project. Never more permission or scope than your own key. The key
    /// is shown once.
    #[tool(annotations(read_only_hint = false, destructive_hint = false, idempotent_hint = false, open_world_hint = false))]
    async fn create_api_key(&self, Parameters(req): Parameters<CreateApiKey>, caller: Caller) -> Result<Json<IssuedApiKey>, Error> {
        Ok(Json(self.vault.create_api_key(&self.principal(caller).await?, req).await?))
    }

    /// List API keys: names, prefixes, permissions, scope; never the keys.
    #[tool(annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false))]
    async fn list_api_keys(&self, caller: Caller) -> Result<Json<ApiKeyList>, Error> {
        Ok(Json(self.vault.list_api_keys(&self.principal(caller).await?).await?))
    }

    /// Change an API key's name, permissions, project scope or expiry, e.g.
    /// narrow a key to read-only or to one project. Never beyond your own key's
    /// permission and scope. The key string stays the same; it takes effect at
    /// once.
    #[tool(annotations(read_only_hint = false, destructive_hint = true, idempotent_hint = true, open_world_hint = false))]
    async fn update_api_key(&self, Parameters(p): Parameters<UpdateApiKeyParams>, caller: Caller) -> Result<Json<ApiKeyView>, Error> {
        Ok(Json(self.vault.update_api_key(&self.principal(caller).await?, &p.id, p.change).await?))
    }

    /// Replace an API key with a new one (same name, permission and scope), e.g.
    /// after it leaked; the old key stops working at once. The new key is
    /// shown once.
    #[tool(annotations(read_only_hint = false, destructive_hint = true, idempotent_hint = false, open_world_hint = false))]
    async fn regenerate_api_key(&self, Parameters(p): Parameters<IdParams>, caller: Caller) -> Result<Json<IssuedApiKey>, Error> {
        Ok(Json(self.vault.regenerate_api_key(&self.principal(caller).await?, &p.id).await?))
    }

    /// Revoke an API key; it stops working at once.
    #[tool(annotations(read_only_hint = false, destructive_hint = true, idempotent_hint = false, open_world_hint = false))]
    async fn revoke_api_key(&self, Parameters(p): Parameters<IdParams>, caller: Caller) -> Result<Json<ApiKeyView>, Error> {
        Ok(Json(self.vault.revoke_api_key(&self.principal(caller).await?, &p.id).await?))
    }

    /// Query the audit trail (newest first): filter by action (e.g. secret.read),
    /// resourceType, startDate, endDate; page with limit and the returned nextCursor (offset up to 10,000).
    #[tool(annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false))]
    async fn query_audit(&self, Parameters(q): Parameters<AuditQuery>, caller: Caller) -> Result<Json<AuditPage>, Error> {
        Ok(Json(self.vault.query_audit(&self.principal(caller).await?, q).await?))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for LatchkeyMcp {
    fn get_info(&self) -> ServerConfig {
        // Logging is deprecated from 2026-07-28 on, but 2025 clients (Claude Code
        // among them) may still set a level; accepting it keeps them working.
        #[allow(deprecated)]
        let capabilities = ServerCapabilities::builder().enable_tools().enable_resources().enable_logging().build();
        ServerConfig::new(capabilities)
            .with_server_info(rmcp::model::Implementation::new("latchkey", env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS)
    }

    /// Routes the call; arguments that do not fit the tool's schema come back
    /// as INVALID_REQUEST in the same error shape as every other failure.
    async fn call_tool(&self, request: CallToolRequestParams, ctx: RequestContext<RoleServer>) -> Result<CallToolResponse, ErrorData> {
        if self.local.is_none() && super::run::LOCAL_ONLY.contains(&request.name.as_ref()) {
            return super::run::local_only(&request.name).into_call_tool_result();
        }
        let touched = self.touched(&ctx);
        let (tool, known) = (request.name.clone(), self.tool_router.has_route(&request.name));
        let response = self.tool_router.call(ToolCallContext::new(self, request, ctx)).await;
        crate::telemetry::mcp_call(&tool, known, crate::telemetry::outcome_of(&response));
        let response = response?;
        let response = match response {
            CallToolResponse::Complete(result) if result.is_error == Some(true) => {
                let text = result.content.first().and_then(|c| c.as_text()).map(|t| t.text.clone()).unwrap_or_default();
                match text.strip_prefix("failed to deserialize parameters:") {
                    Some(why) => Error::InvalidRequest(format!("invalid arguments:{why}")).into_call_tool_result()?,
                    None => CallToolResponse::Complete(result),
                }
            }
            other => other,
        };
        Ok(match response {
            CallToolResponse::Complete(result) => CallToolResponse::Complete(super::guarded(touched.as_ref(), result)),
            other => other,
        })
    }

    /// Accepts a log level. Latchkey sends no log notifications (its logs stay
    /// on the server, where values never appear), so there is nothing to filter.
    #[allow(deprecated)]
    async fn set_level(&self, _request: rmcp::model::SetLevelRequestParams, _ctx: RequestContext<RoleServer>) -> Result<(), ErrorData> {
        Ok(())
    }

    /// Anonymous HTTP callers see only the signup tool; HTTP callers do not
    /// see the local-only tools (`run.rs`).
    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let keyless = !self.has_caller(&ctx);
        let local = self.local.is_some();
        let tools = self
            .tool_router
            .list_all()
            .into_iter()
            .filter(|t| !keyless || anonymous::tool(&t.name))
            .filter(|t| local || !super::run::LOCAL_ONLY.contains(&t.name.as_ref()))
            .collect();
        Ok(ListToolsResult {
            result_type: Some(ResultType::COMPLETE),
            tools,
            meta: None,
            next_cursor: None,
            ttl_ms: None,
            cache_scope: Some(CacheScope::Private)
                .filter(|_| ctx.protocol_version().is_some_and(|v| v >= rmcp::model::ProtocolVersion::V_2026_07_28)),
        })
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ListResourcesResult, ErrorData> {
        Ok(self.resource_list(&ctx))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ListResourceTemplatesResult, ErrorData> {
        Ok(self.resource_templates(&ctx))
    }

    async fn read_resource(
        &self,
        request: rmcp::model::ReadResourceRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ReadResourceResponse, ErrorData> {
        let touched = self.touched(&ctx);
        Ok(match self.read(&request.uri, &ctx).await? {
            rmcp::model::ReadResourceResponse::Complete(read) => super::guarded(touched.as_ref(), read).into(),
            other => other,
        })
    }
}
