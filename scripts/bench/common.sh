# common.sh - what the bench scripts share; sourced (`. "$(dirname "$0")/common.sh"`), not run.
# Sets HERE (this directory), ROOT (the repository), BUILD_DIR and PROJECT_BIN (overridable), and
# defines build_loadgen and cpus_other_than.
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BUILD_DIR=${BUILD_DIR:-/tmp/echo-bench/build}
PROJECT_BIN=${PROJECT_BIN:-$ROOT/.build/release/EchoServer}

# The load generator, into $BUILD_DIR/loadgen.
build_loadgen() {
    mkdir -p "$BUILD_DIR"
    cc -O2 -Wall -o "$BUILD_DIR/loadgen" "$HERE"/loadgen.c "$HERE"/loadgen_conn.c "$HERE"/loadgen_idle.c -lpthread
}

# cpus_other_than LIST NCPU: the CPUs of 0..NCPU-1 not in LIST ("0", "0,2", "0-1"), comma
# separated; LIST itself when none is left. Where the load goes when servers are pinned to LIST.
cpus_other_than() {
    python3 -c 'import sys
srv=set()
for part in sys.argv[1].split(","):
    a,_,b=part.partition("-"); srv.update(range(int(a),int(b or a)+1))
print(",".join(str(c) for c in range(int(sys.argv[2])) if c not in srv) or sys.argv[1])' "$1" "$2"
}
