"""Schemathesis hooks for tools/faults/schema.py (loaded via SCHEMATHESIS_HOOKS):
never revoke, regenerate or edit the API key the run authenticates with, or
every later request would only measure 401s. And never send, as a secret's
`{id}`, a word that is a route of its own beside it (`/api/v1/secrets/path/…`,
`/compare`, `/expiring`, …): that request is not the operation schemathesis
thinks it tests (a POST to the path route answers 405), and an id is a UUID.
And never point a webhook anywhere but loopback (which this server refuses):
its worker would deliver events to whatever host schemathesis made up."""

import os

import schemathesis

PROTECTED = {i for i in os.environ.get("LATCHKEY_FAULTS_PROTECTED_IDS", "").split(",") if i}
SIBLING_ROUTES = {"path", "compare", "expiring", "promote", "import", "export"}


@schemathesis.hook
def filter_case(context, case):
    path = getattr(case.operation, "path", "") or ""
    if path.startswith("/api/v1/api-keys/") and str((case.path_parameters or {}).get("id")) in PROTECTED:
        return False
    if path.startswith("/api/v1/secrets/{id}") and str((case.path_parameters or {}).get("id")) in SIBLING_ROUTES:
        return False
    if path.startswith("/api/v1/webhooks") and isinstance(case.body, dict) and "url" in case.body:
        if not str(case.body["url"]).startswith("http://127.0.0.1"):
            return False
    return True
