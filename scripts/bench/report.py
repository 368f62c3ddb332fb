#!/usr/bin/env python3
"""Comparison table from run.sh's results.jsonl.

usage: report.py RESULTS.jsonl [BASELINE_SERVER]

For each scenario and server: the scenario's main figure (requests/s, MB/s or
conn/s; median over rounds, with min..max when there were several), its ratio
to the baseline server (default: epoll), latency percentiles, the server's CPU
use and peak RSS, and error counts.
"""
import json
import statistics
import sys
from collections import OrderedDict, defaultdict


def main():
    path = sys.argv[1]
    base = sys.argv[2] if len(sys.argv) > 2 else "epoll"
    runs, servers, meta, meta_end = [], OrderedDict(), {}, {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            r = json.loads(line)
            if r.get("type") == "server":
                servers[r["server"]] = r
            elif r.get("type") == "meta":
                meta = r
            elif r.get("type") == "meta_end":
                meta_end = r
            else:
                runs.append(r)
    scen_order = list(OrderedDict((r["scenario"], 1) for r in runs))
    srv_order = list(servers) or list(OrderedDict((r["server"], 1) for r in runs))
    by = defaultdict(list)
    for r in runs:
        by[(r["scenario"], r["server"])].append(r)

    def metric(r):
        lg = r.get("lg") or {}
        m = lg.get("mode")
        if m == "stream":
            return "MB/s", lg.get("mb_per_s", 0.0)
        if m == "connect":
            return "conn/s", lg.get("conn_per_s", 0.0)
        return "req/s", lg.get("rps", 0.0)

    def med(xs):
        return statistics.median(xs) if xs else 0.0

    if meta:
        print("# %s" % " ".join("%s=%s" % (k, v) for k, v in meta.items() if k not in ("type", "writecost_start")))
    hdr = ("scenario", "server", "metric", "value", "min..max", "vs " + base, "p50us", "p99us", "p99.9us",
           "srvCPU%", "kop/CPUs", "CPUus/op", "eff vs " + base, "traceB/op", "cliCPU%", "peak MiB", "errors")
    rows = [hdr]
    def cpu_pct_of(rs):
        return med([100.0 * (r.get("srv") or {}).get("cpu_s", 0) / max((r.get("srv") or {}).get("wall_s", 1), 1e-9)
                    for r in rs])

    for sc in scen_order:
        base_val = None
        base_eff = None
        if (sc, base) in by:
            base_val = med([metric(r)[1] for r in by[(sc, base)]])
            base_cpu = cpu_pct_of(by[(sc, base)])
            base_eff = base_val / (base_cpu / 100.0) if base_cpu > 0 else None
        for sv in srv_order:
            rs = by.get((sc, sv))
            if not rs:
                continue
            name, _ = metric(rs[0])
            vals = [metric(r)[1] for r in rs]
            v = med(vals)
            spread = "%s..%s" % (fmt(min(vals)), fmt(max(vals))) if len(vals) > 1 else ""
            ratio = ("%.2fx" % (v / base_val)) if base_val else "-"
            lat = lambda k: fmt(med([(r.get("lg") or {}).get(k, 0.0) for r in rs]))  # noqa: E731
            cpu_pct = cpu_pct_of(rs)
            eff = v / (cpu_pct / 100.0) / 1000.0 if cpu_pct > 0 and name != "MB/s" else 0.0
            if name == "MB/s":
                eff_s = "%.0f MB" % (v / (cpu_pct / 100.0)) if cpu_pct > 0 else "-"
            else:
                eff_s = "%.1f" % eff if eff else "-"
            # server CPU per operation (per connection in connect8): CPU-seconds per second / ops per second
            per_op_s = "%.1f" % (cpu_pct / 100.0 / v * 1e6) if v > 0 and cpu_pct > 0 and name != "MB/s" else "-"
            eff_ratio = ("%.2fx" % ((v / (cpu_pct / 100.0)) / base_eff)) if base_eff and cpu_pct > 0 else "-"
            # trace bytes the server wrote per operation: its log's growth over warm-up + duration,
            # over the operations of that time at the measured rate
            lgs = [(r.get("lg") or {}) for r in rs]
            span = med([lg.get("duration_s", 0) + lg.get("warmup_s", 0) for lg in lgs])
            traced = med([r.get("trace_bytes", 0) for r in rs])
            trace_s = "%.0f" % (traced / (v * span)) if traced > 0 and v > 0 and span > 0 and name != "MB/s" else "-"
            # single process: VmHWM; process tree: summed PSS (marked *), summed RSS would count shared pages N times
            pss = [(r.get("srv") or {}).get("peak_pss_kb") for r in rs]
            if any(pss):
                mem_s = "%.1f*" % (max(p or 0 for p in pss) / 1024.0)
            else:
                mem_s = "%.1f" % (max((r.get("srv") or {}).get("peak_rss_kb", 0) for r in rs) / 1024.0)
            cli = med([100.0 * (r.get("lg") or {}).get("client_cpu_s", 0) /
                       max((r.get("lg") or {}).get("duration_s", 0) + (r.get("lg") or {}).get("warmup_s", 0), 1e-9)
                       for r in rs])
            errs = []
            for r in rs:
                lg = r.get("lg") or {}
                e = lg.get("mismatches", 0) + lg.get("conn_errors", 0) + lg.get("timeouts", 0) + lg.get("idle_failed", 0)
                if r.get("rc", 0) != 0 or e:
                    bits = ["rc=%s" % r.get("rc")]
                    for k, label in (("mismatches", "mismatch"), ("lost_bytes", "lostB@EOF"), ("conn_errors", "connerr"),
                                     ("timeouts", "timeout"), ("idle_failed", "idlefail")):
                        if lg.get(k):
                            bits.append("%s=%s" % (label, lg[k]))
                    errs.append(" ".join(bits))
                if r.get("server_died"):
                    errs.append("SERVER DIED")
            idle = (rs[0].get("lg") or {}).get("idle_requested", 0)
            err_s = "; ".join(errs) if errs else ("0" + (" (idle %d/%d ok)" % (
                min((r.get("lg") or {}).get("idle_verified", 0) for r in rs), idle) if idle else ""))
            show_lat = name != "MB/s"
            rows.append((sc, sv, name, fmt(v), spread, ratio, lat("p50_us") if show_lat else "-",
                         lat("p99_us") if show_lat else "-", lat("p999_us") if show_lat else "-",
                         "%.0f" % cpu_pct, eff_s, per_op_s, eff_ratio, trace_s, "%.0f" % cli, mem_s, err_s))
        rows.append(None)
    print_table(rows)
    print("value: median over rounds; vs: ratio of medians; srvCPU%: server user+sys / wall (200% = both cores);")
    print("kop/CPUs: ops per server CPU-second (stream: MB per CPU-s); CPUus/op: server CPU per op (connect: per")
    print("connection); eff vs: ops per server CPU-second over the baseline's, same run; cliCPU%: loadgen CPU / its wall;")
    print("traceB/op: trace bytes the server wrote per op (its log's growth); peak MiB: server VmHWM, or * = peak")
    print("summed PSS of the process tree (socat forks per connection)")
    costs = [(label, m.get(key) or {}) for label, m, key in (("start", meta, "writecost_start"), ("end", meta_end, "writecost_end"))]
    costs = [(label, c) for label, c in costs if c.get("new_pages_ns_per_byte") is not None]
    if costs:
        print("write cost here (writecost.py, %s MiB in 64 KiB writes): " % costs[0][1].get("mib", "?") + "; ".join(
            "%s %.2f ns/B into new page-cache pages, %.2f into cached ones" % (label, c["new_pages_ns_per_byte"],
                                                                             c["cached_pages_ns_per_byte"])
            for label, c in costs))
        print("  a traced row's CPU per op includes about traceB/op x the new-page cost (docs/PERFORMANCE.md)")

    print()
    rows = [("server", "pid", "start RSS MiB", "max peak MiB", "total srv CPU s", "half-close check", "command")]
    for sv, s in servers.items():
        rs = [r for r in runs if r["server"] == sv]
        pss = [(r.get("srv") or {}).get("peak_pss_kb") or 0 for r in rs]
        peak = (max(pss) if any(pss) else max([(r.get("srv") or {}).get("peak_rss_kb", 0) for r in rs] or [0])) / 1024.0
        cpu = sum((r.get("srv") or {}).get("cpu_s", 0) for r in rs)
        hc = s.get("halfclose") or {}
        if not hc:
            hc_s = "n/a"
        elif hc.get("ok"):
            hc_s = "ok"
        else:
            parts = []
            for case in ("big", "small", "backpressured"):
                c = hc.get(case) or {}
                if c and not c.get("ok"):
                    tries = " %d/%d tries" % (c.get("failed", 1), c.get("tries", 1)) if "tries" in c else ""
                    parts.append("%s%s: %d/%d B echoed%s" % (case, tries, c.get("echoed", 0), c.get("sent", 0),
                                                            "" if c.get("eof") else ", no EOF"))
            hc_s = "FAILED " + ("; ".join(parts) or json.dumps(hc)[:80])
        rows.append((sv, str(s.get("pid")), "%.1f" % (s.get("rss_start_kb", 0) / 1024.0), ("%.1f" % peak) + ("*" if any(pss) else ""), "%.1f" % cpu,
                     hc_s, s.get("cmd", "")))
    print_table(rows)
    bad = [r for r in runs if r.get("rc", 0) != 0 or r.get("server_died")]
    print("\nruns: %d, failed: %d" % (len(runs), len(bad)))


def fmt(x):
    if isinstance(x, str):
        return x
    if x >= 100:
        return "%.0f" % x
    if x >= 10:
        return "%.1f" % x
    return "%.2f" % x


def print_table(rows):
    w = [0] * len(rows[0])
    for r in rows:
        if r:
            for i, c in enumerate(r):
                w[i] = max(w[i], len(str(c)))
    for r in rows:
        if r is None:
            print()
            continue
        print("  ".join(str(c).ljust(w[i]) if i < 3 or i == len(r) - 1 else str(c).rjust(w[i]) for i, c in enumerate(r)))


if __name__ == "__main__":
    main()
