#!/usr/bin/env bash
# The local engine benchmark (run by hand, not in CI): group-by-backfill over
# 1,000,000 events, 10,000 keys and 30 days, with SUM, COUNT, AVERAGE and
# LAST_K(10) over 1d, 7d and 30d windows, beside the same aggregation in
# DuckDB (the duckdb Python package, installed here) on the same events.
#
#   bench/engine.sh [EVENTS] [KEYS]
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-1000000}
keys=${2:-10000}
out=bench/out/engine
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
command -v python3 >/dev/null || { apt-get update -qq && apt-get install -y -qq python3 python3-pip >/dev/null; }
python3 -c "import duckdb" 2>/dev/null || python3 -m pip install -q duckdb

cargo build --release --quiet --bin chronon-build
bin=$PWD/target/release/chronon-build
rm -rf "$out" && mkdir -p "$out/repo/production/group_bys/bench"
python3 - "$out" "$events" "$keys" <<'PY'
import json, random, sys
out, n, keys = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(1)
first = 20362  # 2025-10-01
day_ms = 86_400_000
import datetime as dt
with open(f"{out}/events.csv", "w") as f:
    f.write("user_id,price,ts,ds\n")
    for _ in range(n):
        day = first + rng.randrange(30)
        ts = day * day_ms + rng.randrange(day_ms)
        ds = (dt.date(1970, 1, 1) + dt.timedelta(day)).isoformat()
        f.write(f"{rng.randrange(keys)},{rng.randrange(1, 100000) / 100},{ts},{ds}\n")
windows = [{"length": n, "timeUnit": 1} for n in (1, 7, 30)]
gb = {
    "metaData": {"name": "bench.purchases.v1", "team": "bench", "outputNamespace": "bench"},
    "sources": [{"events": {"table": "data.events", "query": {
        "selects": {"user_id": "user_id", "price": "price"}, "timeColumn": "ts"}}}],
    "keyColumns": ["user_id"],
    "aggregations": [
        {"inputColumn": "price", "operation": op, "argMap": args, "windows": windows}
        for op, args in ((7, {}), (6, {}), (8, {}), (13, {"k": "10"}))
    ],
    "backfillStartDate": "2025-10-01",
}
with open(f"{out}/repo/production/group_bys/bench/purchases.v1", "w") as f:
    json.dump(gb, f)
with open(f"{out}/repo/teams.json", "w") as f:
    json.dump({"bench": {"namespace": "bench"}}, f)
PY
printf '[executor]\nstep_days = 30\n' > "$out/repo/chronon-build.toml"

echo "import (not timed against DuckDB):"
/usr/bin/time -f "  %e s, %M KB peak" "$bin" --repo "$out/repo" warehouse import data.events "$out/events.csv" | tail -1

echo "chronon-build compute group-by-backfill (30 days in one job):"
/usr/bin/time -f "  %e s, %M KB peak" "$bin" --repo "$out/repo" compute group-by-backfill bench.purchases.v1 \
    --start-ds 2025-10-01 --end-ds 2025-10-30
"$bin" --repo "$out/repo" warehouse ls bench.bench_purchases_v1 | tail -1

echo "DuckDB, the same features for the same keys and days:"
/usr/bin/time -f "  %e s, %M KB peak" python3 - "$out" <<'PY'
import sys, time, duckdb
out = sys.argv[1]
con = duckdb.connect()
con.execute(f"CREATE TABLE ev AS SELECT * FROM read_csv_auto('{out}/events.csv')")
start = time.time()
day = "86400000::BIGINT"
# Daily tiles per key, then window functions over days: SUM, COUNT and
# AVERAGE from the tiles' sums and counts, LAST_K from each day's last 10.
rows = con.execute(f"""
WITH tiles AS (
    SELECT user_id, (ts // {day})::INTEGER AS d, SUM(price) AS s, COUNT(price) AS c,
           list(price ORDER BY ts DESC)[1:10] AS last
    FROM ev GROUP BY ALL
),
grid AS (
    SELECT k.user_id, g.d FROM (SELECT DISTINCT user_id FROM ev) k, range(20362, 20392) g(d)
),
filled AS (
    SELECT g.user_id, g.d, t.s, t.c, t.last FROM grid g
    LEFT JOIN tiles t ON t.user_id = g.user_id AND t.d = g.d
),
windowed AS (
    SELECT user_id, d,
      {", ".join(
          f"SUM(s) OVER w{w} AS sum_{w}d, SUM(c) OVER w{w} AS count_{w}d, "
          f"SUM(s) OVER w{w} / SUM(c) OVER w{w} AS average_{w}d, "
          f"flatten(list_reverse(list(last) OVER w{w}))[1:10] AS last10_{w}d"
          for w in (1, 7, 30))}
    FROM filled
    WINDOW {", ".join(
        f"w{w} AS (PARTITION BY user_id ORDER BY d RANGE BETWEEN {w - 1} PRECEDING AND CURRENT ROW)"
        for w in (1, 7, 30))}
)
SELECT * FROM windowed WHERE count_30d > 0
""").fetchall()
print(f"  {len(rows)} rows; the query alone: {time.time() - start:.2f} s")
PY
