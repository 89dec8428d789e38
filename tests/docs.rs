//! The agent-facing documents are true to the running API.

mod common;

use common::{Backend, Server};
use serde_json::Value;

#[tokio::test]
async fn llms_txt_quickstart_and_openapi_match_the_server() {
    let srv = Server::start(Backend::Sqlite).await;

    let llms = srv.http.get(srv.url("/llms.txt")).send().await.unwrap().text().await.unwrap();
    assert_eq!(llms, std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/llms.txt")).unwrap());

    let (s, qs) = srv.call("GET", "/api/quickstart", None, None).await;
    assert_eq!(s, 200);
    let steps = qs["steps"].as_array().unwrap();
    assert!(steps.len() >= 4);
    assert_eq!(steps[0]["path"], "/api/signup");

    let (s, limits) = srv.call("GET", "/api/signup/limits", None, None).await;
    assert_eq!(s, 200);
    assert!(limits.as_array().unwrap().iter().any(|p| p["plan"] == "free"));

    let (s, doc) = srv.call("GET", "/api/openapi.json", None, None).await;
    assert_eq!(s, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    // Every documented operation is served: unauthenticated calls reach auth
    // (401) or the handler, never the "no such route" fallback.
    let mut operations = 0;
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            operations += 1;
            assert!(!op["responses"].as_object().unwrap().is_empty(), "{method} {path} documents responses");
            let concrete = path.replace("{id}", "00000000-0000-0000-0000-000000000000");
            let (s, body) = srv.call(&method.to_uppercase(), &concrete, None, None).await;
            let code = body["code"].as_str().unwrap_or_default();
            assert!(
                !(s == 404 && code == "NOT_FOUND" && body["message"] == "route not found"),
                "{method} {path} is documented but not routed"
            );
            if op["security"].as_array().is_some_and(|s| !s.is_empty()) {
                assert_eq!(s, 401, "{method} {path} requires a key");
            }
        }
    }
    assert!(operations >= 25, "{operations} operations");
    // Every /api path llms.txt names is in the OpenAPI document.
    for line in llms.lines() {
        for word in line.split_whitespace().filter(|w| w.starts_with("/api/")) {
            let path: Vec<String> = word
                .split('?')
                .next()
                .unwrap()
                .split('/')
                .map(|seg| seg.strip_prefix(':').map_or_else(|| seg.to_owned(), |name| format!("{{{name}}}")))
                .collect();
            let path = path.join("/");
            assert!(paths.contains_key(&path), "llms.txt names {path}, which OpenAPI lacks");
        }
    }
    // Request and response schemas resolve.
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for name in ["CreateSecret", "SecretMeta", "SecretValue", "SecretPage", "AuditPage", "SignupRequest", "IssuedApiKey"] {
        assert!(schemas.contains_key(name), "components lack {name}");
    }
    let text = doc.to_string();
    for r in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = r.split('"').next().unwrap();
        assert!(schemas.contains_key(name), "dangling $ref {name}");
    }
    let create: &Value = &paths["/api/v1/secrets"]["post"];
    assert!(create["requestBody"].is_object() && create["responses"]["201"].is_object());
}

/// Every documented route refuses a query parameter it does not take, before
/// it does anything, so a route added later cannot quietly ignore one (the
/// documents and `/healthz` excepted: no parameter could change them).
#[tokio::test]
async fn every_route_refuses_a_query_parameter_it_does_not_take() {
    let srv = Server::start(Backend::Sqlite).await;
    let key = srv.signup(&common::unique("strict-query")).await;
    let (_, doc) = srv.call("GET", "/api/openapi.json", None, None).await;
    let lenient = ["/healthz", "/llms.txt", "/api/quickstart", "/api/openapi.json"];
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        if lenient.contains(&path.as_str()) {
            continue;
        }
        for method in item.as_object().unwrap().keys() {
            let concrete = format!("{}?zzNotAParameter=1", path.replace("{id}", "00000000-0000-0000-0000-000000000000"));
            let (s, body) = srv.call(&method.to_uppercase(), &concrete, Some(&key), None).await;
            assert_eq!((s, body["code"].as_str()), (400, Some("INVALID_REQUEST")), "{method} {path}: {body}");
            assert!(body["message"].as_str().unwrap().contains("zzNotAParameter"), "{method} {path} names it: {body}");
            checked += 1;
        }
    }
    assert!(checked >= 20, "{checked} operations");
    let (_, keys) = srv.get("/api/v1/api-keys", &key).await;
    assert_eq!(keys["count"], 1, "nothing was done: {keys}");
}
