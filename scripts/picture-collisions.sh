#!/bin/sh
# Counts overlapping labels in SVG pictures, measured by headless Chromium (getBBox):
#   scripts/picture-collisions.sh docs/gallery/*.svg
# Prints one line per picture: its collisions (text/text, text/badge, text/arrow, badge/badge).
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
browser="$(command -v chromium-headless-shell || command -v chromium || true)"
[ -n "$browser" ] || { echo "picture-collisions: no chromium-headless-shell" >&2; exit 69; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
total=0
for svg in "$@"; do
    page="$tmp/page.html"
    { printf '<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>'; cat "$svg";
      printf '<script>'; cat "$here/picture-collisions.js"; printf '</script></body></html>'; } > "$page"
    result="$("$browser" --headless --no-sandbox --disable-gpu --no-first-run --user-data-dir="$tmp/profile" \
        --dump-dom "file://$page" 2>/dev/null | sed -n 's:.*<pre id="collisions">\(.*\)</pre>.*:\1:p')"
    count="$(printf '%s' "$result" | python3 -c 'import json,sys,html; d=json.loads(html.unescape(sys.stdin.read())); print(len(d["collisions"])); [print("   ", c["kind"], "|", c["a"], "|", c["b"], file=sys.stderr) for c in d["collisions"]]')"
    echo "$svg: $count collisions"
    total=$((total + count))
done
echo "total: $total"
