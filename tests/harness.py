# SPDX-License-Identifier: MIT
"""Shared helpers for the integration tests: start the real daemon on a free
loopback port, talk HTTP to it, and report results as "ok"/"not ok" lines
with a closing "N passed, N failed" line."""
import base64
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

BUILDDIR = os.environ.get("top_builddir", os.path.join(os.path.dirname(__file__), ".."))
SRCDIR = os.environ.get("top_srcdir", os.path.join(os.path.dirname(__file__), ".."))
ATROUSD = os.path.join(BUILDDIR, "src", "atrousd")


def grpc_modules(workdir):
    """Generate grpcio modules from the project's .proto files into workdir
    (grpc_tools, as Triton's clients are generated from the protocol's) and
    make them importable: kserve_grpc_pb2(_grpc), health_pb2(_grpc)."""
    out = os.path.join(workdir, "pb")
    os.makedirs(out, exist_ok=True)
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I" + os.path.join(SRCDIR, "src", "proto"),
                    "--python_out=" + out, "--grpc_python_out=" + out, "kserve_grpc.proto", "health.proto"],
                   check=True)
    sys.path.insert(0, out)


def need(results, tool):
    """Is tool on PATH?  Under CI its absence is a failure, elsewhere a skip."""
    if shutil.which(tool):
        return True
    results.check(not os.environ.get("CI"), "%s is installed (required under CI)" % tool)
    print("# skipped: %s not installed" % tool)
    return False


class Results:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, cond, what):
        if cond:
            self.passed += 1
            print("ok - " + what)
        else:
            self.failed += 1
            print("not ok - " + what)
        sys.stdout.flush()
        return cond

    def finish(self):
        print("%d passed, %d failed" % (self.passed, self.failed))
        return 1 if self.failed else 0


class Daemon:
    """The real atrousd, started on 127.0.0.1 port 0; the port is read back."""

    def __init__(self, *args, env=None, launcher=None):
        self.dir = tempfile.mkdtemp(prefix="atrousd-it.")
        self.port_file = os.path.join(self.dir, "port")
        self.log_path = os.path.join(self.dir, "log")
        self.log = open(self.log_path, "w")
        # launcher: a script that prepares the process (taskset, a cgroup)
        # and execs atrousd with the arguments it is given.
        cmd = ([launcher] if launcher else [ATROUSD]) + ["--listen", "127.0.0.1:0",
                                                          "--port-file", self.port_file] + list(args)
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + 20
        while not os.path.exists(self.port_file):
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("atrousd did not start: " + self.log_text())
            time.sleep(0.02)
        self.port = int(open(self.port_file).read())
        while self.request("GET", "/v2/health/ready")[0] != 200:
            if time.time() > deadline:
                raise RuntimeError("atrousd not ready: " + self.log_text())
            time.sleep(0.02)

    def log_text(self):
        self.log.flush()
        return open(self.log_path).read()

    def connection(self, timeout, addr=None):
        """A connection to the daemon (at addr, 127.0.0.1 by default)."""
        return http.client.HTTPConnection(addr or "127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, timeout=60, addr=None):
        conn = self.connection(timeout, addr)
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        return resp.status, dict(resp.getheaders()), data

    def post_json(self, path, obj, **kw):
        status, headers, data = self.request("POST", path, obj, **kw)
        try:
            parsed = json.loads(data)
        except ValueError:
            parsed = None
        return status, headers, parsed

    def raw(self, payload, timeout=5, shutdown=True):
        """Send raw bytes; return everything the server sends back."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        try:
            s.sendall(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # answered and closed before the payload was all sent
        if shutdown:
            try:
                s.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        out = read_all(s)
        s.close()
        return out

    def kill(self):
        """kill -9: no drain, no clean-up by the daemon; the test's files go."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.log.close()
        if rc == 0 and "Sanitizer" not in self.log_text_closed():
            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            print("# daemon exit status %s; log kept in %s" % (rc, self.log_path))
        return rc

    def log_text_closed(self):
        with open(self.log_path) as f:
            return f.read()


class HTTPSDaemon(Daemon):
    """The daemon serving HTTPS: requests (readiness included) go over TLS,
    verified against ca, with a client certificate (cert, key) when given."""

    def __init__(self, *args, ca, client_cert=None, host="localhost", env=None):
        self.ca, self.client_cert, self.host = ca, client_cert, host
        super().__init__(*args, env=env)

    def connection(self, timeout, addr=None):
        """TLS to addr, the certificate checked for self.host."""
        import ssl
        ctx = ssl.create_default_context(cafile=self.ca)
        if self.client_cert:
            ctx.load_cert_chain(*self.client_cert)
        sock = socket.create_connection((addr or "127.0.0.1", self.port), timeout=timeout)
        conn = http.client.HTTPSConnection(self.host, self.port, timeout=timeout, context=ctx)
        conn.sock = ctx.wrap_socket(sock, server_hostname=self.host)
        return conn


def read_all(s):
    """Everything a socket yields until the peer closes, resets or times out."""
    out = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    except (socket.timeout, ConnectionResetError):
        pass
    return out


def burst(send, n=8):
    """Call send() from n threads at once; send returns (status, headers, ...).
    Returns the statuses and the Retry-After header of every 503."""
    statuses, retry = [], []

    def one():
        st, hdr = send()[:2]
        statuses.append(st)
        if st == 503:
            retry.append(hdr.get("Retry-After"))

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return statuses, retry


def free_port():
    """A loopback port nothing listens on right now."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def enc(a, how):
    a = np.asarray(a, dtype=np.float32)
    if how == "nested":
        return a.tolist()
    if how == "flat":
        return {"shape": list(a.shape), "data": a.ravel().tolist()}
    return {"shape": list(a.shape), "b64": base64.b64encode(a.astype("<f4").tobytes()).decode()}


def dec(obj):
    if isinstance(obj, list):
        return np.array(obj, dtype=np.float32)
    if "b64" in obj:
        return np.frombuffer(base64.b64decode(obj["b64"]), "<f4").reshape(obj["shape"])
    return np.array(obj["data"], dtype=np.float32).reshape(obj["shape"])


def close(got, ref, tol=1e-4, quiet=False):
    ref = np.asarray(ref, dtype=np.float64)
    if got.shape != ref.shape:
        if not quiet:
            print("# shape %s != %s" % (got.shape, ref.shape))
        return False
    if ref.size == 0:
        return True
    err = np.abs(got - ref).max() / max(1.0, np.abs(ref).max())
    if err > tol and not quiet:
        print("# relative error %.3g" % err)
    return err <= tol
