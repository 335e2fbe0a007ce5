#!/bin/bash
# bench/soak.sh - run the fetchd daemon for a long time at a high rate
# against local servers on 127.0.0.1, with 30 % of the endpoints failing in
# seven different ways, and check that it stays flat: RSS, open fds and
# threads after warm-up, no zombies, no sanitizer report, the rate kept.
#
#   bash bench/soak.sh [FETCHD]        # default: builds build-soak/src/fetchd
#   SOAK_SECS=120 WARMUP_SECS=30 FETCHD=build-asan/src/fetchd bash bench/soak.sh
#
# Needs nginx, python3 (3.11) and curl; as root (or a user allowed to raise
# its open-file limit to 4096). See bench/README.md, "Soak test".
#
# Knobs (environment):
#   SOAK_SECS=600       whole run, warm-up included
#   WARMUP_SECS=60      RSS and fd baselines are taken at this point
#   ENDPOINTS=1000      endpoints (default 500 for a sanitizer build)
#   INTERVAL_MS=100     their interval: target rate ENDPOINTS / INTERVAL
#   MAX_CONCURRENT=256  limits.max_concurrent
#   SAMPLE_SECS=5       sampling period of /proc/PID/{status,fd}
#   SOAK_RSS_MAX_KIB=1024  allowed memory growth after warm-up, of
#   SOAK_MEM_JUDGE=rss  VmRSS, or "heap" (the heap's size: what malloc took
#                       from the kernel), or "none" (default for a sanitizer
#                       build, whose shadow memory and quarantine grow); fetchd
#                       gives free heap pages back once a minute
#                       (malloc_trim), so RSS follows what it uses
#   SOAK_FD_SLACK=4     sockets above MAX_CONCURRENT, stuck sockets at the end
#   SOAK_MIN_RATE_PCT=90   fetches/s achieved, in % of the target
#   SOAK_SATURATE_MS=500   nginx stopped this long (and on, up to 4x, until
#                       the transfer pool is full) halfway through the
#                       warm-up (0: not)
#   SOAK_OUT=bench/out/soak  output: soak.md, samples.csv, fetchd.log, ...
#                       (bench/run.sh deletes bench/out: not both at once)
# Exit status: 0 every check passed, 1 a check failed, 2 set-up problem.
set -euo pipefail
CALLER_PWD=$PWD
cd "$(dirname "$0")/.."
ROOT=$PWD

SOAK_SECS=${SOAK_SECS:-600}
WARMUP_SECS=${WARMUP_SECS:-60}
INTERVAL_MS=${INTERVAL_MS:-100}
SAMPLE_SECS=${SAMPLE_SECS:-5}
MAX_CONCURRENT=${MAX_CONCURRENT:-256}
SOAK_RSS_MAX_KIB=${SOAK_RSS_MAX_KIB:-1024}
SOAK_FD_SLACK=${SOAK_FD_SLACK:-4}
SOAK_MIN_RATE_PCT=${SOAK_MIN_RATE_PCT:-90}
SOAK_SATURATE_MS=${SOAK_SATURATE_MS:-500}
OUT=${SOAK_OUT:-$ROOT/bench/out/soak}
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3)

log() { printf '[soak %4ss] %s\n' "$SECONDS" "$*" >&2; }
die() { log "error: $*"; exit 2; }

[ "$WARMUP_SECS" -lt "$SOAK_SECS" ] || die "WARMUP_SECS ($WARMUP_SECS) must be less than SOAK_SECS ($SOAK_SECS)"
for tool in nginx curl; do
    command -v "$tool" >/dev/null || die "$tool is needed (apt-get install nginx python3 curl)"
done
[ -n "$PY" ] || die "python3 is needed"

# ---- the binary ------------------------------------------------------------
FETCHD=${1:-${FETCHD:-}}
if [ -z "$FETCHD" ]; then
    log "building fetchd (release) in build-soak"
    [ -d build-soak ] || meson setup build-soak --buildtype=release -Dtests=disabled >/dev/null
    ninja -C build-soak >/dev/null
    FETCHD=$ROOT/build-soak/src/fetchd
elif [ "${FETCHD#/}" = "$FETCHD" ]; then
    # relative: to the caller's directory, else to the repository
    if [ -x "$CALLER_PWD/$FETCHD" ]; then FETCHD=$CALLER_PWD/$FETCHD; else FETCHD=$ROOT/$FETCHD; fi
fi
[ -x "$FETCHD" ] || die "no fetchd binary at $FETCHD"
SANITIZED=0
if ldd "$FETCHD" 2>/dev/null | grep -q 'libasan\|libubsan' ||
    grep -aq '__asan_init\|__ubsan_handle' "$FETCHD"; then
    SANITIZED=1
fi
MEM_JUDGE=${SOAK_MEM_JUDGE:-$([ "$SANITIZED" = 1 ] && echo none || echo rss)}
case $MEM_JUDGE in heap | rss | none) ;; *) die "SOAK_MEM_JUDGE: heap, rss or none" ;; esac
# ASan + UBSan make a fetch about 2x as expensive: half the rate by default
ENDPOINTS=${ENDPOINTS:-$((SANITIZED ? 500 : 1000))}

# ---- set-up ------------------------------------------------------------------
pids=()
FETCHD_PID=
NGINX_PID=
cleanup() {
    # nginx may be stopped (SIGSTOP) by the pool saturation
    if [ -n "$NGINX_PID" ]; then
        local workers
        workers=$(cat "/proc/$NGINX_PID/task/$NGINX_PID/children" 2>/dev/null || true)
        # shellcheck disable=SC2086 # a list of pids
        kill -CONT "$NGINX_PID" $workers 2>/dev/null || true
    fi
    if [ -n "$FETCHD_PID" ] && kill -0 "$FETCHD_PID" 2>/dev/null; then
        kill -KILL "$FETCHD_PID" 2>/dev/null || true
    fi
    for p in "${pids[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${pids[@]}"; do
        wait "$p" 2>/dev/null || true
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# loopback only
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy no_proxy NO_PROXY || true

# transfers, connections to nginx, the exec sink's pipe: a few hundred fds
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge 4096 ] || die "open-file limit $(ulimit -n) is too low"

rm -rf "$OUT"
mkdir -p "$OUT/www" "$OUT/nginx/tmp"
chmod 755 "$OUT" "$OUT/www"

free_port() {
    $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# documents: the benchmark's ~1 KiB weather reading
$PY bench/peers/docs.py "$OUT/www"
chmod 644 "$OUT"/www/*.json

NGINX_PORT=$(free_port)
cat > "$OUT/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $OUT/nginx/nginx.pid;
error_log $OUT/nginx/error.log warn;
worker_rlimit_nofile 65536;
events { worker_connections 16384; }
http {
    access_log off;
    keepalive_requests 100000000;
    # short, so that a connection fetchd leaked ends up in CLOSE_WAIT, seen
    keepalive_timeout 30s;
    default_type application/json;
    client_body_temp_path $OUT/nginx/tmp;
    server {
        listen 127.0.0.1:$NGINX_PORT backlog=4096;
        root $OUT/www;
        location /ok/ { try_files /doc-1k.json =404; }
        location /big/ { try_files /doc-1k.json =404; }
        location /e503/ { return 503 '{"error":"overload"}'; }
        location /e404/ { return 404; }
        location /garbage/ { return 200 '{"temp_c": 8.4, "wind": [1, 2,, 3]}'; }
        location /html/ { default_type text/html; return 200 '<html><body>maintenance</body></html>'; }
        location = /nginx_status { stub_status; }
    }
}
EOF
nginx -c "$OUT/nginx/nginx.conf" -p "$OUT/nginx" 2> "$OUT/nginx/stderr.log" &
NGINX_PID=$!
pids+=("$NGINX_PID")

# a server that accepts, reads and never answers: the "timeout" endpoints.
# One asyncio task per connection, closed when fetchd gives up.
cat > "$OUT/hang.py" <<'EOF'
import asyncio, os, sys
async def conn(reader, writer):
    try:
        # fetchd gives up after 50 ms; after 10 s a connection it leaked is
        # closed here, and ends up in CLOSE_WAIT on fetchd's side
        async with asyncio.timeout(10):
            while await reader.read(65536):
                pass
    except (ConnectionError, TimeoutError):
        pass
    writer.close()
async def main():
    srv = await asyncio.start_server(conn, "127.0.0.1", 0, backlog=4096)
    with open(sys.argv[1] + ".tmp", "w") as f:
        f.write(str(srv.sockets[0].getsockname()[1]))
    os.rename(sys.argv[1] + ".tmp", sys.argv[1])
    await srv.serve_forever()
asyncio.run(main())
EOF
$PY "$OUT/hang.py" "$OUT/hang.port" &
pids+=($!)

# a port nobody listens on: "connect" (connection refused)
CLOSED_PORT=$(free_port)

for _ in $(seq 100); do
    if curl -sf "http://127.0.0.1:$NGINX_PORT/ok/0" >/dev/null 2>&1 && [ -s "$OUT/hang.port" ]; then
        break
    fi
    sleep 0.1
done
curl -sf "http://127.0.0.1:$NGINX_PORT/ok/0" >/dev/null || { cat "$OUT/nginx/error.log" "$OUT/nginx/stderr.log" >&2; die "nginx did not start"; }
[ -s "$OUT/hang.port" ] || die "the hanging server did not start"
HANG_PORT=$(cat "$OUT/hang.port")
NGX=http://127.0.0.1:$NGINX_PORT

# ---- configuration -----------------------------------------------------------
# soak_config SINK_PATH > config; also writes $OUT/groups.json
# group          share  URL                          expected record
# ok               70 %  nginx 200, ~1 KiB JSON       ok
# e503              6 %  nginx 503 (half retried)     http_status
# e404              5 %  nginx 404 (HTML body)        http_status
# garbage           5 %  nginx 200, invalid JSON      invalid_json
# html              3 %  nginx 200, text/html         unexpected_content_type
# big               3 %  ~1 KiB, max_body_size 256 B  too_large
# refused           4 %  closed port (some breaker)   connect
# timeout           4 %  accepts, never answers       timeout (after 50 ms)
soak_config() {
    $PY - "$1" "$ENDPOINTS" "$INTERVAL_MS" "$NGX" "$CLOSED_PORT" "$HANG_PORT" "$OUT/groups.json" "$MAX_CONCURRENT" <<'EOF'
import json, sys
sink_path, n, iv_ms, ngx, closed, hang, groups_out, maxconc = sys.argv[1:]
n, iv_ms = int(n), int(iv_ms)
shares = [("e503", 6, "http_status"), ("e404", 5, "http_status"),
          ("garbage", 5, "invalid_json"), ("html", 3, "unexpected_content_type"),
          ("big", 3, "too_large"), ("refused", 4, "connect"), ("timeout", 4, "timeout")]
eps, groups = {}, {}
sizes = {g: max(1, round(n * pct / 100)) for g, pct, _ in shares}
sizes["ok"] = n - sum(sizes.values())
kinds = {g: k for g, _, k in shares}
kinds["ok"] = "ok"
for g in ["ok"] + [g for g, _, _ in shares]:
    for i in range(sizes[g]):
        name = f"{g}-{i:05d}"
        if g == "refused":
            ep = {"url": f"http://127.0.0.1:{closed}/r/{i}"}
        elif g == "timeout":
            ep = {"url": f"http://127.0.0.1:{hang}/t/{i}", "timeout": "50ms"}
        else:
            ep = {"url": f"{ngx}/{g}/{i}"}
        if g == "big":
            ep["max_body_size"] = 256
        if g == "e503" and i % 2 == 0:
            # the retry path: one retry after 5-10 ms
            ep["retry"] = {"attempts": 2, "backoff": "5ms", "max_backoff": "10ms"}
        if g == "refused" and i < max(1, sizes[g] // 4):
            # the circuit-breaker path: back off after 3 failures, probe each second
            ep["breaker"] = {"after": 3, "max_backoff": "1s"}
        eps[name] = ep
    groups[g] = {"endpoints": sizes[g], "kind": kinds[g]}
n_breaker = sum(1 for e in eps.values() if "breaker" in e)
groups["_breaker_endpoints"] = n_breaker
# breaker endpoints probe about once per second instead of every interval
groups["_target_rate"] = (n - n_breaker) * 1000 / iv_ms + n_breaker * min(1, 1000 / iv_ms)
json.dump(groups, open(groups_out, "w"))
cfg = {
    "limits": {"max_concurrent": int(maxconc), "stats_interval": "1m"},
    "defaults": {"interval": f"{iv_ms}ms", "timeout": "5s", "connect_timeout": "2s",
                 "breaker": False, "sinks": ["records", "errors"]},
    "sinks": {
        # every record through the file sink, into /dev/null (2 MB/s otherwise)
        "records": {"type": "file", "path": sink_path, "fsync": "never"},
        # failures also through a pipe to a child process
        "errors": {"type": "exec", "records": "errors",
                   "command": ["/bin/sh", "-c", "exec cat >/dev/null"]},
    },
    "endpoints": eps,
}
print(json.dumps(cfg, indent=1))
EOF
}
soak_config /dev/null > "$OUT/fetchd.json"
soak_config "$OUT/preflight.jsonl" > "$OUT/preflight.json"
TARGET_RATE=$($PY -c "import json; print(json.load(open('$OUT/groups.json'))['_target_rate'])")

if [ "$SANITIZED" = 1 ]; then
    # reports go to files (checked at the end); a small quarantine keeps RSS down
    export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1:quarantine_size_mb=16:malloc_context_size=20:log_path=$OUT/asan"
    export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$OUT/ubsan"
    export LSAN_OPTIONS="log_path=$OUT/lsan"
fi

log "fetchd: $FETCHD ($("$FETCHD" --version | head -1))$([ "$SANITIZED" = 1 ] && echo ', sanitized')"
"$FETCHD" --check-config -c "$OUT/fetchd.json" > "$OUT/check-config.txt" || die "--check-config failed"

# ---- preflight: every endpoint once, check the failure mix ------------------
log "preflight: --once over the $ENDPOINTS endpoints"
"$FETCHD" --once --no-progress -c "$OUT/preflight.json" --log-target stderr \
    > /dev/null 2> "$OUT/preflight.log" || true
$PY - "$OUT/preflight.jsonl" "$OUT/groups.json" > "$OUT/preflight.txt" <<'EOF' || { cat "$OUT/preflight.txt" >&2; die "the preflight records do not match the failure mix"; }
import collections, json, sys
groups = json.load(open(sys.argv[2]))
got = collections.defaultdict(collections.Counter)
for line in open(sys.argv[1]):
    r = json.loads(line)
    g = r["endpoint"].rsplit("-", 1)[0]
    got[g]["ok" if r["ok"] else r["error"]["kind"]] += 1
bad = 0
for g, v in groups.items():
    if g.startswith("_"):
        continue
    c = got[g]
    good = c[v["kind"]] == v["endpoints"] and sum(c.values()) == v["endpoints"]
    bad += not good
    print(f"{g:8} {v['endpoints']:6} endpoints, expected {v['kind']:24} got {dict(c)}{'' if good else '  MISMATCH'}")
sys.exit(1 if bad else 0)
EOF
cat "$OUT/preflight.txt" >&2

# ---- the soak ------------------------------------------------------------------
# monitor PID: samples /proc every SAMPLE_SECS into samples.csv until SOAK_SECS
# have passed since it started; exit status 3 when the process is gone.
#
# Pool saturation: fetchd creates a pooled transfer's curl handle (with
# curl's 16 KiB receive buffer and its own body buffer, ~20 KiB) the first
# time that pool entry is used, and keeps it; the free list is LIFO, so the
# entries used are as many as the largest concurrency seen so far. A stall
# after warm-up (a busy machine) that raises that high-water mark would
# show as RSS growth although nothing leaks. So halfway through the warm-up
# nginx is stopped for SOAK_SATURATE_MS: every transfer to it stays in
# flight, the pool fills up to max_concurrent, and then drains. This shows
# in start lateness (its max is at least SOAK_SATURATE_MS), not in the
# other figures.
cat > "$OUT/monitor.py" <<'EOF'
import os, sys, time, urllib.request
import signal
pid, secs, every, csv_path, status_url = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5]
nginx_pid, sat_at, sat_ms, maxconc = int(sys.argv[6]), float(sys.argv[7]), float(sys.argv[8]), int(sys.argv[9])

def saturate():
    """nginx (master and workers) stopped for sat_ms, and on (up to 4 times
    as long) until fetchd has max_concurrent sockets: fills its pool"""
    try:
        kids = open(f"/proc/{nginx_pid}/task/{nginx_pid}/children").read().split()
    except OSError:
        kids = []
    procs = [nginx_pid] + [int(k) for k in kids]
    peak = 0
    try:
        for p in procs:
            os.kill(p, signal.SIGSTOP)
        start = time.monotonic()
        while True:
            n = 0
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    n += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
                except OSError:
                    pass
            peak = max(peak, n)
            t = time.monotonic() - start
            if t >= 4 * sat_ms / 1000 or (t >= sat_ms / 1000 and peak >= maxconc):
                break
            time.sleep(0.02)
    except OSError:
        pass
    finally:
        for p in procs:
            os.kill(p, signal.SIGCONT)
    return peak
hz = os.sysconf("SC_CLK_TCK")
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

def nginx_requests():
    try:
        return int(opener.open(status_url, timeout=2).read().decode().splitlines()[2].split()[2])
    except Exception:
        return -1

def children():
    n = z = 0
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            st = open(f"/proc/{d}/stat").read()
        except OSError:
            continue
        f = st[st.rindex(")") + 2:].split()
        if f[1] == pid:
            n += 1
            z += f[0] == "Z"
    return n, z

prev_cand = set()

def fds():
    """(all, sockets, other, stuck, description of the other fds)"""
    global prev_cand
    socks, other = set(), {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            t = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if t.startswith("socket:["):
            socks.add(t[8:-1])
        else:
            t = "pipe" if t.startswith("pipe:") else t
            other[t] = other.get(t, 0) + 1
    # stuck: in CLOSE_WAIT (the peer closed, fetchd did not) or in no table
    # at all (a socket whose connect failed, or closed since the fd list was
    # read); normal for a moment, a leak when the same socket is still
    # there one sample later
    cand, known = set(), set()
    for f, ino in (("tcp", 9), ("tcp6", 9), ("udp", 9), ("udp6", 9), ("unix", 6)):
        try:
            for line in open(f"/proc/net/{f}").readlines()[1:]:
                c = line.split()
                known.add(c[ino])
                if f.startswith("tcp") and c[3] == "08" and c[ino] in socks:
                    cand.add(c[ino])
        except OSError:
            pass
    cand |= socks - known
    stuck = len(cand & prev_cand)
    prev_cand = cand
    n_other = sum(other.values())
    return len(socks) + n_other, len(socks), n_other, stuck, ";".join(f"{k}={v}" for k, v in sorted(other.items()))

def heap():
    """KiB: (size, rss) of what malloc got from the kernel: [heap] (brk) and
    anonymous mappings (mmap'ed chunks, other arenas)"""
    size = rss = 0
    cur = False
    for line in open(f"/proc/{pid}/smaps"):
        f = line.split()
        if "-" in f[0] and ":" not in f[0]:
            cur = len(f) < 6 or f[5] == "[heap]"
        elif cur and f[0] == "Size:":
            size += int(f[1])
        elif cur and f[0] == "Rss:":
            rss += int(f[1])
    return size, rss

t0 = time.monotonic()
saturated = sat_ms <= 0
with open(csv_path, "w", buffering=1) as out:
    out.write("t_s,rss_kib,hwm_kib,heap_size_kib,heap_rss_kib,fds,sockets,other_fds,stuck_sockets,threads,children,zombies,"
              "cpu_s,nginx_requests,load1,other_fd_kinds\n")
    k = 0
    while True:
        now = time.monotonic() - t0
        try:
            status = dict(l.split(":", 1) for l in open(f"/proc/{pid}/status"))
            if status["State"].split()[0] in ("Z", "X"):
                raise OSError
            st = open(f"/proc/{pid}/stat").read()
            f = st[st.rindex(")") + 2:].split()
            nfd, socks, other, stuck, kinds = fds()
            hsize, hrss = heap()
        except OSError:
            print(f"[soak] fetchd is gone after {now:.1f} s", file=sys.stderr)
            sys.exit(3)
        ch, zb = children()
        rss = int(status["VmRSS"].split()[0])
        load = open("/proc/loadavg").read().split()[0]
        out.write(f"{now:.1f},{rss},{int(status['VmHWM'].split()[0])},{hsize},{hrss},{nfd},{socks},{other},{stuck},"
                  f"{int(status['Threads'])},{ch},{zb},{(int(f[11]) + int(f[12])) / hz:.2f},"
                  f"{nginx_requests()},{load},{kinds}\n")
        if k % max(1, round(60 / every)) == 0:
            print(f"[soak] t={now:.0f}s rss {rss} KiB, fds {nfd} ({socks} sockets), "
                  f"threads {int(status['Threads'])}, load {load}", file=sys.stderr)
        k += 1
        if now >= secs:
            break
        nxt = t0 + k * every
        if not saturated and nxt - t0 > sat_at:
            time.sleep(max(0.0, t0 + sat_at - time.monotonic()))
            peak = saturate()
            saturated = True
            took = time.monotonic() - t0 - sat_at
            with open(csv_path + ".saturation", "w") as f:
                f.write(f"{sat_at:.0f} {took * 1000:.0f} {peak}\n")
            print(f"[soak] t={sat_at:.0f}s nginx stopped for {took * 1000:.0f} ms: "
                  f"up to {peak} sockets", file=sys.stderr)
        time.sleep(max(0.0, nxt - time.monotonic()))
EOF

log "soak: $ENDPOINTS endpoints every ${INTERVAL_MS} ms (target $TARGET_RATE fetches/s), ${SOAK_SECS}s, warm-up ${WARMUP_SECS}s"
# info level for the statistics printed at stop (fetchd itself limits the
# per-failure lines to 100 per 30 s)
t0=$(date +%s.%N)
"$FETCHD" -c "$OUT/fetchd.json" --log-target stderr --log-level info > /dev/null 2> "$OUT/fetchd.log" &
FETCHD_PID=$!
died=0
mon=0
# in the background, so that a signal to this script is handled at once
$PY "$OUT/monitor.py" "$FETCHD_PID" "$SOAK_SECS" "$SAMPLE_SECS" "$OUT/samples.csv" "$NGX/nginx_status" \
    "$NGINX_PID" "$((WARMUP_SECS / 2))" "$SOAK_SATURATE_MS" "$MAX_CONCURRENT" &
pids+=($!)
wait $! || mon=$?
if [ "$mon" = 3 ]; then
    died=1
elif [ "$mon" != 0 ]; then
    die "the monitor failed (status $mon)"
fi

stop_s=
if [ "$died" = 0 ]; then
    ts=$(date +%s%N)
    kill -TERM "$FETCHD_PID"
    for _ in $(seq 600); do
        kill -0 "$FETCHD_PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$FETCHD_PID" 2>/dev/null; then
        log "fetchd did not stop within 60 s of SIGTERM: SIGKILL"
        kill -KILL "$FETCHD_PID"
    fi
    stop_s=$(( ($(date +%s%N) - ts) / 1000000 ))
fi
status=0
wait "$FETCHD_PID" || status=$?
t1=$(date +%s.%N)
FETCHD_PID=

# ---- results -------------------------------------------------------------------
export WARMUP_SECS SOAK_SECS SOAK_RSS_MAX_KIB MEM_JUDGE SOAK_FD_SLACK SOAK_MIN_RATE_PCT SANITIZED \
    ENDPOINTS INTERVAL_MS MAX_CONCURRENT SOAK_SATURATE_MS TARGET_RATE status died stop_s t0 t1
VERSION="$(basename "$FETCHD") ($("$FETCHD" --version | head -1))"
NPROC=$(nproc)
export VERSION NPROC
$PY - "$OUT" > "$OUT/soak.md" <<'EOF'
import csv, glob, json, os, re, statistics, sys
out = sys.argv[1]
E = os.environ
warm, secs, rss_max = float(E["WARMUP_SECS"]), float(E["SOAK_SECS"]), float(E["SOAK_RSS_MAX_KIB"])
mem_judge, fd_slack, min_pct = E["MEM_JUDGE"], int(E["SOAK_FD_SLACK"]), float(E["SOAK_MIN_RATE_PCT"])
maxconc = int(E["MAX_CONCURRENT"])
status, died, stop_ms = E["status"], E["died"] == "1", E["stop_s"]
wall = float(E["t1"]) - float(E["t0"])
target = float(E["TARGET_RATE"])
rows = [{k: (v if k == "other_fd_kinds" else float(v)) for k, v in r.items()}
        for r in csv.DictReader(open(f"{out}/samples.csv"))]
log = open(f"{out}/fetchd.log", errors="replace").read()
fails, lines = [], []

def row(name, value, check=""):
    lines.append(f"| {name} | {value} | {check} |")

def judge(name, ok, value, why):
    if not ok:
        fails.append(f"{name}: {value} ({why})")
    row(name, value, "ok" if ok else f"**FAIL** ({why})")

pre = [r for r in rows if r["t_s"] <= warm]
post = [r for r in rows if r["t_s"] >= warm]
lines += [f"## fetchd soak: {E['ENDPOINTS']} endpoints every {E['INTERVAL_MS']} ms, "
          f"{secs:.0f} s (warm-up {warm:.0f} s)", "",
          f"binary: `{E['VERSION']}`{', sanitized' if E['SANITIZED'] == '1' else ''}; "
          f"{E['NPROC']} cores; load average (1 min) over the run: "
          f"mean {statistics.mean(r['load1'] for r in rows):.2f}, max {max(r['load1'] for r in rows):.2f}"
          if rows else "", "",
          "| measure | value | check |", "|---|---|---|"]
judge("fetchd up until SIGTERM; exit status", not died and status == "0",
      "died" if died else f"{status} (stop took {stop_ms} ms)", "must stay up and exit 0")
if pre and post:
    base, last = post[0], post[-1]
    grow = last["rss_kib"] - base["rss_kib"]
    rss_post = [r["rss_kib"] for r in post]
    ts = [r["t_s"] for r in post]
    slope = 0.0
    if len(post) > 2:  # least squares, KiB per minute
        mt, mr = statistics.mean(ts), statistics.mean(rss_post)
        slope = sum((t - mt) * (r - mr) for t, r in zip(ts, rss_post)) / sum((t - mt) ** 2 for t in ts) * 60
    row("RSS at end of warm-up / at end", f"{base['rss_kib']:.0f} / {last['rss_kib']:.0f} KiB")
    mid = min(post, key=lambda r: abs(r["t_s"] - (base["t_s"] + last["t_s"]) / 2))
    row("RSS min / max after warm-up; trend; growth in the second half",
        f"{min(rss_post):.0f} / {max(rss_post):.0f} KiB; {slope:+.1f} KiB/min; "
        f"{last['rss_kib'] - mid['rss_kib']:+.0f} KiB")
    # the heap's size: [heap] and anonymous mappings, virtual; at the end the
    # least of the last three samples (glibc gives the top back in steps)
    hend = min(r["heap_size_kib"] for r in post[-3:])
    hgrow = hend - base["heap_size_kib"]
    sanitized = E["SANITIZED"] == "1"
    if not sanitized:  # ASan's shadow memory is anonymous mappings too
        row("heap size / heap RSS at end of warm-up",
            f"{base['heap_size_kib']:.0f} / {base['heap_rss_kib']:.0f} KiB")
        row("heap size / heap RSS at end", f"{hend:.0f} / {last['heap_rss_kib']:.0f} KiB")
    for what, g in (("rss", grow), ("heap", hgrow)):
        if what == "heap" and sanitized:
            continue
        name = "RSS growth after warm-up" if what == "rss" else "heap size growth after warm-up"
        if mem_judge == what:
            judge(name, g < rss_max, f"{g:+.0f} KiB", f"< {rss_max:.0f} KiB")
        else:
            row(name, f"{g:+.0f} KiB", "not judged" + (" (sanitizer)" if E["SANITIZED"] == "1" else ""))
    # fds: the sockets come and go with the transfers and the connection
    # pool (fetchd closes a connection after an aborted transfer, too_large
    # or timeout, and curl an idle one), so they are bounded instead: at
    # most limits.max_concurrent, and none stuck (in CLOSE_WAIT, or a failed
    # connect never closed: a leaked socket) at the end (min of 3 samples).
    # Every other fd (files, pipes, eventfd, epoll) must be constant.
    oth = [r["other_fds"] for r in post]
    kinds = sorted({r["other_fd_kinds"] for r in post})
    judge("non-socket fds after warm-up (min-max)", min(oth) == max(oth),
          f"{min(oth):.0f}-{max(oth):.0f}", "constant" + ("" if len(kinds) == 1 else f": {kinds}"))
    so = [r["sockets"] for r in post]
    judge("sockets after warm-up (min-max)", max(so) <= maxconc + fd_slack,
          f"{min(so):.0f}-{max(so):.0f}", f"<= max_concurrent {maxconc} + {fd_slack}")
    st = [r["stuck_sockets"] for r in post]
    judge("stuck sockets (CLOSE_WAIT or unconnected for a whole sample period): max; at the end", min(st[-3:]) <= fd_slack,
          f"{max(st):.0f}; {min(st[-3:]):.0f}", f"at the end (min of 3 samples) <= {fd_slack}")
    q = max(1, len(post) // 4)
    try:
        sat_t, sat_ms, sat_peak = open(f"{out}/samples.csv.saturation").read().split()
        row("pool saturation in warm-up (nginx stopped)",
            f"at {sat_t} s for {sat_ms} ms: up to {sat_peak} sockets (max_concurrent {maxconc})")
    except OSError:
        row("pool saturation in warm-up", "none")
    fd_all = [r["fds"] for r in post]
    row("all fds: max in warm-up; min-max after; floor (min) in first / last quarter after",
        f"{max(r['fds'] for r in pre):.0f}; {min(fd_all):.0f}-{max(fd_all):.0f}; "
        f"{min(fd_all[:q]):.0f} / {min(fd_all[-q:]):.0f}")
    th = [r["threads"] for r in post]
    judge("threads after warm-up (min-max)", min(th) == max(th), f"{min(th):.0f}-{max(th):.0f}", "constant")
    zmax = max(r["zombies"] for r in rows)
    judge("zombie children (max seen)", zmax == 0, f"{zmax:.0f}", "none")
    row("children (min-max)", f"{min(r['children'] for r in rows):.0f}-{max(r['children'] for r in rows):.0f}")
    span = max(last["t_s"] - base["t_s"], 1)
    row("fetchd CPU after warm-up", f"{100 * (last['cpu_s'] - base['cpu_s']) / span:.0f} % of one core")
    if base["nginx_requests"] >= 0 and last["nginx_requests"] >= 0:
        row("nginx requests/s after warm-up (incl. retries)",
            f"{(last['nginx_requests'] - base['nginx_requests']) / span:,.0f}")
else:
    judge("samples", False, f"{len(pre)} in warm-up, {len(post)} after", "too few")
m = re.search(r"stopped: (\d+) fetches, (\d+) failed, (\d+) skipped", log)
if m:
    fetches, failed, skipped = map(int, m.groups())
    rate = fetches / wall
    load = statistics.mean(r["load1"] for r in rows) if rows else 0
    busy = f"; the machine was busy: load {load:.1f} on {E['NPROC']} cores" if load > int(E["NPROC"]) else ""
    judge("fetches (failed, skipped); per second", rate >= target * min_pct / 100,
          f"{fetches:,} ({failed:,} = {100 * failed / max(fetches, 1):.1f} %, {skipped:,}); "
          f"{rate:,.0f}/s of {target:,.0f} ({100 * rate / target:.1f} %)", f">= {min_pct:.0f} % of target{busy}")
else:
    judge("fetches", False, "no 'stopped:' line", "fetchd's stop line is missing")
# the sinks' final counters: nothing dropped, nothing left queued
sinks = {}
for m in re.finditer(r"sink '([^']+)': produced (\d+), delivered (\d+), queued (\d+), dropped (\d+)", log):
    sinks[m.group(1)] = tuple(map(int, m.groups()[1:]))
if sinks:
    bad = {k: v for k, v in sinks.items() if v[0] != v[1]}
    judge("sink records produced = delivered (" + ", ".join(sinks) + ")", not bad,
          ", ".join(f"{v[1]:,}/{v[0]:,}" for v in sinks.values()),
          "nothing dropped or left queued" + (f": {bad}" if bad else ""))
pats = {"timer lateness p50 / p99 / max":
            (r"timer lateness over (\d+) runs: p50 ([\d.]+) ms, p99 ([\d.]+) ms, max ([\d.]+) ms",
             lambda g: f"{g[1]} / {g[2]} / {g[3]} ms ({int(g[0]):,} runs)"),
        "start lateness p50 / p99 / max":
            (r"start lateness \(due to started\): p50 ([\d.]+) ms, p99 ([\d.]+) ms, max ([\d.]+) ms",
             lambda g: f"{g[0]} / {g[1]} / {g[2]} ms"),
        "loop busy p99 / max":
            (r"loop: (\d+) iterations, busy p99 ([\d.]+) ms, max ([\d.]+) ms",
             lambda g: f"{g[1]} / {g[2]} ms ({int(g[0]):,} iterations)"),
        "longest heap trim (malloc_trim, once a minute)":
            (r"heap trim max ([\d.]+) ms", lambda g: f"{g[0]} ms")}
for name, (pat, fmt) in pats.items():
    m = re.search(pat, log)
    row(name, fmt(m.groups()) if m else "missing")
reports = [f for pat in ("asan*", "ubsan*", "lsan*") for f in glob.glob(os.path.join(out, pat))
           if os.path.getsize(f) > 0]
san = re.findall(r"(ERROR: \w+Sanitizer[^\n]*|runtime error:[^\n]*)", log)
judge("sanitizer reports", not reports and not san,
      ", ".join(os.path.basename(f) for f in reports) or (san[0] if san else "none"), "none")
errs = [l for l in log.splitlines() if re.match(r"fetchd: (error|crit|alert|emerg):", l)]
row("error lines in fetchd's log", f"{len(errs)}" + (f" (first: `{errs[0][:120]}`)" if errs else ""))
row("wall time", f"{wall:.0f} s")
lines += ["", "result: " + ("**PASS**" if not fails else "**FAIL**: " + "; ".join(fails))]
print("\n".join(lines))
EOF
cat "$OUT/soak.md"
grep -q '^result: \*\*PASS' "$OUT/soak.md" || exit 1
