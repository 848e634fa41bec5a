#!/usr/bin/env python3
"""Two kelpie builds side by side, in one run (docs/benchmarks.md).

    python3 bench/before_after.py --before OLD/kelpie --after target/release/kelpie
    python3 bench/before_after.py --before A --after B --rounds 5 startup stop

Each round runs `bench/run.py SCENARIOS --runs 1` once per build, the build
that goes first alternating from round to round, so the machine's noise
(other load, a warm page cache, thermal state) falls on both alike. The
table gives, per row of run.py, the median over the rounds for each build,
the min-max range, and the ratio after/before: on a shared machine the
ratio is the number to read, not the absolute values. All measuring is
run.py's own; this file only schedules it and compares.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def load_run_py():
    spec = importlib.util.spec_from_file_location("kelpie_bench_run", HERE / "run.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def one_run(binary: Path, scenarios: list[str], extra: list[str]) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "results.json"
        argv = [sys.executable, str(HERE / "run.py"), *scenarios, "--runs", "1",
                "--release-binary", str(binary), "--json", str(out), *extra]
        done = subprocess.run(argv, stdout=subprocess.DEVNULL)
        if not out.exists():
            raise SystemExit(f"run.py failed for {binary} (exit {done.returncode})")
        return json.loads(out.read_text())["results"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenarios", nargs="*", default=["startup", "memory", "restart", "stop", "idle"])
    ap.add_argument("--before", type=Path, required=True, help="the baseline kelpie binary")
    ap.add_argument("--after", type=Path, required=True, help="the kelpie binary under test")
    ap.add_argument("--rounds", type=int, default=5, help="runs per build (default 5)")
    ap.add_argument("--json", type=Path, help="also write every round's raw results here")
    args, extra = ap.parse_known_args()
    run_py = load_run_py()
    builds = {"before": args.before.resolve(), "after": args.after.resolve()}
    results: dict[str, dict[str, list[float]]] = {"before": {}, "after": {}}
    for round_no in range(args.rounds):
        order = ["before", "after"] if round_no % 2 == 0 else ["after", "before"]
        for label in order:
            print(f"round {round_no + 1}/{args.rounds}: {label}", file=sys.stderr, flush=True)
            for key, values in one_run(builds[label], args.scenarios, extra).items():
                results[label].setdefault(key, []).extend(values)
    fmt = run_py.fmt
    print(f"before: {builds['before']}\nafter:  {builds['after']}\n")
    print("| scenario | before: median (min–max) | after: median (min–max) | after/before |")
    print("|---|---:|---:|---:|")
    for key, label, unit, _target in run_py.ROWS:
        old, new = results["before"].get(key), results["after"].get(key)
        if not old or not new:
            continue
        mo, mn = statistics.median(old), statistics.median(new)
        ratio = f"{mn / mo:.2f}" if mo else ("1.00" if mn == 0 else "—")
        print(f"| {label} | {fmt(mo)} {unit} ({fmt(min(old))}–{fmt(max(old))}) "
              f"| {fmt(mn)} {unit} ({fmt(min(new))}–{fmt(max(new))}) | {ratio} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
