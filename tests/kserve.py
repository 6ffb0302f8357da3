#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Integration test of stored models and the KServe v2 protocol against the
real daemon: metadata, health, infer in JSON and binary (built per the
protocol, as tritonclient.http sends it) checked with NumPy, id echo, errors,
statistics, reload under load, authenticated upload/delete, crash safety."""
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import SRCDIR, Daemon, Results, burst, close, enc  # noqa: E402
from numpy_ref import aspp_ref, reference  # noqa: E402

R = Results()
rng = np.random.default_rng(11)
TOKEN = "s3cret-token-for-tests-0123456789"


def demo_ref(x):
    d = os.path.join(SRCDIR, "conf", "models", "demo")
    ld = lambda n: np.load(os.path.join(d, n))  # noqa: E731
    br = [{"f": ld("b0.npy"), "rate": 1, "b": ld("b0_bias.npy"), "relu": True},
          {"f": ld("b1.npy"), "rate": 2, "relu": True},
          {"f": ld("b2.npy"), "rate": 4, "relu": True}]
    pool = {"f": ld("pool.npy"), "b": ld("pool_bias.npy"), "relu": True}
    proj = {"f": ld("proj.npy"), "b": ld("proj_bias.npy"), "relu": True}
    return aspp_ref(x, br, pool, proj)


def chain_model(scale=1.0, cin=3):
    f1 = (scale * rng.standard_normal((3, 3, cin, 4))).astype(np.float32)
    f2 = (scale * rng.standard_normal((2, 2, 4, 2))).astype(np.float32)
    body = {"input": {"name": "x", "channels": cin}, "output": {"name": "y"},
            "layers": [{"filters": enc(f1, "b64"), "rate": 2, "padding": "SAME", "activation": "relu"},
                       {"filters": enc(f2, "flat"), "rate": 1, "padding": "VALID"}]}

    def ref(x):
        return reference(reference(x, f1, 2, 2, "SAME", relu=True).astype(np.float32), f2, 1, 1, "VALID")
    return body, ref


def infer_body(x, name="input", binary_in=False, binary_out=None, request_binary_output=None,
               req_id=None, outputs=None, datatype="FP32", nested=False):
    """A v2 infer request as tritonclient.http builds it; returns (body, headers)."""
    inp = {"name": name, "shape": list(x.shape), "datatype": datatype}
    blob = b""
    if binary_in:
        blob = x.astype("<f4").tobytes()
        inp["parameters"] = {"binary_data_size": len(blob)}
    else:
        inp["data"] = x.tolist() if nested else x.ravel().tolist()
    req = {"inputs": [inp]}
    if req_id is not None:
        req["id"] = req_id
    if outputs is not None:
        req["outputs"] = outputs
    elif binary_out is not None:
        req["outputs"] = [{"name": "output", "parameters": {"binary_data": binary_out}}]
    if request_binary_output is not None:
        req["parameters"] = {"binary_data_output": request_binary_output}
    head = json.dumps(req).encode()
    headers = {}
    if blob:
        headers["Inference-Header-Content-Length"] = str(len(head))
    return head + blob, headers


def parse_infer(headers, data):
    """Split a v2 reply as tritonclient.http does; returns (json, {name: array})."""
    hl = headers.get("Inference-Header-Content-Length")
    if hl is None:
        j = json.loads(data)
        return j, {o["name"]: np.array(o["data"], dtype=np.float32).reshape(o["shape"]) for o in j["outputs"]}
    hl = int(hl)
    j = json.loads(data[:hl])
    arrays, off = {}, hl
    for o in j["outputs"]:
        n = o["parameters"]["binary_data_size"]
        arrays[o["name"]] = np.frombuffer(data[off:off + n], "<f4").reshape(o["shape"])
        off += n
    return j, arrays


def infer(d, model, body, headers, version=False):
    path = "/v2/models/%s%s/infer" % (model, "/versions/1" if version else "")
    return d.request("POST", path, body, headers=headers)


def make_models():
    root = tempfile.mkdtemp(prefix="atrousd-models.")
    shutil.copytree(os.path.join(SRCDIR, "conf", "models", "demo"), os.path.join(root, "demo"))
    os.makedirs(os.path.join(root, "broken"))
    with open(os.path.join(root, "broken", "model.json"), "w") as f:
        json.dump({"layers": [{"filters": {"npy": "missing.npy"}, "rate": 1, "padding": "SAME"}]}, f)
    os.makedirs(os.path.join(root, "escape"))
    with open(os.path.join(root, "escape", "model.json"), "w") as f:
        json.dump({"layers": [{"filters": {"npy": "../demo/b0.npy"}, "rate": 1, "padding": "SAME"}]}, f)
    body, ref = chain_model()
    os.makedirs(os.path.join(root, "chain"))
    with open(os.path.join(root, "chain", "model.json"), "w") as f:
        json.dump(body, f)
    token = os.path.join(root, ".token")
    with open(token, "w") as f:
        f.write(TOKEN + "\n")
    os.chmod(token, 0o600)
    return root, token, ref


def test_metadata(d):
    st, _, data = d.request("GET", "/v2")
    meta = json.loads(data)
    R.check(st == 200 and meta["name"] == "atrousd" and "binary_tensor_data" in meta["extensions"]
            and "statistics" in meta["extensions"] and meta["version"], "GET /v2 server metadata")
    for p in ("/v2/health/live", "/v2/health/ready", "/v2/models/demo/ready", "/v2/models/demo/versions/1/ready"):
        R.check(d.request("GET", p)[0] == 200, "GET %s -> 200" % p)
    for p in ("/v2/models/demo", "/v2/models/demo/versions/1"):
        st, _, data = d.request("GET", p)
        m = json.loads(data)
        R.check(st == 200 and m["name"] == "demo" and m["inputs"][0] == {"name": "input", "datatype": "FP32",
                                                                         "shape": [-1, -1, -1, 8]}
                and m["outputs"][0]["shape"] == [-1, -1, -1, 6], "GET %s model metadata" % p)
    R.check(d.request("GET", "/v2/models/demo/versions/2")[0] == 404, "unknown version -> 404")
    R.check(d.request("GET", "/v2/models/broken/ready")[0] == 404, "a broken model is not served")
    R.check(d.request("GET", "/v2/models/escape")[0] == 404, "a model whose npy path escapes is not served")
    log = d.log_text()
    R.check("model broken" in log and "missing.npy" in log, "the broken model is logged with its file")
    R.check("escapes the model folder" in log, "the escaping path is logged")
    R.check(d.request("GET", "/v2/models/chain/ready")[0] == 200, "the other models serve")


def test_infer(d):
    x = rng.standard_normal((2, 9, 7, 8)).astype(np.float32)
    ref = demo_ref(x)
    cases = [("JSON in, JSON out", dict()),
             ("JSON nested in", dict(nested=True)),
             ("binary in, binary out (client defaults)", dict(binary_in=True, request_binary_output=True)),
             ("binary in, JSON out", dict(binary_in=True, binary_out=False)),
             ("JSON in, binary out per output", dict(binary_out=True)),
             ("binary_data_output overridden per output", dict(binary_in=True, request_binary_output=True,
                                                              binary_out=False))]
    for what, kw in cases:
        body, headers = infer_body(x, req_id="req-%d" % len(what), **kw)
        st, hdr, data = infer(d, "demo", body, headers, version="nested" in kw)
        ok = st == 200
        if ok:
            j, arrays = parse_infer(hdr, data)
            want_binary = kw.get("binary_out", kw.get("request_binary_output", False))
            ok = (close(arrays["output"], ref) and j["id"] == "req-%d" % len(what) and j["model_name"] == "demo"
                  and ("Inference-Header-Content-Length" in hdr) == bool(want_binary)
                  and (hdr.get("Content-Type") == "application/octet-stream") == bool(want_binary))
            p = j.get("parameters", {})
            ok = ok and all(isinstance(p.get(k), int) for k in ("queue_us", "compute_us", "decode_us", "encode_us"))
        R.check(ok, "infer %s: correct, id echoed, timing in parameters" % what)
    # Binary input is used in place when its offset can be aligned; every
    # JSON header length modulo 64 lands it differently.
    ok = True
    for k in range(0, 64, 5):
        body, headers = infer_body(x, binary_in=True, binary_out=False, req_id="i" * k)
        st, hdr, data = infer(d, "demo", body, headers)
        ok = ok and st == 200 and close(parse_infer(hdr, data)[1]["output"], ref)
    R.check(ok, "binary input with JSON headers of every length modulo 64 (in place)")
    # A chunked body has no length to plan the alignment from: copied.
    body, headers = infer_body(x, binary_in=True, binary_out=False, req_id="chunked")
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 1000]), body[i:i + 1000])
                      for i in range(0, len(body), 1000)) + b"0\r\n\r\n"
    reply = d.raw(b"POST /v2/models/demo/infer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                  b"Transfer-Encoding: chunked\r\nInference-Header-Content-Length: %d\r\n\r\n"
                  % int(headers["Inference-Header-Content-Length"]) + chunks,
                  shutdown=False)  # a half-close would count as leaving
    head, _, data = reply.partition(b"\r\n\r\n")
    R.check(head.startswith(b"HTTP/1.1 200") and
            close(np.array(json.loads(data)["outputs"][0]["data"], np.float32).reshape(ref.shape), ref),
            "binary input in a chunked body (copied)")
    body, headers = infer_body(x[:1], binary_in=True)
    st, hdr, data = infer(d, "demo", body, headers)
    j, arrays = parse_infer(hdr, data) if st == 200 else ({}, {})
    R.check(st == 200 and "id" not in j and close(arrays.get("output", np.zeros(0)), ref[:1]),
            "infer without id and without outputs: JSON reply, no id")


def expect(d, what, status, model, body, headers=None, contains=None):
    st, _, data = infer(d, model, body, headers or {})
    try:
        msg = json.loads(data)["error"]
    except (ValueError, KeyError, TypeError):
        msg = None
    R.check(st == status and msg and (contains is None or contains in msg), "%s -> %d %s" % (what, st, msg))


def test_errors(d):
    x = rng.standard_normal((1, 5, 5, 8)).astype(np.float32)
    expect(d, "FP64 datatype", 400, "demo", infer_body(x, datatype="FP64")[0], contains="only FP32")
    expect(d, "unknown model", 404, "nosuch", infer_body(x)[0])
    expect(d, "wrong channel count", 400, "demo", infer_body(np.zeros((1, 5, 5, 3), np.float32))[0],
           contains="3 channels, model demo takes 8")
    expect(d, "wrong rank", 400, "demo", infer_body(np.zeros((5, 5, 8), np.float32))[0], contains="rank 4")
    expect(d, "unknown input name", 400, "demo", infer_body(x, name="image")[0], contains='"image"')
    expect(d, "unknown output name", 400, "demo", infer_body(x, outputs=[{"name": "logits"}])[0],
           contains='"logits"')
    expect(d, "error carries the request id", 400, "demo", infer_body(x, datatype="INT8", req_id="abc")[0],
           contains="[request id: abc]")
    body, headers = infer_body(x, binary_in=True)
    expect(d, "too few binary bytes", 400, "demo", body[:-8], headers, contains="only 792 follow")
    expect(d, "too many binary bytes", 400, "demo", body + b"\0" * 12, headers,
           contains="812 bytes after the JSON header, but the inputs' binary_data_size total 800")
    expect(d, "header length beyond the body", 400, "demo", body,
           {"Inference-Header-Content-Length": str(len(body) + 1)}, contains="exceeds the body length")
    head = json.loads(body[:int(headers["Inference-Header-Content-Length"])])
    head["inputs"][0]["parameters"]["binary_data_size"] = 796
    h2 = json.dumps(head).encode()
    expect(d, "binary_data_size not matching the shape", 400, "demo", h2 + body[-800:],
           {"Inference-Header-Content-Length": str(len(h2))}, contains="binary_data_size 796 != 800")
    expect(d, "both data and binary_data_size", 400, "demo",
           json.dumps({"inputs": [{"name": "input", "shape": [1, 1, 1, 8], "datatype": "FP32", "data": [0] * 8,
                                   "parameters": {"binary_data_size": 32}}]}), contains="exactly one")
    expect(d, "data count not matching the shape", 400, "demo",
           json.dumps({"inputs": [{"name": "input", "shape": [1, 2, 2, 8], "datatype": "FP32", "data": [0] * 8}]}),
           contains="needs 32 elements")
    R.check(d.request("GET", "/v2/models/%2e%2e/ready")[0] in (400, 404), "model name '..' refused")


def stats(d, model):
    st, _, data = d.request("GET", "/v2/models/%s/stats" % model)
    return json.loads(data)["model_stats"][0] if st == 200 else None


def test_stats(d, chain_ref):
    before = stats(d, "chain")
    ok_n, fail_n, batch = 5, 3, 0
    for i in range(ok_n):
        x = rng.standard_normal((i + 1, 6, 6, 3)).astype(np.float32)
        batch += i + 1
        st, hdr, data = infer(d, "chain", *infer_body(x, name="x", outputs=[{"name": "y"}], binary_in=True))
        R.check(st == 200 and close(parse_infer(hdr, data)[1]["y"], chain_ref(x)), "chain model infer %d" % i)
    for i in range(fail_n):
        st = infer(d, "chain", *infer_body(np.zeros((1, 4, 4, 2), np.float32), name="x"))[0]
        R.check(st == 400, "chain model refuses 2 channels")
    after = stats(d, "chain")
    s, b = after["inference_stats"], before["inference_stats"]
    R.check(s["success"]["count"] - b["success"]["count"] == ok_n, "stats: success count")
    R.check(s["fail"]["count"] - b["fail"]["count"] == fail_n, "stats: fail count")
    R.check(after["inference_count"] - before["inference_count"] == batch, "stats: inference_count sums batch sizes")
    R.check(after["execution_count"] - before["execution_count"] == ok_n, "stats: execution_count")
    R.check(all(s[k]["count"] - b[k]["count"] == ok_n and s[k]["ns"] > b[k]["ns"]
                for k in ("queue", "compute_input", "compute_infer", "compute_output")), "stats: stage counts and ns")
    R.check(after["last_inference"] > 1.6e12 and after["version"] == "1", "stats: last_inference in ms, version 1")
    st, _, data = d.request("GET", "/v2/models/stats")
    names = [m["name"] for m in json.loads(data)["model_stats"]]
    R.check(st == 200 and names == sorted(names) and "chain" in names and "demo" in names, "GET /v2/models/stats")


def test_reload_under_load(d):
    x = rng.standard_normal((1, 12, 12, 8)).astype(np.float32)
    ref = demo_ref(x)
    body, headers = infer_body(x, binary_in=True, request_binary_output=True)
    results, stop = [], threading.Event()

    def client():
        while not stop.is_set():
            st, hdr, data = infer(d, "demo", body, headers)
            results.append(st == 200 and close(parse_infer(hdr, data)[1]["output"], ref))

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    auth = {"Authorization": "Bearer " + TOKEN}
    reloads = []
    for i in range(6):
        st, _, data = d.request("POST", "/v1/models/reload", b"", headers=auth)
        reloads.append(st == 200 and json.loads(data)["failed"] == 2)
        d.proc.send_signal(signal.SIGHUP)
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join()
    R.check(all(reloads), "reload answers with loaded/failed counts")
    R.check(len(results) > 10 and all(results), "%d requests during reloads all correct" % len(results))


def test_admin(d, root):
    body, ref = chain_model(cin=5)
    text = json.dumps(body)
    put = lambda name, b, h: d.request("PUT", "/v1/models/" + name, b, headers=h)  # noqa: E731
    auth = {"Authorization": "Bearer " + TOKEN}
    st, hdr, _ = put("up", text, {})
    R.check(st == 401 and "Bearer" in hdr.get("WWW-Authenticate", ""), "upload without token -> 401")
    R.check(put("up", text, {"Authorization": "Bearer wrong"})[0] == 401, "upload with a wrong token -> 401")
    R.check(put("up", text, {"Authorization": "Bearer " + TOKEN + "x"})[0] == 401, "a longer token -> 401")
    R.check(put(".hidden", text, auth)[0] == 400, "upload to a name starting with '.' -> 400")
    R.check(d.request("DELETE", "/v1/models/up")[0] == 401, "delete without token -> 401")
    st, _, data = put("up", text, auth)
    R.check(st == 201 and json.loads(data)["status"] == "created", "upload with token -> 201 created")
    R.check(os.path.exists(os.path.join(root, "up", "model.json")), "the upload is stored in the model directory")
    x = rng.standard_normal((1, 7, 7, 5)).astype(np.float32)
    st, hdr, data = infer(d, "up", *infer_body(x, name="x", outputs=[{"name": "y"}]))
    R.check(st == 200 and close(parse_infer(hdr, data)[1]["y"], ref(x)), "the uploaded model serves")
    bad = dict(body)
    bad["layers"] = [{"filters": {"npy": "/etc/passwd"}, "rate": 1, "padding": "SAME"}]
    st, _, data = put("up", json.dumps(bad), auth)
    R.check(st == 400 and "inline" in json.loads(data)["error"], "an upload referring to files -> 400")
    st, _, data = put("up", '{"layers": [{"filters": [[[[1]]]], "rate": 0, "padding": "SAME"}]}', auth)
    R.check(st == 400 and "rate must be >= 1" in json.loads(data)["error"], "an invalid upload -> 400")
    st, hdr, data = infer(d, "up", *infer_body(x, name="x", outputs=[{"name": "y"}]))
    R.check(st == 200 and close(parse_infer(hdr, data)[1]["y"], ref(x)), "a refused upload keeps the old model")
    body2, ref2 = chain_model(cin=5)
    st, _, data = put("up", json.dumps(body2), auth)
    R.check(st == 200 and json.loads(data)["status"] == "replaced", "re-upload -> 200 replaced")
    st, hdr, data = infer(d, "up", *infer_body(x, name="x", outputs=[{"name": "y"}]))
    R.check(st == 200 and close(parse_infer(hdr, data)[1]["y"], ref2(x)), "the replacement serves")
    # A model whose files break on disk keeps its previous version on reload.
    with open(os.path.join(root, "up", "model.json"), "w") as f:
        f.write("{not json")
    st, _, data = d.request("POST", "/v1/models/reload", b"", headers=auth)
    st2, hdr, data2 = infer(d, "up", *infer_body(x, name="x", outputs=[{"name": "y"}]))
    R.check(st == 200 and json.loads(data)["failed"] == 3 and st2 == 200 and close(parse_infer(hdr, data2)[1]["y"], ref2(x)),
            "a model that fails to reload keeps its previous version")
    R.check(d.request("DELETE", "/v1/models/up", headers=auth)[0] == 200, "delete with token -> 200")
    R.check(infer(d, "up", *infer_body(x, name="x"))[0] == 404, "a deleted model -> 404")
    R.check(not os.path.exists(os.path.join(root, "up")), "a deleted model leaves the directory")
    R.check(d.request("DELETE", "/v1/models/up", headers=auth)[0] == 404, "deleting again -> 404")


def test_queue_full(root, token):
    d = Daemon("--models", root, "--threads", "1", "--max-queue", "1")
    try:
        body = json.dumps({"input": {"channels": 64}, "layers": [
            {"filters": enc(rng.standard_normal((3, 3, 64, 64)).astype(np.float32), "b64"), "rate": 2,
             "padding": "SAME"}]})
        os.makedirs(os.path.join(root, "heavy"), exist_ok=True)
        with open(os.path.join(root, "heavy", "model.json"), "w") as f:
            f.write(body)
        d.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 10
        while d.request("GET", "/v2/models/heavy/ready")[0] != 200 and time.time() < deadline:
            time.sleep(0.05)
        x = rng.standard_normal((1, 96, 96, 64)).astype(np.float32)
        req = infer_body(x, binary_in=True, request_binary_output=True)
        statuses, retry = burst(lambda: infer(d, "heavy", *req))
        R.check(503 in statuses and 200 in statuses and set(statuses) <= {200, 503} and all(retry),
                "infer with a full queue -> 503 with Retry-After: %s" % sorted(statuses))
    finally:
        R.check(d.stop() == 0, "daemon exits 0")
        shutil.rmtree(os.path.join(root, "heavy"), ignore_errors=True)


def test_crash_safety(token):
    """kill -9 during uploads: after a restart the model is the old or the new, whole."""
    root = tempfile.mkdtemp(prefix="atrousd-crash.")
    versions = [chain_model(cin=16) for _ in range(2)]
    big = []
    for body, ref in versions:
        body = dict(body)
        body["description"] = "x" * 2000000  # a few MB, so a kill can land mid-write
        big.append((json.dumps(body), ref))
    d = Daemon("--models", root, "--admin-token-file", token)
    auth = {"Authorization": "Bearer " + TOKEN}
    d.request("PUT", "/v1/models/m", big[0][0], headers=auth)
    d.stop()
    x = rng.standard_normal((1, 6, 6, 16)).astype(np.float32)
    refs = [ref(x) for _, ref in big]

    def restart_and_infer():
        """A fresh daemon on the same directory, and its answer for x (None if not 200)."""
        d = Daemon("--models", root, "--admin-token-file", token)
        st, hdr, data = infer(d, "m", *infer_body(x, name="x", outputs=[{"name": "y"}]))
        return d, (parse_infer(hdr, data)[1]["y"] if st == 200 else None)

    outcomes = []
    for i in range(8):
        d = Daemon("--models", root, "--admin-token-file", token)
        body = big[(i + 1) % 2][0]
        def upload():
            try:
                d.request("PUT", "/v1/models/m", body, headers=auth, timeout=10)
            except OSError:
                pass  # killed mid-request, as intended

        t = threading.Thread(target=upload)
        t.start()
        time.sleep(random.uniform(0.0, 0.12))
        d.kill()
        t.join()
        d, got = restart_and_infer()
        which = [k for k in (0, 1) if got is not None and close(got, refs[k], quiet=True)]
        outcomes.append(which[0] if which else None)
        leftovers = [n for n in os.listdir(root) if n.startswith(".")]
        d.stop()
        if not which or leftovers:
            answer = "none" if got is None else ("version %d" % which[0] if which else "neither version")
            print("# round %d: answer %s, leftovers %s" % (i, answer, leftovers))
    R.check(all(o is not None for o in outcomes), "after kill -9 mid-upload the model is always whole: %s" % outcomes)
    # kill -9 in the middle of reloads: the directory is only read, the
    # model is served whole after every restart.
    whole = []
    for i in range(4):
        d = Daemon("--models", root, "--admin-token-file", token)
        for _ in range(3):
            d.proc.send_signal(signal.SIGHUP)
            d.request("POST", "/v1/models/reload", b"", headers=auth)
        time.sleep(random.uniform(0.0, 0.05))
        d.kill()
        d, got = restart_and_infer()
        whole.append(got is not None and any(close(got, r, quiet=True) for r in refs))
        d.stop()
    R.check(all(whole), "after kill -9 during reloads the model is served whole: %s" % whole)
    shutil.rmtree(root, ignore_errors=True)


def main():
    root, token, chain_ref = make_models()
    d = Daemon("--models", root, "--admin-token-file", token, "--threads", "2")
    try:
        test_metadata(d)
        test_infer(d)
        test_errors(d)
        test_stats(d, chain_ref)
        test_reload_under_load(d)
        test_admin(d, root)
    finally:
        R.check(d.stop() == 0, "daemon exits 0 on SIGTERM")
    test_queue_full(root, token)
    test_crash_safety(token)
    shutil.rmtree(root, ignore_errors=True)
    return R.finish()


if __name__ == "__main__":
    sys.exit(main())
