//! The MCP front through real clients: rmcp's own client over streamable HTTP
//! against the real server, in process over a duplex pipe, and raw JSON-RPC
//! over `latchkey mcp`'s stdio. One core, two fronts: what MCP writes, REST reads.

mod common;

use std::io::{BufRead, BufReader, Write};

use common::{Backend, Opts, Server, unique};
use rmcp::model::{CallToolRequestParams, CallToolResult, ReadResourceRequestParams};
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};

type Client = RunningService<RoleClient, ()>;

async fn http_client(srv: &Server, key: Option<&str>) -> Client {
    let mut config = StreamableHttpClientTransportConfig::with_uri(srv.url("/mcp"));
    if let Some(k) = key {
        config = config.auth_header(k);
    }
    ().serve(StreamableHttpClientTransport::from_config(config)).await.expect("MCP handshake")
}

async fn call(c: &Client, tool: &str, args: Value) -> CallToolResult {
    let params = CallToolRequestParams::new(tool.to_owned()).with_arguments(args.as_object().unwrap().clone());
    c.call_tool(params).await.unwrap_or_else(|e| panic!("{tool}: protocol error {e}"))
}

/// The structured result of a successful call.
async fn ok(c: &Client, tool: &str, args: Value) -> Value {
    let r = call(c, tool, args).await;
    assert_ne!(r.is_error, Some(true), "{tool} failed: {:?}", r.content);
    r.structured_content.unwrap_or_else(|| panic!("{tool} returned no structured content"))
}

/// The error code of a failed call (a tool result with isError, not a protocol error).
async fn err_code(c: &Client, tool: &str, args: Value) -> String {
    let r = call(c, tool, args).await;
    assert_eq!(r.is_error, Some(true), "{tool} should fail");
    let text = r.content[0].as_text().expect("text content").text.clone();
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{tool}: error text is not JSON: {text}"));
    body["code"].as_str().unwrap().to_owned()
}

async fn tool_names(c: &Client) -> Vec<String> {
    let mut names: Vec<String> = c.list_all_tools().await.unwrap().into_iter().map(|t| t.name.to_string()).collect();
    names.sort();
    names
}

async fn story_over_http(backend: Backend) {
    let srv = Server::start(backend).await;

    // An agent with no credentials sees one tool: signup.
    let anon = http_client(&srv, None).await;
    assert_eq!(tool_names(&anon).await, ["signup"]);
    let tenant = unique("agent");
    let signed = ok(&anon, "signup", json!({ "tenantId": tenant, "agent": "rmcp-test" })).await;
    let key = signed["apiKey"].as_str().unwrap().to_owned();
    let llms = anon.read_resource(ReadResourceRequestParams::new("latchkey://llms.txt")).await.unwrap();
    assert!(format!("{:?}", llms.contents).contains("Latchkey"));
    anon.cancel().await.ok();

    // With its key, the whole vault.
    let c = http_client(&srv, Some(&key)).await;
    let info = c.peer_info().expect("server info");
    assert!(info.instructions.as_deref().unwrap_or_default().contains("set_secret"));
    assert_eq!(tool_names(&c).await.len(), 43);
    let me = ok(&c, "whoami", json!({})).await;
    assert_eq!(me["tenantId"], tenant.as_str());

    let canary = format!("mcp-canary-{}", uuid::Uuid::new_v4().simple());
    let first = ok(&c, "set_secret", json!({ "name": "OPENAI_API_KEY", "value": canary, "secretType": "api-key", "tags": ["llm"] })).await;
    assert_eq!(first["created"], true);
    assert!(!first.to_string().contains(&canary), "set_secret never echoes the value");
    let id = first["secret"]["id"].as_str().unwrap().to_owned();
    let second = ok(&c, "set_secret", json!({ "name": "OPENAI_API_KEY", "value": "rotated", "expectedVersion": 1 })).await;
    assert_eq!((second["created"].as_bool(), second["secret"]["version"].as_i64()), (Some(false), Some(2)));
    assert_eq!(
        err_code(&c, "set_secret", json!({ "name": "OPENAI_API_KEY", "value": "stale", "expectedVersion": 1 })).await,
        "VERSION_CONFLICT"
    );

    let by_name = ok(&c, "get_secret", json!({ "name": "OPENAI_API_KEY" })).await;
    assert_eq!(by_name["value"], "rotated");
    let old = ok(&c, "get_secret", json!({ "id": id, "version": 1 })).await;
    assert_eq!(old["value"], canary.as_str());
    let listed = ok(&c, "list_secrets", json!({ "search": "openai" })).await;
    assert_eq!(listed["count"], 1);
    assert!(!listed.to_string().contains("rotated") && !listed.to_string().contains(&canary));
    let meta = ok(&c, "update_secret_metadata", json!({ "id": id, "description": "for the summariser" })).await;
    assert_eq!((meta["description"].as_str(), meta["version"].as_i64()), (Some("for the summariser"), Some(2)));
    let versions = ok(&c, "list_secret_versions", json!({ "name": "OPENAI_API_KEY" })).await;
    assert_eq!(versions["versions"].as_array().unwrap().len(), 2);
    let newest = ok(&c, "list_secret_versions", json!({ "name": "OPENAI_API_KEY", "limit": 1 })).await;
    assert_eq!((newest["versions"][0]["version"].as_i64(), newest["hasMore"].as_bool()), (Some(2), Some(true)), "{newest}");
    let older = ok(&c, "list_secret_versions", json!({ "id": id, "limit": 1, "cursor": newest["nextCursor"] })).await;
    assert_eq!((older["versions"][0]["version"].as_i64(), older["hasMore"].as_bool()), (Some(1), Some(false)), "{older}");
    assert_eq!(err_code(&c, "list_secret_versions", json!({ "id": id, "limit": 0 })).await, "INVALID_REQUEST");

    // A failing tool is a result the agent can read, and the connection lives on.
    assert_eq!(err_code(&c, "get_secret", json!({ "id": uuid::Uuid::new_v4().to_string() })).await, "SECRET_NOT_FOUND");
    assert_eq!(err_code(&c, "get_secret", json!({})).await, "INVALID_REQUEST");
    assert_eq!(err_code(&c, "set_secret", json!({ "name": "X", "value": "v", "secretType": "nonsense" })).await, "INVALID_REQUEST");
    assert_eq!(ok(&c, "whoami", json!({})).await["tenantId"], tenant.as_str());

    // One core, two fronts: REST reads what MCP wrote, MCP reads what REST wrote.
    let (s, rest_view) = srv.get(&format!("/api/v1/secrets/{id}"), &key).await;
    assert_eq!((s, rest_view["value"].as_str()), (200, Some("rotated")));
    let (_, made) = srv.post("/api/v1/secrets", &key, json!({ "name": "FROM_REST", "value": "rest-value" })).await;
    let rest_id = made["id"].as_str().unwrap();
    assert_eq!(ok(&c, "get_secret", json!({ "id": rest_id })).await["value"], "rest-value");

    // Projects and keys.
    let project = ok(&c, "create_project", json!({ "name": "agents" })).await;
    assert_eq!(ok(&c, "list_projects", json!({})).await["count"], 1);
    let shown = ok(&c, "get_project", json!({ "id": project["id"] })).await;
    assert_eq!((shown["name"].as_str(), shown["secretCount"].as_i64()), (Some("agents"), Some(0)), "{shown}");
    let renamed = ok(&c, "update_project", json!({ "id": project["id"], "name": "bots", "tags": ["ci"] })).await;
    assert_eq!((renamed["name"].as_str(), renamed["tags"].clone()), (Some("bots"), json!(["ci"])), "{renamed}");
    let (_, rest_project) = srv.get(&format!("/api/v1/projects/{}", project["id"].as_str().unwrap()), &key).await;
    assert_eq!(rest_project["name"], "bots", "REST sees the rename: {rest_project}");
    assert_eq!(err_code(&c, "update_project", json!({ "id": project["id"], "title": "x" })).await, "INVALID_REQUEST");
    let reader = ok(&c, "create_api_key", json!({ "name": "reader", "permissions": "write" })).await;
    assert!(reader["apiKey"].as_str().unwrap().starts_with("sc_"));
    let keys = ok(&c, "list_api_keys", json!({})).await;
    assert!(!keys.to_string().contains(reader["apiKey"].as_str().unwrap()));
    // Narrowed in place: the same key string, now read-only, expiring, then not.
    let expiry = (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339();
    let narrowed = ok(&c, "update_api_key", json!({ "id": reader["id"], "permissions": "read", "expiresAt": expiry })).await;
    assert_eq!((narrowed["permissions"].as_str(), narrowed["expiresAt"].is_string()), (Some("read"), true), "{narrowed}");
    let reader_key = reader["apiKey"].as_str().unwrap();
    let (s, denied) = srv.post("/api/v1/secrets", reader_key, json!({ "name": "NOPE", "value": "v" })).await;
    assert_eq!((s, denied["code"].as_str()), (403, Some("SCOPE_DENIED")), "{denied}");
    assert_eq!(srv.get("/api/v1/secrets", reader_key).await.0, 200);
    let renamed_key = ok(&c, "update_api_key", json!({ "id": reader["id"], "name": "script" })).await;
    assert_eq!((renamed_key["name"].as_str(), renamed_key["expiresAt"].is_string()), (Some("script"), true), "absent keeps the expiry");
    let forever = ok(&c, "update_api_key", json!({ "id": reader["id"], "expiresAt": null })).await;
    assert!(forever["expiresAt"].is_null(), "null clears the expiry: {forever}");
    assert_eq!(err_code(&c, "update_api_key", json!({ "id": reader["id"], "permissions": "root" })).await, "INVALID_REQUEST");
    // A leaked key is replaced: the old one stops at once, the new one works.
    let renewed = ok(&c, "regenerate_api_key", json!({ "id": reader["id"] })).await;
    assert_eq!((renewed["id"].clone(), renewed["permissions"].clone()), (reader["id"].clone(), json!("read")));
    assert_eq!(srv.get("/api/v1/secrets", reader["apiKey"].as_str().unwrap()).await.0, 401);
    assert_eq!(srv.get("/api/v1/secrets", renewed["apiKey"].as_str().unwrap()).await.0, 200);
    let revoked = ok(&c, "revoke_api_key", json!({ "id": reader["id"] })).await;
    assert_eq!(revoked["revoked"], true);
    assert_eq!(ok(&c, "delete_project", json!({ "id": project["id"] })).await["deleted"], true);

    // Resources show metadata, never values.
    let secrets = c.read_resource(ReadResourceRequestParams::new("latchkey://secrets")).await.unwrap();
    let text = format!("{:?}", secrets.contents);
    assert!(text.contains("OPENAI_API_KEY") && !text.contains("rotated"));
    let one = c.read_resource(ReadResourceRequestParams::new("latchkey://secrets/OPENAI_API_KEY")).await.unwrap();
    assert!(format!("{:?}", one.contents).contains("history"));
    let templates = c.list_all_resource_templates().await.unwrap();
    assert!(templates.iter().any(|t| t.uri_template == "latchkey://secrets/{name}{?projectId,environment}"));
    // A secret filed under a project and an environment, by the template's query.
    let filed = ok(&c, "create_project", json!({ "name": "filed" })).await;
    let pid = filed["id"].as_str().unwrap();
    ok(&c, "set_secret", json!({ "name": "DB_URL", "value": "filed-value", "projectId": pid, "environment": "production" })).await;
    let uri = format!("latchkey://secrets/DB_URL?projectId={pid}&environment=production");
    let shown = c.read_resource(ReadResourceRequestParams::new(uri)).await.unwrap();
    let text = format!("{:?}", shown.contents);
    assert!(text.contains(pid) && text.contains("history") && !text.contains("filed-value"), "{text}");
    for wrong in ["latchkey://secrets/DB_URL", &format!("latchkey://secrets/DB_URL?projectId={pid}")] {
        assert!(c.read_resource(ReadResourceRequestParams::new(wrong)).await.is_err(), "{wrong} names no secret");
    }
    let misspelt =
        c.read_resource(ReadResourceRequestParams::new(format!("latchkey://secrets/DB_URL?project={pid}&environment=production"))).await;
    assert!(format!("{misspelt:?}").contains("INVALID_REQUEST"), "an unknown query key is refused: {misspelt:?}");
    ok(&c, "delete_secret", json!({ "name": "DB_URL", "projectId": pid, "environment": "production" })).await;
    ok(&c, "delete_project", json!({ "id": pid })).await;
    assert!(c.read_resource(ReadResourceRequestParams::new("latchkey://audit/recent")).await.is_ok());

    // Another tenant's key acts only for that tenant.
    let other = srv.signup(&unique("other")).await;
    let intruder = http_client(&srv, Some(&other)).await;
    assert_eq!(err_code(&intruder, "get_secret", json!({ "id": id })).await, "SECRET_NOT_FOUND");
    assert_eq!(err_code(&intruder, "delete_secret", json!({ "id": id })).await, "SECRET_NOT_FOUND");
    assert_eq!(ok(&intruder, "list_secrets", json!({})).await["count"], 0);
    intruder.cancel().await.ok();

    // The audit trail names the front and the key.
    let audit = ok(&c, "query_audit", json!({ "action": "secret.read", "limit": 100 })).await;
    let fronts: Vec<&str> = audit["logs"].as_array().unwrap().iter().map(|l| l["front"].as_str().unwrap()).collect();
    assert!(fronts.contains(&"mcp") && fronts.contains(&"rest"), "{fronts:?}");
    assert!(!audit.to_string().contains(&canary));
    assert_eq!(ok(&c, "delete_secret", json!({ "name": "OPENAI_API_KEY" })).await["deleted"], true);
    c.cancel().await.ok();
}

#[tokio::test]
async fn mcp_story_over_http_on_sqlite() {
    story_over_http(Backend::Sqlite).await;
}

#[tokio::test]
async fn mcp_story_over_http_on_postgres() {
    story_over_http(Backend::Postgres).await;
}

async fn raw_mcp(srv: &Server, headers: &[(&str, &str)], body: Value) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = srv.http.post(srv.url("/mcp")).header("accept", "application/json, text/event-stream").json(&body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let h = resp.headers().clone();
    let text = resp.text().await.unwrap();
    (status, h, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn initialize(version: &str) -> Value {
    json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": { "protocolVersion": version, "capabilities": {}, "clientInfo": { "name": "raw", "version": "1" } } })
}

#[tokio::test]
async fn http_guard_versions_and_credentials() {
    let srv = Server::start(Backend::Sqlite).await;
    // Today's clients negotiate their own revision.
    for version in ["2025-06-18", "2025-11-25"] {
        let (s, _, body) = raw_mcp(&srv, &[], initialize(version)).await;
        assert_eq!((s, body["result"]["protocolVersion"].as_str()), (200, Some(version)), "{body}");
    }
    // DNS rebinding: foreign Origin or Host is refused before anything else.
    let (s, _, _) = raw_mcp(&srv, &[("origin", "http://evil.example")], initialize("2025-06-18")).await;
    assert_eq!(s, 403);
    let (s, _, _) = raw_mcp(&srv, &[("host", "evil.example")], initialize("2025-06-18")).await;
    assert_eq!(s, 403);
    let (s, _, _) = raw_mcp(&srv, &[("origin", "http://localhost:5173")], initialize("2025-06-18")).await;
    assert_eq!(s, 200, "loopback origins are fine");

    // Without a credential, anything but signup and public resources is 401.
    let get = json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": { "name": "list_secrets", "arguments": {} } });
    let (s, h, _) = raw_mcp(&srv, &[("mcp-protocol-version", "2025-06-18")], get.clone()).await;
    assert_eq!(s, 401);
    assert!(h.contains_key("www-authenticate"));
    let read = json!({ "jsonrpc": "2.0", "id": 3, "method": "resources/read", "params": { "uri": "latchkey://secrets" } });
    assert_eq!(raw_mcp(&srv, &[], read).await.0, 401);
    let (s, _, _) = raw_mcp(&srv, &[("authorization", "Bearer sc_free_bogus")], get.clone()).await;
    assert_eq!(s, 401, "a bad key is refused, not downgraded to anonymous");

    // A session id is never a credential: tenant B's key with whatever session
    // header tenant A's client sent still acts as B.
    let a = srv.signup(&unique("sess-a")).await;
    let b = srv.signup(&unique("sess-b")).await;
    let (_, made) = srv.post("/api/v1/secrets", &a, json!({ "name": "A_ONLY", "value": "a-secret" })).await;
    let a_id = made["id"].as_str().unwrap();
    let bearer_a = format!("Bearer {a}");
    let (_, h, _) = raw_mcp(&srv, &[("authorization", &bearer_a)], initialize("2025-06-18")).await;
    let session = h.get("mcp-session-id").and_then(|v| v.to_str().ok()).unwrap_or("fabricated-session").to_owned();
    let bearer_b = format!("Bearer {b}");
    let read_a =
        json!({ "jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": { "name": "get_secret", "arguments": { "id": a_id } } });
    let (s, _, body) =
        raw_mcp(&srv, &[("authorization", &bearer_b), ("mcp-session-id", &session), ("mcp-protocol-version", "2025-06-18")], read_a).await;
    assert!(s == 404 || body["result"]["isError"] == true, "B must not read A's secret through A's session: {s} {body}");
    assert!(!body.to_string().contains("a-secret"));
}

/// The common `tools/call` is answered without rmcp's per-request service
/// (src/mcp/direct.rs); anything that path does not take goes through rmcp.
/// An allowed `Origin` is one such thing and changes nothing else, so every
/// call here is sent both ways, for every revision before 2026-07-28 and none,
/// and the two answers must agree to the byte: successes, domain failures,
/// arguments that do not fit, an unknown tool, a refused write, and a body
/// over rmcp's 4 MiB (which this server lets through when values may be 1 MiB).
/// On both databases: their errors and their answers' shapes may differ.
async fn tool_calls_answer_the_same_both_ways(backend: Backend) {
    let srv = Server::start_with(Opts::new(backend).env("LATCHKEY_MAX_VALUE_BYTES", "1048576")).await;
    let key = srv.signup(&unique("direct")).await;
    let (_, made) = srv.post("/api/v1/secrets", &key, json!({ "name": "DIRECT", "value": "dir-value", "tags": ["x"] })).await;
    let id = made["id"].as_str().unwrap().to_owned();
    let call = |id: Value, name: &str, arguments: Value| json!({ "jsonrpc": "2.0", "id": id, "method": "tools/call", "params": { "name": name, "arguments": arguments } });
    let bodies = [
        call(json!(1), "get_secret", json!({ "id": id })),
        call(json!("str-id"), "get_secret", json!({ "name": "DIRECT" })),
        call(json!(3), "get_secret", json!({ "id": "00000000-0000-4000-8000-000000000000" })),
        call(json!(4), "get_secret", json!({ "id": 5 })),
        call(json!(5), "no_such_tool", json!({})),
        call(json!(6), "list_secrets", json!({ "tag": "x" })),
        call(json!(7), "set_secret", json!({ "name": "DIRECT", "value": "other", "expectedVersion": 7 })),
        json!({ "jsonrpc": "2.0", "id": 8, "method": "tools/call", "params": { "arguments": {} } }),
        call(json!(9), "get_secret", json!({ "name": "N".repeat(4_300_000) })),
        // Shapes the short parse leaves to rmcp (src/mcp/direct.rs, plain_call).
        call(json!(10.0), "get_secret", json!({ "id": id })),
        json!({ "jsonrpc": "2.0", "id": 11, "method": "tools/call", "params": { "_meta": { "progressToken": "p" }, "name": "get_secret", "arguments": { "id": id } } }),
        json!({ "jsonrpc": "2.0", "id": 12, "method": "tools/call", "params": { "name": "get_secret", "arguments": { "id": id } }, "extra": true }),
        // Parameters that flatten a vault request type (src/mcp/params.rs).
        call(json!(13), "list_secret_versions", json!({ "name": "DIRECT", "limit": 1 })),
        call(json!(14), "update_project", json!({ "id": "no-such-project", "title": "x" })),
        call(json!(15), "update_secret_metadata", json!({ "id": id, "value": "not-here" })),
    ];
    let bearer = format!("Bearer {key}");
    let send = async |version: Option<&str>, origin: Option<&str>, body: &Value| {
        let mut req = srv
            .http
            .post(srv.url("/mcp"))
            .header("accept", "application/json, text/event-stream")
            .header("authorization", &bearer)
            .json(body);
        if let Some(v) = version {
            req = req.header("mcp-protocol-version", v);
        }
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let header = |name: &str| resp.headers().get(name).map(|v| v.to_str().unwrap().to_owned());
        let (content_type, cache_control) = (header("content-type"), header("cache-control"));
        (status, content_type, cache_control, resp.text().await.unwrap())
    };
    let mut statuses = Vec::new();
    for version in [None, Some("2024-11-05"), Some("2025-03-26"), Some("2025-06-18"), Some("2025-11-25")] {
        for body in &bodies {
            let direct = send(version, None, body).await;
            let through_rmcp = send(version, Some("http://localhost:5173"), body).await;
            assert_eq!(direct, through_rmcp, "{version:?} {:.300}", body.to_string());
            assert_eq!(direct.2.as_deref(), Some("no-store"), "no cache may keep a tool's answer");
            statuses.push(direct.0);
        }
    }
    let expected: Vec<u16> = bodies.iter().map(|b| if b["id"] == 9 { 413 } else { 200 }).collect();
    assert_eq!(statuses, expected.repeat(5), "every call got an answer; the oversized one rmcp's 413");
    let (_, read) = send(Some("2025-06-18"), None, &bodies[0]).await.3.parse::<Value>().map(|v| ((), v)).unwrap();
    assert_eq!(read["result"]["structuredContent"]["value"], "dir-value");
    let (_, after) = srv.get(&format!("/api/v1/secrets/{id}"), &key).await;
    assert_eq!(after["version"], 1, "the refused write changed nothing");
}

#[tokio::test]
async fn tool_calls_answer_the_same_on_the_direct_path_and_through_rmcp_on_sqlite() {
    tool_calls_answer_the_same_both_ways(Backend::Sqlite).await;
}

#[tokio::test]
async fn tool_calls_answer_the_same_on_the_direct_path_and_through_rmcp_on_postgres() {
    tool_calls_answer_the_same_both_ways(Backend::Postgres).await;
}

/// A tool that names a secret refuses arguments it does not know and an id
/// that contradicts a name, instead of acting on a secret the agent did not
/// mean: `env` for `environment` used to delete the default environment's
/// secret of that name. Nothing is deleted or changed by a refused call.
#[tokio::test]
async fn a_misnamed_target_argument_is_refused_not_ignored() {
    let srv = Server::start(Backend::Sqlite).await;
    let key = srv.signup(&unique("target")).await;
    let (_, plain) = srv.post("/api/v1/secrets", &key, json!({ "name": "DB", "value": "default-env" })).await;
    let (_, prod) = srv.post("/api/v1/secrets", &key, json!({ "name": "DB", "value": "prod-env", "environment": "prod" })).await;
    let (_, other) = srv.post("/api/v1/secrets", &key, json!({ "name": "OTHER", "value": "other" })).await;
    let c = http_client(&srv, Some(&key)).await;
    for (tool, args) in [
        ("delete_secret", json!({ "name": "DB", "env": "prod" })),
        ("delete_secret", json!({ "id": other["id"], "name": "DB" })),
        ("get_secret", json!({ "name": "DB", "env": "prod" })),
        ("update_secret_metadata", json!({ "name": "DB", "value": "not-here", "description": "d" })),
        ("get_project", json!({ "id": other["id"], "force": true })),
        ("revoke_api_key", json!({ "id": other["id"], "all": true })),
    ] {
        assert_eq!(err_code(&c, tool, args.clone()).await, "INVALID_REQUEST", "{tool} {args}");
    }
    for (secret, value) in [(&plain, "default-env"), (&prod, "prod-env"), (&other, "other")] {
        let (s, read) = srv.get(&format!("/api/v1/secrets/{}", secret["id"].as_str().unwrap()), &key).await;
        assert_eq!((s, read["value"].as_str(), read["description"].as_str()), (200, Some(value), None), "{read}");
    }
    // The arguments each tool does know still work, its own beside the target's.
    assert_eq!(ok(&c, "get_secret", json!({ "name": "DB", "environment": "prod", "version": 1 })).await["value"], "prod-env");
    assert_eq!(ok(&c, "delete_secret", json!({ "name": "DB", "environment": "prod" })).await["deleted"], true);
}

/// `set_secret` racing a delete of the same name never fails for want of the
/// secret: whichever lands first, the value ends up stored or deleted, as if
/// the two had run one after the other.
#[tokio::test]
async fn set_secret_racing_a_delete_stores_or_loses_cleanly() {
    let srv = Server::start(Backend::Sqlite).await;
    let key = srv.signup(&unique("race")).await;
    let c = http_client(&srv, Some(&key)).await;
    let mut recreated = 0;
    for round in 0..60 {
        // A deleted secret keeps its name until purged: one name per round.
        let name = format!("RACY-{round}");
        let (_, made) = srv.post("/api/v1/secrets", &key, json!({ "name": name, "value": "old" })).await;
        let path = format!("/api/v1/secrets/{}", made["id"].as_str().unwrap());
        let value = format!("new-{round}");
        let (deleted, set) = tokio::join!(srv.delete(&path, &key), call(&c, "set_secret", json!({ "name": name, "value": value })));
        assert_eq!(deleted.0, 200);
        let (s, list) = srv.get(&format!("/api/v1/secrets?search={name}"), &key).await;
        if set.is_error == Some(true) {
            // The delete came first: the deleted secret holds the name (restorable), and says so.
            let text = &set.content[0].as_text().expect("text").text;
            assert!(text.contains("SECRET_EXISTS"), "round {round}: {text}");
            assert_eq!(list["count"], 0, "round {round}: {list}");
            continue;
        }
        let created = set.structured_content.as_ref().unwrap()["created"] == true;
        assert_eq!(s, 200);
        if created {
            recreated += 1;
            let id = list["secrets"][0]["id"].as_str().expect("the re-created secret is there").to_owned();
            let (_, read) = srv.get(&format!("/api/v1/secrets/{id}"), &key).await;
            assert_eq!(read["value"], value.as_str());
            srv.delete(&format!("/api/v1/secrets/{id}"), &key).await;
        } else {
            assert_eq!(list["count"], 0, "round {round}: updated, then deleted: {list}");
        }
    }
    eprintln!("{recreated} of 60 rounds re-created the secret");
}

#[tokio::test]
async fn in_process_over_a_duplex_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let store_args = latchkey::config::StoreArgs { data_dir: dir.path().to_path_buf(), database_url: None };
    let vault = latchkey::config::open_vault(&store_args, &latchkey::config::PolicyArgs::defaults()).await.unwrap();
    let session = vault.open_session(None, "local", latchkey::vault::Origin::new(latchkey::vault::Front::Mcp)).await.unwrap();
    let (server_end, client_end) = tokio::io::duplex(64 * 1024);
    let server = latchkey::mcp::LatchkeyMcp::for_session(vault.clone(), session, latchkey::mcp::Workdir::here(&[]).unwrap());
    tokio::spawn(async move {
        let running = server.serve(server_end).await.unwrap();
        let _ = running.waiting().await;
    });
    let c: Client = ().serve(client_end).await.unwrap();
    // The HTTP tools and the two local-only ones (src/mcp/run.rs).
    assert_eq!(tool_names(&c).await.len(), 45);
    let set = ok(&c, "set_secret", json!({ "name": "LOCAL", "value": "in-process" })).await;
    assert_eq!(set["created"], true);
    assert_eq!(ok(&c, "get_secret", json!({ "name": "LOCAL" })).await["value"], "in-process");
    let me = ok(&c, "whoami", json!({})).await;
    assert_eq!(
        (me["tenantId"].as_str(), me["permissions"].as_str(), me["plan"].as_str()),
        (Some("local"), Some("admin"), Some("unlimited"))
    );
    c.cancel().await.ok();
}

/// Stdout carries only JSON-RPC, and a failing tool leaves the process alive.
#[tokio::test]
async fn stdio_hygiene_and_shared_database() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = common::mcp_stdio(dir.path()).env("LATCHKEY_LOG", "debug").spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    // Lines from stdout, each checked to be JSON-RPC, handed over by id.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let v: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("non-JSON-RPC line on stdout: {line}"));
            assert_eq!(v["jsonrpc"], "2.0", "{line}");
            if tx.send(v).is_err() {
                break;
            }
        }
    });
    let mut send_and_wait = |msgs: Vec<Value>| {
        let expected = msgs.iter().filter(|m| m.get("id").is_some()).count();
        for m in &msgs {
            writeln!(stdin, "{m}").unwrap();
        }
        stdin.flush().unwrap();
        expected
    };
    let mut by_id = std::collections::HashMap::new();
    // Requests in one batch may be answered in any order; a later batch waits for the earlier.
    for batch in [
        vec![initialize("2025-06-18"), json!({ "jsonrpc": "2.0", "method": "notifications/initialized" })],
        vec![
            json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": { "name": "get_secret", "arguments": { "name": "MISSING" } } }),
            json!({ "jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": { "name": "set_secret", "arguments": { "name": "STDIO", "value": "over-stdio" } } }),
            json!({ "jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": { "name": "no_such_tool", "arguments": {} } }),
        ],
        vec![
            json!({ "jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": { "name": "get_secret", "arguments": { "name": "STDIO" } } }),
            json!({ "jsonrpc": "2.0", "id": 6, "method": "tools/call", "params": { "name": "create_api_key", "arguments": { "name": "for-serve", "permissions": "read" } } }),
        ],
    ] {
        let expected = send_and_wait(batch);
        for _ in 0..expected {
            let v = tokio::time::timeout(std::time::Duration::from_secs(60), rx.recv())
                .await
                .expect("answer within 60 s")
                .expect("stdout open");
            by_id.insert(v["id"].as_i64().unwrap(), v);
        }
    }
    assert_eq!(by_id[&2]["result"]["isError"], true, "a domain failure is a tool result");
    assert_eq!(by_id[&3]["result"]["structuredContent"]["created"], true);
    assert!(by_id[&4].get("error").is_some(), "an unknown tool is a protocol error");
    assert_eq!(by_id[&5]["result"]["structuredContent"]["value"], "over-stdio", "still alive after failures");
    assert!(child.try_wait().unwrap().is_none());
    drop(stdin);
    let status = tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "exits cleanly when the client hangs up");

    // `serve` on the same data dir sees what stdio wrote, through a key stdio issued.
    let key = by_id[&6]["result"]["structuredContent"]["apiKey"].as_str().expect("stdio issued a key").to_owned();
    let srv = Server::start_with(Opts { data_dir: Some(dir.path().to_path_buf()), ..Opts::new(Backend::Sqlite) }).await;
    let (s, list) = srv.get("/api/v1/secrets?search=STDIO", &key).await;
    assert_eq!((s, list["count"].as_i64()), (200, Some(1)), "{list}");
    let (_, audit) = srv.call("GET", "/api/v1/audit?action=secret.create", Some(&key), None).await;
    assert_eq!(audit["code"], "SCOPE_DENIED", "a read key issued over stdio stays a read key");
}

/// A project-scoped admin key (an agent trusted with one project) manages the
/// keys of that project and nothing else: the tenant's own unscoped key, keys
/// of other projects and keys that reach further than it are not there for
/// it (404), so it can neither regenerate the owner's key and take its place,
/// nor revoke or narrow it. It cannot read the tenant-wide audit trail. REST
/// and MCP alike.
#[tokio::test]
async fn a_project_scoped_admin_manages_only_keys_within_its_projects() {
    let srv = Server::start(Backend::Sqlite).await;
    let owner = srv.signup(&unique("scoped-admin")).await;
    let (_, listed) = srv.get("/api/v1/api-keys", &owner).await;
    let root = listed["apiKeys"][0]["id"].as_str().unwrap().to_owned();
    let project =
        async |name: &str| srv.post("/api/v1/projects", &owner, json!({ "name": name })).await.1["id"].as_str().unwrap().to_owned();
    let (a, b) = (project("alpha").await, project("beta").await);
    let key = async |name: &str, permissions: &str, scope: Value| {
        let (s, k) = srv.post("/api/v1/api-keys", &owner, json!({ "name": name, "permissions": permissions, "projectScope": scope })).await;
        assert_eq!(s, 201, "{k}");
        (k["id"].as_str().unwrap().to_owned(), k["apiKey"].as_str().unwrap().to_owned())
    };
    let (scoped_id, scoped) = key("alpha-admin", "admin", json!([a])).await;
    let (in_a, _) = key("alpha-reader", "read", json!([a])).await;
    let (in_b, _) = key("beta-reader", "read", json!([b])).await;
    let (wide, _) = key("both-reader", "read", json!([a, b])).await;
    let (unscoped, _) = key("tenant-reader", "read", json!([])).await;

    let (s, seen) = srv.get("/api/v1/api-keys", &scoped).await;
    assert_eq!(s, 200, "{seen}");
    let mut ids: Vec<&str> = seen["apiKeys"].as_array().unwrap().iter().map(|k| k["id"].as_str().unwrap()).collect();
    ids.sort();
    let mut expected = vec![scoped_id.as_str(), in_a.as_str()];
    expected.sort();
    assert_eq!((ids, seen["count"].as_u64()), (expected, Some(2)), "the scoped admin's list: {seen}");

    for target in [&root, &in_b, &wide, &unscoped] {
        let regenerate = srv.post(&format!("/api/v1/api-keys/{target}/regenerate"), &scoped, json!({})).await;
        let revoke = srv.delete(&format!("/api/v1/api-keys/{target}"), &scoped).await;
        let narrow = srv.put(&format!("/api/v1/api-keys/{target}"), &scoped, json!({ "projectScope": [a] })).await;
        for (what, (s, body)) in [("regenerate", regenerate), ("revoke", revoke), ("narrow", narrow)] {
            assert_eq!((s, body["code"].as_str()), (404, Some("NOT_FOUND")), "{what} {target}: {body}");
        }
    }
    let (s, body) = srv.get("/api/v1/audit", &scoped).await;
    assert_eq!((s, body["code"].as_str()), (403, Some("SCOPE_DENIED")), "{body}");

    let c = http_client(&srv, Some(&scoped)).await;
    assert_eq!(err_code(&c, "revoke_api_key", json!({ "id": root })).await, "NOT_FOUND");
    assert_eq!(err_code(&c, "update_api_key", json!({ "id": in_b, "projectScope": [a] })).await, "NOT_FOUND");
    assert_eq!(err_code(&c, "update_api_key", json!({ "id": in_a, "projectScope": [] })).await, "SCOPE_DENIED");
    assert_eq!(err_code(&c, "query_audit", json!({})).await, "SCOPE_DENIED");
    assert_eq!(ok(&c, "list_api_keys", json!({})).await["count"], 2);
    // Within its reach it is an admin: it regenerates and revokes its project's key.
    assert_eq!(srv.post(&format!("/api/v1/api-keys/{in_a}/regenerate"), &scoped, json!({})).await.0, 200);
    assert_eq!(ok(&c, "revoke_api_key", json!({ "id": in_a })).await["id"], in_a.as_str());
    c.cancel().await.unwrap();

    // Nothing beyond its reach changed: the owner's key works, and it sees every key.
    let (s, all) = srv.get("/api/v1/api-keys", &owner).await;
    assert_eq!((s, all["count"].as_u64()), (200, Some(6)), "{all}");
    let (_, audit) = srv.get("/api/v1/audit?action=apikey.regenerate", &owner).await;
    let done: Vec<&Value> = audit["logs"].as_array().unwrap().iter().filter(|e| e["outcome"] == "success").collect();
    assert_eq!(done.len(), 1, "only the in-reach regeneration happened: {audit}");
    assert_eq!(done[0]["resourceId"], in_a.as_str());
    assert_eq!(audit["total"], 5, "the four refused attempts are on record too: {audit}");
}

/// A `latchkey mcp` session acting with a tenant's key pays for its calls as
/// that key's HTTP requests do: on the free plan (100 requests a minute) a
/// burst of 400 calls runs into 429's RATE_LIMITED, as a tool result. The
/// burst is sized so that no machine speed can hide that: the answers must
/// come within 120 s, in which the rate refills at most 201 calls, so at
/// least 99 of the 400 are refused if calls are charged at all.
#[tokio::test]
async fn stdio_calls_are_charged_to_the_tenants_plan() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start_with(
        Opts { data_dir: Some(dir.path().to_path_buf()), ..Opts::new(Backend::Sqlite) }.env("LATCHKEY_DEFAULT_PLAN", "free"),
    )
    .await;
    let key = srv.signup(&unique("stdio-free")).await;
    assert_eq!(srv.stop(), Some(0));

    let mut child = common::mcp_stdio(dir.path()).env("LATCHKEY_API_KEY", &key).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines =
        vec![initialize("2025-06-18").to_string(), json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }).to_string()];
    const CALLS: i64 = 400;
    for id in 2..2 + CALLS {
        lines.push(
            json!({ "jsonrpc": "2.0", "id": id, "method": "tools/call", "params": { "name": "whoami", "arguments": {} } }).to_string(),
        );
    }
    writeln!(stdin, "{}", lines.join("\n")).unwrap();
    stdin.flush().unwrap();
    let answers = tokio::task::spawn_blocking(move || {
        let mut codes = std::collections::BTreeMap::new();
        for line in BufReader::new(stdout).lines().take(1 + CALLS as usize) {
            let v: Value = serde_json::from_str(&line.unwrap()).unwrap();
            let id = v["id"].as_i64().unwrap();
            if id == 1 {
                continue;
            }
            let code = match v["result"]["isError"].as_bool() {
                Some(true) => {
                    let text = v["result"]["content"][0]["text"].as_str().unwrap();
                    serde_json::from_str::<Value>(text).unwrap()["code"].as_str().unwrap().to_owned()
                }
                _ => "OK".to_owned(),
            };
            codes.insert(id, code);
        }
        codes
    });
    let codes = tokio::time::timeout(std::time::Duration::from_secs(120), answers).await.expect("answers within 120 s").unwrap();
    drop(stdin);
    let _ = tokio::task::spawn_blocking(move || child.wait()).await;
    assert_eq!(codes.len(), CALLS as usize);
    let limited = codes.values().filter(|c| *c == "RATE_LIMITED").count();
    assert!(codes.values().all(|c| c == "OK" || c == "RATE_LIMITED"), "{codes:?}");
    // 100 at once (less any the session's start paid), then one every 0.6 s:
    // at most 100 + 201 pass within the 120 s, and the plan's minute does.
    let served = CALLS as usize - limited;
    assert!(
        limited >= 99 && served >= 90,
        "a burst of {CALLS} on a plan of 100 a minute: {served} served, {limited} limited (none would mean uncharged)"
    );
}

/// A JSON-RPC id, a tool name, a method or a URI is the caller's text: one
/// holding a newline and a made-up log line must not start a line of the
/// server's log (escaped, or not logged at all), whichever path answers it:
/// the direct path, rmcp, or the anonymous guard. The log runs at debug.
#[tokio::test]
async fn a_newline_in_a_request_forges_no_log_line() {
    const FORGED: &str = "1999-12-31T23:59:59.000000Z ERROR latchkey: forged by the caller";
    let srv = Server::start_with(Opts::new(Backend::Sqlite).env("LATCHKEY_LOG", "debug")).await;
    let key = srv.signup(&unique("forge")).await;
    let bearer = format!("Bearer {key}");
    let evil = |s: &str| format!("{s}\n{FORGED}\n");
    let message = |method: &str, params: Value| json!({ "jsonrpc": "2.0", "id": evil("id"), "method": method, "params": params });
    let bodies = [
        message("tools/call", json!({ "name": evil("no_such_tool"), "arguments": {} })),
        message("tools/call", json!({ "name": "get_secret", "arguments": { "name": evil("NAME") } })),
        message("tools/call", json!({ "name": "get_secret", "arguments": { "id": 5 } })),
        message("tools/list", json!({})),
        message("resources/read", json!({ "uri": evil("latchkey://secrets/X") })),
        message(&evil("no/such/method"), json!({})),
    ];
    let mut answered = 0;
    for body in &bodies {
        for (auth, origin) in [(Some(bearer.as_str()), None), (Some(bearer.as_str()), Some("http://localhost:5173")), (None, None)] {
            let mut headers = vec![("mcp-protocol-version", "2025-06-18")];
            headers.extend(auth.map(|a| ("authorization", a)));
            headers.extend(origin.map(|o| ("origin", o)));
            let (status, _, _) = raw_mcp(&srv, &headers, body.clone()).await;
            assert!((200..500).contains(&status), "{status} for {body}");
            answered += 1;
        }
    }
    assert_eq!(answered, 18);
    let log = srv.stderr();
    assert!(!log.is_empty(), "the server's stderr is captured");
    let forged: Vec<&str> =
        log.lines().filter(|l| l.starts_with("1999-12-31") || (l.contains("forged by the caller") && !l.contains("\\n"))).collect();
    assert!(forged.is_empty(), "a caller's newline started a log line: {forged:#?}");
}

/// A `Host` with userinfo names another host than it seems to: rmcp refuses
/// it, and the direct path leaves it to rmcp rather than answer it.
#[tokio::test]
async fn a_host_with_userinfo_is_not_answered_on_the_direct_path() {
    let srv = Server::start(Backend::Sqlite).await;
    let key = srv.signup(&unique("userinfo")).await;
    let bearer = format!("Bearer {key}");
    let port = srv.base.rsplit(':').next().unwrap().to_owned();
    let whoami = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": { "name": "whoami", "arguments": {} } });
    let (s, _, body) = raw_mcp(&srv, &[("authorization", &bearer)], whoami.clone()).await;
    assert_eq!((s, body["result"]["structuredContent"].is_object()), (200, true), "{body}");
    for host in [format!("127.0.0.1:{port}@evil.example"), format!("evil.example@127.0.0.1:{port}")] {
        let (s, _, body) = raw_mcp(&srv, &[("authorization", &bearer), ("host", &host)], whoami.clone()).await;
        assert!((400..500).contains(&s) && body.get("result").is_none(), "{host}: {s} {body}");
    }
}
