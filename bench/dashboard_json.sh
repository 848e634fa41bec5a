#!/bin/sh
# The /dashboard.json render benchmark (docs/dashboard.md, "Cost").
#
#   bench/dashboard_json.sh                       # 5 runs, 1000 programs, 200 renders
#   RUNS=7 PROGRAMS=1000 RENDERS=300 bench/dashboard_json.sh
#
# Each run is a fresh process of the ignored unit test
# http::dashboard::tests::dashboard_json_benchmark (release build): 1000
# programs, each with a full crash history (20 exits of 20 lines), one
# selected; it times copying every history out and serializing the JSON.
# Prints each run's line, then the median over the runs of each figure with
# the min-max range. Needs only sh, awk and cargo.
set -eu

RUNS=${RUNS:-5}
PROGRAMS=${PROGRAMS:-1000}
RENDERS=${RENDERS:-200}
cd "$(dirname "$0")/.."

cargo test --release --lib --no-run --quiet 2>/dev/null ||
    cargo test --release --lib --no-run

echo "machine: $(nproc) CPU, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), kernel $(uname -r)"
lines=$(mktemp)
trap 'rm -f "$lines"' EXIT
i=0
while [ "$i" -lt "$RUNS" ]; do
    i=$((i + 1))
    KELPIE_BENCH_PROGRAMS=$PROGRAMS KELPIE_BENCH_RENDERS=$RENDERS \
        cargo test --release --lib --quiet http::dashboard::tests::dashboard_json_benchmark \
        -- --ignored --nocapture --exact 2>&1 |
        grep '^dashboard_json ' | tee -a "$lines"
done

awk '
{
    for (f = 2; f <= NF; f++) {
        split($f, kv, "=")
        if (kv[1] ~ /_ms$/) {
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
