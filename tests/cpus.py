#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""threads = 0 on the real kernel: the worker count follows the affinity
mask (taskset) and the CPU quota of a child cgroup the test makes (cgroup v2
cpu.max where the cpu controller is delegated, v1 cpu.cfs_quota_us where
the cpu hierarchy is v1), seen in the log and in atrousd_workers."""
import os
import re
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import ATROUSD, Daemon, Results  # noqa: E402

R = Results()
online = os.cpu_count()


def workers(d):
    st, _, body = d.request("GET", "/metrics")
    m = re.search(r"^atrousd_workers (\d+)$", body.decode(), re.M)
    return int(m.group(1)) if m else None


def run(prefix, what, want, why):
    """Start the daemon through prefix (a command line), check its workers."""
    wrapper = os.path.join(WORK, "start.sh")
    with open(wrapper, "w") as f:
        f.write("#!/bin/sh\n%s\nexec %s \"$@\"\n" % (prefix, ATROUSD))
    os.chmod(wrapper, 0o755)
    d = Daemon(env=dict(os.environ), launcher=wrapper)
    got = workers(d)
    log = d.log_text()
    d.stop()
    R.check(got == want and why in log, "%s: %s worker(s), want %d (%s)" % (what, got, want,
                                                                          re.search(r"workers: .*", log).group(0)))


WORK = os.path.realpath(os.environ.get("TMPDIR", "/tmp")) + "/atrousd-cpus.%d" % os.getpid()
os.makedirs(WORK)
d = Daemon()
R.check(workers(d) == len(os.sched_getaffinity(0)), "no limit: one worker per CPU of the affinity mask")
d.stop()
if online >= 2:
    run("taskset -c -p 0 $$ >/dev/null", "taskset -c 0", 1, "affinity 1 of %d online" % online)

# A child cgroup with a quota of half a CPU: one worker.
made = []
v2 = "/sys/fs/cgroup/unified" if os.path.exists("/sys/fs/cgroup/unified/cgroup.controllers") else "/sys/fs/cgroup"
v2_cpu = "cpu" in open(os.path.join(v2, "cgroup.controllers")).read().split() if os.path.exists(
    os.path.join(v2, "cgroup.controllers")) else False
v1 = next((p for p in ("/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct")
           if os.path.exists(os.path.join(p, "cpu.cfs_quota_us"))), None)
tried = 0
if v2_cpu and os.geteuid() == 0:
    cg = os.path.join(v2, "atrousd-test-%d" % os.getpid())
    try:
        with open(os.path.join(v2, "cgroup.subtree_control"), "w") as f:
            f.write("+cpu")
        os.mkdir(cg)
        made.append(cg)
        with open(os.path.join(cg, "cpu.max"), "w") as f:
            f.write("50000 100000")
        run("echo $$ > %s/cgroup.procs" % cg, "cgroup v2 cpu.max 50000 100000", 1, "cgroup CPU quota 0.50")
        tried += 1
    except OSError as e:
        print("# cgroup v2 cpu controller not usable here: %s" % e)
if v1 and os.geteuid() == 0:
    cg = os.path.join(v1, "atrousd-test-%d" % os.getpid())
    try:
        os.mkdir(cg)
        made.append(cg)
        with open(os.path.join(cg, "cpu.cfs_quota_us"), "w") as f:
            f.write("50000")
        run("echo $$ > %s/cgroup.procs" % cg, "cgroup v1 cpu.cfs_quota_us 50000 / 100000", 1,
            "cgroup CPU quota 0.50")
        tried += 1
    except OSError as e:
        print("# cgroup v1 cpu hierarchy not usable here: %s" % e)
for cg in reversed(made):
    try:
        os.rmdir(cg)
    except OSError:
        pass
if tried == 0:
    # Root on a kernel with a cpu controller is what CI has; elsewhere this is
    # a machine the test cannot exercise.
    R.check(not os.environ.get("CI"), "a cgroup with a CPU quota could be made (required under CI)")
shutil.rmtree(WORK, ignore_errors=True)
sys.exit(R.finish())
