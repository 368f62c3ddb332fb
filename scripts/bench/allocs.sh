#!/usr/bin/env bash
# allocs.sh - heap allocations per connection of EchoServer under connect churn, per variant.
#
#   swift build -c release && scripts/bench/allocs.sh
#
# Each variant runs twice under LD_PRELOAD=malloccount.so (counts malloc/calloc/realloc/
# memalign..., written at exit), pinned to CPU 0: once taking `loadgen --mode connect
# --connections 8` for DURATION seconds from CPU 1, once sitting idle for the same time.
# Allocations per connection = (loaded count − idle count) / connections served, so start-up,
# shutdown and idle timers cancel out.
set -u
. "$(dirname "$0")/common.sh"
DURATION=${DURATION:-2}
PORT=${PORT:-19301}
VARIANTS=${VARIANTS:-"off text json nobody-text nobody-json"}
build_loadgen || exit 1
cc -O2 -Wall -shared -fPIC -o "$BUILD_DIR/malloccount.so" "$HERE/malloccount.c" || exit 1
install -m 755 "$PROJECT_BIN" "$BUILD_DIR/EchoServer-allocs"
chmod 755 "$BUILD_DIR" "$BUILD_DIR/malloccount.so"
COUNTS=$(mktemp -d /tmp/echo-allocs.XXXXXX)
chmod 777 "$COUNTS"

run() { # variant load(0/1) -> prints "allocations connections"
    local v=$1 load=$2 args="" as="" file="$COUNTS/$1-$2" pid conns=0
    case $v in
    off) args="--trace off" ;;
    text) ;;
    json) args="--trace json" ;;
    nobody-text) as="setpriv --reuid=65534 --regid=65534 --clear-groups" ;;
    nobody-json) as="setpriv --reuid=65534 --regid=65534 --clear-groups"; args="--trace json" ;;
    esac
    : >"$file"; chmod 666 "$file"
    # shellcheck disable=SC2086
    MALLOCCOUNT_FILE=$file LD_PRELOAD=$BUILD_DIR/malloccount.so taskset -c 0 $as "$BUILD_DIR/EchoServer-allocs" \
        --host 127.0.0.1 --port "$PORT" $args >/dev/null 2>"$file.trace" &
    pid=$!
    for _ in $(seq 1 100); do ss -Hltn "sport = :$PORT" | grep -q LISTEN && break; sleep 0.05; done
    if [ "$load" = 1 ]; then
        taskset -c 1 "$BUILD_DIR/loadgen" --port "$PORT" --mode connect --connections 8 --size 64 --src-addrs 16 \
            --duration "$DURATION" --warmup 0 >"$file.lg" 2>&1
        conns=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])["connects"])' "$file.lg")
    else
        sleep "$DURATION"
    fi
    sleep 0.5
    kill -TERM "$pid"; wait "$pid" 2>/dev/null
    PORT=$((PORT + 1))
    echo "$(cut -d' ' -f1 "$file") $conns"
}

printf '%-12s %8s %12s %12s %12s\n' variant conns "loaded" "idle" "allocs/conn"
for v in $VARIANTS; do
    read -r loaded conns < <(run "$v" 1)
    read -r idle _ < <(run "$v" 0)
    awk -v v="$v" -v n="$conns" -v a="$loaded" -v i="$idle" \
        'BEGIN { printf "%-12s %8d %12d %12d %12.1f\n", v, n, a, i, (n ? (a - i) / n : 0) }'
done
rm -rf "$COUNTS"
