#!/usr/bin/env bash
# callgrind.sh - user-space instructions per connection of EchoServer under connect churn,
# per variant, with valgrind's callgrind: deterministic where CPU time is not (a busy 2-core
# machine moves CPU-time ratios by ±20%; instruction counts move by ~1%).
#
#   swift build -c release && scripts/bench/callgrind.sh
#   VARIANTS="text" KEEP=1 scripts/bench/callgrind.sh     # keep the callgrind.out files
#   callgrind_annotate --inclusive=yes /tmp/echo-callgrind.*/text-1.out | head -60
#
# Each variant runs twice under callgrind: with `loadgen --mode connect --connections 2` for
# DURATION seconds, and idle for the same time; instructions per connection = (loaded − idle) /
# connections served, so start-up, shutdown and timers cancel out. Kernel work (syscalls, the
# tracepoint's own cost) is not counted: that is what `perf record -g` in run.sh (PROFILE=) shows.
# valgrind 3.19 cannot read the DWARF 5 of Swift 6 binaries ("unhandled dwarf2 abbrev form"),
# so the binary runs with its debug sections stripped (symbols stay).
set -u
. "$(dirname "$0")/common.sh"
DURATION=${DURATION:-4}
PORT=${PORT:-19401}
VARIANTS=${VARIANTS:-"off text json nobody-text nobody-json"}
command -v valgrind >/dev/null || apt-get install -y valgrind >/dev/null 2>&1 || { echo "callgrind.sh: valgrind is not installed" >&2; exit 69; }
build_loadgen || exit 1
OUT=$(mktemp -d /tmp/echo-callgrind.XXXXXX)
chmod 777 "$OUT"
objcopy --strip-debug "$PROJECT_BIN" "$OUT/EchoServer" && chmod 755 "$OUT/EchoServer" || exit 1

total() { awk '/^(summary|totals):/ {print $2; exit}' "$1"; }

run() { # variant load(0/1) -> prints "instructions connections"
    local v=$1 load=$2 args="" as="" out="$OUT/$1-$2.out" pid conns=0
    case $v in
    off) args="--trace off" ;;
    text) args="--trace-file $OUT/$v-$load.trace" ;;
    json) args="--trace json --trace-file $OUT/$v-$load.trace" ;;
    nobody-text) as="setpriv --reuid=65534 --regid=65534 --clear-groups"; args="--trace-file $OUT/$v-$load.trace" ;;
    nobody-json) as="setpriv --reuid=65534 --regid=65534 --clear-groups"; args="--trace json --trace-file $OUT/$v-$load.trace" ;;
    esac
    # shellcheck disable=SC2086
    $as valgrind --tool=callgrind --callgrind-out-file="$out" "$OUT/EchoServer" --host 127.0.0.1 --port "$PORT" $args \
        >/dev/null 2>"$OUT/$v-$load.log" &
    pid=$!
    for _ in $(seq 100); do ss -ltn "sport = :$PORT" | grep -q LISTEN && break; sleep 0.1; done
    if [ "$load" = 1 ]; then
        conns=$("$BUILD_DIR/loadgen" --mode connect --connections 2 --duration "$DURATION" --port "$PORT" 2>/dev/null \
            | tail -1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["connects"])')
    else
        sleep "$DURATION"
    fi
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    echo "$(total "$out") ${conns:-0}"
}

printf '%-14s %8s %14s %12s %12s\n' variant conns loaded idle "Ir/conn"
for v in $VARIANTS; do
    read -r loaded conns < <(run "$v" 1)
    read -r idle _ < <(run "$v" 0)
    if [ -z "$loaded" ] || [ -z "$idle" ] || [ "${conns:-0}" -le 0 ]; then
        printf '%-14s %8s (no measurement: see %s)\n' "$v" "${conns:-0}" "$OUT/$v-1.log"
        continue
    fi
    printf '%-14s %8d %14d %12d %12.0f\n' "$v" "$conns" "$loaded" "$idle" "$(echo "($loaded - $idle) / $conns" | bc -l)"
done
[ -n "${KEEP:-}" ] && echo "callgrind files in $OUT" || rm -rf "$OUT"
