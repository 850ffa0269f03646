#!/usr/bin/env python3
"""Where a pod start's time goes, per CRI handler, from containerd's debug
log of a bench/cri.sh run: the median of each phase over the interleaved
pods (the warm-up pod of each handler and the density pods left out).

Usage: KEEL_CRI_DEBUG=1 KEEL_CONF_KEEP=1 bench/cri.sh N
       bench/cri_phases.py /tmp/keel-cri-bench-<pid>/containerd.log N

Phases (containerd 1.6's messages mark them):
  containerd before CNI: RunPodSandbox up to "begin cni setup" (the
      sandbox's spec, its snapshot and metadata);
  CNI: the bridge, host-local and portmap plugins;
  sandbox task: from the CNI's result to RunPodSandbox's return: the
      shim's start, the pause container's create and start (for runc:
      runc's), and containerd's bookkeeping;
  CreateContainer: containerd alone (snapshot, spec): no shim involved;
  StartContainer: the shim's start action for the second container, its
      create and start.
The first two and CreateContainer are the floor every handler pays.
"""
import datetime
import re
import statistics
import sys

HANDLERS = ["runc", "keel", "keel-cli"]
PHASES = [
    ("containerd before CNI", "t0", "cni0"),
    ("CNI", "cni0", "cni1"),
    ("sandbox task: shim start, pause create+start", "cni1", "rps"),
    ("CreateContainer (containerd only)", "cc0", "cc1"),
    ("StartContainer: shim start, create+start", "sc0", "sc1"),
    ("total", "t0", "sc1"),
]


def timestamp(line):
    m = re.match(r'time="([^".]+)\.(\d+)Z"', line)
    if not m:
        return None
    base = datetime.datetime.fromisoformat(m.group(1) + "+00:00").timestamp()
    return base + float("0." + m.group(2))


def pods(lines):
    """The pods in start order: the handler and the time of each mark."""
    out, cur = [], None
    marks = [
        ("begin cni setup", "cni0"),
        ("cni result", "cni1"),
        ("CreateContainer within", "cc0"),
        ("StartContainer for", "sc0"),
    ]
    for line in lines:
        t = timestamp(line)
        if t is None:
            continue
        returns = "returns" in line
        if 'msg="RunPodSandbox for' in line and not returns:
            cur = {"t0": t}
            out.append(cur)
        elif cur is None:
            continue
        elif "use OCI runtime" in line and "h" not in cur:
            if "io.containerd.keel.v2" in line:
                cur["h"] = "keel"
            elif "BinaryName:/usr/sbin/runc" in line:
                cur["h"] = "runc"
            else:
                cur["h"] = "keel-cli"
        elif 'msg="RunPodSandbox for' in line:
            cur["rps"] = t
        elif 'msg="CreateContainer within' in line and returns:
            cur["cc1"] = t
        elif 'msg="StartContainer for' in line and returns:
            cur["sc1"] = t
            cur = None
        else:
            for needle, key in marks:
                if needle in line and key not in cur:
                    cur[key] = t
    return out


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    n = int(sys.argv[2])
    with open(sys.argv[1]) as f:
        all_pods = pods(f.read().splitlines())
    # One warm-up pod per handler, then N interleaved rounds.
    timed = all_pods[len(HANDLERS) : len(HANDLERS) * (n + 1)]
    for h in HANDLERS:
        ps = [p for p in timed if p.get("h") == h]
        print(f"{h} ({len(ps)} pods), median ms:")
        for name, a, b in PHASES:
            v = [(p[b] - p[a]) * 1000 for p in ps if a in p and b in p]
            if v:
                print(f"  {name:<46} {statistics.median(v):7.1f}")


if __name__ == "__main__":
    main()
