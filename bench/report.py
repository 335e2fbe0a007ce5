#!/usr/bin/python3
"""Turns bench/out/raw.tsv into the results table: medians over runs,
absolute figures, ratios against fetchd, and the targets of the benchmark
issue with pass/miss. usage: report.py RAW.tsv VERSIONS.txt"""
import csv
import os
import statistics
import sys
from collections import defaultdict

raw, versions = sys.argv[1], sys.argv[2]
rows = list(csv.DictReader(open(raw), delimiter="\t"))
groups = defaultdict(list)
for r in rows:
    groups[(r["scenario"], r["concurrency"], r["tool"])].append(r)


def med(key, scen, conc, tool, conv=float):
    vals = [conv(r[key]) for r in groups.get((scen, conc, tool), []) if r[key] not in ("", None)]
    return statistics.median(vals) if vals else None


def extra(scen, conc, tool, field):
    vals = []
    for r in groups.get((scen, conc, tool), []):
        for kv in (r.get("extra") or "").split(";"):
            if kv.startswith(field + "="):
                vals.append(kv.split("=", 1)[1])
    return vals


def fmt(v, nd=2):
    if v is None:
        return "n/a"
    if isinstance(v, float) and abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:,.{nd}f}"


out = []
w = out.append
targets = []
w("# fetchd benchmark results\n")
w("Medians of the runs in one invocation of `bash bench/run.sh`, all on 127.0.0.1,")
w("same machine, same servers (nginx with one worker for the documents, fetchd's")
w("test server for the 100 ms endpoints). CPU is user+system time of the client;")
w("RSS is its peak resident set. fetchd runs with parsing and its file sink on.\n")
w("```")
w(open(versions).read().strip())
w("```\n")

tools = ["fetchd", "aiohttp", "node", "curl"]

# ---- scenario 1
for conc in ("64", "256"):
    if not groups.get(("1", conc, "fetchd")):
        continue
    n = med("count", "1", conc, "fetchd")
    w(f"## 1. Throughput: {int(n):,} distinct URLs of a 1 KiB JSON document, concurrency {conc}\n")
    w("| client | wall s | fetches/s | CPU µs/fetch | peak RSS MiB | ok | fetchd is |")
    w("|---|---|---|---|---|---|---|")
    rate = {}
    cpu = {}
    for t in tools:
        wall = med("wall_s", "1", conc, t)
        if wall is None:
            continue
        ok = med("ok", "1", conc, t)
        rate[t] = n / wall
        cpu[t] = med("cpu_s", "1", conc, t) / n * 1e6
        rss = med("rss_kib", "1", conc, t) / 1024
        ratio = "" if t == "fetchd" else f"{rate['fetchd'] / rate[t]:.1f}x faster"
        w(f"| {t} | {fmt(wall)} | {fmt(rate[t])} | {fmt(cpu[t], 1)} | {fmt(rss, 1)} | {int(ok):,} | {ratio} |")
    reqs = med("count", "1", conc, "wrk")
    if reqs:
        wall = med("wall_s", "1", conc, "wrk")
        rps = statistics.median(float(x) for x in extra("1", conc, "wrk", "rps"))
        cpu["wrk"] = med("cpu_s", "1", conc, "wrk") / reqs * 1e6
        w(f"| wrk (ceiling, no parsing, 5 s) | {fmt(wall)} | {fmt(rps)} | {fmt(cpu['wrk'], 1)} | {fmt(med('rss_kib', '1', conc, 'wrk') / 1024, 1)} | {int(reqs):,} | {rate['fetchd'] / rps:.2f}x of the ceiling |")
    w("")
    if "aiohttp" in rate:
        targets.append((f"S1 c={conc}: fetches/s vs aiohttp", ">= 10x", rate["fetchd"] / rate["aiohttp"], 10))
    if "curl" in rate:
        targets.append((f"S1 c={conc}: fetches/s vs curl --parallel", ">= 1.5x", rate["fetchd"] / rate["curl"], 1.5))
    if "wrk" in cpu:
        targets.append((f"S1 c={conc}: CPU per fetch vs wrk", "<= 3x", cpu["fetchd"] / cpu["wrk"], -3))

# ---- scenario 2
if groups.get(("2", "1000", "fetchd")):
    w("## 2. Latency-bound: 1,000 endpoints answering after 100 ms, all at once\n")
    w("| client | wall s | CPU s | peak RSS MiB | ok | fetchd is |")
    w("|---|---|---|---|---|---|")
    walls = {}
    for t in tools:
        wall = med("wall_s", "2", "1000", t)
        if wall is None:
            continue
        walls[t] = wall
        ratio = "" if t == "fetchd" else f"{wall / walls['fetchd']:.1f}x faster"
        w(f"| {t} | {fmt(wall, 3)} | {fmt(med('cpu_s', '2', '1000', t), 2)} | {fmt(med('rss_kib', '2', '1000', t) / 1024, 1)} | {int(med('ok', '2', '1000', t)):,} | {ratio} |")
    w("")
    targets.append(("S2: wall time for 1,000 x 100 ms", "<= 0.25 s", walls["fetchd"], -0.25))

# ---- scenario 3
if groups.get(("3", "64", "fetchd")):
    size = os.path.getsize(os.path.join(os.path.dirname(raw), "www", "doc-64k.json"))
    w(f"## 3. Payload: 2,000 fetches of a {size / 1024:.0f} KiB JSON document, concurrency 64\n")
    w("| client | wall s | MB/s parsed | CPU s | peak RSS MiB | ok | fetchd is |")
    w("|---|---|---|---|---|---|---|")
    mbs = {}
    for t in tools:
        wall = med("wall_s", "3", "64", t)
        if wall is None:
            continue
        ok = med("ok", "3", "64", t)
        mbs[t] = ok * size / wall / 1e6
        ratio = "" if t == "fetchd" else f"{mbs['fetchd'] / mbs[t]:.1f}x faster"
        note = " (not parsed)" if t == "curl" else ""
        w(f"| {t} | {fmt(wall)} | {fmt(mbs[t], 1)}{note} | {fmt(med('cpu_s', '3', '64', t))} | {fmt(med('rss_kib', '3', '64', t) / 1024, 1)} | {int(ok):,} | {ratio} |")
    w("")
    if "aiohttp" in mbs:
        targets.append(("S3: MB/s parsed vs aiohttp", ">= 4x", mbs["fetchd"] / mbs["aiohttp"], 4))

# ---- scenario 4
s4 = [(c, t) for (s, c, t) in groups if s == "4"]
if s4:
    w("## 4. Steady state: daemons polling every endpoint every second\n")
    w("| daemon | endpoints | fetches/s | CPU µs/fetch | RSS MiB | RSS KiB/endpoint | start lateness p50 / p99 / max |")
    w("|---|---|---|---|---|---|---|")
    per = {}
    for n, t in sorted(set(s4), key=lambda x: (int(x[0]), x[1])):
        secs = med("wall_s", "4", n, t)
        f = med("count", "4", n, t)
        cpu = med("cpu_s", "4", n, t) / f * 1e6
        rss = med("rss_kib", "4", n, t)
        lat = extra("4", n, t, "lateness")
        per[(n, t)] = (cpu, rss / int(n))
        w(f"| {t} | {int(n):,} | {fmt(f / secs)} | {fmt(cpu, 1)} | {fmt(rss / 1024, 1)} | {fmt(rss / int(n), 2)} | {lat[len(lat) // 2] if lat else 'n/a'} |")
    w("")
    w("Lateness is fetchd's own measure from the moment an endpoint is due to the")
    w("moment its transfer is handed to libcurl (median run shown).\n")
    if ("1000", "collectd") in per and ("1000", "fetchd") in per:
        targets.append(("S4: CPU per fetch vs collectd", "<= 1/4", per[("1000", "fetchd")][0] / per[("1000", "collectd")][0], -0.25))
        targets.append(("S4: RSS per endpoint vs collectd", "<= 1/4", per[("1000", "fetchd")][1] / per[("1000", "collectd")][1], -0.25))
    lat10k = extra("4", "10000", "fetchd", "lateness")
    if lat10k:
        p99s = []
        for l in lat10k:
            try:
                p99s.append(float(l.split("p99 ")[1].split(" ms")[0]))
            except (IndexError, ValueError):
                pass
        if p99s:
            targets.append(("S4: start lateness p99 at 10,000 endpoints/s", "< 5 ms", statistics.median(p99s), -5))

# ---- scenario 5
if groups.get(("5", "load", "fetchd-check-config")):
    load = med("wall_s", "5", "load", "fetchd-check-config")
    load_rss = med("rss_kib", "5", "load", "fetchd-check-config") / 1024
    idle = med("rss_kib", "5", "idle", "fetchd-daemon") / 1024
    w("## 5. Scale: 100,000 configured endpoints\n")
    w("| measure | value |")
    w("|---|---|")
    w(f"| config load + validation (`--check-config`) | {load:.2f} s, peak RSS {load_rss:.1f} MiB |")
    w(f"| daemon RSS, idle between fetches | {idle:.1f} MiB ({idle * 1024 * 1024 / 100000:.0f} bytes per endpoint) |")
    w("")
    targets.append(("S5: RSS with 100,000 endpoints", "<= 64 MiB", idle, -64))
    targets.append(("S5: config load for 100,000 endpoints", "< 1 s", load, -1))

w("## Targets\n")
w("| target | wanted | measured | |")
w("|---|---|---|---|")
for name, want, got, limit in targets:
    ok = got >= limit if limit > 0 else got <= -limit
    w(f"| {name} | {want} | {got:.3g} | {'met' if ok else 'MISSED'} |")
print("\n".join(out))
