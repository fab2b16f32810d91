#!/usr/bin/env bash
# The state benchmark (run by hand, not in CI): adopt, a warm plan and a
# no-op run of a fully built repository with the state in SQLite and in
# PostgreSQL, side by side in one run, then `state copy` both ways. PostgreSQL is a server this script
# starts (Debian's postgresql; initdb into a temporary folder, 127.0.0.1
# only, default durability settings, as nobody when run as root) and stops.
#
#   bench/state.sh          # 2,740 group-bys x 365 days (about 1,000,000 targets)
#   bench/state.sh 200      # 73,000 targets
#   PROFILE=debug bench/state.sh 200   # without a release build (slower; compare
#                                      # the backends only)
#   COPY_ONLY=1 bench/state.sh         # adopt into SQLite, then only the copies
#   BEFORE=/path/chronon-build bench/state.sh   # the copies by another build too
set -euo pipefail
cd "$(dirname "$0")/.."
group_bys=${1:-2740}
target=${CARGO_TARGET_DIR:-target}
profile=${PROFILE:-release}
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y -qq postgresql >/dev/null; }
if [ "$profile" = release ]; then flags=(--release); else flags=(); fi
cargo build "${flags[@]}" --quiet --bin chronon-build --example gen_repo --example gen_run
bin=$target/$profile/chronon-build
out=bench/out/state_gb$group_bys
if [ ! -f "$out/repo/chronon-build.toml" ]; then
    "$target/$profile/examples/gen_repo" --group-bys "$group_bys" --days 365 --window 30 --no-ninja --out "$out" >/dev/null
    "$target/$profile/examples/gen_run" --repo "$out/repo" --sqlite sqlwh >/dev/null 2>&1
fi
printf '[executor]\nkind = "zipline"\n[warehouse]\nkind = "sqlite"\nroot = "sqlwh"\n' > "$out/repo/chronon-build.toml"

# The server.
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
pgdir=$(mktemp -d /tmp/chronon-build-bench-pg.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
as=()
if [ "$(id -u)" = 0 ]; then
    chown nobody "$pgdir"
    as=(setpriv --reuid=nobody --regid=nogroup --clear-groups --)
fi
"${as[@]}" "$pgbin/initdb" -D "$pgdir/data" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
"${as[@]}" "$pgbin/postgres" -D "$pgdir/data" -k "$pgdir" -h 127.0.0.1 -p "$port" >"$pgdir/log" 2>&1 &
pgpid=$!
trap 'kill -INT $pgpid 2>/dev/null; wait $pgpid 2>/dev/null; rm -rf "$pgdir"' EXIT
until "$pgbin/pg_isready" -q -h 127.0.0.1 -p "$port"; do sleep 0.2; done
"$pgbin/createdb" -h 127.0.0.1 -p "$port" -U postgres chronon
url="postgresql://postgres@127.0.0.1:$port/chronon?sslmode=disable"

measure() { # label, then the command
    local label=$1; shift
    /usr/bin/time -f "%e %M" -o "$out/time.txt" "$@" >/dev/null 2>&1
    read -r secs kb < "$out/time.txt"
    printf '%-40s %8.2f s  %8.1f MB peak\n' "$label" "$secs" "$(echo "$kb / 1024" | bc -l)"
}

rm -f "$out/state.db"*
backends=(sqlite postgresql)
[ -n "${COPY_ONLY:-}" ] && backends=(sqlite)
for backend in "${backends[@]}"; do
    if [ "$backend" = sqlite ]; then state=(--state "$PWD/$out/state.db"); else state=(--state-url "$url"); fi
    measure "adopt ($backend)" "$bin" adopt --repo "$out/repo" "${state[@]}" --until 2025-12-31
    [ -n "${COPY_ONLY:-}" ] && continue
    # The first run after adopting plans every target and records memos.
    "$bin" run --repo "$out/repo" "${state[@]}" --until 2025-12-31 --progress quiet >/dev/null 2>&1
done
for i in 1 2 3; do
    [ -n "${COPY_ONLY:-}" ] && break
    for backend in sqlite postgresql; do
        if [ "$backend" = sqlite ]; then state=(--state "$PWD/$out/state.db"); else state=(--state-url "$url"); fi
        measure "warm plan ($backend, run $i)" "$bin" plan --repo "$out/repo" "${state[@]}" --until 2025-12-31 --format json
        measure "warm no-op run ($backend, run $i)" "$bin" run --repo "$out/repo" "${state[@]}" --until 2025-12-31 --progress quiet
    done
done
# `state copy` both ways (each verified by its per-table digests), by this
# build and by BEFORE's if given.
builds=(this)
[ -n "${BEFORE:-}" ] && builds=(before this)
for build in "${builds[@]}"; do
    if [ "$build" = before ]; then copier=$BEFORE; else copier=$bin; fi
    db=copy_$build
    "$pgbin/createdb" -h 127.0.0.1 -p "$port" -U postgres "$db"
    copy_url="postgresql://postgres@127.0.0.1:$port/$db?sslmode=disable"
    measure "state copy (sqlite -> postgresql, $build)" "$copier" state copy "$PWD/$out/state.db" "$copy_url"
    rm -f "$out/copy.db"*
    measure "state copy (postgresql -> sqlite, $build)" "$copier" state copy "$copy_url" "$PWD/$out/copy.db"
done
echo "targets: $("$bin" state info --state "$PWD/$out/state.db" --format json | python3 -c 'import json,sys; print(json.load(sys.stdin)["targets"])')"
