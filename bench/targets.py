#!/usr/bin/env python3
"""Measures the targets of issues #9 and #18 against crun (and runc) in one
run, in the configurations engines send, and prints medians, ratios, the
floor (the same namespaces made by `unshare`, no runtime) and a PASS/MISS
line per target.

Started by bench/bench.sh inside its wrapper (private mount namespace,
sandboxed /sys/fs/cgroup); not meant to be run directly. Everything it
creates lives under $BENCH_TMP (state roots, bundles) and the cgroup
$BENCH_CGROUP_BASE; every container it creates is deleted by id at the end,
also on failure.

Environment: BENCH_TMP, BENCH_N (repetitions per timed operation),
BENCH_CONCURRENT (containers in the concurrent round, 50), BENCH_SCALE
(other containers in the scale test, 1000), BENCH_CGROUP_BASE, BENCH_ID_PREFIX
(of the ids of containers without a cgroupsPath: their cgroups are named
after them), BENCH_KEEL, BENCH_KEEL_RO, BENCH_RUNC, BENCH_CRUN (a runtime
whose variable is empty is skipped); BENCH_CONFIGS (a comma-separated subset
of CONFIGS' names to time `run` in; default all).
"""

import concurrent.futures
import copy
import json
import os
import resource
import signal
import statistics
import struct
import subprocess
import sys
import time

TMP = os.environ["BENCH_TMP"]
N = int(os.environ.get("BENCH_N", "20"))
CONCURRENT = int(os.environ.get("BENCH_CONCURRENT", "50"))
SCALE = int(os.environ.get("BENCH_SCALE", "1000"))
ROUNDS = 3  # of the concurrent batch
CGROUP_BASE = os.environ["BENCH_CGROUP_BASE"]
ID_PREFIX = os.environ.get("BENCH_ID_PREFIX", "bench")
BIN = {
    name: os.environ.get(var, "")
    for name, var in (
        ("keel", "BENCH_KEEL"),
        ("keel-ro", "BENCH_KEEL_RO"),
        ("runc", "BENCH_RUNC"),
        ("crun", "BENCH_CRUN"),
    )
}
BIN = {k: v for k, v in BIN.items() if v}
# The runtimes compared on every target; keel-ro only on `run`, where
# keel/keel-ro is the price of the binary protection.
RUNTIMES = [r for r in ("keel", "runc", "crun") if r in BIN]

MB = 1_000_000
RSS_GOAL = 2.5 * MB
SIZE_GOAL = 3 * MB
# "The same time with 1 or 1000 others": the median with SCALE others may
# exceed the one with a single other by this much (timing noise on a
# shared machine) and still count as the same.
SCALE_TOLERANCE = 1.25

created = {name: set() for name in BIN}  # ids to delete at the end


def log(msg):
    print(f"==> {msg}", file=sys.stderr, flush=True)


def runtime(name, *args, check=True, capture=False):
    """Runs one runtime command; returns its wall time in ms and the
    completed process (with stdout when `capture`). Not pipes otherwise:
    a container's init inherits them and would hold them open."""
    cmd = [BIN[name], "--root", os.path.join(TMP, f"state-{name}"), *args]
    with open(os.path.join(TMP, "stderr"), "w+b") as err:
        t0 = time.perf_counter()
        p = subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
            stderr=err,
        )
        ms = (time.perf_counter() - t0) * 1000
        if check and p.returncode != 0:
            err.seek(0)
            raise RuntimeError(f"{' '.join(cmd)}: exit {p.returncode}: {err.read().decode(errors='replace').strip()}")
    return ms, p


def timed(name, *args):
    return runtime(name, *args)[0]


_base_config = None

# Docker 20.10's defaults where they differ from `runc spec`'s (moby's
# oci/defaults.go and daemon/oci_linux.go).
DOCKER_CAPS = ["CAP_" + c for c in (
    "CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID",
    "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE")]
DOCKER_MASKED = ["/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                 "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
                 "/sys/firmware"]
DOCKER_READONLY = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
# Docker's default seccomp profile, in the moby format that
# containers-common ships (podman's default, derived from moby's
# profiles/seccomp/default.json).
DOCKER_SECCOMP = "/usr/share/containers/seccomp.json"


def docker_seccomp(caps):
    """The moby-format profile as Docker hands it to the runtime for a
    container with `caps` on x86_64 (profiles/seccomp's setupSeccomp): rules
    kept by their includes/excludes (caps, arches, kernel), archMap
    flattened."""
    with open(DOCKER_SECCOMP) as f:
        p = json.load(f)
    arch = "SCMP_ARCH_X86_64"
    goarch = "amd64"  # rules name architectures as Go does
    kernel = tuple(int(x) for x in os.uname().release.split("-")[0].split(".")[:2])
    arches = [arch]
    for m in p.get("archMap") or []:
        if m["architecture"] == arch:
            arches += m.get("subArchitectures") or []
    rules = []
    for r in p["syscalls"]:
        inc, exc = r.get("includes") or {}, r.get("excludes") or {}
        if inc.get("arches") and goarch not in inc["arches"]:
            continue
        if inc.get("caps") and not all(c in caps for c in inc["caps"]):
            continue
        if inc.get("minKernel") and kernel < tuple(int(x) for x in inc["minKernel"].split(".")[:2]):
            continue
        if goarch in (exc.get("arches") or []) or any(c in caps for c in exc.get("caps") or []):
            continue
        rule = {"names": r["names"], "action": r["action"]}
        for k in ("args", "errnoRet"):
            if r.get(k):
                rule[k] = r[k]
        rules.append(rule)
    out = {"defaultAction": p["defaultAction"], "architectures": arches, "syscalls": rules}
    if "defaultErrnoRet" in p:
        out["defaultErrnoRet"] = p["defaultErrnoRet"]
    return out


def without_netns(c):
    c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "network"]


def userns(c):
    c["linux"]["namespaces"].append({"type": "user"})
    for k in ("uidMappings", "gidMappings"):
        c["linux"][k] = [{"containerID": 0, "hostID": 100000, "size": 65536}]


def docker(c):
    c["root"]["readonly"] = False
    caps = c["process"]["capabilities"]
    for k in caps:
        caps[k] = list(DOCKER_CAPS) if k != "ambient" else []
    c["linux"]["maskedPaths"] = list(DOCKER_MASKED)
    c["linux"]["readonlyPaths"] = list(DOCKER_READONLY)
    c["linux"]["seccomp"] = docker_seccomp(DOCKER_CAPS)


# The configurations `run` is timed in: name -> (what it is, edit of the
# base config (`keel spec`'s, as `runc spec`'s: pid, network, ipc, uts and
# mount namespaces, read-only rootfs), cgroupsPath per container or none,
# the floor's unshare flags). Each runtime brings the loopback interface of
# a new network namespace up (runc's and crun's default); so does the floor.
CONFIGS = {
    "default": ("no network namespace, cgroupsPath per container, read-only rootfs (issue #9's)",
                without_netns, True, "-fpmui"),
    "netns": ("+ a network namespace, loopback up (as Docker, podman, pods)", None, True, "-fpmuin"),
    "runc-spec": ("`runc spec`'s config as is: network namespace, no cgroupsPath", None, False, "-fpmuin"),
    "userns": ("netns + a user namespace (uid/gid 0 -> 100000, 65536)", userns, True, "-fpmuinr"),
    "docker": ("netns, read-write rootfs, Docker's capabilities, seccomp profile, masked and read-only paths",
               docker, True, "-fpmuin"),
}
if not os.path.exists(DOCKER_SECCOMP):
    log_later = f"docker configuration skipped: no {DOCKER_SECCOMP} (package golang-github-containers-common)"
    del CONFIGS["docker"]
else:
    log_later = None
SELECTED = [c for c in os.environ.get("BENCH_CONFIGS", ",".join(CONFIGS)).split(",") if c in CONFIGS]


def bundle(cid, args, config="default"):
    """A bundle for container `cid` in configuration `config`: the base
    config edited, with its own cgroup (if the configuration has one) and
    `args`, sharing the one rootfs."""
    global _base_config
    if _base_config is None:
        base = os.path.join(TMP, "bundle")
        with open(os.path.join(base, "config.json")) as f:
            _base_config = json.load(f)
        _base_config["root"]["path"] = os.path.join(base, "rootfs")
    path = os.path.join(TMP, "bundles", config, cid)
    if not os.path.exists(path):
        os.makedirs(path)
        _, edit, cgroup, _ = CONFIGS[config]
        c = copy.deepcopy(_base_config)
        if edit:
            edit(c)
        c["process"]["args"] = args
        if cgroup:
            c["linux"]["cgroupsPath"] = f"{CGROUP_BASE}/{config}-{cid}"
        with open(os.path.join(path, "config.json"), "w") as f:
            json.dump(c, f)
    return path


def floor_cmd(config):
    """The same namespaces made by util-linux's unshare (forking, with the
    rootfs as root), no runtime: /bin/true, or in a new network namespace
    busybox's `ip` setting the loopback up, as the runtimes do."""
    flags = CONFIGS[config][3]
    prog = ["/bin/busybox", "ip", "link", "set", "lo", "up"] if "n" in flags else ["/bin/true"]
    return ["unshare", flags, "--root", os.path.join(TMP, "bundle", "rootfs"), *prog]


TRUE = ["/bin/true"]
SLEEP = ["/bin/sleep", "100000"]


def status(name, cid):
    _, p = runtime(name, "state", cid, check=False, capture=True)
    if p.returncode != 0:
        return None
    return json.loads(p.stdout)["status"]


def wait_stopped(name, cid):
    deadline = time.monotonic() + 10
    while status(name, cid) != "stopped":
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name}: container {cid} did not stop")
        time.sleep(0.002)


def delete(name, cid, force=False):
    ms = timed(name, "delete", *(["--force"] if force else []), cid)
    created[name].discard(cid)
    return ms


def create(name, cid, args, config="default"):
    created[name].add(cid)
    return timed(name, "create", "--bundle", bundle(cid, args, config), cid)


def median(xs):
    return statistics.median(xs) if xs else float("nan")


# ---------------------------------------------------------------------------
# Measurements. Repetitions are interleaved across runtimes, so that a change
# of load on this shared machine hits them all alike.
# ---------------------------------------------------------------------------


def children_cpu_ms():
    """CPU time (user + system) of every reaped descendant so far: the
    runtime and what it reaped (the container's init, helpers)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (ru.ru_utime + ru.ru_stime) * 1000


def lifecycle(config):
    """`run` of /bin/true in `config`, every runtime and the floor
    interleaved: wall times, and CPU times (the runtime and every process
    it reaped), which a loaded machine inflates far less. Containers
    without a cgroupsPath get ids that name the bench (their cgroups are
    named after them)."""
    names = [r for r in ("keel", "keel-ro", "runc", "crun") if r in BIN]
    t = {r: [] for r in names + ["floor"]}
    cpu = {r: [] for r in t}
    cid = "run" if CONFIGS[config][2] else f"{ID_PREFIX}-run"
    floor = floor_cmd(config)

    def one(r):
        if r == "floor":
            t0 = time.perf_counter()
            subprocess.run(floor, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, check=True)
            return (time.perf_counter() - t0) * 1000
        return timed(r, "run", "--bundle", bundle(cid, TRUE, config), cid)

    for r in t:  # warm-up: page cache, dentries
        created.get(r, set()).add(cid)
        one(r)
    for _ in range(N):
        for r in t:
            c0 = children_cpu_ms()
            t[r].append(one(r))
            cpu[r].append(children_cpu_ms() - c0)
    for r in names:
        created[r].discard(cid)
    return t, cpu


def phases(config):
    t = {r: {"create": [], "start": [], "delete": []} for r in RUNTIMES}
    for i in range(N + 1):
        for r in RUNTIMES:
            cid = "phase"
            c = create(r, cid, TRUE, config)
            s = timed(r, "start", cid)
            wait_stopped(r, cid)
            d = delete(r, cid)
            if i:  # the first is a warm-up
                t[r]["create"].append(c)
                t[r]["start"].append(s)
                t[r]["delete"].append(d)
    return t


def exec_(config):
    t = {r: [] for r in RUNTIMES}
    for r in RUNTIMES:
        create(r, "exec", SLEEP, config)
        timed(r, "start", "exec")
        timed(r, "exec", "exec", "/bin/true")  # warm-up
    for _ in range(N):
        for r in RUNTIMES:
            t[r].append(timed(r, "exec", "exec", "/bin/true"))
    for r in RUNTIMES:
        delete(r, "exec", force=True)
    return t


def concurrent_runs(config):
    """CONCURRENT `run`s started at once; the time until the last ends."""
    t = {r: [] for r in RUNTIMES}
    ids = [f"conc{k}" for k in range(CONCURRENT)]
    for _ in range(ROUNDS):
        for r in RUNTIMES:
            created[r].update(ids)
            cmds = [
                [BIN[r], "--root", os.path.join(TMP, f"state-{r}"), "run", "--bundle", bundle(c, TRUE, config), c]
                for c in ids
            ]
            errs = [open(os.path.join(TMP, f"stderr-{c}"), "w+b") for c in ids]
            t0 = time.perf_counter()
            procs = [
                subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=e)
                for cmd, e in zip(cmds, errs)
            ]
            codes = [p.wait() for p in procs]
            t[r].append((time.perf_counter() - t0) * 1000)
            errors = []
            for e in errs:
                e.seek(0)
                errors.append(e.read().decode(errors="replace").strip())
                e.close()
            bad = [(c, e) for c, e, code in zip(ids, errors, codes) if code != 0]
            if bad:
                raise RuntimeError(f"{r}: {len(bad)} of {CONCURRENT} concurrent runs failed, e.g. {bad[0]}")
            created[r].difference_update(ids)
    return t


def peak_rss():
    """Peak RSS (bytes) of `run`, the largest of 3, as GNU time reports it
    (the runtime and the descendants it reaps, from wait4). time itself,
    small, forks the runtime: a fork of this Python would count Python's
    pages (the kernel keeps the high-water mark across execve)."""
    out = {}
    for r in [r for r in ("keel", "keel-ro", "runc", "crun") if r in BIN]:
        peaks = []
        for _ in range(3):
            created[r].add("rss")
            report = os.path.join(TMP, "rss")
            runtime_cmd = [BIN[r], "--root", os.path.join(TMP, f"state-{r}"), "run", "--bundle", bundle("rss", TRUE), "rss"]
            subprocess.run(["/usr/bin/time", "-f", "%M", "-o", report, *runtime_cmd],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, check=True)
            created[r].discard("rss")
            with open(report) as f:
                peaks.append(int(f.read().split()[-1]) * 1024)
        out[r] = max(peaks)
    return out


def elf_static(path):
    """Whether the ELF file has no program interpreter (PT_INTERP)."""
    with open(path, "rb") as f:
        h = f.read(64)
        phoff, = struct.unpack_from("<Q", h, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", h, 0x36)
        f.seek(phoff)
        ph = f.read(phentsize * phnum)
    return all(struct.unpack_from("<I", ph, i * phentsize)[0] != 3 for i in range(phnum))


def cpu_timed(name, *args):
    """Wall and CPU time (ms) of one command (see children_cpu_ms)."""
    c0 = children_cpu_ms()
    ms = timed(name, *args)
    return ms, children_cpu_ms() - c0


def scale():
    """keel only: state/start/kill/delete of one container in a root where
    1 other (stopped) container is, and in a root where SCALE others are,
    alternating between the two so that load changes hit both alike; and
    `list` at 1, SCALE/2 and SCALE. Wall and CPU time of each command: on
    a loaded machine the CPU time is what shows whether a command does more
    work with more containers."""
    reps = max(5, N // 2)
    small, big = "keel-scale1", f"keel-scale{SCALE}"
    for name in (small, big):
        BIN[name] = BIN["keel"]
        created[name] = set()

    def populate(r, ids):
        created[r].update(ids)

        def one(c):
            timed(r, "run", "--detach", "--bundle", bundle(c, TRUE), c)

        with concurrent.futures.ThreadPoolExecutor(2) as ex:
            list(ex.map(one, ids))

    ops_ = ("state", "start", "kill", "delete", "list")
    log(f"scale: 1 and {SCALE} other containers")
    populate(small, ["one0"])
    populate(big, [f"other{k}" for k in range(SCALE // 2)])
    half = [cpu_timed(big, "list") for _ in range(reps)]
    lists = {SCALE // 2: (median([w for w, _ in half]), median([c for _, c in half]))}
    populate(big, [f"other{k}" for k in range(SCALE // 2, SCALE)])
    t = {n: {op: [] for op in ops_} for n in (1, SCALE)}
    cpu = {n: {op: [] for op in ops_} for n in (1, SCALE)}
    pairs = [(1, small), (SCALE, big)]
    for i in range(reps + 1):
        # Each first every other time: what runs right after a container
        # exits pays for its teardown.
        for n, r in pairs if i % 2 else pairs[::-1]:
            cid = f"target{n}"
            create(r, cid, SLEEP)
            got = {"state": cpu_timed(r, "state", cid), "start": cpu_timed(r, "start", cid),
                   "kill": cpu_timed(r, "kill", cid, "KILL")}
            wait_stopped(r, cid)
            c0 = children_cpu_ms()
            got["delete"] = (delete(r, cid), children_cpu_ms() - c0)
            got["list"] = cpu_timed(r, "list")
            if i:
                for op, (w, c) in got.items():
                    t[n][op].append(w)
                    cpu[n][op].append(c)
    ops = {n: {op: (median(t[n][op]), median(cpu[n][op])) for op in ops_} for n in t}
    lists[1] = ops[1]["list"]
    lists[SCALE] = ops[SCALE]["list"]
    log(f"scale: deleting the {SCALE + 1} other containers")
    for r in (small, big):
        with concurrent.futures.ThreadPoolExecutor(2) as ex:
            list(ex.map(lambda c: delete(r, c, force=True), list(created[r])))
    return ops, dict(sorted(lists.items()))


def cleanup():
    for r, ids in created.items():
        for cid in list(ids):
            runtime(r, "delete", "--force", cid, check=False)


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------

verdicts = []


def verdict(target, value, goal, unit=""):
    """PASS when value <= goal; MISS says by how much."""
    ok = value <= goal
    over = "" if ok else f" (over by {(value / goal - 1) * 100:.0f}%)"
    line = f"{'PASS' if ok else 'MISS'}  {target}: {value:.2f}{unit} (goal <= {goal:.2f}{unit}){over}"
    verdicts.append(line)


# The phases, exec and concurrent runs are timed in these configurations:
# without and with a network namespace (the "with and without").
PHASE_CONFIGS = [c for c in ("default", "netns") if c in CONFIGS]
RUN_GOAL = 0.50  # each of run, create, start, delete, exec: <= 0.50 x crun
CONCURRENT_GOAL = 0.60


def report(life, cpu, ph, ex, conc, rss, scale_res):
    print(f"\n==> medians in ms; N={N} per operation; {os.cpu_count()} cores; "
          f"kernel {os.uname().release}; load average {' '.join(open('/proc/loadavg').read().split()[:3])}")
    cols = [r for r in ("keel", "keel-ro", "runc", "crun", "floor") if r in BIN or r == "floor"]
    print(f"{'':26}" + "".join(f"{c:>9}" for c in cols) + f"{'keel/crun':>10}{'keel/runc':>10}"
          + f"{'floor/crun':>11}")

    def row(label, d):
        cells = "".join(f"{median(d[c]):9.2f}" if c in d else f"{'-':>9}" for c in cols)
        ratios = "".join(
            f"{median(d['keel']) / median(d[o]):10.2f}" if o in d else f"{'-':>10}" for o in ("crun", "runc")
        )
        fl = f"{median(d['floor']) / median(d['crun']):11.2f}" if "floor" in d and "crun" in d else ""
        print(f"{label:26}{cells}{ratios}{fl}")

    print("run (lifecycle of /bin/true), by configuration; floor: `unshare` with the same namespaces, no runtime")
    for config in life:
        row(f"run {config}", life[config])
    print("CPU ms of run (user + system, the runtime and all it reaped; load inflates it far less than wall time)")
    for config in cpu:
        row(f"cpu run {config}", cpu[config])
    for config in ph:
        for op in ("create", "start", "delete"):
            row(f"{op} {config}", {r: ph[config][r][op] for r in ph[config]})
        row(f"exec /bin/true {config}", ex[config])
        row(f"{CONCURRENT} concurrent run {config}", conc[config])
    if "default" in life:
        print(f"{'min run default':26}" + "".join(f"{min(life['default'][c]):9.2f}" for c in cols))
    for config in life:
        print(f"  {config}: {CONFIGS[config][0]}")
    if "keel-ro" in life.get("default", {}):
        d = median(life["default"]["keel"]) - median(life["default"]["keel-ro"])
        print(f"keel - keel-ro (the CVE-2019-5736 protection): {d:+.2f} ms per run")
    if log_later:
        print(log_later)
    print("peak RSS of `run` (MB): " + ", ".join(f"{r} {v / MB:.2f}" for r, v in rss.items()))
    size = os.path.getsize(BIN["keel"])
    static = elf_static(BIN["keel"])
    print(f"keel binary: {size / MB:.2f} MB, {'statically linked' if static else 'dynamically linked'} ({BIN['keel']})")

    if "crun" in BIN:
        def ratio(d):
            return median(d["keel"]) / median(d["crun"])

        for config in [c for c in ("default", "netns") if c in life]:
            verdict(f"run lifecycle keel/crun, {config}", ratio(life[config]), RUN_GOAL)
            verdict(f"run lifecycle keel/crun CPU time, {config}", ratio(cpu[config]), RUN_GOAL)
        for config in ph:
            for op in ("create", "start", "delete"):
                verdict(f"{op} keel/crun, {config}",
                        median(ph[config]["keel"][op]) / median(ph[config]["crun"][op]), RUN_GOAL)
            verdict(f"exec keel/crun, {config}", ratio(ex[config]), RUN_GOAL)
            verdict(f"{CONCURRENT} concurrent keel/crun, {config}", ratio(conc[config]), CONCURRENT_GOAL)
    else:
        verdicts.append("MISS  crun did not run here: no ratio against crun")
    verdict("peak RSS of keel run", rss["keel"] / MB, RSS_GOAL / MB, " MB")
    verdict("stripped keel binary", size / MB, SIZE_GOAL / MB, " MB")
    verdicts.append(f"{'PASS' if static else 'MISS'}  statically linked release build")

    if scale_res:
        ops, lists = scale_res
        one, many = ops[1], ops[SCALE]
        print(f"\n==> scale (keel): median wall ms and CPU ms with 1 / {SCALE} other containers present")
        print(f"{'':8} {'wall 1':>8} {'wall ' + str(SCALE):>9} {'ratio':>6}  {'cpu 1':>7} {'cpu ' + str(SCALE):>8} {'ratio':>6}")
        for op in ("state", "start", "kill", "delete"):
            (w1, c1), (wn, cn) = one[op], many[op]
            print(f"{op:8} {w1:8.2f} {wn:9.2f} {wn / w1:6.2f}  {c1:7.2f} {cn:8.2f} {cn / max(c1, 0.01):6.2f}")
            verdict(f"{op} with {SCALE} others / with 1 (CPU time)", cn / max(c1, 0.01), SCALE_TOLERANCE)
            verdict(f"{op} with {SCALE} others / with 1 (wall time)", wn / w1, SCALE_TOLERANCE)
        half = SCALE // 2
        print("list     " + ", ".join(f"{n} containers: {w:.2f} ms ({c:.2f} CPU)" for n, (w, c) in lists.items()))
        for i, what in ((1, "CPU time"), (0, "wall time")):
            at = {n: v[i] for n, v in lists.items()}
            per = (at[SCALE] - at[1]) / (SCALE - 1)
            # Linear: the second half costs what the first did (within 50%).
            first, second = at[half] - at[1], at[SCALE] - at[half]
            print(f"list ({what}): {per * 1000:.1f} µs per container; first half +{first:.1f} ms, "
                  f"second half +{second:.1f} ms")
            verdict(f"list of {SCALE}: second half / first half (linear, {what})", second / max(first, 0.01), 1.5)

    print("\n==> targets (issues #9, #18)")
    for v in verdicts:
        print(v)


def main():
    try:
        life, cpu, ph, ex, conc = {}, {}, {}, {}, {}
        for config in SELECTED:
            log(f"run lifecycle, {config}: {N} of each of {', '.join(BIN)} and the floor")
            life[config], cpu[config] = lifecycle(config)
        for config in PHASE_CONFIGS:
            log(f"create, start, delete, {config}")
            ph[config] = phases(config)
            log(f"exec, {config}")
            ex[config] = exec_(config)
            log(f"{CONCURRENT} concurrent runs, {ROUNDS} rounds, {config}")
            conc[config] = concurrent_runs(config)
        log("peak RSS")
        rss = peak_rss()
        scale_res = None
        if SCALE > 1:
            scale_res = scale()
    finally:
        cleanup()
    report(life, cpu, ph, ex, conc, rss, scale_res)


if __name__ == "__main__":
    # Interrupted: still delete what was created (the finally in main).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGHUP, lambda *_: sys.exit(129))
    main()
