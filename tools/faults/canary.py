"""Canary sweep: store canary values, run traffic (including failures), then
search the server's stderr/stdout, every file in the data dir (db, -wal, -shm),
the audit trail and every recorded response except explicit reads, for each
canary raw, hex, base64 (every alignment, standard and URL-safe) and
URL-encoded. Hits are allowed only in explicit reads: a secret's read, and a
share link's access (its API answer and the page's reveal).

Canaries of `masked` and `use_only` secrets are allowed nowhere, explicit
reads included: they go through every use (the proxy, to a loopback echo
server that sends the credential back in several encodings; verify; compare;
requests) and every read, and none may come back."""

import base64
import binascii
import http.server
import json
import os
import re
import threading
import uuid
from urllib.parse import quote, quote_plus

from common import Server, signup

EXPLICIT_READ = re.compile(r"^/api/v1/secrets/(path/[^?]+|[^/?]+)(\?version=\d+)?$")
# The dotenv export answers the values of reveal secrets: an explicit read too.
EXPORT = re.compile(r"^/api/v1/secrets/export/env(\?.*)?$")
SHARE_ACCESS = re.compile(r"^(/api/v1/shares/access/|/s/)shr_[^/?]+$")


def encodings(value):
    b = value.encode()
    out = {"raw": [b], "hex": [binascii.hexlify(b), binascii.hexlify(b).upper()],
           "url": [quote(value, safe="").encode(), quote_plus(value).encode(), quote(value).encode()],
           "base64": []}
    for k in range(3):
        sub = b[k:]
        sub = sub[: len(sub) - len(sub) % 3]
        out["base64"].append(base64.b64encode(sub))
        out["base64"].append(base64.urlsafe_b64encode(sub))
    return out


def scan(blob, canaries):
    """[(canary label, encoding)] found in blob."""
    hits = []
    for label, encs in canaries.items():
        for enc, forms in encs.items():
            if any(f in blob for f in forms):
                hits.append((label, enc))
    return hits


def explicit(r):
    """An explicit read: REST GET of one secret, or the MCP get_secret tool."""
    if r.method == "GET" and (EXPLICIT_READ.match(r.path) or EXPORT.match(r.path)) and r.status == 200:
        return True
    if r.method == "POST" and SHARE_ACCESS.match(r.path) and r.status == 200:
        return True
    if r.path == "/mcp" and r.req_body:
        try:
            req = json.loads(r.req_body)
        except ValueError:
            return False
        return req.get("method") == "tools/call" and req.get("params", {}).get("name") == "get_secret"
    return False


class Echo(http.server.BaseHTTPRequestHandler):
    """A loopback upstream for the proxy that sends back everything it got,
    the credential included, raw, base64 and hex: the proxy must redact it."""

    def _echo(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        got = ("%s %s\n%s\n" % (self.command, self.path, self.headers)).encode() + body
        out = got + b"\n" + base64.b64encode(got) + b"\n" + binascii.hexlify(got)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("X-Echo-Auth", self.headers.get("Authorization", "") + self.headers.get("X-Api-Key", ""))
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = _echo

    def log_message(self, *_):
        pass


def start_echo():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def use_without_reveal(c, key, tool, canary, hidden, res):
    """Secrets in all three modes, then every read and use of them."""
    echo = start_echo()
    up = "http://127.0.0.1:%d/echo/" % echo.server_address[1]
    try:
        ids, vals = {}, {}
        for name, mode, inject in [
            ("HID_MASKED", "masked", {"type": "bearer"}),
            ("HID_USE_ONLY", "use_only", {"type": "header", "name": "X-Api-Key"}),
            ("HID_QUERY", "use_only", {"type": "query", "name": "key"}),
            ("HID_BASIC", "use_only", {"type": "basic", "username": "svc"}),
        ]:
            vals[name] = canary(name, hidden=True)
            r = c.req("POST", "/api/v1/secrets", {"name": name, "value": vals[name], "exposure": mode,
                                                  "environment": "production",
                                                  "bindings": [{"urlPrefix": up, "inject": inject}]})
            if r.status != 201:
                res.fail("creating %s answered %s" % (name, r.short()))
                return
            ids[name] = r.json()["id"]
        c.req("POST", "/api/v1/secrets", {"name": "HID_USE_ONLY", "value": canary("staging-hidden", hidden=True),
                                          "exposure": "use_only", "environment": "staging"})
        for name, sid in ids.items():
            c.req("GET", "/api/v1/secrets/" + sid)
            c.req("GET", "/api/v1/secrets/%s?version=1" % sid)
            c.req("GET", "/api/v1/secrets/%s/versions" % sid)
            tool("get_secret", {"name": name, "environment": "production"})
            tool("get_secret", {"name": name, "environment": "production", "version": 1})
            tool("list_secret_versions", {"name": name, "environment": "production"})
            c.req("POST", "/api/v1/shares", {"secretId": sid, "expirationHours": 1})
            c.req("POST", "/api/v1/claim-tokens", {"secretId": sid, "targetTenantId": "canary-other", "contractId": "c"})
            for method in ("GET", "POST"):
                r = c.req("POST", "/api/v1/secrets/%s/proxy" % sid,
                          {"method": method, "url": up + "x?q=1", "body": "hello", "headers": {"X-Trace": "1"}})
                if r.status != 200 or b"[latchkey:" + name.encode() + b"]" not in r.body:
                    res.fail("the proxy did not reach the echo server, or echoed no redaction: " + r.short())
                tool("http_request_with_secret", {"secret": name, "environment": "production", "method": method,
                                                  "url": up + "y"})
            # refused destinations carry the value nowhere either
            c.req("POST", "/api/v1/secrets/%s/proxy" % sid, {"method": "GET", "url": "http://127.0.0.1:9/elsewhere"})
            c.req("POST", "/api/v1/secrets/%s/verify" % sid, {"candidate": "not-it"})
            c.req("POST", "/api/v1/secrets/%s/verify" % sid, {"candidate": vals[name]})
            tool("verify_secret", {"secret": name, "environment": "production", "candidate": "still-not-it"})
        for r in [c.req("GET", "/api/v1/secrets/compare?from=production&to=staging"),
                  c.req("POST", "/api/v1/secrets/%s/verify" % ids["HID_MASKED"], {"candidate": vals["HID_MASKED"]})]:
            if r.status != 200:
                res.fail("a check failed: " + r.short())
        tool("compare_environments", {"from": "production", "to": "staging"})
        # the lifecycle: a path read, metadata, a dotenv export (refused: not reveal), a promote (the
        # values move, never shown), a rotation, a delete and restore, and the MCP tools of each
        c.req("GET", "/api/v1/secrets/path/production/HID_MASKED")
        c.req("PATCH", "/api/v1/secrets/" + ids["HID_USE_ONLY"], {"description": "canary", "expiresIn": "30d"})
        r = c.req("GET", "/api/v1/secrets/export/env?environment=production")
        if r.status != 403:
            res.fail("exporting masked and use_only secrets was not refused: " + r.short())
        for dry in (True, False):
            c.req("POST", "/api/v1/secrets/promote", {"fromEnvironment": "production", "toEnvironment": "canary-copy",
                                                      "dryRun": dry})
        tool("promote_environment", {"fromEnvironment": "production", "toEnvironment": "canary-copy-mcp", "apply": True})
        c.req("GET", "/api/v1/secrets/path/canary-copy/HID_USE_ONLY")
        c.req("POST", "/api/v1/rotation/secrets/%s/rotate" % ids["HID_BASIC"], {"gracePeriod": "1h", "reason": "canary"})
        c.req("GET", "/api/v1/rotation/secrets/%s/status" % ids["HID_BASIC"])
        tool("rotate_secret", {"secret": "HID_QUERY", "environment": "production"})
        c.req("DELETE", "/api/v1/secrets/" + ids["HID_QUERY"])
        c.req("GET", "/api/v1/secrets?deleted=true")
        c.req("POST", "/api/v1/secrets/%s/restore" % ids["HID_QUERY"])
        tool("list_expiring_secrets", {"days": 60})
        # a dotenv import with a bad line stores nothing and echoes no line of it
        bad = "GOOD_ONE=%s\nthis is not a line %s\n" % (canary("import-bad-good", hidden=True), canary("import-bad", hidden=True))
        r = c.req("POST", "/api/v1/secrets/import", {"content": bad, "environment": "canary-import"})
        if r.status != 400:
            res.fail("a bad dotenv import was not refused: " + r.short())
        tool("import_env", {"content": bad, "environment": "canary-import"})
        c.req("POST", "/api/v1/secret-requests", {"name": "HID_REQUESTED", "reason": "canary"})
        tool("request_secret", {"name": "HID_REQUESTED_MCP", "reason": "canary"})
        c.req("GET", "/api/v1/secrets?limit=200")
        tool("list_secrets", {})
        tool("resources/read", None)
    finally:
        echo.shutdown()


def run(ctx, res):
    data_dir = ctx.tempdir("canary")
    log_filter = os.environ.get("LATCHKEY_FAULTS_CANARY_LOG", "debug")
    # The proxy's echo server listens on loopback.
    server = Server(ctx, data_dir, env={"LATCHKEY_LOG": log_filter, "LATCHKEY_ALLOW_PRIVATE_DESTINATIONS": "1"})
    recorded = []
    values = {}
    hidden = set()
    try:
        server.start()
        c = server.client(recorder=recorded)
        _, key = signup(c, "canary")
        other_tenant, other_key = signup(c, "canary-other")
        c.key = key

        def canary(tag, hidden=False):
            v = "CNRY-%s p@ss/w+rd:%s;%s" % (tag, uuid.uuid4().hex, uuid.uuid4().hex[:8])
            values[tag] = v
            if hidden:
                hidden_tags.add(tag)
            return v

        hidden_tags = hidden

        ids = {}
        for i in range(4):
            r = c.req("POST", "/api/v1/secrets", {"name": "CANARY_%d" % i, "value": canary("create%d" % i),
                                                  "secretType": "api-key", "tags": ["canary"]})
            ids[i] = r.json()["id"]
        r = c.req("PUT", "/api/v1/secrets/" + ids[0], {"value": canary("update0"), "expectedVersion": 1})
        read_key = c.req("POST", "/api/v1/api-keys", {"name": "reader", "permissions": "read"}).json()["apiKey"]
        pid = c.req("POST", "/api/v1/projects", {"name": "canary-project"}).json()["id"]
        c.req("POST", "/api/v1/secrets", {"name": "IN_PROJECT", "value": canary("project"), "projectId": pid})
        # failures, each carrying a canary value
        fails = [
            ("PUT", "/api/v1/secrets/" + ids[1], {"value": canary("stale"), "expectedVersion": 7}, key),
            ("POST", "/api/v1/secrets", {"name": "CANARY_1", "value": canary("dup")}, key),
            ("POST", "/api/v1/secrets", {"name": "bad name!", "value": canary("badname")}, key),
            ("POST", "/api/v1/secrets", {"name": "UNKNOWN_FIELD", "value": canary("unknownfield"), "bogus": 1}, key),
            ("POST", "/api/v1/secrets", {"name": "BAD_TYPE", "value": canary("badtype"), "secretType": "nope"}, key),
            ("POST", "/api/v1/secrets", {"name": "BIG", "value": canary("big") + "x" * 70000}, key),
            ("POST", "/api/v1/secrets", {"name": "NOPROJ", "value": canary("noproj"), "projectId": str(uuid.uuid4())}, key),
            ("PUT", "/api/v1/secrets/" + ids[1], {"value": canary("readonly")}, read_key),
            ("POST", "/api/v1/secrets", {"name": "NOKEY", "value": canary("nokey")}, None),
            ("POST", "/api/v1/secrets", {"name": "BADKEY", "value": canary("badkey")}, "sc_" + uuid.uuid4().hex),
            ("PUT", "/api/v1/secrets/" + ids[1], {"value": canary("othertenant")}, other_key),
            ("PUT", "/api/v1/secrets/" + str(uuid.uuid4()), {"value": canary("missing")}, key),
            ("PUT", "/api/v1/secrets/" + ids[2], {"value": canary("bigupdate") + "y" * 70000}, key),
        ]
        statuses = []
        for method, path, body, k in fails:
            r = c.req(method, path, body, key=k)
            statuses.append(r.status)
            if 200 <= r.status < 300:
                res.fail("a failure case succeeded: " + r.short())
        # malformed JSON and a wrongly typed value carrying canaries
        c.req("POST", "/api/v1/secrets", raw='{"name":"TRUNC","value":"%s' % canary("truncated"))
        c.req("POST", "/api/v1/secrets", raw='{"name":"ARR","value":["%s"]}' % canary("array"))
        c.req("POST", "/api/v1/secrets", raw='{"name":"NUM","value":"%s","tags":5}' % canary("tagsnum"))
        # the MCP front (streamable HTTP, JSON answers): writes, failures, metadata, audit
        def mcp(method, params, k=key, rid=[0]):
            rid[0] += 1
            return c.req("POST", "/mcp", {"jsonrpc": "2.0", "id": rid[0], "method": method, "params": params}, key=k,
                         headers={"Accept": "application/json, text/event-stream"})

        def tool(name, args, k=key):
            return mcp("tools/call", {"name": name, "arguments": args}, k)

        mcp("initialize", {"protocolVersion": "2025-03-26", "capabilities": {}, "clientInfo": {"name": "faults", "version": "1"}})
        tool("set_secret", {"name": "MCP_CANARY", "value": canary("mcp-create")})
        tool("set_secret", {"name": "MCP_CANARY", "value": canary("mcp-update")})
        tool("set_secret", {"name": "MCP_CANARY", "value": canary("mcp-stale"), "expectedVersion": 1})
        tool("set_secret", {"name": "bad name!", "value": canary("mcp-badname")})
        tool("set_secret", {"name": "MCP_BIG", "value": canary("mcp-big") + "z" * 70000})
        tool("set_secret", {"name": "MCP_RO", "value": canary("mcp-readonly")}, read_key)
        tool("set_secret", {"name": "MCP_NOKEY", "value": canary("mcp-nokey")}, None)
        tool("list_secrets", {})
        tool("list_secret_versions", {"name": "MCP_CANARY"})
        tool("query_audit", {"limit": 1000})
        mcp("resources/list", {})
        mcp("resources/read", {"uri": "latchkey://secrets"})
        tool("get_secret", {"name": "MCP_CANARY"})
        tool("get_secret", {"name": "MCP_CANARY", "version": 1})
        # claim tokens: a hand-off to the other tenant carries a value (made,
        # refused, listed, redeemed, revoked; over REST and MCP); only the
        # target's explicit read of the new secret may show it
        made = c.req("POST", "/api/v1/claim-tokens", {"secretValue": canary("claim"), "secretName": "CLAIMED",
                                                      "targetTenantId": other_tenant, "contractId": "canary"}).json()
        dropped = c.req("POST", "/api/v1/claim-tokens", {"secretValue": canary("claim-revoked"), "secretName": "DROPPED",
                                                         "targetTenantId": other_tenant, "contractId": "canary"}).json()
        from_id = c.req("POST", "/api/v1/claim-tokens", {"secretId": ids[2], "secretName": "FROM_ID",
                                                         "targetTenantId": other_tenant, "contractId": "canary"}).json()
        for body, k in [
            ({"secretValue": canary("claim-unknownfield"), "targetTenantId": other_tenant, "contractId": "c", "bogus": 1}, key),
            ({"secretValue": canary("claim-notarget"), "targetTenantId": "no-such-tenant-x", "contractId": "c"}, key),
            ({"secretValue": canary("claim-readonly"), "targetTenantId": other_tenant, "contractId": "c"}, read_key),
            ({"secretValue": canary("claim-big") + "c" * 70000, "targetTenantId": other_tenant, "contractId": "c"}, key),
            ({"secretValue": canary("claim-both"), "secretId": ids[2], "targetTenantId": other_tenant, "contractId": "c"}, key),
        ]:
            r = c.req("POST", "/api/v1/claim-tokens", body, key=k)
            if 200 <= r.status < 300:
                res.fail("a failing claim succeeded: " + r.short())
        c.req("POST", "/api/v1/claim-tokens/%s/claim" % made.get("token"), {}, key=key)  # not the target: 404
        c.req("GET", "/api/v1/claim-tokens", key=other_key)
        c.req("GET", "/api/v1/claim-tokens/" + str(made.get("id")))
        c.req("DELETE", "/api/v1/claim-tokens/" + str(dropped.get("id")))
        c.req("POST", "/api/v1/claim-tokens/%s/claim" % dropped.get("token"), {}, key=other_key)  # revoked: 410
        claimed = c.req("POST", "/api/v1/claim-tokens/%s/claim" % made.get("token"), None, key=other_key).json() or {}
        c.req("POST", "/api/v1/claim-tokens/%s/claim" % made.get("token"), None, key=other_key)  # again: 410
        c.req("POST", "/api/v1/claim-tokens/%s/claim" % from_id.get("token"), {"name": "FROM_ID_2"}, key=other_key)
        if claimed.get("secretId"):
            c.req("GET", "/api/v1/secrets/" + claimed["secretId"], key=other_key)
        else:
            res.fail("the claim token's redemption failed: %s" % claimed)
        tool("create_claim_token", {"secretValue": canary("mcp-claim"), "targetTenantId": other_tenant, "contractId": "canary"})
        tool("create_claim_token", {"secretValue": canary("mcp-claim-bad"), "targetTenantId": other_tenant, "contractId": ""})
        tool("list_claim_tokens", {})
        tool("list_claim_tokens", {}, other_key)
        # a share link: accessed once with its password (explicit), refused
        # with a wrong one and once used up
        r = c.req("POST", "/api/v1/shares", {"secretId": ids[1], "expirationHours": 1, "maxUses": 1,
                                             "password": "canary-share-password"})
        share = r.json() or {}
        share_token = share.get("token", "shr_missing")
        c.req("POST", "/api/v1/shares/access/" + share_token, {"password": "wrong-password"})
        c.req("POST", "/api/v1/shares/access/" + share_token, {"password": "canary-share-password"})
        c.req("POST", "/api/v1/shares/access/" + share_token, {"password": "canary-share-password"})  # used up: 410
        c.req("GET", "/api/v1/shares?status=all")
        if share.get("id"):
            c.req("GET", "/api/v1/shares/" + share["id"])
        tool("list_shares", {})
        # masked and use_only secrets: every read and every use
        use_without_reveal(c, key, lambda name, args: mcp(name, {"uri": "latchkey://secrets"}) if args is None
                           else tool(name, args), canary, hidden, res)
        # ordinary traffic
        c.req("GET", "/api/v1/secrets?limit=200")
        c.req("GET", "/api/v1/secrets?tag=canary")
        c.req("GET", "/api/v1/secrets?search=CANARY")
        for sid in ids.values():
            c.req("GET", "/api/v1/secrets/%s/versions" % sid)
        c.req("GET", "/api/v1/projects")
        c.req("GET", "/api/v1/plan")
        c.req("GET", "/api/v1/api-keys")
        # explicit reads (the only place a value may appear)
        for sid in ids.values():
            c.req("GET", "/api/v1/secrets/" + sid)
            c.req("GET", "/api/v1/secrets/%s?version=1" % sid)
        c.req("GET", "/api/v1/secrets/" + ids[3], key=read_key)
        c.req("GET", "/api/v1/secrets/path/CANARY_0")
        c.req("GET", "/api/v1/secrets/export/env")
        c.req("POST", "/api/v1/secrets/import", {"content": "IMPORTED=%s\n" % canary("imported")})
        c.req("DELETE", "/api/v1/secrets/" + ids[3])
        c.req("DELETE", "/api/v1/secrets/%s?permanent=true" % ids[3])
        audit = []
        cursor = None
        for _ in range(50):
            r = c.req("GET", "/api/v1/audit?limit=1000" + ("&cursor=" + quote(cursor, safe="") if cursor else ""))
            audit.append(r.body)
            cursor = (r.json() or {}).get("nextCursor")
            if not cursor:
                break
        for fmt in ("json", "csv"):
            r = c.req("GET", "/api/v1/audit/export?format=" + fmt)
            if r.status != 200 or not r.body:
                res.fail("audit export (%s) answered %d: %s" % (fmt, r.status, r.short()))
            audit.append(r.body)
        c.close()

        canaries = {tag: encodings(v) for tag, v in values.items()}
        hits = []

        def sweep_files(when):
            for root, _, files in os.walk(data_dir):
                for f in files:
                    p = os.path.join(root, f)
                    with open(p, "rb") as fh:
                        blob = fh.read()
                    for label, enc in scan(blob, canaries):
                        hits.append("%s file %s: canary %s (%s)" % (when, os.path.relpath(p, ctx.workdir), label, enc))

        sweep_files("data dir (running):")
        server.kill()
        sweep_files("data dir (after SIGKILL):")
        with open(server.log_path, "rb") as fh:
            log = fh.read()
        plain_log = re.sub(rb"\x1b\[[0-9;]*m", b"", log)
        for label, enc in scan(plain_log, canaries):
            forms = canaries[label][enc]
            line = next((ln for ln in plain_log.splitlines() if any(f in ln for f in forms)), b"")
            hits.append("server stderr log (LATCHKEY_LOG=%s): canary %s (%s) in: %s"
                        % (log_filter, label, enc, line.decode("utf-8", "replace")[:400]))
        for i in range(server.starts):
            p = data_dir + ".stdout.%d" % i
            with open(p, "rb") as fh:
                for label, enc in scan(fh.read(), canaries):
                    hits.append("server stdout: canary %s (%s)" % (label, enc))
        for blob in audit:
            for label, enc in scan(blob, canaries):
                hits.append("GET /api/v1/audit or its export: canary %s (%s)" % (label, enc))
        explicit_hits = 0
        scanned = 0
        for r in recorded:
            head = "\n".join("%s: %s" % kv for kv in r.headers).encode()
            found = scan(r.body + b"\n" + head, canaries)
            # A masked or use_only value is answered by nothing, explicit reads included.
            for label, enc in [f for f in found if f[0] in hidden]:
                hits.append("response to %s %s (%d): %s secret's canary %s (%s): %s"
                            % (r.method, r.path, r.status, "non-reveal", label, enc, r.body.decode("utf-8", "replace")[:300]))
            found = [f for f in found if f[0] not in hidden]
            if explicit(r):
                explicit_hits += len(found)
                continue
            scanned += 1
            for label, enc in found:
                hits.append("response to %s %s (%d): canary %s (%s): %s"
                            % (r.method, r.path, r.status, label, enc, r.body.decode("utf-8", "replace")[:300]))
        res.num("%d canaries (%d writes that failed with %s); scanned %d responses, %d data-dir files, %d bytes of log, "
                "%d audit pages; %d hits in explicit reads (expected), %d elsewhere"
                % (len(values), len(fails) + 3, sorted(set(statuses)), scanned, len(os.listdir(data_dir)), len(log),
                   len(audit), explicit_hits, len(hits)))
        if explicit_hits == 0:
            res.fail("no canary found even in explicit reads: the sweep's search is broken")
        for h in hits:
            res.fail(h)
    finally:
        server.kill()
