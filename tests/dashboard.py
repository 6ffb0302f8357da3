#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""deploy/grafana/atrousd.json against the real thing: a daemon under
traffic (successes, errors, a reload), a real Prometheus scraping it, and
every query of every panel evaluated by that Prometheus with the
dashboard's variables filled in as Grafana would; each must parse and return
series."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import SRCDIR, Daemon, Results, free_port  # noqa: E402

R = Results()
dash = json.load(open(os.path.join(SRCDIR, "deploy", "grafana", "atrousd.json")))
targets = [(p["title"], t["expr"]) for p in dash["panels"] for t in p["targets"]]
R.check(len(dash["panels"]) >= 10 and all(p["datasource"]["uid"] == "${datasource}" for p in dash["panels"]),
        "the dashboard: %d panels, %d queries, on the datasource variable" % (len(dash["panels"]), len(targets)))
names = {v["name"] for v in dash["templating"]["list"]}
R.check(names == {"datasource", "job", "instance"}, "variables: datasource, job, instance")

work = tempfile.mkdtemp(prefix="atrousd-dash.")
with open(os.path.join(work, "token"), "w") as f:
    f.write("dashboard-token-0123456789\n")
d = Daemon("--models", os.path.join(SRCDIR, "conf", "models"), "--admin-token-file", os.path.join(work, "token"))
pport = free_port()
with open(os.path.join(work, "prometheus.yml"), "w") as f:
    f.write("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: atrousd\n"
            "    static_configs:\n      - targets: ['127.0.0.1:%d']\n" % d.port)
log = open(os.path.join(work, "prom.log"), "w")
prom = subprocess.Popen(["prometheus", "--config.file=" + os.path.join(work, "prometheus.yml"),
                         "--storage.tsdb.path=" + os.path.join(work, "data"),
                         "--web.listen-address=127.0.0.1:%d" % pport], stdout=log, stderr=subprocess.STDOUT)


def query(expr):
    url = "http://127.0.0.1:%d/api/v1/query?%s" % (pport, urllib.parse.urlencode({"query": expr}))
    try:
        return json.loads(urllib.request.urlopen(url, timeout=5).read())
    except urllib.error.HTTPError as e:
        return json.loads(e.read())
    except (OSError, ValueError):
        return None


try:
    x = np.random.rand(1, 12, 12, 8).astype(np.float32)
    body = {"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]}
    deadline = time.time() + 12
    while time.time() < deadline:
        d.post_json("/v2/models/demo/infer", body)
        d.post_json("/v2/models/demo/infer", {"inputs": []})
        d.request("POST", "/v1/models/reload", "", {"Authorization": "Bearer dashboard-token-0123456789"})
        time.sleep(0.2)
    ready = False
    for _ in range(30):
        r = query("atrousd_workers")
        if r and r.get("data", {}).get("result"):
            ready = True
            break
        time.sleep(1)
    R.check(ready, "Prometheus scrapes the daemon")
    for title, expr in targets:
        e = expr.replace("$__rate_interval", "15s").replace("$job", ".*").replace("$instance", ".*")
        r = query(e)
        ok = r is not None and r.get("status") == "success" and len(r["data"]["result"]) > 0
        R.check(ok, "%s: %s returns %s" % (title, expr[:70], len(r["data"]["result"]) if r and "data" in r
                                           else (r or {}).get("error")))
finally:
    prom.terminate()
    prom.wait()
    log.close()
    R.check(d.stop() == 0, "daemon exits 0")
    shutil.rmtree(work, ignore_errors=True)
sys.exit(R.finish())
