#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Integration test of the native HTTP API against the real daemon: every
endpoint in every encoding checked with NumPy, bad input, concurrency, queue
overflow and drain on SIGTERM."""
import base64
import json
import os
import re
import signal
import sys
import threading
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Daemon, Results, burst, close, dec, enc  # noqa: E402
from numpy_ref import aspp_ref, reference  # noqa: E402

R = Results()
rng = np.random.default_rng(7)


def f32(*shape, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(np.float32)


def test_conv(d):
    x, f, b = f32(2, 9, 10, 3), f32(3, 2, 3, 4), f32(4)
    for rate, pad in ((2, "SAME"), (3, "VALID"), ([1, 2], "SAME"), (12, "SAME")):
        rh, rw = (rate, rate) if isinstance(rate, int) else rate
        for inenc in ("nested", "flat", "b64"):
            for outenc in ("flat", "nested", "b64"):
                body = {"value": enc(x, inenc), "filters": enc(f, inenc), "rate": rate,
                        "padding": pad, "bias": enc(b, inenc), "activation": "relu",
                        "output_encoding": outenc}
                st, hdr, rep = d.post_json("/v1/atrous_conv2d", body)
                ok = st == 200 and close(dec(rep["output"]), reference(x, f, rh, rw, pad, b, True))
                R.check(ok, "atrous_conv2d rate %s %s in=%s out=%s" % (rate, pad, inenc, outenc))
    st, hdr, rep = d.post_json("/v1/atrous_conv2d", {"value": enc(x, "b64"), "filters": enc(f, "flat"),
                                                     "rate": 2, "padding": "SAME"})
    timing = rep.get("timing", {}) if rep else {}
    keys = ("decode_us", "queue_us", "compute_us", "encode_us", "total_us", "flops", "gflops")
    R.check(st == 200 and all(k in timing for k in keys), "reply carries every timing field")
    R.check(all(isinstance(timing.get(k), (int, float)) and timing[k] >= 0 for k in keys),
            "timing fields are non-negative numbers")
    R.check(timing.get("total_us", 0) >= timing.get("compute_us", 1), "total_us covers compute_us")
    st_hdr = hdr.get("Server-Timing", "")
    durs = dict(re.findall(r"(\w+);dur=(\d+\.\d{3})(?:,|$)", st_hdr))
    R.check(sorted(durs) == ["compute", "decode", "encode", "queue"] and
            abs(float(durs["compute"]) * 1000 - timing.get("compute_us", -9)) <= 1 and
            abs(float(durs["decode"]) * 1000 - timing.get("decode_us", -9)) <= 1,
            "Server-Timing header in ms with three decimals, agreeing with timing: " + st_hdr)
    # The seed's example 1.
    x1, f1 = f32(1, 28, 28, 3), f32(5, 5, 3, 32)
    st, _, rep = d.post_json("/v1/atrous_conv2d", {"value": enc(x1, "nested"), "filters": enc(f1, "nested"),
                                                   "rate": 2, "padding": "SAME"})
    R.check(st == 200 and close(dec(rep["output"]), reference(x1, f1, 2, 2, "SAME")),
            "seed example 1: [1,28,28,3] * [5,5,3,32] rate 2 SAME -> [1,28,28,32]")
    # Empty VALID output and empty batch.
    st, _, rep = d.post_json("/v1/atrous_conv2d", {"value": enc(f32(1, 8, 9, 2), "flat"),
                                                   "filters": enc(f32(3, 3, 2, 4), "flat"),
                                                   "rate": 4, "padding": "VALID"})
    R.check(st == 200 and rep["output"]["shape"] == [1, 0, 1, 4] and rep["output"]["data"] == [],
            "VALID output of height zero is an empty tensor")


def test_aspp(d):
    x = f32(2, 13, 11, 6)
    br = [{"f": f32(1, 1, 6, 4), "rate": 1, "b": f32(4), "relu": True},
          {"f": f32(3, 3, 6, 3), "rate": 2, "relu": True},
          {"f": f32(3, 3, 6, 5), "rate": 6, "b": f32(5)},
          {"f": f32(3, 3, 6, 2), "rate": 18}]
    pool = {"f": f32(1, 1, 6, 3), "b": f32(3), "relu": True}
    proj = {"f": f32(1, 1, 17, 7), "b": f32(7), "relu": True}

    def branch_json(b, e):
        o = {"filters": enc(b["f"], e), "rate": b["rate"]}
        if "b" in b:
            o["bias"] = enc(b["b"], e)
        if b.get("relu"):
            o["activation"] = "relu"
        return o

    def sub_json(p, e):
        o = {"filters": enc(p["f"], e), "bias": enc(p["b"], e)}
        if p.get("relu"):
            o["activation"] = "relu"
        return o

    for e in ("nested", "flat", "b64"):
        body = {"value": enc(x, e), "branches": [branch_json(b, e) for b in br],
                "image_pooling": sub_json(pool, e), "projection": sub_json(proj, e),
                "output_encoding": "b64"}
        st, _, rep = d.post_json("/v1/aspp", body)
        R.check(st == 200 and close(dec(rep["output"]), aspp_ref(x, br, pool, proj)),
                "aspp with image pooling and projection, %s tensors" % e)
    body = {"value": enc(x, "flat"), "branches": [branch_json(b, "flat") for b in br],
            "image_pooling": sub_json(pool, "flat")}
    st, _, rep = d.post_json("/v1/aspp", body)
    got = dec(rep["output"]) if st == 200 else None
    R.check(got is not None and got.shape == (2, 13, 11, 17) and close(got, aspp_ref(x, br, pool)),
            "aspp without projection: pooling channels first, then branches in order")


def test_sequential(d):
    # The seed's example 2: three rate-2 SAME layers 3 -> 32 -> 64 -> 128.
    x = f32(1, 28, 28, 3)
    fs = [f32(3, 3, 3, 32, scale=0.3), f32(3, 3, 32, 64, scale=0.1), f32(3, 3, 64, 128, scale=0.1)]
    layers = [{"type": "atrous_conv2d", "filters": enc(f, "b64"), "rate": 2, "padding": "SAME"} for f in fs]
    st, _, rep = d.post_json("/v1/sequential", {"value": enc(x, "b64"), "layers": layers, "output_encoding": "b64"})
    ref = x
    for f in fs:
        ref = reference(ref.astype(np.float32), f, 2, 2, "SAME")
    R.check(st == 200 and close(dec(rep["output"]), ref), "seed example 2: three rate-2 layers -> [1,28,28,128]")
    layers = [{"filters": enc(f32(3, 3, 3, 4), "flat"), "rate": 2, "padding": "SAME", "activation": "relu"},
              {"type": "aspp", "branches": [{"filters": enc(f32(1, 1, 4, 2), "flat"), "rate": 1},
                                            {"filters": enc(f32(3, 3, 4, 2), "flat"), "rate": 3}]},
              {"filters": enc(f32(2, 2, 4, 3), "flat"), "rate": 1, "padding": "VALID"}]
    x = f32(1, 10, 12, 3)
    st, _, rep = d.post_json("/v1/sequential", {"value": enc(x, "flat"), "layers": layers})
    l0 = reference(x, dec(layers[0]["filters"]), 2, 2, "SAME", relu=True).astype(np.float32)
    l1 = aspp_ref(l0, [{"f": dec(layers[1]["branches"][0]["filters"]), "rate": 1},
                       {"f": dec(layers[1]["branches"][1]["filters"]), "rate": 3}]).astype(np.float32)
    l2 = reference(l1, dec(layers[2]["filters"]), 1, 1, "VALID")
    R.check(st == 200 and close(dec(rep["output"]), l2), "sequential conv -> aspp -> VALID conv")


def expect(d, what, status, body=None, path="/v1/atrous_conv2d", method="POST", headers=None,
           contains=None):
    st, hdr, data = d.request(method, path, body, headers=headers)
    try:
        msg = json.loads(data).get("error", "")
    except (ValueError, AttributeError):
        msg = None
    ok = st == status and isinstance(msg, str) and msg != "" and (contains is None or contains in msg)
    R.check(ok, "%s -> %d %s" % (what, st, msg))
    return hdr


def test_bad_input(d):
    good = {"value": [[[[1.0]]]], "filters": [[[[1.0]]]], "rate": 1, "padding": "SAME"}

    def with_(**kw):
        b = dict(good)
        b.update(kw)
        return b

    expect(d, "malformed JSON", 400, '{"value": [1,', contains="invalid JSON")
    expect(d, "duplicate keys", 400, '{"rate":1,"rate":2}', contains="duplicate")
    expect(d, "NUL byte", 400, b'{"rate":1\x00}', contains="NUL")
    expect(d, "wrong type for rate", 400, with_(rate="two"), contains="rate")
    expect(d, "rate 0", 400, with_(rate=0), contains="rate must be >= 1, got 0")
    expect(d, "unknown padding", 400, with_(padding="same"), contains='got "same"')
    expect(d, "ragged nested array", 400, with_(value=[[[[1.0], [2.0]], [[3.0]]]]), contains="ragged")
    expect(d, "shape/data count mismatch", 400,
           with_(value={"shape": [1, 2, 2, 1], "data": [1, 2, 3]}), contains="3")
    expect(d, "negative dimension", 400, with_(value={"shape": [1, -2, 2, 1], "data": []}), contains="negative")
    expect(d, "fractional dimension", 400, with_(value={"shape": [1, 2.5, 2, 1], "data": []}), contains="integer")
    expect(d, "overflowing dimensions", 400,
           with_(value={"shape": [4294967296, 4294967296, 4, 1], "data": []}), contains="overflow")
    expect(d, "number beyond float32", 400, with_(value=[[[[3.5e38]]]]), contains="float32")
    expect(d, "bad base64", 400, with_(value={"shape": [1, 1, 1, 1], "b64": "!!!!"}), contains="base64")
    expect(d, "missing filters", 400, {"value": [[[[1.0]]]], "rate": 1, "padding": "SAME"},
           contains='missing "filters"')
    expect(d, "missing value", 400, {"filters": [[[[1.0]]]], "rate": 1, "padding": "SAME"},
           contains='missing "value"')
    expect(d, "channel mismatch", 400, with_(value=[[[[1.0, 2.0]]]]),
           contains="filters in_channels 1 != value channels 2")
    expect(d, "negative VALID output", 400, with_(filters=np.ones((3, 3, 1, 1)).tolist(), padding="VALID"),
           contains="would be negative")
    expect(d, "value of rank 3", 400, with_(value=[[[1.0]]]), contains="rank 4")
    expect(d, "unknown key", 400, with_(strides=2), contains='unknown key "strides"')
    expect(d, "bad output_encoding", 400, with_(output_encoding="xml"), contains="output_encoding")
    expect(d, "unknown route", 404, good, path="/v1/deconv")
    expect(d, "admin API with no admin_token_file", 403, "{}", path="/v1/models/x", method="PUT",
           contains="disabled")
    hdr = expect(d, "wrong method", 405, None, method="GET")
    R.check(hdr.get("Allow") == "POST", "405 carries Allow: POST")
    expect(d, "tensor over max_elements", 413, with_(value={"shape": [1, 100, 100, 1], "data": [0] * 10000}),
           contains="more than")
    expect(d, "output over max_output_elements", 413,
           with_(value={"shape": [1, 40, 40, 1], "b64": base64.b64encode(bytes(6400)).decode()},
                 filters={"shape": [1, 1, 1, 8], "data": [1] * 8}), contains="more than")
    expect(d, "multipart body", 415, good, headers={"Content-Type": "multipart/form-data; boundary=x"})
    st, _, rep = d.post_json("/v1/atrous_conv2d", good, headers={"Content-Type": "application/x-www-form-urlencoded"})
    R.check(st == 200, "curl's default form content type is parsed as JSON")
    st, _, rep = d.post_json("/v1/atrous_conv2d", with_(value=[[[[3e38]]]], filters=[[[[10.0]]]]))
    R.check(st == 422 and "infinity" in rep.get("error", ""), "float32 overflow in the output -> 422")
    raw = d.raw(b"POST /v1/atrous_conv2d HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n")
    R.check(raw.startswith(b"HTTP/1.1 413"), "Content-Length over max_body -> 413 before reading")
    raw = d.raw(b"POST /v1/atrous_conv2d HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n")
    R.check(raw.startswith(b"HTTP/1.1 400"), "Transfer-Encoding other than chunked -> 400")
    raw = d.raw(b"POST /v1/atrous_conv2d HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                b"Content-Length: 5\r\n\r\n0\r\n\r\n")
    R.check(raw.startswith(b"HTTP/1.1 400"), "Transfer-Encoding with Content-Length -> 400")
    body = json.dumps(good).encode()
    chunked = b"".join(b"%x\r\n%s\r\n" % (1, body[i:i + 1]) for i in range(len(body))) + b"0\r\n\r\n"
    raw = d.raw(b"POST /v1/atrous_conv2d HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                b"Connection: close\r\n\r\n" + chunked, shutdown=False)  # a FIN would be leaving
    R.check(raw.startswith(b"HTTP/1.1 200"), "a chunked body of one-byte chunks is served")
    st, _, rep = d.post_json("/v1/atrous_conv2d", good)
    R.check(st == 200 and dec(rep["output"]).ravel().tolist() == [1.0], "still serving after bad input")


def test_concurrency(d):
    x, f = f32(1, 17, 19, 8), f32(3, 3, 8, 8)
    ref = reference(x, f, 3, 3, "SAME")
    results = [None] * 50

    def one(i):
        st, _, rep = d.post_json("/v1/atrous_conv2d", {"value": enc(x, "b64"), "filters": enc(f, "b64"),
                                                       "rate": 3, "padding": "SAME", "output_encoding": "b64"})
        results[i] = st == 200 and close(dec(rep["output"]), ref)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    R.check(all(results), "50 concurrent requests all correct (%d ok)" % sum(bool(r) for r in results))


def slow_body():
    # About half a second of compute on one worker.
    return {"value": enc(f32(1, 64, 64, 64), "b64"), "filters": enc(f32(3, 3, 64, 64), "b64"),
            "rate": 2, "padding": "SAME", "output_encoding": "b64"}


def test_queue_full():
    d = Daemon("--threads", "1", "--max-queue", "1")
    body = json.dumps(slow_body())
    statuses, retry = burst(lambda: d.request("POST", "/v1/atrous_conv2d", body))
    R.check(set(statuses) <= {200, 503} and statuses.count(503) >= 1 and statuses.count(200) >= 2,
            "queue full: statuses %s" % sorted(statuses))
    R.check(retry and all(r == "1" for r in retry), "every 503 carries Retry-After")
    R.check(d.request("GET", "/v2/health/live")[0] == 200, "liveness answers while saturated")
    R.check(d.stop() == 0, "daemon exits 0")


def test_drain():
    d = Daemon("--threads", "1")
    body = json.dumps(slow_body())
    out = {}

    def slow():
        out["status"] = d.request("POST", "/v1/atrous_conv2d", body)[0]

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.15)
    d.proc.send_signal(signal.SIGTERM)
    time.sleep(0.05)
    t.join()
    rc = d.proc.wait(timeout=30)
    R.check(out.get("status") == 200, "request in flight during SIGTERM completes with 200")
    R.check(rc == 0, "daemon exits 0 after draining")
    R.check("draining" in d.log_text(), "drain is logged")
    d.stop()


def main():
    d = Daemon("--threads", "2", "--max-elements", "4096", "--max-output-elements", "8192",
               "--max-body", "4M", "--max-inflight-bytes", "64M")
    try:
        for k in ("/v2/health/live", "/v2/health/ready", "/healthz"):
            st, _, data = d.request("GET", k)
            R.check(st == 200 and json.loads(data), "GET %s -> 200" % k)
        test_bad_input(d)
    finally:
        R.check(d.stop() == 0, "daemon exits 0 on SIGTERM")
    d = Daemon("--threads", "2")
    try:
        test_conv(d)
        test_aspp(d)
        test_sequential(d)
        test_concurrency(d)
    finally:
        R.check(d.stop() == 0, "daemon exits 0 on SIGTERM")
    test_queue_full()
    test_drain()
    return R.finish()


if __name__ == "__main__":
    sys.exit(main())
