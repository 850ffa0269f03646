#!/usr/bin/env python3
"""A/B of keel builds: the `run` lifecycle of /bin/true (create, start, wait,
delete) timed with the builds and crun interleaved, wall and CPU time (user
+ system of the runtime and all it reaped), peak RSS of `run` (GNU time's,
the largest of 5) and binary size. For comparing two builds of keel
on a loaded machine: read the ratios to the first build, not the times.

Usage (as root): bench/ab.py N NAME=BINARY [NAME=BINARY ...] [crun=/usr/bin/crun]
e.g. bench/ab.py 100 before=/tmp/keel-old after="$(scripts/release.sh)" crun=/usr/bin/crun

Each build runs in a private mount namespace (this script re-runs itself
under `unshare -m`) from one busybox bundle (`keel spec` of the first build,
no network namespace, a cgroupsPath under /keel-ab). crun 1.8 refuses a
hybrid cgroup host, so it runs in a second private mount namespace whose
/sys/fs/cgroup holds only the host's v1 hierarchies (it manages the same v1
controllers as keel does there; nothing is mounted on the host). Everything
is made under a temporary directory and removed at the end, containers are
deleted by their runtimes (`run` does), and the /keel-ab cgroups removed.
"""

import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CGROUP_PARENT = "keel-ab"
V1_ONLY = """set -e
save=$(mktemp -d); mount --rbind /sys/fs/cgroup "$save"
mount -t tmpfs -o mode=755 tmpfs /sys/fs/cgroup
for d in "$save"/*; do
  n=$(basename "$d")
  [ "$n" = unified ] || [ -L "$d" ] || ! mountpoint -q "$d" && continue
  mkdir "/sys/fs/cgroup/$n"; mount --bind "$d" "/sys/fs/cgroup/$n"
done
umount -l "$save"; rmdir "$save"
"""


def command(tmp, name, binary):
    extra = ["--cgroup-manager=disabled"] if name == "crun" else []
    return [binary, *extra, "--root", f"{tmp}/state-{name}", "run", "--bundle", f"{tmp}/bundle", "ab"]


def cpu_s():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_once(cmd):
    """Wall time and CPU time (user + system of the runtime and everything
    it reaped) in ms: CPU time is what a loaded machine does not blur."""
    c0, t0 = cpu_s(), time.perf_counter()
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ms, cpu = (time.perf_counter() - t0) * 1000, (cpu_s() - c0) * 1000
    if p.returncode:
        raise SystemExit(f"{cmd[0]}: exit {p.returncode}: {p.stderr.decode(errors='replace').strip()}")
    return ms, cpu


def peak_rss_kib(tmp, cmd):
    report = f"{tmp}/rss"
    subprocess.run(["/usr/bin/time", "-f", "%M", "-o", report, *cmd],
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, check=True)
    with open(report) as f:
        return int(f.read().split()[-1])


def crun_server(tmp, binary):
    """In its own mount namespace: runs crun on request ("run" or "rss")."""
    subprocess.run(["mount", "--make-rprivate", "/"], check=True)
    subprocess.run(["sh", "-c", V1_ONLY], check=True)
    cmd = command(tmp, "crun", binary)
    for line in sys.stdin:
        print(peak_rss_kib(tmp, cmd) if line.strip() == "rss" else "%f %f" % run_once(cmd), flush=True)


def make_bundle(tmp, keel):
    bundle = f"{tmp}/bundle"
    os.makedirs(bundle)
    subprocess.run(["bash", "-c", f'source "{HERE}/../scripts/common.sh" && make_busybox_rootfs "$1"',
                    "bash", f"{bundle}/rootfs"], check=True)
    subprocess.run([keel, "spec"], cwd=bundle, check=True)
    with open(f"{bundle}/config.json") as f:
        c = json.load(f)
    c["ociVersion"] = "1.0.2"  # crun 1.8 refuses 1.2.0
    c["process"]["terminal"] = False
    c["process"]["args"] = ["/bin/true"]
    c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "network"]
    c["linux"]["cgroupsPath"] = f"/{CGROUP_PARENT}/ab"
    with open(f"{bundle}/config.json", "w") as f:
        json.dump(c, f)


def main(n, builds):
    tmp = tempfile.mkdtemp(prefix="keel-ab.")
    server = None
    try:
        subprocess.run(["mount", "--make-rprivate", "/"], check=True)
        make_bundle(tmp, next(b for name, b in builds.items() if name != "crun"))
        if "crun" in builds:
            server = subprocess.Popen(["unshare", "-m", "--", sys.executable, __file__, "--crun-server", tmp, builds["crun"]],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

        def ask(what):
            server.stdin.write(what + "\n")
            server.stdin.flush()
            return [float(x) for x in server.stdout.readline().split()]

        def once(name):
            return tuple(ask("run")) if name == "crun" else run_once(command(tmp, name, builds[name]))

        times = {name: [] for name in builds}
        cpus = {name: [] for name in builds}
        for name in builds:  # warm-up: page cache, dentries
            once(name)
        for _ in range(n):
            for name in builds:
                ms, cpu = once(name)
                times[name].append(ms)
                cpus[name].append(cpu)
        rss = {}
        for name, binary in builds.items():
            rss[name] = max(int(ask("rss")[0]) if name == "crun" else peak_rss_kib(tmp, command(tmp, name, binary))
                            for _ in range(5))
        first = next(iter(builds))
        wall0, cpu0 = statistics.median(times[first]), statistics.median(cpus[first])
        print(f"N={n}, load average {' '.join(open('/proc/loadavg').read().split()[:3])}")
        print(f"{'':14} {'size MB':>8} {'RSS MB':>7} {'run median ms':>14} {'min ms':>7} {'x first':>8}"
              f" {'CPU ms':>7} {'x first':>8}")
        for name, binary in builds.items():
            m, c = statistics.median(times[name]), statistics.median(cpus[name])
            print(f"{name:14} {os.path.getsize(binary) / 1e6:8.2f} {rss[name] * 1024 / 1e6:7.2f} "
                  f"{m:14.2f} {min(times[name]):7.2f} {m / wall0:8.3f} {c:7.2f} {c / cpu0:8.3f}")
    finally:
        if server:
            server.stdin.close()
            server.wait()
        shutil.rmtree(tmp, ignore_errors=True)
        for hierarchy in os.listdir("/sys/fs/cgroup"):
            d = os.path.join("/sys/fs/cgroup", hierarchy, CGROUP_PARENT)
            if os.path.isdir(d):
                try:
                    os.rmdir(d)
                except OSError as e:
                    print(f"warning: could not remove {d}: {e}", file=sys.stderr)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--crun-server"]:
        crun_server(sys.argv[2], sys.argv[3])
    elif os.environ.get("KEEL_AB_INNER") != "1":
        os.execvp("unshare", ["unshare", "-m", "--", "env", "KEEL_AB_INNER=1", sys.executable, *sys.argv])
    else:
        if len(sys.argv) < 3 or not sys.argv[1].isdigit():
            sys.exit(__doc__)
        main(int(sys.argv[1]), dict(a.split("=", 1) for a in sys.argv[2:]))
