//! The route table: each route is registered with axum and documented for
//! OpenAPI in the same statement, so the two cannot drift apart.

use axum::Router;
use axum::routing::{MethodRouter, delete, get, post, put};

use super::openapi::Op;
use super::{AppState, docs, handlers as h};
use crate::vault::approvals::{ApprovalView, ApproveRequest, DenyRequest, ListApprovals, PolicyView, UpdatePolicy};
use crate::vault::plans::PlanLimits;
use crate::vault::tokens::{TokenIssued, TokenList, TokenRequest};
use crate::vault::views::*;

/// See `vault::audit` for why, and its constants for the numbers.
const AUDIT_BOUNDS: &str = "Each query's work is bounded, however long the trail. `total` is exact up to 10000; \
    past that it is 10000 and `totalIsLowerBound` is true. `offset` goes up to 10000; to page deeper, pass \
    `nextCursor` as `cursor` until `hasMore` is false (entries written meanwhile neither shift nor repeat pages), \
    or narrow `startDate`/`endDate`. With `action` or `resourceType`, a page examines the 100000 next \
    entries in the date range (and `total` counts within the newest 100000), so it may hold fewer than `limit` \
    entries, even none, while `hasMore` is true.";
const AUDIT_EXPORT: &str = "`format=json` (the default) answers `{logs, count}`; `format=csv` answers a header row \
    (`id,timestamp,action,resourceType,resourceId,actor,front,outcome,ipAddress,userAgent,detail`) and one row per \
    entry, with a `'` before any cell a spreadsheet would read as a formula. Filters as for `/api/v1/audit`; no \
    limit: the answer is streamed as the trail is read, a page at a time. A body that ends early (no closing \
    `]}` in JSON, a broken chunked transfer) is an export that failed part-way, never a complete one.";
const AUDIT_INVALID: &str = "INVALID_REQUEST: a bad field or date, offset above 10000 (narrow startDate/endDate, or page \
    with cursor), a cursor this server did not issue, both cursor and offset, or a parameter it does not take";
const TOKENS: &str = "Scopes are `secrets:{read|write|list|delete|*}:{glob}`; the glob is matched against a \
    secret's path, `{environment}/{name}` (the bare name when it has no environment), `*` matching any run of \
    characters (`/` included) and `?` one: `secrets:read:production/gemini/*`. The token gets at most the asking \
    key's permission, its project scope, and its expiry, else 403 SCOPE_DENIED naming what is too wide; a token \
    cannot ask for one. Send the token like an API key (REST and MCP over HTTP). Refused tokens answer 401 \
    TOKEN_EXPIRED, TOKEN_REVOKED, TOKEN_EXHAUSTED (maxUses used: each authenticated request is one use) or \
    IP_NOT_ALLOWED. A token reaches only secrets (and whoami/plan and project reads): keys, tokens, audit and \
    project changes answer 403 SCOPE_DENIED.";
const LIST_SECRETS: &str = "Expired secrets are left out unless `includeExpired=true`; deleted ones are gone, except with \
    `deleted=true`, which lists only those still restorable, with deletedAt and restorableUntil. `prefix` keeps \
    secrets whose path (`{environment}/{name}`, or the bare name) starts with it, exactly.";
const DELETE_SECRET: &str = "Without parameters, a soft delete: the secret is gone for every read, use and listing, but \
    `POST /api/v1/secrets/{id}/restore` brings it back until `restorableUntil` (the operator's retention, 30 days by \
    default), and its name stays taken meanwhile (409 SECRET_EXISTS with deletedSecretId). `permanent=true` erases it \
    now with every version (admin keys only; works on a deleted one too). `version=N` deletes one version that is not \
    the current one (400 for the current one, 404 for an unknown one).";
// Every route refuses query parameters it does not take (see `handlers`).
pub(super) const NO_PARAMS: &str = "INVALID_REQUEST: a query parameter (this route takes none)";
pub(super) const BAD_BODY: &str = "INVALID_REQUEST: malformed body, bad field or enum value, or a query parameter (this route takes none)";
pub(super) const BAD_QUERY: &str = "INVALID_REQUEST: a bad value, or a query parameter this route does not take (named in the message)";

const OWNER_ONLY: &str = "An owner's action: an API key or token of any permission gets 403 OWNER_REQUIRED (and, once \
    the tenant's owners have passkeys, a critical decision or a policy change without a fresh passkey gets 403 \
    PASSKEY_REQUIRED). A request already decided or expired answers 409 CONFLICT naming its state.";

pub(super) const GATED_READ: &str = "A secret whose accessTier needs approval (critical always; sensitive when the policy says so) \
    answers 403 APPROVAL_REQUIRED with approvalId and approvalUrl unless the calling key holds a live grant: show \
    approvalUrl to the user, who approves on that page; a second read meanwhile reuses the same pending request, and \
    each read under a grant uses one of its uses.";

/// Routes and their documentation, built up together. A feature with a
/// module of its own under `rest/` adds its routes with a `routes(Table) -> Table`.
pub(super) struct Table {
    router: Router<AppState>,
    ops: Vec<Op>,
}

impl Table {
    pub(super) fn add(mut self, handler: MethodRouter<AppState>, op: Op) -> Self {
        self.router = self.router.route(op.path, handler);
        self.ops.push(op);
        self
    }
}

/// Every HTTP route Latchkey serves (MCP is mounted beside these), with its documentation.
pub fn routes() -> (Router<AppState>, Vec<Op>) {
    let t = Table { router: Router::new(), ops: Vec::new() };
    let t = t
        .add(
            get(h::healthz),
            Op::new("get", "/healthz", "meta", "Liveness: 200 once the server is ready").public().returns_text("text/plain"),
        )
        .add(get(docs::llms_txt), Op::new("get", "/llms.txt", "meta", "Agent-facing API summary").public().returns_text("text/plain"))
        .add(
            get(docs::quickstart),
            Op::new("get", "/api/quickstart", "meta", "Machine-readable getting-started steps")
                .public()
                .returns::<crate::docs::QuickstartDoc>(200),
        )
        .add(get(docs::openapi), Op::new("get", "/api/openapi.json", "meta", "This document").public().returns_text("application/json"))
        .add(
            get(h::signup_limits),
            Op::new("get", "/api/signup/limits", "tenants", "Public plan table")
                .query::<NoParams>()
                .public()
                .returns::<Vec<PlanLimits>>(200)
                .invalid_request(NO_PARAMS),
        )
        .add(
            post(h::signup),
            Op::new("post", "/api/signup", "tenants", "Self-signup: create a tenant and its first admin API key")
                .query::<NoParams>()
                .public()
                .body::<SignupRequest>()
                .returns::<SignupResponse>(201)
                .invalid_request(BAD_BODY),
        )
        .add(
            get(h::plan),
            Op::new("get", "/api/v1/plan", "tenants", "Current plan, usage, limits and this key's permissions")
                .query::<NoParams>()
                .returns::<WhoAmI>(200)
                .invalid_request(NO_PARAMS),
        )
        .add(
            get(h::plan),
            Op::new("get", "/api/v1/plan/usage", "tenants", "Usage breakdown (same as /api/v1/plan)")
                .query::<NoParams>()
                .returns::<WhoAmI>(200)
                .invalid_request(NO_PARAMS),
        )
        .add(
            post(h::create_secret),
            Op::new("post", "/api/v1/secrets", "secrets", "Create a secret (returns its id, never the value)")
                .query::<NoParams>()
                .body::<CreateSecret>()
                .returns::<SecretMeta>(201)
                .invalid_request(BAD_BODY),
        )
        .add(
            get(h::list_secrets),
            Op::new("get", "/api/v1/secrets", "secrets", "List secrets: metadata only, filters, cursor pagination")
                .describe(LIST_SECRETS)
                .query::<ListSecrets>()
                .returns::<SecretPage>(200)
                .invalid_request(BAD_QUERY),
        )
        .add(
            get(h::get_secret),
            Op::new("get", "/api/v1/secrets/{id}", "secrets", "Read a secret with its decrypted value (audited)")
                .describe(GATED_READ)
                .error(410, "SECRET_EXPIRED: the secret passed its expiresAt (the message says when)")
                .query::<ReadVersion>()
                .returns::<SecretValue>(200)
                .invalid_request(BAD_QUERY),
        )
        .add(
            put(h::update_secret),
            Op::new("put", "/api/v1/secrets/{id}", "secrets", "Update, rename or move a secret; a new value creates a version")
                .query::<NoParams>()
                .body::<EditSecret>()
                .returns::<SecretMeta>(200)
                .invalid_request(BAD_BODY),
        )
        .add(
            delete(h::delete_secret),
            Op::new(
                "delete",
                "/api/v1/secrets/{id}",
                "secrets",
                "Delete a secret (restorable for the retention), purge it, or delete one old version",
            )
            .describe(DELETE_SECRET)
            .query::<crate::vault::lifecycle::DeleteParams>()
            .returns::<crate::vault::lifecycle::DeleteResult>(200)
            .invalid_request("INVALID_REQUEST: both permanent and version, version the current one, or a parameter it does not take"),
        )
        .add(
            get(h::secret_versions),
            Op::new("get", "/api/v1/secrets/{id}/versions", "secrets", "Version history, newest first, cursor pagination (no values)")
                .query::<VersionPage>()
                .returns::<VersionList>(200)
                .invalid_request(BAD_QUERY),
        )
        .add(
            post(h::create_project),
            Op::new("post", "/api/v1/projects", "projects", "Create a project")
                .query::<NoParams>()
                .body::<CreateProject>()
                .returns::<ProjectView>(201)
                .invalid_request(BAD_BODY),
        )
        .add(
            get(h::list_projects),
            Op::new("get", "/api/v1/projects", "projects", "List projects with secret counts")
                .query::<NoParams>()
                .returns::<ProjectList>(200)
                .invalid_request(NO_PARAMS),
        )
        .add(
            get(h::get_project),
            Op::new("get", "/api/v1/projects/{id}", "projects", "Project details")
                .query::<NoParams>()
                .returns::<ProjectView>(200)
                .invalid_request(NO_PARAMS),
        )
        .add(
            put(h::update_project),
            Op::new("put", "/api/v1/projects/{id}", "projects", "Update a project")
                .query::<NoParams>()
                .body::<UpdateProject>()
                .returns::<ProjectView>(200)
                .invalid_request(BAD_BODY),
        )
        .add(
            delete(h::delete_project),
            Op::new("delete", "/api/v1/projects/{id}", "projects", "Delete an empty project (409 while secrets remain)")
                .query::<NoParams>()
                .returns::<Deleted>(200)
                .invalid_request(NO_PARAMS),
        )
        .add(
            post(h::create_api_key),
            Op::new("post", "/api/v1/api-keys", "api-keys", "Issue an API key (shown once)")
                .query::<NoParams>()
                .body::<CreateApiKey>()
                .returns::<IssuedApiKey>(201)
                .invalid_request(BAD_BODY),
        )
        .add(
            get(h::list_api_keys),
            Op::new("get", "/api/v1/api-keys", "api-keys", "List API keys (prefix only, never the key)")
                .query::<NoParams>()
                .returns::<ApiKeyList>(200)
                .invalid_request(NO_PARAMS),
        )
        .add(
            put(h::update_api_key),
            Op::new("put", "/api/v1/api-keys/{id}", "api-keys", "Change a key's name, permissions, scope or expiry")
                .query::<NoParams>()
                .body::<UpdateApiKey>()
                .returns::<ApiKeyView>(200)
                .invalid_request(BAD_BODY),
        )
        .add(
            delete(h::revoke_api_key),
            Op::new("delete", "/api/v1/api-keys/{id}", "api-keys", "Revoke a key")
                .query::<NoParams>()
                .returns::<ApiKeyView>(200)
                .invalid_request(NO_PARAMS),
        )
        .add(
            post(h::regenerate_api_key),
            Op::new("post", "/api/v1/api-keys/{id}/regenerate", "api-keys", "New key material; the old key stops working")
                .query::<NoParams>()
                .returns::<IssuedApiKey>(200)
                .invalid_request(NO_PARAMS),
        )
        .add(
            post(h::create_token),
            Op::new(
                "post",
                "/api/v1/tokens",
                "tokens",
                "Mint a scoped token (shown once), never wider than the asking key; 202 {token: null, requiresApproval: true, \
                 approvalId, approvalUrl} when a scope reaches a secret whose tier needs an owner's approval",
            )
            .describe(TOKENS)
            .query::<NoParams>()
            .body::<TokenRequest>()
            .returns::<TokenIssued>(201)
            .invalid_request("INVALID_REQUEST: malformed body, a bad scope, ttl, maxUses or ipAllowlist entry, or a query parameter"),
        )
        .add(
            get(h::list_tokens),
            Op::new("get", "/api/v1/tokens", "tokens", "List tokens: an admin key sees the tenant's, any other key those it minted")
                .query::<NoParams>()
                .returns::<TokenList>(200)
                .invalid_request(NO_PARAMS),
        )
        .add(
            post(h::revoke_token),
            Op::new("post", "/api/v1/tokens/{id}/revoke", "tokens", "Revoke a token at once (204; 409 ALREADY_REVOKED)")
                .query::<NoParams>()
                .returns_nothing(204)
                .invalid_request(NO_PARAMS),
        )
        .add(
            get(h::audit),
            Op::new("get", "/api/v1/audit", "audit", "Query the audit trail (newest first)")
                .describe(AUDIT_BOUNDS)
                .query::<AuditQuery>()
                .returns::<AuditPage>(200)
                .invalid_request(AUDIT_INVALID),
        )
        .add(
            get(h::audit),
            Op::new("get", "/api/v1/audit/logs", "audit", "Same as /api/v1/audit (SDK path)")
                .describe(AUDIT_BOUNDS)
                .query::<AuditQuery>()
                .returns::<AuditPage>(200)
                .invalid_request(AUDIT_INVALID),
        )
        .add(
            get(h::export_audit),
            Op::new("get", "/api/v1/audit/export", "audit", "Export the audit trail as JSON or CSV (every matching entry, newest first)")
                .describe(AUDIT_EXPORT)
                .query::<AuditExportQuery>()
                .returns::<AuditExport>(200)
                .returns_text("text/csv")
                .invalid_request("INVALID_REQUEST: a bad field, date or format, or a parameter it does not take"),
        )
        .add(
            get(h::get_policy),
            Op::new("get", "/api/v1/policy", "approvals", "Which access tiers need a human's approval to read")
                .query::<NoParams>()
                .returns::<PolicyView>(200)
                .invalid_request(NO_PARAMS),
        )
        .add(
            put(h::set_policy),
            Op::new("put", "/api/v1/policy", "approvals", "Change which tiers need approval (owners only; critical always does)")
                .describe(OWNER_ONLY)
                .query::<NoParams>()
                .body::<UpdatePolicy>()
                .returns::<PolicyView>(200)
                .invalid_request("INVALID_REQUEST: malformed body, turning critical off or standard on, or a query parameter"),
        )
        .add(
            get(h::list_approvals),
            Op::new("get", "/api/v1/approvals", "approvals", "Approval requests, newest first (an agent sees only its own)")
                .query::<ListApprovals>()
                .returns::<h::ApprovalList>(200)
                .invalid_request(BAD_QUERY),
        )
        .add(
            get(h::get_approval),
            Op::new("get", "/api/v1/approvals/{id}", "approvals", "One approval request and its state")
                .query::<NoParams>()
                .returns::<ApprovalView>(200)
                .invalid_request(NO_PARAMS),
        )
        .add(
            post(h::approve),
            Op::new("post", "/api/v1/approvals/{id}/approve", "approvals", "Approve a pending request (owners only): {ttl?, uses?}")
                .describe(OWNER_ONLY)
                .query::<NoParams>()
                .body::<ApproveRequest>()
                .returns::<ApprovalView>(200)
                .invalid_request(BAD_BODY),
        )
        .add(
            post(h::redeem_approval),
            Op::new(
                "post",
                "/api/v1/approvals/{id}/redeem",
                "approvals",
                "Fetch, once, the token an owner approved (by the key that asked); the approval's ttl caps its lifetime",
            )
            .query::<NoParams>()
            .returns::<TokenIssued>(201)
            .invalid_request(NO_PARAMS),
        )
        .add(
            post(h::deny),
            Op::new("post", "/api/v1/approvals/{id}/deny", "approvals", "Deny a pending request with a reason (owners only)")
                .describe(OWNER_ONLY)
                .query::<NoParams>()
                .body::<DenyRequest>()
                .returns::<ApprovalView>(200)
                .invalid_request(BAD_BODY),
        );
    let t = super::claims::routes(t);
    let t = super::shares::routes(t);
    let t = super::proxy::routes(t);
    let t = super::requests::routes(t);
    let t = super::checks::routes(t);
    let t = super::lifecycle::routes(t);
    let t = super::rotation::routes(t);
    let t = super::environments::routes(t);
    let t = super::audit_verify::routes(t);
    let t = super::webhooks::routes(t);
    let t = super::backups::routes(t);
    let t = super::data_keys::routes(t);
    (t.router, t.ops)
}
