#!/bin/sh
# Offline demo: start the bundled test HTTP server on 127.0.0.1 (a free port),
# point a config at it and run `fetchd --once`, which prints one JSON record
# per endpoint. Usage: config/demo/run.sh [BUILD_DIR]   (default: build)
set -eu
build=${1:-build}
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; rm -rf "$tmp"' EXIT INT TERM

# loopback only: never go through a proxy
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy

"$build/tests/httpd" --port-file "$tmp/port" >/dev/null &
server=$!
i=0
while [ ! -s "$tmp/port" ]; do
    i=$((i + 1))
    if [ "$i" -gt 100 ]; then echo "demo: test server did not start" >&2; exit 1; fi
    sleep 0.05
done
port=$(cat "$tmp/port")
sed "s/@PORT@/$port/g" "$here/fetchd.json.in" > "$tmp/fetchd.json"

echo "demo: fetching 5 endpoints from the local server on port $port" >&2
"$build/src/fetchd" --once --config "$tmp/fetchd.json"
