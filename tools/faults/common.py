"""Shared pieces of the fault suite: starting and killing the real server on
loopback, a small HTTP client, and result reporting. Standard library only."""

import glob
import http.client
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MASTER_KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
BASE_ENV = {
    "LATCHKEY_MASTER_KEY": MASTER_KEY,
    "LATCHKEY_DEFAULT_PLAN": "unlimited",
    "LATCHKEY_SIGNUP_PER_MINUTE": "100000",
    # The isolation matrix and schemathesis send hundreds of bad credentials
    # from one address on purpose; the throttle has tests of its own (tests/security.rs).
    "LATCHKEY_AUTH_FAILURES_PER_MINUTE": "1000000",
    "LATCHKEY_LOG": "warn",
}

_servers = []
_servers_lock = threading.Lock()


class Ctx:
    """Run-wide settings handed to every check."""

    def __init__(self, binary, workdir, quick, python=None):
        self.binary = binary
        self.workdir = workdir
        self.quick = quick
        self.python = python
        self._pg_url = None
        self._pg_error = None

    def tempdir(self, name):
        d = tempfile.mkdtemp(prefix=name + "-", dir=self.workdir)
        return d

    def pg_url(self, name):
        """A fresh PostgreSQL database NAME, or None with the reason in pg_error.

        On the server of $LATCHKEY_TEST_DATABASE_URL when it is set (the one the
        test suite uses), else on the throwaway server of tools/pg-up."""
        if self._pg_error:
            return None
        admin = os.environ.get("LATCHKEY_TEST_DATABASE_URL")
        if admin:
            return self._fresh_db_on(admin, name)
        try:
            out = subprocess.run(
                ["bash", os.path.join(ROOT, "tools", "pg-up"), "--fresh-db", name],
                capture_output=True, text=True, timeout=300, check=False,
            )
        except subprocess.TimeoutExpired:
            self._pg_error = "tools/pg-up timed out"
            return None
        if out.returncode != 0 or not out.stdout.strip().startswith("postgres"):
            self._pg_error = "tools/pg-up failed: " + (out.stderr.strip().splitlines() or ["?"])[-1]
            return None
        return out.stdout.strip().splitlines()[-1]

    def _fresh_db_on(self, admin, name):
        """(Re)creates database NAME with psql, connected as the URL's role,
        and returns the URL with NAME as its database."""
        psql = shutil.which("psql") or next(
            iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/psql"), reverse=True)), None)
        if not psql:
            self._pg_error = "psql not found (needed to make a database on $LATCHKEY_TEST_DATABASE_URL)"
            return None
        base, _, _db = admin.partition("?")[0].rpartition("/")
        if not base.startswith("postgres"):
            self._pg_error = "LATCHKEY_TEST_DATABASE_URL is not a postgres:// URL with a database"
            return None
        for sql in ('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name, 'CREATE DATABASE "%s"' % name):
            try:
                out = subprocess.run(
                    [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", admin, "-c", sql],
                    capture_output=True, text=True, timeout=60, check=False,
                )
            except subprocess.TimeoutExpired:
                self._pg_error = "psql timed out on " + sql
                return None
            if out.returncode != 0:
                self._pg_error = "psql failed on %s: %s" % (sql, (out.stderr.strip().splitlines() or ["?"])[-1])
                return None
        return "%s/%s" % (base, name)

    @property
    def pg_error(self):
        return self._pg_error


class Server:
    """One `latchkey serve` process on 127.0.0.1:0."""

    def __init__(self, ctx, data_dir, database_url=None, env=None, log_path=None):
        self.ctx = ctx
        self.data_dir = data_dir
        self.database_url = database_url
        self.extra_env = dict(env or {})
        self.log_path = log_path or os.path.join(data_dir + ".stderr.log")
        self.proc = None
        self.port = None
        self.starts = 0

    @property
    def base(self):
        return "http://127.0.0.1:%d" % self.port

    def start(self, timeout=60):
        env = {k: v for k, v in os.environ.items() if not k.startswith("LATCHKEY_") and k != "DATABASE_URL"}
        env.update(BASE_ENV)
        env.update(self.extra_env)
        if self.database_url:
            env["DATABASE_URL"] = self.database_url
        os.makedirs(self.data_dir, exist_ok=True)
        out_path = self.data_dir + ".stdout.%d" % self.starts
        self.starts += 1
        with open(out_path, "wb") as out, open(self.log_path, "ab") as err:
            self.proc = subprocess.Popen(
                [self.ctx.binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", self.data_dir],
                stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env, start_new_session=True,
            )
        with _servers_lock:
            _servers.append(self)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(out_path, "rb") as f:
                text = f.read().decode("utf-8", "replace")
            for line in text.splitlines():
                if "listening on http://127.0.0.1:" in line:
                    self.port = int(line.rsplit(":", 1)[1].strip().rstrip("/"))
                    return self
            if self.proc.poll() is not None:
                raise RuntimeError("server exited with %s at start; stderr tail: %s" % (self.proc.returncode, self.log_tail()))
            time.sleep(0.02)
        self.kill()
        raise RuntimeError("server did not print its address within %ss; stderr tail: %s" % (timeout, self.log_tail()))

    def log_tail(self, n=2000):
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-n:].decode("utf-8", "replace")
        except OSError:
            return ""

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        """SIGKILL, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc is not None:
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        self._forget()

    def stop(self):
        """SIGTERM, then SIGKILL after 15 s."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGKILL)
                self.proc.wait(timeout=30)
        self._forget()

    def _forget(self):
        with _servers_lock:
            if self in _servers:
                _servers.remove(self)

    def client(self, key=None, **kw):
        return Client(self.port, key, **kw)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()


def kill_all_servers():
    with _servers_lock:
        servers = list(_servers)
    for s in servers:
        try:
            s.kill()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


class Resp:
    __slots__ = ("status", "headers", "body", "method", "path", "req_body")

    def __init__(self, status, headers, body, method, path, req_body):
        self.status = status
        self.headers = headers
        self.body = body
        self.method = method
        self.path = path
        self.req_body = req_body

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def code(self):
        j = self.json()
        if isinstance(j, dict) and isinstance(j.get("code"), str):
            return j.get("code")
        return None

    def short(self, n=300):
        b = self.body.decode("utf-8", "replace")
        if len(b) > n:
            b = b[:n] + "..."
        return "%s %s -> %s %s" % (self.method, self.path, self.status, b)


class Client:
    """A keep-alive HTTP/1.1 client for one thread. Connection errors propagate
    (the request's outcome is then unknown); the next call reconnects."""

    def __init__(self, port, key=None, timeout=30.0, recorder=None, auth="x-api-key"):
        self.port = port
        self.key = key
        self.timeout = timeout
        self.recorder = recorder
        self.auth = auth
        self.conn = None

    def close(self):
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:  # noqa: BLE001
                pass
            self.conn = None

    def req(self, method, path, body=None, key="default", raw=None, headers=None, auth=None):
        if key == "default":
            key = self.key
        h = {"Host": "127.0.0.1:%d" % self.port, "User-Agent": "latchkey-faults"}
        data = None
        if raw is not None:
            data = raw if isinstance(raw, bytes) else raw.encode()
            h["Content-Type"] = "application/json"
        elif body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        if key is not None:
            if (auth or self.auth) == "bearer":
                h["Authorization"] = "Bearer " + key
            else:
                h["X-API-Key"] = key
        if headers:
            h.update(headers)
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        try:
            self.conn.request(method, path, body=data, headers=h)
            r = self.conn.getresponse()
            payload = r.read()
            hdrs = r.getheaders()
            if r.getheader("connection", "").lower() == "close":
                self.close()
        except Exception:
            self.close()
            raise
        resp = Resp(r.status, hdrs, payload, method, path, data)
        if self.recorder is not None:
            self.recorder.append(resp)
        return resp


def signup(client, prefix="t"):
    tenant = "%s-%s" % (prefix, uuid.uuid4().hex[:12])
    r = client.req("POST", "/api/signup", {"tenantId": tenant}, key=None)
    if r.status != 201:
        raise RuntimeError("signup failed: " + r.short())
    return tenant, r.json()["apiKey"]


def must(r, *ok):
    ok = ok or (200, 201)
    if r.status not in ok:
        raise RuntimeError("unexpected answer: " + r.short())
    return r.json()


class Result:
    def __init__(self, name):
        self.name = name
        self.ok = True
        self.skipped = False
        self.numbers = []
        self.failures = []

    def num(self, text):
        self.numbers.append(text)

    def fail(self, text):
        self.ok = False
        self.failures.append(text)

    def skip(self, why):
        self.skipped = True
        self.numbers.append("skipped: " + why)


def copy_binary(binary, workdir):
    """Runs use a private copy, so a concurrent `cargo build` cannot swap the
    binary between a crash and its restart."""
    dst = os.path.join(workdir, "latchkey")
    shutil.copy2(binary, dst)
    return dst
