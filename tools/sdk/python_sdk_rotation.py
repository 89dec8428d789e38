#!/usr/bin/env python3
"""Latchkey's rotation, driven through SecretCarousel's published Python SDK.

`rotate_secret(id)` sends no body, `rotate_secret(id, **options)` sends
`{"options": {...}}`, `get_rotation_status(id)` reads the status. Every step
is asserted; the last line is "N passed, 0 failed".

Usage:
    python python_sdk_rotation.py BASE_URL API_KEY
"""

import secrets
import sys

from secretcarousel import NotFoundError, SecretCarouselClient, SecretCarouselError

PASSED = 0


def check(cond, msg):
    global PASSED
    if not cond:
        print(f"FAIL: {msg}")
        print(f"{PASSED} passed, 1 failed")
        sys.exit(1)
    PASSED += 1
    print(f"  ok: {msg}")


def main():
    url, key = sys.argv[1].rstrip("/"), sys.argv[2]
    c = SecretCarouselClient(key, base_url=url)
    original = "sk_live_" + secrets.token_hex(12)
    created = c.create_secret("stripe-key", original)
    sid = created.get("id") or created.get("secretId")
    check(bool(sid), f"created a secret: {created!r}")

    status = c.get_rotation_status(sid)
    check(status["currentVersion"] == 1 and status["policy"] is None, f"status before: {status!r}")

    # No options: no body; the server generates a value shaped like the current one.
    r = c.rotate_secret(sid)
    check(r["version"] == 2 and r["generated"] is True, f"rotate without options: {r!r}")
    check("value" not in r and original not in str(r), "the answer holds no value")
    value = c.get_secret(sid)["value"]
    check(value.startswith("sk_live_") and len(value) == len(original) and value != original, "generated like the old one")

    # Options: {"options": {...}}.
    r = c.rotate_secret(sid, newValue="sk_live_given_by_sdk_0001", reason="sdk test", gracePeriod="1h")
    check(r["version"] == 3 and r["generated"] is False, f"rotate with options: {r!r}")
    check(r["retiringVersion"] == 2 and r["graceEndsAt"], "the old version retires after the grace")
    check(c.get_secret(sid)["value"] == "sk_live_given_by_sdk_0001", "the given value is current")

    status = c.get_rotation_status(sid)
    check(status["currentVersion"] == 3 and status["retiringVersion"] == 2, f"status after: {status!r}")
    check(status["lastRotatedAt"] is not None, "last rotation time")

    try:
        c.rotate_secret("00000000-0000-4000-8000-000000000000")
        check(False, "a missing secret fails")
    except NotFoundError as e:
        check(e.status_code == 404, "a missing secret is 404")
    except SecretCarouselError as e:
        check(False, f"a missing secret is NotFoundError (got {type(e).__name__} {e.status_code})")

    print(f"{PASSED} passed, 0 failed")


if __name__ == "__main__":
    main()
