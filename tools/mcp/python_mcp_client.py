#!/usr/bin/env python3
"""Drives Latchkey's MCP front with the official Python MCP SDK (`mcp`, pinned
in tools/requirements.txt), a client nobody on this project wrote.

Usage:
    python_mcp_client.py stdio <path-to-latchkey> <data-dir>
    python_mcp_client.py http <base-url>          # e.g. http://127.0.0.1:8200

stdio spawns `latchkey mcp --data-dir DIR` (acting for the local tenant); the
environment is passed through, so LATCHKEY_MASTER_KEY etc. reach the server.
http first talks to <base-url>/mcp anonymously (only `signup` may be seen and
called), signs up a random tenant, then reconnects with `Authorization: Bearer`.

Every check prints one line; the first failing check prints FAIL and the
script exits 1. The last line is always `N passed, M failed`.
"""

from __future__ import annotations

import json
import secrets
import sys
import traceback
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import anyio
import httpx2  # the HTTP client the mcp SDK itself is built on (a dependency of `mcp`)
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

ALL_TOOLS = {
    "signup", "whoami", "list_secrets", "get_secret", "set_secret", "update_secret_metadata",
    "delete_secret", "list_secret_versions", "list_projects", "get_project", "create_project", "update_project",
    "delete_project", "create_api_key", "list_api_keys", "update_api_key", "regenerate_api_key", "revoke_api_key",
    "query_audit", "approval_status", "wait_for_approval", "request_token",
    "create_claim_token", "redeem_claim_token", "list_claim_tokens", "revoke_claim_token",
    "create_share", "list_shares", "revoke_share", "extend_share",
    "http_request_with_secret",
    "request_secret", "request_status", "verify_secret", "compare_environments",
    "list_expiring_secrets", "restore_secret",
    "rotate_secret", "get_rotation_status", "set_rotation_policy",
    "promote_environment", "import_env", "validate_environment",
}
# Offered only by `latchkey mcp` (stdio): never listed over HTTP.
LOCAL_TOOLS = {"run_with_secrets", "write_env_file"}
PUBLIC_RESOURCES = {"latchkey://llms.txt", "latchkey://quickstart"}
ALL_RESOURCES = PUBLIC_RESOURCES | {"latchkey://secrets", "latchkey://audit/recent"}
SECRET_TEMPLATE = "latchkey://secrets/{name}{?projectId,environment}"


class CheckFailed(Exception):
    pass


class Checks:
    """Counts passed checks; the first failure stops the run."""

    def __init__(self) -> None:
        self.passed = 0

    def ok(self, cond: Any, what: str, detail: Any = None) -> None:
        if not cond:
            msg = what if detail is None else f"{what}: got {detail!r}"
            raise CheckFailed(msg)
        self.passed += 1
        print(f"ok   {what}", flush=True)


def rand_suffix() -> str:
    return secrets.token_hex(4)


def dump(result: Any) -> str:
    """A result as JSON text, for 'value does not appear anywhere' checks."""
    if hasattr(result, "model_dump"):
        return json.dumps(result.model_dump(mode="json", by_alias=True))
    return json.dumps(result)


async def call_ok(c: Checks, s: ClientSession, name: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
    """Calls a tool that must succeed; returns its structuredContent.

    The SDK itself validates structuredContent against the tool's outputSchema
    (from tools/list) and raises if it does not conform.
    """
    r = await s.call_tool(name, args or {})
    text = " ".join(getattr(b, "text", "") for b in r.content)
    c.ok(not r.is_error, f"{name}: isError is false", text[:300])
    sc = r.structured_content
    c.ok(isinstance(sc, dict), f"{name}: structuredContent is an object", sc)
    # Spec: a tool returning structured content SHOULD also return it serialized in a text block.
    texts = [b.text for b in r.content if getattr(b, "type", None) == "text"]
    c.ok(any(_json_or_none(t) == sc for t in texts), f"{name}: a text block carries the same JSON", texts[:1])
    return sc


async def call_err(c: Checks, s: ClientSession, name: str, args: dict[str, Any], code: str) -> None:
    """Calls a tool that must fail with a domain error `code` (isError, JSON text)."""
    r = await s.call_tool(name, args)
    c.ok(r.is_error, f"{name} {args}: isError is true", r.structured_content)
    texts = [b.text for b in r.content if getattr(b, "type", None) == "text"]
    body = _json_or_none(texts[0]) if texts else None
    got = body.get("code") if isinstance(body, dict) else None
    c.ok(got == code, f"{name}: error code is {code}", texts)
    c.ok(isinstance(body.get("message"), str) and body["message"] and body.get("error") == body["message"], f"{name}: error has a message", body)


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, TypeError):
        return None


async def read_text(s: ClientSession, uri: str) -> tuple[str, str | None]:
    """Reads a resource; returns (text of its single content, mimeType)."""
    r = await s.read_resource(uri)
    assert len(r.contents) == 1, f"{uri}: expected one content item, got {len(r.contents)}"
    item = r.contents[0]
    assert str(item.uri) == uri, f"{uri}: content uri is {item.uri}"
    return getattr(item, "text", None), item.mime_type


async def initialize(c: Checks, s: ClientSession, label: str) -> None:
    init = await s.initialize()
    print(f"info {label}: negotiated protocol version {init.protocol_version}; "
          f"server {init.server_info.name} {init.server_info.version}", flush=True)
    c.ok(init.server_info.name == "latchkey", f"{label}: serverInfo.name is latchkey", init.server_info.name)
    c.ok(init.capabilities.tools is not None, f"{label}: server declares the tools capability")
    c.ok(init.capabilities.resources is not None, f"{label}: server declares the resources capability")
    await s.send_ping()
    c.ok(True, f"{label}: ping answered")


async def exercise(c: Checks, s: ClientSession, tenant: str, local: bool = False) -> None:
    """Everything an authenticated client can do, over either transport."""
    # --- discovery -------------------------------------------------------
    tools = (await s.list_tools()).tools
    names = {t.name for t in tools}
    expected = ALL_TOOLS | LOCAL_TOOLS if local else ALL_TOOLS
    c.ok(names == expected, f"tools/list: exactly the {len(expected)} tools", sorted(names ^ expected))
    for t in tools:
        c.ok(isinstance(t.output_schema, dict) and t.output_schema.get("type") == "object",
             f"tools/list: {t.name} has an object outputSchema", t.output_schema)
        c.ok(t.description, f"tools/list: {t.name} has a description")
    res = {str(r.uri) for r in (await s.list_resources()).resources}
    c.ok(ALL_RESOURCES <= res, "resources/list: llms.txt, quickstart, secrets, audit/recent", sorted(res))
    templates = {t.uri_template for t in (await s.list_resource_templates()).resource_templates}
    c.ok(SECRET_TEMPLATE in templates, f"resources/templates/list: {SECRET_TEMPLATE}", sorted(templates))

    # --- who am I --------------------------------------------------------
    me = await call_ok(c, s, "whoami")
    c.ok(me["tenantId"] == tenant, f"whoami: tenant is {tenant}", me["tenantId"])

    # --- secrets: create, new version, read by id / name / version ------
    name = f"MCP_PY_{rand_suffix().upper()}"
    v1, v2 = f"v1-{secrets.token_hex(8)}", f"v2-{secrets.token_hex(8)}"
    created = await call_ok(c, s, "set_secret", {
        "name": name, "value": v1, "secretType": "api-key", "tags": ["mcp-test"], "description": "python sdk"})
    c.ok(created["created"] is True, "set_secret: first call creates", created)
    sid = created["secret"]["id"]
    c.ok(created["secret"]["name"] == name and created["secret"]["version"] == 1, "set_secret: version 1", created)
    c.ok(v1 not in json.dumps(created), "set_secret: value is not echoed")
    rotated = await call_ok(c, s, "set_secret", {"name": name, "value": v2, "expectedVersion": 1})
    c.ok(rotated["created"] is False and rotated["secret"]["id"] == sid, "set_secret: second call updates", rotated)
    c.ok(rotated["secret"]["version"] == 2, "set_secret: version 2", rotated["secret"]["version"])
    await call_err(c, s, "set_secret", {"name": name, "value": "x", "expectedVersion": 1}, "VERSION_CONFLICT")

    by_id = await call_ok(c, s, "get_secret", {"id": sid})
    c.ok(by_id["value"] == v2 and by_id["name"] == name, "get_secret by id: current value", by_id.get("name"))
    by_name = await call_ok(c, s, "get_secret", {"name": name})
    c.ok(by_name["id"] == sid and by_name["value"] == v2, "get_secret by name: same secret, current value")
    old = await call_ok(c, s, "get_secret", {"id": sid, "version": 1})
    c.ok(old["value"] == v1 and old["valueVersion"] == 1, "get_secret version 1: old value", old.get("valueVersion"))

    listed = await call_ok(c, s, "list_secrets", {})
    mine = [x for x in listed["secrets"] if x["id"] == sid]
    c.ok(len(mine) == 1, "list_secrets: contains the secret", [x["name"] for x in listed["secrets"]])
    c.ok(all("value" not in x for x in listed["secrets"]), "list_secrets: no value field")
    c.ok(v1 not in json.dumps(listed) and v2 not in json.dumps(listed), "list_secrets: no value anywhere")
    searched = await call_ok(c, s, "list_secrets", {"search": name})
    c.ok([x["id"] for x in searched["secrets"]] == [sid], "list_secrets search: finds exactly it", searched["count"])

    meta = await call_ok(c, s, "update_secret_metadata",
                         {"id": sid, "description": "rotated by python", "tags": ["mcp-test", "rotated"]})
    c.ok(meta["description"] == "rotated by python" and sorted(meta["tags"]) == ["mcp-test", "rotated"],
         "update_secret_metadata: description and tags changed", meta)
    c.ok("value" not in meta, "update_secret_metadata: no value")

    versions = await call_ok(c, s, "list_secret_versions", {"id": sid})
    c.ok(versions["secretId"] == sid and versions["currentVersion"] == 2, "list_secret_versions: current 2", versions)
    c.ok(len(versions["versions"]) == 2, "list_secret_versions: two versions", len(versions["versions"]))
    c.ok(v1 not in json.dumps(versions) and v2 not in json.dumps(versions), "list_secret_versions: no values")

    # --- a failing call, then the session still works --------------------
    await call_err(c, s, "get_secret", {"id": "sec_" + secrets.token_hex(12)}, "SECRET_NOT_FOUND")
    again = await call_ok(c, s, "whoami")
    c.ok(again["tenantId"] == tenant, "session still works after an error result")

    # --- projects --------------------------------------------------------
    pname = f"mcp-py-{rand_suffix()}"
    proj = await call_ok(c, s, "create_project", {"name": pname, "description": "from python", "tags": ["t"]})
    pid = proj["id"]
    c.ok(proj["name"] == pname, "create_project: name", proj)
    renamed = await call_ok(c, s, "update_project", {"id": pid, "name": pname + "-renamed"})
    c.ok(renamed["name"] == pname + "-renamed" and renamed["description"] == "from python",
         "update_project: renamed, the rest kept", renamed)
    projects = await call_ok(c, s, "list_projects")
    c.ok(pid in {p["id"] for p in projects["projects"]}, "list_projects: contains it")
    c.ok(projects["count"] == len(projects["projects"]), "list_projects: count matches", projects["count"])
    gone = await call_ok(c, s, "delete_project", {"id": pid})
    c.ok(gone["deleted"] is True and gone["id"] == pid, "delete_project: deleted", gone)
    projects = await call_ok(c, s, "list_projects")
    c.ok(pid not in {p["id"] for p in projects["projects"]}, "list_projects: no longer contains it")

    # --- API keys --------------------------------------------------------
    key = await call_ok(c, s, "create_api_key", {"name": f"ci-reader-{rand_suffix()}", "permissions": "read"})
    c.ok(isinstance(key["apiKey"], str) and key["apiKey"].startswith(key["prefix"].rstrip("…")),
         "create_api_key: returns the key once, starting with its display prefix", key.get("prefix"))
    c.ok(key["permissions"] == "read" and key["revoked"] is False, "create_api_key: read, not revoked", key)
    keys = await call_ok(c, s, "list_api_keys")
    c.ok(key["id"] in {k["id"] for k in keys["apiKeys"]}, "list_api_keys: contains it")
    c.ok(key["apiKey"] not in json.dumps(keys) and all("apiKey" not in k for k in keys["apiKeys"]),
         "list_api_keys: never shows a key")
    narrowed = await call_ok(c, s, "update_api_key", {"id": key["id"], "name": "ci-reader-renamed"})
    c.ok(narrowed["name"] == "ci-reader-renamed" and narrowed["permissions"] == "read",
         "update_api_key: renamed, permission kept", narrowed)
    await call_err(c, s, "update_api_key", {"id": key["id"], "permissions": "superuser"}, "INVALID_REQUEST")
    revoked = await call_ok(c, s, "revoke_api_key", {"id": key["id"]})
    c.ok(revoked["revoked"] is True and revoked["revokedAt"], "revoke_api_key: revoked", revoked)

    # --- audit -----------------------------------------------------------
    audit = await call_ok(c, s, "query_audit", {"action": "secret.read", "limit": 50})
    c.ok(audit["logs"] and all(e.get("action") == "secret.read" for e in audit["logs"]),
         "query_audit action=secret.read: only secret.read entries", [e.get("action") for e in audit["logs"]][:5])
    c.ok(len(audit["logs"]) >= 3, "query_audit: the three get_secret reads are there", len(audit["logs"]))
    c.ok(v1 not in json.dumps(audit) and v2 not in json.dumps(audit), "query_audit: no values")

    # --- resources -------------------------------------------------------
    text, mime = await read_text(s, "latchkey://llms.txt")
    c.ok(text and "latchkey" in text.lower(), "read latchkey://llms.txt: text", (text or "")[:80])
    text, mime = await read_text(s, "latchkey://quickstart")
    c.ok(isinstance(_json_or_none(text), (dict, list)), "read latchkey://quickstart: JSON", mime)
    text, mime = await read_text(s, "latchkey://secrets")
    c.ok(name in text and v1 not in text and v2 not in text, "read latchkey://secrets: has it, no values", mime)
    text, mime = await read_text(s, "latchkey://audit/recent")
    c.ok(isinstance(_json_or_none(text), dict) and "secret.read" in text, "read latchkey://audit/recent: JSON", mime)
    text, mime = await read_text(s, f"latchkey://secrets/{name}")
    doc = _json_or_none(text)
    c.ok(isinstance(doc, dict) and doc.get("secret", {}).get("id") == sid, "read template latchkey://secrets/{name}",
         (text or "")[:200])
    c.ok(v1 not in text and v2 not in text, "read template: no values")

    # --- delete ----------------------------------------------------------
    deleted = await call_ok(c, s, "delete_secret", {"id": sid})
    c.ok(deleted["deleted"] is True and deleted["id"] == sid, "delete_secret: deleted", deleted)
    await call_err(c, s, "get_secret", {"id": sid}, "SECRET_NOT_FOUND")


# ---------------------------------------------------------------- transports

@asynccontextmanager
async def http_session(url: str, api_key: str | None) -> AsyncIterator[ClientSession]:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    timeout = httpx2.Timeout(30.0, read=60.0)
    async with httpx2.AsyncClient(headers=headers, timeout=timeout) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as s:
                yield s


async def run_http(c: Checks, base: str) -> None:
    url = base.rstrip("/") + "/mcp"
    tenant = f"mcp-py-{rand_suffix()}"
    # Anonymous: only what an agent without a key needs to get one.
    async with http_session(url, None) as s:
        await initialize(c, s, "http anonymous")
        tools = (await s.list_tools()).tools
        c.ok([t.name for t in tools] == ["signup"], "anonymous tools/list: only signup", [t.name for t in tools])
        c.ok(isinstance(tools[0].output_schema, dict), "anonymous tools/list: signup has an outputSchema")
        res = {str(r.uri) for r in (await s.list_resources()).resources}
        c.ok(PUBLIC_RESOURCES <= res, "anonymous resources/list: public resources", sorted(res))
        text, _ = await read_text(s, "latchkey://llms.txt")
        c.ok(text, "anonymous read latchkey://llms.txt")
        up = await call_ok(c, s, "signup", {"tenantId": tenant, "agent": "python-mcp-sdk"})
        c.ok(up["tenantId"] == tenant and isinstance(up["apiKey"], str), "signup: tenant and apiKey", up["tenantId"])
        c.ok(up["plan"] and isinstance(up["limits"], dict), "signup: plan and limits", up["plan"])
        api_key = up["apiKey"]
        await call_err(c, s, "signup", {"tenantId": tenant}, "ALREADY_EXISTS")
    # The HTTP 401 itself is checked with plain HTTP: how an SDK surfaces a
    # transport error is the SDK's business, the status and header are ours.
    async with httpx2.AsyncClient(timeout=30.0) as http:
        r = await http.post(url, headers={"accept": "application/json, text/event-stream"}, json={
            "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}})
        c.ok(r.status_code == 401, "anonymous tools/call whoami: HTTP 401", r.status_code)
        c.ok(r.headers.get("www-authenticate", "").lower().startswith("bearer"),
             "anonymous tools/call whoami: WWW-Authenticate: Bearer", r.headers.get("www-authenticate"))
    # With the key: the full surface.
    async with http_session(url, api_key) as s:
        await initialize(c, s, "http bearer")
        await exercise(c, s, tenant)


async def run_stdio(c: Checks, latchkey: str, data_dir: str) -> None:
    import os
    env = dict(os.environ)
    env.pop("LATCHKEY_API_KEY", None)  # act for the local tenant, whatever the caller's shell has
    env.setdefault("LATCHKEY_LOG", "warn")  # the server logs to our stderr; keep it to what matters
    params = StdioServerParameters(command=latchkey, args=["mcp", "--data-dir", data_dir], env=env)
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as s:
            await initialize(c, s, "stdio")
            await exercise(c, s, "local", local=True)
            # signup works over stdio too; it makes a new tenant, not a new identity for this session.
            other = f"mcp-py-{rand_suffix()}"
            up = await call_ok(c, s, "signup", {"tenantId": other, "agent": "python-mcp-sdk"})
            c.ok(up["tenantId"] == other and up["apiKey"], "stdio signup: new tenant and key", up["tenantId"])
            me = await call_ok(c, s, "whoami")
            c.ok(me["tenantId"] == "local", "stdio: still the local tenant after signup", me["tenantId"])


def _find_check_failed(e: BaseException) -> CheckFailed | None:
    if isinstance(e, CheckFailed):
        return e
    for inner in getattr(e, "exceptions", ()):
        found = _find_check_failed(inner)
        if found is not None:
            return found
    return None


def main(argv: list[str]) -> int:
    if len(argv) == 4 and argv[1] == "stdio":
        job = lambda c: run_stdio(c, argv[2], argv[3])  # noqa: E731
    elif len(argv) == 3 and argv[1] == "http":
        job = lambda c: run_http(c, argv[2])  # noqa: E731
    else:
        print(__doc__, file=sys.stderr)
        return 2
    c = Checks()
    try:
        anyio.run(job, c)
    except BaseException as e:  # noqa: BLE001 - any SDK/transport error is a failure, reported whole
        # anyio task groups (inside the SDK's transports) wrap what we raised in exception groups.
        failed = _find_check_failed(e)
        if failed is not None:
            print(f"FAIL {failed}", flush=True)
            print(f"{c.passed} passed, 1 failed")
            return 1
        print("FAIL unexpected error:", flush=True)
        traceback.print_exception(e, file=sys.stdout)
        print(f"{c.passed} passed, 1 failed")
        return 1
    print(f"{c.passed} passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
