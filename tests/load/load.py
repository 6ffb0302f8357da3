#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Load and overload against the real daemon with wrk (a benchmark-style
report; it asserts only correctness properties):

1. at capacity (connections = workers): only 200s, no socket errors;
2. at four times capacity and beyond the queue: only 200 and 503, every 503
   with Retry-After, RSS below the in-flight byte budget plus the baseline;
   liveness and /metrics answer throughout;
3. afterwards: full recovery, a request is served correctly.

Usage: load.py [--short] (short: 10 s phases, for CI; default 60 s).
"""
import argparse
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from harness import Daemon, Results  # noqa: E402

R = Results()


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def wrk(port, body_path, connections, seconds):
    env = dict(os.environ, ATROUSD_BODY=body_path)
    out = subprocess.run(["wrk", "-t2", "-c%d" % connections, "-d%ds" % seconds, "--timeout", "10s",
                          "-s", os.path.join(HERE, "post.lua"), "http://127.0.0.1:%d/v1/atrous_conv2d" % port],
                         env=env, capture_output=True, text=True, check=True).stdout
    return json.loads([l for l in out.splitlines() if l.startswith("{")][-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--short", action="store_true")
    args = ap.parse_args()
    seconds = 10 if args.short else 60
    workers, queue, budget_mib = 2, 4, 64
    d = Daemon("--threads", str(workers), "--max-queue", str(queue), "--max-inflight-bytes",
               "%dM" % budget_mib, "--log-level", "warn")
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 48, 48, 16)).round(3)
    f = rng.standard_normal((3, 3, 16, 16)).round(3)
    body = json.dumps({"value": x.tolist(), "filters": f.tolist(), "rate": 2, "padding": "SAME",
                       "output_encoding": "b64"})
    body_path = os.path.join(d.dir, "body.json")
    with open(body_path, "w") as fh:
        fh.write(body)
    baseline = rss_kib(d.proc.pid)
    peak = [baseline]
    probes = {"live": [], "metrics": []}
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_kib(d.proc.pid))
            for name, path in (("live", "/v2/health/live"), ("metrics", "/metrics")):
                t0 = time.time()
                try:
                    st = urllib.request.urlopen("http://127.0.0.1:%d%s" % (d.port, path), timeout=5).status
                except Exception:  # noqa: BLE001 - any failure counts
                    st = 0
                probes[name].append((st, time.time() - t0))
            time.sleep(0.1)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        cap = wrk(d.port, body_path, workers, seconds)
        print("# at capacity (%d connections, %d s): %s" % (workers, seconds, json.dumps(cap)))
        R.check(set(cap["statuses"]) == {"200"} and cap["socket_errors"] == 0,
                "at capacity: %d requests, all 200, no socket errors; p50 %.1f ms, p99 %.1f ms"
                % (cap["requests"], cap["p50_ms"], cap["p99_ms"]))
        over_c = 4 * (workers + queue)
        over = wrk(d.port, body_path, over_c, seconds)
        print("# overload (%d connections, %d s): %s" % (over_c, seconds, json.dumps(over)))
        R.check(set(over["statuses"]) <= {"200", "503"} and "503" in over["statuses"] and over["socket_errors"] == 0,
                "4x capacity: only 200 (%s) and 503 (%s); p50 %.1f ms, p99 %.1f ms" % (
                    over["statuses"].get("200", 0), over["statuses"].get("503", 0), over["p50_ms"], over["p99_ms"]))
        R.check(over["missing_retry_after"] == 0, "every 503 carries Retry-After")
    finally:
        stop.set()
        watcher.join()
    limit = baseline + budget_mib * 1024 + 64 * 1024
    R.check(peak[0] <= limit, "peak RSS %d MiB <= baseline %d MiB + in-flight budget %d MiB + 64 MiB scratch"
            % (peak[0] // 1024, baseline // 1024, budget_mib))
    for name in probes:
        ok = [s == 200 and t < 1.0 for s, t in probes[name]]
        worst = max(t for _, t in probes[name]) if probes[name] else 0
        R.check(ok and all(ok), "%s answered %d times during the load, slowest %.0f ms" % (
            name, len(ok), worst * 1e3))
    st, _, data = d.request("POST", "/v1/atrous_conv2d", json.dumps({"value": [[[[1.0]]]], "filters": [[[[3.0]]]],
                                                                     "rate": 1, "padding": "SAME"}))
    R.check(st == 200 and json.loads(data)["output"]["data"] == [3], "recovered: served correctly afterwards")
    # Jobs of connections wrk closed may still finish on the other worker
    # for a moment after the request above: give them 5 s to drain.
    deadline = time.time() + 5
    while True:
        v = d.request("GET", "/metrics")[2].decode()
        idle = "atrousd_queue_depth 0" in v and "atrousd_inflight_requests 0" in v
        if idle or time.time() > deadline:
            break
        time.sleep(0.05)
    R.check(idle, "queue and in-flight back to 0")
    R.check(d.stop() == 0, "daemon exits 0")
    return R.finish()


if __name__ == "__main__":
    sys.exit(main())
