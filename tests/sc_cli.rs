//! SecretCarousel's own CLI (`sc`, npm `secretcarousel` 2.20.0, pinned in
//! tools/sc-cli) against the real server, driven as a user drives it: signup
//! in a project directory (the CLI keeps the key in `.sc/config.json`), then
//! commands. Each story checks the outcome through the REST API, not only
//! what the CLI prints, since the CLI prints a success line for answers it
//! does not read.
//!
//! The requests each command sends (seen through a recording proxy):
//! `signup T` POST /api/signup {"tenantId","agent":"sc-cli"}; `secret N V`
//! POST /api/v1/secrets {"name","value"[,"secretType"][,"environment"]};
//! `secrets` GET /api/v1/secrets; `secret show ID` GET /api/v1/secrets/ID;
//! `search Q` GET /api/v1/secrets?q=Q&limit=50; `env pull [--env E]` GET
//! /api/v1/secrets?environment=E&limit=500 (E defaults to development), then
//! GET /api/v1/secrets/ID for each; `env promote --from A --to B` the same
//! list of A, then per secret GET /api/v1/secrets/ID and POST /api/v1/secrets
//! {"name","value","secretType","environment":B,"tags"}; `secret update ID
//! --name N --env E` PUT /api/v1/secrets/ID {"name":N,"environment":E} (only
//! the options given). Hand-offs: `claim V --to T --contract C --hours H` POST
//! /api/v1/claim-tokens {"secretValue","secretName":"shared-secret" unless
//! --name,"targetTenantId","contractId","expiresInHours"} and prints
//! `accessToken`, `targetTenantId`, `expiresAt`; `claim redeem TOKEN` POST
//! /api/v1/claim-tokens/TOKEN/claim {} and prints `secretId`, `secretName`;
//! `claims` GET /api/v1/claim-tokens and prints each of `claimTokens` by
//! `claimTokenId`, `secretName`, `status`, `targetTenantId`; `share ID --hours
//! H --max-uses N` POST /api/v1/shares {"secretId","expirationHours","maxUses"}
//! and prints `share.accessToken` (else `accessToken`) and `share.expiresAt`;
//! `share show ID` GET /api/v1/shares/ID and prints (from `share`, else the
//! body) `shareId`, `secretName`, `status`, `currentUses`/`maxUses`,
//! `remainingUses`, `expiresAt`, `revokedAt`; `share revoke ID --reason R`
//! POST /api/v1/shares/ID/revoke {"reason"} and prints (from `result`, else
//! the body) `shareId`, `status`, `revokedAt`, `revocationReason`; `shares
//! [--include-revoked]` GET /api/v1/shares[?includeRevoked=true] and prints
//! each of `shares` by `shareId`, `secretName`, `status`, `expiresAt`. (Read
//! by running the CLI's command modules against a recording stand-in for its
//! HTTP client.) An error answer is printed as `Error: <error>
//! [<code>]` (with `message` too when it differs; `signup` prints the message
//! alone) and the exit status is 1.

mod common;

use common::sc::{User, value_of};
use common::{Backend, Server, unique};
use serde_json::{Value, json};

/// An error body's code and message, in the flat shape SecretCarousel's
/// clients read (`{"error","message","code"}`) or the older nested one.
fn error_of(body: &Value) -> (String, String) {
    let field = |k: &str| body[k].as_str().or(body["error"][k].as_str()).unwrap_or_default().to_owned();
    (field("code"), field("message"))
}

/// Metadata of the tenant's secrets in `environment`, by name.
async fn listed(srv: &Server, key: &str, environment: &str) -> Vec<Value> {
    let (s, body) = srv.get(&format!("/api/v1/secrets?environment={environment}"), key).await;
    assert_eq!(s, 200, "{body}");
    let mut all = body["secrets"].as_array().unwrap().clone();
    all.sort_by_key(|v| v["name"].as_str().unwrap_or_default().to_owned());
    all
}

fn names(list: &[Value]) -> Vec<&str> {
    list.iter().map(|v| v["name"].as_str().unwrap()).collect()
}

/// Passes against today's server: signup, create, list, show, and errors
/// that print the server's message and code.
async fn signup_create_list_show_and_errors(backend: Backend) {
    let srv = Server::start(backend).await;
    let user = User::new(&srv.base);
    let tenant = unique("sc-cli");
    let key = user.signup(&tenant).await;

    let id = user.create("STRIPE_KEY", "sk_live_123", &["-t", "api-key", "--env", "production"]).await;
    let stored = value_of(&srv, &key, &id).await;
    assert_eq!(
        (stored["name"].as_str(), stored["value"].as_str(), stored["secretType"].as_str(), stored["environment"].as_str()),
        (Some("STRIPE_KEY"), Some("sk_live_123"), Some("api-key"), Some("production")),
        "{stored}"
    );
    user.create("DB_URL", "postgres://db.internal/app", &[]).await;

    let list: Value = serde_json::from_str(&user.ok(&["secrets", "--json"]).await).expect("sc secrets --json prints JSON");
    let mut got: Vec<&str> = list["secrets"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    got.sort();
    assert_eq!(got, ["DB_URL", "STRIPE_KEY"], "{list}");
    assert!(!list.to_string().contains("sk_live_123"), "a list never carries values: {list}");
    let table = user.ok(&["secrets"]).await;
    assert!(table.contains("STRIPE_KEY") && table.contains("DB_URL"), "{table}");

    let shown = user.ok(&["secret", "show", &id]).await;
    assert!(shown.contains("sk_live_123") && shown.contains("STRIPE_KEY"), "{shown}");

    // A missing secret: the CLI prints what the server said, code included.
    let missing = "00000000-0000-4000-8000-000000000000";
    let (s, body) = srv.get(&format!("/api/v1/secrets/{missing}"), &key).await;
    let (code, message) = error_of(&body);
    assert_eq!((s, code.as_str()), (404, "SECRET_NOT_FOUND"), "{body}");
    let out = user.fails(&["secret", "show", missing]).await;
    assert!(out.contains(&format!("{message} [SECRET_NOT_FOUND]")), "want `{message} [SECRET_NOT_FOUND]` in:\n{out}");
    assert!(!out.contains("[object Object]") && !out.contains("undefined"), "{out}");

    // A taken tenant, from a second user, and the reserved local tenant: the
    // CLI's signup prints the server's message alone (no code).
    let other = User::new(&srv.base);
    for (tenant, want) in [(tenant.as_str(), "ALREADY_EXISTS"), ("local", "INVALID_REQUEST")] {
        let (s, body) = srv.call("POST", "/api/signup", None, Some(json!({ "tenantId": tenant }))).await;
        let (code, message) = error_of(&body);
        assert_eq!((s >= 400, code.as_str()), (true, want), "{body}");
        let out = other.fails(&["signup", tenant]).await;
        assert!(out.contains(&message) && !out.contains("[object Object]"), "want `{message}` in:\n{out}");
    }
    assert!(!other.project.join(".sc/config.json").exists(), "a refused signup saves no key");
}

/// Needs the server to take `q` and `limit=50` on the secret list.
async fn search(backend: Backend) {
    let srv = Server::start(backend).await;
    let user = User::new(&srv.base);
    user.signup(&unique("sc-search")).await;
    user.create("STRIPE_KEY", "sk_live_123", &["-t", "api-key"]).await;
    user.create("DB_URL", "postgres://db.internal/app", &[]).await;

    let out = user.ok(&["search", "stripe"]).await;
    assert!(out.contains("STRIPE_KEY") && !out.contains("DB_URL"), "{out}");
    assert!(out.contains("1 found"), "{out}");
    let out = user.ok(&["search", "no-such-thing"]).await;
    assert!(!out.contains("STRIPE_KEY") && !out.contains("DB_URL"), "{out}");
}

/// Needs the server to take `limit=500` on the secret list.
async fn env_pull_and_promote(backend: Backend) {
    let srv = Server::start(backend).await;
    let user = User::new(&srv.base);
    let key = user.signup(&unique("sc-env")).await;
    user.create("DB_URL", "postgres://db.internal/app", &["--env", "development"]).await;
    user.create("API_TOKEN", "tok_123", &["-t", "api-key", "--env", "development"]).await;
    user.create("STRIPE_KEY", "sk_live_123", &["--env", "production"]).await;

    let out = user.ok(&["env", "pull"]).await;
    let lines: Vec<&str> = out.lines().filter(|l| l.contains('=')).collect();
    assert_eq!(lines, ["API_TOKEN=tok_123", "DB_URL=postgres://db.internal/app"], "{out}");
    let out = user.ok(&["env", "pull", "--env", "production"]).await;
    assert!(out.lines().any(|l| l == "STRIPE_KEY=sk_live_123") && !out.contains("DB_URL"), "{out}");

    let out = user.ok(&["env", "promote", "--from", "development", "--to", "staging"]).await;
    assert!(out.contains("2/2"), "{out}");
    let staged = listed(&srv, &key, "staging").await;
    assert_eq!(names(&staged), ["API_TOKEN", "DB_URL"]);
    for (secret, want) in staged.iter().zip(["tok_123", "postgres://db.internal/app"]) {
        let got = value_of(&srv, &key, secret["id"].as_str().unwrap()).await;
        assert_eq!(got["value"], want, "{got}");
    }
    assert_eq!(names(&listed(&srv, &key, "development").await), ["API_TOKEN", "DB_URL"], "promotion copies");
}

/// Needs the server to rename and move a secret by PUT `name` / `environment`.
async fn update_renames_and_moves(backend: Backend) {
    let srv = Server::start(backend).await;
    let user = User::new(&srv.base);
    let key = user.signup(&unique("sc-update")).await;
    let id = user.create("STRIPE_KEY", "sk_live_123", &["-t", "api-key", "--env", "development"]).await;
    let before = value_of(&srv, &key, &id).await;

    user.ok(&["secret", "update", &id, "--name", "STRIPE_SECRET_KEY"]).await;
    let after = value_of(&srv, &key, &id).await;
    assert_eq!(
        (after["name"].as_str(), after["environment"].as_str(), after["value"].as_str()),
        (Some("STRIPE_SECRET_KEY"), Some("development"), Some("sk_live_123")),
        "{after}"
    );
    assert_eq!(after["secretType"], before["secretType"]);
    assert_eq!(names(&listed(&srv, &key, "development").await), ["STRIPE_SECRET_KEY"]);

    user.ok(&["secret", "update", &id, "--env", "staging"]).await;
    let after = value_of(&srv, &key, &id).await;
    assert_eq!((after["name"].as_str(), after["environment"].as_str()), (Some("STRIPE_SECRET_KEY"), Some("staging")), "{after}");
    assert!(listed(&srv, &key, "development").await.is_empty());

    user.ok(&["secret", "update", &id, "--name", "STRIPE_KEY", "--env", "production"]).await;
    let after = value_of(&srv, &key, &id).await;
    assert_eq!((after["name"].as_str(), after["environment"].as_str()), (Some("STRIPE_KEY"), Some("production")), "{after}");
    assert_eq!(after["value"], "sk_live_123", "a rename or move keeps the value");

    // The renames are audited on the secret.
    let (s, audit) = srv.get("/api/v1/audit?resourceType=secret&limit=100", &key).await;
    assert_eq!(s, 200, "{audit}");
    let on_secret: Vec<&Value> = audit["logs"].as_array().unwrap().iter().filter(|e| e["resourceId"] == id.as_str()).collect();
    assert!(
        on_secret.iter().any(|e| e["outcome"] == "success" && e.to_string().contains("STRIPE_SECRET_KEY")),
        "an audit entry records the rename: {on_secret:?}"
    );

    // A name taken in the target environment is refused, and nothing changes.
    user.create("OTHER", "o", &["--env", "production"]).await;
    let out = user.fails(&["secret", "update", &id, "--name", "OTHER"]).await;
    let (s, body) = srv.put(&format!("/api/v1/secrets/{id}"), &key, json!({ "name": "OTHER" })).await;
    let (code, message) = error_of(&body);
    assert_eq!(s, 409, "{body}");
    assert!(out.contains(&format!("{message} [{code}]")), "want `{message} [{code}]` in:\n{out}");
    let after = value_of(&srv, &key, &id).await;
    assert_eq!((after["name"].as_str(), after["environment"].as_str()), (Some("STRIPE_KEY"), Some("production")), "{after}");
}

/// The value after `label:` on the line that has it.
fn field<'a>(out: &'a str, label: &str) -> &'a str {
    out.lines().find_map(|l| l.trim().strip_prefix(label)).map(str::trim).unwrap_or_else(|| panic!("no `{label}` in:\n{out}"))
}

/// Agent A hands a secret to agent B's tenant by claim token, B redeems it
/// once; A shares another secret by link, sees its counters, revokes it.
async fn claim_and_share(backend: Backend) {
    let srv = Server::start(backend).await;
    let (alice, bob) = (User::new(&srv.base), User::new(&srv.base));
    let alice_key = alice.signup(&unique("sc-alice")).await;
    let bob_tenant = unique("sc-bob");
    let bob_key = bob.signup(&bob_tenant).await;

    let out = alice.ok(&["claim", "tok_handed_123", "--to", &bob_tenant, "--contract", "ctr-42", "--hours", "2"]).await;
    let token = field(&out, "Token:").to_owned();
    assert!(token.starts_with("ctk_"), "{out}");
    assert_eq!(field(&out, "To:"), bob_tenant, "{out}");
    assert!(!out.contains("undefined"), "{out}");
    let listed = alice.ok(&["claims"]).await;
    assert!(listed.contains("pending") && listed.contains(&bob_tenant) && !listed.contains("undefined"), "{listed}");

    let out = bob.ok(&["claim", "redeem", &token]).await;
    let id = field(&out, "Secret ID:").to_owned();
    assert_eq!(field(&out, "Name:"), "shared-secret", "the CLI's default name: {out}");
    assert_eq!(value_of(&srv, &bob_key, &id).await["value"], "tok_handed_123");
    let again = bob.fails(&["claim", "redeem", &token]).await;
    assert!(again.contains("[CLAIM_ALREADY_REDEEMED]"), "{again}");
    let listed = alice.ok(&["claims"]).await;
    assert!(listed.contains("claimed"), "{listed}");

    let secret = alice.create("STRIPE_KEY", "sk_live_shared", &["-t", "api-key"]).await;
    let out = alice.ok(&["share", &secret, "--hours", "1", "--max-uses", "2"]).await;
    let share_token = field(&out, "Token:").to_owned();
    assert!(share_token.starts_with("shr_") && !field(&out, "Expires:").is_empty(), "{out}");
    let (s, got) = srv.call("POST", &format!("/api/v1/shares/access/{share_token}"), None, None).await;
    assert_eq!((s, got["value"].as_str()), (200, Some("sk_live_shared")), "{got}");
    let (s, shares) = srv.get("/api/v1/shares", &alice_key).await;
    assert_eq!(s, 200, "{shares}");
    let share_id = shares["shares"][0]["id"].as_str().unwrap().to_owned();

    let out = alice.ok(&["share", "show", &share_id]).await;
    assert!(out.contains("STRIPE_KEY") && out.contains("1/2") && out.contains("remaining: 1"), "{out}");
    assert_eq!(field(&out, "Status:"), "active", "{out}");
    assert!(!out.contains("undefined"), "{out}");
    let table = alice.ok(&["shares"]).await;
    assert!(table.contains("STRIPE_KEY") && table.contains("active") && !table.contains("undefined"), "{table}");

    let out = alice.ok(&["share", "revoke", &share_id, "--reason", "sent to the wrong person"]).await;
    assert_eq!(field(&out, "Status:"), "revoked", "{out}");
    assert_eq!(field(&out, "Reason:"), "sent to the wrong person", "{out}");
    let (s, gone) = srv.call("POST", &format!("/api/v1/shares/access/{share_token}"), None, None).await;
    assert_eq!((s, gone["code"].as_str()), (410, Some("SHARE_REVOKED")), "{gone}");
    let (_, shown) = srv.get(&format!("/api/v1/shares/{share_id}"), &alice_key).await;
    assert_eq!(shown["revokeReason"], "sent to the wrong person", "the reason is recorded: {shown}");
    let active = alice.ok(&["shares"]).await;
    assert!(!active.contains("STRIPE_KEY"), "a revoked share leaves the active list: {active}");
    let all = alice.ok(&["shares", "--include-revoked"]).await;
    assert!(all.contains("STRIPE_KEY") && all.contains("revoked"), "{all}");
}

macro_rules! on_both_databases {
    ($($story:ident),* $(,)?) => {
        mod sqlite {
            use super::*;
            $( #[tokio::test] async fn $story() { super::$story(Backend::Sqlite).await } )*
        }
        mod postgres {
            use super::*;
            $( #[tokio::test] async fn $story() { super::$story(Backend::Postgres).await } )*
        }
    };
}

on_both_databases!(signup_create_list_show_and_errors, search, env_pull_and_promote, update_renames_and_moves, claim_and_share);
