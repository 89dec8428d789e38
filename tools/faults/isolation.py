"""Tenant-isolation matrix generated from /api/openapi.json: every operation x
every principal. Another tenant's object answers 404, a missing permission or
project scope 403, a bad or absent credential 401, the owner 2xx; collection
answers to other principals never mention the owner's objects. A project-scoped
admin key finds keys beyond its projects absent (404) and the tenant-wide
audit trail closed (403). No key is a human owner: the policy and approval
decisions answer 403 to every key; an approval request and a scoped token
are seen and handled only by the key that made them (others: 404). A claim
token is seen by its creator's and its target's keys only, revoked by the
creator's, and redeemed by the target's: the fixture claims the matrix
redeems are the other tenant's, made for the owner. A share link is the
owning tenant's, seen and managed within the key's project scope (beyond it:
404); opening one is public, for anyone holding the link."""

import datetime
import re
import time
import uuid

from common import Server, signup

PRINCIPALS = ["owner", "other-tenant", "read-key", "scoped-write", "scoped-admin", "expired", "revoked", "regenerated-old",
              "bogus", "none"]
ABBR = {"owner": "own", "other-tenant": "oth", "read-key": "rd", "scoped-write": "scp", "scoped-admin": "sad", "expired": "exp",
        "revoked": "rev", "regenerated-old": "regen", "bogus": "bog", "none": "none"}
METHODS = ("get", "put", "post", "delete", "patch")
# The tenant the matrix's own claim tokens are for (set by `Env`): neither the
# owner nor the other tenant, so no claim links the two unless a fixture says so.
CLAIM_TARGET = [None]
# The owner's secret (in its first project) the matrix's share links are made of (set by `Env`).
SHARE_SECRET = [None]
# Makes a fresh secret of the owner's in its first project (set by `Env`): a policy needs one of its own.
NEW_SECRET = [None]


def required_permission(method, path):
    """What the operation needs (from llms.txt and the service code): api-keys
    and audit need admin; reads need read; writes need write; plan needs a key."""
    if path.startswith(("/api/v1/api-keys", "/api/v1/audit", "/api/v1/webhooks", "/api/v1/backup", "/api/v1/tenant/")):
        return "admin"
    if path.startswith("/api/v1/plan") or path == "/api/v1/tokens":
        return "read"  # any key may mint a token within its own rights
    if path.endswith("/proxy") or path.endswith("/verify"):
        return "read"  # a use of the value: what a read would need
    if path.startswith("/api/v1/secret-requests"):
        return "read"  # asking a human for a value writes nothing itself
    if path == "/api/v1/secrets/export/env":
        return "read"  # reveal reads, as GET /api/v1/secrets/{id}
    return "read" if method == "get" else "write"


def family(path):
    if path == "/api/v1/secrets/{id}/restore":
        return "deleted-secrets"  # a secret of the owner's, deleted (restorable)
    if path.startswith("/api/v1/secrets/path/{"):
        return "secret-path"  # the path holds environment/name of the owner's secret (no project)
    if path.startswith("/api/v1/rotation/secrets/{"):
        return "secrets"
    if path.startswith("/api/v1/rotation/{"):
        return "rotation"
    if path.startswith("/api/v1/claim-tokens/{") and path.endswith("/claim"):
        return "claim-redeem"  # the path holds a token for the owner to redeem
    if path == "/api/v1/shares/access/{token}":
        return "share-access"  # the path holds a live link's token
    if path.startswith("/api/v1/shares/{"):
        return "shares"
    if path.startswith("/api/v1/webhooks/{"):
        return "webhooks"
    if path.startswith("/api/v1/backup/{"):
        return "backups"
    for f in ("secrets", "projects", "api-keys", "approvals", "tokens", "claim-tokens", "secret-requests"):
        if path.startswith("/api/v1/%s/{" % f):
            return f
    return None


# Query parameters an operation requires.
QUERY = {("get", "/api/v1/secrets/compare"): "?from=production&to=staging",
         ("get", "/api/v1/projects/{id}/template/validate"): "?environment=production"}
# What a path's `{name}` is: the environment and the template entry every
# project fixture is given.
NAMES = {"/api/v1/projects/{id}/environments/{name}": "isoenv", "/api/v1/projects/{id}/template/{name}": "ISO_NAME"}


def uniq(prefix):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:10])


def body_for(method, path, schema_ref, components):
    """A minimal valid body: hand-written for the known operations, otherwise
    built from the schema's required fields."""
    known = {
        ("post", "/api/signup"): lambda: {"tenantId": uniq("iso-signup")},
        ("post", "/api/v1/secrets"): lambda: {"name": uniq("SEC"), "value": "iso-value"},
        ("put", "/api/v1/secrets/{id}"): lambda: {"value": "iso-new-value"},
        ("post", "/api/v1/projects"): lambda: {"name": uniq("proj")},
        ("put", "/api/v1/projects/{id}"): lambda: {"description": "changed"},
        ("post", "/api/v1/api-keys"): lambda: {"name": uniq("key"), "permissions": "read"},
        ("put", "/api/v1/api-keys/{id}"): lambda: {"name": uniq("renamed")},
        ("post", "/api/v1/tokens"): lambda: {"scopes": ["secrets:read:iso/*"], "ttl": "5m"},
        ("post", "/api/v1/approvals/{id}/approve"): lambda: {},
        ("post", "/api/v1/approvals/{id}/deny"): lambda: {"reason": "isolation matrix"},
        ("post", "/api/v1/claim-tokens"): lambda: {"secretValue": "iso-claim", "targetTenantId": CLAIM_TARGET[0],
                                                   "contractId": "isolation"},
        ("post", "/api/v1/claim-tokens/{id}/claim"): lambda: {},
        ("post", "/api/v1/shares"): lambda: {"secretId": SHARE_SECRET[0], "expirationHours": 1, "maxUses": 1},
        ("post", "/api/v1/shares/{id}/revoke"): lambda: {"reason": "isolation matrix"},
        ("post", "/api/v1/shares/{id}/extend"): lambda: {"maxUses": 9},
        ("post", "/api/v1/shares/access/{token}"): lambda: {},
        # The fixture secret has no bindings: the proxy sends it nowhere.
        ("post", "/api/v1/secrets/{id}/proxy"): lambda: {"method": "GET", "url": "http://127.0.0.1:9/iso"},
        ("post", "/api/v1/secrets/{id}/verify"): lambda: {"candidate": "iso-guess"},
        ("post", "/api/v1/secret-requests"): lambda: {"name": uniq("WANTED"), "reason": "isolation matrix"},
        ("patch", "/api/v1/secrets/{id}"): lambda: {"description": "isolation matrix"},
        ("put", "/api/v1/secrets/path/{path}"): lambda: {"value": "iso-path-value"},
        ("post", "/api/v1/rotation"): lambda: {"secretId": NEW_SECRET[0](), "schedule": "30d"},
        # Disabled, to an address that never resolves: nothing is ever sent.
        ("post", "/api/v1/webhooks"): lambda: {"url": "https://hooks.invalid/isolation", "events": ["secret.rotation_due"],
                                               "enabled": False},
        ("put", "/api/v1/rotation/{id}"): lambda: {"schedule": "60d"},
        ("post", "/api/v1/rotation/{id}/rotate-now"): lambda: {},
        ("post", "/api/v1/rotation/secrets/{id}/rotate"): lambda: {"reason": "isolation matrix"},
        ("post", "/api/v1/projects/{id}/environments"): lambda: {"name": uniq("env")},
        ("post", "/api/v1/projects/{id}/template"): lambda: {"name": "ISO_OTHER", "description": "matrix"},
        ("post", "/api/v1/secrets/promote"): lambda: {"fromEnvironment": "iso-a", "toEnvironment": "iso-b", "dryRun": True},
        ("post", "/api/v1/secrets/import"): lambda: {"content": "%s=iso\n" % uniq("IMP").replace("-", "_"), "environment": "iso"},
    }
    if (method, path) in known:
        return known[(method, path)]()
    if schema_ref is None:
        return None
    return example(schema_ref, components, 0)


def example(schema, components, depth):
    if depth > 5:
        return None
    if "$ref" in schema:
        return example(components[schema["$ref"].rsplit("/", 1)[1]], components, depth + 1)
    if "anyOf" in schema or "oneOf" in schema:
        return example((schema.get("anyOf") or schema.get("oneOf"))[0], components, depth + 1)
    if "enum" in schema:
        return schema["enum"][0]
    t = schema.get("type")
    if isinstance(t, list):
        t = [x for x in t if x != "null"][0]
    if t == "object":
        return {k: (uniq(k) if k in ("name", "tenantId") else example(schema["properties"][k], components, depth + 1))
                for k in schema.get("required", [])}
    if t == "array":
        return []
    if t == "integer":
        return 1
    if t == "boolean":
        return False
    return "x"


class Env:
    """The owner's tenant, the principals and fixture makers."""

    def __init__(self, server):
        self.server = server
        c = server.client()
        self.c = c
        self.owner_tenant, self.owner_key = signup(c, "iso-owner")
        self.other_tenant, self.other_key = signup(c, "iso-other")
        CLAIM_TARGET[0], _ = signup(c, "iso-third")
        # Owner ids the other tenant was given by a fixture of its own (a claim
        # it made for the owner names the owner's tenant).
        self.known_to_other = set()
        c.key = self.owner_key
        self.p1 = self.mk_project()
        self.p2 = self.mk_project()
        self.owner_ids = {self.owner_tenant, self.p1, self.p2}
        SHARE_SECRET[0] = self.mk_secret(self.p1)
        NEW_SECRET[0] = lambda: self.mk_secret(self.p1)
        self.controls = []  # (description, Resp, ok?)
        keys = {"owner": self.owner_key, "other-tenant": self.other_key, "none": None,
                "bogus": "sc_" + uuid.uuid4().hex + uuid.uuid4().hex[:11]}
        keys["read-key"] = self.mk_key("read")[1]
        keys["scoped-write"] = self.mk_key("write", [self.p2])[1]
        keys["scoped-admin"] = self.mk_key("admin", [self.p2])[1]
        exp_at = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=2)
        self.expired_at = time.monotonic() + 2.5
        _, keys["expired"] = self.mk_key("admin", expires=exp_at.isoformat().replace("+00:00", "Z"))
        self.control("expired key works before it expires", "GET", "/api/v1/plan", keys["expired"], 200)
        rid, keys["revoked"] = self.mk_key("admin")
        self.control("revoked key works before revocation", "GET", "/api/v1/plan", keys["revoked"], 200)
        self.control("revoke", "DELETE", "/api/v1/api-keys/" + rid, self.owner_key, 200)
        gid, keys["regenerated-old"] = self.mk_key("admin")
        self.control("regenerate", "POST", "/api/v1/api-keys/%s/regenerate" % gid, self.owner_key, 200)
        self.keys = keys
        # other tenant's own objects, for the reverse direction
        self.other_secret = self.req("POST", "/api/v1/secrets", self.other_key, {"name": "OTHER", "value": "o"}).json()["id"]

    def req(self, method, path, key, body=None):
        return self.c.req(method.upper(), path, body, key=key)

    def control(self, what, method, path, key, want, body=None):
        r = self.req(method, path, key, body)
        self.controls.append((what, r, r.status == want))
        return r

    def mk_project(self):
        r = self.req("POST", "/api/v1/projects", self.owner_key, {"name": uniq("p")})
        if r.status != 201:
            raise RuntimeError("fixture project: " + r.short())
        pid = r.json()["id"]
        if hasattr(self, "owner_ids"):
            self.owner_ids.add(pid)
        return pid

    def mk_secret(self, project=None):
        body = {"name": uniq("S"), "value": "fixture-" + uuid.uuid4().hex}
        if project:
            body["projectId"] = project
        r = self.req("POST", "/api/v1/secrets", self.owner_key, body)
        if r.status != 201:
            raise RuntimeError("fixture secret: " + r.short())
        sid = r.json()["id"]
        self.owner_ids.add(sid)
        return sid

    def mk_key(self, perm, scope=None, expires=None):
        body = {"name": uniq("k"), "permissions": perm}
        if scope:
            body["projectScope"] = scope
        if expires:
            body["expiresAt"] = expires
        r = self.req("POST", "/api/v1/api-keys", self.owner_key, body)
        if r.status != 201:
            raise RuntimeError("fixture key: " + r.short())
        j = r.json()
        kid = j.get("id") or j.get("key", {}).get("id")
        if hasattr(self, "owner_ids"):
            self.owner_ids.add(kid)
        return kid, j["apiKey"]

    def fixture(self, fam):
        if fam == "secrets":
            return self.mk_secret(self.p1)
        if fam == "projects":
            pid = self.mk_project()
            for path, body in (("environments", {"name": "isoenv"}), ("template", {"name": "ISO_NAME"})):
                r = self.req("POST", "/api/v1/projects/%s/%s" % (pid, path), self.owner_key, body)
                if r.status not in (200, 201):
                    raise RuntimeError("fixture project %s: %s" % (path, r.short()))
            return pid
        if fam == "deleted-secrets":
            sid = self.mk_secret(self.p1)
            r = self.req("DELETE", "/api/v1/secrets/" + sid, self.owner_key)
            if r.status != 200:
                raise RuntimeError("fixture deleted secret: " + r.short())
            return sid
        if fam == "secret-path":
            name = uniq("PATHED")
            r = self.req("POST", "/api/v1/secrets", self.owner_key, {"name": name, "value": "pathed", "environment": "iso"})
            if r.status != 201:
                raise RuntimeError("fixture secret by path: " + r.short())
            self.owner_ids.add(r.json()["id"])
            return "iso/" + name
        if fam == "rotation":
            r = self.req("POST", "/api/v1/rotation", self.owner_key, {"secretId": self.mk_secret(self.p1), "schedule": "30d"})
            if r.status != 201:
                raise RuntimeError("fixture rotation policy: " + r.short())
            self.owner_ids.add(r.json()["id"])
            return r.json()["id"]
        if fam == "api-keys":
            return self.mk_key("read")[0]
        if fam == "approvals":
            # A token request of the owner's key that reaches a critical secret: pending.
            name = uniq("CRIT")
            r = self.req("POST", "/api/v1/secrets", self.owner_key,
                         {"name": name, "value": "crit", "environment": "iso", "accessTier": "critical"})
            if r.status != 201:
                raise RuntimeError("fixture critical secret: " + r.short())
            self.owner_ids.add(r.json()["id"])
            r = self.req("POST", "/api/v1/tokens", self.owner_key, {"scopes": ["secrets:read:iso/%s" % name]})
            if r.status != 202:
                raise RuntimeError("fixture approval: " + r.short())
            aid = r.json()["approvalId"]
            self.owner_ids.add(aid)
            return aid
        if fam == "claim-tokens":
            r = self.req("POST", "/api/v1/claim-tokens", self.owner_key,
                         {"secretValue": "iso-claim", "targetTenantId": CLAIM_TARGET[0], "contractId": "isolation"})
            if r.status != 201:
                raise RuntimeError("fixture claim token: " + r.short())
            cid = r.json()["id"]
            self.owner_ids.add(cid)
            return cid
        if fam == "claim-redeem":
            # The other tenant hands the owner a secret: only the owner's keys may redeem it.
            r = self.req("POST", "/api/v1/claim-tokens", self.other_key,
                         {"secretValue": "iso-handed", "secretName": uniq("HANDED"), "targetTenantId": self.owner_tenant,
                          "contractId": "isolation"})
            if r.status != 201:
                raise RuntimeError("fixture claim token for the owner: " + r.short())
            self.known_to_other.add(self.owner_tenant)
            return r.json()["token"]
        if fam in ("shares", "share-access"):
            r = self.req("POST", "/api/v1/shares", self.owner_key, {"secretId": SHARE_SECRET[0], "maxUses": 5})
            if r.status != 201:
                raise RuntimeError("fixture share link: " + r.short())
            self.owner_ids.add(r.json()["id"])
            return r.json()["id"] if fam == "shares" else r.json()["token"]
        if fam == "secret-requests":
            r = self.req("POST", "/api/v1/secret-requests", self.owner_key, {"name": uniq("WANTED"), "reason": "isolation"})
            if r.status != 201:
                raise RuntimeError("fixture secret request: " + r.short())
            self.owner_ids.add(r.json()["id"])
            return r.json()["id"]
        if fam in ("webhooks", "backups"):
            # At most 20 of each a tenant: one, made again only once a cell deleted it.
            path = {"webhooks": "/api/v1/webhooks/", "backups": "/api/v1/backup/"}[fam]
            kept = getattr(self, "kept_" + fam, None)
            if kept and self.req("GET", path + kept, self.owner_key).status == 200:
                return kept
            # A disabled hook to an address that never resolves: the matrix sends no webhook anywhere.
            body = {"webhooks": {"url": "https://hooks.invalid/isolation", "events": ["secret.rotation_due"], "enabled": False},
                    "backups": {"name": uniq("iso-backup")}}[fam]
            r = self.req("POST", path.rstrip("/"), self.owner_key, body)
            if r.status != 201:
                raise RuntimeError("fixture %s: %s" % (fam, r.short()))
            kid = r.json()["id"]
            self.owner_ids.add(kid)
            setattr(self, "kept_" + fam, kid)
            return kid
        if fam == "tokens":
            r = self.req("POST", "/api/v1/tokens", self.owner_key, {"scopes": ["secrets:read:nothing/*"]})
            if r.status != 201:
                raise RuntimeError("fixture token: " + r.short())
            tid = r.json()["tokenId"]
            self.owner_ids.add(tid)
            return tid
        raise KeyError(fam)


def expected(op_public, perm, fam, principal, method, path):
    """Expected status class for one cell: '2xx', '401', '403' or '404'."""
    if op_public:
        return "2xx"
    if principal in ("expired", "revoked", "regenerated-old", "bogus", "none"):
        return "401"
    # Humans' actions: no key decides an approval or changes the policy.
    if path == "/api/v1/policy" and method == "put":
        return "403"
    if fam == "approvals" and (path.endswith("/approve") or path.endswith("/deny")):
        return "403"  # refused before the request is even looked up
    if fam == "approvals" and path.endswith("/redeem"):
        return "409" if principal == "owner" else "404"  # still pending; another key's looks absent
    if fam in ("approvals", "tokens") and principal != "owner":
        return "404"  # made by the owner's key: only it (or an admin reaching as far) sees it
    if path == "/api/v1/tokens" and principal != "other-tenant":
        return "2xx"  # a token within the asking key's own rights
    if path == "/api/v1/claim-tokens" and method == "post" and principal in ("scoped-write", "scoped-admin"):
        return "2xx"  # a claim made from a value lies in no project
    if path == "/api/v1/shares" and method == "post" and principal != "owner":
        # Making a link reads the owner's secret (in project p1): read is enough,
        # another tenant finds no such secret, a key scoped to p2 may not read it.
        return {"other-tenant": "404", "read-key": "2xx"}.get(principal, "403")
    if fam == "shares" and principal in ("scoped-write", "scoped-admin"):
        return "404"  # a link to a secret beyond the key's projects looks absent
    if path.endswith("/proxy") and principal in ("owner", "read-key"):
        return "403"  # DESTINATION_NOT_BOUND: checked before the value is opened
    if path in ("/api/v1/secrets/compare", "/api/v1/secrets/export/env") and principal in ("scoped-write", "scoped-admin"):
        return "403"  # without projectId it reads secrets in no project: beyond a scoped key
    if path == "/api/v1/rotation" and method == "post" and principal != "owner":
        # A policy for the owner's secret in project p1: another tenant finds no such secret.
        return {"other-tenant": "404"}.get(principal, "403")
    if fam == "secret-path" and method == "put" and principal == "other-tenant":
        return "2xx"  # a secret at that path in its own tenant: created
    if fam == "secret-requests" and principal in ("scoped-write", "scoped-admin"):
        return "404"  # a request for a place (no project) beyond the key's projects looks absent
    if path == "/api/v1/webhooks/{id}/test" and principal == "owner":
        return "409"  # the fixture hook is disabled, so nothing is ever sent
    if path == "/api/v1/backup/restore" and principal in ("owner", "other-tenant"):
        return "400"  # the body must be an archive; the matrix sends none
    if principal == "owner":
        return "2xx"
    if principal == "other-tenant":
        return "404" if fam else "2xx"
    if principal == "read-key":
        return "2xx" if perm == "read" else "403"
    if principal == "scoped-write":
        if perm == "admin":
            return "403"
        if fam in ("secrets", "projects", "secret-path", "rotation", "deleted-secrets"):
            return "403"  # the owner's object lies outside the key's project scope
        if method == "post":
            return "403"  # a secret without a project, or a project: outside a scoped key's reach
        return "2xx"
    if principal == "scoped-admin":
        if path.startswith(("/api/v1/audit", "/api/v1/webhooks", "/api/v1/backup", "/api/v1/tenant/")):
            return "403"  # the trail, hooks, backups and the data key cover the whole tenant
        if fam == "api-keys":
            return "404"  # the fixture key has no project scope: beyond a scoped admin's reach
        if fam in ("secrets", "projects", "secret-path", "rotation", "deleted-secrets") or method == "post":
            return "403"  # as for the scoped write key
        return "2xx"
    raise KeyError(principal)


def matches(status, want):
    return (200 <= status < 300) if want == "2xx" else status == int(want)


def run(ctx, res):
    server = Server(ctx, ctx.tempdir("isolation"))
    try:
        server.start()
        env = Env(server)
        spec = env.req("GET", "/api/openapi.json", None).json()
        components = spec.get("components", {}).get("schemas", {})
        ops = []
        for path, item in sorted(spec["paths"].items()):
            for method in METHODS:
                if method in item:
                    ops.append((method, path, item[method]))
        wait = env.expired_at - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        bad = []
        table = []
        cells = 0
        probed = set()  # owner ids the other tenant itself sent: its own audit rows may echo them
        for method, path, op in ops:
            public = op.get("security") == []
            perm = required_permission(method, path)
            fam = family(path)
            if "{" in path and not fam:
                bad.append("%s %s: no fixture for this path's parameters (update tools/faults/isolation.py)" % (method.upper(), path))
                continue
            ref = None
            rb = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            if rb is not None:
                ref = rb
            row = []
            for principal in PRINCIPALS:
                real = path + QUERY.get((method, path), "")
                if fam:
                    real = path.replace("{name}", NAMES.get(path, "{name}"))
                    real = re.sub(r"\{[^}]+\}", env.fixture(fam), real) + QUERY.get((method, path), "")
                body = body_for(method, path, ref, components)
                if principal == "other-tenant":
                    probed.update(i for i in env.owner_ids if i in real)
                r = env.req(method, real, env.keys[principal], body)
                cells += 1
                want = expected(public, perm, fam, principal, method, path)
                ok = matches(r.status, want)
                note = ""
                if ok and principal != "owner" and not fam and 200 <= r.status < 300 and not public:
                    text = r.body.decode("utf-8", "replace")
                    hidden = [i for i in env.owner_ids - probed - env.known_to_other if i in text]
                    if principal == "other-tenant" and hidden:
                        ok, note = False, "answer mentions the owner's objects %s" % hidden[:3]
                    if principal == "scoped-admin" and method == "get" and path == "/api/v1/api-keys":
                        beyond = [k.get("name") for k in r.json().get("apiKeys", [])
                                  if not k.get("projectScope") or any(i != env.p2 for i in k["projectScope"])]
                        if beyond:
                            ok, note = False, "scoped admin's key list shows keys beyond its reach %s" % beyond[:3]
                    if principal in ("scoped-write", "scoped-admin") and method == "get":
                        outside = [i for i in env.owner_ids - {env.p2, env.owner_tenant} if i in text
                                   and (path.startswith("/api/v1/secrets") or path.startswith("/api/v1/projects"))]
                        if outside:
                            ok, note = False, "scoped key's list shows objects outside its scope %s" % outside[:3]
                row.append("%d%s" % (r.status, "" if ok else "*"))
                if not ok:
                    bad.append("%s %s as %s: expected %s, got %s %s; request %s %s body=%s; response %s"
                               % (method.upper(), path, principal, want, r.status, note, method.upper(), real,
                                  (r.req_body or b"").decode(), r.body.decode("utf-8", "replace")[:300]))
            table.append(("%s %s" % (method.upper(), path), row))

        # cross-references and positive controls beyond the plain matrix
        extra = []
        ps = env.mk_secret(env.p2)
        extra.append(("scoped key reads a secret in its project", "GET", "/api/v1/secrets/" + ps, "scoped-write", None, "2xx"))
        extra.append(("scoped key updates a secret in its project", "PUT", "/api/v1/secrets/" + ps, "scoped-write", {"value": "n"}, "2xx"))
        extra.append(("scoped key creates a secret in its project", "POST", "/api/v1/secrets", "scoped-write",
                      {"name": uniq("S"), "value": "v", "projectId": env.p2}, "2xx"))
        extra.append(("scoped key creates a secret in another project", "POST", "/api/v1/secrets", "scoped-write",
                      {"name": uniq("S"), "value": "v", "projectId": env.p1}, "403"))
        extra.append(("scoped admin regenerates a key of its project", "POST",
                      "/api/v1/api-keys/%s/regenerate" % env.mk_key("read", [env.p2])[0], "scoped-admin", {}, "2xx"))
        extra.append(("read key cannot mint an admin key", "POST", "/api/v1/api-keys", "read-key",
                      {"name": "x", "permissions": "admin"}, "403"))
        extra.append(("other tenant files a secret under the owner's project", "POST", "/api/v1/secrets", "other-tenant",
                      {"name": uniq("S"), "value": "v", "projectId": env.p1}, "400"))
        extra.append(("other tenant filters its list by the owner's project", "GET", "/api/v1/secrets?projectId=" + env.p1,
                      "other-tenant", None, "2xx-empty"))
        extra.append(("owner reads the other tenant's secret", "GET", "/api/v1/secrets/" + env.other_secret, "owner", None, "404"))
        extra.append(("owner updates the other tenant's secret", "PUT", "/api/v1/secrets/" + env.other_secret, "owner",
                      {"value": "x"}, "404"))
        extra.append(("owner deletes the other tenant's secret", "DELETE", "/api/v1/secrets/" + env.other_secret, "owner", None, "404"))
        extra.append(("other tenant reads a missing id (same answer as another tenant's)", "GET",
                      "/api/v1/secrets/" + str(uuid.uuid4()), "other-tenant", None, "404"))
        for what, method, path, principal, body, want in extra:
            r = env.req(method, path, env.keys[principal], body)
            cells += 1
            if want == "2xx-empty":
                ok = r.status == 200 and not any(i in r.body.decode("utf-8", "replace") for i in env.owner_ids - {env.p1})
                ok = ok or r.status == 400
            elif want == "400":
                ok = r.status in (400, 404)
            else:
                ok = matches(r.status, want)
            if not ok:
                bad.append("%s: expected %s, got %s; request %s %s as %s body=%s; response %s"
                           % (what, want, r.status, method, path, principal, body, r.body.decode("utf-8", "replace")[:300]))
        # Authorization: Bearer is an equal way to present a key
        b_ok = server.client(timeout=10).req("GET", "/api/v1/plan", key=env.owner_key, auth="bearer")
        b_bad = server.client(timeout=10).req("GET", "/api/v1/plan", key=env.keys["bogus"], auth="bearer")
        cells += 2
        if b_ok.status != 200:
            bad.append("Bearer owner key: " + b_ok.short())
        if b_bad.status != 401:
            bad.append("Bearer bogus key: " + b_bad.short())
        for what, r, ok in env.controls:
            if not ok:
                bad.append("set-up control '%s' failed: %s" % (what, r.short()))

        header = "%-42s " % "operation" + " ".join("%-5s" % ABBR[p] for p in PRINCIPALS)
        lines = [header] + ["%-42s " % name[:42] + " ".join("%-5s" % c for c in row) for name, row in table]
        res.num("%d operations x %d principals + %d extra cells = %d requests; %d wrong (marked *)"
                % (len(ops), len(PRINCIPALS), len(extra) + 2, cells, len(bad)))
        res.num("\n".join(lines))
        for b in bad:
            res.fail(b)
    finally:
        server.kill()
