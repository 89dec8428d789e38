//! `tools/mcp-tools.json` is exactly what `latchkey mcp --print-tools` prints.

mod common;

#[test]
fn tool_catalog_file_is_current() {
    let out = std::process::Command::new(common::bin()).args(["mcp", "--print-tools"]).output().unwrap();
    assert!(out.status.success());
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/mcp-tools.json");
    let stored: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert!(printed == stored, "tools/mcp-tools.json is stale: run `cargo run -- mcp --print-tools > tools/mcp-tools.json`");

    // Every tool that returns data declares its output; annotations are set.
    for tool in printed["tools"].as_array().unwrap() {
        let name = tool["name"].as_str().unwrap();
        assert!(tool["outputSchema"].is_object(), "{name} lacks outputSchema");
        assert!(tool["description"].as_str().unwrap().len() > 20, "{name} needs a description for agents");
        let ann = &tool["annotations"];
        let read_only = ann["readOnlyHint"] == true;
        if name.starts_with("get_") || name.starts_with("list_") || name == "whoami" || name == "query_audit" {
            assert!(read_only, "{name} should be readOnlyHint");
        }
        if name.starts_with("delete_") || name.starts_with("revoke_") {
            assert_eq!(ann["destructiveHint"], true, "{name} should be destructiveHint");
        }
    }
}
