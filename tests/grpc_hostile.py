#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Hostile HTTP/2 and gRPC framing against the real daemon's gRPC listener,
with frames made by hand (hyperframe, hpack): bad length prefixes, compressed
and malformed messages, oversized messages and headers, wrong content types,
too many streams, the "rapid reset" attack (CVE-2023-44487), PING floods
from a client that does not read, garbage, idle and stalled connections.
After each, the daemon still answers; at the end it exits 0 (under the
sanitizer build: without a report)."""
import os
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import SRCDIR, Daemon, Results, free_port  # noqa: E402

from hpack import Decoder, Encoder  # noqa: E402
from hyperframe.frame import (DataFrame, Frame, GoAwayFrame, HeadersFrame, PingFrame,  # noqa: E402
                              RstStreamFrame, SettingsFrame)

R = Results()
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
LIVE = "/inference.GRPCInferenceService/ServerLive"
INFER = "/inference.GRPCInferenceService/ModelInfer"


class Conn:
    """A raw HTTP/2 client connection."""

    def __init__(self, port, timeout=5):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.enc = Encoder()
        self.dec = Decoder()  # one per connection: HPACK's table is shared
        self.buf = b""
        self.s.sendall(PREFACE + SettingsFrame(0).serialize())
        # The server's SETTINGS (its windows and limits), acknowledged.
        self.frames(lambda f: isinstance(f, SettingsFrame) and "ACK" not in f.flags, 2)

    def headers(self, sid, path, ctype="application/grpc", end=False, extra=()):
        hs = [(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "x"),
              ("content-type", ctype), ("te", "trailers")] + list(extra)
        f = HeadersFrame(sid, self.enc.encode(hs), flags=["END_HEADERS"] + (["END_STREAM"] if end else []))
        return f.serialize()

    def call(self, sid, path, payload, ctype="application/grpc", extra=()):
        data = DataFrame(sid, payload, flags=["END_STREAM"]).serialize() if len(payload) < 16000 else b"".join(
            DataFrame(sid, payload[i:i + 16000], flags=["END_STREAM"] if i + 16000 >= len(payload) else []).serialize()
            for i in range(0, len(payload), 16000))
        self.s.sendall(self.headers(sid, path, ctype, extra=extra) + data)

    def frames(self, until, limit=5.0):
        """Read frames until until(frame) is true; returns them all, or None at EOF."""
        got, end = [], time.monotonic() + limit
        while time.monotonic() < end:
            while len(self.buf) >= 9:
                f, length = Frame.parse_frame_header(memoryview(self.buf[:9]))
                if len(self.buf) < 9 + length:
                    break
                f.parse_body(memoryview(self.buf[9:9 + length]))
                self.buf = self.buf[9 + length:]
                if isinstance(f, HeadersFrame):
                    f.decoded = dict(self.dec.decode(f.data))
                if isinstance(f, SettingsFrame) and "ACK" not in f.flags:
                    self.s.sendall(SettingsFrame(0, flags=["ACK"]).serialize())
                got.append(f)
                if until(f):
                    return got
            try:
                chunk = self.s.recv(65536)
            except (socket.timeout, ConnectionResetError):
                return got
            if not chunk:
                return got
            self.buf += chunk
        return got

    def status(self, sid):
        """The grpc-status (or :status when not 200) of stream sid, or 'reset'."""
        fs = self.frames(lambda f: f.stream_id == sid and ("END_STREAM" in f.flags or isinstance(f, RstStreamFrame))
                         or isinstance(f, GoAwayFrame))
        result = None
        for f in fs:
            if isinstance(f, HeadersFrame):
                h = f.decoded
                if f.stream_id != sid:
                    continue
                if h.get(":status", "200") != "200":
                    return "http " + h[":status"]
                if "grpc-status" in h:
                    result = (int(h["grpc-status"]), h.get("grpc-message", ""))
            elif isinstance(f, RstStreamFrame) and f.stream_id == sid:
                return "reset %d" % f.error_code
            elif isinstance(f, GoAwayFrame):
                result = result or "goaway %d" % f.error_code
        return result

    def closed(self, limit=5.0):
        """True when the server closes the connection within limit seconds."""
        end = time.monotonic() + limit
        self.s.settimeout(0.5)
        while time.monotonic() < end:
            try:
                if self.s.recv(65536) == b"":
                    return True
            except socket.timeout:
                continue
            except (ConnectionResetError, BrokenPipeError):
                return True
        return False

    def close(self):
        self.s.close()


def frame(msg, flag=0, length=None):
    return struct.pack(">BI", flag, len(msg) if length is None else length) + msg


def live(port):
    """ServerLive on a fresh connection: the daemon still serves."""
    c = Conn(port)
    c.call(1, LIVE, frame(b""))
    st = c.status(1)
    c.close()
    return st == (0, "") or (isinstance(st, tuple) and st[0] == 0)


def infer_msg(shape_bytes):
    """A ModelInferRequest for the demo model, written by hand (protobuf)."""
    def field(num, wt, payload):
        key = bytes([num << 3 | wt])
        if wt == 2:
            n, out = len(payload), b""
            while True:
                b = n & 0x7f
                n >>= 7
                out += bytes([b | (0x80 if n else 0)])
                if not n:
                    break
            return key + out + payload
        return key + payload
    tensor = field(1, 2, b"input") + field(2, 2, b"FP32") + field(3, 2, bytes([1, 1, 1, 8]))
    return field(1, 2, b"demo") + field(5, 2, tensor) + field(7, 2, shape_bytes)


def framing(port):
    c = Conn(port)
    cases = [
        ("a 3-byte message (no length prefix)", b"\x00\x00\x00", 3),
        ("a prefix of 100 bytes with 10 sent", frame(b"x" * 10, length=100), 3),
        ("two messages in a unary call", frame(b"") + frame(b""), 3),
        ("the compressed flag", frame(b"abc", flag=1), 12),
        ("a malformed protobuf", frame(b"\x0a\xff\xff\xff\xff\x0f"), 3),
        ("a valid ModelInfer (control)", frame(infer_msg(b"\0" * 32)), 0),
    ]
    sid = 1
    for what, payload, want in cases:
        c.call(sid, INFER, payload)
        st = c.status(sid)
        R.check(isinstance(st, tuple) and st[0] == want, "%s -> %s" % (what, st))
        sid += 2
    c.close()
    c = Conn(port)
    sid = 1
    c.call(sid, INFER, frame(b"\0" * (1 << 20) + b"\0" * 64)[:900000])
    st = c.status(sid)
    R.check(isinstance(st, tuple) and st[0] == 3, "a message cut short by END_STREAM -> INVALID_ARGUMENT (%s)" % (st,))
    sid += 2
    c.call(sid, INFER, frame(b""), ctype="text/plain")
    R.check(c.status(sid) == "http 415", "content-type text/plain -> HTTP 415")
    sid += 2
    c.call(sid, "/inference.GRPCInferenceService/Nope", frame(b""))
    st = c.status(sid)
    R.check(isinstance(st, tuple) and st[0] == 12, "an unknown method -> UNIMPLEMENTED")
    sid += 2
    c.s.sendall(c.headers(sid, LIVE, extra=[("x-big", "v" * 20000)]) + DataFrame(sid, frame(b""), flags=["END_STREAM"]).serialize())
    st = c.status(sid)
    R.check(isinstance(st, str) and (st.startswith("reset") or st.startswith("goaway")),
            "20 KB of headers -> the stream is refused (%s)" % st)
    c.close()
    R.check(live(port), "still serving after the framing cases")


def oversized(port):
    """A message over max_body, from a client that follows flow control."""
    import grpc
    ch = grpc.insecure_channel("127.0.0.1:%d" % port, options=[("grpc.max_send_message_length", 1 << 30)])
    try:
        ch.unary_unary(INFER)(b"\x0a" + b"\x80\x80\x80\x01" + b"\0" * (2 << 20), timeout=20)
        code = "OK"
    except grpc.RpcError as e:
        code = e.code().name
    ch.close()
    R.check(code == "RESOURCE_EXHAUSTED", "a 2 MiB message over max_body 1M -> %s" % code)


def too_many_streams(port):
    c = Conn(port)
    # Twelve requests left open (no END_STREAM) against grpc_max_streams 8.
    c.s.sendall(b"".join(c.headers(1 + 2 * i, LIVE) for i in range(12)))
    fs = c.frames(lambda f: False, 1.5)
    refused = [f for f in fs if isinstance(f, RstStreamFrame) and f.error_code == 7]
    goaway = [f for f in fs if isinstance(f, GoAwayFrame) and f.error_code == 1]
    # nghttp2 refuses streams past a limit the client has not acknowledged
    # yet, and ends the connection (PROTOCOL_ERROR) past one it has.
    R.check(len(refused) >= 4 or (goaway and goaway[0].last_stream_id <= 15),
            "12 open streams against grpc_max_streams 8: %s" % (
                "%d refused (REFUSED_STREAM)" % len(refused) if refused else
                "GOAWAY PROTOCOL_ERROR after stream %d" % goaway[0].last_stream_id if goaway else "accepted"))
    c.close()
    R.check(live(port), "still serving after too many streams")


def rapid_reset(port, pid):
    # Control: a hundred resets (under the burst of 200) are a client's right.
    c = Conn(port)
    c.s.sendall(b"".join(c.headers(1 + 2 * i, LIVE) + RstStreamFrame(1 + 2 * i, error_code=8).serialize()
                         for i in range(100)))
    c.call(201, LIVE, frame(b""))
    st = c.status(201)
    R.check(isinstance(st, tuple) and st[0] == 0, "100 resets, then a call on the same connection -> OK")
    c.close()
    c = Conn(port)
    t0 = cpu(pid)
    burst = b"".join(c.headers(1 + 2 * i, LIVE) + RstStreamFrame(1 + 2 * i, error_code=8).serialize()
                     for i in range(5000))
    try:
        c.s.sendall(burst)
    except (BrokenPipeError, ConnectionResetError):
        pass
    fs = c.frames(lambda f: isinstance(f, GoAwayFrame), 5)
    goaway = [f for f in fs if isinstance(f, GoAwayFrame)]
    # nghttp2's reset rate limit ends the session with INTERNAL_ERROR.
    R.check(goaway and goaway[0].error_code in (2, 11),
            "rapid reset (5000 HEADERS + RST_STREAM): GOAWAY %s" % (goaway[0].error_code if goaway else None))
    R.check(c.closed(5), "... and the connection is closed")
    c.close()
    R.check(live(port) and cpu(pid) - t0 < 2.0, "still serving; %.2f s of CPU for the attack" % (cpu(pid) - t0))


def ping_flood(port):
    c = Conn(port, timeout=10)
    stop = threading.Event()
    sent = [0]

    def flood():
        ping = PingFrame(0, opaque_data=b"12345678").serialize() * 1000
        try:
            while not stop.is_set():
                c.s.sendall(ping)
                sent[0] += 1000
        except OSError:
            pass

    t = threading.Thread(target=flood)
    t.start()
    t0 = time.monotonic()
    ok_during = live(port)
    t.join(timeout=15)
    stop.set()
    el = time.monotonic() - t0
    R.check(ok_during, "others are served during a PING flood from a client that does not read")
    R.check(not t.is_alive() and el < 12,
            "the flooding connection is closed (%d PINGs sent, %.1f s)" % (sent[0], el))
    c.close()


def garbage(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(PREFACE + b"\x00\x00\x04\x09\x00\x00\x00\x00\x00garbage-garbage")
    closed = False
    try:
        while True:
            d = s.recv(65536)
            if not d:
                closed = True
                break
    except (socket.timeout, ConnectionResetError):
        closed = False
    R.check(closed, "a bad frame after the preface: GOAWAY and close")
    s.close()
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        d = s.recv(65536)
        while d:
            d = s.recv(65536)
        closed = True
    except (socket.timeout, ConnectionResetError):
        closed = False
    R.check(closed, "HTTP/1.1 on the gRPC port: closed")
    s.close()


def idle_and_stalled(port):
    idle = Conn(port)
    stalled = Conn(port)
    stalled.s.sendall(HeadersFrame(1, stalled.enc.encode([(":method", "POST"), (":path", LIVE)])).serialize())
    t0 = time.monotonic()
    a, b = idle.closed(6), stalled.closed(6)
    R.check(a and b, "an idle connection and one stalled mid-headers are closed after connection_timeout "
            "(2 s; %.1f s)" % (time.monotonic() - t0))
    idle.close()
    stalled.close()


def cpu(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    port = free_port()
    d = Daemon("--models", os.path.join(SRCDIR, "conf", "models"), "--grpc-listen", "127.0.0.1:%d" % port,
               "--max-body", "1M", "--grpc-max-streams", "8", "--connection-timeout", "2")
    try:
        framing(port)
        oversized(port)
        too_many_streams(port)
        rapid_reset(port, d.proc.pid)
        ping_flood(port)
        garbage(port)
        idle_and_stalled(port)
        R.check(live(port), "still serving after everything")
    finally:
        R.check(d.stop() == 0, "daemon exits 0 (no sanitizer report)")
    return R.finish()


if __name__ == "__main__":
    sys.exit(main())
