#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The algorithms through the real daemon: "auto", "im2col" and "fast" on
request layers and stored models against NumPy in float64, what each reply
says ran, the direct kernel on a tiny layer, the ASPP fold of image pooling,
transformed weights counted per model (promtool checks the page), the
budget that sends layers back to im2col, bad values refused, and the cache
of large buffers (buffer_cache) with its gauges."""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Daemon, Results, dec, enc, need  # noqa: E402
from numpy_ref import aspp_ref, reference  # noqa: E402

R = Results()
rng = np.random.default_rng(12)


def f32(*shape, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(np.float32)


def rel_rms(got, ref):
    got = np.asarray(got, dtype=np.float64).reshape(ref.shape)
    return float(np.sqrt(((got - ref) ** 2).sum() / (ref ** 2).sum()))


def metrics(d):
    st, _, data = d.request("GET", "/metrics")
    out = {}
    for line in data.decode().splitlines():
        if line and not line.startswith("#"):
            k, v = line.rsplit(" ", 1)
            out[k] = float(v)
    return st, data, out


def test_native(d):
    # A layer wide enough for auto to choose minimal filtering, at rates
    # whose phase grids take every scheme (F(4,3), F(3,3), 2 rows, 1 row).
    x, b = f32(2, 33, 31, 64), f32(64)
    f = f32(3, 3, 64, 64, scale=0.1)
    for rate, pad in ((2, "SAME"), (6, "SAME"), (12, "SAME"), (18, "SAME"), (3, "VALID"), ([2, 5], "SAME")):
        rh, rw = (rate, rate) if isinstance(rate, int) else rate
        ref = reference(x, f, rh, rw, pad, b, True)
        for alg in ("auto", "im2col", "fast"):
            st, _, rep = d.post_json("/v1/atrous_conv2d", {"value": enc(x, "b64"), "filters": enc(f, "b64"),
                                                           "bias": enc(b, "b64"), "rate": rate, "padding": pad,
                                                           "activation": "relu", "algorithm": alg,
                                                           "output_encoding": "b64"})
            ran = rep["timing"].get("algorithms") if st == 200 else None
            err = rel_rms(dec(rep["output"]), ref) if st == 200 else 1
            # auto: grids of 6 rows or more pay for minimal filtering here;
            # on smaller ones the cost model may keep im2col.
            want = {"im2col": ["im2col"], "fast": ["fast"],
                    "auto": ["fast"] if max(rh, rw) <= 6 else [["fast"], ["im2col"]]}[alg]
            R.check(st == 200 and (ran == want or ran in want) and err <= 3e-6,
                    "rate %s %s, algorithm %s: ran %s, relative RMS %.2g" % (rate, pad, alg, ran, err))
    # The seed's example: tiny, so auto runs the direct kernel.
    x1, f1 = f32(1, 28, 28, 3), f32(5, 5, 3, 32)
    st, _, rep = d.post_json("/v1/atrous_conv2d", {"value": enc(x1, "b64"), "filters": enc(f1, "b64"),
                                                   "rate": 2, "padding": "SAME", "output_encoding": "b64"})
    ref = reference(x1, f1, 2, 2, "SAME")
    R.check(st == 200 and rep["timing"]["algorithms"] == ["direct"] and rel_rms(dec(rep["output"]), ref) < 1e-6,
            "seed example 1 under auto: the direct kernel, %s" % (rep or {}).get("timing", {}).get("algorithms"))
    # The chain's second layer (29 MFLOP): direct, its rows over both workers.
    x2, f2 = f32(1, 28, 28, 32), f32(3, 3, 32, 64, scale=0.2)
    st, _, rep = d.post_json("/v1/atrous_conv2d", {"value": enc(x2, "b64"), "filters": enc(f2, "b64"),
                                                   "rate": 2, "padding": "SAME", "activation": "relu",
                                                   "output_encoding": "b64"})
    ref = reference(x2, f2, 2, 2, "SAME", None, True)
    R.check(st == 200 and rep["timing"]["algorithms"] == ["direct"] and rel_rms(dec(rep["output"]), ref) < 1e-6,
            "29 MFLOP under auto: the direct kernel, its rows on both workers, %s"
            % (rep or {}).get("timing", {}).get("algorithms"))
    # "fast" asked of a 5x5 kernel: the region plan runs, and says so.
    st, _, rep = d.post_json("/v1/atrous_conv2d", {"value": enc(x1, "b64"), "filters": enc(f1, "b64"),
                                                   "rate": 2, "padding": "SAME", "algorithm": "fast"})
    R.check(st == 200 and rep["timing"]["algorithms"] == ["im2col"],
            "fast asked of a 5x5 kernel runs im2col and says so")


def test_aspp(d):
    x = f32(1, 33, 33, 48)
    br = [{"f": f32(1, 1, 48, 16), "rate": 1}, {"f": f32(3, 3, 48, 16, scale=0.1), "rate": 6},
          {"f": f32(3, 3, 48, 16, scale=0.1), "rate": 12}]
    pool = {"f": f32(1, 1, 48, 8), "b": f32(8), "relu": True}
    proj = {"f": f32(1, 1, 56, 24, scale=0.2), "b": f32(24), "relu": True}
    ref = aspp_ref(x, br, pool, proj)
    # The 1x1 branch and, under auto, the small 3x3 ones are tiny: direct.
    for algs, want in ((("fast", "fast"), "direct+fast+fast"), (("im2col", "fast"), "direct+im2col+fast"),
                       (("auto", "auto"), "direct+direct+direct")):
        body = {"value": enc(x, "b64"), "output_encoding": "b64",
                "branches": [{"filters": enc(br[0]["f"], "b64"), "rate": 1}] +
                            [{"filters": enc(b["f"], "b64"), "rate": b["rate"], "algorithm": a}
                             for b, a in zip(br[1:], algs)],
                "image_pooling": {"filters": enc(pool["f"], "b64"), "bias": enc(pool["b"], "b64"),
                                  "activation": "relu"},
                "projection": {"filters": enc(proj["f"], "b64"), "bias": enc(proj["b"], "b64"),
                               "activation": "relu"}}
        st, _, rep = d.post_json("/v1/aspp", body)
        ran = rep["timing"]["algorithms"] if st == 200 else None
        err = rel_rms(dec(rep["output"]), ref) if st == 200 else 1
        R.check(st == 200 and ran == [want] and err <= 3e-6,
                "ASPP with pooling folded into the projection, branches %s: ran %s, relative RMS %.2g"
                % (algs, ran, err))


def test_bad(d):
    x, f = f32(1, 8, 8, 4), f32(3, 3, 4, 4)
    for bad, what in (("winograd", "an unknown name"), (3, "a number"), ("FAST", "the wrong case")):
        st, _, rep = d.post_json("/v1/atrous_conv2d", {"value": enc(x, "flat"), "filters": enc(f, "flat"),
                                                       "rate": 1, "padding": "SAME", "algorithm": bad})
        R.check(st == 400 and "algorithm" in (rep or {}).get("error", ""),
                "algorithm %s -> 400 naming the field: %s" % (what, (rep or {}).get("error")))


def write_models(root):
    """"deep": a 3x3 layer and an ASPP head, as a stored model; the layer and
    one branch run minimal filtering, the other branches direct and im2col."""
    d = os.path.join(root, "deep")
    os.makedirs(d)
    w = {"c1": f32(3, 3, 32, 64, scale=0.1), "b1": f32(64), "p": f32(1, 1, 64, 16), "a0": f32(1, 1, 64, 16),
         "a1": f32(3, 3, 64, 16, scale=0.1), "a2": f32(3, 3, 64, 16, scale=0.1),
         "j": f32(1, 1, 64, 32, scale=0.2)}
    for k, v in w.items():
        np.save(os.path.join(d, k + ".npy"), v)
    npy = lambda k: {"npy": k + ".npy"}  # noqa: E731
    layers = [{"filters": npy("c1"), "bias": npy("b1"), "rate": 2, "padding": "SAME", "activation": "relu"},
              {"type": "aspp", "image_pooling": {"filters": npy("p"), "activation": "relu"},
               "branches": [{"filters": npy("a0"), "rate": 1},
                            {"filters": npy("a1"), "rate": 4, "algorithm": "fast"},
                            {"filters": npy("a2"), "rate": 8, "algorithm": "im2col"}],
               "projection": {"filters": npy("j")}}]
    with open(os.path.join(d, "model.json"), "w") as f:
        json.dump({"layers": layers}, f)

    def ref(x):
        y = reference(x, w["c1"], 2, 2, "SAME", w["b1"], True)
        return aspp_ref(y, [{"f": w["a0"], "rate": 1}, {"f": w["a1"], "rate": 4}, {"f": w["a2"], "rate": 8}],
                        {"f": w["p"], "relu": True}, {"f": w["j"]})
    return ref


def infer(d, x):
    st, _, rep = d.post_json("/v2/models/deep/infer", {"inputs": [{"name": "input", "datatype": "FP32",
                                                                   "shape": list(x.shape),
                                                                   "data": x.ravel().tolist()}]})
    return st, rep


def test_stored(root, ref):
    x = f32(1, 40, 40, 32)
    want = ref(x)
    d = Daemon("--models", root, "--threads", "2")
    try:
        st, data, m = metrics(d)
        R.check(m.get('atrousd_model_fast_weights_bytes{model="deep"}') == 0,
                "a stored model holds no transformed weights before its first request")
        R.check(m.get("atrousd_fast_weights_budget_bytes") == 1 << 30, "the default budget is 1 GiB")
        st, rep = infer(d, x)
        ran = rep.get("parameters", {}).get("algorithms") if st == 200 else None
        err = rel_rms(rep["outputs"][0]["data"], want) if st == 200 else 1
        R.check(st == 200 and ran == "fast,direct+fast+im2col" and err <= 3e-6,
                "stored model: parameters.algorithms %r, relative RMS %.2g" % (ran, err))
        st, data, m = metrics(d)
        held = m.get('atrousd_model_fast_weights_bytes{model="deep"}', 0)
        # c1: 20-row grids, F(4,3) both ways (36 products); a1: grids of 10,
        # F(4,3) (36 products); 3x3 weights of 32x64 and 64x16.
        R.check(held == 4 * 36 * (32 * 64 + 64 * 16), "atrousd_model_fast_weights_bytes{model=\"deep\"} = %d" % held)
        if need(R, "promtool"):
            p = subprocess.run(["promtool", "check", "metrics"], input=data, capture_output=True)
            R.check(p.returncode == 0, "promtool check metrics: clean %s" % (p.stdout + p.stderr).decode().strip())
        st2, rep2 = infer(d, x)
        R.check(st2 == 200 and rep2["outputs"][0]["data"] == rep["outputs"][0]["data"],
                "a second request, on the kept weights, gives the same bits")
        R.check(metrics(d)[2].get('atrousd_model_fast_weights_bytes{model="deep"}') == held,
                "the kept weights are not made again")
    finally:
        R.check(d.stop() == 0, "daemon exits 0")
    # No budget: every layer runs im2col, the log says why, the results agree.
    d = Daemon("--models", root, "--threads", "2", "--fast-weights-budget", "0")
    try:
        st, rep = infer(d, x)
        ran = rep.get("parameters", {}).get("algorithms") if st == 200 else None
        err = rel_rms(rep["outputs"][0]["data"], want) if st == 200 else 1
        R.check(st == 200 and ran == "im2col,direct+im2col+im2col" and err <= 1e-6,
                "fast_weights_budget 0: %r, relative RMS %.2g" % (ran, err))
        R.check("would pass the budget" in d.log_text(), "the log names the layer the budget refused")
        R.check(metrics(d)[2].get('atrousd_model_fast_weights_bytes{model="deep"}') == 0, "and it holds nothing")
    finally:
        R.check(d.stop() == 0, "daemon (budget 0) exits 0")


def test_buffer_cache():
    # A 4 MiB output, freed after its reply, is kept for reuse up to
    # buffer_cache; with 0 nothing is kept.  The result is the same bits.
    x, f = f32(1, 128, 128, 16), f32(3, 3, 16, 64, scale=0.1)
    body = {"value": enc(x, "b64"), "filters": enc(f, "b64"), "rate": 2, "padding": "SAME",
            "output_encoding": "b64"}
    want = reference(x, f, 2, 2, "SAME", None, False)
    outs = []
    for size, held_ok in (("8M", lambda v: 4 << 20 <= v <= 8 << 20), ("0", lambda v: v == 0)):
        d = Daemon("--threads", "2", "--buffer-cache", size)
        try:
            for _ in range(2):
                st, _, rep = d.post_json("/v1/atrous_conv2d", body)
                R.check(st == 200 and rel_rms(dec(rep["output"]), want) <= 1e-6,
                        "buffer_cache %s: a 4 MiB result, correct" % size)
            outs.append(dec(rep["output"]).tobytes() if st == 200 else None)
            m = metrics(d)[2]
            held = m.get("atrousd_buffer_cache_bytes", -1)
            limit = m.get("atrousd_buffer_cache_limit_bytes")
            R.check(held_ok(held) and limit == {"8M": 8 << 20, "0": 0}[size],
                    "buffer_cache %s: atrousd_buffer_cache_bytes %d, limit %s" % (size, held, limit))
        finally:
            R.check(d.stop() == 0, "daemon (buffer_cache %s) exits 0" % size)
    R.check(outs[0] is not None and outs[0] == outs[1], "the same bits either way")


def main():
    d = Daemon("--threads", "2")
    try:
        test_native(d)
        test_aspp(d)
        test_bad(d)
    finally:
        R.check(d.stop() == 0, "daemon exits 0")
    root = tempfile.mkdtemp(prefix="atrousd-alg.")
    try:
        test_stored(root, write_models(root))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    test_buffer_cache()
    return R.finish()


if __name__ == "__main__":
    sys.exit(main())
