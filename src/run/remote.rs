//! `latchkey run --url`: the secrets read over REST, like any client reads
//! them. A read answers only `reveal` secrets' values, so `masked` and
//! `use_only` ones are refused up front (EXPOSURE_DENIED, naming them all and
//! the local mode, which uses them without a read).

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use zeroize::Zeroizing;

use super::Injected;
use crate::error::{Error, Result};

/// How long one request may take; a vault that does not answer in this time
/// should not hold up a command for longer.
const TIMEOUT: Duration = Duration::from_secs(30);
/// The largest page the list accepts (vault::secrets::MAX_LIST_PAGE).
const PAGE: usize = 500;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Meta {
    id: String,
    name: String,
    project_id: Option<String>,
    environment: Option<String>,
    #[serde(default)]
    exposure: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Page {
    secrets: Vec<Meta>,
    next_cursor: Option<String>,
}

#[derive(Deserialize)]
struct Project {
    id: String,
    name: String,
}

#[derive(Deserialize)]
struct Projects {
    projects: Vec<Project>,
}

/// A REST client of one Latchkey server, as one API key: `latchkey run
/// --url` and `latchkey env --url` talk to the server through it.
pub(crate) struct Api<'a> {
    http: reqwest::Client,
    base: String,
    key: &'a str,
}

pub async fn fetch(url: &str, key: &str, project: Option<&str>, environment: Option<&str>, only: &[String]) -> Result<Vec<Injected>> {
    let api = Api::new(url, key, "latchkey-run")?;
    let project_id = match project.filter(|p| !p.is_empty()) {
        None => None,
        Some(wanted) => Some(api.project_id(wanted).await?),
    };
    let mut chosen = Vec::new();
    let mut cursor: Option<String> = None;
    // Bounded: a server that kept answering a cursor would otherwise loop forever.
    for _ in 0..10_000 {
        let mut query = vec![("limit", PAGE.to_string())];
        query.extend(project_id.clone().map(|p| ("projectId", p)));
        query.extend(environment.filter(|e| !e.is_empty()).map(|e| ("environment", e.to_owned())));
        query.extend(cursor.take().map(|c| ("cursor", c)));
        let page: Page = serde_json::from_value(api.get("/api/v1/secrets", &query).await?).map_err(|e| bad_answer(&e))?;
        // As the local mode selects (vault::exposure): without an environment
        // the secrets without one, without a project those in none.
        let env = environment.unwrap_or("");
        chosen.extend(page.secrets.into_iter().filter(|s| {
            s.environment.as_deref().unwrap_or("") == env
                && (project_id.is_some() || s.project_id.is_none())
                && (only.is_empty() || only.contains(&s.name))
        }));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    if let Some(missing) = only.iter().find(|n| !chosen.iter().any(|s| &s.name == *n)) {
        return Err(Error::SecretsNotFound(format!("no secret named {missing} here (--only)")));
    }
    let hidden: Vec<&str> =
        chosen.iter().filter(|s| s.exposure.as_deref().is_some_and(|e| e != "reveal")).map(|s| s.name.as_str()).collect();
    if !hidden.is_empty() {
        return Err(exposure_denied(&hidden));
    }
    let mut out = Vec::with_capacity(chosen.len());
    for s in &chosen {
        let read = api.get(&format!("/api/v1/secrets/{}", s.id), &[]).await?;
        let value = match read.get("value") {
            Some(Value::String(v)) => Zeroizing::new(v.clone()),
            // A masked read answers `value: null`: the secret was tightened meanwhile.
            _ => return Err(exposure_denied(&[&s.name])),
        };
        out.push(Injected { name: s.name.clone(), value });
    }
    Ok(out)
}

fn exposure_denied(names: &[&str]) -> Error {
    Error::ExposureDenied(format!(
        "{} cannot be read over --url (exposure masked or use_only): a server answers only what a read may show. \
         Run `latchkey run` on the machine of the vault without --url (the local mode uses them without revealing them), \
         or leave them out with --only",
        names.join(", ")
    ))
}

fn bad_answer(e: &dyn std::fmt::Display) -> Error {
    Error::InvalidRequest(format!("the server's answer is not a Latchkey answer: {e}"))
}

impl<'a> Api<'a> {
    /// A client of the server at `url` (its base, e.g. `http://127.0.0.1:8200`),
    /// naming itself `agent` in User-Agent.
    pub(crate) fn new(url: &str, key: &'a str, agent: &str) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .user_agent(format!("{agent}/{}", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(Error::internal)?;
        Ok(Api { http, base: url.trim_end_matches('/').to_owned(), key })
    }

    /// The id of the project named `wanted` by id or by name.
    pub(crate) async fn project_id(&self, wanted: &str) -> Result<String> {
        let list: Projects = serde_json::from_value(self.get("/api/v1/projects", &[]).await?).map_err(|e| bad_answer(&e))?;
        let found = list.projects.iter().find(|p| p.id == wanted).or_else(|| list.projects.iter().find(|p| p.name == wanted));
        found
            .map(|p| p.id.clone())
            .ok_or_else(|| Error::InvalidRequest(format!("no project '{wanted}' (by id or name) visible to this key")))
    }

    /// GET, answering the JSON body.
    pub(crate) async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value> {
        let text = self.send(self.http.get(format!("{}{path}", self.base)).query(query)).await?;
        serde_json::from_str(&text).map_err(|e| bad_answer(&e))
    }

    /// GET, answering the body as text (e.g. dotenv), not parsed.
    pub(crate) async fn get_text(&self, path: &str, query: &[(&str, String)]) -> Result<Zeroizing<String>> {
        self.send(self.http.get(format!("{}{path}", self.base)).query(query)).await
    }

    /// POST a JSON body, answering the JSON body.
    pub(crate) async fn post(&self, path: &str, body: &Value) -> Result<Value> {
        let text = self.send(self.http.post(format!("{}{path}", self.base)).json(body)).await?;
        serde_json::from_str(&text).map_err(|e| bad_answer(&e))
    }

    /// Sends with the key; a success answers the body (it may hold values,
    /// hence zeroized), an error answer becomes the error it names.
    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Zeroizing<String>> {
        let resp = req
            .header("X-API-Key", self.key)
            .send()
            .await
            .map_err(|e| Error::InvalidRequest(format!("cannot reach {}: {}", self.base, without_url(&e))))?;
        let status = resp.status();
        let text = Zeroizing::new(
            resp.text().await.map_err(|e| Error::InvalidRequest(format!("{} answered {status}: {}", self.base, without_url(&e))))?,
        );
        if status.is_success() {
            return Ok(text);
        }
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let code = body["code"].as_str().unwrap_or("");
        let message = body["message"].as_str().unwrap_or("").to_owned();
        Err(match code {
            "EXPOSURE_DENIED" => Error::ExposureDenied(message),
            "UNAUTHORIZED" | "TOKEN_EXPIRED" | "TOKEN_EXHAUSTED" | "TOKEN_REVOKED" | "IP_NOT_ALLOWED" => {
                Error::Unauthorized(format!("{} refused LATCHKEY_API_KEY: {message}", self.base))
            }
            "SCOPE_DENIED" => Error::ScopeDenied(message),
            "SECRET_NOT_FOUND" => Error::SecretNotFound,
            "INVALID_REQUEST" if body["lines"].is_array() => Error::InvalidLines(
                body["lines"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|l| crate::error::LineError {
                        line: l["line"].as_u64().unwrap_or(0) as usize,
                        message: l["message"].as_str().unwrap_or_default().to_owned(),
                    })
                    .collect(),
            ),
            "APPROVAL_REQUIRED" => Error::ApprovalRequired {
                approval_id: body["approvalId"].as_str().unwrap_or_default().to_owned(),
                approval_url: body["approvalUrl"].as_str().unwrap_or_default().to_owned(),
            },
            _ => Error::InvalidRequest(format!("{} answered {status} {code}: {message}", self.base)),
        })
    }
}

/// reqwest's message names the URL, query included; the base says enough.
fn without_url(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut cause = e.source();
    let mut last = e.to_string();
    while let Some(c) = cause {
        last = c.to_string();
        cause = c.source();
    }
    last
}
