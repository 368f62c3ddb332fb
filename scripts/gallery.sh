#!/bin/sh
# Regenerates docs/gallery/: the demo's and every scenario's ladder (NAME.svg) and state diagram
# (NAME-states.svg), from real runs on this machine. Run from the repository root:
#   scripts/gallery.sh            # all (time-wait alone takes ~60 s: it waits out TIME_WAIT)
#   scripts/gallery.sh reset demo # only these
# The fault scenarios (lost-last-ack ...) and demo-drop-server-fin run on the fault wire: the
# relay between network namespaces (docs/WIRE.md), at real speed.
# Scenarios run with --slow-motion auto (slow motion where user namespaces allow it) and
# --kernel-trace off, so the pictures show what an unprivileged user sees.
set -eu
cd "$(dirname "$0")/.."
swift build --product EchoClient >/dev/null
client="$(swift build --show-bin-path)/EchoClient"
out=docs/gallery
mkdir -p "$out"
names="$*"
[ -n "$names" ] || names="demo demo-drop-server-fin $("$client" --scenario list | cut -d' ' -f1)"
for name in $names; do
    if [ "$name" = demo ]; then
        "$client" --demo --kernel-trace off --no-color --picture "$out/demo.svg" --state-diagram "$out/demo-states.svg" >/dev/null 2>&1 \
            || echo "gallery: demo exited $? (picture still written)" >&2
    elif [ "$name" = demo-drop-server-fin ]; then
        # The demo on the fault wire: the server's FIN lost, sent again, the echo complete.
        "$client" --demo --drop server:FIN --kernel-trace off --no-color --picture "$out/$name.svg" \
            --state-diagram "$out/$name-states.svg" >/dev/null 2>&1 || echo "gallery: $name exited $? (picture still written)" >&2
    else
        # Exit 1 = the run did not match: the picture shows that, with its verdict in the title.
        status=0
        "$client" --scenario "$name" --kernel-trace off --trace off \
            --picture "$out/$name.svg" --state-diagram "$out/$name-states.svg" >/dev/null 2>&1 || status=$?
        [ "$status" -le 1 ] || { echo "gallery: $name failed with exit $status" >&2; exit "$status"; }
    fi
    echo "gallery: $out/$name.svg $out/$name-states.svg"
done
