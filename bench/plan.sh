#!/usr/bin/env bash
# The plan benchmark (run by hand, not in CI): wall time and peak memory of
# `chronon-build plan` on synthetic repos, beside `ninja -n` on an equivalent
# build.ninja, measured in the same run.
#
#   bench/plan.sh            # 200 group-bys x 365 days x 30-day windows (73,000 targets)
#   bench/plan.sh 2740       # 2,740 group-bys x 365 days (about 1,000,000 targets)
#   TABLES=1 bench/plan.sh 2740   # the warm case with every output a table of
#                                 # the embedded warehouse (2,740 in one
#                                 # namespace), as a user's repository has them
#
# First the cold case (nothing built), then the warm case: every target's
# output created and adopted on the embedded warehouse, then planned again
# and run with nothing to do (`bench/run.sh adopt` measures the warm case on
# hive-dir too, and adopt itself, at 1,000,000 targets).
set -euo pipefail
cd "$(dirname "$0")/.."
group_bys=${1:-200}
days=${DAYS:-365}
window=${WINDOW:-30}
out=bench/out/gb${group_bys}_d${days}_w${window}

need() { command -v "$1" >/dev/null || { apt-get update -qq && apt-get install -y -qq "$2" >/dev/null; }; }
need ninja ninja-build
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }

cargo build --release --quiet --bin chronon-build --example gen_repo --example gen_run
# The equivalent build.ninja grows with targets x window (about 2 GB at 1M
# targets); ninja runs on the 73,000-target graph (200 group-bys), in the
# same run, whatever size chronon-build plans.
ninja_flag=""
ninja_dir=$out
if [ "$group_bys" -gt 500 ]; then
    ninja_flag="--no-ninja"
    ninja_dir=bench/out/gb200_d${days}_w${window}
    ./target/release/examples/gen_repo --group-bys 200 --days "$days" --window "$window" --out "$ninja_dir" >/dev/null 2>&1
fi
./target/release/examples/gen_repo --group-bys "$group_bys" --days "$days" --window "$window" --out "$out" $ninja_flag

measure() { # label, then the command
    local label=$1; shift
    /usr/bin/time -f "%e %M" -o "$out/time.txt" "$@" >/dev/null
    read -r secs kb < "$out/time.txt"
    printf '%-34s %8.2f s  %8.1f MB peak\n' "$label" "$secs" "$(echo "$kb / 1024" | bc -l)" | tee -a "$out/report.txt"
}
# The median of the measures whose label starts with $1 (in this run).
median() {
    grep "^$1" "$out/report.txt" | awk '{print $(NF-4)}' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}
: > "$out/report.txt"

bin=./target/release/chronon-build
# Warm the page cache for both tools alike.
$bin plan --repo "$out/repo" --until 2025-12-31 >/dev/null
ninja -C "$ninja_dir" -n >/dev/null
for i in 1 2 3; do
    measure "chronon-build plan (run $i)" $bin plan --repo "$out/repo" --until 2025-12-31 --format json
    measure "ninja -n, $(basename "$ninja_dir") (run $i)" ninja -C "$ninja_dir" -n
done
echo "targets planned: $($bin plan --repo "$out/repo" --until 2025-12-31 | tail -1)"

# The warm case, in its own state file (the cold runs above stay cold).
warm=$out/warm
rm -rf "$warm"
rm -rf "$out/repo/sqlwh"
./target/release/examples/gen_run --repo "$out/repo" --sqlite sqlwh --tables "${TABLES:-0}" >/dev/null 2>&1
cp "$out/repo/chronon-build.toml" "$out/cold.toml"
printf '[executor]\nkind = "zipline"\n[warehouse]\nkind = "sqlite"\nroot = "sqlwh"\n' > "$out/repo/chronon-build.toml"
trap 'cp "$out/cold.toml" "$out/repo/chronon-build.toml"' EXIT
state=(--state "$warm/state.db")
$bin adopt --repo "$out/repo" "${state[@]}" --until 2025-12-31 >/dev/null 2>&1
# The first run after adopting plans every target and records node memos.
$bin run --repo "$out/repo" "${state[@]}" --until 2025-12-31 --progress quiet >/dev/null 2>&1
for i in 1 2 3; do
    measure "warm plan, all built (run $i)" $bin plan --repo "$out/repo" "${state[@]}" --until 2025-12-31 --format json
    measure "warm no-op run (run $i)" $bin run --repo "$out/repo" "${state[@]}" --until 2025-12-31 --progress quiet
    measure "ninja -n, $(basename "$ninja_dir") (run $i)" ninja -C "$ninja_dir" -n
done
echo "warm: $($bin plan --repo "$out/repo" "${state[@]}" --until 2025-12-31 | tail -1)"
warm_plan=$(median "warm plan")
ninja_n=$(median "ninja -n")
printf 'medians: warm plan %s s, ninja -n %s s: %.2f x\n' "$warm_plan" "$ninja_n" "$(echo "$warm_plan / $ninja_n" | bc -l)"
