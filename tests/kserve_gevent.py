#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The KServe v2 calls tritonclient.http makes, issued the way it issues them:
through geventhttpclient's pooled keep-alive client, with its URL layout,
headers and body framing, and its reply parsing (response.get, read(length)).
Checks results against NumPy."""
import json
import os
import struct
import sys
from urllib.parse import quote

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import SRCDIR, Daemon, Results, close  # noqa: E402
from kserve import demo_ref  # noqa: E402

from geventhttpclient import HTTPClient  # noqa: E402
from geventhttpclient.url import URL  # noqa: E402

R = Results()


def request(client, kind, uri, body=None, headers=None):
    uri = "/" + uri
    if kind == "GET":
        return client.get(uri, headers=headers) if headers else client.get(uri)
    return client.post(request_uri=uri, body=body, headers=headers) if headers else \
        client.post(request_uri=uri, body=body)


def build_infer(x, binary_input=True, outputs=None, request_id=""):
    """As tritonclient.http._get_inference_request builds a body."""
    req, params = {}, {}
    if request_id != "":
        req["id"] = request_id
    tensor = {"name": "input", "shape": list(x.shape), "datatype": "FP32"}
    raw = None
    if binary_input:
        raw = x.tobytes()
        tensor["parameters"] = {"binary_data_size": len(raw)}
    else:
        tensor["data"] = [v.item() for v in x.flatten()]
    req["inputs"] = [tensor]
    if outputs:
        req["outputs"] = [{"name": n, "parameters": {"binary_data": b}} for n, b in outputs]
    else:
        params["binary_data_output"] = True
    if params:
        req["parameters"] = params
    body = json.dumps(req)
    if raw is None:
        return body, None
    return struct.pack("{}s{}s".format(len(body), len(raw)), body.encode(), raw), len(body)


def as_numpy(response, name):
    """As tritonclient.http.InferResult reads a reply."""
    header_length = response.get("Inference-Header-Content-Length")
    if header_length is None:
        result = json.loads(response.read())
        buf = b""
    else:
        result = json.loads(response.read(length=int(header_length)))
        buf = response.read()
    index = 0
    for out in result["outputs"]:
        size = out.get("parameters", {}).get("binary_data_size")
        if out["name"] == name:
            if size is not None:
                return result, np.frombuffer(buf[index:index + size], dtype=np.float32).reshape(out["shape"])
            return result, np.array(out["data"], dtype=np.float32).reshape(out["shape"])
        if size is not None:
            index += size
    return result, None


def main():
    d = Daemon("--models", os.path.join(SRCDIR, "conf", "models"))
    client = HTTPClient.from_url(URL("http://127.0.0.1:%d/" % d.port), concurrency=1,
                                 connection_timeout=60.0, network_timeout=60.0)
    try:
        R.check(request(client, "GET", "v2/health/live").status_code == 200, "is_server_live")
        R.check(request(client, "GET", "v2/health/ready").status_code == 200, "is_server_ready")
        R.check(request(client, "GET", "v2/models/%s/ready" % quote("demo")).status_code == 200, "is_model_ready")
        R.check(request(client, "GET", "v2/models/%s/versions/1/ready" % quote("demo")).status_code == 200,
                "is_model_ready with version '1'")
        r = request(client, "GET", "v2")
        R.check(r.status_code == 200 and "binary_tensor_data" in json.loads(r.read())["extensions"],
                "get_server_metadata")
        r = request(client, "GET", "v2/models/demo")
        meta = json.loads(r.read())
        R.check(meta["inputs"][0]["datatype"] == "FP32", "get_model_metadata")
        x = np.random.default_rng(5).standard_normal((1, 11, 13, 8)).astype(np.float32)
        ref = demo_ref(x)
        for what, kw in (("client defaults", {}),
                         ("JSON input, binary output", {"binary_input": False, "outputs": [("output", True)]}),
                         ("binary input, JSON output", {"outputs": [("output", False)]}),
                         ("JSON both ways", {"binary_input": False, "outputs": [("output", False)]})):
            body, json_size = build_infer(x, request_id="id-7", **kw)
            headers = {"Inference-Header-Content-Length": json_size} if json_size is not None else None
            r = request(client, "POST", "v2/models/%s/infer" % quote("demo"), body, headers)
            ok = r.status_code == 200
            if ok:
                result, got = as_numpy(r, "output")
                ok = got is not None and close(got, ref) and result.get("id") == "id-7"
            R.check(ok, "infer, %s, over one keep-alive connection" % what)
        body, json_size = build_infer(x)
        r = request(client, "POST", "v2/models/nosuch/infer", body,
                    {"Inference-Header-Content-Length": json_size})
        msg = json.loads(r.read()).get("error", "")
        R.check(r.status_code == 404 and "nosuch" in msg, "unknown model: error JSON the client raises")
        body, json_size = build_infer(np.zeros((1, 4, 4, 3), np.float32))
        r = request(client, "POST", "v2/models/demo/infer", body, {"Inference-Header-Content-Length": json_size})
        R.check(r.status_code == 400 and "channels" in json.loads(r.read())["error"], "wrong channel count refused")
        r = request(client, "GET", "v2/models/demo/stats")
        st = json.loads(r.read())["model_stats"][0]
        R.check(st["inference_stats"]["success"]["count"] == 4 and st["execution_count"] == 4,
                "get_inference_statistics counts the four successes")
    finally:
        client.close()
        R.check(d.stop() == 0, "daemon exits 0")
    return R.finish()


if __name__ == "__main__":
    sys.exit(main())
