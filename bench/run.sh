#!/bin/bash
# bench/run.sh - fetchd side by side with the tools people use instead, in one
# run, on the same local servers, on 127.0.0.1 only. One command, as root on
# Debian 12:   bash bench/run.sh
#
# Scenarios (see bench/README.md): 1 throughput, 2 latency-bound, 3 payload,
# 4 steady state (daemon), 5 scale. Every scenario is run RUNS times (default
# 3) and the median is reported, with CPU time and peak RSS of the client.
# Results: bench/out/results.md (and .json); raw numbers: bench/out/raw.tsv.
#
# Knobs (environment): RUNS=3 N1=20000 STEADY_SECS=30 SKIP_INSTALL=1
#   SCENARIOS="1 2 3 4 5"
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/bench/out
RUNS=${RUNS:-3}
N1=${N1:-20000}
STEADY_SECS=${STEADY_SECS:-30}
WARMUP_SECS=${WARMUP_SECS:-5}
SCENARIOS=${SCENARIOS:-"1 2 3 4 5"}
PY=/usr/bin/python3

pids=()
cleanup() {
    for p in "${pids[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${pids[@]}"; do
        wait "$p" 2>/dev/null || true
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '[bench %4ss] %s\n' "$SECONDS" "$*" >&2; }

# loopback only
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy no_proxy NO_PROXY || true

if [ "${SKIP_INSTALL:-0}" != 1 ]; then
    log "installing packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq gcc meson ninja-build pkg-config libcurl4-openssl-dev libev-dev \
        libcjson-dev libsystemd-dev nginx wrk python3 python3-aiohttp nodejs curl \
        collectd-core libyajl2 time >/dev/null
fi

log "building fetchd (release)"
[ -d build-bench ] || meson setup build-bench --buildtype=release -Dtests=disabled >/dev/null
ninja -C build-bench >/dev/null
FETCHD=$ROOT/build-bench/src/fetchd
HTTPD=$ROOT/build-bench/tests/httpd

rm -rf "$OUT"
mkdir -p "$OUT/www" "$OUT/nginx" "$OUT/tmp"
chmod 755 "$OUT" "$OUT/www"
RAW=$OUT/raw.tsv
printf 'scenario\tconcurrency\ttool\trun\twall_s\tcpu_s\trss_kib\tcount\tok\textra\n' > "$RAW"

free_port() {
    $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ---- servers -------------------------------------------------------------
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
    keepalive_requests 10000000;
    keepalive_timeout 60s;
    default_type application/json;
    client_body_temp_path $OUT/nginx/tmp;
    server {
        listen 127.0.0.1:$NGINX_PORT backlog=4096;
        root $OUT/www;
        location /1k/ { try_files /doc-1k.json =404; }
        location /64k/ { try_files /doc-64k.json =404; }
        location = /nginx_status { stub_status; }
    }
}
EOF
mkdir -p "$OUT/nginx/tmp"
nginx -c "$OUT/nginx/nginx.conf" -p "$OUT/nginx" &
pids+=($!)
"$HTTPD" --port-file "$OUT/httpd.port" >/dev/null &
pids+=($!)
for _ in $(seq 100); do
    if curl -sf "http://127.0.0.1:$NGINX_PORT/1k/0" >/dev/null 2>&1 && [ -s "$OUT/httpd.port" ]; then
        break
    fi
    sleep 0.1
done
curl -sf "http://127.0.0.1:$NGINX_PORT/1k/0" >/dev/null || { log "nginx did not start"; cat "$OUT/nginx/error.log"; exit 1; }
HTTPD_PORT=$(cat "$OUT/httpd.port")
NGX=http://127.0.0.1:$NGINX_PORT
SLOW=http://127.0.0.1:$HTTPD_PORT

nginx_requests() {
    curl -s "$NGX/nginx_status" | awk 'NR == 3 { print $3 }'
}

# ---- versions ------------------------------------------------------------
{
    echo "fetchd: $($FETCHD --version)"
    echo "aiohttp: $($PY -c 'import aiohttp, sys; print(aiohttp.__version__, "on Python", sys.version.split()[0])')"
    echo "node: $(node --version) (global fetch)"
    echo "curl: $(curl --version | head -1)"
    echo "collectd: $(dpkg-query -W -f '${Version}' collectd-core) (curl_json plugin)"
    echo "wrk: $(wrk -v 2>&1 | head -1)"
    echo "nginx: $(nginx -v 2>&1)"
    echo "machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(uname -r)"
} > "$OUT/versions.txt"
cat "$OUT/versions.txt" >&2

# ---- helpers -------------------------------------------------------------
# urls FILE PREFIX N: N distinct URLs PREFIX0 .. PREFIX(N-1)
urls() {
    $PY -c 'import sys
p, n = sys.argv[1], int(sys.argv[2])
print("\n".join(f"{p}{i}" for i in range(n)))' "$2" "$3" > "$1"
}

# fetchd_config URLS CONCURRENCY OUT_JSONL INTERVAL > config
fetchd_config() {
    $PY - "$@" <<'EOF'
import json, sys
urls = [u for u in open(sys.argv[1]).read().split("\n") if u]
cfg = {
    "limits": {"max_concurrent": int(sys.argv[2]), "max_endpoints": 1000000},
    "defaults": {"interval": sys.argv[4], "timeout": "30s", "sinks": ["out"]},
    "sinks": {"out": {"type": "file", "path": sys.argv[3]}},
    "endpoints": {f"e{i}": {"url": u} for i, u in enumerate(urls)},
}
print(json.dumps(cfg))
EOF
}

# measure SCEN CONC TOOL RUN OUTFILE -- CMD...: runs CMD under /usr/bin/time,
# counts the records in OUTFILE (lines, and lines with "ok":true).
measure() {
    local scen=$1 conc=$2 tool=$3 run=$4 outfile=$5
    shift 6
    local tf
    tf=$(mktemp "$OUT/tmp/time.XXXXXX")
    : > "$outfile"
    if ! /usr/bin/time -f '%e %U %S %M' -o "$tf" "$@" > "$OUT/tmp/stdout" 2> "$OUT/tmp/stderr"; then
        log "warning: $tool ($scen, c=$conc, run $run) exited non-zero: $(tail -c 300 "$OUT/tmp/stderr")"
    fi
    local wall user sys rss
    read -r wall user sys rss < <(tail -1 "$tf")
    local count ok
    count=$(wc -l < "$outfile")
    ok=$(grep -c '"ok":true' "$outfile" || true)
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n' "$scen" "$conc" "$tool" "$run" "$wall" \
        "$($PY -c "print($user + $sys)")" "$rss" \
        "$count" "$ok" >> "$RAW"
    log "$scen c=$conc $tool run $run: ${wall}s, cpu $user+$sys s, rss ${rss} KiB, $ok/$count ok"
    rm -f "$tf"
}

# one_shot SCEN URLS CONCURRENCY: every client once per run
one_shot() {
    local scen=$1 urlfile=$2 conc=$3
    local cfg=$OUT/tmp/fetchd-$scen-$conc.json
    fetchd_config "$urlfile" "$conc" "$OUT/tmp/fetchd.jsonl" 1h > "$cfg"
    awk '{ printf "url = \"%s\"\noutput = \"/dev/null\"\n", $0 }' "$urlfile" > "$OUT/tmp/curl.cfg"
    for run in $(seq "$RUNS"); do
        measure "$scen" "$conc" fetchd "$run" "$OUT/tmp/fetchd.jsonl" -- \
            "$FETCHD" --once --no-progress -c "$cfg"
        measure "$scen" "$conc" aiohttp "$run" "$OUT/tmp/aiohttp.jsonl" -- \
            $PY bench/peers/aiohttp_fetch.py "$urlfile" "$conc" "$OUT/tmp/aiohttp.jsonl"
        measure "$scen" "$conc" node "$run" "$OUT/tmp/node.jsonl" -- \
            node bench/peers/node_fetch.mjs "$urlfile" "$conc" "$OUT/tmp/node.jsonl"
        # curl writes bodies to /dev/null and no records: count its 200s
        measure "$scen" "$conc" curl "$run" "$OUT/tmp/curl.codes" -- \
            sh -c "curl -s --parallel --parallel-immediate --parallel-max $conc -K '$OUT/tmp/curl.cfg' -w '\"ok\":%{http_code}\n' | sed 's/\"ok\":200/\"ok\":true/' > '$OUT/tmp/curl.codes'"
    done
}

# wrk_ceiling SCEN CONCURRENCY PATH_PREFIX N
wrk_ceiling() {
    local scen=$1 conc=$2 prefix=$3 n=$4
    cat > "$OUT/tmp/paths.lua" <<EOF
local i = 0
request = function()
    i = i + 1
    return wrk.format("GET", "$prefix" .. (i % $n))
end
EOF
    for run in $(seq "$RUNS"); do
        local tf
        tf=$(mktemp "$OUT/tmp/time.XXXXXX")
        /usr/bin/time -f '%e %U %S %M' -o "$tf" wrk -t2 -c"$conc" -d5s -s "$OUT/tmp/paths.lua" "$NGX/" > "$OUT/tmp/wrk.txt" 2>&1
        local wall user sys rss reqs
        read -r wall user sys rss < <(tail -1 "$tf")
        reqs=$(awk '/requests in/ { print $1 }' "$OUT/tmp/wrk.txt")
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$scen" "$conc" wrk "$run" "$wall" \
            "$($PY -c "print($user + $sys)")" "$rss" "$reqs" "$reqs" \
            "rps=$(awk '/Requests\/sec/ { print $2 }' "$OUT/tmp/wrk.txt")" >> "$RAW"
        log "$scen c=$conc wrk run $run: $reqs requests in ${wall}s"
        rm -f "$tf"
    done
}

proc_cpu_s() { # utime + stime of a pid, in seconds
    awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$1/stat"
}
proc_kib() { # VmRSS or VmHWM of a pid
    awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"
}

# steady TOOL N: a daemon polling N endpoints every second, measured for
# STEADY_SECS after WARMUP_SECS
steady() {
    local tool=$1 n=$2 run=$3
    urls "$OUT/tmp/steady.urls" "$NGX/1k/" "$n"
    local pid
    if [ "$tool" = fetchd ]; then
        fetchd_config "$OUT/tmp/steady.urls" 1024 "$OUT/tmp/steady.jsonl" 1s > "$OUT/tmp/steady.json"
        : > "$OUT/tmp/steady.jsonl"
        "$FETCHD" -c "$OUT/tmp/steady.json" --log-level info 2> "$OUT/tmp/steady.log" &
        pid=$!
    else
        mkdir -p "$OUT/collectd"
        {
            echo "Hostname \"bench\""
            echo "FQDNLookup false"
            echo "BaseDir \"$OUT/collectd\""
            echo "PIDFile \"$OUT/collectd/collectd.pid\""
            echo "TypesDB \"/usr/share/collectd/types.db\""
            echo "Interval 1"
            echo "ReadThreads 16"
            echo "LoadPlugin logfile"
            echo "<Plugin logfile>"
            echo "  LogLevel \"err\""
            echo "  File \"$OUT/collectd/collectd.log\""
            echo "</Plugin>"
            echo "LoadPlugin curl_json"
            echo "<Plugin curl_json>"
            awk '{ printf "  <URL \"%s\">\n    Instance \"e%d\"\n    Interval 1\n    Timeout 5000\n    <Key \"current/temp_c\">\n      Type \"gauge\"\n    </Key>\n  </URL>\n", $0, NR - 1 }' "$OUT/tmp/steady.urls"
            echo "</Plugin>"
        } > "$OUT/collectd/collectd.conf"
        collectd -f -C "$OUT/collectd/collectd.conf" 2> "$OUT/tmp/steady.log" &
        pid=$!
    fi
    pids+=("$pid")
    sleep "$WARMUP_SECS"
    local cpu0 req0 cpu1 req1 rss hwm
    cpu0=$(proc_cpu_s "$pid")
    req0=$(nginx_requests)
    sleep "$STEADY_SECS"
    cpu1=$(proc_cpu_s "$pid")
    req1=$(nginx_requests)
    rss=$(proc_kib "$pid" VmRSS)
    hwm=$(proc_kib "$pid" VmHWM)
    kill -TERM "$pid"
    wait "$pid" 2>/dev/null || true
    local fetches=$((req1 - req0 - 1)) # minus our own status request
    local extra="hwm_kib=$hwm"
    if [ "$tool" = fetchd ]; then
        local lat
        lat=$(grep -o 'start lateness.*' "$OUT/tmp/steady.log" | sed 's/start lateness (due to started): //')
        extra="$extra;lateness=$lat;timer=$(grep -o 'timer lateness over.*' "$OUT/tmp/steady.log" | sed 's/.*runs: //')"
    fi
    printf '4\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$n" "$tool" "$run" "$STEADY_SECS" \
        "$($PY -c "print($cpu1 - $cpu0)")" "$rss" "$fetches" "$fetches" "$extra" >> "$RAW"
    log "4 n=$n $tool run $run: $fetches fetches in ${STEADY_SECS}s, cpu $($PY -c "print(round($cpu1 - $cpu0, 2))") s, rss $rss KiB; $extra"
}

# ---- scenarios -----------------------------------------------------------
for s in $SCENARIOS; do
    case $s in
    1)
        urls "$OUT/tmp/s1.urls" "$NGX/1k/" "$N1"
        for c in 64 256; do
            log "scenario 1: $N1 URLs of the 1 KiB document, concurrency $c"
            one_shot 1 "$OUT/tmp/s1.urls" "$c"
            wrk_ceiling 1 "$c" /1k/ "$N1"
        done
        ;;
    2)
        log "scenario 2: 1000 endpoints answering after 100 ms, all at once"
        urls "$OUT/tmp/s2.urls" "$SLOW/slow?delay=100&n=" 1000
        one_shot 2 "$OUT/tmp/s2.urls" 1000
        ;;
    3)
        log "scenario 3: 2000 fetches of the 64 KiB document, concurrency 64"
        urls "$OUT/tmp/s3.urls" "$NGX/64k/" 2000
        one_shot 3 "$OUT/tmp/s3.urls" 64
        ;;
    4)
        for run in $(seq "$RUNS"); do
            log "scenario 4: steady state, 1000 endpoints every 1 s (run $run)"
            steady fetchd 1000 "$run"
            steady collectd 1000 "$run"
            log "scenario 4: steady state, 10000 endpoints every 1 s (run $run)"
            steady fetchd 10000 "$run"
        done
        ;;
    5)
        log "scenario 5: 100000 configured endpoints"
        urls "$OUT/tmp/s5.urls" "$NGX/1k/" 100000
        fetchd_config "$OUT/tmp/s5.urls" 64 "$OUT/tmp/s5.jsonl" 1h > "$OUT/tmp/s5.json"
        for run in $(seq "$RUNS"); do
            measure 5 load fetchd-check-config "$run" /dev/null -- \
                "$FETCHD" --check-config -c "$OUT/tmp/s5.json"
            "$FETCHD" -c "$OUT/tmp/s5.json" 2>/dev/null &
            pid=$!
            pids+=("$pid")
            sleep 10
            rss=$(proc_kib "$pid" VmRSS)
            kill -TERM "$pid"
            wait "$pid" 2>/dev/null || true
            printf '5\tidle\tfetchd-daemon\t%s\t10\t0\t%s\t100000\t100000\t\n' "$run" "$rss" >> "$RAW"
            log "5 fetchd daemon with 100000 endpoints, idle: rss $rss KiB"
        done
        ;;
    esac
done

$PY bench/report.py "$RAW" "$OUT/versions.txt" > "$OUT/results.md"
cat "$OUT/results.md"
