#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""docs/import.md, run as written: its Python export, then its shell blocks
in one shell (the daemon it starts on 127.0.0.1:8080 is moved to a free port,
the only change).  The tritonclient block is not run: Debian does not
package tritonclient; tests/onnx_import.py issues the requests it makes."""
import json
import os
import re
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import BUILDDIR, SRCDIR, Results, free_port  # noqa: E402

R = Results()
text = open(os.path.join(SRCDIR, "docs", "import.md")).read()
blocks = re.findall(r"^```(sh|python)\n(.*?)^```", text, re.M | re.S)
R.check(len(blocks) == 5, "docs/import.md has its five code blocks (%d)" % len(blocks))
work = tempfile.mkdtemp(prefix="atrousd-doc.")
port = free_port()
script = ["set -e"]
for lang, code in blocks:
    code = code.replace("localhost:8080", "localhost:%d" % port).replace("127.0.0.1:8080", "127.0.0.1:%d" % port)
    if lang == "python" and "tritonclient" in code:
        continue
    if lang == "python":
        name = re.match(r"# (\S+\.py)", code).group(1)
        with open(os.path.join(work, name), "w") as f:
            f.write(code)
        script.append("python3 %s" % name)
    else:
        script.append(code)
with open(os.path.join(work, "doc.sh"), "w") as f:
    f.write("\n".join(script) + "\n")
env = dict(os.environ, PATH=os.path.join(BUILDDIR, "src") + ":/usr/bin:/bin:" + os.environ.get("PATH", ""))
p = subprocess.run(["sh", "doc.sh"], cwd=work, env=env, capture_output=True, text=True, timeout=600)
out = p.stdout
if p.returncode != 0:
    print("# " + (p.stdout + p.stderr)[-2000:].replace("\n", "\n# "))
    subprocess.run("kill $(cat atrousd.pid) 2>/dev/null", shell=True, cwd=work)
R.check(p.returncode == 0, "every command of docs/import.md runs as written (exit %d)" % p.returncode)
R.check("3 layer(s), input \"features\" [N,2048,H,W], output \"logits\" [N,21,H,W]" in out,
        "atrous import reports the DeepLab head's layers and NCHW edges")
R.check('"shape":[-1,2048,-1,-1]' in out and '"shape":[-1,21,-1,-1]' in out,
        "the metadata shows NCHW shapes")
try:
    n = int(open(os.path.join(work, "request.len")).read())
    reply = open(os.path.join(work, "reply.bin"), "rb").read()
    hl = int(re.search(r"(?i)inference-header-content-length: (\d+)", open(os.path.join(work, "reply.headers")).read()).group(1))
    meta = json.loads(reply[:hl])
    y = np.frombuffer(reply[hl:], "<f4")
    ok = meta["outputs"][0]["shape"] == [1, 21, 33, 33] and y.size == 21 * 33 * 33 and np.isfinite(y).all()
except (OSError, ValueError, AttributeError, KeyError) as e:
    print("# %s" % e)
    ok = False
R.check(ok, "the binary reply holds [1,21,33,33] finite logits")
R.check('"name":"deeplab_os16","state":"READY"' in out and '"name":"deeplab_os16","version":"1","state":"READY"' in out,
        "the repository load and index answer as documented")
R.check('"name":"deeplab_os16","state":"UNAVAILABLE"' in out, "the unload answers as documented")
subprocess.run(["rm", "-rf", work])
sys.exit(R.finish())
