"""Tamper: with the server stopped, edit the SQLite file directly (move a
ciphertext to another tenant's row, another version, another secret; flip a
bit; swap a tenant's wrapped key; move a secret row to another tenant), then
restart: each such read answers 500 INTEGRITY_ERROR, never a plaintext."""

import os
import sqlite3
import uuid

from common import Server, signup


def run(ctx, res):
    data_dir = ctx.tempdir("tamper")
    server = Server(ctx, data_dir)
    plain = {}
    try:
        server.start()
        c = server.client()
        ta, ka = signup(c, "tamper-a")
        tb, kb = signup(c, "tamper-b")
        tc, kc = signup(c, "tamper-c")

        def create(key, name, value):
            r = c.req("POST", "/api/v1/secrets", {"name": name, "value": value}, key=key)
            if r.status != 201:
                raise RuntimeError("set-up: " + r.short())
            return r.json()["id"]

        def mark(label):
            v = "plain-%s-%s" % (label, uuid.uuid4().hex)
            plain[v] = label
            return v

        s1 = create(ka, "S1", mark("a-s1-v1"))
        s1v2 = mark("a-s1-v2")
        r = c.req("PUT", "/api/v1/secrets/" + s1, {"value": s1v2, "expectedVersion": 1}, key=ka)
        if r.status != 200:
            raise RuntimeError("set-up: " + r.short())
        s2 = create(ka, "S2", mark("a-s2-v1"))
        s3 = create(ka, "S3", mark("a-s3-v1"))
        s4 = create(ka, "S4", mark("a-s4-v1"))
        t1 = create(kb, "T1", mark("b-t1-v1"))
        u1 = create(kc, "U1", mark("c-u1-v1"))
        s1v1 = [v for v, label in plain.items() if label == "a-s1-v1"][0]
        c.close()
        server.stop()

        db = sqlite3.connect(os.path.join(data_dir, "latchkey.db"))
        try:
            def sealed(sid, v):
                return db.execute("SELECT sealed FROM secret_versions WHERE secret_id=? AND version=?", (sid, v)).fetchone()[0]

            blob = sealed(s1, 1)
            db.execute("UPDATE secret_versions SET sealed=? WHERE secret_id=? AND version=1", (blob, t1))   # other tenant
            db.execute("UPDATE secret_versions SET sealed=? WHERE secret_id=? AND version=2", (blob, s1))   # other version
            db.execute("UPDATE secret_versions SET sealed=? WHERE secret_id=? AND version=1", (blob, s2))   # other secret
            flipped = bytearray(sealed(s3, 1))
            flipped[-20] ^= 0x01
            db.execute("UPDATE secret_versions SET sealed=? WHERE secret_id=? AND version=1", (bytes(flipped), s3))
            wa = db.execute("SELECT wrapped_key FROM tenants WHERE id=?", (ta,)).fetchone()[0]
            db.execute("UPDATE tenants SET wrapped_key=? WHERE id=?", (wa, tc))                         # tenant key swap
            db.execute("UPDATE secrets SET tenant_id=? WHERE id=?", (tb, s4))                          # row moved to B
            db.commit()
            n = db.execute("SELECT count(*) FROM secret_versions WHERE sealed=?", (blob,)).fetchone()[0]
        finally:
            db.close()
        if n != 4:
            res.fail("the edit did not take: %d rows carry the copied blob" % n)

        server.start()
        c = server.client()
        cases = [
            ("S1 v1 ciphertext in another tenant's row (B reads T1)", kb, "/api/v1/secrets/" + t1, "error"),
            ("S1 v1 ciphertext in S1's version-2 row (?version=2)", ka, "/api/v1/secrets/%s?version=2" % s1, "error"),
            ("S1 v1 ciphertext in S1's version-2 row (current read)", ka, "/api/v1/secrets/" + s1, "error"),
            ("S1 v1 ciphertext in another secret's row (S2)", ka, "/api/v1/secrets/" + s2, "error"),
            ("one bit flipped in S3's ciphertext", ka, "/api/v1/secrets/" + s3, "error"),
            ("tenant C's wrapped key replaced by tenant A's", kc, "/api/v1/secrets/" + u1, "error"),
            ("A's secret row moved to tenant B (B reads S4)", kb, "/api/v1/secrets/" + s4, "error"),
            ("control: untouched S1 version 1", ka, "/api/v1/secrets/%s?version=1" % s1, "ok"),
        ]
        for what, key, path, want in cases:
            r = c.req("GET", path, key=key)
            text = r.body.decode("utf-8", "replace")
            leaked = [label for v, label in plain.items() if v in text]
            if want == "ok":
                if r.status != 200 or (r.json() or {}).get("value") != s1v1:
                    res.fail("%s: expected 200 with its own value, got %s" % (what, r.short()))
                continue
            if r.status != 500 or r.code() != "INTEGRITY_ERROR":
                res.fail("%s: expected 500 INTEGRITY_ERROR, got GET %s -> %s %s" % (what, path, r.status, text[:300]))
            if leaked:
                res.fail("%s: the answer carries plaintext of %s: GET %s -> %s %s" % (what, leaked, path, r.status, text[:300]))
        r = c.req("GET", "/healthz", key=None)
        if r.status != 200:
            res.fail("server unhealthy after the integrity errors: " + r.short())
        log = server.log_tail(10**7)
        leaked = [label for v, label in plain.items() if v in log]
        if leaked:
            res.fail("server log carries plaintext of %s" % leaked)
        res.num("%d tampered rows read: each must answer 500 INTEGRITY_ERROR; 1 untouched control" % (len(cases) - 1))
    finally:
        server.kill()
