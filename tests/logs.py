#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The daemon's log, every line of it, in both formats: text lines carry the
journald "<N>" prefix and no control characters; in JSON every line is one
object with ts, level and msg, and request lines carry id, method, path,
status, bytes, timings, model and peer (with the prefix only for journald)."""
import json
import os
import re
import signal
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import SRCDIR, Daemon, Results  # noqa: E402

R = Results()
TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
ODD_ID = 'req "7"\n\x01end'


def traffic(d):
    x = np.random.rand(1, 16, 16, 8).astype(np.float32)
    d.post_json("/v2/models/demo/infer", {"id": ODD_ID, "inputs": [
        {"name": "input", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]})
    d.post_json("/v2/models/demo/infer", {"id": "bad", "inputs": []})
    d.post_json("/v1/atrous_conv2d", {"value": x.tolist(), "filters": np.ones((3, 3, 8, 2)).tolist(),
                                      "rate": 2, "padding": "SAME"})
    d.request("GET", "/v2/models/nothere")
    d.request("GET", "/metrics")
    d.request("POST", "/v1/models/reload", "")


def run(fmt, env=None):
    d = Daemon("--models", os.path.join(SRCDIR, "conf", "models"), "--log-format", fmt, env=env)
    traffic(d)
    d.proc.send_signal(signal.SIGTERM)
    d.proc.wait(timeout=30)
    text = d.log_text()
    R.check(d.stop() == 0, "%s: the daemon exits 0" % fmt)
    return text.splitlines()


lines = run("text")
bad = [l for l in lines if not re.match(r"^<[3467]>[^\x00-\x1f]*$", l)]
R.check(lines and not bad, "text: %d lines, each \"<N>\" and no control character %s" % (len(lines), bad[:2]))
infer = [l for l in lines if l.startswith("<6>POST /v2/models/demo/infer 200")]
R.check(len(infer) == 1 and "id=req \"7\"??end" in infer[0], "text: the request line, the odd id made harmless")
R.check(any("GET /v2/models/nothere 404" in l for l in lines), "text: a 404 is logged")

lines = run("json")
objs = []
for l in lines:
    try:
        objs.append(json.loads(l))
    except ValueError:
        objs.append(None)
R.check(lines and None not in objs, "json: %d lines, each one JSON object" % len(lines))
objs = [o for o in objs if o]
R.check(all(set(o) >= {"ts", "level", "msg"} and TS.match(o["ts"]) and o["level"] in ("error", "warn", "info", "debug")
            and isinstance(o["msg"], str) for o in objs), "json: ts (RFC 3339, microseconds), level, msg on every line")
reqs = [o for o in objs if "method" in o]
keys = {"id", "method", "path", "status", "bytes_in", "bytes_out", "total_us", "queue_us", "compute_us", "model", "peer"}
R.check(len(reqs) >= 6 and all(set(o) >= keys for o in reqs), "json: %d request lines, each with every request field" % len(reqs))
R.check(all(isinstance(o[k], int) for o in reqs for k in ("status", "bytes_in", "bytes_out", "total_us",
                                                          "queue_us", "compute_us")), "json: numbers are numbers")
ok = [o for o in reqs if o["path"] == "/v2/models/demo/infer" and o["status"] == 200]
R.check(len(ok) == 1 and ok[0]["id"] == ODD_ID and ok[0]["model"] == "demo" and ok[0]["peer"] == "127.0.0.1"
        and ok[0]["bytes_in"] > 0 and ok[0]["bytes_out"] > 0, "json: the infer line, its id exactly as sent")
bad = [o for o in reqs if o["path"] == "/v2/models/demo/infer" and o["status"] == 400]
R.check(len(bad) == 1 and bad[0]["id"] == "bad" and bad[0]["model"] == "demo", "json: a refused infer keeps its id and model")
conv = [o for o in reqs if o["path"] == "/v1/atrous_conv2d"]
R.check(len(conv) == 1 and conv[0]["model"] == "atrous_conv2d" and conv[0]["compute_us"] > 0,
        "json: a native convolution with its compute time")
R.check(any(o["path"] == "/v1/models/reload" and o["status"] == 403 and o["id"] is None for o in reqs),
        "json: an admin call without a token, id null")

lines = run("json", env=dict(os.environ, JOURNAL_STREAM="8:1234"))
R.check(lines and all(re.match(r"^<[3467]>\{", l) and json.loads(l[3:]) for l in lines),
        "json under journald: \"<N>\" then one JSON object")

sys.exit(R.finish())
