#!/usr/bin/env python3
"""The dashboard's cost against a real kelpie: /dashboard.json latency at
1000 programs, and kelpie's wake-ups with nobody watching and with one
page open (docs/dashboard.md, "Cost"; results in docs/benchmarks.md).

    cargo build --release
    python3 bench/dashboard.py                  # 1000 programs, 5 runs
    python3 bench/dashboard.py --programs 100 --runs 3 --idle 10

Each run starts a fresh release kelpie with `--programs` `sleep` programs
plus `--crashed` programs that wrote 20 lines and exited 3 (restart =
"never"), so that many crash histories are filled. Once every program is
in its final state and kelpie is past every `start_seconds`:

1. latency: `--fresh` keep-alive GETs of /dashboard.json 0.6 s apart (the
   page's poll, one program selected, so its exits with their output and
   its log tail are in the reply; each past the 500 ms for which kelpie
   reuses a /proc pass, so each pays for one), then `--requests` of it back
   to back (sharing passes) and as many of /metrics, the reference measured
   in the same run; client-side wall time per request, median and p99;
2. idle: kelpie's context switches, summed over all its threads
   (/proc/PID/task/*/status), over `--idle` seconds with no request;
3. one page open: the same while this script polls /dashboard.json once a
   second on one keep-alive connection, as an open page does.

A thread that was woken up and goes back to sleep makes one voluntary
context switch, so the voluntary count is the wake-up count; involuntary
switches (a running thread preempted, on a busy machine) are reported
apart. Prints each run and
the median over the runs. Python 3 standard library only; everything
started is killed on exit.
"""

from __future__ import annotations

import argparse
import atexit
import http.client
import json
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
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


def context_switches(pid: int) -> tuple[int, int]:
    """(voluntary, involuntary) context switches, summed over kelpie's threads."""
    voluntary = involuntary = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches"):
                        voluntary += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches"):
                        involuntary += int(line.split()[1])
        except FileNotFoundError:
            pass  # a thread that ended between the listing and the read
    return voluntary, involuntary


class Kelpie:
    def __init__(self, binary: Path, programs: int, crashed: int) -> None:
        self.dir = tempfile.TemporaryDirectory(prefix="kelpie-dashboard-bench-")
        config = Path(self.dir.name) / "supervisor.toml"
        lines = ["[supervisor]", 'http_listen = "127.0.0.1:0"', 'log_level = "info"', ""]
        for i in range(programs):
            lines += [f"[program.p{i:05}]", 'command = ["sleep", "100000"]', 'start_seconds = "100ms"', ""]
        crash = "for i in $(seq 20); do echo \"line $i before the crash\"; done; exit 3"
        for i in range(crashed):
            lines += [
                f"[program.crashed{i:03}]",
                f"command = [\"sh\", \"-c\", {json.dumps(crash)}]",
                'restart = "never"',
                "required = false",
                'start_seconds = "0s"',
                "",
            ]
        config.write_text("\n".join(lines))
        self.expected = programs + crashed
        self.crashed = crashed
        env = dict(os.environ, KELPIE_LOG_FORMAT="json")
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
                    raise SystemExit(f"kelpie never logged {name!r} within {timeout}s")
                self.lock.wait(left)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.dir.cleanup()


def get(conn: http.client.HTTPConnection, path: str) -> bytes:
    conn.request("GET", path)
    response = conn.getresponse()
    body = response.read()
    if response.status != 200:
        raise SystemExit(f"GET {path}: {response.status} {body[:200]!r}")
    return body


def wait_settled(conn: http.client.HTTPConnection, kelpie: Kelpie, timeout: float) -> None:
    """Until every sleep is running and ready and every crashed program has
    failed with its exit recorded, then past every start_seconds."""
    deadline = time.monotonic() + timeout
    while True:
        conn.request("GET", "/dashboard.json")
        response = conn.getresponse()
        body = response.read()
        if response.status == 503:  # still starting: the Supervisor is not linked yet
            programs = []
        elif response.status != 200:
            raise SystemExit(f"GET /dashboard.json: {response.status} {body[:200]!r}")
        else:
            programs = json.loads(body)["programs"]
        running = sum(1 for p in programs if p["state"] == "running" and p.get("ready") is True)
        done = sum(1 for p in programs if p["name"].startswith("crashed") and p.get("exit_count"))
        if len(programs) == kelpie.expected and running == kelpie.expected - kelpie.crashed and done == kelpie.crashed:
            time.sleep(1.0)  # past start_seconds of the last ones; no timer left
            return
        if time.monotonic() > deadline:
            raise SystemExit(
                f"not settled after {timeout}s: {len(programs)} programs, {running} running and ready, "
                f"{done} of {kelpie.crashed} crashed ones with their exit recorded"
            )
        time.sleep(0.5)


def latency_ms(
    conn: http.client.HTTPConnection, path: str, requests: int, apart: float = 0.0
) -> tuple[float, float, int]:
    """Median and p99 of `requests` GETs, `apart` seconds from one start to
    the next; also the size of the last reply."""
    for _ in range(10):
        get(conn, path)
    times = []
    size = 0
    for _ in range(requests):
        if apart:
            time.sleep(apart)
        t0 = time.perf_counter()
        size = len(get(conn, path))
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, len(times) * 99 // 100)], size


def switches_over(
    pid: int, seconds: float, poll: http.client.HTTPConnection | None, path: str
) -> tuple[float, float, int]:
    """Voluntary and involuntary context switches per second over
    `seconds`, polling `path` once a second on `poll` when given; also the
    polls made."""
    before = context_switches(pid)
    t0 = time.monotonic()
    polls = 0
    while True:
        now = time.monotonic()
        if now - t0 >= seconds:
            break
        if poll is not None:
            get(poll, path)
            polls += 1
        time.sleep(max(0.0, min(1.0 - (time.monotonic() - now), seconds - (time.monotonic() - t0))))
    after = context_switches(pid)
    elapsed = time.monotonic() - t0
    return (after[0] - before[0]) / elapsed, (after[1] - before[1]) / elapsed, polls


def run_once(args: argparse.Namespace, binary: Path, run: int) -> dict:
    kelpie = Kelpie(binary, args.programs, args.crashed)
    try:
        addr = kelpie.wait_event("http_listening", 30)["addr"]
        host, port = addr.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        wait_settled(conn, kelpie, 120)
        poll_path = "/dashboard.json?program=crashed000" if args.crashed else "/dashboard.json"
        # 0.6 s apart: past the 500 ms for which a /proc pass is reused, so
        # every one of these pays for its own, as an open page's poll does.
        dash_p50, dash_p99, dash_size = latency_ms(conn, poll_path, args.fresh, 0.6)
        cached_p50, _, _ = latency_ms(conn, poll_path, args.requests)
        metrics_p50, metrics_p99, _ = latency_ms(conn, "/metrics", args.requests)
        conn.close()
        idle, idle_preempted, _ = switches_over(kelpie.proc.pid, args.idle, None, poll_path)
        page = http.client.HTTPConnection(host, int(port), timeout=30)
        watched, watched_preempted, polls = switches_over(kelpie.proc.pid, args.idle, page, poll_path)
        page.close()
        result = {
            "dashboard_json_p50_ms": dash_p50,
            "dashboard_json_p99_ms": dash_p99,
            "dashboard_json_back_to_back_p50_ms": cached_p50,
            "metrics_p50_ms": metrics_p50,
            "ratio_dashboard_to_metrics": dash_p50 / metrics_p50,
            "idle_wakeups_per_s": idle,
            "idle_preemptions_per_s": idle_preempted,
            "one_page_wakeups_per_s": watched,
            "one_page_wakeups_per_poll": watched * args.idle / max(polls, 1),
            "one_page_preemptions_per_s": watched_preempted,
            "polls_per_s": polls / args.idle,
        }
        log(f"run {run}: reply {dash_size} B; " + ", ".join(f"{k}={v:.3f}" for k, v in result.items()))
        return result
    finally:
        kelpie.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", type=Path, default=REPO / "target" / "release" / "kelpie")
    parser.add_argument("--programs", type=int, default=1000)
    parser.add_argument("--crashed", type=int, default=50)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--requests", type=int, default=200, help="back-to-back requests of each kind")
    parser.add_argument("--fresh", type=int, default=30, help="dashboard polls 0.6 s apart (each with its own /proc pass)")
    parser.add_argument("--idle", type=float, default=20.0, help="seconds of each wake-up window")
    args = parser.parse_args()
    if not args.binary.exists():
        raise SystemExit(f"{args.binary} not found: run `cargo build --release` first")
    need = 4 * (args.programs + args.crashed) + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))
    atexit.register(cleanup)
    log(f"machine: {os.cpu_count()} CPU, {platform.processor() or platform.machine()}, kernel {platform.release()}")
    results = [run_once(args, args.binary, run) for run in range(1, args.runs + 1)]
    print(f"\n{args.programs} programs + {args.crashed} with a crash history, {args.runs} runs")
    print(f"{'figure':34} {'median':>10} {'min-max':>20}")
    for key in results[0]:
        values = sorted(r[key] for r in results)
        print(f"{key:34} {statistics.median(values):10.3f} {values[0]:9.3f} - {values[-1]:<9.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
