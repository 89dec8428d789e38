"""Lock contention on SQLite: 50 concurrent read-modify-write clients
(GET, then PUT with expectedVersion) on a few hot secrets plus creates: no
5xx may reach a client, and no increment may be lost."""

import collections
import random
import threading
import time

from common import Client, Server, signup

CLIENTS = 50
HOT = 8


def run(ctx, res):
    duration = 8 if ctx.quick else 30
    server = Server(ctx, ctx.tempdir("contention"))
    try:
        server.start()
        c = server.client()
        _, key = signup(c, "lock")
        c.key = key
        hot = []
        for i in range(HOT):
            hot.append(c.req("POST", "/api/v1/secrets", {"name": "counter-%d" % i, "value": "0"}).json()["id"])
        lock = threading.Lock()
        statuses = collections.Counter()
        increments = collections.Counter()
        bad = []
        stop_at = time.monotonic() + duration

        def worker(n):
            rng = random.Random(n)
            cl = Client(server.port, key, timeout=60)
            i = 0
            try:
                while time.monotonic() < stop_at:
                    i += 1
                    try:
                        if rng.random() < 0.1:
                            r = cl.req("POST", "/api/v1/secrets", {"name": "c%d-%d" % (n, i), "value": "x"})
                            answers = [r]
                        elif rng.random() < 0.05:
                            answers = [cl.req("GET", "/api/v1/audit?limit=20")]
                        else:
                            sid = rng.choice(hot)
                            g = cl.req("GET", "/api/v1/secrets/" + sid)
                            answers = [g]
                            if g.status == 200:
                                j = g.json()
                                p = cl.req("PUT", "/api/v1/secrets/" + sid,
                                           {"value": str(int(j["value"]) + 1), "expectedVersion": j["version"]})
                                answers.append(p)
                                if p.status == 200:
                                    with lock:
                                        increments[sid] += 1
                    except Exception as e:  # noqa: BLE001
                        with lock:
                            statuses["connection error"] += 1
                            if len(bad) < 10:
                                bad.append("connection error: %r" % e)
                        continue
                    with lock:
                        for a in answers:
                            statuses[a.status] += 1
                            if a.status >= 500 or a.status not in (200, 201, 409):
                                if len(bad) < 10:
                                    bad.append(a.short())
            finally:
                cl.close()

        ts = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(CLIENTS)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(timeout=duration + 120)
        if any(t.is_alive() for t in ts):
            res.fail("clients still running %d s after the end" % 120)
        lost = []
        for sid in hot:
            r = c.req("GET", "/api/v1/secrets/" + sid)
            j = r.json() or {}
            if r.status != 200 or j.get("value") != str(increments[sid]) or j.get("version") != increments[sid] + 1:
                lost.append("%s: %d acknowledged increments but reads %s" % (sid, increments[sid], r.short()))
        c.close()
        total = sum(statuses.values())
        n5xx = sum(v for k, v in statuses.items() if isinstance(k, int) and k >= 500)
        res.num("%d clients x %d s: %d responses (%.0f/s): %s; %d acknowledged increments"
                % (CLIENTS, duration, total, total / duration,
                   ", ".join("%s: %d" % (k, v) for k, v in sorted(statuses.items(), key=str)), sum(increments.values())))
        locked = server.log_tail(10**8).count("database is locked")
        res.num("server log lines mentioning 'database is locked': %d" % locked)
        if n5xx:
            res.fail("%d 5xx answers" % n5xx)
        if statuses["connection error"]:
            res.fail("%d connection errors" % statuses["connection error"])
        for b in bad:
            res.fail("unexpected: " + b)
        for l in lost:
            res.fail("lost update: " + l)
        if statuses[200] == 0:
            res.fail("no request succeeded: the check tested nothing")
    finally:
        server.kill()
