#!/usr/bin/env python3
"""Runs one `kofu-load bench` and, W seconds into each target (embedded, HTTPS, 1-node
and 3-node Redis), samples the CPU of the nodes, of Redis and of the generator (the bench
process) from /proc, Redis INFO commandstats per session (per `del`), and, with PERF=1,
records the nodes with `perf --call-graph dwarf` at FREQ Hz. Works with old kofu-load
binaries too (no --only, no budget table), which is why it exists: it compares a
baseline and main with the same yardstick (bench/issue13-regression.md).

usage: OUT=runs W=10 PERF=0 bench/regress-sample.py LABEL kofu-load bench [args...]
then:  runs/LABEL/cpu.txt (cores used per process class), runs/LABEL/bench.out"""
import os, sys, subprocess, time, re

label = sys.argv[1]
W = float(os.environ.get("W", "8"))
PERF = os.environ.get("PERF", "1") == "1"
outdir = os.path.join(os.environ.get("OUT", "runs"), label)
os.makedirs(outdir, exist_ok=True)
HZ = os.sysconf("SC_CLK_TCK")

def cpu(pid):
    try:
        f = open(f"/proc/{pid}/stat").read()
        parts = f[f.rindex(")") + 2:].split()
        return (int(parts[11]) + int(parts[12])) / HZ, int(parts[12]) / HZ
    except Exception:
        return None

def descendants(root):
    out = []
    for p in os.listdir("/proc"):
        if not p.isdigit(): continue
        try:
            st = open(f"/proc/{p}/stat").read()
            ppid = int(st[st.rindex(")") + 2:].split()[1])
            cmd = open(f"/proc/{p}/cmdline").read().split("\0")
        except Exception:
            continue
        if ppid == root:
            out.append((int(p), cmd))
    return out

bench = subprocess.Popen(sys.argv[2:], stdout=open(f"{outdir}/bench.out", "w"), stderr=open(f"{outdir}/bench.err", "w"))
seen = set()
report = open(f"{outdir}/cpu.txt", "w")
while bench.poll() is None:
    kids = descendants(bench.pid)
    nodes = [(p, c) for p, c in kids if "serve" in c and os.path.basename(c[0]) in ("kofu",) and "50" != (c[c.index("--fixture-kiosks") + 1] if "--fixture-kiosks" in c else "")]
    # wrappers exec, so the kofu processes are direct children
    redis = [p for p, c in kids if "redis-server" in c[0]]
    conv = [(p, c) for p, c in kids if "conventional" in " ".join(c)]
    phase = None
    nid = lambda c: c[c.index("--node-id") + 1] if "--node-id" in c else None
    cluster = [p for p, c in nodes if (nid(c) or "").startswith("node-")]
    solo = [p for p, c in nodes if nid(c) == "solo-0"]
    embedded = [p for p, c in nodes if "--node-id" not in c]
    if len(cluster) == 3: phase, pids = "redis3", cluster
    elif solo: phase, pids = "redis1", solo
    elif embedded: phase, pids = ("https" if any("--tls-cert-file" in c for p, c in nodes) else "embedded"), embedded
    if phase and phase not in seen:
        # wait for ready + the bench's own 2 s settle + warm-up
        time.sleep(4 if phase.startswith("redis") else 2)
        seen.add(phase)
        allp = {"node": pids, "redis": redis, "gen": [bench.pid]}
        before = {k: [cpu(p) for p in v] for k, v in allp.items()}
        perf = None
        if PERF:
            perf = subprocess.Popen(["perf", "record", "-F", os.environ.get("FREQ","149"), "--call-graph", "dwarf,16384", "-o", f"{outdir}/{phase}.perf.data", "-p", ",".join(map(str, pids)), "--", "sleep", str(W)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rport = None
        for p, c in kids:
            m = re.search(r":(\d+)", " ".join(c)) if "redis-server" in c[0] else None
            if m: rport = m.group(1)
        def cstats():
            if not rport: return {}
            out = subprocess.run(["redis-cli", "-p", rport, "INFO", "commandstats"], capture_output=True, text=True).stdout
            return {m.group(1): int(m.group(2)) for m in re.finditer(r"cmdstat_(\w+):calls=(\d+)", out)}
        cs0 = cstats()
        t0 = time.time()
        time.sleep(W)
        after = {k: [cpu(p) for p in v] for k, v in allp.items()}
        dt = time.time() - t0
        if perf: perf.wait()
        line = [phase, f"window {dt:.1f}s", f"load {open('/proc/loadavg').read().split()[0]}"]
        for k in allp:
            tot = sum(a[0] - b[0] for a, b in zip(after[k], before[k]) if a and b)
            ker = sum(a[1] - b[1] for a, b in zip(after[k], before[k]) if a and b)
            line.append(f"{k} {tot/dt:.3f} cores (kernel {ker/dt:.3f})")
        cs1 = cstats()
        if cs1:
            d = {k: cs1[k] - cs0.get(k, 0) for k in cs1}
            dels = max(d.get("del", 1), 1)
            line.append("cmds per del: " + ", ".join(f"{k} {v/dels:.1f}" for k, v in sorted(d.items(), key=lambda x: -x[1]) if v))
        print(" | ".join(line), file=report, flush=True)
    time.sleep(0.2)
report.close()
print(open(f"{outdir}/cpu.txt").read())
print(open(f"{outdir}/bench.out").read())
