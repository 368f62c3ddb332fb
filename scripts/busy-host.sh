#!/usr/bin/env bash
# The suite on a busy host (issue 19 item 8), from the repository root:
#   scripts/busy-host.sh [root|nobody|both]    (default: both when root, else the current user)
# While scripts/churn.c keeps ~10,000 unrelated connections/s going on another loopback port
# (CHURN_RATE, CHURN_PORT), runs `swift test` and reports its wall time and the test
# process's peak RSS (VmHWM of the .xctest processes, sampled every second). Pass: the suite
# passes within SUITE_LIMIT seconds (900) with a peak under RSS_LIMIT_KIB (2 GiB).
# The build is done first, outside the measurement (as nobody: in a copy of the tree owned by
# nobody, with its own HOME, as .ci/run's unprivileged pass). FILTER=REGEX: only those tests.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
CHURN_RATE=${CHURN_RATE:-10000}
CHURN_PORT=${CHURN_PORT:-39123}
SUITE_LIMIT=${SUITE_LIMIT:-900}
RSS_LIMIT_KIB=${RSS_LIMIT_KIB:-2097152}
WHO=${1:-$([ "$(id -u)" -eq 0 ] && echo both || echo user)}
WORK=$(mktemp -d /tmp/socketkit-busy.XXXXXX)
chmod 755 "$WORK"
cleanup() {
    [ -n "${CHURN_PID:-}" ] && kill "$CHURN_PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

cc -O2 -pthread -o "$WORK/churn" scripts/churn.c || exit 1

# peak_sampler PIDFILE OUT: the largest VmHWM (KiB) of any .xctest process until PIDFILE goes.
peak_sampler() {
    local alive=$1 out=$2 peak=0
    while [ -e "$alive" ]; do
        for status in /proc/[0-9]*/status; do
            local pid=${status#/proc/}; pid=${pid%/status}
            grep -q '\.xctest' "/proc/$pid/cmdline" 2>/dev/null || continue
            local hwm
            hwm=$(awk '/^VmHWM:/ {print $2}' "$status" 2>/dev/null)
            [ -n "$hwm" ] && [ "$hwm" -gt "$peak" ] && peak=$hwm
        done
        echo "$peak" > "$out"
        sleep 1
    done
}

# measure LABEL DIR COMMAND...: the command (swift test) under churn, bounded, measured.
measure() {
    local label=$1 dir=$2; shift 2
    local log=$WORK/$label.log alive=$WORK/$label.alive peakfile=$WORK/$label.peak
    "$WORK/churn" "$CHURN_PORT" 100000 "$CHURN_RATE" > "$WORK/$label.churn" 2>&1 &
    CHURN_PID=$!
    sleep 2
    touch "$alive"
    peak_sampler "$alive" "$peakfile" &
    local sampler=$! start=$SECONDS status=0
    ( cd "$dir" && exec setsid "$@" ) > "$log" 2>&1 &
    local suite=$!
    while kill -0 "$suite" 2>/dev/null; do
        if (( SECONDS - start > SUITE_LIMIT )); then
            echo "$label: WATCHDOG: swift test still running after $SUITE_LIMIT s: killed" >&2
            kill -TERM -- "-$suite" 2>/dev/null; sleep 5; kill -KILL -- "-$suite" 2>/dev/null
            status=124
            break
        fi
        sleep 2
    done
    [ $status -eq 0 ] && { wait "$suite"; status=$?; }
    local wall=$(( SECONDS - start ))
    rm -f "$alive"; wait "$sampler" 2>/dev/null
    kill -INT "$CHURN_PID" 2>/dev/null; kill "$CHURN_PID" 2>/dev/null; wait "$CHURN_PID" 2>/dev/null; CHURN_PID=
    local peak; peak=$(cat "$peakfile" 2>/dev/null || echo 0)
    local rate; rate=$(grep -o '[0-9]* connections/s over' "$WORK/$label.churn" | awk '{s+=$1; n++} END {if (n) printf "%d", s/n; else print "?"}')
    local verdict=PASS
    [ $status -eq 0 ] || verdict=FAIL
    [ "$peak" -lt "$RSS_LIMIT_KIB" ] || verdict=FAIL
    echo "$label: $verdict: swift test exit $status in ${wall} s (limit $SUITE_LIMIT), peak RSS $((peak / 1024)) MiB" \
         "(limit $((RSS_LIMIT_KIB / 1024))), churn ~${rate} connections/s on 127.0.0.1:$CHURN_PORT;" \
         "$(grep -E 'Test run with|Executed [0-9]+ test' "$log" | tail -2 | tr '\n' ' ')"
    if [ "$verdict" = FAIL ]; then
        cp "$log" "/tmp/busy-host-$label.log"
        grep -E '✘|error:|HUNG' "$log" | head -20 >&2
        echo "(log: /tmp/busy-host-$label.log)" >&2
        return 1
    fi
}

overall=0
if [ "$WHO" = root ] || [ "$WHO" = both ] || [ "$WHO" = user ]; then
    swift build --build-tests > "$WORK/build.log" 2>&1 || { tail -20 "$WORK/build.log"; exit 1; }
    measure "$(id -un)" "$ROOT" swift test --skip-build ${FILTER:+--filter "$FILTER"} || overall=1
fi
if [ "$WHO" = nobody ] || [ "$WHO" = both ]; then
    tree=$WORK/nobody-tree
    mkdir -p "$tree/.home"
    tar --exclude=./.build --exclude='./.build-*' --exclude=./.git -cf - . | tar -xf - -C "$tree"
    chown -R 65534:65534 "$tree"
    as_nobody=(setpriv --reuid=65534 --regid=65534 --clear-groups env HOME="$tree/.home" XDG_CACHE_HOME="$tree/.home/.cache" PATH="$PATH")
    ( cd "$tree" && "${as_nobody[@]}" swift build --build-tests ) > "$WORK/build-nobody.log" 2>&1 \
        || { tail -20 "$WORK/build-nobody.log"; exit 1; }
    measure nobody "$tree" "${as_nobody[@]}" swift test --skip-build ${FILTER:+--filter "$FILTER"} || overall=1
fi
exit $overall
