//! Environments, promotion, `.env` and templates, as a team uses them: a
//! project starts with development, staging and production and takes custom
//! ones; a secret must name one of its project's; staging is promoted to
//! production (a dry run first, then in one transaction, masked and
//! use_only secrets included); awkward values go out as dotenv text and come
//! back in exactly; a bad import stores nothing; a template tells which
//! names an environment lacks. On SQLite and PostgreSQL, through the real
//! server, over REST, MCP and SecretCarousel's Python SDK.

mod common;

use std::collections::BTreeMap;

use common::mcp_client::{call, connect as mcp_client, tool};
use common::{Backend, Server, python, unique};
use serde_json::{Value, json};

fn code(b: &Value) -> &str {
    b["code"].as_str().unwrap_or_default()
}

fn names(v: &Value) -> Vec<String> {
    let mut n: Vec<String> = v.as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_owned()).collect();
    n.sort();
    n
}

async fn project(srv: &Server, key: &str) -> (String, Value) {
    let (s, b) = srv.post("/api/v1/projects", key, json!({ "name": unique("proj") })).await;
    assert_eq!(s, 201, "{b}");
    (b["id"].as_str().unwrap().to_owned(), b)
}

async fn put_secret(srv: &Server, key: &str, project: &str, env: &str, name: &str, value: &str, extra: Value) -> String {
    let mut body = json!({ "name": name, "value": value, "projectId": project, "environment": env });
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    let (s, b) = srv.post("/api/v1/secrets", key, body).await;
    assert_eq!(s, 201, "{name}: {b}");
    b["id"].as_str().unwrap().to_owned()
}

/// The environment's secrets as name → metadata.
async fn listed(srv: &Server, key: &str, project: &str, env: &str) -> BTreeMap<String, Value> {
    let (s, b) = srv.get(&format!("/api/v1/secrets?projectId={project}&environment={env}&limit=500"), key).await;
    assert_eq!(s, 200, "{b}");
    b["secrets"].as_array().unwrap().iter().map(|m| (m["name"].as_str().unwrap().to_owned(), m.clone())).collect()
}

/// The environment's values (reveal secrets), by name, through reads.
async fn values(srv: &Server, key: &str, project: &str, env: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (name, meta) in listed(srv, key, project, env).await {
        if meta["exposure"] != "reveal" {
            continue;
        }
        let (s, b) = srv.get(&format!("/api/v1/secrets/{}", meta["id"].as_str().unwrap()), key).await;
        assert_eq!(s, 200, "{b}");
        out.insert(name, b["value"].as_str().unwrap().to_owned());
    }
    out
}

async fn trail(srv: &Server, key: &str) -> Vec<Value> {
    let (s, b) = srv.get("/api/v1/audit?limit=500", key).await;
    assert_eq!(s, 200, "{b}");
    b["logs"].as_array().unwrap().clone()
}

fn count(trail: &[Value], action: &str) -> usize {
    trail.iter().filter(|e| e["action"] == action && e["outcome"] == "success").count()
}

async fn export(srv: &Server, key: &str, project: &str, env: &str) -> (u16, String, String) {
    let resp = srv
        .http
        .get(srv.url(&format!("/api/v1/secrets/export/env?projectId={project}&environment={env}")))
        .header("X-API-Key", key)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let ct = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    (status, ct, resp.text().await.unwrap())
}

async fn import_text(srv: &Server, key: &str, query: &str, text: &str) -> (u16, Value) {
    let resp = srv
        .http
        .post(srv.url(&format!("/api/v1/secrets/import?{query}")))
        .header("X-API-Key", key)
        .header("Content-Type", "text/plain")
        .body(text.to_owned())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, serde_json::from_str(&resp.text().await.unwrap()).unwrap_or(Value::Null))
}

/// Values no simple quoting survives.
fn awkward() -> Vec<(&'static str, &'static str)> {
    vec![
        ("PLAIN", "plain-value"),
        ("SINGLE", "it's"),
        ("DOUBLE", "say \"hi\""),
        ("BOTH", "both ' and \" quotes"),
        ("HASH", "a#b # not a comment"),
        ("EQUALS", "k=v=w"),
        ("NEWLINES", "line one\nline two\n\nline four"),
        ("CRLF", "dos\r\nline"),
        ("UNICODE", "ünïcødé 😀 中文"),
        ("SPACES", "  leading and trailing  "),
        ("BACKSLASH", "C:\\path\\to\\ and \\n not a newline \\"),
        ("DOLLAR", "$HOME ${HOME} $(whoami) `cmd`"),
        ("EMPTY", ""),
        ("TAB", "\tindented"),
    ]
}

async fn environments_story(backend: Backend) {
    let srv = Server::start(backend).await;
    let key = srv.signup(&unique("envs")).await;
    let other = srv.signup(&unique("envs-other")).await;

    // Defaults, custom, and the rule for secrets.
    let (pid, created) = project(&srv, &key).await;
    assert_eq!(names(&created["environments"]), ["development", "production", "staging"], "{created}");
    let envs_path = format!("/api/v1/projects/{pid}/environments");
    let (s, b) = srv.get(&envs_path, &key).await;
    assert_eq!((s, b["count"].as_u64()), (200, Some(3)), "{b}");
    let (s, b) = srv.post(&envs_path, &key, json!({ "name": "qa" })).await;
    assert_eq!((s, b["name"].as_str()), (201, Some("qa")), "{b}");
    let (s, b) = srv.post(&envs_path, &key, json!({ "name": "qa" })).await;
    assert_eq!((s, code(&b)), (409, "ALREADY_EXISTS"), "{b}");
    let (s, b) = srv.post(&envs_path, &key, json!({ "name": "b@d env" })).await;
    assert_eq!((s, code(&b)), (400, "INVALID_REQUEST"), "{b}");
    let (s, b) = srv.get(&envs_path, &other).await;
    assert_eq!(s, 404, "another tenant sees no project: {b}");
    let (s, b) = srv.get(&format!("/api/v1/projects/{pid}"), &key).await;
    assert_eq!(names(&b["environments"]), ["development", "production", "qa", "staging"], "{s} {b}");
    let (s, b) = srv.post("/api/v1/secrets", &key, json!({ "name": "X", "value": "x", "projectId": pid, "environment": "nope" })).await;
    assert_eq!((s, code(&b)), (400, "INVALID_REQUEST"), "{b}");
    let msg = b["message"].as_str().unwrap();
    assert!(msg.contains("development") && msg.contains("qa") && msg.contains("nope"), "{msg}");
    let (s, b) = srv.post("/api/v1/secrets", &key, json!({ "name": "FREE", "value": "x", "environment": "anything-goes" })).await;
    assert_eq!(s, 201, "a secret without a project keeps a free-form environment: {b}");
    let moved = put_secret(&srv, &key, &pid, "qa", "MOVER", "m", json!({})).await;
    let (s, b) = srv.put(&format!("/api/v1/secrets/{moved}"), &key, json!({ "environment": "nowhere" })).await;
    assert_eq!((s, code(&b)), (400, "INVALID_REQUEST"), "a move checks the environment too: {b}");
    let (s, b) = srv.delete(&format!("{envs_path}/qa"), &key).await;
    assert_eq!((s, code(&b)), (409, "CONFLICT"), "qa still holds MOVER: {b}");

    // Promote staging to production: a dry run, then for real.
    put_secret(&srv, &key, &pid, "staging", "API_URL", "https://staging.example", json!({})).await;
    put_secret(&srv, &key, &pid, "staging", "SAME", "same-value", json!({})).await;
    put_secret(&srv, &key, &pid, "staging", "HIDDEN", "use-only-value", json!({ "exposure": "use_only", "accessTier": "standard" })).await;
    put_secret(&srv, &key, &pid, "staging", "MASKED", "masked-value", json!({ "exposure": "masked", "secretType": "api-key" })).await;
    put_secret(&srv, &key, &pid, "production", "API_URL", "https://old.example", json!({})).await;
    put_secret(&srv, &key, &pid, "production", "SAME", "same-value", json!({})).await;
    let promote = json!({ "projectId": pid, "fromEnvironment": "staging", "toEnvironment": "production", "dryRun": true });
    let (s, plan) = srv.post("/api/v1/secrets/promote", &key, promote.clone()).await;
    assert_eq!(s, 200, "{plan}");
    assert_eq!(names(&plan["created"]), ["HIDDEN", "MASKED"], "{plan}");
    assert_eq!(names(&plan["skipped"]), ["API_URL"], "{plan}");
    assert_eq!(names(&plan["unchanged"]), ["SAME"], "{plan}");
    assert_eq!(plan["applied"], false, "{plan}");
    assert!(!plan.to_string().contains("staging.example") && !plan.to_string().contains("use-only-value"), "{plan}");
    assert_eq!(listed(&srv, &key, &pid, "production").await.len(), 2, "a dry run writes nothing");
    let mut apply = promote.clone();
    apply["dryRun"] = json!(false);
    apply["overwrite"] = json!(true);
    let (s, plan) = srv.post("/api/v1/secrets/promote", &key, apply).await;
    assert_eq!(s, 200, "{plan}");
    assert_eq!(names(&plan["created"]), ["HIDDEN", "MASKED"], "{plan}");
    assert_eq!(names(&plan["updated"]), ["API_URL"], "{plan}");
    assert_eq!(names(&plan["unchanged"]), ["SAME"], "{plan}");
    assert_eq!(plan["applied"], true, "{plan}");
    let prod = listed(&srv, &key, &pid, "production").await;
    assert_eq!(prod.keys().cloned().collect::<Vec<_>>(), ["API_URL", "HIDDEN", "MASKED", "SAME"]);
    assert_eq!(prod["HIDDEN"]["exposure"], "use_only", "{}", prod["HIDDEN"]);
    assert_eq!(prod["MASKED"]["exposure"], "masked", "{}", prod["MASKED"]);
    assert_eq!(prod["MASKED"]["secretType"], "api-key", "{}", prod["MASKED"]);
    let (s, b) = srv.get(&format!("/api/v1/secrets/{}", prod["API_URL"]["id"].as_str().unwrap()), &key).await;
    assert_eq!((s, b["value"].as_str()), (200, Some("https://staging.example")), "{b}");
    assert_eq!(b["version"], 2, "{b}");
    // The use_only copy holds the value: the proof is a verify, never a read.
    let (s, b) = srv
        .post(&format!("/api/v1/secrets/{}/verify", prod["HIDDEN"]["id"].as_str().unwrap()), &key, json!({ "candidate": "use-only-value" }))
        .await;
    if s == 200 {
        assert_eq!(b["match"], true, "{b}");
    }
    let t = trail(&srv, &key).await;
    assert!(count(&t, "secrets.promoted") >= 2, "dry run and apply are audited");
    assert!(
        t.iter().any(|e| e["action"] == "secret.use" && e["detail"]["mechanism"] == "promote" && e["detail"]["name"] == "HIDDEN"),
        "reading a source is a use"
    );
    let (s, b) = srv
        .post("/api/v1/secrets/promote", &key, json!({ "projectId": pid, "fromEnvironment": "staging", "toEnvironment": "staging" }))
        .await;
    assert_eq!((s, code(&b)), (400, "INVALID_REQUEST"), "{b}");
    let (s, b) = srv
        .post("/api/v1/secrets/promote", &key, json!({ "projectId": pid, "fromEnvironment": "staging", "toEnvironment": "nowhere" }))
        .await;
    assert_eq!((s, code(&b)), (400, "INVALID_REQUEST"), "{b}");

    // Awkward values out as dotenv text and back in, exactly.
    for (name, value) in awkward() {
        put_secret(&srv, &key, &pid, "development", name, value, json!({})).await;
    }
    let (s, ct, text) = export(&srv, &key, &pid, "development").await;
    assert_eq!(s, 200, "{text}");
    assert!(ct.starts_with("text/plain"), "{ct}");
    assert_eq!(latchkey::dotenv::parse(&text).expect("our parser reads the export").len(), awkward().len());
    let (s, plan) = import_text(&srv, &key, &format!("projectId={pid}&environment=qa"), &text).await;
    assert_eq!(s, 200, "{plan}");
    assert_eq!(plan["created"].as_array().unwrap().len(), awkward().len(), "{plan}");
    assert_eq!(plan["importedCount"], awkward().len(), "{plan}");
    let mut back = values(&srv, &key, &pid, "qa").await;
    back.remove("MOVER");
    let want: BTreeMap<String, String> = awkward().into_iter().map(|(n, v)| (n.to_owned(), v.to_owned())).collect();
    assert_eq!(back, want, "every value read back exactly");
    // The same text again: all unchanged.
    let (s, plan) =
        srv.post("/api/v1/secrets/import", &key, json!({ "projectId": pid, "environment": "qa", "content": text, "dryRun": true })).await;
    assert_eq!(s, 200, "{plan}");
    assert_eq!(plan["unchanged"].as_array().unwrap().len(), awkward().len(), "{plan}");
    // An import's new versions obey a secret's maxVersions as any write does.
    let kept = put_secret(&srv, &key, &pid, "qa", "KEEP_TWO", "v1", json!({ "maxVersions": 2 })).await;
    for v in ["v2", "v3", "v4"] {
        let (s, plan) = srv
            .post(
                "/api/v1/secrets/import",
                &key,
                json!({ "projectId": pid, "environment": "qa", "content": format!("KEEP_TWO={v}\n"), "overwrite": true }),
            )
            .await;
        assert_eq!((s, plan["updated"].clone()), (200, json!(["KEEP_TWO"])), "{plan}");
    }
    let (_, versions) = srv.get(&format!("/api/v1/secrets/{kept}/versions"), &key).await;
    let numbers: Vec<i64> = versions["versions"].as_array().unwrap().iter().map(|v| v["version"].as_i64().unwrap()).collect();
    assert_eq!(numbers, [4, 3], "{versions}");

    // A masked secret refuses the export, naming it; nothing is read.
    let (s, _, body) = export(&srv, &key, &pid, "production").await;
    assert_eq!(s, 403, "{body}");
    let b: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(code(&b), "EXPOSURE_DENIED", "{b}");
    assert!(b["message"].as_str().unwrap().contains("HIDDEN") || b["message"].as_str().unwrap().contains("MASKED"), "{b}");

    // A bad import stores nothing.
    let before_secrets = listed(&srv, &key, &pid, "development").await.len();
    let before_creates = count(&trail(&srv, &key).await, "secret.create");
    let bad = "GOOD_ONE=fine\nthis line has no equals\nSECRET_TEXT='sk_live_do_not_echo'\nBAD NAME=x\nUNCLOSED=\"never closed\n";
    let (s, b) = srv.post("/api/v1/secrets/import", &key, json!({ "projectId": pid, "environment": "development", "content": bad })).await;
    assert_eq!((s, code(&b)), (400, "INVALID_REQUEST"), "{b}");
    let lines: Vec<u64> = b["lines"].as_array().unwrap().iter().map(|l| l["line"].as_u64().unwrap()).collect();
    assert_eq!(lines, [2, 4, 5], "{b}");
    assert!(!b.to_string().contains("sk_live_do_not_echo") && !b.to_string().contains("no equals"), "{b}");
    assert_eq!(listed(&srv, &key, &pid, "development").await.len(), before_secrets, "nothing stored");
    let after = trail(&srv, &key).await;
    assert_eq!(count(&after, "secret.create"), before_creates, "no create audited");
    assert!(after.iter().any(|e| e["action"] == "secrets.imported" && e["outcome"] != "success"), "the failure is audited");
    let (s, b) = import_text(&srv, &key, &format!("projectId={pid}&environment=nope"), "A=1\n").await;
    assert_eq!((s, code(&b)), (400, "INVALID_REQUEST"), "{b}");

    // Templates.
    let tpl = format!("/api/v1/projects/{pid}/template");
    let (s, b) =
        srv.post(&tpl, &key, json!([{ "name": "DATABASE_URL", "description": "the primary database" }, { "name": "SENTRY_DSN" }])).await;
    assert_eq!((s, b["count"].as_u64()), (200, Some(2)), "{b}");
    let (s, b) = srv.post(&tpl, &key, json!({ "name": "OPTIONAL_FLAG", "required": false })).await;
    assert_eq!((s, b["count"].as_u64()), (200, Some(3)), "{b}");
    let (s, b) = srv.get(&format!("{tpl}/validate?environment=staging"), &key).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["valid"], false, "{b}");
    assert_eq!(
        b["missing"],
        json!([{ "name": "DATABASE_URL", "description": "the primary database" }, { "name": "SENTRY_DSN", "description": null }])
    );
    put_secret(&srv, &key, &pid, "staging", "DATABASE_URL", "postgres://x", json!({})).await;
    let (_, b) = srv.get(&format!("{tpl}/validate?environment=staging"), &key).await;
    assert_eq!(b["missing"], json!([{ "name": "SENTRY_DSN", "description": null }]), "{b}");
    let (s, b) = srv.delete(&format!("{tpl}/SENTRY_DSN"), &key).await;
    assert_eq!(s, 200, "{b}");
    let (_, b) = srv.get(&format!("{tpl}/validate?environment=staging"), &key).await;
    assert_eq!((b["valid"].as_bool(), b["missing"].as_array().map(Vec::len)), (Some(true), Some(0)), "{b}");
    let (s, b) = srv.get(&format!("{tpl}/validate?environment=nope"), &key).await;
    assert_eq!((s, code(&b)), (400, "INVALID_REQUEST"), "{b}");
    let (s, b) = srv.get(&tpl, &other).await;
    assert_eq!(s, 404, "{b}");

    // MCP.
    let mcp = mcp_client(&srv, &key).await;
    let plan = tool(&mcp, "promote_environment", json!({ "projectId": pid, "fromEnvironment": "development", "toEnvironment": "staging" }))
        .await
        .unwrap();
    assert_eq!((plan["applied"].as_bool(), plan["created"].as_array().map(Vec::len)), (Some(false), Some(awkward().len())), "{plan}");
    assert!(!listed(&srv, &key, &pid, "staging").await.contains_key("PLAIN"), "a dry run unless told");
    let plan = tool(
        &mcp,
        "promote_environment",
        json!({ "projectId": pid, "fromEnvironment": "development", "toEnvironment": "staging", "names": ["PLAIN"], "apply": true }),
    )
    .await
    .unwrap();
    assert_eq!(plan["applied"], true, "{plan}");
    assert_eq!(values(&srv, &key, &pid, "staging").await["PLAIN"], "plain-value");
    let plan = tool(&mcp, "import_env", json!({ "projectId": pid, "environment": "qa", "content": "MCP_ONE=1\nexport MCP_TWO='two'\n" }))
        .await
        .unwrap();
    assert_eq!(names(&plan["created"]), ["MCP_ONE", "MCP_TWO"], "{plan}");
    let r =
        call(&mcp, "import_env", json!({ "projectId": pid, "environment": "qa", "content": "OK=1\nleaked-secret-text sk_mcp_never\n" }))
            .await;
    assert_eq!(r.is_error, Some(true));
    let shown = serde_json::to_string(&r).unwrap();
    assert!(shown.contains("INVALID_REQUEST") && !shown.contains("sk_mcp_never") && !shown.contains("leaked-secret-text"), "{shown}");
    let v = tool(&mcp, "validate_environment", json!({ "projectId": pid, "environment": "development" })).await.unwrap();
    assert_eq!(v["missing"], json!([{ "name": "DATABASE_URL", "description": "the primary database" }]), "{v}");

    // SecretCarousel's Python SDK: export_env and promote_secrets.
    let script = r#"
import json, sys
from secretcarousel import SecretCarouselClient
c = SecretCarouselClient(api_key=sys.argv[2], base_url=sys.argv[1])
text = c.export_env(projectId=sys.argv[3], environment="development")
plan = c.promote_secrets(projectId=sys.argv[3], fromEnvironment="development", toEnvironment="production", names=["PLAIN"], dryRun=True)
print(json.dumps({"text": text, "plan": plan}))
"#;
    let (base, k, p) = (srv.base.clone(), key.clone(), pid.clone());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python()).arg("-c").arg(script).arg(base).arg(k).arg(p).output().unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "SDK: {}", String::from_utf8_lossy(&out.stderr));
    let sdk: Value = serde_json::from_slice(&out.stdout).unwrap();
    let parsed: BTreeMap<String, String> = latchkey::dotenv::parse(sdk["text"].as_str().unwrap()).unwrap().into_iter().collect();
    assert_eq!(parsed, want, "the SDK's export reads back exactly");
    assert_eq!((sdk["plan"]["applied"].as_bool(), names(&sdk["plan"]["created"])), (Some(false), vec!["PLAIN".to_owned()]), "{sdk}");
}

#[tokio::test]
async fn environments_promote_dotenv_and_templates_on_sqlite() {
    environments_story(Backend::Sqlite).await;
}

#[tokio::test]
async fn environments_promote_dotenv_and_templates_on_postgres() {
    environments_story(Backend::Postgres).await;
}

/// `Store::write_batch`, below the vault: creates and new versions commit
/// together with their audit entries, or nothing does (a secret that moved
/// since the plan, a quota reached half-way).
async fn batch_is_all_or_nothing(backend: Backend) {
    use common::store_rows::{Fixture, entry};
    use latchkey::store::{BatchWrite, SecretRow, Store, VersionRow, now_millis, postgres::PgStore, sqlite::SqliteStore};
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = match backend {
        Backend::Sqlite => Arc::new(SqliteStore::open(dir.path()).await.unwrap()),
        Backend::Postgres => Arc::new(PgStore::open(&common::fresh_pg_database().await).await.unwrap()),
    };
    let f = Fixture::make(store.as_ref(), "batch").await;
    let now = now_millis();
    let create = |name: &str| {
        let id = uuid::Uuid::new_v4().to_string();
        let secret = SecretRow {
            id: id.clone(),
            tenant_id: f.tenant.clone(),
            project_id: None,
            environment: String::new(),
            name: name.into(),
            secret_type: "custom".into(),
            description: None,
            tags: "[]".into(),
            current_version: 1,
            created_at: now,
            updated_at: now,
            access_tier: "standard".into(),
            exposure: "reveal".into(),
            bindings: "[]".into(),
            expires_at: None,
            deleted_at: None,
            max_versions: None,
            retiring_version: None,
            retiring_until: None,
        };
        let first = VersionRow { secret_id: id, version: 1, sealed: vec![1], created_at: now, created_by: f.key.id.clone() };
        BatchWrite::Create { secret: Box::new(secret), first }
    };
    let next = |expected: i64| BatchWrite::Version {
        secret_id: f.secret.clone(),
        expected_version: expected,
        version: VersionRow {
            secret_id: f.secret.clone(),
            version: expected + 1,
            sealed: vec![2],
            created_at: now,
            created_by: f.key.id.clone(),
        },
    };
    let audit = || vec![entry(&f.tenant, &f.key.id, "secrets.imported", Some(&f.credential()))];
    let unlimited = |_: &str| Ok(None);
    let version_of = |s: Arc<dyn Store>| {
        let (t, id) = (f.tenant.clone(), f.secret.clone());
        async move { s.get_secret(&t, &id).await.unwrap().unwrap().current_version }
    };

    store.write_batch(&f.tenant, &[create("N1"), next(1)], &unlimited, &audit()).await.unwrap();
    assert_eq!(version_of(store.clone()).await, 2);
    assert!(store.find_secret(&f.tenant, None, "", "N1").await.unwrap().is_some());

    // The secret moved on since the plan: nothing of the batch is stored.
    let e = store.write_batch(&f.tenant, &[create("N2"), next(1)], &unlimited, &audit()).await.unwrap_err();
    assert!(matches!(e, latchkey::Error::VersionConflict { expected: 1, current: 2 }), "{e:?}");
    assert!(store.find_secret(&f.tenant, None, "", "N2").await.unwrap().is_none(), "the create rolled back");
    assert_eq!(version_of(store.clone()).await, 2);

    // The quota is reached by the batch's second write: the first rolls back.
    let two = |_: &str| Ok(Some(2));
    let e = store.write_batch(&f.tenant, &[next(2), create("N3")], &two, &audit()).await.unwrap_err();
    assert!(matches!(e, latchkey::Error::PlanLimitReached(_)), "{e:?}");
    assert_eq!(version_of(store.clone()).await, 2, "the new version rolled back");
    assert!(store.get_version(&f.secret, 3).await.unwrap().is_none());
    assert_eq!(store.count_secrets(&f.tenant).await.unwrap(), 2);
}

#[tokio::test]
async fn a_batch_is_all_or_nothing_on_sqlite() {
    batch_is_all_or_nothing(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_batch_is_all_or_nothing_on_postgres() {
    batch_is_all_or_nothing(Backend::Postgres).await;
}
