#!/usr/bin/env bash
# The table-format benchmark (run by hand, not in CI): `chronon-build plan`
# on Iceberg and Delta tables written by the real libraries, beside those
# libraries listing the same partitions, and beside the embedded warehouse,
# measured in the same run (issue 27, "bench/formats.sh").
#
#   bench/formats.sh          # ~1,000,000 targets over 2,760 tables
#   FRESH=1 bench/formats.sh  # make the repository and tables again
#   GROUP_BYS=690 bench/formats.sh  # a quarter of the size (~2.5 GB of
#                                   # disk, under bench/out/formats-690)
#   RUNS=5 bench/formats.sh   # more runs per measurement (default 3)
#   BIN=/path/chronon-build bench/formats.sh  # measure that binary (an
#                                   # older build, say) and build nothing
#
# The repository is `bench/run.sh adopt`'s: 2,740 group-bys x 365 days,
# 30-day windows, over 20 source tables (gen_repo), every partition of every
# table (inputs and outputs) created by gen_run as a hive-dir folder and
# listed in the embedded warehouse's catalog (`sqlwh`). From that listing,
# bench/formats_tables.py writes with pyiceberg and deltalake one template
# table per distinct set of days (two: the sources' 396 days, the outputs'
# 365) and copies its metadata per table: `wh-delta/<ns>.db/<t>/_delta_log`
# (a backfill commit, two daily commits, a checkpoint, three daily commits)
# and `wh-iceberg/<ns>.db/<t>/metadata` (a backfill append and five daily
# appends; found by path, no catalog).
#
# Measured (wall time and peak RSS, 3 runs each, interleaved):
# - the Python libraries listing every table's partitions, one process per
#   format: deltalake's `DeltaTable(path).get_add_actions()` grouped by
#   `ds`; pyiceberg's `StaticTable.from_metadata(...).inspect.partitions()`;
# - `adopt` and a first no-op `run` (which stores node memos) on delta,
#   iceberg and the embedded warehouse (`kind = "sqlite"`, the same
#   partitions in its catalog), each in its own state folder;
# - `plan --format json` cold on `kind = "delta"` and `kind = "iceberg"`:
#   the adopted state without `tables.sqlite`, so every table is read
#   whole from its metadata (and, for reference, with no state at all,
#   where only the 20 source tables are read);
# - warm: `plan --format json` on delta, iceberg and the embedded
#   warehouse, `tables.sqlite` present.
# Goals (issue 27): cold plan <= 0.2 x the Python libraries' time; warm plan
# <= 1.2 x the embedded warehouse's warm plan; peak memory < 1 GB.
#
# The Python libraries come from scripts/formats-venv
# (CHRONON_BUILD_FORMATS_VENV chooses where that venv is). Uses
# CARGO_TARGET_DIR when set. About 10 GB of disk under bench/out/formats1m
# (mostly the hive-dir folders); delete it when done.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
command -v bc >/dev/null || { apt-get update -qq && apt-get install -y -qq bc >/dev/null; }

py=$(scripts/formats-venv)
target=${CARGO_TARGET_DIR:-$PWD/target}
if [ -n "${BIN:-}" ]; then
    bin=$BIN
else
    cargo build --release --quiet --bin chronon-build --example gen_repo --example gen_run
    bin=$target/release/chronon-build
fi

group_bys=${GROUP_BYS:-2740}
runs=${RUNS:-3}
case $group_bys in
    2740) out=bench/out/formats1m ;;
    *[!0-9]* | '') echo "GROUP_BYS must be a number" >&2 && exit 2 ;;
    *) out=bench/out/formats-$group_bys ;;
esac
repo=$out/repo
until=2025-12-31
if [ "${FRESH:-0}" = 1 ] || [ ! -f "$out/made" ]; then
    "$target/release/examples/gen_repo" --group-bys "$group_bys" --days 365 --window 30 --no-ninja --out "$out"
    "$target/release/examples/gen_run" --repo "$repo" --until "$until" --sqlite sqlwh
    for format in delta iceberg; do
        rm -rf "$repo/wh-$format"
        "$py" bench/formats_tables.py make "$format" "$repo/warehouse" "$repo/wh-$format"
    done
    touch "$out/made"
fi

settings() { # kind: the repository's chronon-build.toml for it
    case $1 in
        delta | iceberg) printf '[executor]\nkind = "zipline"\n[warehouse]\nkind = "%s"\nroot = "wh-%s"\n' "$1" "$1" ;;
        sqlite) printf '[executor]\nkind = "zipline"\n[warehouse]\nkind = "sqlite"\nroot = "sqlwh"\n' ;;
    esac >"$repo/chronon-build.toml"
}
trap 'printf "[executor]\nkind = \"zipline\"\n[warehouse]\nkind = \"hive-dir\"\n" >"$repo/chronon-build.toml"' EXIT

results=$out/results.txt
: >"$results"
measure() { # key, label, then the command
    local key=$1 label=$2 rc=0
    shift 2
    /usr/bin/time -f "%e %M %U %S" -o "$out/time.txt" "$@" >/dev/null 2>"$out/stderr.txt" || rc=$?
    read -r secs kb user sys < <(tail -1 "$out/time.txt")
    cpu=$(echo "$user + $sys" | bc -l)
    echo "$key $secs $kb $cpu" >>"$results"
    printf '%-42s %8.2f s  %7.2f s cpu  %7.1f MB peak%s\n' "$label" "$secs" "$cpu" "$(echo "$kb / 1024" | bc -l)" \
        "$([ "$rc" = 0 ] || echo "  (exit $rc: $(tail -1 "$out/stderr.txt"))")"
}
# The median of a measurement's wall times (field 2) or CPU times (4).
median() { awk -v k="$1" -v f="${2:-2}" '$1 == k { print $f }' "$results" | sort -g | awk '{ v[NR] = $1 } END { print (NR ? v[int((NR + 1) / 2)] : "nan") }'; }
peak_mb() { awk -v k="$1" '$1 ~ k { if ($3 > m) m = $3 } END { printf "%.0f", m / 1024 }' "$results"; }

echo "== adopted (each warehouse its own state folder), then a first no-op run"
for kind in delta iceberg sqlite; do
    settings "$kind"
    rm -rf "$out/warm-$kind"
    state=(--state "$out/warm-$kind/state.db")
    measure "adopt-$kind" "adopt ($kind)" "$bin" adopt --repo "$repo" "${state[@]}" --until "$until"
    measure "run1-$kind" "first no-op run ($kind)" \
        "$bin" run --repo "$repo" "${state[@]}" --until "$until" --progress quiet
done

# Cold: every table read from its metadata, nothing remembered (no
# tables.sqlite), on the adopted state, so that the plan reads every table
# the Python libraries list (a plan with no state reads only the 20 source
# tables: nothing is built, so no output is probed; measured too).
echo "== the Python libraries, and cold plans"
for i in $(seq "$runs"); do
    for format in delta iceberg; do
        measure "py-$format" "python $format listing (run $i)" "$py" bench/formats_tables.py list "$format" "$repo/wh-$format"
        settings "$format"
        rm -f "$out/warm-$format"/tables.sqlite*
        measure "cold-$format" "cold plan, $format, adopted (run $i)" \
            "$bin" plan --repo "$repo" --state "$out/warm-$format/state.db" --until "$until" --format json
        rm -rf "$out/cold-$format"
        measure "nostate-$format" "cold plan, $format, no state (run $i)" \
            "$bin" plan --repo "$repo" --state "$out/cold-$format/state.db" --until "$until" --format json
    done
done
"$py" bench/formats_tables.py list delta "$repo/wh-delta"
"$py" bench/formats_tables.py list iceberg "$repo/wh-iceberg"
rm -rf "$out"/cold-*

echo "== warm: plans with tables.sqlite present (the last cold plan's)"
for i in $(seq "$runs"); do
    for kind in delta iceberg sqlite; do
        settings "$kind"
        measure "warm-$kind" "warm plan, $kind (run $i)" \
            "$bin" plan --repo "$repo" --state "$out/warm-$kind/state.db" --until "$until" --format json
    done
done
for kind in delta iceberg sqlite; do
    settings "$kind"
    echo "warm $kind: $("$bin" plan --repo "$repo" --state "$out/warm-$kind/state.db" --until "$until" | tail -1)"
done

echo
echo "== summary (medians of $runs, wall time; CPU time (user + sys) below, as other"
echo "   work on the machine inflates wall times; goals from issue 27)"
ratio() { echo "scale=3; $1 / $2" | bc -l; }
for field in 2 4; do
    [ "$field" = 2 ] && what=wall || what=cpu
    sqlite_warm=$(median warm-sqlite "$field")
    printf '%-13s %9s %9s %7s %9s %9s %7s %10s\n' "format ($what)" python cold ratio warm sqlite ratio "plan peak"
    for format in delta iceberg; do
        python=$(median "py-$format" "$field")
        cold=$(median "cold-$format" "$field")
        warm=$(median "warm-$format" "$field")
        printf '%-13s %8.2fs %8.2fs %7s %8.2fs %8.2fs %7s %7s MB\n' "$format" "$python" "$cold" \
            "$(ratio "$cold" "$python")" "$warm" "$sqlite_warm" "$(ratio "$warm" "$sqlite_warm")" \
            "$(peak_mb "^(cold|nostate|warm)-$format\$")"
    done
done
echo "cold plan with no state (reads the 20 source tables only): delta $(median nostate-delta) s," \
    "iceberg $(median nostate-iceberg) s"
echo "goals: cold/python <= 0.2; warm/sqlite <= 1.2; peak < 1024 MB" \
    "(adopt and first run peaks: $(peak_mb '^(adopt|run1)-') MB)"
