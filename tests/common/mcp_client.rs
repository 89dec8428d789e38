//! An MCP client of the real server over streamable HTTP (rmcp's own), for
//! the stories that call tools with a key.

use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{RoleClient, ServiceExt};
use serde_json::Value;

use super::Server;

pub type Client = RunningService<RoleClient, ()>;

/// A session on `/mcp` that sends `key` as its bearer credential.
pub async fn connect(srv: &Server, key: &str) -> Client {
    let config = StreamableHttpClientTransportConfig::with_uri(srv.url("/mcp")).auth_header(key);
    ().serve(StreamableHttpClientTransport::from_config(config)).await.expect("MCP handshake")
}

/// One tool call; a protocol error fails the test.
pub async fn call(c: &Client, name: &str, args: Value) -> CallToolResult {
    let params = CallToolRequestParams::new(name.to_owned()).with_arguments(args.as_object().unwrap().clone());
    c.call_tool(params).await.unwrap_or_else(|e| panic!("{name}: protocol error {e}"))
}

/// A tool's structured answer, or its error code.
pub async fn tool(c: &Client, name: &str, args: Value) -> Result<Value, String> {
    let r = call(c, name, args).await;
    if r.is_error == Some(true) {
        let text = r.content[0].as_text().expect("text").text.clone();
        let body: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{name}: {text}"));
        Err(body["code"].as_str().unwrap().to_owned())
    } else {
        Ok(r.structured_content.expect("structured content"))
    }
}
