#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""ONNX import end to end: torchvision heads exported by torch.onnx (folded,
and with BatchNorm kept), imported with `atrous import` and through Triton's
repository API, served and compared with PyTorch on the same input; graphs
built with onnx.helper for the padding rules and every refusal; the
repository's load, unload, index, tokens, failed loads and kill -9."""
import base64
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import BUILDDIR, Daemon, Results  # noqa: E402
from numpy_ref import reference  # noqa: E402

import onnx  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

ATROUS = os.path.join(BUILDDIR, "src", "atrous")
TOKEN = "onnx-test-token-0123456789"
R = Results()
WORK = tempfile.mkdtemp(prefix="atrousd-onnx.")
torch.manual_seed(7)
np.random.seed(7)


def atrous_import(onnx_path, out):
    p = subprocess.run([ATROUS, "import", onnx_path, "--output", out], capture_output=True,
                       text=True)
    return p.returncode, p.stdout + p.stderr


def randomize_bn(module):
    """Random BatchNorm statistics, so that folding them matters."""
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return module.eval()


def export(module, x, path, keep_bn=False, dynamic=False):
    kw = {}
    if keep_bn:
        kw = dict(do_constant_folding=False, training=torch.onnx.TrainingMode.PRESERVE)
    if dynamic:
        kw["dynamic_axes"] = {"features": {0: "n", 2: "h", 3: "w"}, "logits": {0: "n", 2: "h", 3: "w"}}
    torch.onnx.export(module, x, path, opset_version=13, input_names=["features"],
                      output_names=["logits"], **kw)


def infer(d, model, x, out_name="logits", in_name="features"):
    """A binary infer request as tritonclient.http sends one."""
    hdr = json.dumps({"inputs": [{"name": in_name, "shape": list(x.shape), "datatype": "FP32",
                                  "parameters": {"binary_data_size": x.nbytes}}],
                      "outputs": [{"name": out_name, "parameters": {"binary_data": True}}]}).encode()
    st, h, data = d.request("POST", "/v2/models/%s/infer" % model, hdr + x.astype("<f4").tobytes(),
                            {"Inference-Header-Content-Length": str(len(hdr)),
                             "Content-Type": "application/octet-stream"})
    if st != 200:
        return st, json.loads(data), None
    jl = int(h["Inference-Header-Content-Length"])
    meta = json.loads(data[:jl])
    y = np.frombuffer(data[jl:], "<f4").reshape(meta["outputs"][0]["shape"])
    return st, meta, y


def rel_err(y, ref):
    return float(np.abs(y.astype(np.float64) - ref).max() / max(1e-30, np.abs(ref).max()))


def load_body(files, config=None):
    """load_model's body as tritonclient.http builds it."""
    params = {}
    if config is not None:
        params["config"] = config
    for path, content in files.items():
        params[path] = base64.b64encode(content).decode()
    return json.dumps({"parameters": params} if params else {})


AUTH = {"Authorization": "Bearer " + TOKEN}


def repo(d, path, body="", headers=AUTH):
    st, _, data = d.request("POST", "/v2/repository/" + path, body, headers)
    try:
        return st, json.loads(data)
    except ValueError:
        return st, data


# ---------------------------------------------------------------- torchvision heads

seg = torchvision.models.segmentation
r50 = seg.deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=21)
mnv3 = seg.deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=21)
heads = [
    ("r50", randomize_bn(r50.classifier), (1, 2048, 33, 33)),
    ("mnv3", randomize_bn(mnv3.classifier), (1, 960, 17, 17)),
    ("fcn", randomize_bn(seg.fcn.FCNHead(512, 21)), (1, 512, 19, 23)),
    # A small ASPP whose BatchNorm export passes initializers through Identity.
    ("aspp", randomize_bn(torch.nn.Sequential(seg.deeplabv3.ASPP(6, [2, 3], 4),
                                              torch.nn.Conv2d(4, 3, 1))), (2, 6, 9, 7)),
]
models = os.path.join(WORK, "models")
os.mkdir(models)
refs = {}
for name, head, shape in heads:
    x = torch.randn(*shape)
    with torch.no_grad():
        y = head(x).numpy().astype(np.float64)
    for keep in (False, True):
        tag = "%s_%s" % (name, "bn" if keep else "folded")
        path = os.path.join(WORK, tag + ".onnx")
        export(head, x, path, keep_bn=keep)
        t0 = time.time()
        rc, out = atrous_import(path, os.path.join(models, tag))
        R.check(rc == 0, "atrous import %s (%.0f MB) in %.2f s" % (tag, os.path.getsize(path) / 1e6,
                                                                  time.time() - t0))
        if rc != 0:
            print("# " + out)
        refs[tag] = (x.numpy(), y, head)

# One export with dynamic H and W: its Resize is sized from the input's Shape.
head = heads[0][1]
xd = torch.randn(2, 2048, 21, 26)
export(head, torch.randn(1, 2048, 33, 33), os.path.join(WORK, "r50_dynamic.onnx"), dynamic=True)
rc, out = atrous_import(os.path.join(WORK, "r50_dynamic.onnx"), os.path.join(models, "r50_dynamic"))
R.check(rc == 0, "atrous import of a dynamic-axes export")
with torch.no_grad():
    refs["r50_dynamic"] = (xd.numpy(), head(xd).numpy().astype(np.float64), head)

with open(os.path.join(WORK, "token"), "w") as f:
    f.write(TOKEN + "\n")
d = Daemon("--models", models, "--admin-token-file", os.path.join(WORK, "token"),
           "--max-model-body", "1G", "--max-elements", "64M", "--max-output-elements", "64M")
for tag, (x, y, _) in sorted(refs.items()):
    st, meta, got = infer(d, tag, x)
    ok = st == 200 and got is not None and got.shape == y.shape
    err = rel_err(got, y) if ok else float("inf")
    R.check(ok and err <= 1e-5, "%s: NCHW in and out, max error %.2g of max |y| against PyTorch "
            "(compute %s us)" % (tag, err, meta.get("parameters", {}).get("compute_us") if ok else meta))

# Metadata speaks NCHW, names as exported.
st, _, raw = d.request("GET", "/v2/models/r50_folded")
meta = json.loads(raw)
R.check(st == 200 and meta["inputs"][0]["name"] == "features" and meta["inputs"][0]["shape"] == [-1, 2048, -1, -1]
        and meta["outputs"][0]["name"] == "logits" and meta["outputs"][0]["shape"] == [-1, 21, -1, -1],
        "model metadata: the exported names, NCHW shapes")
x, y, _ = refs["r50_folded"]
st, meta, _ = infer(d, "r50_folded", np.ascontiguousarray(x.transpose(0, 2, 3, 1)))
R.check(st == 400 and "has 33 channels, model r50_folded takes 2048" in meta["error"],
        "an NHWC input to an NCHW model: 400 naming the channels")

# JSON (not binary) as curl would send it.
xs = np.random.randn(1, 512, 5, 6).astype(np.float32)
with torch.no_grad():
    ys = refs["fcn_folded"][2](torch.from_numpy(xs)).numpy()
st, _, body = d.post_json("/v2/models/fcn_folded/infer", {
    "inputs": [{"name": "features", "shape": list(xs.shape), "datatype": "FP32", "data": xs.ravel().tolist()}]})
got = np.array(body["outputs"][0]["data"], np.float32).reshape(body["outputs"][0]["shape"]) if st == 200 else None
R.check(st == 200 and rel_err(got, ys) <= 1e-5, "JSON infer on an imported FCN head (another size)")

# ---------------------------------------------------------------- repository API

with open(os.path.join(WORK, "r50_folded.onnx"), "rb") as f:
    r50_bytes = f.read()
config = json.dumps({"name": "deeplab", "backend": "onnxruntime", "max_batch_size": 0})
t0 = time.time()
st, body = repo(d, "models/deeplab/load", load_body({"file:1/model.onnx": r50_bytes}, config))
load_s = time.time() - t0
R.check(st == 200 and body.get("state") == "READY",
        "load_model with config and file:1/model.onnx (%.0f MB base64): 200 in %.2f s"
        % (len(r50_bytes) * 4 / 3 / 1e6, load_s))
R.check(os.path.isfile(os.path.join(models, "deeplab", "1", "model.onnx")),
        "... stored as deeplab/1/model.onnx")
R.check(d.request("GET", "/v2/models/deeplab/ready")[0] == 200, "is_model_ready after the load")
x, y, _ = refs["r50_folded"]
times = []
for _ in range(5):
    t0 = time.time()
    st, meta, got = infer(d, "deeplab", x)
    times.append(time.time() - t0)
R.check(st == 200 and rel_err(got, y) <= 1e-5, "infer on the loaded model matches PyTorch")
head = refs["r50_folded"][2]
xt = torch.from_numpy(x)
pt = []
with torch.no_grad():
    for _ in range(5):
        t0 = time.time()
        head(xt)
        pt.append(time.time() - t0)
print("# r50 head [1,2048,33,33]: atrousd client %.1f ms (compute %.1f ms), PyTorch %.1f ms (medians of 5)"
      % (1e3 * sorted(times)[2], meta["parameters"]["compute_us"] / 1e3, 1e3 * sorted(pt)[2]))

st, idx = repo(d, "index", "")
names = {e["name"]: e for e in idx} if st == 200 else {}
R.check(st == 200 and names.get("deeplab", {}).get("state") == "READY" and names["deeplab"]["version"] == "1"
        and len(names) == len(refs) + 1, "repository index (empty body, as tritonclient sends it): every folder READY")
st, idx = repo(d, "index", json.dumps({"ready": True}))
R.check(st == 200 and len(idx) == len(refs) + 1, "index {\"ready\": true}")

st, body = repo(d, "models/deeplab/unload", json.dumps({"parameters": {"unload_dependents": False}}))
R.check(st == 200, "unload_model: 200")
R.check(d.request("GET", "/v2/models/deeplab/ready")[0] == 404, "is_model_ready false after the unload")
st, meta, _ = infer(d, "deeplab", np.zeros((1, 2048, 1, 1), np.float32))
R.check(st == 404, "inference on an unloaded model: 404")
st, idx = repo(d, "index")
e = {e["name"]: e for e in idx}.get("deeplab", {})
R.check(e.get("state") == "UNAVAILABLE" and e.get("reason") == "unloaded", "index: UNAVAILABLE, unloaded")
d.request("POST", "/v1/models/reload", "", AUTH)
R.check(d.request("GET", "/v2/models/deeplab/ready")[0] == 404, "a reload leaves an unloaded model unloaded")
st, body = repo(d, "models/deeplab/load", "")
R.check(st == 200 and d.request("GET", "/v2/models/deeplab/ready")[0] == 200,
        "load with an empty body: loaded again from its folder")
st, body = repo(d, "models/deeplab/unload", "")
st, body = repo(d, "models/deeplab/unload", "")
R.check(st == 404 and "no model named" in body["error"], "unloading what is not loaded: 404")
repo(d, "models/deeplab/load", "{}")

# Tokens.
R.check(repo(d, "index", "", {})[0] == 401, "index without a token: 401")
R.check(repo(d, "models/deeplab/load", "", {"Authorization": "Bearer wrong-token-000000"})[0] == 401,
        "load with a wrong token: 401")
R.check(repo(d, "models/deeplab/unload", "", {})[0] == 401, "unload without a token: 401")
d2 = Daemon("--models", models)
st, body = repo(d2, "index", "", AUTH)
R.check(st == 403 and "admin API is disabled" in body["error"], "no admin token configured: 403")
d2.stop()
d2 = Daemon("--admin-token-file", os.path.join(WORK, "token"))
st, body = repo(d2, "models/m/load", load_body({"file:model.onnx": b"x"}, "{}"))
R.check(st == 409 and "no models_dir" in body["error"], "load without a models_dir: 409")
d2.stop()

# Bad loads change nothing; the previous version keeps serving.
bad = [
    ({"file:1/model.onnx": b"\x08\x07garbage" * 10}, config, 400, "does not parse"),
    ({"file:1/model.onnx": r50_bytes[: len(r50_bytes) // 2]}, config, 400, "does not parse"),
    ({"file:1/model.onnx": b"x"}, None, 400, "requires \"config\""),
    ({"file:../evil": b"x"}, config, 400, "a model file is NAME or DIR/NAME"),
    ({"file:/etc/passwd": b"x"}, config, 400, "a model file is NAME or DIR/NAME"),
    ({}, "not json", 400, "\"config\" must be a string holding a JSON object"),
]
for files, cfg, want, msg in bad:
    st, body = repo(d, "models/deeplab/load", load_body(files, cfg))
    R.check(st == want and msg in body.get("error", ""), "refused load (%s): %d %s" % (msg, st, body.get("error", "")[:80]))
st, body = repo(d, "models/deeplab/load", json.dumps({"parameters": {"file:1/model.onnx": "!!!", "config": "{}"}}))
R.check(st == 400 and "not valid base64" in body["error"], "refused load: bad base64")
st, body = repo(d, "models/deeplab/load", json.dumps({"parameters": {"colour": "red"}}))
R.check(st == 400 and "unknown parameter" in body["error"], "refused load: unknown parameter")
st, body = repo(d, "models/nothere/load", "")
R.check(st == 404 and "no model folder" in body["error"], "load of a folder that does not exist: 404")
st, meta, got = infer(d, "deeplab", x)
R.check(st == 200 and rel_err(got, y) <= 1e-5, "after the refused loads the previous version still serves")
R.check(not [n for n in os.listdir(models) if n.startswith(".")], "no staged folder left behind")

# A model folder (model.json + .npy) sent as files.
src = os.path.join(models, "fcn_bn")
files = {"file:" + n: open(os.path.join(src, n), "rb").read() for n in os.listdir(src)}
st, body = repo(d, "models/fcn_copy/load", load_body(files, "{}"))
xs2 = refs["fcn_bn"][0]
st2, _, got = infer(d, "fcn_copy", xs2)
R.check(st == 200 and st2 == 200 and rel_err(got, refs["fcn_bn"][1]) <= 1e-5,
        "load of model.json and its .npy files as file: parameters")

# kill -9 during loads: the model is the old one or the new one, never partial.
old_y = refs["r50_folded"][1]
with open(os.path.join(WORK, "mnv3_folded.onnx"), "rb") as f:
    new_body = load_body({"file:1/model.onnx": f.read()}, config)
xm, ym, _ = refs["mnv3_folded"]
d.stop()
outcomes = []


def load_quietly(daemon):
    try:
        repo(daemon, "models/deeplab/load", new_body)
    except OSError:
        pass  # killed under it: that is the point


for delay in (0.05, 0.3, 0.8):
    d = Daemon("--models", models, "--admin-token-file", os.path.join(WORK, "token"),
               "--max-model-body", "1G", "--max-elements", "64M", "--max-output-elements", "64M")
    threading.Thread(target=load_quietly, args=(d,), daemon=True).start()
    time.sleep(delay)
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait()
    d = Daemon("--models", models, "--admin-token-file", os.path.join(WORK, "token"),
               "--max-elements", "64M", "--max-output-elements", "64M")
    st, _, raw = d.request("GET", "/v2/models/deeplab")
    c = json.loads(raw)["inputs"][0]["shape"][1] if st == 200 else None
    if c == 2048:
        st, meta, got = infer(d, "deeplab", x)
        outcomes.append("old" if st == 200 and rel_err(got, old_y) <= 1e-5 else "broken")
    elif c == 960:
        st, meta, got = infer(d, "deeplab", xm)
        outcomes.append("new" if st == 200 and rel_err(got, ym) <= 1e-5 else "broken")
    else:
        outcomes.append("missing")
    leftovers = [n for n in os.listdir(models) if n.startswith(".")]
    d.stop()
    # Restore the old model for the next round.
    shutil.rmtree(os.path.join(models, "deeplab"))
    shutil.copytree(os.path.join(models, "r50_folded"), os.path.join(models, "deeplab"))
    R.check(not leftovers, "kill -9 %.2f s into a load: no staged folder after the restart" % delay)
R.check(all(o in ("old", "new") for o in outcomes), "kill -9 during loads: old or new each time, never "
        "partial (%s)" % ", ".join(outcomes))

# ---------------------------------------------------------------- hand-built graphs


def conv_model(path, wshape, attrs, in_shape, bias=True, extra_nodes=(), out="y", inputs=None,
               init_dtype=np.float32, w=None):
    w = np.random.randn(*wshape).astype(init_dtype) if w is None else w
    inits = [numpy_helper.from_array(w, "w")]
    ins = ["x", "w"]
    if bias:
        inits.append(numpy_helper.from_array(np.random.randn(wshape[0]).astype(init_dtype), "b"))
        ins.append("b")
    nodes = [helper.make_node("Conv", ins, ["c"], name="conv0", **attrs)] + list(extra_nodes)
    g = helper.make_graph(nodes, "g", inputs or [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
                          [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)], inits)
    if not extra_nodes:
        g.node[0].output[0] = out
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), path)
    return w, inits[1] if bias else None


def check_conv(name, wshape, attrs, in_shape, padding, rates):
    path = os.path.join(WORK, name + ".onnx")
    w, b = conv_model(path, wshape, attrs, in_shape)
    rc, out = atrous_import(path, os.path.join(WORK, "m_" + name))
    if not R.check(rc == 0, "import %s" % name):
        print("# " + out)
        return
    x = np.random.randn(*in_shape).astype(np.float32)
    np.save(os.path.join(WORK, "x.npy"), x)
    rc = subprocess.run([ATROUS, "run", "--model", os.path.join(WORK, "m_" + name), "--value",
                         os.path.join(WORK, "x.npy"), "--output", os.path.join(WORK, "y.npy")]).returncode
    ref = reference(x.transpose(0, 2, 3, 1), w.transpose(2, 3, 1, 0), rates[0], rates[1], padding,
                    numpy_helper.to_array(b)).transpose(0, 3, 1, 2)
    got = np.load(os.path.join(WORK, "y.npy")) if rc == 0 else None
    R.check(rc == 0 and got.shape == ref.shape and rel_err(got, ref) <= 1e-5,
            "%s: matches TensorFlow's %s with rates %s (NumPy reference)" % (name, padding, rates))


check_conv("same_upper_even", (4, 3, 2, 4), {"auto_pad": "SAME_UPPER", "dilations": [2, 3]},
           (1, 3, 9, 11), "SAME", (2, 3))
check_conv("pads_same", (5, 3, 3, 3), {"pads": [2, 2, 2, 2], "dilations": [2, 2]}, (2, 3, 8, 7),
           "SAME", (2, 2))
check_conv("pads_same_even", (5, 3, 4, 2), {"pads": [1, 0, 2, 1], "dilations": [1, 1]}, (1, 3, 6, 5),
           "SAME", (1, 1))
check_conv("pads_valid", (2, 3, 3, 3), {"pads": [0, 0, 0, 0], "dilations": [3, 2]}, (1, 3, 12, 9),
           "VALID", (3, 2))
check_conv("auto_valid", (2, 3, 2, 2), {"auto_pad": "VALID", "dilations": [4, 4]}, (1, 3, 5, 5),
           "VALID", (4, 4))

# float16 and float64 weights convert; a float64 beyond float32 is refused.
for dt in (np.float16, np.float64):
    path = os.path.join(WORK, "w_%s.onnx" % dt.__name__)
    conv_model(path, (2, 3, 1, 1), {}, (1, 3, 4, 4), init_dtype=dt)
    rc, out = atrous_import(path, os.path.join(WORK, "m_w"))
    R.check(rc == 0, "%s weights are converted" % dt.__name__)
big = np.full((2, 3, 1, 1), 1e300)
conv_model(os.path.join(WORK, "w_big.onnx"), (2, 3, 1, 1), {}, (1, 3, 4, 4), w=big, bias=False)


def refused(name, path, msg):
    rc, out = atrous_import(path, os.path.join(WORK, "m_refused"))
    R.check(rc == 1 and msg in out and not os.path.exists(os.path.join(WORK, "m_refused")),
            "refused: %s (exit %d: %s)" % (name, rc, out.strip()[:140]))


refused("a float64 weight beyond float32", os.path.join(WORK, "w_big.onnx"), "is not a finite float32")
cases = [
    ("strides 2", (2, 3, 3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1]}, "node \"conv0\" (Conv): strides [2,2]"),
    ("group 3", (3, 1, 3, 3), {"group": 3, "pads": [1, 1, 1, 1]}, "group 3"),
    ("SAME_LOWER", (2, 3, 2, 2), {"auto_pad": "SAME_LOWER"}, "auto_pad SAME_LOWER is not TensorFlow's SAME"),
    ("asymmetric pads", (2, 3, 3, 3), {"pads": [1, 0, 0, 1]}, "pads [1,0,0,1] are neither TensorFlow's SAME"),
    ("pads of the wrong side", (2, 3, 2, 2), {"pads": [1, 1, 0, 0]}, "are neither TensorFlow's SAME [0,0,1,1]"),
]
for name, ws, attrs, msg in cases:
    path = os.path.join(WORK, "bad.onnx")
    conv_model(path, ws, attrs, (1, 3, 8, 8))
    refused(name, path, msg)
path = os.path.join(WORK, "bad.onnx")
conv_model(path, (2, 3, 1, 1), {}, (1, 3, 8, 8), extra_nodes=[helper.make_node("Sigmoid", ["c"], ["y"], name="sig")])
refused("an unknown operator", path, "node \"sig\" (Sigmoid): operator Sigmoid is not supported")
conv_model(path, (2, 3, 1, 1), {}, (1, 3, 8, 8), extra_nodes=[
    helper.make_node("Relu", ["c"], ["r"], name="relu"),
    helper.make_node("BatchNormalization", ["r", "s", "bb", "m", "v"], ["y"], name="bn")])
m = onnx.load(path)
for n in ("s", "bb", "m", "v"):
    m.graph.initializer.append(numpy_helper.from_array(np.ones(2, np.float32), n))
onnx.save(m, path)
refused("BatchNorm after Relu", path, "BatchNormalization after an activation")
for scale, var, eps, msg in ((1.0, 0.0, 0.0, "is not positive"), (1e30, 1e-30, 0.0, "overflows float32")):
    conv_model(path, (2, 3, 1, 1), {}, (1, 3, 8, 8), extra_nodes=[
        helper.make_node("BatchNormalization", ["c", "s", "bb", "m", "v"], ["y"], name="bn", epsilon=eps)])
    m = onnx.load(path)
    for n, val in (("s", scale), ("bb", 0.0), ("m", 0.0), ("v", var)):
        m.graph.initializer.append(numpy_helper.from_array(np.full(2, val, np.float32), n))
    onnx.save(m, path)
    refused("BatchNorm that cannot fold (%s)" % msg, path, msg)
conv_model(path, (2, 3, 1, 1), {}, (1, 3, 8, 8), inputs=[
    helper.make_tensor_value_info("x", TensorProto.FLOAT, (1, 3, 8, 8)),
    helper.make_tensor_value_info("z", TensorProto.FLOAT, (1, 3, 8, 8))])
refused("two graph inputs", path, "more than one input")
conv_model(path, (2, 3, 1, 1), {}, (1, 3, 8, 8), extra_nodes=[helper.make_node("Relu", ["later"], ["y"], name="early"),
                                                            helper.make_node("Relu", ["c"], ["later"], name="late")])
refused("a node reading a value defined after it (a cycle or unsorted graph)", path,
        "node \"early\" (Relu): input 0 \"later\" is not defined before the node")
m = onnx.load(os.path.join(WORK, "same_upper_even.onnx"))
m.graph.initializer[0].data_location = TensorProto.EXTERNAL
m.graph.initializer[0].ClearField("raw_data")
onnx.save(m, path)
refused("external data", path, "keeps its data in an external file")
with open(path, "wb") as f:
    f.write(open(os.path.join(WORK, "same_upper_even.onnx"), "rb").read()[:100])
refused("a truncated file", path, "does not parse")


def varint(n):
    out = b""
    while True:
        out += bytes([(n & 0x7F) | (0x80 if n > 0x7F else 0)])
        n >>= 7
        if not n:
            return out


# model.graph, then graph.node, node.attribute, attribute.g, ... 60 deep
keys = [0x3A] + [0x0A, 0x2A, 0x32] * 20
blob = b""
for k in reversed(keys[:60]):
    blob = bytes([k]) + varint(len(blob)) + blob
with open(path, "wb") as f:
    f.write(blob)
refused("messages nested too deep", path, "nested deeper than 32")
with open(path, "wb") as f:
    f.write(bytes(random.Random(3).getrandbits(8) for _ in range(4096)))
rc, out = atrous_import(path, os.path.join(WORK, "m_refused"))
R.check(rc == 1 and "atrous:" in out, "random bytes: exit 1 with a message (%s)" % out.strip()[:100])
rc, out = atrous_import(os.path.join(WORK, "nothere.onnx"), os.path.join(WORK, "m_refused"))
R.check(rc == 1 and "No such file" in out, "a missing file: exit 1")
rc, out = atrous_import(os.path.join(WORK, "same_upper_even.onnx"), os.path.join(WORK, ".hidden"))
R.check(rc == 2, "an output folder name that is not a model name: exit 2")

shutil.rmtree(WORK, ignore_errors=True)
sys.exit(R.finish())
