#!/usr/bin/env bash
# The report benchmark (run by hand, not in CI): `report` and `status` over
# 300 group-bys x 365 days, with a mixed state: most partitions fresh, some
# configs forced stale, some failed, and sources missing for the last days.
# It prints wall time, peak memory and the page's size, and leaves a
# screenshot of the page at bench/out/report300/report.png.
#
#   bench/report.sh
set -euo pipefail
cd "$(dirname "$0")/.."
need() { command -v "$1" >/dev/null || { apt-get update -qq && apt-get install -y -qq "$2" >/dev/null; }; }
need chromium chromium
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
cargo build --release --quiet --bin chronon-build --example gen_repo --example gen_run
bin=$PWD/target/release/chronon-build
out=bench/out/report300
repo=$out/repo
rm -rf "$out"
./target/release/examples/gen_repo --group-bys 300 --days 365 --window 30 --no-ninja --out "$out" >/dev/null
./target/release/examples/gen_run --repo "$repo" --until 2025-12-31 >/dev/null

settings() { printf '[executor]\nkind = "zipline"\nprogram = ["%s"]\nstep_days = 30\n[warehouse]\nkind = "hive-dir"\n' "$1" > "$repo/chronon-build.toml"; }
settings true
$bin run --repo "$repo" --until 2025-12-31 -j 2 --progress quiet | tail -1
# Ten configs forced stale from December, of which five then fail.
$bin invalidate --repo "$repo" 'bench.gb_1?.v1' --from 2025-12-01 --to 2025-12-31 >/dev/null
settings false
$bin run --repo "$repo" --until 2025-12-31 -j 2 --progress quiet --select 'bench.gb_1[0-4].v1' | tail -1 || true
settings true

measure() { # label, then the command
    local label=$1; shift
    /usr/bin/time -f "%e %M" -o /tmp/chronon-build-bench-time "$@" >/dev/null 2>&1
    read -r secs kb < /tmp/chronon-build-bench-time
    printf '%-44s %8.2f s  %8.1f MB peak\n' "$label" "$secs" "$(echo "$kb / 1024" | bc -l)"
}
for i in 1 2 3; do
    measure "report, 365 days (run $i)" $bin report --repo "$repo" --until 2026-01-02 --out "$out/report.html"
    measure "status --format json (run $i)" $bin status --repo "$repo" --until 2026-01-02 --format json
done
printf 'page: %s KB, %s grid cells\n' "$(( $(stat -c %s "$out/report.html") / 1024 ))" "$(grep -o 'data-health=' "$out/report.html" | wc -l)"
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1600,1000 \
    --screenshot="$PWD/$out/report.png" "file://$PWD/$out/report.html" 2>/dev/null
/usr/bin/time -f "%e %M" -o /tmp/chronon-build-bench-time chromium --headless --no-sandbox --disable-gpu \
    --window-size=1600,1000 --dump-dom "file://$PWD/$out/report.html" >/dev/null 2>&1
read -r secs kb < /tmp/chronon-build-bench-time
printf '%-44s %8.2f s  %8.1f MB peak\n' "chromium load and render of the page" "$secs" "$(echo "$kb / 1024" | bc -l)"
echo "screenshot: $out/report.png"

# The worst case for the page: every source partition rewritten, so every
# partition is stale with a reason of its own and no two days merge.
find "$repo/warehouse/raw.db" -name 'part-*' -exec sh -c 'for f; do printf x >> "$f"; done' sh {} +
measure "report, every cell its own reason" $bin report --repo "$repo" --until 2026-01-02 --out "$out/worst.html"
printf 'page: %s KB, %s grid cells\n' "$(( $(stat -c %s "$out/worst.html") / 1024 ))" "$(grep -o 'data-health=' "$out/worst.html" | wc -l)"
/usr/bin/time -f "%e %M" -o /tmp/chronon-build-bench-time chromium --headless --no-sandbox --disable-gpu \
    --window-size=1600,1000 --screenshot="$PWD/$out/worst.png" "file://$PWD/$out/worst.html" >/dev/null 2>&1
read -r secs kb < /tmp/chronon-build-bench-time
printf '%-44s %8.2f s  %8.1f MB peak\n' "chromium screenshot of that page" "$secs" "$(echo "$kb / 1024" | bc -l)"
