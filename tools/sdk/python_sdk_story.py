#!/usr/bin/env python3
"""Latchkey, driven through SecretCarousel's published Python SDK.

Tells one user's story end to end -- sign up, store, list, search, read,
update, audit, delete, isolation, bad key, a hand-off by claim token and a
share link -- using only the `secretcarousel`
package (2.0.0) against a running Latchkey server. Every step is asserted;
the script stops with a non-zero exit code at the first failure.

Usage:
    python python_sdk_story.py http://127.0.0.1:18311

Setup:
    python3 -m venv /tmp/sdkvenv && /tmp/sdkvenv/bin/pip install secretcarousel
"""

import csv
import io
import json
import secrets
import sys
import urllib.request

from secretcarousel import (
    AuthenticationError,
    ForbiddenError,
    NotFoundError,
    SecretCarouselClient,
    SecretCarouselError,
    ValidationError,
)

PASSED = 0


def check(cond, msg):
    """One assertion: count it if it holds, stop the story if it does not."""
    global PASSED
    if not cond:
        print(f"FAIL: {msg}")
        print(f"{PASSED} passed, 1 failed")
        sys.exit(1)
    PASSED += 1
    print(f"  ok: {msg}")


def expect_error(call, cls, status, what):
    """Run `call`, check it raises `cls` with `status`, and return the error."""
    try:
        result = call()
    except SecretCarouselError as e:
        check(
            isinstance(e, cls) and e.status_code == status,
            f"{what} -> {cls.__name__} {status} "
            f"(got {type(e).__name__} {e.status_code}: {e.body!r})",
        )
        return e
    check(False, f"{what} -> {cls.__name__} {status} (got success: {result!r})")


def ids_of(page):
    return [s["id"] for s in page["secrets"]]


def section(title):
    print(f"\n== {title}")


def main():
    if len(sys.argv) != 2:
        print(f"usage: {sys.argv[0]} BASE_URL", file=sys.stderr)
        sys.exit(2)
    url = sys.argv[1].rstrip("/")

    tenant = f"sdk-{secrets.token_hex(4)}"
    canary = f"canary-{secrets.token_hex(8)}"
    db_value = f"postgres://u:{canary}@db/x"
    api_value = f"sk_live_{secrets.token_hex(12)}"
    new_value = f"new-value-{secrets.token_hex(8)}"
    all_values = [db_value, api_value, new_value]

    # 0. Transport: the SDK decodes a body as JSON only if the response header
    #    dict has the exact key "Content-Type" (case-sensitive lookup on
    #    dict(resp.getheaders())). Lower-case header names make every SDK call
    #    return a raw string, so check that first for a clear diagnosis.
    section("0. transport")
    with urllib.request.urlopen(f"{url}/api/signup/limits") as resp:
        names = [name for name, _ in resp.getheaders()]
    check(
        "Content-Type" in names,
        f"server sends the header name exactly as 'Content-Type', which the SDK needs "
        f"to decode JSON (got header names {names})",
    )

    # 1. An agent provisions its own vault.
    section(f"1. signup {tenant}")
    sc = SecretCarouselClient.signup(tenant, agent="python-sdk", base_url=url)
    check(isinstance(sc, SecretCarouselClient), "signup returns a client")
    check(sc.api_key.startswith("sc_"), f"api key starts with sc_ (got {sc.api_key[:8]}...)")

    # 2. The tenant id is taken now.
    section("2. signup again")
    e = expect_error(
        lambda: SecretCarouselClient.signup(tenant, agent="python-sdk", base_url=url),
        SecretCarouselError, 409, "second signup of the same tenant",
    )

    # 3. Store two secrets; the answer never echoes the value.
    section("3. create secrets")
    db = sc.create_secret(
        "DATABASE_URL", db_value,
        secret_type="database-credentials",
        tags=["db", "prod"], environment="production", description="main db",
    )
    check(isinstance(db, dict) and db.get("secretId"), f"create returns a secretId ({db!r})")
    check("value" not in db, "create response has no value key")
    check(canary not in json.dumps(db), "create response does not contain the value")
    check(db.get("version") == 1, f"new secret is at version 1 (got {db.get('version')})")
    db_id = db["secretId"]

    api = sc.create_secret("STRIPE_KEY", api_value, secret_type="api-key")
    check(api.get("secretId") and "value" not in api, "second secret created without value in response")
    check(api.get("secretType") == "api-key", f"second secret is api-key (got {api.get('secretType')})")
    api_id = api["secretId"]
    check(api_id != db_id, "the two secrets have distinct ids")

    # 4. An invalid secret type is rejected and changes nothing.
    section("4. invalid secret type")
    before = sc.list_secrets()
    expect_error(
        lambda: sc.create_secret("BOGUS_ONE", "x", secret_type="bogus"),
        ValidationError, 400, "create with secret_type=bogus",
    )
    after = sc.list_secrets()
    check(sorted(ids_of(after)) == sorted(ids_of(before)), "list is unchanged after the rejected create")
    check("BOGUS_ONE" not in [s["name"] for s in after["secrets"]], "rejected secret was not stored")

    # 5. Read the value back (an explicit, audited read).
    section("5. get_secret")
    got = sc.get_secret(db_id)
    check(got.get("value") == db_value, "get_secret returns the stored value")
    check(got.get("version") == 1, f"get_secret shows version 1 (got {got.get('version')})")
    check(got.get("name") == "DATABASE_URL", "get_secret shows the name")

    # 6. Listing: metadata only, filters, cursor pagination.
    section("6. list_secrets")
    page = sc.list_secrets()
    check(sorted(ids_of(page)) == sorted([db_id, api_id]), f"list shows both secrets ({ids_of(page)})")
    check(all("value" not in s for s in page["secrets"]), "no listed secret has a value key")
    text = json.dumps(page)
    check(all(v not in text for v in all_values), "listing JSON contains no secret value")

    typed = sc.list_secrets(secretType="api-key")
    check(ids_of(typed) == [api_id], f"secretType=api-key filters to the api key ({ids_of(typed)})")

    first = sc.list_secrets(limit=1)
    check(len(first["secrets"]) == 1, "limit=1 returns one secret")
    check(first.get("hasMore") is True, f"limit=1 has hasMore=true (got {first.get('hasMore')})")
    check(bool(first.get("nextCursor")), "limit=1 returns a nextCursor")
    second = sc.list_secrets(limit=1, cursor=first["nextCursor"])
    check(len(second["secrets"]) == 1, "next page returns one secret")
    check(
        sorted(ids_of(first) + ids_of(second)) == sorted([db_id, api_id]),
        "the two pages together are the two secrets",
    )
    check(second.get("hasMore") is False, f"last page has hasMore=false (got {second.get('hasMore')})")

    # 7. Search by name/description and by tag.
    section("7. search_secrets")
    found = sc.search_secrets("database")
    check(db_id in ids_of(found), "search 'database' finds DATABASE_URL")
    check(api_id not in ids_of(found), "search 'database' does not find the api key")
    found = sc.search_secrets("prod")
    check(ids_of(found) == [db_id], f"search 'prod' finds the secret tagged prod ({ids_of(found)})")

    # 8. New value with optimistic concurrency.
    section("8. update value")
    upd = sc.update_secret(db_id, value=new_value, expectedVersion=1)
    check(upd.get("version") == 2, f"value update moves to version 2 (got {upd.get('version')})")
    check("value" not in upd, "update response has no value key")
    e = expect_error(
        lambda: sc.update_secret(db_id, value="stale-write", expectedVersion=1),
        SecretCarouselError, 409, "update with stale expectedVersion=1",
    )
    code = e.body.get("code") if isinstance(e.body, dict) else None
    check(code == "VERSION_CONFLICT", f"conflict body has error code VERSION_CONFLICT (got {e.body!r})")
    got = sc.get_secret(db_id)
    check(got.get("value") == new_value, "get_secret shows the new value")
    check(got.get("version") == 2, f"get_secret shows version 2 (got {got.get('version')})")

    # 9. Metadata-only change keeps the version.
    section("9. update metadata")
    upd = sc.update_secret(db_id, description="changed")
    check(upd.get("description") == "changed", "description changed")
    check(upd.get("version") == 2, f"metadata update keeps version 2 (got {upd.get('version')})")
    check(sc.get_secret(db_id).get("value") == new_value, "value unchanged by metadata update")

    # 10. The audit trail records what happened, never the values.
    section("10. audit logs")
    audit = sc.get_audit_logs(limit=50)
    logs = audit.get("logs")
    check(isinstance(logs, list) and logs, "audit returns entries")
    actions = {entry.get("action") for entry in logs}
    for action in ("secret.create", "secret.read", "secret.update"):
        check(action in actions, f"audit has a {action} entry")
    leaked = [entry for entry in logs if any(v in json.dumps(entry) for v in all_values)]
    check(not leaked, f"no audit entry contains a secret value ({leaked!r})")
    reads = sc.get_audit_logs(action="secret.read")["logs"]
    check(reads, "action=secret.read returns entries")
    check(
        all(entry.get("action") == "secret.read" for entry in reads),
        f"action=secret.read returns only that action ({sorted({x.get('action') for x in reads})})",
    )
    exported = sc.export_audit_csv(action="secret.read")
    check(isinstance(exported, str), f"export_audit_csv answers CSV text ({type(exported).__name__})")
    rows = list(csv.reader(io.StringIO(exported)))
    check(rows and rows[0][:3] == ["id", "timestamp", "action"], f"the CSV starts with its header ({rows[:1]!r})")
    check(
        [int(r[0]) for r in rows[1:]] == [e.get("id") for e in reads],
        f"the export holds the same reads as the query ({len(rows) - 1} rows, {len(reads)} entries)",
    )
    check(not any(v in exported for v in all_values), "the export contains no secret value")

    # 11. Delete, and tenants are isolated (404, never 403).
    section("11. delete and isolation")
    deleted = sc.delete_secret(db_id)
    check(isinstance(deleted, dict) and deleted.get("deleted") is True, f"delete answers deleted=true ({deleted!r})")
    expect_error(lambda: sc.get_secret(db_id), NotFoundError, 404, "get_secret after delete")
    check(ids_of(sc.list_secrets()) == [api_id], "list now shows only the remaining secret")

    other_tenant = f"sdk-{secrets.token_hex(4)}"
    other = SecretCarouselClient.signup(other_tenant, agent="python-sdk", base_url=url)
    e = expect_error(lambda: other.get_secret(api_id), NotFoundError, 404,
                     "another tenant reading the first tenant's secret")
    check(api_value not in json.dumps(e.body), "the 404 body does not leak the value")
    check(ids_of(other.list_secrets()) == [], "the other tenant's list is empty")

    # 12. A key the server never issued.
    section("12. bogus key")
    bogus = SecretCarouselClient("sc_free_nope", base_url=url)
    expect_error(lambda: bogus.list_secrets(), AuthenticationError, 401, "list with key sc_free_nope")

    # 13. A critical secret needs a human's approval: the SDK sees a 403 whose
    # body says APPROVAL_REQUIRED and where the user approves.
    section("13. approval required")
    gated = other.create_secret("ROOT_SIGNING_KEY", "gated-value", accessTier="critical")
    check(gated.get("accessTier") == "critical", f"create_secret takes accessTier ({gated!r})")
    e = expect_error(lambda: other.get_secret(gated["id"]), ForbiddenError, 403, "get_secret of a critical secret")
    body = e.body if isinstance(e.body, dict) else {}
    check(body.get("code") == "APPROVAL_REQUIRED", f"the error's code is APPROVAL_REQUIRED ({e.body!r})")
    page = url.replace("127.0.0.1", "localhost")  # the page's links name a host: passkeys need one
    check(str(body.get("approvalUrl", "")).startswith(page + "/approvals/"), "the error carries the approval URL")
    check("gated-value" not in json.dumps(e.body), "the refusal does not carry the value")

    # 14. Agent A hands a credential to tenant B by claim token: the value
    # never passes through a chat. B redeems once; the token burns.
    section("14. claim tokens")
    handed = f"handed-{secrets.token_hex(8)}"
    claim = sc.create_claim(handed, target_tenant_id=other_tenant, contract_id="contract-7",
                            secret_name="PARTNER_TOKEN", expires_in_minutes=10)
    token = claim.get("token", "")
    check(token.startswith("ctk_"), f"create_claim answers a ctk_ token ({claim!r})")
    check(handed not in json.dumps(claim), "the claim's answer does not echo the value")
    listed = sc.list_claims()
    mine = [c for c in listed.get("claimTokens", []) if c.get("id") == claim.get("id")]
    check(mine and mine[0].get("status") == "pending", f"list_claims shows it pending ({listed!r})")
    check(token not in json.dumps(listed) and handed not in json.dumps(listed), "the list shows neither token nor value")
    expect_error(lambda: sc.redeem_claim(token), NotFoundError, 404, "the creator redeeming a token meant for another tenant")
    redeemed = other.redeem_claim(token)
    check(bool(redeemed.get("secretId")), f"the target redeems it into a secret ({redeemed!r})")
    check(other.get_secret(redeemed["secretId"]).get("value") == handed, "the target reads the handed value")
    e = expect_error(lambda: other.redeem_claim(token), SecretCarouselError, 410, "a second redemption")
    check(isinstance(e.body, dict) and e.body.get("code") == "CLAIM_ALREADY_REDEEMED", f"its code ({e.body!r})")
    check(sc.get_claim(claim["id"]).get("status") == "claimed", "get_claim shows it claimed")
    revocable = sc.create_claim("never-claimed", target_tenant_id=other_tenant, contract_id="contract-8",
                                secret_name="UNUSED")
    sc.revoke_claim(revocable["id"])
    e = expect_error(lambda: other.redeem_claim(revocable["token"]), SecretCarouselError, 410, "redeeming a revoked token")
    check(isinstance(e.body, dict) and e.body.get("code") == "CLAIM_REVOKED", f"its code ({e.body!r})")

    # 15. Share links for a person: the SDK's own share methods.
    section("15. share links")
    shared = other.create_secret("HANDOVER_TOKEN", "handover-value")
    link = other.create_share(shared["id"], expiration_hours=2, max_uses=2)
    check(str(link.get("token", "")).startswith("shr_"), f"create_share returns a shr_ token ({link!r})")
    check(str(link.get("url", "")).endswith("/s/" + link["token"]), "create_share returns the link's url")
    check("handover-value" not in json.dumps(link), "create_share does not carry the value")
    listed = other.list_shares()
    check([x["id"] for x in listed["shares"]] == [link["id"]], f"list_shares shows the link ({listed!r})")
    opened = other.access_share(link["token"])
    check(opened.get("value") == "handover-value", "access_share returns the value")
    check(other.get_share(link["id"]).get("usesLeft") == 1, "get_share counts the use")
    check(other.extend_share(link["id"], maxUses=3).get("usesLeft") == 2, "extend_share gives more uses")
    check(other.revoke_share(link["id"]).get("status") == "revoked", "revoke_share (no body) revokes")
    e = expect_error(lambda: other.access_share(link["token"]), SecretCarouselError, 410, "access_share after revoke")
    check(isinstance(e.body, dict) and e.body.get("code") == "SHARE_REVOKED", f"410 SHARE_REVOKED ({e.body!r})")
    check(other.list_shares()["count"] == 0 and other.list_shares(status="all")["count"] == 1, "list_shares filters by status")
    expect_error(lambda: sc.get_share(link["id"]), NotFoundError, 404, "another tenant's share")

    print(f"\n{PASSED} passed, 0 failed")


if __name__ == "__main__":
    try:
        main()
    except SystemExit:
        raise
    except SecretCarouselError as e:
        # An SDK call that should have succeeded did not.
        print(f"FAIL: unexpected {type(e).__name__} {e.status_code}: {e.body!r}")
        print(f"{PASSED} passed, 1 failed")
        sys.exit(1)
    except Exception as e:  # connection refused, bad JSON shape, ...
        print(f"FAIL: unexpected {type(e).__name__}: {e}")
        print(f"{PASSED} passed, 1 failed")
        sys.exit(1)
