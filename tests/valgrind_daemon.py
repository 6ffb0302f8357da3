#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The daemon under valgrind memcheck through every end of a request: a
reply, clients that reset or half-close while their job runs, a deadline,
gRPC calls (one past its deadline), and SIGTERM with a request in flight.
Any invalid access, or a definite or indirect leak, makes valgrind exit 99.
(--fair-sched: without it valgrind's scheduler can keep the connection
watcher waiting until the workers finish.)"""
import base64
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import ATROUSD, SRCDIR, Results, free_port, grpc_modules  # noqa: E402

R = Results()
rng = np.random.default_rng(3)


def tensor(*shape):
    return {"shape": list(shape), "b64": base64.b64encode(rng.standard_normal(shape).astype(np.float32).tobytes()).decode()}


def post(port, body, close=True):
    s = socket.create_connection(("127.0.0.1", port), timeout=600)
    s.sendall(b"POST /v1/atrous_conv2d HTTP/1.1\r\nHost: x\r\n%sContent-Length: %d\r\n\r\n"
              % (b"Connection: close\r\n" if close else b"", len(body)) + body)
    return s


def read_all(s):
    out = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return out
        out += chunk


def inflight(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=600)
    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    text = read_all(s).decode()
    s.close()
    return [float(l.split()[1]) for l in text.splitlines() if l.startswith("atrousd_inflight_requests ")][0]


def wait_inflight(port, busy, limit=120):
    """Until a request is in flight (busy) or none is."""
    end = time.monotonic() + limit
    while time.monotonic() < end and (inflight(port) >= 1) != busy:
        time.sleep(0.1)


def main():
    work = tempfile.mkdtemp(prefix="atrousd-vg.")
    port, gport = free_port(), free_port()
    log_path = os.path.join(work, "log")
    log = open(log_path, "w")
    p = subprocess.Popen(["valgrind", "-q", "--fair-sched=yes", "--error-exitcode=99", "--leak-check=full",
                          "--errors-for-leak-kinds=definite,indirect", ATROUSD, "--listen", "127.0.0.1:%d" % port,
                          "--grpc-listen", "127.0.0.1:%d" % gport, "--models", os.path.join(SRCDIR, "conf", "models"),
                          "--threads", "2", "--drain-timeout", "2"], stdout=log, stderr=subprocess.STDOUT)
    for _ in range(1200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    body = json.dumps({"value": tensor(1, 32, 32, 64), "filters": tensor(3, 3, 64, 64), "rate": 2,
                       "padding": "SAME"}).encode()
    s = post(port, body)
    R.check(read_all(s).startswith(b"HTTP/1.1 200"), "a computation is answered 200")
    s.close()
    for how in ("reset", "FIN"):
        s = post(port, body, close=False)
        wait_inflight(port, True)
        if how == "reset":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        else:
            s.shutdown(socket.SHUT_WR)
            s.settimeout(600)
            read_all(s)
        s.close()
        wait_inflight(port, False)
    late = json.loads(body)
    late["timeout_us"] = 200000
    s = post(port, json.dumps(late).encode())
    R.check(read_all(s).startswith(b"HTTP/1.1 504"), "a 200 ms deadline under valgrind -> 504")
    s.close()
    try:
        import grpc
        grpc_modules(work)
        import kserve_grpc_pb2 as pb
        import kserve_grpc_pb2_grpc as pbg
        st = pbg.GRPCInferenceServiceStub(grpc.insecure_channel("127.0.0.1:%d" % gport))
        x = rng.standard_normal((1, 16, 16, 8)).astype(np.float32)
        req = pb.ModelInferRequest(model_name="demo", raw_input_contents=[x.tobytes()], inputs=[
            pb.ModelInferRequest.InferInputTensor(name="input", datatype="FP32", shape=[1, 16, 16, 8])])
        R.check(len(st.ModelInfer(req, timeout=300).raw_output_contents[0]) == 16 * 16 * 6 * 4, "a gRPC call")
        try:
            st.ModelInfer(req, timeout=0.001)
            code = "OK"
        except grpc.RpcError as e:
            code = e.code().name
        R.check(code == "DEADLINE_EXCEEDED", "a gRPC call past its deadline -> %s" % code)
    except ImportError:
        R.check(not os.environ.get("CI"), "grpcio is installed (required under CI)")
    s = post(port, body)
    wait_inflight(port, True)
    p.send_signal(signal.SIGTERM)
    rc = p.wait(timeout=600)
    s.close()
    log.close()
    text = open(log_path).read()
    R.check(text.count(" 499 ") == 2, "the reset and the half-closed client are abandoned (499 logged twice)")
    R.check(rc == 0, "valgrind: no invalid access, no definite or indirect leak; exit %d" % rc)
    if rc != 0 or text.count(" 499 ") != 2:
        print(text[-3000:])
    return R.finish()


if __name__ == "__main__":
    sys.exit(main())
