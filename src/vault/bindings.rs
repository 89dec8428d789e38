//! Where the server's proxy may send a secret's value (`bindings`), and how
//! it puts the value into the request. A secret with no binding cannot be
//! used through the proxy at all.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Most bindings one secret may carry.
pub const MAX_BINDINGS: usize = 20;

/// One allowed destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Binding {
    /// An `http(s)://host[:port]/path` prefix: a request must go to this
    /// scheme, host and port exactly, and its path must start with this path.
    pub url_prefix: String,
    /// Allowed methods (`GET`, `POST`, …); empty or absent: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Where the value goes in the request.
    pub inject: Inject,
}

/// Where the proxy puts the value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "camelCase", deny_unknown_fields)]
pub enum Inject {
    /// `Authorization: Bearer <value>`.
    Bearer,
    /// A header of this name carries the value.
    Header { name: String },
    /// A query parameter of this name carries the value.
    Query { name: String },
    /// HTTP basic auth: this username, the value as the password.
    Basic { username: String },
}

/// A URL reduced to what a binding compares: origin and path.
struct Target {
    scheme: String,
    host: String,
    port: u16,
    path: String,
}

fn target(raw: &str, what: &str) -> Result<Target> {
    let url = url::Url::parse(raw).map_err(|e| Error::InvalidRequest(format!("{what} '{raw}' is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Error::InvalidRequest(format!("{what} must be an http or https URL")));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Error::InvalidRequest(format!("{what} must not carry credentials")));
    }
    let host = url.host_str().filter(|h| !h.is_empty()).ok_or_else(|| Error::InvalidRequest(format!("{what} needs a host")))?;
    Ok(Target {
        scheme: url.scheme().to_owned(),
        host: host.to_ascii_lowercase(),
        port: url.port_or_known_default().unwrap_or(0),
        path: url.path().to_owned(),
    })
}

fn token_name(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty() && name.len() <= 128 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok { Ok(()) } else { Err(Error::InvalidRequest(format!("{what} must be 1-128 letters, digits, '-', '_' or '.'"))) }
}

impl Binding {
    /// Whether a request with this method to this URL may carry the value.
    /// Path prefixes are compared on the parsed, normalised URL (dot
    /// segments resolved), so `/v1/../admin` does not pass as `/v1/`.
    pub fn matches(&self, method: &str, url: &str) -> bool {
        let (Ok(bound), Ok(asked)) = (target(&self.url_prefix, "urlPrefix"), target(url, "url")) else { return false };
        let method_ok = self.methods.is_empty() || self.methods.iter().any(|m| m.eq_ignore_ascii_case(method));
        method_ok
            && bound.scheme == asked.scheme
            && bound.host == asked.host
            && bound.port == asked.port
            && prefix_of(&bound.path, &asked.path)
    }
}

/// `/v1/` covers `/v1/x`; `/v1` covers `/v1` and `/v1/x` but not `/v10`.
fn prefix_of(bound: &str, asked: &str) -> bool {
    if bound.ends_with('/') {
        asked.starts_with(bound)
    } else {
        asked == bound || asked.strip_prefix(bound).is_some_and(|rest| rest.starts_with('/'))
    }
}

/// Checks bindings given on create or update; answers them normalised
/// (methods upper-cased).
pub fn validate(bindings: Vec<Binding>) -> Result<Vec<Binding>> {
    if bindings.len() > MAX_BINDINGS {
        return Err(Error::InvalidRequest(format!("a secret may carry at most {MAX_BINDINGS} bindings")));
    }
    bindings
        .into_iter()
        .map(|mut b| {
            if b.url_prefix.len() > 2048 {
                return Err(Error::InvalidRequest("bindings: urlPrefix is limited to 2048 characters".into()));
            }
            target(&b.url_prefix, "bindings: urlPrefix")?;
            if b.url_prefix.contains(['?', '#']) {
                return Err(Error::InvalidRequest("bindings: urlPrefix must not have a query or fragment".into()));
            }
            for m in &mut b.methods {
                token_name("bindings: a method", m)?;
                *m = m.to_ascii_uppercase();
            }
            match &b.inject {
                Inject::Bearer => {}
                Inject::Header { name } => {
                    token_name("bindings: inject.name", name)?;
                    if ["host", "content-length", "transfer-encoding", "connection"].contains(&name.to_ascii_lowercase().as_str()) {
                        return Err(Error::InvalidRequest(format!("bindings: the value cannot go in the '{name}' header")));
                    }
                }
                Inject::Query { name } => token_name("bindings: inject.name", name)?,
                Inject::Basic { username } => {
                    if username.contains(':') || username.len() > 256 {
                        return Err(Error::InvalidRequest(
                            "bindings: inject.username must not contain ':' (at most 256 characters)".into(),
                        ));
                    }
                }
            }
            Ok(b)
        })
        .collect()
}

/// The stored JSON of a secret's bindings; anything unreadable is an integrity error.
pub fn of_row(json: &str, id: &str) -> Result<Vec<Binding>> {
    // Most secrets have none: no parse on every read for them.
    if json == "[]" {
        return Ok(Vec::new());
    }
    serde_json::from_str(json).map_err(|_| super::views::unreadable("secrets", &id, "bindings"))
}

/// Whether `next` allows nothing `current` did not: every new binding is
/// one of the current ones. Anything else widens where the value may go.
pub fn narrows(current: &[Binding], next: &[Binding]) -> bool {
    next.iter().all(|b| current.contains(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(prefix: &str, methods: &[&str]) -> Binding {
        Binding { url_prefix: prefix.into(), methods: methods.iter().map(|m| m.to_string()).collect(), inject: Inject::Bearer }
    }

    #[test]
    fn a_binding_matches_its_origin_and_path_prefix_only() {
        let b = bearer("https://api.example.com/v1/", &["GET"]);
        assert!(b.matches("GET", "https://api.example.com/v1/charges?limit=3"));
        assert!(b.matches("get", "https://API.example.com:443/v1/x"));
        assert!(!b.matches("POST", "https://api.example.com/v1/charges"));
        assert!(!b.matches("GET", "http://api.example.com/v1/charges"), "scheme");
        assert!(!b.matches("GET", "https://api.example.com:8443/v1/charges"), "port");
        assert!(!b.matches("GET", "https://api.example.com.evil.test/v1/"), "host");
        assert!(!b.matches("GET", "https://api.example.com/v1/../admin"), "dot segments resolved first");
        assert!(!b.matches("GET", "https://user@api.example.com/v1/"), "credentials in the URL");
        let no_slash = bearer("https://api.example.com/v1", &[]);
        assert!(no_slash.matches("DELETE", "https://api.example.com/v1"));
        assert!(no_slash.matches("PUT", "https://api.example.com/v1/a"));
        assert!(!no_slash.matches("GET", "https://api.example.com/v10"));
    }

    #[test]
    fn bad_bindings_are_refused_and_good_ones_normalised() {
        assert!(validate(vec![bearer("ftp://x/", &[])]).is_err());
        assert!(validate(vec![bearer("https://x/?a=1", &[])]).is_err());
        assert!(validate(vec![bearer("https://x/", &["GE T"])]).is_err());
        let header = Binding { url_prefix: "https://x/".into(), methods: vec![], inject: Inject::Header { name: "Host".into() } };
        assert!(validate(vec![header]).is_err());
        assert_eq!(validate(vec![bearer("https://x/", &["post"])]).unwrap()[0].methods, ["POST"]);
        let json = serde_json::json!([{ "urlPrefix": "https://x/", "inject": { "type": "query", "name": "key" } }]);
        let parsed: Vec<Binding> = serde_json::from_value(json).unwrap();
        assert_eq!(parsed[0].inject, Inject::Query { name: "key".into() });
    }
}
