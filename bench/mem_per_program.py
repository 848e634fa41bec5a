#!/usr/bin/env python3
"""Bytes per program: kelpie's resident memory with N running `sleep`s.

    python3 bench/mem_per_program.py --build NAME=PATH/kelpie [--build ...]
        [--sizes 1000,5000] [--rounds 3] [--discard] [--shape instances]

For each round and size it runs every build once (the order alternates
from round to round), waits until kelpie has N children running `sleep`
and its RSS has stopped moving, and reads VmRSS from /proc/PID/status and
Private_Dirty and Anonymous from /proc/PID/smaps_rollup. It prints the
median over the rounds per build and size, and the bytes per program
between the smallest and the largest size (the slope, which leaves out
what kelpie costs with no program at all).

Each program is its own `[program.pN]` table; `--shape instances` makes
it one program with `instances = N` instead. With output captured every
instance holds two pipe fds; `--discard` sets `log = { mode = "discard" }`
(no pipes) for sizes the open-file limit would not allow otherwise.
Python 3 stdlib only.
"""

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def children(pid: int) -> list[int]:
    """Children of every thread of pid (a multi-threaded parent forks
    from whichever thread runs the spawn)."""
    kids: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return kids
    for tid in tasks:
        try:
            text = Path(f"/proc/{pid}/task/{tid}/children").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        kids.extend(int(p) for p in text.split())
    return kids


def running_sleeps(pid: int) -> int:
    n = 0
    for kid in children(pid):
        try:
            if Path(f"/proc/{kid}/comm").read_text().strip() == "sleep":
                n += 1
        except (FileNotFoundError, ProcessLookupError):
            pass
    return n


def kib_fields(path: str, names: tuple[str, ...]) -> dict[str, int]:
    out = {}
    for line in Path(path).read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in names:
            out[key] = int(rest.split()[0])
    return out


def config(workdir: Path, n: int, discard: bool, shape: str = "tables") -> str:
    parts = [
        "[supervisor]\n",
        'http_listen = "127.0.0.1:0"\n',
        f'control_socket = "{workdir}/k.sock"\n',
    ]
    extra = 'log = { mode = "discard" }\n' if discard else ""
    if shape == "instances":
        parts.append(
            f'\n[program.p]\ncommand = ["sleep", "100000"]\n'
            f'start_seconds = "0s"\ninstances = {n}\n{extra}'
        )
        return "".join(parts)
    for i in range(n):
        parts.append(
            f'\n[program.p{i}]\ncommand = ["sleep", "100000"]\n'
            f'start_seconds = "0s"\n{extra}'
        )
    return "".join(parts)


def measure(
    binary: str, n: int, discard: bool, timeout: float, shape: str = "tables"
) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="kelpie-mem-") as tmp:
        workdir = Path(tmp)
        cfg = workdir / "k.toml"
        cfg.write_text(config(workdir, n, discard, shape))
        env = dict(os.environ)
        env.pop("KELPIE_CONFIG", None)
        proc = subprocess.Popen(
            [binary, "run", "-c", str(cfg)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(workdir / "stderr.txt", "wb"),
            env=env,
            cwd=workdir,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + timeout
            while running_sleeps(proc.pid) < n:
                if proc.poll() is not None:
                    err = (workdir / "stderr.txt").read_text()[-500:]
                    raise RuntimeError(f"kelpie exited with {proc.returncode}: {err}")
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"only {running_sleeps(proc.pid)}/{n} sleeps after {timeout}s"
                    )
                time.sleep(0.2)
            # Settled: the same RSS over four reads 0.5 s apart.
            last, same = None, 0
            while same < 4:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"RSS did not settle within {timeout}s")
                rss = kib_fields(f"/proc/{proc.pid}/status", ("VmRSS",))["VmRSS"]
                same = same + 1 if rss == last else 0
                last = rss
                time.sleep(0.5)
            status = kib_fields(f"/proc/{proc.pid}/status", ("VmRSS",))
            rollup = kib_fields(
                f"/proc/{proc.pid}/smaps_rollup", ("Private_Dirty", "Anonymous")
            )
            return {
                "rss": status["VmRSS"] * 1024,
                "private_dirty": rollup["Private_Dirty"] * 1024,
                "anonymous": rollup["Anonymous"] * 1024,
            }
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", action="append", required=True, help="NAME=PATH")
    ap.add_argument("--sizes", default="1000,5000")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--discard", action="store_true")
    ap.add_argument("--shape", choices=["tables", "instances"], default="tables")
    ap.add_argument("--timeout", type=float, default=180.0)
    args = ap.parse_args()
    builds = [tuple(b.split("=", 1)) for b in args.build]
    sizes = [int(s) for s in args.sizes.split(",")]
    results: dict[tuple[str, int], list[dict[str, float]]] = {}
    for r in range(args.rounds):
        order = builds if r % 2 == 0 else list(reversed(builds))
        for n in sizes:
            for name, binary in order:
                m = measure(binary, n, args.discard, args.timeout, args.shape)
                results.setdefault((name, n), []).append(m)
                print(
                    f"round {r + 1} {name} N={n}: RSS {m['rss'] / 2**20:.2f} MiB, "
                    f"Private_Dirty {m['private_dirty'] / 2**20:.2f} MiB, "
                    f"Anonymous {m['anonymous'] / 2**20:.2f} MiB",
                    flush=True,
                )
    keys = ("rss", "private_dirty", "anonymous")
    print("\nmedians (MiB; bytes/program = the value / N)")
    for name, _ in builds:
        for n in sizes:
            med = {k: statistics.median(m[k] for m in results[(name, n)]) for k in keys}
            print(
                f"{name} N={n}: "
                + ", ".join(
                    f"{k} {med[k] / 2**20:.2f} MiB ({med[k] / n:.0f} B/program)"
                    for k in keys
                )
            )
        if len(sizes) > 1:
            lo, hi = sizes[0], sizes[-1]
            slope = {
                k: (
                    statistics.median(m[k] for m in results[(name, hi)])
                    - statistics.median(m[k] for m in results[(name, lo)])
                )
                / (hi - lo)
                for k in keys
            }
            print(
                f"{name} slope N={lo}..{hi}: "
                + ", ".join(f"{k} {slope[k]:.0f} B/program" for k in keys)
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
