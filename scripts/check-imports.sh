#!/usr/bin/env bash
# Fails when a Swift file imports a module of this package that its target does not declare as
# a dependency in Package.swift (executables and tests included).
#
# Why a script: SwiftPM builds every target into one module directory, so `import TCPTrace`
# compiles in a target that declares only EchoKit (TCPTrace came in transitively). The layering
# (CSocketKit → SocketKit → TCPTrace → EchoKit → executables) would then hold only by habit.
# The compiler checks the order of the declared graph (no cycles); this checks that the graph
# declares every import. Needs swift (dump-package) and python3. Usage: scripts/check-imports.sh
set -euo pipefail
cd "$(dirname "$0")/.."

swift package dump-package | python3 -c '
import json, os, re, sys

package = json.load(sys.stdin)
targets = package["targets"]
modules = {t["name"] for t in targets}
# Top-level imports only (column 0): an indented "import" is text, e.g. Python in a string literal.
pattern = re.compile(r"^(?:@[A-Za-z_]+(?:\([^)]*\))?\s+)*import\s+(?:(?:typealias|struct|class|enum|protocol|let|var|func)\s+)?([A-Za-z_][A-Za-z0-9_]*)")
problems = []
for target in targets:
    name = target["name"]
    path = target.get("path") or (("Tests/" if target["type"] == "test" else "Sources/") + name)
    declared = set()
    for dependency in target["dependencies"]:
        for kind in ("byName", "target", "product"):
            if kind in dependency:
                declared.add(dependency[kind][0])
    for root, _, files in os.walk(path):
        for file in sorted(files):
            if not file.endswith(".swift"):
                continue
            location = os.path.join(root, file)
            with open(location, encoding="utf-8") as source:
                for number, line in enumerate(source, 1):
                    match = pattern.match(line)
                    if not match:
                        continue
                    module = match.group(1)
                    if module in modules and module != name and module not in declared:
                        problems.append(f"{location}:{number}: imports {module}, which target {name} does not declare "
                                        f"(Package.swift: {name} depends on {sorted(declared) or 'nothing'})")
for problem in problems:
    print(problem, file=sys.stderr)
if problems:
    sys.exit(1)
print(f"imports: every import of a package module is a declared dependency ({len(targets)} targets)")
'
