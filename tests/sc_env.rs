//! SecretCarousel's CLI (`sc`, npm `secretcarousel` 2.20.0, tools/sc-cli)
//! running `sc env pull` and `sc env promote` against the real server, with a
//! recording proxy between them so the tests see every request it sends.
//!
//! What the CLI does (read from its dist/commands/env.js, run against a spy
//! in place of its `req`): `env pull [--env E]` (E defaults to development)
//! sends GET /api/v1/secrets?environment=E&limit=500, then GET
//! /api/v1/secrets/{secretId} for each listed secret (the list's `secretId`,
//! not `id`), and prints `NAME=value` lines, the value raw (no quoting), in
//! the list's order; one failed read fails the whole pull. `env promote --from
//! A --to B` lists A the same way, then for each secret reads it and sends
//! POST /api/v1/secrets {"name","value","environment":B} plus the listed
//! `secretType` and `tags`; a refused create (the name is taken in B) is
//! counted, not fatal: it prints `Promoted n/m secrets from A to B`, then
//! `Failed k:` and `NAME: <error> [CODE]` for each, and exits 1 if any failed.
//! It never overwrites.

mod common;

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use common::sc::{User, value_of};
use common::{Backend, Server, unique};
use serde_json::{Value, json};

/// A loopback HTTP proxy in front of the server that records each request's
/// method and path (query included) before passing it on unchanged.
struct Recorder {
    base: String,
    seen: Arc<Mutex<Vec<String>>>,
}

#[derive(Clone)]
struct Upstream {
    base: String,
    http: reqwest::Client,
    seen: Arc<Mutex<Vec<String>>>,
}

async fn relay(State(up): State<Upstream>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default();
    up.seen.lock().unwrap().push(format!("{} {path}", parts.method));
    let body = axum::body::to_bytes(body, 1 << 24).await.unwrap();
    let mut out = up.http.request(parts.method.clone(), format!("{}{path}", up.base)).body(body);
    for (name, value) in &parts.headers {
        if !matches!(name.as_str(), "host" | "content-length" | "connection") {
            out = out.header(name, value);
        }
    }
    let answer = out.send().await.expect("the server answers the proxy");
    let mut resp = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        if !matches!(name.as_str(), "content-length" | "transfer-encoding" | "connection") {
            resp = resp.header(name, value);
        }
    }
    resp.body(Body::from(answer.bytes().await.unwrap())).unwrap()
}

impl Recorder {
    async fn start(srv: &Server) -> Recorder {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let up = Upstream { base: srv.base.clone(), http, seen: seen.clone() };
        let app = axum::Router::new().fallback(relay).with_state(up);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Recorder { base, seen }
    }

    /// The requests recorded since the last call.
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

async fn create(srv: &Server, key: &str, body: Value) -> String {
    let (s, created) = srv.post("/api/v1/secrets", key, body).await;
    assert_eq!(s, 201, "{created}");
    created["id"].as_str().unwrap().to_owned()
}

/// The tenant's secrets in `environment` (metadata), by name.
async fn listed(srv: &Server, key: &str, environment: &str) -> Vec<Value> {
    let (s, body) = srv.get(&format!("/api/v1/secrets?environment={environment}&limit=500"), key).await;
    assert_eq!(s, 200, "{body}");
    let mut all = body["secrets"].as_array().unwrap().clone();
    all.sort_by_key(|v| v["name"].as_str().unwrap_or_default().to_owned());
    all
}

/// `sc env pull` prints the environment's secrets as `NAME=value`, each value
/// exactly as stored (the CLI does not quote), and nothing from elsewhere; a
/// user's `> .env` is that output.
async fn pull_writes_the_values(backend: Backend) {
    let srv = Server::start(backend).await;
    let rec = Recorder::start(&srv).await;
    let user = User::new(&rec.base);
    let key = user.signup(&unique("sc-pull")).await;
    // Values a one-line `NAME=value` can carry as they are.
    let values = [
        ("API_TOKEN", "tok_123"),
        ("DB_URL", "postgres://app:p%40ss@db.internal:5432/app?sslmode=require"),
        ("GREETING", "grüße, \"welt\" = 'x' # not a comment"),
        ("PADDED", "  spaced  "),
    ];
    for (name, value) in values {
        create(&srv, &key, json!({ "name": name, "value": value, "environment": "staging" })).await;
    }
    create(&srv, &key, json!({ "name": "PROD_ONLY", "value": "p", "environment": "production" })).await;
    create(&srv, &key, json!({ "name": "DEV_ONLY", "value": "d", "environment": "development" })).await;
    rec.take();

    let out = user.run_ok(&["env", "pull", "--env", "staging"]).await.stdout;
    let want: String = values.iter().map(|(n, v)| format!("{n}={v}\n")).collect();
    assert_eq!(out, want, "the .env `sc env pull --env staging > .env` writes");
    let seen = rec.take();
    assert_eq!(seen[0], "GET /api/v1/secrets?environment=staging&limit=500", "{seen:?}");
    assert_eq!(seen.len(), 1 + values.len(), "one list, then one read per secret: {seen:?}");

    // Without --env, the CLI's default environment (development).
    assert_eq!(user.run_ok(&["env", "pull"]).await.stdout, "DEV_ONLY=d\n");
    // An empty environment prints nothing and succeeds.
    assert_eq!(user.run_ok(&["env", "pull", "--env", "qa"]).await.stdout.trim(), "");

    // Each read is audited as any read is, for the key the CLI signed up with.
    let (s, audit) = srv.get("/api/v1/audit?action=secret.read&limit=100", &key).await;
    assert_eq!(s, 200, "{audit}");
    let reads = audit["logs"].as_array().unwrap().iter().filter(|e| e["outcome"] == "success").count();
    assert_eq!(reads, values.len() + 1, "{audit}");
}

/// 300 secrets: the CLI's one list request (`limit=500`) answers them all in
/// one page, so a pull is 301 requests (one list, then a read per secret),
/// never a second page or a per-secret lookup.
async fn pull_of_300_is_one_list_and_a_read_each(backend: Backend) {
    const N: usize = 300;
    let srv = Server::start(backend).await;
    let rec = Recorder::start(&srv).await;
    let user = User::new(&rec.base);
    let key = user.signup(&unique("sc-many")).await;
    let names: Vec<String> = (0..N).map(|i| format!("KEY_{i:03}")).collect();
    for chunk in names.chunks(25) {
        let creates = chunk
            .iter()
            .map(|n| create(&srv, &key, json!({ "name": n, "value": format!("v-{n}"), "environment": "development", "tags": ["bulk"] })));
        futures::future::join_all(creates).await;
    }
    let (s, page) = srv.get("/api/v1/secrets?environment=development&limit=500", &key).await;
    assert_eq!((s, page["count"].as_u64(), page["hasMore"].as_bool()), (200, Some(N as u64), Some(false)), "one page holds all");
    rec.take();

    let out = user.run_ok(&["env", "pull"]).await.stdout;
    let want: String = names.iter().map(|n| format!("{n}=v-{n}\n")).collect();
    assert_eq!(out, want);
    let seen = rec.take();
    let lists: Vec<&String> = seen.iter().filter(|r| r.starts_with("GET /api/v1/secrets?")).collect();
    assert_eq!(lists, ["GET /api/v1/secrets?environment=development&limit=500"], "one list request");
    let reads = seen.iter().filter(|r| r.starts_with("GET /api/v1/secrets/")).count();
    assert_eq!((reads, seen.len()), (N, N + 1), "a read per secret and nothing else");
}

/// `sc env promote --from staging --to production` copies each staging
/// secret into production (value, type, tags), leaves staging as it was, and
/// refuses, secret by secret, to replace one production already has.
async fn promote_copies_staging_to_production(backend: Backend) {
    let srv = Server::start(backend).await;
    let rec = Recorder::start(&srv).await;
    let user = User::new(&rec.base);
    let key = user.signup(&unique("sc-promote")).await;
    let staged = [
        ("API_TOKEN", "tok_staging", "api-key"),
        ("DB_URL", "postgres://db.staging/app", "database-credentials"),
        ("SHARED", "new", "configuration"),
    ];
    for (name, value, kind) in staged {
        create(&srv, &key, json!({ "name": name, "value": value, "secretType": kind, "environment": "staging", "tags": ["app", kind] }))
            .await;
    }
    let kept = create(&srv, &key, json!({ "name": "SHARED", "value": "old", "environment": "production" })).await;
    rec.take();

    let run = user.sc(&["env", "promote", "--from", "staging", "--to", "production"]).await;
    let out = run.all();
    assert!(!run.ok, "a promotion with a failure exits 1: {out}");
    assert!(out.contains("Promoted 2/3 secrets from staging to production"), "{out}");
    assert!(out.contains("Failed 1:") && out.contains("SHARED:") && out.contains("[ALREADY_EXISTS]"), "the taken name is reported: {out}");
    assert!(!out.contains("undefined") && !out.contains("[object Object]"), "{out}");
    let seen = rec.take();
    assert_eq!(seen.iter().filter(|r| r.as_str() == "POST /api/v1/secrets").count(), 3, "{seen:?}");

    let production = listed(&srv, &key, "production").await;
    let names: Vec<&str> = production.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["API_TOKEN", "DB_URL", "SHARED"]);
    for (name, value, kind) in staged.iter().filter(|s| s.0 != "SHARED") {
        let meta = production.iter().find(|s| s["name"] == *name).unwrap();
        let got = value_of(&srv, &key, meta["id"].as_str().unwrap()).await;
        assert_eq!((got["value"].as_str(), got["secretType"].as_str()), (Some(*value), Some(*kind)), "{got}");
        assert_eq!(got["tags"], json!(["app", kind]), "{got}");
        assert_eq!(got["version"], 1, "a new secret, not a version of another");
    }
    let shared = value_of(&srv, &key, &kept).await;
    assert_eq!((shared["value"].as_str(), shared["version"].as_i64()), (Some("old"), Some(1)), "never overwritten: {shared}");
    let staging = listed(&srv, &key, "staging").await;
    assert_eq!(staging.len(), 3, "promotion copies, staging keeps its secrets");

    // Promoting again creates nothing: every name is taken now.
    let run = user.sc(&["env", "promote", "--from", "staging", "--to", "production"]).await;
    let out = run.all();
    assert!(!run.ok && out.contains("Promoted 0/3") && out.contains("Failed 3:"), "{out}");
    assert_eq!(listed(&srv, &key, "production").await.len(), 3);
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

on_both_databases!(pull_writes_the_values, pull_of_300_is_one_list_and_a_read_each, promote_copies_staging_to_production);
