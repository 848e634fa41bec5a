#!/usr/bin/env python3
"""Side-by-side benchmark: kelpie against peer supervisors (issue 8).

    sudo python3 bench/compare/compare.py --install        # install the peers
    sudo python3 bench/compare/compare.py                  # full run, 5 runs
    sudo python3 bench/compare/compare.py --quick          # 1 run, short windows
    sudo python3 bench/compare/compare.py --peers s6,runit --scenarios restart

Peers: supervisord, s6, runit, tini, dumb-init, horust, pm2, circus (kelpie
is always measured).  A peer that is not installed (and could not be
installed with --install) is skipped, and the table says so.

Every supervisor does identical work: the same programs (`sleep 100000`,
exec'd directly or from a one-line `exec` run script where the peer needs
one), the same environment, one supervisor at a time, runs alternating
between peers (the order rotates every run), the median over --runs runs.

Process births are observed through the kernel's process events connector
(netlink, as bench/run.py does; needs root) with /proc polling as fallback: a
program *runs* when a process carrying this bench's marker in its
environment has exec'd `sleep`.  Everything the bench starts carries the
marker (KELPIE_BENCH_MARKER=<token>), kelpie's guardian (a fork of kelpie)
too; on exit, errors, Ctrl-C or SIGTERM the supervisors' process groups
are killed and /proc is swept for the marker.

Python 3 standard library only; reuses bench/run.py's helpers.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import random
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import run as kb  # noqa: E402  bench/run.py

REPO = kb.REPO
MARKER = f"{kb.MARKER_KEY}={kb.TOKEN}".encode()
BENCH_PATH = kb.BENCH_PATH
SLEEP = ["sleep", "100000"]
SLEEP_ABS = shutil.which("sleep", path=BENCH_PATH) or "/bin/sleep"
SH_ABS = shutil.which("sh", path=BENCH_PATH) or "/bin/sh"
PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
# comm of the processes that are *programs* (not the supervisor's own):
PROGRAM_COMMS = {"sleep", "python3", "sh", "dash", "run"}
RUNNING_COMMS = {"sleep", "python3"}

# The log flood writer: `lines` 100-byte lines in 65,500-byte writes, as fast
# as it can, then exec sleep (so no supervisor restarts it, whatever its
# restart policy: the writer's exec of sleep marks the end of the writes).
WRITER = (
    "import os,sys\n"
    "n=int(sys.argv[1])*100\n"
    "b=(b'x'*99+b'\\n')*655\n"
    "m=memoryview(b);L=len(b);o=0\n"
    "while n>0:\n"
    " w=os.write(1,m[o:o+min(n,L-o)]);n-=w;o=(o+w)%L\n"
    "os.execv(sys.argv[2],['sleep','100000'])\n"
)

ANOMALIES: list[str] = []
LAUNCHED: list[subprocess.Popen] = []


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def anomaly(msg: str) -> None:
    ANOMALIES.append(msg)
    log(f"  !! {msg}")


# --------------------------------------------------------------------------
# /proc


def comm_of(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().rstrip("\n")
    except OSError:
        return None


def marked(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return MARKER in f.read()
    except OSError:
        return False


def alive(pid: int) -> bool:
    st = kb.read_stat(pid)
    return st is not None and st[1] not in "ZX"


def scan_marked() -> tuple[list[int], list[int]]:
    """(own, programs): live processes of this bench, split by comm.  `own`
    are the supervisors' processes (kelpie's guardian among them)."""
    me = os.getpid()
    own, progs = [], []
    for pid in kb.proc_pids():
        if pid == me:
            continue
        st = kb.read_stat(pid)
        if st is None or st[1] in "ZX":
            continue
        comm = st[0]
        if marked(pid):
            (progs if comm in PROGRAM_COMMS else own).append(pid)
    return own, progs


def rss_kib(pid: int) -> int:
    try:
        return kb.status_fields(pid).get("VmRSS", 0)
    except OSError:
        return 0


def pss_kib(pid: int) -> int:
    try:
        return kb.status_fields(pid, "smaps_rollup").get("Pss", 0)
    except OSError:
        return 0


# --------------------------------------------------------------------------
# observing programs


class NetEvents(kb.NetlinkTracker):
    """Every exec/exit on the machine; keeps the marked processes whose comm
    (read when the event is handled) is a program's."""

    def __init__(self):
        super().__init__()
        self.execs: dict[int, list[tuple[float, str]]] = {}
        self.exited: dict[int, float] = {}
        self.watch: set[int] = set()

    def _event(self, what, ts, a, b, c, d) -> None:
        if what == self.EXEC and a == b:
            comm = comm_of(a)
            if comm in RUNNING_COMMS and marked(a):
                self.execs.setdefault(a, []).append((ts, comm))
        elif what == self.EXIT and a == b:
            if a in self.execs or a in self.watch:
                self.exited[a] = ts


class PollEvents:
    """Fallback without netlink: polls /proc (timestamps = when seen)."""

    def __init__(self):
        self.execs: dict[int, list[tuple[float, str]]] = {}
        self.exited: dict[int, float] = {}
        self.watch: set[int] = set()
        self.seen_comm: dict[int, str] = {}

    def pump(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            changed = False
            now = time.monotonic()
            for pid in kb.proc_pids():
                c = comm_of(pid)
                if c in RUNNING_COMMS and self.seen_comm.get(pid) != c and marked(pid):
                    self.seen_comm[pid] = c
                    self.execs.setdefault(pid, []).append((now, c))
                    changed = True
            for pid in list(self.execs) + list(self.watch):
                if pid not in self.exited and not alive(pid):
                    self.exited[pid] = now
                    changed = True
            if changed or time.monotonic() >= deadline:
                return
            time.sleep(0.002)

    def close(self) -> None:
        pass


def running(ev) -> dict[int, float]:
    """Live program processes currently running sleep -> time of their exec."""
    return {p: e[-1][0] for p, e in ev.execs.items() if e[-1][1] == "sleep" and p not in ev.exited}


# --------------------------------------------------------------------------
# programs and peers


@dataclasses.dataclass
class Prog:
    name: str
    argv: list[str]
    stop_timeout: float | None = None  # seconds; None = the peer's default
    fast_restart: bool = False  # minimal restart delay settings
    log_dir: Path | None = None  # stdout to a file in this directory


def toml_str(s: str) -> str:
    return json.dumps(s)


def abs_argv(argv: list[str]) -> list[str]:
    first = shutil.which(argv[0], path=BENCH_PATH) or argv[0]
    return [first] + argv[1:]


class Peer:
    name = "?"
    multi = True  # runs N programs (False: a single-child shim)
    min_uptime = 0.0  # restart: a child must run this long to be restarted at once
    notes = ""

    def __init__(self, ctx):
        self.ctx = ctx
        self.proc: subprocess.Popen | None = None
        self.dir: Path | None = None

    # availability -------------------------------------------------------
    def binary(self) -> str | None:
        raise NotImplementedError

    def version(self) -> str:
        return "?"

    # lifecycle ----------------------------------------------------------
    def argv(self, d: Path, progs: list[Prog]) -> list[str]:
        raise NotImplementedError

    def env(self, d: Path) -> dict:
        return {}

    def start(self, d: Path, progs: list[Prog]) -> float:
        self.dir = d
        argv = self.argv(d, progs)
        # Configs look as they do on a real host: written long before the
        # supervisor starts.  (runsvdir, for one, rescans a directory whose
        # mtime is the current second only a second later.)
        past = time.time() - 10
        for root, dirs, files in os.walk(d):
            for f in dirs + files:
                os.utime(os.path.join(root, f), (past, past), follow_symlinks=False)
        os.utime(d, (past, past))
        env = dict(os.environ)
        for k in ("KELPIE_LOG", "KELPIE_CONFIG", "KELPIE_SOCKET", "PM2_HOME", "NOTIFY_SOCKET"):
            env.pop(k, None)
        env[kb.MARKER_KEY] = kb.TOKEN
        env["PATH"] = BENCH_PATH
        env.update(self.env(d))
        out = open(d / "supervisor.stdout", "wb")
        err = open(d / "supervisor.stderr", "wb")
        try:
            t0 = time.monotonic()
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env, cwd=d, start_new_session=True)
        finally:
            out.close()
            err.close()
        LAUNCHED.append(self.proc)
        return t0

    def stop(self, progs: list[Prog]) -> None:
        """Begin the peer's documented graceful stop of everything."""
        self.proc.send_signal(signal.SIGTERM)

    def stderr_tail(self) -> str:
        try:
            return (self.dir / "supervisor.stderr").read_text(errors="replace").strip()[-300:]
        except OSError:
            return ""


def write_exec(path: Path, argv: list[str]) -> None:
    path.write_text(f"#!/bin/sh\nexec {shlex.join(argv)}\n")
    path.chmod(0o755)


class Kelpie(Peer):
    name = "kelpie"

    def binary(self):
        return str(self.ctx.kelpie)

    def version(self):
        r = subprocess.run([self.binary(), "--version"], capture_output=True, text=True)
        return r.stdout.strip() + f" (HEAD {self.ctx.rev})"

    def argv(self, d, progs):
        parts = [
            "[supervisor]\n",
            'http_listen = "off"\n',
            f'control_socket = {toml_str(str(d / "kelpie.sock"))}\n',
        ]
        for p in progs:
            parts.append(f"\n[program.{p.name}]\ncommand = {json.dumps(p.argv)}\n")
            if p.stop_timeout is not None:
                parts.append(f'stop_timeout = "{int(p.stop_timeout * 1000)}ms"\n')
            if p.fast_restart:
                parts.append('backoff = { initial = "0s" }\nmax_restarts = 1000000\nrestart_window = "1s"\n')
            if p.log_dir:
                parts.append(f'log = {{ mode = "file", file = {toml_str(str(p.log_dir / "out.log"))}, max_size = "100GB", keep = 1 }}\n')
        (d / "supervisor.toml").write_text("".join(parts))
        return [self.binary(), "run", "-c", str(d / "supervisor.toml")]

    def env(self, d):
        return {"KELPIE_LOG_FORMAT": "json"}


class Supervisord(Peer):
    name = "supervisord"

    def binary(self):
        return shutil.which("supervisord", path="/usr/bin:/usr/local/bin:" + str(Path(sys.executable).parent))

    def version(self):
        r = subprocess.run([self.binary(), "--version"], capture_output=True, text=True)
        return "supervisord " + r.stdout.strip()

    def argv(self, d, progs):
        (d / "childlogs").mkdir(exist_ok=True)
        parts = [
            "[supervisord]\nnodaemon=true\n",
            f"logfile={d / 'supervisord.log'}\npidfile={d / 'supervisord.pid'}\nchildlogdir={d / 'childlogs'}\n",
            "minfds=1024\n",
        ]
        for p in progs:
            parts.append(f"\n[program:{p.name}]\ncommand={shlex.join(abs_argv(p.argv))}\nautorestart=true\n")
            if p.stop_timeout is not None:
                parts.append(f"stopwaitsecs={max(1, round(p.stop_timeout))}\n")
            if p.fast_restart:
                # startsecs=0: RUNNING at once, so an exit is a plain restart
                # (no BACKOFF); supervisord has no restart delay to lower.
                parts.append("startsecs=0\nstartretries=1000000\n")
            if p.log_dir:
                parts.append(f"stdout_logfile={p.log_dir / 'out.log'}\nstdout_logfile_maxbytes=0\n")
        (d / "supervisord.conf").write_text("".join(parts))
        return [self.binary(), "-n", "-c", str(d / "supervisord.conf")]


class S6(Peer):
    name = "s6"
    min_uptime = 1.0  # s6-supervise spawns ./run at most once per second
    notes = "`s6-svscan -c`, s6-supervise per service (+ s6-log for the relay); run scripts are `#!/bin/sh exec ...`"

    def binary(self):
        return shutil.which("s6-svscan", path=BENCH_PATH)

    def version(self):
        return "s6 " + deb_version("s6")

    def argv(self, d, progs):
        scan = d / "scan"
        scan.mkdir()
        for p in progs:
            sd = scan / p.name
            sd.mkdir()
            write_exec(sd / "run", p.argv)
            if p.stop_timeout is not None:
                (sd / "timeout-kill").write_text(f"{int(p.stop_timeout * 1000)}\n")
            if p.log_dir:
                (sd / "log").mkdir()
                # s6-log: no timestamps (as everywhere here), 256 MiB files, keep all
                write_exec(sd / "log" / "run", ["s6-log", "n1000", "s268435455", str(p.log_dir)])
        # -c: s6-svscan supervises at most 500 services by default.
        return [self.binary(), "-c", str(max(1000, 2 * len(progs) + 10)), str(scan)]


class Runit(Peer):
    name = "runit"
    min_uptime = 1.0  # runsv waits 1 s before restarting a ./run that ran < 1 s
    notes = "runsvdir + runsv per service (+ svlogd for the relay); stop = `sv -w T force-stop` then SIGHUP runsvdir"

    def binary(self):
        return shutil.which("runsvdir", path=BENCH_PATH)

    def version(self):
        return "runit " + deb_version("runit")

    def argv(self, d, progs):
        svdir = d / "service"
        svdir.mkdir()
        for p in progs:
            sd = svdir / p.name
            sd.mkdir()
            write_exec(sd / "run", p.argv)
            if p.log_dir:
                (sd / "log").mkdir()
                (p.log_dir / "config").write_text("s0\nn0\n")  # no rotation, keep all
                write_exec(sd / "log" / "run", ["svlogd", str(p.log_dir)])
        self.progs = progs
        return [self.binary(), str(svdir)]

    def stop(self, progs):
        # runit's own shutdown (runit's stage 3): force-stop every service
        # (TERM, then KILL after the timeout), then HUP runsvdir, which TERMs
        # every runsv (they exit, their service being down) and exits.
        to = max((p.stop_timeout or 7) for p in progs) if progs else 7
        dirs = sorted(str(p) for p in (self.dir / "service").iterdir())
        env = dict(os.environ, PATH=BENCH_PATH, **{kb.MARKER_KEY: kb.TOKEN})
        subprocess.run(["sv", "-w", str(int(round(to))), "force-stop"] + dirs, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.proc.send_signal(signal.SIGHUP)


class Tini(Peer):
    name = "tini"
    multi = False
    notes = "`tini -s --` (subreaper, as it asks when it is not PID 1); one child"

    def binary(self):
        return shutil.which("tini", path=BENCH_PATH)

    def version(self):
        return subprocess.run([self.binary(), "--version"], capture_output=True, text=True).stdout.strip()

    def argv(self, d, progs):
        (p,) = progs
        return [self.binary(), "-s", "--"] + p.argv


class DumbInit(Peer):
    name = "dumb-init"
    multi = False
    notes = "defaults (setsid mode: signals go to the child's process group); one child"

    def binary(self):
        return shutil.which("dumb-init", path=BENCH_PATH)

    def version(self):
        return subprocess.run([self.binary(), "--version"], capture_output=True, text=True).stderr.strip() or deb_version("dumb-init")

    def argv(self, d, progs):
        (p,) = progs
        return [self.binary()] + p.argv


class Horust(Peer):
    name = "horust"
    notes = "one service file per program, `keep-env = true`; relay via `stdout-rotate-size` (horust's pipe + writer thread)"

    def binary(self):
        return shutil.which("horust", path=BENCH_PATH + ":" + os.path.expanduser("~/.cargo/bin"))

    def version(self):
        r = subprocess.run([self.binary(), "--version"], capture_output=True, text=True)
        return r.stdout.strip() or "horust"

    def argv(self, d, progs):
        sv = d / "services"
        sv.mkdir()
        (d / "uds").mkdir()
        (d / "horust.toml").write_text("unsuccessful_exit_finished_failed = false\n")
        for p in progs:
            lines = [f"command = {toml_str(shlex.join(abs_argv(p.argv)))}\n"]
            if p.log_dir:
                lines.append(f"stdout = {toml_str(str(p.log_dir / 'out.log'))}\nstdout-rotate-size = \"100 GB\"\n")
            lines.append('[restart]\nstrategy = "always"\nbackoff = "0s"\nattempts = 0\n')
            lines.append("[environment]\nkeep-env = true\n")
            if p.stop_timeout is not None:
                lines.append(f'[termination]\nwait = "{int(p.stop_timeout * 1000)}ms"\n')
            (sv / f"{p.name}.toml").write_text("".join(lines))
        return [self.binary(), "--config-path", str(d / "horust.toml"), "--services-path", str(sv), "--uds-folder-path", str(d / "uds")]


class Pm2(Peer):
    name = "pm2"
    min_uptime = 0.15  # pm2 restarts at once only a child that ran min_uptime (>= 100 ms)
    notes = "`pm2-runtime` (pm2's foreground mode for containers: one node process); fork mode, `interpreter: none`"

    def binary(self):
        return shutil.which("pm2-runtime", path=BENCH_PATH)

    def version(self):
        for base in ("/usr/lib/node_modules", "/usr/local/lib/node_modules"):
            pj = Path(base) / "pm2/package.json"
            if pj.exists():
                return "pm2 " + json.loads(pj.read_text())["version"]
        return "pm2"

    def env(self, d):
        return {"PM2_HOME": str(d / "pm2home")}

    def argv(self, d, progs):
        apps = []
        for p in progs:
            a = abs_argv(p.argv)
            app = {"name": p.name, "script": a[0], "args": a[1:], "interpreter": "none", "autorestart": True}
            if p.stop_timeout is not None:
                app["kill_timeout"] = int(p.stop_timeout * 1000)
            if p.fast_restart:
                app.update({"restart_delay": 0, "min_uptime": 100, "max_restarts": 1000000})  # 100 ms: pm2's minimum
            if p.log_dir:
                app.update({"out_file": str(p.log_dir / "out.log"), "error_file": str(p.log_dir / "err.log")})
            apps.append(app)
        (d / "ecosystem.json").write_text(json.dumps({"apps": apps}))
        return [self.binary(), "start", str(d / "ecosystem.json")]


class Circus(Peer):
    name = "circus"
    notes = "one watcher per program, `copy_env = true`, ipc endpoints; defaults otherwise (check_delay 1 s)"

    def binary(self):
        return shutil.which("circusd", path=str(Path(sys.executable).parent) + ":/usr/local/bin:/usr/bin")

    def version(self):
        r = subprocess.run([self.binary(), "--version"], capture_output=True, text=True)
        return "circus " + r.stdout.strip()

    def argv(self, d, progs):
        parts = [
            "[circus]\n",
            # (a stats_endpoint would switch circusd-stats on)
            f"endpoint = ipc://{d}/endpoint.sock\npubsub_endpoint = ipc://{d}/pubsub.sock\n",
            "statsd = false\nhttpd = false\n",
        ]
        for p in progs:
            a = abs_argv(p.argv)
            parts.append(f"\n[watcher:{p.name}]\ncmd = {a[0]}\nargs = {shlex.join(a[1:])}\ncopy_env = true\nwarmup_delay = 0\n")
            if p.stop_timeout is not None:
                parts.append(f"graceful_timeout = {p.stop_timeout}\n")
            if p.fast_restart:
                parts.append("max_retry = -1\n")
            if p.log_dir:
                parts.append(f"stdout_stream.class = FileStream\nstdout_stream.filename = {p.log_dir / 'out.log'}\nstdout_stream.max_bytes = 0\n")
        (d / "circus.ini").write_text("".join(parts))
        return [self.binary(), str(d / "circus.ini")]


ALL_PEERS = [Supervisord, S6, Runit, Tini, DumbInit, Horust, Pm2, Circus]


def deb_version(pkg: str) -> str:
    r = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", pkg], capture_output=True, text=True)
    return r.stdout.strip() or "?"


# --------------------------------------------------------------------------
# installing


def install(peers: list[str]) -> dict[str, str]:
    """Install what is missing; returns peer -> outcome text."""
    out: dict[str, str] = {}
    apt = {"supervisord": "supervisor", "s6": "s6", "runit": "runit", "tini": "tini", "dumb-init": "dumb-init"}
    classes = {c.name: c for c in ALL_PEERS}
    ctx = type("C", (), {})()
    missing = [p for p in peers if classes[p](ctx).binary() is None]
    want_apt = [p for p in missing if p in apt]
    if want_apt and shutil.which("apt-get"):
        log(f"install: apt-get install {' '.join(apt[p] for p in want_apt)}")
        subprocess.run(["apt-get", "update"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Debian's maintainer scripts would start supervisord (and runsvdir)
        # as system services; policy-rc.d forbids that for the install.
        prc = Path("/usr/sbin/policy-rc.d")
        made = False
        if not prc.exists():
            prc.write_text("#!/bin/sh\nexit 101\n")
            prc.chmod(0o755)
            made = True
        try:
            for p in want_apt:
                r = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", apt[p]], capture_output=True, text=True,
                                   env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
                out[p] = f"apt {apt[p]}: " + ("installed" if r.returncode == 0 else f"failed ({r.stderr.strip().splitlines()[-1:] or r.returncode})")
        finally:
            if made:
                prc.unlink()
    if "supervisord" in missing and classes["supervisord"](ctx).binary() is None:
        r = subprocess.run([sys.executable, "-m", "pip", "install", "supervisor"], capture_output=True, text=True)
        out["supervisord"] = "pip supervisor: " + ("installed" if r.returncode == 0 else "failed")
    if "circus" in missing:
        r = subprocess.run([sys.executable, "-m", "pip", "install", "circus"], capture_output=True, text=True)
        out["circus"] = "pip circus: " + ("installed" if r.returncode == 0 else f"failed: {r.stderr.strip()[-200:]}")
    if "pm2" in missing:
        if shutil.which("npm"):
            # PM2_HOME in a throw-away directory: nothing may start a daemon in ~/.pm2.
            home = tempfile.mkdtemp(prefix="pm2-install-")
            r = subprocess.run(["npm", "install", "-g", "pm2"], capture_output=True, text=True, env=dict(os.environ, PM2_HOME=home))
            out["pm2"] = "npm pm2: " + ("installed" if r.returncode == 0 else f"failed: {r.stderr.strip()[-200:]}")
        else:
            out["pm2"] = "npm not found"
    if "horust" in missing:
        if shutil.which("cargo"):
            try:
                r = subprocess.run(["cargo", "install", "horust", "--locked"], capture_output=True, text=True, timeout=1800)
                out["horust"] = "cargo install horust --locked: " + ("installed" if r.returncode == 0 else f"failed: {r.stderr.strip()[-200:]}")
            except subprocess.TimeoutExpired:
                out["horust"] = "cargo install horust: timed out after 30 min"
        else:
            out["horust"] = "cargo not found"
    for p in peers:
        out.setdefault(p, "already installed" if p not in missing else "not installed")
    return out


# --------------------------------------------------------------------------
# one supervisor instance under measurement


class Instance:
    def __init__(self, ctx, peer: Peer, label: str, progs: list[Prog]):
        self.ctx = ctx
        self.peer = peer
        self.label = f"{peer.name} {label}"
        self.progs = progs
        self.dir = Path(tempfile.mkdtemp(prefix=f"{peer.name}-{label}-", dir=ctx.workdir))
        for p in progs:
            if p.log_dir is not None:
                p.log_dir = self.dir / "logs" / p.name
                p.log_dir.mkdir(parents=True)
        self.ev = NetEvents() if ctx.method == "netlink" else PollEvents()
        self.t0 = 0.0

    def start(self) -> None:
        self.t0 = self.peer.start(self.dir, self.progs)
        self.ev.watch.add(self.peer.proc.pid)

    def root_alive(self) -> bool:
        return self.peer.proc.poll() is None

    def wait_running(self, n: int, timeout: float) -> float:
        """Seconds from the supervisor's exec to the n-th program running."""
        deadline = self.t0 + timeout
        while len(running(self.ev)) < n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(running(self.ev))}/{n} programs running after {timeout:.0f}s")
            if not self.root_alive():
                raise RuntimeError(f"supervisor exited early ({self.peer.proc.returncode}): {self.peer.stderr_tail()}")
            self.ev.pump(0.2)
        self.ev.pump(0.05)
        ts = sorted(running(self.ev).values())
        return ts[n - 1] - self.t0

    def own(self) -> list[int]:
        return scan_marked()[0]

    def settle(self, n: int, min_wait: float) -> None:
        """min_wait, then until the supervisor's RSS sum and process count hold still."""
        time.sleep(min_wait)
        prev = None
        for _ in range(40):
            own, progs = scan_marked()
            cur = (sum(rss_kib(p) for p in own), len(own), len(progs))
            if cur == prev and len(progs) >= n:
                return
            prev = cur
            time.sleep(0.25)
        anomaly(f"{self.label}: did not settle (RSS {prev[0]} kB, {prev[1]} own, {prev[2]} program processes)")

    def stop_and_wait(self, timeout: float = 40.0, key: str = "") -> tuple[float, int]:
        """The peer's graceful stop.  Returns (seconds until every supervisor
        process and every program process exited, processes left behind)."""
        own, progs = scan_marked()
        self.ev.watch.update(own)
        self.ev.watch.update(progs)
        self.ev.pump(0)
        t0 = time.monotonic()
        self.peer.stop(self.progs)
        deadline = t0 + timeout
        while any(p not in self.ev.exited for p in own):
            if time.monotonic() > deadline:
                left = [p for p in own if p not in self.ev.exited]
                anomaly(f"{self.label}: {len(left)} supervisor process(es) still there {timeout:.0f}s after the stop")
                break
            self.ev.pump(0.2)
        # the supervisor is gone: programs still exiting get 1 s more
        end_own = max([self.ev.exited.get(p, time.monotonic()) for p in own] or [t0])
        grace = time.monotonic() + 1.0
        while time.monotonic() < grace:
            self.ev.pump(0.1)
        done = [self.ev.exited[p] for p in progs if p in self.ev.exited]
        if key:
            root = self.ev.exited.get(self.peer.proc.pid)
            self.ctx.raw.setdefault(f"stopdetail_{key}_{self.peer.name}", []).append(
                [round((root - t0) * 1000, 1) if root else None,
                 round((max(done) - t0) * 1000, 1) if done else None,
                 round((end_own - t0) * 1000, 1)])
        own_left, progs_left = scan_marked()
        left = len(own_left) + len(progs_left)
        return max([end_own] + done) - t0, left

    def teardown(self) -> None:
        try:
            self.ev.close()
        except OSError:
            pass
        p = self.peer.proc
        if p is not None and p.poll() is None:
            try:
                self.peer.stop(self.progs)
                p.wait(15)
            except (subprocess.TimeoutExpired, OSError):
                kill_group(p)
        if p is not None:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                kill_group(p)
        n = sweep()
        if n:
            log(f"    teardown {self.label}: removed {n} leftover process(es)")
        shutil.rmtree(self.dir, ignore_errors=True)


def kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def sweep() -> int:
    """SIGKILL every marked process (and its group)."""
    total = 0
    for _ in range(100):
        own, progs = scan_marked()
        pids = own + progs
        if not pids:
            break
        total = max(total, len(pids))
        mypg = os.getpgrp()
        for pid in pids:
            try:
                pg = os.getpgid(pid)
                if marked(pid) and pg != mypg and pg > 1:
                    os.killpg(pg, signal.SIGKILL)
                os.kill(pid, signal.SIGKILL)  # (kelpie's guardian leads a session of its own)
            except (ProcessLookupError, PermissionError, OSError):
                pass
        time.sleep(0.05)
    return total


def cleanup_all() -> None:
    for p in LAUNCHED:
        if p.poll() is None:
            kill_group(p)
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                pass
    n = sweep()
    if n:
        log(f"clean-up: killed {n} leftover process(es)")


def on_signal(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


# --------------------------------------------------------------------------
# scenarios: each returns {row key: value} for one run of one peer


def sleeps(n: int, **kw) -> list[Prog]:
    return [Prog(f"p{i}", list(SLEEP), **kw) for i in range(n)]


def sc_start(ctx, peer: Peer, n: int, run: int) -> dict:
    inst = Instance(ctx, peer, f"start{n}-r{run}", sleeps(n))
    try:
        inst.start()
        res = {f"start_{n}": inst.wait_running(n, ctx.start_timeout) * 1000}
        if n in ctx.mem_sizes or (n == 100 and ("idle" in ctx.scen or "stop" in ctx.scen)):
            inst.settle(n, ctx.settle if n != 100 else max(ctx.settle, 3.0))
            own = inst.own()
            if n in ctx.mem_sizes:
                res[f"rss_{n}"] = sum(rss_kib(p) for p in own) / 1024
                res[f"pss_{n}"] = sum(pss_kib(p) for p in own) / 1024
                by_comm: dict[str, list[int]] = {}
                for p in own:
                    by_comm.setdefault(comm_of(p) or "?", []).append(rss_kib(p))
                ctx.raw.setdefault(f"own_{peer.name}_{n}", [f"{c} x{len(v)} ({sum(v) / 1024:.2f} MiB)" for c, v in sorted(by_comm.items())])
        if n == 100 and "idle" in ctx.scen and peer.multi:
            a = {p: kb.thread_counters(p) for p in own}
            t = time.monotonic()
            time.sleep(ctx.idle_seconds)
            b = {p: kb.thread_counters(p) for p in own if alive(p)}
            secs = time.monotonic() - t
            cpu = sum(b[p]["cpu_ns"] - a[p]["cpu_ns"] for p in b) / 1e6
            ctxt = sum(b[p]["ctxt"] - a[p]["ctxt"] for p in b)
            scale = 30.0 / secs  # reported per 30 s, whatever the window
            res["idle_cpu"] = cpu * scale
            res["idle_ctx"] = ctxt * scale
        if n == 100 and "stop" in ctx.scen and peer.multi:
            secs, left = inst.stop_and_wait(key="stop_100")
            res["stop_100"] = secs * 1000
            res["stop_100_left"] = left
        return res
    finally:
        inst.teardown()


def sc_stopkill(ctx, peer: Peer, run: int, n: int = 100) -> dict:
    progs = [Prog(f"p{i}", ["sh", "-c", "trap '' TERM INT; exec sleep 100000"], stop_timeout=2.0) for i in range(n)]
    inst = Instance(ctx, peer, f"stopkill-r{run}", progs)
    try:
        inst.start()
        inst.wait_running(n, ctx.start_timeout)
        inst.settle(n, ctx.settle)
        # supervisord stops its program groups one after the other, each
        # waiting out stopwaitsecs: allow n * 2 s and more.
        secs, left = inst.stop_and_wait(timeout=60 + n * 2.5, key="stopkill_100")
        return {"stopkill_100": secs * 1000, "stopkill_100_left": left}
    finally:
        inst.teardown()


def sc_restart(ctx, peer: Peer, run: int) -> dict:
    inst = Instance(ctx, peer, f"restart-r{run}", [Prog("p0", list(SLEEP), fast_restart=True)])
    samples = []
    try:
        inst.start()
        inst.wait_running(1, ctx.start_timeout)
        time.sleep(max(0.5, peer.min_uptime + 0.1))
        ev = inst.ev
        ev.pump(0)
        (old,) = running(ev)
        for i in range(ctx.restart_samples):
            ev.pump(0)
            t0 = time.monotonic()
            os.kill(old, signal.SIGKILL)
            deadline = t0 + 10
            new = None
            while new is None:
                ev.pump(0.5)
                fresh = [p for p, ts in running(ev).items() if ts >= t0 and p != old]
                if fresh:
                    new = fresh[0]
                elif time.monotonic() > deadline:
                    raise RuntimeError(f"no replacement for kill {i} within 10s (supervisor alive: {inst.root_alive()})")
            samples.append((running(ev)[new] - t0) * 1000)
            old = new
            time.sleep(peer.min_uptime + random.uniform(0.02, 0.04))
    finally:
        inst.teardown()
    ctx.raw.setdefault(f"restart_samples_{peer.name}", []).append(samples)
    return {"restart_p50": kb.pct(samples, 50), "restart_p99": kb.pct(samples, 99)}


def dir_bytes(d: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(d):
        for f in files:
            try:
                total += os.stat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def sc_relay(ctx, peer: Peer, run: int) -> dict:
    lines = ctx.log_bytes // 100
    payload = lines * 100
    # A script file, not `-c`: ini-based configs (supervisord, circus)
    # cannot hold a multi-line argument.
    script = ctx.workdir / "flood_writer.py"
    script.write_text(WRITER)
    prog = Prog("writer", [PY, "-S", str(script), str(lines), SLEEP_ABS], log_dir=Path("."))
    inst = Instance(ctx, peer, f"relay-r{run}", [prog])
    try:
        inst.start()
        ev = inst.ev
        deadline = inst.t0 + 60 + payload / 2e6
        own: list[int] = []
        t_own = 0.0
        peak = 0
        last_size, t_growth = -1, time.monotonic()
        writer = None
        t_end_write = None
        while True:
            ev.pump(0.01)
            now = time.monotonic()
            if now - t_own > 1.0:
                own = inst.own()
                t_own = now
            peak = max(peak, sum(rss_kib(p) for p in own))
            size = dir_bytes(prog.log_dir)
            if size != last_size:
                last_size, t_growth = size, now
            if writer is None:
                for p, e in ev.execs.items():
                    if any(c == "python3" for _, c in e):
                        writer = p
            if writer is not None and t_end_write is None:
                e = ev.execs[writer]
                if len(e) >= 2 and e[-1][1] == "sleep":
                    t_end_write = e[-1][0]
            if t_end_write is not None and size >= payload and now - t_growth > 0.3:
                break
            if t_end_write is not None and now - max(t_growth, t_end_write) > 10:
                anomaly(f"{inst.label}: output stuck at {size} of {payload} bytes 10 s after the writer finished")
                break
            if now > deadline:
                raise RuntimeError(f"relay not done after {deadline - inst.t0:.0f}s ({size} of {payload} bytes written, writer done: {t_end_write is not None})")
            if not inst.root_alive():
                raise RuntimeError(f"supervisor exited during the relay: {peer.stderr_tail()}")
        t_start = ev.execs[writer][0][0]
        t_end = max(t_end_write, t_growth)
        ctx.raw.setdefault(f"relay_bytes_{peer.name}", []).append(size)
        try:
            extra = (inst.dir / "supervisor.stdout").stat().st_size
        except OSError:
            extra = 0
        if extra > payload / 2:
            ctx.raw.setdefault(f"relay_also_stdout_{peer.name}", []).append(extra)
        return {"relay_mbps": payload / 1e6 / (t_end - t_start), "relay_rss": peak / 1024}
    finally:
        inst.teardown()


def sc_hygiene(ctx, peer: Peer, run: int, kind: str) -> dict:
    cmd = {"bg": "sleep 1000 & sleep 1000", "escape": "(setsid sleep 1000 &); exec sleep 1000"}[kind]
    inst = Instance(ctx, peer, f"hyg-{kind}-r{run}", [Prog("h", ["sh", "-c", cmd])])
    try:
        inst.start()
        inst.wait_running(2, ctx.start_timeout)
        inst.settle(2, 0.5)
        _secs, left = inst.stop_and_wait()
        return {f"hyg_{kind}": left}
    finally:
        inst.teardown()


# --------------------------------------------------------------------------
# table

# key, label, unit, better ("low"/"high"), applies to single-child shims
ROWS = [
    ("start_1", "time until 1 program runs", "ms", "low", True),
    ("start_10", "time until 10 programs run", "ms", "low", False),
    ("start_100", "time until 100 programs run", "ms", "low", False),
    ("start_500", "time until 500 programs run", "ms", "low", False),
    ("start_1000", "time until 1000 programs run", "ms", "low", False),
    ("rss_1", "supervisor RSS (own processes, summed), 1 program", "MiB", "low", True),
    ("rss_100", "supervisor RSS, 100 programs", "MiB", "low", False),
    ("rss_1000", "supervisor RSS, 1000 programs", "MiB", "low", False),
    ("pss_1", "supervisor PSS (shared pages split), 1 program", "MiB", "low", True),
    ("pss_100", "supervisor PSS, 100 programs", "MiB", "low", False),
    ("pss_1000", "supervisor PSS, 1000 programs", "MiB", "low", False),
    ("restart_p50", "restart after SIGKILL of the child, p50", "ms", "low", False),
    ("restart_p99", "restart after SIGKILL of the child, p99", "ms", "low", False),
    ("stop_100", "graceful stop, 100 programs", "ms", "low", False),
    ("stop_100_left", "graceful stop, 100 programs: processes left", "", "low", False),
    ("stopkill_100", "stop, 100 programs ignoring SIGTERM, 2 s timeout", "ms", "low", False),
    ("stopkill_100_left", "stop, 100 ignoring SIGTERM: processes left", "", "low", False),
    ("idle_cpu", "idle CPU time, 100 programs, per 30 s", "ms", "low", False),
    ("idle_ctx", "idle context switches, 100 programs, per 30 s", "", "low", False),
    ("relay_mbps", "log relay throughput (100-byte lines to a file)", "MB/s", "high", False),
    ("relay_rss", "log relay: peak supervisor RSS during the flood", "MiB", "low", False),
    ("hyg_bg", "left after stop: `sh -c 'sleep 1000 & sleep 1000'`", "", "low", True),
    ("hyg_escape", "left after stop: `(setsid sleep 1000 &)` escape", "", "low", True),
]
COUNT_ROWS = {"stop_100_left", "stopkill_100_left", "hyg_bg", "hyg_escape"}


def fmt(v: float) -> str:
    if float(v).is_integer():
        return str(int(v))
    return kb.fmt(v)


def ratio(k: float, p: float) -> str:
    if p == 0:
        return "=" if k == 0 else "∞"
    r = k / p
    return f"{r:.2f}×" if r < 10 else f"{r:.0f}×"


def med(results, peer, key):
    vals = results.get(peer, {}).get(key)
    return statistics.median(vals) if vals else None


def render(results, peer_names: list[str], skipped: dict[str, str], runs_note: str) -> str:
    cols = ["kelpie"] + peer_names
    head = "| row | " + " | ".join(cols + [f"{s}" for s in skipped]) + " |"
    sep = "|---|" + "---:|" * (len(cols) + len(skipped))
    lines = [head, sep]
    for key, label, unit, _better, _single in ROWS:
        kv = med(results, "kelpie", key)
        if kv is None and all(med(results, p, key) is None for p in peer_names):
            continue
        cells = [f"{fmt(kv)}{(' ' + unit) if unit else ''}" if kv is not None else "—"]
        for p in peer_names:
            v = med(results, p, key)
            if v is None:
                cells.append(results.get(p, {}).get("_na", {}).get(key, "n/a"))
            elif kv is None or key in COUNT_ROWS:
                cells.append(fmt(v))
            else:
                cells.append(f"{fmt(v)} ({ratio(kv, v)})")
        cells += ["skipped"] * len(skipped)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + f"\n\nCells: median over {runs_note}; `(r×)` is kelpie/peer (below 1× is kelpie lower; for throughput, higher is better)."


def spread(results, peer_names) -> str:
    out = ["| row | " + " | ".join(["kelpie"] + peer_names) + " |", "|---|" + "---:|" * (1 + len(peer_names))]
    for key, label, unit, _b, _s in ROWS:
        cells = []
        for p in ["kelpie"] + peer_names:
            vals = results.get(p, {}).get(key)
            cells.append(f"{fmt(min(vals))}–{fmt(max(vals))} ({len(vals)})" if vals else "")
        if any(cells):
            out.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def verdicts(results, peer_names) -> str:
    out = ["| target | kelpie | best peer | met |", "|---|---:|---:|:---:|"]
    for key, label, unit, better, _s in ROWS:
        kv = med(results, "kelpie", key)
        if kv is None:
            continue
        if key.startswith("rss_"):
            others = [p for p in peer_names if p not in ("s6", "runit")]
            tight = [p for p in peer_names if p in ("s6", "runit")]
        else:
            others, tight = peer_names, []
        pv = [(med(results, p, key), p) for p in others if med(results, p, key) is not None]
        if pv:
            bv, bp = (min(pv) if better == "low" else max(pv))
            ok = kv <= bv if better == "low" else kv >= bv
            out.append(f"| {label}: best of all peers{' but s6/runit' if tight else ''} | {fmt(kv)} | {fmt(bv)} ({bp}) | {'yes' if ok else '**no**'} |")
        for p in tight:
            v = med(results, p, key)
            if v is not None:
                out.append(f"| {label}: within 2× of {p} | {fmt(kv)} | {fmt(v)} (2× = {fmt(2 * v)}) | {'yes' if kv <= 2 * v else '**no**'} |")
    for key, label, op, tv in (("restart_p50", "restart p50 ≤ 2 ms", "<=", 2), ("relay_mbps", "log relay ≥ 200 MB/s", ">=", 200), ("relay_rss", "RSS during the flood ≤ 32 MiB", "<=", 32)):
        kv = med(results, "kelpie", key)
        if kv is not None:
            ok = kv <= tv if op == "<=" else kv >= tv
            out.append(f"| {label} | {fmt(kv)} | — | {'yes' if ok else '**no**'} |")
    return "\n".join(out)


def machine(ctx, versions) -> str:
    model = "?"
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem = kb.status_fields_file("/proc/meminfo").get("MemTotal", 0)
    lines = [
        f"- date: {dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- CPU: {model}, nproc = {os.cpu_count()}; memory: {mem / 1024 / 1024:.1f} GiB; kernel: {platform.release()}",
        f"- load average at start: {' '.join(open('/proc/loadavg').read().split()[0:3])}; observation method: {ctx.method}",
        f"- writer/`sleep`: {PY}, {SLEEP_ABS}",
    ]
    for name, v in versions.items():
        lines.append(f"- {name}: {v}")
    return "\n".join(lines)


# --------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--install", action="store_true", help="install the missing peers (apt, pip, npm, cargo), then exit")
    ap.add_argument("--peers", default=",".join(c.name for c in ALL_PEERS), help="comma-separated peers (default: all)")
    ap.add_argument("--scenarios", default="start,stop,idle,stopkill,restart,relay,hygiene",
                    help="comma-separated: start (incl. memory), stop, idle, stopkill, restart, relay, hygiene (default: all)")
    ap.add_argument("--runs", type=int, default=5, help="runs per scenario and peer (default 5)")
    ap.add_argument("--quick", action="store_true", help="1 run, 5 s idle, 64 MiB log, 50 restarts (a smoke test, not results)")
    ap.add_argument("--sizes", default="1,10,100,500,1000", help="N for 'time until N programs run' (default 1,10,100,500,1000)")
    ap.add_argument("--mem-sizes", default="1,100,1000", help="N at which RSS is read (default 1,100,1000)")
    ap.add_argument("--restart-samples", type=int, default=50, help="kills per restart run (default 50, min 50)")
    ap.add_argument("--idle-seconds", type=float, default=30.0, help="idle window (default 30)")
    ap.add_argument("--log-bytes", default="1GiB", help="bytes the flood writer writes (default 1GiB; e.g. 256MiB)")
    ap.add_argument("--settle", type=float, default=1.5, help="min seconds after all programs run before reading memory (default 1.5)")
    ap.add_argument("--start-timeout", type=float, default=300, help="give up on a start after this many seconds (default 300)")
    ap.add_argument("--method", choices=["netlink", "proc"], default="netlink")
    ap.add_argument("--release-binary", type=Path, default=REPO / "target/release/kelpie")
    ap.add_argument("--json", type=Path, help="also write the raw per-run values here")
    ap.add_argument("--cap-runs", default="",
                    help="peer:scenario=N,... run that pair only in the first N runs (for pairs that take minutes "
                         "per run, e.g. supervisord:stopkill=2); the spread table shows each cell's run count")
    ap.add_argument("--quiet-threshold", type=float, default=0.15)
    ap.add_argument("--quiet-timeout", type=float, default=60)
    args = ap.parse_args()

    names = [c.name for c in ALL_PEERS]
    peers_wanted = [p.strip() for p in args.peers.split(",") if p.strip()]
    for p in peers_wanted:
        if p not in names:
            ap.error(f"unknown peer {p!r} (choose from {', '.join(names)})")
    if args.install:
        res = install(peers_wanted)
        for p, r in res.items():
            print(f"- {p}: {r}")
        return 0

    scen = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    valid = {"start", "stop", "idle", "stopkill", "restart", "relay", "hygiene"}
    for s in scen:
        if s not in valid:
            ap.error(f"unknown scenario {s!r}")
    if args.quick:
        args.runs = min(args.runs, 1) if args.runs == 5 else args.runs
        args.idle_seconds = min(args.idle_seconds, 5.0)
        if args.log_bytes == "1GiB":
            args.log_bytes = "64MiB"
    if args.restart_samples < 50:
        ap.error("--restart-samples must be >= 50")

    ctx = type("Ctx", (), {})()
    m = re.fullmatch(r"(\d+)\s*(|[KMG]i?B?)", args.log_bytes.strip(), re.I)
    if not m:
        ap.error("--log-bytes: a number with an optional KiB/MiB/GiB (or KB/MB/GB) suffix")
    unit = m.group(2).upper().rstrip("B")
    mult = {"": 1, "K": 1000, "M": 10**6, "G": 10**9, "KI": 1024, "MI": 1024**2, "GI": 1024**3}[unit]
    ctx.log_bytes = int(m.group(1)) * mult
    ctx.scen = scen
    ctx.sizes = [int(x) for x in args.sizes.split(",") if x]
    ctx.mem_sizes = [int(x) for x in args.mem_sizes.split(",") if x]
    ctx.restart_samples = args.restart_samples
    ctx.idle_seconds = args.idle_seconds
    ctx.settle = args.settle
    ctx.start_timeout = args.start_timeout
    ctx.quiet_threshold = args.quiet_threshold
    ctx.quiet_timeout = args.quiet_timeout
    ctx.raw = {}
    ctx.method = args.method
    if ctx.method == "netlink":
        try:
            kb.NetlinkTracker().close()
        except OSError as e:
            log(f"kernel process events unavailable ({e}); falling back to --method proc")
            ctx.method = "proc"

    source = kb.ensure_binary(args.release_binary.resolve())
    ctx.workdir = Path(tempfile.mkdtemp(prefix="kelpie-compare-"))
    ctx.kelpie = ctx.workdir / "kelpie"
    shutil.copy2(source, ctx.kelpie)
    rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    ctx.rev = rev or "?"

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    kelpie = Kelpie(ctx)
    peers: list[Peer] = []
    skipped: dict[str, str] = {}
    for cls in ALL_PEERS:
        if cls.name not in peers_wanted:
            continue
        p = cls(ctx)
        if p.binary() is None:
            skipped[p.name] = "not installed (run with --install; see the install notes)"
        else:
            peers.append(p)
    versions = {"kelpie": kelpie.version()}
    for p in peers:
        try:
            versions[p.name] = p.version() + (f" — {p.notes}" if p.notes else "")
        except OSError as e:
            versions[p.name] = f"? ({e})"
    for s, why in skipped.items():
        versions[s] = f"skipped: {why}"
    facts = machine(ctx, versions)
    log(facts)

    # plan: (scenario label, row keys, fn(peer, run), applies to single-child shims)
    plan = []
    if "start" in scen or "stop" in scen or "idle" in scen:
        sizes = sorted(set(ctx.sizes + ctx.mem_sizes + ([100] if ("stop" in scen or "idle" in scen) else [])))
        if "start" not in scen:
            sizes = [100]
        for n in sizes:
            plan.append(("start", f"start N={n}", lambda pe, r, n=n: sc_start(ctx, pe, n, r), n == 1))
    if "stopkill" in scen:
        plan.append(("stopkill", "stop, TERM ignored", lambda pe, r: sc_stopkill(ctx, pe, r), False))
    if "restart" in scen:
        plan.append(("restart", "restart", lambda pe, r: sc_restart(ctx, pe, r), False))
    if "relay" in scen:
        plan.append(("relay", "log relay", lambda pe, r: sc_relay(ctx, pe, r), False))
    if "hygiene" in scen:
        plan.append(("hygiene", "hygiene bg", lambda pe, r: sc_hygiene(ctx, pe, r, "bg"), True))
        plan.append(("hygiene", "hygiene escape", lambda pe, r: sc_hygiene(ctx, pe, r, "escape"), True))

    caps: dict[tuple[str, str], int] = {}
    for item in filter(None, (x.strip() for x in args.cap_runs.split(","))):
        m = re.fullmatch(r"([\w-]+):(\w+)=(\d+)", item)
        if not m or m.group(1) not in names or m.group(2) not in valid:
            ap.error(f"--cap-runs: {item!r} is not peer:scenario=N")
        caps[(m.group(1), m.group(2))] = int(m.group(3))

    results: dict[str, dict[str, list]] = {}
    busy_seen = []
    everyone = [kelpie] + peers
    try:
        for r in range(1, args.runs + 1):
            for scenario, label, fn, single_ok in plan:
                k = (r - 1) % len(everyone)
                order = everyone[k:] + everyone[:k]  # alternate: rotate the order every run
                for pe in order:
                    if not pe.multi and not single_ok:
                        continue
                    if r > caps.get((pe.name, scenario), args.runs):
                        continue
                    busy = kb.wait_quiet(ctx)
                    busy_seen.append(busy)
                    log(f"[run {r}/{args.runs}] {label}: {pe.name}  (other load {busy:.0%})")
                    try:
                        res = fn(pe, r)
                    except RuntimeError as e:
                        anomaly(f"{pe.name} {label} run {r} failed: {e}")
                        continue
                    if not pe.multi:
                        res = {k2: v for k2, v in res.items() if k2 in ("start_1", "rss_1", "pss_1", "hyg_bg", "hyg_escape")}
                    for key, v in res.items():
                        results.setdefault(pe.name, {}).setdefault(key, []).append(v)
                    log("    " + ", ".join(f"{k2}={fmt(v)}" for k2, v in res.items()))
    except KeyboardInterrupt as e:
        log(f"interrupted ({e}); cleaning up; partial results follow")
    finally:
        cleanup_all()

    left = scan_marked()
    names_run = [p.name for p in peers]
    runs_note = f"{args.runs} run(s) per peer" + (" (--quick)" if args.quick else "")
    cmd = " ".join(["python3", "bench/compare/compare.py"] + sys.argv[1:])
    print("### Machine and versions\n")
    print(facts)
    if busy_seen:
        print(f"- other load just before each measurement: median {statistics.median(busy_seen):.0%}, max {max(busy_seen):.0%} of all CPUs ({len(busy_seen)} measurements)")
    print(f"\n### Results (`{cmd}`)\n")
    print(f"log relay: {ctx.log_bytes} bytes ({ctx.log_bytes / 2**20:.0f} MiB) per run; idle window {ctx.idle_seconds:g} s; restart: {ctx.restart_samples} kills per run\n")
    print(render(results, names_run, skipped, runs_note))
    print("\n### Targets\n")
    print(verdicts(results, names_run))
    print("\n### Spread (min–max over runs, number of runs)\n")
    print(spread(results, names_run))
    pooled = []
    for p in ["kelpie"] + names_run:
        s = [x for run in ctx.raw.get(f"restart_samples_{p}", []) for x in run]
        if s:
            pooled.append(f"- {p}: {len(s)} restarts pooled: p50 {fmt(kb.pct(s, 50))} ms, p99 {fmt(kb.pct(s, 99))} ms, max {fmt(max(s))} ms")
    if pooled:
        print("\n### Restart samples pooled\n")
        print("\n".join(pooled))
    own = [f"- {k[4:]}: {', '.join(v)}" for k, v in ctx.raw.items() if k.startswith("own_")]
    if own:
        print("\n### Processes counted as the supervisor's own (comm)\n")
        print("\n".join(own))
    det = [f"- {k[11:]}: {v}" for k, v in ctx.raw.items() if k.startswith("stopdetail_")]
    if det:
        print("\n### Stop breakdown: ms from the stop to [supervisor's main process exited, last program exited, last supervisor process exited], per run\n")
        print("\n".join(det))
    extra = [f"- {k}: {v}" for k, v in ctx.raw.items() if k.startswith("relay_also_stdout_")]
    if extra:
        print("\n### Relay output also on the supervisor's stdout (bytes)\n")
        print("\n".join(extra))
    print("\n### Anomalies\n")
    print("\n".join(f"- {a}" for a in ANOMALIES) if ANOMALIES else "- none")
    if left[0] or left[1]:
        print(f"- marked processes still present at the very end: {left}")
    if args.json:
        args.json.write_text(json.dumps({"facts": facts, "results": results, "raw": ctx.raw, "anomalies": ANOMALIES}, indent=1))
    shutil.rmtree(ctx.workdir, ignore_errors=True)
    return 1 if (left[0] or left[1]) else 0


if __name__ == "__main__":
    sys.exit(main())
