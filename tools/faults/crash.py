"""Crash durability: 32 concurrent writers (creates and check-and-set updates),
SIGKILL at a random moment, restart on the same data, and check that every
acknowledged write reads back exactly and nothing is half-written."""

import collections
import os
import random
import shutil
import sqlite3
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

from common import Server, signup

WRITERS = 32
READERS = 8   # alongside the writers: an acknowledged read must have its durable audit row
SEED_SECRETS = 48


class CycleState:
    def __init__(self, tenant, key):
        self.tenant = tenant
        self.key = key
        self.lock = threading.Lock()
        self.acked = {}        # sid -> {version: value}
        self.attempted = {}    # sid -> set(values) ever sent for it (incl. its create)
        self.create_names = {}  # name -> value for every create sent (acked or not)
        self.known = {}        # sid -> highest version seen (acked or read)
        self.sids = []
        self.stats = {"create_ok": 0, "update_ok": 0, "conflict": 0, "unknown": 0, "other": 0, "5xx": 0}
        self.bad = []          # unexpected answers while writing
        self.reads = collections.Counter()  # (sid, version) -> acknowledged 200 reads

    def ack(self, sid, version, value):
        with self.lock:
            self.acked.setdefault(sid, {})[version] = value
            if self.known.get(sid, 0) < version:
                self.known[sid] = version


def _writer(port, st, tid, stop, deadline, rng):
    from common import Client
    c = Client(port, st.key, timeout=20)
    n = 0
    try:
        while not stop.is_set() and time.monotonic() < deadline:
            n += 1
            value = "v-%s-t%d-n%d-%s" % (st.tenant, tid, n, uuid.uuid4().hex)
            with st.lock:
                do_create = rng.random() < 0.25 or not st.sids
                if not do_create:
                    sid = rng.choice(st.sids)
                    expected = st.known.get(sid, 1)
                    st.attempted.setdefault(sid, set()).add(value)
            if do_create:
                name = "s-t%d-n%d-%s" % (tid, n, uuid.uuid4().hex[:8])
                with st.lock:
                    st.create_names[name] = value
                try:
                    r = c.req("POST", "/api/v1/secrets", {"name": name, "value": value})
                except Exception:  # noqa: BLE001 - outcome unknown (crash)
                    with st.lock:
                        st.stats["unknown"] += 1
                    time.sleep(0.02)
                    continue
                if r.status == 201:
                    j = r.json()
                    sid = j["id"]
                    with st.lock:
                        st.attempted.setdefault(sid, set()).add(value)
                        st.sids.append(sid)
                        st.stats["create_ok"] += 1
                    if j.get("version") != 1:
                        st.bad.append("create answered version %r: %s" % (j.get("version"), r.short()))
                    st.ack(sid, 1, value)
                else:
                    with st.lock:
                        st.stats["other"] += 1
                        if r.status >= 500:
                            st.stats["5xx"] += 1
                    st.bad.append(r.short())
            else:
                try:
                    r = c.req("PUT", "/api/v1/secrets/" + sid, {"value": value, "expectedVersion": expected})
                except Exception:  # noqa: BLE001
                    with st.lock:
                        st.stats["unknown"] += 1
                    time.sleep(0.02)
                    continue
                if r.status == 200:
                    v = r.json().get("version")
                    with st.lock:
                        st.stats["update_ok"] += 1
                    if v != expected + 1:
                        st.bad.append("CAS update with expectedVersion %d answered version %r: %s" % (expected, v, r.short()))
                    st.ack(sid, v, value)
                elif r.status == 409 and r.code() == "VERSION_CONFLICT":
                    with st.lock:
                        st.stats["conflict"] += 1
                    try:
                        g = c.req("GET", "/api/v1/secrets/%s/versions" % sid)
                    except Exception:  # noqa: BLE001
                        continue
                    if g.status == 200:
                        cur = g.json().get("currentVersion", 0)
                        with st.lock:
                            if st.known.get(sid, 0) < cur:
                                st.known[sid] = cur
                else:
                    with st.lock:
                        st.stats["other"] += 1
                        if r.status >= 500:
                            st.stats["5xx"] += 1
                    st.bad.append(r.short())
    finally:
        c.close()


def _reader(port, st, stop, deadline, rng):
    from common import Client
    c = Client(port, st.key, timeout=20)
    try:
        while not stop.is_set() and time.monotonic() < deadline:
            with st.lock:
                sid = rng.choice(st.sids)
            try:
                r = c.req("GET", "/api/v1/secrets/" + sid)
            except Exception:  # noqa: BLE001
                time.sleep(0.02)
                continue
            if r.status == 200:
                with st.lock:
                    st.reads[(sid, r.json().get("valueVersion"))] += 1
            else:
                st.bad.append(r.short())
    finally:
        c.close()


def _sqlite_integrity(data_dir, scratch):
    """PRAGMA integrity_check on a copy of the crashed files (db, -wal, -shm)."""
    os.makedirs(scratch, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        src = os.path.join(data_dir, "latchkey.db" + suffix)
        if os.path.exists(src):
            shutil.copy2(src, os.path.join(scratch, "latchkey.db" + suffix))
    con = sqlite3.connect(os.path.join(scratch, "latchkey.db"))
    try:
        rows = con.execute("PRAGMA integrity_check").fetchall()
        fk = con.execute("PRAGMA foreign_key_check").fetchall()
    finally:
        con.close()
    shutil.rmtree(scratch, ignore_errors=True)
    problems = [r[0] for r in rows if r[0] != "ok"]
    if fk:
        problems.append("foreign_key_check: %r" % fk[:5])
    return problems


def _verify_tenant(server, st, res, label, max_fail=25):
    """Full check of one tenant after a restart. Returns (#secrets, #versions checked)."""
    c = server.client(st.key, timeout=30)
    fails = []

    def fail(msg):
        if len(fails) < max_fail:
            fails.append("%s: %s" % (label, msg))
        else:
            fails.append(None)

    listed = {}
    cursor = None
    for _ in range(10000):
        path = "/api/v1/secrets?limit=200" + ("&cursor=" + quote(cursor, safe="") if cursor else "")
        r = c.req("GET", path)
        if r.status != 200:
            fail("list failed: " + r.short())
            break
        j = r.json()
        for s in j.get("secrets", []):
            listed[s["id"]] = s
        if not j.get("hasMore"):
            break
        cursor = j.get("nextCursor")
    # the audit trail: every acknowledged write has its success row, and no
    # success row names a version that does not exist
    def audit_entries(action):
        # Pages by cursor: an offset stops at 10,000, and a page of a filtered
        # query may end early where its scan window does (hasMore says so).
        cursor = None
        for _ in range(10000):
            r = c.req("GET", "/api/v1/audit?action=%s&limit=1000" % action
                      + ("&cursor=" + quote(cursor, safe="") if cursor else ""))
            if r.status != 200:
                fail("audit query failed: " + r.short())
                return
            j = r.json()
            yield from j.get("logs", [])
            cursor = j.get("nextCursor")
            if not j.get("hasMore") or not cursor:
                return
        fail("audit walk for %s did not end" % action)
    audited = set()
    for action in ("secret.create", "secret.update"):
        for e in audit_entries(action):
            if e.get("outcome") == "success":
                audited.add((e.get("resourceId"), (e.get("detail") or {}).get("version")))
    read_rows = collections.Counter()
    for e in audit_entries("secret.read"):
        if e.get("outcome") == "success":
            read_rows[(e.get("resourceId"), (e.get("detail") or {}).get("version"))] += 1
    unaudited = {k: n - read_rows[k] for k, n in st.reads.items() if read_rows[k] < n}
    if unaudited:
        fail("%d acknowledged reads have no secret.read audit row after the crash, e.g. %s"
             % (sum(unaudited.values()), list(unaudited.items())[:3]))
    missing = [(sid, v) for sid, vers in st.acked.items() for v in vers if (sid, v) not in audited]
    if missing:
        fail("%d acknowledged writes have no success audit row, e.g. %s" % (len(missing), missing[:3]))
    orphans = [(sid, v) for sid, v in audited if sid not in listed or (v or 0) > (listed[sid].get("version") or 0)]
    if orphans:
        fail("%d success audit rows name writes that are not in the store, e.g. %s" % (len(orphans), orphans[:3]))
    for sid, vers in st.acked.items():
        if sid not in listed:
            fail("acknowledged secret %s (versions %s) is not listed after restart" % (sid, sorted(vers)))
    local = threading.local()
    counts = []

    def one(sid, meta):
        if not hasattr(local, "c"):
            local.c = server.client(st.key, timeout=30)
        c = local.c
        checked = 0
        if sid not in st.attempted and meta.get("name") not in st.create_names:
            fail("listed secret %s (%s) was never written by this run" % (sid, meta.get("name")))
        allowed = set(st.attempted.get(sid, ()))
        if meta.get("name") in st.create_names:
            allowed.add(st.create_names[meta["name"]])
        r = c.req("GET", "/api/v1/secrets/%s/versions" % sid)
        if r.status != 200:
            fail("versions unreadable: " + r.short())
            return
        j = r.json()
        cur = j.get("currentVersion")
        got = sorted(v["version"] for v in j.get("versions", []))
        if got != list(range(1, (cur or 0) + 1)):
            fail("secret %s: currentVersion %r but versions %s (not contiguous 1..current)" % (sid, cur, got[:20]))
        if meta.get("version") != cur:
            fail("secret %s: list says version %r, versions says %r" % (sid, meta.get("version"), cur))
        acked = st.acked.get(sid, {})
        if acked and (cur or 0) < max(acked):
            fail("secret %s: acknowledged version %d lost, current is %r" % (sid, max(acked), cur))
        for v in range(1, (cur or 0) + 1):
            r = c.req("GET", "/api/v1/secrets/%s?version=%d" % (sid, v))
            checked += 1
            if r.status != 200:
                fail("secret %s version %d unreadable: %s" % (sid, v, r.short()))
                continue
            j = r.json()
            if j.get("valueVersion") != v:
                fail("secret %s ?version=%d answered valueVersion %r" % (sid, v, j.get("valueVersion")))
            if v in acked:
                if j.get("value") != acked[v]:
                    fail("secret %s version %d: acknowledged value %r, read back %r" % (sid, v, acked[v], j.get("value")))
            elif j.get("value") not in allowed:
                fail("secret %s version %d holds %r, which was never sent for it" % (sid, v, j.get("value")))
        # the plain read (no ?version) must answer the newest
        r = c.req("GET", "/api/v1/secrets/%s" % sid)
        if r.status != 200 or r.json().get("valueVersion") != cur:
            fail("secret %s: plain read answered %s, expected valueVersion %r" % (sid, r.short(), cur))
        counts.append(checked)

    with ThreadPoolExecutor(max_workers=6) as ex:
        for f in [ex.submit(one, sid, meta) for sid, meta in listed.items()]:
            try:
                f.result(timeout=600)
            except Exception as e:  # noqa: BLE001
                fail("verification request failed: %r" % e)
    checked = sum(counts)
    c.close()
    real = [f for f in fails if f]
    for f in real:
        res.fail(f)
    if len(fails) > len(real):
        res.fail("%s: ... and %d more" % (label, len(fails) - len(real)))
    return len(listed), checked


def _resample(server, old_states, rng, budget):
    """Re-reads a sample of earlier cycles' acknowledged versions."""
    picks = []
    for st in old_states:
        for sid, vers in st.acked.items():
            for v, val in vers.items():
                picks.append((st, sid, v, val))
    rng.shuffle(picks)
    picks = picks[:budget]
    local = threading.local()

    def one(pick):
        st, sid, v, val = pick
        if not hasattr(local, "clients"):
            local.clients = {}
        c = local.clients.setdefault(st.key, server.client(st.key))
        r = c.req("GET", "/api/v1/secrets/%s?version=%d" % (sid, v))
        if r.status != 200 or r.json().get("value") != val:
            return "earlier cycle's acknowledged %s v%d (%r) now reads: %s" % (sid, v, val, r.short())
        return None

    with ThreadPoolExecutor(max_workers=6) as ex:
        problems = [p for p in ex.map(one, picks, timeout=600) if p]
    return problems, len(picks)


def run(ctx, res, backend):
    cycles = 5 if ctx.quick else 50
    rng = random.Random()
    data_dir = ctx.tempdir("crash-" + backend)
    db_url = None
    if backend == "pg":
        db_url = ctx.pg_url("latchkey_faults_crash")
        if not db_url:
            res.skip(ctx.pg_error or "no PostgreSQL")
            return
    server = Server(ctx, data_dir, db_url)
    states = []
    totals = {"create_ok": 0, "update_ok": 0, "conflict": 0, "unknown": 0, "other": 0, "5xx": 0}
    versions_checked = 0
    timing = {"restart": 0.0, "verify": 0.0}
    reads_total = 0
    t0 = time.monotonic()
    try:
        server.start()
        for cycle in range(cycles):
            c = server.client()
            tenant, key = signup(c, "crash%d" % cycle)
            st = CycleState(tenant, key)
            c.key = key
            for i in range(SEED_SECRETS):
                value = "seed-%d-%d-%s" % (cycle, i, uuid.uuid4().hex)
                name = "seed-%d" % i
                st.create_names[name] = value
                r = c.req("POST", "/api/v1/secrets", {"name": name, "value": value})
                if r.status != 201:
                    raise RuntimeError("seeding failed: " + r.short())
                sid = r.json()["id"]
                st.sids.append(sid)
                st.attempted.setdefault(sid, set()).add(value)
                st.ack(sid, 1, value)
            c.close()
            stop = threading.Event()
            threads = [
                threading.Thread(target=_writer, args=(server.port, st, t, stop, time.monotonic() + 60, random.Random(rng.random())), daemon=True)
                for t in range(WRITERS)
            ]
            threads += [
                threading.Thread(target=_reader, args=(server.port, st, stop, time.monotonic() + 60, random.Random(rng.random())), daemon=True)
                for _ in range(READERS)
            ]
            for t in threads:
                t.start()
            time.sleep(rng.uniform(0.3, 1.5 if ctx.quick else 4.0))
            server.kill()
            stop.set()
            for t in threads:
                t.join(timeout=60)
            if any(t.is_alive() for t in threads):
                res.fail("cycle %d: writer threads did not stop within 60 s after the kill" % cycle)
                return
            for k in totals:
                totals[k] += st.stats[k]
            reads_total += sum(st.reads.values())
            for b in st.bad[:5]:
                res.fail("cycle %d: unexpected answer while writing: %s" % (cycle, b))
            if backend == "sqlite":
                for p in _sqlite_integrity(data_dir, os.path.join(ctx.workdir, "crash-integrity")):
                    res.fail("cycle %d: SQLite integrity_check after SIGKILL: %s" % (cycle, p))
            t_restart = time.monotonic()
            server.start()
            timing["restart"] += time.monotonic() - t_restart
            t_verify = time.monotonic()
            nsec, nver = _verify_tenant(server, st, res, "cycle %d" % cycle)
            timing["verify"] += time.monotonic() - t_verify
            versions_checked += nver
            problems, _ = _resample(server, states, rng, 100 if ctx.quick else 300)
            for p in problems[:10]:
                res.fail("cycle %d: %s" % (cycle, p))
            states.append(st)
            if not res.ok and len(res.failures) > 40:
                break
        # final: every earlier cycle's acknowledged versions, all of them in quick mode
        problems, n = _resample(server, states, rng, 2000 if ctx.quick else 20000)
        for p in problems[:20]:
            res.fail("final re-read: " + p)
    finally:
        server.kill()
    res.num("%s: %d cycles, %d creates + %d CAS updates acknowledged, %d conflicts, %d unknown (in flight at kill), "
            "%d reads acknowledged (audit checked), %d versions read back, %.0f s (restarts %.1f s, verification %.1f s)"
            % (backend, len(states), totals["create_ok"], totals["update_ok"], totals["conflict"], totals["unknown"],
               reads_total, versions_checked, time.monotonic() - t0, timing["restart"], timing["verify"]))
    if totals["5xx"]:
        res.fail("%d 5xx answers while writing" % totals["5xx"])
    if totals["create_ok"] + totals["update_ok"] == 0:
        res.fail("no write was acknowledged: the check tested nothing")
