#!/usr/bin/env bash
# latency.sh - how late the UNPRIVILEGED tracer logs each state, against the kernel's own clock,
# with release binaries (the FidelityMeasurement test does the same in a debug build).
#
#   swift build -c release && scripts/bench/latency.sh            # as root: perf is the oracle
#   RUNS=200 scripts/bench/latency.sh
#   SERVER_CPUS= scripts/bench/latency.sh                         # unpinned
#
# As in run.sh, the server runs on SERVER_CPUS (default 0) and the clients on the other CPUs
# (CLIENT_CPUS), when there are two or more: unpinned on this 2-CPU machine, the scheduler often
# woke the server's loop on the CPU the client was still running on (wake-affine), and ~10% of
# the server's ESTABLISHED stamps then waited for the client to block (0.2–1.5 ms), a tail of
# the scheduler's placement, not of the tracer's work.
#
# EchoServer and EchoClient run as nobody (tcp_info, sock_diag, inference: no tracepoint) with
# JSON traces; meanwhile `perf record -e sock:inet_sock_set_state -k CLOCK_MONOTONIC -a`
# records every transition the kernel made, on the same clock as the traces' `ts_ns`. For each
# state the tracer *observed* (source tcp_info or sock_diag; inferred ones have no reading), the
# latency is ts_ns − the kernel's time of the transition into that state on that socket
# (TIME_WAIT: the full socket's change to CLOSE, when the mini-socket took over). A stamp before
# the kernel's is counted as "early" (it must be 0).
set -u
. "$(dirname "$0")/common.sh"
RUNS=${RUNS:-100}
PORT=${PORT:-19501}
[ "$(id -u)" = 0 ] || { echo "latency.sh: needs root (perf reads the kernel's tracepoint)" >&2; exit 77; }
command -v perf >/dev/null || apt-get install -y linux-perf >/dev/null 2>&1 || { echo "latency.sh: perf is not installed" >&2; exit 69; }
(cd "$ROOT" && swift build -c release --product EchoServer >/dev/null && swift build -c release --product EchoClient >/dev/null) || exit 1
WORK=$(mktemp -d /tmp/echo-latency.XXXXXX)
chmod 777 "$WORK"
install -m 755 "$ROOT/.build/release/EchoServer" "$ROOT/.build/release/EchoClient" "$WORK/"
NOBODY="setpriv --reuid=65534 --regid=65534 --clear-groups"
NCPU=$(nproc --all)
SERVER_CPUS=${SERVER_CPUS-0}
SERVER_PIN="" CLIENT_PIN=""
if [ -n "$SERVER_CPUS" ] && [ "$NCPU" -ge 2 ]; then
    CLIENT_CPUS=${CLIENT_CPUS:-$(cpus_other_than "$SERVER_CPUS" "$NCPU")}
    SERVER_PIN="taskset -c $SERVER_CPUS" CLIENT_PIN="taskset -c $CLIENT_CPUS"
    echo "server on CPU $SERVER_CPUS, clients on CPU $CLIENT_CPUS"
else
    echo "unpinned"
fi

perf record -q -e sock:inet_sock_set_state -k CLOCK_MONOTONIC -a -o "$WORK/kernel.data" >/dev/null 2>&1 &
PERF=$!
sleep 1
# shellcheck disable=SC2086
$SERVER_PIN $NOBODY "$WORK/EchoServer" --host 127.0.0.1 --port "$PORT" --trace json --trace-file "$WORK/server.json" 2>"$WORK/server.err" &
SERVER=$!
for _ in $(seq 100); do ss -ltn "sport = :$PORT" | grep -q LISTEN && break; sleep 0.05; done
for i in $(seq "$RUNS"); do
    # shellcheck disable=SC2086
    timeout 10 $CLIENT_PIN $NOBODY "$WORK/EchoClient" --port "$PORT" --trace json --trace-file "$WORK/client-$i.json" "hello $i" >/dev/null 2>&1
done
sleep 0.5                                   # the server's last sock_diag follow-ups
kill -TERM "$SERVER"; wait "$SERVER" 2>/dev/null
kill -INT "$PERF"; wait "$PERF" 2>/dev/null
perf script -i "$WORK/kernel.data" --ns -F time,trace >"$WORK/kernel.txt" 2>/dev/null

python3 - "$WORK" "$PORT" <<'PY'
import glob, json, re, sys
work, port = sys.argv[1], int(sys.argv[2])
names = {"TCP_ESTABLISHED": "ESTABLISHED", "TCP_SYN_SENT": "SYN_SENT", "TCP_SYN_RECV": "SYN_RECEIVED",
         "TCP_FIN_WAIT1": "FIN_WAIT_1", "TCP_FIN_WAIT2": "FIN_WAIT_2", "TCP_TIME_WAIT": "TIME_WAIT",
         "TCP_CLOSE": "CLOSED", "TCP_CLOSE_WAIT": "CLOSE_WAIT", "TCP_LAST_ACK": "LAST_ACK",
         "TCP_LISTEN": "LISTEN", "TCP_CLOSING": "CLOSING"}
kernel = {}   # (local port, peer port) -> [(ns, old, new)]
line_re = re.compile(r"^\s*(\d+)\.(\d+):.*sport=(\d+) dport=(\d+) .*oldstate=(\w+) newstate=(\w+)")
for line in open(f"{work}/kernel.txt"):
    m = line_re.match(line)
    if not m: continue
    ns = int(m[1]) * 1_000_000_000 + int(m[2].ljust(9, "0")[:9])
    sport, dport = int(m[3]), int(m[4])
    if port not in (sport, dport): continue
    kernel.setdefault((sport, dport), []).append((ns, names.get(m[5], m[5]), names.get(m[6], m[6])))

def entered(key, state, before):
    """The kernel's time of the last transition into `state` on this socket, not after `before` + 1 s."""
    changes = kernel.get(key, [])
    if state == "TIME_WAIT":   # the full socket's X -> CLOSE when the mini-socket took over
        hits = [ns for ns, old, new in changes if new == "CLOSED" and old in ("FIN_WAIT_1", "FIN_WAIT_2", "CLOSING")]
    else:
        hits = [ns for ns, old, new in changes if new == state]
    hits = [ns for ns in hits if ns <= before + 1_000_000_000]
    return hits[-1] if hits else None

def port_of(text):
    return int(text.rsplit(":", 1)[1]) if text and ":" in text else 0

latencies, early, unmatched = {}, [], 0
for path in [f"{work}/server.json"] + glob.glob(f"{work}/client-*.json"):
    for line in open(path):
        try: e = json.loads(line)
        except ValueError: continue
        if e.get("event") != "state" or e.get("source") not in ("tcp_info", "sock_diag"): continue
        if e["side"] == "server" and e.get("to") == "LISTEN": continue   # before the oracle's first second
        key = (port_of(e.get("local")), port_of(e.get("peer")))
        k = entered(key, e["to"], e["ts_ns"])
        if k is None: unmatched += 1; continue
        d = e["ts_ns"] - k
        if d < 0: early.append(f'{e["side"]} {e["to"]} {-d} ns early'); continue
        latencies.setdefault((e["side"], e["to"]), []).append(d)

def pct(values, p): return values[min(len(values) - 1, len(values) * p // 100)]
print(f"{'side':8} {'state':12} {'n':>5} {'p50 µs':>8} {'p99 µs':>8}")
for (side, state), values in sorted(latencies.items()):
    values.sort()
    print(f"{side:8} {state:12} {len(values):5} {pct(values, 50)/1000:8.1f} {pct(values, 99)/1000:8.1f}")
pooled = sorted(v for values in latencies.values() for v in values)
if pooled:
    print(f"{'all':8} {'observed':12} {len(pooled):5} {pct(pooled, 50)/1000:8.1f} {pct(pooled, 99)/1000:8.1f}")
slow = {f"{side} {state}": sum(v > 200_000 for v in values) for (side, state), values in sorted(latencies.items())}
print("over 200 µs: " + (", ".join(f"{k} {n}" for k, n in slow.items() if n) or "none"))
print(f"early: {len(early)} {early[:3]}  unmatched: {unmatched}")
PY
rm -rf "$WORK"
