#!/bin/sh
# Counts overlapping labels in SVG pictures, measured by headless Chromium (getBBox):
#   scripts/picture-collisions.sh docs/gallery/*.svg
# One line per picture with its collisions (text/text, text/badge, text/band, text/arrow,
# badge/badge), each listed on stderr; exit 1 when there is any.
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
browser="$(command -v chromium-headless-shell || command -v chromium || true)"
[ -n "$browser" ] || { echo "picture-collisions: no chromium-headless-shell" >&2; exit 69; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
page="$tmp/page.html"
{
    printf '<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>'
    for svg in "$@"; do printf '<div data-name="%s">' "$svg"; cat "$svg"; printf '</div>'; done
    printf '<script>'; cat "$here/picture-collisions.js"; printf '</script></body></html>'
} > "$page"
"$browser" --headless --no-sandbox --disable-gpu --no-first-run --user-data-dir="$tmp/profile" --dump-dom "file://$page" 2>/dev/null \
    | sed -n 's:.*<pre id="collisions">\(.*\)</pre>.*:\1:p' | tail -1 | python3 -c '
import html, json, sys
total = 0
for p in json.loads(html.unescape(sys.stdin.read())):
    print("%s: %d collisions" % (p["name"], len(p["collisions"])))
    for c in p["collisions"]:
        print("    %s | %s | %s" % (c["kind"], c["a"], c["b"].replace("\n", " ")), file=sys.stderr)
    total += len(p["collisions"])
print("total: %d" % total)
sys.exit(1 if total else 0)'
