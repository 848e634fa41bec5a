#!/usr/bin/env python3
"""What one `kelpie top` refresh costs (docs/benchmarks.md, "kelpie top").

    python3 bench/top_refresh.py                      # 100 programs, 1000 requests per route
    python3 bench/top_refresh.py --programs 1000 --requests 300
    python3 bench/top_refresh.py --binary target/release/kelpie --once-runs 10

Starts `kelpie run` with N programs running `sleep 1000`, waits until every
one runs, then measures:

- the two requests of a refresh, `GET /v1/usage` (the /proc pass) and
  `GET /v1/programs`, each over a fresh connection as `kelpie top` makes
  them: wall time per request (p50, p90) and kelpie's CPU per request
  (utime + stime of the kelpie process over all requests, divided by
  their number);
- `kelpie top --once --interval 1s` as a whole process: its CPU (user +
  system, from wait4) for two samples and the rendering, next to `kelpie
  status` for reference.

Python 3 standard library only. kelpie is stopped with SIGTERM at the end,
also on errors.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15; the split starts at field 3.
    return int(fields[11]) + int(fields[12])


def request(sock_path, path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sock_path)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
    chunks = []
    while True:
        data = s.recv(65536)
        if not data:
            break
        chunks.append(data)
    s.close()
    answer = b"".join(chunks)
    status = int(answer.split(b" ", 2)[1])
    if status != 200:
        raise RuntimeError(f"{path}: status {status}")
    return answer


def percentile(values, p):
    values = sorted(values)
    k = (len(values) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def time_route(pid, sock_path, path, n):
    for _ in range(10):
        request(sock_path, path)
    walls = []
    before = cpu_ticks(pid)
    for _ in range(n):
        t0 = time.perf_counter()
        request(sock_path, path)
        walls.append(time.perf_counter() - t0)
    used = (cpu_ticks(pid) - before) / CLK_TCK
    return walls, used / n


def child_cpu(argv):
    """Runs argv to completion; returns (exit code, wall s, user+sys s)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, wall, usage.ru_utime + usage.ru_stime


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", default="target/release/kelpie")
    parser.add_argument("--programs", type=int, default=100)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--once-runs", type=int, default=10)
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="kelpie-top-bench-")
    binary = os.path.join(work, "kelpie")
    shutil.copy(args.binary, binary)
    sock_path = os.path.join(work, "k.sock")
    config = os.path.join(work, "supervisor.toml")
    with open(config, "w") as f:
        f.write(f'[supervisor]\nhttp_listen = "off"\ncontrol_socket = "{sock_path}"\n')
        for i in range(args.programs):
            f.write(f'\n[program.p{i:04}]\ncommand = ["sleep", "1000"]\nstart_seconds = "0s"\n')

    log = open(os.path.join(work, "kelpie.log"), "w")
    kelpie = subprocess.Popen([binary, "run", "-c", config], stdout=log, stderr=log, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            if time.monotonic() > deadline:
                raise RuntimeError("programs did not all start within 60 s")
            try:
                reply = json.loads(request(sock_path, "/v1/programs").split(b"\r\n\r\n", 1)[1])
                if all(p["state"] == "running" for p in reply["programs"]) and len(reply["programs"]) == args.programs:
                    break
            except (OSError, RuntimeError, ValueError, IndexError):
                pass
            time.sleep(0.05)

        print(f"machine: {os.cpu_count()} CPUs, kernel {os.uname().release}; {args.programs} programs")
        print()
        print("| what | p50 | p90 | kelpie CPU per request |")
        print("|---|---:|---:|---:|")
        for path in ["/v1/usage", "/v1/programs"]:
            walls, cpu = time_route(kelpie.pid, sock_path, path, args.requests)
            print(
                f"| `GET {path}` ({args.requests} requests) | {percentile(walls, 0.5) * 1e3:.3f} ms "
                f"| {percentile(walls, 0.9) * 1e3:.3f} ms | {cpu * 1e3:.3f} ms |"
            )
        print()
        print("| whole process | median CPU (user + sys) | min-max | median wall |")
        print("|---|---:|---:|---:|")
        commands = [
            ("kelpie top --once --interval 1s", [binary, "top", "--once", "--interval", "1s", "-s", sock_path]),
            ("kelpie status", [binary, "status", "-s", sock_path]),
        ]
        for name, argv in commands:
            cpus, walls = [], []
            for _ in range(args.once_runs):
                code, wall, cpu = child_cpu(argv)
                if code != 0:
                    raise RuntimeError(f"{name} exited {code}")
                cpus.append(cpu)
                walls.append(wall)
            print(
                f"| `{name}` ({args.once_runs} runs) | {statistics.median(cpus) * 1e3:.2f} ms "
                f"| {min(cpus) * 1e3:.2f}-{max(cpus) * 1e3:.2f} ms | {statistics.median(walls) * 1e3:.0f} ms |"
            )
    finally:
        kelpie.send_signal(signal.SIGTERM)
        try:
            kelpie.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(kelpie.pid, signal.SIGKILL)
            kelpie.wait()
        log.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
