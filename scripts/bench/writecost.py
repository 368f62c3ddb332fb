#!/usr/bin/env python3
"""What a byte written to a file costs the writer here, now: run.sh's environment probe.

usage: writecost.py PATH [MIB]

Writes MIB (default 64) MiB in 64 KiB write(2)s, the size of a trace writer's batches, to PATH,
a new file, then the same bytes again over it, and prints one JSON line: the writer's CPU time
(user + system, getrusage) per byte for each pass.

Why: a traced server writes its trace into the page cache. On a VM whose free memory has been
given back to the host (virtio_balloon free page reporting, or a snapshot restored lazily), the
first touch of each new page-cache page faults in the host, inside write(2), and the writer pays
it: 2-3 ns a byte here against ~0.2 ns for pages the guest already holds (docs/PERFORMANCE.md,
"What a trace byte costs"). That moves a traced row's CPU per connection by microseconds between
runs of the same binary, so run.sh records it next to the results.

The file is left in place (run.sh deletes it when the run ends): deleting it at once would hand its
pages back to the allocator, and the servers' traces would then be written into those warm pages,
cheaper than the memory they would otherwise get.
"""
import json
import os
import resource
import sys

BLOCK = 64 * 1024


def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def write_pass(fd, total, block):
    os.lseek(fd, 0, os.SEEK_SET)
    start = cpu_seconds()
    written = 0
    while written < total:
        written += os.write(fd, block)
    return (cpu_seconds() - start) / total * 1e9


def main():
    if len(sys.argv) < 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        sys.exit(64)
    path = sys.argv[1]
    total = int(sys.argv[2] if len(sys.argv) > 2 else 64) * 1024 * 1024
    block = b"x" * BLOCK
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        new = write_pass(fd, total, block)
        cached = write_pass(fd, total, block)
    finally:
        os.close(fd)
    print(json.dumps({"mib": total // (1024 * 1024), "new_pages_ns_per_byte": round(new, 3),
                      "cached_pages_ns_per_byte": round(cached, 3)}))


if __name__ == "__main__":
    main()
