#!/usr/bin/env python3
"""Claim tokens through SecretCarousel's published Python SDK, unchanged.

Tenant A hands a value to tenant B with `create_claim`; B redeems it with
`redeem_claim` (which posts no body); a second redemption is refused; A
lists, reads and revokes with `list_claims`, `get_claim`, `revoke_claim`.
Every step is asserted; the script stops at the first failure.

Usage:
    python python_sdk_claims.py http://127.0.0.1:18311
"""

import secrets
import sys

from secretcarousel import SecretCarouselClient, SecretCarouselError

PASSED = 0


def check(cond, msg):
    global PASSED
    if not cond:
        print(f"FAIL: {msg}")
        print(f"{PASSED} passed, 1 failed")
        sys.exit(1)
    PASSED += 1
    print(f"ok: {msg}")


def refused(call, status, code, msg):
    try:
        call()
    except SecretCarouselError as e:
        body = e.body if isinstance(e.body, dict) else {}
        check(e.status_code == status and body.get("code") == code, f"{msg}: {e.status_code} {body.get('code')}")
        return
    check(False, f"{msg}: no error")


def main(url):
    ta, tb = f"sdk-claim-a-{secrets.token_hex(4)}", f"sdk-claim-b-{secrets.token_hex(4)}"
    a = SecretCarouselClient.signup(ta, agent="python-sdk", base_url=url)
    b = SecretCarouselClient.signup(tb, agent="python-sdk", base_url=url)
    value = "sdk-handed-" + secrets.token_hex(8)

    made = a.create_claim(value, tb, "sdk-contract", secret_name="SDK_HANDED", expires_in_minutes=10)
    check(made["token"].startswith("ctk_") and made["targetTenantId"] == tb, "create_claim answers a ctk_ token")
    got = b.redeem_claim(made["token"])
    check(got["secretId"] and got["name"] == "SDK_HANDED", "redeem_claim (no body) stores the secret")
    check(b.get_secret(got["secretId"])["value"] == value, "the target reads the value")
    refused(lambda: b.redeem_claim(made["token"]), 410, "CLAIM_ALREADY_REDEEMED", "a second redemption")

    listed = a.list_claims()
    check(listed["count"] == 1 and listed["claimTokens"][0]["status"] == "claimed", "list_claims shows it claimed")
    check(value not in str(listed) and made["token"] not in str(listed), "the listing holds no value or token")
    one = a.get_claim(made["id"])
    check(one["contractId"] == "sdk-contract", "get_claim")
    pending = a.list_claims(status="pending")
    check(pending["count"] == 0, "list_claims filters by status")

    second = a.create_claim("v2", tb, "sdk-contract-2", secret_name="SDK_SECOND")
    revoked = a.revoke_claim(second["id"])
    check(revoked["status"] == "revoked", "revoke_claim")
    refused(lambda: b.redeem_claim(second["token"]), 410, "CLAIM_REVOKED", "a revoked token")
    print(f"{PASSED} passed, 0 failed")


if __name__ == "__main__":
    main(sys.argv[1])
