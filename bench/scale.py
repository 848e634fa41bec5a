#!/usr/bin/env python3
"""kelpie at 10,000 programs (issue 18): the scale rows of docs/benchmarks.md.

    sudo python3 bench/scale.py                       # N = 100, 1000, 10000; both shapes; 5 runs
    sudo python3 bench/scale.py --sizes 10000 --shapes tables --runs 1 --idle-seconds 5   # smoke

Built on bench/run.py (same process-event tracker, configs, quiet-machine
wait, marker and clean-up).  Each run starts one kelpie with N `sleep`s in
one shape (`tables`: N `[program.pN]` tables; `instances`: one program with
`instances = N`) and measures, in this order, against that same kelpie:

1. startup: exec of kelpie until the N-th child has exec'd `sleep`;
2. memory: VmRSS / USS / VmHWM of kelpie and of its guardian, once settled;
3. idle: kelpie's CPU and context switches over --idle-seconds;
4. latency (hyperfine -N, whole processes): `kelpie status`, `status --json`,
   `curl /metrics`, `kelpie diff` against the unchanged config, and
   `kelpie health` as the reference;
5. crash storm: SIGKILL min(--storm, N) running children at once, time until
   that many replacements have exec'd, then check that
   `kelpie_program_exits_total` rose by exactly that many and that exactly
   the killed instances have a new pid and restarts = 1;
6. stop: SIGTERM to kelpie until kelpie has exited and no child is left.

`floor` runs (bench/spawn_floor.c starting N sleeps) are interleaved with
the kelpie runs so each N has its same-moment reference.

Needs root: the process-events connector, and a RLIMIT_NOFILE far above
the default (each running instance holds two pipe ends in kelpie, and the
metrics reader keeps /proc/PID/stat files open); --nofile raises the soft
and hard limit of the bench, which kelpie and spawn_floor inherit.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as R  # noqa: E402  (bench/run.py: the shared machinery)

INVOCATION_WARMUP = 3


def scale_config(workdir: Path, n: int, shape: str, port: int, log_mode: str) -> str:
    """run.py's sleeps config with the HTTP listener on (for /metrics) and
    the given output mode (`discard`: stdout/stderr on /dev/null, so kelpie
    holds no pipe per instance)."""
    extra = "" if log_mode == "inherit" else f'log = {{ mode = "{log_mode}" }}\n'
    cfg = R.sleeps_config(workdir, n, shape, extra)
    return cfg.replace('http_listen = "off"', f'http_listen = "127.0.0.1:{port}"', 1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fresh_tracker(ctx, k: R.Kelpie) -> R.Tracker:
    """A new process-event subscription for k that already knows kelpie's
    current sleeps (so their exits count), replacing the closed one."""
    tr = R.make_tracker(ctx)
    tr.attach(k.pid)
    now = time.monotonic()
    for pid in R.children_of(k.pid):
        tr.forked[pid] = now
        tr.execd[pid] = now
    k.tracker = tr
    return tr


def guardian_pid(kpid: int) -> int | None:
    kids = R.children_of(kpid, "kelpie-guardian")
    return kids[0] if kids else None


def mem_of(pid: int) -> dict:
    st = R.status_fields(pid)
    sm = R.status_fields(pid, "smaps_rollup")
    return {
        "rss": st.get("VmRSS", 0) / 1024,
        "uss": (sm.get("Private_Clean", 0) + sm.get("Private_Dirty", 0)) / 1024,
        "hwm": st.get("VmHWM", 0) / 1024,
        "threads": st.get("Threads", 0),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
    }


def http_get(port: int, path: str, timeout: float = 30) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while True:
            b = s.recv(1 << 20)
            if not b:
                break
            chunks.append(b)
    data = b"".join(chunks)
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"GET {path}: {head[:100]!r}")
    if b"transfer-encoding: chunked" in head.lower():
        out, rest = [], body
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                break
            out.append(rest[:size])
            rest = rest[size + 2 :]
        body = b"".join(out)
    return body


def exits_total(port: int) -> float:
    total = 0.0
    for line in http_get(port, "/metrics").decode().splitlines():
        if line.startswith("kelpie_program_exits_total{") or line.startswith("kelpie_program_exits_total "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def status_json(ctx, sock: Path) -> dict:
    r = subprocess.run([str(ctx.binary), "status", "--json", "-s", str(sock)], capture_output=True, env=R.client_env(), timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"status --json exit {r.returncode}: {r.stderr.decode(errors='replace')[:200]}")
    return json.loads(r.stdout)


def instances_of(reply: dict) -> dict[str, dict]:
    return {i["name"]: {**i, "program": p["name"]} for p in reply["programs"] for i in p.get("instances", [])}


def time_cmd(ctx, k: R.Kelpie, key: str, argv: list[str]) -> list[float]:
    """Whole-process latency samples (ms) of argv with hyperfine -N, else
    the Python timer of run.py."""
    if shutil.which("hyperfine"):
        cmd = [
            "hyperfine", "-N", "--style", "none", "--output", "pipe",
            "--warmup", str(INVOCATION_WARMUP), "--runs", str(ctx.invocations),
            "--export-json", str(k.dir / f"{key}.json"), R.shlex.join(argv),
        ]
        r = subprocess.run(cmd, capture_output=True, text=True, env=R.client_env(), cwd=k.dir, timeout=900)
        if r.returncode != 0:
            raise RuntimeError(f"hyperfine {key} failed ({r.returncode}): {(r.stderr or r.stdout).strip()[:300]}")
        res = json.loads((k.dir / f"{key}.json").read_text())["results"][0]
        if set(res.get("exit_codes") or [0]) != {0}:
            raise RuntimeError(f"{key}: exit codes {sorted(set(res['exit_codes']))}")
        return [t * 1000 for t in res["times"]]
    samples, _ = R.time_python(argv, ctx.invocations, k.dir)
    return samples


def sc_fleet(ctx, n: int, shape: str, run: int) -> dict:
    port = free_port()
    k = R.Kelpie(ctx, f"fleet-{shape}-{n}-{run}", scale_config(ctx.workdir, n, shape, port, ctx.log_mode))
    sock = ctx.workdir / "kelpie.sock"
    p = f"{shape}_{n}"
    # filled as the phases go, so a failed run still reports what it measured
    res: dict[str, float] = ctx.partial
    try:
        # 1. startup
        k.start()
        res[f"startup_{p}_ms"] = R.wait_running(k, n, ctx.start_timeout) * 1000
        k.tracker.close()
        # kelpie's own view catches up later than the execs: poll (once a
        # second, each reply is big) until status lists every instance running
        deadline = time.monotonic() + ctx.start_timeout
        while True:
            try:
                inst = instances_of(status_json(ctx, sock))
                if len(inst) == n and all(i["state"] == "running" for i in inst.values()):
                    break
            except (RuntimeError, ValueError, subprocess.TimeoutExpired):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"status never showed {n} running instances within {ctx.start_timeout}s")
            time.sleep(1)
        res[f"status_running_{p}_ms"] = (time.monotonic() - k.t_exec) * 1000
        # and until kelpie stops using CPU (no change over a whole second)
        deadline = time.monotonic() + ctx.start_timeout
        prev = R.thread_counters(k.pid)["cpu_ns"]
        while True:
            time.sleep(1)
            cur = R.thread_counters(k.pid)["cpu_ns"]
            if cur - prev < 2e6:
                break
            prev = cur
            if time.monotonic() > deadline:
                R.anomaly(f"{p} run {run}: kelpie still using CPU {ctx.start_timeout}s after start")
                break
        res[f"quiet_{p}_ms"] = (time.monotonic() - 1 - k.t_exec) * 1000
        res[f"startup_cpu_{p}_ms"] = prev / 1e6

        # 2. memory
        R.settle(k, n, ctx.settle)
        m = mem_of(k.pid)
        res[f"rss_{p}_mib"] = m["rss"]
        res[f"uss_{p}_mib"] = m["uss"]
        res[f"hwm_{p}_mib"] = m["hwm"]
        res[f"threads_{p}"] = m["threads"]
        res[f"fds_{p}"] = m["fds"]
        g = guardian_pid(k.pid)
        if g:
            gm = mem_of(g)
            res[f"guardian_rss_{p}_mib"] = gm["rss"]
            res[f"guardian_uss_{p}_mib"] = gm["uss"]
        else:
            R.anomaly(f"{p} run {run}: no kelpie-guardian child found")

        # 3. idle (no bench traffic to kelpie yet, netlink closed)
        a, b, secs = R.idle_window(ctx, k, f"idle_threads_awake_{p}")
        res[f"idle_wakeups_{p}"] = b["ctxt"] - a["ctxt"]
        res[f"idle_cpu_{p}_ms"] = (b["cpu_ns"] - a["cpu_ns"]) / 1e6
        res[f"idle_secs_{p}"] = secs

        # 4. command latency
        reply = R.status_all_running(ctx, sock, n if shape == "tables" else 1, 60)
        if run == 1:
            ctx.raw[f"status_json_bytes_{p}"] = len(json.dumps(reply, indent=2))
            ctx.raw[f"metrics_bytes_{p}"] = len(http_get(port, "/metrics"))
        kb = str(ctx.binary)
        cmds = [
            ("health", [kb, "health", "-s", str(sock)]),
            ("status", [kb, "status", "-s", str(sock)]),
            ("status_json", [kb, "status", "--json", "-s", str(sock)]),
            ("metrics", [ctx.curl, "-sS", "-o", "/dev/null", "--fail", f"http://127.0.0.1:{port}/metrics"]),
            ("diff", [kb, "diff", "-c", str(k.cfg), "-s", str(sock)]),
        ]
        for key, argv in cmds:
            before = R.thread_counters(k.pid)["cpu_ns"]
            samples = time_cmd(ctx, k, key, argv)
            server_ns = R.thread_counters(k.pid)["cpu_ns"] - before
            res[f"{key}_{p}_p50_ms"] = R.pct(samples, 50)
            res[f"{key}_{p}_p90_ms"] = R.pct(samples, 90)
            res[f"{key}_{p}_server_ms"] = server_ns / 1e6 / (INVOCATION_WARMUP + ctx.invocations)
        if run == 1:
            d = subprocess.run(cmds[-1][1], capture_output=True, text=True, env=R.client_env(), timeout=60)
            ctx.raw[f"diff_summary_{p}"] = d.stdout.strip().splitlines()[-1:] if d.stdout else d.stderr[:200]

        # 5. crash storm
        kills = min(ctx.storm, n)
        tr = fresh_tracker(ctx, k)
        before_reply = status_json(ctx, sock)
        before_inst = instances_of(before_reply)
        exits_before = exits_total(port)
        victims = sorted(before_inst.values(), key=lambda i: (i["program"], i["index"]))[:kills]
        victim_pids = {i["pid"] for i in victims}
        if None in victim_pids or len(victim_pids) != kills:
            raise RuntimeError(f"storm: {len(victim_pids)} distinct pids among {kills} victims")
        tr.pump(0)
        t0 = time.monotonic()
        for pid in victim_pids:
            os.kill(pid, signal.SIGKILL)
        t_sent = time.monotonic()
        deadline = t0 + ctx.start_timeout
        while True:
            fresh = [ts for pid, ts in tr.execd.items() if ts >= t0 and pid not in victim_pids]
            if len(fresh) >= kills:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"storm: only {len(fresh)}/{kills} replacements exec'd within {ctx.start_timeout}s")
            tr.pump(0.5)
        fresh.sort()
        res[f"storm_{p}_ms"] = (fresh[kills - 1] - t0) * 1000
        res[f"storm_{p}_first_ms"] = (fresh[0] - t0) * 1000
        res[f"storm_{p}_kill_ms"] = (t_sent - t0) * 1000
        reaped = [tr.exited[pid] for pid in victim_pids if pid in tr.exited]
        if len(reaped) == kills:
            res[f"storm_{p}_all_exited_ms"] = (max(reaped) - t0) * 1000
        # kelpie's accounting: wait until status shows every instance running again
        deadline = time.monotonic() + 30
        while True:
            after_inst = instances_of(status_json(ctx, sock))
            if all(i["state"] == "running" for i in after_inst.values()):
                break
            if time.monotonic() > deadline:
                states = sorted({i["state"] for i in after_inst.values()})
                raise RuntimeError(f"storm: not every instance running 30s after the kills (states {states})")
            time.sleep(0.2)
        # exits are counted as kelpie handles them; give the counter a moment
        deadline = time.monotonic() + 5
        while (exits_after := exits_total(port)) - exits_before < kills and time.monotonic() < deadline:
            time.sleep(0.1)
        res[f"storm_{p}_exits_counted"] = exits_after - exits_before
        victim_names = {i["name"] for i in victims}
        bad = []
        for name, i in after_inst.items():
            old = before_inst.get(name)
            if old is None:
                bad.append(f"{name}: new instance")
                continue
            want = old["restarts"] + (1 if name in victim_names else 0)
            moved = i["pid"] != old["pid"]
            if i["restarts"] != want or moved != (name in victim_names):
                bad.append(f"{name}: restarts {old['restarts']}->{i['restarts']}, pid {old['pid']}->{i['pid']}")
        if exits_after - exits_before != kills:
            R.anomaly(f"{p} run {run}: kelpie_program_exits_total rose by {exits_after - exits_before}, expected {kills}")
        if bad:
            R.anomaly(f"{p} run {run}: {len(bad)} instances with unexpected restarts/pid after the storm: {bad[:5]}")
        res[f"storm_{p}_bad_instances"] = len(bad)

        # 6. graceful stop
        R.settle(k, n, 1.5)
        tr.pump(0)
        kids = set(tr.running())
        real = set(R.children_of(k.pid))
        if kids != real:
            R.anomaly(f"{p} run {run}: tracker knows {len(kids)} sleeps, /proc shows {len(real)}; using /proc")
            for pid in real - kids:
                tr.forked[pid] = tr.execd[pid] = time.monotonic()
            kids = real
        t0, last_child = R.sigterm_until_stopped(k, tr, kids, 60)
        res[f"stop_{p}_ms"] = (max(last_child, tr.kelpie_exit) - t0) * 1000
        res[f"stop_{p}_children_ms"] = (last_child - t0) * 1000
        res[f"stop_{p}_kelpie_ms"] = (tr.kelpie_exit - t0) * 1000
        k.proc.wait(10)
        return res
    finally:
        R.teardown(k, f"fleet {p} run {run}")


# --------------------------------------------------------------------------
# report


def med(results, key):
    v = results.get(key)
    return statistics.median(v) if v else None


def cell(results, key, unit="", digits=None):
    v = results.get(key)
    if not v:
        return "—"
    m = statistics.median(v)
    s = f"{m:.{digits}f}" if digits is not None else R.fmt(m)
    if len(v) > 1:
        lo, hi = min(v), max(v)
        s += f" ({R.fmt(lo)}–{R.fmt(hi)})"
    return s + (f" {unit}" if unit else "")


def report(results, sizes, shapes, ctx) -> str:
    out = []
    nruns = max((len(v) for v in results.values()), default=0)
    out.append(f"Median (min–max) over up to {nruns} runs; `—` = not measured.\n")
    # One table per shape; columns are N.
    rows = [
        ("startup: exec of kelpie → N-th `sleep` exec'd", "startup_{p}_ms", "ms"),
        ("reference: spawn_floor.c, same N", "floor_{n}_ms", "ms"),
        ("spawn_floor.c: N actually started (fd limit)", "floor_{n}_n_used", ""),
        ("startup ÷ floor", "ratio_{p}", "×"),
        ("exec of kelpie → `status` shows all N running", "status_running_{p}_ms", "ms"),
        ("exec of kelpie → kelpie idle (< 2 ms CPU in 1 s)", "quiet_{p}_ms", "ms"),
        ("kelpie CPU used by then", "startup_cpu_{p}_ms", "ms"),
        ("kelpie RSS with N running", "rss_{p}_mib", "MiB"),
        ("kelpie USS", "uss_{p}_mib", "MiB"),
        ("kelpie VmHWM (peak RSS by then)", "hwm_{p}_mib", "MiB"),
        ("guardian RSS", "guardian_rss_{p}_mib", "MiB"),
        ("guardian USS", "guardian_uss_{p}_mib", "MiB"),
        ("kelpie threads", "threads_{p}", ""),
        ("kelpie open fds", "fds_{p}", ""),
        ("idle: kelpie context switches over the window", "idle_wakeups_{p}", ""),
        ("idle: kelpie CPU over the window", "idle_cpu_{p}_ms", "ms"),
        ("`kelpie status` p50 (whole process)", "status_{p}_p50_ms", "ms"),
        ("`kelpie status` p90", "status_{p}_p90_ms", "ms"),
        ("`kelpie status --json` p50", "status_json_{p}_p50_ms", "ms"),
        ("`curl /metrics` p50", "metrics_{p}_p50_ms", "ms"),
        ("`curl /metrics` p90", "metrics_{p}_p90_ms", "ms"),
        ("`kelpie diff` (unchanged config) p50", "diff_{p}_p50_ms", "ms"),
        ("`kelpie diff` p90", "diff_{p}_p90_ms", "ms"),
        ("reference: `kelpie health` p50", "health_{p}_p50_ms", "ms"),
        ("kelpie CPU per `status`", "status_{p}_server_ms", "ms"),
        ("kelpie CPU per `status --json`", "status_json_{p}_server_ms", "ms"),
        ("kelpie CPU per `/metrics`", "metrics_{p}_server_ms", "ms"),
        ("kelpie CPU per `diff`", "diff_{p}_server_ms", "ms"),
        ("storm: programs SIGKILLed at once", "storm_{p}_kills", ""),
        ("storm: first kill → last replacement exec'd", "storm_{p}_ms", "ms"),
        ("storm: first kill → first replacement exec'd", "storm_{p}_first_ms", "ms"),
        ("storm: exits counted by `kelpie_program_exits_total`", "storm_{p}_exits_counted", ""),
        ("storm: instances with wrong restarts/pid afterwards", "storm_{p}_bad_instances", ""),
        ("stop: SIGTERM → kelpie exited and no child left", "stop_{p}_ms", "ms"),
        ("stop: SIGTERM → last child exited", "stop_{p}_children_ms", "ms"),
        ("stop: SIGTERM → kelpie exited", "stop_{p}_kelpie_ms", "ms"),
    ]
    for shape in shapes:
        title = "N `[program.pN]` tables" if shape == "tables" else "one program, `instances = N`"
        out.append(f"\n#### {title}\n")
        out.append("| | " + " | ".join(f"N = {n:,}" for n in sizes) + " |")
        out.append("|---|" + "---:|" * len(sizes))
        for label, pat, unit in rows:
            cells = []
            for n in sizes:
                key = pat.format(p=f"{shape}_{n}", n=n)
                cells.append(cell(results, key, unit))
            if all(c == "—" for c in cells):
                continue
            out.append(f"| {label} | " + " | ".join(cells) + " |")
        # growth per program
        out.append("")
        growth = []
        for a, b in zip(sizes, sizes[1:]):
            parts = []
            for what, pat, scale, unit in (
                ("startup", "startup_{p}_ms", 1000, "µs"),
                ("floor", "floor_{n}_ms", 1000, "µs"),
                ("RSS", "rss_{p}_mib", 1024 * 1024, "bytes"),
                ("status", "status_{p}_p50_ms", 1000, "µs"),
                ("/metrics", "metrics_{p}_p50_ms", 1000, "µs"),
                ("diff", "diff_{p}_p50_ms", 1000, "µs"),
                ("stop", "stop_{p}_ms", 1000, "µs"),
            ):
                va = med(results, pat.format(p=f"{shape}_{a}", n=a))
                vb = med(results, pat.format(p=f"{shape}_{b}", n=b))
                if va is not None and vb is not None:
                    parts.append(f"{what} {(vb - va) * scale / (b - a):,.0f} {unit}")
            if parts:
                growth.append(f"- per added program, N = {a:,} → {b:,}: " + ", ".join(parts))
        for n in sizes:
            parts = []
            for what, pat, scale, unit in (
                ("startup", "startup_{p}_ms", 1000, "µs"),
                ("RSS", "rss_{p}_mib", 1024 * 1024, "bytes"),
                ("stop", "stop_{p}_ms", 1000, "µs"),
            ):
                v = med(results, pat.format(p=f"{shape}_{n}", n=n))
                if v is not None:
                    parts.append(f"{what} {v * scale / n:,.0f} {unit}")
            if parts:
                growth.append(f"- per program, total ÷ N at N = {n:,}: " + ", ".join(parts))
        out.extend(growth)
    return "\n".join(out)


def floor_at(ctx, n: int, run: int) -> dict:
    """The floor is started in kelpie's log mode: with `discard` its
    children write to /dev/null and it holds no pipes, like kelpie.
    Otherwise spawn_floor.c holds two pipe ends per child: under a hard
    RLIMIT_NOFILE below 2N + a few it runs the largest N that fits, and the
    result is recorded under N with the N used beside it."""
    discard = ctx.log_mode == "discard"
    fit = n if discard else min(n, (resource.getrlimit(resource.RLIMIT_NOFILE)[1] - 16) // 2)
    res = R.sc_floor(ctx, fit, run, discard)
    out = {f"floor_{n}_ms": res[f"floor_{fit}_ms"]}
    if fit != n:
        out[f"floor_{n}_n_used"] = fit
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100,1000,10000")
    ap.add_argument("--shapes", default="tables,instances")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--release-binary", type=Path, default=R.REPO / "target/release/kelpie")
    ap.add_argument("--idle-seconds", type=float, default=30.0)
    ap.add_argument("--invocations", type=int, default=10, help="timed invocations per command per run (default 10, after 3 warm-ups)")
    ap.add_argument("--storm", type=int, default=1000, help="children SIGKILLed at once (default 1000, at most N)")
    ap.add_argument("--settle", type=float, default=1.5)
    ap.add_argument("--start-timeout", type=float, default=120)
    ap.add_argument("--nofile", type=int, default=1 << 20, help="RLIMIT_NOFILE (soft and hard) for the bench and so for kelpie (default 1048576)")
    ap.add_argument("--log-mode", choices=["inherit", "discard"], default="inherit", help="programs' log.mode (default inherit: two pipes per instance held by kelpie; discard: /dev/null, no pipes)")
    ap.add_argument("--no-floor", action="store_true")
    ap.add_argument("--quiet-threshold", type=float, default=0.15)
    ap.add_argument("--quiet-timeout", type=float, default=60)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (args.nofile, args.nofile))
    except (ValueError, OSError) as e:
        # Without CAP_SYS_RESOURCE (a container) the hard limit is a ceiling:
        # use all of it and say so in the facts.
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        R.log(f"cannot raise RLIMIT_NOFILE to {args.nofile} ({e}); using the hard limit {hard}")
    sizes = [int(x) for x in args.sizes.split(",") if x]
    shapes = [x for x in args.shapes.split(",") if x]

    ctx = R.Ctx()
    source = R.ensure_binary(args.release_binary.resolve())
    ctx.workdir = Path(tempfile.mkdtemp(prefix="kelpie-scale-"))
    ctx.binary = ctx.workdir / "kelpie"
    shutil.copy2(source, ctx.binary)
    ctx.quiet_timeout = args.quiet_timeout
    ctx.quiet_threshold = args.quiet_threshold
    ctx.idle_seconds = args.idle_seconds
    ctx.settle = args.settle
    ctx.poll_sleep = 0.0
    ctx.method = "netlink"
    try:
        R.NetlinkTracker().close()
    except OSError as e:
        R.log(f"kernel process events unavailable ({e}); falling back to polling /proc")
        ctx.method = "proc"
    ctx.raw = {}
    ctx.invocations = args.invocations
    ctx.storm = args.storm
    ctx.log_mode = args.log_mode
    ctx.start_timeout = args.start_timeout
    ctx.curl = shutil.which("curl")
    if not ctx.curl:
        sys.exit("scale: curl is needed for the /metrics latency")

    import atexit

    atexit.register(lambda: shutil.rmtree(ctx.workdir, ignore_errors=True))
    atexit.register(R.cleanup_all)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, R.on_signal)

    ctx.floor_binary = None
    if not args.no_floor and shutil.which("cc"):
        fb = ctx.workdir / "spawn_floor"
        r = subprocess.run(["cc", "-O2", "-o", str(fb), str(R.REPO / "bench/spawn_floor.c")], capture_output=True, text=True)
        if r.returncode == 0:
            ctx.floor_binary = fb
    hf = shutil.which("hyperfine")
    hfv = subprocess.run([hf, "--version"], capture_output=True, text=True).stdout.strip() if hf else "not installed (Python timer)"
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    facts = (
        R.machine_facts(source, ctx.binary)
        + f"\n- observation method: {ctx.method}; command timer: {hfv}, {args.invocations} runs + {INVOCATION_WARMUP} warm-ups per command per run"
        + f"\n- RLIMIT_NOFILE of the bench (inherited by kelpie): soft {soft}, hard {hard}"
        + f"\n- kernel.pid_max {Path('/proc/sys/kernel/pid_max').read_text().strip()}, kernel.threads-max {Path('/proc/sys/kernel/threads-max').read_text().strip()}"
        + f"\n- programs: `sleep 100000`, log.mode = {args.log_mode}"
        + f"\n- idle window {args.idle_seconds:g} s; storm kills min({args.storm}, N)"
    )
    R.log(facts)

    results: dict[str, list[float]] = {}
    busy_seen = []
    failures = 0

    def record(res: dict):
        for key, v in res.items():
            results.setdefault(key, []).append(v)
        R.log("    " + ", ".join(f"{k}={R.fmt(v)}" for k, v in res.items()))

    plan = []
    for r in range(1, args.runs + 1):
        for n in sizes:
            if ctx.floor_binary:
                plan.append((f"floor N={n}", r, lambda r, n=n: floor_at(ctx, n, r)))
            for shape in shapes:
                plan.append((f"fleet {shape} N={n}", r, lambda r, n=n, shape=shape: sc_fleet(ctx, n, shape, r)))
    try:
        for name, r, fn in plan:
            busy = R.wait_quiet(ctx)
            busy_seen.append(busy)
            R.log(f"[{name}] run {r}/{args.runs}  (other load before the run: {busy:.0%}) {time.strftime('%H:%M:%S', time.gmtime())} UTC")
            ctx.partial = {}
            try:
                record(fn(r))
            except RuntimeError as e:
                failures += 1
                R.anomaly(f"{name} run {r} failed: {e}")
                if ctx.partial:
                    record(ctx.partial)
            time.sleep(0.3)
    except KeyboardInterrupt as e:
        R.log(f"interrupted ({e}); cleaning up; partial results follow")

    R.cleanup_all()
    left = R.marked_pids()
    for shape in shapes:
        for n in sizes:
            p = f"{shape}_{n}"
            if f"startup_{p}_ms" in results and f"floor_{n}_ms" in results:
                results[f"ratio_{p}"] = [med(results, f"startup_{p}_ms") / med(results, f"floor_{n}_ms")]
            if f"storm_{p}_ms" in results:
                results[f"storm_{p}_kills"] = [min(ctx.storm, n)]
    print("\n### Machine\n")
    print(facts)
    print(f"\n### Results (`{' '.join(['python3', 'bench/scale.py'] + sys.argv[1:])}`)\n")
    print(report(results, sizes, shapes, ctx))
    if busy_seen:
        print(f"\nOther load just before each run (0.5 s, all CPUs): median {statistics.median(busy_seen):.0%}, max {max(busy_seen):.0%} over {len(busy_seen)} runs.")
    for key, v in ctx.raw.items():
        if key.startswith(("status_json_bytes", "metrics_bytes", "diff_summary")):
            print(f"- {key}: {v}")
    if R.WARNINGS:
        print("\n### kelpie warnings\n")
        for w, c in R.WARNINGS.items():
            print(f"- {w}  ({c} runs)")
    print("\n### Anomalies\n")
    for a in R.ANOMALIES or ["none"]:
        print(f"- {a}")
    if left:
        print(f"- {len(left)} marked processes still present at the very end")
    if args.json:
        args.json.write_text(json.dumps({"facts": facts, "results": results, "raw": ctx.raw, "anomalies": R.ANOMALIES}, indent=1))
    return 1 if failures or left else 0


if __name__ == "__main__":
    sys.exit(main())
