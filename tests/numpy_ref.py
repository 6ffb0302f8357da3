#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Cross-check `atrous conv2d` against an independent NumPy implementation.

The reference upsamples the filters (inserting rate-1 zeros between taps, as
TensorFlow's own test does), zero-pads the input as TensorFlow's SAME rule
says, and correlates in float64.  Usage: numpy_ref.py ATROUS_BINARY WORKDIR
"""
import os
import subprocess
import sys

import numpy as np


def upsample(f, rh, rw):
    kh, kw, ci, co = f.shape
    u = np.zeros(((kh - 1) * rh + 1, (kw - 1) * rw + 1, ci, co), dtype=np.float64)
    u[::rh, ::rw] = f
    return u


def reference(x, f, rh, rw, padding, bias=None, relu=False):
    u = upsample(f.astype(np.float64), rh, rw)
    kh, kw = u.shape[:2]
    n, h, w, _ = x.shape
    if padding == "SAME":
        th, tw = kh - 1, kw - 1
        xp = np.pad(x.astype(np.float64),
                    ((0, 0), (th // 2, th - th // 2), (tw // 2, tw - tw // 2), (0, 0)))
        oh, ow = h, w
    else:
        xp = x.astype(np.float64)
        oh, ow = h - kh + 1, w - kw + 1
    out = np.zeros((n, oh, ow, f.shape[3]))
    for i in range(kh):
        for j in range(kw):
            if not u[i, j].any():
                continue
            out += np.einsum("nhwc,co->nhwo", xp[:, i:i + oh, j:j + ow, :], u[i, j])
    if bias is not None:
        out += bias
    if relu:
        out = np.maximum(out, 0)
    return out


def aspp_ref(x, branches, pool=None, proj=None):
    parts = []
    if pool is not None:
        m = x.astype(np.float64).mean(axis=(1, 2), keepdims=True)
        p = reference(m.astype(np.float32), pool["f"], 1, 1, "SAME", pool.get("b"), pool.get("relu", False))
        parts.append(np.broadcast_to(p, x.shape[:3] + (p.shape[3],)))
    for b in branches:
        parts.append(reference(x, b["f"], b["rate"], b["rate"], "SAME", b.get("b"), b.get("relu", False)))
    cat = np.concatenate(parts, axis=3)
    if proj is not None:
        cat = reference(cat.astype(np.float32), proj["f"], 1, 1, "SAME", proj.get("b"), proj.get("relu", False))
    return cat


def main():
    tool, work = sys.argv[1], sys.argv[2]
    rng = np.random.default_rng(20261128)
    cases = [
        # (value shape, filter hw, out channels, rate, padding, bias, relu)
        ((1, 28, 28, 3), (5, 5), 32, 2, "SAME", False, False),  # the seed's example 1
        ((2, 9, 10, 2), (3, 3), 2, 2, "VALID", False, False),
        ((2, 9, 9, 2), (2, 2), 2, 3, "SAME", True, False),      # even kernel, odd rate
        ((1, 7, 8, 3), (4, 2), 5, 1, "SAME", True, True),
        ((3, 6, 5, 3), (3, 3), 4, 9, "SAME", False, True),      # rate larger than the map
        ((1, 9, 9, 1), (3, 3), 1, 4, "VALID", False, False),    # VALID, 1x1 output
        ((1, 8, 9, 1), (3, 3), 2, 4, "VALID", False, False),    # VALID, empty output
        ((1, 11, 13, 4), (3, 2), 3, (2, 3), "SAME", True, False),
        ((1, 15, 16, 7), (5, 4), 6, 3, "VALID", True, True),
        ((2, 33, 33, 16), (3, 3), 8, 18, "SAME", True, True),   # DeepLab rate 18 on 33x33
    ]
    worst = 0.0
    for k, (vs, (kh, kw), co, rate, pad, use_bias, relu) in enumerate(cases):
        rh, rw = rate if isinstance(rate, tuple) else (rate, rate)
        x = rng.standard_normal(vs).astype(np.float32)
        f = rng.standard_normal((kh, kw, vs[3], co)).astype(np.float32)
        b = rng.standard_normal(co).astype(np.float32) if use_bias else None
        paths = {name: os.path.join(work, "%s%d.npy" % (name, k)) for name in "xfby"}
        np.save(paths["x"], x)
        np.save(paths["f"], f)
        cmd = [tool, "conv2d", "--value", paths["x"], "--filters", paths["f"],
               "--rate", "%d,%d" % (rh, rw), "--padding", pad, "--output", paths["y"]]
        if b is not None:
            np.save(paths["b"], b)
            cmd += ["--bias", paths["b"]]
        if relu:
            cmd += ["--activation", "relu"]
        subprocess.run(cmd, check=True)
        y = np.load(paths["y"])
        ref = reference(x, f, rh, rw, pad, b, relu)
        if y.dtype != np.float32 or y.shape != ref.shape:
            print("case %d: got %s %s, expected float32 %s" % (k, y.dtype, y.shape, ref.shape))
            return 1
        scale = max(1.0, float(np.abs(ref).max())) if ref.size else 1.0
        err = float(np.abs(y - ref).max()) / scale if ref.size else 0.0
        worst = max(worst, err)
        if err > 1e-5:
            print("case %d: relative error %.3g exceeds 1e-5" % (k, err))
            return 1
        print("ok %d %s %s rate %s %s -> %s (rel err %.2g)" % (k, vs, (kh, kw), rate, pad,
                                                              y.shape, err))
    print("numpy cross-check: %d cases, worst relative error %.3g" % (len(cases), worst))
    return 0


if __name__ == "__main__":
    sys.exit(main())
