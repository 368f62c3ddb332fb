#!/usr/bin/env bash
# ThreadSanitizer runs (issue 19 item 2), from the repository root:
#   scripts/tsan.sh            the 2-loop server under connect churn, then ping-pong, then SIGTERM;
#                              as root (tracepoint on) and as nobody (setpriv), report counts
#   scripts/tsan.sh --suite    also `swift test --sanitize=thread`: as the current user, and as
#                              nobody too when root (in a copy of the tree owned by nobody)
# Builds into .build-tsan (not .build: sanitized objects are not interchangeable). No
# suppressions: TSAN_OPTIONS names none. Exit 0 only when every run had 0 reports.
# Environment: CHURN_SECONDS (8), PINGPONG_SECONDS (4), CONNECTIONS (8).
set -euo pipefail
cd "$(dirname "$0")/.."
SCRATCH=.build-tsan
CHURN_SECONDS=${CHURN_SECONDS:-8}
PINGPONG_SECONDS=${PINGPONG_SECONDS:-4}
CONNECTIONS=${CONNECTIONS:-8}
SUITE=0
[ "${1:-}" = "--suite" ] && SUITE=1

# TSan cannot see a contended Synchronization.Mutex hand-over: the package locks through
# `Mutex.locked` (Sources/TCPTrace/Support/Mutex+Sanitizer.swift), never `withLock`.
if grep -rn '\.withLock\b' Sources Tests | grep -v 'Mutex+Sanitizer.swift'; then
    echo "use Mutex.locked, not withLock (TSan cannot see the latter's contended hand-over)" >&2
    exit 1
fi
swift build --sanitize=thread --scratch-path "$SCRATCH" --product EchoServer >&2
swift build --sanitize=thread --scratch-path "$SCRATCH" --product EchoClient >&2
BIN=$(swift build --sanitize=thread --scratch-path "$SCRATCH" --show-bin-path)

# nobody cannot read a worktree under /root: run copies from a 0755 temp dir.
WORK=$(mktemp -d /tmp/socketkit-tsan.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
cp "$BIN/EchoServer" "$BIN/EchoClient" "$WORK/"
chmod 755 "$WORK" "$WORK/EchoServer" "$WORK/EchoClient"

reports() { cat "$@" 2>/dev/null | grep -c '^WARNING: ThreadSanitizer' || true; }

# run_server LABEL [setpriv...]: server with 2 loops, churn, ping-pong, SIGTERM; prints counts.
run_server() {
    local label=$1; shift
    local dir=$WORK/$label
    mkdir -p "$dir"; chmod 777 "$dir"
    local env=(env "TSAN_OPTIONS=halt_on_error=0 history_size=4 log_path=$dir/tsan")
    "$@" "${env[@]}" "$WORK/EchoServer" --port 0 --threads 2 --trace text --no-color \
        --trace-file "$dir/trace.txt" 2> "$dir/server.err" &
    local server=$!
    local port="" waited=0
    while [ -z "$port" ] && [ $waited -lt 300 ]; do
        port=$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$dir/server.err" 2>/dev/null | head -1)
        [ -n "$port" ] || { sleep 0.1; waited=$((waited + 1)); }
    done
    if [ -z "$port" ]; then
        echo "$label: the server did not listen within 30 s" >&2; kill -KILL "$server"; return 1
    fi
    local status=0
    "$@" "${env[@]}" timeout $((CHURN_SECONDS + 60)) "$WORK/EchoClient" --load --mode connect \
        --connections "$CONNECTIONS" --duration "$CHURN_SECONDS" --port "$port" --trace off \
        > "$dir/churn.txt" 2>&1 || status=$?
    "$@" "${env[@]}" timeout $((PINGPONG_SECONDS + 60)) "$WORK/EchoClient" --load --mode pingpong \
        --connections "$CONNECTIONS" --duration "$PINGPONG_SECONDS" --port "$port" --trace off \
        > "$dir/pingpong.txt" 2>&1 || status=$?
    kill -TERM "$server"
    local waited=0
    while kill -0 "$server" 2>/dev/null && [ $waited -lt 300 ]; do sleep 0.1; waited=$((waited + 1)); done
    if kill -0 "$server" 2>/dev/null; then
        echo "$label: the server did not exit within 30 s of SIGTERM: killed" >&2
        kill -KILL "$server"; status=1
    fi
    wait "$server" || status=$?
    local server_reports client_reports
    server_reports=$(reports "$dir"/tsan."$server")
    client_reports=$(( $(reports "$dir"/tsan.*) - server_reports ))
    echo "$label: server $server_reports TSan reports, load generator $client_reports;" \
         "churn: $(grep -m1 -i 'connections/s\|conn/s' "$dir/churn.txt" | tr -s ' ' || echo '?');" \
         "server: $(tail -1 "$dir/server.err")"
    if [ "$server_reports" -gt 0 ]; then
        grep -h -A12 '^WARNING: ThreadSanitizer' "$dir"/tsan."$server" | grep -E '^WARNING|#0 |#1 |#2 ' \
            | sed 's/ (.*//' | sort | uniq -c | sort -rn | head -30 >&2
        cp "$dir"/tsan."$server" "/tmp/tsan-server-$label.log"
        echo "(full report: /tmp/tsan-server-$label.log)" >&2
    fi
    if [ "$client_reports" -gt 0 ]; then
        for f in "$dir"/tsan.*; do [ "$f" = "$dir/tsan.$server" ] || cat "$f"; done > "/tmp/tsan-client-$label.log"
        echo "(load generator reports: /tmp/tsan-client-$label.log)" >&2
    fi
    [ "$status" -eq 0 ] && [ "$server_reports" -eq 0 ] && [ "$client_reports" -eq 0 ]
}

overall=0
if [ "$(id -u)" -eq 0 ]; then
    run_server root || overall=1
    run_server nobody setpriv --reuid=65534 --regid=65534 --clear-groups || overall=1
else
    run_server "$(id -un)" || overall=1
fi

# suite LABEL DIR [setpriv...]: swift test --sanitize=thread in DIR; prints the report count.
# log_path: the test process and every program it spawns (EchoServer, EchoClient, TCPWatch
# inherit TSAN_OPTIONS) write their reports to files of their own, all counted.
suite() {
    local label=$1 dir=$2; shift 2
    local log=$WORK/suite-$label.log reportDir=$WORK/suite-$label-tsan
    mkdir -p "$reportDir"; chmod 777 "$reportDir"
    ( cd "$dir" && "$@" env TSAN_OPTIONS="halt_on_error=0 history_size=4 log_path=$reportDir/tsan" \
        swift test --sanitize=thread --scratch-path "$SCRATCH" ) > "$log" 2>&1 || overall=1
    local count
    count=$(reports "$log" "$reportDir"/tsan.*)
    echo "suite ($label): $count TSan reports; $(grep -E 'Test run with|Executed .* tests' "$log" | tail -2 | tr '\n' ' ')"
    cp "$log" "/tmp/tsan-suite-$label.log"
    if [ "$count" -gt 0 ]; then
        cat "$reportDir"/tsan.* > "/tmp/tsan-suite-$label-reports.log" 2>/dev/null || true
        echo "(reports: /tmp/tsan-suite-$label-reports.log)" >&2
        overall=1
    fi
}

if [ $SUITE -eq 1 ]; then
    suite "$(id -un)" "$PWD"
    if [ "$(id -u)" -eq 0 ]; then
        # As nobody: a copy of the tree owned by nobody with its own HOME (as .ci/run does).
        tree=$WORK/nobody-tree
        mkdir -p "$tree/.home"
        tar --exclude=./.build --exclude='./.build-*' --exclude=./.git -cf - . | tar -xf - -C "$tree"
        chown -R 65534:65534 "$tree"
        suite nobody "$tree" setpriv --reuid=65534 --regid=65534 --clear-groups \
            env HOME="$tree/.home" XDG_CACHE_HOME="$tree/.home/.cache" PATH="$PATH"
    fi
fi
exit $overall
