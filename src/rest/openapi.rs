//! The OpenAPI 3.1 document, generated from the route table and the same
//! `JsonSchema` types the handlers and MCP tools use.

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{Map, Value, json};

type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

fn schema_of<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

/// One documented operation. Built next to the route it describes.
pub struct Op {
    pub method: &'static str,
    pub path: &'static str,
    summary: &'static str,
    description: Option<&'static str>,
    tag: &'static str,
    auth: bool,
    body: Option<SchemaFn>,
    /// The body may be left out (`OptionalBody`: SDKs send none).
    body_optional: bool,
    query: Option<SchemaFn>,
    success: u16,
    response: Option<SchemaFn>,
    text_response: Option<&'static str>,
    invalid_request: &'static str,
    /// Error answers beyond those every operation of its kind documents.
    errors: Vec<(u16, &'static str)>,
    also: Option<u16>,
}

impl Op {
    pub fn new(method: &'static str, path: &'static str, tag: &'static str, summary: &'static str) -> Self {
        Op {
            method,
            path,
            summary,
            description: None,
            tag,
            auth: true,
            body: None,
            body_optional: false,
            query: None,
            success: 200,
            response: None,
            text_response: None,
            invalid_request: "INVALID_REQUEST: malformed body, bad field or enum value",
            errors: Vec::new(),
            also: None,
        }
    }
    /// What a client must know beyond the summary and the schemas.
    pub fn describe(mut self, description: &'static str) -> Self {
        self.description = Some(description);
        self
    }
    /// The 400 answer's description, when this operation has reasons of its own.
    pub fn invalid_request(mut self, description: &'static str) -> Self {
        self.invalid_request = description;
        self
    }
    /// Documents an error answer this operation gives beyond the usual ones
    /// (e.g. a 404 on a path without an id, a 410).
    pub fn error(mut self, status: u16, description: &'static str) -> Self {
        self.errors.push((status, description));
        self
    }

    pub fn public(mut self) -> Self {
        self.auth = false;
        self
    }
    pub fn body<T: JsonSchema>(mut self) -> Self {
        self.body = Some(schema_of::<T>);
        self
    }
    /// A body the handler takes as `OptionalBody`: absent means all defaults.
    pub fn optional_body<T: JsonSchema>(mut self) -> Self {
        self.body = Some(schema_of::<T>);
        self.body_optional = true;
        self
    }
    pub fn query<T: JsonSchema>(mut self) -> Self {
        self.query = Some(schema_of::<T>);
        self
    }
    pub fn returns<T: JsonSchema>(mut self, status: u16) -> Self {
        self.success = status;
        self.response = Some(schema_of::<T>);
        self
    }
    /// A second success status with the same body (a PUT that creates, 201,
    /// or writes what exists, 200).
    pub fn also_returns(mut self, status: u16) -> Self {
        self.also = Some(status);
        self
    }
    /// Success without a body (204).
    pub fn returns_nothing(mut self, status: u16) -> Self {
        self.success = status;
        self.response = None;
        self
    }
    pub fn returns_text(mut self, content_type: &'static str) -> Self {
        self.text_response = Some(content_type);
        self
    }
}

fn error_response(description: &str) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ErrorBody" } } } })
}

/// Query parameters are the properties of the query type's object schema.
fn query_parameters(g: &mut SchemaGenerator, f: SchemaFn) -> Vec<Value> {
    let reference = f(g);
    let name = reference.get("$ref").and_then(Value::as_str).and_then(|r| r.rsplit('/').next()).unwrap_or_default().to_owned();
    let defs = g.definitions().clone();
    let Some(obj) = defs.get(&name) else {
        return vec![];
    };
    let required: Vec<&str> =
        obj.get("required").and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    obj.get("properties")
        .and_then(Value::as_object)
        .map(|props| {
            props
                .iter()
                .map(|(k, v)| {
                    let mut schema = v.clone();
                    let description = schema.as_object_mut().and_then(|o| o.remove("description"));
                    json!({ "name": k, "in": "query", "required": required.contains(&k.as_str()), "schema": schema, "description": description })
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn document(ops: &[Op]) -> Value {
    let mut g = SchemaSettings::draft2020_12()
        .with(|s| {
            s.definitions_path = "/components/schemas".into();
            s.meta_schema = None;
        })
        .into_generator();
    let mut paths: Map<String, Value> = Map::new();
    for op in ops {
        let mut o = Map::new();
        o.insert("summary".into(), json!(op.summary));
        if let Some(d) = op.description {
            o.insert("description".into(), json!(d));
        }
        o.insert("tags".into(), json!([op.tag]));
        o.insert(
            "operationId".into(),
            json!(format!("{}_{}", op.method, op.path.trim_start_matches('/').replace(['/', '{', '}', '-', '.'], "_"))),
        );
        let mut params: Vec<Value> = op
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            // `{*rest}`: the router's catch-all, a plain parameter to OpenAPI.
            .map(|name| name.trim_start_matches('*'))
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        if let Some(q) = op.query {
            params.extend(query_parameters(&mut g, q));
        }
        if !params.is_empty() {
            o.insert("parameters".into(), Value::Array(params));
        }
        if let Some(b) = op.body {
            // An optional body may also be JSON `null` (see `OptionalBody`).
            let (required, schema) = match op.body_optional {
                false => (true, json!(b(&mut g))),
                true => (false, json!({ "anyOf": [b(&mut g), { "type": "null" }] })),
            };
            o.insert("requestBody".into(), json!({ "required": required, "content": { "application/json": { "schema": schema } } }));
        }
        let mut responses = Map::new();
        let ok = match (op.response, op.text_response) {
            (Some(r), None) => {
                json!({ "description": "success", "content": { "application/json": { "schema": r(&mut g) } } })
            }
            (Some(r), Some(ct)) => {
                json!({ "description": "success", "content": { "application/json": { "schema": r(&mut g) }, ct: { "schema": { "type": "string" } } } })
            }
            (None, Some(ct)) => {
                json!({ "description": "success", "content": { ct: { "schema": { "type": "string" } } } })
            }
            (None, None) => json!({ "description": "success" }),
        };
        if let Some(also) = op.also {
            responses.insert(also.to_string(), ok.clone());
        }
        responses.insert(op.success.to_string(), ok);
        if op.body.is_some() || op.query.is_some() {
            responses.insert("400".into(), error_response(op.invalid_request));
        }
        if op.auth {
            responses.insert("401".into(), error_response("UNAUTHORIZED: missing, unknown, expired or revoked API key"));
            responses.insert("403".into(), error_response("SCOPE_DENIED or PLAN_LIMIT_REACHED"));
            responses.insert("429".into(), error_response("RATE_LIMITED: see Retry-After"));
            o.insert("security".into(), json!([{ "apiKey": [] }, { "bearer": [] }]));
        } else {
            o.insert("security".into(), json!([]));
        }
        if op.path.contains('{') {
            responses.insert("404".into(), error_response("not found (or another tenant's)"));
        }
        let writes = matches!(op.method, "post" | "put" | "patch" | "delete");
        if writes && (op.auth || op.body.is_some()) {
            responses.insert(
                "409".into(),
                error_response(
                    "ALREADY_EXISTS, VERSION_CONFLICT or CONFLICT (e.g. a key already revoked or changed meanwhile, this request's key changed while it ran, a project not empty)",
                ),
            );
        } else if op.auth {
            responses.insert(
                "409".into(),
                error_response("CONFLICT: the API key's rights, or the secret read, changed while the request ran; send it again"),
            );
        }
        if op.body.is_some() {
            responses.insert("413".into(), error_response("PAYLOAD_TOO_LARGE"));
            responses.insert("408".into(), error_response("REQUEST_TIMEOUT: the body did not arrive within 20 s"));
        }
        if !op.auth && writes {
            responses.insert("403".into(), error_response("SIGNUP_CLOSED"));
            responses.insert("429".into(), error_response("RATE_LIMITED: see Retry-After"));
        }
        for (status, description) in &op.errors {
            responses.insert(status.to_string(), error_response(description));
        }
        o.insert("responses".into(), Value::Object(responses));
        paths
            .entry(op.path.replace("{*", "{"))
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("object")
            .insert(op.method.into(), Value::Object(o));
    }
    let mut schemas = g.take_definitions(true);
    schemas.insert(
        "ErrorBody".into(),
        json!({
            "type": "object",
            "required": ["error", "message", "code"],
            "properties": {
                "error": { "type": "string", "description": "the message (as SecretCarousel's clients read it)" },
                "message": { "type": "string", "description": "the same message" },
                "code": { "type": "string", "description": "stable machine-readable code, e.g. SECRET_NOT_FOUND" } }
        }),
    );
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Latchkey",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Self-hosted, agent-native secret vault. SecretCarousel-compatible REST API; MCP at /mcp."
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "apiKey": { "type": "apiKey", "in": "header", "name": "X-API-Key" },
                "bearer": { "type": "http", "scheme": "bearer" }
            }
        }
    })
}
