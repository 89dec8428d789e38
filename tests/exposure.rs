//! Exposure modes, as the user's story on SQLite and PostgreSQL: an agent
//! stores a masked and a use_only secret → reads answer a preview or 403,
//! by id, by version and over MCP → shares and claims of them are refused →
//! the agent may tighten but not loosen → an owner loosens → the trail
//! names what each read answered, and no answer or log line holds a value.

mod common;

use common::mcp_client::{call, connect as mcp_client, tool};
use common::{Backend, Server, unique};
use serde_json::{Value, json};

const MASKED: &str = "sk_live_51HqLyjWDarjtT1zdp7dc4f2a";
const HIDDEN: &str = "pg-use-only-Zq8vN3xT0pLm2RkW";

async fn create(srv: &Server, key: &str, body: Value) -> Value {
    let (s, meta) = srv.post("/api/v1/secrets", key, body).await;
    assert_eq!(s, 201, "{meta}");
    meta
}

async fn story(backend: Backend) {
    let srv = Server::start(backend).await;
    let tenant = unique("expose");
    let admin = srv.signup(&tenant).await;
    let (s, k) = srv.post("/api/v1/api-keys", &admin, json!({ "name": "agent", "permissions": "write" })).await;
    assert_eq!(s, 201, "{k}");
    let agent = k["apiKey"].as_str().unwrap().to_owned();
    let mut seen = Vec::new();

    let masked = create(&srv, &agent, json!({ "name": "STRIPE_KEY", "value": MASKED, "exposure": "masked" })).await;
    let bound = json!([{ "urlPrefix": "https://db.example.com/v1/", "methods": ["post"], "inject": { "type": "bearer" } }]);
    let hidden = create(&srv, &agent, json!({ "name": "DB_PASSWORD", "value": HIDDEN, "exposure": "use_only", "bindings": bound })).await;
    let plain = create(&srv, &agent, json!({ "name": "PUBLIC_FLAG", "value": "plain-flag-value" })).await;
    assert_eq!(
        (masked["exposure"].as_str(), hidden["exposure"].as_str(), plain["exposure"].as_str()),
        (Some("masked"), Some("use_only"), Some("reveal"))
    );
    assert_eq!(hidden["bindings"][0]["methods"], json!(["POST"]), "methods are normalised: {hidden}");
    let (masked, hidden, plain) = (masked["id"].as_str().unwrap(), hidden["id"].as_str().unwrap(), plain["id"].as_str().unwrap());

    // A masked read answers a preview, the length and a fingerprint.
    for path in [format!("/api/v1/secrets/{masked}"), format!("/api/v1/secrets/{masked}?version=1")] {
        let (s, read) = srv.get(&path, &agent).await;
        assert_eq!(s, 200, "{read}");
        assert_eq!(read["value"], Value::Null, "{read}");
        assert_eq!(read["masked"]["preview"], "sk_live_…4f2a", "{read}");
        assert_eq!(read["masked"]["length"], MASKED.len());
        assert!(read["masked"]["fingerprint"].as_str().unwrap().starts_with("fp_"), "{read}");
        seen.push(read.to_string());
    }
    // The fingerprint is stable, and differs for another value.
    let fp = |v: &Value| v["masked"]["fingerprint"].as_str().unwrap().to_owned();
    let first = fp(&srv.get(&format!("/api/v1/secrets/{masked}"), &agent).await.1);
    assert_eq!(first, fp(&srv.get(&format!("/api/v1/secrets/{masked}"), &admin).await.1));
    // A use_only read answers nothing, by id, by version or by an admin.
    for (path, key) in [(format!("/api/v1/secrets/{hidden}"), &agent), (format!("/api/v1/secrets/{hidden}?version=1"), &admin)] {
        let (s, e) = srv.get(&path, key).await;
        assert_eq!((s, e["code"].as_str()), (403, Some("EXPOSURE_DENIED")), "{e}");
        seen.push(e.to_string());
    }
    assert_eq!(srv.get(&format!("/api/v1/secrets/{plain}"), &agent).await.1["value"], "plain-flag-value");
    let (_, list) = srv.get("/api/v1/secrets", &agent).await;
    let mode = |name: &str| list["secrets"].as_array().unwrap().iter().find(|s| s["name"] == name).unwrap()["exposure"].clone();
    assert_eq!((mode("STRIPE_KEY"), mode("DB_PASSWORD")), (json!("masked"), json!("use_only")));
    seen.push(list.to_string());

    // Shares and claims hand the value to someone who sees it: reveal only.
    let receiver = unique("receiver");
    srv.signup(&receiver).await;
    for id in [masked, hidden] {
        let (s, e) = srv.post("/api/v1/shares", &agent, json!({ "secretId": id })).await;
        assert_eq!((s, e["code"].as_str()), (403, Some("EXPOSURE_DENIED")), "{e}");
        let (s, e) =
            srv.post("/api/v1/claim-tokens", &agent, json!({ "secretId": id, "targetTenantId": receiver, "contractId": "c-1" })).await;
        assert_eq!((s, e["code"].as_str()), (403, Some("EXPOSURE_DENIED")), "{e}");
        seen.push(e.to_string());
    }
    let (_, shares) = srv.get("/api/v1/shares", &agent).await;
    assert_eq!(shares["shares"].as_array().map(Vec::len), Some(0), "nothing was made: {shares}");

    // Any writer may tighten; loosening, or a new destination for a value
    // it may not see, is an owner's action.
    let (s, t) = srv.put(&format!("/api/v1/secrets/{plain}"), &agent, json!({ "exposure": "masked" })).await;
    assert_eq!((s, t["exposure"].as_str()), (200, Some("masked")), "{t}");
    for (id, change) in [
        (masked, json!({ "exposure": "reveal" })),
        (hidden, json!({ "exposure": "masked" })),
        (hidden, json!({ "bindings": [{ "urlPrefix": "https://attacker.example/", "inject": { "type": "bearer" } }] })),
    ] {
        for key in [&agent, &admin] {
            let (s, e) = srv.put(&format!("/api/v1/secrets/{id}"), key, change.clone()).await;
            assert_eq!((s, e["code"].as_str()), (403, Some("OWNER_REQUIRED")), "{change}: {e}");
        }
    }
    let (s, e) = srv
        .put(
            &format!("/api/v1/secrets/{hidden}"),
            &agent,
            json!({ "bindings": [{ "urlPrefix": "ftp://x/", "inject": { "type": "bearer" } }] }),
        )
        .await;
    assert_eq!((s, e["code"].as_str()), (400, Some("INVALID_REQUEST")), "{e}");
    let (s, e) = srv.put(&format!("/api/v1/secrets/{hidden}"), &agent, json!({ "exposure": "shown" })).await;
    assert_eq!((s, e["code"].as_str()), (400, Some("INVALID_REQUEST")), "{e}");
    let (_, still) = srv.get("/api/v1/secrets", &agent).await;
    let row = |name: &str| still["secrets"].as_array().unwrap().iter().find(|s| s["name"] == name).unwrap().clone();
    assert_eq!((row("STRIPE_KEY")["exposure"].as_str(), row("DB_PASSWORD")["exposure"].as_str()), (Some("masked"), Some("use_only")));
    assert_eq!(
        row("DB_PASSWORD")["bindings"],
        json!([{ "urlPrefix": "https://db.example.com/v1/", "methods": ["POST"], "inject": { "type": "bearer" } }])
    );
    // Removing a destination narrows, and any writer may.
    let (s, t) = srv.put(&format!("/api/v1/secrets/{hidden}"), &agent, json!({ "bindings": [] })).await;
    assert_eq!((s, t["bindings"].clone()), (200, json!([])), "{t}");

    // MCP obeys the same modes: a preview, or EXPOSURE_DENIED.
    let c = mcp_client(&srv, &agent).await;
    let read = tool(&c, "get_secret", json!({ "name": "STRIPE_KEY" })).await.unwrap();
    assert_eq!((read["value"].clone(), read["masked"]["preview"].as_str()), (Value::Null, Some("sk_live_…4f2a")), "{read}");
    let denied = call(&c, "get_secret", json!({ "name": "DB_PASSWORD" })).await;
    assert_eq!(denied.is_error, Some(true));
    seen.push(serde_json::to_string(&denied).unwrap());
    assert!(denied.content[0].as_text().unwrap().text.contains("EXPOSURE_DENIED"), "{denied:?}");
    // No tool loosens: metadata updates obey the same rule.
    let loosen = call(&c, "update_secret_metadata", json!({ "name": "STRIPE_KEY", "exposure": "reveal" })).await;
    assert!(loosen.content[0].as_text().unwrap().text.contains("OWNER_REQUIRED"), "{loosen:?}");
    c.cancel().await.ok();

    // The tenant's human owner loosens it; the next read answers the value.
    let (_, owner) = common::owner_add(&srv, &tenant, "Ann", &srv.base);
    let (s, t) = srv.put(&format!("/api/v1/secrets/{masked}"), &owner, json!({ "exposure": "reveal" })).await;
    assert_eq!((s, t["exposure"].as_str()), (200, Some("reveal")), "{t}");
    assert_eq!(srv.get(&format!("/api/v1/secrets/{masked}"), &agent).await.1["value"], MASKED);
    // An owner also writes a bare new value (no key of theirs to check at commit).
    let (s, t) = srv.put(&format!("/api/v1/secrets/{hidden}"), &owner, json!({ "value": "rotated-by-owner-value" })).await;
    assert_eq!((s, t["version"].as_i64()), (200, Some(2)), "{t}");

    // The trail says what each read answered, and why one was refused.
    let (_, audit) = srv.get("/api/v1/audit?limit=1000", &admin).await;
    let logs = audit["logs"].as_array().unwrap();
    let reads: Vec<&Value> = logs.iter().filter(|e| e["action"] == "secret.read" && e["resourceId"] == masked).collect();
    assert!(reads.iter().any(|e| e["detail"]["exposure"] == "masked" && e["outcome"] == "success"), "{reads:?}");
    let refused: Vec<&Value> = logs.iter().filter(|e| e["action"] == "secret.read" && e["resourceId"] == hidden).collect();
    assert!(!refused.is_empty() && refused.iter().all(|e| e["detail"]["code"] == "EXPOSURE_DENIED"), "{refused:?}");
    assert!(logs.iter().any(|e| e["action"] == "secret.update" && e["detail"]["exposure"] == json!({ "from": "masked", "to": "reveal" })));
    seen.push(audit.to_string());

    // Only the owner's explicit reveal above ever answered the masked value;
    // the use_only one was never answered nor logged.
    for text in &seen {
        assert!(!text.contains(HIDDEN) && !text.contains(MASKED), "a value leaked: {text}");
    }
    assert!(!srv.stderr().contains(HIDDEN), "the log holds no value");
}

#[tokio::test]
async fn reads_answer_what_each_secrets_exposure_allows_on_sqlite() {
    story(Backend::Sqlite).await;
}

#[tokio::test]
async fn reads_answer_what_each_secrets_exposure_allows_on_postgres() {
    story(Backend::Postgres).await;
}
