#!/usr/bin/env python3
"""Whole-process benchmarks for kelpie (see docs/benchmarks.md).

    python3 bench/run.py all                  # every scenario, 5 runs each
    python3 bench/run.py startup memory --runs 7
    python3 bench/run.py idle --idle-seconds 5 --runs 1   # quick check

Scenarios: startup, floor, memory, restart, stop, idle, status (or `all`,
the default).  Each runs `--runs` times (default 5) against a fresh kelpie; the
Markdown table printed at the end gives the median over the runs, the
min-max range, the target and whether the median meets it.

Process births, execs and deaths are observed through the kernel's process
events connector (netlink, needs root), which timestamps each event on
CLOCK_MONOTONIC and lets the bench sleep instead of competing with kelpie for
the CPU; `--method proc` (automatic fallback) polls /proc instead.

Only the Python 3 standard library is used (plus `cc` for the optional
spawn_floor.c reference).  Everything the bench starts carries a unique
marker in its environment (KELPIE_BENCH_MARKER=<token>, inherited from
kelpie by every program); on exit -- normal, error, Ctrl-C or SIGTERM --
kelpie's process group is killed and /proc is scanned for anything still
carrying the marker, which is killed and reported as a leftover.  (A SIGKILL
of the bench itself cannot be cleaned up after.)
"""

from __future__ import annotations

import argparse
import atexit
import datetime as dt
import errno
import hashlib
import json
import math
import os
import platform
import random
import shlex
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MARKER_KEY = "KELPIE_BENCH_MARKER"
TOKEN = f"kbench-{os.getpid()}-{random.getrandbits(48):012x}"
TICKS = os.sysconf("SC_CLK_TCK")
SLEEP_CMD = ["sleep", "100000"]
# kelpie (and so its programs) gets this PATH, not the caller's: a long PATH
# means one failed execve per entry before `sleep` is found, in every spawn.
BENCH_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SLEEP_COMM = "sleep"

STARTED: list[subprocess.Popen] = []  # every kelpie we launched
ANOMALIES: list[str] = []  # odd things seen, printed at the end
WARNINGS: dict[str, int] = {}  # distinct kelpie WARN events -> how many runs logged them


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def anomaly(msg: str) -> None:
    ANOMALIES.append(msg)
    log(f"  !! {msg}")


# --------------------------------------------------------------------------
# /proc helpers


def read_stat(pid: int):
    """(comm, state, ppid, utime+stime ticks) of a process, or None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    lp = data.find(b"(")
    rp = data.rfind(b")")
    rest = data[rp + 2 :].split()
    # rest[0] = state (field 3), rest[1] = ppid (field 4), utime/stime = fields 14/15
    return (
        data[lp + 1 : rp].decode(errors="replace"),
        rest[0].decode(),
        int(rest[1]),
        int(rest[11]) + int(rest[12]),
    )


def proc_pids():
    for name in os.listdir("/proc"):
        if name.isdigit():
            yield int(name)


class Tracker:
    """Follows kelpie's children: when each was forked, exec'd and exited,
    as CLOCK_MONOTONIC seconds (the clock of time.monotonic()).

    Two implementations with the same interface:
    - NetlinkTracker (default): the kernel's process events connector
      (NETLINK_CONNECTOR / CN_IDX_PROC, needs root).  Each fork/exec/exit
      comes with the kernel's own ktime_get_ns() timestamp, and the bench
      sleeps in recv() instead of competing with kelpie for the CPU.
    - PollTracker (--method proc, or when netlink is unavailable): polls
      /proc; a transition is timestamped when the poll first sees it.
    """

    def __init__(self):
        self.kpid = 0
        self.forked: dict[int, float] = {}  # child pid -> fork time
        self.execd: dict[int, float] = {}  # child pid -> exec time
        self.exited: dict[int, float] = {}  # child pid -> exit time
        self.kelpie_exit: float | None = None

    def attach(self, kpid: int) -> None:
        self.kpid = kpid

    def running(self) -> list[int]:
        return [p for p in self.execd if p not in self.exited]

    def pump(self, timeout: float) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class NetlinkTracker(Tracker):
    NETLINK_CONNECTOR = 11
    CN_IDX_PROC = 1
    CN_VAL_PROC = 1
    FORK, EXEC, EXIT = 1, 2, 0x80000000
    SO_RCVBUFFORCE = 33

    def __init__(self):
        super().__init__()
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, self.NETLINK_CONNECTOR)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, self.SO_RCVBUFFORCE, 32 << 20)
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 << 20)
        self.sock.bind((0, self.CN_IDX_PROC))
        self._control(1)  # PROC_CN_MCAST_LISTEN
        self.pending: list[tuple] = []  # events seen before attach()

    def _control(self, op: int) -> None:
        payload = struct.pack("=I", op)
        cn = struct.pack("=IIIIHH", self.CN_IDX_PROC, self.CN_VAL_PROC, 0, 0, len(payload), 0) + payload
        self.sock.send(struct.pack("=IHHII", 16 + len(cn), 3, 0, 0, 0) + cn)  # NLMSG_DONE

    def close(self) -> None:
        if self.sock.fileno() < 0:
            return
        try:
            self._control(2)  # PROC_CN_MCAST_IGNORE
        except OSError:
            pass
        self.sock.close()

    def pump(self, timeout: float) -> None:
        self.sock.settimeout(timeout)
        first = True
        while True:
            try:
                data = self.sock.recv(65536)
            except (socket.timeout, BlockingIOError):
                return
            except OSError as e:
                if e.errno == errno.ENOBUFS:
                    raise RuntimeError("process events lost (netlink receive buffer overflow)")
                raise
            self._parse(data)
            if first:  # drain whatever else is queued without blocking
                self.sock.settimeout(0)
                first = False

    def _parse(self, data: bytes) -> None:
        off = 0
        while off + 68 <= len(data):
            length, mtype = struct.unpack_from("=IH", data, off)
            if length < 16:
                break
            if mtype not in (1, 2) and length >= 68:  # skip NLMSG_NOOP / NLMSG_ERROR
                what, _cpu, ts = struct.unpack_from("=IIQ", data, off + 36)
                a, b, c, d = struct.unpack_from("=iiii", data, off + 52)
                self._event(what, ts / 1e9, a, b, c, d)
            off += (length + 3) & ~3

    def _event(self, what, ts, a, b, c, d) -> None:
        if not self.kpid:
            if what in (self.FORK, self.EXEC, self.EXIT):
                self.pending.append((what, ts, a, b, c, d))
            return
        if self.pending:
            backlog, self.pending = self.pending, []
            for ev in backlog:
                self._event(*ev)
        if what == self.FORK:
            # parent_pid, parent_tgid, child_pid, child_tgid; threads have child_pid != child_tgid
            if b == self.kpid and c == d:
                self.forked[c] = ts
        elif what == self.EXEC:
            if a == b and a in self.forked:
                self.execd[a] = ts
        elif what == self.EXIT:
            if a == b:
                if a == self.kpid:
                    self.kelpie_exit = ts
                elif a in self.forked:
                    self.exited[a] = ts


class PollTracker(Tracker):
    def __init__(self, poll_sleep: float = 0.0):
        super().__init__()
        self.poll_sleep = poll_sleep
        self.others: set[int] = set()

    def pump(self, timeout: float) -> None:
        """Poll /proc until something changes or timeout passes."""
        deadline = time.monotonic() + timeout
        while True:
            changed = self._scan()
            if changed or time.monotonic() >= deadline:
                return
            if self.poll_sleep:
                time.sleep(self.poll_sleep)

    def _scan(self) -> bool:
        changed = False
        for pid in proc_pids():
            if pid in self.others or pid in self.execd:
                continue
            st = read_stat(pid)
            if st is None:
                continue
            comm, state, ppid, _ = st
            if ppid != self.kpid:
                self.others.add(pid)
                continue
            now = time.monotonic()
            if pid not in self.forked:
                self.forked[pid] = now
                changed = True
            if comm == SLEEP_COMM and state not in "ZX":
                self.execd[pid] = now
                changed = True
        for pid in self.running():
            st = read_stat(pid)
            if st is None or st[1] in "ZX":
                self.exited[pid] = time.monotonic()
                changed = True
        if self.kelpie_exit is None and self.kpid:
            st = read_stat(self.kpid)
            if st is None or st[1] in "ZX":
                self.kelpie_exit = time.monotonic()
                changed = True
        return changed


def make_tracker(ctx) -> Tracker:
    if ctx.method == "netlink":
        return NetlinkTracker()
    return PollTracker(ctx.poll_sleep)


def children_of(ppid: int, comm: str | None = SLEEP_COMM) -> list[int]:
    """Full (uncached) scan: live children of ppid, optionally with a given comm."""
    out = []
    for pid in proc_pids():
        st = read_stat(pid)
        if st and st[2] == ppid and st[1] not in "ZX" and (comm is None or st[0] == comm):
            out.append(pid)
    return out


def marked_pids() -> list[int]:
    needle = f"{MARKER_KEY}={TOKEN}".encode()
    me = os.getpid()
    out = []
    for pid in proc_pids():
        if pid == me:
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read()
        except OSError:
            continue
        if needle in env:
            st = read_stat(pid)
            if st and st[1] not in "ZX":
                out.append(pid)
    return out


def status_fields(pid: int, path: str = "status") -> dict[str, int]:
    """Numeric 'Key: value [kB]' lines of /proc/PID/status or smaps_rollup."""
    out = {}
    with open(f"/proc/{pid}/{path}") as f:
        for line in f:
            key, _, val = line.partition(":")
            parts = val.split()
            if parts and parts[0].isdigit():
                out[key.strip()] = int(parts[0])
    return out


def thread_counters(pid: int) -> dict:
    """CPU (ns, from per-thread schedstat; ticks from /proc/PID/stat) and
    context switches summed over every thread of pid."""
    cpu_ns = vol = nonvol = 0
    per_thread = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        base = f"/proc/{pid}/task/{tid}"
        try:
            with open(f"{base}/schedstat") as f:
                ns = int(f.read().split()[0])
            st = status_fields(pid, f"task/{tid}/status")
            with open(f"{base}/comm") as f:
                comm = f.read().strip()
        except OSError:
            continue
        v = st.get("voluntary_ctxt_switches", 0)
        nv = st.get("nonvoluntary_ctxt_switches", 0)
        cpu_ns += ns
        vol += v
        nonvol += nv
        per_thread[tid] = (comm, ns, v + nv)
    st = read_stat(pid)
    return {
        "cpu_ns": cpu_ns,
        "ticks": st[3] if st else 0,
        "ctxt": vol + nonvol,
        "vol": vol,
        "nonvol": nonvol,
        "threads": per_thread,
    }


# --------------------------------------------------------------------------
# launching and cleaning up


class Kelpie:
    """One supervised kelpie run in its own session/process group, with its
    stdout (JSON log) and stderr captured to files in a private temp dir."""

    def __init__(self, ctx, name: str, config: str, argv: list[str] | None = None):
        binary, workdir = ctx.binary, ctx.workdir
        self.tracker = make_tracker(ctx)
        self.dir = workdir / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.cfg = self.dir / "supervisor.toml"
        self.cfg.write_text(config)
        self.argv = argv or [str(binary), "run", "-c", str(self.cfg)]
        self.is_kelpie = argv is None
        self.out_path = self.dir / "stdout.jsonl"
        self.err_path = self.dir / "stderr.txt"
        self.binary = binary
        self.proc: subprocess.Popen | None = None
        self.t_exec = 0.0

    def start(self) -> float:
        env = dict(os.environ)
        env["KELPIE_LOG_FORMAT"] = "json"
        env.pop("KELPIE_LOG", None)
        env.pop("KELPIE_CONFIG", None)
        env[MARKER_KEY] = TOKEN
        env["PATH"] = BENCH_PATH
        out = open(self.out_path, "wb")
        err = open(self.err_path, "wb")
        try:
            self.t_exec = time.monotonic()
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=env,
                cwd=self.dir,
                start_new_session=True,
            )
        finally:
            out.close()
            err.close()
        STARTED.append(self.proc)
        self.tracker.attach(self.proc.pid)
        return self.t_exec

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 40.0) -> int | None:
        """Graceful SIGTERM; SIGKILL the group if it does not exit in time."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                anomaly(f"kelpie pid {self.pid} did not exit {timeout}s after SIGTERM; SIGKILL")
                kill_group(self.proc)
                return self.proc.wait()
        return self.proc.returncode

    def events(self) -> list[dict]:
        out = []
        try:
            with open(self.out_path, "rb") as f:
                for line in f:
                    try:
                        out.append(json.loads(line))
                    except ValueError:
                        out.append({"_raw": line.decode(errors="replace").rstrip()})
        except OSError:
            pass
        return out

    def check_output(self, label: str, expect_exit: int | None = 0) -> None:
        """Report kelpie errors/warnings/panics and non-JSON lines as anomalies."""
        bad = []
        warned = set()
        for ev in self.events() if self.is_kelpie else []:
            if "_raw" in ev:
                bad.append(f"non-JSON line: {ev['_raw'][:160]}")
            elif ev.get("level") == "ERROR" or ev.get("event") == "panic":
                bad.append(f"{ev.get('level')} {ev.get('event')}: {str(ev.get('message'))[:160]}")
            elif ev.get("level") == "WARN":
                warned.add(f"{ev.get('event')}: {str(ev.get('message'))[:200]}")
        for w in warned:
            WARNINGS[w] = WARNINGS.get(w, 0) + 1
        for line in bad[:5]:
            anomaly(f"{label}: kelpie log {line}")
        if len(bad) > 5:
            anomaly(f"{label}: ... {len(bad) - 5} more such log lines")
        try:
            err = self.err_path.read_text(errors="replace").strip()
        except OSError:
            err = ""
        if err:
            anomaly(f"{label}: kelpie stderr: {err[:300]}")
        rc = self.proc.returncode if self.proc else None
        if expect_exit is not None and rc is not None and rc != expect_exit:
            anomaly(f"{label}: kelpie exit code {rc} (expected {expect_exit})")


def kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def sweep(label: str, report: bool = True) -> int:
    """Kill anything still carrying our marker (and its process group).
    Returns how many processes were found."""
    total = 0
    for _ in range(50):
        pids = marked_pids()
        if not pids:
            break
        total = max(total, len(pids))
        for pid in pids:
            for kill in (lambda p: os.killpg(os.getpgid(p), signal.SIGKILL), lambda p: os.kill(p, signal.SIGKILL)):
                try:
                    kill(pid)
                except (ProcessLookupError, PermissionError, OSError):
                    pass
        time.sleep(0.05)
    if total and report:
        anomaly(f"{label}: {total} process(es) with the bench marker left after kelpie exited; killed")
    return total


def teardown(k: Kelpie, label: str, expect_exit: int | None = 0) -> None:
    k.tracker.close()
    k.stop()
    k.check_output(label, expect_exit)
    sweep(label)


def cleanup_all() -> None:
    for p in STARTED:
        if p.poll() is None:
            kill_group(p)
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                pass
    sweep("exit cleanup")


def on_signal(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


# --------------------------------------------------------------------------
# configs


def supervisor_head(workdir: Path) -> str:
    return (
        "[supervisor]\n"
        'http_listen = "off"\n'
        f'control_socket = "{workdir}/kelpie.sock"\n'
    )


def sleeps_config(workdir: Path, n: int, shape: str, extra: str = "") -> str:
    cmd = json.dumps(SLEEP_CMD)
    parts = [supervisor_head(workdir)]
    if shape == "tables":
        for i in range(n):
            parts.append(f"\n[program.p{i}]\ncommand = {cmd}\n{extra}")
    elif shape == "instances":
        parts.append(f"\n[program.p]\ncommand = {cmd}\ninstances = {n}\n{extra}")
    else:
        raise ValueError(shape)
    return "".join(parts)


# --------------------------------------------------------------------------
# scenario helpers


def wait_running(k: Kelpie, n: int, timeout: float) -> float:
    """Wait until n children of kelpie have exec'd (i.e. run `sleep`).
    Returns seconds from just before kelpie's exec to the n-th child exec."""
    tr = k.tracker
    deadline = k.t_exec + timeout
    while len(tr.execd) < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(tr.execd)}/{n} programs running after {timeout}s")
        if not k.alive():
            raise RuntimeError(f"kelpie exited early with code {k.proc.returncode}: {k.err_path.read_text()[:300]}")
        tr.pump(0.2)
    if tr.exited:
        anomaly(f"{len(tr.exited)} program(s) exited during startup")
    nth = sorted(tr.execd.values())[n - 1]
    # Cross-check with /proc: the processes are really there, running sleep.
    real = len(children_of(k.pid))
    if real < n:
        raise RuntimeError(f"/proc shows {real} sleeping children, events said {n}")
    return nth - k.t_exec


def sigterm_until_stopped(k: Kelpie, tr, kids: set, timeout: float) -> tuple[float, float]:
    """SIGTERM kelpie, then follow process events until kelpie and every
    one of `kids` have exited. Returns (time of the signal, time the last
    child exited), both monotonic."""
    t0 = time.monotonic()
    k.proc.send_signal(signal.SIGTERM)
    deadline = t0 + timeout
    while tr.kelpie_exit is None or not kids <= tr.exited.keys():
        tr.pump(0.5)
        if time.monotonic() > deadline:
            left = len(kids - tr.exited.keys())
            raise RuntimeError(f"stop not done {timeout:.0f}s after SIGTERM (kelpie exited: {tr.kelpie_exit is not None}, {left} sleeps left)")
    return t0, max(tr.exited[p] for p in kids)


def idle_window(ctx, k: Kelpie, raw_key: str) -> tuple[dict, dict, float]:
    """kelpie's thread counters before and after ctx.idle_seconds of no
    traffic, and the seconds it lasted; threads that ran meanwhile are
    logged and kept in ctx.raw[raw_key]."""
    a = thread_counters(k.pid)
    t0 = time.monotonic()
    time.sleep(ctx.idle_seconds)
    b = thread_counters(k.pid)
    secs = time.monotonic() - t0
    woke = []
    for tid, (comm, ns, cs) in b["threads"].items():
        before = a["threads"].get(tid, (comm, 0, 0))
        if cs != before[2] or ns != before[1]:
            woke.append(f"{comm}[{tid}]: {cs - before[2]} switches, {(ns - before[1]) / 1e6:.3f} ms")
    if woke:
        ctx.raw.setdefault(raw_key, []).append(woke)
        log(f"    threads that ran while idle: {'; '.join(woke[:8])}")
    return a, b, secs


def settle(k: Kelpie, n: int, min_wait: float) -> None:
    """Wait min_wait, then until kelpie's RSS and the child count are stable."""
    time.sleep(min_wait)
    prev = None
    for _ in range(40):
        rss = status_fields(k.pid).get("VmRSS")
        cnt = len(children_of(k.pid))
        cur = (rss, cnt)
        if cur == prev and cnt == n:
            return
        prev = cur
        time.sleep(0.25)
    anomaly(f"kelpie pid {k.pid} did not settle (RSS {prev[0]} kB, {prev[1]}/{n} children)")


def cpu_busy(interval: float = 0.5) -> float:
    """Fraction (0..1) of all CPUs busy over `interval`, from /proc/stat."""
    def sample():
        with open("/proc/stat") as f:
            vals = [int(x) for x in f.readline().split()[1:]]
        idle = vals[3] + vals[4]  # idle + iowait
        return sum(vals), idle

    t1, i1 = sample()
    time.sleep(interval)
    t2, i2 = sample()
    return 1 - (i2 - i1) / max(1, t2 - t1)


def wait_quiet(ctx) -> float:
    """Before a run: wait (up to --quiet-timeout) until the machine's other
    load is below --quiet-threshold.  Returns the last busy fraction seen."""
    deadline = time.monotonic() + ctx.quiet_timeout
    while True:
        busy = cpu_busy()
        if busy <= ctx.quiet_threshold or time.monotonic() >= deadline:
            return busy
        log(f"    machine busy ({busy:.0%} of {os.cpu_count()} CPUs); waiting")
        time.sleep(2)


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    s = sorted(values)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


def parse_ts(ts: str) -> float:
    # "2026-11-23T07:33:34.435059Z" -> unix seconds (microsecond precision)
    return dt.datetime.strptime(ts.replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()


# --------------------------------------------------------------------------
# scenarios; each returns {metric_key: value} for one run


def sc_startup(ctx, n: int, shape: str, run: int) -> dict:
    k = Kelpie(ctx, f"startup-{shape}-{n}-{run}", sleeps_config(ctx.workdir, n, shape))
    try:
        k.start()
        secs = wait_running(k, n, 60)
        return {f"startup_{shape}_{n}_ms": secs * 1000}
    finally:
        teardown(k, f"startup {shape} N={n} run {run}")


def sc_floor(ctx, n: int, run: int, discard: bool = False) -> dict:
    """Same measurement as sc_startup, with bench/spawn_floor.c as the parent
    (`discard`: children's output on /dev/null, no pipes)."""
    mode = ["--discard"] if discard else []
    k = Kelpie(ctx, f"floor-{n}-{run}", "", argv=[str(ctx.floor_binary)] + mode + [str(n)] + SLEEP_CMD)
    try:
        k.start()
        secs = wait_running(k, n, 60)
        return {f"floor_{n}_ms": secs * 1000}
    finally:
        teardown(k, f"floor N={n} run {run}")


def sc_memory(ctx, n: int, shape: str, run: int) -> dict:
    k = Kelpie(ctx, f"memory-{shape}-{n}-{run}", sleeps_config(ctx.workdir, n, shape))
    try:
        k.start()
        wait_running(k, n, 60)
        k.tracker.close()
        settle(k, n, ctx.settle)
        st = status_fields(k.pid)
        sm = status_fields(k.pid, "smaps_rollup")
        uss = sm.get("Private_Clean", 0) + sm.get("Private_Dirty", 0)
        return {
            f"mem_{shape}_{n}_rss_mib": st["VmRSS"] / 1024,
            f"mem_{shape}_{n}_uss_mib": uss / 1024,
            f"mem_{shape}_{n}_pss_mib": sm.get("Pss", 0) / 1024,
            f"mem_{shape}_{n}_hwm_mib": st.get("VmHWM", 0) / 1024,
            f"mem_{shape}_{n}_threads": st.get("Threads", 0),
        }
    finally:
        teardown(k, f"memory {shape} N={n} run {run}")


def sc_restart(ctx, run: int) -> dict:
    extra = 'backoff = { initial = "0s" }\nmax_restarts = 1000000\nrestart_window = "1s"\n'
    k = Kelpie(ctx, f"restart-{run}", sleeps_config(ctx.workdir, 1, "tables", extra))
    fork_ms, exec_ms, react_ms, kills = [], [], [], []
    try:
        k.start()
        wait_running(k, 1, 30)
        settle(k, 1, 0.5)
        tr = k.tracker
        tr.pump(0)
        (old,) = tr.running()
        for i in range(ctx.restart_samples):
            tr.pump(0)  # drain what is queued
            wall = time.time()
            t0 = time.monotonic()
            os.kill(old, signal.SIGKILL)
            deadline = t0 + 5
            new = None
            while new is None:
                tr.pump(0.5)
                fresh = [p for p, ts in tr.execd.items() if ts >= t0 and p != old]
                if fresh:
                    new = fresh[0]
                elif time.monotonic() > deadline:
                    raise RuntimeError(f"no replacement for kill {i} within 5s (kelpie alive: {k.alive()})")
            fork_ms.append((tr.forked[new] - t0) * 1000)
            exec_ms.append((tr.execd[new] - t0) * 1000)
            if old in tr.exited:
                react_ms.append((tr.execd[new] - tr.exited[old]) * 1000)
            kills.append((wall, old, new))
            old = new
            time.sleep(random.uniform(0.02, 0.04))
        time.sleep(0.2)
    finally:
        teardown(k, f"restart run {run}")

    # Secondary method: kelpie's own JSON log.
    started = {}
    exited = {}
    for ev in k.events():
        if ev.get("event") == "program_started":
            started[ev.get("pid")] = parse_ts(ev["timestamp"])
        elif ev.get("event") == "program_exited":
            exited[ev.get("pid")] = parse_ts(ev["timestamp"])
    log_kill_ms, log_internal_ms = [], []
    for wall, old, new in kills:
        if new in started:
            log_kill_ms.append((started[new] - wall) * 1000)
            if old in exited:
                log_internal_ms.append((started[new] - exited[old]) * 1000)
    if len(log_kill_ms) != len(kills):
        anomaly(f"restart run {run}: only {len(log_kill_ms)}/{len(kills)} restarts found as program_started events")
    res = {
        "restart_exec_p50_ms": pct(exec_ms, 50),
        "restart_exec_p99_ms": pct(exec_ms, 99),
        "restart_fork_p50_ms": pct(fork_ms, 50),
        "restart_fork_p99_ms": pct(fork_ms, 99),
        "restart_samples": len(exec_ms),
    }
    if react_ms:
        res["restart_react_p50_ms"] = pct(react_ms, 50)
        res["restart_react_p99_ms"] = pct(react_ms, 99)
    if log_kill_ms:
        res["restart_log_p50_ms"] = pct(log_kill_ms, 50)
        res["restart_log_p99_ms"] = pct(log_kill_ms, 99)
    if log_internal_ms:
        res["restart_internal_p50_ms"] = pct(log_internal_ms, 50)
        res["restart_internal_p99_ms"] = pct(log_internal_ms, 99)
    ctx.raw.setdefault("restart_exec_samples_ms", []).append(exec_ms)
    return res


def sc_stop(ctx, run: int, n: int = 100) -> dict:
    k = Kelpie(ctx, f"stop{n}-{run}", sleeps_config(ctx.workdir, n, "tables"))
    try:
        k.start()
        wait_running(k, n, 60)
        settle(k, n, ctx.settle)
        tr = k.tracker
        tr.pump(0)
        kids = set(tr.running())
        if len(kids) != n:
            anomaly(f"stop run {run}: {len(kids)} children before stop, expected {n}")
        t0, last_child = sigterm_until_stopped(k, tr, kids, 40)
        k.proc.wait(10)
        t_wait = time.monotonic()
        alive = [p for p in kids if (st := read_stat(p)) and st[1] not in "ZX"]
        if alive:
            anomaly(f"stop run {run}: {len(alive)} sleeps still alive after kelpie exited")
        return {
            f"stop_{n}_ms": (max(last_child, tr.kelpie_exit) - t0) * 1000,
            f"stop_{n}_children_ms": (last_child - t0) * 1000,
            f"stop_{n}_exit_ms": (t_wait - t0) * 1000,
        }
    finally:
        teardown(k, f"stop run {run}")


def sc_idle(ctx, run: int, n: int = 100) -> dict:
    k = Kelpie(ctx, f"idle-{run}", sleeps_config(ctx.workdir, n, "tables"))
    try:
        k.start()
        wait_running(k, n, 60)
        k.tracker.close()
        settle(k, n, max(ctx.settle, 3.0))  # past start_seconds (1s) of every program
        a, b, secs = idle_window(ctx, k, "idle_threads_awake")
        if len(children_of(k.pid)) != n:
            anomaly(f"idle run {run}: child count changed during the idle window")
        return {
            "idle_cpu_ms": (b["cpu_ns"] - a["cpu_ns"]) / 1e6,
            "idle_cpu_ticks_ms": (b["ticks"] - a["ticks"]) * 1000 / TICKS,
            "idle_wakeups_per_s": (b["ctxt"] - a["ctxt"]) / secs,
            "idle_ctxt_switches": b["ctxt"] - a["ctxt"],
        }
    finally:
        teardown(k, f"idle run {run}")


# status: whole-process latency of control commands against 100 programs.
# (metric key prefix, argv; "{kelpie}", "{true}" and "{sock}" are replaced)
STATUS_CMDS = [
    ("true", ["{true}"]),
    ("version", ["{kelpie}", "--version"]),
    ("health", ["{kelpie}", "health", "-s", "{sock}"]),
    ("status", ["{kelpie}", "status", "-s", "{sock}"]),
    ("status_json", ["{kelpie}", "status", "--json", "-s", "{sock}"]),
]
STATUS_WARMUP = 5


def client_env() -> dict:
    """Environment for the control commands the bench runs: marked (so the
    clean-up finds strays), fixed PATH, no colour, no config lookup."""
    env = dict(os.environ)
    for key in ("KELPIE_LOG", "KELPIE_CONFIG", "KELPIE_SOCKET", "NO_COLOR"):
        env.pop(key, None)
    env[MARKER_KEY] = TOKEN
    env["PATH"] = BENCH_PATH
    return env


def status_all_running(ctx, sock: Path, n: int, timeout: float) -> dict:
    """Poll `kelpie status --json` until it lists n programs, every one of
    them (and every instance) `running`.  Returns the last reply."""
    deadline = time.monotonic() + timeout
    last = "no reply"
    while True:
        r = subprocess.run([str(ctx.binary), "status", "--json", "-s", str(sock)], capture_output=True, env=client_env(), timeout=15)
        if r.returncode == 0:
            try:
                reply = json.loads(r.stdout)
                progs = reply.get("programs", [])
                states = [p.get("state") for p in progs] + [i.get("state") for p in progs for i in p.get("instances", [])]
                if len(progs) == n and all(st == "running" for st in states):
                    return reply
                last = f"{len(progs)} programs, states {sorted(set(map(str, states)))}"
            except ValueError as e:
                last = f"not JSON ({e})"
        else:
            last = f"exit {r.returncode}: {r.stderr.decode(errors='replace').strip()[:200]}"
        if time.monotonic() > deadline:
            raise RuntimeError(f"`kelpie status --json` never showed {n} running programs within {timeout}s (last: {last})")
        time.sleep(0.2)


def time_hyperfine(argv: list[str], count: int, out_json: Path, cwd: Path) -> tuple[list[float], dict]:
    """hyperfine -N (no shell): each sample is one fork+exec+...+exit of argv,
    its stdout fed through a pipe that hyperfine reads and discards."""
    cmd = [
        "hyperfine", "-N", "--style", "none", "--output", "pipe",
        "--warmup", str(STATUS_WARMUP), "--runs", str(count),
        "--export-json", str(out_json), shlex.join(argv),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, env=client_env(), cwd=cwd, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"hyperfine failed ({r.returncode}): {(r.stderr or r.stdout).strip()[:300]}")
    res = json.loads(out_json.read_text())["results"][0]
    samples = [t * 1000 for t in res["times"]]
    codes = set(res.get("exit_codes") or [0])
    if codes != {0}:
        raise RuntimeError(f"{shlex.join(argv)} exited with {sorted(codes)}")
    return samples, {"user_ms": res.get("user", 0) * 1000, "system_ms": res.get("system", 0) * 1000}


def time_python(argv: list[str], count: int, cwd: Path) -> tuple[list[float], dict]:
    """Fallback: time.monotonic_ns() around subprocess.run, stdout piped back
    to the bench (and discarded).  Includes Python's own spawn overhead."""
    env = client_env()
    samples = []
    ru0 = os.times()
    for i in range(STATUS_WARMUP + count):
        t0 = time.monotonic_ns()
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=cwd)
        t1 = time.monotonic_ns()
        if r.returncode != 0:
            raise RuntimeError(f"{shlex.join(argv)} exited with {r.returncode}")
        if i >= STATUS_WARMUP:
            samples.append((t1 - t0) / 1e6)
    ru1 = os.times()
    total = STATUS_WARMUP + count
    return samples, {
        "user_ms": (ru1.children_user - ru0.children_user) * 1000 / total,
        "system_ms": (ru1.children_system - ru0.children_system) * 1000 / total,
    }


def sc_status(ctx, run: int, n: int = 100) -> dict:
    k = Kelpie(ctx, f"status-{run}", sleeps_config(ctx.workdir, n, "tables"))
    sock = ctx.workdir / "kelpie.sock"
    try:
        k.start()
        wait_running(k, n, 60)
        k.tracker.close()
        reply = status_all_running(ctx, sock, n, 30)
        if run == 1:
            ctx.raw["status_json_bytes"] = len(json.dumps(reply, indent=2))
        res = {}
        for key, args in STATUS_CMDS:
            subst = {"{kelpie}": str(ctx.binary), "{true}": shutil.which("true", path=BENCH_PATH) or "/bin/true", "{sock}": str(sock)}
            argv = [subst.get(a, a) for a in args]
            before = thread_counters(k.pid)["cpu_ns"]
            if ctx.timer == "hyperfine":
                samples, cpu = time_hyperfine(argv, ctx.status_invocations, k.dir / f"{key}.json", k.dir)
            else:
                samples, cpu = time_python(argv, ctx.status_invocations, k.dir)
            server_ns = thread_counters(k.pid)["cpu_ns"] - before
            res[f"{key}_p50_ms"] = pct(samples, 50)
            res[f"{key}_p90_ms"] = pct(samples, 90)
            res[f"{key}_cpu_ms"] = cpu["user_ms"] + cpu["system_ms"]
            if key not in ("true", "version"):
                res[f"{key}_server_cpu_ms"] = server_ns / 1e6 / (STATUS_WARMUP + ctx.status_invocations)
            ctx.raw.setdefault(f"{key}_samples_ms", []).append(samples)
        res["status_minus_version_p50_ms"] = res["status_p50_ms"] - res["version_p50_ms"]
        res["status_minus_health_p50_ms"] = res["status_p50_ms"] - res["health_p50_ms"]
        if len(children_of(k.pid)) != n:
            anomaly(f"status run {run}: child count changed while measuring")
        return res
    finally:
        teardown(k, f"status run {run}")


# --------------------------------------------------------------------------
# table

# key, label, unit, target (op, value) or None, primary?
ROWS = [
    ("startup_tables_100_ms", "startup: 100 programs running ([program.pN] x100)", "ms", ("<=", 100)),
    ("startup_tables_1000_ms", "startup: 1000 programs running ([program.pN] x1000)", "ms", ("<=", 1000)),
    ("startup_instances_100_ms", "startup: 100 programs running (instances = 100)", "ms", ("<=", 100)),
    ("startup_instances_1000_ms", "startup: 1000 programs running (instances = 1000)", "ms", ("<=", 1000)),
    ("floor_100_ms", "reference: 100 sleeps running under bench/spawn_floor.c", "ms", None),
    ("floor_1000_ms", "reference: 1000 sleeps running under bench/spawn_floor.c", "ms", None),
    ("mem_tables_100_rss_mib", "memory, 100 sleeps: RSS", "MiB", ("<=", 8)),
    ("mem_tables_100_uss_mib", "memory, 100 sleeps: USS (Private_Clean+Private_Dirty)", "MiB", ("<=", 4)),
    ("mem_tables_100_pss_mib", "memory, 100 sleeps: PSS", "MiB", None),
    ("mem_tables_1000_rss_mib", "memory, 1000 sleeps: RSS", "MiB", ("<=", 24)),
    ("mem_tables_1000_uss_mib", "memory, 1000 sleeps: USS", "MiB", None),
    ("mem_instances_100_rss_mib", "memory, 100 sleeps (instances = 100): RSS", "MiB", ("<=", 8)),
    ("mem_instances_100_uss_mib", "memory, 100 sleeps (instances = 100): USS", "MiB", ("<=", 4)),
    ("mem_instances_1000_rss_mib", "memory, 1000 sleeps (instances = 1000): RSS", "MiB", ("<=", 24)),
    ("mem_instances_1000_uss_mib", "memory, 1000 sleeps (instances = 1000): USS", "MiB", None),
    ("restart_exec_p50_ms", "restart: SIGKILL -> replacement exec'd `sleep`, p50", "ms", ("<=", 2.5)),
    ("restart_exec_p99_ms", "restart: SIGKILL -> replacement exec'd `sleep`, p99", "ms", ("<=", 10)),
    ("restart_fork_p50_ms", "restart: SIGKILL -> replacement pid exists (fork), p50", "ms", None),
    ("restart_fork_p99_ms", "restart: SIGKILL -> replacement pid exists (fork), p99", "ms", None),
    ("restart_react_p50_ms", "restart: old child's exit -> replacement exec'd, p50", "ms", None),
    ("restart_react_p99_ms", "restart: old child's exit -> replacement exec'd, p99", "ms", None),
    ("restart_log_p50_ms", "restart: SIGKILL -> `program_started` timestamp (log), p50", "ms", None),
    ("restart_log_p99_ms", "restart: SIGKILL -> `program_started` timestamp (log), p99", "ms", None),
    ("restart_internal_p50_ms", "restart: `program_exited` -> `program_started` (log), p50", "ms", None),
    ("restart_internal_p99_ms", "restart: `program_exited` -> `program_started` (log), p99", "ms", None),
    ("stop_100_ms", "stop: SIGTERM -> kelpie exited and no sleep left (100 programs)", "ms", ("<=", 100)),
    ("stop_100_children_ms", "stop: SIGTERM -> last of the 100 sleeps exited", "ms", None),
    ("stop_100_exit_ms", "stop: SIGTERM -> waitpid(kelpie) returned in the bench", "ms", None),
    # 1000 programs: each instance going down used to scan all of /proc for
    # escaped daemons, which made a shutdown quadratic (12.5 s here).
    ("stop_1000_ms", "stop: SIGTERM -> kelpie exited and no sleep left (1000 programs)", "ms", ("<=", 1000)),
    ("stop_1000_children_ms", "stop: SIGTERM -> last of the 1000 sleeps exited", "ms", None),
    ("idle_cpu_ms", "idle, 100 sleeps: kelpie CPU over the window (schedstat)", "ms", ("<", 5)),
    ("idle_cpu_ticks_ms", "idle, 100 sleeps: kelpie CPU over the window (utime+stime)", "ms", ("<", 5)),
    ("idle_wakeups_per_s", "idle, 100 sleeps: kelpie wake-ups (context switches, all threads)", "/s", ("<=", 0)),
    ("status_p50_ms", "status: `kelpie status` (text), 100 programs, whole process, p50", "ms", ("<=", 20)),
    ("status_p90_ms", "status: `kelpie status` (text), p90", "ms", None),
    ("status_json_p50_ms", "status: `kelpie status --json`, 100 programs, p50", "ms", None),
    ("status_json_p90_ms", "status: `kelpie status --json`, p90", "ms", None),
    ("health_p50_ms", "reference: `kelpie health` (minimal request), p50", "ms", None),
    ("health_p90_ms", "reference: `kelpie health`, p90", "ms", None),
    ("version_p50_ms", "reference: `kelpie --version` (process start only), p50", "ms", None),
    ("version_p90_ms", "reference: `kelpie --version`, p90", "ms", None),
    ("true_p50_ms", "reference: `true` (fork+exec+exit floor of the timer), p50", "ms", None),
    ("true_p90_ms", "reference: `true`, p90", "ms", None),
    ("status_minus_version_p50_ms", "status p50 − --version p50 (connect, request, render)", "ms", None),
    ("status_minus_health_p50_ms", "status p50 − health p50 (100-program reply and table)", "ms", None),
    ("status_cpu_ms", "status: client CPU (user+sys) per invocation, mean", "ms", None),
    ("status_json_cpu_ms", "status --json: client CPU per invocation, mean", "ms", None),
    ("health_cpu_ms", "health: client CPU per invocation, mean", "ms", None),
    ("version_cpu_ms", "--version: CPU per invocation, mean", "ms", None),
    ("true_cpu_ms", "`true`: CPU per invocation, mean", "ms", None),
    ("status_server_cpu_ms", "status: kelpie (server) CPU per request", "ms", None),
    ("status_json_server_cpu_ms", "status --json: kelpie (server) CPU per request", "ms", None),
    ("health_server_cpu_ms", "health: kelpie (server) CPU per request", "ms", None),
]


def fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    if abs(v) >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def table(results: dict[str, list[float]]) -> str:
    lines = [
        "| scenario | median | min–max | runs | target | pass |",
        "|---|---:|---:|---:|---:|:---:|",
    ]
    for key, label, unit, target in ROWS:
        vals = results.get(key)
        if not vals:
            continue
        med = statistics.median(vals)
        if target:
            op, tv = target
            ok = med <= tv if op == "<=" else med < tv
            tgt = f"{'≤' if op == '<=' else '<'} {fmt(tv)} {unit}"
            verdict = "pass" if ok else "**FAIL**"
        else:
            tgt, verdict = "—", "—"
        lines.append(
            f"| {label} | {fmt(med)} {unit} | {fmt(min(vals))}–{fmt(max(vals))} | {len(vals)} | {tgt} | {verdict} |"
        )
    return "\n".join(lines)


def machine_facts(binary: Path, copy: Path) -> str:
    model = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = status_fields_file("/proc/meminfo").get("MemTotal", 0)
    try:
        rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock"], capture_output=True, text=True).stdout.strip()
        rev += " (+ uncommitted src changes)" if dirty else ""
    except OSError:
        rev = "?"
    return (
        f"- date: {dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}\n"
        f"- CPU: {model}, nproc = {os.cpu_count()}\n"
        f"- memory: {mem / 1024 / 1024:.1f} GiB\n"
        f"- kernel: {platform.release()}\n"
        f"- load average at start: {open('/proc/loadavg').read().split()[0:3]}\n"
        f"- kelpie: {binary} ({binary.stat().st_size / 1024 / 1024:.1f} MiB, built "
        f"{dt.datetime.fromtimestamp(binary.stat().st_mtime, dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}, "
        f"sha256 {hashlib.sha256(copy.read_bytes()).hexdigest()[:12]}), HEAD {rev}\n"
        f"- python: {platform.python_version()}, sleep: {shutil.which('sleep')}"
    )


def status_fields_file(path: str) -> dict[str, int]:
    out = {}
    with open(path) as f:
        for line in f:
            key, _, val = line.partition(":")
            parts = val.split()
            if parts and parts[0].isdigit():
                out[key.strip()] = int(parts[0])
    return out


# --------------------------------------------------------------------------


class Ctx:
    pass


def ensure_binary(path: Path) -> Path:
    if path.exists():
        return path
    log(f"{path} missing; running cargo build --release")
    subprocess.run(["cargo", "build", "--release"], cwd=REPO, check=True)
    if not path.exists():
        sys.exit(f"bench: {path} still missing after cargo build --release")
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenarios", nargs="*", default=["all"], help="startup floor memory restart stop idle status | all (default all)")
    ap.add_argument("--runs", type=int, default=5, help="runs per scenario (default 5)")
    ap.add_argument("--release-binary", type=Path, default=REPO / "target/release/kelpie")
    ap.add_argument("--restart-samples", type=int, default=100, help="kills per restart run (default 100, min 50)")
    ap.add_argument("--idle-seconds", type=float, default=30.0, help="idle window (default 30)")
    ap.add_argument("--settle", type=float, default=1.5, help="min seconds to wait after all programs run before measuring memory/stop (default 1.5)")
    ap.add_argument("--method", choices=["netlink", "proc"], default="netlink", help="how process fork/exec/exit times are observed: kernel proc events over netlink (default; needs root) or polling /proc")
    ap.add_argument("--poll-sleep", type=float, default=0.0, help="with --method proc: sleep between /proc polls (default 0: tight poll)")
    ap.add_argument("--status-invocations", type=int, default=100, help="status: timed invocations per command per run (default 100, min 50)")
    ap.add_argument("--timer", choices=["auto", "hyperfine", "python"], default="auto", help="status: time the commands with hyperfine (auto: when installed) or time.monotonic_ns() around subprocess.run")
    ap.add_argument("--sizes", default="100,1000", help="N for startup/memory (default 100,1000)")
    ap.add_argument("--shapes", default="tables,instances", help="config shapes for startup/memory (default tables,instances)")
    ap.add_argument("--json", type=Path, help="also write raw per-run results here")
    ap.add_argument("--quiet-threshold", type=float, default=0.15, help="before each run, wait until other load is below this fraction of all CPUs (default 0.15)")
    ap.add_argument("--quiet-timeout", type=float, default=120, help="give up waiting for a quiet machine after this many seconds (default 120)")
    args = ap.parse_args()

    valid = {"startup", "floor", "memory", "restart", "stop", "idle", "status", "all"}
    for s in args.scenarios:
        if s not in valid:
            ap.error(f"unknown scenario {s!r} (choose from {', '.join(sorted(valid))})")
    scen = ["startup", "floor", "memory", "restart", "stop", "idle", "status"] if "all" in args.scenarios else args.scenarios
    if args.runs < 1:
        ap.error("--runs must be >= 1")
    if args.status_invocations < 50:
        ap.error("--status-invocations must be >= 50")

    ctx = Ctx()
    source_binary = ensure_binary(args.release_binary.resolve())
    ctx.workdir = Path(tempfile.mkdtemp(prefix="kelpie-bench-"))
    # Snapshot the binary: a concurrent `cargo build` cannot swap it mid-run,
    # and no other kelpie process shares its pages (USS would shrink).
    ctx.binary = ctx.workdir / "kelpie"
    shutil.copy2(source_binary, ctx.binary)
    ctx.quiet_timeout = args.quiet_timeout
    ctx.quiet_threshold = args.quiet_threshold
    ctx.restart_samples = args.restart_samples
    ctx.idle_seconds = args.idle_seconds
    ctx.settle = args.settle
    ctx.poll_sleep = args.poll_sleep
    ctx.method = args.method
    if ctx.method == "netlink":
        try:
            NetlinkTracker().close()
        except OSError as e:
            log(f"kernel process events unavailable ({e}); falling back to --method proc")
            ctx.method = "proc"
    ctx.raw = {}
    ctx.status_invocations = args.status_invocations
    ctx.timer = "python"
    timer_fact = ""
    if "status" in scen:
        hf = shutil.which("hyperfine")
        if args.timer == "hyperfine" and not hf:
            sys.exit("bench: --timer hyperfine, but hyperfine is not installed (apt-get install -y hyperfine)")
        if hf and args.timer != "python":
            ctx.timer = "hyperfine"
            ver = subprocess.run([hf, "--version"], capture_output=True, text=True).stdout.strip()
            timer_fact = f"\n- status timer: {ver} (-N, no shell; stdout through a pipe; {STATUS_WARMUP} warm-ups)"
        else:
            if args.timer == "auto":
                log("hyperfine not found; timing status with time.monotonic_ns() around subprocess.run (includes Python's spawn overhead)")
            timer_fact = f"\n- status timer: Python time.monotonic_ns() around subprocess.run (hyperfine {'not installed' if not hf else 'not used'}; includes Python's own spawn cost)"
    sizes = [int(x) for x in args.sizes.split(",") if x]
    shapes = [x for x in args.shapes.split(",") if x]

    atexit.register(lambda: shutil.rmtree(ctx.workdir, ignore_errors=True))
    atexit.register(cleanup_all)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    ctx.floor_binary = None
    if "floor" in scen and shutil.which("cc"):
        out = ctx.workdir / "spawn_floor"
        r = subprocess.run(["cc", "-O2", "-o", str(out), str(REPO / "bench/spawn_floor.c")], capture_output=True, text=True)
        if r.returncode == 0:
            ctx.floor_binary = out
        else:
            log(f"cannot build spawn_floor: {r.stderr.strip()[:300]}")
    facts = machine_facts(source_binary, ctx.binary) + f"\n- observation method: {ctx.method}" + timer_fact
    log(facts)
    results: dict[str, list[float]] = {}
    failures = 0
    busy_seen: list[float] = []

    def record(res: dict):
        for key, v in res.items():
            results.setdefault(key, []).append(v)
        log("    " + ", ".join(f"{k}={fmt(v)}" for k, v in res.items()))

    plan = []
    for s in scen:
        if s in ("startup", "memory"):
            fn = sc_startup if s == "startup" else sc_memory
            for n in sizes:
                for shape in shapes:
                    plan.append((f"{s} {shape} N={n}", lambda r, fn=fn, n=n, shape=shape: fn(ctx, n, shape, r)))
        elif s == "floor":
            if ctx.floor_binary:
                for n in sizes:
                    plan.append((f"floor N={n}", lambda r, n=n: sc_floor(ctx, n, r)))
            else:
                anomaly("floor scenario skipped: no C compiler (cc) to build bench/spawn_floor.c")
        elif s == "restart":
            plan.append(("restart", lambda r: sc_restart(ctx, r)))
        elif s == "stop":
            plan.append(("stop", lambda r: sc_stop(ctx, r)))
            plan.append(("stop N=1000", lambda r: sc_stop(ctx, r, 1000)))
        elif s == "idle":
            plan.append(("idle", lambda r: sc_idle(ctx, r)))
        elif s == "status":
            plan.append(("status", lambda r: sc_status(ctx, r)))

    try:
        for name, fn in plan:
            for r in range(1, args.runs + 1):
                busy = wait_quiet(ctx)
                busy_seen.append(busy)
                log(f"[{name}] run {r}/{args.runs}  (other load before the run: {busy:.0%} of all CPUs)")
                try:
                    record(fn(r))
                except RuntimeError as e:
                    failures += 1
                    anomaly(f"{name} run {r} failed: {e}")
                time.sleep(0.3)
    except KeyboardInterrupt as e:
        log(f"interrupted ({e}); cleaning up")
        cleanup_all()
        return 130

    cleanup_all()
    left = marked_pids()
    print("\n### Machine\n")
    print(facts)
    print(f"\n### Results (`{' '.join(['python3', 'bench/run.py'] + sys.argv[1:])}`)\n")
    print(table(results))
    if busy_seen:
        print(
            f"\nOther load measured just before each run (0.5 s, all CPUs): median {statistics.median(busy_seen):.0%}, "
            f"max {max(busy_seen):.0%} over {len(busy_seen)} runs."
        )
    if "restart_exec_samples_ms" in ctx.raw:
        pooled = [x for run in ctx.raw["restart_exec_samples_ms"] for x in run]
        print(
            f"\nrestart, all {len(pooled)} samples pooled: p50 {fmt(pct(pooled, 50))} ms, "
            f"p99 {fmt(pct(pooled, 99))} ms, max {fmt(max(pooled))} ms"
        )
    if "status_samples_ms" in ctx.raw:
        print()
        for key, _ in STATUS_CMDS:
            pooled = [x for run in ctx.raw.get(f"{key}_samples_ms", []) for x in run]
            if pooled:
                print(
                    f"- {key}, all {len(pooled)} invocations pooled: p50 {fmt(pct(pooled, 50))} ms, "
                    f"p90 {fmt(pct(pooled, 90))} ms, p99 {fmt(pct(pooled, 99))} ms, max {fmt(max(pooled))} ms"
                )
        if "status_json_bytes" in ctx.raw:
            print(f"- `status --json` reply with 100 programs: {ctx.raw['status_json_bytes']} bytes (pretty-printed)")
    if WARNINGS:
        print("\n### kelpie warnings (expected ones are listed in docs/benchmarks.md)\n")
        for w, count in WARNINGS.items():
            print(f"- {w}  ({count} runs)")
    print("\n### Anomalies\n")
    if ANOMALIES:
        for a in ANOMALIES:
            print(f"- {a}")
    else:
        print("- none (no kelpie errors or panics, exit codes as expected, no leftover processes)")
    if left:
        print(f"- {len(left)} marked processes still present at the very end: {left[:10]}")
    if args.json:
        args.json.write_text(json.dumps({"facts": facts, "results": results, "raw": ctx.raw, "anomalies": ANOMALIES}, indent=1))
    return 1 if failures or left else 0


if __name__ == "__main__":
    sys.exit(main())
