#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The layering of the sources, checked on the built objects and the includes.

- libcore's objects reference no jansson, libmicrohttpd, inih or libsystemd
  symbol, and no symbol that libserve defines;
- no circle of calls between source files (file A calls B and B calls A,
  directly or through others), over both libraries;
- no core source includes a serve header or a serve library's header, and
  no circle of includes (a core source's code template, named after it as
  conv_direct.h is after conv.c, is a core header).
"""
import os
import re
import subprocess
import sys

SRC = os.environ.get("top_srcdir", os.path.join(os.path.dirname(__file__), ".."))
BUILD = os.environ.get("top_builddir", SRC)
LIBS = {"core": os.path.join(BUILD, "src/.libs/libcore.a"),
        "serve": os.path.join(BUILD, "src/.libs/libserve.a")}
FOREIGN = re.compile(r"^(json_|jansson_|MHD_|sd_|ini_|protobuf_c_|gnutls_)")
fails = passes = 0


def check(ok, what, detail=""):
    global fails, passes
    print(("ok - " if ok else "not ok - ") + what)
    passes += ok
    if not ok:
        fails += 1
        if detail:
            print("# " + detail)


def objects(lib):
    """{module: (defined, undefined)} of one archive."""
    out = subprocess.run(["nm", "-A", lib], capture_output=True, text=True, check=True).stdout
    mods = {}
    for line in out.splitlines():
        m = re.match(r"^[^:]*:lib[a-z]+_la-([a-z][a-z.-]*)\.o:\s*([0-9a-f]*)\s+(\w)\s+(\S+)$", line)
        if not m:
            continue
        mod, _, kind, sym = m.groups()
        d, u = mods.setdefault(mod, (set(), set()))
        if kind == "U":
            u.add(sym)
        elif kind.isupper():
            d.add(sym)
    return mods


def cycles(graph):
    """Strongly connected components of more than one node (Tarjan)."""
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


for name, lib in LIBS.items():
    if not os.path.exists(lib):
        check(False, "%s is built" % lib)
        sys.exit(1)
core = objects(LIBS["core"])
# libtool copies the convenience library libcore into libserve: serve's own
# objects are the others.
serve = {m: v for m, v in objects(LIBS["serve"]).items() if m not in core}
check(len(core) >= 10 and len(serve) >= 10, "both libraries read (%d core, %d serve objects)"
      % (len(core), len(serve)))

foreign = sorted("%s:%s" % (m, s) for m, (_, u) in core.items() for s in u if FOREIGN.match(s))
check(not foreign, "no core object references jansson, libmicrohttpd, inih, libsystemd, protobuf-c or GnuTLS",
      " ".join(foreign[:10]))

serve_defs = {s: m for m, (d, _) in serve.items() for s in d}
upward = sorted("%s->%s:%s" % (m, serve_defs[s], s) for m, (_, u) in core.items()
                for s in u if s in serve_defs)
check(not upward, "no core object calls into libserve", " ".join(upward[:10]))

defs = {}
for mods in (core, serve):
    for m, (d, _) in mods.items():
        for s in d:
            defs[s] = m
calls = {}
for mods in (core, serve):
    for m, (_, u) in mods.items():
        calls[m] = {defs[s] for s in u if s in defs and defs[s] != m}
circles = cycles(calls)
check(not circles, "no circle of calls between source files (%d files, %d edges)"
      % (len(calls), sum(len(v) for v in calls.values())), str(circles))

# Includes, from the sources.
core_mods = set(core)
inc = {}
for f in sorted(os.listdir(os.path.join(SRC, "src"))):
    if not f.endswith((".c", ".h")):
        continue
    with open(os.path.join(SRC, "src", f)) as fh:
        text = fh.read()
    inc[f] = set(re.findall(r'^#include "([a-z_]+\.h)"', text, re.M)) - {"autoconfig.h"}
    if f[:-2] in core_mods or (f.endswith(".h") and f[:-2] in core_mods):
        bad = sorted(h for h in inc[f] if h[:-2] not in core_mods and
                     h[:-2].split("_")[0] not in core_mods)
        bad += re.findall(r"^#include <(jansson|microhttpd|systemd/[a-z-]+|ini)\.h>", text, re.M)
        check(not bad, "%s includes only core headers" % f, " ".join(bad))
hdr = {f: {h for h in v if h in inc} for f, v in inc.items() if f.endswith(".h")}
circles = cycles(hdr)
check(not circles, "no circle of includes between headers", str(circles))

print("%d passed, %d failed" % (passes, fails))
sys.exit(1 if fails else 0)
