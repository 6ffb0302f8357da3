#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""KServe v2 over gRPC against the real daemon, with grpcio clients generated
here from the project's own .proto files (as tritonclient.grpc's are from
the protocol's): every call, results against NumPy and against the REST API,
errors with their gRPC codes, deadlines (grpc-timeout), cancellation, the
queue limit, the admin token, TLS with ALPN h2 and client certificates, the
metrics and the log."""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import SRCDIR, Daemon, Results, close, free_port, grpc_modules  # noqa: E402
from kserve import demo_ref, infer, infer_body, parse_infer  # noqa: E402

import grpc  # noqa: E402

R = Results()
rng = np.random.default_rng(21)
TOKEN = "grpc-admin-token-0123456789abcdef"
WORK = tempfile.mkdtemp(prefix="atrousd-grpc.")


grpc_modules(WORK)
import health_pb2 as hpb  # noqa: E402
import health_pb2_grpc as hpbg  # noqa: E402
import kserve_grpc_pb2 as pb  # noqa: E402
import kserve_grpc_pb2_grpc as pbg  # noqa: E402


# tritonclient.grpc raises the message limits the same way.
LIMITS = [("grpc.max_send_message_length", 1 << 30), ("grpc.max_receive_message_length", 1 << 30)]


def channel(port):
    return grpc.insecure_channel("127.0.0.1:%d" % port, options=LIMITS)


def infer_request(model, x, raw=True, rid="", params=None, version=""):
    t = pb.ModelInferRequest.InferInputTensor(name="input", datatype="FP32", shape=list(x.shape))
    req = pb.ModelInferRequest(model_name=model, model_version=version, id=rid, inputs=[t])
    if raw:
        req.raw_input_contents.append(np.ascontiguousarray(x, "<f4").tobytes())
    else:
        req.inputs[0].contents.fp32_contents.extend(x.ravel().tolist())
    for k, v in (params or {}).items():
        req.parameters[k].int64_param = v
    return req


def output_of(resp):
    o = resp.outputs[0]
    return np.frombuffer(resp.raw_output_contents[0], "<f4").reshape(list(o.shape))


def code_of(fn):
    try:
        fn()
        return grpc.StatusCode.OK, ""
    except grpc.RpcError as e:
        return e.code(), e.details()


def metric(d, series):
    for line in d.request("GET", "/metrics")[2].decode().splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def heavy_model(root):
    """A model that takes a while: 3x3x256x256 at rate 2, sixteen layers."""
    d = os.path.join(root, "heavy")
    os.makedirs(d)
    np.save(os.path.join(d, "w.npy"), (0.02 * rng.standard_normal((3, 3, 256, 256))).astype(np.float32))
    with open(os.path.join(d, "model.json"), "w") as f:
        json.dump({"layers": [{"filters": {"npy": "w.npy"}, "rate": 2, "padding": "SAME"}] * 16}, f)


def test_calls(d, st, health):
    R.check(st.ServerLive(pb.ServerLiveRequest()).live, "ServerLive -> live")
    R.check(st.ServerReady(pb.ServerReadyRequest()).ready, "ServerReady -> ready")
    R.check(st.ModelReady(pb.ModelReadyRequest(name="demo")).ready and
            not st.ModelReady(pb.ModelReadyRequest(name="nosuch")).ready and
            not st.ModelReady(pb.ModelReadyRequest(name="demo", version="2")).ready,
            "ModelReady: demo ready; an unknown model or version not ready")
    meta = st.ServerMetadata(pb.ServerMetadataRequest())
    R.check(meta.name == "atrousd" and "model_repository" in meta.extensions, "ServerMetadata")
    mm = st.ModelMetadata(pb.ModelMetadataRequest(name="demo"))
    rest = json.loads(d.request("GET", "/v2/models/demo")[2])
    R.check(mm.name == "demo" and list(mm.versions) == ["1"] and mm.inputs[0].name == rest["inputs"][0]["name"]
            and list(mm.inputs[0].shape) == rest["inputs"][0]["shape"]
            and list(mm.outputs[0].shape) == rest["outputs"][0]["shape"],
            "ModelMetadata matches GET /v2/models/demo: %s" % list(mm.inputs[0].shape))
    R.check(health.Check(hpb.HealthCheckRequest()).status == hpb.HealthCheckResponse.SERVING and
            health.Check(hpb.HealthCheckRequest(service="inference.GRPCInferenceService")).status ==
            hpb.HealthCheckResponse.SERVING, "grpc.health.v1.Health/Check -> SERVING")
    R.check(code_of(lambda: health.Check(hpb.HealthCheckRequest(service="other")))[0] == grpc.StatusCode.NOT_FOUND,
            "Health/Check of another service -> NOT_FOUND")
    # Inference, raw and typed, against NumPy and against the REST API.
    x = rng.standard_normal((1, 9, 7, 8)).astype(np.float32)
    ref = demo_ref(x)
    resp = st.ModelInfer(infer_request("demo", x, rid="g-1"))
    got = output_of(resp)
    R.check(resp.model_name == "demo" and resp.model_version == "1" and resp.id == "g-1" and close(got, ref)
            and resp.outputs[0].datatype == "FP32" and "compute_us" in resp.parameters,
            "ModelInfer (raw_input_contents): correct, id echoed, timing in parameters")
    typed = output_of(st.ModelInfer(infer_request("demo", x, raw=False)))
    R.check(np.array_equal(typed, got), "ModelInfer with typed fp32_contents: the same output")
    body, headers = infer_body(x, binary_in=True, binary_out=True)
    sth, hdr, data = infer(d, "demo", body, headers)
    R.check(sth == 200 and np.array_equal(parse_infer(hdr, data)[1]["output"], got),
            "the same bytes as the REST binary path")
    # Many at once (tritonclient's async_infer: futures on one channel).
    xs = [rng.standard_normal((1, 6, 6, 8)).astype(np.float32) for _ in range(24)]
    futures = [st.ModelInfer.future(infer_request("demo", xi)) for xi in xs]
    R.check(all(close(output_of(f.result()), demo_ref(xi)) for f, xi in zip(futures, xs)),
            "24 concurrent calls (futures) on one connection, each its own answer")
    stats = st.ModelStatistics(pb.ModelStatisticsRequest(name="demo")).model_stats[0]
    rest = json.loads(d.request("GET", "/v2/models/demo/stats")[2])["model_stats"][0]
    R.check(stats.inference_count == rest["inference_count"] >= 27 and
            stats.inference_stats.success.count == rest["inference_stats"]["success"]["count"],
            "ModelStatistics matches the REST statistics (%d inferences)" % stats.inference_count)
    R.check(len(st.ModelStatistics(pb.ModelStatisticsRequest()).model_stats) >= 1, "ModelStatistics of every model")


def test_errors(d, st):
    x = rng.standard_normal((1, 5, 5, 8)).astype(np.float32)
    cases = [
        ("unknown model", lambda: st.ModelInfer(infer_request("nosuch", x)), grpc.StatusCode.NOT_FOUND),
        ("unknown version", lambda: st.ModelInfer(infer_request("demo", x, version="7")), grpc.StatusCode.NOT_FOUND),
        ("wrong channels", lambda: st.ModelInfer(infer_request("demo", x[..., :5])), grpc.StatusCode.INVALID_ARGUMENT),
        ("bytes not matching the shape", lambda: st.ModelInfer(pb.ModelInferRequest(
            model_name="demo", inputs=[pb.ModelInferRequest.InferInputTensor(name="input", datatype="FP32", shape=[1, 5, 5, 8])],
            raw_input_contents=[b"\0" * 12])), grpc.StatusCode.INVALID_ARGUMENT),
        ("FP64 input", lambda: st.ModelInfer(pb.ModelInferRequest(
            model_name="demo", inputs=[pb.ModelInferRequest.InferInputTensor(name="input", datatype="FP64", shape=[1, 1, 1, 8])],
            raw_input_contents=[b"\0" * 64])), grpc.StatusCode.INVALID_ARGUMENT),
        ("typed int contents", lambda: st.ModelInfer(pb.ModelInferRequest(
            model_name="demo", inputs=[pb.ModelInferRequest.InferInputTensor(
                name="input", datatype="FP32", shape=[1, 1, 1, 8], contents=pb.InferTensorContents(int_contents=[1] * 8))])),
         grpc.StatusCode.INVALID_ARGUMENT),
        ("two inputs", lambda: st.ModelInfer(pb.ModelInferRequest(
            model_name="demo", inputs=[pb.ModelInferRequest.InferInputTensor(name="input", datatype="FP32", shape=[1, 1, 1, 8])] * 2,
            raw_input_contents=[b"\0" * 32] * 2)), grpc.StatusCode.INVALID_ARGUMENT),
        ("a bad model name", lambda: st.ModelMetadata(pb.ModelMetadataRequest(name="../etc")), grpc.StatusCode.INVALID_ARGUMENT),
        ("metadata of an unknown model", lambda: st.ModelMetadata(pb.ModelMetadataRequest(name="nosuch")),
         grpc.StatusCode.NOT_FOUND),
        ("a negative timeout parameter", lambda: st.ModelInfer(infer_request("demo", x, params={"timeout": -5})),
         grpc.StatusCode.INVALID_ARGUMENT),
    ]
    for what, fn, want in cases:
        code, msg = code_of(fn)
        R.check(code == want, "%s -> %s (%s)" % (what, code.name, msg))
    ch = channel(d.grpc_port)
    code, _ = code_of(lambda: ch.unary_unary("/inference.GRPCInferenceService/ModelConfig")(b""))
    R.check(code == grpc.StatusCode.UNIMPLEMENTED, "a method not served -> UNIMPLEMENTED")
    code, msg = code_of(lambda: ch.unary_unary("/inference.GRPCInferenceService/ModelInfer")(b"\xff\xff\xff"))
    R.check(code == grpc.StatusCode.INVALID_ARGUMENT, "a malformed ModelInferRequest -> INVALID_ARGUMENT (%s)" % msg)
    ch.close()


def test_admin(d, st, root):
    code, _ = code_of(lambda: st.RepositoryIndex(pb.RepositoryIndexRequest()))
    R.check(code == grpc.StatusCode.UNAUTHENTICATED, "RepositoryIndex without a token -> UNAUTHENTICATED")
    code, _ = code_of(lambda: st.RepositoryIndex(pb.RepositoryIndexRequest(),
                                                 metadata=[("authorization", "Bearer wrong-token-000000000")]))
    R.check(code == grpc.StatusCode.UNAUTHENTICATED, "a wrong token -> UNAUTHENTICATED")
    auth = [("authorization", "Bearer " + TOKEN)]
    idx = st.RepositoryIndex(pb.RepositoryIndexRequest(), metadata=auth)
    R.check({m.name: m.state for m in idx.models}.get("demo") == "READY", "RepositoryIndex lists demo READY")
    # Load a model from files sent as bytes parameters, infer, unload.
    f = (0.5 * rng.standard_normal((3, 3, 8, 4))).astype(np.float32)
    npy = os.path.join(WORK, "f.npy")
    np.save(npy, f)
    config = json.dumps({"input": {"channels": 8}, "layers": [{"filters": {"npy": "f.npy"}, "rate": 2, "padding": "SAME"}]})
    req = pb.RepositoryModelLoadRequest(model_name="up")
    req.parameters["config"].string_param = "{}"  # Triton's config: not read
    req.parameters["file:model.json"].bytes_param = config.encode()
    req.parameters["file:f.npy"].bytes_param = open(npy, "rb").read()
    st.RepositoryModelLoad(req, metadata=auth)
    x = rng.standard_normal((1, 6, 6, 8)).astype(np.float32)
    from numpy_ref import reference
    got = output_of(st.ModelInfer(infer_request("up", x)))
    R.check(close(got, reference(x, f, 2, 2, "SAME")), "RepositoryModelLoad with files as bytes; the model infers correctly")
    R.check(os.path.exists(os.path.join(root, "up", "model.json")), "the loaded model is stored in the repository")
    # As tritonclient.grpc's unload_model sends it.
    unload = pb.RepositoryModelUnloadRequest(model_name="up")
    unload.parameters["unload_dependents"].bool_param = False
    st.RepositoryModelUnload(unload, metadata=auth)
    code, _ = code_of(lambda: st.ModelInfer(infer_request("up", x)))
    R.check(code == grpc.StatusCode.NOT_FOUND, "after RepositoryModelUnload the model is NOT_FOUND")
    idx = st.RepositoryIndex(pb.RepositoryIndexRequest(), metadata=auth)
    R.check({m.name: m.state for m in idx.models}.get("up") == "UNAVAILABLE", "the index says UNAVAILABLE")
    st.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name="up"), metadata=auth)
    R.check(st.ModelReady(pb.ModelReadyRequest(name="up")).ready, "RepositoryModelLoad without files reloads it")
    code, msg = code_of(lambda: st.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name="nosuch"), metadata=auth))
    R.check(code == grpc.StatusCode.NOT_FOUND, "loading a model not in the repository -> %s (%s)" % (code.name, msg))


def test_lifecycle(d, st):
    x = rng.standard_normal((1, 64, 64, 256)).astype(np.float32)
    t0 = time.monotonic()
    resp = st.ModelInfer(infer_request("heavy", x))
    c_ms = resp.parameters["compute_us"].int64_param / 1e3
    print("# heavy model: %.0f ms (client %.0f ms)" % (c_ms, (time.monotonic() - t0) * 1e3))
    before = metric(d, 'atrousd_requests_abandoned_total{endpoint="infer",reason="deadline"}')
    t0 = time.monotonic()
    code, msg = code_of(lambda: st.ModelInfer(infer_request("heavy", x), timeout=c_ms / 3e3))
    el = time.monotonic() - t0
    R.check(code == grpc.StatusCode.DEADLINE_EXCEEDED and el < c_ms / 1e3,
            "grpc-timeout of a third of the compute -> DEADLINE_EXCEEDED after %.0f ms" % (el * 1e3))
    time.sleep(0.2)
    R.check(metric(d, 'atrousd_requests_abandoned_total{endpoint="infer",reason="deadline"}') == before + 1,
            "the daemon abandoned it too (reason=deadline)")
    code, msg = code_of(lambda: st.ModelInfer(infer_request("heavy", x, params={"timeout": 1000})))
    R.check(code == grpc.StatusCode.DEADLINE_EXCEEDED and "deadline of 1000 us" in msg,
            "a 1 ms \"timeout\" parameter -> DEADLINE_EXCEEDED: %s" % msg)
    # A cancelled call (RST_STREAM) stops its job.
    before = metric(d, 'atrousd_requests_abandoned_total{endpoint="infer",reason="client_gone"}')
    fut = st.ModelInfer.future(infer_request("heavy", x))
    time.sleep(min(0.05, c_ms / 4e3))
    fut.cancel()
    c0 = cpu_seconds(d.proc.pid)
    time.sleep(1.0)
    cpu = cpu_seconds(d.proc.pid) - c0
    R.check(metric(d, 'atrousd_requests_abandoned_total{endpoint="infer",reason="client_gone"}') == before + 1
            and cpu < 0.1 + 0.1 * c_ms / 1e3,
            "a cancelled call is abandoned (client_gone +1; %.0f ms of CPU in the next second)" % (cpu * 1e3))


def test_queue_full(root):
    port = free_port()
    d = Daemon("--models", root, "--threads", "1", "--max-queue", "1", "--grpc-listen", "127.0.0.1:%d" % port)
    try:
        st = pbg.GRPCInferenceServiceStub(channel(port))
        x = rng.standard_normal((1, 64, 64, 256)).astype(np.float32)
        futures = [st.ModelInfer.future(infer_request("heavy", x)) for _ in range(6)]
        codes = [code_of(f.result)[0] for f in futures]
        R.check(grpc.StatusCode.UNAVAILABLE in codes and grpc.StatusCode.OK in codes and
                set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE},
                "a full queue -> UNAVAILABLE: %s" % sorted(c.name for c in codes))
    finally:
        R.check(d.stop() == 0, "daemon (queue full) exits 0")


def make_certs():
    def sh(cmd):
        subprocess.run(cmd, shell=True, cwd=WORK, check=True, capture_output=True)
    sh("openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=grpc-test-CA")
    for name, cn in (("srv", "localhost"), ("cli", "client")):
        sh("openssl req -newkey rsa:2048 -nodes -keyout %s.key -out %s.csr -subj /CN=%s" % (name, name, cn))
        with open(os.path.join(WORK, name + ".ext"), "w") as f:
            f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
        sh("openssl x509 -req -in %s.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out %s.pem -days 2 -extfile %s.ext"
           % (name, name, name))
    return {n: open(os.path.join(WORK, n), "rb").read() for n in ("ca.pem", "srv.pem", "srv.key", "cli.pem", "cli.key")}


def test_tls(root):
    if shutil.which("openssl") is None:
        R.check(not os.environ.get("CI"), "openssl is installed (required under CI)")
        return
    pem = make_certs()
    w = lambda n: os.path.join(WORK, n)  # noqa: E731
    for mutual in (False, True):
        port = free_port()
        args = ["--models", root, "--grpc-listen", "127.0.0.1:%d" % port, "--tls-cert", w("srv.pem"),
                "--tls-key", w("srv.key")] + (["--tls-ca", w("ca.pem")] if mutual else [])
        from harness import HTTPSDaemon
        d = HTTPSDaemon(*args, ca=w("ca.pem"), client_cert=(w("cli.pem"), w("cli.key")) if mutual else None)
        try:
            creds = grpc.ssl_channel_credentials(root_certificates=pem["ca.pem"],
                                                 private_key=pem["cli.key"] if mutual else None,
                                                 certificate_chain=pem["cli.pem"] if mutual else None)
            ch = grpc.secure_channel("127.0.0.1:%d" % port, creds,
                                     options=[("grpc.ssl_target_name_override", "localhost")])
            st = pbg.GRPCInferenceServiceStub(ch)
            x = rng.standard_normal((1, 5, 5, 8)).astype(np.float32)
            ok = close(output_of(st.ModelInfer(infer_request("demo", x))), demo_ref(x))
            R.check(ok, "gRPC over TLS (ALPN h2)%s: ModelInfer correct" % (" with a client certificate" if mutual else ""))
            if mutual:
                bare = grpc.secure_channel("127.0.0.1:%d" % port, grpc.ssl_channel_credentials(root_certificates=pem["ca.pem"]),
                                           options=[("grpc.ssl_target_name_override", "localhost")])
                code, _ = code_of(lambda: pbg.GRPCInferenceServiceStub(bare).ServerLive(pb.ServerLiveRequest(), timeout=5))
                R.check(code == grpc.StatusCode.UNAVAILABLE, "without a client certificate the handshake fails (%s)" % code.name)
            plain = channel(port)
            code, _ = code_of(lambda: pbg.GRPCInferenceServiceStub(plain).ServerLive(pb.ServerLiveRequest(), timeout=5))
            R.check(code == grpc.StatusCode.UNAVAILABLE, "plaintext HTTP/2 to the TLS listener fails (%s)" % code.name)
        finally:
            R.check(d.stop() == 0, "daemon (TLS%s) exits 0" % (", mutual" if mutual else ""))


def test_shutdown(root):
    port = free_port()
    d = Daemon("--models", root, "--threads", "1", "--drain-timeout", "1", "--grpc-listen", "127.0.0.1:%d" % port)
    st = pbg.GRPCInferenceServiceStub(channel(port))
    x = rng.standard_normal((1, 64, 64, 256)).astype(np.float32)
    # On one worker the heavy model takes 0.15-0.3 s a call: 24 of them are
    # several seconds of work, which the 1 s drain cannot finish (8 could,
    # on a fast machine).
    futures = [st.ModelInfer.future(infer_request("heavy", x)) for _ in range(24)]
    time.sleep(0.3)
    t0 = time.monotonic()
    d.proc.send_signal(signal.SIGTERM)
    rc = d.proc.wait(timeout=30)
    el = time.monotonic() - t0
    codes = [code_of(f.result)[0] for f in futures]
    R.check(rc == 0 and el < 4 and set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}
            and grpc.StatusCode.UNAVAILABLE in codes,
            "SIGTERM with 24 calls queued (drain_timeout 1 s): exit %d after %.1f s; %s"
            % (rc, el, sorted(c.name for c in codes)))
    d.stop()


def main():
    root = os.path.join(WORK, "models")
    shutil.copytree(os.path.join(SRCDIR, "conf", "models"), root)
    heavy_model(root)
    with open(os.path.join(WORK, "token"), "w") as f:
        f.write(TOKEN + "\n")
    port = free_port()
    d = Daemon("--models", root, "--threads", "2", "--grpc-listen", "127.0.0.1:%d" % port,
               "--admin-token-file", os.path.join(WORK, "token"))
    d.grpc_port = port
    try:
        ch = channel(port)
        st, health = pbg.GRPCInferenceServiceStub(ch), hpbg.HealthStub(ch)
        test_calls(d, st, health)
        test_errors(d, st)
        test_admin(d, st, root)
        test_lifecycle(d, st)
        ok = metric(d, 'atrousd_grpc_requests_total{endpoint="infer",code="OK"}')
        nf = metric(d, 'atrousd_grpc_requests_total{endpoint="infer",code="NOT_FOUND"}')
        R.check(ok >= 27 and nf >= 2, "metrics: atrousd_grpc_requests_total{infer, OK} %d, {infer, NOT_FOUND} %d" % (ok, nf))
        log = d.log_text()
        R.check("GRPC /inference.GRPCInferenceService/ModelInfer 0 " in log and "gRPC on 127.0.0.1:%d" % port in log,
                "the request log names gRPC calls and their status")
        ch.close()
    finally:
        R.check(d.stop() == 0, "daemon exits 0 (no sanitizer report)")
    test_queue_full(root)
    test_tls(root)
    test_shutdown(root)
    shutil.rmtree(WORK, ignore_errors=True)
    return R.finish()


if __name__ == "__main__":
    sys.exit(main())
