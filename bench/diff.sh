#!/usr/bin/env bash
# The diff benchmark (run by hand, not in CI): `chronon-build diff` between
# two git revisions of a repository with 500 configs (400 group-bys and 100
# joins, 365 days each). The second revision widens one group-by's window,
# in the group-by and in the join that inlines it, as the compiler would.
#
#   bench/diff.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out=bench/out/diff500
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
command -v python3 >/dev/null || { apt-get update -qq && apt-get install -y -qq python3 >/dev/null; }

cargo build --release --quiet --bin chronon-build --example gen_repo
./target/release/examples/gen_repo --group-bys 400 --joins 100 --days 365 --window 30 --out "$out" --no-ninja
repo=$out/repo
echo "warehouse/" > "$repo/.gitignore"
git -C "$repo" init -q -b main
git -C "$repo" add -A
git -C "$repo" -c user.name=bench -c user.email=bench@example.com commit -q -m base
python3 - "$repo" <<'PY'
import json, sys
repo = sys.argv[1]
def edit(path, change):
    with open(path) as f:
        value = json.load(f)
    change(value)
    with open(path, "w") as f:
        json.dump(value, f)
edit(f"{repo}/production/group_bys/bench/gb_0.v1",
     lambda gb: gb["aggregations"][0]["windows"][0].update(length=60))
edit(f"{repo}/production/joins/bench/join_0.v1",
     lambda j: j["joinParts"][0]["groupBy"]["aggregations"][0]["windows"][0].update(length=60))
PY
git -C "$repo" -c user.name=bench -c user.email=bench@example.com commit -q -am "gb_0: 60-day window"
echo "configs: $(find "$repo/production" -type f | wc -l)"

bin=./target/release/chronon-build
$bin diff --repo "$repo" --base main~1 --head main --until 2025-12-31 >/dev/null # warm the page cache
for i in 1 2 3; do
    /usr/bin/time -f "%e %M" -o "$out/time.txt" \
        $bin diff --repo "$repo" --base main~1 --head main --until 2025-12-31 --format json >/dev/null
    read -r secs kb < "$out/time.txt"
    printf 'diff main~1 main, 500 configs (run %d) %6.2f s  %6.1f MB peak\n' "$i" "$secs" "$(echo "$kb / 1024" | bc -l)"
done
$bin diff --repo "$repo" --base main~1 --head main --until 2025-12-31 | head -12
