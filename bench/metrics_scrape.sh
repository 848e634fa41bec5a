#!/bin/sh
# The /metrics scrape benchmark (docs/metrics.md, "Benchmark").
#
#   bench/metrics_scrape.sh            # 5 runs, 1000 programs, 200 renders each
#   RUNS=7 PROGRAMS=1000 RENDERS=300 bench/metrics_scrape.sh
#   WAIT_IDLE=1 bench/metrics_scrape.sh   # start each run only once the CPUs
#                                         # were >= 90 % idle for 2 s
#
# Each run is a fresh process of the ignored unit test
# metrics::tests::scrape_benchmark::scrape_benchmark (release build): it starts PROGRAMS real
# `sleep 1000` processes, each in its own process group, builds a board with
# every metric family populated, times RENDERS calls of Metrics::render
# (the /proc pass included) and kills and reaps every process it started,
# also when it fails (a Drop guard, plus PR_SET_PDEATHSIG should the test
# process itself be killed).
#
# Prints each run's line and then, per figure, the median over the runs with
# the min-max range. Needs only sh, awk and cargo.
set -eu

RUNS=${RUNS:-5}
PROGRAMS=${PROGRAMS:-1000}
RENDERS=${RENDERS:-200}
WAIT_IDLE=${WAIT_IDLE:-0}
cd "$(dirname "$0")/.."

# Percentage of CPU time idle over the next 2 seconds, from /proc/stat.
idle_percent() {
    a=$(head -1 /proc/stat)
    sleep 2
    b=$(head -1 /proc/stat)
    printf '%s\n%s\n' "$a" "$b" | awk '
        { t = 0; for (i = 2; i <= NF; i++) t += $i; idle = $5 + $6
          if (NR == 1) { t0 = t; i0 = idle } else { print int(100 * (idle - i0) / (t - t0)) } }'
}

wait_idle() {
    [ "$WAIT_IDLE" = 1 ] || return 0
    tries=0
    while [ "$(idle_percent)" -lt 90 ]; do
        tries=$((tries + 1))
        if [ "$tries" -ge 300 ]; then
            echo "machine still busy after 10 minutes; running anyway" >&2
            return 0
        fi
    done
}

cargo test --release --lib --no-run --quiet 2>/dev/null ||
    cargo test --release --lib --no-run

echo "machine: $(nproc) CPU, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), kernel $(uname -r)"
lines=$(mktemp)
trap 'rm -f "$lines"' EXIT
i=0
while [ "$i" -lt "$RUNS" ]; do
    i=$((i + 1))
    wait_idle
    KELPIE_BENCH_PROGRAMS=$PROGRAMS KELPIE_BENCH_RENDERS=$RENDERS \
        cargo test --release --lib --quiet metrics::tests::scrape_benchmark::scrape_benchmark \
        -- --ignored --nocapture --exact 2>&1 |
        grep '^metrics_scrape ' | tee -a "$lines"
done

awk '
{
    for (f = 2; f <= NF; f++) {
        split($f, kv, "=")
        if (kv[1] ~ /_ms$/ || kv[1] == "loadavg") {
            if (!(kv[1] in seen)) { seen[kv[1]] = 1; order[++n] = kv[1] }
            values[kv[1], ++count[kv[1]]] = kv[2]
        }
    }
}
END {
    printf "\n%-22s %10s %20s\n", "figure (runs: " count[order[1]] ")", "median", "min-max"
    for (k = 1; k <= n; k++) {
        key = order[k]; c = count[key]
        for (a = 1; a <= c; a++) v[a] = values[key, a] + 0
        for (a = 1; a <= c; a++) for (b = a + 1; b <= c; b++) if (v[b] < v[a]) { t = v[a]; v[a] = v[b]; v[b] = t }
        median = (c % 2) ? v[(c + 1) / 2] : (v[c / 2] + v[c / 2 + 1]) / 2
        printf "%-22s %10.2f %9.2f - %-9.2f\n", key, median, v[1], v[c]
    }
}' "$lines"
