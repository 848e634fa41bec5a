#!/usr/bin/env python3
"""Throughput of kelpie's /ready endpoint, measured with wrk on loopback.

    cargo build --release
    python3 bench/http_ready.py                      # /ready, 5 runs of 10 s
    python3 bench/http_ready.py --path /ready --path /health --runs 7

Starts a release kelpie supervising `--programs` (default 10) `sleep`
programs with `http_listen = "127.0.0.1:0"` (the address is read from its
`http_listening` log event), waits until /ready answers 200, warms up, then
runs `wrk` `--runs` times per path on keep-alive connections and prints
the median requests/s with the min-max range, latency percentiles, and
kelpie's CPU use during the runs. Every run must have zero non-2xx
responses and zero socket errors, and the programs must not have been
restarted, else the bench says so and exits 1.

Isolation check: an extra `canary` program (required = false, no backoff)
is SIGKILLed every 200 ms, first with no HTTP load, then during every wrk
run; the table reports kelpie's restart latency (its `program_exited` ->
`program_started` log timestamps) in both cases, showing whether the
request flood slows supervision down.

On a shared machine, other processes' CPU use is measured during every
run (from /proc/stat); before each run the bench waits for the machine to
be quiet, and a run during which other processes used more than
`--max-other` cores is discarded and repeated (at most `--retries` times).

Needs `wrk` (apt-get install -y wrk). Python 3 standard library only.
Everything started carries KELPIE_BENCH_MARKER in its environment and is
killed on exit.
"""

from __future__ import annotations

import argparse
import atexit
import datetime as dt
import json
import os
import platform
import random
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MARKER_KEY = "KELPIE_BENCH_MARKER"
TOKEN = f"khttp-{os.getpid()}-{random.getrandbits(48):012x}"
TICKS = os.sysconf("SC_CLK_TCK")
STARTED: list[subprocess.Popen] = []


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cleanup() -> None:
    for proc in STARTED:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
    needle = f"{MARKER_KEY}={TOKEN}".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle in f.read().split(b"\0"):
                    os.kill(int(entry), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            pass


def busy_ticks() -> int:
    """Non-idle CPU time of the whole machine."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return user + nice + system + irq + softirq + steal


def wait_quiet(max_other: float, limit: float = 900) -> None:
    """Waits until the machine has been nearly idle for a second (kelpie is
    idle between runs, so any load is someone else's)."""
    deadline = time.monotonic() + limit
    while True:
        before = busy_ticks()
        time.sleep(1)
        load = (busy_ticks() - before) / TICKS
        if load <= max_other:
            return
        if time.monotonic() > deadline:
            log(f"  !! machine still busy ({load:.2f} cores) after {limit:.0f} s; measuring anyway")
            return
        log(f"  waiting for a quiet machine ({load:.2f} cores busy)")
        time.sleep(4)


def own_cpu_seconds() -> float:
    """CPU of this script and its waited-for children (wrk)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


class Kelpie:
    def __init__(self, binary: Path, programs: int) -> None:
        self.dir = tempfile.TemporaryDirectory(prefix="kelpie-http-bench-")
        config = Path(self.dir.name) / "supervisor.toml"
        lines = ['[supervisor]', 'http_listen = "127.0.0.1:0"', 'log_level = "info"', ""]
        for i in range(programs):
            lines += [
                f"[program.p{i}]",
                'command = ["sleep", "100000"]',
                'start_seconds = "100ms"',
                "",
            ]
        lines += [
            "[program.canary]",
            'command = ["sleep", "100000"]',
            "required = false",
            'backoff = { initial = "0s" }',
            "max_restarts = 1000000",
            'restart_window = "1s"',
            "",
        ]
        config.write_text("\n".join(lines))
        env = dict(os.environ, KELPIE_LOG_FORMAT="json", **{MARKER_KEY: TOKEN})
        env.pop("KELPIE_LOG", None)
        self.proc = subprocess.Popen(
            [str(binary), "run", "-c", str(config)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        STARTED.append(self.proc)
        self.events: list[dict] = []
        self.canary_pid: int | None = None  # latest, kept by the reader
        self.lock = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            try:
                event = json.loads(raw)
            except ValueError:
                continue
            with self.lock:
                self.events.append(event)
                if event.get("program") == "canary" and event.get("event") == "program_started":
                    self.canary_pid = int(event["pid"])
                self.lock.notify_all()

    def wait_event(self, name: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                for event in self.events:
                    if event.get("event") == name:
                        return event
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise SystemExit(f"kelpie never logged {name!r}")
                self.lock.wait(left)

    def count(self, name: str, program: str | None = None) -> int:
        with self.lock:
            return sum(
                1
                for e in self.events
                if e.get("event") == name and (program is None or e.get("program") == program)
            )

    def of(self, program: str) -> list[dict]:
        with self.lock:
            return [e for e in self.events if e.get("program") == program]


def timestamp(event: dict) -> float:
    return dt.datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()


class Canary:
    """SIGKILLs the canary every 200 ms while running; restart latencies are
    read from kelpie's log afterwards."""

    def __init__(self, kelpie: Kelpie) -> None:
        self.kelpie = kelpie
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.first = len(kelpie.of("canary"))

    def __enter__(self) -> "Canary":
        self.thread.start()
        return self

    def __exit__(self, *_) -> None:
        self.stop.set()
        self.thread.join()

    def _run(self) -> None:
        # Cheap on purpose: the bench shares the CPUs with what it measures.
        killed = None
        while not self.stop.wait(0.2):
            pid = self.kelpie.canary_pid
            if pid is None or pid == killed:
                continue  # not restarted yet; that shows in the latencies
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            killed = pid

    def latencies_ms(self) -> list[float]:
        events = self.kelpie.of("canary")[self.first :]
        out, exited = [], None
        for e in events:
            if e.get("event") == "program_exited":
                exited = timestamp(e)
            elif e.get("event") == "program_started" and exited is not None:
                out.append((timestamp(e) - exited) * 1000)
                exited = None
        return out


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def wait_ready(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as reply:
                if reply.status == 200:
                    return
        except urllib.error.HTTPError:
            pass  # 503 until every program is ready
        time.sleep(0.05)
    raise SystemExit(f"{url} never answered 200")


WRK_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
WRK_NON2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
WRK_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
WRK_PCT = re.compile(r"^\s+(50|90|99)%\s+([\d.]+)(us|ms|s)\s*$", re.M)


def to_ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url: str, threads: int, connections: int, seconds: int) -> dict:
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = WRK_RPS.search(out)
    if not rps:
        raise SystemExit(f"cannot parse wrk output:\n{out}")
    non2xx = WRK_NON2XX.search(out)
    errors = WRK_ERRORS.search(out)
    return {
        "rps": float(rps.group(1)),
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "errors": sum(map(int, errors.groups())) if errors else 0,
        "pct": {p: to_ms(v, u) for p, v, u in WRK_PCT.findall(out)},
        "raw": out,
    }


def machine() -> list[str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.splitlines()
    rev = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    return [
        f"CPU: {model}, {os.cpu_count()} logical CPUs",
        f"kernel: {platform.release()}",
        f"wrk: {wrk_version[0] if wrk_version else '?'}",
        f"kelpie: {rev or '?'} (release build)",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kelpie", type=Path, default=REPO / "target" / "release" / "kelpie")
    parser.add_argument("--programs", type=int, default=10)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=10, help="duration of each wrk run")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections")
    parser.add_argument("--path", action="append", help="endpoint(s) to measure (default /ready)")
    parser.add_argument("--target", type=float, default=20000, help="req/s the median must reach")
    parser.add_argument("--max-other", type=float, default=0.15, help="cores other processes may use during a run")
    parser.add_argument("--retries", type=int, default=40, help="contended runs repeated at most this often")
    args = parser.parse_args()
    paths = args.path or ["/ready"]
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: apt-get install -y wrk")
    if not args.kelpie.exists():
        raise SystemExit(f"{args.kelpie} not found: cargo build --release")
    atexit.register(cleanup)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))

    kelpie = Kelpie(args.kelpie, args.programs)
    addr = kelpie.wait_event("http_listening", 10)["addr"]
    base = f"http://{addr}"
    wait_ready(base + "/ready", 20)
    log(f"kelpie pid {kelpie.proc.pid} on {base}, {args.programs} programs ready")

    wait_quiet(args.max_other)
    with Canary(kelpie) as idle_canary:
        time.sleep(args.seconds)
    idle_restarts = idle_canary.latencies_ms()
    log(f"  canary without HTTP load: {len(idle_restarts)} restarts, p50 {pct(idle_restarts, 50):.2f} ms")

    ok = True
    rows = []
    for path in paths:
        url = base + path
        wrk(url, args.threads, args.connections, 2)  # warm-up
        runs = []
        loaded_restarts: list[float] = []
        retries = args.retries
        while len(runs) < args.runs:
            wait_quiet(args.max_other)
            before = cpu_ticks(kelpie.proc.pid)
            busy_before, own_before = busy_ticks(), own_cpu_seconds()
            with Canary(kelpie) as canary:
                run = wrk(url, args.threads, args.connections, args.seconds)
            run["cpu"] = (cpu_ticks(kelpie.proc.pid) - before) / TICKS / args.seconds
            # Whatever else ran on the machine meanwhile (other builds...).
            busy = (busy_ticks() - busy_before) / TICKS / args.seconds
            run["other"] = max(0.0, busy - run["cpu"] - (own_cpu_seconds() - own_before) / args.seconds)
            line = (
                f"{run['rps']:,.0f} req/s, p50 {run['pct'].get('50', 0):.2f} ms, "
                f"p99 {run['pct'].get('99', 0):.2f} ms, kelpie CPU {run['cpu']:.2f} cores, "
                f"other processes {run['other']:.2f} cores, "
                f"non-2xx {run['non2xx']}, socket errors {run['errors']}"
            )
            if run["other"] > args.max_other and retries > 0:
                retries -= 1
                log(f"  {path} run discarded (contended): {line}")
                continue
            loaded_restarts += canary.latencies_ms()
            runs.append(run)
            log(f"  {path} run {len(runs)}: {line}")
            if run["non2xx"] or run["errors"]:
                ok = False
                log(f"!! {path} run {len(runs)} had failures:\n{run['raw']}")
        discarded = args.retries - retries
        rps = [r["rps"] for r in runs]
        rows.append(
            {
                "path": path,
                "median": statistics.median(rps),
                "min": min(rps),
                "max": max(rps),
                "p50": statistics.median(r["pct"].get("50", 0) for r in runs),
                "p99": statistics.median(r["pct"].get("99", 0) for r in runs),
                "cpu": statistics.median(r["cpu"] for r in runs),
                "other": max(r["other"] for r in runs),
                "restarts": loaded_restarts,
                "discarded": discarded,
            }
        )

    others = [e for e in kelpie.events if e.get("program") not in (None, "canary")]
    restarted = sum(1 for e in others if e.get("event") == "program_started") != args.programs
    if restarted or any(e.get("event") == "program_exited" for e in others):
        ok = False
        log("!! programs were restarted or exited during the benchmark")
    if kelpie.proc.poll() is not None:
        ok = False
        log("!! kelpie exited during the benchmark")

    print()
    for line in machine():
        print(f"- {line}")
    for row in rows:
        print(f"- `{row['path']}`: {row['discarded']} contended run(s) discarded and repeated")
    print(
        f"- load: wrk -t{args.threads} -c{args.connections} -d{args.seconds}s, keep-alive, "
        f"{args.runs} runs per path after a 2 s warm-up; {args.programs} programs"
    )
    print()
    print(
        "| path | req/s median | min-max | p50 latency | p99 latency | kelpie CPU (cores) "
        "| other processes' CPU (max) | canary restart p50 / p99 | target |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    print(
        f"| (no HTTP load) | | | | | | | {pct(idle_restarts, 50):.2f} / {pct(idle_restarts, 99):.2f} ms "
        f"({len(idle_restarts)}) | |"
    )
    for row in rows:
        target = ""
        if row["path"] == "/ready":
            met = row["median"] >= args.target
            ok &= met
            target = f"≥ {args.target:,.0f}: {'met' if met else 'NOT met'}"
        restarts = row["restarts"]
        print(
            f"| `{row['path']}` | {row['median']:,.0f} | {row['min']:,.0f}–{row['max']:,.0f} | "
            f"{row['p50']:.2f} ms | {row['p99']:.2f} ms | {row['cpu']:.2f} | {row['other']:.2f} | "
            f"{pct(restarts, 50):.2f} / {pct(restarts, 99):.2f} ms ({len(restarts)}) | {target} |"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
