"""Check-and-set: 64 concurrent updates carrying the same expectedVersion:
exactly one succeeds, the other 63 answer 409 VERSION_CONFLICT."""

import json
import threading
import time

from common import Client, Server, signup

CLIENTS = 64


def run(ctx, res, backend):
    rounds = 5 if ctx.quick else 25
    db_url = None
    if backend == "pg":
        db_url = ctx.pg_url("latchkey_faults_cas")
        if not db_url:
            res.skip(ctx.pg_error or "no PostgreSQL")
            return
    server = Server(ctx, ctx.tempdir("cas-" + backend), db_url)
    try:
        server.start()
        c = server.client()
        _, key = signup(c, "cas")
        c.key = key
        sid = c.req("POST", "/api/v1/secrets", {"name": "cas", "value": "v1"}).json()["id"]
        clients = [Client(server.port, key, timeout=60) for _ in range(CLIENTS)]
        totals = {"ok": 0, "409": 0, "other": 0}
        for rnd in range(rounds):
            expected = rnd + 1
            # warm the keep-alive connections so the barrier releases requests, not handshakes
            for cl in clients:
                cl.req("GET", "/healthz", key=None)
            barrier = threading.Barrier(CLIENTS)
            answers = [None] * CLIENTS

            def go(i):
                try:
                    barrier.wait(timeout=30)
                    answers[i] = clients[i].req("PUT", "/api/v1/secrets/" + sid,
                                                {"value": "r%d-c%d" % (rnd, i), "expectedVersion": expected})
                except Exception as e:  # noqa: BLE001
                    answers[i] = e

            ts = [threading.Thread(target=go, args=(i,), daemon=True) for i in range(CLIENTS)]
            for t in ts:
                t.start()
            for t in ts:
                t.join(timeout=90)
            ok = [a for a in answers if not isinstance(a, Exception) and a is not None and 200 <= a.status < 300]
            conflict = [a for a in answers if not isinstance(a, Exception) and a is not None and a.status == 409
                        and a.code() == "VERSION_CONFLICT"]
            other = [a for a in answers if a not in ok and a not in conflict]
            totals["ok"] += len(ok)
            totals["409"] += len(conflict)
            totals["other"] += len(other)
            if len(ok) != 1 or len(conflict) != CLIENTS - 1:
                res.fail("round %d (expectedVersion %d): %d x 2xx, %d x 409 VERSION_CONFLICT, %d other; e.g. %s"
                         % (rnd, expected, len(ok), len(conflict), len(other),
                            "; ".join(a.short() if hasattr(a, "short") else repr(a) for a in (other or ok[1:])[:3])))
            # the winner's value is the current one, at version expected+1
            r = c.req("GET", "/api/v1/secrets/" + sid)
            j = r.json() or {}
            winner = json.loads(ok[0].req_body)["value"] if len(ok) == 1 else None
            if winner is not None and (j.get("valueVersion") != expected + 1 or j.get("value") != winner):
                res.fail("round %d: after the race the secret reads %s, expected version %d with the winner's value %r"
                         % (rnd, r.short(), expected + 1, winner))
            if j.get("valueVersion") != expected + 1:
                res.fail("round %d: secret is at version %r after the race, expected %d; stopping" % (rnd, j.get("valueVersion"), expected + 1))
                break
        for cl in clients:
            cl.close()
        res.num("%s: %d rounds x %d concurrent PUTs: %d x 2xx, %d x 409, %d other"
                % (backend, rounds, CLIENTS, totals["ok"], totals["409"], totals["other"]))
    finally:
        server.kill()
