//! Stricter inputs, told as a user's story on SQLite and on PostgreSQL: a
//! typo in a query is refused instead of ignored, SecretCarousel's CLI gets
//! what it asks for (search with `q`, pages of 500, renames and moves), names
//! that would not read as what they are are refused, and stored data that
//! does not parse is an integrity error, never a default that passes for data.

mod common;

use common::{Backend, Server, unique};
use serde_json::{Value, json};

/// The error code, whichever error body shape the server answers
/// (`{"code"}` flat, or `{"error": {"code"}}` nested).
fn code(v: &Value) -> &str {
    v["code"].as_str().or(v["error"]["code"].as_str()).unwrap_or_default()
}

fn message(v: &Value) -> &str {
    v["message"].as_str().or(v["error"]["message"].as_str()).unwrap_or_default()
}

fn names(page: &Value) -> Vec<String> {
    page["secrets"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap().to_owned()).collect()
}

/// One MCP tool call over streamable HTTP as `key`: `Ok(structured result)`
/// or `Err(error body)`.
async fn tool(srv: &Server, key: &str, name: &str, args: Value) -> Result<Value, Value> {
    let body = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": { "name": name, "arguments": args } });
    let resp = srv
        .http
        .post(srv.url("/mcp"))
        .header("accept", "application/json, text/event-stream")
        .header("x-api-key", key)
        .header("mcp-protocol-version", "2025-06-18")
        .json(&body)
        .send()
        .await
        .unwrap();
    let answer: Value = resp.json().await.unwrap();
    let result = &answer["result"];
    if result["isError"] == true {
        let text = result["content"][0]["text"].as_str().unwrap_or_default();
        return Err(serde_json::from_str(text).unwrap_or(json!({ "message": text })));
    }
    Ok(result["structuredContent"].clone())
}

async fn story(backend: Backend) {
    let srv = Server::start(backend).await;
    let key = srv.signup(&unique("inputs")).await;

    // A secret with two versions.
    let (s, db) = srv.post("/api/v1/secrets", &key, json!({ "name": "DB_URL", "value": "postgres://v1", "environment": "dev" })).await;
    assert_eq!(s, 201, "{db}");
    let db = db["id"].as_str().unwrap().to_owned();
    assert_eq!(srv.put(&format!("/api/v1/secrets/{db}"), &key, json!({ "value": "postgres://v2" })).await.0, 200);

    // A typo in a query is refused, naming the parameter, where it used to
    // answer as if it were absent: `versoin=1` answered the current value.
    let (s, e) = srv.get(&format!("/api/v1/secrets/{db}?versoin=1"), &key).await;
    assert_eq!((s, code(&e)), (400, "INVALID_REQUEST"), "{e}");
    assert!(message(&e).contains("versoin"), "{e}");
    let (s, old) = srv.get(&format!("/api/v1/secrets/{db}?version=1"), &key).await;
    assert_eq!((s, old["value"].as_str()), (200, Some("postgres://v1")), "{old}");

    // Every route, those that take no parameters included; each refusal changes nothing.
    let stranger = unique("never");
    let refused: Vec<(&str, String, Option<Value>, &str)> = vec![
        ("GET", "/api/v1/plan?verbose=1".into(), None, "verbose"),
        ("GET", "/api/v1/plan/usage?month=2".into(), None, "month"),
        ("GET", "/api/v1/secrets?category=db".into(), None, "category"),
        ("POST", "/api/v1/secrets?dryRun=true".into(), Some(json!({ "name": "NEW", "value": "x" })), "dryRun"),
        ("PUT", format!("/api/v1/secrets/{db}?dryRun=true"), Some(json!({ "value": "postgres://v3" })), "dryRun"),
        ("DELETE", format!("/api/v1/secrets/{db}?soft=true"), None, "soft"),
        ("GET", format!("/api/v1/secrets/{db}/versions?limt=1"), None, "limt"),
        ("POST", "/api/v1/projects?dryRun=1".into(), Some(json!({ "name": "p" })), "dryRun"),
        ("GET", "/api/v1/projects?limit=5".into(), None, "limit"),
        ("POST", "/api/v1/api-keys?dryRun=1".into(), Some(json!({ "name": "k", "permissions": "read" })), "dryRun"),
        ("GET", "/api/v1/api-keys?all=1".into(), None, "all"),
        ("GET", "/api/v1/audit?actoin=secret.read".into(), None, "actoin"),
        ("GET", "/api/v1/audit/logs?resource=secret".into(), None, "resource"),
        ("GET", "/api/v1/audit/export?fromat=csv".into(), None, "fromat"),
        ("GET", "/api/signup/limits?plan=pro".into(), None, "plan"),
    ];
    for (method, path, body, param) in &refused {
        let (s, e) = srv.call(method, path, Some(&key), body.clone()).await;
        assert_eq!((s, code(&e)), (400, "INVALID_REQUEST"), "{method} {path}: {e}");
        assert!(message(&e).contains(param), "{method} {path} names {param}: {e}");
    }
    let (s, e) = srv.call("POST", "/api/signup?plan=pro", None, Some(json!({ "tenantId": stranger }))).await;
    assert_eq!((s, code(&e)), (400, "INVALID_REQUEST"), "{e}");
    let (s, got) = srv.get(&format!("/api/v1/secrets/{db}"), &key).await;
    assert_eq!((s, got["value"].as_str(), got["version"].as_i64()), (200, Some("postgres://v2"), Some(2)), "{got}");
    assert_eq!(names(&srv.get("/api/v1/secrets", &key).await.1), ["DB_URL"]);
    assert_eq!(srv.get("/api/v1/projects", &key).await.1["count"], 0);
    assert_eq!(srv.get("/api/v1/api-keys", &key).await.1["count"], 1);
    srv.signup(&stranger).await; // the refused signup did not take the name

    // SecretCarousel's CLI: `sc search STRIPE` sends q, with limit=50.
    let canary = format!("sk_live_{}", uuid::Uuid::new_v4().simple());
    let (s, stripe) =
        srv.post("/api/v1/secrets", &key, json!({ "name": "STRIPE_KEY", "value": canary, "environment": "production" })).await;
    assert_eq!(s, 201, "{stripe}");
    let stripe = stripe["id"].as_str().unwrap().to_owned();
    let (s, found) = srv.get("/api/v1/secrets?q=STRIPE&limit=50", &key).await;
    assert_eq!((s, names(&found)), (200, vec!["STRIPE_KEY".to_owned()]), "{found}");
    assert_eq!(names(&srv.get("/api/v1/secrets?q=stripe&search=stripe", &key).await.1), ["STRIPE_KEY"]);
    let (s, e) = srv.get("/api/v1/secrets?q=STRIPE&search=DB", &key).await;
    assert_eq!((s, code(&e)), (400, "INVALID_REQUEST"), "{e}");
    assert!(message(&e).contains("q"), "{e}");

    // `sc env pull` and `sc env promote` list 500 at once; cursor pages are as before.
    for i in 0..3 {
        assert_eq!(srv.post("/api/v1/secrets", &key, json!({ "name": format!("K{i}"), "value": "v" })).await.0, 201);
    }
    let (s, all) = srv.get("/api/v1/secrets?limit=500", &key).await;
    assert_eq!((s, all["count"].as_i64(), all["hasMore"].as_bool()), (200, Some(5), Some(false)), "{all}");
    let (s, e) = srv.get("/api/v1/secrets?limit=501", &key).await;
    assert_eq!((s, code(&e)), (400, "INVALID_REQUEST"), "{e}");
    let (mut paged, mut cursor) = (Vec::new(), String::new());
    for _ in 0..10 {
        let (s, page) = srv.get(&format!("/api/v1/secrets?limit=2&cursor={cursor}"), &key).await;
        assert_eq!(s, 200, "{page}");
        paged.extend(names(&page));
        match page["nextCursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(paged, names(&all));

    // `sc secret update ID --name N`: a rename keeps the id, the versions and
    // the value. Reads by id (served from the cache before) and by name see
    // the new name only.
    assert_eq!(srv.get(&format!("/api/v1/secrets/{stripe}"), &key).await.1["name"], "STRIPE_KEY");
    let by_name = |name: &str, env: &str| json!({ "name": name, "environment": env });
    assert!(tool(&srv, &key, "get_secret", by_name("STRIPE_KEY", "production")).await.is_ok());
    let (s, renamed) = srv.put(&format!("/api/v1/secrets/{stripe}"), &key, json!({ "name": "STRIPE_LIVE_KEY" })).await;
    assert_eq!((s, renamed["name"].as_str(), renamed["version"].as_i64()), (200, Some("STRIPE_LIVE_KEY"), Some(1)), "{renamed}");
    let (_, got) = srv.get(&format!("/api/v1/secrets/{stripe}"), &key).await;
    assert_eq!((got["name"].as_str(), got["value"].as_str()), (Some("STRIPE_LIVE_KEY"), Some(canary.as_str())), "{got}");
    let gone = tool(&srv, &key, "get_secret", by_name("STRIPE_KEY", "production")).await.unwrap_err();
    assert_eq!(code(&gone), "SECRET_NOT_FOUND", "{gone}");
    let read = tool(&srv, &key, "get_secret", by_name("STRIPE_LIVE_KEY", "production")).await.unwrap();
    assert_eq!(read["value"], canary.as_str());
    assert!(names(&srv.get("/api/v1/secrets?search=STRIPE_KEY", &key).await.1).is_empty());

    // `sc secret update ID --env E`: a move, seen the same way.
    let (s, moved) = srv.put(&format!("/api/v1/secrets/{stripe}"), &key, json!({ "environment": "staging" })).await;
    assert_eq!((s, moved["environment"].as_str()), (200, Some("staging")), "{moved}");
    assert!(tool(&srv, &key, "get_secret", by_name("STRIPE_LIVE_KEY", "production")).await.is_err());
    assert!(tool(&srv, &key, "get_secret", by_name("STRIPE_LIVE_KEY", "staging")).await.is_ok());

    // A taken name, environment and project slot is 409, and nothing changes.
    let (s, twin) =
        srv.post("/api/v1/secrets", &key, json!({ "name": "STRIPE_LIVE_KEY", "value": "x", "environment": "production" })).await;
    assert_eq!(s, 201, "{twin}");
    let twin = twin["id"].as_str().unwrap().to_owned();
    let (s, e) = srv.put(&format!("/api/v1/secrets/{stripe}"), &key, json!({ "environment": "production" })).await;
    assert_eq!((s, code(&e)), (409, "ALREADY_EXISTS"), "{e}");
    let (s, e) = srv.put(&format!("/api/v1/secrets/{twin}"), &key, json!({ "environment": "staging", "value": "y" })).await;
    assert_eq!((s, code(&e)), (409, "ALREADY_EXISTS"), "{e}");
    let (_, still) = srv.get(&format!("/api/v1/secrets/{stripe}"), &key).await;
    assert_eq!((still["environment"].as_str(), still["version"].as_i64()), (Some("staging"), Some(1)), "{still}");
    let (_, still) = srv.get(&format!("/api/v1/secrets/{twin}"), &key).await;
    assert_eq!(
        (still["environment"].as_str(), still["version"].as_i64(), still["value"].as_str()),
        (Some("production"), Some(1), Some("x"))
    );

    // Name and environment are validated as on create.
    for bad in [
        json!({ "name": "bad name" }),
        json!({ "name": "" }),
        json!({ "name": "/abs" }),
        json!({ "environment": "pro d" }),
        json!({ "environment": "prod\u{202E}" }),
        json!({ "name": "OK", "nmae": "typo" }),
    ] {
        let (s, e) = srv.put(&format!("/api/v1/secrets/{stripe}"), &key, bad.clone()).await;
        assert_eq!((s, code(&e)), (400, "INVALID_REQUEST"), "{bad}: {e}");
    }
    // "" moves it out of any environment; a rename with a new value is one change.
    let (_, none) = srv.put(&format!("/api/v1/secrets/{stripe}"), &key, json!({ "environment": "" })).await;
    assert!(none["environment"].is_null(), "{none}");
    let (s, both) = srv.put(&format!("/api/v1/secrets/{stripe}"), &key, json!({ "name": "STRIPE", "value": "sk_new" })).await;
    assert_eq!((s, both["name"].as_str(), both["version"].as_i64()), (200, Some("STRIPE"), Some(2)), "{both}");

    // The trail says what moved, from where to where, and never a value.
    let (s, trail) = srv.get("/api/v1/audit?action=secret.update&limit=1000", &key).await;
    assert_eq!(s, 200, "{trail}");
    let moves: Vec<&Value> = trail["logs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["resourceId"] == stripe.as_str() && e["outcome"] == "success")
        .filter_map(|e| e["detail"].get("moved"))
        .collect();
    let hop = |from: (&str, &str), to: (&str, &str)| json!({ "from": { "name": from.0, "environment": from.1 }, "to": { "name": to.0, "environment": to.1 } });
    // Newest first.
    assert_eq!(
        moves,
        [
            &hop(("STRIPE_LIVE_KEY", ""), ("STRIPE", "")),
            &hop(("STRIPE_LIVE_KEY", "staging"), ("STRIPE_LIVE_KEY", "")),
            &hop(("STRIPE_LIVE_KEY", "production"), ("STRIPE_LIVE_KEY", "staging")),
            &hop(("STRIPE_KEY", "production"), ("STRIPE_LIVE_KEY", "production")),
        ]
    );
    assert!(!trail.to_string().contains(&canary) && !trail.to_string().contains("sk_new"));

    // The OpenAPI document shows what changed.
    let (_, doc) = srv.call("GET", "/api/openapi.json", None, None).await;
    let edit = &doc["paths"]["/api/v1/secrets/{id}"]["put"]["requestBody"]["content"]["application/json"]["schema"]["$ref"];
    assert_eq!(edit, "#/components/schemas/EditSecret");
    let fields = doc["components"]["schemas"]["EditSecret"]["properties"].as_object().unwrap();
    assert!(fields.contains_key("name") && fields.contains_key("environment") && fields.contains_key("value"), "{fields:?}");
    let list = doc["paths"]["/api/v1/secrets"]["get"]["parameters"].as_array().unwrap();
    let param = |n: &str| list.iter().find(|p| p["name"] == n).unwrap_or_else(|| panic!("no {n} parameter"));
    assert_eq!(param("limit")["schema"]["maximum"], 500);
    param("q");
    assert!(doc["paths"]["/api/v1/projects"]["get"]["responses"]["400"].is_object());

    names_that_do_not_show(&srv, &key).await;
    damaged_rows(&srv).await;
    assert_eq!(srv.stop(), Some(0));
}

/// Names made only of invisible characters, or holding bidirectional
/// controls, are refused wherever a name is given, and nothing is created.
async fn names_that_do_not_show(srv: &Server, key: &str) {
    let (_, before) = srv.get("/api/v1/secrets?limit=500", key).await;
    let bad: [(&str, &str, Value); 8] = [
        ("POST", "/api/v1/projects", json!({ "name": "\u{200B}\u{2060}" })),
        ("POST", "/api/v1/projects", json!({ "name": "invoice\u{202E}fdp.exe" })),
        ("POST", "/api/v1/projects", json!({ "name": "ok", "tags": ["\u{2066}team\u{2069}"] })),
        ("POST", "/api/v1/projects", json!({ "name": "ok", "tags": ["\u{3164}"] })),
        ("POST", "/api/v1/api-keys", json!({ "name": "\u{00AD}\u{FEFF}", "permissions": "read" })),
        ("POST", "/api/v1/api-keys", json!({ "name": "ci\u{200F}", "permissions": "read" })),
        ("POST", "/api/v1/secrets", json!({ "name": "X", "value": "v", "tags": ["\u{200E}"] })),
        ("POST", "/api/v1/secrets", json!({ "name": "X\u{202D}", "value": "v" })),
    ];
    for (method, path, body) in bad {
        let (s, e) = srv.call(method, path, Some(key), Some(body.clone())).await;
        assert_eq!((s, code(&e)), (400, "INVALID_REQUEST"), "{path} {body}: {e}");
    }
    let (s, e) = srv.call("POST", "/api/signup", None, Some(json!({ "tenantId": "acme\u{202E}" }))).await;
    assert_eq!((s, code(&e)), (400, "INVALID_REQUEST"), "{e}");
    assert_eq!(srv.get("/api/v1/projects", key).await.1["count"], 0);
    assert_eq!(srv.get("/api/v1/api-keys", key).await.1["count"], 1);
    assert_eq!(srv.get("/api/v1/secrets?limit=500", key).await.1["count"], before["count"]);
    // A visible name with an emoji's zero-width joiners is fine.
    let (s, p) = srv.post("/api/v1/projects", key, json!({ "name": "\u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467} family" })).await;
    assert_eq!(s, 201, "{p}");
}

/// Rows damaged behind the server's back answer 500 INTEGRITY_ERROR with a
/// log line naming table, row and field, never the epoch or an empty list.
async fn damaged_rows(srv: &Server) {
    let tenant = unique("damaged");
    let key = srv.signup(&tenant).await;
    let (_, secret) = srv.post("/api/v1/secrets", &key, json!({ "name": "TAGGED", "value": "v", "tags": ["a"] })).await;
    let secret = secret["id"].as_str().unwrap().to_owned();
    let (_, project) = srv.post("/api/v1/projects", &key, json!({ "name": "dated" })).await;
    let project = project["id"].as_str().unwrap().to_owned();

    // Never read before: no cache holds the row as it was.
    assert_eq!(srv.sql("UPDATE secrets SET tags = '[\"a\"' WHERE id = $1", &[&secret]).await, 1);
    let (s, e) = srv.get(&format!("/api/v1/secrets/{secret}"), &key).await;
    assert_eq!((s, code(&e)), (500, "INTEGRITY_ERROR"), "{e}");
    let (s, e) = srv.get("/api/v1/secrets", &key).await;
    assert_eq!((s, code(&e)), (500, "INTEGRITY_ERROR"), "{e}");
    let (s, e) = srv.put(&format!("/api/v1/secrets/{secret}"), &key, json!({ "description": "over it" })).await;
    assert_eq!((s, code(&e)), (500, "INTEGRITY_ERROR"), "{e}");

    assert_eq!(srv.sql("UPDATE projects SET created_at = 9223372036854775807 WHERE id = $1", &[&project]).await, 1);
    let (s, e) = srv.get(&format!("/api/v1/projects/{project}"), &key).await;
    assert_eq!((s, code(&e)), (500, "INTEGRITY_ERROR"), "{e}");

    let damaged = "UPDATE audit_log SET detail = '{\"name\":' WHERE id = (SELECT MAX(id) FROM audit_log WHERE tenant_id = $1)";
    assert_eq!(srv.sql(damaged, &[&tenant]).await, 1);
    let (s, e) = srv.get("/api/v1/audit?limit=5", &key).await;
    assert_eq!((s, code(&e)), (500, "INTEGRITY_ERROR"), "{e}");
    // The export streams, its status may be out already: it ends broken
    // (before or after its headers), never whole.
    if let Ok(resp) = srv.http.get(srv.url("/api/v1/audit/export")).header("x-api-key", &key).send().await {
        assert_eq!(resp.status(), 200);
        if let Ok(text) = resp.text().await {
            assert!(serde_json::from_str::<Value>(&text).is_err(), "a damaged export reads as whole: {text}");
        }
    }

    let log = srv.stderr();
    for (table, row, field) in
        [("secrets", secret.as_str(), "tags"), ("projects", project.as_str(), "created_at"), ("audit_log", "", "detail")]
    {
        assert!(
            log.lines().any(|l| l.contains("stored data failed to parse") && l.contains(table) && l.contains(row) && l.contains(field)),
            "no log line for {table} {row} {field}:\n{log}"
        );
    }
    assert!(!log.contains("\"name\":") && !log.contains("[\"a\""), "a stored value reached the log:\n{log}");
}

#[tokio::test]
async fn inputs_on_sqlite() {
    story(Backend::Sqlite).await;
}

#[tokio::test]
async fn inputs_on_postgres() {
    story(Backend::Postgres).await;
}

/// An agent renames and moves a secret with `update_secret_metadata`, which
/// names the secret by `name`/`environment` and so takes the new ones as
/// `newName`/`newEnvironment`.
#[tokio::test]
async fn an_agent_renames_and_moves_over_mcp() {
    let srv = Server::start(Backend::Sqlite).await;
    let key = srv.signup(&unique("mcp-rename")).await;
    let (s, _) = srv.post("/api/v1/secrets", &key, json!({ "name": "OLD", "value": "v1", "environment": "dev" })).await;
    assert_eq!(s, 201);
    let (s, _) = srv.post("/api/v1/secrets", &key, json!({ "name": "TAKEN", "value": "t", "environment": "prod" })).await;
    assert_eq!(s, 201);
    let moved = tool(
        &srv,
        &key,
        "update_secret_metadata",
        json!({ "name": "OLD", "environment": "dev", "newName": "NEW", "newEnvironment": "prod" }),
    )
    .await
    .expect("renamed and moved");
    assert_eq!((moved["name"].as_str(), moved["environment"].as_str()), (Some("NEW"), Some("prod")), "{moved}");
    let read = tool(&srv, &key, "get_secret", json!({ "name": "NEW", "environment": "prod" })).await.expect("found under the new name");
    assert_eq!(read["value"], "v1");
    let gone = tool(&srv, &key, "get_secret", json!({ "name": "OLD", "environment": "dev" })).await.expect_err("not under the old one");
    assert_eq!(code(&gone), "SECRET_NOT_FOUND");
    let taken = tool(&srv, &key, "update_secret_metadata", json!({ "name": "NEW", "environment": "prod", "newName": "TAKEN" }))
        .await
        .expect_err("a taken name");
    assert_eq!(code(&taken), "ALREADY_EXISTS", "{taken}");
}
