//! The documents for agents (`llms.txt`, the quickstart steps), which every
//! front serves: REST at `/llms.txt` and `/api/quickstart`, MCP as resources.

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::{Value, json};

/// The repository's `llms.txt`, compiled in so the served copy matches the binary.
pub const LLMS_TXT: &str = include_str!("../llms.txt");

/// The steps an agent follows to start using the vault.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuickstartDoc {
    pub name: &'static str,
    pub description: &'static str,
    pub auth: &'static str,
    pub steps: Vec<QuickstartStep>,
    pub docs: Value,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuickstartStep {
    pub step: u32,
    pub title: &'static str,
    pub method: &'static str,
    pub path: &'static str,
    pub auth: bool,
    pub body: Option<Value>,
    pub returns: &'static str,
}

pub fn quickstart_doc() -> QuickstartDoc {
    let step =
        |n, title, method, path, auth, body: Option<Value>, returns| QuickstartStep { step: n, title, method, path, auth, body, returns };
    QuickstartDoc {
        name: "Latchkey",
        description: "Self-hosted, agent-native secret vault. Values are encrypted at rest and never appear in lists, logs or audit entries.",
        auth: "Send the apiKey from signup as the X-API-Key header (or Authorization: Bearer <apiKey>).",
        steps: vec![
            step(
                1,
                "Sign up (no key needed)",
                "POST",
                "/api/signup",
                false,
                Some(json!({"tenantId": "my-project", "agent": "claude-code"})),
                "{apiKey, tenantId, plan, limits}: store apiKey, it is shown once",
            ),
            step(
                2,
                "Store a secret",
                "POST",
                "/api/v1/secrets",
                true,
                Some(
                    json!({"name": "STRIPE_SECRET_KEY", "value": "sk_live_...", "secretType": "api-key", "environment": "production", "tags": ["stripe"]}),
                ),
                "{secretId, name, version}: never the value",
            ),
            step(3, "Find secrets (metadata only)", "GET", "/api/v1/secrets?search=stripe", true, None, "{secrets[], hasMore, nextCursor}"),
            step(4, "Read one value (audited)", "GET", "/api/v1/secrets/{secretId}", true, None, "{secretId, name, value, version}"),
            step(
                5,
                "Rotate: a new value, the old one readable for a grace period",
                "POST",
                "/api/v1/rotation/secrets/{secretId}/rotate",
                true,
                Some(json!({"gracePeriod": "24h", "reason": "quarterly rotation"})),
                "{version: 2, retiringVersion: 1, graceEndsAt}: generated from the OS's CSPRNG unless you send newValue (never answered); POST /api/v1/rotation {secretId, schedule: \"30d\"} rotates on a schedule",
            ),
            step(
                6,
                "Hand a secret to another agent's tenant without pasting it",
                "POST",
                "/api/v1/claim-tokens",
                true,
                Some(json!({"secretId": "{secretId}", "targetTenantId": "their-tenant", "contractId": "task-42"})),
                "{token: ctk_...}: give the token to the other agent; it redeems it once with POST /api/v1/claim-tokens/{id}/claim, the token as id",
            ),
            step(
                7,
                "Use a secret without seeing it (exposure use_only, bindings)",
                "POST",
                "/api/v1/secrets/{secretId}/proxy",
                true,
                Some(json!({"method": "GET", "url": "https://api.stripe.com/v1/balance"})),
                "{status, headers, body}: the server sent the request with the value where the secret's binding says; the value is redacted from the answer",
            ),
            step(
                8,
                "Promote staging to production (a dry run first)",
                "POST",
                "/api/v1/secrets/promote",
                true,
                Some(json!({"projectId": "{projectId}", "fromEnvironment": "staging", "toEnvironment": "production", "dryRun": true})),
                "{created[], updated[], unchanged[], skipped[], applied: false}: never values; send dryRun: false to apply it in one transaction",
            ),
            step(9, "Review who did what", "GET", "/api/v1/audit?limit=20", true, None, "{logs[], total}"),
            step(
                10,
                "Prove the trail was not edited (admin key)",
                "GET",
                "/api/v1/audit/verify",
                true,
                None,
                "{verified, entries, firstBroken?}: every entry is chained to the one before by a keyed hash",
            ),
            step(
                11,
                "Be told when secrets change (admin key)",
                "POST",
                "/api/v1/webhooks",
                true,
                Some(json!({"url": "https://hooks.example.com/latchkey", "events": ["secret.rotated", "secret.deleted"]})),
                "{id, secret: whsec_...}: the signing secret is shown once; each delivery carries Latchkey-Signature: t=...,v1=<HMAC-SHA256 of \"t.body\">",
            ),
        ],
        docs: json!({ "llms": "/llms.txt", "openapi": "/api/openapi.json", "plans": "/api/signup/limits", "mcp": "/mcp" }),
    }
}
