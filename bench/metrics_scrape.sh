#!/bin/sh
# The /metrics scrape benchmark (docs/metrics.md, "Benchmark").
#
#   bench/metrics_scrape.sh            # 5 runs, 1000 programs, 200 renders each
#   RUNS=7 PROGRAMS=1000 RENDERS=300 bench/metrics_scrape.sh
#   WAIT_IDLE=1 bench/metrics_scrape.sh   # start each run only once the CPUs
#                                         # were >= 90 % idle for 2 s
#   BASELINE=/tmp/kelpie-main-tests bench/metrics_scrape.sh
#       # before/after: each round runs that test binary (a copy of
#       # target/release/deps/kelpie-* built from another commit) and this
#       # tree's, the one going first alternating from round to round;
#       # the summary is per build, with the ratio of the medians
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
# the min-max range. Needs only sh, sed, awk and cargo.
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

BASELINE=${BASELINE:-}
build_log=$(mktemp)
lines=$(mktemp)
trap 'rm -f "$lines" "$build_log"' EXIT
cargo test --release --lib --no-run >"$build_log" 2>&1 || {
    cat "$build_log" >&2
    exit 1
}
# cargo names the test binary on stderr: "Executable unittests src/lib.rs (PATH)".
after=$(sed -n 's/.*unittests src\/lib.rs (\(.*\))$/\1/p' "$build_log" | tail -1)
if [ -z "$after" ] || [ ! -x "$after" ]; then
    echo "cannot find the test binary in cargo's output" >&2
    exit 1
fi
if [ -n "$BASELINE" ] && [ ! -x "$BASELINE" ]; then
    echo "BASELINE=$BASELINE is not an executable" >&2
    exit 1
fi

# One run of one build's benchmark; prints its line, tagged with the build.
run() {
    KELPIE_BENCH_PROGRAMS=$PROGRAMS KELPIE_BENCH_RENDERS=$RENDERS \
        "$2" --ignored --nocapture --exact metrics::tests::scrape_benchmark::scrape_benchmark 2>&1 |
        grep '^metrics_scrape ' | sed "s/^/$1 /" | tee -a "$lines"
}

echo "machine: $(nproc) CPU, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), kernel $(uname -r)"
i=0
while [ "$i" -lt "$RUNS" ]; do
    i=$((i + 1))
    wait_idle
    if [ -z "$BASELINE" ]; then
        run this "$after"
    elif [ $((i % 2)) = 1 ]; then
        run before "$BASELINE"
        run after "$after"
    else
        run after "$after"
        run before "$BASELINE"
    fi
done

awk '
function median_of(build, key,    c, a, b, t, v) {
    c = count[build, key]
    for (a = 1; a <= c; a++) v[a] = values[build, key, a] + 0
    for (a = 1; a <= c; a++) for (b = a + 1; b <= c; b++) if (v[b] < v[a]) { t = v[a]; v[a] = v[b]; v[b] = t }
    lo = v[1]; hi = v[c]
    return (c % 2) ? v[(c + 1) / 2] : (v[c / 2] + v[c / 2 + 1]) / 2
}
{
    build = $1
    if (!(build in builds)) { builds[build] = 1; border[++nb] = build }
    for (f = 3; f <= NF; f++) {
        split($f, kv, "=")
        if (kv[1] ~ /_ms$/ || kv[1] == "loadavg") {
            if (!(kv[1] in seen)) { seen[kv[1]] = 1; order[++n] = kv[1] }
            values[build, kv[1], ++count[build, kv[1]]] = kv[2]
        }
    }
}
END {
    for (j = 1; j <= nb; j++) {
        build = border[j]
        printf "\n%-22s %10s %20s\n", build " (runs: " count[build, order[1]] ")", "median", "min-max"
        for (k = 1; k <= n; k++) {
            m = median_of(build, order[k])
            med[build, order[k]] = m
            printf "%-22s %10.2f %9.2f - %-9.2f\n", order[k], m, lo, hi
        }
    }
    if (("before" in builds) && ("after" in builds)) {
        printf "\n%-22s %10s\n", "after/before", "ratio"
        for (k = 1; k <= n; k++)
            if (med["before", order[k]] > 0)
                printf "%-22s %10.2f\n", order[k], med["after", order[k]] / med["before", order[k]]
    }
}' "$lines"
