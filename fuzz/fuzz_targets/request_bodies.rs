//! Every request type a client sends: JSON bodies (what `rest::extract::Body`
//! hands to serde_json) and query strings (what axum's `Query` hands to
//! serde_urlencoded), followed through the validators the services apply to
//! the parsed fields. The first byte picks the type, the rest is the text.
//!
//! Not reachable from here: the MCP tool parameter types in the private
//! `latchkey::mcp::params` module (their fields are the same names, tags and
//! environments checked below).
#![no_main]

use latchkey::vault::views::*;
use latchkey::vault::{audit::parse_bound, names, secrets::decode_cursor};
use libfuzzer_sys::fuzz_target;

fn opt_text(what: &str, s: &Option<String>) {
    if let Some(s) = s {
        let _ = names::text(what, s, 1024);
    }
}

fn opt_tags(t: &Option<Vec<String>>) {
    if let Some(t) = t {
        let _ = names::tags(t);
    }
}

fn json<T: serde::de::DeserializeOwned>(b: &[u8]) -> Option<T> {
    serde_json::from_slice(b).ok()
}

fn query<T: serde::de::DeserializeOwned>(b: &[u8]) -> Option<T> {
    serde_urlencoded::from_bytes(b).ok()
}

fn list(q: ListSecrets) {
    let _ = names::environment(q.environment.as_deref());
    q.project_id.as_deref().map(names::is_id);
    q.cursor.as_deref().map(decode_cursor);
}

fn audit(q: AuditQuery) {
    q.start_date.as_deref().map(|s| parse_bound("startDate", s, false));
    q.end_date.as_deref().map(|s| parse_bound("endDate", s, true));
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, b)) = data.split_first() else { return };
    match which % 16 {
        0 => {
            if let Some(r) = json::<SignupRequest>(b) {
                let _ = names::tenant_id(&r.tenant_id);
                opt_text("email", &r.email);
                opt_text("agent", &r.agent);
                opt_text("description", &r.description);
            }
        }
        1 => {
            if let Some(r) = json::<CreateSecret>(b) {
                let _ = names::secret_name(&r.name);
                let _ = names::tags(&r.tags);
                let _ = names::environment(r.environment.as_deref());
                r.project_id.as_deref().map(names::is_id);
                opt_text("description", &r.description);
            }
        }
        2 => {
            if let Some(r) = json::<UpdateSecret>(b) {
                opt_tags(&r.tags);
                opt_text("description", &r.description);
            }
        }
        3 => {
            if let Some(r) = json::<SetSecret>(b) {
                let _ = names::secret_name(&r.name);
                opt_tags(&r.tags);
                let _ = names::environment(r.environment.as_deref());
                opt_text("description", &r.description);
            }
        }
        4 => {
            if let Some(q) = json::<ListSecrets>(b) {
                list(q);
            }
        }
        5 => {
            if let Some(q) = query::<ListSecrets>(b) {
                list(q);
            }
        }
        6 => {
            let _ = json::<ReadVersion>(b);
        }
        7 => {
            let _ = query::<ReadVersion>(b);
        }
        8 => {
            if let Some(r) = json::<CreateProject>(b) {
                let _ = names::text("name", &r.name, 128);
                let _ = names::tags(&r.tags);
            }
        }
        9 => {
            if let Some(r) = json::<UpdateProject>(b) {
                opt_text("name", &r.name);
                opt_tags(&r.tags);
            }
        }
        10 => {
            if let Some(r) = json::<CreateApiKey>(b) {
                let _ = names::text("name", &r.name, 128);
                let _ = r.project_scope.iter().map(|p| names::is_id(p)).count();
            }
        }
        11 => {
            if let Some(r) = json::<UpdateApiKey>(b) {
                opt_text("name", &r.name);
            }
        }
        12 => {
            if let Some(q) = json::<AuditQuery>(b) {
                audit(q);
            }
        }
        13 => {
            if let Some(q) = query::<AuditQuery>(b) {
                audit(q);
            }
        }
        14 => {
            let _ = json::<SecretType>(b);
        }
        _ => {
            // Any JSON at all (the MCP front parses bodies as `Value` first).
            let _ = json::<serde_json::Value>(b);
        }
    }
});
