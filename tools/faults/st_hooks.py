"""Schemathesis hooks for tools/faults/schema.py (loaded via SCHEMATHESIS_HOOKS):
never revoke, regenerate or edit the API key the run authenticates with, or
every later request would only measure 401s."""

import os

import schemathesis

PROTECTED = {i for i in os.environ.get("LATCHKEY_FAULTS_PROTECTED_IDS", "").split(",") if i}


@schemathesis.hook
def filter_case(context, case):
    path = getattr(case.operation, "path", "") or ""
    if path.startswith("/api/v1/api-keys/") and str((case.path_parameters or {}).get("id")) in PROTECTED:
        return False
    return True
