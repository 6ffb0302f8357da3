#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""make bench: atrousd measured end to end beside PyTorch, in one run.

Runs with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE removed (the Makefile's
bench target unsets them for this whole process, so every side is alike).
Prints a table, writes docs/performance.png and docs/bench-results.json.

Cases: the seed's example 1; a three-layer rate-2 chain; the DeepLab OS16 and
OS8 ASPP heads; three dilated ResNet backbone layers (block4 at OS16, block3
and block4 at OS8).  Each is a stored model called through the binary KServe
path: the reply's compute_us against PyTorch's wall time for the same module,
in three rounds that alternate the two sides (median of each side's block of
runs per round).  Then: the ablation (in process: im2col without the ASPP
fold, + fold, + minimal filtering, auto), the accuracy of each algorithm
against float64, transformed weights per model; the OS16 head over gRPC; the
JSON codec on a 1M-float tensor against jansson on the same bytes;
overhead-bound small requests: HTTP/JSON and HTTP/binary with wrk, gRPC with
h2load (32 concurrent streams), beside nginx serving a static file.
"""
import argparse
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(HERE)
BUILD = os.environ.get("top_builddir", SRC)
ATROUS = os.path.join(BUILD, "src", "atrous")
ATROUSD = os.path.join(BUILD, "src", "atrousd")
sys.path.insert(0, os.path.join(SRC, "tests"))
from harness import free_port, grpc_modules  # noqa: E402

rng = np.random.default_rng(0)


def f32(*shape, scale=0.02):
    return (scale * rng.standard_normal(shape)).astype(np.float32)


def aspp_case(cin, size, rates):
    w = {"pool": f32(1, 1, cin, 256), "b0": f32(1, 1, cin, 256), "proj": f32(1, 1, 1280, 256)}
    for r in rates:
        w["r%d" % r] = f32(3, 3, cin, 256)
    bias = {k: f32(256, scale=0.1) for k in list(w)}
    layer = {"type": "aspp",
             "image_pooling": {"filters": "pool", "bias": "pool", "activation": "relu"},
             "branches": [{"filters": "b0", "rate": 1, "bias": "b0", "activation": "relu"}] +
                         [{"filters": "r%d" % r, "rate": r, "bias": "r%d" % r, "activation": "relu"}
                          for r in rates],
             "projection": {"filters": "proj", "bias": "proj", "activation": "relu"}}
    return {"value": (1, size, size, cin), "layers": [layer], "weights": w, "bias": bias}


def block_case(cin, size, rate):
    return {"value": (1, size, size, cin), "weights": {"w": f32(3, 3, cin, cin)},
            "bias": {"w": f32(cin, scale=0.1)},
            "layers": [{"filters": "w", "rate": rate, "padding": "SAME", "bias": "w", "activation": "relu"}]}


CASES = {
    "seed1": {"value": (1, 28, 28, 3), "weights": {"f": f32(5, 5, 3, 32, scale=0.2)}, "bias": {},
              "layers": [{"filters": "f", "rate": 2, "padding": "SAME"}]},
    "chain": {"value": (1, 28, 28, 3),
              "weights": {"f1": f32(3, 3, 3, 32, scale=0.2), "f2": f32(3, 3, 32, 64, scale=0.1),
                          "f3": f32(3, 3, 64, 128, scale=0.1)}, "bias": {},
              "layers": [{"filters": n, "rate": 2, "padding": "SAME"} for n in ("f1", "f2", "f3")]},
    "os16": aspp_case(2048, 33, (6, 12, 18)),
    "os8": aspp_case(256, 65, (12, 24, 36)),
    "block4os16": block_case(512, 33, 2),
    "block3os8": block_case(256, 65, 2),
    "block4os8": block_case(512, 65, 4),
}
SMALL = ("seed1", "chain")
LABELS = {"seed1": "seed example 1", "chain": "3-layer chain", "os16": "DeepLab OS16 head",
          "os8": "DeepLab OS8 head", "block4os16": "block4 OS16 r2", "block3os8": "block3 OS8 r2",
          "block4os8": "block4 OS8 r4"}
# The targets: atrousd compute / PyTorch, at most.
TARGETS = {"seed1": 1.0, "chain": 0.6, "os16": 0.45, "os8": 0.45, "block4os16": 0.5,
           "block3os8": 0.5, "block4os8": 0.5}
ALGORITHMS = ("im2col", "fast")  # stored twice more, forced, for the accuracy table
# Ablation steps, each adding one to the step before (atrous bench flags).
ABLATION = (("im2col", ["--algorithm", "im2col", "--unfolded"]),
            ("+ pooling fold", ["--algorithm", "im2col"]),
            ("+ minimal filtering", ["--algorithm", "fast"]),
            ("+ auto (direct, per-layer choice)", []))


def write_model(root, name, case, algorithm=None):
    d = os.path.join(root, name)
    os.makedirs(d)

    def ref(kind, key):
        np.save(os.path.join(d, "%s_%s.npy" % (kind, key)), case[kind][key])
        return {"npy": "%s_%s.npy" % (kind, key)}

    def fix(obj, conv=True):
        out = dict(obj)
        out["filters"] = ref("weights", obj["filters"])
        if "bias" in obj:
            out["bias"] = ref("bias", obj["bias"])
        if algorithm and conv:
            out["algorithm"] = algorithm
        return out

    layers = []
    for layer in case["layers"]:
        if layer.get("type") == "aspp":
            layer = dict(layer, image_pooling=fix(layer["image_pooling"], False),
                         projection=fix(layer["projection"], False),
                         branches=[fix(b) for b in layer["branches"]])
            layers.append(layer)
        else:
            layers.append(fix(layer))
    with open(os.path.join(d, "model.json"), "w") as f:
        json.dump({"layers": layers}, f)


def torch_runner(case, threads, x=None, double=False):
    """PyTorch's run of a case (in float64 with double: the reference)."""
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(threads)
    dt = np.float64 if double else np.float32
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a.astype(dt)))  # noqa: E731
    # Weights converted to OIHW once, outside the timed runs.
    weights = {k: t(w.transpose(3, 2, 0, 1)) for k, w in case["weights"].items()}
    biases = {k: t(b) for k, b in case["bias"].items()}
    oihw = lambda k: weights[k]  # noqa: E731
    bias = lambda o: biases[o["bias"]] if "bias" in o else None  # noqa: E731
    if x is None:
        x = rng.standard_normal(case["value"]).astype(np.float32)
    x = t(x.transpose(0, 3, 1, 2))

    def conv(inp, o, rate, padding):
        w = oihw(o["filters"])
        kh = w.shape[2]
        pad = 0
        if padding == "SAME":
            total = (kh - 1) * rate
            if total % 2:
                inp = F.pad(inp, (total // 2, total - total // 2, total // 2, total - total // 2))
            else:
                pad = total // 2  # symmetric: let the convolution pad
        y = F.conv2d(inp, w, bias(o), padding=pad, dilation=rate)
        return F.relu(y) if o.get("activation") == "relu" else y

    def run():
        with torch.no_grad():
            cur = x
            for layer in case["layers"]:
                if layer.get("type") != "aspp":
                    cur = conv(cur, layer, layer["rate"], layer["padding"])
                    continue
                h, w_ = cur.shape[2], cur.shape[3]
                parts = [conv(cur.mean((2, 3), keepdim=True), layer["image_pooling"], 1, "VALID")
                         .expand(-1, -1, h, w_)]
                parts += [conv(cur, b, b["rate"], "SAME") for b in layer["branches"]]
                cur = conv(torch.cat(parts, 1), layer["projection"], 1, "VALID")
            return cur
    return run


def timeit(fn, repeats, warmup=2):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times) * 1e3, statistics.median(times) * 1e3


def vm_hwm_mib(pid):
    """The process's peak resident set so far."""
    with open("/proc/%d/status" % pid) as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmHWM:")) / 1024.0


def start_daemon(work, models, threads, grpc_port):
    port_file = os.path.join(work, "port")
    log = open(os.path.join(work, "atrousd.log"), "w")
    p = subprocess.Popen([ATROUSD, "--listen", "127.0.0.1:0", "--port-file", port_file,
                          "--threads", str(threads), "--models", models, "--max-body", "512M",
                          "--max-inflight-bytes", "1G", "--max-elements", "64M",
                          "--max-output-elements", "64M", "--log-level", "warn",
                          "--grpc-listen", "127.0.0.1:%d" % grpc_port],
                         stdout=log, stderr=subprocess.STDOUT)
    for _ in range(500):
        if os.path.exists(port_file):
            return p, int(open(port_file).read())
        time.sleep(0.02)
    raise RuntimeError("atrousd did not start")


def kserve_output(port, name, x):
    """One call's output tensor (NHWC float32) and the algorithms it ran."""
    head = json.dumps({"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32",
                                   "parameters": {"binary_data_size": x.nbytes}}],
                       "parameters": {"binary_data_output": True}}).encode()
    conn = http.client.HTTPConnection("127.0.0.1", port)
    conn.request("POST", "/v2/models/%s/infer" % name, head + x.tobytes(),
                 {"Inference-Header-Content-Length": str(len(head))})
    r = conn.getresponse()
    data = r.read()
    conn.close()
    if r.status != 200:
        raise RuntimeError("%s: %d %s" % (name, r.status, data[:200]))
    hl = int(r.getheader("Inference-Header-Content-Length"))
    meta = json.loads(data[:hl])
    out = meta["outputs"][0]
    return (np.frombuffer(data[hl:], dtype=np.float32).reshape(out["shape"]),
            meta["parameters"].get("algorithms", ""))


def rel_rms(got, ref):
    return float(np.sqrt(((got.astype(np.float64) - ref) ** 2).sum() / (ref ** 2).sum()))


def metric_values(port, name):
    conn = http.client.HTTPConnection("127.0.0.1", port)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    out = {}
    for line in text.splitlines():
        if line.startswith(name + "{"):
            label, value = line[len(name) + 1:].split("} ")
            out[label.split('"')[1]] = float(value)
    return out


def kserve_binary(port, name, x, repeats):
    head = json.dumps({"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32",
                                   "parameters": {"binary_data_size": x.nbytes}}],
                       "parameters": {"binary_data_output": True}}).encode()
    body = head + x.tobytes()
    conn = http.client.HTTPConnection("127.0.0.1", port)
    client, compute = [], []
    for i in range(repeats + 2):
        t0 = time.perf_counter()
        conn.request("POST", "/v2/models/%s/infer" % name, body,
                     {"Inference-Header-Content-Length": str(len(head))})
        r = conn.getresponse()
        data = r.read()
        el = time.perf_counter() - t0
        if r.status != 200:
            raise RuntimeError("%s: %d %s" % (name, r.status, data[:200]))
        hl = int(r.getheader("Inference-Header-Content-Length"))
        params = json.loads(data[:hl])["parameters"]
        if i >= 2:
            client.append(el * 1e3)
            compute.append(params["compute_us"] / 1e3)
    conn.close()
    return statistics.median(client), statistics.median(compute), min(client)


def codec_case(port, work, repeats):
    x = rng.standard_normal((1, 1000, 1000, 1)).astype(np.float32)
    body = json.dumps({"value": {"shape": list(x.shape), "data": x.ravel().tolist()},
                       "filters": [[[[1.0]]]], "rate": 1, "padding": "SAME"})
    req_path = os.path.join(work, "codec_request.json")
    with open(req_path, "w") as f:
        f.write(body)
    dec, enc, reply = [], [], None
    for _ in range(repeats):
        conn = http.client.HTTPConnection("127.0.0.1", port)
        conn.request("POST", "/v1/atrous_conv2d", body)
        reply = conn.getresponse().read()
        conn.close()
        timing = json.loads(reply)["timing"]
        dec.append(timing["decode_us"] / 1e3)
        enc.append(timing["encode_us"] / 1e3)
    rep_path = os.path.join(work, "codec_reply.json")
    with open(rep_path, "wb") as f:
        f.write(reply)
    jin = json.loads(subprocess.check_output([ATROUS, "bench", "--jansson", req_path, "--repeats", "3"]))
    jout = json.loads(subprocess.check_output([ATROUS, "bench", "--jansson", rep_path, "--repeats", "3"]))
    return {"floats": x.size, "request_bytes": len(body), "reply_bytes": len(reply),
            "decode_ms": statistics.median(dec), "encode_ms": statistics.median(enc),
            "jansson_loadb_ms": jin["json_loadb_ms"], "jansson_dumps_ms": jout["json_dumps_ms"]}


TINY = {"value": (1, 8, 8, 4), "weights": {"f": f32(3, 3, 4, 4, scale=0.2)}, "bias": {},
        "layers": [{"filters": "f", "rate": 1, "padding": "SAME"}]}


def grpc_stubs(work):
    """grpcio modules from the project's .proto, or None without grpc_tools."""
    try:
        import grpc  # noqa: F401
        grpc_modules(work)
        import kserve_grpc_pb2
        import kserve_grpc_pb2_grpc
        return kserve_grpc_pb2, kserve_grpc_pb2_grpc
    except (ImportError, subprocess.CalledProcessError):
        return None


def infer_message(pb, name, x):
    t = pb.ModelInferRequest.InferInputTensor(name="input", datatype="FP32", shape=list(x.shape))
    return pb.ModelInferRequest(model_name=name, inputs=[t], raw_input_contents=[x.tobytes()])


def grpc_infer(gport, pbs, name, x, repeats):
    """Client latency and server compute of one model over gRPC (grpcio)."""
    import grpc
    pb, pbg = pbs
    ch = grpc.insecure_channel("127.0.0.1:%d" % gport, options=[("grpc.max_send_message_length", 1 << 30),
                                                                ("grpc.max_receive_message_length", 1 << 30)])
    stub = pbg.GRPCInferenceServiceStub(ch)
    req = infer_message(pb, name, x)
    client, compute = [], []
    for i in range(repeats + 2):
        t0 = time.perf_counter()
        r = stub.ModelInfer(req)
        if i >= 2:
            client.append((time.perf_counter() - t0) * 1e3)
            compute.append(r.parameters["compute_us"].int64_param / 1e3)
    ch.close()
    return statistics.median(client), statistics.median(compute), min(client)


def wrk_case(port, work, seconds):
    if shutil.which("wrk") is None or shutil.which("nginx") is None:
        return None
    body = json.dumps({"value": rng.standard_normal((1, 8, 8, 4)).round(4).tolist(),
                       "filters": rng.standard_normal((3, 3, 4, 4)).round(4).tolist(),
                       "rate": 1, "padding": "SAME", "output_encoding": "nested"})
    lua = os.path.join(work, "post.lua")
    with open(lua, "w") as f:
        f.write('wrk.method = "POST"\nwrk.body = %s\nwrk.headers["Content-Type"] = "application/json"\n'
                % json.dumps(body))
    conn = http.client.HTTPConnection("127.0.0.1", port)
    conn.request("POST", "/v1/atrous_conv2d", body)
    reply = conn.getresponse().read()
    conn.close()
    static = os.path.join(work, "www")
    os.makedirs(static)
    os.chmod(work, 0o755)  # nginx's workers run unprivileged
    with open(os.path.join(static, "reply.json"), "wb") as f:
        f.write(reply)
    nport = free_port()
    conf = os.path.join(work, "nginx.conf")
    with open(conf, "w") as f:
        f.write("worker_processes 2;\npid %s/nginx.pid;\nerror_log %s/nginx.err;\nevents {}\n"
                "http { access_log off; server { listen 127.0.0.1:%d; root %s; } }\n"
                % (work, work, nport, static))
    ng = subprocess.Popen(["nginx", "-c", conf, "-p", work, "-g", "daemon off;"])
    time.sleep(0.3)

    def wrk(url, script=None):
        cmd = ["wrk", "-t2", "-c32", "-d%ds" % seconds, url]
        if script:
            cmd += ["-s", script]
        out = subprocess.check_output(cmd).decode()
        errors = [l for l in out.splitlines() if "Non-2xx" in l or "Socket errors" in l]
        rps = float([l for l in out.splitlines() if l.startswith("Requests/sec")][0].split()[1])
        return rps, errors

    # The same tensors to the stored model "tiny", binary both ways.
    x = rng.standard_normal((1, 8, 8, 4)).astype(np.float32)
    head = json.dumps({"inputs": [{"name": "input", "shape": [1, 8, 8, 4], "datatype": "FP32",
                                   "parameters": {"binary_data_size": x.nbytes}}],
                       "parameters": {"binary_data_output": True}})
    blua = os.path.join(work, "binary.lua")
    with open(blua, "w") as f:
        f.write('wrk.method = "POST"\nwrk.body = %s .. "%s"\nwrk.headers["Inference-Header-Content-Length"] = "%d"\n'
                % (json.dumps(head), "".join("\\%d" % b for b in x.tobytes()), len(head)))
    try:
        daemon_rps, derr = wrk("http://127.0.0.1:%d/v1/atrous_conv2d" % port, lua)
        binary_rps, berr = wrk("http://127.0.0.1:%d/v2/models/tiny/infer" % port, blua)
        nginx_rps, nerr = wrk("http://127.0.0.1:%d/reply.json" % nport)
    finally:
        ng.send_signal(signal.SIGTERM)
        ng.wait()
    if derr or nerr:
        print("warning: wrk saw errors: atrousd %s, nginx %s" % (derr, nerr))
    return {"daemon_rps": daemon_rps, "binary_rps": binary_rps, "nginx_rps": nginx_rps,
            "daemon_errors": derr + berr, "nginx_errors": nerr, "request_bytes": len(body),
            "reply_bytes": len(reply)}


def h2load_case(gport, work, pbs, seconds):
    """gRPC ModelInfer on "tiny" with h2load: 32 concurrent streams on one
    connection; the daemon's answers are checked to be OK first."""
    if shutil.which("h2load") is None or pbs is None:
        return None
    import grpc
    pb, pbg = pbs
    x = rng.standard_normal((1, 8, 8, 4)).astype(np.float32)
    msg = infer_message(pb, "tiny", x).SerializeToString()
    stub = pbg.GRPCInferenceServiceStub(grpc.insecure_channel("127.0.0.1:%d" % gport))
    stub.ModelInfer(infer_message(pb, "tiny", x))  # raises unless OK
    body = os.path.join(work, "grpc.bin")
    with open(body, "wb") as f:
        f.write(b"\0" + len(msg).to_bytes(4, "big") + msg)
    out = subprocess.check_output(["h2load", "-D", str(seconds), "-c", "1", "-m", "32", "-t", "1", "-d", body,
                                   "-H", "content-type: application/grpc", "-H", "te: trailers",
                                   "http://127.0.0.1:%d/inference.GRPCInferenceService/ModelInfer" % gport]).decode()
    rps = float([l for l in out.splitlines() if l.startswith("finished in")][0].split(",")[1].split()[0])
    done = [l for l in out.splitlines() if l.startswith("requests:")][0]
    return {"grpc_rps": rps, "requests": done.strip()}


def plot(results, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(python3-matplotlib not installed: no plot)")
        return
    names = [n for n in CASES if n in results["cases"]]
    cases = results["cases"]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.6), gridspec_kw={"width_ratios": [2.2, 1]})
    width = 0.27
    xs = np.arange(len(names))
    series = [("PyTorch %s" % results["torch_version"], "torch_ms", "#999999"),
              ("atrousd compute (KServe binary, compute_us)", "server_compute_ms", "#1f77b4"),
              ("atrousd over HTTP (binary KServe)", "http_ms", "#ff7f0e")]
    top = 2.0  # taller bars (HTTP on sub-millisecond cases) are cut and labelled
    for k, (label, key, color) in enumerate(series):
        vals = [cases[n].get(key) or 0 for n in names]
        rel = [v / max(cases[n]["torch_ms"] or 1, 1e-9) for v, n in zip(vals, names)]
        axes[0].bar(xs + (k - 1) * width, [min(r, top) for r in rel], width, label=label, color=color)
        for x, r in zip(xs + (k - 1) * width, rel):
            if r > top:
                axes[0].text(x, top * 0.97, "%.1f" % r, ha="center", va="top", fontsize=7, rotation=90)
    axes[0].set_ylim(0, top)
    axes[0].axhline(1.0, color="black", linewidth=0.8)
    axes[0].set_xticks(xs)
    axes[0].set_xticklabels([LABELS[n] for n in names], rotation=20, fontsize=8)
    axes[0].set_ylabel("time relative to PyTorch (lower is better)")
    axes[0].set_title("%d threads each, median of %d runs" % (results["threads"], results["repeats"]))
    axes[0].legend(fontsize=8)
    c = results.get("codec")
    if c:
        mf = lambda ms: c["floats"] / ms / 1e3  # noqa: E731
        axes[1].bar([0, 1, 2.5, 3.5], [mf(c["jansson_loadb_ms"]), mf(c["decode_ms"]), mf(c["jansson_dumps_ms"]),
                                      mf(c["encode_ms"])], color=["#999999", "#1f77b4", "#999999", "#1f77b4"])
        axes[1].set_xticks([0, 1, 2.5, 3.5])
        axes[1].set_xticklabels(["jansson\nloadb", "atrousd\ndecode", "jansson\ndumps", "atrousd\nencode"])
        axes[1].set_ylabel("million floats per second")
        axes[1].set_title("JSON codec, 1M-float tensor")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print("plot written to %s" % path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds of daemon and PyTorch")
    ap.add_argument("--wrk-seconds", type=int, default=5)
    ap.add_argument("--plot", default=os.path.join(SRC, "docs", "performance.png"))
    ap.add_argument("--json", default=os.path.join(SRC, "docs", "bench-results.json"))
    args = ap.parse_args()
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        if var in os.environ:
            sys.exit("bench: run with %s unset (make bench does this)" % var)
    try:
        import torch
        torch_version = torch.__version__
    except ImportError:
        torch = None
        torch_version = None
        print("PyTorch not installed (python3-torch): its column is skipped")
    work = tempfile.mkdtemp(prefix="atrousd-bench.")
    models = os.path.join(work, "models")
    os.makedirs(models)
    for name, case in CASES.items():
        write_model(models, name, case)
        for alg in ALGORITHMS:
            write_model(models, "%s_%s" % (name, alg), case, alg)
    write_model(models, "tiny", TINY)
    gport = free_port()
    daemon, port = start_daemon(work, models, args.threads, gport)
    pbs = grpc_stubs(work)
    results = {"threads": args.threads, "repeats": args.repeats, "rounds": args.rounds,
               "torch_version": torch_version,
               "cpu": open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].strip(": \t"),
               "cases": {}, "ablation": {}}

    def inproc_bench(extra):
        out = {}
        for line in subprocess.check_output([ATROUS, "bench", "--json", "--threads", str(args.threads),
                                             "--repeats", str(args.repeats)] + extra).decode().splitlines():
            rec = json.loads(line)
            out[rec["case"]] = rec
        # Sub-millisecond cases: twenty times the runs, or a median of ten
        # is mostly scheduler noise.
        for name in SMALL:
            line = subprocess.check_output([ATROUS, "bench", "--json", "--threads", str(args.threads),
                                            "--case", name, "--repeats", str(20 * args.repeats)] + extra)
            out[name] = json.loads(line.decode().splitlines()[-1])
        return out

    try:
        # The ablation, in process: each step on top of the one before.
        for step, extra in ABLATION:
            results["ablation"][step] = {k: v.get("median_ms") for k, v in inproc_bench(extra).items()
                                         if k != "sgemm"}
        inproc = inproc_bench([])
        results["sgemm_gflops"] = inproc["sgemm"]["gflops"]
        for name, case in CASES.items():
            reps = 20 * args.repeats if name in SMALL else args.repeats
            x = rng.standard_normal(case["value"]).astype(np.float32)
            hwm0 = vm_hwm_mib(daemon.pid)
            # The first call also makes the layer's transformed weights
            # (model memory, counted by its gauge), so it comes first.
            out, algorithms = kserve_output(port, name, x)
            hwm1 = vm_hwm_mib(daemon.pid)
            row = {"atrous_ms": inproc[name]["median_ms"], "atrous_best_ms": inproc[name]["best_ms"],
                   "useful_gflop": inproc[name]["useful_gflop"], "nominal_gflop": inproc[name]["nominal_gflop"],
                   "algorithms": algorithms, "rounds": [], "target": TARGETS[name], "torch_ms": None}
            runner = torch_runner(case, args.threads, x) if torch is not None else None
            for _ in range(args.rounds):
                http_ms, server_ms, http_best = kserve_binary(port, name, x, reps)
                rnd = {"http_ms": http_ms, "server_compute_ms": server_ms, "http_best_ms": http_best}
                if runner is not None:
                    rnd["torch_best_ms"], rnd["torch_ms"] = timeit(runner, reps)
                    rnd["ratio"] = server_ms / rnd["torch_ms"]
                row["rounds"].append(rnd)
            med = lambda k: statistics.median(r[k] for r in row["rounds"])  # noqa: E731
            row.update(http_ms=med("http_ms"), server_compute_ms=med("server_compute_ms"))
            if runner is not None:
                row.update(torch_ms=med("torch_ms"), ratio=med("ratio"))
            if name == "os16":  # the largest request, after only smaller ones
                n, h, w = case["value"][:3]
                tensors = (x.nbytes + 4 * n * h * w * (1024 + 256)) / 2.0 ** 20  # input, concat, output
                results["memory"] = {"case": name, "peak_rss_before_mib": hwm1,
                                     "peak_rss_after_mib": vm_hwm_mib(daemon.pid),
                                     "first_call_mib": hwm1 - hwm0,
                                     "bound_mib": tensors + 64, "tensors_mib": tensors}
            if torch is not None:
                ref = torch_runner(case, args.threads, x, double=True)().numpy().transpose(0, 2, 3, 1)
                row["rel_rms"] = {"auto": rel_rms(out, ref)}
                for alg in ALGORITHMS:
                    row["rel_rms"][alg] = rel_rms(kserve_output(port, "%s_%s" % (name, alg), x)[0], ref)
            results["cases"][name] = row
        results["fast_weights_bytes"] = metric_values(port, "atrousd_model_fast_weights_bytes")
        if pbs is not None:
            x = rng.standard_normal(CASES["os16"]["value"]).astype(np.float32)
            client, compute, best = grpc_infer(gport, pbs, "os16", x, args.repeats)
            results["grpc_os16"] = {"client_ms": client, "server_compute_ms": compute, "best_ms": best}
        results["codec"] = codec_case(port, work, max(3, args.repeats // 2))
        results["wrk"] = wrk_case(port, work, args.wrk_seconds)
        results["h2load"] = h2load_case(gport, work, pbs, args.wrk_seconds)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait()

    print("\natrousd benchmark, %d threads each side, %d alternating rounds, median of %d runs a round "
          "(%d for the first two cases), CPU %s" % (args.threads, args.rounds, args.repeats, 20 * args.repeats,
                                                  results["cpu"]))
    print("OpenBLAS sgemm ceiling (independent 1024^3, one per worker): %.0f GFLOP/s" % results["sgemm_gflops"])
    print("\nDaemon compute (binary KServe, compute_us) against PyTorch %s, per round:" % torch_version)
    print("%-18s %9s %9s %17s %7s %6s %9s %9s  %s" % ("case", "PyTorch", "atrousd", "ratio per round", "target",
                                                     "met", "HTTP ms", "GFLOP/s", "algorithms"))
    for name, r in results["cases"].items():
        ratios = [x.get("ratio") for x in r["rounds"]]
        shown = " ".join("%.2f" % v for v in ratios if v is not None) or "-"
        met = "-" if r.get("ratio") is None else ("yes" if max(ratios) <= r["target"] else
                                                  "median" if r["ratio"] <= r["target"] else "no")
        print("%-18s %9s %9.2f %17s %7.2f %6s %9.2f %9.1f  %s" % (
            LABELS[name], "%.2f" % r["torch_ms"] if r["torch_ms"] else "-", r["server_compute_ms"], shown,
            r["target"], met, r["http_ms"], r["useful_gflop"] / r["server_compute_ms"] * 1e3, r["algorithms"]))
    print("\nAblation, in process (median ms; each step adds to the one above):")
    steps = list(results["ablation"])
    print("%-18s" % "case" + "".join("%14s" % st[:13] for st in steps))
    for name in CASES:
        print("%-18s" % LABELS[name] + "".join("%14.2f" % results["ablation"][st][name] for st in steps))
    if torch is not None:
        print("\nAccuracy: relative RMS error against float64 (PyTorch in double), per algorithm:")
        print("%-18s %11s %11s %11s" % ("case", "im2col", "fast", "auto"))
        for name, r in results["cases"].items():
            e = r["rel_rms"]
            print("%-18s %11.2e %11.2e %11.2e" % (LABELS[name], e["im2col"], e["fast"], e["auto"]))
    fw = results.get("fast_weights_bytes", {})
    print("\nTransformed weights per model (atrousd_model_fast_weights_bytes, auto models): " +
          ", ".join("%s %.1f MiB" % (n, fw[n] / 2.0 ** 20) for n in CASES if fw.get(n)))
    c = results["codec"]
    print("\nJSON codec on %d floats (%.1f MB request, %.1f MB reply):" % (c["floats"], c["request_bytes"] / 1e6,
                                                                       c["reply_bytes"] / 1e6))
    print("  decode %.1f ms = %.1f Mfloat/s; jansson json_loadb %.1f ms: %.1fx" % (
        c["decode_ms"], c["floats"] / c["decode_ms"] / 1e3, c["jansson_loadb_ms"], c["jansson_loadb_ms"] / c["decode_ms"]))
    print("  encode %.1f ms = %.1f Mfloat/s; jansson json_dumps %.1f ms: %.1fx" % (
        c["encode_ms"], c["floats"] / c["encode_ms"] / 1e3, c["jansson_dumps_ms"], c["jansson_dumps_ms"] / c["encode_ms"]))
    m = results.get("memory")
    if m:
        print("\nPeak RSS: OS16 requests raised the daemon's peak from %.0f to %.0f MiB (+%.0f MiB); "
              "bound: their tensors (%.0f MiB) + 64 MiB = %.0f MiB.  The first call, which also made the "
              "model's transformed weights, added %.0f MiB." % (
                  m["peak_rss_before_mib"], m["peak_rss_after_mib"],
                  m["peak_rss_after_mib"] - m["peak_rss_before_mib"], m["tensors_mib"], m["bound_mib"],
                  m["first_call_mib"]))
    g = results.get("grpc_os16")
    if g:
        h = results["cases"]["os16"]
        print("\nOS16 head over gRPC (grpcio, raw_input_contents): client %.1f ms, server compute %.1f ms "
              "(HTTP binary: client %.1f ms, compute %.1f ms)" % (
                  g["client_ms"], g["server_compute_ms"], h["http_ms"], h["server_compute_ms"]))
    w = results["wrk"]
    if w:
        print("\nOverhead-bound: [1,8,8,4] x [3,3,4,4], keep-alive, 32 concurrent requests:")
        print("  HTTP/JSON (native, wrk -t2 -c32)      %7.0f req/s" % w["daemon_rps"])
        print("  HTTP/binary (KServe, wrk -t2 -c32)    %7.0f req/s" % w["binary_rps"])
        hl = results.get("h2load")
        if hl:
            print("  gRPC (h2load, 1 connection, 32 streams) %5.0f req/s (%s)" % (hl["grpc_rps"], hl["requests"]))
        print("  nginx static %d-byte file             %7.0f req/s%s" % (
            w["reply_bytes"], w["nginx_rps"], "; errors: %s" % w["daemon_errors"] if w["daemon_errors"] else ""))
    else:
        print("\n(wrk or nginx not installed: overhead-bound comparison skipped)")
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(results, f, indent=1)
    plot(results, args.plot)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
