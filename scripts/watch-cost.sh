#!/bin/sh
# What watching one quiet port costs while another port churns (issue 21's bench).
#
#   swift build -c release --product TCPWatch
#   scripts/watch-cost.sh [seconds] [extra TCPWatch options...]
#
# Builds the C churn pair from scripts/bench (epoll_echo + loadgen --mode connect) into a
# temporary directory, runs it on one port, and TCPWatch --port on another port held by a
# quiet listener; reports TCPWatch's CPU (utime+stime from /proc/PID/stat over the churn),
# its peak RSS, its polling report, and the churn rate. As root it runs TCPWatch both as
# root and as nobody (setpriv); otherwise as the current user. WATCH_CHURN=1 watches the
# churning port itself (memory bound check, e.g. WATCH_OPTIONS=--wire=on).
set -eu
SECONDS_RUN=${1:-20}
[ $# -gt 0 ] && shift
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=${BENCH:-$ROOT/scripts/bench}
WATCH=${WATCH:-$ROOT/.build/release/TCPWatch}
[ -x "$WATCH" ] || { echo "build first: swift build -c release --product TCPWatch" >&2; exit 1; }
WORK=$(mktemp -d /tmp/watch-cost.XXXXXX)
chmod 755 "$WORK"
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$WORK"' EXIT
cc -O2 -o "$WORK/loadgen" "$BENCH"/loadgen.c "$BENCH"/loadgen_conn.c "$BENCH"/loadgen_idle.c -lpthread
cc -O2 -o "$WORK/epoll_echo" "$BENCH/epoll_echo.c" -lpthread
CHURN_PORT=$((20000 + $$ % 5000)); QUIET_PORT=$((CHURN_PORT + 5000))
TICKS=$(getconf CLK_TCK)

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

run() {   # $1: label, $2...: wrapper
    label=$1; shift
    python3 -c "import socket,time; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', $QUIET_PORT)); s.listen(); time.sleep($SECONDS_RUN + 10)" &
    quiet=$!
    "$WORK/epoll_echo" --port "$CHURN_PORT" >/dev/null 2>&1 &
    server=$!
    sleep 0.3
    watched=$QUIET_PORT; [ -n "${WATCH_CHURN:-}" ] && watched=$CHURN_PORT
    "$@" "$WATCH" --port "$watched" --duration $((SECONDS_RUN + 4)) --trace json "$WATCH_OPTIONS" >"$WORK/$label.jsonl" 2>&1 &
    watch=$!
    sleep 2
    before=$(cpu_ticks $watch)
    "$WORK/loadgen" --port "$CHURN_PORT" --mode connect --connections 8 --size 64 --src-addrs 16 \
        --duration "$SECONDS_RUN" --warmup 0 >"$WORK/$label.load" 2>&1 || true
    after=$(cpu_ticks $watch)
    hwm=$(awk '/VmHWM/ {print $2, $3}' "/proc/$watch/status")
    wait $watch || true
    kill $server $quiet 2>/dev/null || true
    wait $server $quiet 2>/dev/null || true
    rate=$(grep -o '"conn_per_s":[0-9.]*' "$WORK/$label.load" | head -1 | cut -d: -f2)
    timewait=$(ss -tanH state time-wait | wc -l)
    cpu=$(awk -v t=$((after - before)) -v hz="$TICKS" -v s="$SECONDS_RUN" 'BEGIN { printf "%.1f", 100 * t / hz / s }')
    polls=$(grep -o '"cause":"sock_diag: [^"]*' "$WORK/$label.jsonl" | cut -d'"' -f4)
    echo "$label: TCPWatch CPU ${cpu}% of a core over ${SECONDS_RUN} s of churn at ${rate:-?} conn/s (TIME_WAIT on host after: $timewait), peak RSS $hwm"
    echo "    $polls"
}

WATCH_OPTIONS=${WATCH_OPTIONS:---kernel-trace=auto}
if [ "$(id -u)" = 0 ]; then
    run root
    run nobody setpriv --reuid=65534 --regid=65534 --clear-groups
else
    run "$(id -un)"
fi
