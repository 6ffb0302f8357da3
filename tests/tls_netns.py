#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Run by tls.py inside a network namespace of its own, where 192.0.2.1 is
an address of this (namespaced) host that is not loopback: admin calls over
plain HTTP from it are refused unless admin_plaintext = allow; over HTTPS
they are fine.  Arguments: the folder with the test's certificates, the
admin token."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Daemon, HTTPSDaemon, Results  # noqa: E402

W, TOKEN = sys.argv[1], sys.argv[2]
R = Results()
AUTH = {"Authorization": "Bearer " + TOKEN}


def plain(d, addr, method, path, headers=None):
    st, _, body = d.request(method, path, "" if method == "POST" else None, headers, addr=addr)
    return st, body


args = ("--listen", "0.0.0.0:0", "--admin-token-file", os.path.join(W, "token"))
d = Daemon(*args)
st, body = plain(d, "192.0.2.1", "POST", "/v2/repository/index", AUTH)
R.check(st == 403 and b"refused from 192.0.2.1" in body and b"admin_plaintext" in body,
        "plain HTTP, peer 192.0.2.1: an admin call with the right token is 403 (%s)" % json.loads(body)["error"][:70])
R.check(plain(d, "192.0.2.1", "GET", "/v2/health/ready")[0] == 200, "... other endpoints serve it")
R.check(plain(d, "127.0.0.1", "POST", "/v2/repository/index", AUTH)[0] == 200, "... loopback keeps the admin API")
d.stop()
d = Daemon(*args, "--admin-plaintext", "allow")
R.check(plain(d, "192.0.2.1", "POST", "/v2/repository/index", AUTH)[0] == 200,
        "admin_plaintext = allow: 192.0.2.1 may call it")
d.stop()
d = HTTPSDaemon(*args, "--tls-cert", os.path.join(W, "srv.pem"), "--tls-key", os.path.join(W, "srv.key"),
                ca=os.path.join(W, "ca.pem"))
R.check(d.request("POST", "/v2/repository/index", "", AUTH, addr="192.0.2.1")[0] == 200,
        "over HTTPS, 192.0.2.1 may call it")
d.stop()
sys.exit(R.finish())
