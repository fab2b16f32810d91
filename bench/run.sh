#!/usr/bin/env bash
# The run benchmark (run by hand, not in CI).
#
#   bench/run.sh            # scheduling overhead: ~10,000 targets whose command
#                           # is `true`, -j 2, beside `ninja -j 2` on an
#                           # equivalent build.ninja made from the same graph
#   bench/run.sh adopt      # adopt, then plan and a no-op run, over ~1,000,000
#                           # built targets (hive-dir in listing and folder
#                           # modes, and the embedded warehouse), and plans
#                           # of the next day and 15 days on, beside ninja -n
#                           # on 73,000, and the hive-dir probe's floor (its
#                           # system calls alone, bench/hive_floor.rs)
#
# Outputs are created beforehand in the hive-dir warehouse, so `true` "writes"
# them and the runner probes and records every target as a real job would.
set -euo pipefail
cd "$(dirname "$0")/.."
need() { command -v "$1" >/dev/null || { apt-get update -qq && apt-get install -y -qq "$2" >/dev/null; }; }
need ninja ninja-build
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
cargo build --release --quiet --bin chronon-build --example gen_repo --example gen_run --example hive_floor
bin=$PWD/target/release/chronon-build

measure() { # label, then the command
    local label=$1; shift
    /usr/bin/time -f "%e %M" -o /tmp/chronon-build-bench-time "$@" >/dev/null 2>&1 || true
    read -r secs kb < /tmp/chronon-build-bench-time
    printf '%-44s %8.2f s  %8.1f MB peak\n' "$label" "$secs" "$(echo "$kb / 1024" | bc -l)" | tee -a "$report"
}
report=$(mktemp "${TMPDIR:-/tmp}/chronon-build-bench-report.XXXXXX")
# The median of this run's measures whose label starts with $1.
median() {
    grep "^$1" "$report" | awk '{print $(NF-4)}' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}

if [ "${1:-}" = adopt ]; then
    # The warm case: a fully built ~1,000,000-target repository, adopted,
    # then planned and run with nothing to do: on hive-dir in the default
    # `listing` fingerprint mode and in `folder` mode, and on the embedded
    # warehouse (the same partitions listed in its catalog); beside
    # `ninja -n` on the 73,000-target graph (bench/plan.sh's default size),
    # in the same run.
    ninja_out=bench/out/gb200_d365_w30
    ./target/release/examples/gen_repo --group-bys 200 --days 365 --window 30 --out "$ninja_out" >/dev/null
    ninja -C "$ninja_out" -n >/dev/null
    out=bench/out/adopt1m
    ./target/release/examples/gen_repo --group-bys 2740 --days 365 --window 30 --no-ninja --out "$out" >/dev/null
    ./target/release/examples/gen_run --repo "$out/repo" --sqlite sqlwh
    for mode in listing folder sqlite; do
        if [ "$mode" = sqlite ]; then
            printf '[executor]\nkind = "zipline"\n[warehouse]\nkind = "sqlite"\nroot = "sqlwh"\n' > "$out/repo/chronon-build.toml"
        else
            printf '[executor]\nkind = "zipline"\n[warehouse]\nkind = "hive-dir"\nfingerprint = "%s"\n' "$mode" > "$out/repo/chronon-build.toml"
        fi
        rm -rf "$out/repo/.chronon-build"
        measure "adopt, 1,000,100 targets ($mode)" $bin adopt --repo "$out/repo" --until 2025-12-31
        # The first run after adopting plans every target and records node
        # memos; the everyday case is what follows.
        measure "first no-op run ($mode)" $bin run --repo "$out/repo" --until 2025-12-31 --progress quiet
        for i in 1 2 3; do
            measure "plan --format json, built ($mode, run $i)" $bin plan --repo "$out/repo" --until 2025-12-31 --format json
        done
        for i in 1 2; do
            measure "no-op run ($mode, run $i)" $bin run --repo "$out/repo" --until 2025-12-31 --progress quiet
        done
        # The next day from cron: each node's memo holds up to yesterday,
        # and only the new day is evaluated (its inputs have not landed).
        measure "plan --format json, next day ($mode)" $bin plan --repo "$out/repo" --until 2026-01-01 --format json
        measure "plan --format json, 15 days on ($mode)" $bin plan --repo "$out/repo" --until 2026-01-15 --format json
        $bin plan --repo "$out/repo" --until 2025-12-31 | tail -1
    done
    for i in 1 2 3; do
        measure "ninja -n, 73,000 targets (run $i)" ninja -C "$ninja_out" -n
    done
    # What a hive-dir plan cannot go under: the probe's system calls alone.
    ./target/release/examples/hive_floor "$out/repo/warehouse"
    rm -f "$report"
    exit 0
fi

out=bench/out/run10k
./target/release/examples/gen_repo --group-bys 20 --joins 2 --days 365 --window 30 --no-ninja --out "$out" >/dev/null
./target/release/examples/gen_run --repo "$out/repo" --ninja "$out/build.ninja"
# Each run gets a new state folder (its logs included): creating files right
# after deleting thousands of them is slow on ext4, and that is not ours.
states=$(mktemp -d "${TMPDIR:-/tmp}/chronon-build-bench.XXXXXX")
trap 'rm -rf "$states"' EXIT
for step_days in 1 30; do
    printf '[executor]\nkind = "zipline"\ncli = "zipline"\nprogram = ["true"]\nstep_days = %s\n[warehouse]\nkind = "hive-dir"\n' "$step_days" > "$out/repo/chronon-build.toml"
    for i in 1 2 3 4 5; do
        measure "chronon-build run -j 2, step_days $step_days (run $i)" \
            $bin run --repo "$out/repo" --state "$states/$step_days-$i/state.db" --until 2025-12-31 -j 2 --progress quiet
        if [ "$step_days" = 1 ]; then
            rm -f "$out/.ninja_log" "$out/.ninja_deps"
            measure "ninja -j 2 (run $i)" ninja -C "$out" -j 2
        fi
    done
done
$bin run --repo "$out/repo" --state "$states/last/state.db" --until 2025-12-31 -j 2 --progress quiet | tail -1
ours=$(median "chronon-build run -j 2, step_days 1 ")
theirs=$(median "ninja -j 2")
printf 'medians: chronon-build %s s, ninja %s s: %.2f x\n' "$ours" "$theirs" "$(echo "$ours / $theirs" | bc -l)"
rm -f "$report"
