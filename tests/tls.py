#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""HTTPS: certificates made by openssl for the test (a CA, the server's,
a good and a bad client's); curl with and without the CA; a KServe call
over TLS the way tritonclient.http(ssl=True, ssl_options=...) makes it;
plain HTTP to the TLS port; stalled handshakes and a slow request that must
not hold the listener; mutual TLS; certificates re-read on SIGHUP (and a bad
new pair refused); admin calls over plain HTTP from a non-loopback address
(in a network namespace of the test's own) refused unless allowed."""
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import ATROUSD, SRCDIR, HTTPSDaemon, Results  # noqa: E402

R = Results()
W = tempfile.mkdtemp(prefix="atrousd-tls.")
TOKEN = "tls-admin-token-0123456789"
MODELS = os.path.join(SRCDIR, "conf", "models")


def sh(cmd):
    subprocess.run(cmd, shell=True, cwd=W, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def make_cert(name, cn, ca=True, san=None):
    """name.key and name.pem, signed by the test CA (or self-signed)."""
    if not ca:
        sh("openssl req -x509 -newkey rsa:2048 -nodes -keyout %s.key -out %s.pem -days 2 -subj /CN=%s" % (name, name, cn))
        return
    sh("openssl req -newkey rsa:2048 -nodes -keyout %s.key -out %s.csr -subj /CN=%s" % (name, name, cn))
    ext = ""
    if san:
        with open(os.path.join(W, name + ".ext"), "w") as f:
            f.write("subjectAltName=%s\n" % san)
        ext = "-extfile %s.ext" % name
    sh("openssl x509 -req -in %s.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out %s.pem -days 2 %s"
       % (name, name, ext))


def path(n):
    return os.path.join(W, n)


sh("openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=atrousd-test-CA")
make_cert("srv", "localhost", san="DNS:localhost,IP:127.0.0.1")
make_cert("srv2", "localhost", san="DNS:localhost,IP:127.0.0.1")
make_cert("cli", "client")
make_cert("bad", "intruder", ca=False)
with open(path("token"), "w") as f:
    f.write(TOKEN + "\n")
shutil.copy(path("srv.pem"), path("live.pem"))
shutil.copy(path("srv.key"), path("live.key"))


def curl(d, *args, url="/v2/health/ready"):
    p = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10"] + list(args)
                       + ["https://localhost:%d%s" % (d.port, url)], capture_output=True, text=True)
    return p.returncode, p.stdout


def served_cert(d):
    """The DER of the certificate a new TLS connection is given."""
    ctx = ssl.create_default_context(cafile=path("ca.pem"))
    with socket.create_connection(("127.0.0.1", d.port), timeout=5) as s:
        with ctx.wrap_socket(s, server_hostname="localhost") as t:
            return t.getpeercert(binary_form=True)


def der(pem):
    return ssl.PEM_cert_to_DER_cert(open(path(pem)).read())


def TLSDaemon(*args, client_cert=None):
    return HTTPSDaemon(*args, ca=path("ca.pem"), client_cert=client_cert and (
        path(client_cert + ".pem"), path(client_cert + ".key")))


# ---------------------------------------------------------------- HTTPS
d = TLSDaemon("--models", MODELS, "--tls-cert", path("live.pem"), "--tls-key", path("live.key"),
              "--admin-token-file", path("token"), "--connection-timeout", "3")
R.check("listening on 127.0.0.1:%d with HTTPS" % d.port in d.log_text(), "the log says HTTPS")
R.check(curl(d, "--cacert", path("ca.pem")) == (0, "200"), "curl --cacert: 200")
rc, _ = curl(d)
R.check(rc == 60, "curl without the CA refuses the certificate (exit %d)" % rc)

# A KServe infer as tritonclient.http(ssl=True, ssl_options={"ca_certs": ...}) sends it.
from geventhttpclient import HTTPClient  # noqa: E402
from geventhttpclient.url import URL  # noqa: E402
from kserve import demo_ref  # noqa: E402

x = np.random.default_rng(5).standard_normal((1, 9, 7, 8)).astype(np.float32)
client = HTTPClient.from_url(URL("https://127.0.0.1:%d/" % d.port), concurrency=1,
                             connection_timeout=60.0, network_timeout=60.0,
                             ssl_options={"ca_certs": path("ca.pem")}, ssl_context_factory=None,
                             insecure=False)
hdr = json.dumps({"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32",
                              "parameters": {"binary_data_size": x.nbytes}}],
                  "outputs": [{"name": "output", "parameters": {"binary_data": True}}]}).encode()
r = client.post("/v2/models/demo/infer", body=hdr + x.tobytes(),
                headers={"Inference-Header-Content-Length": str(len(hdr))})
data = r.read()
jl = int(r.get("Inference-Header-Content-Length") or 0)
meta = json.loads(data[:jl]) if r.status_code == 200 else {}
y = np.frombuffer(data[jl:], "<f4").reshape(meta["outputs"][0]["shape"]) if meta else None
ref = demo_ref(x)
R.check(r.status_code == 200 and y is not None and np.abs(y - ref).max() <= 1e-4 * max(1, np.abs(ref).max()),
        "a binary KServe infer over TLS, as tritonclient sends it, matches NumPy")
client.close()
st, _, body = d.request("POST", "/v2/repository/index", "", {"Authorization": "Bearer " + TOKEN})
R.check(st == 200, "an admin call over HTTPS from loopback")

# Plain HTTP to the TLS port: closed at once, never an HTTP answer, no hang.
t0 = time.time()
out = d.raw(b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n\r\n", timeout=5)
R.check(b"HTTP/1.1" not in out and time.time() - t0 < 3, "plain HTTP to the TLS port: closed in %.2f s, no "
        "HTTP reply" % (time.time() - t0))

# Stalled handshakes and a slow request do not hold the listener.
stalled = [socket.create_connection(("127.0.0.1", d.port), timeout=10) for _ in range(24)]
half = socket.create_connection(("127.0.0.1", d.port), timeout=10)
half.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # the start of a ClientHello
slow = ssl.create_default_context(cafile=path("ca.pem")).wrap_socket(
    socket.create_connection(("127.0.0.1", d.port), timeout=10), server_hostname="localhost")
slow.sendall(b"GET /v2/health/re")  # and nothing more for a while
t0 = time.time()
ok = all(curl(d, "--cacert", path("ca.pem")) == (0, "200") for _ in range(5))
R.check(ok and time.time() - t0 < 5, "26 stalled or slow TLS connections open: 5 requests served in %.2f s"
        % (time.time() - t0))
t0 = time.time()
closed = 0
for s in stalled + [half]:
    s.settimeout(8)
    try:
        while s.recv(4096):  # an alert may come first; then the end
            pass
        closed += 1
    except ConnectionResetError:
        closed += 1
    except socket.timeout:
        pass
R.check(closed == 25 and time.time() - t0 < 8, "the stalled handshakes are closed after connection_timeout "
        "(%d of 25 in %.1f s)" % (closed, time.time() - t0))
for s in stalled + [half]:
    s.close()
slow.close()

# SIGHUP: a renewed certificate is served without a restart; a bad pair is refused.
first = served_cert(d)
R.check(first == der("srv.pem"), "the first certificate is served")
shutil.copy(path("srv2.pem"), path("live.pem"))
shutil.copy(path("srv2.key"), path("live.key"))
d.proc.send_signal(signal.SIGHUP)
deadline = time.time() + 5
while "certificate and key re-read" not in d.log_text() and time.time() < deadline:
    time.sleep(0.05)
R.check(served_cert(d) == der("srv2.pem"), "after SIGHUP the renewed certificate is served, no restart")
shutil.copy(path("srv.pem"), path("live.pem"))  # the old certificate with the new key: a mismatch
d.proc.send_signal(signal.SIGHUP)
deadline = time.time() + 5
while "keeping the certificate in force" not in d.log_text() and time.time() < deadline:
    time.sleep(0.05)
log = d.log_text()
why = re.search(r"keeping the certificate in force: (.*)", log)
R.check(why is not None and served_cert(d) == der("srv2.pem"),
        "a bad new pair is refused with a reason, the one in force stays (%s)" % (why.group(1)[:90] if why else "no log line"))
R.check(curl(d, "--cacert", path("ca.pem")) == (0, "200"), "and requests go on")
R.check(d.stop() == 0, "the HTTPS daemon exits 0")

# ---------------------------------------------------------------- mutual TLS
shutil.copy(path("srv.pem"), path("live.pem"))
shutil.copy(path("srv.key"), path("live.key"))
try:
    d = TLSDaemon("--models", MODELS, "--tls-cert", path("live.pem"), "--tls-key", path("live.key"),
                  "--tls-ca", path("ca.pem"), client_cert="cli")
    R.check(curl(d, "--cacert", path("ca.pem"), "--cert", path("cli.pem"), "--key", path("cli.key")) == (0, "200"),
            "mutual TLS: a client certificate the CA signed: 200")
    rc, code = curl(d, "--cacert", path("ca.pem"), "--cert", path("bad.pem"), "--key", path("bad.key"))
    R.check(rc != 0 and code == "000", "mutual TLS: a self-signed client certificate fails the handshake (curl %d)" % rc)
    rc, code = curl(d, "--cacert", path("ca.pem"))
    R.check(rc != 0 and code == "000", "mutual TLS: no client certificate fails the handshake (curl %d)" % rc)
    R.check(d.stop() == 0, "the mutual-TLS daemon exits 0")
except RuntimeError as e:
    R.check(False, "mutual TLS daemon: %s" % e)

# ---------------------------------------------------------------- bad settings
for args, msg in ((["--tls-cert", path("srv.pem")], "tls_cert_file and tls_key_file go together"),
                  (["--tls-cert", path("srv.pem"), "--tls-key", path("cli.key")], "tls_cert_file"),
                  (["--tls-cert", path("nothere.pem"), "--tls-key", path("srv.key")], "nothere.pem"),
                  (["--admin-plaintext", "maybe"], "admin_plaintext")):
    p = subprocess.run([ATROUSD, "--listen", "127.0.0.1:0"] + args, capture_output=True, text=True, timeout=20)
    R.check(p.returncode == 1 and msg in p.stdout + p.stderr, "refused at start: %s (%s)"
            % (" ".join(a.replace(W + "/", "") for a in args), (p.stdout + p.stderr).strip().splitlines()[-1][:100]))

p = subprocess.run([ATROUSD, "--tls-cert", path("srv.pem"), "--tls-key", path("cli.key"), "--check-config"],
                   capture_output=True, text=True, timeout=20)
R.check(p.returncode == 1 and "tls_key_file" in p.stderr, "--check-config loads the pair and refuses a mismatch")
p = subprocess.run([ATROUSD, "--tls-cert", path("srv.pem"), "--tls-key", path("srv.key"), "--check-config"],
                   capture_output=True, text=True, timeout=20)
R.check(p.returncode == 0 and "configuration OK" in p.stdout, "--check-config accepts a good pair")

# ---------------------------------------------------------------- admin over plain HTTP
inner = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tls_netns.py")
p = subprocess.run(["unshare", "-n", "sh", "-c", "ip link set lo up && ip addr add 192.0.2.1/32 dev lo && "
                    "exec \"$0\" \"$1\" \"$2\" \"$3\"", sys.executable, inner, W, TOKEN],
                   capture_output=True, text=True, timeout=120, env=os.environ)
print(p.stdout, end="")
for line in p.stdout.splitlines():
    if line.startswith("ok - "):
        R.passed += 1
    elif line.startswith("not ok - "):
        R.failed += 1
R.check(p.returncode == 0 and "not ok" not in p.stdout, "the admin policy in a network namespace (%s)"
        % (p.stderr.strip().splitlines()[-1][:120] if p.stderr.strip() else "exit %d" % p.returncode))

shutil.rmtree(W, ignore_errors=True)
sys.exit(R.finish())
