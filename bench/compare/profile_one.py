#!/usr/bin/env python3
"""Where kelpie's time and memory go with one program (docs/benchmarks.md,
"Side by side": the rows where kelpie is not the best of all peers).

    python3 bench/compare/profile_one.py [--runs 40] [--binary target/release/kelpie]

1. Start phases, from kelpie's own JSON log timestamps against the wall
   clock just before the exec: exec -> first log line (dynamic linking,
   guardian fork, config, logging), -> `supervisor_started` (async runtime,
   relay, state), -> `program_started` (actors, the spawn of `sleep`).
   For reference, the whole run of `/bin/true` and of `<binary> --version`.
2. Memory: RSS of kelpie and of its guardian with one program, split by
   mapping (kelpie's own text, shared libraries, anonymous memory).

Python 3 standard library only; no root needed.  Run it on a quiet
machine, pinned to one CPU (`taskset -c 1 python3 ...`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def stamp(text: str) -> float:
    base = dt.datetime.strptime(text.rstrip("Z")[:26], "%Y-%m-%dT%H:%M:%S.%f")
    return base.replace(tzinfo=dt.timezone.utc).timestamp()


def whole_run_ms(argv: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def phases(kelpie: str, config: Path, runs: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {k: [] for k in ("link+guardian+config+logging", "runtime+relay+state", "actors+spawn", "total")}
    env = dict(os.environ, KELPIE_LOG_FORMAT="json")
    env.pop("KELPIE_LOG", None)
    for _ in range(runs):
        t0 = time.time()
        proc = subprocess.Popen([kelpie, "run", "-c", str(config)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        first = None
        seen: dict[str, float] = {}
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            t = stamp(event["timestamp"])
            first = first if first is not None else t
            seen[event.get("event", "")] = t
            if event.get("event") == "program_started":
                break
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
        if first is None or "supervisor_started" not in seen or "program_started" not in seen:
            raise SystemExit(f"kelpie did not log the expected events: {sorted(seen)}")
        out["link+guardian+config+logging"].append((first - t0) * 1000)
        out["runtime+relay+state"].append((seen["supervisor_started"] - first) * 1000)
        out["actors+spawn"].append((seen["program_started"] - seen["supervisor_started"]) * 1000)
        out["total"].append((seen["program_started"] - t0) * 1000)
    return out


def mappings(pid: int) -> dict[str, int]:
    """kB resident per kind of mapping."""
    kinds: dict[str, int] = {}
    name = ""
    exe = os.path.realpath(f"/proc/{pid}/exe")
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split()
            if head and "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
                path = head[5] if len(head) >= 6 else ""
                perms = head[1]
                if path == exe:
                    name = "kelpie text" if "x" in perms else "kelpie data/rodata"
                elif path.startswith("/"):
                    name = "shared libraries"
                else:
                    name = "anonymous (heap, stacks)"
            elif head and head[0] == "Rss:":
                kinds[name] = kinds.get(name, 0) + int(head[1])
    return kinds


def memory(kelpie: str, config: Path) -> dict[str, dict[str, int]]:
    proc = subprocess.Popen([kelpie, "run", "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        guardian = None
        while time.monotonic() < deadline:
            kids = subprocess.run(["ps", "-o", "pid=,comm=", "--ppid", str(proc.pid)], capture_output=True, text=True).stdout.split("\n")
            comms = {line.split()[1]: int(line.split()[0]) for line in kids if len(line.split()) == 2}
            if "sleep" in comms:
                guardian = comms.get("kelpie-guardian")
                break
            time.sleep(0.05)
        time.sleep(1.5)  # settle, as bench/compare does
        result = {"kelpie": mappings(proc.pid)}
        if guardian:
            result["guardian"] = mappings(guardian)
        return result
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--binary", type=Path, default=REPO / "target/release/kelpie")
    args = ap.parse_args()
    if not args.binary.exists():
        raise SystemExit(f"{args.binary}: not found (cargo build --release)")
    with tempfile.TemporaryDirectory(prefix="kelpie-profile-") as d:
        kelpie = str(Path(d) / "kelpie")
        shutil.copy2(args.binary, kelpie)  # a private copy, as the benches use
        config = Path(d) / "one.toml"
        sleep = shutil.which("sleep") or "/bin/sleep"
        config.write_text(
            '[supervisor]\nhttp_listen = "off"\n'
            f'control_socket = "{d}/k.sock"\n\n[program.p0]\ncommand = ["{sleep}", "100000"]\n'
        )
        print(f"start phases, median of {args.runs} runs (ms):")
        for key, vals in phases(kelpie, config, args.runs).items():
            print(f"  {key:32} {statistics.median(vals):6.2f}  (min {min(vals):.2f})")
        print("whole run, median (ms):")
        print(f"  {'/bin/true':32} {whole_run_ms(['/bin/true'], args.runs):6.2f}")
        print(f"  {'kelpie --version':32} {whole_run_ms([kelpie, '--version'], args.runs):6.2f}")
        for shim in ("tini", "dumb-init"):
            if shutil.which(shim):
                print(f"  {shim + ' --version':32} {whole_run_ms([shim, '--version'], args.runs):6.2f}")
        print("resident memory with one program (kB):")
        for proc, kinds in memory(kelpie, config).items():
            total = sum(kinds.values())
            parts = ", ".join(f"{k} {v}" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1]))
            print(f"  {proc}: {total} = {parts}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
