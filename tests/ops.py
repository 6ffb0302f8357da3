#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Operations, with the real tools: Prometheus metrics (promtool and a real
Prometheus server scraping), the sd_notify protocol, socket activation with
systemd-socket-activate, the unit files under systemd-analyze, and nginx in
front of three daemons with one killed mid-run."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import ATROUSD, BUILDDIR, SRCDIR, Daemon, Results, free_port, need  # noqa: E402

R = Results()
GOOD = json.dumps({"value": [[[[1.0], [2.0]], [[3.0], [4.0]]]], "filters": [[[[2.0]]]], "rate": 1,
                   "padding": "SAME"})


def parse_metrics(text):
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def test_metrics():
    d = Daemon("--threads", "2", "--models", os.path.join(SRCDIR, "conf", "models"))
    try:
        for _ in range(3):
            d.request("POST", "/v1/atrous_conv2d", GOOD)
        for body in ('{"rate": 1}', "not json"):
            d.request("POST", "/v1/atrous_conv2d", body)
        d.request("GET", "/nowhere")
        st, hdr, data = d.request("GET", "/metrics")
        text = data.decode()
        R.check(st == 200 and hdr.get("Content-Type", "").startswith("text/plain; version=0.0.4"),
                "GET /metrics: text format 0.0.4")
        if need(R, "promtool"):
            p = subprocess.run(["promtool", "check", "metrics"], input=data, capture_output=True)
            R.check(p.returncode == 0, "promtool check metrics: clean %s" % (p.stdout + p.stderr).decode().strip())
        v = parse_metrics(text)
        R.check(v.get('atrousd_requests_total{endpoint="atrous_conv2d",code="200"}') == 3, "3 requests counted as 200")
        R.check(v.get('atrousd_requests_total{endpoint="atrous_conv2d",code="400"}') == 2, "2 requests counted as 400")
        R.check(v.get('atrousd_requests_total{endpoint="unknown",code="404"}') == 1, "the 404 counted")
        R.check(v.get('atrousd_request_duration_seconds_count{endpoint="atrous_conv2d"}') == 5,
                "request duration histogram counts all 5")
        R.check(v.get('atrousd_request_duration_seconds_bucket{endpoint="atrous_conv2d",le="+Inf"}') == 5,
                "+Inf bucket equals the count")
        R.check(v.get('atrousd_compute_duration_seconds_count{model="atrous_conv2d"}') == 3,
                "compute histogram counts the 3 computations")
        R.check(v.get("atrousd_queue_duration_seconds_count") == 3 and v.get("atrousd_decode_duration_seconds_count") == 3
                and v.get("atrousd_encode_duration_seconds_count") == 3, "queue/decode/encode histograms")
        R.check(v.get("atrousd_flops_total") == 3 * 8, "flops_total: 3 x 4 pixels x 2")
        R.check(v.get("atrousd_received_bytes_total", 0) >= 3 * len(GOOD), "received bytes counted")
        R.check(v.get("atrousd_sent_bytes_total", 0) > 0, "sent bytes counted")
        R.check(v.get("atrousd_workers") == 2 and v.get("atrousd_models_loaded") == 1, "workers and models gauges")
        R.check(v.get("atrousd_queue_depth") == 0 and v.get("atrousd_inflight_requests") == 0, "idle gauges are 0")
        R.check(v.get('atrousd_model_reloads_total{result="success"}') == 1, "startup load counted as a reload")
        R.check(v.get('atrousd_build_info{version="0.1.0"}') == 1, "build_info carries the version")
        R.check(all(k in v for k in ("process_resident_memory_bytes", "process_cpu_seconds_total",
                                     "process_open_fds", "process_start_time_seconds")), "process_* metrics")
        if need(R, "prometheus"):
            scrape_with_prometheus(d.port)
    finally:
        R.check(d.stop() == 0, "daemon exits 0")
    mport = free_port()
    d = Daemon("--metrics-listen", "127.0.0.1:%d" % mport)
    try:
        R.check(d.request("GET", "/metrics")[0] == 404, "with metrics_listen, /metrics leaves the main listener")
        body = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % mport, timeout=5).read().decode()
        R.check("atrousd_workers" in body, "... and is served on metrics_listen")
        try:
            urllib.request.urlopen(urllib.request.Request("http://127.0.0.1:%d/v1/atrous_conv2d" % mport,
                                                          data=GOOD.encode()), timeout=5)
            R.check(False, "the metrics listener refuses computations")
        except urllib.error.HTTPError as e:
            R.check(e.code == 404, "the metrics listener refuses computations")
    finally:
        R.check(d.stop() == 0, "daemon exits 0")


def scrape_with_prometheus(port):
    work = tempfile.mkdtemp(prefix="atrousd-prom.")
    pport = free_port()
    with open(os.path.join(work, "prometheus.yml"), "w") as f:
        f.write("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: atrousd\n"
                "    static_configs:\n      - targets: ['127.0.0.1:%d']\n" % port)
    log = open(os.path.join(work, "log"), "w")
    p = subprocess.Popen(["prometheus", "--config.file=" + os.path.join(work, "prometheus.yml"),
                          "--storage.tsdb.path=" + os.path.join(work, "data"),
                          "--web.listen-address=127.0.0.1:%d" % pport], stdout=log, stderr=subprocess.STDOUT)
    up = None
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            time.sleep(1)
            try:
                q = urllib.request.urlopen("http://127.0.0.1:%d/api/v1/query?query=atrousd_workers" % pport,
                                           timeout=2).read()
                res = json.loads(q)["data"]["result"]
                if res:
                    up = res[0]["value"][1]
                    break
            except (OSError, ValueError, KeyError):
                pass
    finally:
        p.terminate()
        p.wait()
        log.close()
    R.check(up == "2", "a real Prometheus server scraped atrousd_workers = %s" % up)
    shutil.rmtree(work, ignore_errors=True)


def notify_socket():
    path = os.path.join(tempfile.mkdtemp(prefix="atrousd-notify."), "notify")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.settimeout(0.2)
    return s, path


def drain_messages(s, seconds):
    msgs, end = [], time.time() + seconds
    while time.time() < end:
        try:
            msgs.append(s.recv(4096).decode())
        except socket.timeout:
            pass
    return msgs


def test_notify():
    s, path = notify_socket()
    env = dict(os.environ, NOTIFY_SOCKET=path, WATCHDOG_USEC="300000")
    d = Daemon("--models", os.path.join(SRCDIR, "conf", "models"), env=env)
    msgs = drain_messages(s, 1.0)
    text = "\n".join(msgs)
    R.check(any("READY=1" in m for m in msgs), "READY=1 sent once serving")
    R.check("STATUS=loading model demo" in text and "STATUS=serving 1 model(s)" in text,
            "STATUS= lines while loading and when serving")
    R.check("EXTEND_TIMEOUT_USEC=" in text, "EXTEND_TIMEOUT_USEC before loading a model")
    R.check(sum("WATCHDOG=1" in m for m in msgs) >= 3, "WATCHDOG=1 every half interval (%d in 1 s)" %
            sum("WATCHDOG=1" in m for m in msgs))
    ready = [i for i, m in enumerate(msgs) if "READY=1" in m]
    loading = [i for i, m in enumerate(msgs) if "loading model" in m]
    R.check(ready and loading and loading[-1] < ready[0], "READY=1 only after the models are loaded")
    d.proc.send_signal(signal.SIGHUP)
    time.sleep(0.3)
    d.proc.send_signal(signal.SIGTERM)
    msgs = drain_messages(s, 0.8)
    R.check(any("STOPPING=1" in m for m in msgs), "STOPPING=1 on SIGTERM")
    R.check(d.stop() == 0, "daemon exits 0")
    s.close()


def test_socket_activation():
    if not need(R, "systemd-socket-activate"):
        return
    port = free_port()
    work = tempfile.mkdtemp(prefix="atrousd-sa.")
    log = open(os.path.join(work, "log"), "w")
    p = subprocess.Popen(["systemd-socket-activate", "-l", "127.0.0.1:%d" % port, ATROUSD,
                          "--listen", "127.0.0.1:1", "--threads", "1"], stdout=log, stderr=subprocess.STDOUT)
    ok = False
    for _ in range(100):
        try:
            ok = urllib.request.urlopen("http://127.0.0.1:%d/v2/health/ready" % port, timeout=2).status == 200
            break
        except OSError:
            time.sleep(0.05)
    R.check(ok, "serves the socket systemd-socket-activate passed (not its own listen address)")
    body = urllib.request.urlopen(urllib.request.Request("http://127.0.0.1:%d/v1/atrous_conv2d" % port,
                                                         data=GOOD.encode()), timeout=5).read()
    R.check(json.loads(body)["output"]["data"] == [2, 4, 6, 8], "computes through the passed socket")
    p.send_signal(signal.SIGTERM)
    rc = p.wait(timeout=30)
    log.close()
    text = open(os.path.join(work, "log")).read()
    R.check(rc == 0 and "listening on 127.0.0.1:%d" % port in text, "logs the passed address, exits 0")
    shutil.rmtree(work, ignore_errors=True)


def test_units():
    if not need(R, "systemd-analyze"):
        return
    work = tempfile.mkdtemp(prefix="atrousd-units.")
    with open(os.path.join(SRCDIR, "systemd", "atrousd.service.in")) as f:
        unit = f.read().replace("@bindir@", os.path.join(os.path.abspath(BUILDDIR), "src"))
    unit = unit.replace("@sysconfdir@", "/etc")
    with open(os.path.join(work, "atrousd.service"), "w") as f:
        f.write(unit)
    shutil.copy(os.path.join(SRCDIR, "systemd", "atrousd.socket"), work)
    p = subprocess.run(["systemd-analyze", "verify", "--man=no", os.path.join(work, "atrousd.service"),
                        os.path.join(work, "atrousd.socket")], capture_output=True, text=True)
    R.check(p.returncode == 0 and not p.stderr.strip(), "systemd-analyze verify: clean %s" % p.stderr.strip())
    p = subprocess.run(["systemd-analyze", "security", "--offline=yes", os.path.join(work, "atrousd.service")],
                       capture_output=True, text=True)
    m = re.search(r"Overall exposure level for atrousd.service: ([0-9.]+)", p.stdout)
    R.check(m and float(m.group(1)) <= 2.0, "systemd-analyze security exposure %s <= 2.0" % (m.group(1) if m else "?"))
    R.check("Type=notify" in unit and "ExecReload=" in unit and "--check-config" in unit, "Type=notify unit")
    shutil.rmtree(work, ignore_errors=True)


def test_scaleout():
    if not need(R, "nginx"):
        return
    daemons = [Daemon("--threads", "1") for _ in range(3)]
    work = tempfile.mkdtemp(prefix="atrousd-nginx.")
    os.chmod(work, 0o755)
    nport = free_port()
    with open(os.path.join(SRCDIR, "deploy", "nginx", "atrousd.conf")) as f:
        conf = f.read()
    servers = iter(d.port for d in daemons)
    conf = re.sub(r"server 127\.0\.0\.1:808[123]", lambda m: "server 127.0.0.1:%d" % next(servers), conf)
    conf = conf.replace("listen 8080;", "listen 127.0.0.1:%d;" % nport)
    with open(os.path.join(work, "nginx.conf"), "w") as f:
        f.write("worker_processes 1;\npid %s/nginx.pid;\nerror_log %s/error.log;\nevents {}\n"
                "http {\naccess_log off;\nclient_body_temp_path %s/body;\nproxy_temp_path %s/proxy;\n%s\n}\n"
                % (work, work, work, work, conf))
    ng = subprocess.Popen(["nginx", "-c", os.path.join(work, "nginx.conf"), "-p", work, "-g", "daemon off;"])
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen("http://127.0.0.1:%d/v2/health/live" % nport, timeout=1)
                break
            except OSError:
                time.sleep(0.05)
        results, stop = [], threading.Event()

        def client():
            while not stop.is_set():
                try:
                    body = urllib.request.urlopen(urllib.request.Request(
                        "http://127.0.0.1:%d/v1/atrous_conv2d" % nport, data=GOOD.encode()), timeout=10).read()
                    results.append(json.loads(body)["output"]["data"] == [2, 4, 6, 8])
                except Exception as e:  # noqa: BLE001 - any failure is a lost request
                    print("# lost request: %r" % e)
                    results.append(False)

        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        counts = []
        for d in daemons:
            v = parse_metrics(d.request("GET", "/metrics")[2].decode())
            counts.append(v.get('atrousd_requests_total{endpoint="atrous_conv2d",code="200"}', 0))
        R.check(all(c > 0 for c in counts), "requests spread over all three daemons: %s" % counts)
        daemons[1].proc.send_signal(signal.SIGKILL)
        time.sleep(1.5)
        stop.set()
        for t in threads:
            t.join()
        R.check(len(results) > 50 and all(results),
                "%d requests through nginx, one daemon killed mid-run, none lost" % len(results))
    finally:
        ng.send_signal(signal.SIGTERM)
        ng.wait()
        for i, d in enumerate(daemons):
            rc = d.stop()
            if i != 1:
                R.check(rc == 0, "surviving daemon %d exits 0" % i)
        shutil.rmtree(work, ignore_errors=True)


def main():
    test_metrics()
    test_notify()
    test_socket_activation()
    test_units()
    test_scaleout()
    return R.finish()


if __name__ == "__main__":
    sys.exit(main())
