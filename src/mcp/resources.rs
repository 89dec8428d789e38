//! Resources: the agent-facing documents, and metadata views of the vault
//! (never values).

use rmcp::model::{
    ListResourceTemplatesResult, ListResourcesResult, ReadResourceResponse, ReadResourceResult, Resource, ResourceContents,
    ResourceTemplate,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer};

use super::{Caller, LatchkeyMcp, anonymous};
use crate::error::Error;
use crate::vault::secrets::SecretRef;
use crate::vault::views::{AuditQuery, ListSecrets};

pub const LLMS: &str = "latchkey://llms.txt";
pub const QUICKSTART: &str = "latchkey://quickstart";
pub const SECRETS: &str = "latchkey://secrets";
pub const SECRET_PREFIX: &str = "latchkey://secrets/";
/// RFC 6570: the query part expands to nothing for a secret filed under no
/// project or environment.
pub const SECRET_TEMPLATE: &str = "latchkey://secrets/{name}{?projectId,environment}";
pub const AUDIT_RECENT: &str = "latchkey://audit/recent";

fn json_contents(uri: &str, value: &impl serde::Serialize) -> ReadResourceResponse {
    let text = serde_json::to_string_pretty(value).expect("serialisable");
    ReadResourceResponse::Complete(ReadResourceResult::new(vec![ResourceContents::text(text, uri).with_mime_type("application/json")]))
}

/// A domain error while reading a resource becomes a JSON-RPC error carrying the code.
fn resource_error(e: Error) -> ErrorData {
    let data = Some(serde_json::json!({ "code": e.code() }));
    match e.status() {
        404 => ErrorData::resource_not_found(e.public_message(), data),
        400 => ErrorData::invalid_params(e.public_message(), data),
        500 => ErrorData::internal_error(e.public_message(), data),
        _ => ErrorData::invalid_request(e.public_message(), data),
    }
}

impl LatchkeyMcp {
    pub(super) fn resource_list(&self, ctx: &RequestContext<RoleServer>) -> ListResourcesResult {
        let resources = vec![
            Resource::new(LLMS, "llms.txt").with_description("The Latchkey API summary for agents").with_mime_type("text/plain"),
            Resource::new(QUICKSTART, "quickstart").with_description("Steps to start using the vault").with_mime_type("application/json"),
            Resource::new(SECRETS, "secrets")
                .with_description("Metadata of the first 200 secrets (never values)")
                .with_mime_type("application/json"),
            Resource::new(AUDIT_RECENT, "recent audit").with_description("The 50 newest audit entries").with_mime_type("application/json"),
        ];
        let keyless = !self.has_caller(ctx);
        ListResourcesResult::with_all_items(resources.into_iter().filter(|r| !keyless || anonymous::resource(&r.uri)).collect())
    }

    pub(super) fn resource_templates(&self, ctx: &RequestContext<RoleServer>) -> ListResourceTemplatesResult {
        let templates = vec![
            ResourceTemplate::new(SECRET_TEMPLATE, "secret")
                .with_description(
                    "One secret's metadata and newest 100 versions, by name, with projectId and environment when it \
                     is filed under them (never the value)",
                )
                .with_mime_type("application/json"),
        ];
        let keyless = !self.has_caller(ctx);
        ListResourceTemplatesResult::with_all_items(
            templates.into_iter().filter(|t| !keyless || anonymous::resource(&t.uri_template)).collect(),
        )
    }

    pub(super) async fn read(&self, uri: &str, ctx: &RequestContext<RoleServer>) -> Result<ReadResourceResponse, ErrorData> {
        if anonymous::resource(uri) {
            return Ok(match uri {
                QUICKSTART => json_contents(uri, &crate::docs::quickstart_doc()),
                _ => ReadResourceResponse::Complete(ReadResourceResult::new(vec![ResourceContents::text(crate::docs::LLMS_TXT, uri)])),
            });
        }
        let p = self.principal(Caller::of(ctx, None)).await.map_err(resource_error)?;
        let result = match uri {
            SECRETS => {
                let page = self.vault.list_secrets(&p, ListSecrets { limit: Some(200), ..Default::default() }).await;
                page.map(|page| json_contents(uri, &page))
            }
            AUDIT_RECENT => {
                self.vault.query_audit(&p, AuditQuery { limit: Some(50), ..Default::default() }).await.map(|a| json_contents(uri, &a))
            }
            _ => match uri.strip_prefix(SECRET_PREFIX).map(|rest| rest.split_once('?').unwrap_or((rest, ""))) {
                Some((name, query)) if !name.is_empty() => match filed_under(query) {
                    Ok(place) => {
                        let target =
                            SecretRef::Name { name, project_id: place.project_id.as_deref(), environment: place.environment.as_deref() };
                        self.vault
                            .secret_overview(&p, target)
                            .await
                            .map(|(meta, versions)| json_contents(uri, &serde_json::json!({ "secret": meta, "history": versions })))
                    }
                    Err(e) => Err(e),
                },
                _ => Err(Error::NotFound("resource")),
            },
        };
        result.map_err(resource_error)
    }
}

/// Where a named secret is filed, from the query of its URI (see
/// [`SECRET_TEMPLATE`]). Anything else in the query is refused, as tools
/// refuse arguments they do not know: a misspelt key would otherwise find the
/// secret of no project or environment.
#[derive(Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FiledUnder {
    project_id: Option<String>,
    environment: Option<String>,
}

fn filed_under(query: &str) -> Result<FiledUnder, Error> {
    let place: FiledUnder = serde_urlencoded::from_str(query).map_err(|e| Error::InvalidRequest(format!("resource URI query: {e}")))?;
    let given = |v: Option<String>| v.filter(|v| !v.is_empty());
    Ok(FiledUnder { project_id: given(place.project_id), environment: given(place.environment) })
}
