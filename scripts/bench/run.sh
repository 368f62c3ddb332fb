#!/usr/bin/env bash
# run.sh - build the reference echo servers + load generator, benchmark them side by side with
# the project's EchoServer on loopback, print a comparison (ratios to the C epoll reference).
# Everything it needs is in this directory: loadgen*.c (the load generator, verifies every
# echoed byte), epoll_echo.c (the C reference), nio-echo/ (swift-nio's echo server, a separate
# package: swift-nio is never a dependency of SocketKit), report.py, procstat.py,
# halfclose_check.py, writecost.py (what a byte written to a new file costs here, at the start and
# the end of the run: a traced row pays it for every trace byte; report.py prints both, and the
# trace bytes per operation of each server).
#
#   scripts/bench/run.sh                                  # builds EchoServer (release), runs the matrix
#   SERVER_CPUS=0 ROUNDS=2 scripts/bench/run.sh           # the docs/PERFORMANCE.md run: servers on CPU 0, load on the rest
#   SERVERS="epoll project" SCENARIOS="connect8 pp100" scripts/bench/run.sh
#   PROFILE=connect8 scripts/bench/run.sh                 # also `perf record -g` each EchoServer variant in that scenario
#
# The project's server is started as:  $PROJECT_BIN --host 127.0.0.1 --port PORT $PROJECT_ARGS
#   PROJECT_BIN  default: .build/release/EchoServer of this repository (built unless SKIP_BUILD=1)
#   PROJECT_ARGS default: empty (so tracing is whatever the server does by default: text trace,
#                here into the server's log file); "project-notrace" adds PROJECT_NOTRACE_ARGS
#                (default: --trace off); "project-json" traces as JSON Lines; "project-nobody" and
#                "project-nobody-json" run traced as an unprivileged user (no tracepoint: tcp_info,
#                sock_diag, inference), from a copy of the binary nobody can read
# Builds and results go to /tmp/echo-bench (BUILD_DIR, OUTDIR), never into shared/.
#
# Environment knobs:
#   DURATION=3 WARMUP=0.5 ROUNDS=1 IDLE=1000 SERVERS="epoll nio nio1 socat"
#   SCENARIOS="pp1 pp100 stream4 connect8 c10k pp1cpu0"  OUTDIR=results/<timestamp>
#   SKIP_BUILD=1 (use existing binaries)   BASE_PORT=19001   KEEP_RESULTS=5 (older runs under
#             /tmp/echo-bench/results are deleted: their server logs are the traces, ~1 GB a run)
#   SERVER_CPUS=0 (start every server under `taskset -c 0` and run the load generator on the
#             other CPUs, CLIENT_CPUS to override): servers and load never share a core, the way
#             a server and its clients run in production; a server that sizes its threads by the
#             CPUs it may use (sched_getaffinity / cgroup quota) sees 1 here, not nproc.
#
# Servers (each on its own 127.0.0.1 port, all started up front, stopped by PID at the end):
#   epoll   epoll_echo.c, single thread
#   nio     swift-nio NIOEchoServer equivalent, System.coreCount event loops
#   nio1    the same with 1 event loop
#   socat   socat -b4096 TCP-LISTEN:...,fork PIPE (process per connection; see below)
#   optional, not in the default set:
#   socat8k   the same with socat's default 8 KiB buffer: wedges under stream load (the
#             process blocks writing 8 KiB into its own full pipe, nobody drains it)
#   socatcat  socat TCP-LISTEN:...,fork EXEC:cat (fork + exec of cat per connection)
#   niohc     nio + allowRemoteHalfClosure and close-after-flush on the peer's FIN (fixes the
#             example's loss of queued echo data when a client half-closes under backpressure)
# Scenarios run in scenario-major order (all servers back to back per scenario),
# so slow drift of the shared machine hits every server alike.
set -u
. "$(dirname "$0")/common.sh"
cd "$HERE"
PROJECT_ARGS=${PROJECT_ARGS:-}
PROJECT_NOTRACE_ARGS=${PROJECT_NOTRACE_ARGS:---trace off}
mkdir -p "$BUILD_DIR"

DURATION=${DURATION:-3}
WARMUP=${WARMUP:-0.5}
ROUNDS=${ROUNDS:-1}
IDLE=${IDLE:-1000}
SERVERS=${SERVERS:-"epoll project project-json project-notrace project-nobody project-nobody-json nio"}
SCENARIOS=${SCENARIOS:-"pp100 stream4 connect8 c10k"}
PROFILE=${PROFILE:-}
BASE_PORT=${BASE_PORT:-19001}
OUTDIR=${OUTDIR:-/tmp/echo-bench/results/$(date +%Y%m%d-%H%M%S)}
NCPU=$(nproc --all)
SERVER_CPUS=${SERVER_CPUS:-}
if [ -n "$SERVER_CPUS" ] && [ -z "${CLIENT_CPUS:-}" ]; then
    CLIENT_CPUS=$(cpus_other_than "$SERVER_CPUS" "$NCPU")
fi
CLIENT_CPUS=${CLIENT_CPUS:-}
SERVER_PIN=${SERVER_CPUS:+taskset -c $SERVER_CPUS}
export PATH=/opt/swift/usr/bin:$PATH

mkdir -p "$OUTDIR"
# The servers' logs hold their traces: ~1 GB of JSON a connect8 round. Left to pile up they had
# filled 46 GB of the disk, and the trace file's writeback then slowed every traced row. Keep the
# KEEP_RESULTS newest runs of the default location (an OUTDIR of your own is never pruned).
case $OUTDIR in
/tmp/echo-bench/results/*)
    # shellcheck disable=SC2012
    ls -1dt /tmp/echo-bench/results/*/ 2>/dev/null | tail -n +$((${KEEP_RESULTS:-5} + 1)) | xargs -r rm -rf ;;
esac
RES="$OUTDIR/results.jsonl"
: >"$RES"
T_START=$EPOCHREALTIME
elapsed() { awk -v a="$T_START" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
log() { printf '[run.sh %6ss] %s\n' "$(elapsed)" "$*" >&2; }

# C10K needs descriptors: loadgen holds IDLE+connections sockets, the server as many again.
# (raising the hard limit needs CAP_SYS_RESOURCE; otherwise the soft limit goes up to the hard one)
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -ge $((IDLE + 200)) ] || { echo "ulimit -n $(ulimit -n) too low for IDLE=$IDLE" >&2; exit 1; }
log "ulimit -n = $(ulimit -n), cpus = $NCPU, outdir = $OUTDIR"

# ---------------------------------------------------------------- build
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    log "building loadgen, epoll_echo"
    build_loadgen || exit 1
    cc -O2 -Wall -o "$BUILD_DIR/epoll_echo" epoll_echo.c || exit 1
    case " $SERVERS " in *" project"*)
        log "building EchoServer (swift build -c release in $ROOT)"
        (cd "$ROOT" && swift build -c release --product EchoServer >"$OUTDIR/project-build.log" 2>&1) || { tail -20 "$OUTDIR/project-build.log"; exit 1; }
        ;;
    esac
    case " $SERVERS " in *" nio"*)
        # swift-nio comes from GitHub: without network (and no earlier checkout in BUILD_DIR)
        # this fails, and the run goes on without nio, saying so.
        log "building nio-echo (swift build -c release; first build takes ~2 min)"
        if ! (cd nio-echo && swift build -c release --scratch-path "$BUILD_DIR/nio" >"$OUTDIR/nio-build.log" 2>&1); then
            log "nio-echo did not build (offline? see $OUTDIR/nio-build.log): skipping swift-nio"
            SERVERS=$(echo " $SERVERS " | sed 's/ nio[a-z0-9]* / /g')
        fi
        ;;
    esac
fi
NIO_BIN="$BUILD_DIR/nio/release/NIOEchoBench"
if case " $SERVERS " in *" nio"*) true ;; *) false ;; esac && [ ! -x "$NIO_BIN" ]; then
    log "no swift-nio binary at $NIO_BIN: skipping swift-nio"
    SERVERS=$(echo " $SERVERS " | sed 's/ nio[a-z0-9]* / /g')
fi
# The unprivileged variants run a copy nobody can read and execute (the tree may be private).
NOBODY_BIN="$BUILD_DIR/EchoServer-nobody"
case " $SERVERS " in *" project-nobody"*)
    install -m 755 "$PROJECT_BIN" "$NOBODY_BIN" || exit 1
    ;;
esac
AS_NOBODY="setpriv --reuid=65534 --regid=65534 --clear-groups"
# The profiler: linux-perf, installed when missing (Debian's package of `perf`).
if [ -n "$PROFILE" ] && ! command -v perf >/dev/null; then
    log "perf missing: apt-get install -y linux-perf"
    { apt-get install -y linux-perf || { apt-get update && apt-get install -y linux-perf; }; } >"$OUTDIR/apt-perf.log" 2>&1 || true
    command -v perf >/dev/null || { log "perf unavailable, PROFILE ignored"; PROFILE=""; }
fi
if case " $SERVERS " in *" socat"*) true ;; *) false ;; esac && ! command -v socat >/dev/null; then
    log "socat missing: trying apt-get install -y socat"
    { apt-get install -y socat || { apt-get update && apt-get install -y socat; }; } >"$OUTDIR/apt.log" 2>&1 || true
    command -v socat >/dev/null || { log "socat unavailable, skipping it"; SERVERS=$(echo " $SERVERS " | sed 's/ socat[a-z0-9]* / /g'); }
fi

# ---------------------------------------------------------------- servers
declare -A PID PORT CMD
port_listening() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q LISTEN; }

start_server() { # name port cmd...
    local name=$1 port=$2
    shift 2
    if port_listening "$port"; then
        log "port $port already in use, not starting $name"
        return 1
    fi
    # shellcheck disable=SC2086
    $SERVER_PIN "$@" >"$OUTDIR/server-$name.log" 2>&1 &
    local pid=$!
    local i
    for i in $(seq 1 100); do
        port_listening "$port" && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    if ! port_listening "$port"; then
        log "$name failed to start (see $OUTDIR/server-$name.log)"
        kill -TERM "$pid" 2>/dev/null
        return 1
    fi
    PID[$name]=$pid
    PORT[$name]=$port
    CMD[$name]="$*"
    log "started $name pid=$pid port=$port: $*"
}

descendants() { # PIDs below $1 (forked per-connection children of socat)
    local c
    for c in $(cat /proc/"$1"/task/*/children 2>/dev/null); do
        echo "$c"
        descendants "$c"
    done
}

stop_servers() {
    local name pid i kids k
    for name in "${!PID[@]}"; do
        pid=${PID[$name]}
        kids=$(descendants "$pid")
        kill -TERM "$pid" 2>/dev/null || continue
        for k in $kids; do kill -TERM "$k" 2>/dev/null; done
        for i in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
        if kill -0 "$pid" 2>/dev/null; then
            log "$name (pid $pid) ignored SIGTERM, sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null
        fi
        wait "$pid" 2>/dev/null
        unset "PID[$name]"
    done
}
trap 'stop_servers; rm -f "$OUTDIR"/writecost-*.tmp' EXIT
trap 'exit 130' INT TERM

port=$BASE_PORT
ACTIVE=""
for s in $SERVERS; do
    case $s in
    epoll) start_server epoll $port "$BUILD_DIR/epoll_echo" --port $port ;;
    # shellcheck disable=SC2086
    project) start_server project $port "$PROJECT_BIN" --host 127.0.0.1 --port $port $PROJECT_ARGS ;;
    # shellcheck disable=SC2086
    project-notrace) start_server project-notrace $port "$PROJECT_BIN" --host 127.0.0.1 --port $port $PROJECT_ARGS $PROJECT_NOTRACE_ARGS ;;
    # shellcheck disable=SC2086
    project-json) start_server project-json $port "$PROJECT_BIN" --host 127.0.0.1 --port $port $PROJECT_ARGS --trace json ;;
    # the traced server as an unprivileged user (no tracepoint: tcp_info, sock_diag, inference)
    # shellcheck disable=SC2086
    project-nobody) start_server project-nobody $port $AS_NOBODY "$NOBODY_BIN" --host 127.0.0.1 --port $port $PROJECT_ARGS ;;
    # shellcheck disable=SC2086
    project-nobody-json) start_server project-nobody-json $port $AS_NOBODY "$NOBODY_BIN" --host 127.0.0.1 --port $port $PROJECT_ARGS --trace json ;;
    nio) start_server nio $port "$NIO_BIN" --port $port ;; # threads = System.coreCount
    nio1) start_server nio1 $port "$NIO_BIN" --port $port --threads 1 ;;
    niohc) start_server niohc $port "$NIO_BIN" --port $port --half-closure ;; # not the example: see nio-echo main.swift
    socat) start_server socat $port socat -b4096 TCP-LISTEN:$port,bind=127.0.0.1,fork,reuseaddr,backlog=4096 PIPE ;;
    socat8k) start_server socat8k $port socat TCP-LISTEN:$port,bind=127.0.0.1,fork,reuseaddr,backlog=4096 PIPE ;;
    socatcat) start_server socatcat $port socat TCP-LISTEN:$port,bind=127.0.0.1,fork,reuseaddr,backlog=4096 EXEC:cat ;;
    *) log "unknown server $s"; false ;;
    esac && ACTIVE="$ACTIVE $s"
    port=$((port + 1))
done
[ -n "$ACTIVE" ] || { log "no server started"; exit 1; }

# What a byte written to a new file costs here now (writecost.py): the traced servers pay it for
# every trace byte, and on this kind of VM it moves between ~0.2 and ~3 ns a byte from one run to
# the next. Measured again after the rounds; the probe files stay until the run ends.
WRITECOST_START=$(python3 writecost.py "$OUTDIR/writecost-start.tmp" 2>/dev/null || echo '{}')
log "write cost at start: $WRITECOST_START"
python3 -c 'import json,sys; print(json.dumps({"type":"meta","duration_s":float(sys.argv[1]),"warmup_s":float(sys.argv[2]),"rounds":int(sys.argv[3]),"idle":int(sys.argv[4]),"cpus":int(sys.argv[5]),"writecost_start":json.loads(sys.argv[6])}))' \
    "$DURATION" "$WARMUP" "$ROUNDS" "$IDLE" "$NCPU" "$WRITECOST_START" >>"$RES"

# correctness first: 4 MiB echo + half-close, a tiny message + FIN, 16 MiB + FIN while backpressured
for s in $ACTIVE; do
    hc=$(python3 halfclose_check.py "${PORT[$s]}" 4194304 2>&1 | tail -1)
    rss=$(python3 procstat.py rss "${PID[$s]}")
    python3 -c 'import json,sys; hc=sys.argv[5]
try: hc=json.loads(hc)
except Exception: hc={"ok":False,"raw":hc}
print(json.dumps({"type":"server","server":sys.argv[1],"pid":int(sys.argv[2]),"port":int(sys.argv[3]),"cmd":sys.argv[4],"halfclose":hc,"rss_start_kb":json.loads(sys.argv[6])["rss_kb"]}))' \
        "$s" "${PID[$s]}" "${PORT[$s]}" "${CMD[$s]}" "$hc" "$rss" >>"$RES"
    log "half-close check $s: $(python3 -c 'import json,sys
try: print("ok" if json.loads(sys.argv[1])["ok"] else "FAILED " + sys.argv[1])
except Exception: print("FAILED " + sys.argv[1])' "$hc")"
done

scenario_args() {
    case $1 in
    pp1) echo "--mode pingpong --connections 1 --size 64" ;;
    pp100) echo "--mode pingpong --connections 100 --size 64" ;;
    stream4) echo "--mode stream --connections 4 --size 65536" ;;
    connect8) echo "--mode connect --connections 8 --size 64 --src-addrs 16" ;;
    c10k) echo "--mode pingpong --connections 10 --size 64 --idle $IDLE" ;;
    pp1cpu0) echo "--mode pingpong --connections 1 --size 64" ;; # server + loadgen pinned to CPU 0
    *) return 1 ;;
    esac
}

FAILS=0
for round in $(seq 1 "$ROUNDS"); do
    for sc in $SCENARIOS; do
        args=$(scenario_args "$sc") || { log "unknown scenario $sc"; continue; }
        for s in $ACTIVE; do
            pid=${PID[$s]}
            if ! kill -0 "$pid" 2>/dev/null; then
                log "$s is not running any more, skipping"
                continue
            fi
            pin=${CLIENT_CPUS:+taskset -c $CLIENT_CPUS}
            if [ "$sc" = pp1cpu0 ]; then
                taskset -a -p -c 0 "$pid" >/dev/null
                pin="taskset -c 0"
            fi
            out="$OUTDIR/r$round-$sc-$s"
            python3 procstat.py watch "$pid" >"$out.srv.json" &
            wpid=$!
            ppid=""
            if [ "$sc" = "$PROFILE" ] && [ "$round" = 1 ] && case $s in project*) true ;; *) false ;; esac; then
                perf record -g -F 999 -p "$pid" -o "$out.perf.data" -- sleep "$(awk -v a="$DURATION" -v b="$WARMUP" 'BEGIN { print a + b }')" >"$out.perf.log" 2>&1 &
                ppid=$!
            fi
            sleep 0.1
            # the server's log is its trace (text or JSON): bytes written during this run
            trace0=$(stat -c %s "$OUTDIR/server-$s.log" 2>/dev/null || echo 0)
            # shellcheck disable=SC2086
            $pin "$BUILD_DIR/loadgen" --port "${PORT[$s]}" $args --duration "$DURATION" --warmup "$WARMUP" --label "$s/$sc" >"$out.txt" 2>"$out.err"
            rc=$?
            kill -TERM "$wpid" 2>/dev/null
            wait "$wpid" 2>/dev/null
            trace1=$(stat -c %s "$OUTDIR/server-$s.log" 2>/dev/null || echo 0)
            if [ -n "$ppid" ]; then
                wait "$ppid" 2>/dev/null
                # the top frames: self time by symbol, then inclusive time (callers included)
                { perf report -i "$out.perf.data" --no-children --sort dso,sym --stdio -g none 2>/dev/null | grep '%' | head -25
                  echo; perf report -i "$out.perf.data" --children --sort sym --stdio -g none 2>/dev/null | grep '%' | head -40
                } >"$OUTDIR/perf-$s-$sc.txt"
                log "profile of $s in $sc: $OUTDIR/perf-$s-$sc.txt"
            fi
            [ "$sc" = pp1cpu0 ] && taskset -a -p -c "${SERVER_CPUS:-0-$((NCPU - 1))}" "$pid" >/dev/null
            died=false
            kill -0 "$pid" 2>/dev/null || died=true
            [ $rc -ne 0 ] && FAILS=$((FAILS + 1))
            python3 -c 'import json,sys
def load(p):
    try:
        return json.loads(open(p).read().strip().splitlines()[-1])
    except Exception:
        return None
print(json.dumps({"round":int(sys.argv[1]),"scenario":sys.argv[2],"server":sys.argv[3],"rc":int(sys.argv[4]),
  "server_died":sys.argv[5]=="true","lg":load(sys.argv[6]+".txt"),"srv":load(sys.argv[6]+".srv.json"),
  "trace_bytes":int(sys.argv[7])}))' \
                "$round" "$sc" "$s" "$rc" "$died" "$out" $((trace1 - trace0)) >>"$RES"
            log "r$round $sc $s rc=$rc: $(sed -n 3p "$out.txt" | tr -s ' ')"
            # let TIME_WAIT / closing sockets and the server settle a little between runs
            sleep 0.2
        done
    done
done

stop_servers
log "servers stopped; total $(elapsed)s"
WRITECOST_END=$(python3 writecost.py "$OUTDIR/writecost-end.tmp" 2>/dev/null || echo '{}')
log "write cost at end: $WRITECOST_END"
python3 -c 'import json,sys; print(json.dumps({"type":"meta_end","writecost_end":json.loads(sys.argv[1])}))' "$WRITECOST_END" >>"$RES"
rm -f "$OUTDIR"/writecost-*.tmp
echo
python3 report.py "$RES" epoll | tee "$OUTDIR/report.txt"
echo
echo "raw results: $RES"
[ $FAILS -eq 0 ]
