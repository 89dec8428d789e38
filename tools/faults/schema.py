"""Schemathesis against /api/openapi.json, authenticated with the owner's key:
no 5xx, status codes and bodies as documented, schema-violating input
rejected, credentials not ignored. Some checks are advisory (listed, not failed)."""

import os
import re
import subprocess
import time

from common import ROOT, Server, signup

HERE = os.path.dirname(os.path.abspath(__file__))
# failure codes that make the check FAIL (see `schemathesis explain CODE`)
BLOCKING = {
    "ST101": "not_a_server_error", "ST102": "not_a_server_error", "ST103": "status_code_conformance",
    "ST104": "content_type_conformance", "ST105": "content_type_conformance", "ST106": "content_type_conformance",
    "ST107": "response_headers_conformance", "ST108": "response_schema_conformance", "ST109": "response_schema_conformance",
    "ST110": "response_schema_conformance", "ST201": "negative_data_rejection", "ST301": "use_after_free",
    "ST302": "ensure_resource_availability", "ST401": "ignored_auth", "ST402": "object_level_authorization",
}
ADVISORY = {"ST202": "positive_data_acceptance (schema lacks the server's value constraints)",
            "ST203": "missing_required_header", "ST204": "unsupported_method (undeclared method not 405)",
            "ST205": "allow_header_conformance", "ST112": "max_response_time"}


# Routes whose DELETE ends a record (revokes a claim or a share link, cancels
# a secret request) and keeps it readable with its status, as the API
# documents: a later GET answering 200 is not a use after free.
ENDED_NOT_REMOVED = ("/api/v1/claim-tokens/", "/api/v1/shares/", "/api/v1/secret-requests/")


def ended_not_removed(curl):
    deletes = re.findall(r"curl -X DELETE [^;]*?(https?://\S+)", curl)
    return bool(deletes) and all(any(p in url for p in ENDED_NOT_REMOVED) for url in deletes)


def venv_python():
    p = os.environ.get("LATCHKEY_FAULTS_PYTHON")
    if p:
        return p
    out = subprocess.run(["bash", os.path.join(ROOT, "tools", "py-venv")], capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise RuntimeError("tools/py-venv failed: " + out.stderr[-500:])
    return out.stdout.strip().splitlines()[-1]


def parse_failures(text):
    """[(operation, code, title, detail, response, curl)] from schemathesis' FAILURES section."""
    items = []
    if "FAILURES" not in text:
        return items
    section = text.split("FAILURES", 1)[1]
    section = re.split(r"\n=+ (WARNINGS|SUMMARY) =+", section)[0]
    blocks = re.split(r"\n_{3,} (.+?) _{3,}\n", section)
    for i in range(1, len(blocks) - 1, 2):
        op, body = blocks[i].strip(), blocks[i + 1]
        for case in re.split(r"\n\d+\. Test Case ID: \S+\n", "\n" + body):
            codes = re.findall(r"^- (ST\d+) (.+)$", case, re.M)
            if not codes:
                continue
            resp = re.search(r"^\[(\d+)\] [^\n]*:\n\n\s*(.+)$", case, re.M)
            curls = re.findall(r"^\s*(curl .+)$", case, re.M)
            for code, title in codes:
                detail = ""
                m = re.search(r"^- %s .+\n\n\s*(.+)$" % code, case, re.M)
                if m:
                    detail = m.group(1).strip()
                items.append((op, code, title.strip(), detail,
                              ("%s %s" % (resp.group(1), resp.group(2).strip()[:300])) if resp else "",
                              " ; then ".join(x.strip() for x in curls)))
    return items


def run(ctx, res):
    python = venv_python()
    server = Server(ctx, ctx.tempdir("schemathesis"))
    try:
        server.start()
        c = server.client()
        _, key = signup(c, "schema")
        c.key = key
        key_id = c.req("GET", "/api/v1/plan").json()["keyId"]
        # a few real objects, so reads and updates also meet existing ids
        pid = c.req("POST", "/api/v1/projects", {"name": "schema-project"}).json()["id"]
        c.req("POST", "/api/v1/secrets", {"name": "SCHEMA_SECRET", "value": "v", "projectId": pid})
        c.close()
        examples = 5 if ctx.quick else 200
        seed = int(time.time()) % 100000
        env = dict(os.environ)
        env.update({"SCHEMATHESIS_HOOKS": "st_hooks", "PYTHONPATH": HERE + os.pathsep + env.get("PYTHONPATH", ""),
                    "LATCHKEY_FAULTS_PROTECTED_IDS": key_id, "NO_COLOR": "1", "PYTHONDONTWRITEBYTECODE": "1"})
        cmd = [python, "-m", "schemathesis.cli", "run", server.base + "/api/openapi.json",
               # Both credential headers, the same key: the document offers both
               # schemes, and a request whose two headers disagree is refused (401).
               "-H", "X-API-Key: " + key, "-H", "Authorization: Bearer " + key, "--checks", "all", "--max-examples", str(examples),
               "--seed", str(seed), "--workers", "2", "--request-timeout", "30"]
        if ctx.quick:
            cmd.append("--no-shrink")
        t0 = time.monotonic()
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=240 if ctx.quick else 1500, env=env, cwd=ctx.workdir)
        except subprocess.TimeoutExpired:
            res.fail("schemathesis did not finish in time")
            return
        text = out.stdout + out.stderr
        with open(os.path.join(ctx.workdir, "schemathesis.txt"), "w") as f:
            f.write(text)
        summary = re.search(r"Test cases:\n\s*(.+)", text)
        res.num("schemathesis %s, seed %d, max-examples %d, %.0f s: %s" % (
            (re.search(r"Schemathesis v(\S+)", text) or re.search("()", "")).group(1), seed, examples,
            time.monotonic() - t0, summary.group(1).strip() if summary else "no summary"))
        items = parse_failures(text)
        seen = set()
        for op, code, title, detail, resp, curl in items:
            k = (op, code)
            if k in seen:
                continue
            seen.add(k)
            line = "%s %s %s: %s | response %s | %s" % (op, code, title, detail, resp, curl)
            if code == "ST301" and ended_not_removed(curl):
                res.num("advisory (a DELETE that ends a record and keeps it, by design): " + line)
            elif code in BLOCKING:
                res.fail(line)
            else:
                res.num("advisory (%s): %s" % (ADVISORY.get(code, "unclassified"), line))
        if "Authentication failed" in text:
            m = re.search(r"Authentication failed[^\n]*", text)
            res.fail("schemathesis could not authenticate: %s" % m.group(0))
        if out.returncode != 0 and not items and "Authentication failed" not in text:
            res.fail("schemathesis exited %d without parsable failures; tail:\n%s" % (out.returncode, text[-2000:]))
        if not summary:
            res.fail("no test-case summary in schemathesis output; tail:\n" + text[-1500:])
        r = server.client(key).req("GET", "/api/v1/plan")
        if r.status != 200:
            res.fail("the owner's key stopped working during the run: " + r.short())
    finally:
        server.kill()
